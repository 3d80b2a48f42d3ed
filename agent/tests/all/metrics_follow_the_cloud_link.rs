//! The agent with `[metrics] listen` and its uplink to a real ems-cloud: the link gauge is 1
//! while connected, 0 while the cloud is down and 1 again after it comes back; meanwhile the
//! queue grows and its oldest packet ages, and both drain once the cloud is back.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::common;
use crate::metrics_follow_the_running_agent::{sample, scrape};
use common::cloud::Cloud;

const LINK_UP: &str = "ems_agent_uplink_link_up";
const DEPTH: &str = "ems_agent_uplink_queue_depth";
const OLDEST_AGE: &str = "ems_agent_uplink_queue_oldest_age_seconds";

/// Scrapes every 200 ms until `cond` holds for a scrape, which it returns; fails after `secs`
/// with the last scrape.
async fn wait_metrics(
    addr: SocketAddr,
    what: &str,
    secs: u64,
    cond: impl Fn(&str) -> bool,
) -> String {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let text = scrape(addr).await;
        if cond(&text) {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "no {what} within {secs} s:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn link_metrics_follow_a_cloud_outage() {
    let db_url = ems_testkit::pg::fresh_database().await;
    let mut cloud = Cloud::on(&db_url).await;
    let dir = tempfile::tempdir().unwrap();
    // Reconnect within a second of the cloud coming back.
    let uplink = cloud
        .uplink_section("bench_1", dir.path(), "reconnect_max_s = 1.0")
        .await;
    let metrics = "[metrics]\nlisten = \"127.0.0.1:0\"\n";
    let mut bench = common::start_in(dir, 60.0, &format!("{uplink}{metrics}")).await;
    bench.wait_running().await;
    let addr = bench.agent.metrics_addr.expect("metrics endpoint bound");

    // Connected: the link is up and the cloud acknowledges every second, so the queue holds
    // at most the packets in flight.
    let up = wait_metrics(addr, "link up with a short queue", 20, |t| {
        sample(t, LINK_UP) == 1.0 && sample(t, DEPTH) <= 2.0
    })
    .await;
    assert!(sample(&up, OLDEST_AGE) <= 2.0, "{up}");

    // The cloud goes away: the link goes down, packets pile up and the oldest one ages.
    cloud.pause().await;
    let down = wait_metrics(addr, "link down", 30, |t| sample(t, LINK_UP) == 0.0).await;
    let piled = wait_metrics(addr, "a queue of 4 more packets", 20, |t| {
        sample(t, DEPTH) >= sample(&down, DEPTH) + 4.0
    })
    .await;
    assert_eq!(sample(&piled, LINK_UP), 0.0, "{piled}");
    let aged = wait_metrics(addr, "the oldest packet to age", 20, |t| {
        sample(t, OLDEST_AGE) >= sample(&piled, OLDEST_AGE) + 2.0
    })
    .await;
    assert!(sample(&aged, OLDEST_AGE) >= 4.0, "{aged}");
    assert!(sample(&aged, DEPTH) >= sample(&piled, DEPTH), "{aged}");
    assert_eq!(sample(&aged, LINK_UP), 0.0, "{aged}");

    // The cloud is back: the link comes up, the backlog drains, the oldest packet is recent.
    let backlog = sample(&aged, DEPTH);
    cloud.restart().await;
    wait_metrics(addr, "link up again", 30, |t| sample(t, LINK_UP) == 1.0).await;
    let drained = wait_metrics(addr, "the backlog to drain", 30, |t| {
        sample(t, DEPTH) <= 2.0 && sample(t, OLDEST_AGE) <= 2.0
    })
    .await;
    assert!(backlog >= 6.0, "backlog was only {backlog}");
    assert_eq!(sample(&drained, "ems_agent_uplink_quarantined_total"), 0.0);
    assert_eq!(sample(&drained, "ems_agent_uplink_evicted_total"), 0.0);

    // The backlog reached the database: acknowledged means stored.
    let stored = common::wait_stored(&db_url, "bench_1", 1).await;
    assert!(stored.len() as f64 >= backlog, "{} stored", stored.len());
    bench.agent.stop().await;
    cloud.stop().await;
}
