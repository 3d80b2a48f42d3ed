// History charts (SoC, battery power, grid power) drawn by uPlot from the history API.
// 1 h reads raw packets and then follows the live feed; 24 h and 7 d read buckets (5 min, 1 h)
// and draw the average with the minimum and maximum as faint lines.

import uPlot from 'uplot';
import { api, enc } from './api.js';
import { h, fill } from './dom.js';

export const RANGES = {
  '1h': { label: '1 h', seconds: 3600, bucket: null },
  '24h': { label: '24 h', seconds: 86400, bucket: '5m' },
  '7d': { label: '7 d', seconds: 7 * 86400, bucket: '1h' },
};

/** The charted fields: history name, title, axis label, and how to read it out of a packet. */
const CHARTS = [
  { field: 'battery_soc', title: 'State of charge', unit: '%', color: '#2b8a3e', live: (t) => t.battery.soc },
  {
    field: 'battery_power',
    title: 'Battery power (+ charging, − discharging)',
    unit: 'W',
    color: '#1864ab',
    live: (t) => t.battery.power,
  },
  {
    field: 'grid_power',
    title: 'Grid power (+ importing, − exporting)',
    unit: 'W',
    color: '#c2255c',
    live: (t) => t.grid.power,
  },
];

function opts(chart, width, bucketed) {
  const series = [{}, { label: bucketed ? 'avg' : chart.unit, stroke: chart.color, width: 2 }];
  if (bucketed) {
    series.push({ label: 'min', stroke: chart.color + '55', width: 1, dash: [4, 4] });
    series.push({ label: 'max', stroke: chart.color + '55', width: 1, dash: [4, 4] });
  }
  return {
    title: chart.title,
    width,
    height: 200,
    scales: { x: { time: true } },
    axes: [{}, { label: chart.unit, size: 60 }],
    series,
  };
}

export class HistoryCharts {
  constructor(root, deviceId) {
    this.deviceId = deviceId;
    this.range = '1h';
    this.plots = [];
    this.data = [];
    this.status = h('span', { class: 'hint', 'data-testid': 'history-status' });
    this.buttons = Object.entries(RANGES).map(([key, r]) =>
      h('button', { class: 'range', 'data-range': key, onclick: () => this.load(key) }, r.label),
    );
    this.box = h('div', { class: 'charts', 'data-testid': 'charts' });
    root.append(h('div', { class: 'ranges' }, this.buttons, this.status), this.box);
    this.onResize = () => this.plots.forEach((p) => p.setSize({ width: this.width(), height: 200 }));
    window.addEventListener('resize', this.onResize);
    this.load('1h');
  }

  width() {
    return Math.max(200, this.box.clientWidth - 8);
  }

  async load(range) {
    this.range = range;
    this.buttons.forEach((b) => b.classList.toggle('active', b.dataset.range === range));
    const r = RANGES[range];
    const to = new Date();
    const from = new Date(to.getTime() - r.seconds * 1000);
    const fields = CHARTS.map((c) => c.field).join(',');
    let q = `from=${enc(from.toISOString())}&to=${enc(to.toISOString())}&fields=${fields}`;
    q += r.bucket ? `&bucket=${r.bucket}&limit=10000` : '&limit=3600';
    this.status.textContent = 'loading…';
    let hist;
    try {
      hist = await api(`/devices/${enc(this.deviceId)}/telemetry?${q}`);
    } catch (e) {
      this.status.textContent = `history unavailable: ${e.message}`;
      return;
    }
    if (this.range !== range) return; // another range was picked meanwhile
    const bucketed = hist.bucket_s != null;
    const rows = bucketed ? hist.buckets : hist.points;
    const xs = rows.map((p) => Date.parse(p.time) / 1000);
    this.data = CHARTS.map((c) => {
      if (!bucketed) return [xs, rows.map((p) => p[c.field] ?? null)];
      const stat = (k) => rows.map((p) => (p[c.field] ? p[c.field][k] : null));
      return [xs, stat('avg'), stat('min'), stat('max')];
    });
    this.plots.forEach((p) => p.destroy());
    fill(this.box);
    const width = this.width();
    this.plots = CHARTS.map((c, i) => {
      const el = h('div', { class: 'chart', 'data-chart': c.field });
      this.box.append(el);
      return new uPlot(opts(c, width, bucketed), this.data[i], el);
    });
    const n = rows.length;
    this.status.textContent = bucketed
      ? `${n} buckets of ${hist.bucket_s / 60} min${hist.truncated ? ' (truncated)' : ''}`
      : `${n} packets${hist.truncated ? ' (truncated)' : ''}`;
  }

  /** A live packet: appended to the 1 h charts, which then drop what is older than an hour. */
  append(t) {
    if (this.range !== '1h' || this.plots.length === 0) return;
    const x = Date.parse(t.timestamp) / 1000;
    const cut = Date.now() / 1000 - RANGES['1h'].seconds;
    CHARTS.forEach((c, i) => {
      const [xs, ys] = this.data[i];
      if (xs.length && x <= xs[xs.length - 1]) return; // already drawn, or out of order
      xs.push(x);
      ys.push(c.live(t) ?? null);
      while (xs.length && xs[0] < cut) {
        xs.shift();
        ys.shift();
      }
      this.plots[i].setData(this.data[i]);
    });
  }

  destroy() {
    window.removeEventListener('resize', this.onResize);
    this.plots.forEach((p) => p.destroy());
  }
}
