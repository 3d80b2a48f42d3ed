//! The plugin side of the ABI, used by [`export_driver!`](crate::export_driver): the descriptor
//! for a [`Driver`] type, the `extern "C"` functions behind it, and [`FfiBus`], the [`Bus`] a
//! driver sees inside a plugin. All the unsafe code a plugin needs is here, written once.

use std::ffi::c_void;
use std::panic::{AssertUnwindSafe, catch_unwind};

use crate::abi::{
    ABI_VERSION, AbiAddress, AbiBuf, AbiBus, AbiBusError, AbiStr, DescriptorHeader,
    DriverDescriptor, panic_message, status,
};
use crate::bus::{Bus, BusError};
use crate::driver::{ConfigError, Driver, DriverError};
use crate::model::{LogLevel, Role};

/// The descriptor of driver `D`. `export_driver!` stores it in a `static`.
pub const fn descriptor<D: Driver>() -> DriverDescriptor {
    DriverDescriptor {
        header: DescriptorHeader {
            abi_version: ABI_VERSION,
            struct_size: std::mem::size_of::<DriverDescriptor>() as u32,
        },
        name: AbiStr::new(D::INFO.name),
        version: AbiStr::new(D::INFO.version),
        roles: roles_mask(D::INFO.roles),
        create: create::<D>,
        destroy: destroy::<D>,
        poll: poll::<D>,
        set_battery_power: set_battery_power::<D>,
        reset_alarms: reset_alarms::<D>,
        free_buf,
    }
}

const fn roles_mask(roles: &[Role]) -> u32 {
    let mut mask = 0;
    let mut i = 0;
    while i < roles.len() {
        mask |= roles[i].bit();
        i += 1;
    }
    mask
}

/// A driver and whether it has panicked.
struct Instance<D> {
    driver: D,
    /// The message of the panic that poisoned this instance.
    poisoned: Option<String>,
}

fn into_buf(bytes: Vec<u8>) -> AbiBuf {
    let boxed = bytes.into_boxed_slice();
    let len = boxed.len();
    AbiBuf {
        ptr: Box::into_raw(boxed).cast::<u8>(),
        len,
    }
}

/// # Safety
/// `out` is null or valid for a write.
unsafe fn answer(out: *mut AbiBuf, code: i32, bytes: Vec<u8>) -> i32 {
    if !out.is_null() {
        // SAFETY: guaranteed by the caller.
        unsafe { out.write(into_buf(bytes)) };
    }
    code
}

fn json<T: serde::Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).unwrap_or_else(|e| format!("unserialisable: {e}").into_bytes())
}

unsafe extern "C" fn free_buf(buf: AbiBuf) {
    if !buf.ptr.is_null() {
        let slice = std::ptr::slice_from_raw_parts_mut(buf.ptr, buf.len);
        // SAFETY: `buf` came from `into_buf` in this plugin and is given back exactly once.
        drop(unsafe { Box::from_raw(slice) });
    }
}

unsafe extern "C" fn create<D: Driver>(
    options_toml: AbiStr,
    address: AbiAddress,
    out_instance: *mut *mut c_void,
    out: *mut AbiBuf,
) -> i32 {
    if out_instance.is_null() {
        // SAFETY: `out` is null or valid per the ABI.
        return unsafe { answer(out, status::INVALID_ARGUMENT, b"null out_instance".to_vec()) };
    }
    let result = catch_unwind(|| -> Result<*mut c_void, (i32, Vec<u8>)> {
        // SAFETY: the host passes a slice valid for this call.
        let bytes = unsafe { options_toml.as_bytes() };
        let text = std::str::from_utf8(bytes).map_err(|e| {
            let message = format!("options are not UTF-8: {e}");
            (status::INVALID_ARGUMENT, message.into_bytes())
        })?;
        let table: toml::Table = toml::from_str(text).map_err(|e| {
            let error = ConfigError::new("options", format!("not a TOML table: {e}"));
            (status::CONFIG_ERROR, json(&error))
        })?;
        let driver =
            D::new(&table, address.into()).map_err(|error| (status::CONFIG_ERROR, json(&error)))?;
        let instance = Box::new(Instance {
            driver,
            poisoned: None,
        });
        Ok(Box::into_raw(instance).cast::<c_void>())
    });
    match result {
        Ok(Ok(instance)) => {
            // SAFETY: checked non-null above; valid for a write per the ABI.
            unsafe { out_instance.write(instance) };
            // SAFETY: `out` is null or valid per the ABI.
            unsafe { answer(out, status::OK, Vec::new()) }
        }
        // SAFETY: as above.
        Ok(Err((code, bytes))) => unsafe { answer(out, code, bytes) },
        Err(payload) => {
            let message = panic_message(payload.as_ref());
            // SAFETY: as above.
            unsafe { answer(out, status::PANICKED, message.into_bytes()) }
        }
    }
}

