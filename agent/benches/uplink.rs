//! Uplink figures on loopback with a real PostgreSQL, ems-cloud, ems-sim and the agent:
//! - command round trip: REST POST with wait → agent applies → answer stored → HTTP reply,
//!   p50/p99 over 1,000 commands (target p99 <= 20 ms);
//! - time to drain a 1-hour backlog (3,600 packets) while live telemetry continues (target
//!   <= 30 s);
//! - on-disk bytes per queued packet.
//!
//! `cargo build --release && cargo bench -p ems-agent --bench uplink`

#[path = "../tests/all/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use common::cloud::{Cloud, stored_seconds};
use ems_agent::uplink::queue::{Budget, Queue};
use ems_protocol::{Battery, Grid, Mode, State, SystemStatus, Telemetry, Timestamp};

fn packet(device: &str, ts: i64) -> Telemetry {
    Telemetry {
        device_id: device.into(),
        timestamp: Timestamp::from_unix(ts).unwrap(),
        system_status: SystemStatus {
            state: State::Idle,
            mode: Mode::Auto,
            error_flags: vec![],
            wifi_strength: Some(-52),
            schedule: None,
        },
        battery: Battery {
            voltage: Some(52.31),
            current: Some(-3.25),
            power: Some(-170.0),
            soc: Some(63.4),
        },
        grid: Grid {
            voltage: Some(229.8),
            power: Some(412.5),
            frequency: Some(49.98),
        },
        site: None,
    }
}

fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let db_url = ems_testkit::pg::fresh_database().await;
    let cloud = Cloud::on(&db_url).await;
    let dir = tempfile::tempdir().unwrap();
    let uplink = cloud.uplink_section("bench_1", dir.path(), "").await;

    // A 1-hour backlog already in the agent's queue, as after an outage.
    let now = now_unix();
    let queue_path = ems_agent::uplink::queue_path(&dir.path().join("data"));
    {
        let mut q = Queue::open(&queue_path, Budget::default()).unwrap();
        for ts in now - 3600..now {
            q.push(&packet("bench_1", ts)).unwrap();
        }
        let bytes = q.disk_bytes();
        let n = q.len() as f64;
        let folded = q.checkpoint().unwrap();
        println!(
            "queue on disk for {n} packets: {:.0} bytes per packet with the WAL before a checkpoint, {:.0} after (database only)",
            bytes as f64 / n,
            folded as f64 / n
        );
    }

    let started = Instant::now();
    let mut bench = common::start_in(dir, 60.0, &uplink).await;
    // Drain: every backlog second stored, and live seconds keep arriving meanwhile.
    let drained = loop {
        let s = stored_seconds(&db_url, "bench_1").await;
        let backlog = s.iter().filter(|&&t| t < now).count();
        if backlog >= 3600 {
            break s;
        }
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "backlog not drained: {backlog}/3600"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let drain_s = started.elapsed().as_secs_f64();
    let live = drained.iter().filter(|&&t| t >= now).count();
    println!(
        "backlog of 3600 packets drained in {drain_s:.1} s (agent start included); {live} live packets stored meanwhile (target <= 30 s)"
    );

    bench.wait_running().await;
    let mut rtts = Vec::with_capacity(1000);
    for i in 0..1000 {
        let body = if i % 2 == 0 {
            serde_json::json!({"command_id": format!("rtt_{i}"), "action": "SET_MODE", "payload": {"target_mode": "MANUAL_IDLE"}})
        } else {
            serde_json::json!({"command_id": format!("rtt_{i}"), "action": "SET_MODE", "payload": {"target_mode": "AUTO"}})
        };
        let t = Instant::now();
        let (status, record) = cloud.command("bench_1", body, 5).await;
        let ms = t.elapsed().as_secs_f64() * 1000.0;
        assert!(
            status < 300 && record["status"] == "ACCEPTED",
            "{status} {record}"
        );
        rtts.push(ms);
    }
    rtts.sort_by(|a, b| a.partial_cmp(b).unwrap());
    println!(
        "command round trip over 1000 commands: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms (target p99 <= 20 ms)",
        percentile(&rtts, 0.5),
        percentile(&rtts, 0.99),
        rtts.last().unwrap()
    );
    bench.agent.stop().await;
}
