//! `SET_SCHEDULE` (an ems extension, see `docs/protocol.md`): time windows that tell AUTO what to
//! do, carried out by the agent on its own (also while the cloud is unreachable) until
//! `valid_until`.
//!
//! A window is one-off (`start`/`end`, RFC 3339 instants) or daily (`daily_start`/`daily_end`,
//! local `HH:MM` in the schedule's `time_zone`, an IANA name; a daily window may cross
//! midnight), and carries one action:
//!
//! | `action` | fields | meaning |
//! |---|---|---|
//! | `CHARGE` | `power_w`, `to_soc_pct`, `from_grid` (default true) | charge at `power_w` up to the SoC |
//! | `HOLD` | | no discharge |
//! | `DISCHARGE` | `power_w`, `down_to_soc_pct` | discharge at `power_w` down to the SoC |
//! | `LIMITS` | `target_grid_w`, `export_limit_w`, `import_limit_w` (each optional) | other AUTO settings |
//!
//! A new schedule replaces the previous one as a whole; `{"windows": []}` clears it. Windows
//! must not overlap. Parsing here checks shape and values; the agent also checks the actions
//! against its battery's limits and refuses with the reason.

use chrono::{DateTime, Duration, NaiveTime, Utc};
use serde::{Deserialize, Serialize};

use crate::ProtocolError;
use crate::error::from_value_with_path;
use crate::zone::Zone;

mod parse;

use parse::window;

/// Most windows in one schedule.
pub const MAX_WINDOWS: usize = 48;
/// Furthest `valid_until` may lie ahead, days.
pub const MAX_VALIDITY_DAYS: i64 = 366;

/// A validated schedule.
#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    /// After this the schedule is void. `None` only for an empty schedule (a clear).
    pub valid_until: Option<DateTime<Utc>>,
    /// The zone of daily windows.
    pub time_zone: Zone,
    pub windows: Vec<Window>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Window {
    pub when: When,
    pub action: WindowAction,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum When {
    Once {
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    },
    /// Local wall-clock times; `end <= start` crosses midnight.
    Daily { start: NaiveTime, end: NaiveTime },
}

#[derive(Debug, Clone, PartialEq)]
pub enum WindowAction {
    Charge {
        power_w: f64,
        to_soc_pct: f64,
        from_grid: bool,
    },
    Hold,
    Discharge {
        power_w: f64,
        down_to_soc_pct: f64,
    },
    Limits {
        target_grid_w: Option<f64>,
        export_limit_w: Option<f64>,
        import_limit_w: Option<f64>,
    },
}

impl WindowAction {
    pub fn name(&self) -> &'static str {
        match self {
            WindowAction::Charge { .. } => "CHARGE",
            WindowAction::Hold => "HOLD",
            WindowAction::Discharge { .. } => "DISCHARGE",
            WindowAction::Limits { .. } => "LIMITS",
        }
    }
}

/// The window in force at an instant.
#[derive(Debug, Clone, PartialEq)]
pub struct Active<'a> {
    /// Its index in [`Schedule::windows`].
    pub index: usize,
    pub window: &'a Window,
    /// When it ends (its end, or `valid_until` if sooner).
    pub until: DateTime<Utc>,
}

/// The payload as written on the wire.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SchedulePayload {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid_until: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_zone: Option<String>,
    pub windows: Vec<WindowPayload>,
}

/// One window as written on the wire: the time fields of its kind and the fields of its action.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WindowPayload {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub daily_start: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub daily_end: Option<String>,
    pub action: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub power_w: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_soc_pct: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub down_to_soc_pct: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_grid: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_grid_w: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub export_limit_w: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub import_limit_w: Option<f64>,
}

impl Schedule {
    /// Parses and checks a `SET_SCHEDULE` payload (the JSON value of `payload`).
    pub fn from_value(value: serde_json::Value) -> Result<Schedule, ProtocolError> {
        let p: SchedulePayload = from_value_with_path(value, "payload")?;
        Schedule::from_payload(&p)
    }

    /// Checks a payload: shapes, values, no overlap. The time rules that depend on now
    /// (`valid_until` in the future) are [`Schedule::check_current`]'s.
    pub fn from_payload(p: &SchedulePayload) -> Result<Schedule, ProtocolError> {
        let tz_name = p.time_zone.as_deref().unwrap_or("UTC");
        let time_zone = Zone::named(tz_name)
            .map_err(|e| ProtocolError::invalid("payload.time_zone", e.to_string()))?;
        if p.windows.len() > MAX_WINDOWS {
            return Err(ProtocolError::invalid(
                "payload.windows",
                format!("{} windows, at most {MAX_WINDOWS}", p.windows.len()),
            ));
        }
        if !p.windows.is_empty() && p.valid_until.is_none() {
            return Err(ProtocolError::invalid(
                "payload.valid_until",
                "is required: a schedule ends at a stated time",
            ));
        }
        let windows = p
            .windows
            .iter()
            .enumerate()
            .map(|(i, w)| window(i, w))
            .collect::<Result<Vec<_>, _>>()?;
        let schedule = Schedule {
            valid_until: p.valid_until,
            time_zone,
            windows,
        };
        schedule.check_overlaps()?;
        Ok(schedule)
    }

