//! Modbus RTU over a serial port and Modbus TCP, on tokio-modbus.
//!
//! tokio-modbus silently drops bytes that fail the CRC and keeps waiting, so a garbled answer
//! would look like a timeout. The serial stream is wrapped in a [`Sniffer`] that counts the
//! bytes received during a transaction: a timeout after bytes did arrive is reported as
//! [`BusError::Crc`] (a corrupted answer), a timeout in silence as [`BusError::Timeout`]. After
//! either, the port is reopened so no stale bytes can be taken for the next answer.
//!
//! Between frames the line stays silent for at least 3.5 character times (1.75 ms above
//! 19200 baud, as the Modbus serial line spec fixes) plus the configured extra delay.
//!
//! Over TCP, a failed transaction drops the connection and the next attempt connects again
//! (within `timeout_ms`), so a gateway that restarts or closes idle connections is picked up
//! again. A gateway's exceptions 0x0A (path unavailable) and 0x0B (target device failed to
//! respond) relay the serial device's silence: they are reported as [`BusError::Timeout`], not
//! as the device's own answer, so drivers do not read them as "register not implemented" and an
//! unreachable device behind a gateway goes COMM_LOSS. The connection is kept for those.

use std::borrow::Cow;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context as TaskContext, Poll};
use std::time::{Duration, Instant};

use ems_driver_sdk::BusError;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_modbus::client::{Client, Context};
use tokio_modbus::slave::SlaveContext;
use tokio_modbus::{Request as MbRequest, Response as MbResponse, Slave};
use tokio_serial::{
    DataBits, Parity as SerialParity, SerialPortBuilderExt, SerialStream, StopBits,
};

use super::{Request, Response};
use crate::config::{BusConfig, Parity};

pub(crate) struct ModbusTransport {
    name: String,
    config: BusConfig,
    ctx: Option<Context>,
    received: Arc<AtomicUsize>,
    /// Minimum silence between the end of one transaction and the next frame.
    gap: Duration,
    last_done: Instant,
}

impl ModbusTransport {
    pub(crate) fn new(name: &str, config: BusConfig) -> Self {
        let gap = match &config {
            BusConfig::Rtu {
                baud,
                extra_delay_ms,
                ..
            } => {
                let char_s = 11.0 / *baud as f64;
                Duration::from_secs_f64((3.5 * char_s).max(0.00175))
                    + Duration::from_millis(*extra_delay_ms)
            }
            _ => Duration::ZERO,
        };
        ModbusTransport {
            name: name.to_string(),
            config,
            ctx: None,
            received: Arc::new(AtomicUsize::new(0)),
            gap,
            last_done: Instant::now(),
        }
    }

    /// Changes the time to wait for an answer (`ems-agent scan` waits briefly for units that may
    /// not exist, longer for the identification reads of a unit that answered).
    pub(crate) fn set_timeout(&mut self, timeout: Duration) {
        let ms = timeout.as_millis().try_into().unwrap_or(u64::MAX);
        if let BusConfig::Rtu { timeout_ms, .. } | BusConfig::Tcp { timeout_ms, .. } =
            &mut self.config
        {
            *timeout_ms = ms;
        }
    }

    fn timeout_and_retries(&self) -> (Duration, u32) {
        match &self.config {
            BusConfig::Rtu {
                timeout_ms,
                retries,
                ..
            }
            | BusConfig::Tcp {
                timeout_ms,
                retries,
                ..
            } => (Duration::from_millis(*timeout_ms), *retries),
            _ => (Duration::from_millis(500), 0),
        }
    }

    async fn open(&mut self) -> Result<&mut Context, BusError> {
        if self.ctx.is_none() {
            let ctx = match &self.config {
                BusConfig::Rtu {
                    port,
                    baud,
                    parity,
                    data_bits,
                    stop_bits,
                    ..
                } => {
                    let path = port.to_string_lossy();
                    let stream = tokio_serial::new(path.as_ref(), *baud)
                        .parity(match parity {
                            Parity::None => SerialParity::None,
                            Parity::Even => SerialParity::Even,
                            Parity::Odd => SerialParity::Odd,
                        })
                        .data_bits(match data_bits {
                            5 => DataBits::Five,
                            6 => DataBits::Six,
                            7 => DataBits::Seven,
                            _ => DataBits::Eight,
                        })
                        .stop_bits(if *stop_bits == 2 {
                            StopBits::Two
                        } else {
                            StopBits::One
                        })
                        .open_native_async()
                        .map_err(|e| {
                            BusError::Other(format!("bus {}: cannot open {path}: {e}", self.name))
                        })?;
                    tokio_modbus::client::rtu::attach(Sniffer {
                        inner: stream,
                        received: self.received.clone(),
                    })
                }
                BusConfig::Tcp {
                    address,
                    timeout_ms,
                    ..
                } => {
                    let connect = tokio::net::TcpStream::connect(address.as_str());
                    let stream = tokio::time::timeout(Duration::from_millis(*timeout_ms), connect)
                        .await
                        .map_err(|_| BusError::Timeout)?
                        .map_err(|e| {
                            BusError::Other(format!(
                                "bus {}: cannot connect to {address}: {e}",
                                self.name
                            ))
                        })?;
                    let _ = stream.set_nodelay(true);
                    tokio_modbus::client::tcp::attach(stream)
                }
                _ => return Err(BusError::Unsupported),
            };
            self.ctx = Some(ctx);
        }
        Ok(self.ctx.as_mut().expect("just opened"))
    }

