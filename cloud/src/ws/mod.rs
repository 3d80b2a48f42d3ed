//! The WebSockets: the device socket `/ws/device/<id>` ([`device`], its rules in [`session`],
//! its frame parsing in [`frame`]) and the dashboards' live feed `/ws/live/<id>` ([`live`]).

mod checks;
pub mod device;
mod frame;
pub mod live;
pub mod session;

use rocket::Route;

/// Both sockets, mounted at `/`.
pub fn routes() -> Vec<Route> {
    [device::routes(), live::routes()].concat()
}
