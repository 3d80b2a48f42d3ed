//! `ems-agent`: the edge agent binary.
//!
//! # Layout
//! - `main.rs`: command line (`run`, `check-config`, `generate-config`, `probe`, `status`,
//!   `scan`), logging,
//!   signals and systemd notifications; the work is in the `ems_agent` library.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use ems_agent::config::{AgentConfig, DEFAULT_CONFIG, DEFAULT_PATH};
use ems_agent::scan::{self, ScanSpec};

/// The ems edge agent: drivers, battery state machine and control, telemetry.
#[derive(Parser)]
#[command(version)]
struct Cli {
    /// Configuration file.
    #[arg(long, global = true, default_value = DEFAULT_PATH, env = "EMS_AGENT_CONFIG")]
    config: PathBuf,
    #[command(subcommand)]
    command: Option<Cmd>,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the agent (the default).
    Run,
    /// Validate the configuration and print the effective config (file + environment).
    CheckConfig,
    /// Print a commented default configuration.
    GenerateConfig,
    /// Poll every configured device once and print its readings and the telemetry packet.
    Probe,
    /// Print the telemetry queue's state: packets waiting, evicted, quarantined (refused by the
    /// cloud for good) with the latest refusals. Reads the queue file only; the agent may run.
    Status,
    /// Find the Modbus units on a bus and print `[devices.*]` sections for them. Only reads
    /// (function codes 3 and 4), never writes. Stop the agent first: it owns the port.
    Scan(scan::ScanArgs),
}

fn main() -> std::process::ExitCode {
    // One readable line, never a backtrace: the chain of causes, `a: b: c`.
    match real_main() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ems-agent: {}", one_line(&e));
            std::process::ExitCode::FAILURE
        }
    }
}

/// The error and its causes as `a: b: c`, each once: the library's errors quote their cause in
/// their own message (so that a log line of one error is complete), and a cause already in the
/// text (at its end, where they put it) is not repeated.
fn one_line(e: &anyhow::Error) -> String {
    let mut line = e.to_string();
    for cause in e.chain().skip(1) {
        let text = cause.to_string();
        if !line.ends_with(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
    }
    line
}

/// Logs to stderr (the journal under systemd), filtered by `EMS_LOG`: a level (`debug`) or
/// `target=level` pairs (`info,ems_agent::bus=debug`). A plain target filter rather than
/// `EnvFilter`, whose regular-expression engine would add a quarter megabyte of code to a
/// process that has to stay small on the Pi.
fn init_logging() -> anyhow::Result<()> {
    use tracing_subscriber::filter::Targets;
    let filter = match std::env::var("EMS_LOG") {
        Ok(spec) if !spec.trim().is_empty() => spec.parse::<Targets>().with_context(|| {
            format!(
                "EMS_LOG={spec:?} is not a log filter (e.g. `debug` or `info,ems_agent::bus=debug`)"
            )
        })?,
        _ => Targets::new().with_default(tracing::Level::INFO),
    };
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    tracing_subscriber::registry()
        .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr))
        .with(filter)
        .init();
    Ok(())
}

fn real_main() -> anyhow::Result<()> {
    limit_malloc_arenas();
    let cli = Cli::parse();
    init_logging()?;
    match cli.command.unwrap_or(Cmd::Run) {
        Cmd::GenerateConfig => {
            print!("{DEFAULT_CONFIG}");
            Ok(())
        }
        Cmd::CheckConfig => {
            let config = AgentConfig::load(&cli.config)?;
            println!("# {}: valid", cli.config.display());
            print!(
                "{}",
                toml::to_string_pretty(&config).context("printing the config")?
            );
            Ok(())
        }
        Cmd::Probe => runtime()?.block_on(probe(AgentConfig::load(&cli.config)?)),
        Cmd::Status => status(&AgentConfig::load(&cli.config)?),
        Cmd::Scan(args) => {
            let (spec, map_errors) = args.spec(&cli.config)?;
            for e in map_errors {
                eprintln!("warning: not used for recognising devices: {e}");
            }
            runtime()?.block_on(scan(spec, args.json))
        }
        Cmd::Run => runtime()?.block_on(run(AgentConfig::load(&cli.config)?)),
    }
}

