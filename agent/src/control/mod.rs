//! Battery state machine and control strategy: pure functions of
//! (state, measurements, command, limits) → (state, setpoint). No I/O, no clocks: the caller
//! passes the time, so every rule is unit- and property-testable.
//!
//! - [`limits`]: the configured battery, grid and control limits.
//! - [`strategy`]: what AUTO aims at (`[strategy]`: target, export and import limits, backup
//!   reserve) and the action a schedule window may put on top.
//! - [`faults`]: which fault flags a set of measurements raises.
//! - [`auto`]: AUTO's control law and strategy stack, and their order of precedence.
//! - [`machine`]: the [`Controller`]: modes, latched ERROR, FULL/EMPTY hysteresis, AUTO, and
//!   the clamp that makes limits always win.

pub mod auto;
pub mod faults;
pub mod limits;
pub mod machine;
pub mod strategy;

pub use limits::{BatteryLimits, ControlSettings, GridLimits, Limits};
pub use machine::{Controller, Decision, Measurements, Rejection};
pub use strategy::{Band, ScheduleAction, Strategy, StrategyProblem};

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;
