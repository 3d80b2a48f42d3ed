//! Downstream control commands: `SET_MODE` and `RESET_ERROR`.
//!
//! Commands are parsed strictly: an unknown `action`, an unknown field inside `payload` (a typo
//! such as `targt_power`) or a missing required field is refused, because a command that is half
//! understood must not move a battery. Unknown fields beside `command_id`/`action`/`payload` are
//! tolerated so the envelope can grow.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

use crate::enums::TargetMode;
use crate::error::{from_str_with_path, from_value_with_path};
use crate::num::opt_f64;
use crate::{ProtocolError, validate_id};

/// Largest `target_power` a command may carry, W. A sanity bound on the wire; the agent enforces
/// its own, much lower, configured limits.
pub const MAX_TARGET_POWER_W: f64 = 1_000_000.0;

#[derive(Debug, Clone, PartialEq)]
pub struct Command {
    /// Unique per command; answers and the cloud's records refer to it.
    pub command_id: String,
    pub action: CommandAction,
}

#[derive(Debug, Clone, PartialEq)]
pub enum CommandAction {
    /// Switch strategy. `target_power` (W, ≥ 0, magnitude; the mode gives the direction) is
    /// required for `MANUAL_CHARGE` and `MANUAL_DISCHARGE` and refused for the other modes.
    SetMode {
        target_mode: TargetMode,
        target_power: Option<f64>,
    },
    /// Leave the latched ERROR state, if no fault remains.
    ResetError,
}

impl CommandAction {
    /// The wire name of the action.
    pub fn name(&self) -> &'static str {
        match self {
            CommandAction::SetMode { .. } => "SET_MODE",
            CommandAction::ResetError => "RESET_ERROR",
        }
    }
}

impl Command {
    pub fn set_mode(command_id: impl Into<String>, mode: TargetMode, power_w: Option<f64>) -> Self {
        Command {
            command_id: command_id.into(),
            action: CommandAction::SetMode {
                target_mode: mode,
                target_power: power_w,
            },
        }
    }

    pub fn reset_error(command_id: impl Into<String>) -> Self {
        Command {
            command_id: command_id.into(),
            action: CommandAction::ResetError,
        }
    }

    /// Parses and validates one command.
    pub fn parse(text: &str) -> Result<Self, ProtocolError> {
        let raw: RawCommand = from_str_with_path(text)?;
        let command = Command::from_raw(raw)?;
        command.validate()?;
        Ok(command)
    }

    /// Parses and validates a command that is already a JSON value (e.g. a REST body).
    pub fn from_value(value: Value) -> Result<Self, ProtocolError> {
        let raw: RawCommand = from_value_with_path(value, "")?;
        let command = Command::from_raw(raw)?;
        command.validate()?;
        Ok(command)
    }

    /// The rules beyond JSON shape: id syntax; `target_power` finite, not negative, bounded, and
    /// present exactly when the mode uses it.
    pub fn validate(&self) -> Result<(), ProtocolError> {
        validate_id("command_id", &self.command_id)?;
        if let CommandAction::SetMode {
            target_mode,
            target_power,
        } = &self.action
        {
            match (target_mode.needs_power(), target_power) {
                (true, None) => {
                    return Err(ProtocolError::invalid(
                        "payload.target_power",
                        format!("is required for {target_mode}"),
                    ));
                }
                (false, Some(_)) => {
                    return Err(ProtocolError::invalid(
                        "payload.target_power",
                        format!(
                            "is not used by {target_mode}; only MANUAL_CHARGE and MANUAL_DISCHARGE take a power"
                        ),
                    ));
                }
                (true, Some(p)) => {
                    if !p.is_finite() {
                        return Err(ProtocolError::invalid(
                            "payload.target_power",
                            "must be a finite number",
                        ));
                    }
                    if *p < 0.0 {
                        return Err(ProtocolError::invalid(
                            "payload.target_power",
                            format!(
                                "{p} W is negative; give the magnitude, the mode sets the direction"
                            ),
                        ));
                    }
                    if *p > MAX_TARGET_POWER_W {
                        return Err(ProtocolError::invalid(
                            "payload.target_power",
                            format!("{p} W is above the protocol bound of {MAX_TARGET_POWER_W} W"),
                        ));
                    }
                }
                (false, None) => {}
            }
        }
        Ok(())
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("commands always serialise")
    }

