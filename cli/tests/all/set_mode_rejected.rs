//! A device that refuses: REJECTED with its reason on stdout, exit 1.

use crate::common;

use common::Cloud;
use ems_protocol::AnswerStatus;
use ems_testkit::process::SpawnGuarded;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_command_exits_one_with_the_reason() {
    let cloud = Cloud::start().await;
    let token = cloud.add_device("ems_001").await;
    let mut device = cloud.device("ems_001", &token).await;

    let child = cloud
        .ctl(&[
            "set-mode",
            "MANUAL_CHARGE",
            "--power",
            "3000",
            "--device",
            "ems_001",
        ])
        .spawn_guarded()
        .unwrap();
    let command = device.next_command().await;
    device
        .answer(
            &command.command_id,
            AnswerStatus::Rejected,
            Some("SoC at maximum (FULL)"),
        )
        .await;
    let run = common::finish(child).await.expect(1);
    assert!(run.stdout.starts_with("REJECTED"), "{}", run.stdout);
    assert!(
        run.stdout.contains("SoC at maximum (FULL)"),
        "{}",
        run.stdout
    );

    // The same as CSV, parsed back.
    let child = cloud
        .ctl(&["reset-error", "-o", "csv"])
        .spawn_guarded()
        .unwrap();
    let command = device.next_command().await;
    device
        .answer(
            &command.command_id,
            AnswerStatus::Rejected,
            Some("fault remains: OVERHEAT"),
        )
        .await;
    let run = common::finish(child).await.expect(1);
    let rows = run.csv();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["status"], "REJECTED");
    assert_eq!(rows[0]["reason"], "fault remains: OVERHEAT");
    assert_eq!(rows[0]["command_id"], command.command_id);
    cloud.stop().await;
}
