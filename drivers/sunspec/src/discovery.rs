//! Finding a SunSpec device's register map: the `SunS` marker, then the chain of model headers.
//!
//! Per the SunSpec Modbus specification a device places the marker 0x5375 0x6E53 ("SunS") at
//! one of the base addresses 40000, 0 or 50000 (tried in that order), followed by models, each a
//! header (ID, length L in registers) and L registers, until the end model ID 0xFFFF.

use ems_driver_sdk::regs::{RegisterKind, ascii_from, read_registers};
use ems_driver_sdk::{Bus, BusError, DriverError, LogLevel};

/// "SunS".
pub const MARKER: [u16; 2] = [0x5375, 0x6E53];
/// Where the marker may be, in the order the specification recommends probing.
pub const BASES: [u16; 3] = [40000, 0, 50000];
/// Stops a corrupt chain from looping; real devices have well under 30 models.
const MAX_MODELS: usize = 100;

/// One model in the chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModelRef {
    pub id: u16,
    /// Address of the model's ID register.
    pub addr: u16,
    /// L: the number of registers after the two header registers.
    pub len: u16,
}

impl ModelRef {
    /// Registers including the header.
    pub fn size(&self) -> u16 {
        self.len + 2
    }
}

/// A discovered device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    pub base: u16,
    pub models: Vec<ModelRef>,
}

impl Layout {
    /// The first model with this ID (SunSpec allows repeats; the first is the device's own).
    pub fn find(&self, id: u16) -> Option<ModelRef> {
        self.models.iter().copied().find(|m| m.id == id)
    }
}

/// Finds the marker and walks the chain.
pub fn discover(bus: &mut dyn Bus, unit: u8) -> Result<Layout, DriverError> {
    let mut all_timed_out = true;
    let mut last_error = None;
    let mut base_found = None;
    for base in BASES {
        match read_registers(bus, RegisterKind::Holding, unit, base, 2) {
            Ok(words) if words == MARKER => {
                base_found = Some(base);
                break;
            }
            Ok(_) => all_timed_out = false,
            Err(e @ DriverError::Bus { .. }) if e.is_exception() => {
                all_timed_out = false;
                last_error = Some(e);
            }
            Err(
                e @ DriverError::Bus {
                    source: BusError::Timeout,
                    ..
                },
            ) => last_error = Some(e),
            Err(e @ DriverError::ShortAnswer { .. }) => {
                all_timed_out = false;
                last_error = Some(e);
            }
            Err(e) => return Err(e),
        }
    }
    let Some(base) = base_found else {
        if all_timed_out && let Some(e) = last_error {
            return Err(e);
        }
        return Err(DriverError::Device(format!(
            "no SunSpec marker \"SunS\" at 40000, 0 or 50000 on unit {unit}"
        )));
    };

    let mut models = Vec::new();
    let mut addr = base + 2;
    while models.len() < MAX_MODELS {
        let header = match read_registers(bus, RegisterKind::Holding, unit, addr, 2) {
            Ok(h) => h,
            Err(e) if e.is_exception() => {
                bus.log(
                    LogLevel::Warn,
                    &format!("sunspec: model chain ends at {addr} without end model ({e})"),
                );
                break;
            }
            Err(e) => return Err(e),
        };
        let (id, len) = (header[0], header[1]);
        if id == 0xFFFF {
            break;
        }
        models.push(ModelRef { id, addr, len });
        addr = addr
            .checked_add(2)
            .and_then(|a| a.checked_add(len))
            .ok_or_else(|| {
                DriverError::Device(format!(
                    "SunSpec model {id} at {addr} with length {len} runs past address 65535"
                ))
            })?;
    }
    let layout = Layout { base, models };
    log_identity(bus, unit, &layout);
    Ok(layout)
}

/// Logs what was found, with the common model's manufacturer, model and serial number when
/// they can be read. Purely informative: failures are ignored.
fn log_identity(bus: &mut dyn Bus, unit: u8, layout: &Layout) {
    let ids: Vec<String> = layout.models.iter().map(|m| m.id.to_string()).collect();
    let mut line = format!(
        "sunspec: unit {unit} base {} models [{}]",
        layout.base,
        ids.join(", ")
    );
    if let Some(common) = layout.find(1).filter(|m| m.len >= 64)
        && let Ok(w) = read_registers(bus, RegisterKind::Holding, unit, common.addr + 2, 64)
    {
        // Model 1: Mn at 0..16, Md at 16..32, Opt 32..40, Vr 40..48, SN 48..64.
        line.push_str(&format!(
            ": {} {} version {} serial {}",
            ascii_from(&w[0..16]),
            ascii_from(&w[16..32]),
            ascii_from(&w[40..48]),
            ascii_from(&w[48..64])
        ));
    }
    bus.log(LogLevel::Info, &line);
}
