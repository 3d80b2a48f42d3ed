//! Time to plan: `cargo bench -p ems-cloud --bench planner` (issue 17: 96 slots in under 1 s).
//!
//! Solves the planner's linear program (`planner::lp::optimise`, good_lp with microlp) for a
//! day of 96 15-minute slots and for 48 h (192 slots, the most a plan may have), and turns each
//! plan into its `SET_SCHEDULE` (`planner::schedule::to_schedule`). The day is shaped like
//! ems-sim's (a 4 kWp roof, a household with morning and evening peaks, a 7 kW EV block 19-22 h,
//! 0.18 / 0.30 / 0.45 €/kWh with export at 0.08), a 10 kWh battery at 50 %, 3 kW, SoC 10-95 %,
//! import and export limits set. Variants: a winter day (PV a quarter) and a day where the
//! battery starts below its reserve. Each case is solved `EMS_BENCH_RUNS` (30) times after one
//! warm-up; the minimum, median and maximum are printed. Nothing is asserted: the figures go to
//! docs/benchmarks.md.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use ems_cloud::planner::lp::{Limits, SLOT_H, SlotInput, optimise};
use ems_cloud::planner::schedule::to_schedule;

fn day(slots: usize, pv_peak_w: f64) -> Vec<SlotInput> {
    (0..slots)
        .map(|i| {
            let h = (i as f64 * SLOT_H) % 24.0;
            let within = |a: f64, b: f64| (a..b).contains(&h);
            let import_price = if h < 6.0 {
                0.18
            } else if within(17.0, 21.0) {
                0.45
            } else {
                0.30
            };
            let pv_w = if within(6.0, 20.0) {
                pv_peak_w * (std::f64::consts::PI * (h - 6.0) / 14.0).sin()
            } else {
                0.0
            };
            let mut load_w = 280.0;
            if within(6.5, 8.5) {
                load_w += 600.0;
            }
            if within(12.0, 13.0) {
                load_w += 400.0;
            }
            if within(17.5, 22.0) {
                load_w += 1200.0;
            }
            if within(19.0, 22.0) {
                load_w += 7000.0;
            }
            SlotInput {
                import_price,
                export_price: 0.08,
                load_w,
                pv_w,
            }
        })
        .collect()
}

fn limits(soc_pct: f64) -> Limits {
    Limits {
        capacity_wh: 10_000.0,
        soc_pct,
        reserve_soc_pct: 10.0,
        max_soc_pct: 95.0,
        max_charge_w: 3_000.0,
        max_discharge_w: 3_000.0,
        charge_efficiency: 0.95,
        discharge_efficiency: 0.95,
        import_limit_w: Some(11_000.0),
        export_limit_w: Some(4_000.0),
        end_soc_pct: None,
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn main() {
    let runs: usize = std::env::var("EMS_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(30)
        .max(1);
    let start: DateTime<Utc> = "2026-12-01T00:00:00Z".parse().expect("a valid constant");
    let profile = if cfg!(debug_assertions) {
        "debug"
    } else {
        "optimised"
    };
    println!("planner: {runs} runs per case, {profile} build\n");
    println!(
        "| case | slots | solve min / median / max | + to SET_SCHEDULE (median) | windows | plan cost |"
    );
    println!("|---|---|---|---|---|---|");
    let cases: [(&str, usize, f64, f64); 4] = [
        ("summer day", 96, 4000.0, 50.0),
        ("winter day", 96, 1000.0, 50.0),
        (
            "summer day, battery at 5 % (below its reserve)",
            96,
            4000.0,
            5.0,
        ),
        ("48 h, summer", 192, 4000.0, 50.0),
    ];
    for (name, slots, pv_peak_w, soc_pct) in cases {
        let input = day(slots, pv_peak_w);
        let l = limits(soc_pct);
        let mut solve = Vec::with_capacity(runs);
        let mut schedule = Vec::with_capacity(runs);
        let mut last = None;
        for run in 0..=runs {
            let t0 = Instant::now();
            let plan = match optimise(&input, &l) {
                Ok(plan) => plan,
                Err(e) => {
                    println!("| {name} | {slots} | failed: {e} | | | |");
                    break;
                }
            };
            let t1 = Instant::now();
            let s = to_schedule(start, &plan.slots);
            let t2 = Instant::now();
            // The first run warms caches and the allocator; it is not counted.
            if run > 0 {
                solve.push(t1 - t0);
                schedule.push(t2 - t0);
            }
            last = Some((plan.cost, s.windows.len()));
        }
        let Some((cost, windows)) = last else {
            continue;
        };
        if solve.is_empty() {
            continue;
        }
        solve.sort();
        schedule.sort();
        println!(
            "| {name} | {slots} | {:.2} / {:.2} / {:.2} ms | {:.2} ms | {windows} | {cost:.2} |",
            ms(solve[0]),
            ms(solve[solve.len() / 2]),
            ms(solve[solve.len() - 1]),
            ms(schedule[schedule.len() / 2]),
        );
    }
}
