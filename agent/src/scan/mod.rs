//! `ems-agent scan`: which Modbus units answer on a bus, and what they are.
//!
//! On a serial line every line setting (baud rate × parity) is tried in turn; on each, every unit
//! id of the range gets one short read (holding register 0). A unit that answers, with registers
//! or with an exception ("no such register" is an answer too), is then identified
//! ([`identify`]) with longer timeouts, and [`report`] turns what was found into `[devices.*]`
//! sections for the agent's config, or JSON.
//!
//! **A scan never writes.** Its one kind of request is [`Read`], which has no write form: the
//! only place a scan request becomes a bus transaction is [`Read::request`], and that gives
//! function 0x03 or 0x04. The agent's tests check it on ems-sim, whose line counts write
//! requests.
//!
//! The longest a scan can take is known before it starts ([`ScanSpec::worst_case`]): one probe
//! per unit and line setting, each waiting at most the timeout, plus the identification of the
//! units that answer (a unit that stops answering during it is given up after two timeouts).
//!
//! # Layout
//! - [`args`]: the command line (`--port`, `--tcp`, `--bus`, …) resolved into a [`ScanSpec`].
//! - [`spec`]: what to scan (line, settings, units, timeout), the command-line parsers and the
//!   time estimate.
//! - [`line`]: the read-only line: [`Read`], the scan's one request type, and the check that the
//!   port or address can be used at all.
//! - [`identify`]: SunSpec, Eastron and register-map recognition over a [`identify::ReadUnit`].
//! - [`report`]: the `[buses.*]`/`[devices.*]` TOML snippet and the JSON form.
//! - this file: the scan loop and what it finds.

pub mod args;
pub mod identify;
pub mod line;
pub mod report;
pub mod spec;

use std::time::Instant;

use ems_driver_sdk::BusError;
use ems_driver_sdk::regs::RegisterKind;
use serde::Serialize;

use crate::bus::BusStats;
use crate::bus::modbus::ModbusTransport;
pub use args::ScanArgs;
use identify::{Identity, MapError, MapSignature};
pub use line::{Read, check_line};
use line::{ScanLine, UnitReader};
pub use spec::{
    ConfiguredDevice, DEFAULT_BAUDS, DEFAULT_PARITIES, DEFAULT_TIMEOUT, Line, LineSetting,
    ScanSpec, parse_bauds, parse_parities, parse_units, settings,
};

/// Why a scan could not run; nothing a device answers is among them (those are counted).
#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    #[error(
        "serial port {0}: no such device (is the adapter plugged in? see `ls /dev/serial/by-id/`)"
    )]
    NoSuchPort(String),
    #[error(
        "serial port {0}: permission denied (add the user to the `dialout` group, or run as root)"
    )]
    PermissionDenied(String),
    #[error(
        "serial port {0}: in use by another program (stop the agent first: `systemctl stop ems-agent`)"
    )]
    Busy(String),
    #[error("serial port {0}: not a serial port (not a terminal device)")]
    NotASerialPort(String),
    #[error("serial port {port}: {source}")]
    Port {
        port: String,
        source: std::io::Error,
    },
    #[error("Modbus TCP {address}: {reason}")]
    Tcp { address: String, reason: String },
    /// A bad unit range, baud rate, parity or timeout on the command line.
    #[error("{what} {text:?}: {reason}")]
    Argument {
        what: &'static str,
        text: String,
        reason: String,
    },
    #[error(transparent)]
    Map(#[from] MapError),
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// Arguments that do not say what to scan, or contradict each other.
    #[error("{0}")]
    Usage(String),
}

/// What the line did during one pass (one line setting).
#[derive(Debug, Clone, Serialize)]
pub struct PassReport {
    /// `None` over Modbus TCP.
    pub setting: Option<LineSetting>,
    /// Transactions on the line, identification reads included.
    pub requests: u64,
    /// Answers with registers.
    pub ok: u64,
    /// Answers with a Modbus exception (a device that is there and refused the read).
    pub exceptions: u64,
    pub timeouts: u64,
    /// Garbled answers: bytes that did not make a valid frame (wrong CRC, noise, another
    /// device's baud rate).
    pub garbled: u64,
    pub other_errors: u64,
    /// Units that answered at this setting.
    pub answered: Vec<u8>,
}

