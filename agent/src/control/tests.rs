//! Scenario tests of the state machine: one behaviour each.

use ems_protocol::{ErrorFlag, State, TargetMode};

use super::{Controller, Limits, Measurements, ScheduleAction, Strategy};

fn site(soc: f64, grid_w: f64, battery_w: f64) -> Measurements {
    Measurements {
        battery_voltage_v: Some(52.0),
        battery_current_a: Some(battery_w / 52.0),
        battery_power_w: Some(battery_w),
        battery_soc_pct: Some(soc),
        battery_temperature_c: Some(25.0),
        grid_voltage_v: Some(230.0),
        grid_power_w: Some(grid_w),
        grid_frequency_hz: Some(50.0),
        ..Measurements::default()
    }
}

#[test]
fn starts_in_auto_at_zero_watts() {
    let mut c = Controller::new(Limits::default());
    assert_eq!(c.state(), State::Starting);
    assert_eq!(c.mode(), TargetMode::Auto);
    let d = c.step(0.0, &site(50.0, 0.0, 0.0), true);
    assert_eq!(d.setpoint_w, 0.0);
    assert_eq!(d.state, State::Idle);
}

#[test]
fn manual_discharge_ramps_to_target_and_holds() {
    let mut c = Controller::new(Limits::default());
    c.step(0.0, &site(50.0, 0.0, 0.0), true);
    c.set_mode(TargetMode::ManualDischarge, Some(500.0))
        .unwrap();
    let d = c.step(0.2, &site(50.0, 0.0, 0.0), true);
    assert_eq!(d.setpoint_w, -200.0, "ramp of 1000 W/s over 0.2 s");
    let d = c.step(1.2, &site(50.0, 0.0, -200.0), true);
    assert_eq!(d.setpoint_w, -500.0);
    assert_eq!(d.state, State::Discharging);
    let d = c.step(2.2, &site(50.0, 0.0, -500.0), true);
    assert_eq!(d.setpoint_w, -500.0);
}

#[test]
fn auto_charges_from_export_and_covers_import() {
    let mut c = Controller::new(Limits::default());
    c.step(0.0, &site(50.0, 0.0, 0.0), true);
    // Exporting 800 W: charge with it.
    let d = c.step(1.0, &site(50.0, -800.0, 0.0), true);
    assert_eq!(d.setpoint_w, 800.0);
    assert_eq!(d.state, State::Charging);
    // Now importing 300 W while charging 800 W. One second after the change the reading may
    // predate the battery's move: AUTO holds until `response_time_s` (1.5 s) has passed.
    let d = c.step(2.0, &site(50.0, 300.0, 800.0), true);
    assert_eq!(d.setpoint_w, 800.0);
    // Then it charges only 500 W.
    let d = c.step(3.0, &site(50.0, 300.0, 800.0), true);
    assert_eq!(d.setpoint_w, 500.0);
    // Inside the deadband: hold.
    let d = c.step(5.0, &site(50.0, 30.0, 500.0), true);
    assert_eq!(d.setpoint_w, 500.0);
    // The correction starts from the measured battery power (anti-windup): an inverter stuck
    // at 200 W while told 500 W, with the site importing 100 W, gets 100 W, not 400 W.
    let d = c.step(7.0, &site(50.0, 100.0, 200.0), true);
    assert_eq!(d.setpoint_w, 100.0);
}

#[test]
fn full_blocks_charging_until_soc_falls_by_the_margin() {
    let mut c = Controller::new(Limits::default());
    c.step(0.0, &site(96.0, 0.0, 0.0), true);
    c.set_mode(TargetMode::ManualCharge, Some(1000.0)).unwrap();
    let d = c.step(1.0, &site(96.0, 0.0, 0.0), true);
    assert_eq!((d.state, d.setpoint_w), (State::Full, 0.0));
    // 93 % is below max but within the 3 % margin: still FULL.
    let d = c.step(2.0, &site(93.0, 0.0, 0.0), true);
    assert_eq!((d.state, d.setpoint_w), (State::Full, 0.0));
    let d = c.step(3.0, &site(91.9, 0.0, 0.0), true);
    assert_eq!(d.state, State::Charging);
    assert!(d.setpoint_w > 0.0);
}

#[test]
fn empty_blocks_discharge() {
    let mut c = Controller::new(Limits::default());
    c.step(0.0, &site(10.0, 0.0, 0.0), true);
    c.set_mode(TargetMode::ManualDischarge, Some(500.0))
        .unwrap();
    let d = c.step(1.0, &site(9.0, 0.0, 0.0), true);
    assert_eq!((d.state, d.setpoint_w), (State::Empty, 0.0));
}

