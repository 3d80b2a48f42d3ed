// Energy: where the power goes now (the live flow between grid, site and battery) and how much
// energy moved per day or per month (`GET /devices/<id>/energy`, integrated in SQL from the
// stored packets, days in UTC). Months are the sum of their days, so a month is a calendar month.

import { api, enc } from './api.js';
import { h, fill } from './dom.js';
import { batteryPower, gridPower, watts } from './format.js';

/** The four energies of a bucket, in the spec's words; `key` is the API's field. */
const KINDS = [
  { key: 'imported_kwh', label: 'imported', cls: 'import' },
  { key: 'exported_kwh', label: 'exported', cls: 'export' },
  { key: 'charged_kwh', label: 'charged', cls: 'charge' },
  { key: 'discharged_kwh', label: 'discharged', cls: 'discharge' },
];

export const PERIODS = {
  days: { label: '30 days', days: 30 },
  months: { label: '12 months', days: 366 },
};

const kwh = (v) => `${v.toFixed(v >= 100 ? 0 : v >= 10 ? 1 : 2)} kWh`;

/** Midnight UTC `n` days before today's. */
function utcDaysAgo(n) {
  const d = new Date();
  return new Date(Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate() - n));
}

/**
 * PV, house and the two ratios over several buckets (the agent's `site` extension), or null
 * without them. A ratio over a period weighs each bucket's by its PV (or house) energy, which is
 * the ratio of the sums: self-consumption × PV is the PV used on site.
 */
export function flowTotals(buckets) {
  const having = (k) => buckets.filter((b) => b[k] != null);
  const sum = (list, f) => list.reduce((a, b) => a + f(b), 0);
  const pvB = having('pv_kwh');
  const houseB = having('house_kwh');
  if (pvB.length === 0 && houseB.length === 0) return null;
  const pv = sum(pvB, (b) => b.pv_kwh);
  const house = sum(houseB, (b) => b.house_kwh);
  const used = sum(pvB, (b) => (b.self_consumption ?? 0) * b.pv_kwh);
  const own = sum(houseB, (b) => (b.self_sufficiency ?? 0) * b.house_kwh);
  return {
    pv_kwh: pvB.length ? pv : null,
    house_kwh: houseB.length ? house : null,
    self_consumption: pv > 0 ? used / pv : null,
    self_sufficiency: house > 0 ? own / house : null,
  };
}

/** Daily buckets summed per calendar month (UTC): `[{time: 'YYYY-MM', …kinds, …flowTotals}]`. */
export function byMonth(buckets) {
  const months = new Map();
  for (const b of buckets) {
    const key = b.time.slice(0, 7);
    const m = months.get(key) ?? { time: key, charged_kwh: 0, discharged_kwh: 0, imported_kwh: 0, exported_kwh: 0, days: [] };
    for (const k of KINDS) m[k.key] += b[k.key];
    m.days.push(b);
    months.set(key, m);
  }
  return [...months.values()].map(({ days, ...m }) => {
    const f = flowTotals(days);
    return f ? { ...m, ...Object.fromEntries(Object.entries(f).filter(([, v]) => v != null)) } : m;
  });
}

/**
 * The live flow of one packet in words: grid ↔ site ↔ battery. What the site draws is what
 * grid and battery deliver together: the house's consumption less any PV, which this device
 * does not measure.
 */
export function flow(t) {
  const g = t.grid.power;
  const b = t.battery.power;
  // The house's own reading when the agent reports one; else what grid and battery deliver.
  const house = t.site?.house_power;
  const site = house != null ? house : g == null || b == null ? null : g - b;
  return { grid: gridPower(g), battery: batteryPower(b), site, pv: t.site?.pv_power ?? null };
}

export class EnergyPanel {
  constructor(root, deviceId) {
    this.deviceId = deviceId;
    this.period = 'days';
    // Live flow.
    this.flowGrid = h('div', { class: 'node', 'data-testid': 'flow-grid' }, '—');
    this.flowSite = h('div', { class: 'node', 'data-testid': 'flow-site' }, '—');
    this.flowBattery = h('div', { class: 'node', 'data-testid': 'flow-battery' }, '—');
    this.arrowGrid = h('span', { class: 'arrow' }, '');
    this.arrowBattery = h('span', { class: 'arrow' }, '');
    this.siteLabel = h('span', { class: 'label' }, 'Site (house − PV)');
    // Bars and totals.
    this.status = h('span', { class: 'hint', 'data-testid': 'energy-status' });
    this.buttons = Object.entries(PERIODS).map(([key, p]) =>
      h('button', { class: 'range', 'data-period': key, onclick: () => this.load(key) }, p.label),
    );
    this.bars = h('div', { class: 'ebars', 'data-testid': 'energy-bars' });
    this.totals = h('div', { class: 'etotals', 'data-testid': 'energy-totals' });
    root.append(
      h(
        'div',
        { class: 'flow', 'data-testid': 'energy-flow' },
        h('div', { class: 'end' }, h('span', { class: 'label' }, 'Grid'), this.flowGrid),
        this.arrowGrid,
        h('div', { class: 'end' }, this.siteLabel, this.flowSite),
        this.arrowBattery,
        h('div', { class: 'end' }, h('span', { class: 'label' }, 'Battery'), this.flowBattery),
      ),
      h('div', { class: 'ranges' }, this.buttons, this.status),
      this.totals,
      this.bars,
      h(
        'p',
        { class: 'hint legend' },
        KINDS.map((k) => h('span', { class: `key ${k.cls}` }, k.label)),
        ' · days in UTC; PV, house use and the ratios show when the device reports them.',
      ),
    );
    this.load('days');
  }