    /// `valid_until` lies after `now` and at most [`MAX_VALIDITY_DAYS`] ahead.
    pub fn check_current(&self, now: DateTime<Utc>) -> Result<(), ProtocolError> {
        let Some(until) = self.valid_until else {
            return Ok(());
        };
        if until <= now {
            return Err(ProtocolError::invalid(
                "payload.valid_until",
                format!("{} has passed", until.to_rfc3339()),
            ));
        }
        if until > now + Duration::days(MAX_VALIDITY_DAYS) {
            return Err(ProtocolError::invalid(
                "payload.valid_until",
                format!("is more than {MAX_VALIDITY_DAYS} days ahead"),
            ));
        }
        Ok(())
    }

    /// The wire form.
    pub fn to_payload(&self) -> SchedulePayload {
        SchedulePayload {
            valid_until: self.valid_until,
            time_zone: Some(self.time_zone.name().to_string()),
            windows: self.windows.iter().map(Window::to_payload).collect(),
        }
    }

    /// The window in force at `now`, if any (none at or after `valid_until`).
    pub fn active_at(&self, now: DateTime<Utc>) -> Option<Active<'_>> {
        let valid_until = self.valid_until?;
        if now >= valid_until {
            return None;
        }
        self.windows.iter().enumerate().find_map(|(index, window)| {
            let end = match window.when {
                When::Once { start, end } => (start <= now && now < end).then_some(end)?,
                When::Daily { .. } => self
                    .occurrences(
                        &window.when,
                        now - Duration::days(1),
                        now + Duration::days(1),
                    )
                    .into_iter()
                    .find(|(s, e)| *s <= now && now < *e)
                    .map(|(_, e)| e)?,
            };
            Some(Active {
                index,
                window,
                until: end.min(valid_until),
            })
        })
    }

    /// The instants a daily window covers, for the local days from `from` to `to`.
    fn occurrences(
        &self,
        when: &When,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Vec<(DateTime<Utc>, DateTime<Utc>)> {
        let When::Daily { start, end } = *when else {
            return Vec::new();
        };
        let tz = &self.time_zone;
        let mut day = tz.local(from).date();
        let last = tz.local(to).date();
        let mut out = Vec::new();
        // A local time that does not exist (a DST gap) is shifted forward by the gap.
        let at = |date: chrono::NaiveDate, t: NaiveTime| tz.instant(date.and_time(t));
        while day <= last {
            let end_day = if end <= start {
                day.succ_opt().unwrap_or(day)
            } else {
                day
            };
            if let (Some(s), Some(e)) = (at(day, start), at(end_day, end)) {
                out.push((s, e));
            }
            match day.succ_opt() {
                Some(next) => day = next,
                None => break,
            }
        }
        out
    }

    fn check_overlaps(&self) -> Result<(), ProtocolError> {
        let minutes = |t: NaiveTime| {
            use chrono::Timelike;
            t.hour() * 60 + t.minute()
        };
        // A daily window as minute ranges of a day, split at midnight.
        let daily_ranges = |s: NaiveTime, e: NaiveTime| -> Vec<(u32, u32)> {
            let (s, e) = (minutes(s), minutes(e));
            if s < e {
                vec![(s, e)]
            } else {
                vec![(s, 24 * 60), (0, e)]
            }
        };
        for (i, a) in self.windows.iter().enumerate() {
            for (j, b) in self.windows.iter().enumerate().skip(i + 1) {
                let overlap = match (a.when, b.when) {
                    (When::Once { start: s1, end: e1 }, When::Once { start: s2, end: e2 }) => {
                        s1 < e2 && s2 < e1
                    }
                    (When::Daily { start: s1, end: e1 }, When::Daily { start: s2, end: e2 }) => {
                        daily_ranges(s1, e1).iter().any(|(a1, a2)| {
                            daily_ranges(s2, e2)
                                .iter()
                                .any(|(b1, b2)| a1 < b2 && b1 < a2)
                        })
                    }
                    (When::Once { start, end }, daily @ When::Daily { .. })
                    | (daily @ When::Daily { .. }, When::Once { start, end }) => self
                        .occurrences(&daily, start - Duration::days(1), end + Duration::days(1))
                        .iter()
                        .any(|(s, e)| *s < end && start < *e),
                };
                if overlap {
                    return Err(ProtocolError::invalid(
                        format!("payload.windows[{j}]"),
                        format!("overlaps window {i}; windows must not overlap"),
                    ));
                }
            }
        }
        Ok(())
    }
}

