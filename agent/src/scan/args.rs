//! `ems-agent scan`'s command line: where to scan (a port, an address, or a bus of the config)
//! and how, resolved into a [`ScanSpec`].

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::identify::MapError;
use super::{Line, ScanError, ScanSpec};
use crate::config::{AgentConfig, BusConfig, Parity};

/// `ems-agent scan`: a serial port (`--port`), a Modbus TCP address (`--tcp`) or a bus of the
/// config (`--bus`, or the config's only Modbus bus).
#[derive(Debug, Clone, clap::Args)]
pub struct ScanArgs {
    /// A bus of the config file (its port or address; its baud rate and parity unless --baud
    /// and --parity are given).
    #[arg(long, conflicts_with_all = ["port", "tcp"])]
    pub bus: Option<String>,
    /// A serial port, e.g. /dev/ttyUSB0 (Modbus RTU).
    #[arg(long, conflicts_with = "tcp")]
    pub port: Option<PathBuf>,
    /// A Modbus TCP device or gateway, host:port.
    #[arg(long, value_name = "HOST:PORT")]
    pub tcp: Option<String>,
    /// Baud rates to try, e.g. 9600,19200 [default on a port: 9600,19200,38400,115200].
    #[arg(long)]
    pub baud: Option<String>,
    /// Parities to try, N, E or O, e.g. N,E [default on a port: N,E].
    #[arg(long)]
    pub parity: Option<String>,
    /// Unit ids, e.g. 1-247, 1-10 or 1,2,30-40.
    #[arg(long, default_value = "1-247")]
    pub units: String,
    /// How long to wait for each probe's answer, ms.
    #[arg(long, default_value_t = 100)]
    pub timeout_ms: u64,
    /// Register maps whose [identify] sections are tried [default: /usr/share/ems/devices if
    /// it exists].
    #[arg(long, value_name = "DIR")]
    pub maps: Option<PathBuf>,
    /// Print JSON instead of TOML.
    #[arg(long)]
    pub json: bool,
}

impl ScanArgs {
    /// What to scan, from the command line and (for `--bus`, or neither `--port` nor `--tcp`) the
    /// config file; with the maps of the maps directory that cannot be used (to warn about).
    pub fn spec(&self, config_path: &Path) -> Result<(ScanSpec, Vec<MapError>), ScanError> {
        let args = self;
        if args.timeout_ms == 0 || args.timeout_ms > 60_000 {
            return Err(ScanError::Argument {
                what: "--timeout-ms",
                text: args.timeout_ms.to_string(),
                reason: "not a probe timeout (1 to 60000 ms)".into(),
            });
        }
        let bauds = args.baud.as_deref().map(super::parse_bauds).transpose()?;
        let parities = args
            .parity
            .as_deref()
            .map(super::parse_parities)
            .transpose()?;
        let rtu = |port: PathBuf, bauds: Vec<u32>, parities: Vec<Parity>| Line::Rtu {
            port,
            settings: super::settings(&bauds, &parities),
        };
        let mut configured = Vec::new();
        let (line, bus_name, bus_configured) = if let Some(port) = &args.port {
            let line = rtu(
                port.clone(),
                bauds.unwrap_or(super::DEFAULT_BAUDS.to_vec()),
                parities.unwrap_or(super::DEFAULT_PARITIES.to_vec()),
            );
            (line, "rs485".to_string(), false)
        } else if let Some(address) = &args.tcp {
            let line = Line::Tcp {
                address: address.clone(),
            };
            (line, "modbus_tcp".to_string(), false)
        } else {
            let config = AgentConfig::load(config_path)?;
            let (name, bus) = match &args.bus {
                Some(name) => {
                    let bus = config.buses.get(name).ok_or_else(|| {
                        ScanError::Usage(format!(
                            "--bus {name}: no such bus in {} (buses: {})",
                            config_path.display(),
                            config.buses.keys().cloned().collect::<Vec<_>>().join(", ")
                        ))
                    })?;
                    (name.clone(), bus.clone())
                }
                None => {
                    let modbus: Vec<_> =
                        config.buses.iter().filter(|(_, b)| b.is_modbus()).collect();
                    match modbus[..] {
                        [(name, bus)] => (name.clone(), bus.clone()),
                        _ => {
                            return Err(ScanError::Usage(format!(
                                "scan: say what to scan: --port, --tcp, or --bus with one of the Modbus buses of {} ({})",
                                config_path.display(),
                                modbus
                                    .iter()
                                    .map(|(n, _)| n.as_str())
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            )));
                        }
                    }
                }
            };
            let line = match bus {
                BusConfig::Rtu {
                    port, baud, parity, ..
                } => rtu(
                    port,
                    bauds.unwrap_or(vec![baud]),
                    parities.unwrap_or(vec![parity]),
                ),
                BusConfig::Tcp { address, .. } => Line::Tcp { address },
                _ => {
                    return Err(ScanError::Usage(format!(
                        "--bus {name}: not a Modbus bus (an I2C bus cannot be scanned)"
                    )));
                }
            };
            configured = config
                .devices
                .iter()
                .map(|(device, d)| super::ConfiguredDevice {
                    name: device.clone(),
                    unit_on_bus: d.unit.filter(|_| d.bus == name),
                    roles: d.roles.clone(),
                })
                .collect();
            (line, name, true)
        };
        if matches!(line, Line::Tcp { .. }) && (args.baud.is_some() || args.parity.is_some()) {
            return Err(ScanError::Usage(
                "--baud and --parity are for a serial line, not Modbus TCP".into(),
            ));
        }
        let max_unit = if matches!(line, Line::Tcp { .. }) {
            255
        } else {
            247
        };
        let maps_dir = args.maps.clone().or_else(|| {
            let shipped = PathBuf::from("/usr/share/ems/devices");
            shipped.is_dir().then_some(shipped)
        });
        let (maps, map_errors) = match &maps_dir {
            Some(dir) => super::load_maps(dir)?,
            None => (Vec::new(), Vec::new()),
        };
        let spec = ScanSpec {
            line,
            units: super::parse_units(&args.units, max_unit)?,
            timeout: Duration::from_millis(args.timeout_ms),
            maps,
            bus_name,
            bus_configured,
            configured,
        };
        Ok((spec, map_errors))
    }
}
