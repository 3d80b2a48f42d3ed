// One device: live values from `/ws/live/<id>` (a packet every second) under a banner when the
// device is offline or its data stale, the energy flow and energy per day or month, the history
// charts, the cloud planner's plan over the price curve, the command panel (operators and
// admins only), the command log and the event log.

/** A packet older than this, s, is stale: the banner says the values are not live. */
const STALE_S = 10;

import { api, enc, liveFeed } from '../api.js';
import { h, fill } from '../dom.js';
import { HistoryCharts } from '../charts.js';
import { EnergyPanel } from '../energy.js';
import { PlanPanel } from '../plan.js';
import { alertsTable } from '../alerts.js';
import { ago, batteryCurrent, batteryPower, commandText, eventText, gridPower, num, when, windowAction, windowWhen } from '../format.js';

/** `SET_MODE.payload.target_mode` values; the first two take `target_power`. */
const MODES = ['AUTO', 'MANUAL_CHARGE', 'MANUAL_DISCHARGE', 'MANUAL_IDLE'];
const NEEDS_POWER = new Set(['MANUAL_CHARGE', 'MANUAL_DISCHARGE']);
const FINAL = new Set(['ACCEPTED', 'REJECTED', 'COMPLETED', 'EXPIRED']);

/** A labelled value whose text the live packets replace. */
function field(label, testid) {
  const value = h('span', { class: 'value', 'data-testid': testid }, '—');
  return { row: h('div', { class: 'field' }, h('span', { class: 'label' }, label), value), value };
}

