//! Issue 17's done-when measurement: the cloud planner's plan, carried out by the agent's real
//! `Controller` on ems-sim's day plant, against AUTO self-consumption alone and no battery, on a
//! sunny and a cloudy day with a time-of-use tariff. Prints the tables of docs/benchmarks.md
//! ("Cloud planner on ems-sim days").
//!
//! ```sh
//! cargo run --release -p ems-agent --example plan_day
//! ```
//!
//! How a planned day runs, as in production:
//! 1. **History**: the 28 days before the measured day are simulated (no battery; ems-sim's
//!    profile with its noise, a mix of sunny and cloudy days, each with its own seed), and
//!    their house load and PV sampled once a second (one stored packet each) into the
//!    per-(weekday, slot) averages that the planner's SQL query (`planner::forecast::HISTORY`)
//!    returns. The planner's own `planner::forecast::forecast` turns them into the day's
//!    96 slots. The error of that forecast against the measured day is printed.
//! 2. **Plan**: `planner::lp::optimise` on the forecast, the tariff and the measured SoC, then
//!    `planner::schedule::to_schedule` as the `SET_SCHEDULE` payload the cloud sends.
//! 3. **Run**: the payload checked as the agent checks it (`Schedule::from_payload`), its active
//!    window each second turned into the controller's action (`ems_agent::schedule::to_action`,
//!    what the agent's loop does), the controller's setpoint into the plant.
//!
//! Two planned variants: one plan at 00:00, and a receding horizon that plans the rest of the
//! day again every 15 minutes from the SoC measured then (what the cloud's re-planner does).
//!
//! An example, not a bench (like `day.rs`): it runs in seconds and needs no harness.

mod common;
use common::measurements;
use std::collections::HashMap;
use std::time::{Duration as StdDuration, Instant};

use anyhow::{Context, Result};
use chrono::{DateTime, Datelike, Duration, Utc};
use ems_agent::control::{Controller, Limits, ScheduleAction, Strategy};
use ems_cloud::planner::forecast::{self, SlotForecast, SlotHistory};
use ems_cloud::planner::lp::{self, SLOT_H, SlotInput};
use ems_cloud::planner::schedule::to_schedule;
use ems_protocol::schedule::Schedule;
use ems_sim::day::{self, DAY_S, DayProfile, Plant, Report, Tick, Weather};

/// Slots in the measured day.
const SLOTS: usize = 96;
/// Seconds per slot.
const SLOT_S: f64 = SLOT_H * 3600.0;
/// Days of history (the planner's `forecast::WEEKS` weeks).
const HISTORY_DAYS: i64 = 7 * forecast::WEEKS;
/// The grid connection's limits given to the planner and checked on the plant, W.
const IMPORT_LIMIT_W: f64 = 11_000.0;
const EXPORT_LIMIT_W: f64 = 4_000.0;
/// Battery of the day plant (ems-sim's `SiteParams` default) and the agent's default limits.
const CAPACITY_WH: f64 = 10_000.0;
const EFFICIENCY: f64 = 0.95;
const START_SOC_PCT: f64 = 50.0;

/// The measured day's midnight (UTC is the plan's time zone here): a Monday.
fn day_start() -> DateTime<Utc> {
    "2026-11-30T00:00:00Z".parse().expect("a valid constant")
}

/// Weather of history day `d` (0 = the oldest): a fixed pattern, about 60 % sunny.
fn history_weather(d: i64) -> Weather {
    if (d * 7) % 10 < 6 {
        Weather::Sunny
    } else {
        Weather::Cloudy
    }
}

