//! The cloud planner (issue 17): the cheapest use of a device's battery over the next hours,
//! from its tariff and a forecast of its house load and PV.
//!
//! # Layout
//! - [`lp`]: the optimiser, a linear program over 15-minute slots (pure, no I/O).
//! - [`simulate`]: the two baselines a plan is compared with — no battery, and plain
//!   self-consumption (AUTO) — on the same forecast (pure).

pub mod lp;
pub mod simulate;
