//! The energy-planning subcommands' arguments: `schedule`, `tariff`, `plan` and `planner`.

use std::path::PathBuf;

use clap::{Args, Subcommand};

use super::{EXIT_CODES, Wait};

#[derive(Debug, Subcommand)]
pub enum Schedule {
    /// Send a schedule: from a JSON or TOML file (the SET_SCHEDULE payload; `-` reads JSON from
    /// stdin), or one window from flags; waits for the device's answer
    #[command(after_help = EXIT_CODES)]
    Set(Box<ScheduleSet>),
    /// The schedule the device last accepted
    Show,
    /// Clear the device's schedule (SET_SCHEDULE with no windows)
    #[command(after_help = EXIT_CODES)]
    Clear(Wait),
}

#[derive(Debug, Args)]
pub struct PlanArgs {
    #[command(subcommand)]
    pub action: Option<PlanAction>,
    #[command(flatten)]
    pub battery: PlanBattery,
}

#[derive(Debug, Subcommand)]
pub enum PlanAction {
    /// Print the plan, slot by slot, and its expected cost (the default)
    Show,
    /// Send the plan to the device as a SET_SCHEDULE (operator); waits for its answer
    #[command(after_help = EXIT_CODES)]
    Apply {
        /// Return as soon as the cloud has stored the command
        #[arg(long)]
        no_wait: bool,
        /// Seconds to wait for the device's answer (at most 60) before exit code 4
        #[arg(
            long,
            value_name = "S",
            default_value_t = 30.0,
            conflicts_with = "no_wait"
        )]
        timeout: f64,
    },
}

