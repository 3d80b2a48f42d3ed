//! ems driver `modbus-map`: a declarative driver for the long tail of Modbus BMS, inverters and
//! meters. A TOML register map says where each canonical reading lives, in which type, word order
//! and scale, which bits raise which alarm flags, and how setpoints and alarm resets are written.
//!
//! Every map must follow its device's published register definition (word order, scale factors,
//! "not implemented" values) and name that document in its `[device] source`, as
//! `config/devices/sdm630.toml` does for the Eastron SDM630 protocol.
//!
//! Reads are merged automatically (the SDK's [`plan`]): registers of one table whose gaps are at most the
//! map's `read.max_gap` share a transaction of at most `read.max_registers` (≤ 125). A read the
//! device refuses with a Modbus exception leaves its readings absent; a transport failure fails
//! the poll. The map format is documented in [`map`].
//!
//! # Options
//! Either `map = "/etc/ems/devices/x.toml"` (a map file; `max_gap` may override its
//! `read.max_gap`), or the map itself inline in the device's options table.
//!
//! # Layout
//! - [`map`]: the TOML format, its checks, and the compiled [`map::Map`].
//! - [`target`]: canonical reading names → [`Readings`] fields.
//! - this file: decoding, the [`ModbusMap`] driver and its export.

pub mod map;
pub mod target;

use ems_driver_sdk::options::require_modbus_unit;
use ems_driver_sdk::plan::{self, Span};
use ems_driver_sdk::regs::{
    RegisterKind, WordOrder, ascii_from, f32_from, f32_to, read_registers, u32_from, u32_to,
};
use ems_driver_sdk::{
    Bus, ConfigError, DeviceAddress, Driver, DriverError, DriverInfo, LogLevel, Options, Readings,
    Role,
};

use std::time::{Duration, Instant};

use map::{DataType, Map, SetpointRegisters, WritePolicy};
use target::Target;

/// One device described by a register map.
#[derive(Debug)]
pub struct ModbusMap {
    unit: u8,
    map: Map,
    /// The reads of one poll, planned once from the map.
    reads: Vec<Span>,
    /// The setpoint registers last written (address and words, in write order) and when
    /// (`write = "on_change"`); `None` before the first write and after a failed one.
    last_written: Option<(Vec<Registers>, Instant)>,
    /// The battery voltage of the last poll, for split setpoints in amperes (`amperes_at_v`).
    battery_voltage_v: Option<f64>,
}

/// Words written from one address.
type Registers = (u16, Vec<u16>);

/// A decoded register value before scaling.
enum Raw {
    /// The raw bits (for `not_implemented` and `states`) and the numeric value.
    Number {
        bits: u32,
        value: f64,
    },
    Text(String),
}

fn decode(data_type: DataType, order: WordOrder, w: &[u16]) -> Raw {
    match data_type {
        DataType::U16 => Raw::Number {
            bits: u32::from(w[0]),
            value: f64::from(w[0]),
        },
        DataType::I16 => Raw::Number {
            bits: u32::from(w[0]),
            value: f64::from(w[0] as i16),
        },
        DataType::U32 => {
            let v = u32_from([w[0], w[1]], order);
            Raw::Number {
                bits: v,
                value: f64::from(v),
            }
        }
        DataType::I32 => {
            let v = u32_from([w[0], w[1]], order);
            Raw::Number {
                bits: v,
                value: f64::from(v as i32),
            }
        }
        DataType::F32 => {
            let v = f32_from([w[0], w[1]], order);
            Raw::Number {
                bits: v.to_bits(),
                value: f64::from(v),
            }
        }
        DataType::String => Raw::Text(ascii_from(w)),
    }
}

impl ModbusMap {
    /// The driver for `map` on `unit`.
    pub fn with_map(unit: u8, map: Map) -> ModbusMap {
        let spans: Vec<Span> = map
            .readings
            .iter()
            .map(|r| Span {
                kind: r.kind,
                start: r.address,
                count: r.width,
            })
            .chain(map.readings.iter().filter_map(|r| {
                r.negate_if.map(|c| Span {
                    kind: c.function,
                    start: c.address,
                    count: 1,
                })
            }))
            .chain(map.flags.iter().map(|f| Span {
                kind: f.kind,
                start: f.address,
                count: f.data_type.width(None),
            }))
            .collect();
        let reads = plan::plan(&spans, map.max_gap, map.max_registers);
        ModbusMap {
            unit,
            map,
            reads,
            last_written: None,
            battery_voltage_v: None,
        }
    }

