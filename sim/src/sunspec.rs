//! A SunSpec hybrid inverter with battery: models 1 (common), 103 (three-phase inverter),
//! 124 (basic storage controls) and 802 (battery base), at base address 40000.
//!
//! Sources: SunSpec Information Model Reference (models 1, 103, 124) and SunSpec Energy Storage
//! Models (model 802, length 62). Register layout (protocol addresses, 0-based):
//!
//! | start | content |
//! |---|---|
//! | 40000 | `SunS` (0x5375 0x6E53) |
//! | 40002 | model 1, L = 66 |
//! | 40070 | model 103, L = 50 |
//! | 40122 | model 124, L = 24 |
//! | 40148 | model 802, L = 62 |
//! | 40212 | end marker 0xFFFF, L = 0 |
//!
//! Battery current and power in model 802 are reported with SunSpec's generator convention,
//! + = discharging (energy leaving the battery); ems converts to + = charging in the driver.
//!
//! Setpoints arrive through model 124: `StorCtl_Mod` bit 0 (CHARGE) with `InWRte`, bit 1
//! (DISCHARGE) with `OutWRte`, both in % of `WChaMax` (scale `InOutWRte_SF` = −2), and revert to
//! 0 W after `InOutWRte_RvrtTms` seconds unless written again.

use crate::physics::Site;
use crate::rtu::Exception;

pub const BASE: u16 = 40000;
pub const M1: u16 = 40002;
pub const M103: u16 = 40070;
pub const M124: u16 = 40122;
pub const M802: u16 = 40148;
pub const END: u16 = 40212;

/// Model 124 register offsets (after ID and L).
mod m124 {
    pub const WCHA_MAX: u16 = 0;
    pub const STOR_CTL_MOD: u16 = 3;
    pub const CHA_STATE: u16 = 6;
    pub const IN_BAT_V: u16 = 8;
    pub const CHA_ST: u16 = 9;
    pub const OUT_W_RTE: u16 = 10;
    pub const IN_W_RTE: u16 = 11;
    pub const RVRT_TMS: u16 = 13;
    pub const WCHA_MAX_SF: u16 = 16;
    pub const CHA_STATE_SF: u16 = 20;
    pub const IN_BAT_V_SF: u16 = 22;
    pub const IN_OUT_W_RTE_SF: u16 = 23;
}

/// Model 802 Evt1 bits used by the simulation.
pub const EVT1_OVER_TEMP_ALARM: u32 = 1 << 1;
pub const EVT1_OVER_VOLT_ALARM: u32 = 1 << 9;
/// Model 103 Evt1 bits.
pub const INV_EVT_OVER_FREQUENCY: u32 = 1 << 8;
pub const INV_EVT_UNDER_FREQUENCY: u32 = 1 << 9;

/// The writable part of the device and its latched alarm state.
#[derive(Debug, Clone)]
pub struct SunSpecDevice {
    pub unit: u8,
    /// Nameplate maximum charge/discharge power, W (model 124 WChaMax).
    pub w_cha_max: f64,
    stor_ctl_mod: u16,
    in_w_rte: i16,
    out_w_rte: i16,
    rvrt_tms: u16,
    /// Battery alarms latched until AlmRst (model 802) is written.
    pub latched_evt1: u32,
    /// Battery temperature above which OVER_TEMP_ALARM is raised, °C.
    pub over_temp_c: f64,
}

impl SunSpecDevice {
    pub fn new(unit: u8, w_cha_max: f64) -> Self {
        SunSpecDevice {
            unit,
            w_cha_max,
            stor_ctl_mod: 0,
            in_w_rte: 0,
            out_w_rte: 0,
            rvrt_tms: 0,
            latched_evt1: 0,
            over_temp_c: 50.0,
        }
    }

    /// Alarms whose condition holds now.
    fn active_evt1(&self, site: &Site) -> u32 {
        let mut evt = 0;
        if site.temperature_c > self.over_temp_c {
            evt |= EVT1_OVER_TEMP_ALARM;
        }
        if site.bms_alarm {
            evt |= EVT1_OVER_VOLT_ALARM;
        }
        evt
    }

    /// Latches the alarms whose condition holds now; they stay set until AlmRst, and an alarm
    /// whose condition persists is reported again at once after a reset, as a BMS does.
    pub fn update_alarms(&mut self, site: &Site) {
        self.latched_evt1 |= self.active_evt1(site);
    }

    fn evt1(&self, site: &Site) -> u32 {
        self.latched_evt1 | self.active_evt1(site)
    }