#[test]
fn fault_gives_error_and_zero_in_the_same_step_and_latches() {
    let mut c = Controller::new(Limits::default());
    c.step(0.0, &site(50.0, 0.0, 0.0), true);
    c.set_mode(TargetMode::ManualDischarge, Some(500.0))
        .unwrap();
    c.step(1.0, &site(50.0, 0.0, 0.0), true);
    let mut hot = site(50.0, 0.0, -500.0);
    hot.battery_temperature_c = Some(70.0);
    let d = c.step(2.0, &hot, true);
    assert_eq!((d.state, d.setpoint_w), (State::Error, 0.0));
    assert_eq!(d.error_flags, vec![ErrorFlag::Overheat]);

    // Still hot: reset refused, naming the flag.
    let err = c.reset_error().unwrap_err();
    assert!(err.0.contains("OVERHEAT"), "{err}");
    // Cooled down: ERROR persists (latched) until the reset.
    let d = c.step(3.0, &site(50.0, 0.0, 0.0), true);
    assert_eq!(d.state, State::Error);
    assert_eq!(
        d.error_flags,
        vec![ErrorFlag::Overheat],
        "latched flag still shown"
    );
    c.reset_error().unwrap();
    let d = c.step(4.0, &site(50.0, 0.0, 0.0), true);
    assert_ne!(d.state, State::Error);
    assert!(d.error_flags.is_empty());
}

#[test]
fn set_mode_over_the_limit_is_rejected_with_the_limit() {
    let mut c = Controller::new(Limits::default());
    let err = c
        .set_mode(TargetMode::ManualDischarge, Some(9000.0))
        .unwrap_err();
    assert!(err.0.contains("3000"), "{err}");
    assert_eq!(c.mode(), TargetMode::Auto, "nothing changed");
    assert!(c.set_mode(TargetMode::ManualCharge, None).is_err());
}

#[test]
fn manual_mode_falls_back_to_auto_after_link_loss() {
    let mut c = Controller::new(Limits::default());
    c.step(0.0, &site(50.0, 0.0, 0.0), true);
    c.set_mode(TargetMode::ManualIdle, None).unwrap();
    let d = c.step(10.0, &site(50.0, 0.0, 0.0), false);
    assert_eq!(d.mode, TargetMode::ManualIdle);
    let d = c.step(609.0, &site(50.0, 0.0, 0.0), false);
    assert_eq!(d.mode, TargetMode::ManualIdle, "599 s down");
    let d = c.step(610.0, &site(50.0, 0.0, 0.0), false);
    assert_eq!(d.mode, TargetMode::Auto);
    assert!(d.fell_back_to_auto);
}

#[test]
fn bms_current_limit_caps_power() {
    let mut c = Controller::new(Limits::default());
    c.step(0.0, &site(50.0, 0.0, 0.0), true);
    c.set_mode(TargetMode::ManualCharge, Some(3000.0)).unwrap();
    let mut m = site(50.0, 0.0, 0.0);
    m.bms_max_charge_current_a = Some(20.0);
    for t in 1..6 {
        c.step(t as f64, &m, true);
    }
    let d = c.step(6.0, &m, true);
    assert_eq!(d.setpoint_w, 20.0 * 52.0);
}

#[test]
fn a_leased_manual_mode_holds_until_its_lease_ends_then_auto() {
    let mut c = Controller::new(Limits::default());
    c.step(0.0, &site(50.0, 0.0, 0.0), true);
    c.set_mode_until(TargetMode::ManualDischarge, Some(500.0), Some(3.5))
        .unwrap();
    for t in [1.0, 2.0, 3.0, 3.499] {
        let d = c.step(t, &site(50.0, 0.0, -500.0), true);
        assert_eq!(d.mode, TargetMode::ManualDischarge, "at {t} s");
        assert_eq!(d.lease_ended, None);
    }
    assert_eq!(c.state(), State::Discharging);
    // The site imports nothing: AUTO heads for 0 W at once (towards 0 W needs no ramp).
    let d = c.step(3.5, &site(50.0, 0.0, -500.0), true);
    assert_eq!(d.mode, TargetMode::Auto);
    assert_eq!(d.lease_ended, Some(TargetMode::ManualDischarge));
    assert_eq!(c.lease_until_s(), None);
    let d = c.step(4.5, &site(50.0, 0.0, -500.0), true);
    assert_eq!(
        (d.mode, d.lease_ended),
        (TargetMode::Auto, None),
        "ends once"
    );
}

