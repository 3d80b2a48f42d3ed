//! I2C buses: Linux i2c-dev (`/dev/i2c-N`, combined transfers through the `I2C_RDWR` ioctl)
//! and the simulated bus of ems-sim on a Unix socket (frame in `ems_driver_sdk::i2c_socket`).

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ems_driver_sdk::BusError;
use ems_driver_sdk::i2c_socket::{self, Header};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

use super::{Request, Response};

/// A transaction that has not finished after this long is a timeout.
const TIMEOUT: Duration = Duration::from_millis(500);

pub(crate) enum I2cTransport {
    Dev {
        path: PathBuf,
        file: Option<Arc<File>>,
    },
    Socket {
        path: PathBuf,
        conn: Option<UnixStream>,
    },
}

impl I2cTransport {
    pub(crate) fn dev(path: PathBuf) -> Self {
        I2cTransport::Dev { path, file: None }
    }

    pub(crate) fn socket(path: PathBuf) -> Self {
        I2cTransport::Socket { path, conn: None }
    }

    pub(crate) async fn execute(&mut self, req: &Request) -> Result<Response, BusError> {
        let (addr, write, read_len) = match req {
            Request::I2cWrite { addr7, data } => (*addr7, data.clone(), 0),
            Request::I2cRead { addr7, len } => (*addr7, Vec::new(), *len),
            Request::I2cWriteRead { addr7, data, len } => (*addr7, data.clone(), *len),
            _ => return Err(BusError::Unsupported),
        };
        // The simulated bus's limits are the ones both transports take.
        let header = Header::for_transfer(addr, write.len(), read_len)
            .map_err(|e| BusError::Other(e.to_string()))?;
        let result = match self {
            I2cTransport::Dev { path, file } => {
                dev_transfer(path, file, addr, write, read_len).await
            }
            I2cTransport::Socket { path, conn } => {
                let r = tokio::time::timeout(TIMEOUT, socket_transfer(path, conn, header, &write))
                    .await
                    .unwrap_or(Err(BusError::Timeout));
                if matches!(r, Err(BusError::Timeout | BusError::Other(_))) {
                    *conn = None;
                }
                r
            }
        };
        result.map(|bytes| {
            if read_len == 0 {
                Response::Done
            } else {
                Response::Bytes(bytes)
            }
        })
    }
}

async fn socket_transfer(
    path: &PathBuf,
    conn: &mut Option<UnixStream>,
    header: Header,
    write: &[u8],
) -> Result<Vec<u8>, BusError> {
    if conn.is_none() {
        let c = UnixStream::connect(path)
            .await
            .map_err(|e| BusError::Other(format!("cannot connect to {}: {e}", path.display())))?;
        *conn = Some(c);
    }
    let c = conn.as_mut().expect("connected");
    let mut frame = header.encode().to_vec();
    frame.extend_from_slice(write);
    let io = |e: std::io::Error| BusError::Other(format!("simulated I2C bus: {e}"));
    c.write_all(&frame).await.map_err(io)?;
    let status = c.read_u8().await.map_err(io)?;
    if status != i2c_socket::STATUS_OK {
        return Err(BusError::Nack);
    }
    let mut buf = vec![0u8; header.response_len()];
    c.read_exact(&mut buf).await.map_err(io)?;
    Ok(buf)
}

/// `struct i2c_msg` of `<linux/i2c.h>`.
#[repr(C)]
struct I2cMsg {
    addr: u16,
    flags: u16,
    len: u16,
    buf: *mut u8,
}

/// `struct i2c_rdwr_ioctl_data` of `<linux/i2c-dev.h>`.
#[repr(C)]
struct I2cRdwrData {
    msgs: *mut I2cMsg,
    nmsgs: u32,
}

const I2C_RDWR: libc::c_ulong = 0x0707;
const I2C_M_RD: u16 = 0x0001;

async fn dev_transfer(
    path: &PathBuf,
    file: &mut Option<Arc<File>>,
    addr: u8,
    mut write: Vec<u8>,
    read_len: usize,
) -> Result<Vec<u8>, BusError> {
    if file.is_none() {
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(|e| BusError::Other(format!("cannot open {}: {e}", path.display())))?;
        *file = Some(Arc::new(f));
    }
    let f = file.clone().expect("opened");
    tokio::task::spawn_blocking(move || {
        let mut read = vec![0u8; read_len];
        let mut msgs = Vec::with_capacity(2);
        if !write.is_empty() {
            msgs.push(I2cMsg {
                addr: addr as u16,
                flags: 0,
                len: write.len() as u16,
                buf: write.as_mut_ptr(),
            });
        }
        if read_len > 0 {
            msgs.push(I2cMsg {
                addr: addr as u16,
                flags: I2C_M_RD,
                len: read_len as u16,
                buf: read.as_mut_ptr(),
            });
        }
        let mut data = I2cRdwrData {
            msgs: msgs.as_mut_ptr(),
            nmsgs: msgs.len() as u32,
        };
        // SAFETY: the message buffers outlive the call and their lengths match; the kernel
        // reads/writes only within them.
        let rc = unsafe { libc::ioctl(f.as_raw_fd(), I2C_RDWR, &mut data as *mut I2cRdwrData) };
        if rc < 0 {
            let err = std::io::Error::last_os_error();
            return Err(match err.raw_os_error() {
                Some(libc::ENXIO) | Some(libc::EREMOTEIO) => BusError::Nack,
                Some(libc::ETIMEDOUT) => BusError::Timeout,
                _ => BusError::Other(format!("I2C transfer failed: {err}")),
            });
        }
        Ok(read)
    })
    .await
    .map_err(|e| BusError::Other(format!("I2C worker failed: {e}")))?
}

#[cfg(test)]
mod tests {
    use super::*;

    // The transfer itself needs a kernel I2C adapter, which the test machines lack (no i2c-dev,
    // no i2c-stub); the failures before and at the ioctl are checked here.
    #[tokio::test]
    async fn a_missing_adapter_or_a_non_i2c_device_is_a_clear_error() {
        let err = dev_transfer(
            &PathBuf::from("/dev/i2c-no-such"),
            &mut None,
            0x40,
            vec![0],
            2,
        )
        .await
        .unwrap_err();
        assert!(
            matches!(&err, BusError::Other(m) if m.contains("cannot open /dev/i2c-no-such")),
            "{err:?}"
        );
        let mut file = None;
        let err = dev_transfer(&PathBuf::from("/dev/null"), &mut file, 0x40, vec![0], 2)
            .await
            .unwrap_err();
        assert!(
            matches!(&err, BusError::Other(m) if m.starts_with("I2C transfer failed")),
            "{err:?}"
        );
        assert!(
            file.is_some(),
            "the opened device is kept for the next transfer"
        );
    }
}
