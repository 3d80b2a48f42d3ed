//! Proves a driver that panics cannot take the host down: the panic is caught inside the plugin,
//! reported once, and the instance refuses every later call, while other instances keep working.

use ems_driver_sdk::host::{HostError, Plugin};
use ems_driver_sdk::{DeviceAddress, LogLevel, MemoryBus};
use ems_driver_tests::{options, plugin_file};

const UNIT_7: DeviceAddress = DeviceAddress {
    modbus_unit: Some(7),
    i2c_address: None,
};

#[test]
fn a_panic_in_poll_poisons_only_that_instance() {
    let plugin = Plugin::open(plugin_file("test-panicky")).unwrap();
    let mut bus = MemoryBus::new();
    bus.set_holding(7, 0, &[0]);

    let mut first = plugin.instantiate(&options(""), UNIT_7).unwrap();
    let mut second = plugin.instantiate(&options(""), UNIT_7).unwrap();

    // Before the panic the instance works, through the host's bus.
    first.set_battery_power(&mut bus, -300.0).unwrap();
    assert_eq!(bus.holding(7, 0), Some((-300i16) as u16));

    let err = first.poll(&mut bus).unwrap_err();
    let HostError::Panicked { driver, message } = &err else {
        panic!("expected Panicked, got {err}")
    };
    assert_eq!(driver, "test-panicky");
    assert!(message.contains("panics in poll on purpose"), "{message}");
    assert!(first.is_poisoned());
    // The log line written just before the panic reached the host.
    assert_eq!(
        bus.logs(),
        &[(
            LogLevel::Warn,
            "test-panicky: about to panic in poll".to_string()
        )]
    );

    // From now on every call on it fails without running driver code.
    let err = first.set_battery_power(&mut bus, 100.0).unwrap_err();
    assert!(matches!(err, HostError::Poisoned { .. }), "{err}");
    let err = first.poll(&mut bus).unwrap_err();
    assert!(err.to_string().contains("poisoned"), "{err}");
    assert_eq!(bus.holding(7, 0), Some((-300i16) as u16));

    // The other instance of the same plugin is unaffected.
    second.set_battery_power(&mut bus, 500.0).unwrap();
    assert_eq!(bus.holding(7, 0), Some(500));
    drop(first);
    drop(second);
}

#[test]
fn bus_errors_cross_the_abi_intact() {
    let plugin = Plugin::open(plugin_file("test-panicky")).unwrap();
    let mut instance = plugin.instantiate(&options(""), UNIT_7).unwrap();
    let mut bus = MemoryBus::new();
    bus.set_holding(7, 0, &[0]);
    bus.fail(7, 0..=0, ems_driver_sdk::BusError::Exception(4));
    let err = instance.set_battery_power(&mut bus, 1.0).unwrap_err();
    assert!(
        matches!(
            &err,
            HostError::Driver {
                source: ems_driver_sdk::DriverError::Bus {
                    source: ems_driver_sdk::BusError::Exception(4),
                    ..
                },
                ..
            }
        ),
        "{err}"
    );
    assert!(!instance.is_poisoned());
}
