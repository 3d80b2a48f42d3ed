//! `status` shows the manual mode a device holds and, for `set-mode --for`, until when: the
//! newest accepted SET_MODE's answer time plus its `duration_s`, as the cloud stores them; a
//! RESET_ERROR in between does not hide it, and a later AUTO ends it.

use chrono::{DateTime, Utc};
use ems_protocol::telemetry::Timestamp;
use ems_protocol::{AnswerStatus, Mode};
use ems_testkit::process::SpawnGuarded;

use crate::common;

use common::{Cloud, finish, packet};

fn time(v: &serde_json::Value) -> DateTime<Utc> {
    v.as_str().unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_shows_the_lease() {
    let cloud = Cloud::start().await;
    let token = cloud.add_device("ems_001").await;
    let mut device = cloud.device("ems_001", &token).await;

    // A manual mode with a ten-minute lease, accepted by the device.
    let child = cloud
        .ctl(&[
            "set-mode",
            "MANUAL_DISCHARGE",
            "--power",
            "500",
            "--for",
            "10m",
            "-o",
            "json",
        ])
        .spawn_guarded()
        .unwrap();
    let command = device.next_command().await;
    device
        .answer(&command.command_id, AnswerStatus::Accepted, None)
        .await;
    let record = finish(child).await.expect(0).json();
    assert_eq!(record["status"], "ACCEPTED");
    let until = time(&record["status_at"]) + chrono::Duration::seconds(600);
    let mut p = packet("ems_001", Timestamp::now(), 55.0);
    p.system_status.mode = Mode::Manual;
    device.send_stored(&[p]).await;

    let shown = cloud.run(&["status"]).await.expect(0).stdout;
    let line = shown
        .lines()
        .find(|l| l.starts_with("lease"))
        .unwrap_or_else(|| panic!("no lease line:\n{shown}"));
    let expected = format!(
        "MANUAL_DISCHARGE until {} (in ",
        until.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    );
    assert!(line.contains(&expected), "{line}\nwanted {expected}");
    assert!(
        line.ends_with(&format!("then AUTO; set by {}", command.command_id)),
        "{line}"
    );
    let json = cloud.run(&["status", "-o", "json"]).await.expect(0).json();
    assert_eq!(json["lease"]["target_mode"], "MANUAL_DISCHARGE");
    assert_eq!(time(&json["lease"]["until"]), until);
    let left = json["lease"]["remaining_s"].as_i64().unwrap();
    assert!((580..=600).contains(&left), "{left}");
    let csv = cloud.run(&["status", "-o", "csv"]).await.expect(0).csv();
    assert_eq!(
        csv[0]["lease_until"],
        until.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    );

    // RESET_ERROR changes no mode: the lease is still shown.
    let child = cloud.ctl(&["reset-error"]).spawn_guarded().unwrap();
    let reset = device.next_command().await;
    device
        .answer(&reset.command_id, AnswerStatus::Accepted, None)
        .await;
    finish(child).await.expect(0);
    let shown = cloud.run(&["status"]).await.expect(0).stdout;
    assert!(shown.contains(&expected), "{shown}");

    // AUTO ends it: no lease line, `lease` null.
    let child = cloud.ctl(&["set-mode", "AUTO"]).spawn_guarded().unwrap();
    let auto = device.next_command().await;
    device
        .answer(&auto.command_id, AnswerStatus::Accepted, None)
        .await;
    finish(child).await.expect(0);
    let shown = cloud.run(&["status"]).await.expect(0).stdout;
    assert!(!shown.contains("lease"), "{shown}");
    let json = cloud.run(&["status", "-o", "json"]).await.expect(0).json();
    assert!(json["lease"].is_null(), "{json}");
    cloud.stop().await;
}
