//! Whole simulated days and step responses, faster than real time, for measuring control
//! strategies: PV on a sunny or a cloudy day, a household load with morning and evening peaks
//! and an optional EV-like 7 kW block, a time-of-use tariff, and meters that update once a
//! second.
//!
//! The controller is a closure (`FnMut(&Readings) -> f64`, the battery setpoint in W, + =
//! charge) called once per control period, so this crate does not depend on the agent: the
//! agent's day runner (`agent/examples/day.rs`) and its scenario tests pass the real
//! `ems_agent::control::Controller` in.
//!
//! The physics is [`crate::physics::Site`], advanced in steps of [`Plant::physics_dt_s`]; the
//! meter and the inverter's battery reading are sampled once per [`Plant::meter_period_s`], at
//! their own phases, and held: what the controller sees is up to a period old, and the two
//! readings need not be of the same instant (devices polled one after the other).

use crate::physics::{Site, SiteParams};

/// Seconds in a day.
pub const DAY_S: f64 = 86_400.0;

/// PV weather.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Weather {
    /// A clear summer day: a smooth curve from 06:00 to 20:00.
    Sunny,
    /// Overcast with passing clouds: about a third of the sunny energy, varying minute by
    /// minute (a fixed pseudo-random pattern, the same every run).
    Cloudy,
}

/// The site's day: PV, household load, EV, prices.
#[derive(Debug, Clone)]
pub struct DayProfile {
    pub weather: Weather,
    /// PV peak at solar noon on a clear day, W.
    pub pv_peak_w: f64,
    /// An EV charging at `ev_power_w` from `ev_from_h` to `ev_to_h` (hours of the day).
    pub ev: Option<EvBlock>,
    pub tariff: Tariff,
    /// Standard deviation of the load's white noise, W (0: none).
    pub load_noise_w: f64,
    pub seed: u64,
}

#[derive(Debug, Clone, Copy)]
pub struct EvBlock {
    pub power_w: f64,
    pub from_h: f64,
    pub to_h: f64,
}

/// Import prices by hour of the day and one export price, per kWh.
#[derive(Debug, Clone)]
pub struct Tariff {
    /// (from hour, price): each price holds until the next entry's hour; sorted, starting at 0.
    pub import: Vec<(f64, f64)>,
    pub export: f64,
}

impl Default for Tariff {
    /// Cheap nights (00–06 h 0.18), day 0.30, a dear evening peak (17–21 h 0.45), feed-in
    /// 0.08, in € per kWh.
    fn default() -> Self {
        Tariff {
            import: vec![(0.0, 0.18), (6.0, 0.30), (17.0, 0.45), (21.0, 0.30)],
            export: 0.08,
        }
    }
}

impl Tariff {
    pub fn import_price(&self, time_of_day_s: f64) -> f64 {
        let h = time_of_day_s / 3600.0;
        self.import
            .iter()
            .rev()
            .find(|(from, _)| h >= *from)
            .map_or(0.0, |(_, p)| *p)
    }
}

impl DayProfile {
    /// A house with a 4 kWp roof, the default tariff and the EV block from 19:00 to 22:00 (21 kWh, an EV topped up after work).
    pub fn new(weather: Weather) -> Self {
        DayProfile {
            weather,
            pv_peak_w: 4000.0,
            ev: Some(EvBlock {
                power_w: 7000.0,
                from_h: 19.0,
                to_h: 22.0,
            }),
            tariff: Tariff::default(),
            load_noise_w: 30.0,
            seed: 16,
        }
    }

    /// PV output at `t_s` seconds after midnight, W.
    pub fn pv_w(&self, t_s: f64) -> f64 {
        let h = (t_s % DAY_S) / 3600.0;
        if !(6.0..20.0).contains(&h) {
            return 0.0;
        }
        let clear = self.pv_peak_w * (std::f64::consts::PI * (h - 6.0) / 14.0).sin();
        match self.weather {
            Weather::Sunny => clear,
            Weather::Cloudy => clear * self.cloud_factor(t_s),
        }
    }

    /// Share of the clear-sky PV that passes the clouds: 0.15 to 0.65, a new value every
    /// 5 minutes, blended over the first minute.
    fn cloud_factor(&self, t_s: f64) -> f64 {
        let slot = (t_s / 300.0).floor() as u64;
        let at = |slot: u64| {
            let mut rng = fastrand::Rng::with_seed(self.seed ^ slot.wrapping_mul(0x9E37_79B9));
            0.15 + 0.5 * rng.f64()
        };
        let blend = ((t_s % 300.0) / 60.0).min(1.0);
        at(slot.saturating_sub(1)) * (1.0 - blend) + at(slot) * blend
    }

