//! Storage on TimescaleDB: `cargo bench -p ems-cloud --bench storage`.
//!
//! Starts its own PostgreSQL with TimescaleDB preloaded (ems-testkit), lets ems-cloud create its
//! schema (hypertable, continuous aggregate), then generates `EMS_BENCH_DAYS` (30) days of 1 Hz
//! telemetry for `EMS_BENCH_DEVICES` (100) devices server-side and prints what follows. One
//! template day is generated (`generate_series`, values shaped like a real site: slow SoC, noisy
//! power, quantised like the drivers' readings) and every day loaded is a copy of it shifted in
//! time, two days at a time on two connections: the generator's arithmetic is paid once.
//!
//! - rows, load time, and the on-disk size of the hypertable (heap + index + TOAST) uncompressed;
//! - the time to materialise the per-minute aggregate over all of it, and its size;
//! - history query times through ems-cloud's own query code (`history::query`) for one device:
//!   the last hour raw, the last 24 h at 5 min, the last 30 days at 1 h (both from the
//!   aggregate), and 24 h at 5 min from the raw rows for comparison;
//! - the same after compressing every chunk, with the compressed size and the ratio.
//!
//! Last, ems-cloud is started on the data and one device's first packet is timed from its
//! connection to the acknowledgement (its last state is loaded from all that history).
//!
//! Each query runs 7 times; the first (cold) time and the median of the rest are printed. The
//! background jobs (policies) are paused so they do not run during a measurement.
//! `EMS_BENCH_PLAIN=1` loads the same rows into a plain PostgreSQL server too and prints its
//! size and query times beside.
//!
//! `EMS_BENCH_COMPRESS_AS_LOADED=1` compresses each day's chunk as soon as it is whole,
//! so 30 days × 100 devices (about 53 GB uncompressed) fit a few GB of disk; the uncompressed
//! figures are then not measured. Both modes print the plan of the last-state lookup
//! (`EXPLAIN ANALYZE` of the query ingest runs when a device's first packet arrives) on all that
//! history.

use std::time::{Duration, Instant};

use chrono::{TimeZone, Utc};
use ems_cloud::api::history::{HistoryQuery, query};
use ems_cloud::config::CloudConfig;
use ems_cloud::db::Db;
use ems_testkit::pg::{Backend, PgServer};

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn mb(bytes: i64) -> f64 {
    bytes as f64 / 1_048_576.0
}

/// One template day of rows for all devices, generated inside PostgreSQL into an unlogged
/// table without indexes; every loaded day is a copy of it shifted in time.
const TEMPLATE_DAY: &str = "
CREATE UNLOGGED TABLE IF NOT EXISTS bench_day AS
SELECT t AS time, 'dev' || lpad(d::text, 3, '0') AS device_id,
    CASE WHEN p > 5 THEN 'CHARGING' WHEN p < -5 THEN 'DISCHARGING' ELSE 'IDLE' END AS state,
    'AUTO'::text AS mode, '{}'::text[] AS error_flags, -50 - (d % 20) AS wifi_strength,
    round((51.2 + p / 2000.0)::numeric, 2)::float8 AS battery_voltage,
    round((p / 51.2)::numeric, 1)::float8 AS battery_current,
    p AS battery_power,
    round((50 + 40 * sin(extract(epoch FROM t) / 43200.0 * pi() + d))::numeric, 1)::float8
        AS battery_soc,
    round((230 + 2 * sin(extract(epoch FROM t) / 600.0) + random())::numeric, 1)::float8
        AS grid_voltage,
    round((400 * sin(extract(epoch FROM t) / 3600.0 + d) - p + 50 * random())::numeric)::float8
        AS grid_power,
    round((50 + 0.02 * sin(extract(epoch FROM t) / 30.0))::numeric, 3)::float8 AS grid_frequency
FROM generate_series('2000-01-01T00:00:00Z'::timestamptz,
                     '2000-01-01T23:59:59Z'::timestamptz, INTERVAL '1 second') AS t,
     generate_series(0, DEVICES - 1) AS d,
     LATERAL (SELECT round((1500 * sin(extract(epoch FROM t) / 7200.0 + d)
                            + 100 * random())::numeric)::float8 AS p) AS v";

/// The template's rows shifted to the day that starts at `$1` (a UTC midnight, so one chunk),
/// kept within `[$2, $3)`.
const LOAD_DAY: &str = "
INSERT INTO telemetry (time, device_id, state, mode, error_flags, wifi_strength,
    battery_voltage, battery_current, battery_power, battery_soc,
    grid_voltage, grid_power, grid_frequency)
