//! Deciding, pure: what a rule makes of a packet, and when an alert opens or resolves. No
//! database, no clock of its own (packet times), so the hysteresis is unit-tested alone.

use chrono::{DateTime, Utc};
use ems_protocol::Telemetry;
use ems_protocol::api::{AlertKind, NewAlertRule};

/// Why a rule is refused; names the field.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct RuleError {
    pub field: &'static str,
    pub message: String,
}

fn bad(field: &'static str, message: impl Into<String>) -> RuleError {
    RuleError {
        field,
        message: message.into(),
    }
}

/// Highest `GRID_EXPORT_ABOVE` threshold, W (a gigawatt: beyond any site, still a number
/// every client prints plainly).
const MAX_EXPORT_W: f64 = 1e9;

/// Longest `for_s` / `clear_s`: a week.
const MAX_DELAY_S: u32 = 7 * 86_400;

/// Checks a rule and fills in the defaults (a `clear_threshold` equal to `threshold`).
pub fn validate(mut rule: NewAlertRule) -> Result<NewAlertRule, RuleError> {
    if rule.name.trim().is_empty() || rule.name.len() > 100 {
        return Err(bad("name", "1 to 100 characters"));
    }
    // Shown in notifications, e-mail subjects and logs: no line breaks, escapes or NUL bytes.
    if rule.name.contains(char::is_control) {
        return Err(bad("name", "no control characters"));
    }
    if let Some(device) = &rule.device_id {
        ems_protocol::validate_id("device_id", device)
            .map_err(|e| bad("device_id", e.to_string()))?;
    }
    if let Some(flag) = &rule.flag {
        ems_protocol::validate_id("flag", flag).map_err(|e| bad("flag", e.to_string()))?;
    }
    if rule.for_s > MAX_DELAY_S {
        return Err(bad("for_s", format!("at most {MAX_DELAY_S} s (a week)")));
    }
    if rule.clear_s > MAX_DELAY_S {
        return Err(bad("clear_s", format!("at most {MAX_DELAY_S} s (a week)")));
    }
    match rule.kind {
        AlertKind::Offline | AlertKind::ErrorFlag => {
            if rule.threshold.is_some() || rule.clear_threshold.is_some() {
                return Err(bad(
                    "threshold",
                    format!("{} takes no threshold", rule.kind),
                ));
            }
            if rule.kind == AlertKind::Offline && rule.flag.is_some() {
                return Err(bad("flag", "only ERROR_FLAG rules name a flag"));
            }
        }
        AlertKind::SocBelow | AlertKind::GridExportAbove => {
            if rule.flag.is_some() {
                return Err(bad("flag", "only ERROR_FLAG rules name a flag"));
            }
            let Some(threshold) = rule.threshold.filter(|t| t.is_finite()) else {
                return Err(bad("threshold", format!("{} needs a threshold", rule.kind)));
            };
            let clear = rule.clear_threshold.unwrap_or(threshold);
            if !clear.is_finite() {
                return Err(bad("clear_threshold", "a finite number"));
            }
            if rule.kind == AlertKind::SocBelow {
                if !(0.0..=100.0).contains(&threshold) || !(0.0..=100.0).contains(&clear) {
                    return Err(bad("threshold", "SoC thresholds are 0 to 100 %"));
                }
                if clear < threshold {
                    return Err(bad(
                        "clear_threshold",
                        "at or above threshold: the SoC must rise past it to resolve",
                    ));
                }
            } else {
                if threshold < 0.0 || clear < 0.0 {
                    return Err(bad("threshold", "export in W, a positive number"));
                }
                if threshold > MAX_EXPORT_W {
                    return Err(bad("threshold", format!("at most {MAX_EXPORT_W} W")));
                }
                if clear > threshold {
                    return Err(bad(
                        "clear_threshold",
                        "at or below threshold: the export must fall past it to resolve",
                    ));
                }
            }
            rule.clear_threshold = Some(clear);
        }
    }
    Ok(rule)
}

/// What one packet says about a rule's condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reading {
    /// The condition holds.
    Bad,
    /// The condition is cleared (past the clear threshold).
    Clear,
    /// In the hysteresis band, or the value is missing: neither.
    Between,
}

