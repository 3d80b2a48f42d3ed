//! Proves a driver that panics cannot take the host down: the panic is caught inside the plugin,
//! reported once, and the instance refuses every later call, while other instances keep working.

use ems_driver_sdk::host::{HostError, Plugin};
use ems_driver_sdk::{DeviceAddress, LogLevel, MemoryBus};
use ems_driver_tests::{options, plugin_file};

const UNIT_7: DeviceAddress = DeviceAddress {
    modbus_unit: Some(7),
    i2c_address: None,
};

#[test]
fn a_panic_in_poll_poisons_only_that_instance() {
    let plugin = Plugin::open(plugin_file("test-panicky")).unwrap();
    let mut bus = MemoryBus::new();
    bus.set_holding(7, 0, &[0]);

    let mut first = plugin.instantiate(&options(""), UNIT_7).unwrap();
    let mut second = plugin.instantiate(&options(""), UNIT_7).unwrap();

    // Before the panic the instance works, through the host's bus.
    first.set_battery_power(&mut bus, -300.0).unwrap();
    assert_eq!(bus.holding(7, 0), Some((-300i16) as u16));

    let err = first.poll(&mut bus).unwrap_err();
    let HostError::Panicked { driver, message } = &err else {
        panic!("expected Panicked, got {err}")
    };
    assert_eq!(driver, "test-panicky");
    assert!(message.contains("panics in poll on purpose"), "{message}");
    assert!(first.is_poisoned());
    // The log line written just before the panic reached the host.
    assert_eq!(
        bus.logs(),
        &[(
            LogLevel::Warn,
            "test-panicky: about to panic in poll".to_string()
        )]
    );

    // From now on every call on it fails without running driver code.
    let err = first.set_battery_power(&mut bus, 100.0).unwrap_err();
    assert!(matches!(err, HostError::Poisoned { .. }), "{err}");
    let err = first.poll(&mut bus).unwrap_err();
    assert!(err.to_string().contains("poisoned"), "{err}");
    assert_eq!(bus.holding(7, 0), Some((-300i16) as u16));

    // The other instance of the same plugin is unaffected.
    second.set_battery_power(&mut bus, 500.0).unwrap();
    assert_eq!(bus.holding(7, 0), Some(500));
    drop(first);
    drop(second);
}

#[test]
fn bus_errors_cross_the_abi_intact() {
    let plugin = Plugin::open(plugin_file("test-panicky")).unwrap();
    let mut instance = plugin.instantiate(&options(""), UNIT_7).unwrap();
    let mut bus = MemoryBus::new();
    bus.set_holding(7, 0, &[0]);
    bus.fail(7, 0..=0, ems_driver_sdk::BusError::Exception(4));
    let err = instance.set_battery_power(&mut bus, 1.0).unwrap_err();
    assert!(
        matches!(
            &err,
            HostError::Driver {
                source: ems_driver_sdk::DriverError::Bus {
                    source: ems_driver_sdk::BusError::Exception(4),
                    ..
                },
                ..
            }
        ),
        "{err}"
    );
    assert!(!instance.is_poisoned());
}

/// A bus whose every transaction times out, as raw ABI callbacks.
mod dead_bus {
    use std::ffi::c_void;

    use ems_driver_sdk::BusError;
    use ems_driver_sdk::abi::{AbiBus, AbiBusError, AbiStr};

