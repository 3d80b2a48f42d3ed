//! The queries ingest and retention run on every reconnect and every hour read a bounded number
//! of rows whatever a device's history: the last-state lookup is one index probe per device
//! (`EXPLAIN ANALYZE` shows no sequential scan and a handful of rows read), and retention
//! deletes through the `(device_id, time)` indexes.

use crate::common;

use common::{Backend, TestServer, fresh_database_on};
use serde_json::Value;

on_both_backends!(last_state_and_retention_use_the_indexes);

/// Every plan node of an `EXPLAIN (FORMAT JSON)` document, depth first.
fn nodes(plan: &Value, out: &mut Vec<Value>) {
    out.push(plan.clone());
    for child in plan["Plans"].as_array().into_iter().flatten() {
        nodes(child, out);
    }
}

async fn explain(client: &tokio_postgres::Client, sql: &str) -> Vec<Value> {
    let row = client
        .query_one(&format!("EXPLAIN (ANALYZE, FORMAT JSON) {sql}"), &[])
        .await
        .unwrap();
    let doc: Value = row.get(0);
    let mut out = Vec::new();
    nodes(&doc[0]["Plan"], &mut out);
    out
}

fn scans(plan: &[Value]) -> Vec<(String, f64)> {
    plan.iter()
        .filter(|n| n["Node Type"].as_str().is_some_and(|t| t.contains("Scan")))
        .map(|n| {
            (
                n["Node Type"].as_str().unwrap().to_string(),
                n["Actual Rows"].as_f64().unwrap_or(0.0)
                    * n["Actual Loops"].as_f64().unwrap_or(1.0),
            )
        })
        .collect()
}

async fn last_state_and_retention_use_the_indexes(backend: Backend) {
    let Some(url) = fresh_database_on(backend).await else {
        return;
    };
    let server = TestServer::on(&url).await;
    server.stop().await;
    let client = ems_cloud::db::connect(&url).await.unwrap();
    // Two days of 1 Hz history for four devices (691,200 rows), and their registrations.
    client
        .batch_execute(
            "INSERT INTO devices (id, name, token_hash) \
               SELECT 'hp' || d, 'x', decode(md5(d::text), 'hex') FROM generate_series(1, 4) d; \
             INSERT INTO telemetry (time, device_id, state, mode, battery_power) \
               SELECT now() - make_interval(secs => s), 'hp' || d, 'IDLE', 'AUTO', s \
               FROM generate_series(1, 172800) s, generate_series(1, 4) d; \
             ANALYZE telemetry;",
        )
        .await
        .unwrap();

    let last = ems_cloud::ingest::LAST_STATES.replace("$1::text[]", "ARRAY['hp1', 'hp3']");
    let plan = explain(&client, &last).await;
    let scanned = scans(&plan);
    assert!(
        scanned.iter().all(|(kind, _)| kind != "Seq Scan"),
        "{scanned:?}"
    );
    let rows: f64 = scanned
        .iter()
        .filter(|(kind, _)| kind != "Function Scan")
        .map(|(_, rows)| rows)
        .sum();
    assert!(
        rows <= 4.0,
        "the last-state lookup read {rows} rows: {scanned:?}"
    );
    let got = client
        .query(
            ems_cloud::ingest::LAST_STATES,
            &[&vec!["hp1", "hp3", "nobody"]],
        )
        .await
        .unwrap();
    assert_eq!(got.len(), 2, "one row per device with history");

    // Retention's inner select, per device and older than a day: through the index.
    let prune = "SELECT ctid FROM events WHERE device_id = 'hp2' AND time < now() - INTERVAL '1 day' LIMIT 10000";
    let scanned = scans(&explain(&client, prune).await);
    assert!(
        scanned.iter().all(|(kind, _)| kind != "Seq Scan"),
        "{scanned:?}"
    );
    if backend == Backend::Plain {
        let prune = "SELECT ctid FROM telemetry WHERE device_id = 'hp2' \
                     AND time < now() - INTERVAL '1 day' LIMIT 10000";
        let scanned = scans(&explain(&client, prune).await);
        assert!(
            scanned.iter().all(|(kind, _)| kind != "Seq Scan"),
            "{scanned:?}"
        );
    }
}
