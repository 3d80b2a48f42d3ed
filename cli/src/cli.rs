//! The command line as clap parses it: global connection options and one enum variant per
//! subcommand. Only shapes and help texts live here; `cmd/` does the work.

use std::path::PathBuf;

use clap::builder::{PossibleValuesParser, TypedValueParser as _};
use clap::{Args, Parser, Subcommand, ValueEnum};
use clap_complete::Shell;
use ems_protocol::TargetMode;
use ems_protocol::api::{AlertKind, Role};

mod planning;

pub use planning::*;

const EXIT_CODES: &str = "\
Exit codes:
  0  success (for set-mode and reset-error: the device accepted)
  1  the device rejected the command, the command expired, or another failure
  2  usage error: bad arguments or configuration, or a request the server refused as invalid
  3  connection or authentication failure (unreachable, TLS, 401/403, server error)
  4  timed out waiting for the device's answer

Connection settings come from flags, then EMS_URL / EMS_TOKEN / EMS_DEVICE / EMS_CA_FILE,
then the config file (~/.config/emsctl/config.toml, or --config / EMSCTL_CONFIG), which
`emsctl login` writes.";

/// Operator command line of ems: send commands to a battery site, read its status and history.
#[derive(Debug, Parser)]
#[command(name = "emsctl", version, about, after_help = EXIT_CODES)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

