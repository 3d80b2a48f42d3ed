//! The Grafana dashboards in `packaging/grafana/dashboards/` work against what ems stores: every
//! SQL query in them runs, after Grafana's macro expansion, on a real database with data and
//! returns rows, on TimescaleDB and plain PostgreSQL; every metric their PromQL names is one a
//! real ems-cloud exposes at `/metrics`; every panel uses a provisioned datasource.

use std::collections::BTreeSet;
use std::path::PathBuf;

use crate::common::{self, Backend, TestServer, packet};

on_both_backends!(every_dashboard_query_runs_and_finds_data);

fn grafana_dir() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../packaging/grafana"))
}

/// `(dashboard file, panel title, target)` for every target of every panel.
fn targets() -> Vec<(String, String, serde_json::Value)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(grafana_dir().join("dashboards")).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        let d: serde_json::Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{}: not JSON: {e}", path.display()));
        let file = path.file_name().unwrap().to_string_lossy().to_string();
        assert!(d["uid"].is_string() && d["title"].is_string(), "{file}");
        assert_eq!(
            d["schemaVersion"], 39,
            "{file}: Grafana 11's dashboard schema"
        );
        let panels = d["panels"].as_array().unwrap();
        let ids: BTreeSet<i64> = panels.iter().map(|p| p["id"].as_i64().unwrap()).collect();
        assert_eq!(ids.len(), panels.len(), "{file}: panel ids are unique");
        for p in panels {
            let title = p["title"].as_str().unwrap().to_string();
            assert!(p["gridPos"]["w"].as_i64().is_some(), "{file} {title}");
            for t in p["targets"].as_array().unwrap() {
                out.push((file.clone(), title.clone(), t.clone()));
            }
        }
    }
    assert!(out.len() >= 15, "{} targets", out.len());
    out
}

/// Grafana's PostgreSQL macro expansion for a time range `[from, to)` and `$__interval`.
fn expand(sql: &str, from: &str, to: &str, interval_s: i64, device: &str) -> String {
    let mut s = sql
        .replace("$__interval", &format!("'{interval_s}s'"))
        .replace("$device", device);
    // $__timeGroupAlias(col, 'Ns'|'1m') -> floor(extract(epoch from col)/N)*N AS "time"
    while let Some(at) = s.find("$__timeGroupAlias(") {
        let rest = &s[at + "$__timeGroupAlias(".len()..];
        let close = rest.find(')').unwrap();
        let (col, width) = rest[..close].split_once(',').unwrap();
        let width = width.trim().trim_matches('\'');
        let secs = ems_protocol::duration::parse_seconds(width).unwrap();
        let expansion = format!(
            "floor(extract(epoch from {})/{secs})*{secs} AS \"time\"",
            col.trim()
        );
        s = format!("{}{}{}", &s[..at], expansion, &rest[close + 1..]);
    }
    while let Some(at) = s.find("$__timeFilter(") {
        let rest = &s[at + "$__timeFilter(".len()..];
        let close = rest.find(')').unwrap();
        let col = rest[..close].trim();
        let expansion = format!("{col} BETWEEN '{from}' AND '{to}'");
        s = format!("{}{}{}", &s[..at], expansion, &rest[close + 1..]);
    }
    assert!(!s.contains('$'), "an unexpanded macro in {s}");
    s
}

async fn every_dashboard_query_runs_and_finds_data(backend: Backend) {
    let Some(server) = TestServer::fresh_on(backend).await else {
        return;
    };
    // A site with packets (the PV/house extension included), a command, an event and an alert.
    let token = server.add_device("site_1").await;
    let mut device = server.device("site_1", &token).await;
    let packets: Vec<_> = common::recent_seconds(5)
        .into_iter()
        .map(|t| {
            let mut p = packet("site_1", t, 60.0);
            p.site = Some(ems_protocol::telemetry::SiteFlows {
                pv_power: Some(1200.0),
                house_power: Some(800.0),
            });
            p
        })
        .collect();
    device.send_stored(&packets).await;
    let (code, _) = server
        .post_json(
            "/devices/site_1/commands",
            &server.admin,
            &serde_json::json!({"action": "RESET_ERROR", "payload": {}}),
        )
        .await;
    assert_eq!(code, 201);
    let client = ems_cloud::db::connect(&server.db_url).await.unwrap();
    client
        .batch_execute(
            "INSERT INTO events (device_id, time, kind, from_state, to_state) \
               VALUES ('site_1', now() - interval '1 minute', 'STATE_CHANGED', 'IDLE', 'CHARGING'); \
             INSERT INTO alerts (rule_name, kind, device_id, message) \
               VALUES ('test rule', 'SOC_BELOW', 'site_1', 'SoC 9 % below 10 %');",
        )
        .await
        .unwrap();

    let now = chrono::Utc::now();
    let from = (now - chrono::Duration::hours(1)).to_rfc3339();
    let to = (now + chrono::Duration::minutes(1)).to_rfc3339();
    let scrape = server
        .http
        .get(format!("{}/metrics", server.url()))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    // Every series name a scrape can carry, from the `# TYPE` lines (a labelled family shows its
    // type before it has a first sample).
    let exposed: BTreeSet<String> = scrape
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .flat_map(|l| {
            let mut words = l.split_whitespace();
            let (name, kind) = (words.next().unwrap(), words.next().unwrap());
            let suffixes: &[&str] = match kind {
                "counter" => &["_total"],
                "histogram" => &["_bucket", "_sum", "_count"],
                _ => &[""],
            };
            suffixes
                .iter()
                .map(|s| format!("{name}{s}"))
                .collect::<Vec<_>>()
        })
        .collect();

    let (mut sql_runs, mut promql) = (0, 0);
    for (file, title, t) in targets() {
        let uid = t["datasource"]["uid"].as_str().unwrap();
        match uid {
            "ems-postgres" => {
                let sql = expand(t["rawSql"].as_str().unwrap(), &from, &to, 60, "site_1");
                let rows = client.query(&sql, &[]).await.unwrap_or_else(|e| {
                    panic!("{file} / {title}: {}\n{sql}", ems_cloud::db::describe(&e))
                });
                assert!(!rows.is_empty(), "{file} / {title}: no rows\n{sql}");
                sql_runs += 1;
            }
            "ems-prometheus" => {
                let expr = t["expr"].as_str().unwrap();
                for name in expr
                    .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .filter(|w| w.starts_with("ems_cloud_"))
                {
                    assert!(
                        exposed.contains(name),
                        "{file} / {title}: {name} is not in /metrics ({} metrics there)",
                        exposed.len()
                    );
                }
                promql += 1;
            }
            other => panic!("{file} / {title}: datasource {other} is not provisioned"),
        }
    }
    assert!(
        sql_runs >= 10 && promql >= 8,
        "{sql_runs} SQL, {promql} PromQL"
    );
    // The provisioned datasources carry the uids the panels use.
    let sources =
        std::fs::read_to_string(grafana_dir().join("provisioning/datasources/ems.yaml")).unwrap();
    for uid in ["uid: ems-postgres", "uid: ems-prometheus"] {
        assert!(sources.contains(uid), "{uid}");
    }
    drop(device);
    server.stop().await;
}
