// Turning spec telemetry into words. The spec's sign conventions are easy to misread as bare
// numbers, so the dashboard never shows a signed power alone:
//   battery.current / battery.power: + = charging, - = discharging
//   grid.power:                      + = importing from the grid, - = exporting to it
// Pure functions, tested by tests/format.test.mjs with `node --test`.

/** Below this magnitude, W, a power reads as "idle" / "balanced" rather than a direction. */
export const IDLE_W = 5;
/** Below this magnitude, A, a current reads as "no current". */
export const IDLE_A = 0.05;

/** `1234` -> `"1.23 kW"`, `500` -> `"500 W"`; the magnitude only. */
export function watts(w) {
  const a = Math.abs(w);
  if (a >= 1000) return `${(a / 1000).toFixed(a >= 10000 ? 1 : 2)} kW`;
  return `${Math.round(a)} W`;
}

/** Battery power: `{ word: "charging" | "discharging" | "idle", text, dir }`. */
export function batteryPower(w) {
  if (w == null) return { word: 'unknown', text: '—', dir: 0 };
  if (Math.abs(w) < IDLE_W) return { word: 'idle', text: `idle (${watts(w)})`, dir: 0 };
  if (w > 0) return { word: 'charging', text: `charging ${watts(w)}`, dir: 1 };
  return { word: 'discharging', text: `discharging ${watts(w)}`, dir: -1 };
}

/** Battery current: into (+) or out of (-) the battery. */
export function batteryCurrent(a) {
  if (a == null) return '—';
  const mag = `${Math.abs(a).toFixed(1)} A`;
  if (Math.abs(a) < IDLE_A) return 'no current';
  return a > 0 ? `${mag} into the battery` : `${mag} out of the battery`;
}

/** Grid power: `{ word: "importing" | "exporting" | "balanced", text, dir }`. */
export function gridPower(w) {
  if (w == null) return { word: 'unknown', text: '—', dir: 0 };
  if (Math.abs(w) < IDLE_W) return { word: 'balanced', text: `balanced (${watts(w)})`, dir: 0 };
  if (w > 0) return { word: 'importing', text: `importing ${watts(w)} from the grid`, dir: 1 };
  return { word: 'exporting', text: `exporting ${watts(w)} to the grid`, dir: -1 };
}

/** A number with a unit, or a dash when the field is missing (the spec allows nulls). */
export function num(v, digits, unit) {
  return v == null ? '—' : `${Number(v).toFixed(digits)} ${unit}`;
}

/** "3 s ago", "5 min ago", "2 h ago", "4 d ago"; `nowMs` for tests. */
export function ago(iso, nowMs = Date.now()) {
  if (!iso) return 'never';
  const s = Math.max(0, Math.round((nowMs - Date.parse(iso)) / 1000));
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
  return `${Math.floor(s / 86400)} d ago`;
}

/** Local date and time of an RFC 3339 string. */
export function when(iso) {
  return iso ? new Date(iso).toLocaleString() : '—';
}

/** A command's payload in words: `MANUAL_DISCHARGE 500 W`. */
export function commandText(c) {
  if (c.action === 'SET_MODE') {
    const p = c.payload || {};
    return `set mode ${p.target_mode}${p.target_power != null ? ` ${watts(p.target_power)}` : ''}`;
  }
  if (c.action === 'RESET_ERROR') return 'reset error';
  if (c.action === 'SET_SCHEDULE') {
    const n = c.payload?.windows?.length ?? 0;
    return n === 0 ? 'clear schedule' : `set schedule (${n} window${n === 1 ? '' : 's'})`;
  }
  return c.action;
}

/** A schedule window's time in words: `daily 23:00–06:00` or the one-off's local times. */
export function windowWhen(w) {
  if (w.daily_start) return `daily ${w.daily_start}–${w.daily_end}`;
  return `${when(w.start)} – ${when(w.end)}`;
}

/** A schedule window's action in words, with the spec's directions. */
export function windowAction(w) {
  switch (w.action) {
    case 'CHARGE':
      return `charge ${watts(w.power_w)} up to ${w.to_soc_pct} %${w.from_grid === false ? ' (PV surplus only)' : ''}`;
    case 'DISCHARGE':
      return `discharge ${watts(w.power_w)} down to ${w.down_to_soc_pct} %`;
    case 'HOLD':
      return 'hold (no discharge)';
    case 'LIMITS': {
      const parts = [];
      if (w.target_grid_w != null) parts.push(`grid target ${w.target_grid_w} W`);
      if (w.export_limit_w != null) parts.push(`export at most ${watts(w.export_limit_w)}`);
      if (w.import_limit_w != null) parts.push(`import at most ${watts(w.import_limit_w)}`);
      return parts.join(', ');
    }
    default:
      return w.action;
  }
}

/** An event record in words. */
export function eventText(e) {
  switch (e.kind) {
    case 'STATE_CHANGED':
      return `state ${e.from_state ?? '?'} → ${e.to_state ?? '?'}`;
    case 'ERROR_RAISED':
      return `error raised: ${e.flag}`;
    case 'ERROR_CLEARED':
      return `error cleared: ${e.flag}`;
    default:
      return e.kind;
  }
}
