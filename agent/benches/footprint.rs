//! Agent footprint at 1 Hz: resident memory and CPU of the real `ems-agent` process (release
//! build) with three devices on ems-sim (SunSpec inverter + SDM630 on one RS-485 pty, INA226 on
//! the simulated I2C bus), and Modbus transactions per cycle against the minimum the register
//! maps allow. The uplink is on, as on a real site: telemetry every second over `wss://` (TLS with
//! a private CA) to an ems-cloud on a throwaway PostgreSQL in this process; `EMS_BENCH_UPLINK=0`
//! leaves it out. `EMS_BENCH_METRICS=1` turns on `[metrics] listen` and scrapes `GET /metrics`
//! every 5 s while it measures, as a Prometheus would (more often than its usual 15 s).
//!
//! Measured as the agent ships (the size-optimised `edge` profile of packaging/build.sh):
//! `cargo build --profile edge -p ems-agent -p ems-driver-sunspec -p ems-driver-sdm630 \
//!  -p ems-driver-ina226 && cargo bench --profile edge -p ems-agent --bench footprint`
//! (`EMS_BENCH_SECS` sets the duration, default 600 s). With `--profile release` in both
//! commands it measures the speed-optimised build instead.

#[path = "../tests/all/common/mod.rs"]
mod common;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::cloud::{Cloud, stored_seconds};
use ems_sim::site::{SimOptions, SimSite};

fn build_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().and_then(|p| p.parent()).unwrap().to_path_buf();
    for name in ["sunspec", "sdm630", "ina226"] {
        let so = dir.join(format!("libems_driver_{name}.so"));
        assert!(
            so.is_file(),
            "{} missing: build the driver plugins with the same profile first (see the top of \
             this file)",
            so.display()
        );
    }
    dir
}

fn proc_status(pid: u32, key: &str) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    text.lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// utime + stime in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = text.rsplit(')').next().unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    f.get(11).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
        + f.get(12).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let secs: u64 = std::env::var("EMS_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(600);
    let dir = tempfile::tempdir().unwrap();
    let with_uplink = std::env::var("EMS_BENCH_UPLINK").map_or(true, |v| v != "0");
    let cloud = if with_uplink {
        let db_url = ems_testkit::pg::fresh_database().await;
        let cloud = Cloud::self_signed(&db_url, dir.path()).await;
        let uplink = cloud.uplink_section("bench", dir.path(), "").await;
        Some((cloud, db_url, uplink))
    } else {
        None
    };
    let uplink_toml = cloud.as_ref().map_or("", |(_, _, toml)| toml.as_str());
    let metrics_addr = std::env::var("EMS_BENCH_METRICS")
        .is_ok_and(|v| v == "1")
        .then(|| {
            // A free port, given up again for the agent to bind.
            let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            probe.local_addr().unwrap()
        });
    let metrics_toml =
        metrics_addr.map_or(String::new(), |a| format!("[metrics]\nlisten = \"{a}\"\n"));
    let sim = SimSite::start(SimOptions::new(dir.path().join("sim")))
        .await
        .unwrap();
    let config = dir.path().join("agent.toml");
    std::fs::write(
        &config,
        format!(
            r#"device_id = "bench"
data_dir = "{data}"
driver_dir = "{drivers}"
[buses.rs485]
kind = "rtu"
port = "{port}"
baud = 19200
[buses.i2c]
kind = "i2c-socket"
path = "{i2c}"
[devices.inverter]
driver = "sunspec"
bus = "rs485"
unit = 1
roles = ["inverter", "battery"]
[devices.grid_meter]
driver = "sdm630"
bus = "rs485"
unit = 2
roles = ["grid_meter"]
[devices.shunt]
driver = "ina226"
bus = "i2c"
address = 0x40
roles = ["battery_meter"]
options = {{ shunt_ohms = 0.001, max_current_a = 80.0, voltage_divider = 2.0 }}
{uplink_toml}
{metrics_toml}
"#,
            data = dir.path().join("data").display(),
            drivers = build_dir().display(),
            port = sim.rs485_path.display(),
            i2c = sim.i2c_path.display(),
        ),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_ems-agent"))
        .args(["--config", config.to_str().unwrap(), "run"])
        .env("EMS_LOG", "warn")
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    // Warm-up: discovery and the first cycles are not steady state.
    tokio::time::sleep(Duration::from_secs(10)).await;
    let requests0 = sim.state().stats.requests;
    let ticks0 = cpu_ticks(pid);
    let t0 = Instant::now();
    let mut rss_max = 0;
    let mut rss_samples = vec![];
    let mut scrapes = 0u64;
    let mut scrape_bytes = 0;
    while t0.elapsed() < Duration::from_secs(secs) {
        tokio::time::sleep(Duration::from_secs(5)).await;
        if let Some(addr) = metrics_addr {
            let body = reqwest::get(format!("http://{addr}/metrics"))
                .await
                .and_then(|r| r.error_for_status())
                .expect("GET /metrics")
                .text()
                .await
                .unwrap();
            assert!(body.contains("ems_agent_cycles_total"), "{body}");
            scrapes += 1;
            scrape_bytes = body.len();
        }
        let rss = proc_status(pid, "VmRSS:");
        rss_max = rss_max.max(rss);
        rss_samples.push(rss);
    }
    let elapsed = t0.elapsed().as_secs_f64();
    let ticks = cpu_ticks(pid) - ticks0;
    let requests = sim.state().stats.requests - requests0;
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let cpu_pct = ticks as f64 / hz / elapsed * 100.0;
    let rss_last = *rss_samples.last().unwrap_or(&0);
    let hwm = proc_status(pid, "VmHWM:");
    child.kill().unwrap();
    let _ = child.wait();

    let per_cycle = requests as f64 / elapsed;
    // Minimum per 1 Hz cycle on the RS-485 bus: SunSpec models 103+124+802 are one contiguous
    // block of 142 registers (40070..40211) = 2 reads at the 125-register limit; the SDM630's
    // values 0x0000..0x004B = 1 read; the setpoint = 1 write (OutWRte and InWRte; the driver
    // writes the revert timeout and StorCtl_Mod only when the device holds other values).
    let minimum = 4.0;
    let build_dir = build_dir();
    let profile = build_dir
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("?");
    println!("agent footprint over {elapsed:.0} s at 1 Hz, 3 devices (profile `{profile}`)");
    println!(
        "  RSS: last {rss_last} kB, max sampled {rss_max} kB, high-water {hwm} kB (target <= 10240 kB)"
    );
    println!("  CPU: {cpu_pct:.2} % of one core (target <= 1 %)");
    match &cloud {
        Some((_, db_url, _)) => {
            let stored = stored_seconds(db_url, "bench").await.len();
            println!(
                "  uplink: wss:// to ems-cloud, {stored} packets stored over {:.0} s",
                elapsed + 10.0
            );
        }
        None => println!("  uplink: off (EMS_BENCH_UPLINK=0)"),
    }
    match metrics_addr {
        Some(addr) => println!(
            "  metrics: on at {addr}, {scrapes} scrapes of GET /metrics, the last {scrape_bytes} bytes"
        ),
        None => println!("  metrics: off (EMS_BENCH_METRICS=1 turns them on)"),
    }
    println!(
        "  RS-485 transactions per cycle: {per_cycle:.2} measured vs {minimum:.0} minimum (ratio {:.2})",
        per_cycle / minimum
    );
}
