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
//! - this file: the spec (line, settings, units, timeout), the read-only line, the scan loop.
//! - [`identify`]: SunSpec, Eastron and register-map recognition over a [`identify::ReadUnit`].
//! - [`report`]: the `[buses.*]`/`[devices.*]` TOML snippet and the JSON form.

pub mod identify;
pub mod report;

use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use ems_driver_sdk::BusError;
use ems_driver_sdk::regs::RegisterKind;
use serde::Serialize;

use crate::bus::modbus::ModbusTransport;
use crate::bus::{BusStats, Request, Response};
use crate::config::{BusConfig, Parity};
use identify::{Identity, MapError, MapSignature, ReadUnit};

/// Baud rates tried when none are given: the common RS-485 rates of inverters, BMSs and meters.
pub const DEFAULT_BAUDS: [u32; 4] = [9600, 19200, 38400, 115200];
/// Parities tried when none are given (8 data bits, 1 stop bit).
pub const DEFAULT_PARITIES: [Parity; 2] = [Parity::None, Parity::Even];
/// The wait for an answer to a probe when none is given.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(100);
/// Consecutive timeouts after which the identification of a unit is given up.
const IDENTIFY_GIVE_UP_AFTER: u32 = 2;

/// One baud rate and parity of a serial line (8 data bits, 1 stop bit).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct LineSetting {
    pub baud: u32,
    pub parity: Parity,
}

impl std::fmt::Display for LineSetting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let p = match self.parity {
            Parity::None => 'N',
            Parity::Even => 'E',
            Parity::Odd => 'O',
        };
        write!(f, "{} 8{p}1", self.baud)
    }
}

/// Where to scan.
#[derive(Debug, Clone, PartialEq)]
pub enum Line {
    /// Modbus RTU on a serial port, at each of `settings` in turn.
    Rtu {
        port: PathBuf,
        settings: Vec<LineSetting>,
    },
    /// Modbus TCP, `host:port` (a device or an RS-485 gateway).
    Tcp { address: String },
}

/// What to scan: the line, the unit ids, the probe timeout and the maps to recognise.
#[derive(Debug, Clone)]
pub struct ScanSpec {
    pub line: Line,
    pub units: Vec<u8>,
    pub timeout: Duration,
    /// Register maps with an `[identify]` section.
    pub maps: Vec<MapSignature>,
    /// The bus name for the printed sections.
    pub bus_name: String,
    /// The bus is already in the config (`--bus`): print only `[devices.*]` sections.
    pub bus_configured: bool,
    /// The config's devices (with `--bus`): their names and roles are not given out again, and
    /// a unit already configured on the scanned bus gets no new section.
    pub configured: Vec<ConfiguredDevice>,
}

/// A device of the config, as the printed sections must not collide with it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ConfiguredDevice {
    pub name: String,
    /// Its unit id when it is on the scanned bus.
    pub unit_on_bus: Option<u8>,
    pub roles: Vec<ems_driver_sdk::Role>,
}

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
}

/// Parses unit ids: `1-247`, `5`, `1,2,10-20`; each within `1..=max` (247 on a serial line,
/// 255 over TCP), in the order given, without repeats.
pub fn parse_units(text: &str, max: u8) -> Result<Vec<u8>, ScanError> {
    let bad = |reason: String| ScanError::Argument {
        what: "unit ids",
        text: text.to_string(),
        reason,
    };
    let id = |s: &str| -> Result<u8, ScanError> {
        let n: u32 = s
            .trim()
            .parse()
            .map_err(|_| bad(format!("{s:?} is not a number")))?;
        if n == 0 || n > u32::from(max) {
            return Err(bad(format!("{n} is not a unit id (1 to {max})")));
        }
        Ok(n as u8)
    };
    let mut out: Vec<u8> = Vec::new();
    for part in text.split(',') {
        let (lo, hi) = match part.split_once('-') {
            Some((a, b)) => (id(a)?, id(b)?),
            None => (id(part)?, id(part)?),
        };
        if lo > hi {
            return Err(bad(format!("{lo}-{hi} is an empty range")));
        }
        for u in lo..=hi {
            if !out.contains(&u) {
                out.push(u);
            }
        }
    }
    Ok(out)
}

/// Parses baud rates, `9600,19200`.
pub fn parse_bauds(text: &str) -> Result<Vec<u32>, ScanError> {
    text.split(',')
        .map(|s| match s.trim().parse::<u32>() {
            Ok(b) if (300..=4_000_000).contains(&b) => Ok(b),
            _ => Err(ScanError::Argument {
                what: "baud rates",
                text: text.to_string(),
                reason: format!("{s:?} is not a baud rate (300 to 4000000)"),
            }),
        })
        .collect()
}

/// Parses parities, `N,E` (or `none,even,odd`).
pub fn parse_parities(text: &str) -> Result<Vec<Parity>, ScanError> {
    text.split(',')
        .map(|s| match s.trim().to_ascii_lowercase().as_str() {
            "n" | "none" => Ok(Parity::None),
            "e" | "even" => Ok(Parity::Even),
            "o" | "odd" => Ok(Parity::Odd),
            _ => Err(ScanError::Argument {
                what: "parities",
                text: text.to_string(),
                reason: format!("{s:?} is not N, E or O"),
            }),
        })
        .collect()
}

