//! How records look to a person: telemetry with units and directions spelled out, and the
//! table rows of devices, commands and events. Pure functions of the data (and `now`).

use chrono::{DateTime, Utc};
use ems_protocol::api::{CommandRecord, DeviceInfo, EventRecord};
use ems_protocol::{TargetMode, Telemetry};

use crate::output::{Table, num};
use crate::timespec::rfc3339;

/// `3 s`, `5 min`, `2 h 10 min`, `3 d`; negative ages (clock skew) read `in the future`.
pub fn age(seconds: i64) -> String {
    match seconds {
        s if s < 0 => "in the future".into(),
        s if s < 120 => format!("{s} s"),
        s if s < 7200 => format!("{} min", s / 60),
        s if s < 172_800 => format!("{} h {} min", s / 3600, s % 3600 / 60),
        s => format!("{} d", s / 86_400),
    }
}

pub fn age_s(t: DateTime<Utc>, now: DateTime<Utc>) -> i64 {
    (now - t).num_seconds()
}

/// Battery direction from the spec's sign (+ charging, − discharging).
pub fn battery_flow(power_w: Option<f64>) -> String {
    match power_w {
        None => "power unknown".into(),
        Some(p) if p > 0.0 => format!("charging {} W", num(p)),
        Some(p) if p < 0.0 => format!("discharging {} W", num(-p)),
        Some(_) => "idle 0 W".into(),
    }
}

/// Grid direction from the spec's sign (+ importing/buying, − exporting/selling).
pub fn grid_flow(power_w: Option<f64>) -> String {
    match power_w {
        None => "power unknown".into(),
        Some(p) if p > 0.0 => format!("importing {} W", num(p)),
        Some(p) if p < 0.0 => format!("exporting {} W", num(-p)),
        Some(_) => "balanced 0 W".into(),
    }
}

fn unit(v: Option<f64>, unit: &str) -> String {
    v.map(|v| format!("{} {unit}", num(v)))
        .unwrap_or_else(|| format!("? {unit}"))
}

