//! What the cloud's scenarios share: the fixture of `ems_cloud::testing` (server, scripted
//! device, database checks) under the names these tests use, and the two-backend runner.
#![allow(dead_code)]

use ems_protocol::Telemetry;
use ems_protocol::telemetry::Timestamp;

pub use ems_cloud::testing::{
    Backend, DEADLINE, Device, Seen, TestCloud as TestServer, figment, fresh_database_on, test_db,
};

/// Runs the scenario `async fn $scenario(backend: Backend)` as two tests,
/// `$scenario::timescaledb` and `$scenario::plain_postgresql`: the same assertions on both kinds
/// of storage ems-cloud supports.
#[macro_export]
macro_rules! on_both_backends {
    ($($scenario:ident),+ $(,)?) => {$(
        mod $scenario {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn timescaledb() {
                super::$scenario($crate::common::Backend::TimescaleDb).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn plain_postgresql() {
                super::$scenario($crate::common::Backend::Plain).await;
            }
        }
    )+};
}

pub async fn count_rows(url: &str, sql: &str) -> i64 {
    let client = ems_cloud::db::connect(url).await.unwrap();
    client.query_one(sql, &[]).await.unwrap().get(0)
}

/// A spec packet with easy values; `soc` varies so packets differ.
pub fn packet(device_id: &str, ts: Timestamp, soc: f64) -> Telemetry {
    Telemetry::example(device_id, ts, soc)
}

/// `n` consecutive seconds ending a minute ago.
pub fn recent_seconds(n: i64) -> Vec<Timestamp> {
    ems_cloud::testing::seconds_ending(n, 60)
}
