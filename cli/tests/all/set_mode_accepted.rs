//! set-mode and reset-error answered ACCEPTED by a connected device: exit 0, the device gets
//! exactly the spec command (with `duration_s` for `--for`), and `--output json` is the command
//! record. The only device is picked without `--device`.

use crate::common;

use common::Cloud;
use ems_protocol::{AnswerStatus, CommandAction, TargetMode};
use ems_testkit::process::SpawnGuarded;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accepted_commands_exit_zero() {
    let cloud = Cloud::start().await;
    let token = cloud.add_device("ems_001").await;
    let mut device = cloud.device("ems_001", &token).await;

    let child = cloud
        .ctl(&["set-mode", "MANUAL_DISCHARGE", "--power", "500"])
        .spawn_guarded()
        .unwrap();
    let command = device.next_command().await;
    assert_eq!(
        command.action,
        CommandAction::SetMode {
            target_mode: TargetMode::ManualDischarge,
            target_power: Some(500.0),
            duration_s: None
        }
    );
    device
        .answer(&command.command_id, AnswerStatus::Accepted, None)
        .await;
    let run = common::finish(child).await.expect(0);
    assert!(run.stdout.starts_with("ACCEPTED"), "{}", run.stdout);
    assert!(run.stdout.contains(&command.command_id), "{}", run.stdout);
    assert!(
        run.stdout.contains("MANUAL_DISCHARGE 500 W"),
        "{}",
        run.stdout
    );

    // A lease: the device gets duration_s in seconds, the answer shows it.
    let child = cloud
        .ctl(&[
            "set-mode",
            "MANUAL_DISCHARGE",
            "--power",
            "500",
            "--for",
            "10m",
        ])
        .spawn_guarded()
        .unwrap();
    let command = device.next_command().await;
    assert_eq!(
        command.action,
        CommandAction::SetMode {
            target_mode: TargetMode::ManualDischarge,
            target_power: Some(500.0),
            duration_s: Some(600)
        }
    );
    device
        .answer(&command.command_id, AnswerStatus::Accepted, None)
        .await;
    let run = common::finish(child).await.expect(0);
    assert!(
        run.stdout.contains("MANUAL_DISCHARGE 500 W for 600 s"),
        "{}",
        run.stdout
    );

    // Lower-case mode, no power, JSON output.
    let child = cloud
        .ctl(&["set-mode", "auto", "--output", "json", "--id", "cmd_auto_1"])
        .spawn_guarded()
        .unwrap();
    let command = device.next_command().await;
    assert_eq!(command.command_id, "cmd_auto_1");
    device
        .answer("cmd_auto_1", AnswerStatus::Accepted, Some("applied"))
        .await;
    let run = common::finish(child).await.expect(0);
    let json = run.json();
    assert_eq!(json["status"], "ACCEPTED");
    assert_eq!(json["command_id"], "cmd_auto_1");
    assert_eq!(json["device_id"], "ems_001");
    assert_eq!(json["action"], "SET_MODE");
    assert_eq!(json["payload"]["target_mode"], "AUTO");
    assert_eq!(json["reason"], "applied");

    let child = cloud.ctl(&["reset-error"]).spawn_guarded().unwrap();
    let command = device.next_command().await;
    assert_eq!(command.action, CommandAction::ResetError);
    device
        .answer(&command.command_id, AnswerStatus::Accepted, None)
        .await;
    let run = common::finish(child).await.expect(0);
    assert!(run.stdout.starts_with("ACCEPTED"), "{}", run.stdout);
    assert!(run.stdout.contains("RESET_ERROR"), "{}", run.stdout);
    cloud.stop().await;
}
