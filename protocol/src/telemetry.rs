//! The upstream telemetry packet, sent by the agent every 1.0 s.
//!
//! Names, units and signs are the spec's: battery current and power are positive while charging;
//! grid power is negative while exporting ("selling") to the grid.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, SecondsFormat, TimeZone, Timelike, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

use crate::enums::{ErrorFlag, Mode, State};
use crate::error::from_str_with_path;
use crate::num::{opt_f64, required_nullable};
use crate::{ProtocolError, validate_id};

/// One telemetry packet, exactly the spec's shape.
///
/// Measurements the agent cannot vouch for (a device that stopped answering) are `None` and go on
/// the wire as `null`: an unknown value is never replaced by zero or by a stale reading.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Telemetry {
    pub device_id: String,
    /// Start of the second this packet describes; also its identity for de-duplication.
    pub timestamp: Timestamp,
    pub system_status: SystemStatus,
    pub battery: Battery,
    pub grid: Grid,
    /// Where the site's power goes beyond battery and grid, when the agent can tell (an ems
    /// extension, absent otherwise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub site: Option<SiteFlows>,
}

/// `site`: PV generation and house consumption, W (each `null` when unknown). House
/// consumption is what the site's loads draw: grid import + PV + battery discharge.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct SiteFlows {
    #[serde(default)]
    pub pv_power: Option<f64>,
    #[serde(default)]
    pub house_power: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SystemStatus {
    pub state: State,
    pub mode: Mode,
    /// Active faults; empty when healthy. Order carries no meaning.
    pub error_flags: Vec<ErrorFlag>,
    /// Wireless signal in dBm; `null` (or absent) where the device has no wireless link.
    #[serde(default)]
    pub wifi_strength: Option<i32>,
    /// The schedule window in force (`SET_SCHEDULE`, an ems extension); absent when none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<ScheduleWindow>,
}

