//! Forecast of house load and PV for the next hours, from the device's own stored telemetry.
//!
//! # Method
//! One SQL query averages the last [`WEEKS`] weeks of `telemetry` per local weekday and
//! 15-minute slot of the day (in the plan's time zone, so the pattern follows the household's
//! clock across DST): the house load from the agent's `site.house_power`, PV from
//! `site.pv_power` (read only when they are sane numbers, as the energy endpoint does), and the
//! net load `grid_power − battery_power` (import and charge positive), which is house − PV.
//! Each sample is one stored packet (about a second), so a slot's average weighs its seconds
//! equally. A future slot takes, in this order:
//! 1. `weekday`: the same weekday and slot, when at least [`MIN_SAMPLES`] samples carry the
//!    house load;
//! 2. `all_days`: the same slot over all weekdays (sample-weighted);
//! 3. `net`: no `site` extension at all: the net load of the same slot (weekday, else all
//!    days), split into load = max(net, 0) and PV = max(−net, 0);
//! 4. `none`: no history for the slot: zero load and zero PV (the plan then only arbitrages the
//!    tariff).
//!
//! Its error on ems-sim days (28 simulated days of history, `cargo run --release -p ems-agent
//! --example plan_day`) is in docs/benchmarks.md: PV is off by 0.06-0.68 kW per slot on average
//! (a history average cannot know the day's weather); ems-sim's household repeats every day.

use std::collections::HashMap;

use chrono::{DateTime, Datelike, Duration, Timelike, Utc};
use ems_protocol::zone::Zone;

/// Weeks of history averaged.
pub const WEEKS: i64 = 4;
/// Fewest samples behind a weekday slot's average before the all-days average is used instead.
pub const MIN_SAMPLES: i64 = 60;

/// Averages per local ISO weekday (1 = Monday) and slot of the day (0..96), W.
pub const HISTORY: &str = "\
WITH s AS ( \
    SELECT time AT TIME ZONE $4 AS local, \
        CASE WHEN jsonb_typeof(extensions->'site'->'pv_power') = 'number' \
              AND (extensions->'site'->'pv_power')::numeric BETWEEN 0 AND 1e8 \
             THEN (extensions->'site'->'pv_power')::numeric::float8 END AS pv, \
        CASE WHEN jsonb_typeof(extensions->'site'->'house_power') = 'number' \
              AND (extensions->'site'->'house_power')::numeric BETWEEN 0 AND 1e8 \
             THEN (extensions->'site'->'house_power')::numeric::float8 END AS hp, \
        CASE WHEN abs(grid_power) <= 1e8 AND abs(coalesce(battery_power, 0)) <= 1e8 \
             THEN grid_power - coalesce(battery_power, 0) END AS net \
    FROM telemetry WHERE device_id = $1 AND time >= $2 AND time < $3 \
) \
SELECT extract(isodow FROM local)::int4, \
    (extract(hour FROM local) * 4 + floor(extract(minute FROM local) / 15))::int4, \
    avg(hp), count(hp), avg(pv), count(pv), avg(net), count(net) \
FROM s GROUP BY 1, 2";

/// One row of [`HISTORY`].
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct SlotHistory {
    pub house_w: Option<f64>,
    pub house_n: i64,
    pub pv_w: Option<f64>,
    pub pv_n: i64,
    pub net_w: Option<f64>,
    pub net_n: i64,
}

/// What the forecast says for one slot.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SlotForecast {
    pub load_w: f64,
    pub pv_w: f64,
    /// Which step of the method gave it: `weekday`, `all_days`, `net` or `none`.
    pub method: &'static str,
}

/// The history of `device_id` before `now`, keyed by (ISO weekday, slot of the day).
pub async fn history(
    client: &tokio_postgres::Client,
    device_id: &str,
    now: DateTime<Utc>,
    tz: &Zone,
) -> Result<HashMap<(i32, i32), SlotHistory>, tokio_postgres::Error> {
    let from = now - Duration::weeks(WEEKS);
    let rows = client
        .query(HISTORY, &[&device_id, &from, &now, &tz.name()])
        .await?;
    Ok(rows
        .iter()
        .map(|r| {
            let h = SlotHistory {
                house_w: r.get(2),
                house_n: r.get(3),
                pv_w: r.get(4),
                pv_n: r.get(5),
                net_w: r.get(6),
                net_n: r.get(7),
            };
            ((r.get(0), r.get(1)), h)
        })
        .collect())
}

