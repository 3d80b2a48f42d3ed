//! The baselines a plan is measured against, on the same slots and limits: the site without a
//! battery, and the battery in plain self-consumption (AUTO with no schedule: it charges from
//! PV surplus and discharges into the house load, never from or to the grid).

use super::lp::{Limits, PlannedSlot, SLOT_H, SlotInput, slot_cost};

/// Cost of the site with no battery: every slot's net load comes from or goes to the grid.
pub fn no_battery_cost(slots: &[SlotInput]) -> f64 {
    slots
        .iter()
        .map(|s| {
            slot_cost(
                s,
                (s.load_w - s.pv_w).max(0.0),
                (s.pv_w - s.load_w).max(0.0),
            )
        })
        .sum()
}

/// Plain self-consumption, slot by slot: PV surplus charges (within the power limit and up to
/// the top SoC), a deficit discharges (down to the reserve); the rest is grid exchange.
pub fn self_consumption(slots: &[SlotInput], l: &Limits) -> (Vec<PlannedSlot>, f64) {
    let mut energy_wh = l.soc_pct / 100.0 * l.capacity_wh;
    let top_wh = l.max_soc_pct / 100.0 * l.capacity_wh;
    let floor_wh = l.reserve_soc_pct / 100.0 * l.capacity_wh;
    let mut cost = 0.0;
    let planned = slots
        .iter()
        .map(|s| {
            let net_w = s.load_w - s.pv_w;
            let (charge_w, discharge_w) = if net_w < 0.0 {
                let room_w = (top_wh - energy_wh).max(0.0) / (SLOT_H * l.charge_efficiency);
                ((-net_w).min(l.max_charge_w).min(room_w), 0.0)
            } else {
                let avail_w = (energy_wh - floor_wh).max(0.0) * l.discharge_efficiency / SLOT_H;
                (0.0, net_w.min(l.max_discharge_w).min(avail_w))
            };
            energy_wh +=
                SLOT_H * (l.charge_efficiency * charge_w - discharge_w / l.discharge_efficiency);
            let grid_w = net_w + charge_w - discharge_w;
            let slot = PlannedSlot {
                charge_w,
                discharge_w,
                import_w: grid_w.max(0.0),
                export_w: (-grid_w).max(0.0),
                soc_pct: energy_wh / l.capacity_wh * 100.0,
            };
            cost += slot_cost(s, slot.import_w, slot.export_w);
            slot
        })
        .collect();
    (planned, cost)
}

#[cfg(test)]
mod tests {
    use super::super::lp::{optimise, tests};
    use super::*;

    #[test]
    fn the_plan_beats_self_consumption_which_beats_no_battery_on_a_peak_tariff() {
        let slots = tests::tariff_day(3_000.0);
        let l = tests::battery();
        let none = no_battery_cost(&slots);
        let (sc, sc_cost) = self_consumption(&slots, &l);
        let plan = optimise(&slots, &l).unwrap();
        assert!(sc_cost < none, "{sc_cost} vs {none}");
        assert!(plan.cost < sc_cost - 0.1, "{} vs {sc_cost}", plan.cost);
        // Self-consumption never imports to charge nor exports from the battery.
        for (s, p) in slots.iter().zip(&sc) {
            assert!(p.charge_w <= (s.pv_w - s.load_w).max(0.0) + 1e-9);
            assert!(p.discharge_w <= (s.load_w - s.pv_w).max(0.0) + 1e-9);
            assert!(p.soc_pct >= l.reserve_soc_pct - 1e-9 && p.soc_pct <= l.max_soc_pct + 1e-9);
        }
        eprintln!(
            "day cost: plan {:.3}, self-consumption {sc_cost:.3}, no battery {none:.3}",
            plan.cost
        );
    }
}