/// `system_status.schedule`: which window of the device's schedule is in force, what it does
/// and until when.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScheduleWindow {
    /// Its index in the schedule's `windows`.
    pub window: usize,
    /// `CHARGE`, `HOLD`, `DISCHARGE` or `LIMITS`.
    pub action: String,
    pub until: chrono::DateTime<chrono::Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Battery {
    /// Terminal voltage, V.
    #[serde(serialize_with = "opt_f64", deserialize_with = "required_nullable")]
    pub voltage: Option<f64>,
    /// Current, A; + = charging, − = discharging.
    #[serde(serialize_with = "opt_f64", deserialize_with = "required_nullable")]
    pub current: Option<f64>,
    /// Power, W; + = charging, − = discharging.
    #[serde(serialize_with = "opt_f64", deserialize_with = "required_nullable")]
    pub power: Option<f64>,
    /// State of charge, %, 0 to 100.
    #[serde(serialize_with = "opt_f64", deserialize_with = "required_nullable")]
    pub soc: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Grid {
    /// Voltage at the connection point, V.
    #[serde(serialize_with = "opt_f64", deserialize_with = "required_nullable")]
    pub voltage: Option<f64>,
    /// Active power, W; + = importing (buying), − = exporting (selling).
    #[serde(serialize_with = "opt_f64", deserialize_with = "required_nullable")]
    pub power: Option<f64>,
    /// Frequency, Hz.
    #[serde(serialize_with = "opt_f64", deserialize_with = "required_nullable")]
    pub frequency: Option<f64>,
}

/// Physical plausibility bounds per measurement (field, lowest, highest, unit), wide enough for
/// any battery, inverter or site meter ems talks to (a high-voltage battery, a 100 MW plant) and
/// narrow enough that sums over any history bucket stay far from overflowing `float8`. A value
/// outside is a broken sensor or a bad conversion, refused at validation with the field named
/// (the agent sends an unknown value as `null` instead). `battery.soc` is 0 to 100 %.
pub const PLAUSIBLE: &[(&str, f64, f64, &str)] = &[
    ("battery.voltage", 0.0, 2_000.0, "V"),
    ("battery.current", -10_000.0, 10_000.0, "A"),
    ("battery.power", -10_000_000.0, 10_000_000.0, "W"),
    ("grid.voltage", 0.0, 100_000.0, "V"),
    ("grid.power", -100_000_000.0, 100_000_000.0, "W"),
    ("grid.frequency", 0.0, 1_000.0, "Hz"),
    ("site.pv_power", 0.0, 100_000_000.0, "W"),
    ("site.house_power", 0.0, 100_000_000.0, "W"),
];

impl Telemetry {
    /// A plausible packet of `device_id` at `timestamp` with `soc`: the spec example's values
    /// (charging 558.6 W, 10.5 A at 53.2 V; exporting 200 W at 230.1 V, 50 Hz; AUTO), without
    /// error flags. For tests, benches and examples.
    pub fn example(device_id: &str, timestamp: Timestamp, soc: f64) -> Self {
        Telemetry {
            device_id: device_id.into(),
            timestamp,
            system_status: SystemStatus {
                state: State::Charging,
                mode: Mode::Auto,
                error_flags: Vec::new(),
                wifi_strength: Some(-45),
                schedule: None,
            },
            battery: Battery {
                voltage: Some(53.2),
                current: Some(10.5),
                power: Some(558.6),
                soc: Some(soc),
            },
            grid: Grid {
                voltage: Some(230.1),
                power: Some(-200.0),
                frequency: Some(50.0),
            },
            site: None,
        }
    }

    /// Parses and validates one packet. Unknown fields are ignored here (they are additive
    /// extensions; see [`telemetry_extensions`] to keep them).
    pub fn parse(text: &str) -> Result<Self, ProtocolError> {
        let packet: Telemetry = from_str_with_path(text)?;
        packet.validate()?;
        Ok(packet)
    }

    /// Checks the rules JSON types cannot express: identifier syntax, finite numbers, SoC range,
    /// no duplicate flags.
    pub fn validate(&self) -> Result<(), ProtocolError> {
        validate_id("device_id", &self.device_id)?;
        let site = self.site.unwrap_or_default();
        let numbers = [
            ("battery.voltage", self.battery.voltage),
            ("battery.current", self.battery.current),
            ("battery.power", self.battery.power),
            ("battery.soc", self.battery.soc),
            ("grid.voltage", self.grid.voltage),
            ("grid.power", self.grid.power),
            ("grid.frequency", self.grid.frequency),
            ("site.pv_power", site.pv_power),
            ("site.house_power", site.house_power),
        ];
        for (field, value) in numbers {
            if let Some(v) = value
                && !v.is_finite()
            {
                return Err(ProtocolError::invalid(field, "must be a finite number"));
            }
        }
        if let Some(soc) = self.battery.soc
            && !(0.0..=100.0).contains(&soc)
        {
            return Err(ProtocolError::invalid(
                "battery.soc",
                format!("{soc} is outside 0 to 100 %"),
            ));
        }
        for (field, value) in numbers {
            let Some(v) = value else { continue };
            let Some(&(_, lo, hi, unit)) = PLAUSIBLE.iter().find(|(f, ..)| *f == field) else {
                continue;
            };
            if !(lo..=hi).contains(&v) {
                let why = if v < 0.0 && lo == 0.0 {
                    "must not be negative".to_string()
                } else {
                    format!("{v} is outside the plausible {lo} to {hi} {unit}")
                };
                return Err(ProtocolError::invalid(field, why));
            }
        }
        if let Some(w) = self.system_status.wifi_strength
            && !(-150..=0).contains(&w)
        {
            return Err(ProtocolError::invalid(
                "system_status.wifi_strength",
                format!("{w} dBm is outside -150 to 0"),
            ));
        }
        let flags = &self.system_status.error_flags;
        for (i, flag) in flags.iter().enumerate() {
            if flags[..i].contains(flag) {
                return Err(ProtocolError::invalid(
                    "system_status.error_flags",
                    format!("{flag} is listed twice"),
                ));
            }
        }
        Ok(())
    }

    /// [`validate`](Self::validate), and the packet must come from `device_id`.
    pub fn validate_for(&self, device_id: &str) -> Result<(), ProtocolError> {
        self.validate()?;
        if self.device_id != device_id {
            return Err(ProtocolError::invalid(
                "device_id",
                format!(
                    "{:?} does not match the connection's device {device_id:?}",
                    self.device_id
                ),
            ));
        }
        Ok(())
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("telemetry always serialises")
    }
}

/// Checks that extension fields can be stored as PostgreSQL `jsonb`, which refuses the NUL
/// character (`\u0000`) in strings and keys; the error names the path.
pub fn check_storable(extensions: &Map<String, Value>) -> Result<(), ProtocolError> {
    fn walk(path: &str, v: &Value) -> Result<(), ProtocolError> {
        match v {
            Value::String(s) if s.contains('\0') => Err(ProtocolError::invalid(
                path,
                "contains the NUL character (\\u0000), which cannot be stored",
            )),
            Value::Array(items) => items
                .iter()
                .enumerate()
                .try_for_each(|(i, item)| walk(&format!("{path}[{i}]"), item)),
            Value::Object(map) => map.iter().try_for_each(|(k, item)| {
                let sub = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                if k.contains('\0') {
                    return Err(ProtocolError::invalid(
                        &sub,
                        "key contains the NUL character (\\u0000), which cannot be stored",
                    ));
                }
                walk(&sub, item)
            }),
            _ => Ok(()),
        }
    }
    for (k, v) in extensions {
        if k.contains('\0') {
            return Err(ProtocolError::invalid(
                k.as_str(),
                "key contains the NUL character (\\u0000), which cannot be stored",
            ));
        }
        walk(k, v)?;
    }
    Ok(())
}

/// The `timestamp` of a frame that looks like a telemetry packet (a JSON object without `type`
/// whose `timestamp` parses), even when the rest of it is invalid: lets a receiver name the
/// packet it refuses, so the sender can set exactly that one aside instead of resending it.
pub fn telemetry_timestamp_of(text: &str) -> Option<Timestamp> {
    #[derive(serde::Deserialize)]
    struct Probe<'a> {
        #[serde(rename = "type", default, borrow)]
        kind: Option<std::borrow::Cow<'a, str>>,
        #[serde(borrow)]
        timestamp: std::borrow::Cow<'a, str>,
    }
    let probe: Probe<'_> = serde_json::from_str(text).ok()?;
    if probe.kind.is_some() {
        return None;
    }
    probe.timestamp.parse().ok()
}