    fn image(&self, site: &Site) -> Vec<u16> {
        let mut r = vec![0u16; (END + 2 - BASE) as usize];
        let mut put = |addr: u16, v: u16| r[(addr - BASE) as usize] = v;
        put(BASE, 0x5375);
        put(BASE + 1, 0x6E53);

        // Model 1: Mn, Md, Opt, Vr, SN strings; DA.
        put(M1, 1);
        put(M1 + 1, 66);
        let strings: [(u16, &str, u16); 5] = [
            (0, "ems-sim", 16),
            (16, "Hybrid 5K", 16),
            (32, "", 8),
            (40, "1.0.0", 8),
            (48, "SIM0001", 16),
        ];
        for (off, text, len) in strings {
            let bytes = text.as_bytes();
            for i in 0..len {
                let hi = *bytes.get(2 * i as usize).unwrap_or(&0);
                let lo = *bytes.get(2 * i as usize + 1).unwrap_or(&0);
                put(M1 + 2 + off + i, u16::from_be_bytes([hi, lo]));
            }
        }
        put(M1 + 2 + 64, self.unit as u16);
        put(M1 + 2 + 65, 0x8000); // Pad

        // Model 103: A_SF -2, V_SF -1, W_SF 0, Hz_SF -2, Tmp_SF -1.
        let m = M103 + 2;
        put(M103, 103);
        put(M103 + 1, 50);
        let ac_w = site.pv_w() - site.inverter_ac_w; // + = export from the inverter
        let v = site.grid_voltage_v;
        let amps = ac_w.abs() / v;
        put(m, to_u16(amps * 100.0));
        for ph in 0..3 {
            put(m + 1 + ph, to_u16(amps / 3.0 * 100.0));
        }
        put(m + 4, (-2i16) as u16);
        for k in 5..8 {
            put(m + k, 0xFFFF); // PPVph* not implemented
        }
        for ph in 0..3 {
            put(m + 8 + ph, to_u16(v * 10.0));
        }
        put(m + 11, (-1i16) as u16);
        put(m + 12, (ac_w.round() as i16) as u16);
        put(m + 13, 0);
        put(m + 14, to_u16(site.grid_frequency_hz * 100.0));
        put(m + 15, (-2i16) as u16);
        for k in [16u16, 18, 20] {
            put(m + k, 0x8000); // VA, VAr, PF not implemented
        }
        put(m + 22, 0xFFFF);
        put(m + 23, 0xFFFF); // WH acc32 not implemented
        for k in [25u16, 27, 29] {
            put(m + k, 0xFFFF);
        }
        put(m + 31, to_u16(site.temperature_c * 10.0)); // TmpCab
        for k in 32..35 {
            put(m + k, 0x8000);
        }
        put(m + 35, (-1i16) as u16);
        let running = site.inverter_ac_w.abs() > 1.0 || site.pv_w() > 1.0;
        put(m + 36, if running { 4 } else { 8 }); // St: MPPT or STANDBY
        let mut inv_evt = 0u32;
        if site.grid_frequency_hz > 51.5 {
            inv_evt |= INV_EVT_OVER_FREQUENCY;
        }
        if site.grid_frequency_hz < 47.5 {
            inv_evt |= INV_EVT_UNDER_FREQUENCY;
        }
        put(m + 38, (inv_evt >> 16) as u16);
        put(m + 39, inv_evt as u16);

        // Model 124: WChaMax_SF 0, ChaState_SF -1, InBatV_SF -1, InOutWRte_SF -2.
        let m = M124 + 2;
        put(M124, 124);
        put(M124 + 1, 24);
        put(m + m124::WCHA_MAX, to_u16(self.w_cha_max));
        put(m + 1, 0xFFFF);
        put(m + 2, 0xFFFF);
        put(m + m124::STOR_CTL_MOD, self.stor_ctl_mod);
        put(m + 4, 0xFFFF);
        put(m + 5, 0xFFFF);
        put(m + m124::CHA_STATE, to_u16(site.soc_pct() * 10.0));
        put(m + 7, 0xFFFF);
        put(m + m124::IN_BAT_V, to_u16(site.battery_voltage_v() * 10.0));
        put(m + m124::CHA_ST, cha_st(site));
        put(m + m124::OUT_W_RTE, self.out_w_rte as u16);
        put(m + m124::IN_W_RTE, self.in_w_rte as u16);
        put(m + 12, 0xFFFF);
        put(m + m124::RVRT_TMS, self.rvrt_tms);
        put(m + 14, 0xFFFF);
        put(m + 15, 0xFFFF);
        put(m + m124::WCHA_MAX_SF, 0);
        put(m + 17, 0x8000);
        put(m + 18, 0x8000);
        put(m + 19, 0x8000);
        put(m + m124::CHA_STATE_SF, (-1i16) as u16);
        put(m + 21, 0x8000);
        put(m + m124::IN_BAT_V_SF, (-1i16) as u16);
        put(m + m124::IN_OUT_W_RTE_SF, (-2i16) as u16);

        // Model 802: SF: AHRtg 0, WHRtg 0, WChaDisChaMax 0, DisChaRte 0x8000, SoC -1, DoD 0x8000,
        // SoH 0, V -1, CellV -3, A -1, AMax 0, W 0.
        let m = M802 + 2;
        put(M802, 802);
        put(M802 + 1, 62);
        let p = &site.params;
        let v_bat = site.battery_voltage_v();
        put(m, to_u16(p.capacity_wh / 51.2)); // AHRtg
        put(m + 1, to_u16(p.capacity_wh)); // WHRtg
        put(m + 2, to_u16(p.inverter_max_charge_w)); // WChaRteMax
        put(m + 3, to_u16(p.inverter_max_discharge_w)); // WDisChaRteMax
        put(m + 4, 0xFFFF); // DisChaRte
        put(m + 5, 1000); // SoCMax 100.0 %
        put(m + 6, 0); // SoCMin
        put(m + 7, 0xFFFF);
        put(m + 8, 0xFFFF);
        put(m + 9, to_u16(site.soc_pct() * 10.0)); // SoC
        put(m + 10, 0xFFFF); // DoD
        put(m + 11, 98); // SoH
        put(m + 12, 0);
        put(m + 13, 42); // NCyc
        put(m + 14, cha_st(site));
        put(m + 15, 1); // LocRemCtl: REMOTE
        put(m + 16, 0xFFFF);
        put(m + 17, 0xFFFF);
        put(m + 18, 0); // AlmRst
        put(m + 19, 4); // Typ: LITHIUM_ION
        let evt1 = self.evt1(site);
        put(m + 20, if evt1 != 0 { 3 } else { 2 }); // State: FAULT / CONNECTED, simplified
        put(m + 21, 0xFFFF);
        put(m + 22, 0xFFFF);
        put(m + 23, 0xFFFF);
        put(m + 24, (evt1 >> 16) as u16);
        put(m + 25, evt1 as u16);
        for k in 26..32 {
            put(m + k, 0);
        }
        put(m + 32, to_u16(v_bat * 10.0)); // V
        put(m + 33, to_u16(p.ocv_full_v * 10.0)); // VMax
        put(m + 34, to_u16(p.ocv_empty_v * 10.0)); // VMin
        put(m + 35, to_u16(v_bat / 16.0 * 1000.0 + 5.0)); // CellVMax
        put(m + 36, 1);
        put(m + 37, 1);
        put(m + 38, to_u16(v_bat / 16.0 * 1000.0 - 5.0)); // CellVMin
        put(m + 39, 1);
        put(m + 40, 1);
        put(m + 41, to_u16(v_bat / 16.0 * 1000.0)); // CellVAvg
        let discharge_a = -site.battery_current_a();
        put(m + 42, ((discharge_a * 10.0).round() as i16) as u16); // A, + = discharge
        put(m + 43, to_u16(p.bms_max_charge_a)); // AChaMax
        put(m + 44, to_u16(p.bms_max_discharge_a)); // ADisChaMax
        put(m + 45, ((-site.battery_dc_w()).round() as i16) as u16); // W, + = discharge
        put(m + 46, 0xFFFF);
        put(m + 47, 0x8000);
        put(m + 48, 0xFFFF);
        put(m + 49, 0xFFFF);
        let sfs: [i16; 12] = [0, 0, 0, i16::MIN, -1, i16::MIN, 0, -1, -3, -1, 0, 0];
        for (k, sf) in sfs.iter().enumerate() {
            put(m + 50 + k as u16, *sf as u16);
        }

        put(END, 0xFFFF);
        put(END + 1, 0);
        r
    }

