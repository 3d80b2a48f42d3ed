//! The register map format (TOML, read with serde) and its checked, compiled form [`Map`].
//!
//! ```toml
//! [device]                      # informative, shown by `ems-agent probe`
//! name = "Eastron SDM630"
//! source = "Eastron SDM630 Modbus protocol, input registers"
//! checked = "document"          # "device": read from a real device of this model;
//!                               # "document": from the vendor's document, tested on ems-sim only
//!
//! [read]
//! max_gap = 24                  # unmapped registers one read may span (default 0)
//! max_registers = 125           # per read (default and maximum 125)
//!
//! [[reading]]
//! name = "grid_power_w"         # a canonical reading, see `target::NAMES`
//! function = "input"            # "input" (0x04) or "holding" (0x03)
//! address = 0x0034              # protocol address (register 30053 = 0x0034)
//! type = "f32"                  # u16 i16 u32 i32 f32 string
//! word_order = "high_first"     # or "low_first", for 32-bit types (default high_first)
//! scale = 1.0                   # value = raw × scale + offset (defaults 1 and 0)
//! offset = 0.0
//! not_implemented = 0xFFFF      # raw value meaning "absent" (optional)
//! # bits = [4, 7]               # a bit field of an integer register: bits 4..=7, as an
//!                               # unsigned number (then scale, offset or states)
//! # count = 8                   # registers, for type = "string"
//! # states = { 1 = "OFF", 4 = "MPPT" }   # for name = "inverter_state" with an integer type
//! # negate_if = { function = "input", address = 33135, equals = 1 }
//!                               # a magnitude whose sign is in another register: the value is
//!                               # negated while that u16 register equals `equals` (absent when
//!                               # it cannot be read)
//! # sum = true                  # the value is one term of a sum: every reading of this name
//!                               # says `sum = true`, and the name gets the total of their scaled
//!                               # values (absent when any term is): PV1 + PV2 input power, or
//!                               # a charge and a discharge register with scales of opposite sign
//!
//! [[flag]]                      # a bit that raises an alarm flag
//! function = "holding"
//! address = 100
//! type = "u16"                  # u16 or u32
//! bit = 3
//! flag = "overheat"             # overheat, undertemperature, overvoltage, undervoltage,
//!                               # overcurrent, bms_alarm, inverter_fault, grid_fault, or any
//!                               # other text (raised as Flag::Other)
//!
//! [battery_power]               # how a setpoint is written (holding registers)
//! address = 200
//! type = "i16"                  # register = (power_w − offset) / scale, rounded
//! scale = -1.0                  # e.g. a device whose + means discharge
//! before = [{ address = 199, value = 1 }]   # fixed writes first (e.g. "remote control on")
//! write = "on_change"           # "always" (default: every cycle) or "on_change": only a value
//!                               # that differs from the last one written (EEPROM-backed
//!                               # registers wear out when written every second); `before` is
//!                               # then written once, and again after a failed write
//! min_interval_s = 60           # on_change: a changed value at most this often; 0 W (the safe
//!                               # value) is always written at once
//! refresh_s = 300               # on_change: rewrite an unchanged value after this long (devices
//!                               # that revert to their own mode without it)
//!
//! # or the split form, for devices that take two unsigned limits instead of one signed value:
//! # charge_address = 108        # charging (P > 0, ems's sign) writes |P| here and 0 to
//! # discharge_address = 109     # discharge_address; discharging the reverse; 0 W both 0 (the
//!                               # register going to 0 is written first, and under on_change
//!                               # only registers whose value changed are written)
//! # type = "u16"                # u16 or u32; register = |P| / scale (no offset)
//! # amperes_at_v = 51.2         # the registers take amperes: |P| / the battery voltage of the
//!                               # last poll (the map's battery_voltage_v), or / this nominal
//!                               # voltage while there is none
//! # write_multiple = true       # write with function 0x10 even single registers (and `before`),
//!                               # for devices that refuse 0x06
//!
//! # or the direction form, for devices that take a mode and a magnitude: `address` (u16 or
//! # u32) gets |P| / scale (or amperes with amperes_at_v), and
//! # direction = { address = 47511, charge = 11, discharge = 12, idle = 8 }
//!                               # the u16 written first with the mode of P's sign; `idle` with
//!                               # magnitude 0 at 0 W; when it is the register just before
//!                               # `address`, both go in one write (function 0x10)
//!
//! [reset_alarms]
//! writes = [{ address = 300, value = 1 }]
//!
//! [identify]                    # how `ems-agent scan` recognises the device (the driver
//! roles = ["grid_meter"]        # ignores it): the roles it suggests, and registers that must
//! [[identify.register]]         # all match; documented in ems-agent's `scan::identify`
//! function = "holding"
//! address = 0xFC02
//! type = "u16"                  # u16 i16 u32 i32 f32 string (with `count`)
//! equals = 112                  # or range = [45.0, 65.0] (after `scale`), or prefix = "ACME"
//! ```

