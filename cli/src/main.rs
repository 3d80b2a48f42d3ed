//! `emsctl`, the operator's command line of ems: sends commands to a site through the cloud,
//! shows its status, live telemetry and history, and administers devices and tokens.
//!
//! # Layout
//! - `main.rs`: parses the arguments, runs the subcommand, turns the outcome into an exit code.
//! - `cli`: the clap definition (every subcommand, option and help text, the exit codes).
//! - `settings`: connection settings layered flags > `EMS_…` environment > config file (figment).
//! - `config_file`: rewrites the config file for `login`/`logout` (atomically, mode 0600).
//! - `client`: the REST client (reqwest) and the mapping of HTTP failures to exit codes.
//! - `live`: opens the live feed `/ws/live/<id>` (tokio-tungstenite over TCP or rustls).
//! - `tls`: trusted roots plus `--ca-file`, for both.
//! - `cmd/`: one module per subcommand (`command` = set-mode and reset-error, `status`,
//!   `watch`, `history`, `devices`, `commands`, `events`, `energy`, `schedule`, `tariff`,
//!   `plan`, `planner`, `alerts`, `tokens`, `audit`, `login` = login and logout, `docs` =
//!   completions and man).
//! - `render`: how telemetry and records look to a person (units, directions, tables).
//! - `output`: aligned tables, CSV and JSON on stdout.
//! - `timespec`: `now`, `-1h`, dates and RFC 3339 as points in time.
//! - `exit`: the documented exit codes and [`exit::Failure`], the error that carries one.

mod cli;
mod client;
mod cmd;
mod config_file;
mod exit;
mod live;
mod output;
mod render;
mod settings;
mod timespec;
mod tls;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    // clap prints usage errors itself and exits with 2, help and version with 0.
    let cli = cli::Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(exit::Exit::Failed.code());
        }
    };
    let code = match runtime.block_on(cmd::run(cli)) {
        Ok(code) => code,
        Err(err) => exit::report(&err),
    };
    ExitCode::from(code.code())
}
