//! The cloud is stopped for 2 minutes and restarted; meanwhile the agent process is killed with
//! SIGKILL and started again. Afterwards the database holds every second the agent produced,
//! each exactly once: the seconds of the outage come from the agent's on-disk queue.

use crate::common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::cloud::{Cloud, rows_and_distinct, stored_seconds};
use ems_sim::site::{SimOptions, SimSite};
use ems_testkit::process::{ChildGuard, SpawnGuarded};

fn spawn_agent(config: &std::path::Path) -> ChildGuard {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ems-agent"));
    cmd.arg("--config")
        .arg(config)
        .arg("run")
        .env("EMS_LOG", "warn")
        .stdin(Stdio::null());
    cmd.spawn_guarded().expect("start ems-agent")
}

fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

async fn wait_rows(db_url: &str, what: &str, secs: u64, cond: impl Fn(&[i64]) -> bool) -> Vec<i64> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let s = stored_seconds(db_url, "site_9").await;
        if cond(&s) {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}; {} rows, last {:?}",
            s.len(),
            s.last()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_minute_cloud_outage_with_agent_kill9_loses_nothing() {
    let db_url = ems_testkit::pg::fresh_database().await;
    let mut cloud = Cloud::on(&db_url).await;
    let dir = tempfile::tempdir().unwrap();
    let uplink = cloud
        .uplink_section("site_9", dir.path(), "reconnect_max_s = 3.0")
        .await;
    let sim = SimSite::start(SimOptions::new(dir.path().join("sim")))
        .await
        .unwrap();
    let config = dir.path().join("agent.toml");
    std::fs::write(
        &config,
        format!(
            r#"
device_id = "site_9"
data_dir = "{data}"
driver_dir = "{drivers}"
{uplink}
[buses.rs485]
kind = "rtu"
port = "{port}"
baud = 19200
timeout_ms = 150
[devices.inverter]
driver = "sunspec"
bus = "rs485"
unit = 1
roles = ["inverter", "battery"]
poll_ms = 250
[devices.grid_meter]
driver = "sdm630"
bus = "rs485"
unit = 2
roles = ["grid_meter"]
poll_ms = 250
"#,
            data = dir.path().join("data").display(),
            drivers = common::driver_dir().display(),
            port = sim.rs485_path.display(),
        ),
    )
    .unwrap();

    let mut agent = spawn_agent(&config);
    let before = wait_rows(&db_url, "first rows", 30, |s| s.len() >= 5).await;
    let first = before[0];

    // Outage: 2 minutes without the cloud.
    cloud.pause().await;
    let outage_start = now_unix();
    tokio::time::sleep(Duration::from_secs(60)).await;

    // SIGKILL the agent in the middle of the outage and start it again.
    agent.kill().expect("SIGKILL");
    agent.wait().unwrap();
    let killed_at = now_unix();
    let mut agent = spawn_agent(&config);
    tokio::time::sleep(Duration::from_secs(60)).await;

    cloud.restart().await;
    let restarted_at = now_unix();
    let t0 = Instant::now();
    let seconds = wait_rows(&db_url, "the backlog to drain", 90, |s| {
        s.last().is_some_and(|&l| l >= restarted_at + 2)
            && s.iter()
                .filter(|&&t| t >= outage_start && t < restarted_at)
                .count() as i64
                >= (restarted_at - outage_start) - 8
    })
    .await;
    let drained_in = t0.elapsed();
    agent.kill().unwrap();
    let _ = agent.wait();

    let (rows, distinct) = rows_and_distinct(&db_url, "site_9").await;
    assert_eq!(rows, distinct, "duplicated seconds");
    // Every second from the first to the last, except the few while no agent process ran.
    let last = *seconds.last().unwrap();
    let missing: Vec<i64> = (first..=last)
        .filter(|t| seconds.binary_search(t).is_err())
        .collect();
    assert!(
        missing
            .iter()
            .all(|&t| t >= killed_at - 1 && t <= killed_at + 6),
        "seconds missing outside the restart of the agent (killed at {killed_at}): {missing:?}"
    );
    assert!(missing.len() <= 7, "{missing:?}");
    println!(
        "outage {} s, stored {} rows, {} missing around the kill -9 at {killed_at}, backlog drained {:.1} s after the cloud returned",
        restarted_at - outage_start,
        rows,
        missing.len(),
        drained_in.as_secs_f64()
    );
}
