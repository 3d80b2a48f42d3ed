//! The server derives events (state changes, error flags raised and cleared) from consecutive
//! telemetry of a device.

use crate::common;

on_both_backends!(
    state_changes_and_flags_become_events,
    a_late_backlog_rederives_the_events_of_its_stretch
);

use common::{Backend, TestServer, packet, recent_seconds};
use ems_protocol::api::EventRecord;
use ems_protocol::{ErrorFlag, State};

async fn state_changes_and_flags_become_events(backend: Backend) {
    let Some(server) = TestServer::fresh_on(backend).await else {
        return;
    };
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
    server.stop().await;
}

/// A backlog arrives after the live packets that followed it (the agent sends live telemetry
/// beside its backlog after an outage): the events of the stretch it fills are derived again,
/// so they read as if the packets had come in order.
async fn a_late_backlog_rederives_the_events_of_its_stretch(backend: Backend) {
    let Some(server) = TestServer::fresh_on(backend).await else {
        return;
    };
    let token = server.add_device("ems_late").await;
    let mut device = server.device("ems_late", &token).await;
    let ts = recent_seconds(5);
    let with = |i: usize, state: State, flags: Vec<ErrorFlag>| {
        let mut p = packet("ems_late", ts[i], 50.0);
        p.system_status.state = state;
        p.system_status.error_flags = flags;
        p
    };
    let p0 = with(0, State::Idle, vec![]);
    let p1 = with(1, State::Charging, vec![]);
    let p2 = with(2, State::Error, vec![ErrorFlag::Overheat]);
    let p3 = with(3, State::Error, vec![ErrorFlag::Overheat]);
    let p4 = with(4, State::Idle, vec![]);
    let events = async |server: &TestServer| {
        let events: Vec<EventRecord> = server.get_json("/devices/ems_late/events").await;
        events
            .iter()
            .rev()
            .map(|e| {
                (
                    e.time.timestamp(),
                    e.kind.clone(),
                    e.from_state.clone(),
                    e.to_state.clone(),
                    e.flag.clone(),
                )
            })
            .collect::<Vec<_>>()
    };
    let ev = |i: usize, kind: &str, from: Option<&str>, to: Option<&str>, flag: Option<&str>| {
        (
            ts[i].unix(),
            kind.to_string(),
            from.map(str::to_string),
            to.map(str::to_string),
            flag.map(str::to_string),
        )
    };

    // Live: t0 IDLE, then t3 ERROR; the outage hid t1 and t2.
    for p in [&p0, &p3] {
        device.send(p).await;
        device.await_acks(&[p.timestamp]).await;
    }
    assert_eq!(
        events(&server).await,
        vec![
            ev(3, "STATE_CHANGED", Some("IDLE"), Some("ERROR"), None),
            ev(3, "ERROR_RAISED", None, None, Some("OVERHEAT")),
        ]
    );

    // The backlog (t1, t2) arrives after t3, in one frame burst, beside the live t4.
    for p in [&p1, &p2, &p4] {
        device.send(p).await;
    }
    device
        .await_acks(&[p1.timestamp, p2.timestamp, p4.timestamp])
        .await;
    // And once more (a resend after a lost ack): nothing changes.
    device.send(&p1).await;
    device.await_acks(&[p1.timestamp]).await;

    assert_eq!(
        events(&server).await,
        vec![
            ev(1, "STATE_CHANGED", Some("IDLE"), Some("CHARGING"), None),
            ev(2, "STATE_CHANGED", Some("CHARGING"), Some("ERROR"), None),
            ev(2, "ERROR_RAISED", None, None, Some("OVERHEAT")),
            ev(4, "STATE_CHANGED", Some("ERROR"), Some("IDLE"), None),
            ev(4, "ERROR_CLEARED", None, None, Some("OVERHEAT")),
        ]
    );
    server.stop().await;
}
