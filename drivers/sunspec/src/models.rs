//! Decoding the model blocks ems uses into [`Readings`]. Offsets are relative to the first
//! register after the model header (ID, L), as in the SunSpec model definitions.

use ems_driver_sdk::{Flag, Readings};

use crate::point::{bitfield32, scaled_i16, scaled_u16, u16};

/// Inverter models 101 (single phase), 102 (split phase), 103 (three phase), integer + scale
/// factor variants, L = 50. The three share one layout.
pub(crate) mod inverter {
    pub const IDS: [u16; 3] = [101, 102, 103];
    pub const LEN: u16 = 50;
    pub const PH_V: [usize; 3] = [8, 9, 10]; // PhVphA/B/C, uint16
    pub const V_SF: usize = 11;
    pub const W: usize = 12; // int16, AC power, + = into the AC side
    pub const W_SF: usize = 13;
    pub const HZ: usize = 14; // uint16
    pub const HZ_SF: usize = 15;
    pub const DCW: usize = 29; // int16, DC power
    pub const DCW_SF: usize = 30;
    pub const ST: usize = 36; // enum16 operating state
    pub const EVT1: usize = 38; // bitfield32
}

/// Storage model 124 (basic storage controls), L = 24.
pub(crate) mod storage {
    pub const ID: u16 = 124;
    pub const LEN: u16 = 24;
    pub const W_CHA_MAX: usize = 0; // uint16, W
    pub const STOR_CTL_MOD: usize = 3; // bitfield16
    pub const CHA_STATE: usize = 6; // uint16, % of capacity
    pub const IN_BAT_V: usize = 8; // uint16, V
    pub const OUT_W_RTE: usize = 10; // int16, % of WChaMax
    pub const IN_W_RTE: usize = 11; // int16, % of WChaMax
    pub const RVRT_TMS: usize = 13; // uint16, s
    pub const W_CHA_MAX_SF: usize = 16;
    pub const CHA_STATE_SF: usize = 20;
    pub const IN_BAT_V_SF: usize = 22;
    pub const IN_OUT_W_RTE_SF: usize = 23;
}

/// Battery base model 802, L = 62.
pub(crate) mod battery {
    pub const ID: u16 = 802;
    pub const LEN: u16 = 62;
    pub const SOC: usize = 9; // uint16, %
    pub const SOH: usize = 11; // uint16, %
    pub const ALM_RST: usize = 18; // uint16, write 1 to reset latched alarms
    pub const STATE: usize = 20; // enum16
    pub const EVT1: usize = 24; // bitfield32
    pub const V: usize = 32; // uint16, V
    pub const A: usize = 42; // int16, A
    pub const A_CHA_MAX: usize = 43; // uint16, A
    pub const A_DIS_CHA_MAX: usize = 44; // uint16, A
    pub const W: usize = 45; // int16, W
    pub const SOC_SF: usize = 54;
    pub const SOH_SF: usize = 56;
    pub const V_SF: usize = 57;
    pub const A_SF: usize = 59;
    pub const A_MAX_SF: usize = 60;
    pub const W_SF: usize = 61;
    /// `State` value FAULT.
    pub const STATE_FAULT: u16 = 99;
}

/// Inverter operating state `St` (models 101-103), as SunSpec names it.
fn operating_state(st: u16) -> String {
    match st {
        1 => "OFF".into(),
        2 => "SLEEPING".into(),
        3 => "STARTING".into(),
        4 => "MPPT".into(),
        5 => "THROTTLED".into(),
        6 => "SHUTTING_DOWN".into(),
        7 => "FAULT".into(),
        8 => "STANDBY".into(),
        other => format!("UNKNOWN({other})"),
    }
}

/// Inverter `Evt1` bits, their SunSpec names and the ems flag each raises.
const INVERTER_EVENTS: [(&str, Option<Flag>); 16] = [
    ("GROUND_FAULT", Some(Flag::InverterFault)),
    ("DC_OVER_VOLT", Some(Flag::Overvoltage)),
    ("AC_DISCONNECT", Some(Flag::GridFault)),
    ("DC_DISCONNECT", None),
    ("GRID_DISCONNECT", Some(Flag::GridFault)),
    ("CABINET_OPEN", None),
    ("MANUAL_SHUTDOWN", None),
    ("OVER_TEMP", Some(Flag::Overheat)),
    ("OVER_FREQUENCY", Some(Flag::GridFault)),
    ("UNDER_FREQUENCY", Some(Flag::GridFault)),
    ("AC_OVER_VOLT", Some(Flag::GridFault)),
    ("AC_UNDER_VOLT", Some(Flag::GridFault)),
    ("BLOWN_STRING_FUSE", Some(Flag::InverterFault)),
    ("UNDER_TEMP", Some(Flag::Undertemperature)),
    ("MEMORY_LOSS", Some(Flag::InverterFault)),
    ("HW_TEST_FAILURE", Some(Flag::InverterFault)),
];

