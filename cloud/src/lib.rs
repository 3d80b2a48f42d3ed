//! Cloud server of ems: device WebSocket ingest into PostgreSQL/TimescaleDB, REST API,
//! commands with their lifecycle, live feed; several instances share one database.
//!
//! # Layout
//! Dependencies point down this list; no module imports one above it.
//! - [`server`]: [`build`] assembles the stages and routes; [`start`] launches in-process for
//!   tests and the benchmarks.
//! - [`api`]: the REST routes under `/api/v1` (devices, history, commands, tokens, health,
//!   `whoami`) and the dashboard's assets at `/`.
//! - [`ws`]: the device socket `/ws/device/<id>` (its rules in [`ws::session`], pure) and the
//!   live feed `/ws/live/<id>`, on a WebSocket handshake of our own over Rocket's upgrade (small
//!   buffers per socket).
//! - [`ingest`]: the batching telemetry writer (ack after commit, back-pressure, events).
//! - [`alerts`]: alert rules, evaluation on the hub's events and a tick, notifications by
//!   webhook and email.
//! - [`commands`]: storing, delivering and answering commands; the expiry sweeper.
//! - [`hub`]: this instance's device sockets, the local event broadcast, and the
//!   `LISTEN`/`NOTIFY` link to the other instances. It tells, it does not call: commands
//!   subscribe to its delivery requests.
//! - [`auth`]: verifying tokens, roles, request guards, the failure throttle;
//!   [`tokens`]: API tokens in the database (create, list, revoke, rotate);
//!   [`audit`]: the audit trail (queued, written in batches).
//! - [`db`]: pool, refinery migrations from `migrations/`, [`db::timescale`] setup,
//!   [`db::retention`].
//! - [`metrics`]: `GET /metrics` for Prometheus.
//! - [`planner`]: the cloud planner (issue 17): the optimiser and its baselines, pure.
//! - [`config`], [`budget`] (token buckets), [`error`] ([`ApiError`](error::ApiError), catchers),
//!   `stage` and `logsafe` (private helpers).
//! - `testing` (feature `testing`): the in-process server and scripted device that the tests
//!   of ems-cloud, ems-agent and emsctl share.

pub mod alerts;
pub mod api;
pub mod audit;
pub mod auth;
pub mod budget;
pub mod commands;
pub mod config;
pub mod db;
pub mod error;
pub mod hub;
pub mod ingest;
mod logsafe;
pub mod metrics;
pub mod planner;
pub mod server;
mod stage;
#[cfg(feature = "testing")]
pub mod testing;
pub mod tokens;
pub mod ws;

pub use config::{CloudConfig, figment};
pub use server::{Running, build, start};
