//! `devices add|list|show`, `tokens create` (and the new token working), `commands list|show`
//! and `events`, in table and machine formats.

use crate::common;

use common::{Cloud, emsctl, packet, run, seconds_ending};
use ems_protocol::{AnswerStatus, ErrorFlag, State};
use ems_testkit::process::SpawnGuarded;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devices_tokens_commands_and_events() {
    let cloud = Cloud::start().await;

    // devices add prints the device token once; it lets the device connect.
    let added = cloud
        .run(&[
            "devices", "add", "ems_007", "--name", "Garage", "-o", "json",
        ])
        .await
        .expect(0)
        .json();
    assert_eq!(added["device"]["id"], "ems_007");
    assert_eq!(added["device"]["name"], "Garage");
    let device_token = added["token"].as_str().unwrap().to_string();
    assert!(device_token.starts_with("emsd_"));
    let r = cloud.run(&["devices", "add", "ems_007"]).await.expect(2);
    assert!(r.stderr.contains("(409)"), "{}", r.stderr);
    let r = cloud.run(&["devices", "add", "ems_008"]).await.expect(0);
    assert!(r.stdout.contains("token"), "{}", r.stdout);

    let mut device = cloud.device("ems_007", &device_token).await;
    // The cloud records the connection just after the handshake: wait for it to show.
    let listed = ems_testkit::wait::until(
        "the device to be listed online",
        std::time::Duration::from_secs(15),
        std::time::Duration::from_millis(50),
        || async {
            let listed = cloud
                .run(&["devices", "list", "-o", "csv"])
                .await
                .expect(0)
                .csv();
            (listed.first().is_some_and(|d| d["online"] == "yes")).then_some(listed)
        },
    )
    .await;
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[0]["id"], "ems_007");
    assert_eq!(listed[0]["online"], "yes");
    assert_eq!(listed[1]["online"], "no");
    let r = cloud.run(&["devices", "list"]).await.expect(0);
    assert!(
        r.stdout.lines().next().unwrap().starts_with("id"),
        "{}",
        r.stdout
    );
    let shown = cloud
        .run(&["devices", "show", "ems_007", "-o", "json"])
        .await
        .expect(0)
        .json();
    assert_eq!(shown["name"], "Garage");
    let r = cloud
        .run(&["devices", "show", "-d", "ems_007"])
        .await
        .expect(0);
    assert!(r.stdout.contains("online"), "{}", r.stdout);

    // tokens create: an operator token that then works, a viewer that may not add devices.
    let created = cloud
        .run(&[
            "tokens", "create", "--role", "operator", "--name", "ops", "-o", "json",
        ])
        .await
        .expect(0)
        .json();
    assert_eq!(created["role"], "operator");
    let operator = created["token"].as_str().unwrap().to_string();
    let r = cloud
        .run(&["tokens", "create", "--role", "viewer", "--name", "view"])
        .await
        .expect(0);
    let viewer = r
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("token"))
        .unwrap()
        .trim()
        .to_string();
    let r = cloud
        .run(&["tokens", "create", "--role", "root", "--name", "x"])
        .await
        .expect(2);
    assert!(r.stderr.contains("viewer, operator, admin"), "{}", r.stderr);
    let mut cmd = emsctl(cloud.home.path());
    cmd.args([
        "--url",
        &cloud.url(),
        "--token",
        &viewer,
        "devices",
        "add",
        "ems_009",
    ]);
    run(cmd).await.expect(3);

    // A command issued with the operator token shows in commands list/show.
    let mut cmd = emsctl(cloud.home.path());
    cmd.args(["--url", &cloud.url(), "--token", &operator, "-d", "ems_007"]);
    cmd.args([
        "set-mode",
        "MANUAL_CHARGE",
        "--power",
        "1500",
        "--id",
        "cmd_ops_1",
    ]);
    let child = cmd.spawn_guarded().unwrap();
    let command = device.next_command().await;
    device
        .answer(
            &command.command_id,
            AnswerStatus::Rejected,
            Some("battery too cold"),
        )
        .await;
    common::finish(child).await.expect(1);
    let rows = cloud
        .run(&["commands", "list", "-d", "ems_007", "-o", "csv"])
        .await
        .expect(0)
        .csv();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["command_id"], "cmd_ops_1");
    assert_eq!(rows[0]["issued_by"], "ops");
    assert_eq!(rows[0]["target"], "MANUAL_CHARGE 1500 W");
    assert_eq!(rows[0]["status"], "REJECTED");
    let none = cloud
        .run(&[
            "commands", "list", "-d", "ems_007", "--status", "accepted", "-o", "json",
        ])
        .await
        .expect(0)
        .json();
    assert_eq!(none, serde_json::json!([]));
    let r = cloud
        .run(&["commands", "show", "cmd_ops_1"])
        .await
        .expect(0);
    assert!(r.stdout.contains("battery too cold"), "{}", r.stdout);
    assert!(r.stdout.contains("by ops"), "{}", r.stdout);
    let r = cloud.run(&["commands", "show", "cmd_nope"]).await.expect(2);
    assert!(r.stderr.contains("(404)"), "{}", r.stderr);

    // events: a state change and a raised flag, newest first.
    let ts = seconds_ending(2, 5);
    let first = packet("ems_007", ts[0], 50.0);
    let mut second = packet("ems_007", ts[1], 50.0);
    second.system_status.state = State::Error;
    second.system_status.error_flags = vec![ErrorFlag::Overheat];
    device.send_stored(&[first, second]).await;
    let events = cloud
        .run(&["events", "-d", "ems_007", "--from", "-1h", "-o", "json"])
        .await
        .expect(0)
        .json();
    let kinds: Vec<&str> = events
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert!(kinds.contains(&"STATE_CHANGED"), "{events}");
    assert!(kinds.contains(&"ERROR_RAISED"), "{events}");
    let r = cloud.run(&["events", "-d", "ems_007"]).await.expect(0);
    assert!(
        r.stdout.contains("CHARGING") && r.stdout.contains("OVERHEAT"),
        "{}",
        r.stdout
    );
    cloud.stop().await;
}
