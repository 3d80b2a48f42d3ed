//! ems driver `sdm630`: Eastron SDM630 three-phase energy meter (and the SDM120 and SDM72 via the
//! `model` option) on Modbus, as the grid meter. Its readings are the `grid_*` fields, so it
//! declares only that role: a meter on the PV or battery side needs its power in `pv_power_w` or
//! `battery_power_w`, which a `modbus-map` map can do.
//!
//! Register map: Eastron "SDM630 Modbus Protocol" (SDM630-Modbus V2 / Smart meter protocol
//! implementation, input registers, function 0x04). Every value is an IEEE-754 single in two
//! registers, high word first; the addresses are the protocol addresses of the published table
//! (register 30001 = address 0x0000):
//!
//! | address | value                         | unit |
//! |---------|-------------------------------|------|
//! | 0x0000, 0x0002, 0x0004 | phase 1/2/3 line-to-neutral voltage | V |
//! | 0x0006, 0x0008, 0x000A | phase 1/2/3 current                 | A |
//! | 0x000C, 0x000E, 0x0010 | phase 1/2/3 active power            | W |
//! | 0x002A | average line-to-neutral voltage | V   |
//! | 0x0034 | total system power              | W   |
//! | 0x0046 | frequency of supply voltages    | Hz  |
//! | 0x0048 | total import active energy      | kWh |
//! | 0x004A | total export active energy      | kWh |
//!
//! The SDM120 (single phase) publishes the same addresses for its one phase (0x0000 voltage,
//! 0x0006 current, 0x000C power, 0x0046 frequency, 0x0048/0x004A energies) and no totals; the
//! SDM72D-M publishes total power 0x0034 and the energies 0x0048/0x004A.
//!
//! All values of a model lie within 0x0000..0x004C, so one poll is one read of at most 76
//! registers. A meter that refuses the span with a Modbus exception is read value by value
//! instead, and a value it refuses is absent. A NaN or infinite float is absent too.
//!
//! Signs: Eastron meters report power positive when importing (energy flowing from the supply
//! side to the load side), which is the ems grid convention. For a meter wired the other way
//! round, `invert = true` negates powers and swaps the import and export energies.
//!
//! # Options
//! - `model`: `"sdm630"` (default), `"sdm120"` or `"sdm72"`.
//! - `invert`: `false` (default) or `true`, see above.
//!
//! # Layout
//! One module: the register table ([`Value`], [`Model::values`]), the [`Sdm630`] driver and its
//! export. Unit tests on register images built from the table above live at the bottom.

use ems_driver_sdk::options::require_modbus_unit;
use ems_driver_sdk::regs::{RegisterKind, WordOrder, f32_from, read_registers};
use ems_driver_sdk::{
    Bus, ConfigError, DeviceAddress, Driver, DriverError, DriverInfo, LogLevel, Options, Readings,
    Role,
};

/// A quantity the meter reports, by what it means to ems.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Value {
    PhaseVoltage(usize),
    PhaseCurrent(usize),
    PhasePower(usize),
    AverageVoltage,
    TotalPower,
    Frequency,
    ImportEnergy,
    ExportEnergy,
}

/// The meters this driver knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Model {
    Sdm630,
    Sdm120,
    Sdm72,
}

