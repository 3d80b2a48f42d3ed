//! Checking a parsed map ([`super::RawMap`]) into its compiled form [`super::Map`]: names,
//! types, widths, ranges, flags and the setpoint's write policy, each error naming its key.

use std::collections::BTreeMap;

use ems_driver_sdk::regs::MAX_READ_REGISTERS;
use ems_driver_sdk::{ConfigError, Flag};

use super::*;
use crate::target::Target;

fn scale_of(key: String, scale: Option<f64>) -> Result<f64, ConfigError> {
    match scale {
        None => Ok(1.0),
        Some(s) if s.is_finite() && s != 0.0 => Ok(s),
        Some(s) => Err(ConfigError::new(key, format!("{s} is not a usable scale"))),
    }
}

fn fits(key: String, address: u16, width: u16) -> Result<(), ConfigError> {
    if u32::from(address) + u32::from(width) > 0x1_0000 {
        return Err(ConfigError::new(key, "runs past register 65535"));
    }
    Ok(())
}

impl RawMap {
    pub(super) fn check(self) -> Result<Map, ConfigError> {
        match self.device.get("checked") {
            None => {}
            Some(toml::Value::String(s)) if s == "device" || s == "document" => {}
            Some(other) => {
                return Err(ConfigError::new(
                    "device.checked",
                    format!(
                        "{other} is not \"device\" (read from a real device) or \"document\" \
                         (from the vendor's document only)"
                    ),
                ));
            }
        }
        let max_registers = self.read.max_registers.unwrap_or(MAX_READ_REGISTERS);
        if !(1..=MAX_READ_REGISTERS).contains(&max_registers) {
            return Err(ConfigError::new(
                "read.max_registers",
                format!("{max_registers} is outside 1..=125 (the Modbus limit)"),
            ));
        }
        let mut readings = Vec::new();
        for (i, r) in self.reading.into_iter().enumerate() {
            let key = |field: &str| format!("reading[{i}].{field}");
            let target = Target::parse(&r.name).ok_or_else(|| {
                ConfigError::new(
                    key("name"),
                    format!(
                        "{:?} is not a canonical reading; known: {}",
                        r.name,
                        crate::target::NAMES.join(", ")
                    ),
                )
            })?;
            let width = r.data_type.width(r.count);
            match (r.data_type, target, r.count) {
                (DataType::String, Target::InverterState, Some(1..=MAX_READ_REGISTERS)) => {}
                (DataType::String, Target::InverterState, _) => {
                    return Err(ConfigError::new(
                        key("count"),
                        "a string needs `count`, its length in registers (1..=125)",
                    ));
                }
                (DataType::String, _, _) => {
                    return Err(ConfigError::new(
                        key("type"),
                        "only inverter_state can be a string",
                    ));
                }
                (DataType::F32, Target::InverterState, _) => {
                    return Err(ConfigError::new(
                        key("type"),
                        "inverter_state needs an integer type with `states`, or a string",
                    ));
                }
                _ => {}
            }
            let mut states = BTreeMap::new();
            if let Some(raw_states) = r.states {
                if target != Target::InverterState {
                    return Err(ConfigError::new(
                        key("states"),
                        "only inverter_state takes `states`",
                    ));
                }
                for (k, v) in raw_states {
                    let raw = k.parse::<u32>().map_err(|_| {
                        ConfigError::new(key("states"), format!("key {k:?} is not an integer"))
                    })?;
                    states.insert(raw, v);
                }
            } else if target == Target::InverterState && r.data_type != DataType::String {
                return Err(ConfigError::new(
                    key("states"),
                    "an integer inverter_state needs `states` naming its values",
                ));
            }
            let bits = match r.bits {
                None => None,
                Some([lo, hi]) => {
                    let size = match r.data_type {
                        DataType::U16 | DataType::I16 => 16,
                        DataType::U32 | DataType::I32 => 32,
                        _ => {
                            return Err(ConfigError::new(
                                key("bits"),
                                "a bit field needs an integer type (u16, i16, u32, i32)",
                            ));
                        }
                    };
                    if lo > hi || hi >= size {
                        return Err(ConfigError::new(
                            key("bits"),
                            format!(
                                "[{lo}, {hi}] is not a range of bits within 0..={}",
                                size - 1
                            ),
                        ));
                    }
                    Some((lo, hi))
                }
            };
            if r.negate_if.is_some() && target == Target::InverterState {
                return Err(ConfigError::new(
                    key("negate_if"),
                    "only numbers can be negated",
                ));
            }
            if r.sum && target == Target::InverterState {
                return Err(ConfigError::new(key("sum"), "only numbers can be summed"));
            }
            fits(key("address"), r.address, width)?;
            readings.push(Reading {
                target,
                kind: r.function,
                address: r.address,
                data_type: r.data_type,
                word_order: r.word_order,
                scale: scale_of(key("scale"), r.scale)?,
                offset: r.offset.unwrap_or(0.0),
                not_implemented: r.not_implemented,
                width,
                states,
                bits,
                sum: r.sum,
                negate_if: r.negate_if,
            });
        }
        for (i, r) in readings.iter().enumerate() {
            if readings
                .iter()
                .any(|o| o.target == r.target && o.sum != r.sum)
            {
                return Err(ConfigError::new(
                    format!("reading[{i}].sum"),
                    format!(
                        "{:?} is summed in one reading and not in another: every term of a sum \
                         says `sum = true`",
                        r.target
                    ),
                ));
            }
        }
        let mut flags = Vec::new();
        for (i, f) in self.flag.into_iter().enumerate() {
            let key = |field: &str| format!("flag[{i}].{field}");
            let bits = match f.data_type {
                DataType::U16 => 16,
                DataType::U32 => 32,
                _ => {
                    return Err(ConfigError::new(
                        key("type"),
                        "a flag register is u16 or u32",
                    ));
                }
            };
            if f.bit >= bits {
                return Err(ConfigError::new(
                    key("bit"),
                    format!("{} is beyond a {bits}-bit register", f.bit),
                ));
            }
            fits(key("address"), f.address, f.data_type.width(None))?;
            flags.push(FlagBit {
                kind: f.function,
                address: f.address,
                data_type: f.data_type,
                word_order: f.word_order,
                bit: f.bit,
                flag: parse_flag(&f.flag),
            });
        }
        let battery_power = self.battery_power.map(RawValueWrite::check).transpose()?;
        Ok(Map {
            max_gap: self.read.max_gap.unwrap_or(0),
            max_registers,
            readings,
            flags,
            battery_power,
            reset_alarms: self.reset_alarms.map(|r| r.writes).unwrap_or_default(),
        })
    }
}