/// Fields of a raw telemetry object that the spec does not define (additive extensions), with
/// their paths kept: `{"ext": 1, "battery": {"temperature": 20}}` gives exactly that back without
/// the spec's fields. The cloud stores this in its `extensions` column so nothing is lost.
pub fn telemetry_extensions(raw: &Value) -> Map<String, Value> {
    const TOP: &[&str] = &["device_id", "timestamp", "system_status", "battery", "grid"];
    const NESTED: &[(&str, &[&str])] = &[
        (
            "system_status",
            &["state", "mode", "error_flags", "wifi_strength"],
        ),
        ("battery", &["voltage", "current", "power", "soc"]),
        ("grid", &["voltage", "power", "frequency"]),
    ];
    let mut out = Map::new();
    let Some(obj) = raw.as_object() else {
        return out;
    };
    for (key, value) in obj {
        if !TOP.contains(&key.as_str()) {
            out.insert(key.clone(), value.clone());
        }
    }
    for (section, known) in NESTED {
        if let Some(Value::Object(inner)) = obj.get(*section) {
            let extra: Map<String, Value> = inner
                .iter()
                .filter(|(k, _)| !known.contains(&k.as_str()))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            if !extra.is_empty() {
                out.insert((*section).to_string(), Value::Object(extra));
            }
        }
    }
    out
}

/// A point in time on the wire: RFC 3339, UTC, whole seconds, `Z` suffix
/// (`2026-01-31T12:00:01Z`). Other offsets are accepted on input and converted to UTC; fractions
/// of a second are refused, because the timestamp is the packet's identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Timestamp(DateTime<Utc>);

impl Timestamp {
    /// The current second (fraction dropped).
    pub fn now() -> Self {
        Self::from_unix(Utc::now().timestamp()).expect("the clock is within chrono's range")
    }

    /// From seconds since the Unix epoch.
    pub fn from_unix(secs: i64) -> Option<Self> {
        Utc.timestamp_opt(secs, 0).single().map(Timestamp)
    }

    /// Truncates `t` to its whole second.
    pub fn truncating(t: DateTime<Utc>) -> Self {
        Timestamp(t.with_nanosecond(0).expect("0 ns is always valid"))
    }

    pub fn unix(self) -> i64 {
        self.0.timestamp()
    }

    pub fn as_datetime(self) -> DateTime<Utc> {
        self.0
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.to_rfc3339_opts(SecondsFormat::Secs, true))
    }
}

impl FromStr for Timestamp {
    type Err = ProtocolError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let parsed = DateTime::parse_from_rfc3339(s).map_err(|e| {
            ProtocolError::invalid("timestamp", format!("{s:?} is not RFC 3339: {e}"))
        })?;
        if parsed.nanosecond() != 0 {
            return Err(ProtocolError::invalid(
                "timestamp",
                format!("{s:?} has a fraction of a second; whole seconds only"),
            ));
        }
        Ok(Timestamp(parsed.with_timezone(&Utc)))
    }
}

impl From<Timestamp> for DateTime<Utc> {
    fn from(t: Timestamp) -> Self {
        t.0
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
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
    fn timestamp_is_whole_second_utc_with_z() {
        let t: Timestamp = "2026-01-31T13:00:01+01:00".parse().unwrap();
        assert_eq!(t.to_string(), "2026-01-31T12:00:01Z");
        assert!("2026-01-31T12:00:01.5Z".parse::<Timestamp>().is_err());
        assert!("yesterday".parse::<Timestamp>().is_err());
    }

    #[test]
    fn extensions_keep_only_unknown_fields() {
        let raw: Value = serde_json::json!({
            "device_id": "a", "firmware": "1.2",
            "battery": {"soc": 1, "temperature": 21.5},
            "grid": {"power": 3}
        });
        let ext = telemetry_extensions(&raw);
        assert_eq!(
            Value::Object(ext),
            serde_json::json!({"firmware": "1.2", "battery": {"temperature": 21.5}})
        );
    }
}
