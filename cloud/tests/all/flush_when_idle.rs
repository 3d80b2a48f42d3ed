//! `batch_max_delay_ms = 0` (the default), flush when idle: the writer takes what is queued
//! whenever it is free; and 100, where a batch also waits for more. In both, three devices
//! sending their backlogs at once and a device sending one packet at a time are all stored once
//! and acknowledged; resent packets are acknowledged again and stored once.

use crate::common;

use common::{TestServer, count_rows, figment, packet, recent_seconds};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flush_when_idle_stores_and_acks_everything_once() {
    stores_and_acks_everything_once(0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lingering_batches_store_and_ack_everything_once() {
    stores_and_acks_everything_once(100).await;
}

async fn stores_and_acks_everything_once(batch_max_delay_ms: u64) {
    let url = ems_testkit::pg::fresh_database().await;
    let config = figment(&url).merge(("batch_max_delay_ms", batch_max_delay_ms));
    let server = TestServer::with(config, &url, reqwest::Client::new()).await;

    // Three backlogs of 200 at once: batches form from what queues up while one is written.
    let seconds = recent_seconds(200);
    let mut senders = Vec::new();
    for id in ["idle_a", "idle_b", "idle_c"] {
        let token = server.add_device(id).await;
        let mut device = server.device(id, &token).await;
        let seconds = seconds.clone();
        senders.push(tokio::spawn(async move {
            for ts in &seconds {
                device.send(&packet(id, *ts, 50.0)).await;
            }
            device.await_acks(&seconds).await;
            // The same backlog again (as after a lost ack): acknowledged, not stored twice.
            for ts in &seconds[..50] {
                device.send(&packet(id, *ts, 50.0)).await;
            }
            device.await_acks(&seconds[..50]).await;
        }));
    }
    // One packet at a time, each waiting for its ack: every batch holds one packet.
    let token = server.add_device("idle_single").await;
    let mut single = server.device("idle_single", &token).await;
    for ts in &seconds[..20] {
        single.send(&packet("idle_single", *ts, 40.0)).await;
        single.await_acks(&[*ts]).await;
    }
    for s in senders {
        s.await.unwrap();
    }

    let rows = |id: &'static str| {
        let url = url.clone();
        async move {
            count_rows(
                &url,
                &format!("SELECT count(DISTINCT time) FROM telemetry WHERE device_id = '{id}'"),
            )
            .await
        }
    };
    for id in ["idle_a", "idle_b", "idle_c"] {
        assert_eq!(rows(id).await, 200, "{id}");
    }
    assert_eq!(rows("idle_single").await, 20);
    assert_eq!(
        count_rows(&url, "SELECT count(*) FROM telemetry").await,
        3 * 200 + 20,
        "a packet stored twice"
    );
    server.stop().await;
}