use std::collections::BTreeMap;

use ems_driver_sdk::regs::{RegisterKind, WordOrder};
use ems_driver_sdk::{ConfigError, Flag};
use serde::Deserialize;

use crate::target::Target;

mod check;

/// Register data types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DataType {
    U16,
    I16,
    U32,
    I32,
    F32,
    String,
}

impl DataType {
    /// Registers a value of this type takes (strings: their `count`).
    pub fn width(self, count: Option<u16>) -> u16 {
        match self {
            DataType::U16 | DataType::I16 => 1,
            DataType::U32 | DataType::I32 | DataType::F32 => 2,
            DataType::String => count.unwrap_or(0),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMap {
    #[serde(default)]
    device: toml::Table,
    #[serde(default)]
    read: RawRead,
    #[serde(default)]
    reading: Vec<RawReading>,
    #[serde(default)]
    flag: Vec<RawFlag>,
    battery_power: Option<RawValueWrite>,
    reset_alarms: Option<RawResetAlarms>,
    /// How `ems-agent scan` recognises the device; read and checked there, not by the driver.
    #[serde(default)]
    #[allow(dead_code)]
    identify: Option<toml::Table>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRead {
    max_gap: Option<u16>,
    max_registers: Option<u16>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawReading {
    name: String,
    function: RegisterKind,
    address: u16,
    #[serde(rename = "type")]
    data_type: DataType,
    #[serde(default)]
    word_order: WordOrder,
    scale: Option<f64>,
    offset: Option<f64>,
    not_implemented: Option<u32>,
    count: Option<u16>,
    states: Option<BTreeMap<String, String>>,
    bits: Option<[u8; 2]>,
    #[serde(default)]
    sum: bool,
    negate_if: Option<Condition>,
}

/// A u16 register holding a given value (`negate_if`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Condition {
    pub function: RegisterKind,
    pub address: u16,
    pub equals: u16,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFlag {
    function: RegisterKind,
    address: u16,
    #[serde(rename = "type", default = "u16_type")]
    data_type: DataType,
    #[serde(default)]
    word_order: WordOrder,
    bit: u8,
    flag: String,
}

fn u16_type() -> DataType {
    DataType::U16
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawValueWrite {
    address: Option<u16>,
    charge_address: Option<u16>,
    discharge_address: Option<u16>,
    amperes_at_v: Option<f64>,
    direction: Option<Direction>,
    #[serde(default)]
    write_multiple: bool,
    #[serde(rename = "type")]
    data_type: DataType,
    #[serde(default)]
    word_order: WordOrder,
    scale: Option<f64>,
    offset: Option<f64>,
    #[serde(default)]
    before: Vec<FixedWrite>,
    #[serde(default)]
    write: WritePolicyKind,
    min_interval_s: Option<f64>,
    refresh_s: Option<f64>,
}

/// `[battery_power] write`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
enum WritePolicyKind {
    #[default]
    Always,
    OnChange,
}

/// When a setpoint is written.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum WritePolicy {
    /// Every call.
    Always,
    /// Only a value that differs from the last one written, a changed non-zero value at most
    /// every `min_interval_s`, an unchanged one again after `refresh_s`.
    OnChange {
        min_interval_s: f64,
        refresh_s: Option<f64>,
    },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawResetAlarms {
    writes: Vec<FixedWrite>,
}

/// A constant written to a holding register.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FixedWrite {
    pub address: u16,
    pub value: u16,
}

/// One value read from the device.
#[derive(Debug, Clone, PartialEq)]
pub struct Reading {
    pub target: Target,
    pub kind: RegisterKind,
    pub address: u16,
    pub data_type: DataType,
    pub word_order: WordOrder,
    pub scale: f64,
    pub offset: f64,
    pub not_implemented: Option<u32>,
    /// Registers (1, 2 or a string's count).
    pub width: u16,
    /// Raw value → state name, for `inverter_state` from an integer.
    pub states: BTreeMap<u32, String>,
    /// A bit field `(lowest, highest)` of the raw integer, inclusive; the whole value when
    /// `None`.
    pub bits: Option<(u8, u8)>,
    /// One term of a sum over every reading of this target (`sum = true`).
    pub sum: bool,
    /// The register whose value makes this one negative (a direction flag).
    pub negate_if: Option<Condition>,
}

/// One flag bit.
#[derive(Debug, Clone, PartialEq)]
pub struct FlagBit {
    pub kind: RegisterKind,
    pub address: u16,
    pub data_type: DataType,
    pub word_order: WordOrder,
    pub bit: u8,
    pub flag: Flag,
}

/// The register that says which way a magnitude setpoint goes, and its value for each way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Direction {
    pub address: u16,
    pub charge: u16,
    pub discharge: u16,
    /// Written with a magnitude of 0 for 0 W.
    pub idle: u16,
}

/// Where the battery setpoint goes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SetpointRegisters {
    /// One signed register: `power_w` as is (after scale and offset).
    Signed { address: u16 },
    /// A direction register (charge, discharge or idle) and |P| in `address`.
    Directed {
        address: u16,
        direction: Direction,
        /// As for `Split`.
        amperes_at_v: Option<f64>,
    },
    /// Two unsigned limits: charging writes |P| to `charge` and 0 to `discharge`, discharging
    /// the reverse, 0 W both 0.
    Split {
        charge: u16,
        discharge: u16,
        /// The registers take amperes: |P| divided by the last polled battery voltage, or by
        /// this nominal voltage while there is none.
        amperes_at_v: Option<f64>,
    },
}

/// How a value (the battery setpoint) is written.
#[derive(Debug, Clone, PartialEq)]
pub struct ValueWrite {
    pub registers: SetpointRegisters,
    /// Function 0x10 even for one register (devices that refuse 0x06), `before` included.
    pub write_multiple: bool,
    pub data_type: DataType,
    pub word_order: WordOrder,
    pub scale: f64,
    pub offset: f64,
    pub before: Vec<FixedWrite>,
    pub policy: WritePolicy,
}

/// A checked register map.
#[derive(Debug, Clone, PartialEq)]
pub struct Map {
    pub max_gap: u16,
    pub max_registers: u16,
    pub readings: Vec<Reading>,
    pub flags: Vec<FlagBit>,
    pub battery_power: Option<ValueWrite>,
    pub reset_alarms: Vec<FixedWrite>,
}

impl Map {
    /// Parses and checks a map; the error's key is the path inside the map
    /// (`reading[2].type`).
    pub fn from_value(value: toml::Value) -> Result<Map, ConfigError> {
        let raw: RawMap = serde_path_to_error::deserialize(value).map_err(|e| {
            let path = e.path().to_string();
            ConfigError::new(
                if path == "." { "map".to_string() } else { path },
                e.into_inner().to_string(),
            )
        })?;
        raw.check()
    }

    /// Parses and checks a map file's text.
    pub fn from_toml(text: &str) -> Result<Map, ConfigError> {
        let value: toml::Table =
            toml::from_str(text).map_err(|e| ConfigError::new("map", e.to_string()))?;
        Map::from_value(toml::Value::Table(value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_the_path_inside_the_map() {
        let err = Map::from_toml(
            r#"
            [[reading]]
            name = "grid_power_w"
            function = "input"
            address = 0
            type = "f32"
            [[reading]]
            name = "grid_power_w"
            function = "input"
            address = 2
            type = "float"
            "#,
        )
        .unwrap_err();
        assert_eq!(err.key, "reading[1].type");
        assert!(err.reason.contains("float"), "{err}");

        let err = Map::from_toml(
            r#"
            [[reading]]
            name = "grid_powr_w"
            function = "input"
            address = 0
            type = "f32"
            "#,
        )
        .unwrap_err();
        assert_eq!(err.key, "reading[0].name");

        let err = Map::from_toml("[read]\nmax_registers = 200").unwrap_err();
        assert_eq!(err.key, "read.max_registers");

        let err =
            Map::from_toml("[[flag]]\nfunction = \"holding\"\naddress = 1\nbit = 16\nflag = \"x\"")
                .unwrap_err();
        assert_eq!(err.key, "flag[0].bit");
    }
}