unsafe extern "C" fn destroy<D: Driver>(instance: *mut c_void) {
    if instance.is_null() {
        return;
    }
    // A panicking Drop cannot be reported anywhere useful; it must only not unwind into the host.
    let _ = catch_unwind(|| {
        // SAFETY: `instance` came from `create::<D>` and the host destroys it exactly once.
        drop(unsafe { Box::from_raw(instance.cast::<Instance<D>>()) });
    });
}

/// Runs `call` on the instance behind `instance` with the host's bus, turning its outcome,
/// error or panic into a status code and an answer buffer.
///
/// # Safety
/// The pointers come from the host per the ABI: `instance` from `create::<D>`, `bus` valid for the
/// call, `out` null or writable.
unsafe fn call<D: Driver>(
    instance: *mut c_void,
    bus: *const AbiBus,
    out: *mut AbiBuf,
    call: impl FnOnce(&mut D, &mut dyn Bus) -> Result<Vec<u8>, DriverError>,
) -> i32 {
    if instance.is_null() || bus.is_null() {
        // SAFETY: guaranteed by the caller.
        return unsafe {
            answer(
                out,
                status::INVALID_ARGUMENT,
                b"null instance or bus".to_vec(),
            )
        };
    }
    // SAFETY: guaranteed by the caller; calls on one instance are never concurrent.
    let instance = unsafe { &mut *instance.cast::<Instance<D>>() };
    if let Some(panic) = &instance.poisoned {
        let message = format!("instance poisoned by an earlier panic: {panic}");
        // SAFETY: guaranteed by the caller.
        return unsafe { answer(out, status::POISONED, message.into_bytes()) };
    }
    // SAFETY: guaranteed by the caller.
    let mut bus = FfiBus {
        table: unsafe { &*bus },
    };
    let driver = &mut instance.driver;
    match catch_unwind(AssertUnwindSafe(|| call(driver, &mut bus))) {
        // SAFETY (all arms): guaranteed by the caller.
        Ok(Ok(bytes)) => unsafe { answer(out, status::OK, bytes) },
        Ok(Err(error)) => unsafe { answer(out, status::DRIVER_ERROR, json(&error)) },
        Err(payload) => {
            let message = panic_message(payload.as_ref());
            instance.poisoned = Some(message.clone());
            unsafe { answer(out, status::PANICKED, message.into_bytes()) }
        }
    }
}

unsafe extern "C" fn poll<D: Driver>(
    instance: *mut c_void,
    bus: *const AbiBus,
    out: *mut AbiBuf,
) -> i32 {
    // SAFETY: forwarded from the host per the ABI.
    unsafe {
        call::<D>(instance, bus, out, |driver, bus| {
            driver.poll(bus).map(|readings| json(&readings))
        })
    }
}

unsafe extern "C" fn set_battery_power<D: Driver>(
    instance: *mut c_void,
    bus: *const AbiBus,
    power_w: f64,
    out: *mut AbiBuf,
) -> i32 {
    // SAFETY: forwarded from the host per the ABI.
    unsafe {
        call::<D>(instance, bus, out, |driver, bus| {
            if !power_w.is_finite() {
                return Err(DriverError::InvalidSetpoint(format!(
                    "battery power {power_w} W is not a finite number"
                )));
            }
            driver.set_battery_power(bus, power_w).map(|()| Vec::new())
        })
    }
}

unsafe extern "C" fn reset_alarms<D: Driver>(
    instance: *mut c_void,
    bus: *const AbiBus,
    out: *mut AbiBuf,
) -> i32 {
    // SAFETY: forwarded from the host per the ABI.
    unsafe {
        call::<D>(instance, bus, out, |driver, bus| {
            driver.reset_alarms(bus).map(|()| Vec::new())
        })
    }
}

/// The host's bus as a driver inside a plugin sees it: each method is one callback into the host.
pub struct FfiBus<'a> {
    table: &'a AbiBus,
}

