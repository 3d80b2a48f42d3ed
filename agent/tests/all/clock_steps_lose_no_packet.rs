//! Wrong clocks lose no packet and drop none silently. An agent started with its clock 1 hour
//! behind, then corrected (a step forward): every second it published is stored. One started a
//! day ahead, then corrected (a step back of a day): the cloud refuses the future packets, they
//! are quarantined and counted, the loop goes on at the corrected time, and every published
//! second is either stored or in the quarantine, never both, on one connection.

use crate::common;

use std::collections::BTreeSet;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::cloud::{Cloud, rows_and_distinct, stored_seconds};

fn real_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn quarantined(bench: &common::Bench) -> BTreeSet<i64> {
    let db = rusqlite::Connection::open(ems_agent::uplink::queue_path(
        &bench.dir.path().join("data"),
    ))
    .unwrap();
    let mut stmt = db.prepare("SELECT ts FROM quarantine").unwrap();
    stmt.query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

/// Starts cloud and agent, shifts the agent's clock by `offset_s` at once, waits until
/// `during` holds, corrects the clock, and waits until 5 packets after the correction are
/// stored and every second published by then is stored or quarantined. Returns the bench, the
/// published seconds, the stored ones and the quarantined ones.
async fn run(
    offset_s: f64,
    during: impl Fn(&ems_agent::uplink::UplinkStats) -> bool,
) -> (common::Bench, BTreeSet<i64>, BTreeSet<i64>, BTreeSet<i64>) {
    let db_url = ems_testkit::pg::fresh_database().await;
    let cloud = Cloud::on(&db_url).await;
    let dir = tempfile::tempdir().unwrap();
    let uplink = cloud.uplink_section("bench_1", dir.path(), "").await;
    let bench = common::start_in(dir, 60.0, &uplink).await;
    bench.agent.clock.set_offset_for_tests(offset_s);
    let recorded = common::record_seconds(bench.agent.status.clone());
    let stats = bench.agent.uplink.clone();
    common::wait_for("the wrong clock's packets handled", 40.0, || {
        during(&stats.borrow())
    })
    .await;
    bench.agent.clock.set_offset_for_tests(0.0);
    let corrected = real_now();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let s = stored_seconds(&db_url, "bench_1").await;
        if s.iter().filter(|t| **t > corrected).count() >= 5 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "nothing stored after the correction: {s:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let published: BTreeSet<i64> = recorded.lock().unwrap().iter().copied().collect();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let stored: BTreeSet<i64> = stored_seconds(&db_url, "bench_1")
            .await
            .into_iter()
            .collect();
        let kept = quarantined(&bench);
        let open: Vec<i64> = published
            .iter()
            .copied()
            .filter(|t| !stored.contains(t) && !kept.contains(t))
            .collect();
        if open.is_empty() {
            let (rows, distinct) = rows_and_distinct(&db_url, "bench_1").await;
            assert_eq!(rows, distinct, "a second stored twice");
            return (bench, published, stored, kept);
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "published, neither stored nor quarantined: {open:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_hour_behind_then_corrected() {
    let (bench, published, stored, kept) = run(-3600.0, |s| s.acked >= 10).await;
    assert!(published.is_subset(&stored));
    assert!(kept.is_empty(), "{kept:?}");
    let stats = bench.agent.uplink.borrow().clone();
    println!(
        "{} seconds published (an hour behind, then right), all stored; {} quarantined, {} evicted",
        published.len(),
        stats.quarantined_total,
        stats.evicted_total
    );
    assert_eq!(stats.quarantined_total, 0);
    assert_eq!(stats.evicted_total, 0);
    bench.agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_day_ahead_then_corrected() {
    let (bench, published, stored, kept) = run(86_400.0, |s| s.quarantined_total >= 10).await;
    assert!(
        kept.is_disjoint(&stored),
        "a second both stored and quarantined"
    );
    let stats = bench.agent.uplink.borrow().clone();
    println!(
        "{} seconds published (a day ahead, then right): {} stored, {} quarantined; {} connection(s)",
        published.len(),
        published.intersection(&stored).count(),
        kept.len(),
        stats.connects
    );
    assert!(
        kept.iter().all(|t| *t > real_now() + 3600),
        "only future packets are quarantined"
    );
    assert_eq!(stats.quarantined_total, kept.len() as u64);
    assert_eq!(stats.connects, 1);
    bench.agent.stop().await;
}
