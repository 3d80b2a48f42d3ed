//! Recognition on `MemoryBus` register images built from the documents (SunSpec model 1 and
//! 124, the Eastron map) and from map files.

use super::*;
use ems_driver_sdk::regs::{ascii_to, f32_to};
use ems_driver_sdk::{Bus, MemoryBus, Request};

struct Unit<'a>(&'a mut MemoryBus, u8);

impl ReadUnit for Unit<'_> {
    async fn read(
        &mut self,
        kind: RegisterKind,
        addr: u16,
        count: u16,
    ) -> Result<Vec<u16>, BusError> {
        match kind {
            RegisterKind::Holding => self.0.read_holding_registers(self.1, addr, count),
            RegisterKind::Input => self.0.read_input_registers(self.1, addr, count),
        }
    }
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(f)
}

fn sunspec_image(bus: &mut MemoryBus, unit: u8, base: u16) {
    bus.set_holding(unit, base, &SUNSPEC_MARKER);
    let mut m1 = vec![1, 66];
    m1.extend(ascii_to("Fronius", 16));
    m1.extend(ascii_to("Symo GEN24 6.0", 16));
    m1.extend(ascii_to("", 8));
    m1.extend(ascii_to("1.2", 8));
    m1.extend(ascii_to("SN-42", 16));
    m1.extend([unit as u16, 0x8000]);
    bus.set_holding(unit, base + 2, &m1);
    let m124 = base + 2 + 68;
    bus.set_holding(unit, m124, &[124, 24]);
    bus.set_holding(unit, m124 + 26, &[0xFFFF, 0]);
}

fn eastron_image(bus: &mut MemoryBus, unit: u8, volts: [f32; 3], hz: f32) {
    let mut v = Vec::new();
    for x in volts {
        v.extend(f32_to(x, WordOrder::HighFirst));
    }
    bus.set_input(unit, 0, &v);
    bus.set_input(unit, 0x46, &f32_to(hz, WordOrder::HighFirst));
}

#[test]
fn sunspec_model_1_strings_and_battery_role() {
    let mut bus = MemoryBus::new();
    sunspec_image(&mut bus, 3, 40000);
    let id = block_on(sunspec(&mut Unit(&mut bus, 3))).expect("recognised");
    assert_eq!(id.manufacturer.as_deref(), Some("Fronius"));
    assert_eq!(id.model.as_deref(), Some("Symo GEN24 6.0"));
    assert_eq!(id.serial.as_deref(), Some("SN-42"));
    assert_eq!(id.roles, vec![Role::Inverter, Role::Battery]);
    assert!(id.note.is_none());
    // Only reads were asked of the unit.
    assert!(
        bus.transactions()
            .iter()
            .all(|t| matches!(t, Request::ReadHolding { .. } | Request::ReadInput { .. }))
    );
}

#[test]
fn sunspec_one_register_off_is_found_with_a_warning() {
    let mut bus = MemoryBus::new();
    sunspec_image(&mut bus, 1, 40001);
    let id = block_on(sunspec(&mut Unit(&mut bus, 1))).expect("recognised");
    assert!(id.note.unwrap().contains("40001"));
    assert!(id.evidence.contains("40001"));
}

#[test]
fn eastron_signature_three_and_single_phase() {
    let mut bus = MemoryBus::new();
    eastron_image(&mut bus, 2, [230.1, 229.0, 231.5], 50.01);
    eastron_image(&mut bus, 4, [230.1, 0.0, 0.0], 49.98);
    eastron_image(&mut bus, 5, [12.0, 0.0, 0.0], 50.0);
    let three = block_on(eastron(&mut Unit(&mut bus, 2))).expect("SDM630");
    assert_eq!(three.model.as_deref(), Some("SDM630"));
    assert!(three.options.is_empty());
    let one = block_on(eastron(&mut Unit(&mut bus, 4))).expect("SDM120");
    assert_eq!(one.options.get("model").unwrap().as_str(), Some("sdm120"));
    assert!(block_on(eastron(&mut Unit(&mut bus, 5))).is_none(), "12 V");
    assert!(
        block_on(eastron(&mut Unit(&mut bus, 9))).is_none(),
        "absent"
    );
}

