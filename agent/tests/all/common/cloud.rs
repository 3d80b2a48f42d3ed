//! A real ems-cloud in-process on a database of the test's own PostgreSQL server: the shared
//! fixture of `ems_cloud::testing` (restartable on the same port, plain or TLS; its
//! `uplink_section` writes the agent's `[uplink]` table for it).

#[allow(unused_imports)] // each bench and test uses a part
pub use ems_cloud::testing::{TestCloud as Cloud, rows_and_distinct, stored_seconds};