    /// The words of `[address, address + width)` from whichever read holds them.
    fn words(
        blocks: &[(Span, Vec<u16>)],
        kind: RegisterKind,
        address: u16,
        width: u16,
    ) -> Option<&[u16]> {
        blocks.iter().find_map(|(s, w)| {
            let at = address.checked_sub(s.start)? as usize;
            (s.kind == kind && at + width as usize <= w.len()).then(|| &w[at..at + width as usize])
        })
    }
}

impl Driver for ModbusMap {
    const INFO: DriverInfo = DriverInfo {
        name: "modbus-map",
        version: env!("CARGO_PKG_VERSION"),
        roles: &[
            Role::Inverter,
            Role::Battery,
            Role::GridMeter,
            Role::BatteryMeter,
            Role::PvMeter,
        ],
    };

    fn new(options: &toml::Table, address: DeviceAddress) -> Result<Self, ConfigError> {
        let map = if options.contains_key("map") {
            let mut o = Options::new(options);
            let path = o.str("map")?.unwrap_or_default();
            let max_gap = o.i64("max_gap")?;
            o.finish()?;
            let text = std::fs::read_to_string(path)
                .map_err(|e| ConfigError::new("map", format!("cannot read {path}: {e}")))?;
            let mut map = Map::from_toml(&text).map_err(|e| {
                ConfigError::new("map", format!("{path}: `{}`: {}", e.key, e.reason))
            })?;
            if let Some(gap) = max_gap {
                map.max_gap = u16::try_from(gap).map_err(|_| {
                    ConfigError::new("max_gap", format!("{gap} is outside 0..=65535"))
                })?;
            }
            map
        } else {
            Map::from_value(toml::Value::Table(options.clone()))?
        };
        Ok(ModbusMap::with_map(require_modbus_unit(address)?, map))
    }

    fn poll(&mut self, bus: &mut dyn Bus) -> Result<Readings, DriverError> {
        let mut blocks = Vec::with_capacity(self.reads.len());
        for read in &self.reads {
            match read_registers(bus, read.kind, self.unit, read.start, read.count) {
                Ok(words) => blocks.push((*read, words)),
                Err(e) if e.is_exception() => bus.log(
                    LogLevel::Warn,
                    &format!("modbus-map: readings in {e} are absent"),
                ),
                Err(e) => return Err(e),
            }
        }

        let mut r = Readings::default();
        // Sums (`sum = true`): the total so far of each summed target, `None` once a term is
        // absent.
        let mut sums: Vec<(Target, Option<f64>)> = Vec::new();
        let mut add =
            |target: Target, term: Option<f64>| match sums.iter_mut().find(|(t, _)| *t == target) {
                Some((_, total)) => *total = total.zip(term).map(|(a, b)| a + b),
                None => sums.push((target, term)),
            };
        for reading in &self.map.readings {
            let Some(w) = Self::words(&blocks, reading.kind, reading.address, reading.width) else {
                if reading.sum {
                    add(reading.target, None);
                }
                continue;
            };
            // A bit field: the unsigned value of those bits (the sentinel still applies to the
            // whole register, below).
            let raw = match (
                decode(reading.data_type, reading.word_order, w),
                reading.bits,
            ) {
                (Raw::Number { bits, .. }, Some((lo, hi)))
                    if reading.not_implemented != Some(bits) =>
                {
                    let field = (u64::from(bits) >> lo) & ((1u64 << (hi - lo + 1)) - 1);
                    Raw::Number {
                        bits: field as u32,
                        value: field as f64,
                    }
                }
                (other, _) => other,
            };
            match (raw, reading.target) {
                (Raw::Text(text), Target::InverterState) => {
                    r.inverter_state = (!text.is_empty()).then_some(text);
                }
                (Raw::Number { bits, .. }, target) if reading.not_implemented == Some(bits) => {
                    if reading.sum {
                        add(target, None);
                    }
                }
                (Raw::Number { bits, .. }, Target::InverterState) => {
                    r.inverter_state = Some(
                        reading
                            .states
                            .get(&bits)
                            .cloned()
                            .unwrap_or_else(|| format!("UNKNOWN({bits})")),
                    );
                }
                (Raw::Number { value, .. }, target) => {
                    // A direction register: negative while it holds `equals`, unknown (absent)
                    // when it was not read.
                    let sign = match reading.negate_if {
                        None => Some(1.0),
                        Some(c) => Self::words(&blocks, c.function, c.address, 1)
                            .map(|w| if w[0] == c.equals { -1.0 } else { 1.0 }),
                    };
                    let scaled = sign
                        .map(|sign| sign * (value * reading.scale + reading.offset))
                        .filter(|v| v.is_finite());
                    if reading.sum {
                        add(target, scaled);
                    } else if let Some(slot) = target.slot(&mut r) {
                        *slot = scaled;
                    }
                }
                (Raw::Text(_), _) => {} // refused by the map checks
            }
        }
        for (target, total) in sums {
            if let Some(slot) = target.slot(&mut r) {
                *slot = total;
            }
        }
        self.battery_voltage_v = r.battery_voltage_v.filter(|v| v.is_finite() && *v > 0.0);
        for flag in &self.map.flags {
            let width = flag.data_type.width(None);
            let Some(w) = Self::words(&blocks, flag.kind, flag.address, width) else {
                continue;
            };
            if let Raw::Number { bits, .. } = decode(flag.data_type, flag.word_order, w)
                && bits & (1 << flag.bit) != 0
            {
                r.raise(flag.flag.clone());
            }
        }
        Ok(r)
    }

