//! `--no-wait` returns at once with the stored command (exit 0); a connected device that never
//! answers makes a waiting command time out with exit 4.

use crate::common;

use common::Cloud;
use ems_testkit::process::SpawnGuarded;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_wait_returns_and_silence_times_out() {
    let cloud = Cloud::start().await;
    let token = cloud.add_device("ems_001").await;

    // Offline device: stored as PENDING, returned without waiting.
    let run = cloud
        .run(&["set-mode", "MANUAL_IDLE", "--no-wait", "-o", "json"])
        .await
        .expect(0);
    assert_eq!(run.json()["status"], "PENDING");

    // Connected but silent: the device gets the command and never answers.
    let mut device = cloud.device("ems_001", &token).await;
    let pending = device.next_command().await;
    assert_eq!(pending.command_id, run.json()["command_id"]);
    let child = cloud
        .ctl(&[
            "set-mode",
            "MANUAL_CHARGE",
            "--power",
            "100",
            "--timeout",
            "1",
        ])
        .spawn_guarded()
        .unwrap();
    let command = device.next_command().await;
    let run = common::finish(child).await.expect(4);
    assert!(run.stdout.starts_with("SENT"), "{}", run.stdout);
    assert!(
        run.stderr.contains("no answer from ems_001 within 1 s"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains(&command.command_id), "{}", run.stderr);
    assert!(run.stderr.contains("hint:"), "{}", run.stderr);
    assert_eq!(run.stderr.lines().count(), 2, "{}", run.stderr);
    cloud.stop().await;
}
