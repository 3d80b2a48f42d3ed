//! Bucketed history from TimescaleDB's per-minute continuous aggregate answers exactly what
//! plain PostgreSQL computes from the raw rows, for the same packets: a stretch already
//! materialised, late packets that land inside it afterwards (a backlog), and the real-time part
//! of the last minute that no refresh has materialised yet.

use crate::common;

use std::time::Duration;

use common::{Backend, TestServer, packet};
use ems_protocol::api::History;
use ems_protocol::{Telemetry, Timestamp};

/// Deterministic but irregular values, so averages are not trivially equal.
fn value(i: i64, k: i64) -> f64 {
    (((i * 7919 + k * 104_729) % 1000) as f64) / 7.0 - 50.0
}

fn sample(device: &str, unix: i64) -> Telemetry {
    let mut p = packet(device, Timestamp::from_unix(unix).unwrap(), 50.0);
    p.battery.power = Some(value(unix, 1) * 10.0);
    p.battery.soc = Some(value(unix, 2).abs().min(100.0));
    p.grid.power = Some(value(unix, 3) * 30.0);
    p.battery.voltage = if unix % 11 == 0 {
        None
    } else {
        Some(48.0 + value(unix, 4) / 100.0)
    };
    p
}

fn iso(unix: i64) -> String {
    Timestamp::from_unix(unix).unwrap().to_string()
}

struct Site {
    server: TestServer,
    device: common::Device<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
}

impl Site {
    async fn new(backend: Backend) -> Option<Site> {
        let server = TestServer::fresh_on(backend).await?;
        let token = server.add_device("agg_1").await;
        let device = server.device("agg_1", &token).await;
        Some(Site { server, device })
    }

    async fn send(&mut self, seconds: &[i64]) {
        for chunk in seconds.chunks(500) {
            let mut stamps = Vec::new();
            for s in chunk {
                let p = sample("agg_1", *s);
                stamps.push(p.timestamp);
                self.device.send(&p).await;
            }
            self.device.await_acks(&stamps).await;
        }
    }

    async fn history(&self, from: i64, to: i64, bucket: &str) -> History {
        self.server
            .get_json(&format!(
                "/devices/agg_1/telemetry?from={}&to={}&bucket={bucket}&limit=10000",
                iso(from),
                iso(to)
            ))
            .await
    }

    async fn sql(&self, sql: &str) {
        let client = ems_cloud::db::connect(&self.server.db_url).await.unwrap();
        client.batch_execute(sql).await.unwrap();
    }
}

/// Why two answers differ, or `None` when they agree (averages to 1e-9 relative).
fn difference(a: &History, b: &History) -> Option<String> {
    if a.buckets.len() != b.buckets.len() {
        return Some(format!(
            "{} vs {} buckets",
            a.buckets.len(),
            b.buckets.len()
        ));
    }
    for (x, y) in a.buckets.iter().zip(&b.buckets) {
        if x.time != y.time || x.count != y.count {
            return Some(format!(
                "bucket {} count {} vs {} {}",
                x.time, x.count, y.time, y.count
            ));
        }
        for (field, vx) in &x.values {
            let vy = y.values.get(field).copied().flatten();
            match (vx, vy) {
                (None, None) => {}
                (Some(p), Some(q)) => {
                    let close = |u: f64, v: f64| (u - v).abs() <= 1e-9 * u.abs().max(1.0);
                    if !(close(p.avg, q.avg) && p.min == q.min && p.max == q.max) {
                        return Some(format!("{} {field}: {p:?} vs {q:?}", x.time));
                    }
                }
                other => return Some(format!("{} {field}: {other:?}", x.time)),
            }
        }
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aggregate_answers_equal_plain_postgresql_answers() {
    let Some(mut ts) = Site::new(Backend::TimescaleDb).await else {
        return;
    };
    let mut plain = Site::new(Backend::Plain).await.unwrap();
    assert!(
        ts.server
            .get_json::<ems_protocol::api::Health>("/health")
            .await
            .timescale
    );

    // 40 minutes, 90 minutes ago, with every 7th second missing; then a minute of packets just
    // now (the real-time part: newer than anything a refresh has materialised).
    let now = Timestamp::now().unix();
    let base = (now - 5400) / 3600 * 3600;
    let old: Vec<i64> = (base..base + 2400).filter(|s| s % 7 != 3).collect();
    let recent: Vec<i64> = (now - 50..now - 2).collect();
    for site in [&mut ts, &mut plain] {
        site.send(&old).await;
    }
    // Materialise the old stretch by hand, and hold the policy (it would fold late rows in at
    // its next run, within a minute): what must keep answers exact at once is ems-cloud's own
    // refresh after a backlog.
    ts.sql(
        "SELECT alter_job(job_id, scheduled => false) FROM timescaledb_information.jobs \
         WHERE proc_name = 'policy_refresh_continuous_aggregate'",
    )
    .await;
    ts.sql(&format!(
        "CALL refresh_continuous_aggregate('telemetry_1m', to_timestamp({base}), to_timestamp({}))",
        base + 2400
    ))
    .await;
    for site in [&mut ts, &mut plain] {
        site.send(&recent).await;
    }

    // The backlog: the missing seconds arrive late, inside the materialised stretch.
    let late: Vec<i64> = (base..base + 2400).filter(|s| s % 7 == 3).collect();
    for site in [&mut ts, &mut plain] {
        site.send(&late).await;
    }

    let ranges = [
        (base - 600, now + 60, "1m"),
        (base - 600, now + 60, "5m"),
        (base - 3600, now + 3600, "1h"),
        (base + 17, base + 1999, "15m"),
        (now - 300, now + 60, "1m"),
        (base, base + 2400, "90s"),
    ];
    for (from, to, bucket) in ranges {
        let expected = plain.history(from, to, bucket).await;
        assert!(!expected.buckets.is_empty());
        // The refresh that folds the backlog in runs beside ingest; wait for it (a deadline,
        // not a fixed sleep).
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let got = ts.history(from, to, bucket).await;
            match difference(&got, &expected) {
                None => break,
                Some(why) if tokio::time::Instant::now() > deadline => {
                    panic!("{bucket} buckets from {from} to {to} differ: {why}")
                }
                Some(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
    }
    // Every second of the stretch is counted once.
    let total: i64 = plain
        .history(base, base + 2400, "1h")
        .await
        .buckets
        .iter()
        .map(|b| b.count)
        .sum();
    assert_eq!(total, 2400);
}