/// The per-(ISO weekday, slot) averages of house load and PV over the simulated history, as
/// the planner's SQL query returns them (one sample per second).
fn simulate_history(pv_peak_w: f64) -> HashMap<(i32, i32), SlotHistory> {
    let mut sums: HashMap<(i32, i32), (f64, f64, i64)> = HashMap::new();
    for d in 0..HISTORY_DAYS {
        let date = day_start() - Duration::days(HISTORY_DAYS - d);
        let dow = date.weekday().number_from_monday() as i32;
        let mut profile = DayProfile::new(history_weather(d));
        profile.seed = 1000 + d as u64;
        profile.pv_peak_w = pv_peak_w;
        let mut next_sample_s = 0.0;
        day::run(
            &Plant::default(),
            &profile,
            0.0,
            DAY_S,
            START_SOC_PCT,
            |_| 0.0,
            |t| {
                if t.time_s >= next_sample_s {
                    next_sample_s += 1.0;
                    let slot = ((t.time_of_day_s / SLOT_S) as i32).min(SLOTS as i32 - 1);
                    let e = sums.entry((dow, slot)).or_default();
                    e.0 += t.load_w;
                    e.1 += t.pv_w;
                    e.2 += 1;
                }
            },
        );
    }
    sums.into_iter()
        .map(|(k, (load, pv, n))| {
            let n_f = n as f64;
            let h = SlotHistory {
                house_w: Some(load / n_f),
                house_n: n,
                pv_w: Some(pv / n_f),
                pv_n: n,
                net_w: Some((load - pv) / n_f),
                net_n: n,
            };
            (k, h)
        })
        .collect()
}

/// The measured day's actual mean load and PV per slot, W.
fn actual_slots(profile: &DayProfile) -> Vec<(f64, f64)> {
    let mut sums = vec![(0.0, 0.0, 0u32); SLOTS];
    day::run(
        &Plant::default(),
        profile,
        0.0,
        DAY_S,
        START_SOC_PCT,
        |_| 0.0,
        |t| {
            let slot = ((t.time_of_day_s / SLOT_S) as usize).min(SLOTS - 1);
            sums[slot].0 += t.load_w;
            sums[slot].1 += t.pv_w;
            sums[slot].2 += 1;
        },
    );
    sums.into_iter()
        .map(|(l, p, n)| (l / n.max(1) as f64, p / n.max(1) as f64))
        .collect()
}

/// The planner's limits with the SoC measured now.
fn planner_limits(soc_pct: f64) -> lp::Limits {
    let battery = Limits::default().battery;
    lp::Limits {
        capacity_wh: CAPACITY_WH,
        soc_pct,
        reserve_soc_pct: battery.soc_min_pct,
        max_soc_pct: battery.soc_max_pct,
        max_charge_w: battery.max_charge_power_w,
        max_discharge_w: battery.max_discharge_power_w,
        charge_efficiency: EFFICIENCY,
        discharge_efficiency: EFFICIENCY,
        import_limit_w: Some(IMPORT_LIMIT_W),
        export_limit_w: Some(EXPORT_LIMIT_W),
        end_soc_pct: None,
    }
}

/// The tariff and forecast of slots `from..SLOTS`.
fn slot_inputs(profile: &DayProfile, fc: &[SlotForecast], from: usize) -> Vec<SlotInput> {
    (from..SLOTS)
        .map(|i| SlotInput {
            import_price: profile.tariff.import_price(i as f64 * SLOT_S),
            export_price: profile.tariff.export,
            load_w: fc[i].load_w,
            pv_w: fc[i].pv_w,
        })
        .collect()
}

#[derive(Clone, Copy, PartialEq)]
enum Run {
    NoBattery,
    SelfConsumption,
    PlanOnce,
    PlanEvery15Min,
}

/// What a day did beyond the simulator's report: the limits as held, the battery's throughput.
#[derive(Default)]
struct Checks {
    soc_min_pct: f64,
    soc_max_pct: f64,
    /// Largest battery power on the AC side, each way, W.
    max_charge_w: f64,
    max_discharge_w: f64,
    /// AC energy into and out of the battery, kWh.
    charged_kwh: f64,
    discharged_kwh: f64,
    plans: u32,
    plan_failures: u32,
    solve_time: StdDuration,
    /// The first plan's own cost estimate on the forecast.
    expected_cost: Option<f64>,
}