/// Sample-weighted mean of `(value, count)` pairs.
fn mean(values: impl Iterator<Item = (Option<f64>, i64)>) -> Option<(f64, i64)> {
    let (sum, n) = values.fold((0.0, 0i64), |(s, n), (v, c)| match v {
        Some(v) if c > 0 => (s + v * c as f64, n + c),
        _ => (s, n),
    });
    (n > 0).then(|| (sum / n as f64, n))
}

/// The forecast for slots starting at each of `starts`, by the module's method.
pub fn forecast(
    history: &HashMap<(i32, i32), SlotHistory>,
    starts: &[DateTime<Utc>],
    tz: &Zone,
) -> Vec<SlotForecast> {
    starts
        .iter()
        .map(|start| {
            let local = tz.local(*start);
            let dow = local.weekday().number_from_monday() as i32;
            let slot = (local.hour() * 4 + local.minute() / 15) as i32;
            let same_slot = || (1..=7).filter_map(|d| history.get(&(d, slot)));
            let weekday = history.get(&(dow, slot)).copied().unwrap_or_default();
            if weekday.house_n >= MIN_SAMPLES {
                return SlotForecast {
                    load_w: weekday.house_w.unwrap_or(0.0),
                    pv_w: if weekday.pv_n > 0 {
                        weekday.pv_w.unwrap_or(0.0)
                    } else {
                        0.0
                    },
                    method: "weekday",
                };
            }
            if let Some((load_w, _)) = mean(same_slot().map(|h| (h.house_w, h.house_n))) {
                let pv_w = mean(same_slot().map(|h| (h.pv_w, h.pv_n))).map_or(0.0, |m| m.0);
                return SlotForecast {
                    load_w,
                    pv_w,
                    method: "all_days",
                };
            }
            let net = if weekday.net_n >= MIN_SAMPLES {
                weekday.net_w
            } else {
                mean(same_slot().map(|h| (h.net_w, h.net_n))).map(|m| m.0)
            };
            match net {
                Some(net_w) => SlotForecast {
                    load_w: net_w.max(0.0),
                    pv_w: (-net_w).max(0.0),
                    method: "net",
                },
                None => SlotForecast {
                    load_w: 0.0,
                    pv_w: 0.0,
                    method: "none",
                },
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(house: f64, pv: f64, n: i64) -> SlotHistory {
        SlotHistory {
            house_w: Some(house),
            house_n: n,
            pv_w: Some(pv),
            pv_n: n,
            net_w: Some(house - pv),
            net_n: n,
        }
    }

    #[test]
    fn weekday_then_all_days_then_net_then_nothing() {
        // 2026-12-01 is a Tuesday (ISO 2).
        let t = |hh: u32, mm: u32| {
            "2026-12-01T00:00:00Z".parse::<DateTime<Utc>>().unwrap()
                + Duration::minutes((hh * 60 + mm) as i64)
        };
        let mut history = HashMap::new();
        history.insert((2, 0), h(800.0, 0.0, 900));
        history.insert((1, 0), h(100.0, 0.0, 900));
        // Slot 1: few Tuesday samples, so all days weighted: (300·10 + 500·90) / 100.
        history.insert((2, 1), h(300.0, 0.0, 10));
        history.insert((3, 1), h(500.0, 20.0, 90));
        // Slot 2: no site extension, net load −400 W (PV surplus).
        history.insert(
            (5, 2),
            SlotHistory {
                net_w: Some(-400.0),
                net_n: 900,
                ..SlotHistory::default()
            },
        );
        let f = forecast(
            &history,
            &[t(0, 0), t(0, 15), t(0, 30), t(0, 45)],
            &Zone::utc(),
        );
        assert_eq!((f[0].load_w, f[0].method), (800.0, "weekday"));
        assert_eq!(f[1].method, "all_days");
        assert!((f[1].load_w - 480.0).abs() < 1e-9, "{:?}", f[1]);
        assert!((f[1].pv_w - 18.0).abs() < 1e-9, "{:?}", f[1]);
        assert_eq!((f[2].load_w, f[2].pv_w, f[2].method), (0.0, 400.0, "net"));
        assert_eq!((f[3].load_w, f[3].pv_w, f[3].method), (0.0, 0.0, "none"));
    }

    #[test]
    fn slots_follow_the_local_clock() {
        let mut history = HashMap::new();
        // Tuesday 08:00 local in Berlin is slot 32.
        history.insert((2, 32), h(1234.0, 0.0, 900));
        let start = "2026-12-01T07:00:00Z".parse::<DateTime<Utc>>().unwrap();
        let f = forecast(&history, &[start], &Zone::named("Europe/Berlin").unwrap());
        assert_eq!((f[0].load_w, f[0].method), (1234.0, "weekday"));
    }
}
