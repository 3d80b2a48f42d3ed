//! Battery state machine and control strategy: pure functions of
//! (state, measurements, command, limits) → (state, setpoint). No I/O, no clocks: the caller
//! passes the time, so every rule is unit- and property-testable.
//!
//! - [`limits`]: the configured battery, grid and control limits.
//! - [`faults`]: which fault flags a set of measurements raises.
//! - [`machine`]: the [`Controller`]: modes, latched ERROR, FULL/EMPTY hysteresis, AUTO
//!   self-consumption with deadband and ramp, and the clamp that makes limits always win.

pub mod faults;
pub mod limits;
pub mod machine;

pub use limits::{BatteryLimits, ControlSettings, GridLimits, Limits};
pub use machine::{Controller, Decision, Measurements, Rejection};

#[cfg(test)]
mod tests;
