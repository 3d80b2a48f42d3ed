//! The server under test, its process, and waiting for it.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub(crate) fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Open files wanted for 100,000 sockets on each side plus the rest; the server inherits it.
const WANTED_FDS: u64 = 250_000;

pub(crate) fn raise_fd_limit() -> u64 {
    // SAFETY: plain getrlimit/setrlimit on our own process with a valid struct.
    unsafe {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
        if lim.rlim_max < WANTED_FDS {
            // Root may raise the hard limit (up to fs.nr_open); others keep theirs.
            let raised = libc::rlimit {
                rlim_cur: WANTED_FDS,
                rlim_max: WANTED_FDS,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                return WANTED_FDS;
            }
        }
        lim.rlim_cur = lim.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        lim.rlim_cur
    }
}

pub(crate) fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// `EMS_BENCH_WRAP="heaptrack"` (or `"perf record -g"`) runs the server under a profiler.
/// With `ahead`, packets up to an hour in the future are accepted (live packet times, which run
/// ahead of the clock at saturation).
pub(crate) fn spawn_server(
    url: &str,
    port: u16,
    instance: usize,
    pool: usize,
    ahead: bool,
) -> Child {
    let bin = env!("CARGO_BIN_EXE_ems-cloud");
    let wrap = std::env::var("EMS_BENCH_WRAP").unwrap_or_default();
    let mut argv: Vec<&str> = wrap.split_whitespace().collect();
    argv.push(bin);
    Command::new(argv[0])
        .args(&argv[1..])
        .arg("serve")
        .env("EMS_CLOUD_DATABASE_URL", url)
        .env("EMS_CLOUD_DATABASE_POOL_SIZE", pool.to_string())
        .env("EMS_CLOUD_INSTANCE_ID", format!("bench{instance}"))
        // Ingest at saturation is measured, not the per-device budget (10 packets/s by default).
        .env("EMS_CLOUD_DEVICE_PACKET_RATE", "1000000")
        .env("EMS_CLOUD_DEVICE_PACKET_BURST", "1000000")
        .env(
            "EMS_CLOUD_MAX_FUTURE_SKEW_S",
            if ahead { "3600" } else { "300" },
        )
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

pub(crate) async fn wait_healthy(port: u16) {
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

pub(crate) async fn wait_connected(url: &str, n: i64) -> Duration {
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

/// CPU time (user + system) of process `pid` so far, in clock ticks (100 per second on Linux).
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The command name (field 2) is in parentheses and may hold spaces: count after it.
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return 0;
    };
    let f: Vec<&str> = rest.split_whitespace().collect();
    // rest[0] is field 3 (state): utime and stime are fields 14 and 15.
    let field = |n: usize| {
        f.get(n - 3)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    field(14) + field(15)
}

/// Summed CPU ticks of `pids`.
pub(crate) fn cpu_of(pids: &[u32]) -> u64 {
    pids.iter().map(|p| cpu_ticks(*p)).sum()
}

/// The PostgreSQL server listening on `port` (its postmaster, found by its `-p` argument) and
/// every process it started (backends, WAL writer, TimescaleDB's workers), as they are now.
pub(crate) fn postgres_pids(port: u16) -> Vec<u32> {
    let procs: Vec<(u32, String, u32)> = std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let pid: u32 = e.file_name().to_str()?.parse().ok()?;
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            let ppid = stat
                .rsplit_once(')')?
                .1
                .split_whitespace()
                .nth(1)?
                .parse()
                .ok()?;
            let args = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            Some((pid, args, ppid))
        })
        .collect();
    let wanted = format!(" -p {port} ");
    let Some(master) = procs
        .iter()
        .find(|(_, args, _)| args.contains("postgres") && args.contains(&wanted))
        .map(|(pid, _, _)| *pid)
    else {
        return Vec::new();
    };
    std::iter::once(master)
        .chain(
            procs
                .iter()
                .filter(|(_, _, ppid)| *ppid == master)
                .map(|(pid, _, _)| *pid),
        )
        .collect()
}

/// CPU used by the servers and by PostgreSQL over a stretch, in cores (1.0 = one core busy).
pub(crate) struct CpuMeter {
    servers: Vec<u32>,
    pg_port: u16,
    start: std::time::Instant,
    server_ticks: u64,
    pg_ticks: u64,
}

impl CpuMeter {
    pub(crate) fn start(servers: &[u32], pg_port: u16) -> Self {
        CpuMeter {
            servers: servers.to_vec(),
            pg_port,
            start: std::time::Instant::now(),
            server_ticks: cpu_of(servers),
            pg_ticks: cpu_of(&postgres_pids(pg_port)),
        }
    }

    /// (ems-cloud cores, PostgreSQL cores) since `start`. PostgreSQL's backends live as long as
    /// the pool's connections, so the processes found at the start are found at the end.
    pub(crate) fn cores(&self) -> (f64, f64) {
        let secs = self.start.elapsed().as_secs_f64() * 100.0;
        let server = cpu_of(&self.servers).saturating_sub(self.server_ticks) as f64 / secs;
        let pg = cpu_of(&postgres_pids(self.pg_port)).saturating_sub(self.pg_ticks) as f64 / secs;
        (server, pg)
    }
}
