//! The shipped device maps (`config/devices/*.toml`): each decodes a register image built from
//! its document's scales into ems units and signs, reads in the fewest requests, and writes the
//! documented registers. The values in each image are chosen (the documents give scales and
//! signs, rarely example values) and stated next to the register.

use super::*;

/// Reads per poll of each shipped map, counted by hand from its registers, `max_gap` and
/// `max_registers`; `shipped_maps_say_how_far_they_are_checked` checks every map against it.
pub(super) const READS: &[(&str, usize)] = &[
    // input 0x0000..0x004B in one read (gaps ≤ 24)
    ("sdm630.toml", 1),
    // holding 500..525 (gap 501..521 = 21 ≤ 35) and 586..675 (largest gap 637..671 = 35);
    // 526..585 (60) is too far
    ("deye-sg04lp3.toml", 2),
    // holding 59..82 (gap 60..78 = 19 ≤ 30) and 150..191 (largest gap 151..168 = 18); 83..149
    // (67) is too far
    ("deye-sg0xlp1.toml", 2),
    // input 0..38 (gap 3..34 = 32 ≤ 32) and 1009..1051 (largest gap 1031..1045 = 15)
    ("growatt-sph.toml", 2),
    // input 33057..33150 (94; largest gap 33081..33132 = 52 ≤ 52) and 33251..33286 (largest gap
    // 33265..33281 = 17); 33151..33250 (100) is too far
    ("solis-rhi.toml", 2),
    // holding 35105..35201 (97; largest gap 35141..35179 = 39) and 37003..37008
    ("goodwe-et.toml", 2),
    // holding 32064..32081, 37022, 37046..37049, 37101..37122, 37760..37766 (gaps between them
    // 14 ≤ 20 inside the first; 23, 51 and 637 > 20 between)
    ("huawei-sun2000-luna2000.toml", 5),
    // holding 808..813, 820..822, 840..843, 850 (gaps 814..819 = 6, 823..839 = 17 and
    // 844..849 = 6, all > 5)
    ("victron-gx-system.toml", 4),
    // input 0x0000..0x004B (largest gap 0x000E..0x0045 = 56)
    ("sdm120.toml", 1),
    // input 0x0034..0x004B (gap 0x0036..0x0047 = 18)
    ("sdm72.toml", 1),
    // input 0x0000..0x0017, 0x0028, 0x0037, 0x0042, 0x005C (gaps 16, 13, 10, 24 > 6)
    ("cg-em24.toml", 5),
    // input 0x0000..0x0017, 0x0028, 0x0033..0x0035, 0x004E (gaps 16, 9, 24 > 6)
    ("cg-em340.toml", 4),
    // input 0x1000..0x1010 (largest gap 0x1007..0x100B = 5 ≤ 5)
    ("seplos-v3.toml", 1),
    // holding 3..31 (largest gap 10..25 = 16)
    ("victron-gx-vebus.toml", 1),
];

/// Two readings share registers only as exact aliases (the same registers under two names, or
/// two bit fields of one register) or when one is a term of a sum (a total of registers also
/// mapped one by one); a partial overlap is a mistake. No name is mapped twice outside a sum
/// or bit fields (the second would silently win).
pub(super) fn no_unexpected_overlaps(file: &str, map: &Map) {
    for (i, a) in map.readings.iter().enumerate() {
        for b in &map.readings[i + 1..] {
            assert!(
                a.target != b.target || a.sum || (a.bits.is_some() && b.bits.is_some()),
                "{file}: {:?} is mapped twice",
                a.target
            );
            if a.kind != b.kind {
                continue;
            }
            let end = |r: &map::Reading| u32::from(r.address) + u32::from(r.width);
            let overlap = u32::from(a.address) < end(b) && u32::from(b.address) < end(a);
            let alias = a.address == b.address && a.width == b.width;
            assert!(
                !overlap || alias || a.sum || b.sum,
                "{file}: {:?} at {} overlaps {:?} at {}",
                a.target,
                a.address,
                b.target,
                b.address
            );
        }
    }
}

/// The planned reads are exactly the hand-counted minimum.
pub(super) fn reads_are_minimal(file: &str, map: &Map) {
    let expected = READS
        .iter()
        .find(|(f, _)| *f == file)
        .unwrap_or_else(|| panic!("{file}: add its hand-counted reads to devices::READS"))
        .1;
    let d = ModbusMap::with_map(UNIT, map.clone());
    assert_eq!(d.reads.len(), expected, "{file}: {:?}", d.reads);
}

