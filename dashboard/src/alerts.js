// Alerts as a table: open ones first with how long they have been open, resolved ones with
// when. From `GET /api/v1/alerts` (newest first; the token's device scope applies).

import { h } from './dom.js';
import { ago, when } from './format.js';

/** `OFFLINE` -> `offline`, `SOC_BELOW` -> `SoC below`: the rule kind in words. */
export function kindText(kind) {
  return (
    {
      OFFLINE: 'offline',
      ERROR_FLAG: 'error flag',
      SOC_BELOW: 'SoC below',
      GRID_EXPORT_ABOVE: 'grid export above',
    }[kind] ?? kind
  );
}

/** A table of `alerts`, or `empty` as a hint when there are none. */
export function alertsTable(alerts, { showDevice, empty }) {
  if (alerts.length === 0) return h('p', { class: 'hint', 'data-testid': 'alerts-empty' }, empty);
  const head = ['Since', showDevice && 'Device', 'Rule', 'What', 'State'].filter(Boolean);
  return h(
    'div',
    { class: 'scroll' },
    h(
      'table',
      { class: 'list alerts' },
      h('thead', {}, h('tr', {}, head.map((c) => h('th', {}, c)))),
      h(
        'tbody',
        {},
        alerts.map((a) =>
          h(
            'tr',
            { 'data-alert': a.id, class: a.resolved_at ? 'resolved' : 'open' },
            h('td', { title: when(a.opened_at) }, ago(a.opened_at)),
            showDevice && h('td', {}, h('a', { href: `#/device/${encodeURIComponent(a.device_id)}` }, a.device_id)),
            h('td', {}, `${a.rule_name} (${kindText(a.kind)})`),
            h('td', {}, a.message),
            h(
              'td',
              {},
              a.resolved_at
                ? h('span', { class: 'badge status-completed' }, `resolved ${ago(a.resolved_at)}`)
                : h('span', { class: 'badge status-rejected' }, 'open'),
            ),
          ),
        ),
      ),
    ),
  );
}
