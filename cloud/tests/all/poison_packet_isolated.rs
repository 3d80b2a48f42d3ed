//! One packet that passes validation but that PostgreSQL refuses must not stall the fleet: the
//! batch it came in is bisected, the packet goes to `rejected_telemetry` and its device gets an
//! `ERROR` `REJECTED` naming it; every other packet of the batch (other devices', and its own
//! device's) is stored and acknowledged as usual, and a restart with the device resending it
//! changes nothing.
//!
//! The refusal is made real with a CHECK constraint on `telemetry` that one value violates,
//! standing for whatever a validated packet may still trip over in a database.

use crate::common;

use std::time::{Duration, Instant};

use common::{Backend, Device, Seen, TestServer, count_rows, packet, recent_seconds};
use ems_protocol::message::ErrorCode;
use ems_protocol::{Downstream, Telemetry, Timestamp};
use tokio_tungstenite::MaybeTlsStream;

on_both_backends!(a_refused_packet_is_set_aside_and_nobody_waits);

type Socket = Device<MaybeTlsStream<tokio::net::TcpStream>>;

const POISON_SOC: f64 = 66.6;

/// Sends `packets` one by one and collects acks and refusals until every packet is answered;
/// returns the refused timestamps and the longest send-to-answer time.
async fn exchange(device: &mut Socket, packets: &[Telemetry]) -> (Vec<Timestamp>, Duration) {
    let mut sent_at = std::collections::HashMap::new();
    for p in packets {
        sent_at.insert(p.timestamp, Instant::now());
        device.send(p).await;
    }
    let mut refused = Vec::new();
    let mut worst = Duration::ZERO;
    while !sent_at.is_empty() {
        let (stamps, is_refusal) = match device.next().await {
            Seen::Frame(Downstream::TelemetryAck(ack)) => (ack.timestamps, false),
            Seen::Frame(Downstream::Error(e)) => {
                assert_eq!(e.code, ErrorCode::Rejected, "{e:?}");
                assert!(e.message.contains("poison"), "{}", e.message);
                (e.timestamps, true)
            }
            other => panic!("expected acks or a refusal, got {other:?}"),
        };
        for t in stamps {
            if let Some(at) = sent_at.remove(&t) {
                worst = worst.max(at.elapsed());
            }
            if is_refusal {
                refused.push(t);
            }
        }
    }
    (refused, worst)
}

async fn a_refused_packet_is_set_aside_and_nobody_waits(backend: Backend) {
    let Some(server) = TestServer::fresh_on(backend).await else {
        return;
    };
    let client = ems_cloud::db::connect(&server.db_url).await.unwrap();
    client
        .batch_execute(&format!(
            "ALTER TABLE telemetry ADD CONSTRAINT poison \
             CHECK (battery_soc IS DISTINCT FROM {POISON_SOC})"
        ))
        .await
        .unwrap();
    let token_a = server.add_device("quiet_a").await;
    let token_b = server.add_device("broken_b").await;
    let mut a = server.device("quiet_a", &token_a).await;
    let mut b = server.device("broken_b", &token_b).await;

    // Both devices send a backlog at once, so their packets share batches; one of b's packets
    // is poison.
    let seconds = recent_seconds(200);
    let a_packets: Vec<Telemetry> = seconds
        .iter()
        .map(|t| packet("quiet_a", *t, 50.0))
        .collect();
    let mut b_packets: Vec<Telemetry> = seconds
        .iter()
        .map(|t| packet("broken_b", *t, 51.0))
        .collect();
    b_packets[120].battery.soc = Some(POISON_SOC);
    let poison = b_packets[120].timestamp;
    let ((a_refused, a_worst), (b_refused, _)) =
        tokio::join!(exchange(&mut a, &a_packets), exchange(&mut b, &b_packets));
    assert!(a_refused.is_empty());
    assert!(
        a_worst < Duration::from_secs(2),
        "the quiet device waited {a_worst:?} for an ack"
    );
    assert_eq!(b_refused, vec![poison]);

    let url = server.db_url.clone();
    let n = |sql: &'static str| count_rows(&url, sql);
    assert_eq!(
        n("SELECT count(*) FROM telemetry WHERE device_id = 'quiet_a'").await,
        200
    );
    assert_eq!(
        n("SELECT count(*) FROM telemetry WHERE device_id = 'broken_b'").await,
        199
    );
    let row = client
        .query_one(
            "SELECT device_id, time, packet, error FROM rejected_telemetry",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, &str>(0), "broken_b");
    assert_eq!(
        row.get::<_, chrono::DateTime<chrono::Utc>>(1),
        poison.as_datetime()
    );
    let stored: Telemetry = serde_json::from_str(row.get::<_, &str>(2)).unwrap();
    assert_eq!(stored, b_packets[120]);
    let error: &str = row.get(3);
    assert!(
        error.contains("poison") && error.contains("SQLSTATE 23514"),
        "{error}"
    );

    // A restart, and the device resends the refused packet beside a new one: the same answer,
    // nothing stored twice, nothing new in rejected_telemetry.
    drop(a);
    drop(b);
    server.stop().await;
    let server = TestServer::on(&url).await;
    let mut b = server.device("broken_b", &token_b).await;
    let next = packet(
        "broken_b",
        Timestamp::from_unix(Timestamp::now().unix() - 5).unwrap(),
        52.0,
    );
    let (refused, _) = exchange(&mut b, &[b_packets[120].clone(), next]).await;
    assert_eq!(refused, vec![poison]);
    assert_eq!(
        n("SELECT count(*) FROM telemetry WHERE device_id = 'broken_b'").await,
        200
    );
    assert_eq!(n("SELECT count(*) FROM rejected_telemetry").await, 1);
    server.stop().await;
}
