//! Event derivation, pure: what changed between consecutive packets of a device (state changes,
//! flags raised and cleared), and which packets of a batch are late (older than their device's
//! newest stored row).

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use ems_protocol::Telemetry;

use super::Packet;

/// The last stored state of a device, to derive events from the next packet.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct LastState {
    pub time: DateTime<Utc>,
    pub state: String,
    pub flags: Vec<String>,
    /// The socket whose packets this state is current for.
    pub conn_id: u64,
}

/// A change seen between two consecutive packets of a device.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Event {
    pub device_id: String,
    pub time: DateTime<Utc>,
    pub kind: &'static str,
    pub from_state: Option<String>,
    pub to_state: Option<String>,
    pub flag: Option<String>,
}

/// Events between `prev` and `next` (pure; unit-tested).
pub(super) fn derive_events(device_id: &str, prev: &LastState, next: &LastState) -> Vec<Event> {
    let mut out = Vec::new();
    let event = |kind, from_state, to_state, flag| Event {
        device_id: device_id.to_string(),
        time: next.time,
        kind,
        from_state,
        to_state,
        flag,
    };
    if prev.state != next.state {
        out.push(event(
            "STATE_CHANGED",
            Some(prev.state.clone()),
            Some(next.state.clone()),
            None,
        ));
    }
    for f in next.flags.iter().filter(|f| !prev.flags.contains(f)) {
        out.push(event("ERROR_RAISED", None, None, Some(f.clone())));
    }
    for f in prev.flags.iter().filter(|f| !next.flags.contains(f)) {
        out.push(event("ERROR_CLEARED", None, None, Some(f.clone())));
    }
    out
}

impl LastState {
    /// Becomes the state of `t`, reusing the allocations.
    pub(super) fn set_to(&mut self, t: &Telemetry) {
        let status = &t.system_status;
        self.time = t.timestamp.as_datetime();
        if self.state != status.state.as_str() {
            self.state.clear();
            self.state.push_str(status.state.as_str());
        }
        if self.flags.len() != status.error_flags.len()
            || self
                .flags
                .iter()
                .zip(&status.error_flags)
                .any(|(a, b)| a != b.as_str())
        {
            self.flags = status
                .error_flags
                .iter()
                .map(|f| f.as_str().to_string())
                .collect();
        }
    }
}

/// The state `t` shows; `conn_id` 0 (no socket), so a device first stored by this packet is read
/// from the database once more by its next batch.
pub(super) fn last_state_of(t: &Telemetry) -> LastState {
    LastState {
        conn_id: 0,
        time: t.timestamp.as_datetime(),
        state: t.system_status.state.as_str().to_string(),
        flags: t
            .system_status
            .error_flags
            .iter()
            .map(|f| f.as_str().to_string())
            .collect(),
    }
}

/// What [`derive`] makes of a batch: the events, and the newest packet of each device.
pub(super) struct Derived<'a> {
    pub(super) events: Vec<Event>,
    pub(super) updates: HashMap<&'a str, &'a Telemetry>,
}

/// The state a packet is compared with: stored before this batch, or an earlier packet of it.
#[derive(Clone, Copy)]
pub(super) enum Prev<'a> {
    Stored(&'a LastState),
    Packet(&'a Telemetry),
}

impl Prev<'_> {
    pub(super) fn time(self) -> DateTime<Utc> {
        match self {
            Prev::Stored(s) => s.time,
            Prev::Packet(t) => t.timestamp.as_datetime(),
        }
    }

    /// Same state and same set of flags as `t` (flags never repeat within a packet).
    pub(super) fn same_as(self, t: &Telemetry) -> bool {
        let status = &t.system_status;
        match self {
            Prev::Stored(s) => {
                s.state == status.state.as_str()
                    && s.flags.len() == status.error_flags.len()
                    && status
                        .error_flags
                        .iter()
                        .all(|f| s.flags.iter().any(|g| g == f.as_str()))
            }
            Prev::Packet(p) => {
                let prev = &p.system_status;
                prev.state == status.state
                    && prev.error_flags.len() == status.error_flags.len()
                    && status
                        .error_flags
                        .iter()
                        .all(|f| prev.error_flags.contains(f))
            }
        }
    }

    pub(super) fn to_last_state(self) -> LastState {
        match self {
            Prev::Stored(s) => s.clone(),
            Prev::Packet(t) => last_state_of(t),
        }
    }
}

