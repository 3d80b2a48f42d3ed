//! TimescaleDB in practice: a late backlog that lands in an already compressed chunk is stored
//! once and acknowledged (by the `ON CONFLICT` insert and by binary COPY); retention drops old
//! raw telemetry on both backends, and with TimescaleDB the per-minute aggregate keeps what
//! `aggregate_retention_days` says.

use crate::common;

use common::{Backend, TestServer, count_rows, fresh_database_on, packet};
use ems_protocol::Timestamp;
use rocket::figment::Figment;

on_both_backends!(retention_drops_old_telemetry_and_the_aggregate_keeps_its_own);

fn stamps(seconds: impl IntoIterator<Item = i64>) -> Vec<Timestamp> {
    seconds
        .into_iter()
        .map(|s| Timestamp::from_unix(s).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_into_a_compressed_chunk_is_stored_once_and_acknowledged() {
    let Some(server) = TestServer::fresh_on(Backend::TimescaleDb).await else {
        return;
    };
    let client = ems_cloud::db::connect(&server.db_url).await.unwrap();
    let token_a = server.add_device("cz_a").await;
    let token_b = server.add_device("cz_b").await;
    let mut a = server.device("cz_a", &token_a).await;

    // Ten minutes three days ago, every other second, then compress that day's chunk by hand.
    let base = (Timestamp::now().unix() - 3 * 86_400) / 600 * 600;
    let even = stamps((base..base + 600).step_by(2));
    for t in &even {
        a.send(&packet("cz_a", *t, 40.0)).await;
    }
    a.await_acks(&even).await;
    let compressed: i64 = client
        .query_one(
            "SELECT count(compress_chunk(c)) FROM show_chunks('telemetry', \
             older_than => now() - INTERVAL '1 day') c",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(compressed, 1, "one chunk compressed");
    assert!(any_compressed(&client).await);

    // The odd seconds arrive late (the UNNEST insert with ON CONFLICT into the compressed
    // chunk), together with a resend of ten even ones.
    let odd = stamps((base + 1..base + 600).step_by(2));
    for t in odd.iter().chain(&even[..10]) {
        a.send(&packet("cz_a", *t, 41.0)).await;
    }
    a.await_acks(&odd).await;
    // A second device whose very first packets fall into the compressed chunk: all newer than
    // its (absent) rows, so they go in by binary COPY.
    let mut b = server.device("cz_b", &token_b).await;
    let b_stamps = stamps(base..base + 120);
    for t in &b_stamps {
        b.send(&packet("cz_b", *t, 42.0)).await;
    }
    b.await_acks(&b_stamps).await;

    let n = |sql: &'static str| count_rows(&server.db_url, sql);
    assert_eq!(
        n("SELECT count(*) FROM telemetry WHERE device_id = 'cz_a'").await,
        600
    );
    assert_eq!(
        n("SELECT count(DISTINCT time) FROM telemetry WHERE device_id = 'cz_a'").await,
        600
    );
    assert_eq!(
        n("SELECT count(*) FROM telemetry WHERE device_id = 'cz_b'").await,
        120
    );
    // Resending everything again stores nothing new and is acknowledged.
    for t in &b_stamps {
        b.send(&packet("cz_b", *t, 42.0)).await;
    }
    b.await_acks(&b_stamps).await;
    assert_eq!(
        n("SELECT count(*) FROM telemetry WHERE device_id = 'cz_b'").await,
        120
    );
    server.stop().await;
}

async fn any_compressed(client: &tokio_postgres::Client) -> bool {
    client
        .query_one(
            "SELECT coalesce(bool_or(is_compressed), false) FROM timescaledb_information.chunks \
             WHERE hypertable_name = 'telemetry'",
            &[],
        )
        .await
        .unwrap()
        .get(0)
}

/// Telemetry rows `days_ago` days old for `device`, one per second for `minutes`, written behind
/// the server's back (ingest refuses packets older than the retention).
async fn old_rows(url: &str, device: &str, days_ago: i64, minutes: i64) {
    let client = ems_cloud::db::connect(url).await.unwrap();
    client
        .execute(
            "INSERT INTO telemetry (time, device_id, state, mode, battery_power) \
             SELECT date_trunc('hour', now()) - make_interval(days => $2::int) \
                      + make_interval(secs => s), $1, 'IDLE', 'AUTO', s \
             FROM generate_series(0, $3::int - 1) s",
            &[&device, &(days_ago as i32), &((minutes * 60) as i32)],
        )
        .await
        .unwrap();
}

fn figment_with_retention(url: &str) -> Figment {
    common::figment(url)
        .merge(("retention_days", 2))
        .merge(("aggregate_retention_days", 5))
}

async fn retention_drops_old_telemetry_and_the_aggregate_keeps_its_own(backend: Backend) {
    let Some(url) = fresh_database_on(backend).await else {
        return;
    };
    // Schema first (and, on TimescaleDB, the hypertable and its policies).
    let first = TestServer::with(figment_with_retention(&url), &url, reqwest::Client::new()).await;
    let health: ems_protocol::api::Health = first.get_json("/health").await;
    first.stop().await;
    let timescale = health.timescale;
    assert_eq!(timescale, backend == Backend::TimescaleDb);
    let client = ems_cloud::db::connect(&url).await.unwrap();
    if timescale {
        // Only this test's explicit calls act from here: the background refresh and compression
        // jobs the server scheduled are paused, so their timing under a loaded machine cannot
        // interleave with the steps below (seen once in a full parallel run: the aggregate of
        // the 4-day-old rows read 0).
        client
            .batch_execute(
                "SELECT alter_job(job_id, scheduled => false) FROM timescaledb_information.jobs \
                 WHERE proc_name IN ('policy_refresh_continuous_aggregate', 'policy_compression')",
            )
            .await
            .unwrap();
    }
    for (device, days) in [("ret_10d", 10), ("ret_4d", 4), ("ret_1d", 1)] {
        old_rows(&url, device, days, 10).await;
    }
    if timescale {
        // Materialise the aggregate over all of it, then run the retention jobs now instead of
        // waiting for their schedule.
        client
            .batch_execute(
                "CALL refresh_continuous_aggregate('telemetry_1m', now() - INTERVAL '11 days', \
                 now() - INTERVAL '1 hour')",
            )
            .await
            .unwrap();
        let jobs = client
            .query(
                "SELECT job_id FROM timescaledb_information.jobs \
                 WHERE proc_name = 'policy_retention' ORDER BY job_id",
                &[],
            )
            .await
            .unwrap();
        assert_eq!(jobs.len(), 2, "telemetry and telemetry_1m have retention");
        for job in jobs {
            let id: i32 = job.get(0);
            client
                .batch_execute(&format!("CALL run_job({id})"))
                .await
                .unwrap();
        }
    } else {
        // Plain PostgreSQL: the sweeper deletes at start and hourly.
        let second =
            TestServer::with(figment_with_retention(&url), &url, reqwest::Client::new()).await;
        ems_testkit::wait::until(
            "the sweeper deleting telemetry older than retention_days",
            std::time::Duration::from_secs(15),
            std::time::Duration::from_millis(100),
            || async {
                let left = count_rows(
                    &url,
                    "SELECT count(*) FROM telemetry WHERE device_id = 'ret_4d'",
                )
                .await;
                (left == 0).then_some(())
            },
        )
        .await;
        second.stop().await;
    }
    let raw = |device: &'static str| {
        let url = url.clone();
        async move {
            count_rows(
                &url,
                &format!("SELECT count(*) FROM telemetry WHERE device_id = '{device}'"),
            )
            .await
        }
    };
    assert_eq!(raw("ret_10d").await, 0);
    assert_eq!(raw("ret_4d").await, 0);
    assert_eq!(raw("ret_1d").await, 600, "within retention_days");
    if timescale {
        let agg = |device: &'static str| {
            let url = url.clone();
            async move {
                count_rows(
                    &url,
                    &format!(
                        "SELECT coalesce(sum(n), 0)::int8 FROM telemetry_1m \
                         WHERE device_id = '{device}'"
                    ),
                )
                .await
            }
        };
        assert_eq!(agg("ret_10d").await, 0, "beyond aggregate_retention_days");
        assert_eq!(agg("ret_4d").await, 600, "raw dropped, aggregate kept");
        assert_eq!(agg("ret_1d").await, 600);
    }
}
