//! `ems-agent probe` with the grid meter read through the `modbus-map` driver and the shipped
//! SDM630 map: the real binary polls ems-sim once and prints each device's readings, and for a
//! register-map device what the map says of itself: its name, its source document and how far it
//! is checked ("document": from the vendor's document, tested on ems-sim only).

use crate::common;

use std::process::Stdio;

use common::ModbusLink;
use ems_sim::site::{SimOptions, SimSite};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_prints_the_maps_honesty_mark() {
    let dir = tempfile::tempdir().unwrap();
    let sim = SimSite::start(SimOptions::new(dir.path().join("sim")))
        .await
        .expect("start ems-sim");
    let map = concat!(env!("CARGO_MANIFEST_DIR"), "/../config/devices/sdm630.toml");
    let text = common::agent_toml(&sim, dir.path(), ModbusLink::Rtu, "").replace(
        "[devices.grid_meter]\ndriver = \"sdm630\"",
        &format!("[devices.grid_meter]\ndriver = \"modbus-map\"\noptions = {{ map = \"{map}\" }}"),
    );
    assert!(
        text.contains("modbus-map"),
        "the meter goes through the map"
    );
    let config = dir.path().join("agent.toml");
    std::fs::write(&config, text).unwrap();
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_ems-agent"))
        .arg("--config")
        .arg(&config)
        .arg("probe")
        .env("EMS_LOG", "warn")
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(std::time::Duration::from_secs(60), out)
        .await
        .expect("probe ends")
        .expect("probe runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let meter = &report["devices"]["grid_meter"];
    assert!(meter["grid_power_w"].is_number(), "{meter}");
    assert_eq!(meter["map"]["name"], "Eastron SDM630", "{meter}");
    assert_eq!(meter["map"]["checked"], "document", "{meter}");
    assert!(
        meter["map"]["source"]
            .as_str()
            .unwrap()
            .contains("SDM630-Modbus V2"),
        "{meter}"
    );
    // A device with its own driver has no map section.
    assert!(report["devices"]["inverter"].get("map").is_none());
}
