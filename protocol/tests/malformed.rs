//! Malformed input of every kind gives an error that names the field, and never a panic.

use ems_protocol::{Command, ProtocolError, Telemetry, parse_downstream, parse_upstream};
use serde_json::{Value, json};

fn good_telemetry() -> Value {
    json!({
        "device_id": "ems_001",
        "timestamp": "2026-01-31T12:00:01Z",
        "system_status": {"state": "CHARGING", "mode": "AUTO", "error_flags": [], "wifi_strength": -45},
        "battery": {"voltage": 53.2, "current": 10.5, "power": 558.6, "soc": 85},
        "grid": {"voltage": 230.1, "power": -200, "frequency": 50.0}
    })
}

fn with(path: &[&str], value: Value) -> String {
    let mut v = good_telemetry();
    let mut cur = &mut v;
    for key in &path[..path.len() - 1] {
        cur = cur.get_mut(*key).unwrap();
    }
    cur[path[path.len() - 1]] = value;
    v.to_string()
}

fn without(path: &[&str]) -> String {
    let mut v = good_telemetry();
    let mut cur = &mut v;
    for key in &path[..path.len() - 1] {
        cur = cur.get_mut(*key).unwrap();
    }
    cur.as_object_mut().unwrap().remove(path[path.len() - 1]);
    v.to_string()
}

fn field_of(text: &str) -> String {
    Telemetry::parse(text).unwrap_err().field().to_string()
}

#[test]
fn soc_outside_range_names_the_field() {
    assert_eq!(
        field_of(&with(&["battery", "soc"], json!(100.5))),
        "battery.soc"
    );
    assert_eq!(
        field_of(&with(&["battery", "soc"], json!(-1))),
        "battery.soc"
    );
}

#[test]
fn missing_required_fields_name_the_field() {
    assert_eq!(field_of(&without(&["battery", "voltage"])), "battery");
    let err = Telemetry::parse(&without(&["battery", "voltage"])).unwrap_err();
    assert!(err.to_string().contains("missing field `voltage`"), "{err}");
    let err = Telemetry::parse(&without(&["grid"])).unwrap_err();
    assert!(err.to_string().contains("missing field `grid`"), "{err}");
}

#[test]
fn null_measurements_are_unknown_not_zero() {
    let packet = Telemetry::parse(&with(&["battery", "soc"], Value::Null)).unwrap();
    assert_eq!(packet.battery.soc, None);
    assert!(packet.to_json().contains(r#""soc":null"#));
}

#[test]
fn wrong_types_name_the_field() {
    assert_eq!(
        field_of(&with(&["battery", "voltage"], json!("53.2"))),
        "battery.voltage"
    );
    assert_eq!(
        field_of(&with(&["system_status", "state"], json!("SLEEPING"))),
        "system_status.state"
    );
    assert_eq!(
        field_of(&with(&["system_status", "error_flags"], json!("OVERHEAT"))),
        "system_status.error_flags"
    );
    assert_eq!(
        field_of(&with(&["timestamp"], json!(1769860801))),
        "timestamp"
    );
    assert_eq!(
        field_of(&with(&["device_id"], json!("bad id/../x"))),
        "device_id"
    );
}

#[test]
fn device_id_must_match_the_connection() {
    let packet = Telemetry::parse(&good_telemetry().to_string()).unwrap();
    let err = packet.validate_for("ems_002").unwrap_err();
    assert_eq!(err.field(), "device_id");
    packet.validate_for("ems_001").unwrap();
}

#[test]
fn huge_numbers_are_refused() {
    let text = good_telemetry().to_string().replace("53.2", "1e400");
    assert!(matches!(
        Telemetry::parse(&text),
        Err(ProtocolError::Malformed { .. })
    ));
    let cmd = r#"{"command_id":"c","action":"SET_MODE","payload":{"target_mode":"MANUAL_CHARGE","target_power":1e308}}"#;
    assert_eq!(
        Command::parse(cmd).unwrap_err().field(),
        "payload.target_power"
    );
}

#[test]
fn truncated_input_at_every_length_is_an_error() {
    let text = good_telemetry().to_string();
    for cut in 0..text.len() {
        assert!(
            parse_upstream(&text[..cut]).is_err(),
            "prefix of {cut} bytes parsed"
        );
    }
    let cmd = r#"{"command_id":"cmd_8293","action":"SET_MODE","payload":{"target_mode":"MANUAL_DISCHARGE","target_power":500}}"#;
    for cut in 0..cmd.len() {
        assert!(
            parse_downstream(&cmd[..cut]).is_err(),
            "prefix of {cut} bytes parsed"
        );
    }
}

#[test]
fn deep_nesting_is_an_error_not_a_stack_overflow() {
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    assert!(parse_upstream(&deep).is_err());
    let nested_payload = format!(
        r#"{{"command_id":"c","action":"SET_MODE","payload":{}1{}}}"#,
        "{\"a\":".repeat(10_000),
        "}".repeat(10_000)
    );
    assert!(parse_downstream(&nested_payload).is_err());
}

#[test]
fn one_megabyte_strings_are_refused_without_panic() {
    let big = "A".repeat(1 << 20);
    assert_eq!(field_of(&with(&["device_id"], json!(big))), "device_id");
    let flag_err =
        Telemetry::parse(&with(&["system_status", "error_flags"], json!([big]))).unwrap_err();
    assert_eq!(flag_err.field(), "system_status.error_flags[0]");
    let cmd = format!(r#"{{"command_id":"{big}","action":"RESET_ERROR","payload":{{}}}}"#);
    assert_eq!(Command::parse(&cmd).unwrap_err().field(), "command_id");
}

#[test]
fn not_json_and_wrong_top_level_types_are_errors() {
    for text in [
        "",
        "null",
        "42",
        "\"x\"",
        "[]",
        "{",
        "{}",
        "\u{0}",
        "{\"type\":\"NOPE\"}",
    ] {
        assert!(parse_upstream(text).is_err(), "{text:?}");
        assert!(parse_downstream(text).is_err(), "{text:?}");
    }
    assert!(parse_upstream("{} trailing").is_err());
}

#[test]
fn answers_and_acks_parse_and_rejections_need_a_reason() {
    let up = parse_upstream(r#"{"type":"COMMAND_ANSWER","command_id":"c1","status":"ACCEPTED"}"#)
        .unwrap();
    assert!(matches!(up, ems_protocol::Upstream::CommandAnswer(_)));
    let err = parse_upstream(r#"{"type":"COMMAND_ANSWER","command_id":"c1","status":"REJECTED"}"#)
        .unwrap_err();
    assert_eq!(err.field(), "reason");
    let down =
        parse_downstream(r#"{"type":"TELEMETRY_ACK","timestamps":["2026-01-31T12:00:01Z"]}"#)
            .unwrap();
    assert!(matches!(down, ems_protocol::Downstream::TelemetryAck(_)));
}