/// Every combination of `bauds` × `parities`.
pub fn settings(bauds: &[u32], parities: &[Parity]) -> Vec<LineSetting> {
    bauds
        .iter()
        .flat_map(|&baud| {
            parities
                .iter()
                .map(move |&parity| LineSetting { baud, parity })
        })
        .collect()
}

impl ScanSpec {
    /// The line settings to try (one pass over TCP).
    fn passes(&self) -> Vec<Option<LineSetting>> {
        match &self.line {
            Line::Rtu { settings, .. } => settings.iter().copied().map(Some).collect(),
            Line::Tcp { .. } => vec![None],
        }
    }

    /// Each pass's bus: the agent's bus config at the pass's setting, with the probe timeout
    /// and no retries.
    fn bus_configs(&self) -> Vec<(Option<LineSetting>, BusConfig)> {
        let timeout_ms = self.timeout.as_millis().try_into().unwrap_or(u64::MAX);
        match &self.line {
            Line::Rtu { port, settings } => settings
                .iter()
                .map(|s| {
                    let config = BusConfig::Rtu {
                        port: port.clone(),
                        baud: s.baud,
                        parity: s.parity,
                        data_bits: 8,
                        stop_bits: 1,
                        timeout_ms,
                        retries: 0,
                        extra_delay_ms: 0,
                    };
                    (Some(*s), config)
                })
                .collect(),
            Line::Tcp { address } => vec![(
                None,
                BusConfig::Tcp {
                    address: address.clone(),
                    timeout_ms,
                    retries: 0,
                },
            )],
        }
    }

    /// Probes the scan sends: units × line settings.
    pub fn probes(&self) -> u64 {
        self.passes().len() as u64 * self.units.len() as u64
    }

    /// The longest the probes can take: each probe waits at most the timeout, plus the silence
    /// between frames (3.5 characters, at least 1.75 ms). Units that answer add their
    /// identification (see [`ScanSpec::identify_timeout`]).
    pub fn worst_case(&self) -> Duration {
        self.passes()
            .iter()
            .map(|s| {
                let gap = s.map_or(Duration::ZERO, |s| frame_gap(s.baud));
                (self.timeout + gap) * self.units.len() as u32
            })
            .sum()
    }

    /// The wait for an identification read at `setting`: at least 300 ms, plus the time a
    /// full answer (125 registers) takes on the line.
    pub fn identify_timeout(&self, setting: Option<LineSetting>) -> Duration {
        let floor = self.timeout.max(Duration::from_millis(300));
        floor
            + setting.map_or(Duration::ZERO, |s| {
                Duration::from_secs_f64(256.0 * 11.0 / f64::from(s.baud))
            })
    }

    /// One line for the user before the scan starts: how long it takes at most.
    pub fn estimate(&self) -> String {
        let passes = self.passes();
        let what = match &self.line {
            Line::Rtu { port, settings } => format!(
                "{} on {} ({} line setting{}: {})",
                self.bus_name,
                port.display(),
                settings.len(),
                if settings.len() == 1 { "" } else { "s" },
                settings
                    .iter()
                    .map(|s| s.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Line::Tcp { address } => format!("{} at {address} (Modbus TCP)", self.bus_name),
        };
        let slowest = passes
            .iter()
            .map(|s| self.identify_timeout(*s))
            .max()
            .unwrap_or_default();
        format!(
            "scanning {what}, {} unit id{}: {} probes × {} ms: at most {:.1} s, plus for each unit \
             that answers its identification reads (given up after {IDENTIFY_GIVE_UP_AFTER} \
             timeouts of {} ms); it only reads, never writes",
            self.units.len(),
            if self.units.len() == 1 { "" } else { "s" },
            self.probes(),
            self.timeout.as_millis(),
            self.worst_case().as_secs_f64(),
            slowest.as_millis(),
        )
    }
}

/// 3.5 characters of 11 bits, at least 1.75 ms (what the agent's bus keeps between frames).
fn frame_gap(baud: u32) -> Duration {
    Duration::from_secs_f64((3.5 * 11.0 / f64::from(baud)).max(0.00175))
}

/// The only request a scan sends. It has no write form: [`Read::request`] is function 0x03 or
/// 0x04, nothing else.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Read {
    pub kind: RegisterKind,
    pub unit: u8,
    pub addr: u16,
    pub count: u16,
}

impl Read {
    /// The bus transaction: read holding (0x03) or input (0x04) registers.
    pub fn request(self) -> Request {
        let Read {
            unit, addr, count, ..
        } = self;
        match self.kind {
            RegisterKind::Holding => Request::ReadHolding { unit, addr, count },
            RegisterKind::Input => Request::ReadInput { unit, addr, count },
        }
    }
}

/// A bus opened for scanning: the agent's Modbus transport with no retries, spoken to only in
/// [`Read`]s, and the counters of what the line did.
struct ScanLine {
    transport: ModbusTransport,
    stats: BusStats,
}

impl ScanLine {
    async fn read(&mut self, read: Read) -> Result<Vec<u16>, BusError> {
        let stats = &mut self.stats;
        let mut record = |result: &Result<Response, BusError>, elapsed: Duration| {
            stats.record(read.unit, result, elapsed)
        };
        match self.transport.execute(&read.request(), &mut record).await? {
            Response::Registers(words) => Ok(words),
            other => Err(BusError::Other(format!("unexpected answer {other:?}"))),
        }
    }
}

/// One unit's registers through the scan line, giving up after consecutive timeouts.
struct UnitReader<'a> {
    line: &'a mut ScanLine,
    unit: u8,
    timeouts_in_a_row: u32,
}