#[test]
fn a_new_set_mode_replaces_the_lease_or_clears_it() {
    let mut c = Controller::new(Limits::default());
    c.step(0.0, &site(50.0, 0.0, 0.0), true);
    c.set_mode_until(TargetMode::ManualDischarge, Some(500.0), Some(10.0))
        .unwrap();
    // Replaced by a longer one: the first end passes unnoticed.
    c.set_mode_until(TargetMode::ManualCharge, Some(300.0), Some(20.0))
        .unwrap();
    let d = c.step(15.0, &site(50.0, 0.0, 0.0), true);
    assert_eq!((d.mode, d.lease_ended), (TargetMode::ManualCharge, None));
    // Replaced by a shorter one: it ends at its own time.
    c.set_mode_until(TargetMode::ManualIdle, None, Some(16.0))
        .unwrap();
    let d = c.step(16.0, &site(50.0, 0.0, 0.0), true);
    assert_eq!(d.lease_ended, Some(TargetMode::ManualIdle));
    // Without a lease: holds for good, and clears a lease given before.
    c.set_mode_until(TargetMode::ManualIdle, None, Some(17.0))
        .unwrap();
    c.set_mode(TargetMode::ManualIdle, None).unwrap();
    let d = c.step(10_000.0, &site(50.0, 0.0, 0.0), true);
    assert_eq!((d.mode, d.lease_ended), (TargetMode::ManualIdle, None));
    // A rejected command leaves the lease alone.
    c.set_mode_until(TargetMode::ManualCharge, Some(300.0), Some(10_005.0))
        .unwrap();
    assert!(
        c.set_mode_until(TargetMode::ManualCharge, Some(9000.0), None)
            .is_err()
    );
    assert_eq!(c.lease_until_s(), Some(10_005.0));
    assert!(c.set_mode_until(TargetMode::Auto, None, Some(1.0)).is_err());
}

#[test]
fn error_wins_over_a_lease_and_a_reset_does_not_bring_a_lapsed_one_back() {
    let mut c = Controller::new(Limits::default());
    c.step(0.0, &site(50.0, 0.0, 0.0), true);
    c.set_mode_until(TargetMode::ManualDischarge, Some(500.0), Some(5.0))
        .unwrap();
    c.step(1.0, &site(50.0, 0.0, 0.0), true);
    let mut hot = site(50.0, 0.0, -500.0);
    hot.battery_temperature_c = Some(70.0);
    let d = c.step(2.0, &hot, true);
    assert_eq!(
        (d.state, d.setpoint_w),
        (State::Error, 0.0),
        "leased or not"
    );
    // The lease ends while in ERROR: still ERROR and 0 W, but the mode is AUTO now.
    let d = c.step(5.0, &site(50.0, 0.0, 0.0), true);
    assert_eq!((d.state, d.setpoint_w), (State::Error, 0.0));
    assert_eq!(d.lease_ended, Some(TargetMode::ManualDischarge));
    assert_eq!(d.mode, TargetMode::Auto);
    c.reset_error().unwrap();
    let d = c.step(6.0, &site(50.0, 0.0, 0.0), true);
    assert_eq!(d.mode, TargetMode::Auto);
    assert_eq!(d.setpoint_w, 0.0, "no discharge after the reset");

    // A lease still running through ERROR and its reset goes on to its end.
    c.set_mode_until(TargetMode::ManualDischarge, Some(500.0), Some(20.0))
        .unwrap();
    c.step(7.0, &hot, true);
    c.step(8.0, &site(50.0, 0.0, 0.0), true);
    c.reset_error().unwrap();
    let d = c.step(9.0, &site(50.0, 0.0, 0.0), true);
    assert_eq!(
        (d.mode, d.state),
        (TargetMode::ManualDischarge, State::Discharging)
    );
    let d = c.step(20.0, &site(50.0, 0.0, -500.0), true);
    assert_eq!(d.mode, TargetMode::Auto);
}

#[test]
fn the_link_fallback_also_ends_a_lease() {
    let mut c = Controller::new(Limits::default());
    c.step(0.0, &site(50.0, 0.0, 0.0), true);
    c.set_mode_until(TargetMode::ManualIdle, None, Some(5000.0))
        .unwrap();
    c.step(1.0, &site(50.0, 0.0, 0.0), false);
    let d = c.step(601.0, &site(50.0, 0.0, 0.0), false);
    assert!(d.fell_back_to_auto);
    assert_eq!(c.lease_until_s(), None);
    let d = c.step(5000.0, &site(50.0, 0.0, 0.0), true);
    assert_eq!(d.lease_ended, None, "nothing left to end");
}

