//! Integration tests of the driver plugins through the real C ABI (in `tests/all/`, one binary),
//! and the helpers they share: finding the `.so` files cargo built.
//!
//! The tests load `target/<profile>/lib*.so`, so the plugins must be built first:
//! `cargo build --workspace && cargo test --workspace`.
//!
//! # Layout
//! - this file: [`artifact_dir`], [`plugin_file`], [`dir_with`], [`options`].
//! - `tests/all/loader.rs`: finding, checking and refusing plugin files.
//! - `tests/all/faulty_plugins.rs`: panics and poisoning.
//! - `tests/all/sdm630_map_matches_driver.rs`: `sdm630` and `modbus-map` with the shipped map
//!   agree.
//! - `tests/all/drivers_through_the_abi.rs`: every real driver, polled and driven through the ABI.

use std::path::PathBuf;

use ems_driver_sdk::host::PluginDir;

/// The directory cargo puts cdylibs in for this profile (`target/debug`): the test executable
/// lives in `target/debug/deps`.
pub fn artifact_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("path of the test executable");
    exe.parent()
        .and_then(|deps| deps.parent())
        .expect("test executable lives in <target>/<profile>/deps")
        .to_path_buf()
}

/// The built plugin of driver `name`, or a panic that says how to build it.
pub fn plugin_file(name: &str) -> PathBuf {
    let path = artifact_dir().join(PluginDir::file_name(name));
    assert!(
        path.is_file(),
        "{} is missing: these tests load the real plugin files; build them first with \
         `cargo build --workspace` (the documented test command is \
         `cargo build --workspace && cargo test --workspace`)",
        path.display()
    );
    path
}

/// A fresh directory holding copies of the given plugins under their usual file names.
pub fn dir_with(names: &[&str]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temporary directory");
    for name in names {
        std::fs::copy(
            plugin_file(name),
            dir.path().join(PluginDir::file_name(name)),
        )
        .expect("copy plugin");
    }
    dir
}

/// The options table written as TOML.
pub fn options(text: &str) -> toml::Table {
    toml::from_str(text).expect("test options are valid TOML")
}