/// What `t` says about `rule` (an `OFFLINE` rule reads nothing from packets).
pub fn read(rule: &NewAlertRule, t: &Telemetry) -> Reading {
    let band = |bad: bool, clear: bool| match (bad, clear) {
        (true, _) => Reading::Bad,
        (false, true) => Reading::Clear,
        (false, false) => Reading::Between,
    };
    let threshold = rule.threshold.unwrap_or_default();
    let clear = rule.clear_threshold.unwrap_or(threshold);
    match rule.kind {
        AlertKind::Offline => Reading::Between,
        AlertKind::ErrorFlag => {
            let flags = &t.system_status.error_flags;
            let raised = match &rule.flag {
                Some(name) => flags.iter().any(|f| f.as_str() == name),
                None => !flags.is_empty(),
            };
            band(raised, !raised)
        }
        AlertKind::SocBelow => match t.battery.soc {
            Some(soc) => band(soc < threshold, soc >= clear),
            None => Reading::Between,
        },
        // Grid power − = exporting: export is −grid_power.
        AlertKind::GridExportAbove => match t.grid.power {
            Some(p) => band(-p > threshold, -p <= clear),
            None => Reading::Between,
        },
    }
}

/// A one-line description of what `t` shows for `rule`, for the alert's message.
pub fn describe(rule: &NewAlertRule, t: &Telemetry) -> String {
    match rule.kind {
        AlertKind::Offline => "offline".into(),
        AlertKind::ErrorFlag => {
            let flags: Vec<&str> = t
                .system_status
                .error_flags
                .iter()
                .map(|f| f.as_str())
                .collect();
            format!("error flags raised: {}", flags.join(", "))
        }
        AlertKind::SocBelow => format!(
            "SoC {} % below {} %",
            t.battery.soc.unwrap_or(f64::NAN),
            rule.threshold.unwrap_or_default()
        ),
        AlertKind::GridExportAbove => format!(
            "exporting {} W to the grid, above {} W",
            -t.grid.power.unwrap_or(f64::NAN),
            rule.threshold.unwrap_or_default()
        ),
    }
}

/// What the evaluator should do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Open,
    Resolve,
}

/// One rule's view of one device: since when its condition holds or is cleared, and whether
/// its alert is open.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Watch {
    bad_since: Option<DateTime<Utc>>,
    clear_since: Option<DateTime<Utc>>,
    /// An alert of this rule is open for the device (here or as the database says).
    pub open: bool,
}

impl Watch {
    /// A fresh watch, its alert open or not as the database says.
    pub fn new(open: bool) -> Self {
        Watch {
            open,
            ..Watch::default()
        }
    }