impl Window {
    fn to_payload(&self) -> WindowPayload {
        let mut p = WindowPayload {
            action: self.action.name().to_string(),
            ..WindowPayload::default()
        };
        match self.when {
            When::Once { start, end } => {
                p.start = Some(start);
                p.end = Some(end);
            }
            When::Daily { start, end } => {
                p.daily_start = Some(start.format("%H:%M").to_string());
                p.daily_end = Some(end.format("%H:%M").to_string());
            }
        }
        match self.action {
            WindowAction::Charge {
                power_w,
                to_soc_pct,
                from_grid,
            } => {
                p.power_w = Some(power_w);
                p.to_soc_pct = Some(to_soc_pct);
                p.from_grid = Some(from_grid);
            }
            WindowAction::Hold => {}
            WindowAction::Discharge {
                power_w,
                down_to_soc_pct,
            } => {
                p.power_w = Some(power_w);
                p.down_to_soc_pct = Some(down_to_soc_pct);
            }
            WindowAction::Limits {
                target_grid_w,
                export_limit_w,
                import_limit_w,
            } => {
                p.target_grid_w = target_grid_w;
                p.export_limit_w = export_limit_w;
                p.import_limit_w = import_limit_w;
            }
        }
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    fn parse(v: serde_json::Value) -> Result<Schedule, String> {
        Schedule::from_value(v).map_err(|e| format!("{}: {e}", e.field()))
    }

    #[test]
    fn a_cheap_night_charge_and_an_evening_discharge_in_paris() {
        let s = parse(json!({
            "valid_until": "2027-01-10T00:00:00Z",
            "time_zone": "Europe/Paris",
            "windows": [
                {"daily_start": "23:00", "daily_end": "06:00", "action": "CHARGE", "power_w": 2000, "to_soc_pct": 90},
                {"daily_start": "18:00", "daily_end": "21:00", "action": "DISCHARGE", "power_w": 2500, "down_to_soc_pct": 30},
            ]
        }))
        .unwrap();
        // 23:30 in Paris in winter is 22:30 UTC: the night window, until 06:00 Paris = 05:00 UTC.
        let a = s.active_at(at("2026-12-01T22:30:00Z")).unwrap();
        assert_eq!(a.index, 0);
        assert_eq!(a.until, at("2026-12-02T05:00:00Z"));
        // After midnight it is still the same window.
        assert_eq!(s.active_at(at("2026-12-02T03:00:00Z")).unwrap().index, 0);
        // 19:00 Paris = 18:00 UTC: the evening window.
        assert_eq!(s.active_at(at("2026-12-02T18:00:00Z")).unwrap().index, 1);
        // 12:00 Paris: none; after valid_until: none.
        assert!(s.active_at(at("2026-12-02T11:00:00Z")).is_none());
        assert!(s.active_at(at("2027-01-10T02:00:00Z")).is_none());
        // Summer time: 18:00 Paris = 16:00 UTC.
        let summer = Schedule {
            valid_until: Some(at("2027-08-01T00:00:00Z")),
            ..s.clone()
        };
        assert_eq!(
            summer.active_at(at("2027-07-01T16:30:00Z")).unwrap().index,
            1
        );
        // It survives the wire unchanged.
        let again = Schedule::from_payload(&s.to_payload()).unwrap();
        assert_eq!(again, s);
    }

    #[test]
    fn a_one_off_window_and_its_end() {
        let s = parse(json!({
            "valid_until": "2026-12-02T00:00:00Z",
            "windows": [{"start": "2026-12-01T10:00:00Z", "end": "2026-12-01T11:00:00Z", "action": "HOLD"}]
        }))
        .unwrap();
        assert!(s.active_at(at("2026-12-01T09:59:59Z")).is_none());
        assert_eq!(
            s.active_at(at("2026-12-01T10:00:00Z")).unwrap().until,
            at("2026-12-01T11:00:00Z")
        );
        assert!(s.active_at(at("2026-12-01T11:00:00Z")).is_none());
    }

    #[test]
    fn overlaps_are_refused_naming_the_window() {
        for windows in [
            json!([
                {"daily_start": "22:00", "daily_end": "02:00", "action": "HOLD"},
                {"daily_start": "01:00", "daily_end": "03:00", "action": "HOLD"}
            ]),
            json!([
                {"start": "2026-12-01T10:00:00Z", "end": "2026-12-01T12:00:00Z", "action": "HOLD"},
                {"start": "2026-12-01T11:00:00Z", "end": "2026-12-01T13:00:00Z", "action": "HOLD"}
            ]),
            json!([
                {"daily_start": "17:00", "daily_end": "19:00", "action": "HOLD"},
                {"start": "2026-12-01T17:30:00Z", "end": "2026-12-01T17:45:00Z", "action": "HOLD"}
            ]),
        ] {
            let err = parse(json!({"valid_until": "2026-12-31T00:00:00Z", "windows": windows}))
                .unwrap_err();
            assert!(err.starts_with("payload.windows[1]"), "{err}");
            assert!(err.contains("overlaps window 0"), "{err}");
        }
        // Back to back is no overlap.
        parse(json!({"valid_until": "2026-12-31T00:00:00Z", "windows": [
            {"daily_start": "17:00", "daily_end": "19:00", "action": "HOLD"},
            {"daily_start": "19:00", "daily_end": "21:00", "action": "HOLD"}
        ]}))
        .unwrap();
    }

    #[test]
    fn bad_values_are_refused_naming_the_field() {
        let cases = [
            (
                json!({"windows": [{"daily_start": "1:00", "daily_end": "02:00", "action": "HOLD"}]}),
                "payload.valid_until",
            ),
            (
                json!({"valid_until": "2026-12-31T00:00:00Z", "time_zone": "Mars/Olympus", "windows": []}),
                "payload.time_zone",
            ),
            (
                json!({"valid_until": "2026-12-31T00:00:00Z", "windows": [{"daily_start": "25:00", "daily_end": "02:00", "action": "HOLD"}]}),
                "payload.windows[0].daily_start",
            ),
            (
                json!({"valid_until": "2026-12-31T00:00:00Z", "windows": [{"daily_start": "01:00", "daily_end": "02:00", "action": "CHARGE", "to_soc_pct": 80}]}),
                "payload.windows[0].power_w",
            ),
            (
                json!({"valid_until": "2026-12-31T00:00:00Z", "windows": [{"daily_start": "01:00", "daily_end": "02:00", "action": "CHARGE", "power_w": 1000, "to_soc_pct": 180}]}),
                "payload.windows[0].to_soc_pct",
            ),
            (
                json!({"valid_until": "2026-12-31T00:00:00Z", "windows": [{"daily_start": "01:00", "daily_end": "02:00", "action": "HOLD", "power_w": 5}]}),
                "payload.windows[0].power_w",
            ),
            (
                json!({"valid_until": "2026-12-31T00:00:00Z", "windows": [{"daily_start": "01:00", "daily_end": "02:00", "action": "LIMITS", "export_limit_w": -5}]}),
                "payload.windows[0].export_limit_w",
            ),
            (
                json!({"valid_until": "2026-12-31T00:00:00Z", "windows": [{"daily_start": "01:00", "daily_end": "02:00", "action": "BOOST"}]}),
                "payload.windows[0].action",
            ),
            (
                json!({"valid_until": "2026-12-31T00:00:00Z", "windows": [{"start": "2026-12-01T02:00:00Z", "end": "2026-12-01T01:00:00Z", "action": "HOLD"}]}),
                "payload.windows[0].end",
            ),
            (
                json!({"valid_until": "2026-12-31T00:00:00Z", "windows": [{"daily_start": "01:00", "action": "HOLD"}]}),
                "payload.windows[0].start",
            ),
            (
                json!({"valid_until": "2026-12-31T00:00:00Z", "windows": [{"start": "0001-01-01T00:00:00Z", "end": "9999-01-01T00:00:00Z", "action": "HOLD"}]}),
                "payload.windows[0].end",
            ),
            (
                json!({"valid_until": "2026-12-31T00:00:00Z", "windows": [{"daily_start": "01:00", "daily_end": "02:00", "action": "HOLD", "powr_w": 5}]}),
                "payload.windows[0]",
            ),
        ];
        for (payload, field) in cases {
            let err = parse(payload.clone()).unwrap_err();
            assert!(err.starts_with(field), "{payload}: {err}");
        }
    }

    #[test]
    fn valid_until_must_lie_ahead_within_a_year() {
        let s = parse(json!({"valid_until": "2026-12-01T00:00:00Z", "windows": [
            {"daily_start": "01:00", "daily_end": "02:00", "action": "HOLD"}]}))
        .unwrap();
        assert!(s.check_current(at("2026-11-30T00:00:00Z")).is_ok());
        assert!(s.check_current(at("2026-12-01T00:00:00Z")).is_err());
        assert!(s.check_current(at("2025-11-01T00:00:00Z")).is_err());
        // A clear has no end.
        let clear = parse(json!({"windows": []})).unwrap();
        assert!(clear.check_current(at("2030-01-01T00:00:00Z")).is_ok());
        assert!(clear.active_at(at("2026-12-01T00:00:00Z")).is_none());
    }
}