/// Battery `Evt1` bits (model 802), their SunSpec names and the specific ems flag, if any.
/// Bits named `*_ALARM` or `*_ERROR` or `GROUND_FAULT` also raise [`Flag::BmsAlarm`].
const BATTERY_EVENTS: [(&str, Option<Flag>); 30] = [
    ("COMMUNICATION_ERROR", None),
    ("OVER_TEMP_ALARM", Some(Flag::Overheat)),
    ("OVER_TEMP_WARNING", None),
    ("UNDER_TEMP_ALARM", Some(Flag::Undertemperature)),
    ("UNDER_TEMP_WARNING", None),
    ("OVER_CHARGE_CURRENT_ALARM", Some(Flag::Overcurrent)),
    ("OVER_CHARGE_CURRENT_WARNING", None),
    ("OVER_DISCHARGE_CURRENT_ALARM", Some(Flag::Overcurrent)),
    ("OVER_DISCHARGE_CURRENT_WARNING", None),
    ("OVER_VOLT_ALARM", Some(Flag::Overvoltage)),
    ("OVER_VOLT_WARNING", None),
    ("UNDER_VOLT_ALARM", Some(Flag::Undervoltage)),
    ("UNDER_VOLT_WARNING", None),
    ("UNDER_SOC_MIN_ALARM", None),
    ("UNDER_SOC_MIN_WARNING", None),
    ("OVER_SOC_MAX_ALARM", None),
    ("OVER_SOC_MAX_WARNING", None),
    ("VOLTAGE_IMBALANCE_WARNING", None),
    ("TEMPERATURE_IMBALANCE_ALARM", None),
    ("TEMPERATURE_IMBALANCE_WARNING", None),
    ("CONTACTOR_ERROR", None),
    ("FAN_ERROR", None),
    ("GROUND_FAULT", None),
    ("OPEN_DOOR_ERROR", None),
    ("CURRENT_IMBALANCE_WARNING", None),
    ("OTHER_ALARM", None),
    ("OTHER_WARNING", None),
    ("RESERVED_1", None),
    ("CONFIGURATION_ALARM", None),
    ("CONFIGURATION_WARNING", None),
];

/// Models 101-103. `pv_only`: the device has no storage model, so its DC input is PV and
/// `DCW` is the PV power; on a hybrid the DC side mixes PV and battery and says nothing alone.
pub(crate) fn decode_inverter(b: &[u16], r: &mut Readings, pv_only: bool) {
    use inverter::*;
    r.inverter_ac_power_w = scaled_i16(b[W], b[W_SF]);
    for (phase, &off) in PH_V.iter().enumerate() {
        r.grid_phase_voltage_v[phase] = scaled_u16(b[off], b[V_SF]);
    }
    let phases: Vec<f64> = r.grid_phase_voltage_v.iter().flatten().copied().collect();
    if !phases.is_empty() {
        r.grid_voltage_v = Some(phases.iter().sum::<f64>() / phases.len() as f64);
    }
    r.grid_frequency_hz = scaled_u16(b[HZ], b[HZ_SF]);
    if pv_only {
        r.pv_power_w = scaled_i16(b[DCW], b[DCW_SF]).map(|w| w.max(0.0));
    }
    if let Some(st) = u16(b[ST]) {
        r.inverter_state = Some(operating_state(st));
        if st == 7 {
            r.raise(Flag::InverterFault);
        }
    }
    if let Some(events) = bitfield32(b[EVT1], b[EVT1 + 1]) {
        for (bit, (name, flag)) in INVERTER_EVENTS.iter().enumerate() {
            if events & (1 << bit) != 0 {
                r.raise(
                    flag.clone()
                        .unwrap_or_else(|| Flag::Other(name.to_string())),
                );
            }
        }
    }
}

/// Model 124: state of charge (`ChaState`) and battery voltage (`InBatV`).
pub(crate) fn decode_storage(b: &[u16], r: &mut Readings) {
    use storage::*;
    r.battery_soc_pct = scaled_u16(b[CHA_STATE], b[CHA_STATE_SF]);
    r.battery_voltage_v = scaled_u16(b[IN_BAT_V], b[IN_BAT_V_SF]);
}

/// Model 802. Values it has replace those from model 124. `charge_positive`: the device uses
/// ems's sign (+ = charging) instead of SunSpec's (+ = discharging).
pub(crate) fn decode_battery(b: &[u16], r: &mut Readings, charge_positive: bool) {
    use battery::*;
    let to_ems = if charge_positive { 1.0 } else { -1.0 };
    if let Some(soc) = scaled_u16(b[SOC], b[SOC_SF]) {
        r.battery_soc_pct = Some(soc);
    }
    if let Some(v) = scaled_u16(b[V], b[V_SF]) {
        r.battery_voltage_v = Some(v);
    }
    r.battery_soh_pct = scaled_u16(b[SOH], b[SOH_SF]);
    r.battery_current_a = scaled_i16(b[A], b[A_SF]).map(|a| to_ems * a + 0.0);
    r.battery_power_w = scaled_i16(b[W], b[W_SF]).map(|w| to_ems * w + 0.0);
    r.battery_max_charge_current_a = scaled_u16(b[A_CHA_MAX], b[A_MAX_SF]);
    r.battery_max_discharge_current_a = scaled_u16(b[A_DIS_CHA_MAX], b[A_MAX_SF]);
    if u16(b[STATE]) == Some(STATE_FAULT) {
        r.raise(Flag::BmsAlarm);
    }
    if let Some(events) = bitfield32(b[EVT1], b[EVT1 + 1]) {
        for (bit, (name, flag)) in BATTERY_EVENTS.iter().enumerate() {
            if events & (1 << bit) == 0 {
                continue;
            }
            r.raise(
                flag.clone()
                    .unwrap_or_else(|| Flag::Other(name.to_string())),
            );
            if name.ends_with("_ALARM") || name.ends_with("_ERROR") || *name == "GROUND_FAULT" {
                r.raise(Flag::BmsAlarm);
            }
        }
    }
}
