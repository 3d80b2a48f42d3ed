//! Composing the site's view from its devices: which device's value stands for each quantity
//! (BMS / battery meter before the inverter for battery values, grid meter before the inverter
//! for grid values), which devices are lost (COMM_LOSS, their values unknown), and the spec's
//! telemetry packet.

use std::time::{Duration, Instant};

use ems_driver_sdk::{Flag, Readings, Role};
use ems_protocol::telemetry::SiteFlows;
use ems_protocol::{Battery, ErrorFlag, Grid, SystemStatus, Telemetry, Timestamp};

use crate::control::{Decision, Measurements};
use crate::devices::{DeviceSlot, Outage, WriteFailure};

/// One device's slot with the roles it fills.
pub struct Source<'a> {
    pub name: &'a str,
    pub roles: &'a [Role],
    pub slot: &'a DeviceSlot,
}

/// The composed view of one cycle.
#[derive(Debug, Clone, Default)]
pub struct SiteView {
    pub measurements: Measurements,
    /// PV generation and house consumption, where the devices tell them (telemetry `site`).
    pub flows: SiteFlows,
    /// Devices silent for longer than the loss window.
    pub lost: Vec<String>,
    /// Devices that have not answered yet, still inside the start-up window.
    pub waiting: Vec<String>,
}

fn map_flag(f: &Flag) -> ErrorFlag {
    match f {
        Flag::Overheat => ErrorFlag::Overheat,
        Flag::Undertemperature => ErrorFlag::Undertemperature,
        Flag::Overvoltage => ErrorFlag::Overvoltage,
        Flag::Undervoltage => ErrorFlag::Undervoltage,
        Flag::Overcurrent => ErrorFlag::Overcurrent,
        Flag::BmsAlarm => ErrorFlag::BmsAlarm,
        Flag::InverterFault => ErrorFlag::InverterFault,
        Flag::GridFault => ErrorFlag::GridFault,
        Flag::Other(s) => {
            let name: String = s
                .to_ascii_uppercase()
                .chars()
                .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
                .take(64)
                .collect();
            name.parse().unwrap_or(ErrorFlag::InverterFault)
        }
    }
}

/// The flag an inverter raises when it cannot be commanded: `INVERTER_FAULT` at once when its
/// driver panicked or has no working instance; after `loss_after` of failing writes,
/// `INVERTER_FAULT` when the driver or device refuses the setpoint and `COMM_LOSS` when the bus
/// fails.
fn command_fault(slot: &DeviceSlot, now: Instant, loss_after: Duration) -> Option<ErrorFlag> {
    if slot.outage == Some(Outage::Panicked) {
        return Some(ErrorFlag::InverterFault);
    }
    let since = slot.write_failing_since?;
    match slot.write_failure? {
        WriteFailure::NoInstance => Some(ErrorFlag::InverterFault),
        _ if now.saturating_duration_since(since) < loss_after => None,
        WriteFailure::Refused => Some(ErrorFlag::InverterFault),
        WriteFailure::Transport => Some(ErrorFlag::CommLoss),
    }
}

