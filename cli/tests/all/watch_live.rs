//! `watch` prints telemetry and command updates as they arrive over the live feed, as text or
//! JSON lines, and ends with exit 0 on Ctrl-C (SIGINT).

use crate::common;

use common::{Cloud, packet, seconds_ending};
use ems_protocol::api::LiveEvent;
use ems_testkit::process::SpawnGuarded;
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{ChildStderr, ChildStdout};

async fn next_line<R: tokio::io::AsyncBufRead + Unpin>(lines: &mut Lines<R>) -> String {
    tokio::time::timeout(common::DEADLINE, lines.next_line())
        .await
        .expect("a line within the deadline")
        .unwrap()
        .expect("the stream is still open")
}

/// Waits for watch's "watching …" on stderr: from then on nothing is missed.
async fn await_subscribed(stderr: ChildStderr) {
    let mut lines = BufReader::new(stderr).lines();
    let line = next_line(&mut lines).await;
    assert!(line.starts_with("watching ems_001"), "{line}");
}

fn interrupt(child: &tokio::process::Child) {
    let pid = child.id().expect("still running") as libc::pid_t;
    // SAFETY: sending a signal to our own child process.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGINT) }, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_streams_until_ctrl_c() {
    let cloud = Cloud::start().await;
    let token = cloud.add_device("ems_001").await;
    let mut device = cloud.device("ems_001", &token).await;
    let ts = seconds_ending(4, 5);

    // Text lines.
    let mut child = cloud.ctl(&["watch"]).spawn_guarded().unwrap();
    await_subscribed(child.stderr.take().unwrap()).await;
    let mut out: Lines<BufReader<ChildStdout>> =
        BufReader::new(child.stdout.take().unwrap()).lines();
    let mut p = packet("ems_001", ts[0], 61.0);
    p.battery.power = Some(-800.0);
    device.send_stored(&[p]).await;
    let line = next_line(&mut out).await;
    assert!(line.starts_with(&ts[0].to_string()), "{line}");
    for expected in [
        "CHARGING",
        "soc 61 %",
        "discharging 800 W",
        "exporting 200 W",
    ] {
        assert!(line.contains(expected), "{expected:?} missing: {line}");
    }
    let issued = cloud
        .run(&["set-mode", "MANUAL_IDLE", "--no-wait", "--id", "cmd_w1"])
        .await
        .expect(0);
    assert!(issued.stdout.contains("cmd_w1"));
    let line = next_line(&mut out).await;
    assert!(line.starts_with("command cmd_w1"), "{line}");
    interrupt(&child);
    let status = tokio::time::timeout(common::DEADLINE, child.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status.code(), Some(0));

    // JSON lines: each one a LiveEvent.
    let mut child = cloud.ctl(&["watch", "-o", "json"]).spawn_guarded().unwrap();
    await_subscribed(child.stderr.take().unwrap()).await;
    let mut out = BufReader::new(child.stdout.take().unwrap()).lines();
    device
        .send_stored(&[
            packet("ems_001", ts[1], 62.0),
            packet("ems_001", ts[2], 63.0),
        ])
        .await;
    for (t, soc) in [(ts[1], 62.0), (ts[2], 63.0)] {
        let line = next_line(&mut out).await;
        match serde_json::from_str::<LiveEvent>(&line).unwrap() {
            LiveEvent::Telemetry { telemetry } => {
                assert_eq!(telemetry.timestamp, t);
                assert_eq!(telemetry.battery.soc, Some(soc));
            }
            other => panic!("expected telemetry, got {other:?}"),
        }
    }
    interrupt(&child);
    let status = tokio::time::timeout(common::DEADLINE, child.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status.code(), Some(0));

    // CSV: the header once, then one row per packet with the history column names.
    let mut child = cloud.ctl(&["watch", "-o", "csv"]).spawn_guarded().unwrap();
    await_subscribed(child.stderr.take().unwrap()).await;
    let mut out = BufReader::new(child.stdout.take().unwrap()).lines();
    let header = next_line(&mut out).await;
    assert!(
        header.starts_with("time,state,mode,error_flags"),
        "{header}"
    );
    device.send_stored(&[packet("ems_001", ts[3], 64.0)]).await;
    let row = next_line(&mut out).await;
    let text = format!("{header}\n{row}\n");
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let record = reader
        .deserialize::<std::collections::BTreeMap<String, String>>()
        .next();
    let record = record.unwrap().unwrap();
    assert_eq!(record["time"], ts[3].to_string());
    assert_eq!(record["battery_soc"], "64");
    assert_eq!(record["grid_power"], "-200");
    interrupt(&child);
    let status = tokio::time::timeout(common::DEADLINE, child.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status.code(), Some(0));
    cloud.stop().await;
}