/// glibc gives every thread that allocates its own malloc arena; with the runtime's workers and
/// the threads that run driver calls (one per device), those arenas are most of the agent's resident
/// memory. Two arenas are plenty for a process that does a few small things a second.
fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only adjusts allocator parameters; called before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    // Two workers are plenty: the work is a few small tasks and blocking driver calls.
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        // Driver calls run on a thread per device (see ems_agent::devices), not on these.
        .max_blocking_threads(16)
        .enable_all()
        .build()
        .context("starting the async runtime")
}

fn status(config: &AgentConfig) -> anyhow::Result<()> {
    let path = ems_agent::uplink::queue_path(&config.data_dir);
    if !path.exists() {
        println!(
            "queue {}: none yet (the agent has not run with this data_dir)",
            path.display()
        );
        return Ok(());
    }
    let r = ems_agent::uplink::queue::report(&path, 10)?;
    let when = |ts: i64| {
        ems_protocol::Timestamp::from_unix(ts).map_or_else(|| ts.to_string(), |t| t.to_string())
    };
    println!("queue {}", path.display());
    match r.queued_span {
        Some((first, last)) => println!(
            "queued: {} packets, {} to {}",
            r.queued,
            when(first),
            when(last)
        ),
        None => println!("queued: 0 packets"),
    }
    println!("evicted (over budget): {}", r.evicted_total);
    println!(
        "quarantined (refused by the cloud for good, never resent): {} ({} kept)",
        r.quarantined_total, r.quarantined_kept
    );
    for (ts, code, reason) in &r.latest_quarantined {
        println!("  {} {code}: {reason}", when(*ts));
    }
    Ok(())
}

/// What a `modbus-map` device's register map says of itself (`[device]`: name, source and how
/// far it is checked), for `probe`; `None` for other drivers or a map that cannot be read (the
/// driver reports that itself).
fn map_info(device: &ems_agent::config::DeviceConfig) -> Option<serde_json::Value> {
    if device.driver != "modbus-map" {
        return None;
    }
    let table = match device.options.get("map").and_then(|m| m.as_str()) {
        Some(path) => toml::from_str::<toml::Table>(&std::fs::read_to_string(path).ok()?).ok()?,
        None => device.options.clone(),
    };
    let d = table.get("device")?.as_table()?;
    let text = |k: &str| d.get(k).and_then(|v| v.as_str()).map(str::to_string);
    Some(serde_json::json!({
        "name": text("name"),
        "source": text("source"),
        "checked": text("checked").unwrap_or_else(|| "not stated".into()),
    }))
}

async fn probe(config: AgentConfig) -> anyhow::Result<()> {
    let maps: std::collections::BTreeMap<String, serde_json::Value> = config
        .devices
        .iter()
        .filter_map(|(name, d)| map_info(d).map(|m| (name.clone(), m)))
        .collect();
    let agent = ems_agent::app::start(config)?;
    for d in &agent.devices {
        d.poll_now().await;
    }
    let mut out = serde_json::Map::new();
    let mut failed = false;
    for d in &agent.devices {
        let slot = d.snapshot();
        let value = match (&slot.readings, &slot.last_error) {
            (Some(r), _) if slot.last_ok.is_some() => serde_json::to_value(r)?,
            (_, err) => {
                failed = true;
                serde_json::json!({ "error": err.clone().unwrap_or_else(|| "no answer".into()) })
            }
        };
        let value = match (value, maps.get(&d.name)) {
            (serde_json::Value::Object(mut o), Some(map)) => {
                o.insert("map".into(), map.clone());
                serde_json::Value::Object(o)
            }
            (v, _) => v,
        };
        out.insert(d.name.clone(), value);
    }
    let mut status = agent.status.clone();
    let telemetry = tokio::time::timeout(Duration::from_secs(3), status.wait_for(|s| s.is_some()))
        .await
        .ok()
        .and_then(|r| r.ok().and_then(|s| s.clone()))
        .map(|s| serde_json::to_value(&s.telemetry))
        .transpose()?;
    let report = serde_json::json!({ "devices": out, "telemetry": telemetry });
    println!("{}", serde_json::to_string_pretty(&report)?);
    agent.stop().await;
    if failed {
        bail!("at least one device did not answer (see its \"error\")");
    }
    Ok(())
}

