//! Proves each real driver works when loaded as a plugin: options cross as TOML, I2C and Modbus
//! transactions go through the host's bus callbacks, log lines reach the host, and setpoints and
//! alarm resets arrive as register writes.

use ems_driver_sdk::host::Plugin;
use ems_driver_sdk::{DeviceAddress, Flag, LogLevel, MemoryBus};
use ems_driver_tests::{options, plugin_file};

fn modbus(unit: u8) -> DeviceAddress {
    DeviceAddress {
        modbus_unit: Some(unit),
        i2c_address: None,
    }
}

#[test]
fn ina226_over_i2c() {
    let plugin = Plugin::open(plugin_file("ina226")).unwrap();
    let address = DeviceAddress {
        modbus_unit: None,
        i2c_address: Some(0x41),
    };
    let mut meter = plugin
        .instantiate(
            &options("shunt_ohms = 0.001\nmax_current_a = 50.0"),
            address,
        )
        .unwrap();
    let mut bus = MemoryBus::new();
    bus.set_i2c_register(0x41, 0xFE, 0x5449);
    bus.set_i2c_register(0x41, 0x05, 0);
    bus.set_i2c_register(0x41, 0x06, 0);
    bus.set_i2c_register(0x41, 0x02, 10240); // 12.8 V
    bus.set_i2c_register(0x41, 0x04, (-6554i16) as u16);
    bus.set_i2c_register(0x41, 0x03, 1000);
    let r = meter.poll(&mut bus).unwrap();
    // CAL = trunc(0.00512 / (50/32768 × 0.001)) = 3355.
    assert_eq!(bus.i2c_register(0x41, 0x05), Some(3355));
    let lsb = 0.00512 / (3355.0 * 0.001);
    assert_eq!(r.battery_voltage_v, Some(10240.0 * 1.25e-3));
    assert_eq!(r.battery_current_a, Some(-6554.0 * lsb));
    assert_eq!(r.battery_power_w, Some(-1000.0 * 25.0 * lsb));
    assert_eq!(bus.logs()[0].0, LogLevel::Info);

    // A Modbus-only bus refuses I2C: the driver sees Unsupported, not a crash.
    let mut modbus_only = MemoryBus::new();
    modbus_only.set_holding(1, 0, &[0]);
    let err = meter.poll(&mut modbus_only).unwrap_err();
    assert!(
        err.to_string().contains("not supported on this bus"),
        "{err}"
    );
}

/// Marker at 40000, storage model 124 and battery model 802, end.
fn sunspec_battery(unit: u8) -> MemoryBus {
    let mut bus = MemoryBus::new();
    bus.set_holding(unit, 40000, &[0x5375, 0x6E53, 124, 24]);
    let mut storage = vec![0xFFFF; 24];
    storage[0] = 3000; // WChaMax
    storage[16] = 0; // WChaMax_SF
    storage[3] = 0; // StorCtl_Mod
    storage[10] = 0; // OutWRte
    storage[11] = 0; // InWRte
    storage[13] = 0; // InOutWRte_RvrtTms
    storage[23] = 0; // InOutWRte_SF
    bus.set_holding(unit, 40004, &storage);
    bus.set_holding(unit, 40028, &[802, 62]);
    let mut battery = vec![0xFFFF; 62];
    battery[9] = 42; // SoC
    battery[54] = 0; // SoC_SF
    battery[18] = 0; // AlmRst
    battery[24] = 0; // Evt1 high
    battery[25] = 1 << 9; // Evt1 low: OVER_VOLT_ALARM
    battery[45] = 750; // W, SunSpec + = discharging
    battery[61] = 0; // W_SF
    bus.set_holding(unit, 40030, &battery);
    bus.set_holding(unit, 40092, &[0xFFFF, 0]);
    bus
}

#[test]
fn sunspec_battery_reads_sets_and_resets() {
    let plugin = Plugin::open(plugin_file("sunspec")).unwrap();
    let mut battery = plugin
        .instantiate(&options("revert_timeout_s = 15"), modbus(2))
        .unwrap();
    let mut bus = sunspec_battery(2);
    let r = battery.poll(&mut bus).unwrap();
    assert_eq!(r.battery_soc_pct, Some(42.0));
    assert_eq!(
        r.battery_power_w,
        Some(-750.0),
        "discharging is negative in ems"
    );
    assert!(r.flags.contains(&Flag::Overvoltage));
    assert!(r.flags.contains(&Flag::BmsAlarm));
    assert!(
        bus.logs()[0].1.contains("models [124, 802]"),
        "{:?}",
        bus.logs()
    );

    battery.set_battery_power(&mut bus, -1500.0).unwrap(); // discharge at 50 % of 3000 W
    assert_eq!(bus.holding(2, 40004 + 13), Some(15));
    assert_eq!(bus.holding(2, 40004 + 10), Some(50));
    assert_eq!(bus.holding(2, 40004 + 11), Some((-50i16) as u16));
    assert_eq!(bus.holding(2, 40004 + 3), Some(3));

    battery.reset_alarms(&mut bus).unwrap();
    assert_eq!(bus.holding(2, 40030 + 18), Some(1));

    let err = battery.set_battery_power(&mut bus, f64::NAN).unwrap_err();
    assert!(err.to_string().contains("not a finite number"), "{err}");
}

#[test]
fn modbus_map_with_an_inline_map() {
    let plugin = Plugin::open(plugin_file("modbus-map")).unwrap();
    let inline = options(
        r#"
        [[reading]]
        name = "battery_soc_pct"
        function = "input"
        address = 10
        type = "u16"
        scale = 0.5

        [battery_power]
        address = 20
        type = "i16"
        "#,
    );
    let mut bms = plugin.instantiate(&inline, modbus(3)).unwrap();
    let mut bus = MemoryBus::new();
    bus.set_input(3, 10, &[150]);
    bus.set_holding(3, 20, &[0]);
    assert_eq!(bms.poll(&mut bus).unwrap().battery_soc_pct, Some(75.0));
    bms.set_battery_power(&mut bus, -250.0).unwrap();
    assert_eq!(bus.holding(3, 20), Some((-250i16) as u16));
}