SELECT s.time, device_id, state, mode, error_flags, wifi_strength,
    battery_voltage, battery_current, battery_power, battery_soc,
    grid_voltage, grid_power, grid_frequency
FROM bench_day, LATERAL (SELECT bench_day.time
    + ($1::timestamptz - '2000-01-01T00:00:00Z'::timestamptz) AS time) s
WHERE s.time >= $2::timestamptz AND s.time < $3::timestamptz";

struct Timing {
    cold_ms: f64,
    median_ms: f64,
    rows: usize,
}

async fn time_query(db: &Db, q: &HistoryQuery) -> Timing {
    let mut times = Vec::new();
    let mut rows = 0;
    for _ in 0..7 {
        let start = Instant::now();
        let h = query(db, q).await.expect("history query");
        times.push(start.elapsed().as_secs_f64() * 1000.0);
        rows = h.points.len() + h.buckets.len();
    }
    let cold_ms = times[0];
    let mut rest = times[1..].to_vec();
    rest.sort_by(f64::total_cmp);
    Timing {
        cold_ms,
        median_ms: rest[rest.len() / 2],
        rows,
    }
}

fn history_query(
    device: &str,
    now: chrono::DateTime<Utc>,
    span: Duration,
    bucket_s: Option<i64>,
) -> HistoryQuery {
    HistoryQuery {
        device_id: device.to_string(),
        from: now - chrono::Duration::from_std(span).unwrap(),
        to: now,
        bucket_s,
        fields: ems_cloud::db::columns::NUMERIC_FIELDS
            .iter()
            .map(|f| f.to_string())
            .collect(),
        limit: 10_000,
    }
}

async fn queries(db: &Db, device: &str, now: chrono::DateTime<Utc>, label: &str) {
    let raw_db = Db {
        timescale: false,
        ..db.clone()
    };
    let cases: [(&str, &Db, Duration, Option<i64>); 4] = [
        ("1 h raw", db, Duration::from_secs(3600), None),
        ("24 h at 5 min", db, Duration::from_secs(86_400), Some(300)),
        (
            "30 days at 1 h",
            db,
            Duration::from_secs(30 * 86_400),
            Some(3600),
        ),
        (
            "24 h at 5 min from raw rows",
            &raw_db,
            Duration::from_secs(86_400),
            Some(300),
        ),
    ];
    let on_timescale = db.timescale;
    for (name, db, span, bucket) in cases {
        // On plain PostgreSQL every bucket comes from the raw rows already.
        if name.contains("from raw") && !on_timescale {
            continue;
        }
        let t = time_query(db, &history_query(device, now, span, bucket)).await;
        println!(
            "  {label} {name:<28} cold {:>8.1} ms, median {:>8.1} ms ({} rows/buckets)",
            t.cold_ms, t.median_ms, t.rows
        );
    }
}

/// How many connections load days at once: one per core of the machine this was written for.
const LOADERS: usize = 2;

/// What `load` did.
struct Loaded {
    rows: i64,
    /// From start to the last row, compressing included.
    took: Duration,
    /// Generating the template day.
    template: Duration,
    /// Compressing as loaded, summed over the loaders.
    compressing: Duration,
    compressed_chunks: usize,
}