    /// Household load without noise at `t_s` seconds after midnight, W: 250 W base with a
    /// fridge cycle, a morning peak (06:30–08:30), lunch (12–13 h), the evening (17:30–22:00)
    /// with cooking (18:30–19:00), and the EV block.
    pub fn load_w(&self, t_s: f64) -> f64 {
        let h = (t_s % DAY_S) / 3600.0;
        let within = |from: f64, to: f64| (from..to).contains(&h);
        let mut w = 250.0 + 60.0 * (t_s / 1800.0 * std::f64::consts::TAU).sin().max(0.0);
        if within(6.5, 8.5) {
            w += 600.0;
        }
        if within(12.0, 13.0) {
            w += 400.0;
        }
        if within(17.5, 22.0) {
            w += 1200.0;
        }
        if within(18.5, 19.0) {
            w += 1500.0;
        }
        if let Some(ev) = self.ev
            && within(ev.from_h, ev.to_h)
        {
            w += ev.power_w;
        }
        w
    }

    /// Whether the EV is charging at `t_s`.
    pub fn ev_charging(&self, t_s: f64) -> bool {
        let h = (t_s % DAY_S) / 3600.0;
        self.ev.is_some_and(|ev| (ev.from_h..ev.to_h).contains(&h))
    }
}

/// How the controller sees the plant: the control period, the meters' update period and
/// phases, the inverter's lag (in [`SiteParams`]).
#[derive(Debug, Clone)]
pub struct Plant {
    pub params: SiteParams,
    /// The controller runs every this many seconds (the agent: 1 s).
    pub control_period_s: f64,
    /// Physics step, s.
    pub physics_dt_s: f64,
    /// The grid meter and the inverter's battery reading update every this many seconds.
    pub meter_period_s: f64,
    /// When within each period the grid meter samples, as a share of the period after the
    /// control step (0.0 to 1.0).
    pub grid_phase: f64,
    /// The same for the inverter's battery power.
    pub battery_phase: f64,
}

impl Default for Plant {
    /// The agent's 1 Hz loop, meters updated once a second, the grid meter sampled 0.3 s and the
    /// inverter 0.6 s after a control step, an inverter with a 0.3 s lag and its 2000 W/s ramp,
    /// a 10 kWh battery behind a 5 kW inverter. The battery warms a tenth as fast as the live
    /// simulator's (whose heating is steep so that fault tests overheat it in minutes): about
    /// 4 °C above ambient at 60 A, not the 36 °C that would trip OVERHEAT on an evening of
    /// 3 kW discharge.
    fn default() -> Self {
        Plant {
            params: SiteParams {
                inverter_time_constant_s: 0.3,
                heating_c_per_a2_s: 0.000_002,
                ..SiteParams::default()
            },
            control_period_s: 1.0,
            physics_dt_s: 0.05,
            meter_period_s: 1.0,
            grid_phase: 0.3,
            battery_phase: 0.6,
        }
    }
}

/// What the controller is given each control step: the latest (held) readings.
#[derive(Debug, Clone, Default)]
pub struct Readings {
    /// Seconds since the run started (a monotonic clock).
    pub time_s: f64,
    /// Seconds after midnight.
    pub time_of_day_s: f64,
    /// Grid meter, W, + = import.
    pub grid_w: f64,
    /// The inverter's battery power (DC side, as SunSpec model 802 reports it), W, + = charge.
    pub battery_w: f64,
    pub battery_voltage_v: f64,
    pub battery_current_a: f64,
    pub soc_pct: f64,
    pub battery_temperature_c: f64,
    pub bms_max_charge_a: f64,
    pub bms_max_discharge_a: f64,
    pub grid_voltage_v: f64,
    pub grid_frequency_hz: f64,
}

/// One physics instant, for the caller's own checks (`on_tick` of [`run`]).
#[derive(Debug, Clone, Copy)]
pub struct Tick {
    pub time_s: f64,
    pub time_of_day_s: f64,
    pub grid_w: f64,
    pub load_w: f64,
    pub pv_w: f64,
    /// AC side, W, + = charge.
    pub battery_w: f64,
    pub setpoint_w: f64,
    pub soc_pct: f64,
}

/// Energy and money over a run.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub import_kwh: f64,
    pub export_kwh: f64,
    pub pv_kwh: f64,
    pub load_kwh: f64,
    /// Highest import averaged over a minute (how tariffs with a demand charge measure it), W.
    pub peak_import_w: f64,
    /// Highest export averaged over a minute, W.
    pub peak_export_w: f64,
    /// Import at its price less export at its price, €.
    pub cost: f64,
    pub soc_end_pct: f64,
    pub soc_min_pct: f64,
}

