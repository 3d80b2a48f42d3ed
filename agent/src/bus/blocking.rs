//! The SDK's synchronous [`Bus`] for a driver running on a blocking thread: each call becomes a
//! transaction on the device's bus task and blocks that thread (never a runtime worker) until
//! the answer comes back.

use ems_driver_sdk::{Bus, BusError, LogLevel};
use tokio::runtime::Handle;

use super::{BusHandle, Request, Response};

pub struct DriverBus {
    pub bus: BusHandle,
    pub runtime: Handle,
    /// The device name, for its log lines.
    pub device: String,
}

impl DriverBus {
    fn call(&self, request: Request) -> Result<Response, BusError> {
        self.runtime.block_on(self.bus.call(request))
    }

    fn registers(&self, request: Request) -> Result<Vec<u16>, BusError> {
        match self.call(request)? {
            Response::Registers(v) => Ok(v),
            other => Err(BusError::Other(format!("unexpected answer {other:?}"))),
        }
    }

    fn bytes(&self, request: Request) -> Result<Vec<u8>, BusError> {
        match self.call(request)? {
            Response::Bytes(v) => Ok(v),
            Response::Done => Ok(Vec::new()),
            other => Err(BusError::Other(format!("unexpected answer {other:?}"))),
        }
    }
}

impl Bus for DriverBus {
    fn read_holding_registers(
        &mut self,
        unit: u8,
        addr: u16,
        count: u16,
    ) -> Result<Vec<u16>, BusError> {
        self.registers(Request::ReadHolding { unit, addr, count })
    }

    fn read_input_registers(
        &mut self,
        unit: u8,
        addr: u16,
        count: u16,
    ) -> Result<Vec<u16>, BusError> {
        self.registers(Request::ReadInput { unit, addr, count })
    }

    fn read_coils(&mut self, unit: u8, addr: u16, count: u16) -> Result<Vec<bool>, BusError> {
        match self.call(Request::ReadCoils { unit, addr, count })? {
            Response::Coils(v) => Ok(v),
            other => Err(BusError::Other(format!("unexpected answer {other:?}"))),
        }
    }

    fn write_single_register(&mut self, unit: u8, addr: u16, value: u16) -> Result<(), BusError> {
        self.call(Request::WriteSingle { unit, addr, value })
            .map(|_| ())
    }

    fn write_multiple_registers(
        &mut self,
        unit: u8,
        addr: u16,
        values: &[u16],
    ) -> Result<(), BusError> {
        self.call(Request::WriteMultiple {
            unit,
            addr,
            values: values.to_vec(),
        })
        .map(|_| ())
    }

    fn i2c_write(&mut self, addr7: u8, data: &[u8]) -> Result<(), BusError> {
        self.call(Request::I2cWrite {
            addr7,
            data: data.to_vec(),
        })
        .map(|_| ())
    }

    fn i2c_read(&mut self, addr7: u8, len: usize) -> Result<Vec<u8>, BusError> {
        self.bytes(Request::I2cRead { addr7, len })
    }

    fn i2c_write_read(&mut self, addr7: u8, data: &[u8], len: usize) -> Result<Vec<u8>, BusError> {
        self.bytes(Request::I2cWriteRead {
            addr7,
            data: data.to_vec(),
            len,
        })
    }

    fn log(&mut self, level: LogLevel, message: &str) {
        let device = self.device.as_str();
        match level {
            LogLevel::Error => tracing::error!(device, "{message}"),
            LogLevel::Warn => tracing::warn!(device, "{message}"),
            LogLevel::Info => tracing::info!(device, "{message}"),
            LogLevel::Debug => tracing::debug!(device, "{message}"),
            LogLevel::Trace => tracing::trace!(device, "{message}"),
        }
    }
}