/// Loads the `days` days before `end`. One template day is generated, then every UTC day (one
/// chunk of the hypertable) is a shifted copy of it, `LOADERS` days at a time. With `compress`
/// (TimescaleDB only), each chunk is compressed as soon as it is whole, so the disk holds at
/// most `LOADERS` uncompressed days.
async fn load(
    url: &str,
    days: i64,
    devices: i32,
    end: chrono::DateTime<Utc>,
    compress: bool,
) -> Loaded {
    let client = ems_cloud::db::connect(url).await.unwrap();
    let start = Instant::now();
    client
        .batch_execute(&TEMPLATE_DAY.replace("DEVICES", &devices.to_string()))
        .await
        .unwrap();
    let template = start.elapsed();
    let from = end - chrono::Duration::days(days);
    let first_midnight = Utc
        .timestamp_opt(from.timestamp().div_euclid(86_400) * 86_400, 0)
        .unwrap();
    let midnights: Vec<_> = (0..)
        .map(|i| first_midnight + chrono::Duration::days(i))
        .take_while(|m| *m < end)
        .collect();
    let total = midnights.len();
    let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let midnights = std::sync::Arc::new(midnights);
    let mut loaders = Vec::new();
    for _ in 0..LOADERS {
        let (next, midnights, url) = (next.clone(), midnights.clone(), url.to_string());
        loaders.push(tokio::spawn(async move {
            let client = ems_cloud::db::connect(&url).await.unwrap();
            let (mut rows, mut compressing, mut compressed) = (0, Duration::ZERO, 0);
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(&midnight) = midnights.get(i) else {
                    break;
                };
                let next_midnight = midnight + chrono::Duration::days(1);
                let t = Instant::now();
                rows += client
                    .execute(LOAD_DAY, &[&midnight, &from, &end])
                    .await
                    .unwrap() as i64;
                eprint!(
                    "\r  day {:>2}/{total} loaded in {:.1} s   ",
                    i + 1,
                    t.elapsed().as_secs_f64()
                );
                if compress && midnight >= from && next_midnight <= end {
                    let t = Instant::now();
                    let n: i64 = client
                        .query_one(
                            "SELECT count(compress_chunk(format('%I.%I', chunk_schema, \
                             chunk_name)::regclass, if_not_compressed => true)) \
                             FROM timescaledb_information.chunks \
                             WHERE hypertable_name = 'telemetry' \
                               AND range_start >= $1 AND range_end <= $2",
                            &[&midnight, &next_midnight],
                        )
                        .await
                        .unwrap()
                        .get(0);
                    compressing += t.elapsed();
                    compressed += n as usize;
                }
            }
            (rows, compressing, compressed)
        }));
    }
    let mut loaded = Loaded {
        rows: 0,
        took: Duration::ZERO,
        template,
        compressing: Duration::ZERO,
        compressed_chunks: 0,
    };
    for loader in loaders {
        let (rows, compressing, compressed) = loader.await.unwrap();
        loaded.rows += rows;
        loaded.compressing += compressing;
        loaded.compressed_chunks += compressed;
    }
    eprintln!();
    client.batch_execute("DROP TABLE bench_day").await.unwrap();
    loaded.took = start.elapsed();
    loaded
}

/// `EXPLAIN ANALYZE` of ingest's last-state lookup for one device: the type and rows of every
/// plan node that ran, how many never ran, and whether any node of the plan (run or not) is a
/// sequential scan.
async fn explain_last_state(url: &str, device: &str) {
    let client = ems_cloud::db::connect(url).await.unwrap();
    let sql = ems_cloud::ingest::LAST_STATES.replace("$1::text[]", &format!("ARRAY['{device}']"));
    let t = Instant::now();
    let row = client
        .query_one(&format!("EXPLAIN (ANALYZE, FORMAT JSON) {sql}"), &[])
        .await
        .unwrap();
    let took = t.elapsed();
    let doc: serde_json::Value = row.get(0);
    // Nodes that never ran (Actual Loops 0: chunks after the one that gave the row, under the
    // ordered append's LIMIT 1) are counted apart from those that did.
    let (mut ran, mut never, mut seq) = (Vec::new(), 0, false);
    let mut stack = vec![doc[0]["Plan"].clone()];
    while let Some(node) = stack.pop() {
        let loops = node["Actual Loops"].as_f64().unwrap_or(0.0);
        stack.extend(node["Plans"].as_array().into_iter().flatten().cloned());
        let kind = node["Node Type"].as_str().unwrap_or("?");
        seq |= kind == "Seq Scan";
        if loops == 0.0 {
            never += 1;
            continue;
        }
        let relation = node["Relation Name"].as_str().unwrap_or("");
        let rows = node["Actual Rows"].as_f64().unwrap_or(0.0) * loops;
        ran.push(format!(
            "{kind}{}{relation} ({rows:.0} rows)",
            if relation.is_empty() { "" } else { " on " },
        ));
    }
    println!(
        "  last-state lookup for {device}: {:.1} ms (planning {:.1} ms), {} plan nodes ran, {never} \
         never ran; sequential scan: {}",
        took.as_secs_f64() * 1000.0,
        doc[0]["Planning Time"].as_f64().unwrap_or(f64::NAN),
        ran.len(),
        if seq { "YES" } else { "none" }
    );
    for n in &ran {
        println!("    {n}");
    }
}

async fn size(url: &str, sql: &str) -> i64 {
    let client = ems_cloud::db::connect(url).await.unwrap();
    client.query_one(sql, &[]).await.unwrap().get(0)
}