impl Report {
    /// Share of the PV energy used on site (not exported), %.
    pub fn self_consumption_pct(&self) -> f64 {
        if self.pv_kwh <= 0.0 {
            return 0.0;
        }
        100.0 * (self.pv_kwh - self.export_kwh).max(0.0) / self.pv_kwh
    }
}

/// Runs `duration_s` of `profile` from `start_of_day_s` (seconds after midnight) with the
/// battery at `soc_pct`, calling `control` every control period with the held readings (its
/// answer is the new setpoint, sent with no revert timeout) and `on_tick` after every physics
/// step.
pub fn run(
    plant: &Plant,
    profile: &DayProfile,
    start_of_day_s: f64,
    duration_s: f64,
    soc_pct: f64,
    mut control: impl FnMut(&Readings) -> f64,
    mut on_tick: impl FnMut(&Tick),
) -> Report {
    let mut site = Site::new(plant.params.clone(), soc_pct);
    site.time_of_day_s = start_of_day_s % DAY_S;
    let mut noise = fastrand::Rng::with_seed(profile.seed);
    let dt = plant.physics_dt_s;
    let steps = (duration_s / dt).round() as u64;
    let per_control = (plant.control_period_s / dt).round().max(1.0) as u64;
    let per_meter = (plant.meter_period_s / dt).round().max(1.0) as u64;
    let grid_at = (plant.grid_phase * per_meter as f64).round() as u64 % per_meter;
    let battery_at = (plant.battery_phase * per_meter as f64).round() as u64 % per_meter;
    let mut report = Report {
        soc_min_pct: soc_pct,
        ..Report::default()
    };
    let mut held = Readings::default();
    let mut minute = (0.0, 0u64);
    let per_minute = (60.0 / dt).round() as u64;
    // Noise changes at the meter's rate (a load does not jitter every 50 ms).
    let mut load_noise = 0.0;
    for n in 0..steps {
        let t = n as f64 * dt;
        let tod = site.time_of_day_s;
        if n % per_meter == 0 && profile.load_noise_w > 0.0 {
            // The sum of four uniforms: near-normal, bounded.
            let u: f64 = (0..4).map(|_| noise.f64() - 0.5).sum();
            load_noise = u * profile.load_noise_w * 3.0_f64.sqrt();
        }
        site.pv_override_w = Some(profile.pv_w(tod));
        site.load_override_w = Some((profile.load_w(tod) + load_noise).max(0.0));
        if n % per_meter == grid_at {
            held.grid_w = site.grid_w();
            held.grid_voltage_v = site.grid_voltage_v;
            held.grid_frequency_hz = site.grid_frequency_hz;
        }
        if n % per_meter == battery_at {
            held.battery_w = site.battery_dc_w();
            held.battery_voltage_v = site.battery_voltage_v();
            held.battery_current_a = site.battery_current_a();
            held.soc_pct = site.soc_pct();
            held.battery_temperature_c = site.temperature_c;
            held.bms_max_charge_a = site.params.bms_max_charge_a;
            held.bms_max_discharge_a = site.params.bms_max_discharge_a;
        }
        if n % per_control == 0 && n > 0 {
            held.time_s = t;
            held.time_of_day_s = tod;
            let setpoint = control(&held);
            site.command(setpoint, 0.0);
        }
        site.advance(dt);
        let grid = site.grid_w();
        let price = profile.tariff.import_price(tod);
        let kwh = grid.abs() * dt / 3_600_000.0;
        if grid > 0.0 {
            report.import_kwh += kwh;
            report.cost += kwh * price;
        } else {
            report.export_kwh += kwh;
            report.cost -= kwh * profile.tariff.export;
        }
        report.pv_kwh += site.pv_w() * dt / 3_600_000.0;
        report.load_kwh += site.load_w() * dt / 3_600_000.0;
        report.soc_min_pct = report.soc_min_pct.min(site.soc_pct());
        minute = (minute.0 + grid, minute.1 + 1);
        if minute.1 == per_minute {
            let mean = minute.0 / minute.1 as f64;
            report.peak_import_w = report.peak_import_w.max(mean);
            report.peak_export_w = report.peak_export_w.max(-mean);
            minute = (0.0, 0);
        }
        on_tick(&Tick {
            time_s: t + dt,
            time_of_day_s: site.time_of_day_s,
            grid_w: grid,
            load_w: site.load_w(),
            pv_w: site.pv_w(),
            battery_w: site.inverter_ac_w,
            setpoint_w: site.setpoint_w,
            soc_pct: site.soc_pct(),
        });
    }
    report.soc_end_pct = site.soc_pct();
    report
}

