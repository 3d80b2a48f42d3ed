//! Commands: validated with the field named, delivered at once to a connected device, held for
//! an offline one until it connects, tracked PENDING → SENT → ACCEPTED / REJECTED / EXPIRED,
//! and recorded with who issued them.

use crate::common;

use std::time::Duration;

use common::{DEADLINE, TestServer};
use ems_protocol::api::{CommandRecord, Role};
use ems_protocol::{
    AnswerStatus, CommandAction, CommandAnswer, CommandStatus, TargetMode, Upstream,
};
use serde_json::json;

fn answer(id: &str, status: AnswerStatus, reason: Option<&str>) -> String {
    Upstream::CommandAnswer(CommandAnswer {
        command_id: id.into(),
        status,
        reason: reason.map(Into::into),
    })
    .to_json()
}

async fn wait_status(server: &TestServer, id: &str, want: CommandStatus) -> CommandRecord {
    ems_testkit::wait::until(
        &format!("command {id} to become {want}"),
        DEADLINE,
        Duration::from_millis(50),
        || async {
            let rec: CommandRecord = server.get_json(&format!("/commands/{id}")).await;
            (rec.status == want).then_some(rec)
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validation_names_the_field() {
    let server = TestServer::fresh().await;
    server.add_device("ems_v").await;
    let op = server.token("ops", Role::Operator).await;
    let cases = [
        (
            json!({"action": "SET_MODE", "payload": {"target_mode": "MANUAL_DISCHARGE"}}),
            "payload.target_power",
        ),
        (
            json!({"action": "SET_MODE", "payload": {"target_mode": "TURBO"}}),
            "payload.target_mode",
        ),
        (json!({"action": "SELF_DESTRUCT", "payload": {}}), "action"),
        (
            json!({"command_id": "bad id", "action": "RESET_ERROR"}),
            "command_id",
        ),
    ];
    for (body, field) in cases {
        let (status, err) = server
            .post_json("/devices/ems_v/commands", &op, &body)
            .await;
        assert_eq!(status, 400, "{body}: {err}");
        assert_eq!(err["field"], field, "{body}: {err}");
    }
    let (status, _) = server
        .post_json(
            "/devices/nobody/commands",
            &op,
            &json!({"action": "RESET_ERROR"}),
        )
        .await;
    assert_eq!(status, 404);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn online_command_is_delivered_answered_and_waited_for() {
    let server = TestServer::fresh().await;
    let token = server.add_device("ems_on").await;
    let op = server.token("alice", Role::Operator).await;
    let mut device = server.device("ems_on", &token).await;

    // With ?wait: the answer comes back in the same request.
    let body = json!({"command_id": "cmd_1", "action": "SET_MODE",
        "payload": {"target_mode": "MANUAL_DISCHARGE", "target_power": 500}});
    let post = {
        let server = &server;
        let op = op.clone();
        async move {
            server
                .post_json("/devices/ems_on/commands?wait=10", &op, &body)
                .await
        }
    };
    let device_side = async {
        let cmd = device.next_command().await;
        assert_eq!(cmd.command_id, "cmd_1");
        assert_eq!(
            cmd.action,
            CommandAction::SetMode {
                target_mode: TargetMode::ManualDischarge,
                target_power: Some(500.0),
                duration_s: None
            }
        );
        device
            .send_text(answer("cmd_1", AnswerStatus::Accepted, None))
            .await;
    };
    let ((status, rec), ()) = tokio::join!(post, device_side);
    assert_eq!(status, 201, "{rec}");
    let rec: CommandRecord = serde_json::from_value(rec).unwrap();
    assert_eq!(rec.status, CommandStatus::Accepted);
    assert_eq!(rec.issued_by, "alice");
    assert_eq!(
        rec.payload,
        json!({"target_mode": "MANUAL_DISCHARGE", "target_power": 500})
    );

    // Without wait, generated id, rejected by the device.
    let (status, rec) = server
        .post_json(
            "/devices/ems_on/commands",
            &op,
            &json!({"action": "RESET_ERROR"}),
        )
        .await;
    assert_eq!(status, 201);
    let id = rec["command_id"].as_str().unwrap().to_string();
    assert!(id.starts_with("cmd_"), "{id}");
    // cmd_1 was posted while the socket was still starting up: the start-up's redelivery of
    // unanswered SENT commands can send it a second time (documented: a device answers a
    // repeated command_id with the same answer). Skip such a repeat, as the agent does.
    let cmd = loop {
        let cmd = device.next_command().await;
        if cmd.command_id != "cmd_1" {
            break cmd;
        }
        device
            .send_text(answer("cmd_1", AnswerStatus::Accepted, None))
            .await;
    };
    assert_eq!(cmd.command_id, id);
    assert_eq!(
        wait_status(&server, &id, CommandStatus::Sent).await.status,
        CommandStatus::Sent
    );
    device
        .send_text(answer(
            &id,
            AnswerStatus::Rejected,
            Some("no fault to reset"),
        ))
        .await;
    let rec = wait_status(&server, &id, CommandStatus::Rejected).await;
    assert_eq!(rec.reason.as_deref(), Some("no fault to reset"));

    // A used command_id is a conflict; the list shows both, newest first.
    let (status, _) = server
        .post_json(
            "/devices/ems_on/commands",
            &op,
            &json!({"command_id": "cmd_1", "action": "RESET_ERROR"}),
        )
        .await;
    assert_eq!(status, 409);
    let list: Vec<CommandRecord> = server.get_json("/devices/ems_on/commands").await;
    assert_eq!(list.len(), 2);
    assert_eq!(list[0].command_id, id);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_command_waits_for_the_device_and_unanswered_ones_expire() {
    let server = TestServer::fresh().await;
    let token = server.add_device("ems_off").await;
    let op = server.token("ops", Role::Operator).await;

    let (status, rec) = server
        .post_json("/devices/ems_off/commands", &op,
            &json!({"command_id": "cmd_late", "action": "SET_MODE", "payload": {"target_mode": "AUTO"}}))
        .await;
    assert_eq!(status, 201);
    assert_eq!(rec["status"], "PENDING");
    let (status, _) = server
        .post_json(
            "/devices/ems_off/commands?expires_in=1",
            &op,
            &json!({"command_id": "cmd_short", "action": "RESET_ERROR"}),
        )
        .await;
    assert_eq!(status, 201);
    let expired = wait_status(&server, "cmd_short", CommandStatus::Expired).await;
    assert_eq!(
        expired.reason.as_deref(),
        Some("not delivered before expiry")
    );
    assert_eq!(
        server
            .get_json::<CommandRecord>("/commands/cmd_late")
            .await
            .status,
        CommandStatus::Pending
    );

    // The device connects: the pending command arrives, the expired one does not.
    let mut device = server.device("ems_off", &token).await;
    let cmd = device.next_command().await;
    assert_eq!(cmd.command_id, "cmd_late");
    wait_status(&server, "cmd_late", CommandStatus::Sent).await;

    // Sent but never answered: expires too. Reconnecting first re-sends it (agent dedups).
    drop(device);
    let mut device = server.device("ems_off", &token).await;
    assert_eq!(device.next_command().await.command_id, "cmd_late");
    device
        .send_text(answer("cmd_late", AnswerStatus::Accepted, None))
        .await;
    wait_status(&server, "cmd_late", CommandStatus::Accepted).await;

    let (_, rec) = server
        .post_json(
            "/devices/ems_off/commands?expires_in=1",
            &op,
            &json!({"command_id": "cmd_ignored", "action": "RESET_ERROR"}),
        )
        .await;
    assert_eq!(rec["command_id"], "cmd_ignored");
    assert_eq!(device.next_command().await.command_id, "cmd_ignored");
    let rec = wait_status(&server, "cmd_ignored", CommandStatus::Expired).await;
    assert_eq!(rec.reason.as_deref(), Some("not answered before expiry"));
    // A late answer does not resurrect it.
    device
        .send_text(answer("cmd_ignored", AnswerStatus::Accepted, None))
        .await;
    let list: Vec<CommandRecord> = server
        .get_json("/devices/ems_off/commands?status=EXPIRED")
        .await;
    assert_eq!(list.len(), 2);
    server.stop().await;
}
