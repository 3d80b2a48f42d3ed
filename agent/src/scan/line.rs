//! The read-only line a scan talks through: the agent's Modbus transport, spoken to only in
//! [`Read`]s, with its counters; and the check that the port or address can be used at all.

use std::os::unix::fs::OpenOptionsExt;
use std::time::Duration;

use ems_driver_sdk::BusError;
use ems_driver_sdk::regs::RegisterKind;

use super::ScanError;
use super::identify::ReadUnit;
use super::spec::{IDENTIFY_GIVE_UP_AFTER, Line, ScanSpec};
use crate::bus::modbus::ModbusTransport;
use crate::bus::{BusStats, Request, Response};

/// The only request a scan sends. It has no write form: [`Read::request`] is function 0x03 or
/// 0x04, nothing else.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Read {
    pub kind: RegisterKind,
    pub unit: u8,
    pub addr: u16,
    pub count: u16,
}

impl Read {
    /// The bus transaction: read holding (0x03) or input (0x04) registers.
    pub fn request(self) -> Request {
        let Read {
            unit, addr, count, ..
        } = self;
        match self.kind {
            RegisterKind::Holding => Request::ReadHolding { unit, addr, count },
            RegisterKind::Input => Request::ReadInput { unit, addr, count },
        }
    }
}

/// A bus opened for scanning: the agent's Modbus transport with no retries, spoken to only in
/// [`Read`]s, and the counters of what the line did.
pub(crate) struct ScanLine {
    pub(crate) transport: ModbusTransport,
    pub(crate) stats: BusStats,
}

impl ScanLine {
    pub(crate) async fn read(&mut self, read: Read) -> Result<Vec<u16>, BusError> {
        let stats = &mut self.stats;
        let mut record = |result: &Result<Response, BusError>, elapsed: Duration| {
            stats.record(read.unit, result, elapsed)
        };
        match self.transport.execute(&read.request(), &mut record).await? {
            Response::Registers(words) => Ok(words),
            other => Err(BusError::Other(format!("unexpected answer {other:?}"))),
        }
    }
}

/// One unit's registers through the scan line, giving up after consecutive timeouts.
pub(crate) struct UnitReader<'a> {
    pub(crate) line: &'a mut ScanLine,
    pub(crate) unit: u8,
    pub(crate) timeouts_in_a_row: u32,
}

impl ReadUnit for UnitReader<'_> {
    async fn read(
        &mut self,
        kind: RegisterKind,
        addr: u16,
        count: u16,
    ) -> Result<Vec<u16>, BusError> {
        if self.timeouts_in_a_row >= IDENTIFY_GIVE_UP_AFTER {
            return Err(BusError::Timeout);
        }
        let result = self
            .line
            .read(Read {
                kind,
                unit: self.unit,
                addr,
                count,
            })
            .await;
        match result {
            Err(BusError::Timeout) => self.timeouts_in_a_row += 1,
            _ => self.timeouts_in_a_row = 0,
        }
        result
    }
}

/// Checks that the line can be used at all, so a missing adapter is one clear error and not
/// 247 timeouts. [`run`] checks too; call it first to fail before printing the estimate.
pub async fn check_line(spec: &ScanSpec) -> Result<(), ScanError> {
    match &spec.line {
        Line::Rtu { port, .. } => {
            let name = port.display().to_string();
            let file = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .custom_flags(libc::O_NOCTTY | libc::O_NONBLOCK)
                .open(port)
                .map_err(|e| match e.kind() {
                    std::io::ErrorKind::NotFound => ScanError::NoSuchPort(name.clone()),
                    std::io::ErrorKind::PermissionDenied => {
                        ScanError::PermissionDenied(name.clone())
                    }
                    _ if e.raw_os_error() == Some(libc::EBUSY) => ScanError::Busy(name.clone()),
                    _ => ScanError::Port {
                        port: name.clone(),
                        source: e,
                    },
                })?;
            use std::os::fd::AsRawFd;
            // SAFETY: isatty only inspects the fd, which `file` keeps open during the call.
            if unsafe { libc::isatty(file.as_raw_fd()) } != 1 {
                return Err(ScanError::NotASerialPort(name));
            }
            Ok(())
        }
        Line::Tcp { address } => {
            let connect = tokio::net::TcpStream::connect(address.as_str());
            match tokio::time::timeout(spec.timeout.max(Duration::from_secs(3)), connect).await {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(e)) => Err(ScanError::Tcp {
                    address: address.clone(),
                    reason: e.to_string(),
                }),
                Err(_) => Err(ScanError::Tcp {
                    address: address.clone(),
                    reason: "no connection within 3 s".into(),
                }),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_scan_request_is_a_read() {
        for kind in [RegisterKind::Holding, RegisterKind::Input] {
            let r = Read {
                kind,
                unit: 1,
                addr: 0,
                count: 1,
            };
            assert!(matches!(
                r.request(),
                Request::ReadHolding { .. } | Request::ReadInput { .. }
            ));
        }
    }
}
