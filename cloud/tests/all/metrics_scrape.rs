//! `GET /metrics` shows the server's health in Prometheus' text format, and its values move
//! with real traffic: packets stored, frames in and out, batches, a delivered and answered
//! command, a refused token, connected devices. With `metrics_token` set it wants that token.

use std::collections::HashMap;

use crate::common::{self, TestServer, packet, recent_seconds};
use ems_protocol::api::Role;
use ems_protocol::{AnswerStatus, CommandAnswer, Upstream};

/// `name{labels} value` lines of this server's metrics (comments left out).
async fn scrape(server: &TestServer) -> HashMap<String, f64> {
    let resp = server
        .http
        .get(format!("{}/metrics", server.running().http_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let content_type = resp.headers()["content-type"].to_str().unwrap().to_string();
    assert!(content_type.starts_with("text/plain"), "{content_type}");
    let text = resp.text().await.unwrap();
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (name, value) = l.rsplit_once(' ').unwrap();
            // Drop the instance label, the same on every line.
            let name = name
                .replace(
                    &format!("instance=\"{}\"", server.running().hub.instance_id),
                    "",
                )
                .replace("{,", "{")
                .replace(",}", "}")
                .replace("{}", "");
            (name, value.parse().unwrap())
        })
        .collect()
}

fn get(m: &HashMap<String, f64>, name: &str) -> f64 {
    m.get(name).copied().unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_move_with_traffic() {
    let server = TestServer::fresh().await;
    let token = server.add_device("ems_metrics").await;
    let operator = server.token("ops", Role::Operator).await;
    let before = scrape(&server).await;
    assert_eq!(get(&before, "ems_cloud_connected_devices"), 0.0);
    assert!(
        before.contains_key("ems_cloud_db_pool_connections"),
        "{before:?}"
    );

    let mut device = server.device("ems_metrics", &token).await;
    let ts = recent_seconds(5);
    for t in &ts {
        device.send(&packet("ems_metrics", *t, 50.0)).await;
    }
    device.await_acks(&ts).await;
    device.send_text("not json".into()).await;
    let (code, body) = server
        .post_json(
            "/devices/ems_metrics/commands",
            &operator,
            &serde_json::json!({"command_id": "cmd_m", "action": "RESET_ERROR", "payload": {}}),
        )
        .await;
    assert_eq!(code, 201, "{body}");
    let command = loop {
        match device.next().await {
            common::Seen::Frame(ems_protocol::Downstream::Command(c)) => break c,
            common::Seen::Frame(_) => continue,
            other => panic!("{other:?}"),
        }
    };
    device
        .send_text(
            Upstream::CommandAnswer(CommandAnswer {
                command_id: command.command_id,
                status: AnswerStatus::Accepted,
                reason: None,
            })
            .to_json(),
        )
        .await;
    assert_eq!(server.get("/devices", "emsa_wrong").await.status(), 401);

    let after = ems_testkit::wait::until(
        "the answer to be counted",
        common::DEADLINE,
        std::time::Duration::from_millis(50),
        || async {
            let m = scrape(&server).await;
            (get(&m, "ems_cloud_command_answer_seconds_count") >= 1.0).then_some(m)
        },
    )
    .await;
    let delta = |name: &str| get(&after, name) - get(&before, name);
    assert_eq!(delta("ems_cloud_telemetry_rows_stored_total"), 5.0);
    assert_eq!(
        delta("ems_cloud_device_frames_in_total{kind=\"telemetry\"}"),
        5.0
    );
    assert_eq!(
        delta("ems_cloud_device_frames_in_total{kind=\"refused\"}"),
        1.0
    );
    assert_eq!(
        delta("ems_cloud_device_frames_in_total{kind=\"answer\"}"),
        1.0
    );
    assert!(delta("ems_cloud_device_frames_out_total{kind=\"ack\"}") >= 1.0);
    assert_eq!(
        delta("ems_cloud_device_frames_out_total{kind=\"command\"}"),
        1.0
    );
    assert_eq!(delta("ems_cloud_commands_delivered_total"), 1.0);
    assert!(delta("ems_cloud_auth_failures_total") >= 1.0);
    assert!(delta("ems_cloud_ingest_batch_rows_count") >= 1.0);
    assert!(delta("ems_cloud_ingest_batch_rows_sum") >= 5.0);
    assert!(delta("ems_cloud_ingest_commit_seconds_count") >= 1.0);
    let batches = delta("ems_cloud_ingest_batches_total{path=\"copy\"}")
        + delta("ems_cloud_ingest_batches_total{path=\"insert\"}");
    assert_eq!(batches, delta("ems_cloud_ingest_batch_rows_count"));
    assert_eq!(get(&after, "ems_cloud_connected_devices"), 1.0);
    assert_eq!(get(&after, "ems_cloud_ingest_queue_depth"), 0.0);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_want_their_token_when_one_is_set() {
    let url = ems_testkit::pg::fresh_database().await;
    let figment = common::figment(&url).merge(("metrics_token", "scrape-secret-123"));
    let server = TestServer::with(figment, &url, reqwest::Client::new()).await;
    let at = format!("{}/metrics", server.running().http_url());
    assert_eq!(server.http.get(&at).send().await.unwrap().status(), 401);
    let wrong = server
        .http
        .get(&at)
        .bearer_auth("nope")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    let right = server
        .http
        .get(&at)
        .bearer_auth("scrape-secret-123")
        .send()
        .await
        .unwrap();
    assert_eq!(right.status(), 200);
    assert!(
        right
            .text()
            .await
            .unwrap()
            .contains("ems_cloud_connected_devices")
    );
    server.stop().await;
}
