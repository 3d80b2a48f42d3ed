//! Downstream control commands: `SET_MODE`, `RESET_ERROR` and `SET_SCHEDULE` (an ems extension,
//! see [`crate::schedule`]).
//!
//! `SET_MODE` may carry a lease, `payload.duration_s` (an ems extension, see `docs/protocol.md`):
//! the manual mode holds for that many seconds and the agent then returns to AUTO by itself, so
//! a lost operator or cloud never leaves a battery discharging for good.
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
use crate::schedule::Schedule;
use crate::{ProtocolError, validate_id};

/// Largest `target_power` a command may carry, W. A sanity bound on the wire; the agent enforces
/// its own, much lower, configured limits.
pub const MAX_TARGET_POWER_W: f64 = 1_000_000.0;

/// Longest lease a `SET_MODE` may carry, s (one day). A manual mode meant to last longer is set
/// without a lease, deliberately.
pub const MAX_LEASE_S: u32 = 86_400;

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
    ///
    /// `duration_s` is the lease: the mode holds for that many whole seconds (1 to
    /// [`MAX_LEASE_S`]) from when the agent accepts it, then the agent returns to AUTO. `None`:
    /// the mode holds until the next `SET_MODE`. Only manual modes take one.
    SetMode {
        target_mode: TargetMode,
        target_power: Option<f64>,
        duration_s: Option<u32>,
    },
    /// Leave the latched ERROR state, if no fault remains.
    ResetError,
    /// Replace the device's schedule (an empty one clears it); see [`crate::schedule`].
    SetSchedule(Schedule),
}

impl CommandAction {
    /// The wire name of the action.
    pub fn name(&self) -> &'static str {
        match self {
            CommandAction::SetMode { .. } => "SET_MODE",
            CommandAction::ResetError => "RESET_ERROR",
            CommandAction::SetSchedule(_) => "SET_SCHEDULE",
        }
    }
}

impl Command {
    /// A `SET_MODE` without a lease: the mode holds until the next `SET_MODE`.
    pub fn set_mode(command_id: impl Into<String>, mode: TargetMode, power_w: Option<f64>) -> Self {
        Command {
            command_id: command_id.into(),
            action: CommandAction::SetMode {
                target_mode: mode,
                target_power: power_w,
                duration_s: None,
            },
        }
    }

    /// A `SET_MODE` whose manual mode lapses to AUTO after `duration_s` seconds.
    pub fn set_mode_with_lease(
        command_id: impl Into<String>,
        mode: TargetMode,
        power_w: Option<f64>,
        duration_s: u32,
    ) -> Self {
        Command {
            command_id: command_id.into(),
            action: CommandAction::SetMode {
                target_mode: mode,
                target_power: power_w,
                duration_s: Some(duration_s),
            },
        }
    }