/// Derives the events of the packets of `batch` that are `fresh` (all when `None`), per device
/// in time order, against `last` (pure). Allocates only for the events themselves.
pub(super) fn derive<'a>(
    last: &HashMap<String, LastState>,
    batch: &'a [Packet],
    fresh: Option<&[bool]>,
) -> Derived<'a> {
    let mut new: Vec<&'a Telemetry> = match fresh {
        None => batch.iter().map(|p| &p.telemetry).collect(),
        Some(fresh) => batch
            .iter()
            .zip(fresh)
            .filter(|(_, is_new)| **is_new)
            .map(|(p, _)| &p.telemetry)
            .collect(),
    };
    new.sort_by(|a, b| (&a.device_id, a.timestamp).cmp(&(&b.device_id, b.timestamp)));
    let mut updates: HashMap<&'a str, &'a Telemetry> = HashMap::new();
    let mut events = Vec::new();
    for t in new {
        let prev = updates
            .get(t.device_id.as_str())
            .map(|p| Prev::Packet(p))
            .or_else(|| last.get(&t.device_id).map(Prev::Stored));
        match prev {
            Some(prev) if prev.time() >= t.timestamp.as_datetime() => continue,
            Some(prev) if !prev.same_as(t) => events.extend(derive_events(
                &t.device_id,
                &prev.to_last_state(),
                &last_state_of(t),
            )),
            _ => {}
        }
        updates.insert(t.device_id.as_str(), t);
    }
    Derived { events, updates }
}

/// Whether a packet of `batch` is older than its device's newest stored row.
pub(super) fn any_late(last: &HashMap<String, LastState>, batch: &[Packet]) -> bool {
    batch.iter().any(|p| {
        last.get(&p.telemetry.device_id)
            .is_some_and(|s| p.telemetry.timestamp.as_datetime() < s.time)
    })
}

/// Whether every packet of `batch` is newer than its device's newest stored row (so none can be
/// a duplicate, unless another instance stored it meanwhile).
pub(super) fn all_newer(last: &HashMap<String, LastState>, batch: &[Packet]) -> bool {
    batch.iter().all(|p| {
        last.get(&p.telemetry.device_id)
            .is_none_or(|s| p.telemetry.timestamp.as_datetime() > s.time)
    })
}

/// Per device, the earliest and the latest newly stored packet older than its newest stored row.
pub(super) fn late_spans<'a>(
    last: &HashMap<String, LastState>,
    batch: &'a [Packet],
    fresh: &[bool],
) -> HashMap<&'a str, (DateTime<Utc>, DateTime<Utc>)> {
    let mut spans: HashMap<&str, (DateTime<Utc>, DateTime<Utc>)> = HashMap::new();
    for (p, _) in batch.iter().zip(fresh).filter(|(_, is_new)| **is_new) {
        let t = p.telemetry.timestamp.as_datetime();
        let device = p.telemetry.device_id.as_str();
        if last.get(device).is_some_and(|s| t < s.time) {
            let span = spans.entry(device).or_insert((t, t));
            span.0 = span.0.min(t);
            span.1 = span.1.max(t);
        }
    }
    spans
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) fn s(time: i64, state: &str, flags: &[&str]) -> LastState {
        LastState {
            conn_id: 1,
            time: DateTime::from_timestamp(time, 0).unwrap(),
            state: state.into(),
            flags: flags.iter().map(|f| f.to_string()).collect(),
        }
    }

    #[test]
    pub(super) fn state_change_and_flags_raised_and_cleared() {
        let events = derive_events(
            "d",
            &s(1, "CHARGING", &["OVERHEAT", "COMM_LOSS"]),
            &s(2, "ERROR", &["COMM_LOSS", "GRID_FAULT"]),
        );
        let kinds: Vec<_> = events
            .iter()
            .map(|e| (e.kind, e.flag.as_deref(), e.to_state.as_deref()))
            .collect();
        assert_eq!(
            kinds,
            vec![
                ("STATE_CHANGED", None, Some("ERROR")),
                ("ERROR_RAISED", Some("GRID_FAULT"), None),
                ("ERROR_CLEARED", Some("OVERHEAT"), None),
            ]
        );
    }

    #[test]
    pub(super) fn no_change_no_event() {
        assert!(derive_events("d", &s(1, "IDLE", &[]), &s(2, "IDLE", &[])).is_empty());
    }
}
