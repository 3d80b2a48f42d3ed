//! The C ABI between the host (the agent) and a driver plugin, version [`ABI_VERSION`].
//!
//! Everything that crosses is in this file, and only these things cross: `#[repr(C)]` structs of
//! integers, `(ptr, len)` byte slices and `extern "C"` function pointers. Rust types with an
//! unstable layout (`String`, `Vec`, trait objects, anything async) never do, so a plugin built by
//! another compiler version still works. Rich data crosses as bytes in a format that tolerates
//! additions: [`Readings`](crate::Readings) and errors as JSON, options as TOML text.
//!
//! # The contract
//! - A plugin exports one symbol, [`ENTRY_SYMBOL`], an [`EntryFn`] returning a pointer to a static
//!   [`DriverDescriptor`]. The host reads [`DescriptorHeader`] first and checks the ABI version and
//!   the descriptor's size before it touches any other field.
//! - Whoever allocates frees: a plugin's answer ([`AbiBuf`]) is freed by calling the plugin's
//!   `free_buf`; buffers the plugin passes to bus callbacks are the plugin's, and the host only
//!   writes into them up to the given capacity.
//! - No unwinding crosses: every plugin function and every host callback runs inside
//!   `catch_unwind`. A plugin instance that panicked is poisoned: every later call returns
//!   [`status::POISONED`].
//! - The host never unloads a library (unloading Rust code with thread-locals is not sound), so
//!   the descriptor's strings stay valid for the life of the process.
//! - Calls on one instance are never concurrent; different instances may be called concurrently.

use std::any::Any;
use std::ffi::c_void;

use crate::bus::BusError;
use crate::model::DeviceAddress;

/// The ABI version this SDK speaks. Bumped on any change to a `#[repr(C)]` type or to the meaning
/// of a status code; the entry symbol's name carries the major version too.
pub const ABI_VERSION: u32 = 1;

/// The one symbol a plugin exports.
pub const ENTRY_SYMBOL: &str = "ems_driver_entry_v1";

/// Type of [`ENTRY_SYMBOL`].
pub type EntryFn = unsafe extern "C" fn() -> *const DriverDescriptor;

/// Status codes returned by the descriptor's functions. What the out-buffer holds depends on it.
pub mod status {
    /// Success. `poll`: the buffer holds the readings as JSON; otherwise it is empty.
    pub const OK: i32 = 0;
    /// The driver returned an error: the buffer holds a [`DriverError`](crate::DriverError) as JSON.
    pub const DRIVER_ERROR: i32 = 1;
    /// `create` refused the options: the buffer holds a [`ConfigError`](crate::ConfigError) as JSON.
    pub const CONFIG_ERROR: i32 = 2;
    /// The call panicked and the instance is now poisoned: the buffer holds the panic message.
    pub const PANICKED: i32 = 3;
    /// An earlier call panicked: the buffer holds a message. The instance only accepts `destroy`.
    pub const POISONED: i32 = 4;
    /// The host passed something unusable (null pointer, options not UTF-8): message in the buffer.
    pub const INVALID_ARGUMENT: i32 = 5;
}

/// A borrowed UTF-8 string or byte slice. Valid only for the duration of the call, except in the
/// descriptor, where it points at the plugin's static data.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct AbiStr {
    pub ptr: *const u8,
    pub len: usize,
}

impl AbiStr {
    pub const fn new(s: &str) -> AbiStr {
        AbiStr {
            ptr: s.as_ptr(),
            len: s.len(),
        }
    }

    /// The bytes.
    ///
    /// # Safety
    /// `ptr` must point at `len` readable bytes that outlive `'a` (or be null).
    pub unsafe fn as_bytes<'a>(self) -> &'a [u8] {
        if self.ptr.is_null() || self.len == 0 {
            &[]
        } else {
            // SAFETY: guaranteed by the caller.
            unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
        }
    }
}

/// A byte buffer allocated by the plugin and handed to the host, which must give it back through
/// the descriptor's `free_buf` (never free it with its own allocator).
#[repr(C)]
#[derive(Debug)]
pub struct AbiBuf {
    pub ptr: *mut u8,
    pub len: usize,
}

impl AbiBuf {
    /// No buffer; `free_buf` accepts it and does nothing.
    pub const EMPTY: AbiBuf = AbiBuf {
        ptr: std::ptr::null_mut(),
        len: 0,
    };
}

/// [`DeviceAddress`] with explicit presence bytes.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct AbiAddress {
    pub has_modbus_unit: u8,
    pub modbus_unit: u8,
    pub has_i2c_address: u8,
    pub i2c_address: u8,
}

