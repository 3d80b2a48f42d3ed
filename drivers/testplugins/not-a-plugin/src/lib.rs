//! Test library `not-a-plugin`: a shared library that exports a C function but not the driver
//! entry symbol, so the loader tests can prove the host refuses it as "not a plugin".
//!
//! # Layout
//! One function.

/// Some unrelated export.
#[unsafe(no_mangle)]
pub extern "C" fn ems_not_a_driver(x: u32) -> u32 {
    x.wrapping_mul(2)
}
