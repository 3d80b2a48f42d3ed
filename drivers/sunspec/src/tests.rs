//! Unit tests on SunSpec register images laid out per the SunSpec model definitions.

use ems_driver_sdk::Request;
use ems_driver_sdk::regs::ascii_to;
use ems_driver_sdk::{BusError, Flag, MemoryBus};

use super::*;

const UNIT: u8 = 126;
const NI16: u16 = 0x8000; // int16 / sunssf "not implemented"
const NU16: u16 = 0xFFFF; // uint16 / enum16 "not implemented"

/// Builds a register image: the marker at `base`, then models, then the end model.
struct Image {
    bus: MemoryBus,
    next: u16,
}

impl Image {
    fn at(base: u16) -> Image {
        let mut bus = MemoryBus::new();
        bus.set_holding(UNIT, base, &discovery::MARKER);
        Image {
            bus,
            next: base + 2,
        }
    }

    fn model(mut self, id: u16, body: Vec<u16>) -> Image {
        self.bus
            .set_holding(UNIT, self.next, &[id, body.len() as u16]);
        self.bus.set_holding(UNIT, self.next + 2, &body);
        self.next += 2 + body.len() as u16;
        self
    }

    fn end(mut self) -> MemoryBus {
        self.bus.set_holding(UNIT, self.next, &[0xFFFF, 0]);
        self.bus
    }
}

/// A model body of `len` registers, unimplemented except for `points` (offset, raw value).
fn body(len: usize, points: &[(usize, u16)]) -> Vec<u16> {
    let mut b = vec![NU16; len];
    for (off, v) in points {
        b[*off] = *v;
    }
    b
}

fn common() -> Vec<u16> {
    let mut b = Vec::new();
    b.extend(ascii_to("ems test", 16)); // Mn
    b.extend(ascii_to("Hybrid 5", 16)); // Md
    b.extend(ascii_to("", 8)); // Opt
    b.extend(ascii_to("1.2.3", 8)); // Vr
    b.extend(ascii_to("SN-42", 16)); // SN
    b.extend([1, NI16]); // DA, Pad
    b
}

fn neg(x: i16) -> u16 {
    x as u16
}

fn inverter_103() -> Vec<u16> {
    use models::inverter::*;
    body(
        50,
        &[
            (PH_V[0], 2301),
            (PH_V[1], 2310),
            (PH_V[2], 2295),
            (V_SF, neg(-1)),
            (W, 3000),
            (W_SF, 0),
            (HZ, 5001),
            (HZ_SF, neg(-2)),
            (DCW, 3100),
            (DCW_SF, 0),
            (ST, 4),
            (EVT1, 0),
            (EVT1 + 1, 1 << 7), // OVER_TEMP
        ],
    )
}

fn storage_124() -> Vec<u16> {
    use models::storage::*;
    body(
        24,
        &[
            (W_CHA_MAX, 5000),
            (W_CHA_MAX_SF, 0),
            (STOR_CTL_MOD, 0),
            (CHA_STATE, 655),
            (CHA_STATE_SF, neg(-1)),
            (IN_BAT_V, 512),
            (IN_BAT_V_SF, neg(-1)),
            (OUT_W_RTE, 10000),
            (IN_W_RTE, 10000),
            (RVRT_TMS, 0),
            (IN_OUT_W_RTE_SF, neg(-2)),
        ],
    )
}

fn battery_802() -> Vec<u16> {
    use models::battery::*;
    body(
        62,
        &[
            (SOC, 66),
            (SOC_SF, 0),
            (SOH, 98),
            (SOH_SF, 0),
            (ALM_RST, 0),
            (STATE, 3),
            (EVT1, 0),
            (EVT1 + 1, (1 << 1) | (1 << 10)), // OVER_TEMP_ALARM, OVER_VOLT_WARNING
            (V, 5210),
            (V_SF, neg(-2)),
            (A, neg(-200)), // SunSpec: negative = charging
            (A_SF, neg(-1)),
            (A_CHA_MAX, 100),
            (A_DIS_CHA_MAX, 120),
            (A_MAX_SF, 0),
            (W, neg(-1042)),
            (W_SF, 0),
        ],
    )
}

/// A hybrid inverter with a battery: 1, 103, 120 (nameplate, not used), 124, 802.
fn hybrid_at(base: u16) -> MemoryBus {
    Image::at(base)
        .model(1, common())
        .model(103, inverter_103())
        .model(120, body(26, &[]))
        .model(124, storage_124())
        .model(802, battery_802())
        .end()
}

