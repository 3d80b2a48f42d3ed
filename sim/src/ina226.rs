//! TI INA226 current/power monitor on I2C, measuring the battery current through a shunt.
//!
//! Source: TI INA226 datasheet (SBOS547A): registers 00h configuration, 01h shunt voltage
//! (2.5 µV/LSB, two's complement), 02h bus voltage (1.25 mV/LSB), 03h power
//! (25 × Current_LSB), 04h current (shunt × CAL / 2048), 05h calibration, FEh manufacturer id
//! 5449h, FFh die id 2260h. Registers are 16-bit, big-endian; a write of one byte sets the
//! register pointer, a write of three bytes sets a register, a read returns the pointed register.

use crate::physics::Site;

#[derive(Debug, Clone)]
pub struct Ina226 {
    pub address: u8,
    /// Shunt resistance, Ω; the shunt voltage is battery current × this (+ = charging).
    pub shunt_ohms: f64,
    /// Battery volts per VBUS pin volt: the resistive divider a 48 V battery needs in front of
    /// the pin, rated 0..36 V.
    pub divider: f64,
    pointer: u8,
    config: u16,
    calibration: u16,
}

impl Ina226 {
    pub fn new(address: u8, shunt_ohms: f64, divider: f64) -> Self {
        Ina226 {
            address,
            shunt_ohms,
            divider,
            pointer: 0,
            config: 0x4127,
            calibration: 0,
        }
    }

    fn shunt_reg(&self, site: &Site) -> i16 {
        let volts = site.battery_current_a() * self.shunt_ohms;
        (volts / 2.5e-6)
            .round()
            .clamp(i16::MIN as f64, i16::MAX as f64) as i16
    }

    fn bus_reg(&self, site: &Site) -> u16 {
        (site.battery_voltage_v() / self.divider / 1.25e-3)
            .round()
            .clamp(0.0, 0x7FFF as f64) as u16
    }

    fn register(&self, site: &Site, reg: u8) -> u16 {
        match reg {
            0x00 => self.config,
            0x01 => self.shunt_reg(site) as u16,
            0x02 => self.bus_reg(site),
            0x03 => {
                // Power = |current register| × bus register / 20000 (datasheet 7.5).
                let current = self.current_reg(site) as i32;
                ((current.unsigned_abs() as u64 * self.bus_reg(site) as u64) / 20_000) as u16
            }
            0x04 => self.current_reg(site) as u16,
            0x05 => self.calibration,
            0xFE => 0x5449,
            0xFF => 0x2260,
            _ => 0,
        }
    }

    fn current_reg(&self, site: &Site) -> i16 {
        let c = self.shunt_reg(site) as i64 * self.calibration as i64 / 2048;
        c.clamp(i16::MIN as i64, i16::MAX as i64) as i16
    }

    /// An I2C write transaction. Returns false (NACK) for a register that does not exist.
    pub fn write(&mut self, data: &[u8]) -> bool {
        let Some(&reg) = data.first() else {
            return true;
        };
        if !matches!(reg, 0x00..=0x07 | 0xFE | 0xFF) {
            return false;
        }
        self.pointer = reg;
        if data.len() >= 3 {
            let value = u16::from_be_bytes([data[1], data[2]]);
            match reg {
                0x00 => self.config = value & 0x7FFF,
                0x05 => self.calibration = value & 0x7FFF,
                _ => {}
            }
        }
        true
    }

    /// An I2C read transaction of `len` bytes from the pointed register.
    pub fn read(&self, site: &Site, len: usize) -> Vec<u8> {
        let v = self.register(site, self.pointer).to_be_bytes();
        (0..len).map(|i| v[i % 2]).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::physics::{Site, SiteParams};

    #[test]
    fn current_register_follows_the_datasheet_formula() {
        let mut site = Site::new(SiteParams::default(), 50.0);
        site.command(2000.0, 0.0);
        for _ in 0..5 {
            site.advance(1.0);
        }
        let mut dev = Ina226::new(0x40, 0.001, 2.0);
        // Current_LSB = 80 A / 2^15; CAL = 0.00512 / (LSB × R).
        let lsb = 80.0 / 32768.0;
        let cal = (0.00512 / (lsb * 0.001)) as u16;
        assert!(dev.write(&[0x05, (cal >> 8) as u8, cal as u8]));
        assert!(dev.write(&[0x04]));
        let raw = i16::from_be_bytes(dev.read(&site, 2).try_into().unwrap());
        let amps = raw as f64 * lsb;
        assert!(
            (amps - site.battery_current_a()).abs() < 0.05,
            "{amps} vs {}",
            site.battery_current_a()
        );
        assert!(!dev.write(&[0x42]), "no such register: NACK");
    }
}