/// A unit that answered, and what it was recognised as.
#[derive(Debug, Clone, Serialize)]
pub struct FoundUnit {
    pub unit: u8,
    /// `None` over Modbus TCP.
    pub setting: Option<LineSetting>,
    /// How it answered the probe: `registers` or `exception N`.
    pub answer: String,
    /// Strongest first; empty when nothing recognised it.
    pub identities: Vec<Identity>,
}

/// The result of a scan.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub bus: String,
    /// `rtu` or `tcp`.
    pub kind: &'static str,
    /// The serial port or `host:port`.
    pub target: String,
    pub bus_configured: bool,
    pub configured: Vec<ConfiguredDevice>,
    pub units_scanned: usize,
    pub maps_tried: Vec<String>,
    pub passes: Vec<PassReport>,
    pub found: Vec<FoundUnit>,
    pub elapsed_s: f64,
}

/// Runs the scan, calling `progress` with a line now and then (for stderr).
pub async fn run(spec: &ScanSpec, progress: &mut dyn FnMut(&str)) -> Result<Report, ScanError> {
    check_line(spec).await?;
    let started = Instant::now();
    let mut passes = Vec::new();
    let mut found = Vec::new();
    let total = spec.probes();
    let mut probed = 0u64;
    for (setting, config) in spec.bus_configs() {
        let label = setting.map_or_else(|| "Modbus TCP".to_string(), |s| s.to_string());
        let mut line = ScanLine {
            transport: ModbusTransport::new(&spec.bus_name, config),
            stats: BusStats::default(),
        };
        let mut answered = Vec::new();
        for (i, &unit) in spec.units.iter().enumerate() {
            probed += 1;
            let probe = Read {
                kind: RegisterKind::Holding,
                unit,
                addr: 0,
                count: 1,
            };
            let answer = match line.read(probe).await {
                Ok(_) => Some("registers".to_string()),
                Err(BusError::Exception(code)) => Some(format!("exception {code}")),
                Err(_) => None,
            };
            if let Some(answer) = answer {
                answered.push(unit);
                line.transport.set_timeout(spec.identify_timeout(setting));
                let mut reader = UnitReader {
                    line: &mut line,
                    unit,
                    timeouts_in_a_row: 0,
                };
                let identities = identify::identify(&mut reader, &spec.maps).await;
                line.transport.set_timeout(spec.timeout);
                progress(&format!(
                    "{label}: unit {unit} answers ({answer}): {}",
                    identities
                        .first()
                        .map_or_else(|| "not recognised".to_string(), |id| id.evidence.clone())
                ));
                found.push(FoundUnit {
                    unit,
                    setting,
                    answer,
                    identities,
                });
            }
            let last = i + 1 == spec.units.len();
            if last || (i + 1) % 16 == 0 {
                let c = &line.stats.total;
                progress(&format!(
                    "{label}: {}/{} units, {} answered, {} garbled; {probed}/{total} probes done, {:.1} s",
                    i + 1,
                    spec.units.len(),
                    answered.len(),
                    c.crc_errors,
                    started.elapsed().as_secs_f64()
                ));
            }
        }
        let c = &line.stats.total;
        passes.push(PassReport {
            setting,
            requests: c.requests,
            ok: c.ok,
            exceptions: c.exceptions,
            timeouts: c.timeouts,
            garbled: c.crc_errors,
            other_errors: c.other_errors + c.nacks,
            answered,
        });
    }
    let (kind, target) = match &spec.line {
        Line::Rtu { port, .. } => ("rtu", port.display().to_string()),
        Line::Tcp { address } => ("tcp", address.clone()),
    };
    Ok(Report {
        bus: spec.bus_name.clone(),
        kind,
        target,
        bus_configured: spec.bus_configured,
        configured: spec.configured.clone(),
        units_scanned: spec.units.len(),
        maps_tried: spec
            .maps
            .iter()
            .map(|m| m.path.display().to_string())
            .collect(),
        passes,
        found,
        elapsed_s: started.elapsed().as_secs_f64(),
    })
}

/// The maps with an `[identify]` section in `dir`, and why each other map with one cannot be
/// used (a broken map must not stop a scan; the caller warns). An unreadable `dir` is an error.
pub fn load_maps(dir: &std::path::Path) -> Result<(Vec<MapSignature>, Vec<MapError>), ScanError> {
    Ok(MapSignature::load_dir(dir)?)
}
