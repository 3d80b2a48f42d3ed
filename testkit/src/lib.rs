//! Test bench parts shared by the ems crates' tests (and by `ems-sim`, which needs the same
//! pseudo-terminals to stand in for an RS-485 bus).
//!
//! # Layout
//! - [`pg`] (feature `pg`, default): a throwaway PostgreSQL server per test process (initdb into a
//!   temp dir, free port, fsync off; run as the `postgres` user when we are root) that hands out a
//!   fresh database per test and is stopped when the process exits; and owned servers that a test
//!   can stop and start again to simulate an outage.
//! - [`process`]: child processes (agent, emsctl, any program a test runs) that are killed when
//!   the test ends, panics or is killed.
//! - [`pty`]: linked pseudo-terminal pairs in raw mode, with an async stream for the master side.
//! - [`tls`] (feature `tls`): a self-signed certificate for 127.0.0.1 in PEM files.
//! - [`wait`]: wait for a condition with a deadline instead of sleeping "long enough".

#[cfg(feature = "pg")]
pub mod pg;
pub mod process;
pub mod pty;
#[cfg(feature = "tls")]
pub mod tls;
pub mod wait;