    /// Takes in a reading at `at`: opens after `for_s` of `Bad`, resolves after `clear_s` of
    /// `Clear`; a reading in the band resets both, so a value that wobbles around the
    /// threshold neither opens nor resolves again (hysteresis).
    pub fn see(
        &mut self,
        rule: &NewAlertRule,
        reading: Reading,
        at: DateTime<Utc>,
    ) -> Option<Decision> {
        let held = |since: DateTime<Utc>, s: u32| (at - since).num_seconds() >= i64::from(s);
        match reading {
            Reading::Bad => {
                self.clear_since = None;
                let since = *self.bad_since.get_or_insert(at);
                (!self.open && held(since, rule.for_s)).then(|| {
                    self.open = true;
                    Decision::Open
                })
            }
            Reading::Clear => {
                self.bad_since = None;
                let since = *self.clear_since.get_or_insert(at);
                (self.open && held(since, rule.clear_s)).then(|| {
                    self.open = false;
                    Decision::Resolve
                })
            }
            Reading::Between => {
                self.bad_since = None;
                self.clear_since = None;
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn soc_rule(threshold: f64, clear: f64, for_s: u32, clear_s: u32) -> NewAlertRule {
        validate(NewAlertRule {
            name: "low".into(),
            kind: AlertKind::SocBelow,
            device_id: None,
            threshold: Some(threshold),
            clear_threshold: Some(clear),
            flag: None,
            for_s,
            clear_s,
        })
        .unwrap()
    }

    fn at(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + s, 0).unwrap()
    }

    fn packet(soc: f64) -> Telemetry {
        Telemetry::example(
            "d",
            ems_protocol::Timestamp::from_unix(1_700_000_000).unwrap(),
            soc,
        )
    }

    #[test]
    fn opens_only_after_the_condition_held_for_s() {
        let rule = soc_rule(20.0, 30.0, 10, 0);
        let mut w = Watch::default();
        assert_eq!(w.see(&rule, read(&rule, &packet(15.0)), at(0)), None);
        assert_eq!(w.see(&rule, read(&rule, &packet(15.0)), at(9)), None);
        assert_eq!(
            w.see(&rule, read(&rule, &packet(15.0)), at(10)),
            Some(Decision::Open)
        );
        assert_eq!(
            w.see(&rule, read(&rule, &packet(15.0)), at(11)),
            None,
            "no second open"
        );
    }

    #[test]
    fn a_dip_shorter_than_for_s_restarts_the_wait() {
        let rule = soc_rule(20.0, 30.0, 10, 0);
        let mut w = Watch::default();
        w.see(&rule, read(&rule, &packet(15.0)), at(0));
        w.see(&rule, read(&rule, &packet(25.0)), at(5));
        assert_eq!(w.see(&rule, read(&rule, &packet(15.0)), at(12)), None);
        assert_eq!(
            w.see(&rule, read(&rule, &packet(15.0)), at(22)),
            Some(Decision::Open)
        );
    }

    #[test]
    fn flapping_inside_the_band_neither_resolves_nor_reopens() {
        let rule = soc_rule(20.0, 30.0, 0, 0);
        let mut w = Watch::default();
        assert_eq!(w.see(&rule, Reading::Bad, at(0)), Some(Decision::Open));
        for s in 1..20 {
            let soc = if s % 2 == 0 { 19.0 } else { 25.0 };
            assert_eq!(
                w.see(&rule, read(&rule, &packet(soc)), at(s)),
                None,
                "at {s}"
            );
        }
        assert_eq!(
            w.see(&rule, read(&rule, &packet(31.0)), at(20)),
            Some(Decision::Resolve)
        );
    }

    #[test]
    fn resolves_only_after_clear_s() {
        let rule = soc_rule(20.0, 30.0, 0, 5);
        let mut w = Watch::default();
        w.see(&rule, Reading::Bad, at(0));
        assert_eq!(w.see(&rule, Reading::Clear, at(1)), None);
        assert_eq!(w.see(&rule, Reading::Clear, at(5)), None);
        assert_eq!(w.see(&rule, Reading::Clear, at(6)), Some(Decision::Resolve));
    }

    #[test]
    fn export_reads_negative_grid_power() {
        let rule = validate(NewAlertRule {
            name: "export".into(),
            kind: AlertKind::GridExportAbove,
            device_id: None,
            threshold: Some(3000.0),
            clear_threshold: Some(2500.0),
            flag: None,
            for_s: 0,
            clear_s: 0,
        })
        .unwrap();
        let mut t = packet(50.0);
        t.grid.power = Some(-3500.0);
        assert_eq!(read(&rule, &t), Reading::Bad);
        t.grid.power = Some(-2800.0);
        assert_eq!(read(&rule, &t), Reading::Between);
        t.grid.power = Some(3500.0);
        assert_eq!(read(&rule, &t), Reading::Clear, "importing is no export");
    }

    #[test]
    fn validation_names_the_field() {
        let mut rule = soc_rule(20.0, 30.0, 0, 0);
        rule.clear_threshold = Some(10.0);
        assert_eq!(validate(rule).unwrap_err().field, "clear_threshold");
        let offline = NewAlertRule {
            name: "off".into(),
            kind: AlertKind::Offline,
            device_id: None,
            threshold: Some(1.0),
            clear_threshold: None,
            flag: None,
            for_s: 60,
            clear_s: 0,
        };
        assert_eq!(validate(offline).unwrap_err().field, "threshold");
    }
}
