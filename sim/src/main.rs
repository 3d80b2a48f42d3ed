//! `ems-sim`: runs the simulated site until Ctrl-C and prints the device paths it created.
//!
//! # Layout
//! - `main.rs`: command line; everything else is the `ems_sim` library.

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
    /// Baud rate the line timing is simulated at.
    #[arg(long, default_value_t = 19200)]
    baud: u32,
    /// Initial battery state of charge, %.
    #[arg(long, default_value_t = 50.0)]
    soc: f64,
    /// Simulated seconds per real second.
    #[arg(long, default_value_t = 1.0)]
    speed: f64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let args = Args::parse();
    let mut opts = SimOptions::new(&args.dir);
    opts.baud = args.baud;
    opts.initial_soc_pct = args.soc;
    opts.speed = args.speed;
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
    println!("I2C bus: {} (INA226 at 0x40)", sim.i2c_path.display());
    println!(
        "control: {} (e.g. `echo 'temperature 60' | nc -U …`)",
        sim.control_path.display()
    );
    tokio::signal::ctrl_c().await?;
    Ok(())
}