    fn from_raw(raw: RawCommand) -> Result<Self, ProtocolError> {
        let action = match raw.action.as_str() {
            "SET_MODE" => {
                let payload = raw.payload.unwrap_or(Value::Object(Map::new()));
                let p: SetModePayload = from_value_with_path(payload, "payload")?;
                CommandAction::SetMode {
                    target_mode: p.target_mode,
                    target_power: p.target_power,
                }
            }
            "RESET_ERROR" => {
                match raw.payload {
                    None | Some(Value::Null) => {}
                    Some(Value::Object(m)) if m.is_empty() => {}
                    Some(other) => {
                        return Err(ProtocolError::invalid(
                            "payload",
                            format!("RESET_ERROR takes an empty payload {{}}, got {other}"),
                        ));
                    }
                }
                CommandAction::ResetError
            }
            other => {
                return Err(ProtocolError::invalid(
                    "action",
                    format!("unknown action {other:?}, expected SET_MODE or RESET_ERROR"),
                ));
            }
        };
        Ok(Command {
            command_id: raw.command_id,
            action,
        })
    }
}

/// The envelope as it arrives, before the action decides the payload's shape.
#[derive(Deserialize)]
struct RawCommand {
    command_id: String,
    action: String,
    #[serde(default)]
    payload: Option<Value>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SetModePayload {
    target_mode: TargetMode,
    #[serde(
        default,
        serialize_with = "opt_f64",
        skip_serializing_if = "Option::is_none"
    )]
    target_power: Option<f64>,
}

#[derive(Serialize)]
struct Envelope<'a, P> {
    command_id: &'a str,
    action: &'static str,
    payload: P,
}

impl Serialize for Command {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match &self.action {
            CommandAction::SetMode {
                target_mode,
                target_power,
            } => Envelope {
                command_id: &self.command_id,
                action: self.action.name(),
                payload: SetModePayload {
                    target_mode: *target_mode,
                    target_power: *target_power,
                },
            }
            .serialize(s),
            CommandAction::ResetError => Envelope {
                command_id: &self.command_id,
                action: self.action.name(),
                payload: Map::new(),
            }
            .serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for Command {
    /// Shape only; call [`Command::validate`] (or use [`Command::parse`]) for the value rules.
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = RawCommand::deserialize(d)?;
        Command::from_raw(raw).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_discharge_requires_power() {
        let err = Command::parse(
            r#"{"command_id":"c1","action":"SET_MODE","payload":{"target_mode":"MANUAL_DISCHARGE"}}"#,
        )
        .unwrap_err();
        assert_eq!(err.field(), "payload.target_power");
    }

    #[test]
    fn negative_power_is_refused() {
        let err = Command::parse(
            r#"{"command_id":"c1","action":"SET_MODE","payload":{"target_mode":"MANUAL_CHARGE","target_power":-5}}"#,
        )
        .unwrap_err();
        assert!(err.to_string().contains("negative"), "{err}");
    }

    #[test]
    fn typo_in_payload_is_refused_with_its_path() {
        let err = Command::parse(
            r#"{"command_id":"c1","action":"SET_MODE","payload":{"target_mode":"MANUAL_CHARGE","targt_power":5}}"#,
        )
        .unwrap_err();
        assert_eq!(err.field(), "payload.targt_power", "{err}");
        assert!(err.to_string().contains("targt_power"), "{err}");
    }

    #[test]
    fn unknown_action_is_named() {
        let err = Command::parse(r#"{"command_id":"c1","action":"SELF_DESTRUCT","payload":{}}"#)
            .unwrap_err();
        assert_eq!(err.field(), "action");
        assert!(err.to_string().contains("SELF_DESTRUCT"));
    }

    #[test]
    fn unknown_mode_has_payload_path() {
        let err = Command::parse(
            r#"{"command_id":"c1","action":"SET_MODE","payload":{"target_mode":"TURBO"}}"#,
        )
        .unwrap_err();
        assert_eq!(err.field(), "payload.target_mode", "{err}");
    }

    #[test]
    fn reset_error_payload_may_be_missing_but_not_full() {
        assert!(Command::parse(r#"{"command_id":"c1","action":"RESET_ERROR"}"#).is_ok());
        assert!(
            Command::parse(r#"{"command_id":"c1","action":"RESET_ERROR","payload":{"x":1}}"#)
                .is_err()
        );
    }
}
