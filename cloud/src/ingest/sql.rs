//! The statements ingest runs and the encoding of a batch into their parameters: the `UNNEST`
//! insert with `ON CONFLICT`, binary `COPY`, the events insert and the re-derivation of a late
//! stretch's events.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use ems_protocol::Telemetry;
use serde_json::Value;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Row, Statement};

use super::Packet;
use crate::db::columns;

/// The fast way in for a batch of packets all newer than their devices' stored rows: binary
/// COPY, PostgreSQL's bulk path (about twice the rows per second of the `UNNEST` insert on the
/// development machine). It has no `ON CONFLICT`: a packet stored meanwhile by another instance
/// fails the whole COPY with a unique violation, and the batch goes the `UNNEST` way instead.
/// `table` is `telemetry` or a table like it (the load bench's baseline).
pub fn copy_statement(table: &str) -> String {
    format!("COPY {table} ({}) FROM STDIN BINARY", *columns::ALL)
}

/// The newest stored row of each device of `$1`: one index probe per device (`LIMIT 1` on
/// `(device_id, time DESC)`; on a hypertable the newest chunk first), whatever its history.
/// `DISTINCT ON` would read every stored row of the devices.
pub const LAST_STATES: &str = "\
SELECT d.id, t.time, t.state, t.error_flags \
FROM unnest($1::text[]) AS d(id) \
CROSS JOIN LATERAL (SELECT time, state, error_flags FROM telemetry \
    WHERE device_id = d.id ORDER BY time DESC LIMIT 1) AS t";

pub(super) const INSERT_EVENTS: &str = "\
INSERT INTO events (device_id, time, kind, from_state, to_state, flag) \
SELECT * FROM UNNEST($1::text[], $2::timestamptz[], $3::text[], $4::text[], $5::text[], $6::text[])";

/// Derives the events of one device again for the stretch that late packets fell into: from the
/// stored row before `$2` (the earliest late packet) to the stored row after `$3` (the latest),
/// replacing the events recorded there. Rows of the current transaction are visible to it.
pub(super) const REDERIVE_EVENTS: &str = "\
WITH bounds AS ( \
    SELECT coalesce((SELECT max(time) FROM telemetry WHERE device_id = $1::text AND time < $2), $2) AS lo, \
           coalesce((SELECT min(time) FROM telemetry WHERE device_id = $1::text AND time > $3), $3) AS hi \
), span AS ( \
    SELECT t.time, t.state, t.error_flags, \
           lag(t.state) OVER w AS prev_state, lag(t.error_flags) OVER w AS prev_flags \
    FROM telemetry t, bounds b \
    WHERE t.device_id = $1::text AND t.time >= b.lo AND t.time <= b.hi \
    WINDOW w AS (ORDER BY t.time) \
), replaced AS ( \
    DELETE FROM events e USING bounds b \
    WHERE e.device_id = $1::text AND e.time > b.lo AND e.time <= b.hi \
) \
INSERT INTO events (device_id, time, kind, from_state, to_state, flag) \
SELECT $1::text, s.time, 'STATE_CHANGED', s.prev_state, s.state, NULL::text FROM span s \
    WHERE s.prev_state IS NOT NULL AND s.prev_state <> s.state \
UNION ALL \
SELECT $1::text, s.time, 'ERROR_RAISED', NULL, NULL, f FROM span s, unnest(s.error_flags) AS f \
    WHERE s.prev_state IS NOT NULL AND NOT (f = ANY (s.prev_flags)) \
UNION ALL \
SELECT $1::text, s.time, 'ERROR_CLEARED', NULL, NULL, f FROM span s, unnest(s.prev_flags) AS f \
    WHERE s.prev_state IS NOT NULL AND NOT (f = ANY (s.error_flags))";

/// The batch as the array parameters of [`columns::INSERT`], borrowing from the packets.
pub(super) struct Columns<'a> {
    time: Vec<DateTime<Utc>>,
    device: Vec<&'a str>,
    state: Vec<&'static str>,
    mode: Vec<&'static str>,
    flags: Vec<String>,
    wifi: Vec<Option<i32>>,
    numbers: [Vec<Option<f64>>; 7],
    ext: Vec<Option<&'a Value>>,
}

