//! The live feed pushes each stored packet and each command status change of one device;
//! browsers open it with a single-use ticket (an API token in the URL is refused unless
//! `live_query_token` allows it).

use crate::common;

use common::{DEADLINE, TestServer, packet, recent_seconds};
use ems_protocol::api::{LiveEvent, Role};
use ems_protocol::{AnswerStatus, CommandAnswer, CommandStatus, Upstream};
use futures_util::StreamExt;
use tokio_tungstenite::tungstenite::Message;

pub type Feed =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

pub async fn next_event(feed: &mut Feed) -> LiveEvent {
    tokio::time::timeout(DEADLINE, async {
        loop {
            match feed.next().await {
                Some(Ok(Message::Text(t))) => return serde_json::from_str(&t).unwrap(),
                Some(Ok(_)) => continue,
                other => panic!("live feed ended: {other:?}"),
            }
        }
    })
    .await
    .expect("a live event within the deadline")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn feed_shows_telemetry_and_command_status() {
    let server = TestServer::fresh().await;
    let token = server.add_device("ems_live").await;
    let viewer = server.token("dash", Role::Viewer).await;

    // Refusals before the upgrade.
    let no_token = tokio_tungstenite::connect_async(server.ws("/ws/live/ems_live")).await;
    assert!(
        matches!(no_token, Err(tokio_tungstenite::tungstenite::Error::Http(r)) if r.status() == 401)
    );
    let unknown = server.live_feed("nobody", &viewer).await;
    assert!(
        matches!(unknown, Err(tokio_tungstenite::tungstenite::Error::Http(r)) if r.status() == 404)
    );

    // The API token in the URL: refused by default, saying what to do instead.
    let in_url =
        tokio_tungstenite::connect_async(server.ws(&format!("/ws/live/ems_live?token={viewer}")))
            .await;
    match in_url {
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => {
            assert_eq!(r.status(), 401);
            let body = String::from_utf8(r.into_body().unwrap_or_default()).unwrap();
            assert!(body.contains("ticket"), "{body}");
        }
        other => panic!("?token= was not refused: {other:?}"),
    }
    // A ticket works once, for its device only.
    let ticket: ems_protocol::api::LiveTicket = server
        .live_ticket("ems_live", &viewer)
        .await
        .json()
        .await
        .unwrap();
    assert!(ticket.ticket.starts_with("emst_"));
    server.add_device("ems_other").await;
    let wrong = tokio_tungstenite::connect_async(
        server.ws(&format!("/ws/live/ems_other?ticket={}", ticket.ticket)),
    )
    .await;
    assert!(
        matches!(wrong, Err(tokio_tungstenite::tungstenite::Error::Http(ref r)) if r.status() == 401),
        "{wrong:?}"
    );
    let url = server.ws(&format!("/ws/live/ems_live?ticket={}", ticket.ticket));
    let (first, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
    drop(first);
    let again = tokio_tungstenite::connect_async(&url).await;
    assert!(
        matches!(again, Err(tokio_tungstenite::tungstenite::Error::Http(ref r)) if r.status() == 401),
        "a used ticket: {again:?}"
    );

    let mut feed = server.live_feed("ems_live", &viewer).await.unwrap();
    let mut device = server.device("ems_live", &token).await;
    let ts = recent_seconds(1);
    let sent = packet("ems_live", ts[0], 42.0);
    device.send(&sent).await;
    device.await_acks(&ts).await;
    match next_event(&mut feed).await {
        LiveEvent::Telemetry { telemetry } => assert_eq!(telemetry, sent),
        other => panic!("expected telemetry, got {other:?}"),
    }

    let op = server.token("ops", Role::Operator).await;
    let (status, _) = server
        .post_json(
            "/devices/ems_live/commands",
            &op,
            &serde_json::json!({"command_id": "cmd_live", "action": "RESET_ERROR"}),
        )
        .await;
    assert_eq!(status, 201);
    assert_eq!(device.next_command().await.command_id, "cmd_live");
    device
        .send_text(
            Upstream::CommandAnswer(CommandAnswer {
                command_id: "cmd_live".into(),
                status: AnswerStatus::Accepted,
                reason: None,
            })
            .to_json(),
        )
        .await;
    let mut statuses = Vec::new();
    while statuses.last() != Some(&CommandStatus::Accepted) {
        match next_event(&mut feed).await {
            LiveEvent::CommandStatus { command } => statuses.push(command.status),
            LiveEvent::Telemetry { .. } => {}
        }
    }
    assert_eq!(
        statuses,
        vec![
            CommandStatus::Pending,
            CommandStatus::Sent,
            CommandStatus::Accepted
        ]
    );
    server.stop().await;
}
