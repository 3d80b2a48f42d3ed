//! Load generator for ems-cloud: `cargo bench -p ems-cloud --bench load`.
//!
//! Starts its own PostgreSQL (ems-testkit) and the release `ems-cloud` binary as a separate
//! process (so its memory can be read from /proc), registers N devices, opens N device sockets
//! and then runs three measurements:
//!
//! 1. **hold**: server RSS before and after the N sockets connect and settle → memory per idle
//!    connection.
//! 2. **1 Hz**: every device sends one spec packet per second for `EMS_BENCH_SECONDS`; stored
//!    rows/s and send-to-ack latency (the ack is sent only after COMMIT).
//! 3. **saturation**: every device keeps `EMS_BENCH_WINDOW` packets unacknowledged for
//!    `EMS_BENCH_SECONDS`: the sustained ingest rate.
//!
//! Then the server is stopped and the same number of rows is inserted straight into PostgreSQL
//! twice, only the database's time counted: with the server's fallback statement (UNNEST,
//! prepared, 1000 rows per statement, one connection) and with binary COPY (100,000 rows per
//! COPY), PostgreSQL's fastest way in. The ratios ingest / each are printed, and ingest / the
//! faster of the two is the figure held against the target.
//!
//! All of it runs on TimescaleDB (preloaded) and then on plain PostgreSQL, when TimescaleDB is
//! installed, and a summary puts the two side by side; `EMS_BENCH_BACKENDS=timescaledb|plain`
//! picks one.
//!
//! Environment: `EMS_BENCH_DEVICES` (10000), `EMS_BENCH_SECONDS` (20), `EMS_BENCH_WINDOW` (8),
//! `EMS_BENCH_ACTIVE` (how many of the devices send in the 1 Hz and saturation phases; the
//! others hold idle sockets; default all), `EMS_BENCH_WRAP` (a profiler command to run the
//! server under). Past 20,000 devices the sockets come from 127.0.0.2, .3, … (20,000 each: one
//! source address has about 28,000 ephemeral ports towards the server's port), and the process
//! raises its open-file limit for both sides (past the hard limit only with CAP_SYS_RESOURCE;
//! a device count the limit cannot hold is refused at once, naming it).
//! The client and the server share the machine, so on a small machine the client's own work
//! (JSON, TLS-free WebSocket framing for 10k sockets) competes with the server for the CPU.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use ems_cloud::auth::{DEVICE_TOKEN_PREFIX, generate_token, hash_token};
use ems_protocol::telemetry::Timestamp;
use ems_testkit::pg::Backend;
use tokio::sync::{Semaphore, watch};

mod baseline;
mod device;
mod server;

use baseline::*;
use device::*;
use server::*;

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx] as f64 / 1000.0
}

/// Open files a side needs beyond its device sockets (database pool, listener, logs, …).
const SPARE_FDS: u64 = 500;

