//! [`MemoryBus`]: an in-memory Modbus register bank and I2C register-device model implementing
//! [`Bus`], so drivers are unit-tested on register images built from the published maps, without
//! a host, a serial port or a plugin.
//!
//! It answers the way real devices do where drivers must cope: a read that touches an unmapped
//! register gets Modbus exception 2, a read of more than 125 registers gets exception 3, a unit
//! nobody answers for times out, an I2C address nobody answers for NACKs. Faults can be injected
//! per unit and register range, and every transaction is recorded so tests can count them.

use std::collections::BTreeMap;
use std::ops::RangeInclusive;

use crate::bus::{Bus, BusError, Request};
use crate::model::LogLevel;
use crate::regs::{MAX_READ_REGISTERS, MAX_WRITE_REGISTERS};

#[derive(Default)]
struct ModbusDevice {
    holding: BTreeMap<u16, u16>,
    input: BTreeMap<u16, u16>,
    coils: BTreeMap<u16, bool>,
    /// Register ranges whose every transaction fails with the given error.
    faults: Vec<(RangeInclusive<u16>, BusError)>,
    /// How many values every read answer is short by.
    short_by: usize,
    offline: bool,
}

impl ModbusDevice {
    fn check(&self, addr: u16, count: usize) -> Result<(), BusError> {
        if self.offline {
            return Err(BusError::Timeout);
        }
        let last = addr as usize + count.max(1) - 1;
        for (range, error) in &self.faults {
            if (*range.start() as usize) <= last && addr <= *range.end() {
                return Err(error.clone());
            }
        }
        Ok(())
    }
}

/// A register-style I2C device (an 8-bit register pointer selecting 16-bit big-endian registers),
/// the model of the INA2xx family and many other sensors.
#[derive(Default)]
struct I2cRegisterDevice {
    registers: BTreeMap<u8, u16>,
    pointer: u8,
    fault: Option<BusError>,
}

impl I2cRegisterDevice {
    fn write(&mut self, data: &[u8]) -> Result<(), BusError> {
        if let Some(error) = &self.fault {
            return Err(error.clone());
        }
        match data {
            [] => Ok(()),
            [pointer] => {
                self.pointer = *pointer;
                Ok(())
            }
            [pointer, hi, lo] => {
                self.pointer = *pointer;
                self.registers
                    .insert(*pointer, u16::from_be_bytes([*hi, *lo]));
                Ok(())
            }
            _ => Err(BusError::Other(format!(
                "register device takes 1 or 3 bytes per write, got {}",
                data.len()
            ))),
        }
    }

    fn read(&mut self, len: usize) -> Result<Vec<u8>, BusError> {
        if let Some(error) = &self.fault {
            return Err(error.clone());
        }
        let value = self.registers.get(&self.pointer).copied().unwrap_or(0);
        Ok(value
            .to_be_bytes()
            .iter()
            .copied()
            .cycle()
            .take(len)
            .collect())
    }
}

/// An in-memory bus with any number of Modbus units and I2C register devices.
#[derive(Default)]
pub struct MemoryBus {
    units: BTreeMap<u8, ModbusDevice>,
    i2c: BTreeMap<u8, I2cRegisterDevice>,
    /// Every transaction asked of the bus, successful or not, in order.
    transactions: Vec<Request>,
    logs: Vec<(LogLevel, String)>,
}

impl MemoryBus {
    pub fn new() -> MemoryBus {
        MemoryBus::default()
    }

    /// Sets holding registers `addr..addr + values.len()` of `unit` (creating the unit).
    pub fn set_holding(&mut self, unit: u8, addr: u16, values: &[u16]) {
        let device = self.units.entry(unit).or_default();
        for (i, v) in values.iter().enumerate() {
            device.holding.insert(addr + i as u16, *v);
        }
    }

    /// Sets input registers `addr..addr + values.len()` of `unit` (creating the unit).
    pub fn set_input(&mut self, unit: u8, addr: u16, values: &[u16]) {
        let device = self.units.entry(unit).or_default();
        for (i, v) in values.iter().enumerate() {
            device.input.insert(addr + i as u16, *v);
        }
    }

    /// Sets coils `addr..addr + values.len()` of `unit` (creating the unit).
    pub fn set_coils(&mut self, unit: u8, addr: u16, values: &[bool]) {
        let device = self.units.entry(unit).or_default();
        for (i, v) in values.iter().enumerate() {
            device.coils.insert(addr + i as u16, *v);
        }
    }

    /// The current value of a holding register, e.g. to check what a driver wrote.
    pub fn holding(&self, unit: u8, addr: u16) -> Option<u16> {
        self.units.get(&unit)?.holding.get(&addr).copied()
    }

