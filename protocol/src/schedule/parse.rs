//! Checking one window of a `SET_SCHEDULE` payload: its time fields, its action's fields (each
//! required, allowed or refused by the action) and their values.

use chrono::{Duration, NaiveTime};

use super::{MAX_VALIDITY_DAYS, When, Window, WindowAction, WindowPayload};
use crate::ProtocolError;
use crate::command::MAX_TARGET_POWER_W;

/// Window `i` of a payload, checked.
pub(super) fn window(i: usize, w: &WindowPayload) -> Result<Window, ProtocolError> {
    let field = |name: &str| format!("payload.windows[{i}].{name}");
    let invalid = |name: &str, reason: String| Err(ProtocolError::invalid(field(name), reason));
    let when = match (w.start, w.end, &w.daily_start, &w.daily_end) {
        (Some(start), Some(end), None, None) => {
            if end <= start {
                return invalid("end", "must be after start".into());
            }
            // Also bounds the work of the overlap check, which walks a one-off window's days.
            if end - start > Duration::days(MAX_VALIDITY_DAYS) {
                return invalid(
                    "end",
                    format!("a one-off window lasts at most {MAX_VALIDITY_DAYS} days"),
                );
            }
            When::Once { start, end }
        }
        (None, None, Some(s), Some(e)) => {
            let parse = |name: &str, text: &str| {
                NaiveTime::parse_from_str(text, "%H:%M").map_err(|_| {
                    ProtocolError::invalid(field(name), format!("{text:?} is not HH:MM"))
                })
            };
            let (start, end) = (parse("daily_start", s)?, parse("daily_end", e)?);
            if start == end {
                return invalid("daily_end", "must differ from daily_start".into());
            }
            When::Daily { start, end }
        }
        _ => {
            return invalid(
                "start",
                "a window has either start and end (RFC 3339) or daily_start and daily_end \
                 (HH:MM)"
                    .into(),
            );
        }
    };
    let power = |v: Option<f64>| -> Result<f64, ProtocolError> {
        match v {
            None => Err(ProtocolError::invalid(
                field("power_w"),
                format!("is required for {}", w.action),
            )),
            Some(p) if p.is_finite() && p > 0.0 && p <= MAX_TARGET_POWER_W => Ok(p),
            Some(p) => Err(ProtocolError::invalid(
                field("power_w"),
                format!("{p} W must be above 0 and at most {MAX_TARGET_POWER_W} W"),
            )),
        }
    };
    let soc = |name: &str, v: Option<f64>| -> Result<f64, ProtocolError> {
        match v {
            Some(s) if (0.0..=100.0).contains(&s) => Ok(s),
            Some(s) => Err(ProtocolError::invalid(
                field(name),
                format!("{s} % is outside 0 to 100"),
            )),
            None => Err(ProtocolError::invalid(
                field(name),
                format!("is required for {}", w.action),
            )),
        }
    };
    let unused = |present: &[(&str, bool)]| -> Result<(), ProtocolError> {
        match present.iter().find(|(_, p)| *p) {
            Some((name, _)) => Err(ProtocolError::invalid(
                field(name),
                format!("is not used by {}", w.action),
            )),
            None => Ok(()),
        }
    };
    let limits = [
        ("target_grid_w", w.target_grid_w.is_some()),
        ("export_limit_w", w.export_limit_w.is_some()),
        ("import_limit_w", w.import_limit_w.is_some()),
    ];
    let action = match w.action.as_str() {
        "CHARGE" => {
            unused(&[("down_to_soc_pct", w.down_to_soc_pct.is_some())])?;
            unused(&limits)?;
            WindowAction::Charge {
                power_w: power(w.power_w)?,
                to_soc_pct: soc("to_soc_pct", w.to_soc_pct)?,
                from_grid: w.from_grid.unwrap_or(true),
            }
        }
        "DISCHARGE" => {
            unused(&[
                ("to_soc_pct", w.to_soc_pct.is_some()),
                ("from_grid", w.from_grid.is_some()),
            ])?;
            unused(&limits)?;
            WindowAction::Discharge {
                power_w: power(w.power_w)?,
                down_to_soc_pct: soc("down_to_soc_pct", w.down_to_soc_pct)?,
            }
        }
        "HOLD" => {
            unused(&[
                ("power_w", w.power_w.is_some()),
                ("to_soc_pct", w.to_soc_pct.is_some()),
                ("down_to_soc_pct", w.down_to_soc_pct.is_some()),
                ("from_grid", w.from_grid.is_some()),
            ])?;
            unused(&limits)?;
            WindowAction::Hold
        }
        "LIMITS" => {
            unused(&[
                ("power_w", w.power_w.is_some()),
                ("to_soc_pct", w.to_soc_pct.is_some()),
                ("down_to_soc_pct", w.down_to_soc_pct.is_some()),
                ("from_grid", w.from_grid.is_some()),
            ])?;
            if !limits.iter().any(|(_, p)| *p) {
                return invalid(
                    "action",
                    "LIMITS needs target_grid_w, export_limit_w or import_limit_w".into(),
                );
            }
            for (name, v) in [
                ("target_grid_w", w.target_grid_w),
                ("export_limit_w", w.export_limit_w),
                ("import_limit_w", w.import_limit_w),
            ] {
                if let Some(v) = v {
                    let magnitude = name != "target_grid_w";
                    if !v.is_finite() || v.abs() > MAX_TARGET_POWER_W || (magnitude && v < 0.0) {
                        return invalid(
                            name,
                            format!(
                                "{v} W must be finite, within {MAX_TARGET_POWER_W} W{}",
                                if magnitude { " and >= 0" } else { "" }
                            ),
                        );
                    }
                }
            }
            WindowAction::Limits {
                target_grid_w: w.target_grid_w,
                export_limit_w: w.export_limit_w,
                import_limit_w: w.import_limit_w,
            }
        }
        other => {
            return invalid(
                "action",
                format!("unknown action {other:?}, expected CHARGE, HOLD, DISCHARGE or LIMITS"),
            );
        }
    };
    Ok(Window { when, action })
}
