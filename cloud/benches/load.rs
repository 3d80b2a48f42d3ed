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
//! `EMS_BENCH_WRAP` (a profiler command to run the server under).
//! The client and the server share the machine, so on a small machine the client's own work
//! (JSON, TLS-free WebSocket framing for 10k sockets) competes with the server for the CPU.

use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ems_cloud::auth::{DEVICE_TOKEN_PREFIX, generate_token, hash_token};
use ems_protocol::telemetry::Timestamp;
use ems_protocol::{
    Battery, Downstream, Grid, Mode, State, SystemStatus, Telemetry, parse_downstream,
};
use ems_testkit::pg::Backend;
use futures_util::{SinkExt, StreamExt};
use tokio::sync::{Semaphore, watch};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn raise_fd_limit() -> u64 {
    // SAFETY: plain getrlimit/setrlimit on our own process with a valid struct.
    unsafe {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
        lim.rlim_cur = lim.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        lim.rlim_cur
    }
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn packet(device_id: &str, ts: Timestamp, i: u64) -> Telemetry {
    Telemetry {
        device_id: device_id.into(),
        timestamp: ts,
        system_status: SystemStatus {
            state: State::Charging,
            mode: Mode::Auto,
            error_flags: vec![],
            wifi_strength: Some(-45),
        },
        battery: Battery {
            voltage: Some(53.2),
            current: Some(10.5),
            power: Some(558.6),
            soc: Some((i % 100) as f64),
        },
        grid: Grid {
            voltage: Some(230.1),
            power: Some(-200.0),
            frequency: Some(50.0),
        },
    }
}

/// A device's telemetry frame serialised once ([`packet`] through `to_json`), with the parts
/// that change per packet (timestamp, SoC) filled in by string concatenation: the generator
/// shares the CPU with the server, so it should not spend it on JSON.
struct FrameTemplate {
    /// Text before the timestamp, between the timestamp and the SoC value, and after it.
    parts: [String; 3],
}

impl FrameTemplate {
    fn new(device_id: &str, base: i64) -> Self {
        const SOC_MARK: f64 = 42.125;
        let ts = Timestamp::from_unix(base).unwrap();
        let mut p = packet(device_id, ts, 0);
        p.battery.soc = Some(SOC_MARK);
        let json = p.to_json();
        let ts_text = format!("\"{ts}\"");
        let (pre, rest) = json.split_once(&ts_text).expect("timestamp in the frame");
        let (mid, post) = rest
            .split_once(&SOC_MARK.to_string())
            .expect("SoC in the frame");
        let template = FrameTemplate {
            parts: [pre.to_string(), mid.to_string(), post.to_string()],
        };
        let check = Timestamp::from_unix(base + 7).unwrap();
        assert_eq!(
            template.frame(base + 7, 7),
            packet(device_id, check, 7).to_json()
        );
        template
    }

    /// The same text as `packet(device_id, ts, i).to_json()`.
    fn frame(&self, unix: i64, i: u64) -> String {
        let ts = Timestamp::from_unix(unix).unwrap();
        let [pre, mid, post] = &self.parts;
        format!("{pre}\"{ts}\"{mid}{}{post}", i % 100)
    }
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx] as f64 / 1000.0
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Phase {
    Connect,
    OneHz,
    /// No sending: the 1 Hz packets still in flight are acked before saturation starts, so
    /// their latency is not inflated by the saturation traffic.
    Drain,
    Saturate,
    Done,
}

/// Per device: send instants of unacknowledged packets, and latency samples (µs) per phase.
#[derive(Default)]
struct Track {
    pending: HashMap<i64, (Instant, usize)>,
    lat: [Vec<u32>; 2],
}

struct Shared {
    acks: [AtomicU64; 2],
    sent: [AtomicU64; 2],
    connected: AtomicUsize,
    failed: AtomicUsize,
    connect_gate: Semaphore,
}

async fn device_task(
    url: String,
    id: String,
    token: String,
    base: i64,
    window: usize,
    shared: Arc<Shared>,
    mut phase: watch::Receiver<Phase>,
) -> [Vec<u32>; 2] {
    let mut req = url.into_client_request().unwrap();
    req.headers_mut().insert(
        "Authorization",
        HeaderValue::from_str(&format!("Bearer {token}")).unwrap(),
    );
    let ws = {
        let _permit = shared.connect_gate.acquire().await.unwrap();
        let mut attempt = 0;
        loop {
            match tokio_tungstenite::connect_async(req.clone()).await {
                Ok((ws, _)) => break ws,
                Err(e) if attempt < 5 => {
                    attempt += 1;
                    tracing_warn(&format!("{id}: connect failed ({e}), retrying"));
                    tokio::time::sleep(Duration::from_millis(200 * attempt)).await;
                }
                Err(e) => {
                    eprintln!("{id}: connect failed: {e}");
                    shared.failed.fetch_add(1, Ordering::Relaxed);
                    return Default::default();
                }
            }
        }
    };
    shared.connected.fetch_add(1, Ordering::Relaxed);
    let (mut sink, mut stream) = ws.split();
    let track = Arc::new(Mutex::new(Track::default()));
    let credits = Arc::new(Semaphore::new(0));

    let reader = {
        let track = track.clone();
        let shared = shared.clone();
        let credits = credits.clone();
        tokio::spawn(async move {
            while let Some(msg) = stream.next().await {
                let Ok(Message::Text(text)) = msg else {
                    if matches!(msg, Ok(Message::Close(_)) | Err(_)) {
                        break;
                    }
                    continue;
                };
                if let Ok(Downstream::TelemetryAck(ack)) = parse_downstream(&text) {
                    let now = Instant::now();
                    let mut t = track.lock().unwrap();
                    for ts in ack.timestamps {
                        if let Some((sent, ph)) = t.pending.remove(&ts.unix()) {
                            let us = now.duration_since(sent).as_micros().min(u32::MAX as u128);
                            t.lat[ph].push(us as u32);
                            shared.acks[ph].fetch_add(1, Ordering::Relaxed);
                            // Only saturation packets free window space: credits for the
                            // 1 Hz packets would widen the window beyond EMS_BENCH_WINDOW.
                            if ph == 1 {
                                credits.add_permits(1);
                            }
                        }
                    }
                }
            }
        })
    };

    let mut seq: i64 = 0;
    let frames = FrameTemplate::new(&id, base);
    let send = |sink_seq: i64, ph: usize| {
        shared.sent[ph].fetch_add(1, Ordering::Relaxed);
        let ts = base + sink_seq;
        track
            .lock()
            .unwrap()
            .pending
            .insert(ts, (Instant::now(), ph));
        Message::Text(frames.frame(ts, sink_seq as u64))
    };

    // Wait for the 1 Hz phase.
    let _ = phase.wait_for(|p| *p != Phase::Connect).await;
    if *phase.borrow() == Phase::OneHz {
        // Spread the devices over the second.
        let offset = Duration::from_micros(rand_offset(&id) % 1_000_000);
        tokio::time::sleep(offset).await;
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    let msg = send(seq, 0);
                    seq += 1;
                    if sink.send(msg).await.is_err() { break; }
                }
                _ = phase.changed() => break,
            }
        }
    }
    let _ = phase
        .wait_for(|p| !matches!(p, Phase::OneHz | Phase::Drain))
        .await;
    if *phase.borrow() == Phase::Saturate {
        credits.add_permits(window);
        loop {
            tokio::select! {
                permit = credits.acquire() => {
                    permit.unwrap().forget();
                    // Every packet the window allows now goes out in one write, as an agent
                    // sending its backlog does.
                    let more = credits.available_permits();
                    if more > 0 {
                        credits.try_acquire_many(more as u32).unwrap().forget();
                    }
                    let mut failed = false;
                    for _ in 0..=more {
                        let msg = send(seq, 1);
                        seq += 1;
                        if sink.feed(msg).await.is_err() { failed = true; break; }
                    }
                    if failed || sink.flush().await.is_err() { break; }
                }
                _ = phase.changed() => break,
            }
        }
    }
    let _ = phase.wait_for(|p| *p == Phase::Done).await;
    let _ = sink.close().await;
    reader.abort();
    let t = std::mem::take(&mut *track.lock().unwrap());
    t.lat
}

