//! Keepalive: a socket that answers no pings is closed with 1011. Replacement: a second
//! connection of the same device closes the first with 4000 and takes over.

use crate::common;

use common::{Seen, TestServer, figment, packet, recent_seconds};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_socket_is_closed_with_1011() {
    let url = ems_testkit::pg::fresh_database().await;
    let server = TestServer::with(
        figment(&url).merge(("ping_interval_s", 1)),
        &url,
        reqwest::Client::new(),
    )
    .await;
    let token = server.add_device("ems_mute").await;

    // A hand-made client that never answers pings (tungstenite would answer them for us).
    let mut tcp = tokio::net::TcpStream::connect(server.running().addr)
        .await
        .unwrap();
    let request = format!(
        "GET /ws/device/ems_mute HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
         Authorization: Bearer {token}\r\n\r\n",
        server.running().addr
    );
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut bytes = Vec::new();
    let read_all = tokio::time::timeout(common::DEADLINE, tcp.read_to_end(&mut bytes)).await;
    assert!(
        read_all.is_ok(),
        "the server never closed the silent socket"
    );
    let text = String::from_utf8_lossy(&bytes);
    assert!(text.starts_with("HTTP/1.1 101"), "{text}");
    let body = &bytes[text.find("\r\n\r\n").unwrap() + 4..];
    // Walk the server's (unmasked) frames: pings, then a close frame with code 1011.
    let mut i = 0;
    let mut pings = 0;
    let mut close_code = None;
    while i + 2 <= body.len() {
        let opcode = body[i] & 0x0f;
        let len = (body[i + 1] & 0x7f) as usize;
        let payload = &body[i + 2..(i + 2 + len).min(body.len())];
        match opcode {
            0x9 => pings += 1,
            0x8 => close_code = Some(u16::from_be_bytes([payload[0], payload[1]])),
            _ => {}
        }
        i += 2 + len;
    }
    assert!(pings >= 1, "no pings were sent");
    assert_eq!(close_code, Some(1011));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_connection_replaces_the_old_one() {
    let server = TestServer::fresh().await;
    let token = server.add_device("ems_twice").await;
    let mut first = server.device("ems_twice", &token).await;
    let mut second = server.device("ems_twice", &token).await;
    match first.next().await {
        Seen::Closed(Some(frame)) => assert_eq!(u16::from(frame.code), 4000),
        other => panic!("expected a 4000 close, got {other:?}"),
    }
    let ts = recent_seconds(2);
    for t in &ts {
        second.send(&packet("ems_twice", *t, 10.0)).await;
    }
    second.await_acks(&ts).await;
    server.stop().await;
}
