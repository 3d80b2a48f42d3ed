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
//! Packet times (`EMS_BENCH_TIMES`): `live` (default) starts every device's clock at the bench's
//! start, as a fleet sending in real time, so the packets stay newer than the per-minute
//! aggregate's watermark and no batch asks for a refresh of it; saturation runs each device's
//! clock ahead of the wall clock (about 10 packets a second stand in for ten devices), so the
//! servers accept packets up to an hour in the future. `backlog` dates them two hours back, as
//! a fleet draining the queues of an outage: every batch then also refreshes the aggregate over
//! its minutes (`AggregateRefresher`), work the COPY baseline does not do.
//!
//! Environment: `EMS_BENCH_DEVICES` (10000), `EMS_BENCH_SECONDS` (20), `EMS_BENCH_WINDOW` (8),
//! `EMS_BENCH_ACTIVE` (how many of the devices send in the 1 Hz and saturation phases, spread
//! evenly; the others hold idle sockets; default all), `EMS_BENCH_WRAP` (a profiler command to
//! run the server under). Past 20,000 devices the sockets come from 127.0.0.2, .3, … (20,000
//! each: one source address has about 28,000 ephemeral ports). The process raises its open-file
//! limit as far as it may (past the hard limit only with CAP_SYS_RESOURCE). When one process may
//! not hold every socket (a hard limit of 20,000 open files allows about 19,500), the devices are
//! split into blocks: each block has its own ems-cloud instance (all on the one database, as
//! behind a load balancer) and its own client process (this bench binary again, see `fleet`),
//! and memory per idle socket is the growth of all instances together. Both measured phases
//! print the CPU of ems-cloud and of PostgreSQL, in cores.
//! The client and the server share the machine, so on a small machine the client's own work
//! (JSON, TLS-free WebSocket framing for 10k sockets) competes with the server for the CPU.

use std::time::{Duration, Instant};

use ems_cloud::auth::{DEVICE_TOKEN_PREFIX, generate_token, hash_token};
use ems_protocol::telemetry::Timestamp;
use ems_testkit::pg::Backend;

mod baseline;
mod device;
mod fleet;
mod server;

use baseline::*;
use device::Phase;
use fleet::{CHILD_ENV, DeviceSpec, Fleet, run_child};
use server::*;

/// Cores of this machine, for the CPU figures.
fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

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
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    if let Ok(file) = std::env::var(CHILD_ENV) {
        // A client process started by the bench itself (see `fleet`).
        raise_fd_limit();
        runtime.block_on(run_child(&file));
        return;
    }
    let fd_limit = raise_fd_limit();
    let per_process = fd_limit.saturating_sub(SPARE_FDS) as usize;
    let n = env_or("EMS_BENCH_DEVICES", 10_000) as usize;
    if per_process == 0 || n.div_ceil(per_process.max(1)) > 64 {
        eprintln!(
            "{n} devices at {per_process} sockets per process (this process may open {fd_limit} \
             files) would need more than 64 server and client processes: lower EMS_BENCH_DEVICES."
        );
        std::process::exit(2);
    }
    runtime.block_on(run(fd_limit, per_process));
}

/// The figures of one backend, for the side-by-side summary.
struct Figures {
    backend: Backend,
    one_hz_rate: f64,
    one_hz_p99_ms: f64,
    sat_rate: f64,
    copy_rate: f64,
}