fn rand_offset(id: &str) -> u64 {
    // FNV-1a: a stable spread without a random number generator.
    id.bytes().fold(0xcbf29ce484222325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100000001b3)
    })
}

fn tracing_warn(msg: &str) {
    if std::env::var_os("EMS_BENCH_VERBOSE").is_some() {
        eprintln!("{msg}");
    }
}

async fn raw_insert_rate(url: &str, rows: usize) -> f64 {
    let client = ems_cloud::db::connect(url).await.unwrap();
    client
        .batch_execute("CREATE TABLE raw_telemetry (LIKE telemetry INCLUDING ALL)")
        .await
        .unwrap();
    // The very statement ingest runs (ems_cloud::db::columns), on a table without the writer.
    let sql = ems_cloud::db::columns::insert_into("raw_telemetry");
    let stmt = client.prepare(&sql).await.unwrap();
    let base = Timestamp::now().unix() - 3 * 3600;
    let devices = 1000;
    // Only the statements are timed, not building their arrays: the baseline is PostgreSQL's
    // own rate.
    let mut spent = Duration::ZERO;
    let mut done = 0;
    while done < rows {
        let n = 1000.min(rows - done);
        let packets: Vec<Telemetry> = (done..done + n)
            .map(|i| {
                let ts = Timestamp::from_unix(base + (i / devices) as i64).unwrap();
                packet(&format!("dev{:05}", i % devices), ts, i as u64)
            })
            .collect();
        let time: Vec<_> = packets.iter().map(|p| p.timestamp.as_datetime()).collect();
        let dev: Vec<&str> = packets.iter().map(|p| p.device_id.as_str()).collect();
        let st: Vec<&str> = packets
            .iter()
            .map(|p| p.system_status.state.as_str())
            .collect();
        let md: Vec<&str> = packets
            .iter()
            .map(|p| p.system_status.mode.as_str())
            .collect();
        let fl: Vec<String> = packets.iter().map(|_| String::new()).collect();
        let wf: Vec<Option<i32>> = packets
            .iter()
            .map(|p| p.system_status.wifi_strength)
            .collect();
        let col = |f: fn(&Telemetry) -> Option<f64>| -> Vec<Option<f64>> {
            packets.iter().map(f).collect()
        };
        let bv = col(|p| p.battery.voltage);
        let bc = col(|p| p.battery.current);
        let bp = col(|p| p.battery.power);
        let bs = col(|p| p.battery.soc);
        let gv = col(|p| p.grid.voltage);
        let gp = col(|p| p.grid.power);
        let gf = col(|p| p.grid.frequency);
        let ext: Vec<Option<serde_json::Value>> = packets.iter().map(|_| None).collect();
        let started = Instant::now();
        client
            .execute(
                &stmt,
                &[
                    &time, &dev, &st, &md, &fl, &wf, &bv, &bc, &bp, &bs, &gv, &gp, &gf, &ext,
                ],
            )
            .await
            .unwrap();
        spent += started.elapsed();
        done += n;
    }
    rows as f64 / spent.as_secs_f64()
}

