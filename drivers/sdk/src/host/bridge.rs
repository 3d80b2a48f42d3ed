//! Lends a `&mut dyn Bus` to a plugin as an [`AbiBus`] for the duration of one call.
//!
//! Each callback runs the host's [`Bus`] inside `catch_unwind`, so a panicking bus
//! implementation becomes a [`BusError::Other`] for the driver instead of unwinding into plugin
//! code, and copies answers into the plugin's own buffers (never more than their capacity).

use std::ffi::c_void;
use std::panic::{AssertUnwindSafe, catch_unwind};

use crate::abi::{AbiBus, AbiBusError, AbiStr, panic_message};
use crate::bus::{Bus, BusError};
use crate::model::LogLevel;

/// Calls `f` with an [`AbiBus`] whose callbacks run on `bus`. The table must not outlive `f`.
pub(crate) fn with_abi_bus<R>(bus: &mut dyn Bus, f: impl FnOnce(&AbiBus) -> R) -> R {
    let mut bus: &mut dyn Bus = bus;
    let table = AbiBus {
        ctx: (&mut bus as *mut &mut dyn Bus).cast::<c_void>(),
        read_holding_registers,
        read_input_registers,
        read_coils,
        write_single_register,
        write_multiple_registers,
        i2c_write,
        i2c_read,
        i2c_write_read,
        log,
    };
    f(&table)
}

/// Runs `op` on the bus behind `ctx`; 0 on success, 1 with `*error` filled on failure.
///
/// # Safety
/// `ctx` comes from [`with_abi_bus`] and the call happens inside its `f`; `error` is null or
/// writable.
unsafe fn run(
    ctx: *mut c_void,
    error: *mut AbiBusError,
    op: impl FnOnce(&mut dyn Bus) -> Result<(), BusError>,
) -> i32 {
    // SAFETY: guaranteed by the caller.
    let bus: &mut dyn Bus = unsafe { &mut **ctx.cast::<&mut dyn Bus>() };
    let result = catch_unwind(AssertUnwindSafe(|| op(bus))).unwrap_or_else(|payload| {
        Err(BusError::Other(format!(
            "the host's bus panicked: {}",
            panic_message(payload.as_ref())
        )))
    });
    match result {
        Ok(()) => 0,
        Err(e) => {
            if !error.is_null() {
                // SAFETY: guaranteed by the caller.
                unsafe { (*error).set(&e) };
            }
            1
        }
    }
}

/// [`run`] for a read: copies what `op` read into the plugin's buffer `out` (never more than its
/// `capacity` values) and stores how many in `*out_len`.
///
/// # Safety
/// As for [`run`] and [`copy_out`].
unsafe fn run_read<T: Copy>(
    ctx: *mut c_void,
    error: *mut AbiBusError,
    out: *mut T,
    capacity: usize,
    out_len: *mut usize,
    op: impl FnOnce(&mut dyn Bus) -> Result<Vec<T>, BusError>,
) -> i32 {
    // SAFETY: guaranteed by the caller.
    unsafe {
        run(ctx, error, |bus| {
            let values = op(bus)?;
            copy_out(&values, out, capacity, out_len);
            Ok(())
        })
    }
}

/// Copies at most `capacity` values into `out` and stores how many in `*out_len`.
///
/// # Safety
/// `out` has room for `capacity` values; `out_len` is writable.
unsafe fn copy_out<T: Copy>(values: &[T], out: *mut T, capacity: usize, out_len: *mut usize) {
    let n = values.len().min(capacity);
    if n > 0 && !out.is_null() {
        // SAFETY: guaranteed by the caller.
        unsafe { std::ptr::copy_nonoverlapping(values.as_ptr(), out, n) };
    }
    if !out_len.is_null() {
        // SAFETY: guaranteed by the caller.
        unsafe { out_len.write(n) };
    }
}

