//! The INA226's register map and [`Calibration`]: the register values and scales that the
//! options make of the chip. Pure arithmetic, no bus.

use ems_driver_sdk::ConfigError;

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
pub(crate) const OVF: u16 = 1 << 2;

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
