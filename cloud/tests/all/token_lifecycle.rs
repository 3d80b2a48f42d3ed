//! API tokens have a lifecycle: an expiring token stops working at its time, a revoked one at
//! once, a rotated one is replaced by a new secret, and in each case the live feeds opened with
//! it close within a second, also on another instance. The audit trail records who did it, and
//! the failed attempts. The list never shows a secret.

use std::time::{Duration, Instant};

use crate::common::{DEADLINE, TestServer};
use ems_protocol::api::{AuditRecord, Role, TokenCreated, TokenInfo};
use futures_util::StreamExt;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

type Feed =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn feed(server: &TestServer, device: &str, token: &str) -> Feed {
    server
        .live_feed(device, token)
        .await
        .expect("live feed opens")
}

/// Waits for the feed to be closed by the server; returns the close reason and how long it waited.
async fn closed(feed: &mut Feed) -> (String, Duration) {
    let start = Instant::now();
    loop {
        match tokio::time::timeout(DEADLINE, feed.next()).await {
            Ok(Some(Ok(Message::Close(Some(frame))))) => {
                assert_eq!(frame.code, CloseCode::Policy);
                return (frame.reason.to_string(), start.elapsed());
            }
            Ok(Some(Ok(_))) => continue,
            other => panic!("expected a close frame, got {other:?}"),
        }
    }
}

