//! ems driver `sunspec`: any SunSpec Modbus device: inverters, hybrid inverters with storage,
//! batteries.
//!
//! Sources: SunSpec Alliance "SunSpec Modbus" specification (discovery, model chain, point types
//! and their "not implemented" values, scale factors) and the SunSpec model definitions
//! (`models` repository, `model_1`, `model_101`..`model_103`, `model_124`, `model_802`), whose
//! point offsets are reproduced in [`models`].
//!
//! What it does:
//! - Discovery ([`discovery`]): the `SunS` marker at 40000, 0, then 50000 (a timeout or
//!   exception at one base moves on to the next), then the model chain up to the end model
//!   0xFFFF. Done on the first call and again when a model header no longer matches.
//! - Poll: reads the inverter model (101/102/103), storage model 124 and battery model 802 when
//!   the device has them, merged into as few reads as the 125-register limit allows (registers
//!   between two wanted models belong to other models and always exist). A model the device
//!   refuses with a Modbus exception is absent from the readings; a transport failure fails the
//!   poll. Sentinels and scale factors per [`point`].
//! - Readings: inverter AC power `W` (+ = into the AC side, as ems), phase voltages and their
//!   average, frequency, operating state `St` and `Evt1` flags; `DCW` as PV power on devices
//!   without storage; from 124 `ChaState` (SoC %) and `InBatV`; from 802 SoC, SoH, voltage,
//!   current, power, BMS current limits `AChaMax`/`ADisChaMax`, `State` and `Evt1` alarms. Model
//!   802 has no temperature points (they are in the lithium-ion string and module models
//!   803/804), so temperatures stay absent.
//! - Signs: in model 802 `A` and `W` follow SunSpec's DER convention, positive = power out of the
//!   device, i.e. discharging; the driver negates them so + = charging. Devices that publish the
//!   opposite can be corrected with `charge_positive = true`.
//! - Setpoints ([`control`]): through model 124 `StorCtl_Mod`, `InWRte`/`OutWRte` in percent of
//!   `WChaMax` and the revert timeout `InOutWRte_RvrtTms`, so the device drops the setpoint by
//!   itself when the agent stops refreshing it. The revert timeout is written first, and only
//!   when the device holds another value; likewise `StorCtl_Mod`. The rates are written on every
//!   call (each write restarts the device's revert timer). Model 124 as the last poll read it
//!   (at most [`STORAGE_FRESH`] old) supplies `WChaMax`, the scale factor and the values the
//!   device holds, so a poll followed by a setpoint costs the bus one write in steady state.
//! - Alarm reset: writes 1 to model 802 `AlmRst`.
//!
//! # Options
//! - `revert_timeout_s` (integer, 1..=65534, default 60): `InOutWRte_RvrtTms` for setpoints. The
//!   agent must refresh a setpoint faster than this.
//! - `charge_positive` (bool, default false): the device's model 802 uses + = charging.
//!
//! # Layout
//! - [`point`]: sentinels and scale factors.
//! - [`discovery`]: marker, model chain, [`discovery::Layout`].
//! - [`models`]: point offsets and decoding of 101-103, 124, 802.
//! - [`control`]: setpoint → model 124 registers (pure).
//! - this file: the [`SunSpec`] driver, block planning, export.

pub mod control;
pub mod discovery;
pub mod models;
pub mod point;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use ems_driver_sdk::options::require_modbus_unit;
use ems_driver_sdk::plan::{Span, plan};
use ems_driver_sdk::regs::{MAX_READ_REGISTERS, RegisterKind, read_registers};
use ems_driver_sdk::{
    Bus, ConfigError, DeviceAddress, Driver, DriverError, DriverInfo, LogLevel, Options, Readings,
    Role,
};

use discovery::{Layout, ModelRef};
use models::{battery, inverter, storage};

/// One SunSpec device on one Modbus unit.
#[derive(Debug)]
pub struct SunSpec {
    unit: u8,
    revert_s: u16,
    charge_positive: bool,
    /// The discovered register map; `None` until the first call or after the chain changed.
    layout: Option<Layout>,
    /// Model 124 as last read; cleared when a poll starts, so a failed poll leaves nothing old.
    storage: Option<StorageRead>,
}

/// How long a poll's reading of model 124 stands in for a fresh read before a setpoint.
pub const STORAGE_FRESH: Duration = Duration::from_secs(5);

/// One reading of model 124 (body only, without ID and L), kept for the setpoint that follows.
#[derive(Debug, Clone)]
struct StorageRead {
    addr: u16,
    body: Vec<u16>,
    at: Instant,
}

impl SunSpec {
    fn layout(&mut self, bus: &mut dyn Bus) -> Result<Layout, DriverError> {
        if let Some(layout) = &self.layout {
            return Ok(layout.clone());
        }
        let layout = discovery::discover(bus, self.unit)?;
        self.layout = Some(layout.clone());
        Ok(layout)
    }

