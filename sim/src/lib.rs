//! ems-sim: a simulated site for development and tests. It speaks real Modbus RTU on a
//! pseudo-terminal (the agent opens it like `/dev/ttyUSB0`), optionally Modbus TCP, and serves a
//! simulated I2C bus on a Unix socket, over physics that move with time.
//!
//! # Layout
//! - [`physics`]: battery, inverter, PV, load and grid; time advances only through `advance`.
//! - [`day`]: whole days (sunny or cloudy PV, household load with an EV block, a time-of-use
//!   tariff) and load steps faster than real time, with any controller as a closure: how the
//!   agent's control strategies are measured (`agent/examples/day.rs`).
//! - [`rtu`]: Modbus RTU slave framing (CRC, 3.5-character gaps) over any byte stream, with
//!   line fault injection (corrupted CRC, dropped responses).
//! - [`sunspec`], [`sdm630`], [`ina226`]: the device register maps, from the published
//!   documents.
//! - [`tcp`]: a Modbus TCP server (MBAP framing) in front of the same slaves, as an
//!   RS-485-to-Ethernet gateway.
//! - [`site`]: [`site::SimSite`], which wires all of it together on a directory of device
//!   paths (the I2C bus on a Unix socket, framed as `ems_driver_sdk::i2c_socket` says), and the fault-injection handle used by tests and by the control socket.

pub mod day;
pub mod ina226;
pub mod physics;
pub mod rtu;
pub mod sdm630;
pub mod site;
pub mod sunspec;
pub mod tcp;
