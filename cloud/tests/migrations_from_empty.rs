//! An empty database gets the whole schema at start, a second start changes nothing, and on this
//! machine (no TimescaleDB) the plain PostgreSQL path is taken and reported.

mod common;

use common::{TestServer, count_rows};
use ems_protocol::api::Health;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_apply_to_an_empty_database_and_are_idempotent() {
    let url = ems_testkit::pg::fresh_database().await;
    let first = TestServer::on(&url).await;

    for table in [
        "devices",
        "api_tokens",
        "telemetry",
        "commands",
        "events",
        "instances",
    ] {
        let n = count_rows(
            &url,
            &format!("SELECT count(*) FROM information_schema.tables WHERE table_name = '{table}'"),
        )
        .await;
        assert_eq!(n, 1, "table {table}");
    }
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
    assert!(!health.timescale, "TimescaleDB is not installed here");
    assert_eq!(health.status, "ok");

    // A second instance on the same database starts fine and applies nothing new.
    let second = TestServer::on(&url).await;
    assert_eq!(
        count_rows(&url, "SELECT count(*) FROM refinery_schema_history").await,
        1
    );
    second.running.stop().await;
    first.running.stop().await;
}