impl Model {
    /// The values this model publishes and their input-register addresses.
    pub fn values(self) -> &'static [(Value, u16)] {
        use Value::*;
        match self {
            Model::Sdm630 => &[
                (PhaseVoltage(0), 0x0000),
                (PhaseVoltage(1), 0x0002),
                (PhaseVoltage(2), 0x0004),
                (PhaseCurrent(0), 0x0006),
                (PhaseCurrent(1), 0x0008),
                (PhaseCurrent(2), 0x000A),
                (PhasePower(0), 0x000C),
                (PhasePower(1), 0x000E),
                (PhasePower(2), 0x0010),
                (AverageVoltage, 0x002A),
                (TotalPower, 0x0034),
                (Frequency, 0x0046),
                (ImportEnergy, 0x0048),
                (ExportEnergy, 0x004A),
            ],
            // Single phase: the phase-1 values are the totals.
            Model::Sdm120 => &[
                (PhaseVoltage(0), 0x0000),
                (PhaseCurrent(0), 0x0006),
                (PhasePower(0), 0x000C),
                (Frequency, 0x0046),
                (ImportEnergy, 0x0048),
                (ExportEnergy, 0x004A),
            ],
            Model::Sdm72 => &[
                (TotalPower, 0x0034),
                (ImportEnergy, 0x0048),
                (ExportEnergy, 0x004A),
            ],
        }
    }

    fn parse(name: &str) -> Option<Model> {
        match name {
            "sdm630" => Some(Model::Sdm630),
            "sdm120" => Some(Model::Sdm120),
            "sdm72" => Some(Model::Sdm72),
            _ => None,
        }
    }
}

/// One Eastron meter on one Modbus unit.
#[derive(Debug)]
pub struct Sdm630 {
    unit: u8,
    model: Model,
    /// The meter is wired with supply and load swapped.
    invert: bool,
}

impl Sdm630 {
    /// Reads every value of the model: the whole span at once, or one by one if the meter refuses
    /// the span. `None` for values the meter refuses or reports as NaN.
    fn read_values(&self, bus: &mut dyn Bus) -> Result<Vec<(Value, Option<f64>)>, DriverError> {
        let values = self.model.values();
        let start = values.iter().map(|(_, a)| *a).min().unwrap_or(0);
        let end = values.iter().map(|(_, a)| *a + 2).max().unwrap_or(0);
        match read_registers(bus, RegisterKind::Input, self.unit, start, end - start) {
            Ok(words) => Ok(values
                .iter()
                .map(|(v, a)| {
                    let i = (*a - start) as usize;
                    (
                        *v,
                        finite(f32_from([words[i], words[i + 1]], WordOrder::HighFirst)),
                    )
                })
                .collect()),
            Err(e) if e.is_exception() => {
                bus.log(
                    LogLevel::Info,
                    &format!("sdm630: span read refused ({e}); reading value by value"),
                );
                let mut out = Vec::with_capacity(values.len());
                for (v, a) in values {
                    let x = match read_registers(bus, RegisterKind::Input, self.unit, *a, 2) {
                        Ok(w) => finite(f32_from([w[0], w[1]], WordOrder::HighFirst)),
                        Err(e) if e.is_exception() => None,
                        Err(e) => return Err(e),
                    };
                    out.push((*v, x));
                }
                Ok(out)
            }
            Err(e) => Err(e),
        }
    }
}

fn finite(x: f32) -> Option<f64> {
    x.is_finite().then_some(f64::from(x))
}

impl Driver for Sdm630 {
    const INFO: DriverInfo = DriverInfo {
        name: "sdm630",
        version: env!("CARGO_PKG_VERSION"),
        roles: &[Role::GridMeter],
    };

    fn new(options: &toml::Table, address: DeviceAddress) -> Result<Self, ConfigError> {
        let mut o = Options::new(options);
        let model = match o.str("model")? {
            None => Model::Sdm630,
            Some(name) => Model::parse(name).ok_or_else(|| {
                ConfigError::new(
                    "model",
                    format!("unknown meter {name:?}; use \"sdm630\", \"sdm120\" or \"sdm72\""),
                )
            })?,
        };
        let invert = o.bool("invert")?.unwrap_or(false);
        o.finish()?;
        Ok(Sdm630 {
            unit: require_modbus_unit(address)?,
            model,
            invert,
        })
    }