/// Calls the host with a fresh error record: return code 0 is success, anything else the error
/// the host wrote into the record.
fn host_call(call: impl FnOnce(*mut AbiBusError) -> i32) -> Result<(), BusError> {
    let mut error = AbiBusError::default();
    if call(&mut error) == 0 {
        Ok(())
    } else {
        Err(error.get())
    }
}

/// [`host_call`] for a read: the host gets a buffer with room for `capacity` values and a length
/// to set; the answer is what it wrote, never more than `capacity`.
fn host_read<T: Copy + Default>(
    capacity: usize,
    call: impl FnOnce(*mut T, *mut usize, *mut AbiBusError) -> i32,
) -> Result<Vec<T>, BusError> {
    let mut out = vec![T::default(); capacity];
    let mut len = 0usize;
    host_call(|error| call(out.as_mut_ptr(), &mut len, error))?;
    out.truncate(len.min(capacity));
    Ok(out)
}

impl FfiBus<'_> {
    fn read_registers(
        &mut self,
        read: crate::abi::ReadRegistersFn,
        unit: u8,
        addr: u16,
        count: u16,
    ) -> Result<Vec<u16>, BusError> {
        // SAFETY: `out` has room for `count` registers; the host writes at most that many.
        host_read(count as usize, |out, len, error| unsafe {
            read(self.table.ctx, unit, addr, count, out, len, error)
        })
    }
}

impl Bus for FfiBus<'_> {
    fn read_holding_registers(
        &mut self,
        unit: u8,
        addr: u16,
        count: u16,
    ) -> Result<Vec<u16>, BusError> {
        self.read_registers(self.table.read_holding_registers, unit, addr, count)
    }

    fn read_input_registers(
        &mut self,
        unit: u8,
        addr: u16,
        count: u16,
    ) -> Result<Vec<u16>, BusError> {
        self.read_registers(self.table.read_input_registers, unit, addr, count)
    }

    fn read_coils(&mut self, unit: u8, addr: u16, count: u16) -> Result<Vec<bool>, BusError> {
        // SAFETY: `out` has room for `count` coils; the host writes at most that many.
        let coils = host_read(count as usize, |out, len, error| unsafe {
            (self.table.read_coils)(self.table.ctx, unit, addr, count, out, len, error)
        })?;
        Ok(coils.into_iter().map(|b| b != 0).collect())
    }

    fn write_single_register(&mut self, unit: u8, addr: u16, value: u16) -> Result<(), BusError> {
        // SAFETY: plain values and a valid error record.
        host_call(|error| unsafe {
            (self.table.write_single_register)(self.table.ctx, unit, addr, value, error)
        })
    }

    fn write_multiple_registers(
        &mut self,
        unit: u8,
        addr: u16,
        values: &[u16],
    ) -> Result<(), BusError> {
        // SAFETY: `values` is valid for the call.
        host_call(|error| unsafe {
            (self.table.write_multiple_registers)(
                self.table.ctx,
                unit,
                addr,
                values.as_ptr(),
                values.len(),
                error,
            )
        })
    }

    fn i2c_write(&mut self, addr7: u8, data: &[u8]) -> Result<(), BusError> {
        // SAFETY: `data` is valid for the call.
        host_call(|error| unsafe {
            (self.table.i2c_write)(self.table.ctx, addr7, data.as_ptr(), data.len(), error)
        })
    }

    fn i2c_read(&mut self, addr7: u8, len: usize) -> Result<Vec<u8>, BusError> {
        // SAFETY: `out` has room for `len` bytes; the host writes at most that many.
        host_read(len, |out, got, error| unsafe {
            (self.table.i2c_read)(self.table.ctx, addr7, out, len, got, error)
        })
    }

    fn i2c_write_read(&mut self, addr7: u8, data: &[u8], len: usize) -> Result<Vec<u8>, BusError> {
        // SAFETY: `data` is valid for the call; `out` has room for `len` bytes.
        host_read(len, |out, got, error| unsafe {
            (self.table.i2c_write_read)(
                self.table.ctx,
                addr7,
                data.as_ptr(),
                data.len(),
                out,
                len,
                got,
                error,
            )
        })
    }

    fn log(&mut self, level: LogLevel, message: &str) {
        // SAFETY: `message` is valid for the call.
        unsafe { (self.table.log)(self.table.ctx, level as u8, AbiStr::new(message)) }
    }
}
