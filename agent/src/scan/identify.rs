//! What a unit that answers is: the SunSpec marker and model 1 strings, the Eastron meter
//! signature, and the `[identify]` sections of `modbus-map` register maps. Pure decisions over a
//! [`ReadUnit`], so they are unit-tested on a `MemoryBus` image; the scan gives them the line.
//!
//! Everything here only reads: [`ReadUnit`] has no other operation.

use std::path::{Path, PathBuf};

use ems_driver_sdk::regs::{RegisterKind, WordOrder, ascii_from, f32_from, u32_from};
use ems_driver_sdk::{BusError, Role};
use serde::{Deserialize, Serialize};

/// Reads registers of one unit; the only thing identification can do.
pub(crate) trait ReadUnit {
    async fn read(
        &mut self,
        kind: RegisterKind,
        addr: u16,
        count: u16,
    ) -> Result<Vec<u16>, BusError>;
}

/// "SunS".
const SUNSPEC_MARKER: [u16; 2] = [0x5375, 0x6E53];
/// Where a SunSpec device may put its marker: the specification's bases 40000, 50000 and 0, and
/// one register further for devices whose documentation counts from 1 and that got it wrong.
/// The `sunspec` driver looks at 40000, 0 and 50000 only (see [`Identity::note`]).
const SUNSPEC_BASES: [u16; 6] = [40000, 40001, 50000, 50001, 0, 1];
/// Plausible line-to-neutral voltage, V, and grid frequency, Hz, for the meter signature.
const VOLTAGE_V: (f32, f32) = (80.0, 300.0);
const FREQUENCY_HZ: (f32, f32) = (45.0, 65.0);

/// What a unit was recognised as, and the device section that would use it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Identity {
    /// `sunspec`, `eastron` or `map`: which test recognised it.
    pub by: &'static str,
    /// The driver for its `[devices.*]` section.
    pub driver: String,
    /// The driver's options (a `modbus-map` device: `map = "<file>"`).
    pub options: toml::Table,
    pub roles: Vec<Role>,
    pub manufacturer: Option<String>,
    pub model: Option<String>,
    pub serial: Option<String>,
    /// What was seen, for a person: where the marker was, the values of the signature.
    pub evidence: String,
    /// A caveat to print with the section (e.g. a SunSpec base the driver does not look at).
    pub note: Option<String>,
}

/// SunSpec: the marker at one of [`SUNSPEC_BASES`], then model 1 (manufacturer, model, serial)
/// and the model chain (battery models 124/802 add the `battery` role).
pub(crate) async fn sunspec(r: &mut impl ReadUnit) -> Option<Identity> {
    let mut base = None;
    for b in SUNSPEC_BASES {
        if let Ok(w) = r.read(RegisterKind::Holding, b, 2).await
            && w == SUNSPEC_MARKER
        {
            base = Some(b);
            break;
        }
    }
    let base = base?;
    let (mut manufacturer, mut model, mut serial) = (None, None, None);
    let mut roles = vec![Role::Inverter];
    // The model chain: ID and length of each model, up to the end model 0xFFFF.
    let mut addr = base.checked_add(2)?;
    for _ in 0..50 {
        let Ok(head) = r.read(RegisterKind::Holding, addr, 2).await else {
            break;
        };
        let [id, len] = head[..] else { break };
        // A corrupt chain must not run past register 65535.
        let Some(body) = addr.checked_add(2) else {
            break;
        };
        if id == 0xFFFF {
            break;
        }
        if id == 1
            && len >= 64
            && let Ok(w) = r.read(RegisterKind::Holding, body, 64).await
            && w.len() == 64
        {
            let text = |range: std::ops::Range<usize>| {
                Some(ascii_from(&w[range]).trim().to_string()).filter(|s| !s.is_empty())
            };
            manufacturer = text(0..16);
            model = text(16..32);
            serial = text(48..64);
        }
        if matches!(id, 124 | 802) && !roles.contains(&Role::Battery) {
            roles.push(Role::Battery);
        }
        let Some(next) = body.checked_add(len) else {
            break;
        };
        addr = next;
    }
    let note = (![40000, 50000, 0].contains(&base)).then(|| {
        format!(
            "the SunSpec marker is at {base}, one register after a standard base: the `sunspec` \
             driver looks at 40000, 0 and 50000 only, so it will not find this device"
        )
    });
    Some(Identity {
        by: "sunspec",
        driver: "sunspec".into(),
        options: toml::Table::new(),
        roles,
        manufacturer,
        model,
        serial,
        evidence: format!("SunSpec marker \"SunS\" at holding register {base}"),
        note,
    })
}

