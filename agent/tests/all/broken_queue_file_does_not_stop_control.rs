//! Garbage in the telemetry queue's file: the agent starts all the same, controls the battery
//! (a MANUAL_DISCHARGE reaches the simulated inverter), keeps the broken file aside for
//! inspection and queues its packets in a new file.

use crate::common;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_in_the_queue_file() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let queue = ems_agent::uplink::queue_path(&data);
    let garbage: Vec<u8> = (0..64 * 1024u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    std::fs::write(&queue, &garbage).unwrap();

    let mut bench = common::start_in(dir, 60.0, "").await;
    bench.wait_running().await;
    bench.discharge_at_500_w("c1").await;
    assert_eq!(bench.sim.state().site.setpoint_w, -500.0);

    // The old file is kept aside, byte for byte.
    let kept: Vec<_> = std::fs::read_dir(&data)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("uplink-queue.sqlite.broken-")
        })
        .collect();
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert_eq!(std::fs::read(&kept[0]).unwrap(), garbage);

    // Packets go to a new, working queue file.
    let uplink = bench.agent.uplink.clone();
    common::wait_for("packets queued", 5.0, || uplink.borrow().queued >= 3).await;
    assert!(!uplink.borrow().queue_in_memory);
    let db = rusqlite::Connection::open(&queue).unwrap();
    let n: i64 = db
        .query_row("SELECT count(*) FROM telemetry", [], |r| r.get(0))
        .unwrap();
    assert!(n >= 3, "{n}");
    bench.agent.stop().await;
}