fn with_strategy(strategy: Strategy) -> Controller {
    let mut c = Controller::new(Limits {
        strategy,
        ..Limits::default()
    });
    c.step(0.0, &site(50.0, 0.0, 0.0), true);
    c
}

#[test]
fn a_target_other_than_zero_is_where_auto_steers_the_grid() {
    let mut c = with_strategy(Strategy {
        target_grid_w: -500.0,
        ..Strategy::default()
    });
    // Importing 300 W: discharge 800 W so that the site exports 500 W.
    let d = c.step(2.0, &site(50.0, 300.0, 0.0), true);
    assert_eq!(d.setpoint_w, -800.0);
}

#[test]
fn an_export_beyond_the_limit_is_absorbed_at_once_and_smaller_exports_pass() {
    let mut c = with_strategy(Strategy {
        export_limit_w: Some(1000.0),
        ..Strategy::default()
    });
    // Exporting 800 W: under the cap, the battery stays idle (PV may export).
    let d = c.step(2.0, &site(50.0, -800.0, 0.0), true);
    assert_eq!(d.setpoint_w, 0.0);
    // Exporting 3000 W: charge 2050 W in this step, past the 1000 W/s ramp, to export one
    // deadband under the cap (950 W).
    let d = c.step(3.0, &site(50.0, -3000.0, 0.0), true);
    assert_eq!(d.setpoint_w, 2050.0);
    // A reading from before the battery moved: no second correction.
    let d = c.step(4.0, &site(50.0, -3000.0, 0.0), true);
    assert_eq!(d.setpoint_w, 2050.0);
    let d = c.step(6.0, &site(50.0, -950.0, 2050.0), true);
    assert_eq!(d.setpoint_w, 2050.0);
    // Import appears (PV fell): covered down to the target, 0 W.
    let d = c.step(7.0, &site(50.0, 400.0, 0.0), true);
    assert_eq!(d.setpoint_w, -400.0);
}

#[test]
fn peak_shaving_idles_under_the_cap_shaves_above_it_and_recharges_from_surplus() {
    let mut c = with_strategy(Strategy {
        import_limit_w: Some(5000.0),
        ..Strategy::default()
    });
    // Importing 2000 W, under the cap: no discharge (the battery is kept for peaks).
    let d = c.step(2.0, &site(50.0, 2000.0, 0.0), true);
    assert_eq!(d.setpoint_w, 0.0);
    // 7000 W: discharge 2050 W at once, past the ramp, to import one deadband under the cap.
    let d = c.step(3.0, &site(50.0, 7000.0, 0.0), true);
    assert_eq!(d.setpoint_w, -2050.0);
    // Within the deadband of that edge (4950 W): held.
    let d = c.step(5.0, &site(50.0, 4990.0, -2050.0), true);
    assert_eq!(d.setpoint_w, -2050.0);
    // The peak is over and PV exports 1500 W: the battery charges from the surplus only
    // (recharge_below_w = 0 W); from −2050 W it is at 0 W at once, then ramps (1000 W/s, 2 s
    // since the last step).
    let d = c.step(7.0, &site(50.0, -3550.0, -2050.0), true);
    assert_eq!(d.setpoint_w, 1500.0);
    let d = c.step(8.0, &site(50.0, 0.0, 1500.0), true);
    assert_eq!(d.setpoint_w, 1500.0);
}

#[test]
fn the_reserve_stops_discharge_and_below_its_hysteresis_charges_from_the_grid() {
    let strategy = Strategy {
        backup_reserve_pct: Some(30.0),
        reserve_hysteresis_pct: 5.0,
        reserve_charge_power_w: 1500.0,
        ..Strategy::default()
    };
    let mut c = with_strategy(strategy);
    let d = c.step(2.0, &site(31.0, 800.0, 0.0), true);
    assert_eq!(d.setpoint_w, -800.0, "above the reserve: self-consumption");
    let d = c.step(3.0, &site(30.0, 800.0, -800.0), true);
    assert_eq!(d.setpoint_w, 0.0, "at the reserve: no discharge, at once");
    assert!(!c.reserve_charging());
    // Within the hysteresis: still no discharge, no forced charge either.
    let d = c.step(6.0, &site(26.0, 800.0, 0.0), true);
    assert_eq!(d.setpoint_w, 0.0);
    // Below reserve − hysteresis: charge 1500 W from the grid, ramped.
    let d = c.step(7.0, &site(24.9, 800.0, 0.0), true);
    assert!(c.reserve_charging());
    assert_eq!(d.setpoint_w, 1000.0);
    let d = c.step(8.0, &site(25.0, 1800.0, 1000.0), true);
    assert_eq!(d.setpoint_w, 1500.0);
    // Until the reserve is back; then self-consumption, without discharging at it.
    let d = c.step(10.0, &site(30.0, 2300.0, 1500.0), true);
    assert!(!c.reserve_charging());
    assert_eq!(d.setpoint_w, 0.0);
}

