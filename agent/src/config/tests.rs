use super::*;

fn parse(text: &str) -> Result<AgentConfig, ConfigError> {
    AgentConfig::from_toml_str(text, "test.toml")
}

/// A valid site: a SunSpec inverter on RS-485 and an INA226 battery meter on I2C. Tests change
/// it with `replace` or add sections after it (the devices tests too).
pub(crate) const BASE: &str = r#"
device_id = "site_1"
[buses.rs485]
kind = "rtu"
port = "/dev/ttyUSB0"
[buses.i2c]
kind = "i2c"
device = "/dev/i2c-1"
[devices.inv]
driver = "sunspec"
bus = "rs485"
unit = 1
roles = ["inverter", "battery"]
[devices.meter]
driver = "ina226"
bus = "i2c"
address = 0x40
roles = ["battery_meter"]
"#;

#[test]
fn the_embedded_default_config_parses_and_validates() {
    let c = parse(DEFAULT_CONFIG).expect("default config is valid");
    assert_eq!(c.device_id, "ems_001");
    assert_eq!(c.devices.len(), 2);
}

#[test]
fn the_example_configs_parse() {
    for (name, text) in [
        (
            "pi-rs485-i2c.toml",
            include_str!("../../../config/pi-rs485-i2c.toml"),
        ),
        ("sim.toml", include_str!("../../../config/sim.toml")),
    ] {
        AgentConfig::from_toml_str(text, name).unwrap_or_else(|e| panic!("{e}"));
    }
}

#[test]
fn base_is_valid() {
    parse(BASE).unwrap();
}

fn expect_err(text: &str, key: &str, reason_part: &str) {
    let e = parse(text).unwrap_err();
    assert_eq!(e.key, key, "{e}");
    assert!(e.reason.contains(reason_part), "{e}");
    assert_eq!(e.source_name, "test.toml");
}

#[test]
fn unknown_key_is_named() {
    expect_err(
        &format!("{BASE}\n[control]\nramp = 5\n"),
        "control.ramp",
        "unknown field",
    );
}

#[test]
fn bad_unit_type_is_named() {
    let text = BASE.replace("unit = 1", "unit = \"one\"");
    expect_err(&text, "devices.inv.unit", "invalid type");
}

#[test]
fn unit_ids_are_checked_per_transport() {
    let text = BASE.replace("unit = 1", "unit = 255");
    expect_err(&text, "devices.inv.unit", "1 to 247 on a serial bus");
    let tcp = text.replace(
        "kind = \"rtu\"\nport = \"/dev/ttyUSB0\"",
        "kind = \"tcp\"\naddress = \"192.0.2.10:502\"",
    );
    assert_ne!(tcp, text);
    let c = parse(&tcp).expect("unit 255 over TCP");
    assert_eq!(c.devices["inv"].unit, Some(255));
    expect_err(
        &tcp.replace("unit = 255", "unit = 0"),
        "devices.inv.unit",
        "1 to 255 on a TCP bus",
    );
}

#[test]
fn device_on_missing_bus_is_named() {
    let text = BASE.replace("bus = \"rs485\"", "bus = \"rs232\"");
    expect_err(&text, "devices.inv.bus", "does not exist");
}

#[test]
fn two_devices_at_one_address_are_refused() {
    let text = format!(
        "{BASE}\n[devices.other]\ndriver = \"sdm630\"\nbus = \"rs485\"\nunit = 1\nroles = [\"grid_meter\"]\n"
    );
    let e = parse(&text).unwrap_err();
    assert!(e.reason.contains("already uses address 1"), "{e}");
}

#[test]
fn missing_inverter_role_is_refused() {
    let text = BASE.replace(
        "roles = [\"inverter\", \"battery\"]",
        "roles = [\"battery\"]",
    );
    expect_err(&text, "devices", "inverter");
}

#[test]
fn inconsistent_limits_are_refused() {
    expect_err(
        &format!("{BASE}\n[battery]\nsoc_min_pct = 96\n"),
        "battery.soc_min_pct",
        "below soc_max_pct",
    );
    expect_err(
        &format!("{BASE}\n[battery]\novervoltage_v = 50\n"),
        "battery.charge_voltage_max_v",
        "below",
    );
}

#[test]
fn i2c_address_out_of_range_is_refused() {
    let text = BASE.replace("address = 0x40", "address = 0x78");
    expect_err(&text, "devices.meter.address", "7-bit");
}

#[test]
fn missing_file_is_named() {
    let e = AgentConfig::load(std::path::Path::new("/nonexistent/agent.toml")).unwrap_err();
    assert_eq!(e.source_name, "/nonexistent/agent.toml");
    assert!(e.reason.contains("not found"));
}

fn with_uplink(url: &str, extra: &str) -> String {
    format!("{BASE}\n[uplink]\nurl = \"{url}\"\ntoken_file = \"/etc/ems/device.token\"\n{extra}\n")
}

