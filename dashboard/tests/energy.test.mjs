// The energy panel's pure parts: months summed from days, the live flow in words.
import test from 'node:test';
import assert from 'node:assert/strict';
import { byMonth, flow } from '../src/energy.js';

const day = (time, imported, exported, charged, discharged) => ({
  time,
  imported_kwh: imported,
  exported_kwh: exported,
  charged_kwh: charged,
  discharged_kwh: discharged,
});

test('months are the sums of their UTC days, in order', () => {
  const months = byMonth([
    day('2026-10-30T00:00:00Z', 1, 0, 0.5, 0),
    day('2026-10-31T00:00:00Z', 2, 1, 0, 0.25),
    day('2026-11-01T00:00:00Z', 4, 0, 1, 1),
  ]);
  assert.deepEqual(
    months.map((m) => [m.time, m.imported_kwh, m.exported_kwh, m.charged_kwh, m.discharged_kwh]),
    [
      ['2026-10', 3, 1, 0.5, 0.25],
      ['2026-11', 4, 0, 1, 1],
    ],
  );
});

test('the site draws what grid and battery deliver together', () => {
  // Importing 1200 W while the battery discharges 500 W: the site uses 1700 W.
  const f = flow({ grid: { power: 1200 }, battery: { power: -500 } });
  assert.equal(f.grid.word, 'importing');
  assert.equal(f.battery.word, 'discharging');
  assert.equal(f.site, 1700);
  // Exporting 300 W while charging 800 W: 1100 W come from PV beyond the house's use.
  const g = flow({ grid: { power: -300 }, battery: { power: 800 } });
  assert.equal(g.grid.word, 'exporting');
  assert.equal(g.site, -1100);
  assert.equal(flow({ grid: { power: null }, battery: { power: 5 } }).site, null);
});

test('PV, house and the ratios over a period weigh each bucket by its energy', async () => {
  const { flowTotals } = await import('../src/energy.js');
  const t = flowTotals([
    { pv_kwh: 10, house_kwh: 8, self_consumption: 0.5, self_sufficiency: 0.75 },
    { pv_kwh: 0, house_kwh: 2, self_sufficiency: 0 },
    { charged_kwh: 1 },
  ]);
  assert.equal(t.pv_kwh, 10);
  assert.equal(t.house_kwh, 10);
  assert.equal(t.self_consumption, 0.5);
  assert.equal(t.self_sufficiency, 0.6); // (0.75 × 8 + 0 × 2) / 10
  assert.equal(flowTotals([{ charged_kwh: 1 }]), null);
  // The house's own reading wins over grid + battery in the live flow.
  assert.equal(flow({ grid: { power: 100 }, battery: { power: 0 }, site: { house_power: 900, pv_power: 800 } }).site, 900);
});
