//! Loading errors that name the device, and requests to a stopped poller.

use std::path::{Path, PathBuf};

use super::*;
use crate::config::AgentConfig;
use crate::config::tests::BASE;

/// `target/<profile>`, where `cargo build --workspace` puts the driver plugins.
fn built_drivers() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>");
    assert!(
        dir.join("libems_driver_ina226.so").is_file(),
        "build the workspace first (`cargo build --workspace`)"
    );
    dir.to_path_buf()
}

/// The config tests' site ([`BASE`]) with its plugins in `driver_dir` and the meter's
/// `roles = …` line (and options) replaced by `meter`.
fn config(driver_dir: &Path, meter: &str) -> AgentConfig {
    let text = BASE
        .replacen(
            "device_id = \"site_1\"\n",
            &format!(
                "device_id = \"site_1\"\ndriver_dir = \"{}\"\n",
                driver_dir.display()
            ),
            1,
        )
        .replacen("roles = [\"battery_meter\"]\n", &format!("{meter}\n"), 1);
    AgentConfig::from_toml_str(&text, "test.toml").unwrap_or_else(|e| panic!("{e}"))
}

fn load_err(config: &AgentConfig) -> LoadError {
    match load(config) {
        Ok(_) => panic!("loading should fail"),
        Err(e) => e,
    }
}

#[test]
fn a_missing_plugin_names_the_device_and_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let e = load_err(&config(dir.path(), r#"roles = ["battery_meter"]"#));
    assert!(
        matches!(&e, LoadError::Plugin { device, source: HostError::FileMissing { .. } } if device == "inv"),
        "{e:?}"
    );
    let text = e.to_string();
    assert!(
        text.starts_with(r#"device "inv": driver plugin "#),
        "{text}"
    );
    assert!(text.contains("libems_driver_sunspec.so"), "{text}");
}

#[test]
fn a_role_the_driver_does_not_offer_names_the_device_the_driver_and_the_role() {
    let e = load_err(&config(
        &built_drivers(),
        r#"roles = ["battery_meter", "pv_meter"]"#,
    ));
    assert!(
        matches!(&e, LoadError::Role { device, role: Role::PvMeter, .. } if device == "meter"),
        "{e:?}"
    );
    assert_eq!(
        e.to_string(),
        r#"device "meter": driver "ina226" cannot fill role PvMeter (it offers [BatteryMeter])"#
    );
}

#[test]
fn options_the_driver_refuses_name_the_device_and_its_options_table() {
    let e = load_err(&config(&built_drivers(), r#"roles = ["battery_meter"]"#));
    assert!(
        matches!(&e, LoadError::Options { device, source: HostError::Config { .. } } if device == "meter"),
        "{e:?}"
    );
    let text = e.to_string();
    assert!(
        text.starts_with(r#"device "meter" (devices.meter.options): driver `ina226`"#),
        "{text}"
    );
    assert!(text.contains("shunt_ohms"), "{text}");
}

#[tokio::test]
async fn a_setpoint_for_a_stopped_poller_names_the_device() {
    let (tx, rx) = mpsc::channel(1);
    drop(rx);
    let handle = DeviceHandle {
        name: "inv".into(),
        roles: vec![Role::Inverter],
        slot: Arc::default(),
        tx,
        setpoint: Arc::new(watch::channel(0.0).0),
    };
    let e = handle.set_power(500.0).await.unwrap_err();
    assert!(
        matches!(&e, DeviceError::Stopped { device } if device == "inv"),
        "{e:?}"
    );
    assert_eq!(e.to_string(), "device inv poller stopped");
}
