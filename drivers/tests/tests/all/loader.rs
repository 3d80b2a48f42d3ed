//! Proves the loader finds real plugin files by driver name, checks their descriptor, and refuses
//! everything that is not a usable plugin with an error that says exactly what is wrong.

use ems_driver_sdk::abi::ABI_VERSION;
use ems_driver_sdk::host::{HostError, Plugin, PluginDir};
use ems_driver_sdk::{DeviceAddress, MemoryBus, Role};
use ems_driver_tests::{dir_with, options, plugin_file};

const UNIT_1: DeviceAddress = DeviceAddress {
    modbus_unit: Some(1),
    i2c_address: None,
};

#[test]
fn loads_a_driver_by_name_and_reads_its_descriptor() {
    let dir = dir_with(&["test-panicky"]);
    let plugin = PluginDir::new(dir.path()).load("test-panicky").unwrap();
    let info = plugin.info();
    assert_eq!(info.name, "test-panicky");
    assert_eq!(info.version, env!("CARGO_PKG_VERSION"));
    assert_eq!(info.roles, &[Role::Inverter, Role::Battery]);
    assert_eq!(
        PluginDir::file_name("modbus-map"),
        "libems_driver_modbus_map.so"
    );
}

#[test]
fn a_missing_file_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let err = PluginDir::new(dir.path()).load("sdm630").unwrap_err();
    let HostError::FileMissing { path } = &err else {
        panic!("expected FileMissing, got {err}")
    };
    assert_eq!(path, &dir.path().join("libems_driver_sdm630.so"));
    assert!(
        err.to_string()
            .contains("libems_driver_sdm630.so does not exist"),
        "{err}"
    );
}

#[test]
fn a_library_without_the_entry_symbol_is_not_a_plugin() {
    let err = Plugin::open(plugin_file("test-not-a-plugin")).unwrap_err();
    assert!(
        matches!(
            err,
            HostError::NotAPlugin {
                symbol: "ems_driver_entry_v1",
                ..
            }
        ),
        "{err}"
    );
    assert!(
        err.to_string()
            .contains("does not export `ems_driver_entry_v1`"),
        "{err}"
    );
}

#[test]
fn a_file_that_is_no_shared_library_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(PluginDir::file_name("garbage"));
    std::fs::write(&path, b"this is not an ELF file").unwrap();
    let err = PluginDir::new(dir.path()).load("garbage").unwrap_err();
    assert!(matches!(err, HostError::Load { .. }), "{err}");
}

#[test]
fn a_wrong_abi_version_is_refused_naming_both_versions() {
    let err = Plugin::open(plugin_file("test-wrong-abi")).unwrap_err();
    let HostError::AbiVersionMismatch {
        expected, found, ..
    } = &err
    else {
        panic!("expected AbiVersionMismatch, got {err}")
    };
    assert_eq!((*expected, *found), (ABI_VERSION, 999));
    let message = err.to_string();
    assert!(message.contains("version 999"), "{message}");
    assert!(
        message.contains(&format!("version {ABI_VERSION}")),
        "{message}"
    );
}

#[test]
fn a_file_declaring_another_name_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        plugin_file("test-panicky"),
        dir.path().join(PluginDir::file_name("sdm630")),
    )
    .unwrap();
    let err = PluginDir::new(dir.path()).load("sdm630").unwrap_err();
    assert!(
        matches!(&err, HostError::NameMismatch { expected, found, .. }
            if expected == "sdm630" && found == "test-panicky"),
        "{err}"
    );
}

#[test]
fn scanning_finds_plugins_skips_other_libraries_and_refuses_duplicates() {
    let dir = dir_with(&["test-panicky", "test-not-a-plugin", "sdm630"]);
    let found = PluginDir::new(dir.path()).scan().unwrap();
    assert_eq!(
        found.keys().map(String::as_str).collect::<Vec<_>>(),
        ["sdm630", "test-panicky"]
    );

    std::fs::copy(
        plugin_file("test-panicky"),
        dir.path().join("libanother_copy.so"),
    )
    .unwrap();
    let err = PluginDir::new(dir.path()).scan().unwrap_err();
    assert!(
        matches!(&err, HostError::DuplicateDriver { name, .. } if name == "test-panicky"),
        "{err}"
    );
    assert!(err.to_string().contains("libanother_copy.so"), "{err}");
}

#[test]
fn rejected_options_name_the_key_and_why() {
    let plugin = Plugin::open(plugin_file("sdm630")).unwrap();
    let err = plugin
        .instantiate(&options(r#"model = "sdm999""#), UNIT_1)
        .unwrap_err();
    let HostError::Config {
        driver,
        key,
        reason,
    } = &err
    else {
        panic!("expected Config, got {err}")
    };
    assert_eq!((driver.as_str(), key.as_str()), ("sdm630", "model"));
    assert!(reason.contains("sdm999"), "{reason}");

    let err = plugin
        .instantiate(&options(""), DeviceAddress::default())
        .unwrap_err();
    assert!(
        matches!(&err, HostError::Config { key, .. } if key == "modbus_unit"),
        "{err}"
    );
}

#[test]
fn a_real_driver_polls_through_the_abi_and_sees_bus_errors() {
    let plugin = PluginDir::new(ems_driver_tests::artifact_dir())
        .load("sdm630")
        .unwrap();
    let mut meter = plugin.instantiate(&options(""), UNIT_1).unwrap();
    let mut bus = MemoryBus::new();
    // Nothing answers on unit 1: the driver sees the host's timeout and reports it.
    let err = meter.poll(&mut bus).unwrap_err();
    let HostError::Driver { driver, source } = &err else {
        panic!("expected Driver, got {err}")
    };
    assert_eq!(driver, "sdm630");
    assert!(
        matches!(
            source,
            ems_driver_sdk::DriverError::Bus {
                source: ems_driver_sdk::BusError::Timeout,
                ..
            }
        ),
        "{source}"
    );
    // A meter cannot act.
    let err = meter.set_battery_power(&mut bus, 100.0).unwrap_err();
    assert!(
        matches!(
            &err,
            HostError::Driver {
                source: ems_driver_sdk::DriverError::Unsupported(_),
                ..
            }
        ),
        "{err}"
    );
}