fn driver(options: &str) -> SunSpec {
    let address = DeviceAddress {
        modbus_unit: Some(UNIT),
        i2c_address: None,
    };
    SunSpec::new(&toml::from_str(options).unwrap(), address).unwrap()
}

fn close(a: Option<f64>, b: f64) -> bool {
    a.is_some_and(|a| (a - b).abs() < 1e-9)
}

#[test]
fn discovers_the_chain_and_decodes_every_model() {
    let mut bus = hybrid_at(40000);
    let mut d = driver("");
    let r = d.poll(&mut bus).unwrap();
    assert_eq!(
        d.layout
            .as_ref()
            .unwrap()
            .models
            .iter()
            .map(|m| m.id)
            .collect::<Vec<_>>(),
        [1, 103, 120, 124, 802]
    );
    let info = &bus.logs()[0].1;
    assert!(
        info.contains("ems test Hybrid 5 version 1.2.3 serial SN-42"),
        "{info}"
    );

    assert!(close(r.inverter_ac_power_w, 3000.0));
    assert!(close(r.grid_phase_voltage_v[1], 231.0));
    assert!(close(r.grid_voltage_v, (230.1 + 231.0 + 229.5) / 3.0));
    assert!(close(r.grid_frequency_hz, 50.01));
    assert_eq!(r.inverter_state.as_deref(), Some("MPPT"));
    assert_eq!(r.pv_power_w, None, "DCW of a hybrid is not PV power");
    // 802 wins over 124 for SoC and voltage.
    assert!(close(r.battery_soc_pct, 66.0));
    assert!(close(r.battery_voltage_v, 52.1));
    assert!(close(r.battery_soh_pct, 98.0));
    // SunSpec -20 A / -1042 W (charging) is ems +20 A / +1042 W.
    assert!(close(r.battery_current_a, 20.0));
    assert!(close(r.battery_power_w, 1042.0));
    assert!(close(r.battery_max_charge_current_a, 100.0));
    assert!(close(r.battery_max_discharge_current_a, 120.0));
    assert_eq!(r.battery_temperature_c, None);
    assert!(r.flags.contains(&Flag::Overheat));
    assert!(r.flags.contains(&Flag::BmsAlarm));
    assert!(r.flags.contains(&Flag::Other("OVER_VOLT_WARNING".into())));

    // Later polls skip discovery: 103+120+124 fit one read (106 registers), 802 needs another.
    bus.clear_transactions();
    d.poll(&mut bus).unwrap();
    assert_eq!(
        bus.transactions(),
        &[
            Request::ReadHolding {
                unit: UNIT,
                addr: 40070,
                count: 106
            },
            Request::ReadHolding {
                unit: UNIT,
                addr: 40176,
                count: 64
            },
        ]
    );
}

#[test]
fn charge_positive_devices_keep_their_sign() {
    let mut bus = hybrid_at(40000);
    let r = driver("charge_positive = true").poll(&mut bus).unwrap();
    assert!(close(r.battery_power_w, -1042.0));
}

#[test]
fn an_exception_or_timeout_at_one_base_moves_on() {
    // Nothing at 40000 (exception 2): found at 0.
    let mut bus = hybrid_at(0);
    assert!(driver("").poll(&mut bus).is_ok());
    assert_eq!(
        bus.transactions()[..2],
        [
            Request::ReadHolding {
                unit: UNIT,
                addr: 40000,
                count: 2
            },
            Request::ReadHolding {
                unit: UNIT,
                addr: 0,
                count: 2
            },
        ]
    );

    // 40000 times out, 0 refuses: found at 50000.
    let mut bus = hybrid_at(50000);
    bus.fail(UNIT, 40000..=40001, BusError::Timeout);
    let r = driver("").poll(&mut bus).unwrap();
    assert!(close(r.battery_soc_pct, 66.0));
}

