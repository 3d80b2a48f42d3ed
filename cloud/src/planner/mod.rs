//! The cloud planner (issue 17): the cheapest use of a device's battery over the next hours,
//! from its tariff and a forecast of its house load and PV.
//!
//! # Layout
//! - [`lp`]: the optimiser, a linear program over 15-minute slots (pure, no I/O).
//! - [`forecast`]: house load and PV per slot from the device's own history (one SQL query,
//!   then a pure fallback chain).
//! - [`schedule`]: a plan as a `SET_SCHEDULE` (pure).
//! - [`replan`]: the background re-planner of opted-in devices (receding horizon; one
//!   instance per device by an `UPDATE … RETURNING` claim).
//! - [`simulate`]: the two baselines a plan is compared with — no battery, and plain
//!   self-consumption (AUTO) — on the same forecast (pure).

pub mod forecast;
pub mod lp;
pub mod replan;
pub mod schedule;
pub mod simulate;
