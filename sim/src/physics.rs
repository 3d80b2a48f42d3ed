//! The physics of the simulated site: a battery behind a hybrid inverter, PV, a household load
//! and the grid connection. Time advances only through [`Site::advance`], so tests can run a
//! day in milliseconds and the real-time server simply calls it with the elapsed time.
//!
//! Signs follow ems: battery power + = charging; grid power + = importing.

/// Parameters of the simulated site.
#[derive(Debug, Clone)]
pub struct SiteParams {
    /// Usable battery energy at 100 % SoC, Wh.
    pub capacity_wh: f64,
    /// One-way conversion efficiency (AC→DC when charging, DC→AC when discharging).
    pub efficiency: f64,
    /// Open-circuit voltage at 0 % and 100 % SoC (LiFePO4 16s is flat in the middle), V.
    pub ocv_empty_v: f64,
    pub ocv_full_v: f64,
    /// Internal resistance, Ω: terminal voltage = OCV + I·R (I + = charging).
    pub internal_resistance_ohm: f64,
    /// Inverter limits, W.
    pub inverter_max_charge_w: f64,
    pub inverter_max_discharge_w: f64,
    /// How fast the inverter follows its setpoint, W/s.
    pub inverter_ramp_w_per_s: f64,
    /// First-order lag of the inverter's power control in front of the ramp, s (the time to
    /// reach 63 % of a step); 0: none, only the ramp.
    pub inverter_time_constant_s: f64,
    /// PV peak power at solar noon, W.
    pub pv_peak_w: f64,
    /// Base household load, W.
    pub load_base_w: f64,
    /// Ambient temperature, °C.
    pub ambient_c: f64,
    /// Heating per A², °C/s, and cooling towards ambient, 1/s.
    pub heating_c_per_a2_s: f64,
    pub cooling_per_s: f64,
    /// BMS-allowed currents, A.
    pub bms_max_charge_a: f64,
    pub bms_max_discharge_a: f64,
}

impl Default for SiteParams {
    fn default() -> Self {
        SiteParams {
            capacity_wh: 10_000.0,
            efficiency: 0.95,
            ocv_empty_v: 46.0,
            ocv_full_v: 55.2,
            internal_resistance_ohm: 0.01,
            inverter_max_charge_w: 5000.0,
            inverter_max_discharge_w: 5000.0,
            inverter_ramp_w_per_s: 2000.0,
            inverter_time_constant_s: 0.0,
            pv_peak_w: 4000.0,
            load_base_w: 400.0,
            ambient_c: 25.0,
            heating_c_per_a2_s: 0.000_02,
            cooling_per_s: 0.002,
            bms_max_charge_a: 100.0,
            bms_max_discharge_a: 100.0,
        }
    }
}

/// The state of the simulated site.
#[derive(Debug, Clone)]
pub struct Site {
    pub params: SiteParams,
    /// Stored energy, Wh.
    pub energy_wh: f64,
    /// Battery temperature, °C.
    pub temperature_c: f64,
    /// Seconds since local midnight (drives the PV curve and the load pattern).
    pub time_of_day_s: f64,
    /// What the inverter has been told to do, W (+ = charge). Set through the inverter's
    /// Modbus registers.
    pub setpoint_w: f64,
    /// What the inverter actually does on its AC side, W (+ = charging the battery).
    pub inverter_ac_w: f64,
    /// The setpoint after the inverter's first-order lag, W (equals the limited setpoint
    /// without one).
    inverter_lagged_w: f64,
    /// Seconds left before the setpoint reverts to 0 W (SunSpec InOutWRte_RvrtTms); `None` =
    /// no revert timeout armed.
    pub revert_in_s: Option<f64>,
    /// Fixed PV and load overrides for tests (None: day curve / varying pattern).
    pub pv_override_w: Option<f64>,
    pub load_override_w: Option<f64>,
    /// Injected conditions.
    pub bms_alarm: bool,
    pub grid_frequency_hz: f64,
    pub grid_voltage_v: f64,
    /// Counts up for the load's variation.
    elapsed_s: f64,
    /// Energy counters of the grid meter, kWh.
    pub import_kwh: f64,
    pub export_kwh: f64,
}