    fn poll(&mut self, bus: &mut dyn Bus) -> Result<Readings, DriverError> {
        let sign = if self.invert { -1.0 } else { 1.0 };
        let mut r = Readings::default();
        for (value, x) in self.read_values(bus)? {
            match value {
                Value::PhaseVoltage(i) => r.grid_phase_voltage_v[i] = x,
                Value::PhaseCurrent(i) => r.grid_phase_current_a[i] = x,
                Value::PhasePower(i) => r.grid_phase_power_w[i] = x.map(|p| sign * p),
                Value::AverageVoltage => r.grid_voltage_v = x,
                Value::TotalPower => r.grid_power_w = x.map(|p| sign * p),
                Value::Frequency => r.grid_frequency_hz = x,
                Value::ImportEnergy if self.invert => r.grid_export_energy_kwh = x,
                Value::ImportEnergy => r.grid_import_energy_kwh = x,
                Value::ExportEnergy if self.invert => r.grid_import_energy_kwh = x,
                Value::ExportEnergy => r.grid_export_energy_kwh = x,
            }
        }
        if self.model == Model::Sdm120 {
            r.grid_voltage_v = r.grid_phase_voltage_v[0];
            r.grid_power_w = r.grid_phase_power_w[0];
        }
        Ok(r)
    }
}

ems_driver_sdk::export_driver!(Sdm630);

#[cfg(test)]
mod tests {
    use super::*;
    use ems_driver_sdk::regs::f32_to;
    use ems_driver_sdk::{BusError, MemoryBus, Request};

    const UNIT: u8 = 3;

    /// An SDM630 register image per the published map: every register of 0x0000..0x0050 exists
    /// (the meter's reserved ones read 0), the documented ones carry `values`.
    fn image(values: &[(u16, f32)]) -> MemoryBus {
        let mut bus = MemoryBus::new();
        bus.set_input(UNIT, 0, &[0; 0x50]);
        for (addr, x) in values {
            bus.set_input(UNIT, *addr, &f32_to(*x, WordOrder::HighFirst));
        }
        bus
    }

    fn meter(options: &str) -> Sdm630 {
        let address = DeviceAddress {
            modbus_unit: Some(UNIT),
            i2c_address: None,
        };
        Sdm630::new(&toml::from_str(options).unwrap(), address).unwrap()
    }

    const SITE: &[(u16, f32)] = &[
        (0x0000, 230.1),
        (0x0002, 231.2),
        (0x0004, 229.8),
        (0x0006, 5.5),
        (0x0008, 1.25),
        (0x000A, 0.0),
        (0x000C, 1200.0),
        (0x000E, -300.0),
        (0x0010, 0.0),
        (0x002A, 230.4),
        (0x0034, 900.0),
        (0x0046, 50.02),
        (0x0048, 12345.5),
        (0x004A, 678.25),
    ];

    fn close(a: Option<f64>, b: f64) -> bool {
        a.is_some_and(|a| (a - b).abs() < 1e-3)
    }

    #[test]
    fn reads_the_published_map_in_one_transaction() {
        let mut bus = image(SITE);
        let r = meter("").poll(&mut bus).unwrap();
        assert_eq!(
            bus.transactions(),
            &[Request::ReadInput {
                unit: UNIT,
                addr: 0,
                count: 0x4C
            }]
        );
        assert!(close(r.grid_phase_voltage_v[1], 231.2));
        assert!(close(r.grid_phase_current_a[0], 5.5));
        assert_eq!(
            r.grid_phase_current_a[2],
            Some(0.0),
            "a measured zero stays zero"
        );
        assert!(close(r.grid_phase_power_w[1], -300.0));
        assert!(close(r.grid_voltage_v, 230.4));
        assert!(close(r.grid_power_w, 900.0));
        assert!(close(r.grid_frequency_hz, 50.02));
        assert!(close(r.grid_import_energy_kwh, 12345.5));
        assert!(close(r.grid_export_energy_kwh, 678.25));
        assert_eq!(r.battery_soc_pct, None);
    }

