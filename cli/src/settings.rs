//! Connection settings: flags over environment over config file, layered with figment.
//!
//! Keys are the same in all three places: `url`, `token`, `device`, `ca_file` (flags `--url`…,
//! variables `EMS_URL`, `EMS_TOKEN`, `EMS_DEVICE`, `EMS_CA_FILE`). The file is TOML at
//! `--config`, `EMSCTL_CONFIG`, `$XDG_CONFIG_HOME/emsctl/config.toml` or
//! `~/.config/emsctl/config.toml`, first found wins; only an explicitly named file must exist.

use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Format as _, Serialized, Toml};
use figment::value::magic::RelativePathBuf;
use serde::{Deserialize, Serialize};

use crate::cli::Global;
use crate::exit::Failure;

/// One source's values; absent keys leave the lower layers' values alone.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Layer {
    #[serde(skip_serializing_if = "Option::is_none")]
    url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    device: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ca_file: Option<PathBuf>,
}

/// What the layers merge into. A relative `ca_file` from the config file is resolved against the
/// file's directory; from a flag or variable, against the working directory.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Merged {
    url: Option<String>,
    token: Option<String>,
    device: Option<String>,
    ca_file: Option<RelativePathBuf>,
}

/// The merged settings. `url` and `token` are checked when a subcommand needs them.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    pub url: Option<String>,
    pub token: Option<String>,
    pub device: Option<String>,
    pub ca_file: Option<PathBuf>,
    /// The config file that was read, for hints.
    pub config_file: Option<PathBuf>,
}

const ENV_KEYS: [(&str, &str); 4] = [
    ("EMS_URL", "url"),
    ("EMS_TOKEN", "token"),
    ("EMS_DEVICE", "device"),
    ("EMS_CA_FILE", "ca_file"),
];

impl Settings {
    /// Reads the config file and the environment and lays the flags on top.
    pub fn resolve(global: &Global) -> Result<Settings, Failure> {
        let (file, explicit) = match &global.config {
            Some(p) => (Some(p.clone()), true),
            None => (default_config_path(), false),
        };
        let file = match file {
            Some(p) if p.is_file() => Some(p),
            Some(p) if explicit => {
                return Err(
                    Failure::usage(format!("config file {} does not exist", p.display()))
                        .hint("fix --config / EMSCTL_CONFIG, or leave it out to use the default"),
                );
            }
            _ => None,
        };
        let env = env_layer(|k| std::env::var(k).ok());
        let flags = Layer {
            url: global.url.clone(),
            token: global.token.clone(),
            device: global.device.clone(),
            ca_file: global.ca_file.clone(),
        };
        let layer = merge(file.as_deref(), env, flags)?;
        Ok(Settings {
            url: layer.url.map(|u| u.trim_end_matches('/').to_string()),
            token: layer.token,
            device: layer.device,
            ca_file: layer.ca_file,
            config_file: file,
        })
    }

    pub fn url(&self) -> Result<&str, Failure> {
        self.url
            .as_deref()
            .filter(|u| !u.is_empty())
            .ok_or_else(|| {
                Failure::usage("no server URL given").hint(format!(
                    "pass --url https://…, set EMS_URL, or put url = \"https://…\" in {}",
                    self.config_hint()
                ))
            })
    }

    pub fn token(&self) -> Result<&str, Failure> {
        self.token
            .as_deref()
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                Failure::usage("no API token given").hint(format!(
                    "pass --token, set EMS_TOKEN, or put token = \"emsa_…\" in {}",
                    self.config_hint()
                ))
            })
    }

    fn config_hint(&self) -> String {
        self.config_file
            .clone()
            .or_else(default_config_path)
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "~/.config/emsctl/config.toml".into())
    }
}

/// The keys of a config file as written there (a relative `ca_file` left relative), for
/// `login` and `logout`, which rewrite the file.
#[derive(Debug, Default, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileKeys {
    pub url: Option<String>,
    pub token: Option<String>,
    pub device: Option<String>,
    pub ca_file: Option<PathBuf>,
}

/// Reads the config file at `path` (which must exist) as it is.
pub fn read_file(path: &Path) -> Result<FileKeys, Failure> {
    Figment::from(Toml::file_exact(path))
        .extract::<FileKeys>()
        .map_err(|e| {
            Failure::usage(format!("config file {}: {e}", path.display())).hint(
                "allowed keys: url, token, device, ca_file (all strings); fix or remove the file",
            )
        })
}