impl Site {
    pub fn new(params: SiteParams, soc_pct: f64) -> Self {
        Site {
            energy_wh: params.capacity_wh * soc_pct / 100.0,
            temperature_c: params.ambient_c,
            params,
            time_of_day_s: 12.0 * 3600.0,
            setpoint_w: 0.0,
            inverter_ac_w: 0.0,
            inverter_lagged_w: 0.0,
            revert_in_s: None,
            pv_override_w: None,
            load_override_w: None,
            bms_alarm: false,
            grid_frequency_hz: 50.0,
            grid_voltage_v: 230.0,
            elapsed_s: 0.0,
            import_kwh: 0.0,
            export_kwh: 0.0,
        }
    }

    pub fn soc_pct(&self) -> f64 {
        (self.energy_wh / self.params.capacity_wh * 100.0).clamp(0.0, 100.0)
    }

    pub fn open_circuit_v(&self) -> f64 {
        let p = &self.params;
        p.ocv_empty_v + (p.ocv_full_v - p.ocv_empty_v) * self.soc_pct() / 100.0
    }

    /// DC power into the battery, W (+ = charging): AC power less conversion losses.
    pub fn battery_dc_w(&self) -> f64 {
        let eff = self.params.efficiency;
        if self.inverter_ac_w >= 0.0 {
            self.inverter_ac_w * eff
        } else {
            self.inverter_ac_w / eff
        }
    }

    /// Battery current, A (+ = charging).
    pub fn battery_current_a(&self) -> f64 {
        let p = self.battery_dc_w();
        // P = V·I with V = OCV + I·R  →  R·I² + OCV·I − P = 0.
        let (r, ocv) = (self.params.internal_resistance_ohm, self.open_circuit_v());
        if r == 0.0 {
            return p / ocv;
        }
        (-ocv + (ocv * ocv + 4.0 * r * p).max(0.0).sqrt()) / (2.0 * r)
    }

    pub fn battery_voltage_v(&self) -> f64 {
        self.open_circuit_v() + self.battery_current_a() * self.params.internal_resistance_ohm
    }

    /// PV output now, W: a half-sine from 06:00 to 18:00.
    pub fn pv_w(&self) -> f64 {
        if let Some(w) = self.pv_override_w {
            return w;
        }
        let h = self.time_of_day_s / 3600.0;
        if !(6.0..18.0).contains(&h) {
            return 0.0;
        }
        self.params.pv_peak_w * (std::f64::consts::PI * (h - 6.0) / 12.0).sin()
    }

    /// Household load now, W: a base load with a slow wave and a faster ripple.
    pub fn load_w(&self) -> f64 {
        if let Some(w) = self.load_override_w {
            return w;
        }
        let t = self.elapsed_s;
        self.params.load_base_w * (1.0 + 0.3 * (t / 300.0).sin() + 0.1 * (t / 17.0).sin())
    }

    /// Grid exchange, W (+ = importing): load − PV + battery charging power.
    pub fn grid_w(&self) -> f64 {
        self.load_w() - self.pv_w() + self.inverter_ac_w
    }

    /// A new setpoint from the inverter's registers, with the revert timeout (s, 0 = none).
    pub fn command(&mut self, setpoint_w: f64, revert_after_s: f64) {
        self.setpoint_w = setpoint_w;
        self.revert_in_s = (revert_after_s > 0.0).then_some(revert_after_s);
    }

