//! A Modbus RTU slave side for several simulated devices sharing one serial line, generic over
//! any byte stream (a pseudo-terminal in practice).
//!
//! Framing follows the Modbus serial line spec (MODBUS over Serial Line V1.02): a request is
//! recognised by its function code's length; a gap of more than 3.5 characters with an
//! incomplete frame discards it (the line resynchronises like a real device's). A frame with a
//! bad CRC, or for a unit nobody here answers to, gets no response, as on a real bus.

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// CRC-16/MODBUS (poly 0xA001 reflected, init 0xFFFF), transmitted low byte first.
pub fn crc16(data: &[u8]) -> u16 {
    let mut crc: u16 = 0xFFFF;
    for &b in data {
        crc ^= b as u16;
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xA001
            } else {
                crc >> 1
            };
        }
    }
    crc
}

/// A Modbus exception code (1 illegal function, 2 illegal data address, 3 illegal data value,
/// 4 server device failure).
pub type Exception = u8;

/// Reads registers: (function code, address, count) → values or an exception.
pub type ReadFn<'a> = dyn FnMut(u8, u16, u16) -> Result<Vec<u16>, Exception> + 'a;
/// Writes registers: (address, values) → done or an exception.
pub type WriteFn<'a> = dyn FnMut(u16, &[u16]) -> Result<(), Exception> + 'a;

/// What a simulated device on the line does with a request PDU.
pub trait Responder: Send {
    /// Answers `pdu` (function code + data) addressed to `unit`. `None`: the unit is not here
    /// (or is silent), no response is sent.
    fn respond(&mut self, unit: u8, pdu: &[u8]) -> Option<Vec<u8>>;
}

/// Total frame length for a request, from its first bytes; `None` until enough is known.
fn request_len(buf: &[u8]) -> Option<Result<usize, ()>> {
    let fc = *buf.get(1)?;
    match fc {
        0x01..=0x06 => Some(Ok(8)),
        0x0F | 0x10 => {
            let count = *buf.get(6)? as usize;
            Some(Ok(7 + count + 2))
        }
        _ => Some(Err(())),
    }
}

/// Builds the PDU answer for the standard register/coil functions from closures, so device
/// models only implement register access.
pub fn serve_pdu(pdu: &[u8], read: &mut ReadFn<'_>, write: &mut WriteFn<'_>) -> Vec<u8> {
    let fc = pdu[0];
    let be16 = |i: usize| u16::from_be_bytes([pdu[i], pdu[i + 1]]);
    let result: Result<Vec<u8>, Exception> = match fc {
        0x03 | 0x04 if pdu.len() >= 5 => {
            let (addr, count) = (be16(1), be16(3));
            if count == 0 || count > 125 {
                Err(3)
            } else {
                read(fc, addr, count).map(|regs| {
                    let mut out = vec![fc, (regs.len() * 2) as u8];
                    for r in regs {
                        out.extend_from_slice(&r.to_be_bytes());
                    }
                    out
                })
            }
        }
        0x06 if pdu.len() >= 5 => {
            let (addr, value) = (be16(1), be16(3));
            write(addr, &[value]).map(|()| pdu[..5].to_vec())
        }
        0x10 if pdu.len() >= 6 => {
            let (addr, count) = (be16(1), be16(3));
            let bytes = pdu[5] as usize;
            if count == 0 || count > 123 || bytes != count as usize * 2 || pdu.len() < 6 + bytes {
                Err(3)
            } else {
                let values: Vec<u16> = (0..count as usize).map(|i| be16(6 + 2 * i)).collect();
                write(addr, &values).map(|()| pdu[..5].to_vec())
            }
        }
        _ => Err(1),
    };
    match result {
        Ok(out) => out,
        Err(code) => vec![fc | 0x80, code],
    }
}

/// Line faults injected on the responses.
#[derive(Debug, Clone, Default)]
pub struct LineFaults {
    /// Fraction of responses sent with a corrupted CRC, 0 to 1.
    pub corrupt_rate: f64,
    /// Fraction of requests left unanswered, 0 to 1.
    pub drop_rate: f64,
}

/// Counters, for tests and the sim's status output.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LineStats {
    pub requests: u64,
    pub responses: u64,
    pub crc_errors: u64,
    pub corrupted: u64,
    pub dropped: u64,
    /// Frames with a write function code (0x05, 0x06, 0x0F, 0x10) received with a good CRC,
    /// whatever unit they were for: what proves that a read-only client (`ems-agent scan`)
    /// wrote nothing.
    pub writes: u64,
    /// Frames sent while the serial port's baud rate differed from the devices': on a real line
    /// the devices would see garbage and stay silent, so they are not answered.
    pub line_mismatch: u64,
}

/// Function codes that change a device: write single/multiple coils and registers.
pub fn is_write_function(fc: u8) -> bool {
    matches!(fc, 0x05 | 0x06 | 0x0F | 0x10)
}

