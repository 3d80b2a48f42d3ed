//! Finding and opening plugin files: [`PluginDir`] and [`Plugin`].

use std::collections::BTreeMap;
use std::ffi::c_void;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use libloading::Library;

use super::HostError;
use super::instance::DriverInstance;
use crate::abi::{
    ABI_VERSION, AbiAddress, AbiBuf, AbiStr, DescriptorHeader, DriverDescriptor, ENTRY_SYMBOL,
    EntryFn, status,
};
use crate::driver::ConfigError;
use crate::model::{DeviceAddress, DriverInfo, Role};

/// A directory of driver plugins.
///
/// A driver named `name` lives in the file `lib` + `ems_driver_` + `name` with `-` replaced by `_`
/// + `.so`: exactly what cargo builds from a crate named `ems-driver-<name>`. [`PluginDir::load`]
///   opens that one file; [`PluginDir::scan`] opens every `lib*.so` and reads the names from the
///   descriptors.
#[derive(Debug, Clone)]
pub struct PluginDir {
    dir: PathBuf,
}

impl PluginDir {
    pub fn new(dir: impl Into<PathBuf>) -> PluginDir {
        PluginDir { dir: dir.into() }
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// The file name of driver `name`: `sdm630` → `libems_driver_sdm630.so`,
    /// `modbus-map` → `libems_driver_modbus_map.so`.
    pub fn file_name(name: &str) -> String {
        format!("libems_driver_{}.so", name.replace('-', "_"))
    }

    /// Where driver `name` is expected in this directory.
    pub fn path_of(&self, name: &str) -> PathBuf {
        self.dir.join(PluginDir::file_name(name))
    }

    /// Opens driver `name` and checks that the file declares that name.
    pub fn load(&self, name: &str) -> Result<Plugin, HostError> {
        let path = self.path_of(name);
        let plugin = Plugin::open(&path)?;
        if plugin.info().name != name {
            return Err(HostError::NameMismatch {
                path,
                expected: name.to_string(),
                found: plugin.info().name.to_string(),
            });
        }
        Ok(plugin)
    }

    /// Opens every `lib*.so` in the directory, keyed by driver name. Shared libraries without the
    /// entry symbol are skipped (a plugin directory may hold their dependencies); every other
    /// failure, and two files declaring the same name, is an error.
    pub fn scan(&self) -> Result<BTreeMap<String, Plugin>, HostError> {
        let read_dir = |source| HostError::ReadDir {
            dir: self.dir.clone(),
            source,
        };
        let mut paths = Vec::new();
        for entry in std::fs::read_dir(&self.dir).map_err(read_dir)? {
            let path = entry.map_err(read_dir)?.path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if name.starts_with("lib") && name.ends_with(".so") && path.is_file() {
                paths.push(path);
            }
        }
        paths.sort();
        let mut plugins: BTreeMap<String, Plugin> = BTreeMap::new();
        for path in paths {
            let plugin = match Plugin::open(&path) {
                Ok(plugin) => plugin,
                Err(HostError::NotAPlugin { .. }) => continue,
                Err(e) => return Err(e),
            };
            let name = plugin.info().name.to_string();
            if let Some(first) = plugins.get(&name) {
                return Err(HostError::DuplicateDriver {
                    name,
                    first: first.path().to_path_buf(),
                    second: path,
                });
            }
            plugins.insert(name, plugin);
        }
        Ok(plugins)
    }
}

/// An opened, checked driver plugin. Cheap to clone; the library stays loaded for the life of the
/// process (see [`crate::abi`]).
#[derive(Debug, Clone)]
pub struct Plugin {
    descriptor: &'static DriverDescriptor,
    info: DriverInfo,
    path: Arc<Path>,
}

impl Plugin {
    /// Loads the library at `path`, finds the entry symbol and checks the descriptor: ABI version
    /// and size first, then name, version and roles.
    pub fn open(path: impl AsRef<Path>) -> Result<Plugin, HostError> {
        let path = path.as_ref();
        if !path.is_file() {
            return Err(HostError::FileMissing {
                path: path.to_path_buf(),
            });
        }
        // SAFETY: loading runs the library's initialisers. A driver plugin is trusted code the
        // operator installed; this is the one place that trust is exercised.
        let library = unsafe { Library::new(path) }.map_err(|source| HostError::Load {
            path: path.to_path_buf(),
            source,
        })?;
        // SAFETY: the symbol's type is fixed by the ABI; a library that exports the name with
        // another type is not a plugin we can protect against.
        let entry: EntryFn = match unsafe { library.get::<EntryFn>(ENTRY_SYMBOL.as_bytes()) } {
            Ok(symbol) => *symbol,
            Err(_) => {
                return Err(HostError::NotAPlugin {
                    path: path.to_path_buf(),
                    symbol: ENTRY_SYMBOL,
                });
            }
        };
        // Never unloaded: the descriptor, its strings and functions must stay valid forever.
        std::mem::forget(library);
        let bad = |reason: &str| HostError::BadDescriptor {
            path: path.to_path_buf(),
            reason: reason.to_string(),
        };
        // SAFETY: the entry function takes nothing and returns a pointer to static data.
        let raw = unsafe { entry() };
        if raw.is_null() {
            return Err(bad("the entry function returned a null descriptor"));
        }
        // SAFETY: every ABI version starts with the header; nothing past it is read yet.
        let header = unsafe { *raw.cast::<DescriptorHeader>() };
        check_header(path, header)?;
        // SAFETY: version and size match this host's descriptor; it is static in a library that
        // is never unloaded.
        let descriptor: &'static DriverDescriptor = unsafe { &*raw };
        let name = static_str(descriptor.name).ok_or_else(|| bad("name is not UTF-8"))?;
        let name_ok = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !name_ok {
            return Err(bad(&format!(
                "driver name {name:?} must be lowercase ASCII letters, digits and '-'"
            )));
        }
        let version = static_str(descriptor.version).ok_or_else(|| bad("version is not UTF-8"))?;
        let known = Role::ALL.iter().fold(0, |mask, r| mask | r.bit());
        if descriptor.roles & !known != 0 {
            return Err(bad(&format!(
                "unknown role bits {:#x}",
                descriptor.roles & !known
            )));
        }
        let roles: Vec<Role> = Role::ALL
            .into_iter()
            .filter(|r| descriptor.roles & r.bit() != 0)
            .collect();
        let info = DriverInfo {
            name,
            version,
            // A few bytes per loaded library, which is never unloaded either.
            roles: Box::leak(roles.into_boxed_slice()),
        };
        Ok(Plugin {
            descriptor,
            info,
            path: path.into(),
        })
    }

