// Sign-in with an API token (`ems-cloud create-token --role viewer --name …`).

import { h } from '../dom.js';

export function renderSignIn(root, onToken) {
  const input = h('input', {
    type: 'password',
    id: 'token',
    name: 'token',
    'data-testid': 'token',
    placeholder: 'emsa_…',
    autocomplete: 'off',
    required: true,
  });
  const error = h('p', { class: 'error', 'data-testid': 'sign-in-error' });
  const form = h(
    'form',
    {
      class: 'card signin',
      onsubmit: async (ev) => {
        ev.preventDefault();
        error.textContent = '';
        try {
          await onToken(input.value.trim());
        } catch (e) {
          error.textContent = e.status === 401 ? 'Unknown API token.' : `Sign-in failed: ${e.message}`;
        }
      },
    },
    h('h1', {}, 'Sign in'),
    h('label', { for: 'token' }, 'API token'),
    input,
    h('button', { type: 'submit', 'data-testid': 'sign-in' }, 'Sign in'),
    error,
    h(
      'p',
      { class: 'hint' },
      'An admin creates tokens with ',
      h('code', {}, 'ems-cloud create-token --role viewer --name <name>'),
      '. The token is kept in this tab only (sessionStorage).',
    ),
  );
  root.append(form);
  input.focus();
  return () => {};
}
