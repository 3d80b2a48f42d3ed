//! Unit tests: the shipped SDM630 map on the published SDM630 register layout, and a BMS-style
//! inline map exercising every type, word order, sentinel, flag and write.

use ems_driver_sdk::regs::{ascii_to, f32_to};
use ems_driver_sdk::{BusError, Flag, MemoryBus, Request};

use super::*;

mod devices;

const UNIT: u8 = 9;
const SDM630_MAP: &str = include_str!("../../../config/devices/sdm630.toml");

fn unit() -> DeviceAddress {
    DeviceAddress {
        modbus_unit: Some(UNIT),
        i2c_address: None,
    }
}

fn driver(options: &str) -> ModbusMap {
    ModbusMap::new(&toml::from_str(options).unwrap(), unit()).unwrap()
}

fn close(a: Option<f64>, b: f64) -> bool {
    a.is_some_and(|a| (a - b).abs() < 1e-6)
}

#[test]
fn the_sdm630_map_reads_the_meter_in_one_transaction() {
    let mut bus = MemoryBus::new();
    bus.set_input(UNIT, 0, &[0; 0x50]);
    for (addr, x) in [
        (0x0000, 230.5f32),
        (0x000E, -120.0),
        (0x0034, 2000.0),
        (0x004A, 7.5),
    ] {
        bus.set_input(UNIT, addr, &f32_to(x, WordOrder::HighFirst));
    }
    let mut d = ModbusMap::with_map(UNIT, Map::from_toml(SDM630_MAP).unwrap());
    let r = d.poll(&mut bus).unwrap();
    assert_eq!(
        bus.transactions(),
        &[Request::ReadInput {
            unit: UNIT,
            addr: 0,
            count: 0x4C
        }]
    );
    assert!(close(r.grid_phase_voltage_v[0], 230.5));
    assert!(close(r.grid_phase_power_w[1], -120.0));
    assert!(close(r.grid_power_w, 2000.0));
    assert!(close(r.grid_export_energy_kwh, 7.5));
    assert_eq!(r.grid_frequency_hz, Some(0.0));
    assert_eq!(r.battery_soc_pct, None);
}

/// A made-up BMS: holding registers 100.. (state, values) and 200.. (text, alarms).
const BMS: &str = r#"
[read]
max_gap = 0

[[reading]]
name = "battery_soc_pct"
function = "holding"
address = 100
type = "u16"
scale = 0.1

[[reading]]
name = "battery_current_a"
function = "holding"
address = 101
type = "i16"
scale = -0.01            # this BMS counts discharge positive, in 10 mA
not_implemented = 0x8000

[[reading]]
name = "grid_import_energy_kwh"
function = "holding"
address = 102
type = "u32"
word_order = "low_first"
scale = 0.001

[[reading]]
name = "battery_power_w"
function = "holding"
address = 104
type = "i32"

[[reading]]
name = "battery_temperature_c"
function = "holding"
address = 106
type = "i16"
scale = 0.1
offset = -40.0

[[reading]]
name = "battery_voltage_v"
function = "holding"
address = 107
type = "f32"

[[reading]]
name = "inverter_state"
function = "holding"
address = 200
type = "string"
count = 4

[[flag]]
function = "holding"
address = 204
bit = 0
flag = "overheat"

[[flag]]
function = "holding"
address = 204
bit = 5
flag = "FAN_FAULT"

[battery_power]
address = 300
type = "i16"
scale = -1.0
before = [{ address = 301, value = 1 }]

[reset_alarms]
writes = [{ address = 302, value = 0xA5 }]
"#;

fn bms_bus() -> MemoryBus {
    let mut bus = MemoryBus::new();
    bus.set_holding(
        UNIT,
        100,
        &[655, (-1234i16) as u16, 0x5678, 0x0001, 0xFFFF, 0xFF38],
    );
    bus.set_holding(UNIT, 106, &[650]);
    bus.set_holding(UNIT, 107, &f32_to(51.25, WordOrder::HighFirst));
    bus.set_holding(UNIT, 200, &ascii_to("RUN", 4));
    bus.set_holding(UNIT, 204, &[0b10_0001]);
    bus.set_holding(UNIT, 300, &[0, 0, 0]);
    bus
}