async fn status(server: &TestServer, token: &str) -> u16 {
    server.get("/devices", token).await.status().as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoked_rotated_and_expired_tokens_stop_working_and_close_their_feeds_everywhere() {
    let url = ems_testkit::pg::fresh_database().await;
    let a = TestServer::on(&url).await;
    let b = TestServer::on(&url).await;
    a.add_device("ems_tok").await;

    // Revoked on A: REST refuses it, and its live feed on B closes within a second.
    let viewer = a.token("wall-screen", Role::Viewer).await;
    assert_eq!(status(&a, &viewer).await, 200);
    let mut on_b = feed(&b, "ems_tok", &viewer).await;
    let revoking = Instant::now();
    let resp = a
        .http
        .delete(a.api("/tokens/wall-screen"))
        .bearer_auth(&a.admin)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let info: TokenInfo = resp.json().await.unwrap();
    assert!(info.revoked_at.is_some());
    let (reason, _) = closed(&mut on_b).await;
    let took = revoking.elapsed();
    println!(
        "revoked token's feed on the other instance closed {took:?} after the DELETE was sent"
    );
    assert_eq!(reason, "API token revoked");
    assert!(took < Duration::from_secs(1), "closed after {took:?}");
    assert_eq!(status(&a, &viewer).await, 401);
    assert_eq!(status(&b, &viewer).await, 401);

    // The name is free again; rotating replaces the secret and keeps the role.
    let old = a.token("wall-screen", Role::Viewer).await;
    let mut old_feed = feed(&a, "ems_tok", &old).await;
    let resp = a
        .http
        .post(a.api("/tokens/wall-screen/rotate"))
        .bearer_auth(&a.admin)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let rotated: TokenCreated = resp.json().await.unwrap();
    assert_eq!(rotated.role, Role::Viewer);
    assert_ne!(rotated.token, old);
    assert_eq!(closed(&mut old_feed).await.0, "API token revoked");
    assert_eq!(status(&a, &old).await, 401);
    assert_eq!(status(&a, &rotated.token).await, 200);

    // Expiring in two seconds: works, then 401 saying so, and its feed closes then.
    let expires_at = chrono::Utc::now() + chrono::Duration::seconds(2);
    let (code, body) = a
        .post_json(
            "/tokens",
            &a.admin,
            &serde_json::json!({"name": "visitor", "role": "viewer", "expires_at": expires_at}),
        )
        .await;
    assert_eq!(code, 201, "{body}");
    let visitor = body["token"].as_str().unwrap().to_string();
    assert_eq!(status(&a, &visitor).await, 200);
    let mut visitor_feed = feed(&a, "ems_tok", &visitor).await;
    let (reason, _) = closed(&mut visitor_feed).await;
    assert_eq!(reason, "API token expired");
    let late = chrono::Utc::now() - expires_at;
    assert!(
        late < chrono::Duration::seconds(1),
        "closed {late} after expiry"
    );
    let resp = a.get("/devices", &visitor).await;
    assert_eq!(resp.status(), 401);
    assert!(resp.text().await.unwrap().contains("expired"));

    // An expiry in the past is refused.
    let (code, body) = a
        .post_json(
            "/tokens",
            &a.admin,
            &serde_json::json!({"name": "past", "role": "viewer",
                "expires_at": chrono::Utc::now() - chrono::Duration::seconds(5)}),
        )
        .await;
    assert_eq!(code, 400, "{body}");

    // The list: live tokens without secrets; with ?revoked=true the revoked ones too.
    let resp = a.get("/tokens", &a.admin).await;
    assert_eq!(resp.status(), 200);
    let text = resp.text().await.unwrap();
    assert!(!text.contains("emsa_"), "no secrets in the list: {text}");
    let live: Vec<TokenInfo> = serde_json::from_str(&text).unwrap();
    assert!(live.iter().all(|t| t.revoked_at.is_none()));
    assert_eq!(
        live.iter().filter(|t| t.name == "wall-screen").count(),
        1,
        "{live:?}"
    );
    let all: Vec<TokenInfo> = a.get_json("/tokens?revoked=true").await;
    assert_eq!(
        all.iter().filter(|t| t.name == "wall-screen").count(),
        3,
        "revoked, rotated away, and the live one"
    );

    // A viewer may not manage tokens.
    assert_eq!(
        a.get("/tokens", &rotated.token).await.status().as_u16(),
        403
    );

    // The audit trail has who did it, and the failed attempts with their address.
    let audit = ems_testkit::wait::until(
        "the audit trail to show the revocation, the rotation and failed attempts",
        DEADLINE,
        Duration::from_millis(50),
        || async {
            let audit: Vec<AuditRecord> = a.get_json("/audit").await;
            let has = |action: &str| audit.iter().any(|r| r.action == action);
            (has("TOKEN_REVOKED") && has("TOKEN_ROTATED") && has("AUTH_FAILED")).then_some(audit)
        },
    )
    .await;
    let revoked = audit.iter().find(|r| r.action == "TOKEN_REVOKED").unwrap();
    assert_eq!(
        revoked.actor.as_deref(),
        Some(format!("admin-{}", a.running().addr.port()).as_str())
    );
    assert_eq!(revoked.role, Some(Role::Admin));
    assert_eq!(revoked.target.as_deref(), Some("wall-screen"));
    assert_eq!(revoked.source.as_deref(), Some("127.0.0.1"));
    let failed = audit.iter().find(|r| r.action == "AUTH_FAILED").unwrap();
    assert_eq!(failed.actor, None);
    assert!(
        failed.result.contains("revoked") || failed.result.contains("expired"),
        "{failed:?}"
    );
    assert!(
        !audit.iter().any(|r| format!("{r:?}").contains("emsa_")),
        "no secret in the audit trail"
    );
    b.stop().await;
    a.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_and_devices_are_audited_with_their_outcome() {
    let server = TestServer::fresh().await;
    let token = server.add_device("ems_aud").await;
    let operator = server.token("night-shift", Role::Operator).await;
    let mut device = server.device("ems_aud", &token).await;
    let (code, rec) = server
        .post_json(
            "/devices/ems_aud/commands",
            &operator,
            &serde_json::json!({"command_id": "cmd_aud", "action": "RESET_ERROR", "payload": {}}),
        )
        .await;
    assert_eq!(code, 201, "{rec}");
    assert_eq!(device.next_command().await.command_id, "cmd_aud");
    let (code, _) = server
        .post_json(
            "/devices/ems_aud/commands",
            &operator,
            &serde_json::json!({"command_id": "cmd_aud", "action": "RESET_ERROR", "payload": {}}),
        )
        .await;
    assert_eq!(code, 409, "the same command_id twice");

    let audit: Vec<AuditRecord> = ems_testkit::wait::until(
        "both commands in the audit trail",
        DEADLINE,
        Duration::from_millis(50),
        || async {
            let audit: Vec<AuditRecord> = server.get_json("/audit?device=ems_aud").await;
            (audit
                .iter()
                .filter(|r| r.action == "COMMAND_ISSUED")
                .count()
                == 2)
                .then_some(audit)
        },
    )
    .await;
    let issued: Vec<&AuditRecord> = audit
        .iter()
        .filter(|r| r.action == "COMMAND_ISSUED")
        .collect();
    // Newest first: the refused one, then the accepted one.
    assert!(issued[0].result.starts_with("refused: "), "{:?}", issued[0]);
    assert_eq!(issued[1].result, "ok");
    assert_eq!(issued[1].command_id.as_deref(), Some("cmd_aud"));
    assert_eq!(issued[1].actor.as_deref(), Some("night-shift"));
    assert_eq!(issued[1].role, Some(Role::Operator));
    assert!(audit.iter().any(|r| r.action == "DEVICE_CREATED"));

    let only: Vec<AuditRecord> = server.get_json("/audit?action=DEVICE_CREATED").await;
    assert!(only.iter().all(|r| r.action == "DEVICE_CREATED") && !only.is_empty());
    let resp = server.get("/audit?limit=0", &server.admin).await;
    assert_eq!(resp.status(), 400);
    server.stop().await;
}