async fn open(url: &str) -> Db {
    let config = CloudConfig {
        database_url: url.to_string(),
        database_pool_size: 4,
        // Compression and retention by hand only, not by a policy in the middle of a figure.
        compress_after_days: 100_000,
        max_packet_age_days: 400,
        ..CloudConfig::default()
    };
    Db::open(&config).await.expect("database opens")
}

async fn register(url: &str, devices: i32) {
    let client = ems_cloud::db::connect(url).await.unwrap();
    client
        .execute(
            "INSERT INTO devices (id, name, token_hash) \
             SELECT 'dev' || lpad(d::text, 3, '0'), 'bench', decode(md5(d::text), 'hex') \
             FROM generate_series(0, $1::int - 1) d",
            &[&devices],
        )
        .await
        .unwrap();
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(run());
}

async fn run() {
    let days = env_or("EMS_BENCH_DAYS", 30) as i64;
    let devices = env_or("EMS_BENCH_DEVICES", 100) as i32;
    if let Err(why) = Backend::TimescaleDb.available() {
        panic!("this benchmark needs TimescaleDB: {why}");
    }
    println!("ems-cloud storage: {days} days x {devices} devices at 1 Hz");
    // Whole hours, so every query range is the same shape in both runs.
    let now = Utc::now();
    let end = Utc.timestamp_opt(now.timestamp() / 3600 * 3600, 0).unwrap();
    let device = format!("dev{:03}", devices / 2);

    let pg = PgServer::start_with(Backend::TimescaleDb).expect("PostgreSQL with TimescaleDB");
    let url = pg.create_database().await.unwrap();
    let db = open(&url).await;
    assert!(db.timescale, "{}", db.storage);
    register(&url, devices).await;
    let client = ems_cloud::db::connect(&url).await.unwrap();
    client
        .batch_execute(
            "SELECT alter_job(job_id, scheduled => false) FROM timescaledb_information.jobs",
        )
        .await
        .unwrap();

    let as_loaded = std::env::var("EMS_BENCH_COMPRESS_AS_LOADED").is_ok_and(|v| v == "1");
    let loaded = load(&url, days, devices, end, as_loaded).await;
    let rows = loaded.rows;
    assert_eq!(rows, days * 86_400 * i64::from(devices), "rows loaded");
    println!(
        "TimescaleDB: {rows} rows loaded in {:.0} s ({:.0} rows/s; template day {:.0} s, then \
         shifted copies by {LOADERS} connections{})",
        loaded.took.as_secs_f64(),
        rows as f64 / loaded.took.as_secs_f64(),
        loaded.template.as_secs_f64(),
        if as_loaded {
            format!(
                ", {} whole days compressed as loaded in {:.0} s summed over the connections",
                loaded.compressed_chunks,
                loaded.compressing.as_secs_f64()
            )
        } else {
            String::new()
        }
    );
    client.batch_execute("ANALYZE telemetry").await.unwrap();
    let mut raw_bytes = None;
    if !as_loaded {
        let bytes = size(&url, "SELECT hypertable_size('telemetry')").await;
        println!(
            "  uncompressed: {:.0} MB ({:.1} bytes/row)",
            mb(bytes),
            bytes as f64 / rows as f64
        );
        raw_bytes = Some(bytes);
    }
    let t = Instant::now();
    client
        .batch_execute("CALL refresh_continuous_aggregate('telemetry_1m', NULL, NULL)")
        .await
        .unwrap();
    let agg_bytes = size(
        &url,
        "SELECT hypertable_size(format('%I.%I', materialization_hypertable_schema, \
         materialization_hypertable_name)::regclass) \
         FROM timescaledb_information.continuous_aggregates WHERE view_name = 'telemetry_1m'",
    )
    .await;
    println!(
        "  per-minute aggregate materialised in {:.0} s: {:.0} MB",
        t.elapsed().as_secs_f64(),
        mb(agg_bytes)
    );
    if !as_loaded {
        queries(&db, &device, end, "TS uncompressed").await;
    }
    // As in service: the open day is not compressed yet (with `as_loaded`, every day before it is).
    explain_last_state(&url, &device).await;

    let t = Instant::now();
    let chunks: i64 = client
        .query_one(
            "SELECT count(compress_chunk(c, if_not_compressed => true)) FROM show_chunks('telemetry') c",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    client.batch_execute("ANALYZE telemetry").await.unwrap();
    let compressed_bytes = size(&url, "SELECT hypertable_size('telemetry')").await;
    let took = t.elapsed() + loaded.compressing;
    match raw_bytes {
        Some(raw) => println!(
            "  {chunks} chunks compressed in {:.0} s: {:.0} MB ({:.1} bytes/row), {:.1} x smaller",
            took.as_secs_f64(),
            mb(compressed_bytes),
            compressed_bytes as f64 / rows as f64,
            raw as f64 / compressed_bytes as f64
        ),
        None => println!(
            "  {chunks} chunks compressed as loaded, in {:.0} s in all: {:.0} MB ({:.1} bytes/row)",
            took.as_secs_f64(),
            mb(compressed_bytes),
            compressed_bytes as f64 / rows as f64,
        ),
    }
    queries(&db, &device, end, "TS compressed  ").await;
    explain_last_state(&url, &device).await;
    first_ack(&url, &device).await;
    drop(pg);

    if std::env::var("EMS_BENCH_PLAIN").is_ok_and(|v| v == "1") {
        let pg = PgServer::start_with(Backend::Plain).expect("PostgreSQL");
        let url = pg.create_database().await.unwrap();
        let db = open(&url).await;
        register(&url, devices).await;
        let Loaded { rows, took, .. } = load(&url, days, devices, end, false).await;
        let client = ems_cloud::db::connect(&url).await.unwrap();
        client.batch_execute("ANALYZE telemetry").await.unwrap();
        let bytes = size(&url, "SELECT pg_total_relation_size('telemetry')").await;
        println!(
            "plain PostgreSQL: {rows} rows loaded in {:.0} s; {:.0} MB ({:.1} bytes/row)",
            took.as_secs_f64(),
            mb(bytes),
            bytes as f64 / rows as f64
        );
        queries(&db, &device, end, "plain          ").await;
        explain_last_state(&url, &device).await;
        first_ack(&url, &device).await;
    }
}

/// A cloud started on all this history: the time from start to listening, and from a device's
/// connection to the acknowledgement of its first packet (loading its last state is one index
/// probe, whatever its history).
async fn first_ack(url: &str, device: &str) {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;

    let token = ems_cloud::auth::generate_token(ems_cloud::auth::DEVICE_TOKEN_PREFIX);
    let client = ems_cloud::db::connect(url).await.unwrap();
    client
        .execute(
            "UPDATE devices SET token_hash = $2 WHERE id = $1",
            &[&device, &ems_cloud::auth::hash_token(&token)],
        )
        .await
        .unwrap();
    let figment = rocket::Config::figment()
        .merge(("address", "127.0.0.1"))
        .merge(("port", 0))
        .merge(("log_level", "off"))
        .merge(("database_url", url))
        .merge(("compress_after_days", 100_000))
        .merge(("max_packet_age_days", 400));
    let start = Instant::now();
    let running = ems_cloud::start(figment).await.expect("server starts");
    let listening = start.elapsed();
    let mut req = format!("{}/ws/device/{device}", running.ws_url())
        .into_client_request()
        .unwrap();
    req.headers_mut()
        .insert("Authorization", format!("Bearer {token}").parse().unwrap());
    let connect = Instant::now();
    let (mut ws, _) = tokio_tungstenite::connect_async(req).await.unwrap();
    let t = ems_protocol::Timestamp::now();
    let packet = ems_protocol::Telemetry {
        device_id: device.to_string(),
        timestamp: t,
        system_status: ems_protocol::SystemStatus {
            state: ems_protocol::State::Idle,
            mode: ems_protocol::Mode::Auto,
            error_flags: vec![],
            wifi_strength: Some(-50),
            schedule: None,
        },
        battery: ems_protocol::Battery {
            voltage: Some(51.2),
            current: Some(0.0),
            power: Some(0.0),
            soc: Some(50.0),
        },
        grid: ems_protocol::Grid {
            voltage: Some(230.0),
            power: Some(0.0),
            frequency: Some(50.0),
        },
        site: None,
    };
    ws.send(Message::Text(packet.to_json())).await.unwrap();
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(text))) if text.contains("TELEMETRY_ACK") => break,
            Some(Ok(_)) => continue,
            other => panic!("no ack: {other:?}"),
        }
    }
    println!(
        "  cloud start on this data: listening after {:.0} ms; connect to first ack {:.0} ms; \
         start to first ack {:.0} ms",
        listening.as_secs_f64() * 1000.0,
        connect.elapsed().as_secs_f64() * 1000.0,
        start.elapsed().as_secs_f64() * 1000.0
    );
    running.stop().await;
}
