// The plan card's pure parts: the plan request from the planner settings, and the chart's
// columns from the plan.
import test from 'node:test';
import assert from 'node:assert/strict';
import { planColumns, planQuery } from '../src/plan.js';

test('the plan is asked with the stored settings, absent ones left to the server', () => {
  const q = planQuery({
    device_id: 'ems_1',
    planner: 'cloud',
    capacity_wh: 10000,
    max_charge_w: 3000,
    max_discharge_w: 2500,
    reserve_soc_pct: 10,
    import_limit_w: null,
    export_limit_w: 4000,
    end_soc_pct: null,
    time_zone: 'Europe/Berlin',
    last_error: 'x',
  });
  assert.equal(
    q,
    'capacity_wh=10000&max_charge_w=3000&max_discharge_w=2500&reserve_soc_pct=10&export_limit_w=4000&time_zone=Europe%2FBerlin',
  );
});

test('columns: slot start in seconds, battery W, SoC %, import price', () => {
  const slot = (start, battery_w, soc_pct, import_price) => ({ start, battery_w, soc_pct, import_price, grid_w: 0 });
  const cols = planColumns({
    slots: [slot('2026-12-01T00:00:00Z', 3000, 27.1, 0.18), slot('2026-12-01T00:15:00Z', -1500, 23.2, 0.45)],
  });
  assert.deepEqual(cols, [
    [1796083200, 1796084100],
    [3000, -1500],
    [27.1, 23.2],
    [0.18, 0.45],
  ]);
});
