// API tokens (admins): the list without secrets, a form that creates one (role, optional expiry
// and device scope) and shows its secret once, and revoke. `GET/POST /tokens`,
// `DELETE /tokens/<name>`; revoking closes the token's open live feeds on every instance.

import { api, enc } from '../api.js';
import { h, fill } from '../dom.js';
import { when } from '../format.js';

const ROLES = ['viewer', 'operator', 'admin'];

/** The form's values as a `NewToken` body, or an error message. */
export function newTokenBody({ name, role, expires, devices }) {
  const body = { name: name.trim(), role };
  if (!body.name) return { error: 'A name is required.' };
  if (expires) {
    const t = new Date(expires);
    if (Number.isNaN(t.getTime())) return { error: 'The expiry is not a date.' };
    body.expires_at = t.toISOString();
  }
  const list = devices
    .split(/[\s,]+/)
    .map((d) => d.trim())
    .filter(Boolean);
  if (list.length > 0) {
    if (role === 'admin') return { error: 'An admin token cannot be limited to devices.' };
    body.devices = list;
  }
  return { body };
}

export function renderTokens(root) {
  const rows = h('tbody');
  const status = h('p', { class: 'hint' });
  const name = h('input', { type: 'text', placeholder: 'e.g. site-a-viewer', 'data-testid': 'token-name' });
  const role = h('select', { 'data-testid': 'token-role' }, ROLES.map((r) => h('option', { value: r }, r)));
  const expires = h('input', { type: 'datetime-local', 'data-testid': 'token-expires' });
  const devices = h('input', { type: 'text', placeholder: 'all devices', 'data-testid': 'token-devices' });
  const created = h('div', { class: 'result', 'data-testid': 'token-created' });
  const showRevoked = h('input', { type: 'checkbox', 'data-testid': 'show-revoked', onchange: () => load() });

  const create = async () => {
    const { body, error } = newTokenBody({ name: name.value, role: role.value, expires: expires.value, devices: devices.value });
    if (error) {
      fill(created, h('span', { class: 'error' }, error));
      return;
    }
    try {
      const t = await api('/tokens', { method: 'POST', body });
      fill(
        created,
        h('p', {}, `Token "${t.name}" (${t.role}) created. Copy it now: it is shown only once.`),
        h('code', { class: 'secret', 'data-testid': 'token-secret' }, t.token),
      );
      name.value = '';
      load();
    } catch (e) {
      fill(created, h('span', { class: 'error', 'data-testid': 'token-error' }, e.message));
    }
  };

  const revoke = async (tokenName) => {
    if (!confirm(`Revoke "${tokenName}"? Programs and people using it lose access at once.`)) return;
    try {
      await api(`/tokens/${enc(tokenName)}`, { method: 'DELETE' });
      load();
    } catch (e) {
      status.textContent = `Could not revoke ${tokenName}: ${e.message}`;
    }
  };

  root.append(
    h('p', {}, h('a', { href: '#/' }, '← Devices')),
    h('h1', {}, 'API tokens'),
    h(
      'section',
      { class: 'card', 'data-testid': 'token-form' },
      h('h2', {}, 'New token'),
      h(
        'div',
        { class: 'row form' },
        h('label', {}, 'Name ', name),
        h('label', {}, 'Role ', role),
        h('label', {}, 'Expires ', expires),
        h('label', {}, 'Devices ', devices),
        h('button', { 'data-testid': 'token-create', onclick: create }, 'Create'),
      ),
      created,
    ),
    h('label', { class: 'hint' }, showRevoked, ' show revoked tokens'),
    h(
      'div',
      { class: 'scroll' },
      h(
        'table',
        { class: 'list', 'data-testid': 'tokens' },
        h(
          'thead',
          {},
          h('tr', {}, ['Name', 'Role', 'Devices', 'Created', 'Expires', 'State', ''].map((c) => h('th', {}, c))),
        ),
        rows,
      ),
    ),
    status,
  );

  const load = async () => {
    try {
      const list = await api(`/tokens${showRevoked.checked ? '?revoked=true' : ''}`);
      fill(
        rows,
        list.map((t) =>
          h(
            'tr',
            { 'data-token': t.name },
            h('td', {}, t.name),
            h('td', {}, h('span', { class: `role role-${t.role}` }, t.role)),
            h('td', {}, t.devices ? t.devices.join(', ') : 'all'),
            h('td', { title: t.created_by ? `by ${t.created_by}` : '' }, when(t.created_at)),
            h('td', {}, t.expires_at ? when(t.expires_at) : 'never'),
            h(
              'td',
              { 'data-testid': 'token-state' },
              t.revoked_at ? `revoked ${when(t.revoked_at)}${t.revoked_by ? ` by ${t.revoked_by}` : ''}` : 'active',
            ),
            h('td', {}, t.revoked_at ? null : h('button', { class: 'link', 'data-testid': 'token-revoke', onclick: () => revoke(t.name) }, 'Revoke')),
          ),
        ),
      );
      status.textContent = `${list.length} token${list.length === 1 ? '' : 's'}`;
    } catch (e) {
      status.textContent = `Could not load tokens: ${e.message}`;
    }
  };
  load();
  return () => {};
}