/// Options every subcommand takes.
#[derive(Debug, Args)]
#[command(next_help_heading = "Global options")]
pub struct Global {
    /// Base URL of the ems cloud, e.g. https://ems.example.com [env: EMS_URL] [config: url]
    #[arg(long, global = true, value_name = "URL")]
    pub url: Option<String>,
    /// API token (emsa_…) [env: EMS_TOKEN] [config: token]
    #[arg(long, global = true, value_name = "TOKEN")]
    pub token: Option<String>,
    /// Device id; may be left out when the token sees exactly one device [env: EMS_DEVICE]
    /// [config: device]
    #[arg(long, short = 'd', global = true, value_name = "ID")]
    pub device: Option<String>,
    /// PEM file with extra trusted CA certificates, for self-signed servers [env: EMS_CA_FILE]
    /// [config: ca_file]
    #[arg(long, global = true, value_name = "FILE")]
    pub ca_file: Option<PathBuf>,
    /// Config file [default: ~/.config/emsctl/config.toml]
    #[arg(long, global = true, env = "EMSCTL_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Output format; json is stable for scripts (shapes in cli/README.md)
    #[arg(long, short = 'o', global = true, value_enum, default_value_t = Format::Table)]
    pub output: Format,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Aligned columns (status: labelled lines), for people
    Table,
    /// Comma-separated values with a header row
    Csv,
    /// JSON, for scripts
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Switch the device's operating mode (SET_MODE) and wait for its answer
    #[command(after_help = EXIT_CODES)]
    SetMode(SetMode),
    /// Clear a latched ERROR state (RESET_ERROR) and wait for the device's answer
    #[command(after_help = EXIT_CODES)]
    ResetError(Wait),
    /// Latest telemetry with units and directions, and whether the device is online
    Status,
    /// Live telemetry and command updates as they arrive, until Ctrl-C
    Watch,
    /// Stored telemetry over a time range, raw or in buckets
    History(History),
    /// Registered devices
    #[command(subcommand)]
    Devices(Devices),
    /// Commands issued to the device
    #[command(subcommand)]
    Commands(Commands),
    /// Events derived from the device's telemetry (state changes, errors), newest first
    Events(Events),
    /// Energy per day (or --bucket): kWh charged, discharged, imported, exported
    Energy(EnergyArgs),
    /// The device's schedule (SET_SCHEDULE): windows it runs by itself, also offline
    #[command(subcommand)]
    Schedule(Schedule),
    /// The device's tariff for the cloud planner: import and export prices per period
    #[command(subcommand)]
    Tariff(Tariff),
    /// The cloud planner's plan over the tariff's next slots (`plan show`, the default), or
    /// `plan apply` to send it to the device as a schedule
    Plan(PlanArgs),
    /// The device's opt-in to the cloud planner: `planner set` (the cloud then plans the device
    /// and sends it schedules by itself), `planner show`, `planner off`
    #[command(subcommand)]
    Planner(Planner),
    /// API tokens (admin)
    #[command(subcommand)]
    Tokens(Tokens),
    /// The audit trail (admin): commands, token and device changes, failed sign-ins
    Audit(Audit),
    /// Alerts, newest first (with --device only that device's); `alerts rules` manages the
    /// rules (admin)
    Alerts(Alerts),
    /// Check an API token against the server and save it with the URL in the config file
    /// (mode 0600); the token is read at a prompt without echo, or from stdin
    Login(Login),
    /// Remove the API token from the config file (the token itself stays valid; `tokens revoke`
    /// ends it)
    Logout,
    /// Print a shell completion script
    Completions {
        #[arg(value_enum)]
        shell: Shell,
    },
    /// Write the man page (to stdout, or emsctl.1 and one page per subcommand into --dir)
    Man {
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
}

#[derive(Debug, Args)]
pub struct SetMode {
    /// Target mode
    #[arg(value_parser = mode_parser(), ignore_case = true)]
    pub mode: TargetMode,
    /// Power in W (magnitude; the mode gives the direction). Required for MANUAL_CHARGE and
    /// MANUAL_DISCHARGE, refused for AUTO and MANUAL_IDLE
    #[arg(long, short = 'p', value_name = "W", allow_negative_numbers = true)]
    pub power: Option<f64>,
    /// Hold a manual mode only this long (90s, 10m, 2h; 1 s to 1 d), then the device returns to
    /// AUTO by itself. Without it the mode holds until the next set-mode
    #[arg(long = "for", value_name = "DURATION")]
    pub lease: Option<String>,
    #[command(flatten)]
    pub wait: Wait,
}

/// `login`: the URL comes from --url (or EMS_URL, or the file); --device and --ca-file are
/// saved too when given.
#[derive(Debug, Args)]
pub struct Login {
    /// Read the token from stdin (one line) instead of a prompt, e.g. `emsctl login --url …
    /// --token-stdin < token-file`
    #[arg(long)]
    pub token_stdin: bool,
}

/// How long to wait for the device's answer.
#[derive(Debug, Args)]
pub struct Wait {
    /// Return as soon as the cloud has stored the command (status PENDING or SENT)
    #[arg(long)]
    pub no_wait: bool,
    /// Seconds to wait for the device's answer before giving up with exit code 4
    #[arg(
        long,
        value_name = "S",
        default_value_t = 30.0,
        conflicts_with = "no_wait"
    )]
    pub timeout: f64,
    /// Command id to use (default: generated by the cloud); a repeated id is refused
    #[arg(long, value_name = "ID")]
    pub id: Option<String>,
    /// Seconds after which the cloud gives up delivering the command (default: server's, 300)
    #[arg(long, value_name = "S")]
    pub expires_in: Option<u64>,
}

#[derive(Debug, Args)]
pub struct History {
    /// Start: RFC 3339 (2026-01-31T12:00:00Z), `now`, or relative (-90s, -15m, -1h, -7d, -2w)
    #[arg(long, default_value = "-1h", allow_hyphen_values = true)]
    pub from: String,
    /// End (exclusive), same forms as --from
    #[arg(long, default_value = "now", allow_hyphen_values = true)]
    pub to: String,
    /// Bucket width (30s, 1m, 15m, 1h, 1d); gives avg/min/max per bucket instead of raw packets
    #[arg(long)]
    pub bucket: Option<String>,
    /// Comma-separated fields: battery.soc, battery.power, grid.power, state, … (default: all)
    #[arg(long, value_delimiter = ',')]
    pub fields: Vec<String>,
    /// Rows fetched per request (paging; the server caps it, default 1000)
    #[arg(long, default_value_t = 1000, value_name = "N", hide = true)]
    pub page_size: u32,
}

