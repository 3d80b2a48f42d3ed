// End-to-end test of the dashboard in headless Chromium (playwright-core, Debian's chromium).
// Started by cloud/tests/dashboard_browser.rs against a real ems-cloud with a scripted device;
// run by hand the same way with these variables:
//   EMS_URL            http://127.0.0.1:<port>
//   EMS_DEVICE_ID      a device that sends telemetry every second, answers commands ACCEPTED
//                      and follows them, but REJECTED with a reason above 5000 W
//   EMS_OPERATOR_TOKEN an operator token
//   EMS_VIEWER_TOKEN   a viewer token
//   EMS_ADMIN_TOKEN    an admin token
//   EMS_OFFLINE_DEVICE_ID a device with a few stored packets that is not connected
//   EMS_SCREENSHOT     where to save the screenshot (PNG)
//   EMS_SCREENSHOT_PHONE where to save the screenshot at a phone's viewport (PNG)
//   EMS_CHROMIUM       the browser (default /usr/bin/chromium)
// Exits 1 with the failed step on stderr.

import { mkdtempSync, mkdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { chromium } from 'playwright-core';

const env = (k) => {
  const v = process.env[k];
  if (!v) throw new Error(`${k} is not set`);
  return v;
};
const url = env('EMS_URL');
const deviceId = env('EMS_DEVICE_ID');
const operator = env('EMS_OPERATOR_TOKEN');
const viewer = env('EMS_VIEWER_TOKEN');
const admin = env('EMS_ADMIN_TOKEN');
const offlineDevice = env('EMS_OFFLINE_DEVICE_ID');
const screenshot = env('EMS_SCREENSHOT');
const phoneShot = env('EMS_SCREENSHOT_PHONE');
const executablePath = process.env.EMS_CHROMIUM || '/usr/bin/chromium';

const T = 15000; // deadline of each wait, ms
let step = 'start';
const log = (s) => {
  step = s;
  console.log(`e2e: ${s}`);
};

const profile = mkdtempSync(join(tmpdir(), 'ems-e2e-chromium-'));
// A fresh profile directory (Playwright wants it as the persistent context's argument rather
// than as --user-data-dir).
const context = await chromium.launchPersistentContext(profile, {
  executablePath,
  headless: true,
  viewport: { width: 1280, height: 1000 },
  args: [
    '--headless',
    '--no-sandbox',
    '--disable-gpu',
    '--disable-quic',
    '--no-first-run',
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-sync',
  ],
});

async function signIn(page, token, role) {
  await page.goto(url);
  await page.getByTestId('token').fill(token);
  await page.getByTestId('sign-in').click();
  await page.getByTestId('role').filter({ hasText: role }).waitFor({ timeout: T });
}

async function openDevice(page, id = deviceId) {
  const row = page.locator(`tr[data-device="${id}"]`);
  await row.waitFor({ timeout: T });
  await row.getByTestId('online').filter({ hasText: 'online' }).waitFor({ timeout: T });
  await row.locator('a').click();
  await page.getByTestId('feed-state').filter({ hasText: 'live' }).waitFor({ timeout: T });
}

/** The live values as text, once a packet has been shown. */
async function liveValues(page) {
  const ids = ['timestamp', 'battery-power', 'battery-current', 'battery-soc', 'grid-power', 'grid-frequency', 'state', 'mode'];
  const out = {};
  for (const id of ids) out[id] = (await page.getByTestId(id).textContent()).trim();
  out.ts = await page.getByTestId('timestamp').getAttribute('data-ts');
  return out;
}

let failed = false;
try {
  const page = context.pages()[0] ?? (await context.newPage());
  page.on('pageerror', (e) => console.error(`e2e: page error: ${e.message}`));
  // Every WebSocket URL the page opens: an API token must never be in one.
  const socketUrls = [];
  page.on('websocket', (ws) => socketUrls.push(ws.url()));

  log('an unknown token is refused');
  await page.goto(url);
  await page.getByTestId('token').fill('emsa_not_a_token');
  await page.getByTestId('sign-in').click();
  await page.getByTestId('sign-in-error').filter({ hasText: 'Unknown' }).waitFor({ timeout: T });

  log('sign in as operator');
  await signIn(page, operator, 'operator');

  log('the device list shows the open alert of the device that left');
  await page
    .locator(`[data-testid=open-alerts] tr.open`)
    .filter({ hasText: offlineDevice })
    .filter({ hasText: 'site offline (offline)' })
    .waitFor({ timeout: T });

  log('open the device from the list');
  await openDevice(page);
  await page.getByTestId('device-alerts').getByTestId('alerts-empty').waitFor({ timeout: T });

  log('live values change from one second to the next');
  await page.waitForFunction(() => document.querySelector('[data-testid=timestamp]')?.dataset.ts, null, { timeout: T });
  const first = await liveValues(page);
  await page.waitForFunction(
    (ts) => {
      const now = document.querySelector('[data-testid=timestamp]').dataset.ts;
      return now && now > ts;
    },
    first.ts,
    { timeout: 5000 },
  );
  const second = await liveValues(page);
  console.log(`e2e:   ${JSON.stringify(first)}\ne2e:   ${JSON.stringify(second)}`);
  if (second['battery-power'] === first['battery-power'] && second['grid-power'] === first['grid-power']) {
    throw new Error('battery and grid power did not change between packets');
  }
  for (const [k, re] of [
    ['battery-power', /^(charging|discharging|idle)/],
    ['grid-power', /^(importing|exporting|balanced)/],
    ['battery-current', /(into|out of) the battery|no current/],
  ]) {
    if (!re.test(second[k])) throw new Error(`${k} reads ${JSON.stringify(second[k])}, expected words for the sign`);
  }

  log('the live feed was opened with a ticket, never with the token in its URL');
  if (socketUrls.length === 0) throw new Error('no WebSocket seen');
  for (const u of socketUrls) {
    if (u.includes('emsa_') || u.includes('token=')) throw new Error(`API token in a URL: ${u}`);
    if (!u.includes('ticket=emst_')) throw new Error(`live feed without a ticket: ${u}`);
  }

  log('history charts are drawn by uPlot');
  await page.locator('.charts .uplot').first().waitFor({ timeout: T });
  if ((await page.locator('.charts .uplot').count()) !== 3) throw new Error('expected 3 charts');
  for (const [range, re] of [
    ['24h', /^[1-9]\d* buckets of 5 min/],
    ['7d', /^[1-9]\d* buckets of 60 min/],
    ['1h', /^[1-9]\d* packets/],
  ]) {
    await page.locator(`button[data-range="${range}"]`).click();
    await page.getByTestId('history-status').filter({ hasText: re }).waitFor({ timeout: T });
  }

  log('the stale banner is hidden while packets arrive');
  if (!(await page.getByTestId('stale-banner').isHidden())) throw new Error('stale banner shown for a live device');

  log('the energy flow says where the power goes, in words');
  await page.getByTestId('flow-grid').filter({ hasText: /^(importing|exporting|balanced)/ }).waitFor({ timeout: T });
  await page.getByTestId('flow-battery').filter({ hasText: /^(charging|discharging|idle)/ }).waitFor({ timeout: T });
  await page.getByTestId('flow-site').filter({ hasText: /^(using|surplus)/ }).waitFor({ timeout: T });

  log('energy per day and per month: bars and kWh totals from the stored packets');
  await page.getByTestId('energy-status').filter({ hasText: /^[1-9]\d* days with data/ }).waitFor({ timeout: T });
  if ((await page.locator('[data-testid=energy-bars] .ecol').count()) < 1) throw new Error('no energy bars');
  const totals = await page.getByTestId('energy-totals').textContent();
  if (!/imported \d+(\.\d+)? kWh/.test(totals) || !/charged \d/.test(totals)) throw new Error(`energy totals read ${JSON.stringify(totals)}`);
  console.log(`e2e:   energy totals: ${totals}`);
  for (const kind of ['pv', 'house', 'self-consumption', 'self-sufficiency']) {
    await page.locator(`[data-testid=energy-totals] [data-kind="${kind}"]`).waitFor({ timeout: T });
  }
  if (!/self-consumption \d+ %/.test(await page.getByTestId('energy-totals').textContent())) throw new Error('no self-consumption %');
  await page.getByText(/^House \(PV /).waitFor({ timeout: T });
  await page.locator('button[data-period="months"]').click();
  await page.getByTestId('energy-status').filter({ hasText: /^[1-9]\d* months with data/ }).waitFor({ timeout: T });
  await page.locator('button[data-period="days"]').click();
  await page.getByTestId('energy-status').filter({ hasText: /days with data/ }).waitFor({ timeout: T });

  log('the schedule card lists the accepted windows in words');
  await page.getByTestId('schedule').getByText('daily 23:00–06:00').waitFor({ timeout: T });
  await page.getByTestId('schedule').getByText('charge 2.00 kW up to 90 %').waitFor({ timeout: T });
  await page.getByTestId('schedule').getByText('discharge 2.50 kW down to 30 %').waitFor({ timeout: T });
  await page.getByTestId('schedule-info').filter({ hasText: 'Europe/Paris' }).waitFor({ timeout: T });

  log('the plan chart draws the planned battery power and SoC over the import price');
  await page.getByTestId('plan-status').filter({ hasText: /^96 slots from \d+ % \(planner off/ }).waitFor({ timeout: T });
  await page.locator('[data-testid=plan-chart] .uplot canvas').waitFor({ timeout: T });
  for (const label of ['battery W', 'SoC %', 'import price']) {
    await page.locator('[data-testid=plan-chart] .u-legend').getByText(label).waitFor({ timeout: T });
  }
  const inked = await page.evaluate(() => {
    const c = document.querySelector('[data-testid=plan-chart] canvas');
    const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
    let n = 0;
    for (let i = 3; i < d.length; i += 4) if (d[i]) n++;
    return { n, w: c.width, h: c.height };
  });
  if (inked.w < 200 || inked.h < 100 || inked.n < 1000) throw new Error(`plan chart not drawn: ${JSON.stringify(inked)}`);
  const planCosts = await page.getByTestId('plan-costs').textContent();
  if (!/^Expected cost: plan -?\d+\.\d\d, plain self-consumption -?\d+\.\d\d, no battery -?\d+\.\d\d/.test(planCosts)) {
    throw new Error(`plan costs read ${JSON.stringify(planCosts)}`);
  }
  console.log(`e2e:   ${planCosts} (${inked.n} pixels drawn)`);

  log('send SET_MODE MANUAL_DISCHARGE 800 W and see ACCEPTED');
  await page.getByTestId('target-mode').selectOption('MANUAL_DISCHARGE');
  await page.getByTestId('target-power').fill('800');
  await page.getByTestId('set-mode').click();
  await page.getByTestId('command-status').filter({ hasText: 'ACCEPTED' }).waitFor({ timeout: T });
  await page.getByTestId('command-log').getByText('set mode MANUAL_DISCHARGE 800 W').first().waitFor({ timeout: T });

  log('send MANUAL_CHARGE 9000 W and see REJECTED with the device\'s reason');
  await page.getByTestId('target-mode').selectOption('MANUAL_CHARGE');
  await page.getByTestId('target-power').fill('9000');
  await page.getByTestId('set-mode').click();
  await page.getByTestId('command-status').filter({ hasText: 'REJECTED' }).waitFor({ timeout: T });
  await page.getByTestId('command-result').getByText('above the inverter limit').waitFor({ timeout: T });

  log('the device follows the accepted command: mode MANUAL, discharging');
  await page.getByTestId('mode').filter({ hasText: 'MANUAL' }).waitFor({ timeout: T });
  await page.getByTestId('battery-power').filter({ hasText: 'discharging' }).waitFor({ timeout: T });

  log('the event log shows the state change on top (the backlog has older ones)');
  await page
    .locator('[data-testid=event-log] tbody tr')
    .first()
    .filter({ hasText: 'state CHARGING → DISCHARGING' })
    .waitFor({ timeout: 20000 });

  log(`screenshot ${screenshot}`);
  mkdirSync(dirname(screenshot), { recursive: true });
  await page.screenshot({ path: screenshot, fullPage: true });

  log('sign out, sign in as viewer: live values, no command panel');
  await page.getByTestId('sign-out').click();
  await signIn(page, viewer, 'viewer');
  await openDevice(page);
  await page.waitForFunction(() => document.querySelector('[data-testid=timestamp]')?.dataset.ts, null, { timeout: T });
  await page.getByTestId('command-log').waitFor({ timeout: T });
  if ((await page.getByTestId('command-panel').count()) !== 0) throw new Error('a viewer sees the command panel');
  if ((await page.getByTestId('nav-tokens').count()) !== 0) throw new Error('a viewer sees the tokens link');

  log('a device that is not connected: the banner says offline and the values are not live');
  await page.goto(`${url}/#/device/${encodeURIComponent(offlineDevice)}`);
  await page.getByTestId('stale-banner').filter({ hasText: 'Offline' }).waitFor({ timeout: T });
  await page.getByTestId('device-alerts').locator('tr.open').filter({ hasText: 'site offline' }).waitFor({ timeout: T });

  log('admin: create a scoped viewer token in the dashboard; its secret is shown once');
  await page.getByTestId('sign-out').click();
  await signIn(page, admin, 'admin');
  await page.getByTestId('nav-tokens').click();
  await page.getByTestId('tokens').waitFor({ timeout: T });
  await page.getByTestId('token-name').fill('e2e-scoped');
  await page.getByTestId('token-role').selectOption('viewer');
  await page.getByTestId('token-devices').fill(deviceId);
  await page.getByTestId('token-create').click();
  const secret = (await page.getByTestId('token-secret').textContent({ timeout: T })).trim();
  if (!/^emsa_[A-Za-z0-9_-]{43}$/.test(secret)) throw new Error(`token secret reads ${JSON.stringify(secret)}`);
  const row = page.locator('tr[data-token="e2e-scoped"]');
  await row.getByTestId('token-state').filter({ hasText: 'active' }).waitFor({ timeout: T });
  if (!(await row.textContent()).includes(deviceId)) throw new Error('the scope is not listed');

  log('the new token signs in and sees only its device');
  await page.getByTestId('sign-out').click();
  await signIn(page, secret, 'viewer');
  await page.locator(`tr[data-device="${deviceId}"]`).waitFor({ timeout: T });
  if ((await page.locator(`tr[data-device="${offlineDevice}"]`).count()) !== 0) throw new Error('a scoped token lists another device');

  log('admin revokes it; it cannot sign in any more');
  await page.getByTestId('sign-out').click();
  await signIn(page, admin, 'admin');
  await page.getByTestId('nav-tokens').click();
  page.once('dialog', (d) => d.accept());
  await page.locator('tr[data-token="e2e-scoped"]').getByTestId('token-revoke').click();
  await page.locator('tr[data-token="e2e-scoped"]').waitFor({ state: 'detached', timeout: T });
  await page.getByTestId('show-revoked').check();
  await page.locator('tr[data-token="e2e-scoped"]').getByTestId('token-state').filter({ hasText: 'revoked' }).waitFor({ timeout: T });
  await page.getByTestId('sign-out').click();
  await page.getByTestId('token').fill(secret);
  await page.getByTestId('sign-in').click();
  await page.getByTestId('sign-in-error').filter({ hasText: /\S/ }).waitFor({ timeout: T });

  log('a phone (390 × 844): one column, nothing wider than the screen');
  const phone = await context.newPage();
  phone.on('pageerror', (e) => console.error(`e2e: page error (phone): ${e.message}`));
  await phone.setViewportSize({ width: 390, height: 844 });
  await signIn(phone, viewer, 'viewer');
  await openDevice(phone);
  await phone.waitForFunction(() => document.querySelector('[data-testid=timestamp]')?.dataset.ts, null, { timeout: T });
  await phone.getByTestId('energy-status').filter({ hasText: /days with data/ }).waitFor({ timeout: T });
  const widths = await phone.evaluate(() => {
    const screen = window.innerWidth;
    // The innermost elements that stick out, to name the culprit.
    const wide = [...document.querySelectorAll('body *')]
      .filter((e) => e.getBoundingClientRect().right > screen + 1 && ![...e.children].some((c) => c.getBoundingClientRect().right > screen + 1))
      .slice(0, 5)
      .map((e) => `${e.tagName.toLowerCase()}.${e.className}[${e.dataset.testid ?? ''}] ${Math.round(e.getBoundingClientRect().right)}`);
    return { page: document.documentElement.scrollWidth, screen, wide };
  });
  if (widths.page > widths.screen + 1) throw new Error(`the page is ${widths.page} px wide on a ${widths.screen} px screen: ${widths.wide.join(', ')}`);
  const boxes = await phone.locator('[data-testid=live] .card').evaluateAll((cards) => cards.map((c) => c.getBoundingClientRect().left));
  if (new Set(boxes.map(Math.round)).size !== 1) throw new Error(`live cards not in one column: ${boxes}`);
  log(`phone screenshot ${phoneShot}`);
  await phone.screenshot({ path: phoneShot, fullPage: true });

  console.log('e2e: all steps passed');
} catch (e) {
  failed = true;
  console.error(`e2e: FAILED at "${step}": ${e.message}`);
} finally {
  await context.close();
  rmSync(profile, { recursive: true, force: true });
}
process.exit(failed ? 1 : 0);
