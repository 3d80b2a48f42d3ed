//! `ems-cloud`: the cloud server (`serve`, the default) and its admin commands.
//!
//! Configuration: see `cloud/README.md` (`cloud.toml`, `Rocket.toml`, `EMS_CLOUD_…`, `ROCKET_…`).

use anyhow::Context;
use clap::{Parser, Subcommand};
use ems_cloud::config::{CloudConfig, figment};
use ems_cloud::db::Db;
use ems_protocol::api::Role;

#[derive(Parser)]
#[command(name = "ems-cloud", version, about = "ems cloud server")]
struct Cli {
    #[command(subcommand)]
    command: Option<Cmd>,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the server (default).
    Serve,
    /// Create an API token and print it (shown once).
    CreateToken {
        #[arg(long)]
        name: String,
        #[arg(long, value_parser = parse_role)]
        role: Role,
    },
    /// Register a device and print its token (shown once).
    AddDevice {
        id: String,
        #[arg(long)]
        name: Option<String>,
    },
}

fn parse_role(s: &str) -> Result<Role, String> {
    s.parse()
}

async fn open_db() -> anyhow::Result<Db> {
    let config: CloudConfig = figment().extract().context("reading the configuration")?;
    Db::open(&config).await.map_err(anyhow::Error::new)
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command.unwrap_or(Cmd::Serve) {
        Cmd::Serve => {
            // The database first: when it cannot be used, its error is the one to exit with.
            let db = open_db().await?;
            ems_cloud::build(figment())
                .manage(db)
                .launch()
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
        }
        Cmd::CreateToken { name, role } => {
            let db = open_db().await?;
            let token = ems_cloud::auth::create_api_token(&db, &name, role, Some("ems-cloud cli"))
                .await
                .context("creating the token")?;
            println!("{token}");
        }
        Cmd::AddDevice { id, name } => {
            let db = open_db().await?;
            let created = ems_cloud::api::devices::add_device(&db, &id, name.as_deref(), &[])
                .await
                .context("registering the device")?;
            println!("{}", created.token);
        }
    }
    Ok(())
}

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,rocket=warn".into()),
        )
        // Logs go to stderr: stdout carries the tokens `create-token`/`add-device` print.
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let result = rocket::execute(run(cli));
    if let Err(e) = result {
        eprintln!("ems-cloud: {e:#}");
        std::process::exit(1);
    }
}
