//! Exit 2 for usage errors, caught locally before anything is sent (modes, powers, times,
//! missing settings) or refused by the server as invalid (unknown device, ambiguous device).

use crate::common;

use common::{Cloud, emsctl, run};
use ems_testkit::process::SpawnGuarded;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_errors_exit_two() {
    let cloud = Cloud::start().await;
    let token = cloud.add_device("ems_001").await;
    let mut device = cloud.device("ems_001", &token).await;

    let local: &[(&[&str], &str)] = &[
        (&["set-mode", "TURBO"], "invalid value 'TURBO'"),
        (
            &["set-mode", "MANUAL_DISCHARGE"],
            "--power is required for MANUAL_DISCHARGE",
        ),
        (
            &["set-mode", "AUTO", "--power", "5"],
            "--power is not used by AUTO",
        ),
        (&["set-mode", "MANUAL_CHARGE", "--power", "-5"], "negative"),
        (
            &["set-mode", "MANUAL_CHARGE", "--power", "lots"],
            "invalid value 'lots'",
        ),
        (&["set-mode", "AUTO", "--id", "bad id!"], "--id contains"),
        (
            &["set-mode", "MANUAL_IDLE", "--for", "0s"],
            "--for 0 s is outside 1 to 86400 s",
        ),
        (
            &["set-mode", "MANUAL_IDLE", "--for", "2d"],
            "--for 172800 s is outside 1 to 86400 s",
        ),
        (
            &["set-mode", "MANUAL_IDLE", "--for", "a while"],
            "--for: \"a while\" is not a duration",
        ),
        (
            &["set-mode", "AUTO", "--for", "10m"],
            "--for is not used by AUTO",
        ),
        (
            &["history", "--from", "yesterday"],
            "--from: \"yesterday\" is not a time",
        ),
        (
            &["history", "--from", "now", "--to", "-1h"],
            "is not before --to",
        ),
        (&["history", "--bucket", "fortnight"], "--bucket"),
        (&["commands", "list", "--status", "DONE"], "--status"),
        (&["frobnicate"], "unrecognized subcommand"),
    ];
    for (args, expected) in local {
        let r = cloud.run(args).await.expect(2);
        assert!(r.stderr.contains(expected), "{args:?}: {}", r.stderr);
        assert!(!r.stderr.contains("panicked"), "{args:?}: {}", r.stderr);
    }

    // Nothing of the above reached the device: the next command it sees is this one.
    let child = cloud
        .ctl(&["set-mode", "AUTO", "--no-wait"])
        .spawn_guarded()
        .unwrap();
    let first = device.next_command().await;
    let run_ok = common::finish(child).await.expect(0);
    assert!(
        run_ok.stdout.contains(&first.command_id),
        "{}",
        run_ok.stdout
    );

    // Refused by the server: unknown device, a field it does not know.
    let r = cloud
        .run(&["status", "--device", "ems_999"])
        .await
        .expect(2);
    assert!(r.stderr.contains("(404)"), "{}", r.stderr);
    let r = cloud
        .run(&["history", "--fields", "battery.temperature"])
        .await
        .expect(2);
    assert!(r.stderr.contains("[fields]"), "{}", r.stderr);

    // Two devices and no --device: ambiguous, the hint lists them.
    cloud.add_device("ems_002").await;
    let r = cloud.run(&["status"]).await.expect(2);
    assert!(r.stderr.contains("2 devices are visible"), "{}", r.stderr);
    assert!(r.stderr.contains("ems_001, ems_002"), "{}", r.stderr);

    // No URL or token anywhere.
    let mut cmd = emsctl(cloud.home.path());
    cmd.arg("status");
    let r = run(cmd).await.expect(2);
    assert!(r.stderr.contains("no server URL"), "{}", r.stderr);
    let mut cmd = emsctl(cloud.home.path());
    cmd.args(["--url", &cloud.url(), "status"]);
    let r = run(cmd).await.expect(2);
    assert!(r.stderr.contains("no API token"), "{}", r.stderr);
    cloud.stop().await;
}