impl<'a> Columns<'a> {
    pub(super) fn of(batch: &'a [Packet]) -> Self {
        let n = batch.len();
        let mut c = Columns {
            time: Vec::with_capacity(n),
            device: Vec::with_capacity(n),
            state: Vec::with_capacity(n),
            mode: Vec::with_capacity(n),
            flags: Vec::with_capacity(n),
            wifi: Vec::with_capacity(n),
            numbers: std::array::from_fn(|_| Vec::with_capacity(n)),
            ext: Vec::with_capacity(n),
        };
        for p in batch {
            let t = &p.telemetry;
            c.time.push(t.timestamp.as_datetime());
            c.device.push(t.device_id.as_str());
            c.state.push(t.system_status.state.as_str());
            c.mode.push(t.system_status.mode.as_str());
            let mut flags = String::new();
            for (i, f) in t.system_status.error_flags.iter().enumerate() {
                if i > 0 {
                    flags.push(',');
                }
                flags.push_str(f.as_str());
            }
            c.flags.push(flags);
            c.wifi.push(t.system_status.wifi_strength);
            let values = [
                t.battery.voltage,
                t.battery.current,
                t.battery.power,
                t.battery.soc,
                t.grid.voltage,
                t.grid.power,
                t.grid.frequency,
            ];
            for (col, v) in c.numbers.iter_mut().zip(values) {
                col.push(v);
            }
            c.ext.push(p.extensions.as_ref());
        }
        c
    }

    pub(super) fn params(&self) -> [&(dyn ToSql + Sync); columns::COUNT] {
        let [bv, bc, bp, bs, gv, gp, gf] = &self.numbers;
        [
            &self.time,
            &self.device,
            &self.state,
            &self.mode,
            &self.flags,
            &self.wifi,
            bv,
            bc,
            bp,
            bs,
            gv,
            gp,
            gf,
            &self.ext,
        ]
    }
}

/// Which packets of `batch` the `RETURNING device_id, time` rows name (the others were stored
/// before: duplicates).
pub(super) fn fresh_of(batch: &[Packet], rows: &[Row]) -> Vec<bool> {
    let mut fresh = vec![false; batch.len()];
    if rows.len() == batch.len() {
        // Every row is new (a packet repeated within the batch inserts once, so it cannot be
        // this case).
        fresh.fill(true);
        return fresh;
    }
    let mut at: HashMap<(&str, DateTime<Utc>), Vec<usize>> = HashMap::with_capacity(batch.len());
    for (i, p) in batch.iter().enumerate() {
        at.entry((
            p.telemetry.device_id.as_str(),
            p.telemetry.timestamp.as_datetime(),
        ))
        .or_default()
        .push(i);
    }
    for r in rows {
        let key = (r.get::<_, &str>(0), r.get::<_, DateTime<Utc>>(1));
        for &i in at.get(&key).into_iter().flatten() {
            fresh[i] = true;
        }
    }
    fresh
}

/// Writes packets (with their extension fields) through a prepared [`copy_statement`]; all or
/// nothing.
pub async fn copy_rows<'a>(
    client: &tokio_postgres::Client,
    copy: &Statement,
    rows: impl IntoIterator<Item = (&'a Telemetry, Option<&'a Value>)>,
) -> Result<(), tokio_postgres::Error> {
    let sink = client.copy_in(copy).await?;
    let mut writer = std::pin::pin!(BinaryCopyInWriter::new(sink, &columns::COPY_TYPES));
    for (t, extensions) in rows {
        let time = t.timestamp.as_datetime();
        let flags: Vec<&str> = t
            .system_status
            .error_flags
            .iter()
            .map(|f| f.as_str())
            .collect();
        let row: [&(dyn ToSql + Sync); columns::COUNT] = [
            &time,
            &t.device_id,
            &t.system_status.state.as_str(),
            &t.system_status.mode.as_str(),
            &flags,
            &t.system_status.wifi_strength,
            &t.battery.voltage,
            &t.battery.current,
            &t.battery.power,
            &t.battery.soc,
            &t.grid.voltage,
            &t.grid.power,
            &t.grid.frequency,
            &extensions,
        ];
        writer.as_mut().write(&row).await?;
    }
    writer.finish().await?;
    Ok(())
}
