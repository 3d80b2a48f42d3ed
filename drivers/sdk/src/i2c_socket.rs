//! The frame of the simulated I2C bus (bus kind `i2c-socket`): a Unix stream socket that
//! carries one I2C transaction per request, so the agent talks to ems-sim's devices exactly as
//! it would through `/dev/i2c-N`. The agent writes these frames, ems-sim answers them; this
//! module is the one definition both use.
//!
//! Request: a [`Header`] of [`HEADER_LEN`] bytes (`op u8`: 1 write, 2 read, 3 write-then-read;
//! `addr u8`, 7-bit; `wlen u16` BE; `rlen u16` BE), then `wlen` bytes. Response: a status byte
//! ([`STATUS_OK`] or [`STATUS_NACK`]: no device answered), then, when ok,
//! [`Header::response_len`] bytes.

/// Largest transfer either way, bytes.
pub const MAX_LEN: usize = 4096;
/// Bytes of a request before its data.
pub const HEADER_LEN: usize = 6;
/// The transaction happened; the read bytes follow.
pub const STATUS_OK: u8 = 0;
/// No device acknowledged the address (or the register): nothing follows.
pub const STATUS_NACK: u8 = 1;

/// What a transaction does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// Write bytes, read nothing.
    Write = 1,
    /// Read bytes, write nothing.
    Read = 2,
    /// Write bytes, then read with a repeated start.
    WriteRead = 3,
}

/// The fixed-size head of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub op: Op,
    /// 7-bit device address.
    pub addr7: u8,
    /// Bytes of data after the header.
    pub write_len: u16,
    /// Bytes the device should return.
    pub read_len: u16,
}

/// A request that cannot be framed, or a frame that is not a request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("I2C transfer out of range: address {addr7:#x}, {write_len} bytes out, {read_len} in")]
    OutOfRange {
        addr7: u8,
        write_len: usize,
        read_len: usize,
    },
    /// An operation code this protocol does not have; `write_len` data bytes still follow.
    #[error("unknown I2C operation {op}")]
    UnknownOp { op: u8, write_len: usize },
}

impl Header {
    /// The request for writing `write_len` bytes to `addr7` and then reading `read_len` bytes
    /// (nothing written means a plain read).
    pub fn for_transfer(
        addr7: u8,
        write_len: usize,
        read_len: usize,
    ) -> Result<Header, FrameError> {
        let out_of_range = FrameError::OutOfRange {
            addr7,
            write_len,
            read_len,
        };
        if addr7 > 0x7F || write_len > MAX_LEN || read_len > MAX_LEN {
            return Err(out_of_range);
        }
        let op = match (write_len, read_len) {
            (0, _) => Op::Read,
            (_, 0) => Op::Write,
            _ => Op::WriteRead,
        };
        Ok(Header {
            op,
            addr7,
            write_len: write_len as u16,
            read_len: read_len as u16,
        })
    }

    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let [w0, w1] = self.write_len.to_be_bytes();
        let [r0, r1] = self.read_len.to_be_bytes();
        [self.op as u8, self.addr7, w0, w1, r0, r1]
    }

    /// Reads a header as the simulator receives it. Lengths over [`MAX_LEN`] are
    /// [`FrameError::OutOfRange`] (the peer is not speaking this protocol); an unknown operation
    /// is [`FrameError::UnknownOp`], after which the request's data still has to be read.
    pub fn decode(bytes: &[u8; HEADER_LEN]) -> Result<Header, FrameError> {
        let addr7 = bytes[1];
        let write_len = u16::from_be_bytes([bytes[2], bytes[3]]);
        let read_len = u16::from_be_bytes([bytes[4], bytes[5]]);
        if usize::from(write_len) > MAX_LEN || usize::from(read_len) > MAX_LEN {
            return Err(FrameError::OutOfRange {
                addr7,
                write_len: write_len.into(),
                read_len: read_len.into(),
            });
        }
        let op = match bytes[0] {
            1 => Op::Write,
            2 => Op::Read,
            3 => Op::WriteRead,
            op => {
                return Err(FrameError::UnknownOp {
                    op,
                    write_len: write_len.into(),
                });
            }
        };
        Ok(Header {
            op,
            addr7,
            write_len,
            read_len,
        })
    }

    /// Bytes after [`STATUS_OK`] in the answer: the read bytes, none for a plain write.
    pub fn response_len(&self) -> usize {
        match self.op {
            Op::Write => 0,
            Op::Read | Op::WriteRead => self.read_len.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_operation_follows_the_lengths() {
        let op = |w, r| Header::for_transfer(0x40, w, r).unwrap().op;
        assert_eq!(op(1, 0), Op::Write);
        assert_eq!(op(0, 2), Op::Read);
        assert_eq!(op(0, 0), Op::Read);
        assert_eq!(op(1, 2), Op::WriteRead);
    }

    #[test]
    fn a_header_survives_the_wire() {
        let header = Header::for_transfer(0x40, 3, 4096).unwrap();
        let bytes = header.encode();
        assert_eq!(bytes, [3, 0x40, 0, 3, 0x10, 0]);
        assert_eq!(Header::decode(&bytes), Ok(header));
        assert_eq!(header.response_len(), 4096);
        let write = Header::for_transfer(0x40, 3, 0).unwrap();
        assert_eq!(write.response_len(), 0);
    }

    #[test]
    fn out_of_range_transfers_are_refused_both_ways() {
        let err = Header::for_transfer(0x80, 1, 1).unwrap_err();
        assert_eq!(
            err.to_string(),
            "I2C transfer out of range: address 0x80, 1 bytes out, 1 in"
        );
        assert!(Header::for_transfer(0x40, MAX_LEN + 1, 0).is_err());
        assert!(Header::for_transfer(0x40, 0, MAX_LEN + 1).is_err());
        assert!(matches!(
            Header::decode(&[2, 0x40, 0, 0, 0x10, 1]),
            Err(FrameError::OutOfRange { read_len: 4097, .. })
        ));
        assert_eq!(
            Header::decode(&[9, 0x40, 0, 2, 0, 0]),
            Err(FrameError::UnknownOp {
                op: 9,
                write_len: 2
            })
        );
    }
}
