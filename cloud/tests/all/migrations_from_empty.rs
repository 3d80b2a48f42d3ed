//! An empty database gets the whole schema at start, a second start changes nothing, and the
//! storage path (TimescaleDB when the server preloads it, plain tables otherwise) is reported.

use crate::common;

on_both_backends!(migrations_apply_to_an_empty_database_and_are_idempotent);

use common::{Backend, TestServer, count_rows, fresh_database_on};
use ems_protocol::api::Health;

async fn migrations_apply_to_an_empty_database_and_are_idempotent(backend: Backend) {
    let Some(url) = fresh_database_on(backend).await else {
        return;
    };
    let first = TestServer::on(&url).await;

    for table in [
        "devices",
        "api_tokens",
        "telemetry",
        "commands",
        "events",
        "instances",
        "rejected_telemetry",
        "audit_log",
        "tariffs",
        "planner_settings",
    ] {
        let n = count_rows(
            &url,
            &format!("SELECT count(*) FROM information_schema.tables WHERE table_name = '{table}'"),
        )
        .await;
        assert_eq!(n, 1, "table {table}");
    }
    // The one column table the statements are built from is the table the migrations made.
    let client = ems_cloud::db::connect(&url).await.unwrap();
    let migrated: Vec<(String, String)> = client
        .query(
            "SELECT column_name::text, udt_name::text FROM information_schema.columns \
             WHERE table_name = 'telemetry' ORDER BY ordinal_position",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let declared: Vec<(String, String)> = ems_cloud::db::columns::TELEMETRY
        .iter()
        .map(|c| (c.name.to_string(), c.udt.to_string()))
        .collect();
    assert_eq!(
        migrated, declared,
        "db::columns::TELEMETRY against the migrated table"
    );

    assert_eq!(
        count_rows(
            &url,
            "SELECT count(*) FROM refinery_schema_history WHERE version = 1"
        )
        .await,
        1
    );
    assert_eq!(
        count_rows(
            &url,
            "SELECT count(*) FROM pg_indexes WHERE indexname = 'telemetry_device_time'"
        )
        .await,
        1
    );

    let health: Health = first.get_json("/health").await;
    assert!(health.database);
    // Anyone may read /health: it names no host and no process.
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    assert!(
        !health.instance.contains(host.trim()),
        "{}",
        health.instance
    );
    assert!(
        !health.instance.contains(&std::process::id().to_string()),
        "{}",
        health.instance
    );
    assert_eq!(
        health.timescale,
        backend == Backend::TimescaleDb,
        "{health:?}"
    );
    let hypertables = count_rows(
        &url,
        "SELECT count(*) FROM pg_extension WHERE extname = 'timescaledb'",
    )
    .await;
    assert_eq!(hypertables, i64::from(health.timescale));
    if backend == Backend::TimescaleDb {
        assert!(
            health.storage.starts_with("TimescaleDB 2."),
            "{}",
            health.storage
        );
    } else {
        assert!(
            health.storage.starts_with("plain PostgreSQL tables: "),
            "{}",
            health.storage
        );
    }
    assert_eq!(health.status, "ok");

    // A second instance on the same database starts fine and applies nothing new.
    let applied = count_rows(&url, "SELECT count(*) FROM refinery_schema_history").await;
    // Every file in migrations/ once (V1, V2, …), whatever their number.
    let files = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../migrations"))
        .unwrap()
        .filter(|e| {
            let name = e.as_ref().unwrap().file_name();
            let name = name.to_string_lossy();
            name.starts_with('V') && name.ends_with(".sql")
        })
        .count() as i64;
    assert!(files >= 5, "{files} migration files");
    assert_eq!(applied, files, "V1 to V{files}");
    let second = TestServer::on(&url).await;
    assert_eq!(
        count_rows(&url, "SELECT count(*) FROM refinery_schema_history").await,
        applied
    );
    second.stop().await;
    first.stop().await;
}
