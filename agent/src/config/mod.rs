//! Agent configuration: a TOML file (default `/etc/ems/agent.toml`) overridden by `EMS_AGENT_…`
//! environment variables, read with figment, typed, and validated at start.
//!
//! Environment variables use `__` between keys: `EMS_AGENT_BATTERY__SOC_MAX_PCT=90` sets
//! `battery.soc_max_pct`; `EMS_AGENT_DEVICE_ID=site_7` sets `device_id`.
//!
//! Every error names the file (or variable), the key and why.
//!
//! - [`model`]: the typed config (`AgentConfig`, buses, devices, uplink).
//! - [`validate`]: the rules serde cannot express (ranges, references, unique addresses, roles).

pub mod model;
pub mod validate;

use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Toml};

pub use model::{
    AgentConfig, BusConfig, CommSettings, DeviceConfig, MetricsSettings, Parity, UplinkSettings,
};

/// The commented default config printed by `ems-agent generate-config`.
pub const DEFAULT_CONFIG: &str = include_str!("../../../config/agent.default.toml");

/// Where the agent looks without `--config`.
pub const DEFAULT_PATH: &str = "/etc/ems/agent.toml";

/// A configuration problem, pointing at the file, the key and the reason.
#[derive(Debug, thiserror::Error)]
#[error("{source_name}: `{key}`: {reason}")]
pub struct ConfigError {
    /// The file (or environment variable) the bad value came from.
    pub source_name: String,
    /// Dotted key path, e.g. `devices.bms.unit`; `.` for the whole file.
    pub key: String,
    pub reason: String,
}

impl ConfigError {
    pub fn new(
        source_name: impl Into<String>,
        key: impl Into<String>,
        reason: impl Into<String>,
    ) -> Self {
        ConfigError {
            source_name: source_name.into(),
            key: key.into(),
            reason: reason.into(),
        }
    }
}

impl AgentConfig {
    /// Reads `path`, applies `EMS_AGENT_…` overrides, and validates.
    pub fn load(path: &Path) -> Result<AgentConfig, ConfigError> {
        let file = path.display().to_string();
        if !path.is_file() {
            return Err(ConfigError::new(
                &file,
                ".",
                "file not found (create one with `ems-agent generate-config > FILE`)",
            ));
        }
        let figment = Figment::new()
            .merge(Toml::file_exact(path))
            .merge(Env::prefixed("EMS_AGENT_").split("__"));
        Self::from_figment(figment, &file)
    }

    /// Parses TOML text (tests, `generate-config` round trip), without environment overrides.
    pub fn from_toml_str(text: &str, name: &str) -> Result<AgentConfig, ConfigError> {
        Self::from_figment(Figment::new().merge(Toml::string(text)), name)
    }

    fn from_figment(figment: Figment, file: &str) -> Result<AgentConfig, ConfigError> {
        let config: AgentConfig = figment.extract().map_err(|e| figment_error(e, file))?;
        validate::check(&config, file)?;
        Ok(config)
    }

    /// The directory for the telemetry queue and other state.
    pub fn data_dir(&self) -> &PathBuf {
        &self.data_dir
    }
}

fn figment_error(err: figment::Error, file: &str) -> ConfigError {
    let source_name = match err.metadata.as_ref() {
        Some(md) if md.name.contains("environment") => {
            format!(
                "environment variable EMS_AGENT_{}",
                err.path.join("__").to_uppercase()
            )
        }
        _ => file.to_string(),
    };
    let key = if err.path.is_empty() {
        ".".to_string()
    } else {
        err.path.join(".")
    };
    ConfigError::new(source_name, key, err.kind.to_string())
}

/// The tests, and their two-device site (`tests::BASE`) that other modules' tests build on.
#[cfg(test)]
pub(crate) mod tests;
