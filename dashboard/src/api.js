// The REST API (`/api/v1`, `Authorization: Bearer <token>`) and the live feed
// (`/ws/live/<id>?ticket=`: browsers cannot set headers on WebSockets, so each connection
// takes a single-use ticket from `POST /devices/<id>/live-ticket`). The token lives in
// sessionStorage: it is gone when the tab closes, and other tabs do not see it.

const KEY = 'ems.token';

export function token() {
  return sessionStorage.getItem(KEY);
}

export function setToken(t) {
  if (t) sessionStorage.setItem(KEY, t);
  else sessionStorage.removeItem(KEY);
}

/** An answer other than 2xx, with the server's `{"error", "field"}` body. */
export class ApiError extends Error {
  constructor(status, body) {
    super(body?.error ? `${body.error}${body.field ? ` (${body.field})` : ''}` : `HTTP ${status}`);
    this.status = status;
    this.field = body?.field;
  }
}

/** `fetch` against `/api/v1` with the signed-in token; JSON in and out. */
export async function api(path, { method = 'GET', body, tokenOverride } = {}) {
  const headers = { Authorization: `Bearer ${tokenOverride ?? token()}` };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const resp = await fetch(`/api/v1${path}`, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await resp.text();
  let json = null;
  try {
    json = text ? JSON.parse(text) : null;
  } catch {
    json = null;
  }
  if (!resp.ok) throw new ApiError(resp.status, json);
  return json;
}

/** `GET /api/v1/whoami`: `{name, role}` of a token; throws ApiError 401 for an unknown one. */
export function whoami(tokenOverride) {
  return api('/whoami', { tokenOverride });
}

export const enc = encodeURIComponent;

/**
 * The live feed of one device, reconnecting after a drop. `onEvent(frame)` gets each parsed
 * `LiveEvent`, `onState("open" | "closed")` the connection state. Returns `close()`.
 */
export function liveFeed(deviceId, onEvent, onState) {
  const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
  let ws = null;
  let stopped = false;
  let retry = null;
  const again = () => {
    onState('closed');
    if (!stopped) retry = setTimeout(connect, 2000);
  };
  // Each connection takes a fresh single-use ticket: the API token never goes into a URL.
  const connect = async () => {
    let ticket;
    try {
      ({ ticket } = await api(`/devices/${enc(deviceId)}/live-ticket`, { method: 'POST' }));
    } catch (e) {
      console.error('no live ticket', e);
      again();
      return;
    }
    if (stopped) return;
    ws = new WebSocket(`${scheme}://${location.host}/ws/live/${enc(deviceId)}?ticket=${enc(ticket)}`);
    ws.onopen = () => onState('open');
    ws.onmessage = (m) => {
      try {
        onEvent(JSON.parse(m.data));
      } catch (e) {
        console.error('bad live frame', e);
      }
    };
    ws.onclose = again;
  };
  connect();
  return () => {
    stopped = true;
    clearTimeout(retry);
    ws?.close();
  };
}