/// Composes the measurements from the devices' latest readings.
pub fn compose(
    sources: &[Source<'_>],
    now: Instant,
    started: Instant,
    loss_after: Duration,
) -> SiteView {
    let mut view = SiteView::default();
    let mut fresh: Vec<(&[Role], &Readings)> = Vec::new();
    let mut flags: Vec<ErrorFlag> = Vec::new();
    for s in sources {
        let reference = s.slot.last_ok.unwrap_or(started);
        let age = now.saturating_duration_since(reference);
        if s.roles.contains(&Role::Inverter)
            && let Some(flag) = command_fault(s.slot, now, loss_after)
            && !flags.contains(&flag)
        {
            flags.push(flag);
        }
        match (&s.slot.readings, s.slot.last_ok) {
            // A hung or panicked driver: lost at once, whatever it last read.
            _ if s.slot.outage.is_some() => view.lost.push(s.name.to_string()),
            (Some(r), Some(_)) if age <= loss_after => {
                fresh.push((s.roles, r));
                for f in &r.flags {
                    let flag = map_flag(f);
                    if !flags.contains(&flag) {
                        flags.push(flag);
                    }
                }
            }
            _ if age <= loss_after => view.waiting.push(s.name.to_string()),
            _ => view.lost.push(s.name.to_string()),
        }
    }
    if !view.lost.is_empty() && !flags.contains(&ErrorFlag::CommLoss) {
        flags.push(ErrorFlag::CommLoss);
    }
    let pick = |order: &[Role], get: fn(&Readings) -> Option<f64>| -> Option<f64> {
        order.iter().find_map(|role| {
            fresh
                .iter()
                .filter(|(roles, _)| roles.contains(role))
                .find_map(|(_, r)| get(r))
        })
    };
    let battery = [Role::Battery, Role::BatteryMeter, Role::Inverter];
    let bms = [Role::Battery, Role::Inverter];
    let grid = [Role::GridMeter, Role::Inverter];
    view.measurements = Measurements {
        battery_voltage_v: pick(&battery, |r| r.battery_voltage_v),
        battery_current_a: pick(&battery, |r| r.battery_current_a),
        battery_power_w: pick(&battery, |r| r.battery_power_w),
        battery_soc_pct: pick(&bms, |r| r.battery_soc_pct),
        battery_temperature_c: pick(&bms, |r| r.battery_temperature_c),
        bms_max_charge_current_a: pick(&bms, |r| r.battery_max_charge_current_a),
        bms_max_discharge_current_a: pick(&bms, |r| r.battery_max_discharge_current_a),
        grid_voltage_v: pick(&grid, |r| r.grid_voltage_v),
        grid_power_w: pick(&grid, |r| r.grid_power_w),
        grid_frequency_hz: pick(&grid, |r| r.grid_frequency_hz),
        device_flags: flags,
    };
    view.flows = flows(
        &view.measurements,
        pick(&[Role::PvMeter], |r| r.pv_power_w),
        pick(&[Role::Inverter], |r| r.pv_power_w),
        pick(&[Role::Inverter], |r| r.inverter_ac_power_w),
    );
    view
}

/// Largest PV or house power published, W; beyond it the value is unknown (a broken reading
/// must not reach the energy sums).
const MAX_FLOW_W: f64 = 1_000_000.0;

/// PV and house power from what the devices read. PV: a PV meter's (AC-coupled), else the
/// inverter's PV input (a PV-only inverter). House = what the loads draw, by the energy balance
/// of the AC bus: grid + inverter AC output (+ an AC-coupled PV meter) when the inverter reports
/// its AC power; otherwise grid + PV − battery charge (inverter losses then count as load).
pub fn flows(
    m: &Measurements,
    pv_meter_w: Option<f64>,
    inverter_pv_w: Option<f64>,
    inverter_ac_w: Option<f64>,
) -> SiteFlows {
    let sane = |v: Option<f64>| v.filter(|w| w.is_finite() && w.abs() <= MAX_FLOW_W);
    let (pv_meter_w, inverter_pv_w, inverter_ac_w) =
        (sane(pv_meter_w), sane(inverter_pv_w), sane(inverter_ac_w));
    let grid = sane(m.grid_power_w);
    let pv = pv_meter_w.or(inverter_pv_w).map(|w| w.max(0.0));
    let house = match (grid, inverter_ac_w, pv, sane(m.battery_power_w)) {
        (Some(g), Some(ac), _, _) => Some(g + ac + pv_meter_w.unwrap_or(0.0).max(0.0)),
        (Some(g), None, Some(p), Some(b)) => Some(g + p - b),
        _ => None,
    };
    SiteFlows {
        pv_power: pv.map(|w| (w * 10.0).round() / 10.0),
        house_power: house.map(|w| (w.max(0.0) * 10.0).round() / 10.0),
    }
}

/// The measurements the cloud would refuse as physically implausible (outside
/// [`ems_protocol::telemetry::PLAUSIBLE`], or not finite), by telemetry field. [`telemetry`] sends
/// them as `null` (unknown), so one broken sensor never costs the whole packet.
pub fn implausible(m: &Measurements) -> Vec<&'static str> {
    let fields = [
        ("battery.voltage", m.battery_voltage_v),
        ("battery.current", m.battery_current_a),
        ("battery.power", m.battery_power_w),
        ("grid.voltage", m.grid_voltage_v),
        ("grid.power", m.grid_power_w),
        ("grid.frequency", m.grid_frequency_hz),
    ];
    fields
        .into_iter()
        .filter_map(|(field, value)| {
            let v = value?;
            let plausible = ems_protocol::telemetry::PLAUSIBLE
                .iter()
                .find(|(f, ..)| *f == field)
                .is_none_or(|&(_, lo, hi, _)| (lo..=hi).contains(&v));
            (!v.is_finite() || !plausible).then_some(field)
        })
        .collect()
}