impl RawValueWrite {
    /// `[battery_power]`: one signed register or the split form, the write policy.
    fn check(self) -> Result<ValueWrite, ConfigError> {
        let err =
            |key: &str, reason: &str| Err(ConfigError::new(format!("battery_power.{key}"), reason));
        if self.data_type == DataType::String {
            return err("type", "a setpoint is a number: u16, i16, u32, i32 or f32");
        }
        let width = self.data_type.width(None);
        let scale = scale_of("battery_power.scale".into(), self.scale)?;
        let unsigned_form = self.charge_address.is_some() || self.direction.is_some();
        if unsigned_form {
            if !matches!(self.data_type, DataType::U16 | DataType::U32) {
                return err(
                    "type",
                    "the split and direction forms write magnitudes: u16 or u32",
                );
            }
            if self.offset.is_some() {
                return err("offset", "not used for magnitudes (register = |P| / scale)");
            }
            if scale < 0.0 {
                return err("scale", "a magnitude needs a scale > 0");
            }
            if let Some(v) = self.amperes_at_v
                && !(v.is_finite() && v > 0.0)
            {
                return Err(ConfigError::new(
                    "battery_power.amperes_at_v",
                    format!("{v} is not a battery voltage > 0"),
                ));
            }
        } else if self.amperes_at_v.is_some() {
            return err(
                "amperes_at_v",
                "only used by the split form (charge_address, discharge_address) or with \
                 `direction`",
            );
        }
        let registers = match (self.address, self.charge_address, self.discharge_address) {
            (Some(address), None, None) => {
                fits("battery_power.address".into(), address, width)?;
                match self.direction {
                    None => SetpointRegisters::Signed { address },
                    Some(direction) => {
                        if direction.address.wrapping_sub(address) < width {
                            return err("direction", "its address overlaps `address`");
                        }
                        SetpointRegisters::Directed {
                            address,
                            direction,
                            amperes_at_v: self.amperes_at_v,
                        }
                    }
                }
            }
            (None, Some(charge), Some(discharge)) => {
                if self.direction.is_some() {
                    return err(
                        "direction",
                        "not used by the split form (a limit per direction)",
                    );
                }
                fits("battery_power.charge_address".into(), charge, width)?;
                fits("battery_power.discharge_address".into(), discharge, width)?;
                if charge.abs_diff(discharge) < width {
                    return err(
                        "discharge_address",
                        "overlaps charge_address: the split form needs two registers",
                    );
                }
                SetpointRegisters::Split {
                    charge,
                    discharge,
                    amperes_at_v: self.amperes_at_v,
                }
            }
            (Some(_), _, _) => {
                return err(
                    "address",
                    "one signed register (`address`) or the split form (`charge_address` and \
                     `discharge_address`), not both",
                );
            }
            (None, None, _) => {
                return err(
                    if self.discharge_address.is_some() {
                        "charge_address"
                    } else {
                        "address"
                    },
                    "needs `address` (one signed register) or `charge_address` and \
                     `discharge_address` (two unsigned limits)",
                );
            }
            (None, Some(_), None) => {
                return err(
                    "discharge_address",
                    "the split form needs both charge_address and discharge_address",
                );
            }
        };
        let seconds = |key: &str, v: Option<f64>| match v {
            Some(s) if !(s.is_finite() && s >= 0.0) => Err(ConfigError::new(
                format!("battery_power.{key}"),
                format!("{s} is not a number of seconds >= 0"),
            )),
            other => Ok(other),
        };
        let min_interval_s = seconds("min_interval_s", self.min_interval_s)?;
        let refresh_s = seconds("refresh_s", self.refresh_s)?;
        let policy = match self.write {
            WritePolicyKind::Always => {
                if let Some(key) = [("min_interval_s", min_interval_s), ("refresh_s", refresh_s)]
                    .iter()
                    .find_map(|(k, v)| v.map(|_| *k))
                {
                    return err(key, "only used with write = \"on_change\"");
                }
                WritePolicy::Always
            }
            WritePolicyKind::OnChange => WritePolicy::OnChange {
                min_interval_s: min_interval_s.unwrap_or(0.0),
                refresh_s,
            },
        };
        Ok(ValueWrite {
            registers,
            write_multiple: self.write_multiple,
            data_type: self.data_type,
            word_order: self.word_order,
            scale,
            offset: self.offset.unwrap_or(0.0),
            before: self.before,
            policy,
        })
    }
}

fn parse_flag(name: &str) -> Flag {
    match name {
        "overheat" => Flag::Overheat,
        "undertemperature" => Flag::Undertemperature,
        "overvoltage" => Flag::Overvoltage,
        "undervoltage" => Flag::Undervoltage,
        "overcurrent" => Flag::Overcurrent,
        "bms_alarm" => Flag::BmsAlarm,
        "inverter_fault" => Flag::InverterFault,
        "grid_fault" => Flag::GridFault,
        other => Flag::Other(other.to_string()),
    }
}