#[test]
fn a_maps_identify_section_must_all_match() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("acme.toml");
    std::fs::write(
        &path,
        r#"
        [device]
        name = "ACME BMS"
        [identify]
        roles = ["battery"]
        [[identify.register]]
        function = "holding"
        address = 100
        type = "string"
        count = 4
        prefix = "ACME"
        [[identify.register]]
        function = "holding"
        address = 110
        type = "u16"
        equals = 7
        "#,
    )
    .unwrap();
    std::fs::write(dir.path().join("broken.toml"), "[identify]\nroles = 1\n").unwrap();
    let (maps, errors) = MapSignature::load_dir(dir.path()).unwrap();
    assert_eq!(maps.len(), 1);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].to_string().contains("broken.toml"),
        "{}",
        errors[0]
    );
    let mut bus = MemoryBus::new();
    bus.set_holding(1, 100, &ascii_to("ACME-48", 4));
    bus.set_holding(1, 110, &[7]);
    bus.set_holding(2, 100, &ascii_to("ACME-48", 4));
    bus.set_holding(2, 110, &[8]);
    let id = block_on(maps[0].identify(&mut Unit(&mut bus, 1))).expect("matches");
    assert_eq!(id.driver, "modbus-map");
    let map = id.options.get("map").and_then(|m| m.as_str()).unwrap();
    assert!(Path::new(map).is_absolute(), "{map}");
    assert_eq!(id.roles, vec![Role::Battery]);
    assert_eq!(id.model.as_deref(), Some("ACME BMS"));
    assert!(block_on(maps[0].identify(&mut Unit(&mut bus, 2))).is_none());

    std::fs::write(
        &path,
        "[identify]\nroles = []\n[[identify.register]]\nfunction = \"input\"\naddress = 1\ntype = \"u16\"\n",
    )
    .unwrap();
    let err = MapSignature::load(&path).unwrap_err().to_string();
    assert!(err.contains("exactly one of"), "{err}");
}

#[test]
fn every_shipped_maps_identify_section_is_usable() {
    let dir = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../config/devices"));
    let (maps, errors) = MapSignature::load_dir(dir).unwrap();
    assert!(errors.is_empty(), "{errors:?}");
    assert!(!maps.is_empty());
}

#[test]
fn the_shipped_sdm630_map_recognises_the_meter() {
    let path = Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../config/devices/sdm630.toml"
    ));
    let map = MapSignature::load(path).unwrap().expect("has [identify]");
    let mut bus = MemoryBus::new();
    eastron_image(&mut bus, 2, [230.1, 229.0, 231.5], 50.01);
    let ids = block_on(identify(&mut Unit(&mut bus, 2), &[map]));
    let by: Vec<&str> = ids.iter().map(|i| i.by).collect();
    assert_eq!(
        by,
        ["eastron", "map"],
        "a signature of ranges comes after Eastron's"
    );
    assert_eq!(ids[1].roles, vec![Role::GridMeter]);
}

#[test]
fn a_corrupt_sunspec_chain_ends_the_walk_without_a_panic() {
    let mut bus = MemoryBus::new();
    bus.set_holding(1, 50000, &SUNSPEC_MARKER);
    bus.set_holding(1, 50002, &[999, 65000]);
    bus.set_holding(2, 0, &SUNSPEC_MARKER);
    bus.set_holding(2, 2, &[998, 65531]);
    bus.set_holding(2, 65535, &[997]);
    for unit in [1, 2] {
        let id = block_on(sunspec(&mut Unit(&mut bus, unit))).expect("the marker is enough");
        assert_eq!(id.roles, vec![Role::Inverter]);
        assert!(id.manufacturer.is_none());
    }
}