#[derive(Debug, Subcommand)]
pub enum Devices {
    /// Every device the token sees
    List {
        /// Only devices with this tag
        #[arg(long)]
        tag: Option<String>,
    },
    /// One device (default: --device)
    Show { id: Option<String> },
    /// Register a device (admin); prints its device token once
    Add {
        id: String,
        /// Display name (default: the id)
        #[arg(long)]
        name: Option<String>,
        /// Tags (comma-separated, e.g. site:lyon,fleet-a); tokens may be scoped to them
        #[arg(long, value_delimiter = ',')]
        tags: Option<Vec<String>>,
    },
    /// Replace a device's tags (admin); tokens scoped by tag see it from their next request
    Tag {
        id: String,
        /// The new tags, comma-separated; an empty value removes them all
        #[arg(long, value_delimiter = ',')]
        tags: Vec<String>,
    },
    /// Give a device a new token (admin), printed once; the old one stops after --grace
    RotateToken {
        id: String,
        /// How long the old token keeps working, e.g. 10m, 1h, 1d (at most 1w; default: it
        /// stops at once and the device's sockets close)
        #[arg(long)]
        grace: Option<String>,
    },
    /// Refuse a device (admin): its token stops working and its sockets close; data stays
    Disable { id: String },
    /// Let a disabled device connect again (admin)
    Enable { id: String },
    /// Delete a device (admin): its token, commands and events; its telemetry stays unless
    /// --purge
    Delete {
        id: String,
        /// Also delete its telemetry
        #[arg(long)]
        purge: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum Commands {
    /// The device's commands, newest first
    List {
        /// Only commands with this status (PENDING, SENT, ACCEPTED, REJECTED, COMPLETED, EXPIRED)
        #[arg(long)]
        status: Option<String>,
        /// At most this many (1 to 1000)
        #[arg(long, default_value_t = 20)]
        limit: u32,
    },
    /// One command by id
    Show { command_id: String },
}

#[derive(Debug, Args)]
pub struct Events {
    /// Start, same forms as `history --from` (default: no bound)
    #[arg(long, allow_hyphen_values = true)]
    pub from: Option<String>,
    /// End (exclusive) (default: no bound)
    #[arg(long, allow_hyphen_values = true)]
    pub to: Option<String>,
    /// At most this many (1 to 10000)
    #[arg(long, default_value_t = 50)]
    pub limit: u32,
}

/// `energy`: kWh per bucket from the stored telemetry.
#[derive(Debug, Args)]
pub struct EnergyArgs {
    /// Start, same forms as `history --from` (default: a day before --to)
    #[arg(long, allow_hyphen_values = true)]
    pub from: Option<String>,
    /// End (exclusive) (default: now)
    #[arg(long, allow_hyphen_values = true)]
    pub to: Option<String>,
    /// Bucket width, 1m to 31d (default 1d, UTC days)
    #[arg(long)]
    pub bucket: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum Tokens {
    /// Create an API token (admin); prints it once
    Create {
        /// What the token may do: viewer reads, operator also commands, admin also administers
        #[arg(long, value_parser = role_parser())]
        role: Role,
        /// Unique name, recorded as `issued_by` on its commands
        #[arg(long)]
        name: String,
        /// Stops working after this long (e.g. 8h, 30d, 2w) or at this time (2026-12-31,
        /// RFC 3339); never when absent
        #[arg(long)]
        expires: Option<String>,
        /// Limit the token to these devices (comma-separated ids); other devices do not exist
        /// for it. Every device when absent; not for admin tokens
        #[arg(long, value_delimiter = ',')]
        devices: Option<Vec<String>>,
        /// Limit the token to the devices with one of these tags (comma-separated), tagged now
        /// or later; with --devices, it sees both. Not for admin tokens
        #[arg(long, value_delimiter = ',')]
        tags: Option<Vec<String>>,
    },
    /// API tokens (admin): names, roles, expiry; never their secrets
    List {
        /// Also revoked and rotated-away tokens
        #[arg(long)]
        revoked: bool,
    },
    /// Revoke an API token (admin): it stops working at once and its live feeds close
    Revoke {
        /// The token's name
        name: String,
    },
    /// Give an API token a new secret (admin), printed once; the old one stops working at once
    Rotate {
        /// The token's name
        name: String,
    },
}

/// `audit`: who did what, newest first.
#[derive(Debug, Args)]
pub struct Audit {
    /// Only entries about this device
    #[arg(long = "for-device")]
    pub for_device: Option<String>,
    /// Only this action (COMMAND_ISSUED, TOKEN_CREATED, TOKEN_REVOKED, TOKEN_ROTATED,
    /// DEVICE_CREATED, AUTH_FAILED)
    #[arg(long)]
    pub action: Option<String>,
    /// At most this many (1 to 1000)
    #[arg(long, default_value_t = 50)]
    pub limit: u32,
}

/// `alerts`: the alerts of the devices the token sees (or of --device), newest first.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct Alerts {
    #[command(subcommand)]
    pub sub: Option<AlertsSub>,
    /// Only open alerts
    #[arg(long, conflicts_with = "resolved")]
    pub open: bool,
    /// Only resolved alerts
    #[arg(long)]
    pub resolved: bool,
    /// At most this many (1 to 1000)
    #[arg(long, default_value_t = 50)]
    pub limit: u32,
}

#[derive(Debug, Subcommand)]
pub enum AlertsSub {
    /// Alert rules (admin): list, add, delete
    #[command(subcommand)]
    Rules(AlertRules),
}

#[derive(Debug, Subcommand)]
pub enum AlertRules {
    /// Every rule
    List,
    /// Add a rule; it applies to packets stored from now on, on every cloud instance
    Add {
        /// Unique name, shown in notifications
        name: String,
        /// What it watches: offline, error_flag, soc_below, grid_export_above
        #[arg(long, value_parser = kind_parser(), ignore_case = true)]
        kind: AlertKind,
        /// Only this device (default: every device)
        #[arg(long = "for-device", value_name = "ID")]
        for_device: Option<String>,
        /// soc_below: SoC, %; grid_export_above: export, W (positive)
        #[arg(long)]
        threshold: Option<f64>,
        /// Where the alert resolves (hysteresis; default: --threshold)
        #[arg(long)]
        clear_threshold: Option<f64>,
        /// error_flag: this flag only, e.g. OVERHEAT (default: any)
        #[arg(long)]
        flag: Option<String>,
        /// How long the condition must hold before the alert opens, e.g. 90s, 5m
        #[arg(long = "for", value_name = "DURATION")]
        r#for: Option<String>,
        /// How long it must stay cleared before the alert resolves, e.g. 1m
        #[arg(long, value_name = "DURATION")]
        clear_after: Option<String>,
    },
    /// Delete a rule; its open alerts are resolved
    Delete {
        /// The rule's name
        name: String,
    },
}

fn kind_parser() -> impl clap::builder::TypedValueParser<Value = AlertKind> {
    const KINDS: [&str; 4] = ["offline", "error_flag", "soc_below", "grid_export_above"];
    PossibleValuesParser::new(KINDS).map(|s| {
        AlertKind::parse(&s.to_ascii_uppercase()).expect("only possible values reach here")
    })
}

fn mode_parser() -> impl clap::builder::TypedValueParser<Value = TargetMode> {
    PossibleValuesParser::new(TargetMode::ALL.iter().map(|m| m.as_str())).map(|s| {
        s.to_ascii_uppercase()
            .parse::<TargetMode>()
            .expect("only possible values reach here")
    })
}

fn role_parser() -> impl clap::builder::TypedValueParser<Value = Role> {
    PossibleValuesParser::new(Role::ALL.iter().map(|r| r.as_str()))
        .map(|s| s.parse::<Role>().expect("only possible values reach here"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn modes_parse_in_any_case() {
        let cli =
            Cli::try_parse_from(["emsctl", "set-mode", "manual_charge", "--power", "5"]).unwrap();
        match cli.command {
            Command::SetMode(s) => assert_eq!(s.mode, TargetMode::ManualCharge),
            other => panic!("{other:?}"),
        }
    }
}