#[test]
fn every_type_word_order_and_scale() {
    let mut bus = bms_bus();
    let mut d = driver(BMS);
    let r = d.poll(&mut bus).unwrap();
    assert!(close(r.battery_soc_pct, 65.5));
    assert!(close(r.battery_current_a, 12.34), "sign inverted by scale");
    assert!(close(
        r.grid_import_energy_kwh,
        f64::from(0x0001_5678u32) * 0.001
    ));
    assert!(close(r.battery_power_w, -200.0));
    assert!(close(r.battery_temperature_c, 25.0));
    assert!(close(r.battery_voltage_v, 51.25));
    assert_eq!(r.inverter_state.as_deref(), Some("RUN"));
    assert_eq!(
        r.flags,
        vec![Flag::Overheat, Flag::Other("FAN_FAULT".into())]
    );
    // max_gap = 0: 100..109 is one read, 200..205 another.
    assert_eq!(bus.transactions().len(), 2);
}

#[test]
fn gaps_merge_only_as_far_as_allowed() {
    let mut bus = bms_bus();
    bus.set_holding(UNIT, 109, &[0; 91]);
    let mut d = driver(&BMS.replace("max_gap = 0", "max_gap = 91"));
    d.poll(&mut bus).unwrap();
    assert_eq!(
        bus.transactions(),
        &[Request::ReadHolding {
            unit: UNIT,
            addr: 100,
            count: 105
        }]
    );
}

#[test]
fn sentinels_and_nan_are_absent() {
    let mut bus = bms_bus();
    bus.set_holding(UNIT, 101, &[0x8000]);
    bus.set_holding(UNIT, 107, &f32_to(f32::NAN, WordOrder::HighFirst));
    let r = driver(BMS).poll(&mut bus).unwrap();
    assert_eq!(r.battery_current_a, None);
    assert_eq!(r.battery_voltage_v, None);
    assert!(close(r.battery_soc_pct, 65.5));
}

#[test]
fn integer_states_are_named() {
    let map = r#"
        [[reading]]
        name = "inverter_state"
        function = "input"
        address = 5
        type = "u16"
        states = { 1 = "OFF", 4 = "MPPT" }
    "#;
    let mut bus = MemoryBus::new();
    bus.set_input(UNIT, 5, &[4]);
    assert_eq!(
        driver(map)
            .poll(&mut bus)
            .unwrap()
            .inverter_state
            .as_deref(),
        Some("MPPT")
    );
    bus.set_input(UNIT, 5, &[9]);
    assert_eq!(
        driver(map)
            .poll(&mut bus)
            .unwrap()
            .inverter_state
            .as_deref(),
        Some("UNKNOWN(9)")
    );
}

#[test]
fn a_refused_read_leaves_its_readings_absent_and_transport_errors_fail() {
    let mut bus = bms_bus();
    bus.fail(UNIT, 200..=204, BusError::Exception(2));
    let r = driver(BMS).poll(&mut bus).unwrap();
    assert_eq!(r.inverter_state, None);
    assert!(r.flags.is_empty());
    assert!(close(r.battery_soc_pct, 65.5));
    assert_eq!(bus.logs().len(), 1);

    bus.clear_faults(UNIT);
    bus.fail(UNIT, 100..=100, BusError::Timeout);
    let err = driver(BMS).poll(&mut bus).unwrap_err();
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

    bus.clear_faults(UNIT);
    bus.short_answers(UNIT, 1);
    let err = driver(BMS).poll(&mut bus).unwrap_err();
    assert!(matches!(err, DriverError::ShortAnswer { .. }), "{err}");
}

