//! The driver against the INA226 register model of `MemoryBus`: calibration, signs, the
//! divider, over-range, reprogramming after a chip reset, overflow, errors and options.

use super::*;
use ems_driver_sdk::{BusError, MemoryBus};

const ADDR: u8 = 0x40;

fn driver(options: &str) -> Ina226 {
    let address = DeviceAddress {
        modbus_unit: None,
        i2c_address: Some(ADDR),
    };
    Ina226::new(&toml::from_str(options).unwrap(), address).unwrap()
}

const OPTIONS: &str = "shunt_ohms = 0.002\nmax_current_a = 20.0";

/// A freshly powered INA226 (datasheet reset values) measuring `volts`, `amps` through
/// the 2 mΩ shunt, with the scales of the calibration `cal`.
fn chip(cal: &Calibration, volts: f64, amps: f64) -> MemoryBus {
    let mut bus = MemoryBus::new();
    bus.set_i2c_register(ADDR, reg::MANUFACTURER_ID, MANUFACTURER_ID);
    bus.set_i2c_register(ADDR, reg::CONFIGURATION, 0x4127);
    bus.set_i2c_register(ADDR, reg::CALIBRATION, 0);
    bus.set_i2c_register(ADDR, reg::MASK_ENABLE, 0);
    bus.set_i2c_register(
        ADDR,
        reg::BUS_VOLTAGE,
        (volts / BUS_VOLTAGE_LSB_V).round() as u16,
    );
    let current_raw = (amps / cal.current_lsb_a).round() as i16;
    bus.set_i2c_register(ADDR, reg::CURRENT, current_raw as u16);
    let power = (volts * amps).abs() / (25.0 * cal.current_lsb_a);
    bus.set_i2c_register(ADDR, reg::POWER, power.round() as u16);
    bus
}

fn close(a: Option<f64>, b: f64, tolerance: f64) -> bool {
    a.is_some_and(|a| (a - b).abs() <= tolerance)
}

#[test]
fn calibration_follows_the_datasheet() {
    let c = Calibration::new(0.002, 20.0, 16, 1100).unwrap();
    // Current_LSB = 20 / 2^15 = 610.35 µA; CAL = trunc(0.00512 / (LSB × 0.002)) = 4194.
    assert_eq!(c.cal, 4194);
    assert!((c.current_lsb_a - 0.00512 / (4194.0 * 0.002)).abs() < 1e-15);
    // AVG 16 = 0b010, both conversion times 1.1 ms = 0b100, shunt and bus continuous.
    assert_eq!(
        c.config,
        0x4000 | (0b010 << 9) | (0b100 << 6) | (0b100 << 3) | 0b111
    );
    assert_eq!(
        Calibration::new(0.002, 20.0, 1, 1100).unwrap().config,
        0x4127
    );
}

#[test]
fn configures_then_measures() {
    let mut d = driver(OPTIONS);
    let mut bus = chip(&d.calibration, 25.6, 10.0); // a 24 V battery: VBUS is 0..36 V
    let r = d.poll(&mut bus).unwrap();
    assert_eq!(bus.i2c_register(ADDR, reg::CALIBRATION), Some(4194));
    assert_eq!(
        bus.i2c_register(ADDR, reg::CONFIGURATION),
        Some(d.calibration.config)
    );
    let lsb = d.calibration.current_lsb_a;
    assert!(close(r.battery_voltage_v, 25.6, BUS_VOLTAGE_LSB_V));
    assert!(close(r.battery_current_a, 10.0, lsb));
    assert!(close(r.battery_power_w, 256.0, 25.0 * lsb));
    assert_eq!(bus.logs().len(), 1);

    // Configured chips are not reprogrammed.
    bus.clear_transactions();
    d.poll(&mut bus).unwrap();
    assert!(
        bus.transactions()
            .iter()
            .all(|t| !matches!(t, ems_driver_sdk::Request::I2cWrite { .. }))
    );
    assert_eq!(bus.logs().len(), 1);
}