/// # Safety
/// `ptr` points at `len` readable values, or `len` is 0.
unsafe fn slice<'a, T>(ptr: *const T, len: usize) -> &'a [T] {
    if ptr.is_null() || len == 0 {
        &[]
    } else {
        // SAFETY: guaranteed by the caller.
        unsafe { std::slice::from_raw_parts(ptr, len) }
    }
}

unsafe extern "C" fn read_holding_registers(
    ctx: *mut c_void,
    unit: u8,
    addr: u16,
    count: u16,
    out: *mut u16,
    out_len: *mut usize,
    error: *mut AbiBusError,
) -> i32 {
    // SAFETY (every callback below): the plugin calls with the pointers the ABI describes,
    // during the call that `with_abi_bus` lent the table to.
    unsafe {
        run_read(ctx, error, out, count as usize, out_len, |bus| {
            bus.read_holding_registers(unit, addr, count)
        })
    }
}

unsafe extern "C" fn read_input_registers(
    ctx: *mut c_void,
    unit: u8,
    addr: u16,
    count: u16,
    out: *mut u16,
    out_len: *mut usize,
    error: *mut AbiBusError,
) -> i32 {
    unsafe {
        run_read(ctx, error, out, count as usize, out_len, |bus| {
            bus.read_input_registers(unit, addr, count)
        })
    }
}

unsafe extern "C" fn read_coils(
    ctx: *mut c_void,
    unit: u8,
    addr: u16,
    count: u16,
    out: *mut u8,
    out_len: *mut usize,
    error: *mut AbiBusError,
) -> i32 {
    unsafe {
        run_read(ctx, error, out, count as usize, out_len, |bus| {
            let coils = bus.read_coils(unit, addr, count)?;
            Ok(coils.into_iter().map(u8::from).collect())
        })
    }
}

unsafe extern "C" fn write_single_register(
    ctx: *mut c_void,
    unit: u8,
    addr: u16,
    value: u16,
    error: *mut AbiBusError,
) -> i32 {
    unsafe {
        run(ctx, error, |bus| {
            bus.write_single_register(unit, addr, value)
        })
    }
}

unsafe extern "C" fn write_multiple_registers(
    ctx: *mut c_void,
    unit: u8,
    addr: u16,
    values: *const u16,
    count: usize,
    error: *mut AbiBusError,
) -> i32 {
    unsafe {
        run(ctx, error, |bus| {
            bus.write_multiple_registers(unit, addr, slice(values, count))
        })
    }
}

unsafe extern "C" fn i2c_write(
    ctx: *mut c_void,
    addr7: u8,
    data: *const u8,
    len: usize,
    error: *mut AbiBusError,
) -> i32 {
    unsafe { run(ctx, error, |bus| bus.i2c_write(addr7, slice(data, len))) }
}

unsafe extern "C" fn i2c_read(
    ctx: *mut c_void,
    addr7: u8,
    out: *mut u8,
    len: usize,
    out_len: *mut usize,
    error: *mut AbiBusError,
) -> i32 {
    unsafe {
        run_read(ctx, error, out, len, out_len, |bus| {
            bus.i2c_read(addr7, len)
        })
    }
}

#[allow(clippy::too_many_arguments)] // mirrors the C signature one to one
unsafe extern "C" fn i2c_write_read(
    ctx: *mut c_void,
    addr7: u8,
    data: *const u8,
    data_len: usize,
    out: *mut u8,
    len: usize,
    out_len: *mut usize,
    error: *mut AbiBusError,
) -> i32 {
    unsafe {
        run_read(ctx, error, out, len, out_len, |bus| {
            bus.i2c_write_read(addr7, slice(data, data_len), len)
        })
    }
}

unsafe extern "C" fn log(ctx: *mut c_void, level: u8, message: AbiStr) {
    unsafe {
        run(ctx, std::ptr::null_mut(), |bus| {
            let text = String::from_utf8_lossy(message.as_bytes());
            bus.log(LogLevel::from_u8(level), &text);
            Ok(())
        });
    }
}
