//! `ems-agent scan` (the real binary) on ems-sim's RS-485 pseudo-terminal and on its Modbus TCP
//! gateway: it says how long it will take before it starts, finds the SunSpec inverter at unit 1
//! and the SDM630 at unit 2 at the line's baud rate (19200) and not at another one (9600, which
//! the sim does not answer), nothing at unit 3, prints sections that `check-config` accepts, and
//! sends no write request at all (the sim counts them).

use crate::common;

use std::path::Path;
use std::process::{Output, Stdio};
use std::time::Duration;

use ems_sim::site::{SimOptions, SimSite};

const MAPS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../config/devices");

async fn agent(args: &[&str]) -> Output {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_ems-agent"))
        .args(args)
        .env("EMS_LOG", "warn")
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    tokio::time::timeout(Duration::from_secs(60), out)
        .await
        .expect("ems-agent ends")
        .expect("ems-agent runs")
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `check-config` on a config made of a device id, this build's drivers and `snippet`.
async fn check_config(dir: &Path, name: &str, snippet: &str) {
    let config = dir.join(name);
    std::fs::write(
        &config,
        format!(
            "device_id = \"scan_test\"\ndata_dir = {:?}\ndriver_dir = {:?}\n{snippet}",
            dir.join("data"),
            common::driver_dir()
        ),
    )
    .unwrap();
    let out = agent(&["--config", config.to_str().unwrap(), "check-config"]).await;
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{snippet}\n{stdout}\n{stderr}");
    assert!(stdout.contains("valid"), "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scan_finds_and_identifies_the_sims_units_without_writing() {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = SimOptions::new(dir.path().join("sim"));
    opts.modbus_tcp = Some("127.0.0.1:0".parse().unwrap());
    assert_eq!(opts.baud, 19200);
    let sim = SimSite::start(opts).await.expect("start ems-sim");
    let port = sim.rs485_path.to_str().unwrap().to_string();

    // RS-485: two baud rates, three units; the TOML snippet.
    let out = agent(&[
        "scan",
        "--port",
        &port,
        "--baud",
        "9600,19200",
        "--parity",
        "N",
        "--units",
        "1-3",
        "--maps",
        MAPS,
    ])
    .await;
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let estimate = stderr.lines().next().unwrap_or_default();
    assert!(
        estimate.contains("6 probes × 100 ms") && estimate.contains("at most 0.7 s"),
        "the estimate comes first: {stderr}"
    );
    assert!(stderr.contains("never writes"), "{stderr}");
    assert!(
        stderr.contains("19200 8N1: unit 1 answers")
            && stderr.contains("19200 8N1: unit 2 answers"),
        "progress names the units found: {stderr}"
    );
    assert!(
        !stderr.contains("9600 8N1: unit"),
        "nothing answers at 9600 baud: {stderr}"
    );
    assert!(stdout.contains("[buses.rs485]\nkind = \"rtu\""), "{stdout}");
    assert!(stdout.contains("baud = 19200\n"), "{stdout}");
    assert!(!stdout.contains("baud = 9600"), "{stdout}");
    assert!(
        stdout.contains(
            "[devices.inverter]\ndriver = \"sunspec\"\nbus = \"rs485\"\nunit = 1\nroles = [\"inverter\", \"battery\"]"
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains("ems-sim, Hybrid 5K, SIM0001"),
        "model 1 strings: {stdout}"
    );
    assert!(
        stdout.contains(
            "[devices.grid_meter]\ndriver = \"sdm630\"\nbus = \"rs485\"\nunit = 2\nroles = [\"grid_meter\"]"
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains("also matches: register map") && stdout.contains("sdm630.toml"),
        "the shipped map's [identify] matches too: {stdout}"
    );
    assert!(!stdout.contains("unit = 3"), "{stdout}");
    check_config(dir.path(), "rtu.toml", &stdout).await;

    // Modbus TCP: JSON.
    let tcp = sim.modbus_tcp_addr.unwrap().to_string();
    let out = agent(&[
        "scan", "--tcp", &tcp, "--units", "1-3", "--maps", MAPS, "--json",
    ])
    .await;
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stderr.contains("3 probes × 100 ms"), "{stderr}");
    let report: serde_json::Value = serde_json::from_str(&stdout).expect("JSON");
    let found = report["found"].as_array().unwrap();
    let units: Vec<u64> = found.iter().map(|f| f["unit"].as_u64().unwrap()).collect();
    assert_eq!(units, [1, 2], "{report:#}");
    assert_eq!(found[0]["identities"][0]["driver"], "sunspec");
    assert_eq!(found[0]["identities"][0]["serial"], "SIM0001");
    assert_eq!(found[1]["identities"][0]["driver"], "sdm630");
    assert_eq!(found[1]["identities"][0]["model"], "SDM630");
    assert_eq!(report["passes"][0]["answered"], serde_json::json!([1, 2]));
    let snippet = report["config"].as_str().unwrap();
    assert!(
        snippet.contains("[buses.modbus_tcp]\nkind = \"tcp\""),
        "{snippet}"
    );
    check_config(dir.path(), "tcp.toml", snippet).await;

    let s = sim.state();
    assert_eq!(
        s.stats.writes, 0,
        "no write on the RS-485 line: {:?}",
        s.stats
    );
    assert_eq!(
        s.tcp_stats.writes, 0,
        "no write over TCP: {:?}",
        s.tcp_stats
    );
    assert!(
        s.stats.line_mismatch >= 3,
        "the 9600-baud probes reached the line and were ignored: {:?}",
        s.stats
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scan_errors_are_one_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("ttyUSB9");
    let cases = [
        (
            vec!["scan", "--port", missing.to_str().unwrap()],
            "no such device",
        ),
        (vec!["scan", "--port", "/dev/null"], "not a serial port"),
        (
            vec!["scan", "--port", "/dev/null", "--units", "1-300"],
            "300 is not a unit id (1 to 247)",
        ),
        (
            vec!["scan", "--tcp", "127.0.0.1:1"],
            "Modbus TCP 127.0.0.1:1",
        ),
    ];
    for (args, expected) in cases {
        let out = agent(&args).await;
        let (stdout, stderr) = text(&out);
        assert!(!out.status.success(), "{args:?}: {stdout}");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "{args:?}: {stderr}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbled_answers_are_counted_not_fatal() {
    let dir = tempfile::tempdir().unwrap();
    let sim = SimSite::start(SimOptions::new(dir.path().join("sim")))
        .await
        .expect("start ems-sim");
    // Every answer on the line arrives with a broken CRC.
    sim.state().line_faults.corrupt_rate = 1.0;
    let port = sim.rs485_path.to_str().unwrap().to_string();
    let out = agent(&[
        "scan", "--port", &port, "--baud", "19200", "--parity", "N", "--units", "1-3", "--json",
    ])
    .await;
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let report: serde_json::Value = serde_json::from_str(&stdout).expect("JSON");
    let pass = &report["passes"][0];
    assert_eq!(
        pass["garbled"], 2,
        "units 1 and 2 answered garbage: {report:#}"
    );
    assert_eq!(pass["timeouts"], 1, "unit 3 is silent: {report:#}");
    assert_eq!(report["found"], serde_json::json!([]), "{report:#}");
    assert!(
        report["config"]
            .as_str()
            .unwrap()
            .contains("2 garbled answers (CRC, noise)"),
        "{report:#}"
    );
    assert_eq!(sim.state().stats.corrupted, 2);
}
