// The device list: online state and last seen, refreshed every 5 s.

import { api } from '../api.js';
import { h, fill } from '../dom.js';
import { ago, when } from '../format.js';

export function renderDevices(root) {
  const body = h('tbody');
  const status = h('p', { class: 'hint' });
  root.append(
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
  };
  load();
  const timer = setInterval(load, 5000);
  return () => clearInterval(timer);
}
