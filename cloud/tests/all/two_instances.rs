//! Two servers on one database work as one: a command posted to one reaches a device connected
//! to the other, a live feed on one shows a device connected to the other, and a device that
//! reconnects to the other server replaces its old socket.

use crate::common;

use std::time::Duration;

use common::{DEADLINE, Seen, TestServer, packet};
use ems_protocol::api::{CommandRecord, DeviceInfo, LiveEvent, Role};
use ems_protocol::{AnswerStatus, CommandAnswer, CommandStatus, Timestamp, Upstream};
use futures_util::StreamExt;
use tokio_tungstenite::tungstenite::Message;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn command_and_live_feed_cross_instances() {
    let url = ems_testkit::pg::fresh_database().await;
    let a = TestServer::on(&url).await;
    let b = TestServer::on(&url).await;
    assert_ne!(a.running().hub.instance_id, b.running().hub.instance_id);
    let token = a.add_device("ems_multi").await;
    let op = b.token("ops", Role::Operator).await;

    let mut device = a.device("ems_multi", &token).await;
    // A records the connection just after the handshake; B must then list the device online.
    ems_testkit::wait::until(
        "B to list the device on A as online",
        DEADLINE,
        Duration::from_millis(20),
        || async {
            let listed: Vec<DeviceInfo> = b.get_json("/devices").await;
            listed[0].online.then_some(())
        },
    )
    .await;

    // Live feed on B, device on A: keep sending until B's feed shows a packet (B's interest
    // notice has to reach A first).
    let viewer = b.token("dash", Role::Viewer).await;
    let mut feed = b.live_feed("ems_multi", &viewer).await.unwrap();
    let start = tokio::time::Instant::now();
    let mut second = Timestamp::now().unix() - 600;
    let seen = loop {
        assert!(
            start.elapsed() < DEADLINE,
            "B's feed never showed A's telemetry"
        );
        second += 1;
        let p = packet("ems_multi", Timestamp::from_unix(second).unwrap(), 60.0);
        device.send(&p).await;
        device.await_acks(&[p.timestamp]).await;
        match tokio::time::timeout(Duration::from_millis(300), feed.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => break serde_json::from_str::<LiveEvent>(&t).unwrap(),
            Ok(other) => panic!("feed: {other:?}"),
            Err(_) => continue,
        }
    };
    assert!(
        matches!(seen, LiveEvent::Telemetry { ref telemetry } if telemetry.device_id == "ems_multi")
    );

    // Command posted to B reaches the device on A; the answer shows on B.
    let (status, rec) = b
        .post_json(
            "/devices/ems_multi/commands",
            &op,
            &serde_json::json!({"command_id": "cmd_x", "action": "SET_MODE",
                "payload": {"target_mode": "MANUAL_CHARGE", "target_power": 1200}}),
        )
        .await;
    assert_eq!(status, 201, "{rec}");
    assert_eq!(device.next_command().await.command_id, "cmd_x");
    device
        .send_text(
            Upstream::CommandAnswer(CommandAnswer {
                command_id: "cmd_x".into(),
                status: AnswerStatus::Accepted,
                reason: None,
            })
            .to_json(),
        )
        .await;
    ems_testkit::wait::until(
        "B to see ACCEPTED",
        DEADLINE,
        Duration::from_millis(50),
        || async {
            let rec: CommandRecord = b.get_json("/commands/cmd_x").await;
            (rec.status == CommandStatus::Accepted).then_some(())
        },
    )
    .await;

    // The device reconnects to B: its socket on A is closed as replaced.
    let mut on_b = b.device("ems_multi", &token).await;
    loop {
        match device.next().await {
            Seen::Closed(Some(frame)) => {
                assert_eq!(u16::from(frame.code), 4000);
                break;
            }
            Seen::Closed(None) => panic!("closed without a close frame"),
            Seen::Frame(_) => continue,
        }
    }
    let p = packet("ems_multi", Timestamp::from_unix(second + 1).unwrap(), 61.0);
    on_b.send(&p).await;
    on_b.await_acks(&[p.timestamp]).await;
    b.stop().await;
    a.stop().await;
}

/// A device that moves between instances gets its events right: the instance it returns to
/// reads the device's newest row again instead of trusting what it saw before the device left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_stay_right_when_a_device_moves_between_instances() {
    let url = ems_testkit::pg::fresh_database().await;
    let a = TestServer::on(&url).await;
    let b = TestServer::on(&url).await;
    let token = a.add_device("ems_roam").await;
    let ts = common::recent_seconds(3);
    let with = |i: usize, state: ems_protocol::State| {
        let mut p = packet("ems_roam", ts[i], 50.0);
        p.system_status.state = state;
        p
    };
    let send = async |server: &TestServer, p: &ems_protocol::Telemetry| {
        let mut device = server.device("ems_roam", &token).await;
        device.send(p).await;
        device.await_acks(&[p.timestamp]).await;
    };
    send(&a, &with(0, ems_protocol::State::Idle)).await;
    send(&b, &with(1, ems_protocol::State::Charging)).await;
    send(&a, &with(2, ems_protocol::State::Charging)).await;

    let events: Vec<ems_protocol::api::EventRecord> = a.get_json("/devices/ems_roam/events").await;
    let got: Vec<(i64, Option<&str>, Option<&str>)> = events
        .iter()
        .map(|e| {
            (
                e.time.timestamp(),
                e.from_state.as_deref(),
                e.to_state.as_deref(),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![(ts[1].unix(), Some("IDLE"), Some("CHARGING"))],
        "one change, recorded by B; A must not record IDLE -> CHARGING again"
    );
    a.stop().await;
    b.stop().await;
}
