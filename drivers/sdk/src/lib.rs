//! SDK and C ABI for ems driver plugins.
//!
//! # Layout
//! Filled by the driver-plugin issue; nothing is exported yet.