  /** A live packet: the flow in words, arrows pointing where the power goes. */
  live(t) {
    const f = flow(t);
    this.flowGrid.textContent = f.grid.text;
    this.flowGrid.className = `node dir-${f.grid.word}`;
    this.arrowGrid.textContent = f.grid.dir > 0 ? '→' : f.grid.dir < 0 ? '←' : '·';
    this.flowBattery.textContent = f.battery.text;
    this.flowBattery.className = `node dir-${f.battery.word}`;
    this.arrowBattery.textContent = f.battery.dir > 0 ? '→' : f.battery.dir < 0 ? '←' : '·';
    const measured = t.site?.house_power != null;
    this.siteLabel.textContent = measured ? `House${f.pv != null ? ` (PV ${watts(f.pv)})` : ''}` : 'Site (house − PV)';
    this.flowSite.textContent =
      f.site == null ? '—' : f.site >= 0 ? `using ${watts(f.site)}` : `surplus ${watts(f.site)} (PV above use)`;
  }

  async load(period) {
    this.period = period;
    this.buttons.forEach((b) => b.classList.toggle('active', b.dataset.period === period));
    const p = PERIODS[period];
    const from = period === 'months' ? monthStart(11) : utcDaysAgo(p.days - 1);
    const q = `from=${enc(from.toISOString())}&to=${enc(new Date().toISOString())}&bucket=1d`;
    this.status.textContent = 'loading…';
    let energy;
    try {
      energy = await api(`/devices/${enc(this.deviceId)}/energy?${q}`);
    } catch (e) {
      this.status.textContent = `energy unavailable: ${e.message}`;
      return;
    }
    if (this.period !== period) return;
    const rows = period === 'months' ? byMonth(energy.buckets) : energy.buckets;
    this.draw(rows, period);
    this.status.textContent = `${rows.length} ${period === 'months' ? 'months' : 'days'} with data`;
  }

  draw(rows, period) {
    const sum = Object.fromEntries(KINDS.map((k) => [k.key, rows.reduce((a, r) => a + r[k.key], 0)]));
    const f = flowTotals(rows);
    const pct = (v) => `${(v * 100).toFixed(0)} %`;
    fill(
      this.totals,
      KINDS.map((k) => h('div', { class: `etotal ${k.cls}`, 'data-kind': k.label }, h('span', { class: 'label' }, k.label), ` ${kwh(sum[k.key])}`)),
      f?.pv_kwh != null && h('div', { class: 'etotal', 'data-kind': 'pv' }, h('span', { class: 'label' }, 'PV produced'), ` ${kwh(f.pv_kwh)}`),
      f?.house_kwh != null && h('div', { class: 'etotal', 'data-kind': 'house' }, h('span', { class: 'label' }, 'house used'), ` ${kwh(f.house_kwh)}`),
      f?.self_consumption != null &&
        h('div', { class: 'etotal', 'data-kind': 'self-consumption', title: 'share of the PV used on site, not exported' }, h('span', { class: 'label' }, 'self-consumption'), ` ${pct(f.self_consumption)}`),
      f?.self_sufficiency != null &&
        h('div', { class: 'etotal', 'data-kind': 'self-sufficiency', title: 'share of the house use not imported from the grid' }, h('span', { class: 'label' }, 'self-sufficiency'), ` ${pct(f.self_sufficiency)}`),
    );
    const max = Math.max(0.001, ...rows.flatMap((r) => KINDS.map((k) => r[k.key])));
    fill(
      this.bars,
      rows.length === 0
        ? h('p', { class: 'hint' }, 'No stored telemetry in this period.')
        : rows.map((r) => {
            const label = period === 'months' ? r.time : r.time.slice(5, 10);
            return h(
              'div',
              { class: 'ecol', 'data-bucket': r.time },
              h(
                'div',
                { class: 'estack' },
                KINDS.map((k) =>
                  h('div', {
                    class: `ebar ${k.cls}`,
                    style: `height:${((r[k.key] / max) * 100).toFixed(1)}%`,
                    title: `${label}: ${k.label} ${kwh(r[k.key])}`,
                  }),
                ),
              ),
              h('span', { class: 'elabel' }, label),
            );
          }),
    );
  }
}

/** The first day (UTC) of the month `n` months before this one. */
function monthStart(n) {
  const d = new Date();
  return new Date(Date.UTC(d.getUTCFullYear(), d.getUTCMonth() - n, 1));
}