/// The spec's telemetry packet for `timestamp`; [`implausible`] values are `null`.
pub fn telemetry(
    device_id: &str,
    timestamp: Timestamp,
    m: &Measurements,
    flows: SiteFlows,
    decision: &Decision,
    wifi_strength: Option<i32>,
) -> Telemetry {
    let nulled = implausible(m);
    let value = |field: &str, v: Option<f64>| v.filter(|_| !nulled.contains(&field));
    let round = |v: Option<f64>, digits: i32| {
        v.map(|x| {
            let k = 10f64.powi(digits);
            (x * k).round() / k
        })
    };
    Telemetry {
        device_id: device_id.to_string(),
        timestamp,
        system_status: SystemStatus {
            state: decision.state,
            mode: decision.mode.telemetry_mode(),
            error_flags: decision.error_flags.clone(),
            wifi_strength,
            schedule: None,
        },
        battery: Battery {
            voltage: round(value("battery.voltage", m.battery_voltage_v), 2),
            current: round(value("battery.current", m.battery_current_a), 2),
            power: round(value("battery.power", m.battery_power_w), 1),
            soc: round(
                m.battery_soc_pct
                    .filter(|s| s.is_finite())
                    .map(|s| s.clamp(0.0, 100.0)),
                1,
            ),
        },
        grid: Grid {
            voltage: round(value("grid.voltage", m.grid_voltage_v), 1),
            power: round(value("grid.power", m.grid_power_w), 1),
            frequency: round(value("grid.frequency", m.grid_frequency_hz), 2),
        },
        site: (flows != SiteFlows::default()).then_some(flows),
    }
}

/// Signal level of the first wireless interface in `/proc/net/wireless`, dBm; `None` without
/// a wireless link.
pub fn wifi_strength() -> Option<i32> {
    let text = std::fs::read_to_string("/proc/net/wireless").ok()?;
    parse_wireless(&text)
}

