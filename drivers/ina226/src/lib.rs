//! ems driver `ina226`: Texas Instruments INA226 current/power monitor on I2C, as a battery meter.
//!
//! Source: TI INA226 datasheet (SBOS547), sections "Programming the INA226" and "Register Maps":
//! 16-bit registers, most significant byte first, selected by writing the register pointer
//! (here as an I2C write-then-read):
//!
//! | pointer | register       | scale                                   |
//! |---------|----------------|-----------------------------------------|
//! | 0x00    | Configuration  | AVG bits 11-9, VBUSCT 8-6, VSHCT 5-3, MODE 2-0 |
//! | 0x02    | Bus voltage    | unsigned, 1.25 mV/LSB                   |
//! | 0x03    | Power          | unsigned, 25 × Current_LSB W/LSB        |
//! | 0x04    | Current        | two's complement, Current_LSB A/LSB     |
//! | 0x05    | Calibration    | CAL = 0.00512 / (Current_LSB × R_shunt), 15 bits |
//! | 0x06    | Mask/Enable    | bit 2 OVF: the power or current math overflowed |
//! | 0xFE    | Manufacturer ID| 0x5449 ("TI")                           |
//!
//! `Current_LSB = max_current_a / 2^15`. Because CAL is truncated to an integer, the driver
//! scales with the current LSB that CAL actually yields, `0.00512 / (CAL × R_shunt)`, not the
//! ideal one. The shunt input's full scale is ±81.92 mV, so `max_current_a × shunt_ohms` must
//! stay below that.
//!
//! The power register has no sign; the battery power takes the sign of the current. The chip is
//! configured (and calibrated) on first contact and again whenever the calibration register no
//! longer holds the expected value, which is how a power-on reset of the chip shows.
//!
//! Signs: by default current from IN+ to IN− (positive shunt voltage) is charging; mount the shunt
//! the other way round or set `invert = true`. The bus voltage is the VBUS pin, rated 0..36 V,
//! which must be wired to the battery for `battery_voltage_v` to mean anything. A 48 V battery
//! needs a resistive divider in front of VBUS (and the shunt on the low side, as the inputs'
//! common-mode range also ends at 36 V); `voltage_divider` gives its ratio. The chip's power
//! register is the product of current and VBUS, so it is scaled by the same ratio. A pin voltage
//! beyond the rated 36 V is not a measurement (the register saturates at 40.96 V): the battery
//! voltage is then unknown, and power is derived as unknown too, never a clipped value.
//!
//! # Options
//! - `shunt_ohms` (required): shunt resistance, Ω.
//! - `max_current_a` (required): largest current to measure, A; sets the resolution.
//! - `averages` (default 16): 1, 4, 16, 64, 128, 256, 512 or 1024 samples averaged.
//! - `conversion_time_us` (default 1100): 140, 204, 332, 588, 1100, 2116, 4156 or 8244 µs, for
//!   both the bus and the shunt conversion.
//! - `invert` (default false): negate current and power.
//! - `voltage_divider` (default 1.0, at least 1): battery voltage / VBUS pin voltage, e.g.
//!   `4.03` for 100 kΩ over 33 kΩ.
//!
//! # Layout
//! One module: [`Calibration`] (pure arithmetic from the options), the [`Ina226`] driver, export,
//! and unit tests against the I2C register model of `ems_driver_sdk::MemoryBus`.

use ems_driver_sdk::options::require_i2c_address;
use ems_driver_sdk::{
    Bus, ConfigError, DeviceAddress, Driver, DriverError, DriverInfo, Flag, LogLevel, Options,
    Readings, Role,
};

/// Register pointers.
pub mod reg {
    pub const CONFIGURATION: u8 = 0x00;
    pub const BUS_VOLTAGE: u8 = 0x02;
    pub const POWER: u8 = 0x03;
    pub const CURRENT: u8 = 0x04;
    pub const CALIBRATION: u8 = 0x05;
    pub const MASK_ENABLE: u8 = 0x06;
    pub const MANUFACTURER_ID: u8 = 0xFE;
}

/// "TI".
pub const MANUFACTURER_ID: u16 = 0x5449;
/// Bus voltage LSB, V.
pub const BUS_VOLTAGE_LSB_V: f64 = 1.25e-3;
/// Shunt voltage full scale, V.
pub const SHUNT_FULL_SCALE_V: f64 = 0.08192;
/// Mask/Enable bit 2: math overflow.
const OVF: u16 = 1 << 2;

