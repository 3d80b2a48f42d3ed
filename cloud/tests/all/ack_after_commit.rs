//! A packet is acknowledged only once committed: with the database down nothing is acked, and
//! once it is back every packet is stored and acked, none lost.

use crate::common;

use std::time::Duration;

use common::{Seen, TestServer, count_rows, packet, recent_seconds};
use ems_protocol::Downstream;
use ems_testkit::pg::PgServer;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_ack_while_the_database_is_down_and_no_loss_after() {
    let pg = PgServer::start().expect("own PostgreSQL server");
    let url = pg.create_database().await.unwrap();
    let server = TestServer::on(&url).await;
    let token = server.add_device("ems_outage").await;
    let mut device = server.device("ems_outage", &token).await;

    let seconds = recent_seconds(40);
    let (before, during) = seconds.split_at(20);
    for ts in before {
        device.send(&packet("ems_outage", *ts, 50.0)).await;
    }
    device.await_acks(before).await;

    pg.stop();
    for ts in during {
        device.send(&packet("ems_outage", *ts, 51.0)).await;
    }
    // A negative check needs a window: in two seconds (20 batch periods) nothing may be acked.
    match device.next_within(Duration::from_secs(2)).await {
        None => {}
        Some(Seen::Frame(Downstream::TelemetryAck(ack))) => {
            panic!("acked while the database is down: {:?}", ack.timestamps)
        }
        Some(other) => panic!("unexpected {other:?}"),
    }

    pg.restart().expect("database back");
    device.await_acks(during).await;
    assert_eq!(
        count_rows(
            &url,
            "SELECT count(*) FROM telemetry WHERE device_id = 'ems_outage'"
        )
        .await,
        40
    );
    server.stop().await;
}
