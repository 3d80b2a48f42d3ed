//! The ems edge agent: reads the site's devices through driver plugins, runs the battery state
//! machine, commands the inverter and publishes the spec's telemetry every second.
//!
//! # Layout
//! - [`config`]: the TOML/env configuration, typed and validated (figment).
//! - [`control`]: the battery state machine and control strategy; pure, no I/O.

pub mod config;
pub mod control;
