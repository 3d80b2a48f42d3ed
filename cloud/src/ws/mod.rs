//! The WebSockets: the device socket `/ws/device/<id>` ([`device`], its rules in [`session`],
//! its frame parsing in [`frame`]) and the dashboards' live feed `/ws/live/<id>` ([`live`]),
//! both on the WebSocket handshake of [`upgrade`].

mod checks;
pub mod device;
mod frame;
pub mod live;
pub mod session;
mod upgrade;

use rocket::Route;

/// Both sockets, mounted at `/`.
pub fn routes() -> Vec<Route> {
    [device::routes(), live::routes()].concat()
}
