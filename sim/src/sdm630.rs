//! Eastron SDM630 three-phase meter, as a register image built from the site.
//!
//! Source: Eastron "SDM630 Modbus Protocol" (V1.5 / Smart meter register map): input registers
//! (function 04), IEEE-754 float32 in two registers, high word first; power + = import.
//! Addresses below are 0-based (the document's 30001 is address 0).

use crate::physics::Site;
use crate::rtu::Exception;

/// Last register address of the map we answer (the document's range ends at 0x0180).
const LAST: u16 = 0x017F;

/// Values by float32 start address.
fn values(site: &Site) -> Vec<(u16, f32)> {
    let v = site.grid_voltage_v;
    let p_total = site.grid_w();
    let p = p_total / 3.0;
    let i = p / v;
    let pf = if p_total == 0.0 {
        1.0
    } else {
        p_total.signum()
    };
    vec![
        (0x0000, v as f32),
        (0x0002, (v + 0.4) as f32),
        (0x0004, (v - 0.3) as f32),
        (0x0006, i.abs() as f32),
        (0x0008, i.abs() as f32),
        (0x000A, i.abs() as f32),
        (0x000C, p as f32),
        (0x000E, p as f32),
        (0x0010, p as f32),
        (0x0012, p.abs() as f32),
        (0x0014, p.abs() as f32),
        (0x0016, p.abs() as f32),
        (0x001E, pf as f32),
        (0x0020, pf as f32),
        (0x0022, pf as f32),
        (0x002A, (v + 0.0333) as f32),
        (0x002E, i.abs() as f32),
        (0x0030, (3.0 * i.abs()) as f32),
        (0x0034, p_total as f32),
        (0x0038, p_total.abs() as f32),
        (0x003E, pf as f32),
        (0x0046, site.grid_frequency_hz as f32),
        (0x0048, site.import_kwh as f32),
        (0x004A, site.export_kwh as f32),
        (0x00C8, (v * 3f64.sqrt()) as f32),
        (0x00CA, (v * 3f64.sqrt()) as f32),
        (0x00CC, (v * 3f64.sqrt()) as f32),
        (0x0156, (site.import_kwh + site.export_kwh) as f32),
    ]
}

/// Reads `count` input registers from `addr`. Unused addresses inside the map read 0, as the
/// meter does; beyond it: exception 2.
pub fn read_input(site: &Site, addr: u16, count: u16) -> Result<Vec<u16>, Exception> {
    let end = addr as u32 + count as u32 - 1;
    if end > LAST as u32 {
        return Err(2);
    }
    let mut regs = vec![0u16; count as usize];
    for (start, value) in values(site) {
        let bits = value.to_bits();
        for (k, word) in [(bits >> 16) as u16, bits as u16].into_iter().enumerate() {
            let a = start as u32 + k as u32;
            if a >= addr as u32 && a <= end {
                regs[(a - addr as u32) as usize] = word;
            }
        }
    }
    Ok(regs)
}