    unsafe fn timeout(error: *mut AbiBusError) -> i32 {
        // SAFETY: the plugin passes a valid error record.
        unsafe { (*error).set(&BusError::Timeout) };
        1
    }
    unsafe extern "C" fn regs(
        _: *mut c_void,
        _: u8,
        _: u16,
        _: u16,
        _: *mut u16,
        _: *mut usize,
        e: *mut AbiBusError,
    ) -> i32 {
        unsafe { timeout(e) }
    }
    unsafe extern "C" fn coils(
        _: *mut c_void,
        _: u8,
        _: u16,
        _: u16,
        _: *mut u8,
        _: *mut usize,
        e: *mut AbiBusError,
    ) -> i32 {
        unsafe { timeout(e) }
    }
    unsafe extern "C" fn single(_: *mut c_void, _: u8, _: u16, _: u16, e: *mut AbiBusError) -> i32 {
        unsafe { timeout(e) }
    }
    unsafe extern "C" fn multiple(
        _: *mut c_void,
        _: u8,
        _: u16,
        _: *const u16,
        _: usize,
        e: *mut AbiBusError,
    ) -> i32 {
        unsafe { timeout(e) }
    }
    unsafe extern "C" fn i2c_write(
        _: *mut c_void,
        _: u8,
        _: *const u8,
        _: usize,
        e: *mut AbiBusError,
    ) -> i32 {
        unsafe { timeout(e) }
    }
    unsafe extern "C" fn i2c_read(
        _: *mut c_void,
        _: u8,
        _: *mut u8,
        _: usize,
        _: *mut usize,
        e: *mut AbiBusError,
    ) -> i32 {
        unsafe { timeout(e) }
    }
    #[allow(clippy::too_many_arguments)]
    unsafe extern "C" fn i2c_write_read(
        _: *mut c_void,
        _: u8,
        _: *const u8,
        _: usize,
        _: *mut u8,
        _: usize,
        _: *mut usize,
        e: *mut AbiBusError,
    ) -> i32 {
        unsafe { timeout(e) }
    }
    unsafe extern "C" fn log(_: *mut c_void, _: u8, _: AbiStr) {}

    pub fn table() -> AbiBus {
        AbiBus {
            ctx: std::ptr::null_mut(),
            read_holding_registers: regs,
            read_input_registers: regs,
            read_coils: coils,
            write_single_register: single,
            write_multiple_registers: multiple,
            i2c_write,
            i2c_read,
            i2c_write_read,
            log,
        }
    }
}

/// Even a host that ignored the panic and kept calling is refused: the plugin keeps its own
/// poison flag (this test plays such a host on the raw ABI).
#[test]
fn the_plugin_itself_refuses_a_poisoned_instance() {
    use ems_driver_sdk::abi::{
        AbiAddress, AbiBuf, AbiStr, DriverDescriptor, ENTRY_SYMBOL, EntryFn, status,
    };

    // SAFETY: our own test plugin.
    let library = unsafe { libloading::Library::new(plugin_file("test-panicky")) }.unwrap();
    let entry = *unsafe { library.get::<EntryFn>(ENTRY_SYMBOL.as_bytes()) }.unwrap();
    // SAFETY: the plugin's static descriptor; the library is leaked below, never unloaded.
    let descriptor: &DriverDescriptor = unsafe { &*entry() };
    let take = |out: AbiBuf| -> String {
        if out.ptr.is_null() {
            return String::new();
        }
        // SAFETY: an answer buffer of this plugin, given back once.
        let text = unsafe { std::slice::from_raw_parts(out.ptr, out.len) };
        let text = String::from_utf8_lossy(text).into_owned();
        unsafe { (descriptor.free_buf)(out) };
        text
    };

    let mut instance = std::ptr::null_mut();
    let mut out = AbiBuf::EMPTY;
    // SAFETY (all calls below): arguments as the ABI describes them.
    let code = unsafe {
        (descriptor.create)(
            AbiStr::new(""),
            AbiAddress::from(UNIT_7),
            &mut instance,
            &mut out,
        )
    };
    let message = take(out);
    assert_eq!(code, status::OK, "{message}");

    let bus = dead_bus::table();
    let mut out = AbiBuf::EMPTY;
    let code = unsafe { (descriptor.poll)(instance, &bus, &mut out) };
    assert_eq!(code, status::PANICKED);
    assert!(take(out).contains("on purpose"));

    for _ in 0..2 {
        let mut out = AbiBuf::EMPTY;
        let code = unsafe { (descriptor.poll)(instance, &bus, &mut out) };
        assert_eq!(code, status::POISONED);
        assert!(take(out).contains("poisoned by an earlier panic"));
    }
    let mut out = AbiBuf::EMPTY;
    let code = unsafe { (descriptor.set_battery_power)(instance, &bus, 10.0, &mut out) };
    let message = take(out);
    assert_eq!(code, status::POISONED, "{message}");

    unsafe { (descriptor.destroy)(instance) };
    std::mem::forget(library);
}