#[test]
fn no_marker_is_a_device_error_and_silence_a_timeout() {
    let mut bus = MemoryBus::new();
    bus.set_holding(UNIT, 40000, &[0x1234, 0x5678]);
    let err = driver("").poll(&mut bus).unwrap_err();
    assert!(
        matches!(&err, DriverError::Device(m) if m.contains("no SunSpec marker")),
        "{err}"
    );

    bus.set_offline(UNIT, true);
    let err = driver("").poll(&mut bus).unwrap_err();
    assert!(
        matches!(
            err,
            DriverError::Bus {
                source: BusError::Timeout,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn sentinels_are_absent_not_zero() {
    use models::inverter::*;
    let mut inv = inverter_103();
    inv[W] = NI16;
    inv[V_SF] = NI16;
    inv[ST] = NU16;
    inv[EVT1] = NU16;
    inv[EVT1 + 1] = NU16;
    let mut bus = Image::at(40000).model(1, common()).model(103, inv).end();
    let r = driver("").poll(&mut bus).unwrap();
    assert_eq!(r.inverter_ac_power_w, None);
    assert_eq!(r.grid_phase_voltage_v, [None; 3]);
    assert_eq!(r.grid_voltage_v, None);
    assert_eq!(r.inverter_state, None);
    assert!(r.flags.is_empty());
    assert!(close(r.grid_frequency_hz, 50.01));
    // No storage model: a PV inverter's DC power is PV power.
    assert!(close(r.pv_power_w, 3100.0));
}

#[test]
fn a_refused_model_is_absent_and_the_rest_still_reads() {
    let mut bus = hybrid_at(40000);
    bus.fail(UNIT, 40176..=40239, BusError::Exception(2));
    let r = driver("").poll(&mut bus).unwrap();
    assert_eq!(r.battery_power_w, None);
    assert!(
        close(r.battery_soc_pct, 65.5),
        "falls back to model 124 ChaState"
    );
    assert!(close(r.battery_voltage_v, 51.2));
    assert!(close(r.inverter_ac_power_w, 3000.0));
}

#[test]
fn transport_failures_and_short_answers_fail_the_poll() {
    let mut bus = hybrid_at(40000);
    let mut d = driver("");
    d.poll(&mut bus).unwrap();
    bus.fail(UNIT, 40176..=40176, BusError::Crc);
    let err = d.poll(&mut bus).unwrap_err();
    assert!(
        matches!(
            err,
            DriverError::Bus {
                source: BusError::Crc,
                ..
            }
        ),
        "{err}"
    );
    bus.clear_faults(UNIT);
    bus.short_answers(UNIT, 1);
    let err = d.poll(&mut bus).unwrap_err();
    assert!(matches!(err, DriverError::ShortAnswer { .. }), "{err}");
}

#[test]
fn a_changed_chain_is_rediscovered() {
    let mut bus = hybrid_at(40000);
    let mut d = driver("");
    d.poll(&mut bus).unwrap();
    // The device came back with a single-phase inverter model in place of 103.
    let mut other = Image::at(40000)
        .model(1, common())
        .model(101, inverter_103())
        .end();
    let err = d.poll(&mut other).unwrap_err();
    assert!(
        matches!(&err, DriverError::Device(m) if m.contains("discovered again")),
        "{err}"
    );
    // Same registers, other model ID at the same place: caught by the header check.
    let mut other = Image::at(40000)
        .model(1, common())
        .model(101, inverter_103())
        .model(120, body(26, &[]))
        .model(124, storage_124())
        .model(802, battery_802())
        .end();
    d.poll(&mut hybrid_at(40000)).unwrap();
    let err = d.poll(&mut other).unwrap_err();
    assert!(
        matches!(&err, DriverError::Device(m) if m.contains("discovered again")),
        "{err}"
    );
    let r = d.poll(&mut other).unwrap();
    assert!(close(r.inverter_ac_power_w, 3000.0));
}

#[test]
fn setpoints_go_through_model_124_with_the_revert_timeout_first() {
    let mut bus = hybrid_at(40000);
    let mut d = driver("revert_timeout_s = 30");
    d.poll(&mut bus).unwrap();
    let base = 40150 + 2;
    use models::storage::*;

    // Right after a poll, model 124 is not read again; the device holds RvrtTms 0 and
    // StorCtl_Mod 0, so both are written, the revert timeout first.
    bus.clear_transactions();
    d.set_battery_power(&mut bus, 2500.0).unwrap(); // 50 % of 5000 W, InOutWRte_SF -2
    assert_eq!(
        bus.transactions(),
        [
            Request::WriteSingle {
                unit: UNIT,
                addr: base + RVRT_TMS as u16,
                value: 30
            },
            Request::WriteMultiple {
                unit: UNIT,
                addr: base + OUT_W_RTE as u16,
                values: vec![neg(-5000), 5000]
            },
            Request::WriteSingle {
                unit: UNIT,
                addr: base + STOR_CTL_MOD as u16,
                value: 3
            },
        ]
    );

    // In steady state a setpoint is one write: the rates.
    bus.clear_transactions();
    d.set_battery_power(&mut bus, -1000.0).unwrap(); // discharge 20 %
    assert_eq!(
        bus.transactions(),
        [Request::WriteMultiple {
            unit: UNIT,
            addr: base + OUT_W_RTE as u16,
            values: vec![2000, neg(-2000)]
        }]
    );
    d.poll(&mut bus).unwrap();
    bus.clear_transactions();
    d.set_battery_power(&mut bus, 99_999.0).unwrap(); // clamped to 100 %, logged
    assert_eq!(bus.transactions().len(), 1);
    assert_eq!(bus.holding(UNIT, base + IN_W_RTE as u16), Some(10000));
    assert!(bus.logs().iter().any(|(_, m)| m.contains("beyond WChaMax")));

    // The device dropped its control mode (a local panel, a reboot): the next poll sees it and
    // the setpoint writes it again.
    bus.set_holding(UNIT, base + STOR_CTL_MOD as u16, &[0]);
    bus.set_holding(UNIT, base + RVRT_TMS as u16, &[0]);
    d.poll(&mut bus).unwrap();
    bus.clear_transactions();
    d.set_battery_power(&mut bus, 0.0).unwrap();
    assert_eq!(bus.transactions().len(), 3);
    assert_eq!(bus.holding(UNIT, base + STOR_CTL_MOD as u16), Some(3));
    assert_eq!(bus.holding(UNIT, base + RVRT_TMS as u16), Some(30));
}

#[test]
fn a_setpoint_without_a_fresh_poll_reads_model_124_first() {
    let mut bus = hybrid_at(40000);
    let mut d = driver("");
    d.set_battery_power(&mut bus, 1000.0).unwrap(); // discovery, then model 124
    let base = 40150 + 2;
    assert_eq!(
        bus.holding(UNIT, base + models::storage::IN_W_RTE as u16),
        Some(2000)
    );

    // A failed poll forgets the reading it started from.
    d.poll(&mut bus).unwrap();
    bus.set_offline(UNIT, true);
    assert!(d.poll(&mut bus).is_err());
    bus.set_offline(UNIT, false);
    bus.clear_transactions();
    d.set_battery_power(&mut bus, 1000.0).unwrap();
    assert_eq!(
        bus.transactions()[0],
        Request::ReadHolding {
            unit: UNIT,
            addr: 40150,
            count: 26
        }
    );
}

#[test]
fn control_needs_the_right_models() {
    let mut bus = Image::at(40000)
        .model(1, common())
        .model(103, inverter_103())
        .end();
    let mut d = driver("");
    let err = d.set_battery_power(&mut bus, 100.0).unwrap_err();
    assert!(
        matches!(&err, DriverError::Unsupported(m) if m.contains("124")),
        "{err}"
    );
    let err = d.reset_alarms(&mut bus).unwrap_err();
    assert!(
        matches!(&err, DriverError::Unsupported(m) if m.contains("802")),
        "{err}"
    );

    let mut storage = storage_124();
    storage[models::storage::W_CHA_MAX] = NU16;
    let mut bus = Image::at(40000).model(124, storage).end();
    let err = driver("").set_battery_power(&mut bus, 100.0).unwrap_err();
    assert!(
        matches!(&err, DriverError::Device(m) if m.contains("WChaMax")),
        "{err}"
    );
}

#[test]
fn alarm_reset_writes_almrst() {
    let mut bus = hybrid_at(40000);
    let mut d = driver("");
    d.reset_alarms(&mut bus).unwrap();
    assert_eq!(
        bus.holding(UNIT, 40176 + 2 + models::battery::ALM_RST as u16),
        Some(1)
    );
}

#[test]
fn options_are_checked() {
    let unit = DeviceAddress {
        modbus_unit: Some(1),
        i2c_address: None,
    };
    let t = |s: &str| toml::from_str::<toml::Table>(s).unwrap();
    let err = SunSpec::new(&t("revert_timeout_s = 0"), unit).unwrap_err();
    assert_eq!(err.key, "revert_timeout_s");
    let err = SunSpec::new(&t("charge_positive = 1"), unit).unwrap_err();
    assert_eq!(err.key, "charge_positive");
    let err = SunSpec::new(&t(""), DeviceAddress::default()).unwrap_err();
    assert_eq!(err.key, "modbus_unit");
}