#[test]
fn a_schedule_outranks_the_limits_and_the_reserve_outranks_the_schedule() {
    let mut c = with_strategy(Strategy {
        export_limit_w: Some(500.0),
        backup_reserve_pct: Some(30.0),
        ..Strategy::default()
    });
    c.set_schedule_action(Some(ScheduleAction::Discharge {
        power_w: 2000.0,
        down_to_soc_pct: 20.0,
    }))
    .unwrap();
    // Selling 2000 W in the window exports past the 500 W cap: the schedule decides.
    let d = c.step(1.0, &site(60.0, 0.0, 0.0), true);
    assert_eq!(d.setpoint_w, -1000.0, "ramped");
    let d = c.step(2.0, &site(60.0, -1000.0, -1000.0), true);
    assert_eq!(d.setpoint_w, -2000.0);
    // At the reserve the discharge stops, though the window asks down to 20 %.
    let d = c.step(3.0, &site(30.0, -2000.0, -2000.0), true);
    assert_eq!(d.setpoint_w, 0.0);

    // HOLD: no discharge while importing; surplus still charges (here what the 500 W export
    // cap would not let out, one deadband inside it).
    c.set_schedule_action(Some(ScheduleAction::Hold)).unwrap();
    let d = c.step(5.0, &site(60.0, 700.0, 0.0), true);
    assert_eq!(d.setpoint_w, 0.0);
    let d = c.step(7.0, &site(60.0, -700.0, 0.0), true);
    assert_eq!(d.setpoint_w, 250.0);

    // CHARGE without the grid: only the surplus, never importing for it.
    c.set_schedule_action(Some(ScheduleAction::Charge {
        power_w: 2000.0,
        to_soc_pct: 90.0,
        from_grid: false,
    }))
    .unwrap();
    let d = c.step(9.0, &site(60.0, -300.0, 250.0), true);
    assert_eq!(d.setpoint_w, 550.0, "250 W + the 300 W still exported");
    // With the grid: the full power (ramped); reached: it holds.
    c.set_schedule_action(Some(ScheduleAction::Charge {
        power_w: 2000.0,
        to_soc_pct: 90.0,
        from_grid: true,
    }))
    .unwrap();
    let d = c.step(10.0, &site(60.0, 0.0, 550.0), true);
    assert_eq!(d.setpoint_w, 1550.0);
    let d = c.step(11.0, &site(60.0, 1000.0, 1550.0), true);
    assert_eq!(d.setpoint_w, 2000.0);
    let d = c.step(12.0, &site(90.0, 2000.0, 2000.0), true);
    assert_eq!(
        d.setpoint_w, 0.0,
        "reached: holds, importing 2000 W is not covered"
    );

    // Closing the window returns to the strategy.
    c.set_schedule_action(None).unwrap();
    let d = c.step(14.0, &site(90.0, 400.0, 0.0), true);
    assert_eq!(d.setpoint_w, -400.0);
}

#[test]
fn schedule_actions_beyond_the_limits_are_rejected_with_the_reason() {
    let mut c = Controller::new(Limits::default());
    let err = c
        .set_schedule_action(Some(ScheduleAction::Charge {
            power_w: 9000.0,
            to_soc_pct: 80.0,
            from_grid: true,
        }))
        .unwrap_err();
    assert!(err.0.contains("3000"), "{err}");
    let err = c
        .set_schedule_action(Some(ScheduleAction::Discharge {
            power_w: 1000.0,
            down_to_soc_pct: 120.0,
        }))
        .unwrap_err();
    assert!(err.0.contains("0 to 100"), "{err}");
    let err = c
        .set_schedule_action(Some(ScheduleAction::Strategy(Strategy {
            backup_reserve_pct: Some(20.0),
            ..Strategy::default()
        })))
        .unwrap_err();
    assert!(err.0.contains("outranks schedules"), "{err}");
    assert_eq!(c.schedule_action(), None, "nothing changed");
}