    /// Reads the given models (whole blocks, header included), merged into as few reads as the
    /// 125-register limit allows. Models in a block the device refuses with an exception are left
    /// out of the result; any other failure is returned.
    fn read_models(
        &mut self,
        bus: &mut dyn Bus,
        wanted: &[ModelRef],
    ) -> Result<BTreeMap<u16, Vec<u16>>, DriverError> {
        let mut out = BTreeMap::new();
        for block in plan_blocks(wanted) {
            let start = block[0].addr;
            let end = block
                .iter()
                .map(|m| m.addr + m.size())
                .max()
                .unwrap_or(start);
            let words =
                match read_registers(bus, RegisterKind::Holding, self.unit, start, end - start) {
                    Ok(words) => words,
                    Err(e) if e.is_exception() => {
                        let ids: Vec<String> = block.iter().map(|m| m.id.to_string()).collect();
                        bus.log(
                            LogLevel::Warn,
                            &format!("sunspec: models [{}] refused: {e}", ids.join(", ")),
                        );
                        continue;
                    }
                    Err(e) => return Err(e),
                };
            for m in block {
                let at = (m.addr - start) as usize;
                let data = &words[at..at + m.size() as usize];
                if data[0] != m.id || data[1] != m.len {
                    self.layout = None;
                    return Err(DriverError::Device(format!(
                        "SunSpec model {} at {} now reads as ID {} length {}; the model chain \
                         changed, it will be discovered again",
                        m.id, m.addr, data[0], data[1]
                    )));
                }
                out.insert(m.id, data.to_vec());
            }
        }
        if out.is_empty() && !wanted.is_empty() {
            // Every model the chain promised is refused: the device is no longer what was
            // discovered (replaced, or reconfigured).
            self.layout = None;
            return Err(DriverError::Device(
                "the device refused every SunSpec model it announced; it will be discovered again"
                    .into(),
            ));
        }
        Ok(out)
    }

    /// Model 124's body: the last poll's reading while it is fresh, else read now.
    fn storage_body(&mut self, bus: &mut dyn Bus, m: ModelRef) -> Result<Vec<u16>, DriverError> {
        if let Some(s) = &self.storage
            && s.addr == m.addr
            && s.at.elapsed() < STORAGE_FRESH
        {
            return Ok(s.body.clone());
        }
        let words = self.read_models(bus, &[m])?;
        let block = words.get(&storage::ID).ok_or_else(|| {
            DriverError::Unsupported("the device refused its storage model 124".into())
        })?;
        Ok(block[2..].to_vec())
    }

    /// The model a control action needs, or `Unsupported` naming it.
    fn control_model(
        &mut self,
        bus: &mut dyn Bus,
        id: u16,
        min_len: u16,
        what: &str,
    ) -> Result<ModelRef, DriverError> {
        self.layout(bus)?
            .find(id)
            .filter(|m| m.len >= min_len)
            .ok_or_else(|| {
                DriverError::Unsupported(format!("{what}: the device has no SunSpec model {id}"))
            })
    }
}

/// Groups models (in address order) into read blocks of at most [`MAX_READ_REGISTERS`], planned
/// by the SDK's [`plan`] (any gap: a model chain has none); a model longer than that is a block
/// of its own, split by [`read_registers`].
fn plan_blocks(wanted: &[ModelRef]) -> Vec<Vec<ModelRef>> {
    let span = |m: &ModelRef| Span {
        kind: RegisterKind::Holding,
        start: m.addr,
        count: m.size(),
    };
    let spans: Vec<Span> = wanted.iter().map(span).collect();
    let mut models = wanted.to_vec();
    models.sort_by_key(|m| m.addr);
    let reads = plan(&spans, u16::MAX, MAX_READ_REGISTERS);
    let mut blocks: Vec<Vec<ModelRef>> = vec![Vec::new(); reads.len()];
    for m in models {
        // The planner puts every span within a read; the first such read gets the model.
        match reads.iter().position(|r| r.contains(&span(&m))) {
            Some(read) => blocks[read].push(m),
            None => blocks.push(vec![m]),
        }
    }
    blocks.retain(|block| !block.is_empty());
    blocks
}

impl Driver for SunSpec {
    const INFO: DriverInfo = DriverInfo {
        name: "sunspec",
        version: env!("CARGO_PKG_VERSION"),
        roles: &[Role::Inverter, Role::Battery, Role::PvMeter],
    };