    /// Holding-register read. Outside the SunSpec block: illegal data address.
    pub fn read(&self, site: &Site, addr: u16, count: u16) -> Result<Vec<u16>, Exception> {
        let end = addr as u32 + count as u32;
        if addr < BASE || end > (END + 2) as u32 {
            return Err(2);
        }
        let img = self.image(site);
        Ok(img[(addr - BASE) as usize..(end - BASE as u32) as usize].to_vec())
    }

    /// Holding-register write; only model 124's controls and model 802's AlmRst are writable.
    pub fn write(&mut self, site: &mut Site, addr: u16, values: &[u16]) -> Result<(), Exception> {
        let m124 = M124 + 2;
        let alm_rst = M802 + 2 + 18;
        let writable = |a: u16| {
            a == alm_rst
                || [
                    m124::STOR_CTL_MOD,
                    m124::OUT_W_RTE,
                    m124::IN_W_RTE,
                    m124::RVRT_TMS,
                ]
                .iter()
                .any(|o| a == m124 + o)
        };
        for i in 0..values.len() as u16 {
            if !writable(addr + i) {
                return Err(2);
            }
        }
        let mut rates_written = false;
        for (i, &v) in values.iter().enumerate() {
            let a = addr + i as u16;
            match a.wrapping_sub(m124) {
                m124::STOR_CTL_MOD => {
                    if v > 3 {
                        return Err(3);
                    }
                    self.stor_ctl_mod = v;
                    rates_written = true;
                }
                m124::OUT_W_RTE => {
                    self.out_w_rte = v as i16;
                    rates_written = true;
                }
                m124::IN_W_RTE => {
                    self.in_w_rte = v as i16;
                    rates_written = true;
                }
                m124::RVRT_TMS => self.rvrt_tms = v,
                _ if a == alm_rst => {
                    if v == 1 {
                        self.latched_evt1 = 0;
                        site.bms_alarm = false;
                    }
                }
                _ => return Err(2),
            }
        }
        if rates_written || addr <= m124 + m124::RVRT_TMS {
            site.command(self.setpoint_w(), self.rvrt_tms as f64);
        }
        Ok(())
    }

