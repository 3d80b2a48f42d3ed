//! Bad frames get an ERROR frame naming the field and the socket stays; abuse and oversized
//! frames close it with a close code.

use crate::common;

use common::{Seen, TestServer, packet, recent_seconds};
use ems_protocol::message::ErrorCode;
use ems_protocol::{Downstream, Timestamp};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

fn expect_error(seen: Seen) -> ems_protocol::ErrorMessage {
    match seen {
        Seen::Frame(Downstream::Error(e)) => e,
        other => panic!("expected an ERROR frame, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_frames_are_answered_and_the_socket_stays() {
    let server = TestServer::fresh().await;
    let token = server.add_device("ems_bad").await;
    let mut device = server.device("ems_bad", &token).await;

    device.send_text("not json".into()).await;
    assert_eq!(expect_error(device.next().await).code, ErrorCode::BadFrame);

    let mut raw: serde_json::Value =
        serde_json::from_str(&packet("ems_bad", Timestamp::now(), 50.0).to_json()).unwrap();
    raw["battery"]["soc"] = 140.into();
    device.send_text(raw.to_string()).await;
    let e = expect_error(device.next().await);
    assert!(e.message.contains("battery.soc"), "{}", e.message);
    // A recognisable packet is named, so the device can set exactly that one aside.
    let named: Timestamp = raw["timestamp"].as_str().unwrap().parse().unwrap();
    assert_eq!(e.timestamps, vec![named]);
    assert!(e.code.is_final_refusal());

    device
        .send(&packet("someone_else", Timestamp::now(), 50.0))
        .await;
    assert_eq!(
        expect_error(device.next().await).code,
        ErrorCode::WrongDevice
    );

    let future = Timestamp::from_unix(Timestamp::now().unix() + 3600).unwrap();
    device.send(&packet("ems_bad", future, 50.0)).await;
    let e = expect_error(device.next().await);
    assert!(e.message.contains("timestamp"), "{}", e.message);
    assert_eq!(e.timestamps, vec![future]);

    let ancient = Timestamp::from_unix(Timestamp::now().unix() - 400 * 86_400).unwrap();
    device.send(&packet("ems_bad", ancient, 50.0)).await;
    let e = expect_error(device.next().await);
    assert!(e.message.contains("timestamp"), "{}", e.message);
    assert_eq!(e.timestamps, vec![ancient]);

    // Not JSON names nothing.
    device.send_text("{\"timestamp\": 5".into()).await;
    assert!(expect_error(device.next().await).timestamps.is_empty());

    // Still open: a good packet is stored and acked.
    let ts = recent_seconds(1);
    device.send(&packet("ems_bad", ts[0], 50.0)).await;
    device.await_acks(&ts).await;
    server.stop().await;
}

/// A device whose clock runs ten minutes fast sends a packet a second that the cloud must refuse:
/// each refusal names the packet and none counts towards the bad-frame limit, so the socket is
/// not closed in a loop (the agent sets the packets aside) and good packets still go in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_packets_are_named_and_do_not_close_the_socket() {
    let server = TestServer::fresh().await;
    let token = server.add_device("ems_fast").await;
    let mut device = server.device("ems_fast", &token).await;
    let now = Timestamp::now().unix();
    for i in 0..40 {
        let t = Timestamp::from_unix(now + 600 + i).unwrap();
        device.send(&packet("ems_fast", t, 50.0)).await;
        let e = expect_error(device.next().await);
        assert_eq!((e.code, e.timestamps), (ErrorCode::BadFrame, vec![t]));
    }
    let ts = recent_seconds(3);
    for t in &ts {
        device.send(&packet("ems_fast", *t, 50.0)).await;
    }
    device.await_acks(&ts).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_bad_frames_in_a_minute_close_with_1008() {
    let server = TestServer::fresh().await;
    let token = server.add_device("ems_abuse").await;
    let mut device = server.device("ems_abuse", &token).await;
    for _ in 0..20 {
        device.send_text("{".into()).await;
    }
    loop {
        match device.next().await {
            Seen::Frame(Downstream::Error(_)) => continue,
            Seen::Closed(Some(frame)) => {
                assert_eq!(frame.code, CloseCode::Policy);
                break;
            }
            other => panic!("expected a 1008 close, got {other:?}"),
        }
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_frame_closes_with_1009() {
    let server = TestServer::fresh().await;
    let token = server.add_device("ems_big").await;
    let mut device = server.device("ems_big", &token).await;
    let mut raw: serde_json::Value =
        serde_json::from_str(&packet("ems_big", Timestamp::now(), 50.0).to_json()).unwrap();
    raw["padding"] = "x".repeat(70 * 1024).into();
    device.send_text(raw.to_string()).await;
    match device.next().await {
        Seen::Closed(Some(frame)) => assert_eq!(frame.code, CloseCode::Size),
        other => panic!("expected a 1009 close, got {other:?}"),
    }
    server.stop().await;
}
