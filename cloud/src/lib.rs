//! Cloud server of ems: device WebSocket ingest into PostgreSQL/TimescaleDB, REST API,
//! commands with their lifecycle, live feed; several instances share one database.
//!
//! # Layout
//! - [`config`]: [`CloudConfig`](config::CloudConfig), read from Rocket's figment plus
//!   `cloud.toml` / `EMS_CLOUD_…`.
//! - [`server`]: [`build`](server::build) assembles the stages and routes;
//!   [`start`](server::start) launches in-process for tests and the benchmark.
//! - [`db`]: pool, refinery migrations from `migrations/`, and [`db::timescale`] setup.
//! - [`hub`]: this instance's device sockets, the local event broadcast, and the
//!   `LISTEN`/`NOTIFY` link to the other instances.
//! - [`device_ws`]: the device socket `/ws/device/<id>` (spec protocol, acks, commands down).
//! - `telemetry_frame` (private): one-pass parse of a plain telemetry frame.
//! - [`ingest`]: the batching telemetry writer (ack after commit, back-pressure, events).
//! - [`commands`]: REST commands, delivery, answers, expiry sweeper.
//! - [`devices`], [`history`]: REST devices, latest telemetry, events, history buckets.
//! - [`live`]: the dashboard feed `/ws/live/<id>`.
//! - [`auth`]: tokens, roles, request guards; `POST /tokens`.
//! - [`health`]: `GET /health`, `GET /openapi.json`.
//! - [`dashboard`]: the web dashboard's built assets at `/`, and `GET /whoami`.
//! - [`error`]: [`ApiError`](error::ApiError) (JSON error responses) and catchers.

pub mod auth;
pub mod budget;
pub mod commands;
pub mod config;
pub mod dashboard;
pub mod db;
pub mod device_ws;
pub mod devices;
pub mod error;
pub mod health;
pub mod history;
pub mod hub;
pub mod ingest;
pub mod live;
mod logsafe;
pub mod server;
mod telemetry_frame;

pub use config::{CloudConfig, figment};
pub use server::{Running, build, start};
