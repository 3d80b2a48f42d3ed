//! Measures AUTO on ems-sim's simulated site, faster than real time, with the agent's real
//! `Controller` and the simulator's physics (`ems_sim::day`): the load-step response of the
//! control law, an hour of noisy load, and a whole day per strategy. Prints the tables of
//! docs/benchmarks.md ("AUTO strategies").
//!
//! ```sh
//! cargo run --release -p ems-agent --example day            # everything
//! cargo run --release -p ems-agent --example day -- step    # step response and noise only
//! cargo run --release -p ems-agent --example day -- day     # the day table only
//! ```
//!
//! An example, not a bench: it runs in seconds and needs no harness. ems-sim cannot run the
//! controller itself (ems-agent depends on ems-sim, not the other way round), so this file is
//! where the two meet.

mod common;
use common::measurements;
use ems_agent::control::{Controller, Limits, ScheduleAction, Strategy};
use ems_sim::day::{self, DAY_S, DayProfile, Plant, Readings, Report, Weather};

/// The controller as the simulator's closure.
fn auto(limits: Limits) -> impl FnMut(&Readings) -> f64 {
    let mut c = Controller::new(limits);
    move |r| step(&mut c, r)
}

/// One control step; a fault would make every figure after it meaningless, so it stops the run.
fn step(c: &mut Controller, r: &Readings) -> f64 {
    let d = c.step(r.time_s, &measurements(r), true);
    assert!(
        d.error_flags.is_empty(),
        "the controller went to ERROR ({:?}) at {:.0} s: the figures would be wrong",
        d.error_flags,
        r.time_s
    );
    d.setpoint_w
}

fn main() {
    let what = std::env::args().nth(1).unwrap_or_default();
    if what.is_empty() || what == "step" {
        step_figures();
        noise_figures();
    }
    if what.is_empty() || what == "day" {
        day_table();
    }
}

const PHASES: [f64; 5] = [0.05, 0.25, 0.5, 0.75, 0.95];

fn step_figures() {
    println!("## 2 kW load step (deadband 50 W; settle = grid within ±50 W of 0 W for good)\n");
    println!("| law | meter phases | settle | overshoot |");
    println!("|---|---|---|---|");
    let laws: [(&str, f64, f64); 4] = [
        (
            "correction every second (the former jump: response_time_s 0, gain 1)",
            0.0,
            1.0,
        ),
        ("hold 1.5 s, gain 1 (default)", 1.5, 1.0),
        ("hold 1.5 s, gain 0.7", 1.5, 0.7),
        ("every second, gain 0.5", 0.0, 0.5),
    ];
    for (name, response_time_s, gain) in laws {
        let mut limits = Limits::default();
        limits.control.response_time_s = response_time_s;
        limits.control.correction_gain = gain;
        let plant = Plant::default();
        let typical =
            day::step_response(&plant, 2000.0, 10.0, 60.0, 50.0, 0.0, auto(limits.clone()));
        let (mut worst_settle, mut worst_over) = (0.0_f64, 0.0_f64);
        for g in PHASES {
            for b in PHASES {
                let plant = Plant {
                    grid_phase: g,
                    battery_phase: b,
                    ..Plant::default()
                };
                let r =
                    day::step_response(&plant, 2000.0, 10.0, 60.0, 50.0, 0.0, auto(limits.clone()));
                worst_settle = worst_settle.max(r.settle_s);
                worst_over = worst_over.max(r.overshoot_pct);
            }
        }
        println!(
            "| {name} | default (grid 0.3, battery 0.6) | {} | {:.1} % |",
            secs(typical.settle_s),
            typical.overshoot_pct
        );
        println!(
            "| {name} | worst of 25 (each 0.05 to 0.95) | {} | {:.1} % |",
            secs(worst_settle),
            worst_over
        );
    }
    println!();
}

fn secs(s: f64) -> String {
    if s.is_finite() {
        format!("{s:.1} s")
    } else {
        "does not settle in 50 s".into()
    }
}

