//! `read_database_url`: history, energy, the latest packet and events are read from a streaming
//! replica (a real hot standby made with pg_basebackup from the test's own primary), writes and
//! everything else go to the primary. Proof that the reads go to the replica: its connections
//! appear on the replica, and with the replica stopped those routes answer 503 while the device's
//! packets are still stored and acknowledged and the device list still answers.

use std::time::Duration;

use ems_protocol::api::History;
use ems_testkit::pg::{Backend, PgServer};

use crate::common::{self, TestServer, packet, recent_seconds};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_reads_go_to_the_replica() {
    let backend = Backend::default_for_tests();
    let primary = tokio::task::spawn_blocking(move || PgServer::start_with(backend))
        .await
        .unwrap()
        .expect("the primary starts");
    let url = primary.create_database().await.unwrap();
    let dbname = url
        .rsplit('/')
        .next()
        .unwrap()
        .split('?')
        .next()
        .unwrap()
        .to_string();
    let primary = std::sync::Arc::new(primary);
    let replica = {
        let primary = primary.clone();
        tokio::task::spawn_blocking(move || PgServer::start_replica_of(&primary))
            .await
            .unwrap()
            .expect("the replica starts")
    };
    let replica_url = replica.url(&dbname);

    let figment = common::figment(&url).merge(("read_database_url", replica_url.as_str()));
    let server = TestServer::with(figment, &url, reqwest::Client::new()).await;
    let token = server.add_device("ems_replica").await;
    let mut device = server.device("ems_replica", &token).await;
    let seconds = recent_seconds(5);
    let packets: Vec<_> = seconds
        .iter()
        .map(|t| packet("ems_replica", *t, 50.0))
        .collect();
    device.send_stored(&packets).await;

    // The replica follows within its lag; history comes from it.
    let from = seconds[0].to_string();
    let path = format!("/devices/ems_replica/telemetry?from={from}");
    ems_testkit::wait::until(
        "the 5 packets in the history read from the replica",
        Duration::from_secs(20),
        Duration::from_millis(100),
        || async {
            let h: History = server.get_json(&path).await;
            (h.points.len() == 5).then_some(())
        },
    )
    .await;
    let on_replica = ems_cloud::db::connect(&replica_url).await.unwrap();
    let in_recovery: bool = on_replica
        .query_one("SELECT pg_is_in_recovery()", &[])
        .await
        .unwrap()
        .get(0);
    assert!(in_recovery, "the read database is a standby");
    let connections: i64 = on_replica
        .query_one(
            "SELECT count(*) FROM pg_stat_activity \
             WHERE datname = current_database() AND pid <> pg_backend_pid()",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(connections >= 1, "the cloud reads from the replica");
    drop(on_replica);

    // Without the replica: the read routes fail clearly, writes and the rest go on.
    replica.stop();
    for path in [
        path.as_str(),
        "/devices/ems_replica/telemetry/latest",
        "/devices/ems_replica/energy",
        "/devices/ems_replica/events",
    ] {
        let resp = server.get(path, &server.admin).await;
        assert_eq!(resp.status(), 503, "{path}");
    }
    let more = recent_seconds(2)
        .into_iter()
        .map(|t| {
            let later = ems_protocol::Timestamp::from_unix(t.unix() + 10).unwrap();
            packet("ems_replica", later, 51.0)
        })
        .collect::<Vec<_>>();
    device.send_stored(&more).await;
    assert_eq!(
        server
            .get("/devices/ems_replica", &server.admin)
            .await
            .status(),
        200
    );
    drop(device);
    server.stop().await;
}