    fn set_battery_power(&mut self, bus: &mut dyn Bus, power_w: f64) -> Result<(), DriverError> {
        self.set_battery_power_at(bus, power_w, Instant::now())
    }

    fn reset_alarms(&mut self, bus: &mut dyn Bus) -> Result<(), DriverError> {
        if self.map.reset_alarms.is_empty() {
            return Err(DriverError::Unsupported(
                "the register map has no [reset_alarms]".into(),
            ));
        }
        for f in &self.map.reset_alarms {
            bus.write_single_register(self.unit, f.address, f.value)
                .map_err(DriverError::bus(format!(
                    "write {} to holding {} to reset alarms",
                    f.value, f.address
                )))?;
        }
        Ok(())
    }
}

impl ModbusMap {
    /// [`Driver::set_battery_power`] at time `now`: encodes the setpoint and writes it as the
    /// map's write policy says (see [`map`]).
    fn set_battery_power_at(
        &mut self,
        bus: &mut dyn Bus,
        power_w: f64,
        now: Instant,
    ) -> Result<(), DriverError> {
        let w = self.map.battery_power.as_ref().ok_or_else(|| {
            DriverError::Unsupported("the register map has no [battery_power]".into())
        })?;
        let writes = encode_setpoint(w, power_w, self.battery_voltage_v)?;
        let zero = encode_setpoint(w, 0.0, self.battery_voltage_v).ok();
        // Under on_change, the registers already holding their value are not written again
        // (a split setpoint changes one limit at a time), unless refresh_s is due.
        let mut unchanged: &[Registers] = &[];
        if let WritePolicy::OnChange {
            min_interval_s,
            refresh_s,
        } = w.policy
            && let Some((last, at)) = &self.last_written
        {
            let since = now.saturating_duration_since(*at);
            let due = |s: f64| since >= Duration::from_secs_f64(s);
            if *last == writes {
                if !refresh_s.is_some_and(due) {
                    return Ok(());
                }
            } else {
                // Going to 0 W is never delayed.
                if Some(&writes) != zero.as_ref() && !due(min_interval_s) {
                    return Ok(());
                }
                unchanged = last;
            }
        }
        let unchanged = unchanged.to_vec();
        let first = self.last_written.is_none();
        self.last_written = None;
        let unit = self.unit;
        let write = |bus: &mut dyn Bus, address: u16, words: &[u16]| {
            if let [word] = words
                && !w.write_multiple
            {
                bus.write_single_register(unit, address, *word)
            } else {
                bus.write_multiple_registers(unit, address, words)
            }
        };
        if w.policy == WritePolicy::Always || first {
            for f in &w.before {
                write(bus, f.address, &[f.value]).map_err(DriverError::bus(format!(
                    "write {} to holding {} before the setpoint",
                    f.value, f.address
                )))?;
            }
        }
        for (address, words) in &writes {
            if unchanged
                .iter()
                .any(|(a, old)| a == address && old == words)
            {
                continue;
            }
            write(bus, *address, words).map_err(DriverError::bus(format!(
                "write setpoint to holding {address}"
            )))?;
        }
        self.last_written = Some((writes, now));
        Ok(())
    }
}

