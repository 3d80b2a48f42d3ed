//! Proves the declarative `modbus-map` driver, given the shipped `config/devices/sdm630.toml`,
//! reads an SDM630 exactly as the dedicated `sdm630` driver does: same readings, same single
//! transaction, from the same simulated meter, both loaded as real plugins.

use std::path::PathBuf;

use ems_driver_sdk::host::{DriverInstance, Plugin};
use ems_driver_sdk::regs::{WordOrder, f32_to};
use ems_driver_sdk::{DeviceAddress, MemoryBus};
use ems_driver_tests::{options, plugin_file};

const UNIT: u8 = 1;
const ADDRESS: DeviceAddress = DeviceAddress {
    modbus_unit: Some(UNIT),
    i2c_address: None,
};

/// An SDM630 per Eastron's published input-register map: float32, high word first.
fn meter(values: &[(u16, f32)]) -> MemoryBus {
    let mut bus = MemoryBus::new();
    bus.set_input(UNIT, 0, &[0; 0x50]);
    for (addr, x) in values {
        bus.set_input(UNIT, *addr, &f32_to(*x, WordOrder::HighFirst));
    }
    bus
}

const SITE: &[(u16, f32)] = &[
    (0x0000, 231.7),
    (0x0002, 229.4),
    (0x0004, 230.9),
    (0x0006, 12.25),
    (0x0008, 3.5),
    (0x000A, 0.75),
    (0x000C, 2830.0),
    (0x000E, -805.5),
    (0x0010, 170.25),
    (0x002A, 230.67),
    (0x0034, 2194.75),
    (0x0046, 49.98),
    (0x0048, 18234.5),
    (0x004A, 4021.125),
];

fn map_file() -> PathBuf {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../config/devices/sdm630.toml");
    assert!(path.is_file(), "{} is missing", path.display());
    path
}

fn both() -> (DriverInstance, DriverInstance) {
    let dedicated = Plugin::open(plugin_file("sdm630"))
        .unwrap()
        .instantiate(&options(""), ADDRESS)
        .unwrap();
    let map_options = options(&format!("map = {:?}", map_file().display().to_string()));
    let declarative = Plugin::open(plugin_file("modbus-map"))
        .unwrap()
        .instantiate(&map_options, ADDRESS)
        .unwrap();
    (dedicated, declarative)
}

#[test]
fn same_readings_in_the_same_single_transaction() {
    let (mut dedicated, mut declarative) = both();
    let (mut bus_a, mut bus_b) = (meter(SITE), meter(SITE));
    let a = dedicated.poll(&mut bus_a).unwrap();
    let b = declarative.poll(&mut bus_b).unwrap();
    assert_eq!(a, b);
    assert_eq!(bus_a.transactions(), bus_b.transactions());
    assert_eq!(bus_a.transactions().len(), 1);
    // And the readings are the meter's, not two equal mistakes.
    assert_eq!(a.grid_power_w, Some(f64::from(2194.75f32)));
    assert_eq!(a.grid_phase_power_w[1], Some(f64::from(-805.5f32)));
    assert_eq!(a.grid_export_energy_kwh, Some(f64::from(4021.125f32)));
}

#[test]
fn both_leave_nan_absent() {
    let (mut dedicated, mut declarative) = both();
    let broken = [(0x0008, f32::NAN), (0x0046, f32::NAN)];
    let a = dedicated.poll(&mut meter(&broken)).unwrap();
    let b = declarative.poll(&mut meter(&broken)).unwrap();
    assert_eq!(a, b);
    assert_eq!(a.grid_phase_current_a[1], None);
    assert_eq!(a.grid_frequency_hz, None);
}