/// An Eastron SDM meter's signature: float32 input registers, high word first, with a plausible
/// phase 1 voltage at 0x0000 and frequency at 0x0046 (the `sdm630` driver's map). Phases 2 and 3
/// plausible too: a three-phase SDM630; otherwise single phase, the `sdm120` model.
pub(crate) async fn eastron(r: &mut impl ReadUnit) -> Option<Identity> {
    let v = r.read(RegisterKind::Input, 0x0000, 6).await.ok()?;
    let f = r.read(RegisterKind::Input, 0x0046, 2).await.ok()?;
    if v.len() != 6 || f.len() != 2 {
        return None;
    }
    let volts: Vec<f32> = (0..3)
        .map(|i| f32_from([v[2 * i], v[2 * i + 1]], WordOrder::HighFirst))
        .collect();
    let hz = f32_from([f[0], f[1]], WordOrder::HighFirst);
    let within = |x: f32, (lo, hi): (f32, f32)| x >= lo && x <= hi;
    if !within(volts[0], VOLTAGE_V) || !within(hz, FREQUENCY_HZ) {
        return None;
    }
    let three_phase = volts.iter().all(|&x| within(x, VOLTAGE_V));
    let mut options = toml::Table::new();
    let model = if three_phase {
        "SDM630"
    } else {
        options.insert("model".into(), "sdm120".into());
        "SDM120"
    };
    Some(Identity {
        by: "eastron",
        driver: "sdm630".into(),
        options,
        roles: vec![Role::GridMeter],
        manufacturer: Some("Eastron".into()),
        model: Some(model.into()),
        serial: None,
        evidence: format!(
            "Eastron meter signature: input registers 0x0000.. {} V, 0x0046 {hz:.2} Hz",
            volts
                .iter()
                .map(|x| format!("{x:.1}"))
                .collect::<Vec<_>>()
                .join("/")
        ),
        note: Some(
            "recognised by its readings, not by an identification register: an Eastron meter \
             (or another meter with Eastron's map); SDM72: set options.model = \"sdm72\""
                .into(),
        ),
    })
}

