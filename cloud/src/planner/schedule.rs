//! A plan as a `SET_SCHEDULE`: one-off windows, consecutive slots of the same kind merged.
//!
//! | the plan in a slot | window |
//! |---|---|
//! | charges while importing | `CHARGE` at the largest planned power, to the SoC planned at its end, from the grid |
//! | discharges while exporting | `DISCHARGE` at the largest planned power, down to the SoC planned at its end |
//! | imports but keeps the battery idle | `HOLD` (save the energy for a dearer slot) |
//! | anything else (PV surplus into the battery, the battery into the house) | none: AUTO's self-consumption does it |
//!
//! A schedule holds at most [`MAX_WINDOWS`] windows; a longer plan is cut at the first window
//! that does not fit, and `valid_until` is set there, after which the device is back in AUTO.

use chrono::{DateTime, Duration, Utc};
use ems_protocol::schedule::{MAX_WINDOWS, SchedulePayload, WindowPayload};

use super::lp::{PlannedSlot, SLOT_H};

/// Below this a planned power counts as none, W.
const IDLE_W: f64 = 50.0;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Charge,
    Discharge,
    Hold,
    Auto,
}

fn kind(p: &PlannedSlot) -> Kind {
    if p.charge_w > IDLE_W && p.import_w > IDLE_W {
        Kind::Charge
    } else if p.discharge_w > IDLE_W && p.export_w > IDLE_W {
        Kind::Discharge
    } else if p.import_w > IDLE_W && p.discharge_w <= IDLE_W {
        Kind::Hold
    } else {
        Kind::Auto
    }
}

/// The schedule for `plan`, whose first slot starts at `start`.
pub fn to_schedule(start: DateTime<Utc>, plan: &[PlannedSlot]) -> SchedulePayload {
    let slot = Duration::seconds((SLOT_H * 3600.0) as i64);
    let mut windows: Vec<WindowPayload> = Vec::new();
    let mut valid_until = start + slot * plan.len() as i32;
    let mut previous = Kind::Auto;
    for (i, p) in plan.iter().enumerate() {
        let from = start + slot * i as i32;
        let to = from + slot;
        let k = kind(p);
        let name = match k {
            Kind::Charge => "CHARGE",
            Kind::Discharge => "DISCHARGE",
            Kind::Hold => "HOLD",
            Kind::Auto => {
                previous = k;
                continue;
            }
        };
        let soc = (p.soc_pct * 10.0).round() / 10.0;
        let power = p.charge_w.max(p.discharge_w).round();
        if k == previous
            && let Some(w) = windows.last_mut()
        {
            w.end = Some(to);
            w.power_w = w.power_w.map(|old| old.max(power));
            match k {
                Kind::Charge => w.to_soc_pct = Some(soc),
                Kind::Discharge => w.down_to_soc_pct = Some(soc),
                _ => {}
            }
            continue;
        }
        if windows.len() == MAX_WINDOWS {
            valid_until = from;
            break;
        }
        previous = k;
        windows.push(WindowPayload {
            start: Some(from),
            end: Some(to),
            action: name.to_string(),
            power_w: matches!(k, Kind::Charge | Kind::Discharge).then_some(power),
            to_soc_pct: (k == Kind::Charge).then_some(soc),
            from_grid: (k == Kind::Charge).then_some(true),
            down_to_soc_pct: (k == Kind::Discharge).then_some(soc),
            ..WindowPayload::default()
        });
    }
    SchedulePayload {
        valid_until: Some(valid_until),
        time_zone: None,
        windows,
    }
}

/// A window's part still to come: its start and end (cut) and the window.
type Ahead = (DateTime<Utc>, DateTime<Utc>, WindowPayload);

/// Largest difference in a window's power that still counts as the same plan, W.
const SAME_POWER_W: f64 = 100.0;
/// Largest difference in a window's target SoC that still counts as the same plan, points.
const SAME_SOC_PCT: f64 = 2.0;

/// Whether a device that holds `sent` would do the same as with `new` from `now` until
/// `sent`'s end: the windows still to come (cut at `now` and at `sent`'s `valid_until`) have the
/// same actions and times, and powers and target SoCs within [`SAME_POWER_W`] and
/// [`SAME_SOC_PCT`]. The re-planner then keeps the schedule the device has instead of sending
/// an equal one every quarter hour.
pub fn same_plan(sent: &SchedulePayload, new: &SchedulePayload, now: DateTime<Utc>) -> bool {
    let Some(until) = sent.valid_until else {
        return false;
    };
    if until <= now || new.valid_until.is_some_and(|v| v < until) {
        return false;
    }
    // The part of each window between now and `until`; `None` for a daily window.
    let ahead = |p: &SchedulePayload| -> Option<Vec<Ahead>> {
        let mut out = Vec::new();
        for w in &p.windows {
            let (start, end) = (w.start?.max(now), w.end?.min(until));
            if start < end {
                out.push((start, end, w.clone()));
            }
        }
        Some(out)
    };
    let (Some(a), Some(b)) = (ahead(sent), ahead(new)) else {
        // Daily windows: not the planner's; never taken as the same.
        return false;
    };
    let close = |x: Option<f64>, y: Option<f64>, tolerance: f64| match (x, y) {
        (Some(x), Some(y)) => (x - y).abs() <= tolerance,
        (None, None) => true,
        _ => false,
    };
    a.len() == b.len()
        && a.iter().zip(&b).all(|((s1, e1, w1), (s2, e2, w2))| {
            s1 == s2
                && e1 == e2
                && w1.action == w2.action
                && w1.from_grid == w2.from_grid
                && close(w1.power_w, w2.power_w, SAME_POWER_W)
                && close(w1.to_soc_pct, w2.to_soc_pct, SAME_SOC_PCT)
                && close(w1.down_to_soc_pct, w2.down_to_soc_pct, SAME_SOC_PCT)
        })
}

