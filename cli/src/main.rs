//! Operator command line of ems.
//!
//! # Layout
//! - `main.rs`: entry point. The crate is filled by its own issue; until then the binary says so
//!   and exits with an error instead of pretending to work.

fn main() -> anyhow::Result<()> {
    anyhow::bail!("emsctl is not implemented yet (see the project's open issues)")
}
