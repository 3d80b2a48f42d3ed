// The cloud planner's plan (issue 17): battery power per 15-minute slot and the planned SoC,
// drawn over the import price curve, with the expected cost against plain self-consumption and
// no battery. The battery's figures come from the device's planner settings
// (`GET /devices/<id>/planner`, set with `emsctl planner set`); without them there is no plan
// to draw and the card says how to get one.

import uPlot from 'uplot';
import { ApiError, api, enc } from './api.js';
import { h, fill } from './dom.js';

/** Settings → the query of `GET /devices/<id>/plan` (the same names). */
export function planQuery(s) {
  const keys = [
    'capacity_wh',
    'max_charge_w',
    'max_discharge_w',
    'reserve_soc_pct',
    'max_soc_pct',
    'efficiency',
    'import_limit_w',
    'export_limit_w',
    'end_soc_pct',
    'hours',
    'time_zone',
  ];
  return keys
    .filter((k) => s[k] != null)
    .map((k) => `${k}=${enc(String(s[k]))}`)
    .join('&');
}

/** The plan's slots as uPlot columns: time, battery W, SoC %, import price. */
export function planColumns(plan) {
  const xs = plan.slots.map((s) => Date.parse(s.start) / 1000);
  return [xs, plan.slots.map((s) => s.battery_w), plan.slots.map((s) => s.soc_pct), plan.slots.map((s) => s.import_price)];
}

function opts(width) {
  const stepped = uPlot.paths.stepped({ align: 1 });
  return {
    title: 'Plan: battery power (+ charging) and SoC over the import price',
    width,
    height: 240,
    scales: { x: { time: true }, W: {}, pct: { range: [0, 100] }, price: {} },
    axes: [
      {},
      { scale: 'W', label: 'W', size: 60 },
      { scale: 'pct', label: '%', side: 1, size: 40, grid: { show: false } },
      { scale: 'price', label: 'price / kWh', side: 1, size: 60, grid: { show: false } },
    ],
    series: [
      {},
      { label: 'battery W', scale: 'W', stroke: '#1864ab', fill: '#1864ab22', width: 2, paths: stepped },
      { label: 'SoC % (slot end)', scale: 'pct', stroke: '#2b8a3e', width: 2 },
      { label: 'import price', scale: 'price', stroke: '#e8590c', width: 1, dash: [6, 4], paths: stepped },
    ],
  };
}

export class PlanPanel {
  constructor(root, deviceId) {
    this.deviceId = deviceId;
    this.plot = null;
    this.status = h('span', { class: 'hint', 'data-testid': 'plan-status' }, 'loading…');
    this.costs = h('p', { class: 'hint', 'data-testid': 'plan-costs' });
    this.box = h('div', { class: 'plan-chart', 'data-testid': 'plan-chart' });
    this.reload = h('button', { class: 'range', onclick: () => this.load() }, 'Plan again');
    root.append(h('div', { class: 'ranges' }, this.reload, this.status), this.costs, this.box);
    this.onResize = () => this.plot?.setSize({ width: this.width(), height: 240 });
    window.addEventListener('resize', this.onResize);
    this.load();
  }

  width() {
    return Math.max(200, this.box.clientWidth - 8);
  }

  async load() {
    this.status.textContent = 'planning…';
    const dev = enc(this.deviceId);
    let settings;
    try {
      settings = await api(`/devices/${dev}/planner`);
    } catch (e) {
      this.clear();
      this.status.textContent =
        e instanceof ApiError && e.status === 404
          ? 'No planner settings for this device (emsctl planner set --capacity-wh … to opt in).'
          : `planner settings unavailable: ${e.message}`;
      return;
    }
    let plan;
    try {
      plan = await api(`/devices/${dev}/plan?${planQuery(settings)}`);
    } catch (e) {
      this.clear();
      this.status.textContent = `no plan: ${e.message}`;
      return;
    }
    this.clear();
    this.plot = new uPlot(opts(this.width()), planColumns(plan), this.box);
    const mode = settings.planner === 'cloud' ? 'sent by the cloud' : 'planner off: not sent';
    this.status.textContent = `${plan.slots.length} slots from ${plan.soc_pct.toFixed(0)} % (${mode})`;
    const c = (v) => v.toFixed(2);
    this.costs.textContent =
      `Expected cost: plan ${c(plan.cost)}, plain self-consumption ${c(plan.cost_self_consumption)}, ` +
      `no battery ${c(plan.cost_no_battery)} (tariff currency).`;
  }

  clear() {
    this.plot?.destroy();
    this.plot = null;
    fill(this.box);
    this.costs.textContent = '';
  }

  destroy() {
    window.removeEventListener('resize', this.onResize);
    this.plot?.destroy();
  }
}