    #[test]
    fn nan_is_absent() {
        let mut bus = image(&[(0x0002, f32::NAN), (0x0034, f32::INFINITY)]);
        let r = meter("").poll(&mut bus).unwrap();
        assert_eq!(r.grid_phase_voltage_v[1], None);
        assert_eq!(r.grid_power_w, None);
        assert_eq!(r.grid_phase_voltage_v[0], Some(0.0));
    }

    #[test]
    fn a_refused_span_is_read_value_by_value() {
        let mut bus = image(SITE);
        // This meter refuses the reserved range between the phase values and the averages, and
        // does not publish the frequency.
        bus.fail(UNIT, 0x0012..=0x0029, BusError::Exception(2));
        bus.fail(UNIT, 0x0046..=0x0047, BusError::Exception(2));
        let r = meter("").poll(&mut bus).unwrap();
        assert!(close(r.grid_power_w, 900.0));
        assert!(close(r.grid_phase_voltage_v[2], 229.8));
        assert_eq!(r.grid_frequency_hz, None);
        assert_eq!(bus.transactions().len(), 1 + 14);
        assert_eq!(bus.logs().len(), 1);
    }

    #[test]
    fn transport_failures_and_short_answers_are_errors() {
        let mut bus = image(SITE);
        bus.set_offline(UNIT, true);
        let err = meter("").poll(&mut bus).unwrap_err();
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
        bus.short_answers(UNIT, 4);
        let err = meter("").poll(&mut bus).unwrap_err();
        assert!(matches!(err, DriverError::ShortAnswer { .. }), "{err}");
    }

    #[test]
    fn sdm120_reports_its_single_phase_as_totals() {
        let mut bus = image(SITE);
        let r = meter(r#"model = "sdm120""#).poll(&mut bus).unwrap();
        assert!(close(r.grid_power_w, 1200.0));
        assert!(close(r.grid_voltage_v, 230.1));
        assert_eq!(r.grid_phase_voltage_v[1], None);
        assert_eq!(bus.transactions().len(), 1);
    }

    #[test]
    fn sdm72_reads_only_what_it_publishes() {
        let mut bus = MemoryBus::new();
        bus.set_input(UNIT, 0x0034, &f32_to(-2500.0, WordOrder::HighFirst));
        bus.set_input(UNIT, 0x0036, &[0; 0x12]);
        bus.set_input(UNIT, 0x0048, &f32_to(10.0, WordOrder::HighFirst));
        bus.set_input(UNIT, 0x004A, &f32_to(20.0, WordOrder::HighFirst));
        let r = meter(r#"model = "sdm72""#).poll(&mut bus).unwrap();
        assert!(close(r.grid_power_w, -2500.0));
        assert!(close(r.grid_export_energy_kwh, 20.0));
        assert_eq!(r.grid_phase_voltage_v, [None; 3]);
    }

    #[test]
    fn invert_swaps_direction() {
        let mut bus = image(SITE);
        let r = meter("invert = true").poll(&mut bus).unwrap();
        assert!(close(r.grid_power_w, -900.0));
        assert!(close(r.grid_phase_power_w[1], 300.0));
        assert!(close(r.grid_import_energy_kwh, 678.25));
        assert!(close(r.grid_export_energy_kwh, 12345.5));
    }

    #[test]
    fn options_are_checked() {
        let table = |s: &str| toml::from_str::<toml::Table>(s).unwrap();
        let unit = DeviceAddress {
            modbus_unit: Some(1),
            i2c_address: None,
        };
        let err = Sdm630::new(&table(r#"model = "sdm999""#), unit).unwrap_err();
        assert_eq!(err.key, "model");
        let err = Sdm630::new(&table("invrt = true"), unit).unwrap_err();
        assert_eq!(err.key, "invrt");
        let err = Sdm630::new(&table(""), DeviceAddress::default()).unwrap_err();
        assert_eq!(err.key, "modbus_unit");
    }
}