export function renderDevice(root, deviceId, ctx) {
  const timers = [];
  let last = null; // newest packet shown
  let lastEventsKey = null;

  // --- header -------------------------------------------------------------------------------
  const title = h('h1', {}, deviceId);
  const online = h('span', { class: 'dot off', 'data-testid': 'device-online' }, '…');
  const freshness = h('span', { class: 'hint', 'data-testid': 'freshness' });
  const feedState = h('span', { class: 'hint', 'data-testid': 'feed-state' }, 'connecting…');
  const banner = h('div', { class: 'banner', 'data-testid': 'stale-banner', hidden: true });
  let deviceOnline = null;
  root.append(
    h('p', {}, h('a', { href: '#/' }, '← Devices')),
    h('div', { class: 'titlebar' }, title, online, freshness, feedState),
    banner,
  );
  /** Shows the banner while the device is offline or the newest packet is old. */
  const checkStale = () => {
    const age = last ? (Date.now() - Date.parse(last.timestamp)) / 1000 : null;
    let why = null;
    if (deviceOnline === false) why = `Offline: the device is not connected${last ? `; last packet ${ago(last.timestamp)}` : ''}.`;
    else if (age != null && age > STALE_S) why = `Stale: no packet for ${Math.round(age)} s.`;
    banner.hidden = why == null;
    banner.textContent = why ? `${why} The values below are not live.` : '';
    liveSection.classList.toggle('stale', why != null);
  };

  // --- live values --------------------------------------------------------------------------
  const f = {
    state: field('State', 'state'),
    mode: field('Mode', 'mode'),
    flags: field('Errors', 'error-flags'),
    wifi: field('Wi-Fi', 'wifi'),
    soc: field('State of charge', 'battery-soc'),
    bpower: field('Power', 'battery-power'),
    bcurrent: field('Current', 'battery-current'),
    bvoltage: field('Voltage', 'battery-voltage'),
    gpower: field('Power', 'grid-power'),
    gvoltage: field('Voltage', 'grid-voltage'),
    gfreq: field('Frequency', 'grid-frequency'),
  };
  const socBar = h('div', { class: 'bar' }, h('div', { class: 'fill' }));
  const stamp = h('span', { class: 'hint', 'data-testid': 'timestamp' });
  const liveSection = h(
      'section',
      { class: 'cards', 'data-testid': 'live' },
      h('div', { class: 'card' }, h('h2', {}, 'System'), f.state.row, f.mode.row, f.flags.row, f.wifi.row, stamp),
      h('div', { class: 'card' }, h('h2', {}, 'Battery'), f.soc.row, socBar, f.bpower.row, f.bcurrent.row, f.bvoltage.row),
      h('div', { class: 'card' }, h('h2', {}, 'Grid'), f.gpower.row, f.gvoltage.row, f.gfreq.row),
  );
  const energySection = h('section', { class: 'card energy', 'data-testid': 'energy' }, h('h2', {}, 'Energy'));
  const scheduleRows = h('tbody');
  const scheduleInfo = h('p', { class: 'hint', 'data-testid': 'schedule-info' }, 'loading…');
  const scheduleSection = h(
    'section',
    { class: 'card', 'data-testid': 'schedule' },
    h('h2', {}, 'Schedule'),
    scheduleInfo,
    h(
      'div',
      { class: 'scroll' },
      h(
        'table',
        { class: 'list' },
        h('thead', {}, h('tr', {}, ['#', 'When', 'Action', ''].map((c) => h('th', {}, c)))),
        scheduleRows,
      ),
    ),
  );
  const alertsBox = h('div');
  const alertsSection = h('section', { class: 'card', 'data-testid': 'device-alerts' }, h('h2', {}, 'Alerts'), alertsBox);
  root.append(liveSection, alertsSection, energySection, scheduleSection);
  const loadAlerts = async () => {
    try {
      const list = await api(`/alerts?device=${enc(deviceId)}&limit=20`);
      fill(alertsBox, alertsTable(list, { showDevice: false, empty: 'No alerts.' }));
    } catch (e) {
      fill(alertsBox, h('p', { class: 'error' }, `Alerts unavailable: ${e.message}`));
    }
  };
  const energy = new EnergyPanel(energySection, deviceId);

  const show = (t) => {
    last = t;
    const s = t.system_status;
    f.state.value.textContent = s.state;
    f.state.value.className = `value badge state-${s.state.toLowerCase()}`;
    f.mode.value.textContent = s.mode === 'AUTO' ? 'AUTO (self-consumption)' : s.mode;
    fill(
      f.flags.value,
      s.error_flags.length === 0 ? h('span', { class: 'ok' }, 'none') : s.error_flags.map((x) => h('span', { class: 'badge flag' }, x)),
    );
    f.wifi.value.textContent = s.wifi_strength == null ? '—' : `${s.wifi_strength} dBm`;

    const b = t.battery;
    f.soc.value.textContent = num(b.soc, 1, '%');
    socBar.firstChild.style.width = `${Math.max(0, Math.min(100, b.soc ?? 0))}%`;
    const bp = batteryPower(b.power);
    f.bpower.value.textContent = bp.text;
    f.bpower.value.className = `value big dir-${bp.word}`;
    f.bpower.value.title = `battery.power = ${b.power} W (+ = charging)`;
    f.bcurrent.value.textContent = batteryCurrent(b.current);
    f.bcurrent.value.title = `battery.current = ${b.current} A (+ = charging)`;
    f.bvoltage.value.textContent = num(b.voltage, 1, 'V');

    const g = t.grid;
    const gp = gridPower(g.power);
    f.gpower.value.textContent = gp.text;
    f.gpower.value.className = `value big dir-${gp.word}`;
    f.gpower.value.title = `grid.power = ${g.power} W (− = exporting)`;
    f.gvoltage.value.textContent = num(g.voltage, 1, 'V');
    f.gfreq.value.textContent = num(g.frequency, 2, 'Hz');
    stamp.textContent = `packet of ${when(t.timestamp)}`;
    stamp.dataset.ts = t.timestamp;
    energy.live(t);
    markActiveWindow(s.schedule);
    checkStale();

    const key = `${s.state}|${s.error_flags.join(',')}`;
    if (lastEventsKey !== null && key !== lastEventsKey) setTimeout(loadEvents, 500);
    lastEventsKey = key;
  };

  // --- schedule -----------------------------------------------------------------------------
  let activeWindow = null;
  /** Highlights the window the device reports in force (`system_status.schedule`). */
  const markActiveWindow = (w) => {
    activeWindow = w ?? null;
    for (const tr of scheduleRows.querySelectorAll('tr[data-window]')) {
      const on = activeWindow != null && Number(tr.dataset.window) === activeWindow.window;
      tr.classList.toggle('active', on);
      tr.lastChild.textContent = on ? `in force until ${when(activeWindow.until)}` : '';
    }
  };
  const loadSchedule = async () => {
    try {
      const s = await api(`/devices/${enc(deviceId)}/schedule`);
      const sch = s.schedule;
      scheduleInfo.textContent = `Accepted ${when(s.accepted_at)}, valid until ${when(sch.valid_until)}; daily windows in ${sch.time_zone ?? 'UTC'}. The device runs it by itself, also offline.`;
      fill(
        scheduleRows,
        sch.windows.map((w, i) =>
          h('tr', { 'data-window': i }, h('td', {}, String(i)), h('td', {}, windowWhen(w)), h('td', {}, windowAction(w)), h('td', { class: 'hint' })),
        ),
      );
      markActiveWindow(activeWindow);
    } catch (e) {
      scheduleInfo.textContent = e.status === 404 ? 'No schedule: AUTO follows its configured strategy.' : `Schedule unavailable: ${e.message}`;
      fill(scheduleRows);
    }
  };

  // --- command panel (operators and admins) -------------------------------------------------
  const result = h('div', { class: 'result', 'data-testid': 'command-result' });
  let waitingFor = null;
  const showCommand = (c) => {
    if (c.command_id !== waitingFor) return;
    const final = FINAL.has(c.status);
    fill(
      result,
      h('span', { class: `badge status-${c.status.toLowerCase()}`, 'data-testid': 'command-status' }, c.status),
      ` ${commandText(c)}`,
      c.reason ? h('span', { class: 'reason' }, ` — ${c.reason}`) : null,
      final ? null : h('span', { class: 'hint' }, ' waiting for the device…'),
    );
  };
  if (ctx.canCommand) {
    const mode = h('select', { 'data-testid': 'target-mode' }, MODES.map((m) => h('option', { value: m }, m)));
    const power = h('input', { type: 'number', min: 0, step: 50, value: 500, 'data-testid': 'target-power' });
    const powerLabel = h('label', {}, 'Power ', power, ' W');
    const syncPower = () => (powerLabel.style.display = NEEDS_POWER.has(mode.value) ? '' : 'none');
    mode.addEventListener('change', syncPower);
    syncPower();
    const send = async (body) => {
      waitingFor = null;
      fill(result, h('span', { class: 'hint' }, 'sending…'));
      try {
        const c = await api(`/devices/${enc(deviceId)}/commands?wait=10`, { method: 'POST', body });
        waitingFor = c.command_id;
        showCommand(c);
        loadCommands();
      } catch (e) {
        fill(result, h('span', { class: 'badge status-rejected' }, 'ERROR'), ` ${e.message}`);
      }
    };
    root.append(
      h(
        'section',
        { class: 'card commands', 'data-testid': 'command-panel' },
        h('h2', {}, 'Commands'),
        h(
          'div',
          { class: 'row' },
          h('label', {}, 'Mode ', mode),
          powerLabel,
          h(
            'button',
            {
              'data-testid': 'set-mode',
              onclick: () => {
                const payload = { target_mode: mode.value };
                if (NEEDS_POWER.has(mode.value)) payload.target_power = Number(power.value);
                send({ action: 'SET_MODE', payload });
              },
            },
            'Set mode',
          ),
          h('button', { 'data-testid': 'reset-error', onclick: () => send({ action: 'RESET_ERROR', payload: {} }) }, 'Reset error'),
        ),
        result,
      ),
    );
  }

  // --- history ------------------------------------------------------------------------------
  const historySection = h('section', { class: 'card' }, h('h2', {}, 'History'));
  root.append(historySection);
  const charts = new HistoryCharts(historySection, deviceId);

  // --- the cloud planner's plan ---------------------------------------------------------------
  const planSection = h('section', { class: 'card', 'data-testid': 'plan' }, h('h2', {}, 'Plan'));
  root.append(planSection);
  const planPanel = new PlanPanel(planSection, deviceId);

  // --- logs ---------------------------------------------------------------------------------
  const commandRows = h('tbody');
  const eventRows = h('tbody');
  root.append(
    h(
      'section',
      { class: 'logs' },
      h(
        'div',
        { class: 'card' },
        h('h2', {}, 'Command log'),
        h(
          'table',
          { class: 'list', 'data-testid': 'command-log' },
          h('thead', {}, h('tr', {}, h('th', {}, 'Issued'), h('th', {}, 'Command'), h('th', {}, 'By'), h('th', {}, 'Status'))),
          commandRows,
        ),
      ),
      h(
        'div',
        { class: 'card' },
        h('h2', {}, 'Event log'),
        h(
          'table',
          { class: 'list', 'data-testid': 'event-log' },
          h('thead', {}, h('tr', {}, h('th', {}, 'Time'), h('th', {}, 'Event'))),
          eventRows,
        ),
      ),
    ),
  );
  const loadCommands = async () => {
    try {
      const list = await api(`/devices/${enc(deviceId)}/commands?limit=20`);
      fill(
        commandRows,
        list.length === 0
          ? h('tr', {}, h('td', { colspan: 4, class: 'hint' }, 'No commands yet.'))
          : list.map((c) =>
              h(
                'tr',
                {},
                h('td', { title: c.command_id }, when(c.issued_at)),
                h('td', {}, commandText(c)),
                h('td', {}, c.issued_by),
                h('td', {}, h('span', { class: `badge status-${c.status.toLowerCase()}` }, c.status), c.reason ? ` ${c.reason}` : ''),
              ),
            ),
      );
    } catch (e) {
      fill(commandRows, h('tr', {}, h('td', { colspan: 4, class: 'error' }, e.message)));
    }
  };
  const loadEvents = async () => {
    try {
      const list = await api(`/devices/${enc(deviceId)}/events?limit=50`);
      fill(
        eventRows,
        list.length === 0
          ? h('tr', {}, h('td', { colspan: 2, class: 'hint' }, 'No events yet.'))
          : list.map((e) => h('tr', {}, h('td', {}, when(e.time)), h('td', { class: `event ${e.kind.toLowerCase()}` }, eventText(e)))),
      );
    } catch (e) {
      fill(eventRows, h('tr', {}, h('td', { colspan: 2, class: 'error' }, e.message)));
    }
  };

  // --- data ---------------------------------------------------------------------------------
  const loadInfo = async () => {
    try {
      const d = await api(`/devices/${enc(deviceId)}`);
      title.textContent = d.name === d.id ? d.id : `${d.name} (${d.id})`;
      online.textContent = d.online ? 'online' : 'offline';
      online.className = `dot ${d.online ? 'on' : 'off'}`;
      deviceOnline = d.online;
      checkStale();
      if (!last) freshness.textContent = `last seen ${ago(d.last_seen)}`;
    } catch (e) {
      title.textContent = e.status === 404 ? `Unknown device ${deviceId}` : deviceId;
      online.textContent = e.message;
    }
  };
  loadInfo();
  api(`/devices/${enc(deviceId)}/telemetry/latest`)
    .then((t) => {
      if (!last) show(t);
    })
    .catch(() => {});
  loadCommands();
  loadEvents();
  loadSchedule();
  loadAlerts();
  timers.push(setInterval(loadInfo, 5000), setInterval(loadEvents, 15000), setInterval(loadAlerts, 10000));
  timers.push(
    setInterval(() => {
      if (last) freshness.textContent = `last packet ${ago(last.timestamp)}`;
      checkStale();
    }, 1000),
  );

  let commandsReload = null;
  const close = liveFeed(
    deviceId,
    (ev) => {
      if (ev.type === 'TELEMETRY') {
        if (!last || ev.telemetry.timestamp >= last.timestamp) show(ev.telemetry);
        charts.append(ev.telemetry);
      } else if (ev.type === 'COMMAND_STATUS') {
        showCommand(ev.command);
        if (ev.command.action === 'SET_SCHEDULE' && ev.command.status === 'ACCEPTED') loadSchedule();
        clearTimeout(commandsReload);
        commandsReload = setTimeout(loadCommands, 200);
      }
    },
    (state) => {
      feedState.textContent = state === 'open' ? 'live' : 'live feed lost, reconnecting…';
      feedState.className = state === 'open' ? 'live' : 'hint error';
    },
  );

  return () => {
    close();
    timers.forEach(clearInterval);
    clearTimeout(commandsReload);
    charts.destroy();
    planPanel.destroy();
  };
}