#[test]
fn a_divider_scales_voltage_and_power_and_over_range_is_unknown() {
    // A 51.2 V battery through a 2:1 divider: 25.6 V at VBUS.
    let mut d = driver(&format!("{OPTIONS}\nvoltage_divider = 2.0"));
    let mut bus = chip(&d.calibration, 25.6, 10.0);
    let r = d.poll(&mut bus).unwrap();
    let lsb = d.calibration.current_lsb_a;
    assert!(close(r.battery_voltage_v, 51.2, 2.0 * BUS_VOLTAGE_LSB_V));
    assert!(close(r.battery_current_a, 10.0, lsb));
    assert!(close(r.battery_power_w, 512.0, 2.0 * 25.0 * lsb));

    // Wired without a divider, the register saturates at 40.96 V: not a measurement.
    let mut d = driver(OPTIONS);
    let mut bus = chip(&d.calibration, 25.6, 10.0);
    bus.set_i2c_register(ADDR, reg::BUS_VOLTAGE, 0x7FFF);
    let r = d.poll(&mut bus).unwrap();
    assert_eq!(r.battery_voltage_v, None);
    assert_eq!(r.battery_power_w, None);
    assert!(close(r.battery_current_a, 10.0, lsb));
    d.poll(&mut bus).unwrap();
    let warnings = |bus: &MemoryBus| {
        bus.logs()
            .iter()
            .filter(|(level, _)| *level == LogLevel::Warn)
            .count()
    };
    assert_eq!(warnings(&bus), 1, "logged once per episode");
    bus.set_i2c_register(ADDR, reg::BUS_VOLTAGE, 20_000); // 25 V
    assert!(close(
        d.poll(&mut bus).unwrap().battery_voltage_v,
        25.0,
        1e-9
    ));
    assert_eq!(warnings(&bus), 2, "and once when it is back");

    for bad in ["0.5", "-2.0", "nan"] {
        let options: toml::Table =
            toml::from_str(&format!("{OPTIONS}\nvoltage_divider = {bad}")).unwrap();
        let address = DeviceAddress {
            modbus_unit: None,
            i2c_address: Some(ADDR),
        };
        let err = Ina226::new(&options, address).unwrap_err();
        assert_eq!(err.key, "voltage_divider", "{bad}");
    }
}

#[test]
fn discharge_is_negative_and_invert_flips() {
    let mut d = driver(OPTIONS);
    let mut bus = chip(&d.calibration, 25.0, -5.0);
    let r = d.poll(&mut bus).unwrap();
    assert!(close(r.battery_current_a, -5.0, 1e-3));
    assert!(close(r.battery_power_w, -125.0, 0.02));

    let mut d = driver(&format!("{OPTIONS}\ninvert = true"));
    let r = d.poll(&mut bus).unwrap();
    assert!(close(r.battery_current_a, 5.0, 1e-3));
    assert!(close(r.battery_power_w, 125.0, 0.02));
}

#[test]
fn a_reset_chip_is_reprogrammed() {
    let mut d = driver(OPTIONS);
    let mut bus = chip(&d.calibration, 12.0, 1.0);
    d.poll(&mut bus).unwrap();
    bus.set_i2c_register(ADDR, reg::CALIBRATION, 0); // power-on reset
    d.poll(&mut bus).unwrap();
    assert_eq!(bus.i2c_register(ADDR, reg::CALIBRATION), Some(4194));
    assert_eq!(bus.logs().len(), 2);
}

#[test]
fn overflow_raises_overcurrent_and_hides_current() {
    let mut d = driver(OPTIONS);
    let mut bus = chip(&d.calibration, 12.0, 1.0);
    bus.set_i2c_register(ADDR, reg::MASK_ENABLE, OVF);
    let r = d.poll(&mut bus).unwrap();
    assert_eq!(r.battery_current_a, None);
    assert_eq!(r.battery_power_w, None);
    assert!(close(r.battery_voltage_v, 12.0, 1e-3));
    assert_eq!(r.flags, vec![Flag::Overcurrent]);
}

#[test]
fn nack_and_wrong_chip_are_errors() {
    let mut d = driver(OPTIONS);
    let mut bus = chip(&d.calibration, 12.0, 1.0);
    bus.fail_i2c(ADDR, Some(BusError::Nack));
    let err = d.poll(&mut bus).unwrap_err();
    assert!(
        matches!(
            err,
            DriverError::Bus {
                source: BusError::Nack,
                ..
            }
        ),
        "{err}"
    );

    bus.fail_i2c(ADDR, None);
    bus.set_i2c_register(ADDR, reg::MANUFACTURER_ID, 0x1234);
    let err = d.poll(&mut bus).unwrap_err();
    assert!(
        matches!(&err, DriverError::Device(m) if m.contains("0x1234")),
        "{err}"
    );
}

#[test]
fn options_are_checked() {
    let t = |s: &str| toml::from_str::<toml::Table>(s).unwrap();
    let at = DeviceAddress {
        modbus_unit: None,
        i2c_address: Some(ADDR),
    };
    let key = |s: &str, address| Ina226::new(&t(s), address).unwrap_err().key;
    assert_eq!(key("max_current_a = 1.0", at), "shunt_ohms");
    assert_eq!(
        key("shunt_ohms = 0.1\nmax_current_a = 10.0", at),
        "max_current_a"
    );
    assert_eq!(
        key("shunt_ohms = 0.1\nmax_current_a = 0.0001", at),
        "max_current_a"
    );
    assert_eq!(key(&format!("{OPTIONS}\naverages = 3"), at), "averages");
    assert_eq!(key(&format!("{OPTIONS}\naverages = -4"), at), "averages");
    assert_eq!(
        key(&format!("{OPTIONS}\nconversion_time_us = 1000"), at),
        "conversion_time_us"
    );
    assert_eq!(key(OPTIONS, DeviceAddress::default()), "i2c_address");
    assert_eq!(key(&format!("{OPTIONS}\nshunt = 1"), at), "shunt");
}