/// An hour of household load with white noise at night, then the figures that would show a
/// limit cycle: the grid's spread against the noise's, and how the setpoint moves.
fn noise_figures() {
    println!("## One hour of noisy load (night, no PV, default plant)\n");
    println!("| load noise σ | law | grid RMS | setpoint changes | mean |Δsetpoint| per change |");
    println!("|---|---|---|---|---|");
    for sigma in [0.0, 30.0, 100.0] {
        for (name, response_time_s) in [("default", 1.5), ("every second", 0.0)] {
            let mut limits = Limits::default();
            limits.control.response_time_s = response_time_s;
            let mut profile = DayProfile::new(Weather::Sunny);
            profile.ev = None;
            profile.load_noise_w = sigma;
            let mut control = auto(limits);
            let (mut last_sp, mut changes, mut moved) = (0.0, 0u32, 0.0);
            let (mut sum_sq, mut n) = (0.0, 0u64);
            day::run(
                &Plant::default(),
                &profile,
                1.0 * 3600.0,
                3600.0,
                80.0,
                |r| {
                    let sp = control(r);
                    if (sp - last_sp).abs() > 1e-9 {
                        changes += 1;
                        moved += (sp - last_sp).abs();
                    }
                    last_sp = sp;
                    sp
                },
                |t| {
                    // After the first minute (the battery taking over the night load).
                    if t.time_s > 60.0 {
                        sum_sq += t.grid_w * t.grid_w;
                        n += 1;
                    }
                },
            );
            println!(
                "| {sigma} W | {name} | {:.0} W | {changes} in 3600 steps | {:.0} W |",
                (sum_sq / n as f64).sqrt(),
                moved / changes.max(1) as f64
            );
        }
    }
    println!();
}

/// The strategies of the day table.
fn strategies() -> Vec<(&'static str, Option<Strategy>, bool)> {
    let export = Strategy {
        export_limit_w: Some(2800.0),
        ..Strategy::default()
    };
    let peak = Strategy {
        import_limit_w: Some(6000.0),
        ..Strategy::default()
    };
    vec![
        ("no battery", None, false),
        ("AUTO self-consumption", Some(Strategy::default()), false),
        (
            "AUTO + export limit 2.8 kW (70 % of the PV peak)",
            Some(export),
            false,
        ),
        ("AUTO + peak shaving 6 kW", Some(peak), false),
        (
            "AUTO + cheap-night charge (01–05 h, 2.5 kW to 90 %)",
            Some(Strategy::default()),
            true,
        ),
    ]
}

/// Runs one day from midnight at 50 % SoC; also returns when the battery first reached FULL
/// (95 %), hours after midnight.
pub fn one_day(
    weather: Weather,
    strategy: Option<Strategy>,
    night_charge: bool,
) -> (Report, Option<f64>) {
    let profile = DayProfile::new(weather);
    let plant = Plant::default();
    let mut full_at = None;
    let watch_full = |t: &day::Tick| {
        if full_at.is_none() && t.soc_pct >= 95.0 {
            full_at = Some(t.time_of_day_s / 3600.0);
        }
    };
    let Some(strategy) = strategy else {
        let report = day::run(&plant, &profile, 0.0, DAY_S, 50.0, |_| 0.0, watch_full);
        return (report, full_at);
    };
    let mut c = Controller::new(Limits {
        strategy,
        ..Limits::default()
    });
    let window = ScheduleAction::Charge {
        power_w: 2500.0,
        to_soc_pct: 90.0,
        from_grid: true,
    };
    let report = day::run(
        &plant,
        &profile,
        0.0,
        DAY_S,
        50.0,
        |r| {
            if night_charge {
                let h = r.time_of_day_s / 3600.0;
                let open = (1.0..5.0).contains(&h);
                if open != c.schedule_action().is_some() {
                    c.set_schedule_action(open.then(|| window.clone()))
                        .expect("a valid window");
                }
            }
            step(&mut c, r)
        },
        watch_full,
    );
    (report, full_at)
}

fn day_table() {
    println!(
        "## A day from midnight, battery at 50 % (10 kWh, 3 kW limits), 4 kWp PV, EV 7 kW 19–22 h\n"
    );
    println!(
        "| day | strategy | import kWh | export kWh | self-consumption | peak import (1-min mean) | peak export (1-min mean) | cost € | full (95 %) at | SoC at midnight |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for weather in [Weather::Sunny, Weather::Cloudy] {
        for (name, strategy, night) in strategies() {
            let (r, full_at) = one_day(weather, strategy, night);
            let full_at = full_at.map_or("—".to_string(), |h| {
                format!("{:02}:{:02}", h as u32, ((h % 1.0) * 60.0) as u32)
            });
            println!(
                "| {weather:?} | {name} | {:.2} | {:.2} | {:.0} % | {:.2} kW | {:.2} kW | {:.2} | {full_at} | {:.0} % |",
                r.import_kwh,
                r.export_kwh,
                r.self_consumption_pct(),
                r.peak_import_w / 1000.0,
                r.peak_export_w / 1000.0,
                r.cost,
                r.soc_end_pct
            );
        }
    }
    println!();
}
