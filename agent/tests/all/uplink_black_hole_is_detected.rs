//! A link that goes silent instead of closing (a NAT timeout, a cellular black hole): a TCP proxy
//! between agent and cloud stops forwarding on the open connection, in both directions, and
//! sends nothing back, while new connections still work. The agent notices within 30 s,
//! connects again, and every second ends up stored exactly once. And a black hole that swallows
//! every connection, new ones included, for about a minute: once it forwards again nothing is
//! missing.

use crate::common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::cloud::{Cloud, rows_and_distinct, stored_seconds};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A TCP proxy whose connections numbered below `black_hole_below` swallow every byte.
struct Proxy {
    addr: SocketAddr,
    accepted: Arc<AtomicU64>,
    black_hole_below: Arc<AtomicU64>,
}

impl Proxy {
    async fn start(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicU64::new(0));
        let black_hole_below = Arc::new(AtomicU64::new(0));
        let (count, hole) = (accepted.clone(), black_hole_below.clone());
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let id = count.fetch_add(1, Ordering::SeqCst);
                let Ok(server) = TcpStream::connect(upstream).await else {
                    continue;
                };
                let (cr, cw) = client.into_split();
                let (sr, sw) = server.into_split();
                tokio::spawn(pump(id, cr, sw, hole.clone()));
                tokio::spawn(pump(id, sr, cw, hole.clone()));
            }
        });
        Proxy {
            addr,
            accepted,
            black_hole_below,
        }
    }

    /// Every connection, open or still to come, goes silent.
    fn black_hole_everything(&self) {
        self.black_hole_below.store(u64::MAX, Ordering::SeqCst);
    }

    /// Every connection open now goes silent; later ones forward normally.
    fn black_hole_open_connections(&self) {
        self.black_hole_below
            .store(self.accepted.load(Ordering::SeqCst), Ordering::SeqCst);
    }
}

async fn pump(
    id: u64,
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    hole: Arc<AtomicU64>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if id < hole.load(Ordering::SeqCst) {
            continue; // swallowed: read (so TCP acknowledges it) and never passed on
        }
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    if id >= hole.load(Ordering::SeqCst) {
        let _ = to.shutdown().await;
    }
}

/// Cloud, proxy and agent (reconnecting at most every 5 s) through it, uplink acknowledged.
async fn set_up() -> (Cloud, String, Proxy, common::Bench, RecordedSeconds) {
    let db_url = ems_testkit::pg::fresh_database().await;
    let cloud = Cloud::on(&db_url).await;
    let proxy = Proxy::start(cloud.running().addr).await;
    let dir = tempfile::tempdir().unwrap();
    let section = cloud
        .uplink_section("bench_1", dir.path(), "reconnect_max_s = 5.0")
        .await
        .replace(
            &format!("127.0.0.1:{}", cloud.running().addr.port()),
            &proxy.addr.to_string(),
        );
    assert!(section.contains(&proxy.addr.to_string()), "{section}");
    let mut bench = common::start_in(dir, 60.0, &section).await;
    bench.wait_running().await;
    let produced = common::record_seconds(bench.agent.status.clone());
    let uplink = bench.agent.uplink.clone();
    common::wait_for("the uplink connected", 20.0, || uplink.borrow().connected).await;
    common::wait_for("acknowledgements", 20.0, || uplink.borrow().acked >= 3).await;
    (cloud, db_url, proxy, bench, produced)
}

type RecordedSeconds = Arc<std::sync::Mutex<Vec<i64>>>;

/// Waits until every second the loop produced, up to 3 s after now, is stored, then checks that
/// the stored seconds have no gap and no duplicate.
async fn every_second_stored_once(db_url: &str, produced: &RecordedSeconds, bench: &common::Bench) {
    let until = *produced.lock().unwrap().last().unwrap() + 3;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    let stored = loop {
        let stored = stored_seconds(db_url, "bench_1").await;
        let seen = produced.lock().unwrap().clone();
        let missing: Vec<i64> = seen
            .iter()
            .copied()
            .filter(|t| *t <= until && !stored.contains(t))
            .collect();
        if missing.is_empty() && stored.last().is_some_and(|t| *t >= until) {
            break stored;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not stored: {missing:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert_eq!(
        common::missing_seconds(&stored),
        Vec::<i64>::new(),
        "gaps in the stored seconds"
    );
    let (rows, distinct) = rows_and_distinct(db_url, "bench_1").await;
    assert_eq!(rows, distinct);
    let stats = bench.agent.uplink.borrow().clone();
    println!(
        "{} seconds stored once each; {} connections; {} packets sent, {} acknowledged",
        stored.len(),
        stats.connects,
        stats.sent,
        stats.acked
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_link_is_rebuilt_within_30_s_and_nothing_is_lost() {
    let (_cloud, db_url, proxy, bench, produced) = set_up().await;
    let uplink = bench.agent.uplink.clone();
    proxy.black_hole_open_connections();
    let silent_at = Instant::now();
    common::wait_for("a new connection", 30.0, || {
        let s = uplink.borrow();
        s.connects >= 2 && s.connected
    })
    .await;
    println!(
        "silent link rebuilt after {:.1} s",
        silent_at.elapsed().as_secs_f64()
    );
    every_second_stored_once(&db_url, &produced, &bench).await;
    bench.agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_black_hole_for_every_connection_loses_nothing() {
    let (_cloud, db_url, proxy, bench, produced) = set_up().await;
    let uplink = bench.agent.uplink.clone();
    proxy.black_hole_everything();
    common::wait_for("the silent link closed", 30.0, || {
        !uplink.borrow().connected
    })
    .await;
    // 60 s of black hole in all: attempts to connect go nowhere.
    let swallowed = Instant::now();
    common::wait_for("60 s of black hole", 70.0, || {
        swallowed.elapsed().as_secs() >= 40
    })
    .await;
    let during = uplink.borrow().clone();
    assert!(!during.connected, "{during:?}");
    println!(
        "{} packets queued during the black hole ({} connection attempts swallowed so far)",
        during.queued,
        proxy.accepted.load(Ordering::SeqCst) - 1
    );
    proxy.black_hole_open_connections();
    common::wait_for("a working connection", 30.0, || uplink.borrow().connected).await;
    every_second_stored_once(&db_url, &produced, &bench).await;
    bench.agent.stop().await;
}
