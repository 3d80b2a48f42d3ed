//! The spec's three JSON examples, read from the spec document itself with their `//` comments
//! stripped, parse into the typed messages and serialise back to the same JSON values.

use ems_protocol::{
    Command, CommandAction, Downstream, Mode, State, TargetMode, Telemetry, Upstream,
};
use serde_json::Value;

const SPEC: &str = include_str!("../../../shared/spec/communication-interface.md");

/// The ```json blocks of the spec, in order, with `// ...` comments removed.
fn spec_json_blocks() -> Vec<String> {
    let mut blocks = Vec::new();
    let mut rest = SPEC;
    while let Some(start) = rest.find("```json") {
        let after = &rest[start + "```json".len()..];
        let end = after.find("```").expect("closed code block");
        let block: String = after[..end]
            .lines()
            .map(|line| match line.find("//") {
                Some(i) => &line[..i],
                None => line,
            })
            .collect::<Vec<_>>()
            .join("\n");
        blocks.push(block);
        rest = &after[end + 3..];
    }
    blocks
}

/// JSON value equality, with numbers compared by value: `50.0` and `50` are the same JSON number
/// (RFC 8259 has one number type), which `serde_json::Value`'s `==` does not consider.
fn same_json(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same_json(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| same_json(v, w)))
        }
        _ => a == b,
    }
}

#[test]
fn number_comparison_is_by_value_but_still_strict() {
    assert!(same_json(
        &serde_json::json!({"f": 50.0}),
        &serde_json::json!({"f": 50})
    ));
    assert!(!same_json(
        &serde_json::json!({"f": 50.5}),
        &serde_json::json!({"f": 50})
    ));
    assert!(!same_json(
        &serde_json::json!({"f": 1}),
        &serde_json::json!({"g": 1})
    ));
}

#[test]
fn the_spec_has_three_examples() {
    assert_eq!(spec_json_blocks().len(), 3);
}

#[test]
fn telemetry_example_round_trips() {
    let text = &spec_json_blocks()[0];
    let packet = Telemetry::parse(text).expect("spec telemetry parses");
    assert_eq!(packet.device_id, "ems_001");
    assert_eq!(packet.timestamp.to_string(), "2026-01-31T12:00:01Z");
    assert_eq!(packet.system_status.state, State::Charging);
    assert_eq!(packet.system_status.mode, Mode::Auto);
    assert!(packet.system_status.error_flags.is_empty());
    assert_eq!(packet.system_status.wifi_strength, Some(-45));
    assert_eq!(packet.battery.current, Some(10.5));
    assert_eq!(packet.grid.power, Some(-200.0));

    let original: Value = serde_json::from_str(text).unwrap();
    let again: Value = serde_json::from_str(&packet.to_json()).unwrap();
    assert!(same_json(&again, &original), "{again} != {original}");

    match ems_protocol::parse_upstream(text).unwrap() {
        Upstream::Telemetry(t) => assert_eq!(t, packet),
        other => panic!("expected telemetry, got {other:?}"),
    }
}

#[test]
fn set_mode_example_round_trips() {
    let text = &spec_json_blocks()[1];
    let command = Command::parse(text).expect("spec SET_MODE parses");
    assert_eq!(command.command_id, "cmd_8293");
    assert_eq!(
        command.action,
        CommandAction::SetMode {
            target_mode: TargetMode::ManualDischarge,
            target_power: Some(500.0),
            duration_s: None
        }
    );
    let original: Value = serde_json::from_str(text).unwrap();
    let again: Value = serde_json::from_str(&command.to_json()).unwrap();
    assert!(same_json(&again, &original), "{again} != {original}");
}

#[test]
fn reset_error_example_round_trips() {
    let text = &spec_json_blocks()[2];
    let command = Command::parse(text).expect("spec RESET_ERROR parses");
    assert_eq!(command.action, CommandAction::ResetError);
    let original: Value = serde_json::from_str(text).unwrap();
    let again: Value = serde_json::from_str(&command.to_json()).unwrap();
    assert!(same_json(&again, &original), "{again} != {original}");
    assert!(matches!(
        ems_protocol::parse_downstream(text).unwrap(),
        Downstream::Command(_)
    ));
}