impl ReadUnit for UnitReader<'_> {
    async fn read(
        &mut self,
        kind: RegisterKind,
        addr: u16,
        count: u16,
    ) -> Result<Vec<u16>, BusError> {
        if self.timeouts_in_a_row >= IDENTIFY_GIVE_UP_AFTER {
            return Err(BusError::Timeout);
        }
        let result = self
            .line
            .read(Read {
                kind,
                unit: self.unit,
                addr,
                count,
            })
            .await;
        match result {
            Err(BusError::Timeout) => self.timeouts_in_a_row += 1,
            _ => self.timeouts_in_a_row = 0,
        }
        result
    }
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

/// Checks that the line can be used at all, so a missing adapter is one clear error and not
/// 247 timeouts. [`run`] checks too; call it first to fail before printing the estimate.
pub async fn check_line(spec: &ScanSpec) -> Result<(), ScanError> {
    match &spec.line {
        Line::Rtu { port, .. } => {
            let name = port.display().to_string();
            let file = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .custom_flags(libc::O_NOCTTY | libc::O_NONBLOCK)
                .open(port)
                .map_err(|e| match e.kind() {
                    std::io::ErrorKind::NotFound => ScanError::NoSuchPort(name.clone()),
                    std::io::ErrorKind::PermissionDenied => {
                        ScanError::PermissionDenied(name.clone())
                    }
                    _ => ScanError::Port {
                        port: name.clone(),
                        source: e,
                    },
                })?;
            use std::os::fd::AsRawFd;
            // SAFETY: isatty only inspects the fd, which `file` keeps open during the call.
            if unsafe { libc::isatty(file.as_raw_fd()) } != 1 {
                return Err(ScanError::NotASerialPort(name));
            }
            Ok(())
        }
        Line::Tcp { address } => {
            let connect = tokio::net::TcpStream::connect(address.as_str());
            match tokio::time::timeout(spec.timeout.max(Duration::from_secs(3)), connect).await {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(e)) => Err(ScanError::Tcp {
                    address: address.clone(),
                    reason: e.to_string(),
                }),
                Err(_) => Err(ScanError::Tcp {
                    address: address.clone(),
                    reason: "no connection within 3 s".into(),
                }),
            }
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unit_ranges_parse_and_bad_ones_say_why() {
        assert_eq!(parse_units("1-3,7,2", 247).unwrap(), vec![1, 2, 3, 7]);
        assert_eq!(parse_units("1-247", 247).unwrap().len(), 247);
        let err = parse_units("0-10", 247).unwrap_err().to_string();
        assert!(err.contains("0 is not a unit id (1 to 247)"), "{err}");
        assert!(parse_units("1-248", 247).is_err());
        assert!(parse_units("250", 255).is_ok());
        let err = parse_units("9-3", 247).unwrap_err().to_string();
        assert!(err.contains("empty range"), "{err}");
        assert!(parse_units("a", 247).is_err());
        assert!(parse_bauds("9600,x").is_err());
        assert_eq!(
            parse_parities("N,e").unwrap(),
            vec![Parity::None, Parity::Even]
        );
        assert!(parse_parities("X").is_err());
    }

    #[test]
    fn every_scan_request_is_a_read() {
        for kind in [RegisterKind::Holding, RegisterKind::Input] {
            let r = Read {
                kind,
                unit: 1,
                addr: 0,
                count: 1,
            };
            assert!(matches!(
                r.request(),
                Request::ReadHolding { .. } | Request::ReadInput { .. }
            ));
        }
    }

    #[test]
    fn the_worst_case_is_probes_times_timeout_plus_gaps() {
        let spec = ScanSpec {
            line: Line::Rtu {
                port: "/dev/null".into(),
                settings: settings(&DEFAULT_BAUDS, &DEFAULT_PARITIES),
            },
            units: parse_units("1-247", 247).unwrap(),
            timeout: DEFAULT_TIMEOUT,
            maps: vec![],
            bus_name: "rs485".into(),
            bus_configured: false,
            configured: vec![],
        };
        assert_eq!(spec.probes(), 8 * 247);
        let s = spec.worst_case().as_secs_f64();
        // 1976 × 100 ms = 197.6 s, plus 3.5-character gaps (4 ms at 9600 baud, 1.75 ms above).
        assert!(s > 197.6 && s < 197.6 + 1976.0 * 0.0041, "{s}");
        assert!(spec.estimate().contains("1976 probes × 100 ms"));
    }
}
