// The device list: online state and last seen, and the open alerts of every device the token
// sees (`GET /alerts?state=open`), refreshed every 5 s.

import { api } from '../api.js';
import { h, fill } from '../dom.js';
import { ago, when } from '../format.js';
import { alertsTable } from '../alerts.js';

export function renderDevices(root) {
  const body = h('tbody');
  const status = h('p', { class: 'hint' });
  const alerts = h('section', { class: 'card alerts', 'data-testid': 'open-alerts' }, h('h2', {}, 'Open alerts'));
  const alertsBody = h('div');
  alerts.append(alertsBody);
  root.append(
    alerts,
    h('h1', {}, 'Devices'),
    h(
      'table',
      { class: 'list', 'data-testid': 'devices' },
      h('thead', {}, h('tr', {}, h('th', {}, 'Device'), h('th', {}, 'Id'), h('th', {}, 'State'), h('th', {}, 'Last seen'))),
      body,
    ),
    status,
  );
  const load = async () => {
    try {
      const devices = await api('/devices');
      fill(
        body,
        devices.length === 0
          ? h('tr', {}, h('td', { colspan: 4 }, 'No devices registered yet (ems-cloud add-device <id>).'))
          : devices.map((d) =>
              h(
                'tr',
                { 'data-device': d.id, class: 'clickable', onclick: () => (location.hash = `#/device/${encodeURIComponent(d.id)}`) },
                h('td', {}, h('a', { href: `#/device/${encodeURIComponent(d.id)}` }, d.name)),
                h('td', {}, h('code', {}, d.id)),
                h('td', {}, h('span', { class: `dot ${d.online ? 'on' : 'off'}`, 'data-testid': 'online' }, d.online ? 'online' : 'offline')),
                h('td', { title: when(d.last_seen) }, ago(d.last_seen)),
              ),
            ),
      );
      status.textContent = `Updated ${new Date().toLocaleTimeString()}`;
    } catch (e) {
      status.textContent = `Could not load devices: ${e.message}`;
    }
    try {
      const open = await api('/alerts?state=open&limit=100');
      fill(alertsBody, alertsTable(open, { showDevice: true, empty: 'None: every device is within its rules.' }));
      alerts.classList.toggle('firing', open.length > 0);
    } catch (e) {
      fill(alertsBody, h('p', { class: 'error' }, `Alerts unavailable: ${e.message}`));
    }
  };
  load();
  const timer = setInterval(load, 5000);
  return () => clearInterval(timer);
}