/// The stronger baseline: binary `COPY` of the same rows into an empty copy of the table,
/// 100,000 rows per COPY, only the COPY timed: PostgreSQL's fastest way in, the path ingest takes
/// for quiet batches of new packets.
async fn raw_copy_rate(url: &str, rows: usize) -> f64 {
    let client = ems_cloud::db::connect(url).await.unwrap();
    client
        .batch_execute("CREATE TABLE raw_copy (LIKE telemetry INCLUDING ALL)")
        .await
        .unwrap();
    let copy = client
        .prepare(&ems_cloud::ingest::copy_statement("raw_copy"))
        .await
        .unwrap();
    let base = Timestamp::now().unix() - 6 * 3600;
    let devices = 1000;
    let mut spent = Duration::ZERO;
    let mut done = 0;
    while done < rows {
        let n = 100_000.min(rows - done);
        let packets: Vec<Telemetry> = (done..done + n)
            .map(|i| {
                let ts = Timestamp::from_unix(base + (i / devices) as i64).unwrap();
                packet(&format!("dev{:05}", i % devices), ts, i as u64)
            })
            .collect();
        let started = Instant::now();
        ems_cloud::ingest::copy_rows(&client, &copy, packets.iter().map(|p| (p, None)))
            .await
            .unwrap();
        spent += started.elapsed();
        done += n;
    }
    rows as f64 / spent.as_secs_f64()
}

/// `EMS_BENCH_WRAP="heaptrack"` (or `"perf record -g"`) runs the server under a profiler.
fn spawn_server(url: &str, port: u16) -> Child {
    let bin = env!("CARGO_BIN_EXE_ems-cloud");
    let wrap = std::env::var("EMS_BENCH_WRAP").unwrap_or_default();
    let mut argv: Vec<&str> = wrap.split_whitespace().collect();
    argv.push(bin);
    Command::new(argv[0])
        .args(&argv[1..])
        .arg("serve")
        .env("EMS_CLOUD_DATABASE_URL", url)
        .env("EMS_CLOUD_DATABASE_POOL_SIZE", "16")
        // Ingest at saturation is measured, not the per-device budget (10 packets/s by default).
        .env("EMS_CLOUD_DEVICE_PACKET_RATE", "1000000")
        .env("EMS_CLOUD_DEVICE_PACKET_BURST", "1000000")
        .env("ROCKET_ADDRESS", "127.0.0.1")
        .env("ROCKET_PORT", port.to_string())
        .env("ROCKET_LOG_LEVEL", "off")
        .env("ROCKET_CLI_COLORS", "false")
        .env("RUST_LOG", "warn")
        .env("EMS_CLOUD_CONFIG", "/nonexistent/cloud.toml")
        .env("ROCKET_CONFIG", "/nonexistent/Rocket.toml")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("starting ems-cloud")
}

async fn wait_healthy(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(r) = reqwest::get(format!("http://127.0.0.1:{port}/api/v1/health")).await
            && r.status().is_success()
        {
            return;
        }
        assert!(Instant::now() < deadline, "server not healthy after 60 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn wait_connected(url: &str, n: i64) -> Duration {
    let client = ems_cloud::db::connect(url).await.unwrap();
    let start = Instant::now();
    loop {
        let c: i64 = client
            .query_one(
                "SELECT count(*) FROM devices WHERE connected_instance IS NOT NULL",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        if c >= n {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < Duration::from_secs(300),
            "only {c} of {n} devices connected"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn main() {
    let fd_limit = raise_fd_limit();
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

async fn run_on(backend: Backend, n: usize, secs: u64, window: usize) -> Figures {
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
    let connect_start = Instant::now();
    let tasks: Vec<_> = ids
        .iter()
        .zip(&tokens)
        .map(|(id, token)| {
            tokio::spawn(device_task(
                format!("{ws_url}{id}"),
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
        "1 Hz: {one_hz_rate:.0} rows/s stored and acked (offered {connected}/s); send->ack p50 {:.1} ms, p99 {:.1} ms ({} samples); server RSS {} MiB",
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
