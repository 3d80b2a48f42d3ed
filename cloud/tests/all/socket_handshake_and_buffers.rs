//! The sockets' own handshake and small buffers: a frame many times the 1 KiB read buffer is
//! read whole, stored and acknowledged; a request on a socket path that is no WebSocket
//! handshake gets a 4xx that says what is missing, not a 500, and the server goes on.

use crate::common;

use common::{TestServer, packet, recent_seconds};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// `json` (an object) padded after its `{` with JSON whitespace to `len` bytes: still the same
/// valid packet, as large as a frame the protocol allows.
fn padded(json: String, len: usize) -> String {
    let pad = len.saturating_sub(json.len());
    format!("{{{}{}", " \n".repeat(pad / 2 + 1), &json[1..])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frame_larger_than_the_read_buffer_is_read_whole() {
    let server = TestServer::fresh().await;
    let token = server.add_device("ems_big").await;
    let mut device = server.device("ems_big", &token).await;
    let ts = recent_seconds(4);
    // 20 KiB, small, 40 KiB (max_frame_bytes is 64 KiB), small: sent back to back, so frames
    // arrive split across reads and several in one read.
    for (i, (t, len)) in ts.iter().zip([20 << 10, 0, 40 << 10, 0]).enumerate() {
        let json = packet("ems_big", *t, 50.0 + i as f64).to_json();
        device.send_text(padded(json, len)).await;
    }
    device.await_acks(&ts).await;
    let stored = ems_cloud::testing::stored_seconds(&server.db_url, "ems_big").await;
    let want: Vec<i64> = ts.iter().map(|t| t.unix()).collect();
    assert_eq!(stored, want);
    server.stop().await;
}

/// Sends `request` on a new connection and returns the status and the whole answer.
async fn raw(server: &TestServer, request: String) -> (u16, String) {
    let mut tcp = tokio::net::TcpStream::connect(("127.0.0.1", server.port()))
        .await
        .expect("connects");
    tcp.write_all(request.as_bytes()).await.expect("writes");
    let mut answer = Vec::new();
    tokio::time::timeout(common::DEADLINE, tcp.read_to_end(&mut answer))
        .await
        .expect("the server answers and closes")
        .expect("reads");
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let status = answer
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {answer:?}"));
    (status, answer)
}

/// A GET of `path` with `token` and the extra header lines `headers`; the connection closes
/// after the answer.
fn get(path: &str, token: &str, headers: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n{headers}\
         Connection: close\r\n\r\n"
    )
}

const UPGRADE: &str = "Upgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_that_is_no_handshake_gets_a_clear_4xx() {
    let server = TestServer::fresh().await;
    let token = server.add_device("ems_plain").await;

    // A plain GET, as a browser or curl sends it: 426 with the header RFC 7231 asks for.
    let resp = server
        .http
        .get(format!("{}/ws/device/ems_plain", server.url()))
        .bearer_auth(&token)
        .send()
        .await
        .expect("GET");
    assert_eq!(resp.status(), 426);
    assert_eq!(resp.headers()["upgrade"], "websocket");
    let body: serde_json::Value = resp.json().await.expect("a JSON error");
    let error = body["error"].as_str().expect("error");
    assert!(error.contains("WebSocket endpoint"), "{error}");
    assert!(error.contains("/ws/device/ems_plain"), "{error}");

    // The same on the live feed, with an API token.
    let resp = server
        .http
        .get(format!("{}/ws/live/ems_plain", server.url()))
        .bearer_auth(&server.admin)
        .send()
        .await
        .expect("GET");
    assert_eq!(resp.status(), 426);

    // A handshake of another protocol version: 426 naming the one spoken (RFC 6455 §4.4).
    let (status, answer) = raw(
        &server,
        get(
            "/ws/device/ems_plain",
            &token,
            &format!("{UPGRADE}Connection: Upgrade, close\r\nSec-WebSocket-Version: 8\r\n"),
        ),
    )
    .await;
    assert_eq!(status, 426, "{answer}");
    assert!(
        answer
            .to_ascii_lowercase()
            .contains("sec-websocket-version: 13"),
        "{answer}"
    );
    assert!(answer.contains("not supported"), "{answer}");

    // A key that is no 16-byte nonce: 400.
    let (status, answer) = raw(
        &server,
        get(
            "/ws/device/ems_plain",
            &token,
            "Upgrade: websocket\r\nSec-WebSocket-Key: short\r\nConnection: Upgrade, close\r\n\
             Sec-WebSocket-Version: 13\r\n",
        ),
    )
    .await;
    assert_eq!(status, 400, "{answer}");
    assert!(answer.contains("Sec-WebSocket-Key"), "{answer}");

    // Authentication is still checked first.
    let resp = server
        .http
        .get(format!("{}/ws/device/ems_plain", server.url()))
        .send()
        .await
        .expect("GET");
    assert_eq!(resp.status(), 401);

    // And a real device still connects and is heard.
    let mut device = server.device("ems_plain", &token).await;
    let ts = recent_seconds(1);
    device.send(&packet("ems_plain", ts[0], 50.0)).await;
    device.await_acks(&ts).await;
    server.stop().await;
}
