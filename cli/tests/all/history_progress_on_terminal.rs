//! A paged `history` export draws a progress bar when stdout is a terminal (a real
//! pseudo-terminal here) and the rows still arrive complete after it.

use crate::common;

use ems_testkit::process::SpawnGuarded;
use std::process::Stdio;
use std::sync::{Arc, Mutex};

use common::{Cloud, packet, seconds_ending};
use ems_testkit::pty::PtyPair;
use tokio::io::AsyncReadExt;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_bar_on_a_terminal() {
    let cloud = Cloud::start().await;
    let token = cloud.add_device("ems_001").await;
    let mut device = cloud.device("ems_001", &token).await;
    let ts = seconds_ending(120, 10);
    let packets: Vec<_> = ts.iter().map(|t| packet("ems_001", *t, 50.0)).collect();
    device.send_stored(&packets).await;

    let (mut master, slave, _) = PtyPair::open().unwrap().into_master_stream().unwrap();
    let seen = Arc::new(Mutex::new(Vec::<u8>::new()));
    let reader = {
        let seen = seen.clone();
        tokio::spawn(async move {
            let mut buf = [0u8; 4096];
            while let Ok(n) = master.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                seen.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        })
    };
    let mut cmd = cloud.ctl(&[
        "history",
        "--from",
        "-10m",
        "--page-size",
        "4",
        "--fields",
        "battery.soc",
    ]);
    cmd.env("TERM", "xterm")
        .stdout(Stdio::from(slave.try_clone().unwrap()))
        .stderr(Stdio::from(slave.try_clone().unwrap()));
    let mut child = cmd.spawn_guarded().unwrap();
    let status = tokio::time::timeout(common::DEADLINE, child.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status.code(), Some(0));

    let last = ts.last().unwrap().to_string();
    ems_testkit::wait::until(
        "the last row on the terminal",
        common::DEADLINE,
        std::time::Duration::from_millis(20),
        || {
            let done = String::from_utf8_lossy(&seen.lock().unwrap()).contains(&last);
            async move { done.then_some(()) }
        },
    )
    .await;
    let text = String::from_utf8_lossy(&seen.lock().unwrap()).into_owned();
    assert!(
        text.contains("% of the range"),
        "no progress bar drawn:\n{text}"
    );
    let rows = text
        .lines()
        .filter(|l| l.contains("T") && l.contains("Z "))
        .count();
    assert_eq!(rows, 120, "{text}");
    reader.abort();
    drop(slave);
    cloud.stop().await;
}