#[cfg(test)]
mod tests {
    use ems_protocol::schedule::Schedule;

    use super::super::lp::{optimise, tests};
    use super::*;

    fn slot(charge_w: f64, discharge_w: f64, import_w: f64, export_w: f64) -> PlannedSlot {
        PlannedSlot {
            charge_w,
            discharge_w,
            import_w,
            export_w,
            soc_pct: 50.0,
        }
    }

    #[test]
    fn consecutive_slots_merge_and_self_consumption_is_left_to_auto() {
        let start: DateTime<Utc> = "2026-12-01T00:00:00Z".parse().unwrap();
        let plan = [
            slot(3000.0, 0.0, 3500.0, 0.0),
            PlannedSlot {
                soc_pct: 60.04,
                ..slot(4000.0, 0.0, 4500.0, 0.0)
            },
            slot(0.0, 500.0, 0.0, 0.0),
            slot(0.0, 0.0, 800.0, 0.0),
            slot(0.0, 2000.0, 0.0, 1500.0),
        ];
        let s = to_schedule(start, &plan);
        let w = &s.windows;
        assert_eq!(w.len(), 3, "{w:?}");
        assert_eq!(w[0].action, "CHARGE");
        assert_eq!(w[0].end, Some(start + Duration::minutes(30)));
        assert_eq!((w[0].power_w, w[0].to_soc_pct), (Some(4000.0), Some(60.0)));
        assert_eq!(w[1].action, "HOLD");
        assert_eq!(w[1].start, Some(start + Duration::minutes(45)));
        assert_eq!(w[2].action, "DISCHARGE");
        assert_eq!(s.valid_until, Some(start + Duration::minutes(75)));
        Schedule::from_payload(&s).unwrap();
    }

    #[test]
    fn the_same_plan_a_quarter_hour_later_is_recognised_and_a_changed_one_is_not() {
        let start: DateTime<Utc> = "2026-12-01T00:00:00Z".parse().unwrap();
        let q = Duration::minutes(15);
        let plan = [
            slot(3000.0, 0.0, 3500.0, 0.0),
            slot(3000.0, 0.0, 3500.0, 0.0),
            slot(0.0, 0.0, 0.0, 0.0),
            slot(0.0, 2000.0, 0.0, 1500.0),
            slot(0.0, 0.0, 0.0, 0.0),
        ];
        let sent = to_schedule(start, &plan);
        // A quarter hour later: the plan from the second slot on, with a new slot at its end
        // and a power 40 W off (the forecast moved a little).
        let mut later = plan[1..].to_vec();
        later[0].charge_w = 2960.0;
        later.push(slot(0.0, 0.0, 0.0, 0.0));
        let new = to_schedule(start + q, &later);
        assert!(same_plan(&sent, &new, start + q));
        // The discharge moved by a slot: not the same.
        let mut moved = later.clone();
        moved.swap(2, 3);
        assert!(!same_plan(
            &sent,
            &to_schedule(start + q, &moved),
            start + q
        ));
        // A power 500 W off: not the same.
        let mut stronger = later.clone();
        stronger[0].charge_w = 3500.0;
        assert!(!same_plan(
            &sent,
            &to_schedule(start + q, &stronger),
            start + q
        ));
        // A new plan that ends before the one sent, or a sent one that has ended: not the same.
        assert!(!same_plan(
            &sent,
            &to_schedule(start + q, &later[..2]),
            start + q
        ));
        assert!(!same_plan(&sent, &new, start + q * 6));
    }

    #[test]
    fn a_day_plan_is_a_valid_schedule_within_the_window_limit() {
        let start: DateTime<Utc> = "2026-12-01T00:00:00Z".parse().unwrap();
        let plan = optimise(&tests::tariff_day(0.0), &tests::battery()).unwrap();
        let s = to_schedule(start, &plan.slots);
        assert!(!s.windows.is_empty());
        assert!(s.windows.len() <= MAX_WINDOWS);
        assert!(s.windows.iter().any(|w| w.action == "CHARGE"));
        Schedule::from_payload(&s).unwrap();
        // Alternating slots cannot merge: cut at the window limit.
        let zigzag: Vec<_> = (0..192)
            .map(|i| {
                if i % 2 == 0 {
                    slot(1000.0, 0.0, 1500.0, 0.0)
                } else {
                    slot(0.0, 0.0, 0.0, 0.0)
                }
            })
            .collect();
        let s = to_schedule(start, &zigzag);
        assert_eq!(s.windows.len(), MAX_WINDOWS);
        assert_eq!(s.valid_until, Some(start + Duration::minutes(15 * 2 * 48)));
        Schedule::from_payload(&s).unwrap();
    }
}