const AVERAGES: [u32; 8] = [1, 4, 16, 64, 128, 256, 512, 1024];
const CONVERSION_TIMES_US: [u32; 8] = [140, 204, 332, 588, 1100, 2116, 4156, 8244];

/// What the options make of the chip: register values and scales.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Calibration {
    /// Configuration register value (continuous shunt and bus conversion).
    pub config: u16,
    /// Calibration register value.
    pub cal: u16,
    /// A per current-register LSB, from the truncated `cal`.
    pub current_lsb_a: f64,
}

impl Calibration {
    pub fn new(
        shunt_ohms: f64,
        max_current_a: f64,
        averages: u32,
        conversion_time_us: u32,
    ) -> Result<Calibration, ConfigError> {
        if shunt_ohms <= 0.0 {
            return Err(ConfigError::new("shunt_ohms", "must be greater than 0"));
        }
        if max_current_a <= 0.0 {
            return Err(ConfigError::new("max_current_a", "must be greater than 0"));
        }
        let shunt_v = max_current_a * shunt_ohms;
        if shunt_v > SHUNT_FULL_SCALE_V {
            return Err(ConfigError::new(
                "max_current_a",
                format!(
                    "{max_current_a} A through {shunt_ohms} Ω is {:.2} mV, beyond the INA226's \
                     ±81.92 mV shunt input",
                    shunt_v * 1e3
                ),
            ));
        }
        let ideal_lsb = max_current_a / 32768.0;
        let cal = (0.00512 / (ideal_lsb * shunt_ohms)).trunc();
        if cal > f64::from(0x7FFF_u16) {
            return Err(ConfigError::new(
                "max_current_a",
                format!(
                    "calibration {cal} exceeds the 15-bit register; with {shunt_ohms} Ω use at \
                     least {:.3} A",
                    0.00512 * 32768.0 / (f64::from(0x7FFF_u16) * shunt_ohms)
                ),
            ));
        }
        if cal < 1.0 {
            return Err(ConfigError::new(
                "max_current_a",
                "too large for this shunt: the calibration value rounds to 0",
            ));
        }
        let avg = AVERAGES
            .iter()
            .position(|&a| a == averages)
            .ok_or_else(|| {
                ConfigError::new("averages", format!("{averages} is not one of {AVERAGES:?}"))
            })? as u16;
        let ct = CONVERSION_TIMES_US
            .iter()
            .position(|&t| t == conversion_time_us)
            .ok_or_else(|| {
                ConfigError::new(
                    "conversion_time_us",
                    format!("{conversion_time_us} is not one of {CONVERSION_TIMES_US:?}"),
                )
            })? as u16;
        // Bit 14 is fixed at 1 (the reset value 0x4127 has it); MODE 0b111 = shunt and bus,
        // continuous.
        let config = 0x4000 | (avg << 9) | (ct << 6) | (ct << 3) | 0b111;
        let cal = cal as u16;
        Ok(Calibration {
            config,
            cal,
            current_lsb_a: 0.00512 / (f64::from(cal) * shunt_ohms),
        })
    }
}

/// One INA226 at one I2C address.
#[derive(Debug)]
pub struct Ina226 {
    addr7: u8,
    calibration: Calibration,
    /// −1 when the shunt is mounted the other way round.
    sign: f64,
    /// Battery voltage per VBUS pin volt.
    divider: f64,
    /// The manufacturer ID was checked.
    identified: bool,
    /// The last poll found VBUS beyond its rated range (logged once per episode).
    over_range: bool,
}

/// The VBUS pin's rated maximum, V (datasheet: bus voltage measurement range 0..36 V).
pub const BUS_VOLTAGE_MAX_V: f64 = 36.0;

impl Ina226 {
    fn read(&self, bus: &mut dyn Bus, register: u8) -> Result<u16, DriverError> {
        let operation = format!(
            "read INA226 register {register:#04x} at {:#04x}",
            self.addr7
        );
        let bytes = bus
            .i2c_write_read(self.addr7, &[register], 2)
            .map_err(DriverError::bus(operation.clone()))?;
        match bytes[..] {
            [hi, lo] => Ok(u16::from_be_bytes([hi, lo])),
            _ => Err(DriverError::ShortAnswer {
                operation,
                expected: 2,
                got: bytes.len(),
            }),
        }
    }

    fn write(&self, bus: &mut dyn Bus, register: u8, value: u16) -> Result<(), DriverError> {
        let [hi, lo] = value.to_be_bytes();
        bus.i2c_write(self.addr7, &[register, hi, lo])
            .map_err(DriverError::bus(format!(
                "write INA226 register {register:#04x} at {:#04x}",
                self.addr7
            )))
    }

