//! Helpers for register-based devices: exact-length reads that split at the Modbus limit, and the
//! decoding of multi-register values (word order, IEEE-754, ASCII).

use serde::{Deserialize, Serialize};

use crate::bus::Bus;
use crate::driver::DriverError;

/// Most registers one Modbus read may return (function 0x03/0x04: 125, from the 253-byte PDU).
pub const MAX_READ_REGISTERS: u16 = 125;

/// Most registers one Modbus write-multiple may carry (function 0x10: 123).
pub const MAX_WRITE_REGISTERS: u16 = 123;

/// Which Modbus table a register lives in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RegisterKind {
    /// Function 0x03, read/write.
    Holding,
    /// Function 0x04, read-only.
    Input,
}

/// The order of the 16-bit words in a 32-bit value. Bytes within a word are always big-endian on
/// Modbus; words are not standardised, so every map says which.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WordOrder {
    /// High word at the lower address ("big-endian", SunSpec and Eastron).
    #[default]
    HighFirst,
    /// Low word at the lower address ("word-swapped", many Chinese BMS and inverters).
    LowFirst,
}

/// Reads `count` registers starting at `addr`, in as many transactions of at most
/// [`MAX_READ_REGISTERS`] as needed, and fails with [`DriverError::ShortAnswer`] unless every
/// register arrived.
pub fn read_registers(
    bus: &mut dyn Bus,
    kind: RegisterKind,
    unit: u8,
    addr: u16,
    count: u16,
) -> Result<Vec<u16>, DriverError> {
    let mut out = Vec::with_capacity(count as usize);
    let mut done: u16 = 0;
    while done < count {
        let n = (count - done).min(MAX_READ_REGISTERS);
        let start = addr.checked_add(done).ok_or_else(|| {
            DriverError::Device(format!(
                "register range {addr}+{count} runs past address 65535"
            ))
        })?;
        let operation = format!("read {} {start}+{n} on unit {unit}", kind_name(kind));
        let chunk = match kind {
            RegisterKind::Holding => bus.read_holding_registers(unit, start, n),
            RegisterKind::Input => bus.read_input_registers(unit, start, n),
        }
        .map_err(DriverError::bus(operation.clone()))?;
        if chunk.len() != n as usize {
            return Err(DriverError::ShortAnswer {
                operation,
                expected: n as usize,
                got: chunk.len(),
            });
        }
        out.extend_from_slice(&chunk);
        done += n;
    }
    Ok(out)
}

fn kind_name(kind: RegisterKind) -> &'static str {
    match kind {
        RegisterKind::Holding => "holding",
        RegisterKind::Input => "input",
    }
}

/// Two registers as a `u32` in the given word order.
pub fn u32_from(words: [u16; 2], order: WordOrder) -> u32 {
    let (hi, lo) = match order {
        WordOrder::HighFirst => (words[0], words[1]),
        WordOrder::LowFirst => (words[1], words[0]),
    };
    (u32::from(hi) << 16) | u32::from(lo)
}

/// Two registers as an IEEE-754 single in the given word order.
pub fn f32_from(words: [u16; 2], order: WordOrder) -> f32 {
    f32::from_bits(u32_from(words, order))
}

/// The two registers that carry `value` in the given word order (for writes and test images).
pub fn u32_to(value: u32, order: WordOrder) -> [u16; 2] {
    let (hi, lo) = ((value >> 16) as u16, value as u16);
    match order {
        WordOrder::HighFirst => [hi, lo],
        WordOrder::LowFirst => [lo, hi],
    }
}

/// The two registers that carry `value` as an IEEE-754 single.
pub fn f32_to(value: f32, order: WordOrder) -> [u16; 2] {
    u32_to(value.to_bits(), order)
}

/// Registers as ASCII text, two characters per register, high byte first (SunSpec `string`),
/// cut at the first NUL and trimmed of padding spaces.
pub fn ascii_from(words: &[u16]) -> String {
    let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_be_bytes()).collect();
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).trim().to_string()
}

/// The registers that carry `text` in `len` registers (for test images); padded with NULs.
pub fn ascii_to(text: &str, len: usize) -> Vec<u16> {
    let mut bytes = text.as_bytes().to_vec();
    bytes.resize(len * 2, 0);
    bytes
        .chunks(2)
        .map(|c| u16::from_be_bytes([c[0], c[1]]))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bus::BusError;
    use crate::memory::MemoryBus;

    #[test]
    fn word_orders_round_trip() {
        for order in [WordOrder::HighFirst, WordOrder::LowFirst] {
            assert_eq!(u32_from(u32_to(0x1234_5678, order), order), 0x1234_5678);
            assert_eq!(f32_from(f32_to(230.25, order), order), 230.25);
        }
        assert_eq!(u32_to(0x1234_5678, WordOrder::HighFirst), [0x1234, 0x5678]);
        assert_eq!(f32_to(1.0, WordOrder::HighFirst), [0x3F80, 0x0000]);
    }

    #[test]
    fn ascii_stops_at_nul_and_trims() {
        assert_eq!(ascii_from(&ascii_to("Fronius ", 4)), "Fronius");
        assert_eq!(ascii_from(&[0x5375, 0x6E53]), "SunS");
    }

    #[test]
    fn long_reads_split_at_125_and_short_answers_fail() {
        let mut bus = MemoryBus::new();
        bus.set_holding(1, 0, &vec![7; 300]);
        let words = read_registers(&mut bus, RegisterKind::Holding, 1, 0, 300).unwrap();
        assert_eq!(words.len(), 300);
        assert_eq!(bus.transactions().len(), 3);

        bus.short_answers(1, 2);
        let err = read_registers(&mut bus, RegisterKind::Holding, 1, 0, 10).unwrap_err();
        assert!(
            matches!(
                err,
                DriverError::ShortAnswer {
                    expected: 10,
                    got: 8,
                    ..
                }
            ),
            "{err}"
        );

        let err = read_registers(&mut bus, RegisterKind::Input, 1, 0, 10).unwrap_err();
        assert!(matches!(
            err,
            DriverError::Bus {
                source: BusError::Exception(2),
                ..
            }
        ));
    }
}
