//! Hostile input does not erase the audit trail: requests whose refused device id carries a
//! NUL byte are audited like any other (the byte shown as U+FFFD), and an ordinary entry
//! written in the same batch is kept. Before, PostgreSQL refused the NUL byte and the whole
//! batch of entries was dropped.

use std::time::Duration;

use ems_protocol::api::{AuditRecord, Role};
use reqwest::Method;
use serde_json::json;

use crate::hostile_support::send_json;
use ems_cloud::testing::{DEADLINE, TestCloud};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_nul_bytes_do_not_erase_audit_entries() {
    let server = TestCloud::fresh().await;
    server.add_device("ems_a").await;
    let operator = server.token("op", Role::Operator).await;
    let schedule = json!({"windows": []}).to_string();

    // Ten refused schedules for an impossible device, and one ordinary change, at once.
    let refused = (0..10).map(|_| {
        send_json(
            &server,
            Method::PUT,
            "/devices/ems%00a/schedule",
            &operator,
            schedule.clone(),
        )
    });
    let tagged = send_json(
        &server,
        Method::PUT,
        "/devices/ems_a/tags",
        &server.admin,
        json!({"tags": ["kept"]}).to_string(),
    );
    let (refused, tagged) = tokio::join!(futures_util::future::join_all(refused), tagged);
    assert_eq!(tagged.status, 200, "{}", tagged.text);
    for answer in refused {
        assert_eq!(answer.status, 404, "{}", answer.text);
    }

    ems_testkit::wait::until(
        "the refused schedules and the tag change in the audit trail",
        DEADLINE,
        Duration::from_millis(50),
        || async {
            let audit: Vec<AuditRecord> = server.get_json("/audit?limit=1000").await;
            let nul = audit
                .iter()
                .filter(|e| e.device_id.as_deref() == Some("ems\u{FFFD}a"))
                .count();
            let tag = audit.iter().any(|e| e.action == "DEVICE_TAGGED");
            (nul == 10 && tag).then_some(())
        },
    )
    .await;
}