    /// The battery power the controls ask for, W (+ = charge).
    pub fn setpoint_w(&self) -> f64 {
        let pct = |raw: i16| raw as f64 / 100.0; // InOutWRte_SF = -2
        let charge = self.stor_ctl_mod & 1 != 0 && self.in_w_rte > 0;
        let discharge = self.stor_ctl_mod & 2 != 0 && self.out_w_rte > 0;
        match (charge, discharge) {
            (true, false) => self.w_cha_max * pct(self.in_w_rte) / 100.0,
            (false, true) => -self.w_cha_max * pct(self.out_w_rte) / 100.0,
            _ => 0.0,
        }
    }
}

fn to_u16(v: f64) -> u16 {
    v.round().clamp(0.0, 65534.0) as u16
}

/// Model 124/802 ChaSt: 1 OFF, 2 EMPTY, 3 DISCHARGING, 4 CHARGING, 5 FULL, 6 HOLDING.
fn cha_st(site: &Site) -> u16 {
    let soc = site.soc_pct();
    if site.inverter_ac_w > 1.0 {
        4
    } else if site.inverter_ac_w < -1.0 {
        3
    } else if soc >= 99.9 {
        5
    } else if soc <= 0.1 {
        2
    } else {
        6
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::physics::{Site, SiteParams};

    #[test]
    fn marker_models_and_end_are_where_the_chain_says() {
        let site = Site::new(SiteParams::default(), 50.0);
        let dev = SunSpecDevice::new(1, 5000.0);
        let img = dev.read(&site, BASE, 125).unwrap();
        assert_eq!(&img[..2], &[0x5375, 0x6E53]);
        let mut at = 2usize;
        let mut ids = vec![];
        let full: Vec<u16> = [
            dev.read(&site, BASE, 125).unwrap(),
            dev.read(&site, BASE + 125, END + 2 - BASE - 125).unwrap(),
        ]
        .concat();
        loop {
            let (id, len) = (full[at], full[at + 1]);
            if id == 0xFFFF {
                break;
            }
            ids.push(id);
            at += 2 + len as usize;
        }
        assert_eq!(ids, vec![1, 103, 124, 802]);
        assert!(dev.read(&site, 0, 2).is_err());
    }

    #[test]
    fn discharge_through_model_124_with_revert() {
        let mut site = Site::new(SiteParams::default(), 50.0);
        let mut dev = SunSpecDevice::new(1, 5000.0);
        // OutWRte = 10.00 % of 5000 W, revert after 30 s, then StorCtl_Mod = DISCHARGE.
        dev.write(&mut site, M124 + 2 + m124::OUT_W_RTE, &[1000])
            .unwrap();
        dev.write(&mut site, M124 + 2 + m124::RVRT_TMS, &[30])
            .unwrap();
        dev.write(&mut site, M124 + 2 + m124::STOR_CTL_MOD, &[2])
            .unwrap();
        assert_eq!(site.setpoint_w, -500.0);
        assert_eq!(site.revert_in_s, Some(30.0));
        assert_eq!(
            dev.write(&mut site, M124 + 2, &[1]),
            Err(2),
            "WChaMax is read-only"
        );
    }
}
