//! The SCREAMING_CASE vocabularies shared by agent, cloud and CLI.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::ProtocolError;

/// Defines a closed string enum with `as_str`, `ALL`, `Display`, `FromStr` and serde in one place,
/// so the spelling on the wire, in the CLI and in the database can never disagree.
macro_rules! string_enum {
    ($(#[$meta:meta])* $name:ident, $what:literal { $($(#[$vmeta:meta])* $variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name { $($(#[$vmeta])* $variant),+ }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The wire spelling.
            pub const fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = ProtocolError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($text => Ok($name::$variant),)+
                    other => Err(ProtocolError::invalid(
                        $what,
                        format!(
                            "unknown value {other:?}, expected one of {}",
                            [$($text),+].join(", ")
                        ),
                    )),
                }
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                text.parse().map_err(|e: ProtocolError| match e {
                    ProtocolError::Invalid { reason, .. } => serde::de::Error::custom(reason),
                    other => serde::de::Error::custom(other),
                })
            }
        }
    };
}

string_enum! {
    /// State of the battery state machine, reported as `system_status.state`.
    State, "state" {
        /// After start-up, until the first complete set of measurements has been read.
        Starting => "STARTING",
        /// No power flowing on purpose (setpoint 0 W, or inside the deadband).
        Idle => "IDLE",
        Charging => "CHARGING",
        Discharging => "DISCHARGING",
        /// SoC reached its maximum; charging is blocked until SoC falls by the configured margin.
        Full => "FULL",
        /// SoC reached its minimum; discharging is blocked until SoC rises by the configured margin.
        Empty => "EMPTY",
        /// A fault was detected; setpoint 0 W. Latched until a successful `RESET_ERROR`.
        Error => "ERROR",
    }
}

string_enum! {
    /// Operating mode as the spec reports it in telemetry: `AUTO` or `MANUAL`.
    Mode, "mode" {
        Auto => "AUTO",
        Manual => "MANUAL",
    }
}

string_enum! {
    /// `SET_MODE.payload.target_mode`: the strategy the operator asks for.
    TargetMode, "payload.target_mode" {
        /// Self-consumption: drive grid exchange towards zero.
        Auto => "AUTO",
        /// Charge at `target_power` W (limits permitting).
        ManualCharge => "MANUAL_CHARGE",
        /// Discharge at `target_power` W (limits permitting).
        ManualDischarge => "MANUAL_DISCHARGE",
        /// Hold the battery at 0 W.
        ManualIdle => "MANUAL_IDLE",
    }
}

impl TargetMode {
    /// How this mode shows in telemetry.
    pub fn telemetry_mode(self) -> Mode {
        match self {
            TargetMode::Auto => Mode::Auto,
            _ => Mode::Manual,
        }
    }

    /// Whether `target_power` is required (and meaningful) for this mode.
    pub fn needs_power(self) -> bool {
        matches!(self, TargetMode::ManualCharge | TargetMode::ManualDischarge)
    }
}

string_enum! {
    /// The device's answer to a command (extension, `docs/protocol.md`).
    AnswerStatus, "status" {
        /// Validated and applied.
        Accepted => "ACCEPTED",
        /// Refused; `reason` says why. Nothing changed on the device.
        Rejected => "REJECTED",
        /// A long-running command finished (reserved; today's commands complete when accepted).
        Completed => "COMPLETED",
    }
}

string_enum! {
    /// Lifecycle of a command as the cloud records it.
    CommandStatus, "status" {
        /// Stored, not yet written to the device's socket (device offline).
        Pending => "PENDING",
        /// Written to the device's socket; no answer yet.
        Sent => "SENT",
        Accepted => "ACCEPTED",
        Rejected => "REJECTED",
        Completed => "COMPLETED",
        /// Not delivered or not answered before its expiry.
        Expired => "EXPIRED",
    }
}

impl CommandStatus {
    /// A final status never changes again.
    pub fn is_final(self) -> bool {
        !matches!(self, CommandStatus::Pending | CommandStatus::Sent)
    }
}

impl From<AnswerStatus> for CommandStatus {
    fn from(s: AnswerStatus) -> Self {
        match s {
            AnswerStatus::Accepted => CommandStatus::Accepted,
            AnswerStatus::Rejected => CommandStatus::Rejected,
            AnswerStatus::Completed => CommandStatus::Completed,
        }
    }
}

