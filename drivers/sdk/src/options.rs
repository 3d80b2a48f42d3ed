//! Typed access to a device's TOML `options`, with [`ConfigError`]s that name the key.
//!
//! Drivers take their options as a `toml::Table` rather than a serde struct so that each error can
//! say which key and why in the agent's words, and so unknown keys can be refused by name
//! ([`Options::finish`]) instead of silently ignored: a typo in `shunt_ohms` must not fall back to
//! a default shunt.

use std::collections::BTreeSet;

use crate::driver::ConfigError;
use crate::model::DeviceAddress;

/// A view on an options table that remembers which keys were read.
pub struct Options<'a> {
    table: &'a toml::Table,
    seen: BTreeSet<&'a str>,
}

impl<'a> Options<'a> {
    pub fn new(table: &'a toml::Table) -> Options<'a> {
        Options {
            table,
            seen: BTreeSet::new(),
        }
    }

    fn get(&mut self, key: &str) -> Option<&'a toml::Value> {
        let (k, v) = self.table.get_key_value(key)?;
        self.seen.insert(k.as_str());
        Some(v)
    }

    /// A number (integer or float), if present.
    pub fn f64(&mut self, key: &str) -> Result<Option<f64>, ConfigError> {
        match self.get(key) {
            None => Ok(None),
            Some(toml::Value::Float(x)) if x.is_finite() => Ok(Some(*x)),
            Some(toml::Value::Integer(i)) => Ok(Some(*i as f64)),
            Some(other) => Err(ConfigError::new(
                key,
                format!("must be a finite number, found {}", describe(other)),
            )),
        }
    }

    /// A number that must be present.
    pub fn required_f64(&mut self, key: &str) -> Result<f64, ConfigError> {
        self.f64(key)?.ok_or_else(|| ConfigError::missing(key))
    }

    /// An integer, if present.
    pub fn i64(&mut self, key: &str) -> Result<Option<i64>, ConfigError> {
        match self.get(key) {
            None => Ok(None),
            Some(toml::Value::Integer(i)) => Ok(Some(*i)),
            Some(other) => Err(ConfigError::new(
                key,
                format!("must be an integer, found {}", describe(other)),
            )),
        }
    }

    /// A boolean, if present.
    pub fn bool(&mut self, key: &str) -> Result<Option<bool>, ConfigError> {
        match self.get(key) {
            None => Ok(None),
            Some(toml::Value::Boolean(b)) => Ok(Some(*b)),
            Some(other) => Err(ConfigError::new(
                key,
                format!("must be true or false, found {}", describe(other)),
            )),
        }
    }

    /// A string, if present.
    pub fn str(&mut self, key: &str) -> Result<Option<&'a str>, ConfigError> {
        match self.get(key) {
            None => Ok(None),
            Some(toml::Value::String(s)) => Ok(Some(s.as_str())),
            Some(other) => Err(ConfigError::new(
                key,
                format!("must be a string, found {}", describe(other)),
            )),
        }
    }

    /// Any value, if present, for drivers that parse a nested structure themselves.
    pub fn value(&mut self, key: &str) -> Option<&'a toml::Value> {
        self.get(key)
    }

    /// Refuses keys that no accessor asked for, so typos are reported instead of ignored.
    pub fn finish(self) -> Result<(), ConfigError> {
        match self.table.keys().find(|k| !self.seen.contains(k.as_str())) {
            None => Ok(()),
            Some(unknown) => {
                let known: Vec<&str> = self.seen.iter().copied().collect();
                Err(ConfigError::new(
                    unknown.as_str(),
                    if known.is_empty() {
                        "unknown option; this driver takes no options".to_string()
                    } else {
                        format!("unknown option; known here: {}", known.join(", "))
                    },
                ))
            }
        }
    }
}

/// The device's Modbus unit, or a [`ConfigError`] naming `modbus_unit` when the agent config gave
/// none.
pub fn require_modbus_unit(address: DeviceAddress) -> Result<u8, ConfigError> {
    address.modbus_unit.ok_or_else(|| {
        ConfigError::new(
            "modbus_unit",
            "this driver talks Modbus and needs the device's unit id",
        )
    })
}

/// The device's 7-bit I2C address, or a [`ConfigError`] naming `i2c_address`.
pub fn require_i2c_address(address: DeviceAddress) -> Result<u8, ConfigError> {
    match address.i2c_address {
        None => Err(ConfigError::new(
            "i2c_address",
            "this driver talks I2C and needs the device's 7-bit address",
        )),
        Some(a) if a > 0x7F => Err(ConfigError::new(
            "i2c_address",
            format!("{a:#04x} is not a 7-bit address"),
        )),
        Some(a) => Ok(a),
    }
}

fn describe(value: &toml::Value) -> String {
    match value {
        toml::Value::String(s) => format!("the string {s:?}"),
        toml::Value::Integer(i) => format!("the integer {i}"),
        toml::Value::Float(f) => format!("the number {f}"),
        toml::Value::Boolean(b) => format!("{b}"),
        toml::Value::Datetime(d) => format!("the date {d}"),
        toml::Value::Array(_) => "an array".to_string(),
        toml::Value::Table(_) => "a table".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_the_key() {
        let table: toml::Table = toml::from_str("a = 1\nb = \"x\"\ntypo = 2").unwrap();
        let mut o = Options::new(&table);
        assert_eq!(o.f64("a").unwrap(), Some(1.0));
        let err = o.f64("b").unwrap_err();
        assert_eq!(err.key, "b");
        assert!(err.reason.contains("\"x\""), "{err}");
        assert_eq!(o.bool("absent").unwrap(), None);
        let err = o.finish().unwrap_err();
        assert_eq!(err.key, "typo");
        assert!(err.reason.contains("a, b"), "{err}");
    }
}
