// The dashboard's shell: sign-in, the header, and hash routes
//   #/             device list
//   #/device/<id>  live page, energy, history charts, commands, logs
//   #/tokens       API tokens (admins)
// Each page is `render(root, ctx) -> cleanup`; the cleanup closes its feed and timers.

import 'uplot/dist/uPlot.min.css';
import './style.css';
import { ApiError, setToken, token, whoami } from './api.js';
import { h, fill } from './dom.js';
import { renderDevices } from './pages/devices.js';
import { renderDevice } from './pages/device.js';
import { renderSignIn } from './pages/signin.js';
import { renderTokens } from './pages/tokens.js';

const app = document.getElementById('app');
let cleanup = null;
/** `{name, role}` of the signed-in token. */
let me = null;

function header() {
  return h(
    'header',
    { class: 'top' },
    h('a', { href: '#/', class: 'brand' }, 'ems'),
    h('span', { class: 'grow' }),
    me?.role === 'admin' && h('a', { href: '#/tokens', class: 'nav', 'data-testid': 'nav-tokens' }, 'Tokens'),
    me &&
      h(
        'span',
        { class: 'who', 'data-testid': 'who' },
        `${me.name} `,
        h('span', { class: `role role-${me.role}`, 'data-testid': 'role' }, me.role),
      ),
    me && h('button', { class: 'link', 'data-testid': 'sign-out', onclick: signOut }, 'Sign out'),
  );
}

function signOut() {
  setToken(null);
  me = null;
  location.hash = '#/';
  route();
}

async function route() {
  cleanup?.();
  cleanup = null;
  if (!token()) {
    me = null;
    const main = h('main');
    fill(app, header(), main);
    cleanup = renderSignIn(main, async (t) => {
      me = await whoami(t); // throws for an unknown token; the form shows it
      setToken(t);
      route();
    });
    return;
  }
  if (!me) {
    try {
      me = await whoami();
    } catch (e) {
      if (e instanceof ApiError && e.status === 401) {
        setToken(null);
        return route();
      }
      fill(app, header(), h('main', {}, h('p', { class: 'error' }, `Cannot reach the server: ${e.message}`)));
      return;
    }
  }
  const main = h('main');
  fill(app, header(), main);
  const ctx = { me, canCommand: me.role === 'operator' || me.role === 'admin' };
  const m = location.hash.match(/^#\/device\/(.+)$/);
  if (m) cleanup = renderDevice(main, decodeURIComponent(m[1]), ctx);
  else if (location.hash === '#/tokens' && me.role === 'admin') cleanup = renderTokens(main);
  else cleanup = renderDevices(main, ctx);
}

window.addEventListener('hashchange', route);
route();