/// How a controller answered a load step: the figures the issue asks for.
#[derive(Debug, Clone, Copy)]
pub struct StepResponse {
    /// From the step until the grid stays within ±`band_w` of its final value, s.
    pub settle_s: f64,
    /// Largest swing past the final value, as % of the step.
    pub overshoot_pct: f64,
}

/// A `step_w` load step at `step_at_s` on a site with constant PV and load (the noise off),
/// observed until `duration_s`: where the grid settles (it should be the controller's target)
/// and how. `control` is called as in [`run`].
pub fn step_response(
    plant: &Plant,
    step_w: f64,
    step_at_s: f64,
    duration_s: f64,
    band_w: f64,
    target_grid_w: f64,
    control: impl FnMut(&Readings) -> f64,
) -> StepResponse {
    let mut profile = DayProfile::new(Weather::Sunny);
    profile.ev = None;
    profile.load_noise_w = 0.0;
    let mut trace = Vec::new();
    // 02:00, no PV, the night load constant (the fridge cycle is minutes long); the step is
    // added through the EV block.
    profile.ev = Some(EvBlock {
        power_w: step_w,
        from_h: 2.0 + step_at_s / 3600.0,
        to_h: 23.0,
    });
    run(
        plant,
        &profile,
        2.0 * 3600.0,
        duration_s,
        50.0,
        control,
        |tick| trace.push((tick.time_s, tick.grid_w)),
    );
    let after: Vec<(f64, f64)> = trace.into_iter().filter(|(t, _)| *t >= step_at_s).collect();
    let last_out = after
        .iter()
        .rposition(|(_, g)| (g - target_grid_w).abs() > band_w);
    let settle_s = match last_out {
        None => 0.0,
        Some(i) if i + 1 == after.len() => f64::INFINITY,
        Some(i) => after[i + 1].0 - step_at_s,
    };
    // A load increase pushes the grid up; the controller brings it down; overshoot is how far
    // it goes below the target.
    let sign = step_w.signum();
    let past = after
        .iter()
        .map(|(_, g)| -(g - target_grid_w) * sign)
        .fold(0.0, f64::max);
    StepResponse {
        settle_s,
        overshoot_pct: 100.0 * past / step_w.abs(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_profiles_have_the_shapes_the_docs_promise() {
        let sunny = DayProfile::new(Weather::Sunny);
        let cloudy = DayProfile::new(Weather::Cloudy);
        assert_eq!(sunny.pv_w(3.0 * 3600.0), 0.0);
        assert!((sunny.pv_w(13.0 * 3600.0) - 4000.0).abs() < 1.0);
        let energy = |p: &DayProfile| {
            (0..1440)
                .map(|m| p.pv_w(m as f64 * 60.0) / 60.0)
                .sum::<f64>()
        };
        let ratio = energy(&cloudy) / energy(&sunny);
        assert!((0.25..0.5).contains(&ratio), "cloudy/sunny energy {ratio}");
        assert!(sunny.load_w(19.5 * 3600.0) > 8000.0, "EV and evening");
        assert!(sunny.load_w(3.0 * 3600.0) < 400.0);
        let t = Tariff::default();
        assert_eq!(t.import_price(2.0 * 3600.0), 0.18);
        assert_eq!(t.import_price(18.0 * 3600.0), 0.45);
        assert_eq!(t.import_price(23.0 * 3600.0), 0.30);
    }

    #[test]
    fn without_a_battery_the_grid_carries_everything() {
        let profile = DayProfile::new(Weather::Sunny);
        let r = run(
            &Plant::default(),
            &profile,
            0.0,
            DAY_S,
            50.0,
            |_| 0.0,
            |_| {},
        );
        // Energy balance: import − export = load − PV.
        let balance = r.import_kwh - r.export_kwh - (r.load_kwh - r.pv_kwh);
        assert!(balance.abs() < 0.01, "{balance}");
        assert!(r.peak_import_w > 8000.0, "{}", r.peak_import_w);
        assert!((r.soc_end_pct - 50.0).abs() < 0.01);
    }

    #[test]
    fn a_controller_that_follows_the_grid_reading_settles_the_step() {
        // A deliberately simple controller: cover the reading's import (gain 0.5, so it
        // converges despite the meter's delay).
        let mut sp = 0.0;
        let r = step_response(&Plant::default(), 2000.0, 10.0, 60.0, 50.0, 0.0, |rd| {
            sp -= 0.5 * rd.grid_w;
            sp
        });
        assert!(r.settle_s.is_finite() && r.settle_s < 30.0, "{r:?}");
        // And one that never acts does not settle.
        let r = step_response(&Plant::default(), 2000.0, 10.0, 60.0, 50.0, 0.0, |_| 0.0);
        assert!(r.settle_s.is_infinite());
    }
}