    /// Makes every transaction on `unit` that touches `range` fail with `error`.
    pub fn fail(&mut self, unit: u8, range: RangeInclusive<u16>, error: BusError) {
        self.units
            .entry(unit)
            .or_default()
            .faults
            .push((range, error));
    }

    /// Makes every read answer of `unit` short by `missing` values.
    pub fn short_answers(&mut self, unit: u8, missing: usize) {
        self.units.entry(unit).or_default().short_by = missing;
    }

    /// Makes `unit` stop (or resume) answering: every transaction times out.
    pub fn set_offline(&mut self, unit: u8, offline: bool) {
        self.units.entry(unit).or_default().offline = offline;
    }

    /// Removes every injected fault, short answer and offline state of `unit`.
    pub fn clear_faults(&mut self, unit: u8) {
        if let Some(device) = self.units.get_mut(&unit) {
            device.faults.clear();
            device.short_by = 0;
            device.offline = false;
        }
    }

    /// Puts a register-style I2C device at `addr7` (or keeps the one there) and sets a register.
    pub fn set_i2c_register(&mut self, addr7: u8, register: u8, value: u16) {
        self.i2c
            .entry(addr7)
            .or_default()
            .registers
            .insert(register, value);
    }

    /// A register of the I2C device at `addr7`, e.g. to check what a driver configured.
    pub fn i2c_register(&self, addr7: u8, register: u8) -> Option<u16> {
        self.i2c.get(&addr7)?.registers.get(&register).copied()
    }

    /// Makes every transfer to the I2C device at `addr7` fail with `error` (`None` heals it).
    pub fn fail_i2c(&mut self, addr7: u8, error: Option<BusError>) {
        self.i2c.entry(addr7).or_default().fault = error;
    }

    /// Every transaction so far, in order.
    pub fn transactions(&self) -> &[Request] {
        &self.transactions
    }

    /// Forgets the recorded transactions (to count those of one poll).
    pub fn clear_transactions(&mut self) {
        self.transactions.clear();
    }

    /// Every log line the driver wrote.
    pub fn logs(&self) -> &[(LogLevel, String)] {
        &self.logs
    }

    fn read_table(
        &mut self,
        unit: u8,
        addr: u16,
        count: u16,
        input: bool,
    ) -> Result<Vec<u16>, BusError> {
        let device = self.units.get(&unit).ok_or(BusError::Timeout)?;
        device.check(addr, count as usize)?;
        if count == 0 || count > MAX_READ_REGISTERS {
            return Err(BusError::Exception(BusError::ILLEGAL_DATA_VALUE));
        }
        let table = if input {
            &device.input
        } else {
            &device.holding
        };
        let mut out = Vec::with_capacity(count as usize);
        for a in addr as u32..addr as u32 + count as u32 {
            let a = u16::try_from(a).map_err(|_| BusError::Exception(2))?;
            out.push(
                *table
                    .get(&a)
                    .ok_or(BusError::Exception(BusError::ILLEGAL_DATA_ADDRESS))?,
            );
        }
        out.truncate(out.len().saturating_sub(device.short_by));
        Ok(out)
    }

    fn i2c_device(&mut self, addr7: u8) -> Result<&mut I2cRegisterDevice, BusError> {
        if self.units.is_empty() || !self.i2c.is_empty() {
            self.i2c.get_mut(&addr7).ok_or(BusError::Nack)
        } else {
            Err(BusError::Unsupported)
        }
    }
}

impl Bus for MemoryBus {
    fn read_holding_registers(
        &mut self,
        unit: u8,
        addr: u16,
        count: u16,
    ) -> Result<Vec<u16>, BusError> {
        self.transactions
            .push(Request::ReadHolding { unit, addr, count });
        self.read_table(unit, addr, count, false)
    }

    fn read_input_registers(
        &mut self,
        unit: u8,
        addr: u16,
        count: u16,
    ) -> Result<Vec<u16>, BusError> {
        self.transactions
            .push(Request::ReadInput { unit, addr, count });
        self.read_table(unit, addr, count, true)
    }

    fn read_coils(&mut self, unit: u8, addr: u16, count: u16) -> Result<Vec<bool>, BusError> {
        self.transactions
            .push(Request::ReadCoils { unit, addr, count });
        let device = self.units.get(&unit).ok_or(BusError::Timeout)?;
        device.check(addr, count as usize)?;
        if count == 0 || count > 2000 {
            return Err(BusError::Exception(BusError::ILLEGAL_DATA_VALUE));
        }
        let mut out = Vec::with_capacity(count as usize);
        for a in addr as u32..addr as u32 + count as u32 {
            let a = u16::try_from(a).map_err(|_| BusError::Exception(2))?;
            out.push(
                *device
                    .coils
                    .get(&a)
                    .ok_or(BusError::Exception(BusError::ILLEGAL_DATA_ADDRESS))?,
            );
        }
        out.truncate(out.len().saturating_sub(device.short_by));
        Ok(out)
    }