/// The `[identify]` section of a register map (read by the scan; the `modbus-map` driver
/// ignores it):
///
/// ```toml
/// [identify]
/// roles = ["grid_meter"]          # what a device this map recognises is used as
/// [[identify.register]]           # every register must match
/// function = "input"              # "input" or "holding"
/// address = 0x0046
/// type = "f32"                    # u16 i16 u32 i32 f32 string
/// word_order = "high_first"       # 32-bit types
/// range = [45.0, 65.0]            # a number within, after `scale` (default 1)
/// # equals = 112                  # or exactly this raw value
/// # prefix = "Growatt"            # or, for type = "string" (with `count`), text starting so
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MapIdentify {
    pub roles: Vec<Role>,
    pub register: Vec<IdentifyRegister>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentifyRegister {
    pub function: RegisterKind,
    pub address: u16,
    #[serde(rename = "type")]
    pub data_type: String,
    #[serde(default)]
    pub word_order: WordOrder,
    pub count: Option<u16>,
    pub scale: Option<f64>,
    pub range: Option<[f64; 2]>,
    pub equals: Option<i64>,
    pub prefix: Option<String>,
}

/// A register map with an `[identify]` section.
#[derive(Debug, Clone)]
pub struct MapSignature {
    pub path: PathBuf,
    pub name: Option<String>,
    pub identify: MapIdentify,
}

/// Why a map's `[identify]` section cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("register map {path}: {reason}")]
pub struct MapError {
    pub path: String,
    pub reason: String,
}

impl IdentifyRegister {
    fn width(&self) -> Result<u16, String> {
        match self.data_type.as_str() {
            "u16" | "i16" => Ok(1),
            "u32" | "i32" | "f32" => Ok(2),
            "string" => match self.count {
                Some(n @ 1..=125) => Ok(n),
                _ => Err("a string needs `count` (1 to 125 registers)".into()),
            },
            other => Err(format!(
                "type {other:?} is not one of u16 i16 u32 i32 f32 string"
            )),
        }
    }

    fn check(&self) -> Result<(), String> {
        self.width()?;
        let tests = [
            self.range.is_some(),
            self.equals.is_some(),
            self.prefix.is_some(),
        ];
        if tests.iter().filter(|t| **t).count() != 1 {
            return Err(format!(
                "register {}: exactly one of `range`, `equals`, `prefix`",
                self.address
            ));
        }
        if self.prefix.is_some() != (self.data_type == "string") {
            return Err(format!(
                "register {}: `prefix` goes with type = \"string\", and only with it",
                self.address
            ));
        }
        Ok(())
    }

    /// Whether `words` (this register's) match.
    fn matches(&self, words: &[u16]) -> bool {
        if let Some(prefix) = &self.prefix {
            return ascii_from(words).trim_start().starts_with(prefix.as_str());
        }
        let pair = || [words[0], words[1]];
        let raw: f64 = match self.data_type.as_str() {
            "u16" => f64::from(words[0]),
            "i16" => f64::from(words[0] as i16),
            "u32" => f64::from(u32_from(pair(), self.word_order)),
            "i32" => f64::from(u32_from(pair(), self.word_order) as i32),
            "f32" => f64::from(f32_from(pair(), self.word_order)),
            _ => return false,
        };
        if let Some(equals) = self.equals {
            return raw == equals as f64;
        }
        let value = raw * self.scale.unwrap_or(1.0);
        matches!(self.range, Some([lo, hi]) if value >= lo && value <= hi)
    }
}

impl MapSignature {
    /// The map at `path` if it has an `[identify]` section; `Ok(None)` without one.
    pub fn load(path: &Path) -> Result<Option<MapSignature>, MapError> {
        let fail = |reason: String| MapError {
            path: path.display().to_string(),
            reason,
        };
        let text = std::fs::read_to_string(path).map_err(|e| fail(e.to_string()))?;
        let table: toml::Table = toml::from_str(&text).map_err(|e| fail(e.to_string()))?;
        let Some(identify) = table.get("identify") else {
            return Ok(None);
        };
        let identify: MapIdentify = identify
            .clone()
            .try_into()
            .map_err(|e: toml::de::Error| fail(format!("[identify]: {}", e.message())))?;
        if identify.register.is_empty() {
            return Err(fail("[identify] has no `register`".into()));
        }
        for reg in &identify.register {
            reg.check().map_err(|e| fail(format!("[identify]: {e}")))?;
        }
        let name = table
            .get("device")
            .and_then(|d| d.get("name"))
            .and_then(|n| n.as_str())
            .map(str::to_string);
        Ok(Some(MapSignature {
            path: path.to_path_buf(),
            name,
            identify,
        }))
    }

    /// Every `*.toml` in `dir` that has an `[identify]` section, by file name, and the errors
    /// of those whose section (or file) cannot be used. Only an unreadable `dir` fails.
    pub fn load_dir(dir: &Path) -> Result<(Vec<MapSignature>, Vec<MapError>), MapError> {
        // Absolute, so that a printed `map = "…"` works from the agent's working directory too.
        let dir = &std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
        let entries = std::fs::read_dir(dir).map_err(|e| MapError {
            path: dir.display().to_string(),
            reason: e.to_string(),
        })?;
        let mut paths: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
            .collect();
        paths.sort();
        let (mut maps, mut errors) = (Vec::new(), Vec::new());
        for p in paths {
            match MapSignature::load(&p) {
                Ok(map) => maps.extend(map),
                Err(e) => errors.push(e),
            }
        }
        Ok((maps, errors))
    }

    /// Whether the section checks an identification register (`equals` or `prefix`), not only
    /// values in ranges.
    pub fn is_explicit(&self) -> bool {
        self.identify
            .register
            .iter()
            .any(|r| r.equals.is_some() || r.prefix.is_some())
    }

    /// Whether the unit behind `r` matches every register of the section.
    pub(crate) async fn identify(&self, r: &mut impl ReadUnit) -> Option<Identity> {
        let mut seen = Vec::new();
        for reg in &self.identify.register {
            let width = reg.width().ok()?;
            let words = r.read(reg.function, reg.address, width).await.ok()?;
            if words.len() != usize::from(width) || !reg.matches(&words) {
                return None;
            }
            seen.push(format!("{} {}", kind_name(reg.function), reg.address));
        }
        let mut options = toml::Table::new();
        options.insert("map".into(), self.path.display().to_string().into());
        Some(Identity {
            by: "map",
            driver: "modbus-map".into(),
            options,
            roles: self.identify.roles.clone(),
            manufacturer: None,
            model: self.name.clone(),
            serial: None,
            evidence: format!(
                "register map {}: [identify] matches ({})",
                self.path.display(),
                seen.join(", ")
            ),
            note: None,
        })
    }
}

fn kind_name(kind: RegisterKind) -> &'static str {
    match kind {
        RegisterKind::Holding => "holding",
        RegisterKind::Input => "input",
    }
}

/// Every identity of the unit behind `r`, the strongest first: SunSpec (an explicit marker),
/// maps that check an identification register (`equals` or `prefix`), the Eastron signature,
/// then maps that only check values in ranges (a signature as weak as Eastron's).
pub(crate) async fn identify(r: &mut impl ReadUnit, maps: &[MapSignature]) -> Vec<Identity> {
    let mut out = Vec::new();
    out.extend(sunspec(r).await);
    for map in maps.iter().filter(|m| m.is_explicit()) {
        out.extend(map.identify(r).await);
    }
    out.extend(eastron(r).await);
    for map in maps.iter().filter(|m| !m.is_explicit()) {
        out.extend(map.identify(r).await);
    }
    out
}

#[cfg(test)]
mod tests;