    /// Name, version and roles as the plugin declares them.
    pub fn info(&self) -> DriverInfo {
        self.info
    }

    /// The file this plugin was loaded from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Creates a driver instance for one device from its `options` table and address.
    pub fn instantiate(
        &self,
        options: &toml::Table,
        address: DeviceAddress,
    ) -> Result<DriverInstance, HostError> {
        let driver = self.info.name.to_string();
        let text = toml::to_string(options).map_err(|e| HostError::Options {
            driver: driver.clone(),
            reason: e.to_string(),
        })?;
        let mut instance: *mut c_void = std::ptr::null_mut();
        let mut out = AbiBuf::EMPTY;
        // SAFETY: arguments valid for the call; `out` is given back to the plugin below.
        let code = unsafe {
            (self.descriptor.create)(
                AbiStr::new(&text),
                AbiAddress::from(address),
                &mut instance,
                &mut out,
            )
        };
        let bytes = self.take(out);
        match code {
            status::OK if !instance.is_null() => Ok(DriverInstance::new(self.clone(), instance)),
            status::OK => Err(HostError::Protocol {
                driver,
                reason: "create reported success without an instance".into(),
            }),
            status::CONFIG_ERROR => match serde_json::from_slice::<ConfigError>(&bytes) {
                Ok(e) => Err(HostError::Config {
                    driver,
                    key: e.key,
                    reason: e.reason,
                }),
                Err(e) => Err(HostError::Protocol {
                    driver,
                    reason: format!("config error is not valid JSON: {e}"),
                }),
            },
            status::PANICKED => Err(HostError::Panicked {
                driver,
                message: String::from_utf8_lossy(&bytes).into_owned(),
            }),
            other => Err(HostError::Protocol {
                driver,
                reason: format!(
                    "create returned status {other}: {}",
                    String::from_utf8_lossy(&bytes)
                ),
            }),
        }
    }

    pub(crate) fn descriptor(&self) -> &'static DriverDescriptor {
        self.descriptor
    }

    /// Copies an answer buffer and gives it back to the plugin that allocated it.
    pub(crate) fn take(&self, buf: AbiBuf) -> Vec<u8> {
        if buf.ptr.is_null() {
            return Vec::new();
        }
        // SAFETY: the plugin returned `len` readable bytes at `ptr`.
        let bytes = unsafe { std::slice::from_raw_parts(buf.ptr, buf.len) }.to_vec();
        // SAFETY: handed back exactly once to the allocator that made it.
        unsafe { (self.descriptor.free_buf)(buf) };
        bytes
    }
}

/// The version and size checks, before anything else of the descriptor is read.
fn check_header(path: &Path, header: DescriptorHeader) -> Result<(), HostError> {
    if header.abi_version != ABI_VERSION {
        return Err(HostError::AbiVersionMismatch {
            path: path.to_path_buf(),
            expected: ABI_VERSION,
            found: header.abi_version,
        });
    }
    let expected = std::mem::size_of::<DriverDescriptor>();
    if header.struct_size as usize != expected {
        return Err(HostError::DescriptorSizeMismatch {
            path: path.to_path_buf(),
            version: ABI_VERSION,
            expected,
            found: header.struct_size as usize,
        });
    }
    Ok(())
}

fn static_str(s: AbiStr) -> Option<&'static str> {
    // SAFETY: descriptor strings are static data in a library that is never unloaded.
    std::str::from_utf8(unsafe { s.as_bytes::<'static>() }).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_header_is_checked_version_first_then_size() {
        let path = Path::new("/x/libems_driver_x.so");
        let size = std::mem::size_of::<DriverDescriptor>() as u32;
        let header = |abi_version, struct_size| DescriptorHeader {
            abi_version,
            struct_size,
        };
        assert!(check_header(path, header(ABI_VERSION, size)).is_ok());
        let err = check_header(path, header(2, 12)).unwrap_err();
        assert!(
            matches!(err, HostError::AbiVersionMismatch { found: 2, .. }),
            "{err}"
        );
        let err = check_header(path, header(ABI_VERSION, size - 8)).unwrap_err();
        let message = err.to_string();
        assert!(
            matches!(err, HostError::DescriptorSizeMismatch { .. })
                && message.contains(&format!("{} bytes", size - 8))
                && message.contains(&format!("are {size} bytes")),
            "{message}"
        );
    }
}