/// The baud rate the program on the slave side of a pseudo-terminal has set (its settings are
/// those of the slave side, shared by every open of it). `TCGETS2` gives the rate as a number
/// whether it was set as a `Bxxx` constant or as an arbitrary rate (`BOTHER`, which serialport
/// uses). `None` when it cannot be read. Parity cannot be told this way: Linux's pty driver
/// clears `PARENB` in every setting it is given, so a pty always reads as 8N1.
pub fn tty_baud(slave: &impl std::os::fd::AsRawFd) -> Option<u32> {
    // SAFETY: termios2 is plain data; TCGETS2 fills it for a valid tty fd, which `slave` is
    // (owned by the caller and open for the whole call).
    unsafe {
        let mut t: libc::termios2 = std::mem::zeroed();
        if libc::ioctl(slave.as_raw_fd(), libc::TCGETS2, &mut t) != 0 {
            return None;
        }
        Some(t.c_ospeed)
    }
}

/// Serves requests on `io` until it fails. `faults` and `stats` are read/updated per frame
/// through the callbacks so they can change at run time. `peer_baud` says at what baud rate the
/// other end has set its port right now (`None`: unknown, taken as matching); a frame sent at
/// another rate than `baud` is not answered, as devices at another baud rate would not (a
/// pseudo-terminal carries bytes whatever the rate, so the simulation compares the settings).
pub async fn serve<IO, R>(
    mut io: IO,
    baud: u32,
    responder: &mut R,
    mut faults: impl FnMut() -> LineFaults,
    mut stats: impl FnMut(&dyn Fn(&mut LineStats)),
    mut peer_baud: impl FnMut() -> Option<u32>,
) -> std::io::Result<()>
where
    IO: AsyncRead + AsyncWrite + Unpin,
    R: Responder + ?Sized,
{
    // 3.5 characters of 11 bits, at least 1.75 ms as the spec fixes above 19200 baud.
    let gap = Duration::from_secs_f64((3.5 * 11.0 / baud as f64).max(0.00175));
    let mut buf: Vec<u8> = Vec::with_capacity(256);
    let mut chunk = [0u8; 256];
    loop {
        let n = if buf.is_empty() {
            io.read(&mut chunk).await?
        } else {
            match tokio::time::timeout(gap * 4, io.read(&mut chunk)).await {
                Ok(r) => r?,
                Err(_) => {
                    // Silence with a partial frame: discard it.
                    buf.clear();
                    continue;
                }
            }
        };
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
        while buf.len() >= 2 {
            let len = match request_len(&buf) {
                None => break,
                Some(Ok(len)) => len,
                Some(Err(())) => {
                    // Unknown function: answer "illegal function" once the frame is complete by
                    // silence; here, lacking the length, drop the buffer.
                    buf.clear();
                    break;
                }
            };
            if buf.len() < len {
                break;
            }
            let frame: Vec<u8> = buf.drain(..len).collect();
            stats(&|s| s.requests += 1);
            if peer_baud().is_some_and(|peer| peer != baud) {
                stats(&|s| s.line_mismatch += 1);
                continue;
            }
            let (body, crc) = frame.split_at(len - 2);
            if crc16(body) != u16::from_le_bytes([crc[0], crc[1]]) {
                stats(&|s| s.crc_errors += 1);
                continue;
            }
            if is_write_function(body[1]) {
                stats(&|s| s.writes += 1);
            }
            let f = faults();
            if f.drop_rate > 0.0 && fastrand::f64() < f.drop_rate {
                stats(&|s| s.dropped += 1);
                continue;
            }
            let unit = body[0];
            let Some(pdu) = responder.respond(unit, &body[1..]) else {
                continue;
            };
            if unit == 0 {
                continue; // broadcast: never answered
            }
            let mut out = Vec::with_capacity(pdu.len() + 3);
            out.push(unit);
            out.extend_from_slice(&pdu);
            let crc = crc16(&out);
            out.extend_from_slice(&crc.to_le_bytes());
            if f.corrupt_rate > 0.0 && fastrand::f64() < f.corrupt_rate {
                let last = out.len() - 1;
                out[last] ^= 0x5A;
                stats(&|s| s.corrupted += 1);
            }
            // A device answers after at least the inter-frame gap.
            tokio::time::sleep(gap).await;
            io.write_all(&out).await?;
            io.flush().await?;
            stats(&|s| s.responses += 1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc_matches_the_spec_example() {
        // MODBUS over Serial Line V1.02, 6.2.2: 02 07 → CRC 0x1241 (sent 41 12).
        assert_eq!(crc16(&[0x02, 0x07]), 0x1241);
    }

    #[test]
    fn read_beyond_the_map_is_illegal_address() {
        let mut read = |_fc: u8, addr: u16, _n: u16| if addr > 10 { Err(2) } else { Ok(vec![7]) };
        let mut write = |_a: u16, _v: &[u16]| Ok(());
        assert_eq!(
            serve_pdu(&[0x03, 0, 20, 0, 1], &mut read, &mut write),
            vec![0x83, 2]
        );
        assert_eq!(
            serve_pdu(&[0x03, 0, 1, 0, 1], &mut read, &mut write),
            vec![0x03, 2, 0, 7]
        );
        assert_eq!(serve_pdu(&[0x2B, 0], &mut read, &mut write), vec![0xAB, 1]);
    }
}