/// Runs the scan: the estimate and progress on stderr, the result on stdout.
async fn scan(spec: ScanSpec, json: bool) -> anyhow::Result<()> {
    scan::check_line(&spec).await?;
    eprintln!("{}", spec.estimate());
    let report = scan::run(&spec, &mut |line| eprintln!("{line}")).await?;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&scan::report::json(&report))?
        );
    } else {
        print!("{}", scan::report::toml(&report));
    }
    Ok(())
}

async fn run(config: AgentConfig) -> anyhow::Result<()> {
    tracing::info!(device_id = %config.device_id, devices = config.devices.len(), "starting");
    let agent = ems_agent::app::start(config)?;
    systemd::notify("READY=1");
    let watchdog = systemd::watchdog_interval();
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut tick = tokio::time::interval(watchdog.unwrap_or(Duration::from_secs(3600)));
    let mut status = agent.status.clone();
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            _ = term.recv() => break,
            _ = tick.tick() => {
                // Only tell systemd we are alive while the loop is producing cycles.
                if watchdog.is_some() && status.has_changed().unwrap_or(false) {
                    status.mark_unchanged();
                    systemd::notify("WATCHDOG=1");
                }
            }
        }
    }
    systemd::notify("STOPPING=1");
    agent.stop().await;
    Ok(())
}

/// sd_notify(3) without libsystemd: a datagram to `$NOTIFY_SOCKET`.
mod systemd {
    use std::os::unix::net::UnixDatagram;
    use std::time::Duration;

    pub fn notify(state: &str) {
        let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
            return;
        };
        let Ok(sock) = UnixDatagram::unbound() else {
            return;
        };
        let bytes = path.as_encoded_bytes();
        let result = if let Some(abstract_name) = bytes.strip_prefix(b"@") {
            use std::os::linux::net::SocketAddrExt;
            std::os::unix::net::SocketAddr::from_abstract_name(abstract_name)
                .and_then(|addr| sock.send_to_addr(state.as_bytes(), &addr))
        } else {
            sock.send_to(state.as_bytes(), &path)
        };
        if let Err(e) = result {
            tracing::warn!("systemd notification {state:?} failed: {e}");
        }
    }

    /// Half the watchdog period systemd asked for, if any. As sd_watchdog_enabled(3): only when
    /// `WATCHDOG_PID` is unset or names this process (a child started with the service's
    /// environment must not feed the service's watchdog).
    pub fn watchdog_interval() -> Option<Duration> {
        if let Ok(pid) = std::env::var("WATCHDOG_PID")
            && pid.trim().parse::<u32>().ok() != Some(std::process::id())
        {
            return None;
        }
        let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
        (usec > 0).then(|| Duration::from_micros(usec / 2))
    }
}

#[cfg(test)]
mod tests {
    use super::one_line;

    #[derive(Debug, thiserror::Error)]
    #[error("telemetry queue q.sqlite: {source}")]
    struct Quoting {
        source: std::io::Error,
    }

    #[test]
    fn an_error_chain_is_one_line_with_each_cause_once() {
        let io = || std::io::Error::other("disk full");
        let quoted = anyhow::Error::from(Quoting { source: io() }).context("starting");
        assert_eq!(
            one_line(&quoted),
            "starting: telemetry queue q.sqlite: disk full"
        );
        let plain = anyhow::Error::from(io()).context("reading x.toml");
        assert_eq!(one_line(&plain), "reading x.toml: disk full");
    }
}
