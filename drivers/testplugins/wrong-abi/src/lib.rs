//! Test plugin `test-wrong-abi`: a well-formed descriptor that claims ABI version 999, so the
//! loader tests can prove the host refuses it before touching anything else.
//!
//! # Layout
//! One module: a trivial driver and a hand-written entry symbol (not `export_driver!`).

use ems_driver_sdk::abi::{DescriptorHeader, DriverDescriptor};
use ems_driver_sdk::{
    Bus, ConfigError, DeviceAddress, Driver, DriverError, DriverInfo, Readings, Role,
};

pub struct WrongAbi;

impl Driver for WrongAbi {
    const INFO: DriverInfo = DriverInfo {
        name: "test-wrong-abi",
        version: env!("CARGO_PKG_VERSION"),
        roles: &[Role::GridMeter],
    };

    fn new(_options: &toml::Table, _address: DeviceAddress) -> Result<Self, ConfigError> {
        Ok(WrongAbi)
    }

    fn poll(&mut self, _bus: &mut dyn Bus) -> Result<Readings, DriverError> {
        Ok(Readings::default())
    }
}

/// The version this plugin pretends to speak.
pub const CLAIMED_ABI_VERSION: u32 = 999;

static DESCRIPTOR: DriverDescriptor = DriverDescriptor {
    header: DescriptorHeader {
        abi_version: CLAIMED_ABI_VERSION,
        struct_size: std::mem::size_of::<DriverDescriptor>() as u32,
    },
    ..ems_driver_sdk::export::descriptor::<WrongAbi>()
};

/// The entry symbol, with the wrong version inside.
#[unsafe(no_mangle)]
pub extern "C" fn ems_driver_entry_v1() -> *const DriverDescriptor {
    &DESCRIPTOR
}