    /// Checks the chip once, and (re)programs it when the calibration register lost its value.
    fn ensure_configured(&mut self, bus: &mut dyn Bus) -> Result<(), DriverError> {
        if !self.identified {
            let id = self.read(bus, reg::MANUFACTURER_ID)?;
            if id != MANUFACTURER_ID {
                return Err(DriverError::Device(format!(
                    "device at {:#04x} has manufacturer ID {id:#06x}, an INA226 has {MANUFACTURER_ID:#06x}",
                    self.addr7
                )));
            }
            self.identified = true;
        }
        if self.read(bus, reg::CALIBRATION)? != self.calibration.cal {
            self.write(bus, reg::CONFIGURATION, self.calibration.config)?;
            self.write(bus, reg::CALIBRATION, self.calibration.cal)?;
            bus.log(
                LogLevel::Info,
                &format!(
                    "ina226 at {:#04x}: configured {:#06x}, calibration {}",
                    self.addr7, self.calibration.config, self.calibration.cal
                ),
            );
        }
        Ok(())
    }
}

impl Driver for Ina226 {
    const INFO: DriverInfo = DriverInfo {
        name: "ina226",
        version: env!("CARGO_PKG_VERSION"),
        roles: &[Role::BatteryMeter],
    };

    fn new(options: &toml::Table, address: DeviceAddress) -> Result<Self, ConfigError> {
        let mut o = Options::new(options);
        let shunt_ohms = o.required_f64("shunt_ohms")?;
        let max_current_a = o.required_f64("max_current_a")?;
        let averages = o.i64("averages")?.unwrap_or(16);
        let conversion_time_us = o.i64("conversion_time_us")?.unwrap_or(1100);
        let invert = o.bool("invert")?.unwrap_or(false);
        let divider = o.f64("voltage_divider")?.unwrap_or(1.0);
        o.finish()?;
        if !(divider.is_finite() && divider >= 1.0) {
            return Err(ConfigError::new(
                "voltage_divider",
                format!("{divider} must be a ratio of at least 1 (battery volts per VBUS volt)"),
            ));
        }
        let small = |key: &str, v: i64| {
            u32::try_from(v).map_err(|_| ConfigError::new(key, format!("{v} must be positive")))
        };
        let calibration = Calibration::new(
            shunt_ohms,
            max_current_a,
            small("averages", averages)?,
            small("conversion_time_us", conversion_time_us)?,
        )?;
        Ok(Ina226 {
            addr7: require_i2c_address(address)?,
            calibration,
            sign: if invert { -1.0 } else { 1.0 },
            divider,
            identified: false,
            over_range: false,
        })
    }

    fn poll(&mut self, bus: &mut dyn Bus) -> Result<Readings, DriverError> {
        self.ensure_configured(bus)?;
        let mask = self.read(bus, reg::MASK_ENABLE)?;
        let bus_raw = self.read(bus, reg::BUS_VOLTAGE)?;
        let current_raw = self.read(bus, reg::CURRENT)? as i16;
        let power_raw = self.read(bus, reg::POWER)?;

        let lsb = self.calibration.current_lsb_a;
        let pin_v = f64::from(bus_raw & 0x7FFF) * BUS_VOLTAGE_LSB_V;
        let in_range = pin_v <= BUS_VOLTAGE_MAX_V;
        if in_range == self.over_range {
            self.over_range = !in_range;
            let message = if in_range {
                format!("ina226 at {:#04x}: VBUS back in range", self.addr7)
            } else {
                format!(
                    "ina226 at {:#04x}: VBUS reads {pin_v:.2} V, beyond the rated                      {BUS_VOLTAGE_MAX_V} V; battery voltage unknown (set voltage_divider?)",
                    self.addr7
                )
            };
            bus.log(LogLevel::Warn, &message);
        }
        let mut r = Readings {
            battery_voltage_v: in_range.then_some(pin_v * self.divider),
            ..Readings::default()
        };
        if mask & OVF != 0 {
            // The current and power registers hold garbage after an overflow.
            r.raise(Flag::Overcurrent);
        } else {
            let current = self.sign * f64::from(current_raw) * lsb;
            r.battery_current_a = Some(current + 0.0);
            let magnitude = f64::from(power_raw) * 25.0 * lsb * self.divider;
            r.battery_power_w =
                in_range.then_some(if current < 0.0 { -magnitude } else { magnitude });
        }
        Ok(r)
    }
}

ems_driver_sdk::export_driver!(Ina226);

#[cfg(test)]
mod tests {
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
}