#[test]
fn setpoints_and_resets_write_what_the_map_says() {
    let mut bus = bms_bus();
    let mut d = driver(BMS);
    d.set_battery_power(&mut bus, 1500.0).unwrap();
    assert_eq!(bus.holding(UNIT, 301), Some(1));
    assert_eq!(bus.holding(UNIT, 300), Some((-1500i16) as u16));
    let err = d.set_battery_power(&mut bus, 40000.0).unwrap_err();
    assert!(matches!(err, DriverError::InvalidSetpoint(_)), "{err}");
    d.reset_alarms(&mut bus).unwrap();
    assert_eq!(bus.holding(UNIT, 302), Some(0xA5));

    let map = BMS
        .replace(
            "type = \"i16\"\nscale = -1.0",
            "type = \"i32\"\nword_order = \"low_first\"",
        )
        .replace(
            "[reset_alarms]\nwrites = [{ address = 302, value = 0xA5 }]",
            "",
        );
    let mut d = driver(&map);
    d.set_battery_power(&mut bus, -70000.0).unwrap();
    let raw = (-70000i32) as u32;
    assert_eq!(bus.holding(UNIT, 300), Some(raw as u16));
    assert_eq!(bus.holding(UNIT, 301), Some((raw >> 16) as u16));
    let err = d.reset_alarms(&mut bus).unwrap_err();
    assert!(matches!(err, DriverError::Unsupported(_)), "{err}");

    let err = driver(SDM630_MAP)
        .set_battery_power(&mut bus, 1.0)
        .unwrap_err();
    assert!(matches!(err, DriverError::Unsupported(_)), "{err}");
}