    /// A `SET_SCHEDULE` carrying `schedule`.
    pub fn set_schedule(command_id: impl Into<String>, schedule: Schedule) -> Self {
        Command {
            command_id: command_id.into(),
            action: CommandAction::SetSchedule(schedule),
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
    /// present exactly when the mode uses it; `duration_s` 1 to [`MAX_LEASE_S`] and only on a
    /// manual mode.
    pub fn validate(&self) -> Result<(), ProtocolError> {
        validate_id("command_id", &self.command_id)?;
        if let CommandAction::SetMode {
            target_mode,
            target_power,
            duration_s,
        } = &self.action
        {
            validate_lease(*target_mode, *duration_s)?;
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
                let p: SetModePayloadIn = from_value_with_path(payload, "payload")?;
                CommandAction::SetMode {
                    target_mode: p.target_mode,
                    target_power: p.target_power,
                    duration_s: p.duration_s.as_ref().map(lease_seconds).transpose()?,
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
            "SET_SCHEDULE" => CommandAction::SetSchedule(Schedule::from_value(
                raw.payload.unwrap_or(Value::Object(Map::new())),
            )?),
            other => {
                return Err(ProtocolError::invalid(
                    "action",
                    format!(
                        "unknown action {other:?}, expected SET_MODE, RESET_ERROR or SET_SCHEDULE"
                    ),
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

/// A lease is whole seconds: written as an integer, or as a float with no fraction (`3.0`, as
/// some JSON writers put it). Anything else is refused here, naming the field; the range is
/// checked by [`validate_lease`].
fn lease_seconds(n: &serde_json::Number) -> Result<u32, ProtocolError> {
    let whole = match (n.as_u64(), n.as_f64()) {
        (Some(u), _) => Some(u),
        (None, Some(f)) if f.fract() == 0.0 && f >= 0.0 && f <= u32::MAX as f64 => Some(f as u64),
        _ => None,
    };
    whole.and_then(|u| u32::try_from(u).ok()).ok_or_else(|| {
        ProtocolError::invalid(
            "payload.duration_s",
            format!("{n} is not a whole number of seconds from 1 to {MAX_LEASE_S}"),
        )
    })
}

fn validate_lease(mode: TargetMode, duration_s: Option<u32>) -> Result<(), ProtocolError> {
    let Some(d) = duration_s else { return Ok(()) };
    if mode == TargetMode::Auto {
        return Err(ProtocolError::invalid(
            "payload.duration_s",
            "is not used by AUTO; a lease returns a manual mode to AUTO",
        ));
    }
    if d == 0 || d > MAX_LEASE_S {
        return Err(ProtocolError::invalid(
            "payload.duration_s",
            format!("{d} s is outside 1 to {MAX_LEASE_S} s"),
        ));
    }
    Ok(())
}

/// `SET_MODE`'s payload as it arrives; `duration_s` is kept as a JSON number so that a negative
/// or fractional lease is refused with a reason rather than a serde type error.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SetModePayloadIn {
    target_mode: TargetMode,
    #[serde(default)]
    target_power: Option<f64>,
    #[serde(default)]
    duration_s: Option<serde_json::Number>,
}

/// `SET_MODE`'s payload as it is written: optional fields only when present.
#[derive(Serialize)]
struct SetModePayloadOut {
    target_mode: TargetMode,
    #[serde(serialize_with = "opt_f64", skip_serializing_if = "Option::is_none")]
    target_power: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    duration_s: Option<u32>,
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
                duration_s,
            } => Envelope {
                command_id: &self.command_id,
                action: self.action.name(),
                payload: SetModePayloadOut {
                    target_mode: *target_mode,
                    target_power: *target_power,
                    duration_s: *duration_s,
                },
            }
            .serialize(s),
            CommandAction::ResetError => Envelope {
                command_id: &self.command_id,
                action: self.action.name(),
                payload: Map::new(),
            }
            .serialize(s),
            CommandAction::SetSchedule(schedule) => Envelope {
                command_id: &self.command_id,
                action: self.action.name(),
                payload: schedule.to_payload(),
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

    fn set_mode_with(duration: &str) -> Result<Command, ProtocolError> {
        Command::parse(&format!(
            r#"{{"command_id":"c1","action":"SET_MODE","payload":{{"target_mode":"MANUAL_DISCHARGE","target_power":500,"duration_s":{duration}}}}}"#
        ))
    }

    #[test]
    fn a_lease_is_parsed_and_written_back_only_when_present() {
        let c = set_mode_with("600").unwrap();
        assert_eq!(
            c,
            Command::set_mode_with_lease("c1", TargetMode::ManualDischarge, Some(500.0), 600)
        );
        assert!(
            c.to_json().contains(r#""duration_s":600"#),
            "{}",
            c.to_json()
        );
        assert_eq!(Command::parse(&c.to_json()).unwrap(), c);

        let plain = Command::set_mode("c2", TargetMode::ManualDischarge, Some(500.0));
        assert!(
            !plain.to_json().contains("duration_s"),
            "{}",
            plain.to_json()
        );
        assert_eq!(set_mode_with("null").unwrap().action, plain.action);
        // Integral floats are whole seconds too; the bounds are inclusive.
        assert!(set_mode_with("3.0").is_ok());
        assert!(set_mode_with("1").is_ok());
        assert!(set_mode_with("86400").is_ok());
    }

    #[test]
    fn a_lease_out_of_range_or_not_whole_is_refused_naming_the_field() {
        for bad in [
            "0",
            "-1",
            "-0.5",
            "2.5",
            "86401",
            "4294967296",
            "1e300",
            r#""600""#,
            "true",
        ] {
            let err = set_mode_with(bad).unwrap_err();
            assert_eq!(err.field(), "payload.duration_s", "{bad}: {err}");
        }
        assert!(
            set_mode_with("86401")
                .unwrap_err()
                .to_string()
                .contains("outside 1 to 86400 s")
        );
        assert!(
            set_mode_with("2.5")
                .unwrap_err()
                .to_string()
                .contains("not a whole number of seconds")
        );
    }

    #[test]
    fn a_lease_is_refused_on_auto_but_taken_by_every_manual_mode() {
        let err = Command::parse(
            r#"{"command_id":"c1","action":"SET_MODE","payload":{"target_mode":"AUTO","duration_s":60}}"#,
        )
        .unwrap_err();
        assert_eq!(err.field(), "payload.duration_s", "{err}");
        assert!(
            Command::parse(
                r#"{"command_id":"c1","action":"SET_MODE","payload":{"target_mode":"MANUAL_IDLE","duration_s":60}}"#
            )
            .is_ok()
        );
        // A lease built in code is checked the same way.
        let zero = Command::set_mode_with_lease("c1", TargetMode::ManualCharge, Some(1.0), 0);
        assert_eq!(zero.validate().unwrap_err().field(), "payload.duration_s");
    }
}