/// The battery's figures the planner needs: the first three all or none (none: those stored with
/// `planner set`).
#[derive(Debug, Args)]
pub struct PlanBattery {
    /// Usable battery capacity, Wh (with the next two; or none of them for the stored ones)
    #[arg(long, global = true, value_name = "WH")]
    pub capacity_wh: Option<f64>,
    /// Largest charging power, W
    #[arg(long, global = true, value_name = "W")]
    pub max_charge_w: Option<f64>,
    /// Largest discharging power, W
    #[arg(long, global = true, value_name = "W")]
    pub max_discharge_w: Option<f64>,
    /// Backup reserve, % [server default: 10]
    #[arg(long, global = true, value_name = "PCT")]
    pub reserve: Option<f64>,
    /// Top SoC, % [server default: 100]
    #[arg(long, global = true, value_name = "PCT")]
    pub max_soc: Option<f64>,
    /// One-way efficiency of charging and of discharging, 0-1 [server default: 0.95]
    #[arg(long, global = true, value_name = "0-1")]
    pub efficiency: Option<f64>,
    /// Most the site may import, W
    #[arg(long, global = true, value_name = "W")]
    pub import_limit: Option<f64>,
    /// Most the site may export, W
    #[arg(long, global = true, value_name = "W")]
    pub export_limit: Option<f64>,
    /// Start from this SoC instead of the latest packet's, %
    #[arg(long, global = true, value_name = "PCT")]
    pub soc: Option<f64>,
    /// Least SoC at the end of the horizon, % [server default: none]
    #[arg(long, global = true, value_name = "PCT")]
    pub end_soc: Option<f64>,
    /// Horizon, hours (0.25-48) [server default: 24]
    #[arg(long, global = true, value_name = "H")]
    pub hours: Option<f64>,
    /// IANA time zone of the household's clock, for the forecast's weekdays [server default: UTC]
    #[arg(long, global = true, value_name = "ZONE")]
    pub time_zone: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum Tariff {
    /// Replace the device's tariff (operator) from a CSV file (header
    /// `start,end,import_price,export_price`, RFC 3339 times) or a JSON file (a list of periods,
    /// or what `tariff show -o json` prints); `-` reads JSON from stdin
    Set {
        #[arg(value_name = "FILE.csv|FILE.json")]
        file: PathBuf,
    },
    /// The device's stored tariff, in time order
    Show,
}

#[derive(Debug, Subcommand)]
pub enum Planner {
    /// Opt the device in to the cloud planner (operator): the cloud plans it and sends it a
    /// SET_SCHEDULE by itself when its tariff or these settings change, every 15 minutes, and
    /// when its SoC departs from the plan. Replaces any stored settings
    Set(PlannerSet),
    /// The device's planner settings and the re-planner's last attempt (command sent, or why
    /// none was)
    Show,
    /// Opt the device out (operator): the cloud sends it nothing any more and forgets the
    /// settings; the schedule it holds runs out at its valid_until
    Off,
}

/// The battery's figures the planner plans the device with.
#[derive(Debug, Args)]
pub struct PlannerSet {
    /// Usable battery capacity, Wh
    #[arg(long, value_name = "WH")]
    pub capacity_wh: f64,
    /// Largest charging power, W
    #[arg(long, value_name = "W")]
    pub max_charge_w: f64,
    /// Largest discharging power, W
    #[arg(long, value_name = "W")]
    pub max_discharge_w: f64,
    /// Backup reserve, % [server default: 10]
    #[arg(long, value_name = "PCT")]
    pub reserve: Option<f64>,
    /// Top SoC, % [server default: 100]
    #[arg(long, value_name = "PCT")]
    pub max_soc: Option<f64>,
    /// One-way efficiency of charging and of discharging, 0-1 [server default: 0.95]
    #[arg(long, value_name = "0-1")]
    pub efficiency: Option<f64>,
    /// Most the site may import, W
    #[arg(long, value_name = "W")]
    pub import_limit: Option<f64>,
    /// Most the site may export, W
    #[arg(long, value_name = "W")]
    pub export_limit: Option<f64>,
    /// Least SoC at the end of each plan's horizon, % [server default: none]
    #[arg(long, value_name = "PCT")]
    pub end_soc: Option<f64>,
    /// Horizon, hours (0.25-48) [server default: 24]
    #[arg(long, value_name = "H")]
    pub hours: Option<f64>,
    /// IANA time zone of the household's clock, for the forecast's weekdays [server default: UTC]
    #[arg(long, value_name = "ZONE")]
    pub time_zone: Option<String>,
}

#[derive(Debug, Args)]
pub struct ScheduleSet {
    /// A file holding the payload: `valid_until`, `time_zone`, `windows` (see docs/protocol.md);
    /// `.toml` is read as TOML, anything else as JSON; `-` is JSON on stdin
    #[arg(conflicts_with_all = ["daily", "from", "to"])]
    pub file: Option<PathBuf>,
    /// One daily window, local HH:MM-HH:MM in --time-zone (may cross midnight: 23:00-06:00)
    #[arg(long, value_name = "HH:MM-HH:MM", conflicts_with_all = ["from", "to"])]
    pub daily: Option<String>,
    /// One one-off window's start (RFC 3339, `now` or relative like +2h)
    #[arg(long, requires = "to", allow_hyphen_values = true)]
    pub from: Option<String>,
    /// Its end
    #[arg(long, requires = "from", allow_hyphen_values = true)]
    pub to: Option<String>,
    /// The window's action: charge, hold, discharge
    #[arg(long, value_parser = ["charge", "hold", "discharge", "CHARGE", "HOLD", "DISCHARGE"])]
    pub action: Option<String>,
    /// Power, W (charge, discharge)
    #[arg(long, short = 'p', value_name = "W")]
    pub power: Option<f64>,
    /// Charge up to this SoC, %
    #[arg(long, value_name = "PCT")]
    pub to_soc: Option<f64>,
    /// Discharge down to this SoC, %
    #[arg(long, value_name = "PCT")]
    pub down_to_soc: Option<f64>,
    /// Charge from PV surplus only, never importing for it
    #[arg(long)]
    pub no_grid: bool,
    /// IANA time zone of daily windows (default UTC)
    #[arg(long, value_name = "ZONE")]
    pub time_zone: Option<String>,
    /// How long the schedule holds (1h, 7d, 2w; default 7d)
    #[arg(long, value_name = "DURATION", default_value = "7d")]
    pub valid_for: String,
    #[command(flatten)]
    pub wait: Wait,
}
