//! The alerts' REST API: rules are admin-only, validated (the error names the field), unique
//! by name and audited; alerts are listed only for the devices a token sees (another device is
//! 404); deleting a rule resolves its open alerts.

use crate::common;

use std::time::Duration;

use common::{DEADLINE, TestServer, packet};
use ems_protocol::Timestamp;
use ems_protocol::api::{AlertRecord, AlertRule, AuditRecord, Role};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_are_admin_validated_audited_and_alerts_scoped() {
    let server = TestServer::fresh().await;
    let token_a = server.add_device("ems_a").await;
    let token_b = server.add_device("ems_b").await;
    let viewer = server.token("look", Role::Viewer).await;
    let rule = serde_json::json!({"name": "low", "kind": "SOC_BELOW", "threshold": 20.0});

    let (status, _) = server.post_json("/alert-rules", &viewer, &rule).await;
    assert_eq!(status, 403);
    let (status, body) = server
        .post_json(
            "/alert-rules",
            &server.admin,
            &serde_json::json!({"name": "x", "kind": "SOC_BELOW"}),
        )
        .await;
    assert_eq!(
        (status, body["field"].as_str()),
        (400, Some("threshold")),
        "{body}"
    );
    let (status, body) = server
        .post_json(
            "/alert-rules",
            &server.admin,
            &serde_json::json!({"name": "y", "kind": "OFFLINE", "device_id": "ems_nope"}),
        )
        .await;
    assert_eq!(
        (status, body["field"].as_str()),
        (400, Some("device_id")),
        "{body}"
    );
    let (status, body) = server.post_json("/alert-rules", &server.admin, &rule).await;
    assert_eq!(status, 201, "{body}");
    let (status, _) = server.post_json("/alert-rules", &server.admin, &rule).await;
    assert_eq!(status, 409);
    let rules: Vec<AlertRule> = server.get_json("/alert-rules").await;
    assert_eq!(rules.len(), 1);
    assert_eq!(
        rules[0].rule.clear_threshold,
        Some(20.0),
        "defaults to threshold"
    );
    assert_eq!(server.get("/alert-rules", &viewer).await.status(), 403);

    // A low SoC on both devices: two alerts.
    let second = Timestamp::now().unix() - 30;
    for (id, token) in [("ems_a", &token_a), ("ems_b", &token_b)] {
        let mut device = server.device(id, token).await;
        device
            .send_stored(&[packet(id, Timestamp::from_unix(second).unwrap(), 10.0)])
            .await;
    }
    let open: Vec<AlertRecord> = ems_testkit::wait::until(
        "two open alerts",
        DEADLINE,
        Duration::from_millis(20),
        || async {
            let open: Vec<AlertRecord> = server.get_json("/alerts?state=open").await;
            (open.len() == 2).then_some(open)
        },
    )
    .await;
    assert!(open.iter().all(|a| a.rule_name == "low"));

    let (status, scoped) = server
        .post_json(
            "/tokens",
            &server.admin,
            &serde_json::json!({"name": "only-a", "role": "viewer", "devices": ["ems_a"]}),
        )
        .await;
    assert_eq!(status, 201, "{scoped}");
    let scoped = scoped["token"].as_str().unwrap().to_string();
    let seen: Vec<AlertRecord> = server.get("/alerts", &scoped).await.json().await.unwrap();
    assert_eq!(
        seen.iter()
            .map(|a| a.device_id.as_str())
            .collect::<Vec<_>>(),
        ["ems_a"]
    );
    assert_eq!(
        server.get("/alerts?device=ems_b", &scoped).await.status(),
        404
    );
    assert_eq!(
        server.get("/alerts?state=nope", &viewer).await.status(),
        400
    );

    let resp = server
        .http
        .delete(server.api("/alert-rules/low"))
        .bearer_auth(&server.admin)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let deleted: AlertRule = resp.json().await.unwrap();
    assert_eq!(deleted.rule.name, "low");
    let open: Vec<AlertRecord> = server.get_json("/alerts?state=open").await;
    assert!(
        open.is_empty(),
        "deleting the rule resolves its alerts: {open:?}"
    );
    let resolved: Vec<AlertRecord> = server.get_json("/alerts?state=resolved").await;
    assert_eq!(resolved.len(), 2);
    assert!(resolved.iter().all(|a| a.rule_id.is_none()));
    let resp = server
        .http
        .delete(server.api("/alert-rules/low"))
        .bearer_auth(&server.admin)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);

    let actions = ems_testkit::wait::until(
        "the rule changes in the audit trail",
        DEADLINE,
        Duration::from_millis(50),
        || async {
            let audit: Vec<AuditRecord> = server.get_json("/audit").await;
            let actions: Vec<String> = audit
                .iter()
                .filter(|e| e.action.starts_with("ALERT_RULE"))
                .map(|e| format!("{} {}", e.action, e.target.as_deref().unwrap_or("")))
                .collect();
            (actions.len() == 2).then_some(actions)
        },
    )
    .await;
    assert_eq!(actions, ["ALERT_RULE_DELETED low", "ALERT_RULE_ADDED low"]);
}