async fn run(fd_limit: u64, per_process: usize) {
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
    let times = match std::env::var("EMS_BENCH_TIMES").as_deref() {
        Ok("backlog") => Times::Backlog,
        Ok("live") | Err(_) => Times::Live,
        Ok(other) => {
            eprintln!("EMS_BENCH_TIMES={other}: expected live or backlog");
            std::process::exit(2);
        }
    };
    println!(
        "ems-cloud load: {n} devices, {secs} s per phase, window {window}, fd limit {fd_limit}, \
         packet times {}",
        match times {
            Times::Live => "live (from the start of the run; saturation runs ahead of the clock)",
            Times::Backlog => "backlog (two hours old: every batch refreshes the aggregate)",
        }
    );
    let mut all = Vec::new();
    for backend in backends {
        println!("\n--- {} ---", backend.name());
        all.push(run_on(backend, n, secs, window, per_process, times).await);
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

/// How the packets are dated (`EMS_BENCH_TIMES`).
#[derive(Clone, Copy, PartialEq)]
enum Times {
    Live,
    Backlog,
}

/// Sockets per loopback source address when there are more devices than that.
const PER_SOURCE: usize = 20_000;

async fn run_on(
    backend: Backend,
    n: usize,
    secs: u64,
    window: usize,
    per_process: usize,
    times: Times,
) -> Figures {
    let active = (env_or("EMS_BENCH_ACTIVE", n as u64) as usize).min(n);
    let pg = ems_testkit::pg::PgServer::start_with(backend).expect("PostgreSQL");
    let url = pg.create_database().await.unwrap();
    // One server process holds at most `per_process` sockets (its open-file limit): past that,
    // several instances share the database, as behind a load balancer (docs/scaling.md), each
    // with its block of devices.
    let instances = n.div_ceil(per_process).max(1);
    let block = n.div_ceil(instances);
    let pool = if instances == 1 { 16 } else { 8 };
    let ports: Vec<u16> = (0..instances)
        .map(|_| {
            std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port()
        })
        .collect();
    let mut servers: Vec<_> = ports
        .iter()
        .enumerate()
        .map(|(k, port)| spawn_server(&url, *port, k, pool, times == Times::Live))
        .collect();
    for port in &ports {
        wait_healthy(*port).await;
    }
    let pids: Vec<u32> = servers.iter().map(|s| s.id()).collect();
    if instances > 1 {
        println!(
            "{instances} ems-cloud instances (ports {ports:?}), {block} devices each, database pool {pool} each"
        );
    }

    // Register the devices straight in the database (the API would do the same per device).
    let ids: Vec<String> = (0..n).map(|i| format!("dev{i:06}")).collect();
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
    let rss = |pids: &[u32]| pids.iter().map(|p| rss_kib(*p)).sum::<u64>();
    let rss_before = rss(&pids);

    let base = match times {
        Times::Live => Timestamp::now().unix(),
        Times::Backlog => Timestamp::now().unix() - 2 * 3600,
    };
    let specs: Vec<DeviceSpec> = ids
        .into_iter()
        .zip(tokens)
        .enumerate()
        .map(|(i, (id, token))| DeviceSpec {
            id,
            token,
            port: ports[i / block],
            // Past one address's ephemeral ports: 127.0.0.2, .3, … with 20,000 each.
            source: (n > PER_SOURCE)
                .then(|| std::net::Ipv4Addr::new(127, 0, 0, 2 + (i / PER_SOURCE) as u8)),
            // Spread evenly over the blocks, so every instance carries its share.
            active: (i * active) / n != ((i + 1) * active) / n,
        })
        .collect();
    let mut fleet = Fleet::start(specs, block, base, window);
    if fleet.processes() > 1 {
        println!(
            "the devices run in {} client processes of this bench",
            fleet.processes()
        );
    }
    let failed_so_far = fleet.counts().await.failed;
    let connected_after = wait_connected(&url, (n - failed_so_far) as i64).await;
    let counts = fleet.counts().await;
    let connected = counts.connected;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let rss_held = rss(&pids);
    let per_conn_kb =
        (rss_held.saturating_sub(rss_before)) as f64 * 1.024 / connected.max(1) as f64;
    println!(
        "hold: {connected} sockets connected in {:.1} s ({} failed); server RSS {} MiB -> {} MiB: {per_conn_kb:.1} kB per idle connection",
        connected_after.as_secs_f64(),
        counts.failed,
        rss_before / 1024,
        rss_held / 1024
    );

    // 1 Hz.
    fleet.set_phase(Phase::OneHz).await;
    tokio::time::sleep(Duration::from_secs(2)).await; // ramp-up: every device has started
    let a0 = fleet.counts().await.acks[0];
    let t0 = Instant::now();
    let cpu = CpuMeter::start(&pids, pg.port());
    tokio::time::sleep(Duration::from_secs(secs)).await;
    let one_hz_rate = (fleet.counts().await.acks[0] - a0) as f64 / t0.elapsed().as_secs_f64();
    let cpu_1hz = cpu.cores();
    let rss_1hz = rss(&pids);
    fleet.set_phase(Phase::Drain).await;
    let drain_start = Instant::now();
    loop {
        let c = fleet.counts().await;
        if c.acks[0] >= c.sent[0] || drain_start.elapsed() > Duration::from_secs(60) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Saturation.
    fleet.set_phase(Phase::Saturate).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let s0 = fleet.counts().await.acks[1];
    let t1 = Instant::now();
    let cpu = CpuMeter::start(&pids, pg.port());
    tokio::time::sleep(Duration::from_secs(secs)).await;
    let end = fleet.counts().await;
    let sat_rows = end.acks[1] - s0;
    let sat_rate = sat_rows as f64 / t1.elapsed().as_secs_f64();
    let cpu_sat = cpu.cores();
    let rss_sat = rss(&pids);

    let mut lat = fleet.finish().await;
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
    let acked_total = end.acks[0] + end.acks[1];

    println!(
        "1 Hz: {one_hz_rate:.0} rows/s stored and acked (offered {}/s by the active devices); send->ack p50 {:.1} ms, p99 {:.1} ms ({} samples); server RSS {} MiB",
        active.min(connected),
        percentile(&lat[0], 0.5),
        percentile(&lat[0], 0.99),
        lat[0].len(),
        rss_1hz / 1024
    );
    println!(
        "  CPU in the 1 Hz phase: ems-cloud {:.2} cores, PostgreSQL {:.2} cores (of {})",
        cpu_1hz.0,
        cpu_1hz.1,
        cores()
    );
    println!(
        "saturation: {sat_rate:.0} rows/s sustained over {secs} s; send->ack p50 {:.1} ms, p99 {:.1} ms; server RSS {} MiB",
        percentile(&lat[1], 0.5),
        percentile(&lat[1], 0.99),
        rss_sat / 1024
    );
    println!(
        "  CPU at saturation: ems-cloud {:.2} cores, PostgreSQL {:.2} cores (of {}); the rest is this bench's devices",
        cpu_sat.0,
        cpu_sat.1,
        cores()
    );
    println!(
        "rows in telemetry: {stored}, acknowledged: {acked_total} (every ack is a committed row)"
    );

    // The server is stopped first: it would otherwise still be storing the packets queued when
    // the load stopped, and take CPU from PostgreSQL while the baseline runs.
    for server in &mut servers {
        let _ = server.kill();
        let _ = server.wait();
    }

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