/// An entry of `system_status.error_flags`.
///
/// The known flags are variants; a flag this build does not know (from a newer agent) is kept as
/// [`ErrorFlag::Other`] with its spelling, so no fault report is ever dropped. Any flag must be
/// SCREAMING_SNAKE_CASE, 1 to 64 characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ErrorFlag {
    /// Battery or inverter temperature above its limit.
    Overheat,
    /// Battery temperature below its limit for the requested direction.
    Undertemperature,
    Overvoltage,
    Undervoltage,
    Overcurrent,
    /// A device filling a required role has not answered within the configured window.
    CommLoss,
    /// The BMS reports an alarm.
    BmsAlarm,
    /// The inverter reports a fault or an unexpected operating state.
    InverterFault,
    /// Grid voltage or frequency out of range.
    GridFault,
    /// A flag unknown to this build, kept verbatim.
    Other(String),
}

impl ErrorFlag {
    pub const KNOWN: &'static [ErrorFlag] = &[
        ErrorFlag::Overheat,
        ErrorFlag::Undertemperature,
        ErrorFlag::Overvoltage,
        ErrorFlag::Undervoltage,
        ErrorFlag::Overcurrent,
        ErrorFlag::CommLoss,
        ErrorFlag::BmsAlarm,
        ErrorFlag::InverterFault,
        ErrorFlag::GridFault,
    ];

    pub fn as_str(&self) -> &str {
        match self {
            ErrorFlag::Overheat => "OVERHEAT",
            ErrorFlag::Undertemperature => "UNDERTEMPERATURE",
            ErrorFlag::Overvoltage => "OVERVOLTAGE",
            ErrorFlag::Undervoltage => "UNDERVOLTAGE",
            ErrorFlag::Overcurrent => "OVERCURRENT",
            ErrorFlag::CommLoss => "COMM_LOSS",
            ErrorFlag::BmsAlarm => "BMS_ALARM",
            ErrorFlag::InverterFault => "INVERTER_FAULT",
            ErrorFlag::GridFault => "GRID_FAULT",
            ErrorFlag::Other(s) => s,
        }
    }
}

impl fmt::Display for ErrorFlag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ErrorFlag {
    type Err = ProtocolError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Some(known) = ErrorFlag::KNOWN.iter().find(|k| k.as_str() == s) {
            return Ok(known.clone());
        }
        let well_formed = !s.is_empty()
            && s.len() <= 64
            && s.starts_with(|c: char| c.is_ascii_uppercase())
            && s.chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
        if well_formed {
            Ok(ErrorFlag::Other(s.to_string()))
        } else {
            Err(ProtocolError::invalid(
                "system_status.error_flags",
                format!("{s:?} is not a SCREAMING_SNAKE_CASE flag of 1 to 64 characters"),
            ))
        }
    }
}

impl Serialize for ErrorFlag {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for ErrorFlag {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        text.parse().map_err(|e: ProtocolError| match e {
            ProtocolError::Invalid { reason, .. } => serde::de::Error::custom(reason),
            other => serde::de::Error::custom(other),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_enum_round_trips_through_its_spelling() {
        for s in State::ALL {
            assert_eq!(s.as_str().parse::<State>().unwrap(), *s);
        }
        for m in TargetMode::ALL {
            assert_eq!(m.as_str().parse::<TargetMode>().unwrap(), *m);
        }
        for f in ErrorFlag::KNOWN {
            assert_eq!(f.as_str().parse::<ErrorFlag>().unwrap(), *f);
        }
    }

    #[test]
    fn unknown_mode_names_the_choices() {
        let err = "MANUAL_TURBO".parse::<TargetMode>().unwrap_err();
        let text = err.to_string();
        assert!(text.contains("payload.target_mode"), "{text}");
        assert!(text.contains("MANUAL_DISCHARGE"), "{text}");
    }

    #[test]
    fn unknown_but_well_formed_flags_are_kept() {
        assert_eq!(
            "FAN_FAILURE".parse::<ErrorFlag>().unwrap(),
            ErrorFlag::Other("FAN_FAILURE".into())
        );
        assert!("fan failure".parse::<ErrorFlag>().is_err());
        assert!("".parse::<ErrorFlag>().is_err());
    }

    #[test]
    fn telemetry_mode_of_manual_modes_is_manual() {
        assert_eq!(TargetMode::Auto.telemetry_mode(), Mode::Auto);
        assert_eq!(TargetMode::ManualIdle.telemetry_mode(), Mode::Manual);
        assert!(TargetMode::ManualCharge.needs_power());
        assert!(!TargetMode::ManualIdle.needs_power());
    }
}
