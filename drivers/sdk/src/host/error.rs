//! [`HostError`]: everything that can go wrong loading a plugin or calling a driver, each variant
//! naming the file or driver and what exactly is wrong.

use std::path::PathBuf;

use crate::driver::DriverError;

#[derive(Debug, thiserror::Error)]
pub enum HostError {
    /// No file where the plugin should be.
    #[error("driver plugin {} does not exist", path.display())]
    FileMissing { path: PathBuf },
    /// The dynamic loader refused the file (not a shared library, wrong architecture, missing
    /// dependency).
    #[error("cannot load driver plugin {}: {source}", path.display())]
    Load {
        path: PathBuf,
        source: libloading::Error,
    },
    /// A shared library, but not a driver: the entry symbol is absent.
    #[error("{} is not an ems driver plugin: it does not export `{symbol}`", path.display())]
    NotAPlugin { path: PathBuf, symbol: &'static str },
    /// Built against another ABI version of the SDK.
    #[error(
        "{} speaks driver ABI version {found}, this host speaks version {expected}; rebuild the driver against a matching ems-driver-sdk",
        path.display()
    )]
    AbiVersionMismatch {
        path: PathBuf,
        expected: u32,
        found: u32,
    },
    /// Same ABI version but a descriptor of another size: a corrupt or hand-made plugin.
    #[error(
        "{}: driver descriptor is {found} bytes, ABI version {version} descriptors are {expected} bytes",
        path.display()
    )]
    DescriptorSizeMismatch {
        path: PathBuf,
        version: u32,
        expected: usize,
        found: usize,
    },
    /// The descriptor is unusable (null, name not UTF-8, unknown role bits, ...).
    #[error("{}: invalid driver descriptor: {reason}", path.display())]
    BadDescriptor { path: PathBuf, reason: String },
    /// The file found under a driver's name declares another name.
    #[error("{} was loaded as driver `{expected}` but declares itself `{found}`", path.display())]
    NameMismatch {
        path: PathBuf,
        expected: String,
        found: String,
    },
    /// Two plugins declare the same driver name.
    #[error("driver `{name}` is declared by both {} and {}", first.display(), second.display())]
    DuplicateDriver {
        name: String,
        first: PathBuf,
        second: PathBuf,
    },
    /// The plugin directory cannot be listed.
    #[error("cannot list driver directory {}: {source}", dir.display())]
    ReadDir {
        dir: PathBuf,
        source: std::io::Error,
    },
    /// The options could not be turned into TOML text for the plugin.
    #[error("driver `{driver}`: options cannot be written as TOML: {reason}")]
    Options { driver: String, reason: String },
    /// The driver refused its configuration.
    #[error("driver `{driver}` rejected its configuration: option `{key}`: {reason}")]
    Config {
        driver: String,
        key: String,
        reason: String,
    },
    /// The driver ran and reported an error (bus failure, device answer, unsupported, ...).
    #[error("driver `{driver}`: {source}")]
    Driver { driver: String, source: DriverError },
    /// The driver panicked in this call; the instance is poisoned from now on.
    #[error("driver `{driver}` panicked: {message}; the instance is poisoned, recreate it")]
    Panicked { driver: String, message: String },
    /// A call on an instance that panicked earlier.
    #[error("driver `{driver}` instance is poisoned by an earlier panic ({message}); recreate it")]
    Poisoned { driver: String, message: String },
    /// The plugin answered something the ABI does not allow (unknown status, bad JSON).
    #[error("driver `{driver}` broke the ABI contract: {reason}")]
    Protocol { driver: String, reason: String },
}
