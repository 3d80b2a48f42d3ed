//! One module per subcommand; each takes a [`Ctx`] and returns the exit code it ends with.

mod alerts;
mod audit;
mod command;
mod commands;
mod devices;
mod docs;
mod energy;
mod events;
mod history;
mod login;
mod plan;
mod planner;
mod schedule;
mod status;
mod tariff;
mod tokens;
mod watch;

use ems_protocol::api::DeviceInfo;

use crate::cli::{Cli, Command, Format};
use crate::client::Api;
use crate::exit::{Exit, Failure};
use crate::settings::Settings;

/// What every networked subcommand needs.
pub struct Ctx {
    pub api: Api,
    pub settings: Settings,
    pub format: Format,
}

impl Ctx {
    /// `--device` / `EMS_DEVICE` / config `device`, or the only device the token sees.
    pub async fn device(&self) -> Result<String, Failure> {
        if let Some(id) = &self.settings.device {
            return checked_id("device", id);
        }
        let devices: Vec<DeviceInfo> = self.api.get("/devices", &[]).await?;
        match devices.as_slice() {
            [only] => Ok(only.id.clone()),
            [] => Err(Failure::usage("this token sees no devices")
                .hint("register one with `emsctl devices add <id>` (admin token)")),
            many => {
                let ids: Vec<&str> = many.iter().map(|d| d.id.as_str()).collect();
                Err(
                    Failure::usage(format!("{} devices are visible; choose one", ids.len())).hint(
                        format!(
                            "pass --device, set EMS_DEVICE or `device` in the config file; one of: {}",
                            ids.join(", ")
                        ),
                    ),
                )
            }
        }
    }
}

/// Ids go into URL paths; refuse what the protocol would refuse anyway.
pub fn checked_id(what: &str, id: &str) -> Result<String, Failure> {
    ems_protocol::validate_id(what, id)
        .map(|_| id.to_string())
        .map_err(|e| Failure::usage(e.to_string()))
}

pub async fn run(cli: Cli) -> anyhow::Result<Exit> {
    match &cli.command {
        Command::Completions { shell } => return docs::completions(*shell),
        Command::Man { dir } => return docs::man(dir.as_deref()),
        Command::Login(args) => return login::login(&cli.global, args).await,
        Command::Logout => return login::logout(&cli.global),
        _ => {}
    }
    let settings = Settings::resolve(&cli.global)?;
    let ctx = Ctx {
        api: Api::new(&settings)?,
        settings,
        format: cli.global.output,
    };
    match cli.command {
        Command::SetMode(args) => command::set_mode(&ctx, args).await,
        Command::ResetError(wait) => command::reset_error(&ctx, wait).await,
        Command::Status => status::run(&ctx).await,
        Command::Watch => watch::run(&ctx).await,
        Command::History(args) => history::run(&ctx, args).await,
        Command::Devices(sub) => devices::run(&ctx, sub).await,
        Command::Commands(sub) => commands::run(&ctx, sub).await,
        Command::Events(args) => events::run(&ctx, args).await,
        Command::Energy(args) => energy::run(&ctx, args).await,
        Command::Schedule(sub) => schedule::run(&ctx, sub).await,
        Command::Tariff(sub) => tariff::run(&ctx, sub).await,
        Command::Plan(args) => plan::run(&ctx, args).await,
        Command::Planner(sub) => planner::run(&ctx, sub).await,
        Command::Tokens(sub) => tokens::run(&ctx, sub).await,
        Command::Audit(args) => audit::run(&ctx, args).await,
        Command::Alerts(args) => alerts::run(&ctx, args).await,
        Command::Completions { .. } | Command::Man { .. } | Command::Login(_) | Command::Logout => {
            unreachable!("handled above")
        }
    }
}