#[test]
fn plain_ws_is_for_this_machine_only() {
    for url in [
        "ws://127.0.0.1:8000",
        "ws://127.8.9.10",
        "ws://localhost:8000/",
        "ws://LOCALHOST",
        "ws://[::1]:8000",
        "wss://cloud.example.com",
        "wss://192.0.2.10:8443",
    ] {
        parse(&with_uplink(url, "")).unwrap_or_else(|e| panic!("{url}: {e}"));
    }
    for url in [
        "ws://192.0.2.10:8000",
        "ws://cloud.example.com",
        "ws://0.0.0.0:8000",
        "ws://[2001:db8::1]:8000",
        // The host is what the connection would use: after the user info.
        "ws://127.0.0.1@cloud.example.com",
        "ws://localhost.example.com",
    ] {
        let e = parse(&with_uplink(url, "")).unwrap_err();
        assert_eq!(
            (e.key.as_str(), e.source_name.as_str()),
            ("uplink.url", "test.toml"),
            "{url}: {e}"
        );
        assert!(
            e.reason.contains("not this machine")
                && e.reason.contains("unencrypted")
                && e.reason.contains("uplink.allow_insecure = true"),
            "{url}: {e}"
        );
    }
}

#[test]
fn allow_insecure_permits_plain_ws_to_another_host() {
    let c = parse(&with_uplink(
        "ws://192.0.2.10:8000",
        "allow_insecure = true",
    ))
    .unwrap();
    assert!(c.uplink.allow_insecure);
    // Off by default, in the embedded default config too.
    assert!(!parse(BASE).unwrap().uplink.allow_insecure);
    assert!(!parse(DEFAULT_CONFIG).unwrap().uplink.allow_insecure);
}

#[test]
fn metrics_listen_must_be_an_address() {
    expect_err(
        &format!("{BASE}\n[metrics]\nlisten = \"localhost\"\n"),
        "metrics.listen",
        "not an ip:port address",
    );
    let c = parse(&format!("{BASE}\n[metrics]\nlisten = \"127.0.0.1:9101\"\n")).unwrap();
    assert_eq!(c.metrics.listen.as_deref(), Some("127.0.0.1:9101"));
    assert_eq!(parse(BASE).unwrap().metrics.listen, None);
}

#[test]
fn the_strategy_keys_parse_and_reach_the_limits() {
    let c = parse(&format!(
        "{BASE}\n[strategy]\nexport_limit_w = 2800\nbackup_reserve_pct = 30\n[control]\nresponse_time_s = 2\n"
    ))
    .unwrap();
    let limits = c.limits();
    assert_eq!(limits.strategy.export_limit_w, Some(2800.0));
    assert_eq!(limits.strategy.backup_reserve_pct, Some(30.0));
    assert_eq!(limits.strategy.import_limit_w, None);
    assert_eq!(limits.control.response_time_s, 2.0);
}

#[test]
fn strategy_settings_that_cannot_work_are_named() {
    expect_err(
        &format!("{BASE}\n[strategy]\nbackup_reserve_pct = 5\n"),
        "strategy.backup_reserve_pct",
        "between battery.soc_min_pct",
    );
    expect_err(
        &format!("{BASE}\n[strategy]\nbackup_reserve_pct = 12\n"),
        "strategy.reserve_hysteresis_pct",
        "above battery.soc_min_pct",
    );
    expect_err(
        &format!("{BASE}\n[strategy]\nimport_limit_w = 5000\nrecharge_below_w = 6000\n"),
        "strategy.recharge_below_w",
        "below import_limit_w",
    );
    expect_err(
        &format!("{BASE}\n[strategy]\nimport_limit_w = 5000\ntarget_grid_w = 100\n"),
        "strategy.target_grid_w",
        "not used with import_limit_w",
    );
    expect_err(
        &format!("{BASE}\n[strategy]\nexport_limit_w = 1000\ntarget_grid_w = -2000\n"),
        "strategy.target_grid_w",
        "exports more than export_limit_w",
    );
    expect_err(
        &format!("{BASE}\n[strategy]\nexport_limit_w = -1\n"),
        "strategy.export_limit_w",
        ">= 0",
    );
    expect_err(
        &format!("{BASE}\n[strategy]\nbackup_reserve_pct = 30\nreserve_charge_power_w = 9000\n"),
        "strategy.reserve_charge_power_w",
        "battery.max_charge_power_w",
    );
    expect_err(
        &format!("{BASE}\n[strategy]\nimport_limit = 5000\n"),
        "strategy.import_limit",
        "unknown field",
    );
    expect_err(
        &format!("{BASE}\n[control]\ncorrection_gain = 1.5\n"),
        "control.correction_gain",
        "at most 1",
    );
    expect_err(
        &format!("{BASE}\n[control]\nresponse_time_s = 30\n"),
        "control.response_time_s",
        "at most 10 s",
    );
}

#[test]
fn the_default_configs_commented_strategy_examples_validate_together() {
    let text = DEFAULT_CONFIG
        .replace("# export_limit_w =", "export_limit_w =")
        .replace("# import_limit_w =", "import_limit_w =")
        .replace("# backup_reserve_pct =", "backup_reserve_pct =");
    assert_ne!(text, DEFAULT_CONFIG);
    let c = parse(&text).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.strategy.export_limit_w, Some(2800.0));
    assert_eq!(c.strategy.import_limit_w, Some(6000.0));
    assert_eq!(c.strategy.backup_reserve_pct, Some(30.0));
}