impl Checks {
    fn cycles(&self) -> f64 {
        (self.charged_kwh + self.discharged_kwh) / 2.0 / (CAPACITY_WH / 1000.0)
    }
    fn watch(&mut self, t: &Tick, dt_s: f64) {
        self.soc_min_pct = self.soc_min_pct.min(t.soc_pct);
        self.soc_max_pct = self.soc_max_pct.max(t.soc_pct);
        self.max_charge_w = self.max_charge_w.max(t.battery_w);
        self.max_discharge_w = self.max_discharge_w.max(-t.battery_w);
        let kwh = t.battery_w.abs() * dt_s / 3_600_000.0;
        if t.battery_w > 0.0 {
            self.charged_kwh += kwh;
        } else {
            self.discharged_kwh += kwh;
        }
    }
}

/// The plan for slots `from..` from `soc_pct`, as the schedule the agent stores.
fn plan_schedule(
    profile: &DayProfile,
    fc: &[SlotForecast],
    from: usize,
    soc_pct: f64,
    checks: &mut Checks,
) -> Result<Schedule> {
    let started = Instant::now();
    let plan = lp::optimise(&slot_inputs(profile, fc, from), &planner_limits(soc_pct));
    checks.solve_time += started.elapsed();
    checks.plans += 1;
    let plan = plan.with_context(|| format!("planning from slot {from} at {soc_pct:.1} %"))?;
    checks.expected_cost.get_or_insert(plan.cost);
    let start = day_start() + Duration::minutes(15 * from as i64);
    let payload = to_schedule(start, &plan.slots);
    Schedule::from_payload(&payload).context("the agent refused the planner's schedule")
}

fn one_day(profile: &DayProfile, fc: &[SlotForecast], run: Run) -> Result<(Report, Checks)> {
    let weather = profile.weather;
    let plant = Plant::default();
    let dt_s = plant.physics_dt_s;
    let mut checks = Checks {
        soc_min_pct: START_SOC_PCT,
        soc_max_pct: START_SOC_PCT,
        ..Checks::default()
    };
    if run == Run::NoBattery {
        let mut c = Checks {
            soc_min_pct: START_SOC_PCT,
            soc_max_pct: START_SOC_PCT,
            ..Checks::default()
        };
        let r = day::run(
            &plant,
            profile,
            0.0,
            DAY_S,
            START_SOC_PCT,
            |_| 0.0,
            |t| c.watch(t, dt_s),
        );
        return Ok((r, c));
    }
    let strategy = Strategy::default();
    let mut c = Controller::new(Limits {
        strategy: strategy.clone(),
        ..Limits::default()
    });
    let mut schedule: Option<Schedule> = None;
    let mut planned_slot: Option<usize> = None;
    let mut error: Option<anyhow::Error> = None;
    let mut checks_run = Checks {
        soc_min_pct: START_SOC_PCT,
        soc_max_pct: START_SOC_PCT,
        ..Checks::default()
    };
    let report = day::run(
        &plant,
        profile,
        0.0,
        DAY_S,
        START_SOC_PCT,
        |r| {
            let slot = ((r.time_of_day_s / SLOT_S) as usize).min(SLOTS - 1);
            let due = match run {
                Run::PlanOnce => planned_slot.is_none(),
                Run::PlanEvery15Min => planned_slot != Some(slot),
                _ => false,
            };
            if due {
                planned_slot = Some(slot);
                match plan_schedule(profile, fc, slot, r.soc_pct, &mut checks) {
                    Ok(s) => schedule = Some(s),
                    Err(e) => {
                        // The device keeps its last schedule, as it would.
                        checks.plan_failures += 1;
                        error.get_or_insert(e);
                    }
                }
            }
            let now =
                day_start() + Duration::milliseconds((r.time_of_day_s * 1000.0).round() as i64);
            let action: Option<ScheduleAction> = schedule
                .as_ref()
                .and_then(|s| s.active_at(now))
                .map(|a| ems_agent::schedule::to_action(&a.window.action, &strategy));
            if c.schedule_action() != action.as_ref()
                && let Err(e) = c.set_schedule_action(action)
            {
                error.get_or_insert(anyhow::anyhow!("the controller refused a window: {e:?}"));
            }
            let d = c.step(r.time_s, &measurements(r), true);
            if !d.error_flags.is_empty() {
                error.get_or_insert(anyhow::anyhow!(
                    "the controller went to ERROR ({:?}) at {:.0} s",
                    d.error_flags,
                    r.time_s
                ));
            }
            d.setpoint_w
        },
        |t| checks_run.watch(t, dt_s),
    );
    if let Some(e) = error {
        // A failed re-plan is reported in the table; anything else makes the figures wrong.
        if checks.plan_failures == 0 {
            return Err(e);
        }
        eprintln!("{weather:?}: {e:#}");
    }
    checks_run.plans = checks.plans;
    checks_run.plan_failures = checks.plan_failures;
    checks_run.solve_time = checks.solve_time;
    checks_run.expected_cost = checks.expected_cost;
    Ok((report, checks_run))
}