    /// Advances the site by `dt` seconds.
    pub fn advance(&mut self, dt: f64) {
        if dt <= 0.0 {
            return;
        }
        self.elapsed_s += dt;
        self.time_of_day_s = (self.time_of_day_s + dt) % 86_400.0;
        if let Some(left) = self.revert_in_s.as_mut() {
            *left -= dt;
            if *left <= 0.0 {
                self.revert_in_s = None;
                self.setpoint_w = 0.0;
            }
        }
        let p = &self.params;
        // The inverter obeys its own limits and the BMS's, and can't charge a full battery or
        // discharge an empty one.
        let mut target = self
            .setpoint_w
            .clamp(-p.inverter_max_discharge_w, p.inverter_max_charge_w);
        let v = self.open_circuit_v();
        target = target.clamp(-p.bms_max_discharge_a * v, p.bms_max_charge_a * v);
        if (self.soc_pct() >= 100.0 && target > 0.0) || (self.soc_pct() <= 0.0 && target < 0.0) {
            target = 0.0;
        }
        if p.inverter_time_constant_s > 0.0 {
            let k = 1.0 - (-dt / p.inverter_time_constant_s).exp();
            self.inverter_lagged_w += (target - self.inverter_lagged_w) * k;
            target = self.inverter_lagged_w;
        }
        let step = p.inverter_ramp_w_per_s * dt;
        self.inverter_ac_w += (target - self.inverter_ac_w).clamp(-step, step);

        let dc = self.battery_dc_w();
        self.energy_wh = (self.energy_wh + dc * dt / 3600.0).clamp(0.0, self.params.capacity_wh);
        let i = self.battery_current_a();
        let p = &self.params;
        self.temperature_c += (p.heating_c_per_a2_s * i * i
            - p.cooling_per_s * (self.temperature_c - p.ambient_c))
            * dt;
        let grid = self.grid_w();
        if grid > 0.0 {
            self.import_kwh += grid * dt / 3_600_000.0;
        } else {
            self.export_kwh += -grid * dt / 3_600_000.0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn discharging_500_w_for_an_hour_removes_about_526_wh() {
        let mut s = Site::new(SiteParams::default(), 50.0);
        s.command(-500.0, 0.0);
        for _ in 0..3600 {
            s.advance(1.0);
        }
        let removed = 5000.0 - s.energy_wh;
        // 500 W AC out needs 500 / 0.95 W from the cells; the first quarter second is ramp.
        assert!((removed - 500.0 / 0.95).abs() < 1.0, "{removed}");
        assert!(s.battery_current_a() < 0.0);
        assert!(s.battery_voltage_v() < s.open_circuit_v());
    }

    #[test]
    fn revert_timeout_returns_to_zero() {
        let mut s = Site::new(SiteParams::default(), 50.0);
        s.command(1000.0, 10.0);
        for _ in 0..9 {
            s.advance(1.0);
        }
        assert_eq!(s.setpoint_w, 1000.0);
        s.advance(1.5);
        assert_eq!(s.setpoint_w, 0.0);
    }

    #[test]
    fn grid_is_load_minus_pv_plus_charging() {
        let mut s = Site::new(SiteParams::default(), 50.0);
        s.pv_override_w = Some(3000.0);
        s.load_override_w = Some(1000.0);
        s.command(500.0, 0.0);
        s.advance(1.0);
        assert!((s.grid_w() - (1000.0 - 3000.0 + 500.0)).abs() < 1e-9);
    }

    #[test]
    fn the_inverter_lag_delays_the_response() {
        let params = SiteParams {
            inverter_time_constant_s: 0.5,
            ..SiteParams::default()
        };
        let mut s = Site::new(params, 50.0);
        s.command(1000.0, 0.0);
        for _ in 0..50 {
            s.advance(0.01);
        }
        // After one time constant: 63 % of the step (the ramp of 2000 W/s is not the limit).
        assert!(
            (s.inverter_ac_w - 632.0).abs() < 10.0,
            "{}",
            s.inverter_ac_w
        );
        for _ in 0..250 {
            s.advance(0.01);
        }
        assert!(
            (s.inverter_ac_w - 1000.0).abs() < 10.0,
            "{}",
            s.inverter_ac_w
        );
    }

    #[test]
    fn current_heats_the_battery() {
        let mut s = Site::new(SiteParams::default(), 50.0);
        s.command(5000.0, 0.0);
        for _ in 0..600 {
            s.advance(1.0);
        }
        assert!(s.temperature_c > 26.0, "{}", s.temperature_c);
    }
}
