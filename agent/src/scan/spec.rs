//! What to scan: the line and its settings, the unit ids, the probe timeout, the maps; the
//! command-line parsers; and the longest the scan can take, known before it starts.

use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

use super::ScanError;
use super::identify::MapSignature;
use crate::config::{BusConfig, Parity};

/// Baud rates tried when none are given: the common RS-485 rates of inverters, BMSs and meters.
pub const DEFAULT_BAUDS: [u32; 4] = [9600, 19200, 38400, 115200];
/// Parities tried when none are given (8 data bits, 1 stop bit).
pub const DEFAULT_PARITIES: [Parity; 2] = [Parity::None, Parity::Even];
/// What a probe costs besides its timeout and the gap between frames, at most: after silence
/// the agent's transport reopens the serial port (or reconnects over TCP) so that a late answer
/// cannot be read as the next one, plus timer slack. Measured on ems-sim's pty: about 2.5 ms
/// (1976 probes, 207.7 s); 10 ms leaves room for a USB adapter's slower open.
pub const PROBE_OVERHEAD: Duration = Duration::from_millis(10);
/// The wait for an answer to a probe when none is given.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(100);
/// Consecutive timeouts after which the identification of a unit is given up.
pub(crate) const IDENTIFY_GIVE_UP_AFTER: u32 = 2;

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
    pub(crate) fn passes(&self) -> Vec<Option<LineSetting>> {
        match &self.line {
            Line::Rtu { settings, .. } => settings.iter().copied().map(Some).collect(),
            Line::Tcp { .. } => vec![None],
        }
    }

    /// Each pass's bus: the agent's bus config at the pass's setting, with the probe timeout
    /// and no retries.
    pub(crate) fn bus_configs(&self) -> Vec<(Option<LineSetting>, BusConfig)> {
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
    /// between frames (3.5 characters, at least 1.75 ms) and [`PROBE_OVERHEAD`]. Units that
    /// answer add their identification (see [`ScanSpec::identify_timeout`]).
    pub fn worst_case(&self) -> Duration {
        self.passes()
            .iter()
            .map(|s| {
                let gap = s.map_or(Duration::ZERO, |s| frame_gap(s.baud));
                (self.timeout + gap + PROBE_OVERHEAD) * self.units.len() as u32
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
            "scanning {what}, {} unit id{}: {} probes × {} ms (+ the gap between frames and up to \
             {} ms to reopen the port after silence): at most {:.1} s, plus for each unit that \
             answers its identification reads (given up after {IDENTIFY_GIVE_UP_AFTER} timeouts \
             of {} ms); it only reads, never writes",
            self.units.len(),
            if self.units.len() == 1 { "" } else { "s" },
            self.probes(),
            self.timeout.as_millis(),
            PROBE_OVERHEAD.as_millis(),
            self.worst_case().as_secs_f64(),
            slowest.as_millis(),
        )
    }
}

/// 3.5 characters of 11 bits, at least 1.75 ms (what the agent's bus keeps between frames).
fn frame_gap(baud: u32) -> Duration {
    Duration::from_secs_f64((3.5 * 11.0 / f64::from(baud)).max(0.00175))
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
        // 1976 × (100 ms + 10 ms) = 217.36 s, plus 3.5-character gaps (4 ms at 9600 baud,
        // 2 ms at 19200, 1.75 ms above): 222.1 s.
        assert!(
            s > 217.36 + 1976.0 * 0.00175 && s < 217.36 + 1976.0 * 0.0041,
            "{s}"
        );
        assert!(
            spec.estimate().contains("at most 222.1 s"),
            "{}",
            spec.estimate()
        );
        assert!(spec.estimate().contains("1976 probes × 100 ms"));
    }
}