fn shipped(file: &str) -> ModbusMap {
    let path = format!("{}/../../config/devices/{file}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap();
    ModbusMap::with_map(UNIT, Map::from_toml(&text).unwrap())
}

/// The reads of `bus` since it was last cleared, as (kind, start, count).
fn reads(bus: &MemoryBus) -> Vec<(RegisterKind, u16, u16)> {
    bus.transactions()
        .iter()
        .filter_map(|r| match *r {
            Request::ReadHolding { addr, count, .. } => Some((RegisterKind::Holding, addr, count)),
            Request::ReadInput { addr, count, .. } => Some((RegisterKind::Input, addr, count)),
            _ => None,
        })
        .collect()
}

fn s16(v: i16) -> u16 {
    v as u16
}

#[test]
fn deye_sg04lp3_decodes_with_ems_signs() {
    let mut bus = MemoryBus::new();
    bus.set_holding(UNIT, 500, &[0; 26]);
    bus.set_holding(UNIT, 586, &[0; 90]);
    bus.set_holding(UNIT, 500, &[2]); // NORMAL
    // Bought 12345.6 kWh = 123456 × 0.1 (0x0001_E240, low word first); sold 789.0 kWh.
    bus.set_holding(UNIT, 522, &[0xE240, 0x0001, 7890, 0]);
    // 25.0 °C (offset 1000), 52.30 V, 76 %, discharging 1500 W at 28.68 A (Deye: + = discharge).
    bus.set_holding(UNIT, 586, &[1250, 5230, 76, 0, 1500, 2868]);
    bus.set_holding(UNIT, 598, &[2301, 2298, 2312]);
    bus.set_holding(UNIT, 613, &[s16(-435), s16(-478), s16(-391)]);
    // Exporting 3000 W: -1000, -1100, -900 per phase.
    bus.set_holding(UNIT, 622, &[s16(-1000), s16(-1100), s16(-900), s16(-3000)]);
    bus.set_holding(UNIT, 636, &[4500]);
    bus.set_holding(UNIT, 672, &[3100, 2900]); // PV1 + PV2 = 6000 W

    let r = shipped("deye-sg04lp3.toml").poll(&mut bus).unwrap();
    assert_eq!(
        reads(&bus),
        [
            (RegisterKind::Holding, 500, 26),
            (RegisterKind::Holding, 586, 90)
        ]
    );
    assert_eq!(r.inverter_state.as_deref(), Some("NORMAL"));
    assert!(close(r.grid_import_energy_kwh, 12345.6));
    assert!(close(r.grid_export_energy_kwh, 789.0));
    assert!(close(r.battery_temperature_c, 25.0));
    assert!(close(r.battery_voltage_v, 52.3));
    assert!(close(r.battery_soc_pct, 76.0));
    assert!(close(r.battery_power_w, -1500.0), "discharging is − in ems");
    assert!(close(r.battery_current_a, -28.68));
    assert!(close(r.grid_phase_voltage_v[0], 230.1));
    assert!(close(r.grid_phase_voltage_v[2], 231.2));
    assert!(close(r.grid_phase_current_a[1], -4.78));
    assert!(close(r.grid_phase_power_w[0], -1000.0));
    assert!(close(r.grid_phase_power_w[2], -900.0));
    assert!(close(r.grid_power_w, -3000.0), "exporting is − in ems");
    assert!(close(r.inverter_ac_power_w, 4500.0));
    assert!(close(r.pv_power_w, 6000.0));
}

/// A Deye map's current limits (registers `charge` and `discharge`, function 0x10, amperes at
/// the polled battery voltage), written as a charge of 2000 W (`charge_2000_w_a` amperes), a
/// discharge of 1500 W (`discharge_1500_w_a`) and 0 W, each after the 5-minute interval.
fn deye_writes_current_limits(
    file: &str,
    bus: &mut MemoryBus,
    (charge, discharge): (u16, u16),
    (charge_2000_w_a, discharge_1500_w_a): (u16, u16),
) {
    bus.set_holding(UNIT, charge.min(discharge), &[77, 77]);
    let mut d = shipped(file);
    let t0 = Instant::now();
    let at = |s: u64| t0 + Duration::from_secs(s);
    // Before any poll: the nominal 51.2 V; charging 2560 W is 50 A, discharge limit 0 first.
    d.set_battery_power_at(bus, 2560.0, at(0)).unwrap();
    assert_eq!(
        all_writes(bus),
        [(0x10, discharge, vec![0]), (0x10, charge, vec![50])]
    );
    bus.clear_transactions();
    d.poll(bus).unwrap();
    bus.clear_transactions();
    // Charging 2000 W after the poll, at the polled voltage; only the charge limit changes.
    d.set_battery_power_at(bus, 2000.0, at(100)).unwrap();
    assert_eq!(all_writes(bus), [], "a change within min_interval_s waits");
    d.set_battery_power_at(bus, 2000.0, at(300)).unwrap();
    assert_eq!(all_writes(bus), [(0x10, charge, vec![charge_2000_w_a])]);
    bus.clear_transactions();
    // Discharging 1500 W: the charge limit to 0 first, then the discharge limit.
    d.set_battery_power_at(bus, -1500.0, at(600)).unwrap();
    assert_eq!(
        all_writes(bus),
        [
            (0x10, charge, vec![0]),
            (0x10, discharge, vec![discharge_1500_w_a])
        ]
    );
    bus.clear_transactions();
    // 0 W at once: the discharge limit to 0 (the charge limit is 0 already).
    d.set_battery_power_at(bus, 0.0, at(601)).unwrap();
    assert_eq!(all_writes(bus), [(0x10, discharge, vec![0])]);
    assert_eq!(bus.holding(UNIT, charge), Some(0));
    assert_eq!(bus.holding(UNIT, discharge), Some(0));
    // Unchanged: never written again (no refresh_s).
    bus.clear_transactions();
    d.set_battery_power_at(bus, 0.0, at(100_000)).unwrap();
    assert_eq!(all_writes(bus), []);
}

#[test]
fn deye_sg04lp3_writes_its_current_limits() {
    let mut bus = MemoryBus::new();
    bus.set_holding(UNIT, 500, &[0; 26]);
    bus.set_holding(UNIT, 586, &[0; 90]);
    bus.set_holding(UNIT, 587, &[5230]); // 52.30 V: 2000 W = 38.2 A, 1500 W = 28.7 A
    deye_writes_current_limits("deye-sg04lp3.toml", &mut bus, (108, 109), (38, 29));
}

#[test]
fn deye_sg0xlp1_writes_its_current_limits() {
    let mut bus = MemoryBus::new();
    bus.set_holding(UNIT, 59, &[0; 24]);
    bus.set_holding(UNIT, 150, &[0; 42]);
    bus.set_holding(UNIT, 183, &[4800]); // 48.00 V: 2000 W = 41.7 A, 1500 W = 31.25 A
    deye_writes_current_limits("deye-sg0xlp1.toml", &mut bus, (210, 211), (42, 31));
}

#[test]
fn deye_sg0xlp1_decodes_with_ems_signs() {
    let mut bus = MemoryBus::new();
    bus.set_holding(UNIT, 59, &[0; 24]);
    bus.set_holding(UNIT, 150, &[0; 42]);
    bus.set_holding(UNIT, 59, &[4]); // FAULT
    bus.set_holding(UNIT, 79, &[5002]); // 50.02 Hz
    // Sold 70000.1 kWh = 700001 × 0.1 (0x000A_AE61, low word first).
    bus.set_holding(UNIT, 81, &[0xAE61, 0x000A]);
    bus.set_holding(UNIT, 150, &[2334]);
    // Buying 850 W while the battery charges with 2000 W at 38.5 A (Deye: − = charge).
    bus.set_holding(UNIT, 169, &[850]);
    bus.set_holding(UNIT, 175, &[s16(-1150)]);
    bus.set_holding(UNIT, 182, &[950, 5195, 41]); // -5.0 °C, 51.95 V, 41 %
    bus.set_holding(UNIT, 186, &[1000, 1200, 0, 0]); // PV 2200 W
    bus.set_holding(UNIT, 190, &[s16(-2000), s16(-3850)]);

    let r = shipped("deye-sg0xlp1.toml").poll(&mut bus).unwrap();
    assert_eq!(
        reads(&bus),
        [
            (RegisterKind::Holding, 59, 24),
            (RegisterKind::Holding, 150, 42)
        ]
    );
    assert_eq!(r.inverter_state.as_deref(), Some("FAULT"));
    assert!(close(r.grid_frequency_hz, 50.02));
    assert!(close(r.grid_export_energy_kwh, 70000.1));
    assert_eq!(
        r.grid_import_energy_kwh, None,
        "split registers: not mapped"
    );
    assert!(close(r.grid_voltage_v, 233.4));
    assert!(close(r.grid_power_w, 850.0), "importing is + in ems");
    assert!(close(r.inverter_ac_power_w, -1150.0));
    assert!(close(r.battery_temperature_c, -5.0));
    assert!(close(r.battery_voltage_v, 51.95));
    assert!(close(r.battery_soc_pct, 41.0));
    assert!(close(r.battery_power_w, 2000.0), "charging is + in ems");
    assert!(close(r.battery_current_a, 38.5));
    assert!(close(r.pv_power_w, 2200.0));
}

/// A 32-bit value as two registers, high word first.
fn hi_lo(v: u32) -> [u16; 2] {
    [(v >> 16) as u16, v as u16]
}

#[test]
fn growatt_sph_sums_its_direction_registers_into_ems_signs() {
    let mut bus = MemoryBus::new();
    bus.set_input(UNIT, 0, &[0; 39]);
    bus.set_input(UNIT, 1009, &[0; 43]);
    bus.set_input(UNIT, 0, &[6]); // AC_CHARGE
    bus.set_input(UNIT, 1, &hi_lo(45_678)); // PV 4567.8 W
    bus.set_input(UNIT, 35, &hi_lo(70_000)); // Pac 7000.0 W (high word 1)
    bus.set_input(UNIT, 37, &[4998, 2351]); // 49.98 Hz, 235.1 V
    // Charging 2500.0 W (discharge 0), SoC 63 %.
    bus.set_input(UNIT, 1009, &hi_lo(0));
    bus.set_input(UNIT, 1011, &hi_lo(25_000));
    bus.set_input(UNIT, 1014, &[63]);
    // Exporting 1234.5 W (to user 0).
    bus.set_input(UNIT, 1021, &hi_lo(0));
    bus.set_input(UNIT, 1029, &hi_lo(12_345));
    bus.set_input(UNIT, 1046, &hi_lo(123_456)); // bought 12345.6 kWh
    bus.set_input(UNIT, 1050, &hi_lo(65_537)); // sold 6553.7 kWh

    let r = shipped("growatt-sph.toml").poll(&mut bus).unwrap();
    assert_eq!(
        reads(&bus),
        [
            (RegisterKind::Input, 0, 39),
            (RegisterKind::Input, 1009, 43)
        ]
    );
    assert_eq!(r.inverter_state.as_deref(), Some("AC_CHARGE"));
    assert!(close(r.pv_power_w, 4567.8));
    assert!(close(r.inverter_ac_power_w, 7000.0));
    assert!(close(r.grid_frequency_hz, 49.98));
    assert!(close(r.grid_voltage_v, 235.1));
    assert!(close(r.battery_power_w, 2500.0), "charging is + in ems");
    assert!(close(r.battery_soc_pct, 63.0));
    assert!(close(r.grid_power_w, -1234.5), "exporting is − in ems");
    assert!(close(r.grid_import_energy_kwh, 12345.6));
    assert!(close(r.grid_export_energy_kwh, 6553.7));

    // Discharging 800.0 W while importing 300.0 W.
    bus.set_input(UNIT, 1009, &hi_lo(8_000));
    bus.set_input(UNIT, 1011, &hi_lo(0));
    bus.set_input(UNIT, 1021, &hi_lo(3_000));
    bus.set_input(UNIT, 1029, &hi_lo(0));
    let r = shipped("growatt-sph.toml").poll(&mut bus).unwrap();
    assert!(close(r.battery_power_w, -800.0), "discharging is − in ems");
    assert!(close(r.grid_power_w, 300.0), "importing is + in ems");
}

#[test]
fn solis_rhi_signs_battery_magnitudes_by_their_direction_register() {
    let mut bus = MemoryBus::new();
    bus.set_input(UNIT, 33057, &[0; 94]);
    bus.set_input(UNIT, 33251, &[0; 36]);
    bus.set_input(UNIT, 33057, &hi_lo(5_200)); // PV 5200 W
    bus.set_input(UNIT, 33079, &hi_lo(3_000)); // inverter 3000 W out
    // 51.2 V, 42.5 A, discharging (33135 = 1), SoC 80 %, SoH 98 %, BMS limits 100.0 / 120.0 A.
    bus.set_input(UNIT, 33133, &[512, 425, 1]);
    bus.set_input(UNIT, 33139, &[80, 98]);
    bus.set_input(UNIT, 33143, &[1000, 1200]);
    bus.set_input(UNIT, 33149, &hi_lo(2_176)); // 2176 W
    bus.set_input(UNIT, 33251, &[2405]);
    // The meter reads +1500 W: exporting (Solis: + = export).
    bus.set_input(UNIT, 33263, &hi_lo(1_500));
    bus.set_input(UNIT, 33282, &[5001]);
    bus.set_input(UNIT, 33283, &hi_lo(1_234_567)); // 12345.67 kWh
    bus.set_input(UNIT, 33285, &hi_lo(98_765)); // 987.65 kWh

    let r = shipped("solis-rhi.toml").poll(&mut bus).unwrap();
    assert_eq!(
        reads(&bus),
        [
            (RegisterKind::Input, 33057, 94),
            (RegisterKind::Input, 33251, 36)
        ]
    );
    assert!(close(r.pv_power_w, 5200.0));
    assert!(close(r.inverter_ac_power_w, 3000.0));
    assert!(close(r.battery_voltage_v, 51.2));
    assert!(close(r.battery_current_a, -42.5), "discharging is − in ems");
    assert!(close(r.battery_power_w, -2176.0));
    assert!(close(r.battery_soc_pct, 80.0));
    assert!(close(r.battery_soh_pct, 98.0));
    assert!(close(r.battery_max_charge_current_a, 100.0));
    assert!(close(r.battery_max_discharge_current_a, 120.0));
    assert!(close(r.grid_voltage_v, 240.5));
    assert!(close(r.grid_power_w, -1500.0), "exporting is − in ems");
    assert!(close(r.grid_frequency_hz, 50.01));
    assert!(close(r.grid_import_energy_kwh, 12345.67));
    assert!(close(r.grid_export_energy_kwh, 987.65));

    // Charging (33135 = 0) while importing 700 W (the meter reads −700).
    bus.set_input(UNIT, 33135, &[0]);
    bus.set_input(UNIT, 33263, &hi_lo((-700i32) as u32));
    let r = shipped("solis-rhi.toml").poll(&mut bus).unwrap();
    assert!(close(r.battery_current_a, 42.5), "charging is + in ems");
    assert!(close(r.battery_power_w, 2176.0));
    assert!(close(r.grid_power_w, 700.0), "importing is + in ems");
}

#[test]
fn goodwe_et_decodes_with_ems_signs() {
    let mut bus = MemoryBus::new();
    bus.set_holding(UNIT, 35105, &[0; 97]);
    bus.set_holding(UNIT, 37003, &[0; 6]);
    bus.set_holding(UNIT, 35105, &hi_lo(2_100)); // PV1 2100 W
    bus.set_holding(UNIT, 35109, &hi_lo(1_900)); // PV2 1900 W
    bus.set_holding(UNIT, 35121, &[2310, 0, 4999]); // 231.0 V, 49.99 Hz
    bus.set_holding(UNIT, 35126, &[2320]);
    bus.set_holding(UNIT, 35131, &[0xFFFF]); // L3 not implemented (single phase)
    bus.set_holding(UNIT, 35138, &[3200]);
    bus.set_holding(UNIT, 35140, &[1200]); // GoodWe: exporting 1200 W
    // 52.1 V, discharging 15.3 A and 797 W (GoodWe: + = discharge).
    bus.set_holding(UNIT, 35180, &[521, 153]);
    bus.set_holding(UNIT, 35182, &hi_lo(797));
    bus.set_holding(UNIT, 35187, &[1]);
    bus.set_holding(UNIT, 35195, &hi_lo(45_678)); // exported 4567.8 kWh
    bus.set_holding(UNIT, 35200, &hi_lo(12_345)); // imported 1234.5 kWh
    // 23.4 °C, limits 50 / 75 A, SoC 55 %, SoH 97 %.
    bus.set_holding(UNIT, 37003, &[234, 50, 75, 0, 55, 97]);

    let r = shipped("goodwe-et.toml").poll(&mut bus).unwrap();
    assert_eq!(
        reads(&bus),
        [
            (RegisterKind::Holding, 35105, 97),
            (RegisterKind::Holding, 37003, 6)
        ]
    );
    assert!(close(r.pv_power_w, 4000.0));
    assert!(close(r.grid_phase_voltage_v[0], 231.0));
    assert!(close(r.grid_phase_voltage_v[1], 232.0));
    assert_eq!(r.grid_phase_voltage_v[2], None);
    assert!(close(r.grid_frequency_hz, 49.99));
    assert!(close(r.inverter_ac_power_w, 3200.0));
    assert!(close(r.grid_power_w, -1200.0), "exporting is − in ems");
    assert!(close(r.battery_voltage_v, 52.1));
    assert!(close(r.battery_current_a, -15.3), "discharging is − in ems");
    assert!(close(r.battery_power_w, -797.0));
    assert_eq!(r.inverter_state.as_deref(), Some("NORMAL_ON_GRID"));
    assert!(close(r.grid_export_energy_kwh, 4567.8));
    assert!(close(r.grid_import_energy_kwh, 1234.5));
    assert!(close(r.battery_temperature_c, 23.4));
    assert!(close(r.battery_max_charge_current_a, 50.0));
    assert!(close(r.battery_max_discharge_current_a, 75.0));
    assert!(close(r.battery_soc_pct, 55.0));
    assert!(close(r.battery_soh_pct, 97.0));

    bus.set_holding(UNIT, 37003, &[0x7FFF]);
    let r = shipped("goodwe-et.toml").poll(&mut bus).unwrap();
    assert_eq!(r.battery_temperature_c, None);
}

#[test]
fn goodwe_et_writes_the_ems_power_mode_and_power() {
    let mut bus = MemoryBus::new();
    bus.set_holding(UNIT, 47511, &[1, 0]); // Auto, 0 W
    let mut d = shipped("goodwe-et.toml");
    let t0 = Instant::now();
    let at = |s: u64| t0 + Duration::from_secs(s);
    // Charge 2500 W: "Charge Bat" (11) and 2500 W, one write of both.
    d.set_battery_power_at(&mut bus, 2500.0, at(0)).unwrap();
    assert_eq!(all_writes(&bus), [(0x10, 47511, vec![11, 2500])]);
    bus.clear_transactions();
    // Discharge 1800 W within 10 s waits; then "Discharge Bat" (12) and 1800 W.
    d.set_battery_power_at(&mut bus, -1800.0, at(5)).unwrap();
    assert_eq!(all_writes(&bus), []);
    d.set_battery_power_at(&mut bus, -1800.0, at(10)).unwrap();
    assert_eq!(all_writes(&bus), [(0x10, 47511, vec![12, 1800])]);
    bus.clear_transactions();
    // 0 W at once: "Battery Standby" (8) and 0 W.
    d.set_battery_power_at(&mut bus, 0.0, at(11)).unwrap();
    assert_eq!(all_writes(&bus), [(0x10, 47511, vec![8, 0])]);
    assert_eq!(bus.holding(UNIT, 47511), Some(8));
    assert_eq!(bus.holding(UNIT, 47512), Some(0));
    // Unchanged: written again only after refresh_s.
    bus.clear_transactions();
    d.set_battery_power_at(&mut bus, 0.0, at(11 + 299)).unwrap();
    assert_eq!(all_writes(&bus), []);
    d.set_battery_power_at(&mut bus, 0.0, at(11 + 300)).unwrap();
    assert_eq!(all_writes(&bus), [(0x10, 47511, vec![8, 0])]);
}

#[test]
fn huawei_sun2000_with_luna2000_decodes_with_ems_signs() {
    let mut bus = MemoryBus::new();
    bus.set_holding(UNIT, 32064, &[0; 18]);
    bus.set_holding(UNIT, 37022, &[0]);
    bus.set_holding(UNIT, 37046, &[0; 4]);
    bus.set_holding(UNIT, 37101, &[0; 22]);
    bus.set_holding(UNIT, 37760, &[0; 7]);
    bus.set_holding(UNIT, 32064, &hi_lo(6_543)); // PV 6543 W
    bus.set_holding(UNIT, 32080, &hi_lo(4_000)); // AC 4000 W out
    bus.set_holding(UNIT, 37022, &[s16(-25)]); // -2.5 °C
    bus.set_holding(UNIT, 37046, &hi_lo(5_000)); // max charge 5000 W
    bus.set_holding(UNIT, 37048, &hi_lo(4_500)); // max discharge 4500 W
    bus.set_holding(UNIT, 37101, &hi_lo(2_301));
    bus.set_holding(UNIT, 37103, &hi_lo(2_299));
    bus.set_holding(UNIT, 37105, &hi_lo(2_305));
    bus.set_holding(UNIT, 37107, &hi_lo(312)); // 3.12 A towards the grid
    // The meter reads +2000 W: feeding into the grid (Huawei: + = export).
    bus.set_holding(UNIT, 37113, &hi_lo(2_000));
    bus.set_holding(UNIT, 37118, &[5003]);
    bus.set_holding(UNIT, 37119, &hi_lo(1_234_567)); // exported 12345.67 kWh
    bus.set_holding(UNIT, 37121, &hi_lo(765_432)); // imported 7654.32 kWh
    bus.set_holding(UNIT, 37760, &[875]); // 87.5 %
    bus.set_holding(UNIT, 37763, &[4512]); // 451.2 V
    bus.set_holding(UNIT, 37765, &hi_lo((-1800i32) as u32)); // LUNA: − = discharging

    let r = shipped("huawei-sun2000-luna2000.toml")
        .poll(&mut bus)
        .unwrap();
    assert_eq!(
        reads(&bus),
        [
            (RegisterKind::Holding, 32064, 18),
            (RegisterKind::Holding, 37022, 1),
            (RegisterKind::Holding, 37046, 4),
            (RegisterKind::Holding, 37101, 22),
            (RegisterKind::Holding, 37760, 7)
        ]
    );
    assert!(close(r.pv_power_w, 6543.0));
    assert!(close(r.inverter_ac_power_w, 4000.0));
    assert!(close(r.battery_temperature_c, -2.5));
    assert!(close(r.battery_max_charge_power_w, 5000.0));
    assert!(close(r.battery_max_discharge_power_w, 4500.0));
    assert!(close(r.grid_phase_voltage_v[0], 230.1));
    assert!(close(r.grid_phase_voltage_v[2], 230.5));
    assert!(close(r.grid_phase_current_a[0], -3.12));
    assert!(close(r.grid_power_w, -2000.0), "exporting is − in ems");
    assert!(close(r.grid_frequency_hz, 50.03));
    assert!(close(r.grid_export_energy_kwh, 12345.67));
    assert!(close(r.grid_import_energy_kwh, 7654.32));
    assert!(close(r.battery_soc_pct, 87.5));
    assert!(close(r.battery_voltage_v, 451.2));
    assert!(close(r.battery_power_w, -1800.0), "discharging is − in ems");
}

#[test]
fn huawei_sun2000_writes_its_charge_and_discharge_power_limits() {
    let mut bus = MemoryBus::new();
    bus.set_holding(UNIT, 47075, &[0xFFFF; 4]);
    let mut d = shipped("huawei-sun2000-luna2000.toml");
    let t0 = Instant::now();
    let at = |s: u64| t0 + Duration::from_secs(s);
    // Charge 3000 W: the discharge limit to 0 first, then 3000 W as a U32, high word first.
    d.set_battery_power_at(&mut bus, 3000.0, at(0)).unwrap();
    assert_eq!(
        all_writes(&bus),
        [(0x10, 47077, vec![0, 0]), (0x10, 47075, vec![0, 3000])]
    );
    bus.clear_transactions();
    // Discharge 70 kW (above 16 bits, to show the word order) after the 5-minute interval.
    d.set_battery_power_at(&mut bus, -70_000.0, at(300))
        .unwrap();
    assert_eq!(
        all_writes(&bus),
        [
            (0x10, 47075, vec![0, 0]),
            (0x10, 47077, hi_lo(70_000).to_vec())
        ]
    );
    bus.clear_transactions();
    // A change within the interval waits; 0 W does not: the discharge limit back to 0.
    d.set_battery_power_at(&mut bus, -1000.0, at(301)).unwrap();
    assert_eq!(all_writes(&bus), []);
    d.set_battery_power_at(&mut bus, 0.0, at(302)).unwrap();
    assert_eq!(all_writes(&bus), [(0x10, 47077, vec![0, 0])]);
    assert_eq!(bus.holding(UNIT, 47075), Some(0));
    assert_eq!(bus.holding(UNIT, 47076), Some(0));
    assert_eq!(bus.holding(UNIT, 47078), Some(0));
}

#[test]
fn victron_gx_system_sums_pv_and_grid_phases() {
    let mut bus = MemoryBus::new();
    bus.set_holding(UNIT, 808, &[100, 0, 0, 250, 0, 0]); // AC-coupled PV 350 W
    bus.set_holding(UNIT, 820, &[s16(-400), 150, s16(-50)]); // net export 300 W
    // 53.1 V, discharging 12.5 A and 664 W, SoC 71 %.
    bus.set_holding(UNIT, 840, &[531, s16(-125), s16(-664), 71]);
    bus.set_holding(UNIT, 850, &[1200]); // DC PV 1200 W

    let r = shipped("victron-gx-system.toml").poll(&mut bus).unwrap();
    assert_eq!(
        reads(&bus),
        [
            (RegisterKind::Holding, 808, 6),
            (RegisterKind::Holding, 820, 3),
            (RegisterKind::Holding, 840, 4),
            (RegisterKind::Holding, 850, 1)
        ]
    );
    assert!(close(r.pv_power_w, 1550.0));
    assert!(close(r.grid_phase_power_w[0], -400.0));
    assert!(close(r.grid_phase_power_w[1], 150.0));
    assert!(close(r.grid_power_w, -300.0), "exporting is − in ems");
    assert!(close(r.battery_voltage_v, 53.1));
    assert!(
        close(r.battery_current_a, -12.5),
        "discharging is − in ems and Victron"
    );
    assert!(close(r.battery_power_w, -664.0));
    assert!(close(r.battery_soc_pct, 71.0));
}

#[test]
fn eastron_sdm120_and_sdm72_read_in_one_request() {
    use ems_driver_sdk::regs::f32_to;
    let f = |x: f32| f32_to(x, WordOrder::HighFirst);

    let mut bus = MemoryBus::new();
    bus.set_input(UNIT, 0, &[0; 0x4C]);
    bus.set_input(UNIT, 0x0000, &f(229.8));
    bus.set_input(UNIT, 0x0006, &f(-4.35));
    bus.set_input(UNIT, 0x000C, &f(-1000.0)); // exporting 1000 W
    bus.set_input(UNIT, 0x0046, &f(50.02));
    bus.set_input(UNIT, 0x0048, &f(1234.5));
    bus.set_input(UNIT, 0x004A, &f(67.25));
    let r = shipped("sdm120.toml").poll(&mut bus).unwrap();
    assert_eq!(reads(&bus), [(RegisterKind::Input, 0, 0x4C)]);
    let near = |a: Option<f64>, b: f64| a.is_some_and(|a| (a - b).abs() < 1e-3);
    assert!(near(r.grid_phase_voltage_v[0], 229.8));
    assert!(near(r.grid_voltage_v, 229.8));
    assert!(near(r.grid_phase_current_a[0], -4.35));
    assert!(near(r.grid_phase_power_w[0], -1000.0));
    assert!(
        near(r.grid_power_w, -1000.0),
        "exporting is − in ems and Eastron"
    );
    assert!(near(r.grid_frequency_hz, 50.02));
    assert!(near(r.grid_import_energy_kwh, 1234.5));
    assert!(near(r.grid_export_energy_kwh, 67.25));

    bus.clear_transactions();
    bus.set_input(UNIT, 0x0034, &f(2500.0));
    let r = shipped("sdm72.toml").poll(&mut bus).unwrap();
    assert_eq!(reads(&bus), [(RegisterKind::Input, 0x0034, 0x18)]);
    assert!(near(r.grid_power_w, 2500.0));
    assert!(near(r.grid_import_energy_kwh, 1234.5));
    assert!(near(r.grid_export_energy_kwh, 67.25));
    assert_eq!(r.grid_voltage_v, None);
}

/// A signed 32-bit value as two registers, low word first (Carlo Gavazzi).
fn lo_hi(v: i32) -> [u16; 2] {
    let v = v as u32;
    [v as u16, (v >> 16) as u16]
}

#[test]
fn carlo_gavazzi_em24_and_em340_decode_low_word_first() {
    for (file, freq, import, export, expected) in [
        (
            "cg-em24.toml",
            0x0037,
            0x0042,
            0x005C,
            vec![
                (RegisterKind::Input, 0x0000, 0x18),
                (RegisterKind::Input, 0x0028, 2),
                (RegisterKind::Input, 0x0037, 1),
                (RegisterKind::Input, 0x0042, 2),
                (RegisterKind::Input, 0x005C, 2),
            ],
        ),
        (
            "cg-em340.toml",
            0x0033,
            0x0034,
            0x004E,
            vec![
                (RegisterKind::Input, 0x0000, 0x18),
                (RegisterKind::Input, 0x0028, 2),
                (RegisterKind::Input, 0x0033, 3),
                (RegisterKind::Input, 0x004E, 2),
            ],
        ),
    ] {
        let mut bus = MemoryBus::new();
        bus.set_input(UNIT, 0, &[0; 0x60]);
        bus.set_input(UNIT, 0x0000, &lo_hi(2305)); // 230.5 V
        bus.set_input(UNIT, 0x0004, &lo_hi(2321));
        bus.set_input(UNIT, 0x000C, &lo_hi(-12_345)); // −12.345 A
        bus.set_input(UNIT, 0x0012, &lo_hi(-28_456)); // −2845.6 W
        bus.set_input(UNIT, 0x0028, &lo_hi(-70_001)); // exporting 7000.1 W (high word set)
        bus.set_input(UNIT, freq, &[500]); // 50.0 Hz
        bus.set_input(UNIT, import, &lo_hi(1_234_567)); // 123456.7 kWh
        bus.set_input(UNIT, export, &lo_hi(89)); // 8.9 kWh
        let r = shipped(file).poll(&mut bus).unwrap();
        assert_eq!(reads(&bus), expected, "{file}");
        assert!(close(r.grid_phase_voltage_v[0], 230.5), "{file}");
        assert!(close(r.grid_phase_voltage_v[2], 232.1), "{file}");
        assert!(close(r.grid_phase_current_a[0], -12.345), "{file}");
        assert!(close(r.grid_phase_power_w[0], -2845.6), "{file}");
        assert!(close(r.grid_power_w, -7000.1), "{file}: exporting is −");
        assert!(close(r.grid_frequency_hz, 50.0), "{file}");
        assert!(close(r.grid_import_energy_kwh, 123456.7), "{file}");
        assert!(close(r.grid_export_energy_kwh, 8.9), "{file}");
    }
}

#[test]
fn seplos_v3_decodes_the_documents_own_example() {
    // The example column of the PIA table (XZH BMS Modbus-RTU Protocol V0.3), 0x1000..0x1010.
    let pia = [
        0x14A1, // 52.81 V
        0x05FA, // 15.30 A (charging)
        0x445C, // 175.00 Ah remaining
        0x4E20, // 200.00 Ah
        0x0003, // 30 Ah discharged
        0x036B, // SOC 87.5 %
        0x03E8, // SOH 100.0 %
        0x0000, // cycles
        0x0CE4, // average cell 3.300 V
        0x0B80, // average cell 21.3 °C
        0x0CE6, // highest cell 3.302 V
        0x0CE0, // lowest cell 3.296 V
        0x0B82, // highest cell 294.6 K = 21.5 °C
        0x0B7F, // lowest cell 294.3 K = 21.2 °C
        0x0000, // reserved
        0x00B4, // maximum discharge current 180 A
        0x00B4, // maximum charge current 180 A
    ];
    let mut bus = MemoryBus::new();
    bus.set_input(UNIT, 0x1000, &pia);
    let r = shipped("seplos-v3.toml").poll(&mut bus).unwrap();
    assert_eq!(reads(&bus), [(RegisterKind::Input, 0x1000, 17)]);
    assert!(close(r.battery_voltage_v, 52.81));
    assert!(close(r.battery_current_a, 15.30), "charging is + in both");
    assert!(close(r.battery_soc_pct, 87.5));
    assert!(close(r.battery_soh_pct, 100.0));
    assert!(close(r.battery_temperature_c, 21.5));
    assert!(close(r.battery_temperature_min_c, 21.2));
    assert!(close(r.battery_max_discharge_current_a, 180.0));
    assert!(close(r.battery_max_charge_current_a, 180.0));
    assert_eq!(r.battery_power_w, None);

    // Discharging 20.00 A (the document's INT16, two's complement).
    bus.set_input(UNIT, 0x1001, &[s16(-2000)]);
    let r = shipped("seplos-v3.toml").poll(&mut bus).unwrap();
    assert!(close(r.battery_current_a, -20.0));
}

/// The single-register writes of `bus` since it was last cleared, as (address, value).
fn writes(bus: &MemoryBus) -> Vec<(u16, u16)> {
    bus.transactions()
        .iter()
        .filter_map(|r| match *r {
            Request::WriteSingle { addr, value, .. } => Some((addr, value)),
            _ => None,
        })
        .collect()
}

#[test]
fn victron_vebus_reads_and_writes_the_ess_mode_3_setpoint() {
    let mut bus = MemoryBus::new();
    bus.set_holding(UNIT, 3, &[0; 43]); // registers 3..45
    bus.set_holding(UNIT, 3, &[2318]); // 231.8 V
    bus.set_holding(UNIT, 9, &[5001]); // 50.01 Hz
    // 52.64 V, charging 35.2 A, SoC 64.3 %, state ABSORPTION.
    bus.set_holding(UNIT, 26, &[5264, 352, 0, 0, 643, 4]);
    let mut d = shipped("victron-gx-vebus.toml");
    let r = d.poll(&mut bus).unwrap();
    assert_eq!(reads(&bus), [(RegisterKind::Holding, 3, 29)]);
    assert!(close(r.grid_phase_voltage_v[0], 231.8));
    assert!(close(r.grid_frequency_hz, 50.01));
    assert!(close(r.battery_voltage_v, 52.64));
    assert!(close(r.battery_current_a, 35.2), "charging is + in both");
    assert!(close(r.battery_soc_pct, 64.3));
    assert_eq!(r.inverter_state.as_deref(), Some("ABSORPTION"));

    // Charge with 1500 W: the flags allow charge and feed-in, then the setpoint, as is.
    bus.clear_transactions();
    d.set_battery_power(&mut bus, 1500.0).unwrap();
    assert_eq!(writes(&bus), [(38, 0), (39, 0), (37, 1500)]);
    // Discharge with 2000 W: negative, written every call with the flags (write = "always").
    bus.clear_transactions();
    d.set_battery_power(&mut bus, -2000.0).unwrap();
    assert_eq!(writes(&bus), [(38, 0), (39, 0), (37, s16(-2000))]);
    assert_eq!(bus.holding(UNIT, 37), Some(s16(-2000)));
}