fn main() {
    let fd_limit = raise_fd_limit();
    let n = env_or("EMS_BENCH_DEVICES", 10_000);
    if n + SPARE_FDS > fd_limit {
        // The client holds n sockets and the server (which inherits the limit) n more.
        eprintln!(
            "{n} devices need {} open files per process (client and server each hold one socket \
             per device) but this process may open {fd_limit}: its hard limit, which only a \
             process with CAP_SYS_RESOURCE can raise (`ulimit -Hn`). Run at most {} devices here.",
            n + SPARE_FDS,
            fd_limit.saturating_sub(SPARE_FDS)
        );
        std::process::exit(2);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(run(fd_limit));
}

/// The figures of one backend, for the side-by-side summary.
struct Figures {
    backend: Backend,
    one_hz_rate: f64,
    one_hz_p99_ms: f64,
    sat_rate: f64,
    copy_rate: f64,
}

async fn run(fd_limit: u64) {
    let n = env_or("EMS_BENCH_DEVICES", 10_000) as usize;
    let secs = env_or("EMS_BENCH_SECONDS", 20);
    let window = env_or("EMS_BENCH_WINDOW", 8) as usize;
    let backends: Vec<Backend> = match std::env::var("EMS_BENCH_BACKENDS").as_deref() {
        Ok("plain") => vec![Backend::Plain],
        Ok("timescaledb") => vec![Backend::TimescaleDb],
        _ if Backend::TimescaleDb.available().is_ok() => {
            vec![Backend::TimescaleDb, Backend::Plain]
        }
        _ => {
            println!("TimescaleDB is not installed: plain PostgreSQL only");
            vec![Backend::Plain]
        }
    };
    println!(
        "ems-cloud load: {n} devices, {secs} s per phase, window {window}, fd limit {fd_limit}"
    );
    let mut all = Vec::new();
    for backend in backends {
        println!("\n--- {} ---", backend.name());
        all.push(run_on(backend, n, secs, window).await);
    }
    if all.len() > 1 {
        println!("\nsummary (same run, same rows):");
        for f in &all {
            println!(
                "  {:<17} 1 Hz {:>7.0} rows/s p99 {:>6.1} ms | saturation {:>7.0} rows/s | binary COPY {:>7.0} rows/s | ingest / COPY {:.2}",
                f.backend.name(),
                f.one_hz_rate,
                f.one_hz_p99_ms,
                f.sat_rate,
                f.copy_rate,
                f.sat_rate / f.copy_rate
            );
        }
    }
}

/// Sockets per loopback source address when there are more devices than that.
const PER_SOURCE: usize = 20_000;

async fn run_on(backend: Backend, n: usize, secs: u64, window: usize) -> Figures {
    let active = (env_or("EMS_BENCH_ACTIVE", n as u64) as usize).min(n);
    let pg = ems_testkit::pg::PgServer::start_with(backend).expect("PostgreSQL");
    let url = pg.create_database().await.unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut server = spawn_server(&url, port);
    wait_healthy(port).await;
    let pid = server.id();

    // Register the devices straight in the database (the API would do the same per device).
    let ids: Vec<String> = (0..n).map(|i| format!("dev{i:05}")).collect();
    let tokens: Vec<String> = (0..n)
        .map(|_| generate_token(DEVICE_TOKEN_PREFIX))
        .collect();
    {
        let client = ems_cloud::db::connect(&url).await.unwrap();
        let hashes: Vec<Vec<u8>> = tokens.iter().map(|t| hash_token(t)).collect();
        client
            .execute(
                "INSERT INTO devices (id, name, token_hash) SELECT i, i, h FROM UNNEST($1::text[], $2::bytea[]) AS u(i, h)",
                &[&ids, &hashes],
            )
            .await
            .unwrap();
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_before = rss_kib(pid);

    let shared = Arc::new(Shared {
        acks: [AtomicU64::new(0), AtomicU64::new(0)],
        sent: [AtomicU64::new(0), AtomicU64::new(0)],
        connected: AtomicUsize::new(0),
        failed: AtomicUsize::new(0),
        connect_gate: Semaphore::new(64),
    });
    let (phase_tx, phase_rx) = watch::channel(Phase::Connect);
    let base = Timestamp::now().unix() - 2 * 3600;
    let ws_url = format!("ws://127.0.0.1:{port}/ws/device/");
    let server_addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let connect_start = Instant::now();
    let tasks: Vec<_> = ids
        .iter()
        .zip(&tokens)
        .enumerate()
        .map(|(i, (id, token))| {
            tokio::spawn(device_task(
                Link {
                    url: format!("{ws_url}{id}"),
                    server: server_addr,
                    // Past one address's ephemeral ports: 127.0.0.2, .3, … with 20,000 each.
                    source: (n > PER_SOURCE)
                        .then(|| std::net::Ipv4Addr::new(127, 0, 0, 2 + (i / PER_SOURCE) as u8)),
                    active: i < active,
                },
                id.clone(),
                token.clone(),
                base,
                window,
                shared.clone(),
                phase_rx.clone(),
            ))
        })
        .collect();
    let connected_after =
        wait_connected(&url, (n - shared.failed.load(Ordering::Relaxed)) as i64).await;
    let connected = shared.connected.load(Ordering::Relaxed);
    let _ = connect_start;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let rss_held = rss_kib(pid);
    let per_conn_kb =
        (rss_held.saturating_sub(rss_before)) as f64 * 1.024 / connected.max(1) as f64;
    println!(
        "hold: {connected} sockets connected in {:.1} s ({} failed); server RSS {} MiB -> {} MiB: {per_conn_kb:.1} kB per idle connection",
        connected_after.as_secs_f64(),
        shared.failed.load(Ordering::Relaxed),
        rss_before / 1024,
        rss_held / 1024
    );

    // 1 Hz.
    phase_tx.send_replace(Phase::OneHz);
    tokio::time::sleep(Duration::from_secs(2)).await; // ramp-up: every device has started
    let a0 = shared.acks[0].load(Ordering::Relaxed);
    let t0 = Instant::now();
    tokio::time::sleep(Duration::from_secs(secs)).await;
    let one_hz_rate =
        (shared.acks[0].load(Ordering::Relaxed) - a0) as f64 / t0.elapsed().as_secs_f64();
    let rss_1hz = rss_kib(pid);
    phase_tx.send_replace(Phase::Drain);
    let drain_start = Instant::now();
    while shared.acks[0].load(Ordering::Relaxed) < shared.sent[0].load(Ordering::Relaxed)
        && drain_start.elapsed() < Duration::from_secs(60)
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Saturation.
    phase_tx.send_replace(Phase::Saturate);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let s0 = shared.acks[1].load(Ordering::Relaxed);
    let t1 = Instant::now();
    tokio::time::sleep(Duration::from_secs(secs)).await;
    let sat_rows = shared.acks[1].load(Ordering::Relaxed) - s0;
    let sat_rate = sat_rows as f64 / t1.elapsed().as_secs_f64();
    let rss_sat = rss_kib(pid);
    phase_tx.send_replace(Phase::Done);

    let mut lat: [Vec<u32>; 2] = Default::default();
    for t in tasks {
        if let Ok(l) = t.await {
            for (all, mine) in lat.iter_mut().zip(l) {
                all.extend(mine);
            }
        }
    }
    for l in &mut lat {
        l.sort_unstable();
    }
    let stored: i64 = ems_cloud::db::connect(&url)
        .await
        .unwrap()
        .query_one("SELECT count(*) FROM telemetry", &[])
        .await
        .unwrap()
        .get(0);
    let acked_total =
        shared.acks[0].load(Ordering::Relaxed) + shared.acks[1].load(Ordering::Relaxed);

    println!(
        "1 Hz: {one_hz_rate:.0} rows/s stored and acked (offered {}/s by the active devices); send->ack p50 {:.1} ms, p99 {:.1} ms ({} samples); server RSS {} MiB",
        active.min(connected),
        percentile(&lat[0], 0.5),
        percentile(&lat[0], 0.99),
        lat[0].len(),
        rss_1hz / 1024
    );
    println!(
        "saturation: {sat_rate:.0} rows/s sustained over {secs} s; send->ack p50 {:.1} ms, p99 {:.1} ms; server RSS {} MiB",
        percentile(&lat[1], 0.5),
        percentile(&lat[1], 0.99),
        rss_sat / 1024
    );
    println!(
        "rows in telemetry: {stored}, acknowledged: {acked_total} (every ack is a committed row)"
    );

    // The server is stopped first: it would otherwise still be storing the packets queued when
    // the load stopped, and take CPU from PostgreSQL while the baseline runs.
    let _ = server.kill();
    let _ = server.wait();

    let raw_rows = (sat_rows as usize).clamp(100_000, 1_000_000);
    let raw = raw_insert_rate(&url, raw_rows).await;
    println!(
        "raw UNNEST insert (the fallback statement: ON CONFLICT, 1000 rows/statement, one connection, server stopped, statement time only): {raw:.0} rows/s over {raw_rows} rows; ingest / UNNEST = {:.2}",
        sat_rate / raw
    );
    let copy = raw_copy_rate(&url, raw_rows).await;
    println!(
        "raw binary COPY (PostgreSQL's fastest way in, 100,000 rows per COPY, one connection, COPY time only): {copy:.0} rows/s over {raw_rows} rows; ingest / COPY = {:.2}",
        sat_rate / copy
    );
    println!(
        "ingest / raw (the faster baseline) = {:.2}",
        sat_rate / raw.max(copy)
    );
    Figures {
        backend,
        one_hz_rate,
        one_hz_p99_ms: percentile(&lat[0], 0.99),
        sat_rate,
        copy_rate: raw.max(copy),
    }
}
