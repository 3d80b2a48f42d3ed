//! `emsctl schedule`: one window from flags and a whole schedule from a TOML file reach the device
//! as SET_SCHEDULE with exactly those windows; ACCEPTED exits 0 and `schedule show` prints what
//! the device accepted; REJECTED exits 1 with the device's reason; a schedule the protocol
//! refuses (overlap) exits 2 without being sent; `schedule clear` sends no windows. `status`
//! shows the window the device reports in force.

use crate::common;

use common::Cloud;
use ems_protocol::schedule::{When, WindowAction};
use ems_protocol::telemetry::ScheduleWindow;
use ems_protocol::{AnswerStatus, CommandAction};
use ems_testkit::process::SpawnGuarded;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schedules_go_to_the_device_and_come_back_in_show() {
    let cloud = Cloud::start().await;
    let token = cloud.add_device("ems_001").await;
    let mut device = cloud.device("ems_001", &token).await;

    let run = cloud.run(&["schedule", "show"]).await.expect(0);
    assert!(run.stdout.contains("no schedule"), "{}", run.stdout);

    // One daily window from flags.
    let child = cloud
        .ctl(&[
            "schedule",
            "set",
            "--daily",
            "23:00-06:00",
            "--action",
            "charge",
            "--power",
            "2000",
            "--to-soc",
            "90",
            "--time-zone",
            "Europe/Paris",
        ])
        .spawn_guarded()
        .unwrap();
    let command = device.next_command().await;
    let CommandAction::SetSchedule(s) = &command.action else {
        panic!("{command:?}")
    };
    assert_eq!(s.time_zone.name(), "Europe/Paris");
    assert_eq!(s.windows.len(), 1);
    assert!(matches!(s.windows[0].when, When::Daily { .. }));
    assert_eq!(
        s.windows[0].action,
        WindowAction::Charge {
            power_w: 2000.0,
            to_soc_pct: 90.0,
            from_grid: true
        }
    );
    device
        .answer(&command.command_id, AnswerStatus::Accepted, None)
        .await;
    let run = common::finish(child).await.expect(0);
    assert!(run.stdout.starts_with("ACCEPTED"), "{}", run.stdout);

    let run = cloud.run(&["schedule", "show"]).await.expect(0);
    assert!(run.stdout.contains("daily 23:00-06:00"), "{}", run.stdout);
    assert!(run.stdout.contains("2000 W to 90 %"), "{}", run.stdout);
    assert!(run.stdout.contains("Europe/Paris"), "{}", run.stdout);

    // The device reports the window in force; status shows it.
    let ts = common::seconds_ending(1, 5)[0];
    let mut packet = common::packet("ems_001", ts, 55.0);
    packet.system_status.schedule = Some(ScheduleWindow {
        window: 0,
        action: "CHARGE".into(),
        until: "2026-12-02T05:00:00Z".parse().unwrap(),
    });
    device.send_stored(&[packet]).await;
    let run = cloud.run(&["status"]).await.expect(0);
    assert!(
        run.stdout
            .contains("window 0 CHARGE until 2026-12-02T05:00:00Z"),
        "{}",
        run.stdout
    );

    // A file (TOML) with two windows; the device refuses it.
    let file = cloud.home.path().join("winter.toml");
    let until = (chrono::Utc::now() + chrono::Duration::days(30)).to_rfc3339();
    std::fs::write(
        &file,
        format!(
            r#"valid_until = "{until}"
time_zone = "Europe/Paris"
[[windows]]
daily_start = "17:00"
daily_end = "21:00"
action = "DISCHARGE"
power_w = 2500
down_to_soc_pct = 30
[[windows]]
daily_start = "12:00"
daily_end = "14:00"
action = "LIMITS"
export_limit_w = 0
"#
        ),
    )
    .unwrap();
    let child = cloud
        .ctl(&["schedule", "set", file.to_str().unwrap()])
        .spawn_guarded()
        .unwrap();
    let command = device.next_command().await;
    let CommandAction::SetSchedule(s) = &command.action else {
        panic!("{command:?}")
    };
    assert_eq!(s.windows.len(), 2);
    device
        .answer(
            &command.command_id,
            AnswerStatus::Rejected,
            Some("windows[0]: power 2500 W must be above 0 and at most the discharge limit of 2000 W"),
        )
        .await;
    let run = common::finish(child).await;
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    assert!(run.stdout.contains("discharge limit"), "{}", run.stdout);
    // The refused one did not replace what the device accepted.
    let run = cloud.run(&["schedule", "show"]).await.expect(0);
    assert!(run.stdout.contains("daily 23:00-06:00"), "{}", run.stdout);

    // Overlapping windows: refused locally, nothing sent.
    let bad = cloud.home.path().join("bad.json");
    std::fs::write(
        &bad,
        serde_json::json!({"valid_until": until, "windows": [
            {"daily_start": "10:00", "daily_end": "12:00", "action": "HOLD"},
            {"daily_start": "11:00", "daily_end": "13:00", "action": "HOLD"}]})
        .to_string(),
    )
    .unwrap();
    let run = cloud.run(&["schedule", "set", bad.to_str().unwrap()]).await;
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("overlaps window 0"), "{}", run.stderr);

    // Clear.
    let child = cloud.ctl(&["schedule", "clear"]).spawn_guarded().unwrap();
    let command = device.next_command().await;
    let CommandAction::SetSchedule(s) = &command.action else {
        panic!("{command:?}")
    };
    assert!(s.windows.is_empty());
    device
        .answer(&command.command_id, AnswerStatus::Accepted, None)
        .await;
    common::finish(child).await.expect(0);
    let run = cloud.run(&["schedule", "show"]).await.expect(0);
    assert!(run.stdout.contains("no schedule"), "{}", run.stdout);
    cloud.stop().await;
}
