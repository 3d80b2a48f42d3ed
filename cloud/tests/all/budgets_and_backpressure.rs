//! One device cannot slow the others: a device flooding telemetry is read at its budget's pace
//! while a quiet device beside it keeps its send-to-ack time; and while the database is slow
//! (the ingest queue full) a socket stops taking telemetry but keeps its keepalive going, so an
//! agent does not see a dead link and nothing is stored twice.

use crate::common;

use std::time::{Duration, Instant};

use common::{TestServer, count_rows, figment, packet, recent_seconds};
use ems_protocol::{Downstream, Timestamp, parse_downstream};
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flooding_device_is_limited_and_a_quiet_one_keeps_its_pace() {
    let url = ems_testkit::pg::fresh_database().await;
    let config = figment(&url)
        .merge(("device_packet_rate", 10.0))
        .merge(("device_packet_burst", 100.0));
    let server = TestServer::with(config, &url, reqwest::Client::new()).await;
    let flood_token = server.add_device("flooder").await;
    let quiet_token = server.add_device("quiet").await;
    let bad_token = server.add_device("garbage").await;

    // The flooder writes 5,000 packets as fast as its socket takes them, and counts its acks.
    let flooder = server.device("flooder", &flood_token).await;
    let (mut flood_tx, mut flood_rx) = flooder.ws.split();
    let stamps = recent_seconds(5000);
    let flood = tokio::spawn(async move {
        for t in stamps {
            let text = packet("flooder", t, 50.0).to_json();
            if flood_tx.send(Message::Text(text)).await.is_err() {
                break;
            }
        }
    });
    let started = Instant::now();
    let acked = tokio::spawn(async move {
        let mut acked = 0usize;
        while let Some(Ok(msg)) = flood_rx.next().await {
            if let Message::Text(t) = msg
                && let Ok(Downstream::TelemetryAck(a)) = parse_downstream(&t)
            {
                acked += a.timestamps.len();
            }
            if started.elapsed() > Duration::from_secs(6) {
                break;
            }
        }
        acked
    });
    // Another device floods bad frames: closed by the bad-frame limit.
    let mut garbage = server.device("garbage", &bad_token).await;
    let garbage_task = tokio::spawn(async move {
        for _ in 0..200 {
            if garbage.ws.send(Message::Text("{".into())).await.is_err() {
                break;
            }
        }
        loop {
            match garbage.ws.next().await {
                Some(Ok(Message::Close(frame))) => return frame.map(|f| u16::from(f.code)),
                Some(Ok(_)) => continue,
                _ => return None,
            }
        }
    });

    // The quiet device: a packet every 100 ms for 5 s, each timed from send to ack.
    let mut quiet = server.device("quiet", &quiet_token).await;
    let mut latencies = Vec::new();
    let base = Timestamp::now().unix() - 120;
    for i in 0..50 {
        let t = Timestamp::from_unix(base + i).unwrap();
        let sent = Instant::now();
        quiet.send(&packet("quiet", t, 50.0)).await;
        quiet.await_acks(&[t]).await;
        latencies.push(sent.elapsed());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    latencies.sort();
    let p99 = latencies[latencies.len() * 99 / 100 - 1];
    assert!(p99 < Duration::from_millis(500), "quiet device p99 {p99:?}");

    let flood_acked = acked.await.unwrap();
    flood.abort();
    // Burst 100 plus 10/s over about 6 s, with slack for the chunk read before a pause.
    assert!(flood_acked >= 100, "the burst passes ({flood_acked})");
    assert!(
        flood_acked <= 100 + 10 * 8 + 64,
        "the flood was limited: {flood_acked} acked in 6 s"
    );
    assert_eq!(garbage_task.await.unwrap(), Some(1008));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_database_pauses_intake_but_not_the_keepalive() {
    let url = ems_testkit::pg::fresh_database().await;
    let config = figment(&url)
        .merge(("ping_interval_s", 1))
        .merge(("ingest_queue", 20))
        .merge(("batch_max_rows", 10));
    let server = TestServer::with(config, &url, reqwest::Client::new()).await;
    let token = server.add_device("patient").await;
    let device = server.device("patient", &token).await;
    let (mut tx, mut rx) = device.ws.split();

    // The database stalls: telemetry is locked for 6 s.
    let locker = ems_cloud::db::connect(&url).await.unwrap();
    locker
        .batch_execute("BEGIN; LOCK TABLE telemetry IN ACCESS EXCLUSIVE MODE;")
        .await
        .unwrap();
    let stamps = recent_seconds(200);
    let to_send = stamps.clone();
    let sender = tokio::spawn(async move {
        for t in to_send {
            tx.send(Message::Text(packet("patient", t, 50.0).to_json()))
                .await
                .unwrap();
        }
        tx
    });
    let unlock = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(6)).await;
        locker.batch_execute("COMMIT").await.unwrap();
    });

    let mut pings_while_stalled = 0;
    let mut acked = std::collections::HashSet::new();
    let start = Instant::now();
    while acked.len() < stamps.len() {
        let msg = tokio::time::timeout(Duration::from_secs(20), rx.next())
            .await
            .expect("the socket stays alive")
            .expect("the socket stays open")
            .expect("no socket error");
        match msg {
            Message::Ping(_) if start.elapsed() < Duration::from_secs(6) => {
                pings_while_stalled += 1
            }
            Message::Text(t) => match parse_downstream(&t).unwrap() {
                Downstream::TelemetryAck(a) => acked.extend(a.timestamps),
                other => panic!("unexpected {other:?}"),
            },
            Message::Close(frame) => panic!("closed while the database was slow: {frame:?}"),
            _ => {}
        }
    }
    unlock.await.unwrap();
    let _tx = sender.await.unwrap();
    assert!(
        pings_while_stalled >= 3,
        "keepalive pings while the database stalled: {pings_while_stalled}"
    );
    assert_eq!(
        count_rows(&url, "SELECT count(*) FROM telemetry").await,
        200
    );
    server.stop().await;
}