pub fn flags(t: &Telemetry) -> String {
    if t.system_status.error_flags.is_empty() {
        "none".into()
    } else {
        t.system_status
            .error_flags
            .iter()
            .map(|f| f.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// `online` / `offline, last seen 5 min ago`.
pub fn presence(d: &DeviceInfo, now: DateTime<Utc>) -> String {
    let seen = d
        .last_seen
        .map(|t| format!("last seen {} ago", age(age_s(t, now))))
        .unwrap_or_else(|| "never seen".into());
    if d.online {
        format!("online ({seen})")
    } else {
        format!("offline ({seen})")
    }
}

/// The labelled lines of `emsctl status`.
pub fn status_lines(
    device: &DeviceInfo,
    t: Option<&Telemetry>,
    hold: Option<&ModeHold>,
    now: DateTime<Utc>,
) -> Vec<(&'static str, String)> {
    let name = if device.name == device.id {
        device.id.clone()
    } else {
        format!("{} ({})", device.id, device.name)
    };
    let mut lines = vec![("device", name), ("connection", presence(device, now))];
    let Some(t) = t else {
        lines.push(("telemetry", "none stored yet".into()));
        if let Some(h) = hold {
            lines.push(("lease", hold_line(h)));
        }
        return lines;
    };
    let b = &t.battery;
    let g = &t.grid;
    lines.extend([
        (
            "telemetry",
            format!(
                "{} ({} old)",
                t.timestamp,
                age(age_s(t.timestamp.as_datetime(), now))
            ),
        ),
        ("state", t.system_status.state.to_string()),
        ("mode", t.system_status.mode.to_string()),
    ]);
    if let Some(h) = hold {
        lines.push(("lease", hold_line(h)));
    }
    if let Some(w) = &t.system_status.schedule {
        lines.push((
            "schedule",
            format!(
                "window {} {} until {}",
                w.window,
                w.action,
                crate::timespec::rfc3339(w.until)
            ),
        ));
    }
    lines.extend([
        ("errors", flags(t)),
        (
            "battery",
            format!(
                "{}, {} SoC, {}, {}",
                battery_flow(b.power),
                unit(b.soc, "%"),
                unit(b.voltage, "V"),
                unit(b.current, "A"),
            ),
        ),
        (
            "grid",
            format!(
                "{}, {}, {}",
                grid_flow(g.power),
                unit(g.voltage, "V"),
                unit(g.frequency, "Hz")
            ),
        ),
        (
            "wifi",
            t.system_status
                .wifi_strength
                .map(|w| format!("{w} dBm"))
                .unwrap_or_else(|| "none".into()),
        ),
    ]);
    lines
}

/// A manual mode the device was told to hold, as far as the cloud's records tell: the newest
/// accepted `SET_MODE`, and with `duration_s` until when (its lease; docs/protocol.md).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ModeHold {
    pub command_id: String,
    pub target_mode: String,
    /// When the lease ends and the device returns to AUTO; `None`: no lease, the mode holds
    /// until the next `SET_MODE`.
    pub until: Option<DateTime<Utc>>,
    /// Seconds from now to `until`.
    pub remaining_s: Option<i64>,
}

/// Telemetry this long after the answer must show the commanded mode (a packet of the same
/// second may have been sampled just before the agent switched).
const SETTLE_S: i64 = 2;

/// The manual mode `last_set_mode` (the newest accepted `SET_MODE`) still holds at `now`, if
/// any. The lease started when the agent accepted the command; the cloud's `status_at` is when
/// the answer arrived, a moment later, so `until` may be late by that moment. The hold is over
/// when its lease has run out, or when telemetry from after the answer shows another mode (the
/// agent restarted, which ends a lease; or the lease was cut short by a fault and a reset).
pub fn mode_hold(
    last_set_mode: Option<&CommandRecord>,
    latest: Option<&Telemetry>,
    now: DateTime<Utc>,
) -> Option<ModeHold> {
    let c = last_set_mode?;
    let target: TargetMode = c.payload.get("target_mode")?.as_str()?.parse().ok()?;
    if target == TargetMode::Auto {
        return None;
    }
    let until = match c.payload.get("duration_s").map(|d| d.as_u64()) {
        None => None,
        Some(Some(d)) => Some(c.status_at + chrono::Duration::seconds(i64::try_from(d).ok()?)),
        Some(None) => return None,
    };
    if until.is_some_and(|u| u <= now) {
        return None;
    }
    if let Some(t) = latest {
        let after_answer = age_s(c.status_at, t.timestamp.as_datetime()) >= SETTLE_S;
        // Telemetry says only AUTO or MANUAL.
        if after_answer && t.system_status.mode != target.telemetry_mode() {
            return None;
        }
    }
    Some(ModeHold {
        command_id: c.command_id.clone(),
        target_mode: target.as_str().to_string(),
        until,
        remaining_s: until.map(|u| (u - now).num_seconds()),
    })
}

/// The `lease` line of `emsctl status`.
pub fn hold_line(h: &ModeHold) -> String {
    match (h.until, h.remaining_s) {
        (Some(until), Some(left)) => format!(
            "{} until {} (in {}), then AUTO; set by {}",
            h.target_mode,
            rfc3339(until),
            age(left.max(0)),
            h.command_id
        ),
        _ => format!(
            "none: {} holds until the next set-mode; set by {}",
            h.target_mode, h.command_id
        ),
    }
}

/// One line per packet for `emsctl watch`.
pub fn watch_line(t: &Telemetry) -> String {
    format!(
        "{}  {:<11}  {:<6}  soc {}  battery {}  grid {}  errors {}",
        t.timestamp,
        t.system_status.state.as_str(),
        t.system_status.mode.as_str(),
        unit(t.battery.soc, "%"),
        battery_flow(t.battery.power),
        grid_flow(t.grid.power),
        flags(t)
    )
}

/// The column names of a flattened packet, as the history API names its fields.
pub const TELEMETRY_COLUMNS: [&str; 12] = [
    "time",
    "state",
    "mode",
    "error_flags",
    "wifi_strength",
    "battery_voltage",
    "battery_current",
    "battery_power",
    "battery_soc",
    "grid_voltage",
    "grid_power",
    "grid_frequency",
];

/// A packet as one CSV row under [`TELEMETRY_COLUMNS`]; unknown values are empty cells.
pub fn telemetry_row(t: &Telemetry) -> Vec<String> {
    let n = |v: Option<f64>| v.map(num).unwrap_or_default();
    vec![
        t.timestamp.to_string(),
        t.system_status.state.to_string(),
        t.system_status.mode.to_string(),
        t.system_status
            .error_flags
            .iter()
            .map(|f| f.as_str())
            .collect::<Vec<_>>()
            .join(" "),
        t.system_status
            .wifi_strength
            .map(|w| w.to_string())
            .unwrap_or_default(),
        n(t.battery.voltage),
        n(t.battery.current),
        n(t.battery.power),
        n(t.battery.soc),
        n(t.grid.voltage),
        n(t.grid.power),
        n(t.grid.frequency),
    ]
}

pub fn devices_table(devices: &[DeviceInfo]) -> Table {
    let mut t = Table::new(["id", "name", "online", "last_seen", "tags", "created_at"]);
    for d in devices {
        t.push(vec![
            d.id.clone(),
            d.name.clone(),
            if d.online { "yes" } else { "no" }.into(),
            d.last_seen.map(rfc3339).unwrap_or_default(),
            d.tags.join(","),
            rfc3339(d.created_at),
        ]);
    }
    t
}

/// `MANUAL_DISCHARGE 500 W` (`… for 600 s` with a lease), or the payload as JSON for anything
/// unexpected.
pub fn command_target(c: &CommandRecord) -> String {
    let mode = c.payload.get("target_mode").and_then(|m| m.as_str());
    let power = c.payload.get("target_power").and_then(|p| p.as_f64());
    let lease = match c.payload.get("duration_s").and_then(|d| d.as_u64()) {
        Some(d) => format!(" for {d} s"),
        None => String::new(),
    };
    match (mode, power) {
        (Some(m), Some(p)) => format!("{m} {} W{lease}", num(p)),
        (Some(m), None) => format!("{m}{lease}"),
        _ if c.payload.as_object().is_some_and(|o| o.is_empty()) => String::new(),
        _ => c.payload.to_string(),
    }
}

pub fn commands_table(commands: &[CommandRecord]) -> Table {
    let mut t = Table::new([
        "command_id",
        "status",
        "action",
        "target",
        "issued_at",
        "issued_by",
        "reason",
    ]);
    for c in commands {
        t.push(vec![
            c.command_id.clone(),
            c.status.to_string(),
            c.action.clone(),
            command_target(c),
            rfc3339(c.issued_at),
            c.issued_by.clone(),
            c.reason.clone().unwrap_or_default(),
        ]);
    }
    t
}

pub fn command_lines(c: &CommandRecord) -> Vec<(&'static str, String)> {
    vec![
        ("command", c.command_id.clone()),
        ("device", c.device_id.clone()),
        (
            "action",
            format!("{} {}", c.action, command_target(c))
                .trim()
                .to_string(),
        ),
        ("status", c.status.to_string()),
        ("reason", c.reason.clone().unwrap_or_else(|| "-".into())),
        (
            "issued",
            format!("{} by {}", rfc3339(c.issued_at), c.issued_by),
        ),
        ("status at", rfc3339(c.status_at)),
        ("expires", rfc3339(c.expires_at)),
    ]
}

pub fn events_table(events: &[EventRecord]) -> Table {
    let mut t = Table::new(["time", "kind", "from_state", "to_state", "flag"]);
    for e in events {
        t.push(vec![
            rfc3339(e.time),
            e.kind.clone(),
            e.from_state.clone().unwrap_or_default(),
            e.to_state.clone().unwrap_or_default(),
            e.flag.clone().unwrap_or_default(),
        ]);
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directions_follow_the_spec_signs() {
        assert_eq!(battery_flow(Some(558.6)), "charging 558.6 W");
        assert_eq!(battery_flow(Some(-500.0)), "discharging 500 W");
        assert_eq!(grid_flow(Some(-200.0)), "exporting 200 W");
        assert_eq!(grid_flow(Some(1200.0)), "importing 1200 W");
        assert_eq!(grid_flow(None), "power unknown");
    }

    fn set_mode(payload: serde_json::Value, accepted_at: DateTime<Utc>) -> CommandRecord {
        CommandRecord {
            command_id: "cmd_1".into(),
            device_id: "d".into(),
            action: "SET_MODE".into(),
            payload,
            issued_by: "op".into(),
            issued_at: accepted_at,
            status: ems_protocol::CommandStatus::Accepted,
            status_at: accepted_at,
            reason: None,
            expires_at: accepted_at,
        }
    }

    fn packet(at: DateTime<Utc>, mode: ems_protocol::Mode) -> Telemetry {
        let ts = ems_protocol::telemetry::Timestamp::from_unix(at.timestamp()).unwrap();
        let mut t = Telemetry::example("d", ts, 50.0);
        t.system_status.mode = mode;
        t
    }

    #[test]
    fn a_lease_holds_until_accepted_plus_duration() {
        use ems_protocol::Mode;
        let accepted = DateTime::parse_from_rfc3339("2026-12-01T10:00:00Z")
            .unwrap()
            .to_utc();
        let now = accepted + chrono::Duration::seconds(60);
        let leased = set_mode(
            serde_json::json!({"target_mode": "MANUAL_DISCHARGE", "target_power": 500, "duration_s": 600}),
            accepted,
        );
        let manual_now = packet(now, Mode::Manual);
        let hold = mode_hold(Some(&leased), Some(&manual_now), now).unwrap();
        assert_eq!(hold.target_mode, "MANUAL_DISCHARGE");
        assert_eq!(hold.until, Some(accepted + chrono::Duration::seconds(600)));
        assert_eq!(hold.remaining_s, Some(540));
        assert_eq!(
            hold_line(&hold),
            "MANUAL_DISCHARGE until 2026-12-01T10:10:00Z (in 9 min), then AUTO; set by cmd_1"
        );
        // Run out.
        let later = accepted + chrono::Duration::seconds(601);
        assert_eq!(mode_hold(Some(&leased), None, later), None);
        // The device shows AUTO after the answer: the lease ended early (agent restart).
        assert_eq!(
            mode_hold(Some(&leased), Some(&packet(now, Mode::Auto)), now),
            None
        );
        // A packet from before the answer says nothing about it.
        let before = packet(accepted - chrono::Duration::seconds(5), Mode::Auto);
        assert!(mode_hold(Some(&leased), Some(&before), now).is_some());
        // No lease: held until the next set-mode; AUTO holds nothing.
        let held = set_mode(serde_json::json!({"target_mode": "MANUAL_IDLE"}), accepted);
        let hold = mode_hold(Some(&held), Some(&manual_now), now).unwrap();
        assert_eq!(hold.until, None);
        assert!(hold_line(&hold).starts_with("none: MANUAL_IDLE holds until the next set-mode"));
        let auto = set_mode(serde_json::json!({"target_mode": "AUTO"}), accepted);
        assert_eq!(mode_hold(Some(&auto), None, now), None);
        assert_eq!(mode_hold(None, Some(&manual_now), now), None);
    }

    #[test]
    fn ages_read_naturally() {
        assert_eq!(age(3), "3 s");
        assert_eq!(age(300), "5 min");
        assert_eq!(age(3 * 3600 + 600), "3 h 10 min");
        assert_eq!(age(5 * 86_400), "5 d");
    }
}
