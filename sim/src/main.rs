//! `ems-sim`: runs the simulated site until Ctrl-C and prints the device paths it created.
//!
//! # Layout
//! - `main.rs`: command line; everything else is the `ems_sim` library.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use ems_sim::site::{SimOptions, SimSite};

/// A simulated site speaking real Modbus RTU on a pseudo-terminal.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// Directory for the device paths (rs485, i2c.sock, control.sock).
    #[arg(long, default_value = "/tmp/ems-sim")]
    dir: PathBuf,
    /// Baud rate of the RS-485 line: its timing, and a client whose port is set to another rate
    /// gets no answer (as on a real line). (Parity cannot be simulated: a pseudo-terminal is
    /// always 8N1.)
    #[arg(long, default_value_t = 19200)]
    baud: u32,
    /// Initial battery state of charge, %.
    #[arg(long, default_value_t = 50.0)]
    soc: f64,
    /// Simulated seconds per real second.
    #[arg(long, default_value_t = 1.0)]
    speed: f64,
    /// Also serve the RS-485 units over Modbus TCP on this address, like an RS-485-to-Ethernet
    /// gateway (e.g. 127.0.0.1:1502; port 0 picks a free port).
    #[arg(long, value_name = "ADDR:PORT")]
    modbus_tcp: Option<SocketAddr>,
    /// Send one control command to the running sim in --dir and print its answer, e.g.
    /// `--send 'temperature 60'` (commands: see sim/README.md).
    #[arg(long, value_name = "COMMAND")]
    send: Option<String>,
}

fn main() -> std::process::ExitCode {
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("ems-sim: starting the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(real_main()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ems-sim: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn real_main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let args = Args::parse();
    if let Some(command) = &args.send {
        return send(&args.dir, command).await;
    }
    let mut opts = SimOptions::new(&args.dir);
    opts.baud = args.baud;
    opts.initial_soc_pct = args.soc;
    opts.speed = args.speed;
    opts.modbus_tcp = args.modbus_tcp;
    let sim = SimSite::start(opts)
        .await
        .with_context(|| format!("starting the simulated site in {}", args.dir.display()))?;
    println!(
        "RS-485 bus (Modbus RTU): {} -> {}",
        sim.rs485_path.display(),
        sim.pty_path.display()
    );
    println!("  unit 1: SunSpec hybrid inverter + battery (models 1, 103, 124, 802)");
    println!("  unit 2: Eastron SDM630 grid meter");
    if let Some(addr) = sim.modbus_tcp_addr {
        println!("Modbus TCP: {addr} (the same units; unknown or silent units: exception 0x0B)");
    }
    println!("I2C bus: {} (INA226 at 0x40)", sim.i2c_path.display());
    println!(
        "control: {} (e.g. `echo 'temperature 60' | nc -U …`)",
        sim.control_path.display()
    );
    tokio::signal::ctrl_c().await?;
    Ok(())
}

async fn send(dir: &std::path::Path, command: &str) -> anyhow::Result<()> {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let path = dir.join("control.sock");
    let mut conn = tokio::net::UnixStream::connect(&path)
        .await
        .with_context(|| format!("connecting to {} (is ems-sim running?)", path.display()))?;
    conn.write_all(format!("{command}\n").as_bytes()).await?;
    let mut answer = String::new();
    BufReader::new(conn).read_line(&mut answer).await?;
    let answer = answer.trim();
    if let Some(err) = answer.strip_prefix("error: ") {
        anyhow::bail!("{err}");
    }
    println!("{answer}");
    Ok(())
}
