//! The simulated I2C bus: a Unix stream socket carrying one transaction per request, so an
//! agent configured with a bus of kind `i2c-socket` can talk to simulated I2C devices exactly
//! as it would through `/dev/i2c-N`.
//!
//! Request: `op u8` (1 write, 2 read, 3 write-then-read), `addr u8` (7-bit), `wlen u16 BE`,
//! `rlen u16 BE`, then `wlen` bytes. Response: `status u8` (0 ok, 1 NACK: no device answered),
//! then `rlen` bytes when ok.

pub const OP_WRITE: u8 = 1;
pub const OP_READ: u8 = 2;
pub const OP_WRITE_READ: u8 = 3;
pub const STATUS_OK: u8 = 0;
pub const STATUS_NACK: u8 = 1;
/// Largest transfer either way, bytes.
pub const MAX_LEN: usize = 4096;
