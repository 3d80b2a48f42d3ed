//! The database is stopped under the running cloud for 30 s: the cloud sends no
//! acknowledgements, the agent keeps its packets, and once the database is back every second is
//! stored exactly once.

use crate::common;

use std::time::{Duration, Instant};

use common::cloud::{Cloud, rows_and_distinct, stored_seconds};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thirty_second_database_outage_loses_nothing() {
    let pg = ems_testkit::pg::PgServer::start().expect("own PostgreSQL server");
    let db_url = pg.create_database().await.unwrap();
    let cloud = Cloud::on(&db_url).await;
    let dir = tempfile::tempdir().unwrap();
    let uplink = cloud
        .uplink_section("bench_1", dir.path(), "reconnect_max_s = 3.0")
        .await;
    let mut bench = common::start_in(dir, 60.0, &uplink).await;
    bench.wait_running().await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while stored_seconds(&db_url, "bench_1").await.len() < 3 {
        assert!(Instant::now() < deadline, "no rows stored");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let first = stored_seconds(&db_url, "bench_1").await[0];

    pg.stop();
    let down_at = bench
        .wait_status("a cycle", 5, |_| true)
        .await
        .telemetry
        .timestamp
        .unix();
    tokio::time::sleep(Duration::from_secs(30)).await;
    let queued_during = bench.agent.uplink.borrow().queued;
    pg.restart().expect("database back");
    let up_at = bench
        .wait_status("a cycle", 5, |_| true)
        .await
        .telemetry
        .timestamp
        .unix();

    let deadline = Instant::now() + Duration::from_secs(90);
    let seconds = loop {
        let s = stored_seconds(&db_url, "bench_1").await;
        let covered = (first..=up_at + 2).all(|t| s.binary_search(&t).is_ok());
        if covered {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "after the database returned, seconds are missing: {:?}",
            (first..=up_at + 2)
                .filter(|t| s.binary_search(t).is_err())
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let (rows, distinct) = rows_and_distinct(&db_url, "bench_1").await;
    assert_eq!(rows, distinct);
    assert!(
        queued_during >= 25,
        "the agent should have held the outage in its queue, had {queued_during}"
    );
    println!(
        "database down {} s: {} packets queued on the agent meanwhile; {} rows stored, none lost, none duplicated",
        up_at - down_at,
        queued_during,
        seconds.len()
    );
    bench.agent.stop().await;
}
