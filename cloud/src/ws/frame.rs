//! Parsing what a device sends: [`parse`] any upstream frame, with a one-pass fast path for the
//! frame a device sends most, a spec telemetry packet with nothing else.
//!
//! [`parse_plain`] deserialises the text straight into [`Telemetry`] through mirror types that
//! refuse unknown fields, so it needs no intermediate `serde_json::Value` (a map and a string
//! per field). Anything it does not take (extension fields, a `type`, any error) returns `None`
//! and goes the general way, which keeps extensions and names the offending field.

use ems_protocol::{
    Battery, ErrorFlag, Grid, Mode, ProtocolError, State, SystemStatus, Telemetry, Timestamp,
    Upstream, parse_upstream,
};
use serde::{Deserialize, Deserializer};
use serde_json::Value;

/// Parses an upstream frame. The most common case, spec telemetry without extra fields, is
/// parsed in one pass ([`parse_plain`]); telemetry with extension fields is parsed once into a
/// JSON value that also yields them; anything else, and every refusal (for its precise message
/// naming the field), goes through [`parse_upstream`].
pub(super) fn parse(text: &str) -> Result<(Upstream, Option<Value>), ProtocolError> {
    if let Some(telemetry) = parse_plain(text) {
        return Ok((Upstream::Telemetry(telemetry), None));
    }
    if let Ok(value) = serde_json::from_str::<Value>(text)
        && value.is_object()
        && value.get("type").is_none()
        && let Ok(telemetry) = ems_protocol::Telemetry::deserialize(&value)
        && telemetry.validate().is_ok()
    {
        return Ok((Upstream::Telemetry(telemetry), Some(value)));
    }
    parse_upstream(text).map(|u| (u, None))
}

/// [`Telemetry`] with `deny_unknown_fields`: same field names; strings borrowed from the frame
/// and converted with the protocol's own `FromStr` (a string with escapes fails here and goes
/// the general way).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Plain<'a> {
    device_id: &'a str,
    timestamp: &'a str,
    #[serde(borrow)]
    system_status: PlainStatus<'a>,
    battery: PlainBattery,
    grid: PlainGrid,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PlainStatus<'a> {
    state: &'a str,
    mode: &'a str,
    #[serde(borrow)]
    error_flags: Vec<&'a str>,
    #[serde(default)]
    wifi_strength: Option<i32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PlainBattery {
    #[serde(deserialize_with = "required_nullable")]
    voltage: Option<f64>,
    #[serde(deserialize_with = "required_nullable")]
    current: Option<f64>,
    #[serde(deserialize_with = "required_nullable")]
    power: Option<f64>,
    #[serde(deserialize_with = "required_nullable")]
    soc: Option<f64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PlainGrid {
    #[serde(deserialize_with = "required_nullable")]
    voltage: Option<f64>,
    #[serde(deserialize_with = "required_nullable")]
    power: Option<f64>,
    #[serde(deserialize_with = "required_nullable")]
    frequency: Option<f64>,
}

/// As in `ems_protocol`: present but possibly `null`.
fn required_nullable<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    Option::<f64>::deserialize(d)
}

/// A valid telemetry packet with exactly the spec's fields, or `None` for anything else.
fn parse_plain(text: &str) -> Option<Telemetry> {
    let p: Plain = serde_json::from_str(text).ok()?;
    let status = p.system_status;
    let telemetry = Telemetry {
        device_id: p.device_id.to_string(),
        timestamp: p.timestamp.parse::<Timestamp>().ok()?,
        system_status: SystemStatus {
            state: status.state.parse::<State>().ok()?,
            mode: status.mode.parse::<Mode>().ok()?,
            error_flags: status
                .error_flags
                .iter()
                .map(|f| f.parse::<ErrorFlag>())
                .collect::<Result<_, _>>()
                .ok()?,
            wifi_strength: status.wifi_strength,
            schedule: None,
        },
        battery: Battery {
            voltage: p.battery.voltage,
            current: p.battery.current,
            power: p.battery.power,
            soc: p.battery.soc,
        },
        grid: Grid {
            voltage: p.grid.voltage,
            power: p.grid.power,
            frequency: p.grid.frequency,
        },
        site: None,
    };
    telemetry.validate().ok()?;
    Some(telemetry)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPEC: &str = r#"{"device_id":"ems_001","timestamp":"2026-01-31T12:00:01Z",
        "system_status":{"state":"CHARGING","mode":"AUTO","error_flags":["OVERHEAT"],"wifi_strength":-45},
        "battery":{"voltage":53.2,"current":10.5,"power":558.6,"soc":85},
        "grid":{"voltage":230.1,"power":-200,"frequency":50.0}}"#;

    #[test]
    fn spec_packet_parses_as_the_protocol_crate_does() {
        assert_eq!(parse_plain(SPEC), Some(Telemetry::parse(SPEC).unwrap()));
        let no_wifi = SPEC.replace(r#","wifi_strength":-45"#, "");
        assert_eq!(
            parse_plain(&no_wifi),
            Some(Telemetry::parse(&no_wifi).unwrap())
        );
        let unknown = SPEC.replace("53.2", "null");
        assert_eq!(
            parse_plain(&unknown),
            Some(Telemetry::parse(&unknown).unwrap())
        );
    }

    #[test]
    fn anything_else_goes_the_general_way() {
        let cases = [
            SPEC.replace(r#""device_id""#, r#""ext":1,"device_id""#),
            SPEC.replace(r#""soc":85"#, r#""soc":85,"temperature":20"#),
            SPEC.replace(r#""device_id""#, r#""type":"TELEMETRY","device_id""#),
            SPEC.replace(r#""soc":85"#, r#""soc":185"#),
            SPEC.replace(r#","power":558.6"#, ""),
            SPEC.replace("12:00:01Z", "12:00:01.5Z"),
            SPEC.replace("CHARGING", "CHARGING_FAST"),
            SPEC.replace("ems_001", "ems\\u0030"),
            r#"{"type":"ERROR","code":"INTERNAL","message":"x"}"#.to_string(),
            "not json".to_string(),
        ];
        for case in cases {
            assert_eq!(parse_plain(&case), None, "{case}");
        }
    }
}
