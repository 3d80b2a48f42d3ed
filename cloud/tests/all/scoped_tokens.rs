//! A token limited to some devices sees nothing else: every route for another device answers
//! 404 as for a device that does not exist (ids do not leak), its commands there are refused
//! and audited, and its live feed, history and command records obey the same rule.

use std::time::Duration;

use crate::common::{DEADLINE, TestServer, packet, recent_seconds};
use ems_protocol::api::{AuditRecord, CommandRecord, DeviceInfo, Role, TokenInfo};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_scoped_to_device_a_cannot_see_or_command_device_b() {
    let server = TestServer::fresh().await;
    let token_a = server.add_device("site_a").await;
    let token_b = server.add_device("site_b").await;
    for (id, token) in [("site_a", &token_a), ("site_b", &token_b)] {
        let mut device = server.device(id, token).await;
        let ts = recent_seconds(1);
        device.send(&packet(id, ts[0], 50.0)).await;
        device.await_acks(&ts).await;
    }
    // A command for B by an unscoped operator, to look up by id later.
    let ops = server.token("ops", Role::Operator).await;
    let (code, _) = server
        .post_json(
            "/devices/site_b/commands",
            &ops,
            &serde_json::json!({"command_id": "cmd_b", "action": "RESET_ERROR", "payload": {}}),
        )
        .await;
    assert_eq!(code, 201);

    let (code, body) = server
        .post_json(
            "/tokens",
            &server.admin,
            &serde_json::json!({"name": "installer-a", "role": "operator", "devices": ["site_a"]}),
        )
        .await;
    assert_eq!(code, 201, "{body}");
    let scoped = body["token"].as_str().unwrap().to_string();

    let listed: Vec<DeviceInfo> = server.get("/devices", &scoped).await.json().await.unwrap();
    assert_eq!(
        listed.iter().map(|d| d.id.as_str()).collect::<Vec<_>>(),
        ["site_a"]
    );

    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let history = format!("/devices/site_b/telemetry?to={now}");
    for path in [
        "/devices/site_b",
        "/devices/site_b/telemetry/latest",
        history.as_str(),
        "/devices/site_b/events",
        "/devices/site_b/commands",
        "/commands/cmd_b",
        "/devices/nowhere",
    ] {
        let resp = server.get(path, &scoped).await;
        assert_eq!(resp.status(), 404, "{path}");
        let text = resp.text().await.unwrap();
        assert!(
            !text.contains("scope"),
            "{path}: the answer must not tell why: {text}"
        );
    }
    for path in [
        "/devices/site_a",
        "/devices/site_a/telemetry/latest",
        "/devices/site_a/events",
        "/devices/site_a/commands",
    ] {
        assert_eq!(server.get(path, &scoped).await.status(), 200, "{path}");
    }

    // Commands: refused for B (and audited), accepted for A.
    let (code, _) = server
        .post_json(
            "/devices/site_b/commands",
            &scoped,
            &serde_json::json!({"action": "RESET_ERROR", "payload": {}}),
        )
        .await;
    assert_eq!(code, 404);
    let (code, rec) = server
        .post_json(
            "/devices/site_a/commands",
            &scoped,
            &serde_json::json!({"action": "RESET_ERROR", "payload": {}}),
        )
        .await;
    assert_eq!(code, 201, "{rec}");
    let rec: CommandRecord = serde_json::from_value(rec).unwrap();
    assert_eq!(rec.issued_by, "installer-a");

    // The live feed of B: 404 before the upgrade.
    assert_eq!(server.live_ticket("site_b", &scoped).await.status(), 404);
    let mut req = tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(
        server.ws("/ws/live/site_b"),
    )
    .unwrap();
    req.headers_mut()
        .insert("Authorization", format!("Bearer {scoped}").parse().unwrap());
    match tokio_tungstenite::connect_async(req).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            assert_eq!(resp.status(), 404)
        }
        other => panic!("live feed of B: {other:?}"),
    }
    assert!(server.live_feed("site_a", &scoped).await.is_ok());

    // The token list shows the scope; an admin token cannot be scoped; nor an empty scope.
    let tokens: Vec<TokenInfo> = server.get_json("/tokens").await;
    let t = tokens.iter().find(|t| t.name == "installer-a").unwrap();
    assert_eq!(t.devices.as_deref(), Some(&["site_a".to_string()][..]));
    for body in [
        serde_json::json!({"name": "x", "role": "admin", "devices": ["site_a"]}),
        serde_json::json!({"name": "y", "role": "viewer", "devices": []}),
        serde_json::json!({"name": "z", "role": "viewer", "devices": ["bad id!"]}),
    ] {
        let (code, answer) = server.post_json("/tokens", &server.admin, &body).await;
        assert_eq!(code, 400, "{body}: {answer}");
    }

    // The refused command is in the audit trail, with who tried.
    let audit = ems_testkit::wait::until(
        "the refused command in the audit trail",
        DEADLINE,
        Duration::from_millis(50),
        || async {
            let audit: Vec<AuditRecord> = server.get_json("/audit?device=site_b").await;
            audit
                .into_iter()
                .find(|r| r.actor.as_deref() == Some("installer-a"))
        },
    )
    .await;
    assert_eq!(audit.action, "COMMAND_ISSUED");
    assert!(audit.result.starts_with("refused: "), "{audit:?}");
    server.stop().await;
}