impl From<DeviceAddress> for AbiAddress {
    fn from(a: DeviceAddress) -> AbiAddress {
        AbiAddress {
            has_modbus_unit: a.modbus_unit.is_some().into(),
            modbus_unit: a.modbus_unit.unwrap_or(0),
            has_i2c_address: a.i2c_address.is_some().into(),
            i2c_address: a.i2c_address.unwrap_or(0),
        }
    }
}

impl From<AbiAddress> for DeviceAddress {
    fn from(a: AbiAddress) -> DeviceAddress {
        DeviceAddress {
            modbus_unit: (a.has_modbus_unit != 0).then_some(a.modbus_unit),
            i2c_address: (a.has_i2c_address != 0).then_some(a.i2c_address),
        }
    }
}

/// Kinds of [`AbiBusError`], one per [`BusError`] variant.
pub mod bus_error_kind {
    pub const NONE: u32 = 0;
    pub const TIMEOUT: u32 = 1;
    pub const CRC: u32 = 2;
    pub const EXCEPTION: u32 = 3;
    pub const NACK: u32 = 4;
    pub const UNSUPPORTED: u32 = 5;
    pub const OTHER: u32 = 6;
}

/// Longest message an [`AbiBusError`] carries; longer ones are cut at a character boundary.
pub const BUS_ERROR_MESSAGE_LEN: usize = 240;

/// A [`BusError`] as the host reports it into storage the plugin provides (so nothing is
/// allocated across the boundary on the error path).
#[repr(C)]
#[derive(Debug, Clone)]
pub struct AbiBusError {
    pub kind: u32,
    /// The Modbus exception code when `kind` is `EXCEPTION`.
    pub exception_code: u8,
    /// How many bytes of `message` are used (`OTHER` only).
    pub message_len: u32,
    pub message: [u8; BUS_ERROR_MESSAGE_LEN],
}

impl Default for AbiBusError {
    fn default() -> AbiBusError {
        AbiBusError {
            kind: bus_error_kind::NONE,
            exception_code: 0,
            message_len: 0,
            message: [0; BUS_ERROR_MESSAGE_LEN],
        }
    }
}

impl AbiBusError {
    /// Stores `error` (host side).
    pub fn set(&mut self, error: &BusError) {
        *self = AbiBusError::default();
        self.kind = match error {
            BusError::Timeout => bus_error_kind::TIMEOUT,
            BusError::Crc => bus_error_kind::CRC,
            BusError::Exception(code) => {
                self.exception_code = *code;
                bus_error_kind::EXCEPTION
            }
            BusError::Nack => bus_error_kind::NACK,
            BusError::Unsupported => bus_error_kind::UNSUPPORTED,
            BusError::Other(message) => {
                let mut end = message.len().min(BUS_ERROR_MESSAGE_LEN);
                while !message.is_char_boundary(end) {
                    end -= 1;
                }
                self.message[..end].copy_from_slice(&message.as_bytes()[..end]);
                self.message_len = end as u32;
                bus_error_kind::OTHER
            }
        };
    }

    /// The stored error (plugin side). A failure the host did not describe becomes `Other`.
    pub fn get(&self) -> BusError {
        match self.kind {
            bus_error_kind::TIMEOUT => BusError::Timeout,
            bus_error_kind::CRC => BusError::Crc,
            bus_error_kind::EXCEPTION => BusError::Exception(self.exception_code),
            bus_error_kind::NACK => BusError::Nack,
            bus_error_kind::UNSUPPORTED => BusError::Unsupported,
            _ => {
                let len = (self.message_len as usize).min(BUS_ERROR_MESSAGE_LEN);
                let message = String::from_utf8_lossy(&self.message[..len]).into_owned();
                BusError::Other(if message.is_empty() {
                    format!("bus failure of unknown kind {}", self.kind)
                } else {
                    message
                })
            }
        }
    }
}

/// Reads `count` registers into `out` (capacity `count`), sets `*out_len` to how many arrived.
/// Returns 0 on success, non-zero with `*error` filled on failure.
pub type ReadRegistersFn = unsafe extern "C" fn(
    ctx: *mut c_void,
    unit: u8,
    addr: u16,
    count: u16,
    out: *mut u16,
    out_len: *mut usize,
    error: *mut AbiBusError,
) -> i32;

/// Reads `count` coils into `out` (one byte per coil, 0 or 1), like [`ReadRegistersFn`].
pub type ReadCoilsFn = unsafe extern "C" fn(
    ctx: *mut c_void,
    unit: u8,
    addr: u16,
    count: u16,
    out: *mut u8,
    out_len: *mut usize,
    error: *mut AbiBusError,
) -> i32;