/// A season: the roof's clear-sky peak, W.
const SEASONS: [(&str, f64); 2] = [("summer (4 kWp)", 4000.0), ("winter (1.2 kW peak)", 1200.0)];

fn main() -> Result<()> {
    let started = Instant::now();
    let mut all_held = true;
    let mut forecast_rows = Vec::new();
    let mut day_rows = Vec::new();
    for (season, pv_peak_w) in SEASONS {
        let history = simulate_history(pv_peak_w);
        let starts: Vec<DateTime<Utc>> = (0..SLOTS)
            .map(|i| day_start() + Duration::minutes(15 * i as i64))
            .collect();
        let fc = forecast::forecast(&history, &starts, &ems_protocol::zone::Zone::utc());
        let methods: std::collections::BTreeSet<&str> = fc.iter().map(|f| f.method).collect();
        let kwh = |w: f64| w * SLOT_H / 1000.0;
        for weather in [Weather::Sunny, Weather::Cloudy] {
            let mut profile = DayProfile::new(weather);
            profile.pv_peak_w = pv_peak_w;
            let actual = actual_slots(&profile);
            let n = SLOTS as f64;
            let mae = |f: &dyn Fn(&SlotForecast, &(f64, f64)) -> f64| {
                fc.iter()
                    .zip(&actual)
                    .map(|(x, a)| f(x, a).abs())
                    .sum::<f64>()
                    / n
                    / 1000.0
            };
            forecast_rows.push(format!(
                "| {season} | {weather:?} | {methods:?} | {:.3} kW | {:.3} kW | {:.1} / {:.1} | {:.1} / {:.1} |",
                mae(&|f, a| f.load_w - a.0),
                mae(&|f, a| f.pv_w - a.1),
                fc.iter().map(|f| kwh(f.load_w)).sum::<f64>(),
                actual.iter().map(|a| kwh(a.0)).sum::<f64>(),
                fc.iter().map(|f| kwh(f.pv_w)).sum::<f64>(),
                actual.iter().map(|a| kwh(a.1)).sum::<f64>(),
            ));
            day_rows.extend(day_table_rows(season, &profile, &fc, &mut all_held)?);
        }
    }
    println!(
        "## Forecast: {HISTORY_DAYS} simulated days of history before the measured day (weather {}, S sunny, C cloudy)\n",
        (0..HISTORY_DAYS)
            .map(|d| match history_weather(d) {
                Weather::Sunny => 'S',
                Weather::Cloudy => 'C',
            })
            .collect::<String>(),
    );
    println!(
        "| season | measured day | method | load MAE per slot | PV MAE per slot | load forecast / actual kWh | PV forecast / actual kWh |"
    );
    println!("|---|---|---|---|---|---|---|");
    for row in forecast_rows {
        println!("{row}");
    }
    println!(
        "\n## A day from midnight at {START_SOC_PCT} % (10 kWh, 3 kW, SoC 10–95 %), tariff 0.18 / 0.30 / 0.45 (17–21 h), export 0.08; limits import {} kW, export {} kW\n",
        IMPORT_LIMIT_W / 1000.0,
        EXPORT_LIMIT_W / 1000.0
    );
    println!(
        "| season | day | run | cost € | vs self-consumption | import kWh | export kWh | cycles | SoC min–max | battery max charge / discharge (AC) | peak import / export (1-min) | limits held | SoC at midnight | plans (failed), solve time, first plan's expected cost |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for row in day_rows {
        println!("{row}");
    }
    println!(
        "\nall limits held: {all_held}; ran in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// The four runs of one measured day.
fn day_table_rows(
    season: &str,
    profile: &DayProfile,
    fc: &[SlotForecast],
    all_held: &mut bool,
) -> Result<Vec<String>> {
    let weather = profile.weather;
    let battery = Limits::default().battery;
    let mut rows = Vec::new();
    let mut sc_cost = None;
    for (name, run) in [
        ("no battery", Run::NoBattery),
        ("AUTO self-consumption", Run::SelfConsumption),
        ("plan once at 00:00", Run::PlanOnce),
        ("plan every 15 min (receding)", Run::PlanEvery15Min),
    ] {
        let (r, c) = one_day(profile, fc, run)?;
        if run == Run::SelfConsumption {
            sc_cost = Some(r.cost);
        }
        // SoC within the battery's limits (0.5 % for the reading's one-second lag), AC power
        // within the DC limit seen through the inverter's efficiency, the grid's one-minute
        // means within the connection's limits.
        let held = run == Run::NoBattery
            || (c.soc_min_pct >= battery.soc_min_pct - 0.5
                && c.soc_max_pct <= battery.soc_max_pct + 0.5
                && c.max_charge_w <= battery.max_charge_power_w / EFFICIENCY + 1.0
                && c.max_discharge_w <= battery.max_discharge_power_w + 1.0
                && r.peak_import_w <= IMPORT_LIMIT_W
                && r.peak_export_w <= EXPORT_LIMIT_W);
        *all_held &= held;
        let vs = match (sc_cost, run) {
            (Some(sc), Run::PlanOnce | Run::PlanEvery15Min) => {
                format!(
                    "{:+.2} € ({:+.1} %)",
                    r.cost - sc,
                    100.0 * (r.cost - sc) / sc
                )
            }
            _ => "—".into(),
        };
        let plans = if c.plans > 0 {
            format!(
                "{} ({}), {:.1} ms each; {:.2} €",
                c.plans,
                c.plan_failures,
                c.solve_time.as_secs_f64() * 1000.0 / c.plans as f64,
                c.expected_cost.unwrap_or(f64::NAN)
            )
        } else {
            "—".into()
        };
        rows.push(format!(
            "| {season} | {weather:?} | {name} | {:.2} | {vs} | {:.2} | {:.2} | {:.2} | {:.1}–{:.1} % | {:.0} / {:.0} W | {:.2} / {:.2} kW | {} | {:.0} % | {plans} |",
            r.cost,
            r.import_kwh,
            r.export_kwh,
            c.cycles(),
            c.soc_min_pct,
            c.soc_max_pct,
            c.max_charge_w,
            c.max_discharge_w,
            r.peak_import_w / 1000.0,
            r.peak_export_w / 1000.0,
            if held { "yes" } else { "**no**" },
            r.soc_end_pct,
        ));
    }
    Ok(rows)
}
