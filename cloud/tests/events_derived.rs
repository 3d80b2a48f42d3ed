//! The server derives events (state changes, error flags raised and cleared) from consecutive
//! telemetry of a device.

mod common;

use common::{TestServer, packet, recent_seconds};
use ems_protocol::api::EventRecord;
use ems_protocol::{ErrorFlag, State};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_changes_and_flags_become_events() {
    let server = TestServer::fresh().await;
    let token = server.add_device("ems_ev").await;
    let mut device = server.device("ems_ev", &token).await;
    let ts = recent_seconds(4);
    let mut p0 = packet("ems_ev", ts[0], 50.0);
    p0.system_status.state = State::Charging;
    let mut p1 = packet("ems_ev", ts[1], 50.0);
    p1.system_status.state = State::Error;
    p1.system_status.error_flags = vec![ErrorFlag::Overheat];
    let mut p2 = packet("ems_ev", ts[2], 50.0);
    p2.system_status.state = State::Error;
    p2.system_status.error_flags = vec![ErrorFlag::Overheat];
    let mut p3 = packet("ems_ev", ts[3], 50.0);
    p3.system_status.state = State::Idle;
    // Sent one by one so they land in separate batches too.
    for p in [&p0, &p1, &p2, &p3] {
        device.send(p).await;
        device.await_acks(&[p.timestamp]).await;
    }
    // A resent packet creates no new event.
    device.send(&p1).await;
    device.await_acks(&[p1.timestamp]).await;

    let events: Vec<EventRecord> = server.get_json("/devices/ems_ev/events").await;
    let got: Vec<(i64, &str, Option<&str>, Option<&str>)> = events
        .iter()
        .rev()
        .map(|e| {
            (
                e.time.timestamp(),
                e.kind.as_str(),
                e.to_state.as_deref(),
                e.flag.as_deref(),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            (ts[1].unix(), "STATE_CHANGED", Some("ERROR"), None),
            (ts[1].unix(), "ERROR_RAISED", None, Some("OVERHEAT")),
            (ts[3].unix(), "STATE_CHANGED", Some("IDLE"), None),
            (ts[3].unix(), "ERROR_CLEARED", None, Some("OVERHEAT")),
        ]
    );
    server.running.stop().await;
}