/// The config file `--config` / `EMSCTL_CONFIG` names, else the default path.
pub fn config_path(global: &Global) -> Option<PathBuf> {
    global.config.clone().or_else(default_config_path)
}

/// `$XDG_CONFIG_HOME/emsctl/config.toml`, else `$HOME/.config/emsctl/config.toml`.
pub fn default_config_path() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))?;
    Some(base.join("emsctl").join("config.toml"))
}

/// The `EMS_…` variables as a layer. Read as plain strings (figment's own `Env` would turn a
/// device id such as `123` into a number).
fn env_layer(get: impl Fn(&str) -> Option<String>) -> Layer {
    let mut layer = Layer::default();
    for (var, key) in ENV_KEYS {
        let Some(value) = get(var).filter(|v| !v.is_empty()) else {
            continue;
        };
        match key {
            "url" => layer.url = Some(value),
            "token" => layer.token = Some(value),
            "device" => layer.device = Some(value),
            _ => layer.ca_file = Some(value.into()),
        }
    }
    layer
}

/// File, then environment, then flags; later wins.
fn merge(file: Option<&Path>, env: Layer, flags: Layer) -> Result<Layer, Failure> {
    let merged = extract(file, env, flags)?;
    Ok(Layer {
        url: merged.url,
        token: merged.token,
        device: merged.device,
        ca_file: merged.ca_file.map(|p| p.relative()),
    })
}

fn extract(file: Option<&Path>, env: Layer, flags: Layer) -> Result<Merged, Failure> {
    let mut figment = Figment::new();
    if let Some(path) = file {
        figment = figment.merge(Toml::file_exact(path));
    }
    figment
        .merge(Serialized::defaults(env))
        .merge(Serialized::defaults(flags))
        .extract::<Merged>()
        .map_err(|e| {
            let path = file.map(|p| p.display().to_string()).unwrap_or_default();
            Failure::usage(format!("config file {path}: {e}"))
                .hint("allowed keys: url, token, device, ca_file (all strings)")
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layer(url: Option<&str>, device: Option<&str>) -> Layer {
        Layer {
            url: url.map(Into::into),
            device: device.map(Into::into),
            ..Layer::default()
        }
    }

    #[test]
    fn flags_beat_env_beat_file() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let path = dir.join("config.toml");
        std::fs::write(
            &path,
            "url = \"http://file\"\ndevice = \"from_file\"\ntoken = \"t\"\n",
        )
        .unwrap();
        let merged = merge(
            Some(&path),
            layer(Some("http://env"), None),
            layer(None, Some("flag")),
        )
        .unwrap();
        assert_eq!(merged.url.as_deref(), Some("http://env"));
        assert_eq!(merged.device.as_deref(), Some("flag"));
        assert_eq!(merged.token.as_deref(), Some("t"));
    }

    #[test]
    fn ca_file_in_the_file_is_relative_to_it() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let path = dir.join("relative.toml");
        std::fs::write(&path, "ca_file = \"ca.pem\"\n").unwrap();
        let merged = merge(Some(&path), Layer::default(), Layer::default()).unwrap();
        assert_eq!(merged.ca_file, Some(dir.join("ca.pem")));
        let flag = Layer {
            ca_file: Some("ca.pem".into()),
            ..Layer::default()
        };
        let merged = merge(Some(&path), Layer::default(), flag).unwrap();
        assert_eq!(merged.ca_file, Some(PathBuf::from("ca.pem")));
    }

    #[test]
    fn unknown_keys_in_the_file_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let path = dir.join("config.toml");
        std::fs::write(&path, "urll = \"x\"\n").unwrap();
        let err = merge(Some(&path), Layer::default(), Layer::default()).unwrap_err();
        assert!(err.message.contains("urll"), "{}", err.message);
    }

    #[test]
    fn numeric_device_ids_stay_strings() {
        let env = env_layer(|k| (k == "EMS_DEVICE").then(|| "123".to_string()));
        let merged = merge(None, env, Layer::default()).unwrap();
        assert_eq!(merged.device.as_deref(), Some("123"));
    }
}