fn parse_wireless(text: &str) -> Option<i32> {
    // Two header lines, then "wlan0: 0000   70.  -40.  -256  0 0 0 0 0 0".
    let line = text.lines().nth(2)?;
    let level = line.split(':').nth(1)?.split_whitespace().nth(2)?;
    let dbm = level.trim_end_matches('.').parse::<f64>().ok()?;
    (-150.0..=0.0).contains(&dbm).then_some(dbm.round() as i32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn implausible_values_are_sent_as_null_and_the_packet_validates() {
        let m = Measurements {
            battery_voltage_v: Some(f64::NAN),
            battery_soc_pct: Some(55.0),
            grid_voltage_v: Some(-0.3),
            grid_power_w: Some(-200.0),
            grid_frequency_hz: Some(50.0),
            ..Measurements::default()
        };
        assert_eq!(implausible(&m), vec!["battery.voltage", "grid.voltage"]);
        let decision = Decision {
            state: ems_protocol::State::Error,
            setpoint_w: 0.0,
            error_flags: vec![ErrorFlag::GridFault],
            mode: ems_protocol::TargetMode::Auto,
            fell_back_to_auto: false,
            lease_ended: None,
        };
        let t = telemetry(
            "d1",
            Timestamp::from_unix(1000).unwrap(),
            &m,
            SiteFlows::default(),
            &decision,
            None,
        );
        assert_eq!(t.site, None, "no flows known: no site section");
        assert_eq!(t.battery.voltage, None);
        assert_eq!(t.grid.voltage, None);
        assert_eq!(t.grid.power, Some(-200.0));
        assert_eq!(t.battery.soc, Some(55.0));
        t.validate().unwrap();
    }

    #[test]
    fn house_and_pv_follow_the_energy_balance_of_the_ac_bus() {
        let m = Measurements {
            grid_power_w: Some(300.0),
            battery_power_w: Some(-500.0),
            ..Measurements::default()
        };
        // A hybrid inverter reporting its AC output: house = grid + AC output.
        let f = flows(&m, None, None, Some(1200.0));
        assert_eq!((f.pv_power, f.house_power), (None, Some(1500.0)));
        // Plus an AC-coupled PV inverter on its own meter.
        let f = flows(&m, Some(800.0), None, Some(1200.0));
        assert_eq!((f.pv_power, f.house_power), (Some(800.0), Some(2300.0)));
        // No inverter AC power: grid + PV − battery charge (discharging 500 W adds 500 W).
        let f = flows(&m, None, Some(1000.0), None);
        assert_eq!((f.pv_power, f.house_power), (Some(1000.0), Some(1800.0)));
        // Exporting more than PV and battery give would be negative use: floored at 0.
        let exporting = Measurements {
            grid_power_w: Some(-2000.0),
            battery_power_w: Some(0.0),
            ..Measurements::default()
        };
        assert_eq!(
            flows(&exporting, None, Some(1000.0), None).house_power,
            Some(0.0)
        );
        // Unknown or absurd inputs: unknown, never zero.
        let f = flows(&Measurements::default(), None, None, Some(1200.0));
        assert_eq!(f.house_power, None);
        let f = flows(&m, Some(f64::NAN), Some(5e9), None);
        assert_eq!((f.pv_power, f.house_power), (None, None));
    }

    #[test]
    fn wireless_level_is_read_in_dbm() {
        let text = "Inter-| sta-|   Quality        |   Discarded packets               | Missed | WE\n face | tus | link level noise |  nwid  crypt   frag  retry   misc | beacon | 22\n wlan0: 0000   70.  -40.  -256        0      0      0      0      0        0\n";
        assert_eq!(parse_wireless(text), Some(-40));
        assert_eq!(parse_wireless("header\nheader\n"), None);
    }

    fn slot(readings: Readings, age: Duration, now: Instant) -> DeviceSlot {
        DeviceSlot {
            readings: Some(readings),
            last_ok: Some(now - age),
            ..DeviceSlot::default()
        }
    }

    #[test]
    fn meters_win_over_the_inverter_and_lost_devices_become_unknown() {
        let now = Instant::now();
        let started = now - Duration::from_secs(100);
        let inverter = Readings {
            battery_soc_pct: Some(60.0),
            battery_voltage_v: Some(50.0),
            grid_power_w: Some(111.0),
            ..Readings::default()
        };
        let shunt = Readings {
            battery_voltage_v: Some(51.5),
            ..Readings::default()
        };
        let meter = Readings {
            grid_power_w: Some(-200.0),
            ..Readings::default()
        };
        let (a, b, c) = (
            slot(inverter, Duration::from_secs(1), now),
            slot(shunt, Duration::from_secs(1), now),
            slot(meter, Duration::from_secs(30), now),
        );
        let sources = [
            Source {
                name: "inv",
                roles: &[Role::Inverter, Role::Battery],
                slot: &a,
            },
            Source {
                name: "shunt",
                roles: &[Role::BatteryMeter],
                slot: &b,
            },
            Source {
                name: "meter",
                roles: &[Role::GridMeter],
                slot: &c,
            },
        ];
        let view = compose(&sources, now, started, Duration::from_secs(5));
        // The inverter fills `battery`, which comes before `battery_meter`.
        assert_eq!(view.measurements.battery_voltage_v, Some(50.0));
        assert_eq!(view.measurements.battery_soc_pct, Some(60.0));
        // The grid meter is lost: COMM_LOSS, and the inverter's grid value is the fallback.
        assert_eq!(view.lost, vec!["meter".to_string()]);
        assert!(
            view.measurements
                .device_flags
                .contains(&ErrorFlag::CommLoss)
        );
        assert_eq!(view.measurements.grid_power_w, Some(111.0));
    }
}