    fn new(options: &toml::Table, address: DeviceAddress) -> Result<Self, ConfigError> {
        let mut o = Options::new(options);
        let revert_s = match o.i64("revert_timeout_s")? {
            None => 60,
            Some(s @ 1..=65534) => s as u16,
            Some(s) => {
                return Err(ConfigError::new(
                    "revert_timeout_s",
                    format!(
                        "{s} is outside 1..=65534 s (0 would disable the safety revert, 65535 \
                         means \"not implemented\" in SunSpec)"
                    ),
                ));
            }
        };
        let charge_positive = o.bool("charge_positive")?.unwrap_or(false);
        o.finish()?;
        Ok(SunSpec {
            unit: require_modbus_unit(address)?,
            revert_s,
            charge_positive,
            layout: None,
            storage: None,
        })
    }

    fn poll(&mut self, bus: &mut dyn Bus) -> Result<Readings, DriverError> {
        self.storage = None;
        let layout = self.layout(bus)?;
        let inverter_model = inverter::IDS
            .iter()
            .filter_map(|id| layout.find(*id))
            .find(|m| m.len >= inverter::LEN);
        let storage_model = layout.find(storage::ID).filter(|m| m.len >= storage::LEN);
        let battery_model = layout.find(battery::ID).filter(|m| m.len >= battery::LEN);
        let wanted: Vec<ModelRef> = [inverter_model, storage_model, battery_model]
            .into_iter()
            .flatten()
            .collect();
        let blocks = self.read_models(bus, &wanted)?;

        let mut r = Readings::default();
        let has_storage = storage_model.is_some() || battery_model.is_some();
        if let Some(data) = inverter_model.and_then(|m| blocks.get(&m.id)) {
            models::decode_inverter(&data[2..], &mut r, !has_storage);
        }
        if let (Some(m), Some(data)) = (storage_model, blocks.get(&storage::ID)) {
            models::decode_storage(&data[2..], &mut r);
            self.storage = Some(StorageRead {
                addr: m.addr,
                body: data[2..].to_vec(),
                at: Instant::now(),
            });
        }
        if let Some(data) = blocks.get(&battery::ID) {
            models::decode_battery(&data[2..], &mut r, self.charge_positive);
        }
        Ok(r)
    }

    fn set_battery_power(&mut self, bus: &mut dyn Bus, power_w: f64) -> Result<(), DriverError> {
        let m = self.control_model(bus, storage::ID, storage::LEN, "battery setpoint")?;
        let body = self.storage_body(bus, m)?;
        use storage::*;
        let w_cha_max = point::scaled_u16(body[W_CHA_MAX], body[W_CHA_MAX_SF])
            .filter(|w| *w > 0.0)
            .ok_or_else(|| {
                DriverError::Device(
                    "model 124 WChaMax is not implemented or zero; setpoints are relative to it"
                        .into(),
                )
            })?;
        let sf = point::sf(body[IN_OUT_W_RTE_SF]).ok_or_else(|| {
            DriverError::Device("model 124 InOutWRte_SF is not implemented".into())
        })?;
        let sp = control::storage_setpoint(power_w, w_cha_max, sf, self.revert_s)?;
        if sp.clamped {
            bus.log(
                LogLevel::Warn,
                &format!("sunspec: {power_w} W is beyond WChaMax {w_cha_max} W; using 100 %"),
            );
        }
        let base = m.addr + 2;
        let unit = self.unit;
        // Until every write below succeeded, the next setpoint reads model 124 again.
        self.storage = None;
        if body[RVRT_TMS] != sp.revert_s {
            bus.write_single_register(unit, base + RVRT_TMS as u16, sp.revert_s)
                .map_err(DriverError::bus("write model 124 InOutWRte_RvrtTms"))?;
        }
        debug_assert_eq!(IN_W_RTE, OUT_W_RTE + 1);
        let rates = [sp.out_w_rte as u16, sp.in_w_rte as u16];
        bus.write_multiple_registers(unit, base + OUT_W_RTE as u16, &rates)
            .map_err(DriverError::bus("write model 124 OutWRte/InWRte"))?;
        if body[STOR_CTL_MOD] != sp.stor_ctl_mod {
            bus.write_single_register(unit, base + STOR_CTL_MOD as u16, sp.stor_ctl_mod)
                .map_err(DriverError::bus("write model 124 StorCtl_Mod"))?;
        }
        let mut body = body;
        body[RVRT_TMS] = sp.revert_s;
        body[OUT_W_RTE] = rates[0];
        body[IN_W_RTE] = rates[1];
        body[STOR_CTL_MOD] = sp.stor_ctl_mod;
        self.storage = Some(StorageRead {
            addr: m.addr,
            body,
            at: Instant::now(),
        });
        Ok(())
    }

    fn reset_alarms(&mut self, bus: &mut dyn Bus) -> Result<(), DriverError> {
        let m = self.control_model(bus, battery::ID, battery::LEN, "alarm reset")?;
        bus.write_single_register(self.unit, m.addr + 2 + battery::ALM_RST as u16, 1)
            .map_err(DriverError::bus("write model 802 AlmRst"))
    }
}

ems_driver_sdk::export_driver!(SunSpec);

#[cfg(test)]
mod tests;
