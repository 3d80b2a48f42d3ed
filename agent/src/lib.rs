//! The ems edge agent: reads the site's devices through driver plugins, runs the battery state
//! machine, commands the inverter and publishes the spec's telemetry every second.
//!
//! # Layout
//! - [`app`]: wiring: buses, devices and the loop from a config (used by the binary and tests).
//! - [`bus`]: one task per physical bus (Modbus RTU/TCP, I2C), counters, and the blocking
//!   adapter that drivers see.
//! - [`clock`]: the wall clock of telemetry timestamps (with an offset tests can set).
//! - [`config`]: the TOML/env configuration, typed and validated (figment).
//! - [`control`]: the battery state machine and control strategy; pure, no I/O.
//! - [`devices`]: driver plugins per device, and one poller task per device with backoff.
//! - [`site`]: composing measurements from the devices (which device stands for what,
//!   COMM_LOSS) and the spec's telemetry packet.
//! - [`metrics`]: Prometheus metrics and the minimal HTTP responder serving `GET /metrics`.
//! - [`run`]: the 1 Hz loop, aligned to wall-clock seconds, and command handling.
//! - [`scan`]: `ems-agent scan`: the Modbus units on a bus, recognised, as config sections
//!   (reads only).
//! - [`schedule`]: the `SET_SCHEDULE` schedule, kept on disk, and its window in force.
//! - [`uplink`]: the WSS client to the cloud and the store-and-forward queue; its rules
//!   (window, resend, backlog, command de-duplication, liveness) are plain state in
//!   `uplink::state`.

pub mod app;
pub mod bus;
pub mod clock;
pub mod config;
pub mod control;
pub mod devices;
pub mod metrics;
pub mod run;
pub mod scan;
pub mod schedule;
pub mod site;
pub mod uplink;
