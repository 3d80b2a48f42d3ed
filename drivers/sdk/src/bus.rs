//! The [`Bus`] a driver talks through, the [`BusError`]s it can see, and [`Request`], one of its
//! transactions as a value.
//!
//! The host owns every port: it opens the serial line or socket, serialises transactions and
//! applies timeouts. A driver only asks for Modbus or I2C transactions on its device, so two
//! drivers on one RS-485 line never collide and a driver cannot hang the agent on a dead cable.

use serde::{Deserialize, Serialize};

use crate::model::LogLevel;

/// Transactions a driver may run on its device's bus. Implemented by the host (bridged across the
/// plugin ABI) and by [`MemoryBus`](crate::memory::MemoryBus) for tests.
///
/// A read may return fewer values than asked when the peer sent a short answer; drivers check the
/// length (the helpers in [`regs`](crate::regs) do).
pub trait Bus {
    /// Modbus function 0x03.
    fn read_holding_registers(
        &mut self,
        unit: u8,
        addr: u16,
        count: u16,
    ) -> Result<Vec<u16>, BusError>;
    /// Modbus function 0x04.
    fn read_input_registers(
        &mut self,
        unit: u8,
        addr: u16,
        count: u16,
    ) -> Result<Vec<u16>, BusError>;
    /// Modbus function 0x01.
    fn read_coils(&mut self, unit: u8, addr: u16, count: u16) -> Result<Vec<bool>, BusError>;
    /// Modbus function 0x06.
    fn write_single_register(&mut self, unit: u8, addr: u16, value: u16) -> Result<(), BusError>;
    /// Modbus function 0x10.
    fn write_multiple_registers(
        &mut self,
        unit: u8,
        addr: u16,
        values: &[u16],
    ) -> Result<(), BusError>;
    /// I2C write of `data` to the 7-bit address `addr7`.
    fn i2c_write(&mut self, addr7: u8, data: &[u8]) -> Result<(), BusError>;
    /// I2C read of `len` bytes from `addr7`.
    fn i2c_read(&mut self, addr7: u8, len: usize) -> Result<Vec<u8>, BusError>;
    /// I2C write then read with a repeated start (the usual "set register pointer, read it").
    fn i2c_write_read(&mut self, addr7: u8, data: &[u8], len: usize) -> Result<Vec<u8>, BusError>;
    /// A log line from the driver, tagged by the host with the device it belongs to.
    fn log(&mut self, level: LogLevel, message: &str);
}

/// One transaction a driver asks of its bus, as data: what [`MemoryBus`](crate::memory::MemoryBus)
/// records for tests to count and what the agent queues to the task that owns the physical bus.
/// Each variant is one [`Bus`] method with the same arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// [`Bus::read_holding_registers`], Modbus function 0x03.
    ReadHolding { unit: u8, addr: u16, count: u16 },
    /// [`Bus::read_input_registers`], Modbus function 0x04.
    ReadInput { unit: u8, addr: u16, count: u16 },
    /// [`Bus::read_coils`], Modbus function 0x01.
    ReadCoils { unit: u8, addr: u16, count: u16 },
    /// [`Bus::write_single_register`], Modbus function 0x06.
    WriteSingle { unit: u8, addr: u16, value: u16 },
    /// [`Bus::write_multiple_registers`], Modbus function 0x10.
    WriteMultiple {
        unit: u8,
        addr: u16,
        values: Vec<u16>,
    },
    /// [`Bus::i2c_write`].
    I2cWrite { addr7: u8, data: Vec<u8> },
    /// [`Bus::i2c_read`].
    I2cRead { addr7: u8, len: usize },
    /// [`Bus::i2c_write_read`].
    I2cWriteRead {
        addr7: u8,
        data: Vec<u8>,
        len: usize,
    },
}

impl Request {
    /// The Modbus unit or 7-bit I2C address the transaction is for (for per-device counters).
    pub fn target(&self) -> u8 {
        match self {
            Request::ReadHolding { unit, .. }
            | Request::ReadInput { unit, .. }
            | Request::ReadCoils { unit, .. }
            | Request::WriteSingle { unit, .. }
            | Request::WriteMultiple { unit, .. } => *unit,
            Request::I2cWrite { addr7, .. }
            | Request::I2cRead { addr7, .. }
            | Request::I2cWriteRead { addr7, .. } => *addr7,
        }
    }

    /// Whether this is an I2C transfer (otherwise a Modbus transaction).
    pub fn is_i2c(&self) -> bool {
        matches!(
            self,
            Request::I2cWrite { .. } | Request::I2cRead { .. } | Request::I2cWriteRead { .. }
        )
    }
}

/// Why a bus transaction failed.
///
/// [`BusError::Exception`] is the device's own answer ("I have no such register"); every other
/// variant says the transaction itself failed. Drivers treat them differently: an exception on an
/// optional block means "not implemented here", a timeout means "device unreachable".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BusError {
    /// No answer within the host's timeout.
    #[error("timeout: no answer from the device")]
    Timeout,
    /// An answer arrived with a bad checksum.
    #[error("CRC error in the answer")]
    Crc,
    /// The device answered with a Modbus exception (1 illegal function, 2 illegal data address,
    /// 3 illegal data value, 4 server device failure, 6 busy, 11 gateway target failed to respond).
    #[error("Modbus exception {0:#04x} ({name})", name = exception_name(*.0))]
    Exception(u8),
    /// The I2C device did not acknowledge its address or a byte.
    #[error("I2C NACK: no device acknowledged")]
    Nack,
    /// The bus cannot do this (an I2C transfer on a Modbus line, or the reverse).
    #[error("operation not supported on this bus")]
    Unsupported,
    /// Anything else the host could tell (port closed, framing error, ...).
    #[error("{0}")]
    Other(String),
}

impl BusError {
    /// Modbus exception 0x01.
    pub const ILLEGAL_FUNCTION: u8 = 0x01;
    /// Modbus exception 0x02: the register range does not exist on this device.
    pub const ILLEGAL_DATA_ADDRESS: u8 = 0x02;
    /// Modbus exception 0x03.
    pub const ILLEGAL_DATA_VALUE: u8 = 0x03;
    /// Modbus exception 0x04.
    pub const SERVER_DEVICE_FAILURE: u8 = 0x04;

    /// Whether the device itself answered (an exception), as opposed to the transaction failing.
    pub fn is_device_answer(&self) -> bool {
        matches!(self, BusError::Exception(_))
    }
}

/// The Modbus specification's name of an exception code, for messages.
pub fn exception_name(code: u8) -> &'static str {
    match code {
        0x01 => "illegal function",
        0x02 => "illegal data address",
        0x03 => "illegal data value",
        0x04 => "server device failure",
        0x05 => "acknowledge",
        0x06 => "server device busy",
        0x08 => "memory parity error",
        0x0A => "gateway path unavailable",
        0x0B => "gateway target device failed to respond",
        _ => "unknown exception",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exceptions_name_the_code() {
        assert_eq!(
            BusError::Exception(2).to_string(),
            "Modbus exception 0x02 (illegal data address)"
        );
        assert!(BusError::Exception(2).is_device_answer());
        assert!(!BusError::Timeout.is_device_answer());
    }

    #[test]
    fn requests_name_their_device() {
        let read = Request::ReadInput {
            unit: 3,
            addr: 30001,
            count: 2,
        };
        assert_eq!((read.target(), read.is_i2c()), (3, false));
        let transfer = Request::I2cWriteRead {
            addr7: 0x40,
            data: vec![0xFE],
            len: 2,
        };
        assert_eq!((transfer.target(), transfer.is_i2c()), (0x40, true));
    }
}
