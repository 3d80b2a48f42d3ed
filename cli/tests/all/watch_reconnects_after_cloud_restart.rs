//! `watch` survives a restart of the cloud: when the feed drops it says so on stderr (attempt and
//! delay), reconnects with a new connection once the cloud is back on the same port, and goes
//! on printing telemetry. A cloud that stops accepting its token ends it with exit 3.

use crate::common;

use common::{DEADLINE, emsctl, packet, seconds_ending};
use ems_cloud::testing::TestCloud as Cloud;
use ems_protocol::api::Role;
use ems_protocol::telemetry::Timestamp;
use ems_testkit::process::SpawnGuarded;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader, Lines};

/// A device connection that sends one packet and waits until the cloud has stored it (and so
/// published it to the live feeds).
async fn send_packet(cloud: &Cloud, device: &str, token: &str, ts: Timestamp, soc: f64) {
    let mut d = cloud.device(device, token).await;
    d.send_stored(&[packet(device, ts, soc)]).await;
}

async fn next_line<R: AsyncRead + Unpin>(lines: &mut Lines<BufReader<R>>) -> String {
    tokio::time::timeout(DEADLINE, lines.next_line())
        .await
        .expect("a line within the deadline")
        .unwrap()
        .expect("the stream is still open")
}

/// Stderr lines up to the first that contains `want`.
async fn stderr_until<R: AsyncRead + Unpin>(
    lines: &mut Lines<BufReader<R>>,
    want: &str,
) -> Vec<String> {
    let mut seen = Vec::new();
    loop {
        let line = next_line(lines).await;
        let done = line.contains(want);
        seen.push(line);
        if done {
            return seen;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_reconnects_after_cloud_restart() {
    // The shared fixture restarts at the same address.
    let mut cloud = Cloud::fresh().await;
    let device_token = cloud.add_device("ems_001").await;
    let viewer = cloud.token("watcher", Role::Viewer).await;
    let home = tempfile::tempdir().unwrap();
    let ts = seconds_ending(3, 5);

    let mut cmd = emsctl(home.path());
    cmd.args(["--url", &cloud.url(), "--token", &viewer, "watch"]);
    let mut child = cmd.spawn_guarded().unwrap();
    let mut err = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut out = BufReader::new(child.stdout.take().unwrap()).lines();
    stderr_until(&mut err, "watching ems_001").await;
    send_packet(&cloud, "ems_001", &device_token, ts[0], 61.0).await;
    let line = next_line(&mut out).await;
    assert!(line.starts_with(&ts[0].to_string()), "{line}");

    // The cloud goes away: watch says so and keeps trying.
    cloud.pause().await;
    let said = stderr_until(&mut err, "reconnect attempt 2").await;
    assert!(said[0].starts_with("live feed lost ("), "{said:?}");
    assert!(said[0].contains("reconnect attempt 1 in 1."), "{said:?}");
    assert!(said[1].contains("reconnect attempt 2 in 2."), "{said:?}");

    // Back on the same port: watch reconnects and prints what comes next.
    cloud.restart().await;
    let said = stderr_until(&mut err, "reconnected").await;
    assert!(
        said.last().unwrap().contains("watching ems_001 again"),
        "{said:?}"
    );
    send_packet(&cloud, "ems_001", &device_token, ts[1], 62.0).await;
    let line = next_line(&mut out).await;
    assert!(line.starts_with(&ts[1].to_string()), "{line}");
    assert!(line.contains("soc 62 %"), "{line}");

    // A revoked token closes the feed, and the reconnect is refused: exit 3, no retrying.
    let resp = cloud
        .http
        .delete(cloud.api("/tokens/watcher"))
        .bearer_auth(&cloud.admin)
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "{}", resp.status());
    let said = stderr_until(&mut err, "error:").await;
    assert!(
        said.iter().any(|l| l.contains("giving up after attempt 1")),
        "{said:?}"
    );
    assert!(
        said.last().unwrap().contains("authentication failed"),
        "{said:?}"
    );
    let status = tokio::time::timeout(DEADLINE, child.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status.code(), Some(3));
    cloud.stop().await;
}