#[test]
fn map_files_and_option_errors() {
    let dir = std::env::temp_dir().join(format!("ems-modbus-map-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("bms.toml");
    std::fs::write(&path, BMS).unwrap();
    let options = format!("map = {:?}\nmax_gap = 200", path.display().to_string());
    let d = driver(&options);
    assert_eq!(d.map.max_gap, 200);

    let t = |s: &str| toml::from_str::<toml::Table>(s).unwrap();
    let err = ModbusMap::new(&t(&format!("{options}\nextra = 1")), unit()).unwrap_err();
    assert_eq!(err.key, "extra");
    let err = ModbusMap::new(&t("map = \"/nonexistent/x.toml\""), unit()).unwrap_err();
    assert_eq!(err.key, "map");
    std::fs::write(&path, BMS.replace("type = \"f32\"", "type = \"f64\"")).unwrap();
    let err = ModbusMap::new(&t(&options), unit()).unwrap_err();
    assert_eq!(err.key, "map");
    assert!(err.reason.contains("reading[5].type"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();

    let err = ModbusMap::new(&t("[[reading]]\nname = 1"), unit()).unwrap_err();
    assert_eq!(err.key, "reading[0].name");
    let err = ModbusMap::new(&t(""), DeviceAddress::default()).unwrap_err();
    assert_eq!(err.key, "modbus_unit");
}

/// The single-register writes of `bus` since it was last cleared, as (address, value).
fn writes(bus: &MemoryBus) -> Vec<(u16, u16)> {
    bus.transactions()
        .iter()
        .filter_map(|r| match r {
            Request::WriteSingle { addr, value, .. } => Some((*addr, *value)),
            _ => None,
        })
        .collect()
}

#[test]
fn on_change_writes_an_eeprom_register_only_when_it_must() {
    let map = BMS.replace(
        "before = [{ address = 301, value = 1 }]",
        "before = [{ address = 301, value = 1 }]\nwrite = \"on_change\"\nmin_interval_s = 60\nrefresh_s = 300",
    );
    let mut bus = bms_bus();
    let mut d = driver(&map);
    let t0 = Instant::now();
    let at = |s: u64| t0 + Duration::from_secs(s);

    // The first write: the mode register once, then the setpoint.
    d.set_battery_power_at(&mut bus, 1500.0, at(0)).unwrap();
    assert_eq!(writes(&bus), [(301, 1), (300, (-1500i16) as u16)]);
    bus.clear_transactions();
    // The same value every second for a minute: nothing written.
    for s in 1..=60 {
        d.set_battery_power_at(&mut bus, 1500.0, at(s)).unwrap();
    }
    assert_eq!(writes(&bus), []);
    // A change 30 s after the last write waits for min_interval_s …
    d.set_battery_power_at(&mut bus, 1000.0, at(30)).unwrap();
    assert_eq!(writes(&bus), []);
    // … and is written once it has passed, without the mode register again.
    d.set_battery_power_at(&mut bus, 1000.0, at(61)).unwrap();
    assert_eq!(writes(&bus), [(300, (-1000i16) as u16)]);
    bus.clear_transactions();
    // 0 W, the safe value, is written at once whatever the interval.
    d.set_battery_power_at(&mut bus, 0.0, at(62)).unwrap();
    assert_eq!(writes(&bus), [(300, 0)]);
    bus.clear_transactions();
    // An unchanged value is written again after refresh_s.
    d.set_battery_power_at(&mut bus, 0.0, at(62 + 299)).unwrap();
    assert_eq!(writes(&bus), []);
    d.set_battery_power_at(&mut bus, 0.0, at(62 + 300)).unwrap();
    assert_eq!(writes(&bus), [(300, 0)]);
    bus.clear_transactions();

    // A failed write forgets what was written: the next call writes the mode and the value.
    bus.fail(UNIT, 300..=300, BusError::Timeout);
    assert!(d.set_battery_power_at(&mut bus, 500.0, at(500)).is_err());
    bus.clear_faults(UNIT);
    bus.clear_transactions();
    d.set_battery_power_at(&mut bus, 500.0, at(501)).unwrap();
    assert_eq!(writes(&bus), [(301, 1), (300, (-500i16) as u16)]);

    // "always" (the default) writes every call, the mode register too.
    let mut d = driver(BMS);
    bus.clear_transactions();
    d.set_battery_power_at(&mut bus, 1500.0, at(0)).unwrap();
    d.set_battery_power_at(&mut bus, 1500.0, at(1)).unwrap();
    assert_eq!(writes(&bus).len(), 4);
}

#[test]
fn write_policy_keys_are_checked() {
    for (keys, field) in [
        ("min_interval_s = 10", "battery_power.min_interval_s"),
        (
            "write = \"on_change\"\nrefresh_s = -1",
            "battery_power.refresh_s",
        ),
        ("write = \"sometimes\"", "battery_power.write"),
    ] {
        let map = BMS.replace(
            "before = [{ address = 301, value = 1 }]",
            &format!("before = [{{ address = 301, value = 1 }}]\n{keys}"),
        );
        let err = ModbusMap::new(&toml::from_str(&map).unwrap(), unit()).unwrap_err();
        assert!(err.to_string().contains(field), "{keys}: {err}");
    }
}

#[test]
fn bit_fields_are_read_as_unsigned_numbers_and_named() {
    // Register 500: bits 0-3 a SoC in 10 % steps (7 = 70 %), bits 4-7 a work mode (2 = "GRID"),
    // bit 15 set (another field). 0xFFFF means "not implemented" for the whole register.
    let map = r#"
[[reading]]
name = "battery_soc_pct"
function = "holding"
address = 500
type = "u16"
bits = [0, 3]
scale = 10.0
not_implemented = 0xFFFF

[[reading]]
name = "inverter_state"
function = "holding"
address = 500
type = "u16"
bits = [4, 7]
states = { 1 = "OFF_GRID", 2 = "GRID" }
"#;
    let mut bus = MemoryBus::new();
    bus.set_holding(UNIT, 500, &[0x8027]);
    let r = driver(map).poll(&mut bus).unwrap();
    assert!(close(r.battery_soc_pct, 70.0), "{:?}", r.battery_soc_pct);
    assert_eq!(r.inverter_state.as_deref(), Some("GRID"));
    bus.set_holding(UNIT, 500, &[0xFFFF]);
    let r = driver(map).poll(&mut bus).unwrap();
    assert_eq!(
        r.battery_soc_pct, None,
        "the sentinel applies to the register"
    );

    for (bits, why) in [("[4, 3]", "range"), ("[0, 16]", "0..=15")] {
        let bad = map.replacen("bits = [0, 3]", &format!("bits = {bits}"), 1);
        let err = ModbusMap::new(&toml::from_str(&bad).unwrap(), unit()).unwrap_err();
        assert!(err.to_string().contains("reading[0].bits"), "{err}");
        assert!(err.to_string().contains(why), "{err}");
    }
    let float = map.replacen(
        "type = \"u16\"\nbits = [0, 3]",
        "type = \"f32\"\nbits = [0, 3]",
        1,
    );
    let err = ModbusMap::new(&toml::from_str(&float).unwrap(), unit()).unwrap_err();
    assert!(err.to_string().contains("integer type"), "{err}");
}

#[test]
fn shipped_maps_say_how_far_they_are_checked() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../config/devices");
    let mut n = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        let map = Map::from_toml(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let file = path.file_name().unwrap().to_str().unwrap();
        devices::no_unexpected_overlaps(file, &map);
        devices::reads_are_minimal(file, &map);
        let table: toml::Table = toml::from_str(&text).unwrap();
        let checked = table["device"].get("checked").and_then(|v| v.as_str());
        assert!(
            matches!(checked, Some("device" | "document")),
            "{}: [device] checked must say \"device\" or \"document\"",
            path.display()
        );
        assert!(
            table["device"].get("source").is_some(),
            "{}",
            path.display()
        );
        n += 1;
    }
    assert!(n >= 1);
    assert_eq!(
        n,
        devices::READS.len(),
        "every shipped map has its hand-counted reads in tests/devices.rs"
    );
    let bad = SDM630_MAP.replace("checked = \"document\"", "checked = \"yes\"");
    let err = Map::from_toml(&bad).unwrap_err();
    assert_eq!(err.key, "device.checked", "{err}");
}

#[test]
fn summed_readings_add_up_and_an_absent_term_makes_the_total_absent() {
    // PV power in two registers (100, 101: W); battery power as a discharge (102) and a charge
    // (103) register, both unsigned in 0.1 W: charge − discharge with scales of opposite sign.
    let map = r#"
[read]
max_gap = 0

[[reading]]
name = "pv_power_w"
function = "input"
address = 100
type = "u16"
sum = true

[[reading]]
name = "pv_power_w"
function = "input"
address = 101
type = "u16"
sum = true
not_implemented = 0xFFFF

[[reading]]
name = "battery_power_w"
function = "input"
address = 102
type = "u16"
scale = -0.1
sum = true

[[reading]]
name = "battery_power_w"
function = "input"
address = 103
type = "u16"
scale = 0.1
sum = true
"#;
    let mut bus = MemoryBus::new();
    bus.set_input(UNIT, 100, &[1200, 800, 0, 15000]);
    let r = driver(map).poll(&mut bus).unwrap();
    assert!(close(r.pv_power_w, 2000.0), "{:?}", r.pv_power_w);
    assert!(close(r.battery_power_w, 1500.0), "{:?}", r.battery_power_w);
    bus.set_input(UNIT, 100, &[1200, 0xFFFF, 4000, 0]);
    let r = driver(map).poll(&mut bus).unwrap();
    assert_eq!(r.pv_power_w, None, "a term not implemented");
    assert!(close(r.battery_power_w, -400.0));

    let mixed = map.replacen("sum = true\n", "", 1);
    let err = ModbusMap::new(&toml::from_str(&mixed).unwrap(), unit()).unwrap_err();
    assert!(err.to_string().contains("every term of a sum"), "{err}");
    let state = "[[reading]]\nname = \"inverter_state\"\nfunction = \"input\"\naddress = 1\n\
                 type = \"u16\"\nstates = { 1 = \"ON\" }\nsum = true";
    let err = ModbusMap::new(&toml::from_str(state).unwrap(), unit()).unwrap_err();
    assert_eq!(err.key, "reading[0].sum");
}

#[test]
fn a_direction_register_gives_a_magnitude_its_sign() {
    // Register 10: battery power magnitude in W; register 12: 0 = charging, 1 = discharging.
    let map = r#"
[read]
max_gap = 1

[[reading]]
name = "battery_power_w"
function = "input"
address = 10
type = "u16"
negate_if = { function = "input", address = 12, equals = 1 }
"#;
    let mut bus = MemoryBus::new();
    bus.set_input(UNIT, 10, &[1500, 0, 0]);
    let mut d = driver(map);
    assert!(close(d.poll(&mut bus).unwrap().battery_power_w, 1500.0));
    assert_eq!(
        bus.transactions(),
        &[Request::ReadInput {
            unit: UNIT,
            addr: 10,
            count: 3
        }],
        "the direction register is read with the value"
    );
    bus.set_input(UNIT, 12, &[1]);
    assert!(close(d.poll(&mut bus).unwrap().battery_power_w, -1500.0));
    // A direction register that cannot be read leaves the value absent: its sign is unknown.
    let far = map.replace("address = 12", "address = 200");
    bus.set_input(UNIT, 200, &[1]);
    bus.fail(UNIT, 200..=200, BusError::Exception(2));
    assert_eq!(driver(&far).poll(&mut bus).unwrap().battery_power_w, None);

    let state = "[[reading]]\nname = \"inverter_state\"\nfunction = \"input\"\naddress = 1\n\
                 type = \"u16\"\nstates = { 1 = \"ON\" }\n\
                 negate_if = { function = \"input\", address = 2, equals = 1 }";
    let err = ModbusMap::new(&toml::from_str(state).unwrap(), unit()).unwrap_err();
    assert_eq!(err.key, "reading[0].negate_if");
}

/// Every write of `bus` since it was last cleared, as (function code, address, values).
fn all_writes(bus: &MemoryBus) -> Vec<(u8, u16, Vec<u16>)> {
    bus.transactions()
        .iter()
        .filter_map(|r| match r {
            Request::WriteSingle { addr, value, .. } => Some((0x06, *addr, vec![*value])),
            Request::WriteMultiple { addr, values, .. } => Some((0x10, *addr, values.clone())),
            _ => None,
        })
        .collect()
}

/// A map with a split setpoint: charge limit at 400, discharge limit at 401, in watts.
fn split_map(keys: &str) -> String {
    BMS.replace(
        "[battery_power]\naddress = 300\ntype = \"i16\"\nscale = -1.0\n",
        &format!("[battery_power]\ncharge_address = 400\ndischarge_address = 401\n{keys}\n"),
    )
}

#[test]
fn a_split_setpoint_writes_one_limit_and_zeroes_the_other() {
    let mut bus = bms_bus();
    bus.set_holding(UNIT, 400, &[9, 9]);
    let mut d = driver(&split_map("type = \"u16\"\nscale = 10.0"));
    // Charge 1500 W: the mode register, the discharge limit to 0 first, then 150 (10 W units).
    d.set_battery_power(&mut bus, 1500.0).unwrap();
    assert_eq!(writes(&bus), [(301, 1), (401, 0), (400, 150)]);
    bus.clear_transactions();
    // Discharge 2000 W: the charge limit to 0 first, then the discharge limit.
    d.set_battery_power(&mut bus, -2000.0).unwrap();
    assert_eq!(writes(&bus), [(301, 1), (400, 0), (401, 200)]);
    bus.clear_transactions();
    // 0 W: both limits 0.
    d.set_battery_power(&mut bus, 0.0).unwrap();
    assert_eq!(writes(&bus), [(301, 1), (400, 0), (401, 0)]);
    assert_eq!(bus.holding(UNIT, 400), Some(0));
    assert_eq!(bus.holding(UNIT, 401), Some(0));
    // Beyond the register's range: refused, nothing written.
    bus.clear_transactions();
    let err = d.set_battery_power(&mut bus, -700_000.0).unwrap_err();
    assert!(matches!(err, DriverError::InvalidSetpoint(_)), "{err}");
    assert_eq!(writes(&bus), []);
}

#[test]
fn a_split_setpoint_in_amperes_uses_the_polled_battery_voltage() {
    let map = split_map(
        "type = \"u16\"\namperes_at_v = 48.0\nwrite_multiple = true\nwrite = \"on_change\"\n\
         min_interval_s = 60",
    );
    let mut bus = bms_bus();
    bus.set_holding(UNIT, 400, &[9, 9]);
    let mut d = driver(&map);
    let t0 = Instant::now();
    let at = |s: u64| t0 + Duration::from_secs(s);
    // Before any poll: the nominal 48 V, 2400 W = 50 A; function 0x10 for every register.
    d.set_battery_power_at(&mut bus, 2400.0, at(0)).unwrap();
    assert_eq!(
        all_writes(&bus),
        [
            (0x10, 301, vec![1]),
            (0x10, 401, vec![0]),
            (0x10, 400, vec![50])
        ]
    );
    bus.clear_transactions();
    // The BMS image's battery voltage is 51.25 V: 2400 W is 46.8 A, rounded to 47; a change
    // within min_interval_s waits …
    d.poll(&mut bus).unwrap();
    bus.clear_transactions();
    d.set_battery_power_at(&mut bus, 2400.0, at(30)).unwrap();
    assert_eq!(all_writes(&bus), []);
    // … and then only the limit that changed is written (the discharge limit is still 0).
    d.set_battery_power_at(&mut bus, 2400.0, at(60)).unwrap();
    assert_eq!(all_writes(&bus), [(0x10, 400, vec![47])]);
    bus.clear_transactions();
    // Discharging 1025 W (20 A) within the interval waits too; 0 W never does.
    d.set_battery_power_at(&mut bus, -1025.0, at(61)).unwrap();
    assert_eq!(all_writes(&bus), []);
    d.set_battery_power_at(&mut bus, 0.0, at(62)).unwrap();
    assert_eq!(all_writes(&bus), [(0x10, 400, vec![0])]);
    bus.clear_transactions();
    d.set_battery_power_at(&mut bus, -1025.0, at(122)).unwrap();
    assert_eq!(all_writes(&bus), [(0x10, 401, vec![20])]);
}

#[test]
fn split_setpoint_keys_are_checked() {
    for (keys, field) in [
        ("type = \"i16\"", "battery_power.type"),
        ("type = \"u16\"\noffset = 5.0", "battery_power.offset"),
        ("type = \"u16\"\nscale = -1.0", "battery_power.scale"),
        (
            "type = \"u16\"\namperes_at_v = 0",
            "battery_power.amperes_at_v",
        ),
        ("type = \"u16\"\naddress = 300", "battery_power.address"),
    ] {
        let err = ModbusMap::new(&toml::from_str(&split_map(keys)).unwrap(), unit()).unwrap_err();
        assert!(err.to_string().contains(field), "{keys}: {err}");
    }
    for (from, to, field) in [
        (
            "discharge_address = 401\n",
            "",
            "battery_power.discharge_address",
        ),
        ("charge_address = 400\n", "", "battery_power.charge_address"),
        (
            "discharge_address = 401",
            "discharge_address = 400",
            "battery_power.discharge_address",
        ),
    ] {
        let map = split_map("type = \"u16\"").replace(from, to);
        let err = ModbusMap::new(&toml::from_str(&map).unwrap(), unit()).unwrap_err();
        assert!(err.to_string().contains(field), "{from}: {err}");
    }
    let map = BMS.replace("scale = -1.0\nbefore", "amperes_at_v = 48.0\nbefore");
    let err = ModbusMap::new(&toml::from_str(&map).unwrap(), unit()).unwrap_err();
    assert!(
        err.to_string().contains("battery_power.amperes_at_v"),
        "{err}"
    );
    let map = BMS.replace("address = 300\ntype = \"i16\"", "type = \"i16\"");
    let err = ModbusMap::new(&toml::from_str(&map).unwrap(), unit()).unwrap_err();
    assert!(err.to_string().contains("battery_power.address"), "{err}");
}

#[test]
fn a_direction_setpoint_writes_the_mode_of_its_sign_and_the_magnitude() {
    let directed = |keys: &str| {
        BMS.replace(
            "[battery_power]\naddress = 300\ntype = \"i16\"\nscale = -1.0\n",
            &format!("[battery_power]\naddress = 300\n{keys}\n"),
        )
    };
    let mut bus = bms_bus();
    bus.set_holding(UNIT, 298, &[9, 9]);
    // The direction register apart from the magnitude: two writes, the direction first.
    let map = directed(
        "type = \"u16\"\ndirection = { address = 298, charge = 11, discharge = 12, idle = 8 }",
    );
    let mut d = driver(&map);
    d.set_battery_power(&mut bus, 1500.0).unwrap();
    assert_eq!(writes(&bus), [(301, 1), (298, 11), (300, 1500)]);
    bus.clear_transactions();
    d.set_battery_power(&mut bus, -2000.0).unwrap();
    assert_eq!(writes(&bus), [(301, 1), (298, 12), (300, 2000)]);
    bus.clear_transactions();
    d.set_battery_power(&mut bus, 0.0).unwrap();
    assert_eq!(writes(&bus), [(301, 1), (298, 8), (300, 0)]);

    // Just before the magnitude: one write of both, here a u32 magnitude in 10 W units.
    let map = directed(
        "type = \"u32\"\nscale = 10.0\ndirection = { address = 299, charge = 1, discharge = 2, \
         idle = 0 }\nwrite = \"on_change\"\nmin_interval_s = 60",
    );
    let mut d = driver(&map);
    let t0 = Instant::now();
    let at = |s: u64| t0 + Duration::from_secs(s);
    bus.clear_transactions();
    d.set_battery_power_at(&mut bus, -700_000.0, at(0)).unwrap();
    assert_eq!(
        all_writes(&bus),
        [(0x06, 301, vec![1]), (0x10, 299, vec![2, 1, 4464])]
    );
    bus.clear_transactions();
    // A change within min_interval_s waits, 0 W does not.
    d.set_battery_power_at(&mut bus, 3000.0, at(30)).unwrap();
    assert_eq!(all_writes(&bus), []);
    d.set_battery_power_at(&mut bus, 0.0, at(31)).unwrap();
    assert_eq!(all_writes(&bus), [(0x10, 299, vec![0, 0, 0])]);

    for (keys, field) in [
        (
            "type = \"i16\"\ndirection = { address = 298, charge = 1, discharge = 2, idle = 0 }",
            "battery_power.type",
        ),
        (
            "type = \"u32\"\ndirection = { address = 301, charge = 1, discharge = 2, idle = 0 }",
            "battery_power.direction",
        ),
        (
            "type = \"u16\"\ndirection = { address = 298, charge = 1, discharge = 2 }",
            "battery_power.direction",
        ),
    ] {
        let err = ModbusMap::new(&toml::from_str(&directed(keys)).unwrap(), unit()).unwrap_err();
        assert!(err.to_string().contains(field), "{keys}: {err}");
    }
    let map = split_map(
        "type = \"u16\"\ndirection = { address = 298, charge = 1, discharge = 2, idle = 0 }",
    );
    let err = ModbusMap::new(&toml::from_str(&map).unwrap(), unit()).unwrap_err();
    assert!(err.to_string().contains("battery_power.direction"), "{err}");
}