    fn write_single_register(&mut self, unit: u8, addr: u16, value: u16) -> Result<(), BusError> {
        self.transactions
            .push(Request::WriteSingle { unit, addr, value });
        let device = self.units.get_mut(&unit).ok_or(BusError::Timeout)?;
        device.check(addr, 1)?;
        match device.holding.get_mut(&addr) {
            Some(slot) => {
                *slot = value;
                Ok(())
            }
            None => Err(BusError::Exception(BusError::ILLEGAL_DATA_ADDRESS)),
        }
    }

    fn write_multiple_registers(
        &mut self,
        unit: u8,
        addr: u16,
        values: &[u16],
    ) -> Result<(), BusError> {
        self.transactions.push(Request::WriteMultiple {
            unit,
            addr,
            values: values.to_vec(),
        });
        let device = self.units.get_mut(&unit).ok_or(BusError::Timeout)?;
        device.check(addr, values.len())?;
        if values.is_empty() || values.len() > MAX_WRITE_REGISTERS as usize {
            return Err(BusError::Exception(BusError::ILLEGAL_DATA_VALUE));
        }
        let all_exist = (0..values.len()).all(|i| {
            u16::try_from(addr as usize + i).is_ok_and(|a| device.holding.contains_key(&a))
        });
        if !all_exist {
            return Err(BusError::Exception(BusError::ILLEGAL_DATA_ADDRESS));
        }
        for (i, v) in values.iter().enumerate() {
            device.holding.insert(addr + i as u16, *v);
        }
        Ok(())
    }

    fn i2c_write(&mut self, addr7: u8, data: &[u8]) -> Result<(), BusError> {
        self.transactions.push(Request::I2cWrite {
            addr7,
            data: data.to_vec(),
        });
        self.i2c_device(addr7)?.write(data)
    }

    fn i2c_read(&mut self, addr7: u8, len: usize) -> Result<Vec<u8>, BusError> {
        self.transactions.push(Request::I2cRead { addr7, len });
        self.i2c_device(addr7)?.read(len)
    }

    fn i2c_write_read(&mut self, addr7: u8, data: &[u8], len: usize) -> Result<Vec<u8>, BusError> {
        self.transactions.push(Request::I2cWriteRead {
            addr7,
            data: data.to_vec(),
            len,
        });
        let device = self.i2c_device(addr7)?;
        device.write(data)?;
        device.read(len)
    }

    fn log(&mut self, level: LogLevel, message: &str) {
        self.logs.push((level, message.to_string()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_like_a_device() {
        let mut bus = MemoryBus::new();
        bus.set_holding(1, 100, &[1, 2, 3]);
        assert_eq!(
            bus.read_holding_registers(1, 100, 3).unwrap(),
            vec![1, 2, 3]
        );
        assert_eq!(
            bus.read_holding_registers(1, 100, 4),
            Err(BusError::Exception(2))
        );
        assert_eq!(
            bus.read_input_registers(1, 100, 1),
            Err(BusError::Exception(2))
        );
        assert_eq!(
            bus.read_holding_registers(2, 100, 1),
            Err(BusError::Timeout)
        );
        assert_eq!(
            bus.read_holding_registers(1, 100, 126),
            Err(BusError::Exception(3))
        );
        bus.write_multiple_registers(1, 101, &[20, 30]).unwrap();
        assert_eq!(bus.holding(1, 102), Some(30));
        assert_eq!(
            bus.write_single_register(1, 103, 1),
            Err(BusError::Exception(2))
        );
        bus.fail(1, 102..=102, BusError::Crc);
        assert_eq!(bus.read_holding_registers(1, 100, 2).unwrap(), vec![1, 20]);
        assert_eq!(bus.read_holding_registers(1, 100, 3), Err(BusError::Crc));
        assert_eq!(bus.i2c_write(0x40, &[0]), Err(BusError::Unsupported));
    }

    #[test]
    fn i2c_register_device() {
        let mut bus = MemoryBus::new();
        bus.set_i2c_register(0x40, 0xFE, 0x5449);
        assert_eq!(
            bus.i2c_write_read(0x40, &[0xFE], 2).unwrap(),
            vec![0x54, 0x49]
        );
        bus.i2c_write(0x40, &[0x05, 0x0A, 0x00]).unwrap();
        assert_eq!(bus.i2c_register(0x40, 0x05), Some(0x0A00));
        assert_eq!(bus.i2c_read(0x41, 2), Err(BusError::Nack));
        assert_eq!(bus.transactions().len(), 3);
    }
}
