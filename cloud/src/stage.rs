//! Helpers for the server's start-up stages (Rocket fairings that set up one part each).

use rocket::{Build, Rocket};

/// A copy of what an earlier stage of [`build`](crate::build) put in Rocket's state, for a stage that starts
/// background work at ignition. `None` when that stage failed: Rocket still runs the later
/// stages, which then fail too, quietly (the failed stage logged why), so the start-up error a
/// user sees is the first stage's, never a panic of a later one.
pub(crate) fn managed<T: Clone + Send + Sync + 'static>(rocket: &Rocket<Build>) -> Option<T> {
    rocket.state::<T>().cloned()
}

/// `let x: T = need!(rocket);` in a `try_on_ignite` stage: the managed `T`, or fail the stage.
macro_rules! need {
    ($rocket:ident) => {
        match $crate::stage::managed(&$rocket) {
            Some(value) => value,
            None => return Err($rocket),
        }
    };
}
pub(crate) use need;
