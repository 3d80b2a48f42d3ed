//! The driver plugins through the real C ABI, in one test binary: a module per scenario (see
//! the crate's `lib.rs` for the layout and the shared helpers).

mod drivers_through_the_abi;
mod faulty_plugins;
mod loader;
mod sdm630_map_matches_driver;