/// The writes of setpoint `power_w` under `w`, in order: one signed register, a direction and a
/// magnitude (one write when adjacent), or the two limits of a split setpoint (the one going to
/// 0 first); magnitudes in amperes at `battery_voltage_v` when the map says so.
fn encode_setpoint(
    w: &map::ValueWrite,
    power_w: f64,
    battery_voltage_v: Option<f64>,
) -> Result<Vec<Registers>, DriverError> {
    match w.registers {
        SetpointRegisters::Signed { address } => {
            Ok(vec![(address, encode_value(w, power_w, "W", power_w)?)])
        }
        SetpointRegisters::Directed {
            address,
            direction,
            amperes_at_v,
        } => {
            let (value, zero) = encode_magnitude(w, power_w, amperes_at_v, battery_voltage_v)?;
            let mode = if value == zero {
                direction.idle
            } else if power_w > 0.0 {
                direction.charge
            } else {
                direction.discharge
            };
            Ok(if direction.address.checked_add(1) == Some(address) {
                vec![(direction.address, [&[mode], &value[..]].concat())]
            } else {
                vec![(direction.address, vec![mode]), (address, value)]
            })
        }
        SetpointRegisters::Split {
            charge,
            discharge,
            amperes_at_v,
        } => {
            let (value, zero) = encode_magnitude(w, power_w, amperes_at_v, battery_voltage_v)?;
            Ok(if value == zero {
                vec![(charge, zero.clone()), (discharge, zero)]
            } else if power_w > 0.0 {
                vec![(discharge, zero), (charge, value)]
            } else {
                vec![(charge, zero), (discharge, value)]
            })
        }
    }
}

/// The registers of |`power_w`| (in amperes at `battery_voltage_v`, else at the nominal
/// `amperes_at_v`, when that is set) and of 0, under `w`.
fn encode_magnitude(
    w: &map::ValueWrite,
    power_w: f64,
    amperes_at_v: Option<f64>,
    battery_voltage_v: Option<f64>,
) -> Result<(Vec<u16>, Vec<u16>), DriverError> {
    let (magnitude, unit) = match amperes_at_v {
        None => (power_w.abs(), "W"),
        Some(nominal) => (power_w.abs() / battery_voltage_v.unwrap_or(nominal), "A"),
    };
    Ok((
        encode_value(w, magnitude, unit, power_w)?,
        encode_value(w, 0.0, unit, power_w)?,
    ))
}

/// The registers of `value` (in `unit`, for setpoint `power_w`) under `w`'s type, scale, offset
/// and word order.
fn encode_value(
    w: &map::ValueWrite,
    value: f64,
    unit: &str,
    power_w: f64,
) -> Result<Vec<u16>, DriverError> {
    let raw = (value - w.offset) / w.scale;
    let out_of_range = || {
        DriverError::InvalidSetpoint(format!(
            "{power_w} W is {value} {unit}, register value {raw}, outside the range of a {:?}",
            w.data_type
        ))
    };
    let rounded = raw.round();
    Ok(match w.data_type {
        DataType::U16 if (0.0..=65535.0).contains(&rounded) => vec![rounded as u16],
        DataType::I16 if (-32768.0..=32767.0).contains(&rounded) => vec![rounded as i16 as u16],
        DataType::U32 if (0.0..=4294967295.0).contains(&rounded) => {
            u32_to(rounded as u32, w.word_order).to_vec()
        }
        DataType::I32 if (-2147483648.0..=2147483647.0).contains(&rounded) => {
            u32_to(rounded as i32 as u32, w.word_order).to_vec()
        }
        DataType::F32 if raw.is_finite() => f32_to(raw as f32, w.word_order).to_vec(),
        _ => return Err(out_of_range()),
    })
}

ems_driver_sdk::export_driver!(ModbusMap);

#[cfg(test)]
mod tests;
