// The sign conventions of the spec, as the dashboard words them. Run: npm test
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { batteryPower, batteryCurrent, gridPower, watts, ago, commandText } from '../src/format.js';

test('battery power: + is charging, - is discharging', () => {
  assert.equal(batteryPower(1200).text, 'charging 1.20 kW');
  assert.equal(batteryPower(-500).text, 'discharging 500 W');
  assert.equal(batteryPower(2).word, 'idle');
  assert.equal(batteryPower(null).text, '—');
});

test('battery current: + flows into the battery', () => {
  assert.equal(batteryCurrent(10.5), '10.5 A into the battery');
  assert.equal(batteryCurrent(-3), '3.0 A out of the battery');
});

test('grid power: - is exporting, + is importing', () => {
  assert.equal(gridPower(-200).text, 'exporting 200 W to the grid');
  assert.equal(gridPower(3500).text, 'importing 3.50 kW from the grid');
  assert.equal(gridPower(0).word, 'balanced');
});

test('magnitudes and ages', () => {
  assert.equal(watts(-12345), '12.3 kW');
  assert.equal(ago('2026-01-01T00:00:00Z', Date.parse('2026-01-01T00:02:00Z')), '2 min ago');
  assert.equal(
    commandText({ action: 'SET_MODE', payload: { target_mode: 'MANUAL_CHARGE', target_power: 800 } }),
    'set mode MANUAL_CHARGE 800 W',
  );
});

test('schedule windows in words', async () => {
  const { windowAction, windowWhen } = await import('../src/format.js');
  assert.equal(windowWhen({ daily_start: '23:00', daily_end: '06:00' }), 'daily 23:00–06:00');
  assert.equal(windowAction({ action: 'CHARGE', power_w: 2000, to_soc_pct: 90 }), 'charge 2.00 kW up to 90 %');
  assert.equal(windowAction({ action: 'CHARGE', power_w: 500, to_soc_pct: 80, from_grid: false }), 'charge 500 W up to 80 % (PV surplus only)');
  assert.equal(windowAction({ action: 'DISCHARGE', power_w: 2500, down_to_soc_pct: 30 }), 'discharge 2.50 kW down to 30 %');
  assert.equal(windowAction({ action: 'LIMITS', export_limit_w: 0 }), 'export at most 0 W');
  assert.equal(commandText({ action: 'SET_SCHEDULE', payload: { windows: [] } }), 'clear schedule');
});
