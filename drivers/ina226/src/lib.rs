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
//! - `calibration`: the register map and [`Calibration`], pure arithmetic from the options.
//! - this file: the [`Ina226`] driver and its export.
//! - `tests`: unit tests against the I2C register model of `ems_driver_sdk::MemoryBus`.

mod calibration;
#[cfg(test)]
mod tests;

pub use calibration::{BUS_VOLTAGE_LSB_V, Calibration, MANUFACTURER_ID, SHUNT_FULL_SCALE_V, reg};

use calibration::OVF;
use ems_driver_sdk::options::require_i2c_address;
use ems_driver_sdk::{
    Bus, ConfigError, DeviceAddress, Driver, DriverError, DriverInfo, Flag, LogLevel, Options,
    Readings, Role,
};

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