    pub(crate) async fn execute(
        &mut self,
        req: &Request,
        record: &mut super::AttemptRecorder<'_>,
    ) -> Result<Response, BusError> {
        let (timeout, retries) = self.timeout_and_retries();
        let mut last_err = BusError::Timeout;
        for _attempt in 0..=retries {
            let since = self.last_done.elapsed();
            if since < self.gap {
                tokio::time::sleep(self.gap - since).await;
            }
            let started = Instant::now();
            let result = self.attempt(req, timeout).await;
            let gateway_silence =
                matches!(result, Err(BusError::Exception(code)) if is_gateway_failure(code));
            let result = if gateway_silence {
                Err(BusError::Timeout)
            } else {
                result
            };
            self.last_done = Instant::now();
            record(&result, started.elapsed());
            match result {
                Ok(r) => return Ok(r),
                Err(e @ BusError::Exception(_)) => return Err(e),
                Err(e) => {
                    // Reopen: stale bytes of a late or garbled answer must not be read as the
                    // next one. A gateway that answered has nothing stale on the connection.
                    if !gateway_silence {
                        self.ctx = None;
                    }
                    last_err = e;
                }
            }
        }
        Err(last_err)
    }

    async fn attempt(&mut self, req: &Request, timeout: Duration) -> Result<Response, BusError> {
        let received = self.received.clone();
        let ctx = self.open().await?;
        let (unit, mb) = match req {
            Request::ReadHolding { unit, addr, count } => {
                (*unit, MbRequest::ReadHoldingRegisters(*addr, *count))
            }
            Request::ReadInput { unit, addr, count } => {
                (*unit, MbRequest::ReadInputRegisters(*addr, *count))
            }
            Request::ReadCoils { unit, addr, count } => {
                (*unit, MbRequest::ReadCoils(*addr, *count))
            }
            Request::WriteSingle { unit, addr, value } => {
                (*unit, MbRequest::WriteSingleRegister(*addr, *value))
            }
            Request::WriteMultiple { unit, addr, values } => (
                *unit,
                MbRequest::WriteMultipleRegisters(*addr, Cow::Owned(values.clone())),
            ),
            _ => return Err(BusError::Unsupported),
        };
        ctx.set_slave(Slave(unit));
        received.store(0, Ordering::Relaxed);
        match tokio::time::timeout(timeout, ctx.call(mb)).await {
            Err(_elapsed) => {
                if received.load(Ordering::Relaxed) > 0 {
                    Err(BusError::Crc)
                } else {
                    Err(BusError::Timeout)
                }
            }
            // tokio-modbus reports a garbled answer it could not resynchronise on as
            // InvalidData: a corrupted frame, counted with the CRC errors.
            Ok(Err(tokio_modbus::Error::Transport(e)))
                if e.kind() == std::io::ErrorKind::InvalidData
                    && received.load(Ordering::Relaxed) > 0 =>
            {
                Err(BusError::Crc)
            }
            Ok(Err(e)) => Err(BusError::Other(e.to_string())),
            Ok(Ok(Err(exception))) => Err(BusError::Exception(u8::from(exception))),
            Ok(Ok(Ok(resp))) => Ok(match resp {
                MbResponse::ReadHoldingRegisters(v) | MbResponse::ReadInputRegisters(v) => {
                    Response::Registers(v)
                }
                MbResponse::ReadCoils(v) => Response::Coils(v),
                _ => Response::Done,
            }),
        }
    }
}

/// Exceptions 0x0A (gateway path unavailable) and 0x0B (gateway target device failed to
/// respond): a gateway saying the device behind it did not answer.
fn is_gateway_failure(code: u8) -> bool {
    matches!(code, 0x0A | 0x0B)
}

/// A serial stream that counts the bytes it reads.
struct Sniffer {
    inner: SerialStream,
    received: Arc<AtomicUsize>,
}

impl std::fmt::Debug for Sniffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sniffer").finish_non_exhaustive()
    }
}

impl AsyncRead for Sniffer {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let r = Pin::new(&mut this.inner).poll_read(cx, buf);
        let n = buf.filled().len() - before;
        this.received.fetch_add(n, Ordering::Relaxed);
        r
    }
}

impl AsyncWrite for Sniffer {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, data)
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}