/// The bus the host lends a plugin for the duration of one call: a context pointer and the
/// callbacks that run transactions on it. Mirrors [`Bus`](crate::Bus) one to one.
#[repr(C)]
#[derive(Debug)]
pub struct AbiBus {
    pub ctx: *mut c_void,
    pub read_holding_registers: ReadRegistersFn,
    pub read_input_registers: ReadRegistersFn,
    pub read_coils: ReadCoilsFn,
    pub write_single_register: unsafe extern "C" fn(
        ctx: *mut c_void,
        unit: u8,
        addr: u16,
        value: u16,
        error: *mut AbiBusError,
    ) -> i32,
    pub write_multiple_registers: unsafe extern "C" fn(
        ctx: *mut c_void,
        unit: u8,
        addr: u16,
        values: *const u16,
        count: usize,
        error: *mut AbiBusError,
    ) -> i32,
    pub i2c_write: unsafe extern "C" fn(
        ctx: *mut c_void,
        addr7: u8,
        data: *const u8,
        len: usize,
        error: *mut AbiBusError,
    ) -> i32,
    pub i2c_read: unsafe extern "C" fn(
        ctx: *mut c_void,
        addr7: u8,
        out: *mut u8,
        len: usize,
        out_len: *mut usize,
        error: *mut AbiBusError,
    ) -> i32,
    pub i2c_write_read: unsafe extern "C" fn(
        ctx: *mut c_void,
        addr7: u8,
        data: *const u8,
        data_len: usize,
        out: *mut u8,
        len: usize,
        out_len: *mut usize,
        error: *mut AbiBusError,
    ) -> i32,
    /// `level` is a [`LogLevel`](crate::LogLevel) as `u8`; `message` is UTF-8.
    pub log: unsafe extern "C" fn(ctx: *mut c_void, level: u8, message: AbiStr),
}

/// The part of the descriptor that never moves, read before anything else.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct DescriptorHeader {
    pub abi_version: u32,
    /// `size_of::<DriverDescriptor>()` as the plugin was built.
    pub struct_size: u32,
}

/// What [`ENTRY_SYMBOL`] returns: the driver's identity and its functions. Static in the plugin.
#[repr(C)]
#[derive(Debug)]
pub struct DriverDescriptor {
    /// Always first: [`ABI_VERSION`] and the struct size.
    pub header: DescriptorHeader,
    /// [`DriverInfo::name`](crate::DriverInfo::name), UTF-8.
    pub name: AbiStr,
    /// [`DriverInfo::version`](crate::DriverInfo::version), UTF-8.
    pub version: AbiStr,
    /// [`DriverInfo::roles`](crate::DriverInfo::roles) as a bit mask of [`Role::bit`](crate::Role::bit).
    pub roles: u32,
    /// Builds an instance from TOML `options`; on [`status::OK`] writes it to `*out_instance`.
    pub create: unsafe extern "C" fn(
        options_toml: AbiStr,
        address: AbiAddress,
        out_instance: *mut *mut c_void,
        out: *mut AbiBuf,
    ) -> i32,
    /// Drops an instance. Never fails; a panic inside is swallowed.
    pub destroy: unsafe extern "C" fn(instance: *mut c_void),
    pub poll:
        unsafe extern "C" fn(instance: *mut c_void, bus: *const AbiBus, out: *mut AbiBuf) -> i32,
    pub set_battery_power: unsafe extern "C" fn(
        instance: *mut c_void,
        bus: *const AbiBus,
        power_w: f64,
        out: *mut AbiBuf,
    ) -> i32,
    pub reset_alarms:
        unsafe extern "C" fn(instance: *mut c_void, bus: *const AbiBus, out: *mut AbiBuf) -> i32,
    /// Frees a buffer this plugin returned.
    pub free_buf: unsafe extern "C" fn(buf: AbiBuf),
}

// SAFETY: a descriptor is immutable static data (pointers to static strings and functions).
unsafe impl Sync for DriverDescriptor {}

/// The text of a panic payload (`&str` or `String` payloads; anything else is named as such).
pub fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic with a non-string payload".to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bus_errors_survive_the_abi() {
        let long = "é".repeat(200);
        for error in [
            BusError::Timeout,
            BusError::Crc,
            BusError::Exception(4),
            BusError::Nack,
            BusError::Unsupported,
            BusError::Other("port closed".into()),
        ] {
            let mut abi = AbiBusError::default();
            abi.set(&error);
            assert_eq!(abi.get(), error);
        }
        let mut abi = AbiBusError::default();
        abi.set(&BusError::Other(long));
        let BusError::Other(cut) = abi.get() else {
            panic!("kind lost")
        };
        assert_eq!(cut.len(), 240);
    }

    #[test]
    fn addresses_survive_the_abi() {
        let a = DeviceAddress {
            modbus_unit: Some(0),
            i2c_address: None,
        };
        assert_eq!(DeviceAddress::from(AbiAddress::from(a)), a);
    }
}
