//! Turning a battery power setpoint into SunSpec model 124 register values. Pure: no bus.
//!
//! Model 124 limits the battery's charge rate to `InWRte` and its discharge rate to `OutWRte`,
//! both in percent of `WChaMax`, when the `CHARGE` (bit 0) and `DISCHARGE` (bit 1) bits of
//! `StorCtl_Mod` are set. A negative limit reverses direction, so the window
//! `-InWRte ≤ discharge ≤ OutWRte` pins the battery to one power: to charge at x % the driver
//! sets `InWRte = x`, `OutWRte = -x`; to discharge at x %, `OutWRte = x`, `InWRte = -x`.
//! `InOutWRte_RvrtTms` makes the device drop the limits after that many seconds unless they are
//! written again, so a dead agent cannot leave the battery running.

use ems_driver_sdk::DriverError;

/// `StorCtl_Mod` with both the charge and the discharge limit active.
pub const STOR_CTL_MOD_CHARGE_AND_DISCHARGE: u16 = 0b11;

/// The model 124 registers for one setpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StorageSetpoint {
    /// `OutWRte`, raw (percent of WChaMax × 10^-InOutWRte_SF).
    pub out_w_rte: i16,
    /// `InWRte`, raw.
    pub in_w_rte: i16,
    pub stor_ctl_mod: u16,
    /// `InOutWRte_RvrtTms`, s.
    pub revert_s: u16,
    /// The setpoint was beyond WChaMax and was cut to 100 %.
    pub clamped: bool,
}

/// Computes the registers for `power_w` (+ = charge) on a device with `w_cha_max_w` and the
/// rate scale factor `in_out_sf`.
pub fn storage_setpoint(
    power_w: f64,
    w_cha_max_w: f64,
    in_out_sf: i32,
    revert_s: u16,
) -> Result<StorageSetpoint, DriverError> {
    if !power_w.is_finite() {
        return Err(DriverError::InvalidSetpoint(format!(
            "{power_w} W is not a number"
        )));
    }
    let pct = power_w / w_cha_max_w * 100.0;
    let clamped = pct.abs() > 100.0;
    let pct = pct.clamp(-100.0, 100.0);
    let raw = (pct.abs() / 10f64.powi(in_out_sf)).round();
    if raw > f64::from(i16::MAX) {
        return Err(DriverError::Device(format!(
            "InOutWRte_SF {in_out_sf} cannot express {pct:.1} % in an int16 register"
        )));
    }
    let raw = raw as i16;
    let (in_w_rte, out_w_rte) = if pct >= 0.0 { (raw, -raw) } else { (-raw, raw) };
    Ok(StorageSetpoint {
        out_w_rte,
        in_w_rte,
        stor_ctl_mod: STOR_CTL_MOD_CHARGE_AND_DISCHARGE,
        revert_s,
        clamped,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charge_discharge_and_hold() {
        let sp = storage_setpoint(2500.0, 5000.0, -2, 60).unwrap();
        assert_eq!(
            (sp.in_w_rte, sp.out_w_rte, sp.clamped),
            (5000, -5000, false)
        );
        let sp = storage_setpoint(-1000.0, 5000.0, 0, 60).unwrap();
        assert_eq!((sp.in_w_rte, sp.out_w_rte), (-20, 20));
        let sp = storage_setpoint(0.0, 5000.0, 0, 60).unwrap();
        assert_eq!((sp.in_w_rte, sp.out_w_rte), (0, 0));
        assert_eq!(sp.stor_ctl_mod, 3);
    }

    #[test]
    fn beyond_the_maximum_is_clamped() {
        let sp = storage_setpoint(-9000.0, 5000.0, -1, 30).unwrap();
        assert_eq!((sp.in_w_rte, sp.out_w_rte, sp.clamped), (-1000, 1000, true));
        assert!(storage_setpoint(f64::NAN, 5000.0, 0, 30).is_err());
        assert!(storage_setpoint(5000.0, 5000.0, -3, 30).is_err());
    }
}
