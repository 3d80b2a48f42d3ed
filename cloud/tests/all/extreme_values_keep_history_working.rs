//! Packets at the edge of what validation accepts (every measurement at its plausibility bound)
//! do not break any history or aggregate query, for their device or another; values past the
//! bounds and extension text PostgreSQL cannot store are refused at the socket, naming the field
//! and the packet.

use crate::common;

use common::{Backend, Seen, TestServer, packet, recent_seconds};
use ems_protocol::api::History;
use ems_protocol::message::ErrorCode;
use ems_protocol::{Downstream, Timestamp};

on_both_backends!(extreme_values_are_stored_and_history_still_answers);

async fn extreme_values_are_stored_and_history_still_answers(backend: Backend) {
    let Some(server) = TestServer::fresh_on(backend).await else {
        return;
    };
    let token_x = server.add_device("extreme_x").await;
    let token_y = server.add_device("normal_y").await;
    let mut x = server.device("extreme_x", &token_x).await;
    let mut y = server.device("normal_y", &token_y).await;

    // Two packets in the same minute with every value at a bound, then ordinary ones.
    let seconds = recent_seconds(120);
    for (i, t) in seconds.iter().enumerate() {
        let mut p = packet("extreme_x", *t, 100.0);
        if i < 2 {
            p.battery.voltage = Some(2_000.0);
            p.battery.current = Some(-10_000.0);
            p.battery.power = Some(10_000_000.0);
            p.grid.voltage = Some(100_000.0);
            p.grid.power = Some(-100_000_000.0);
            p.grid.frequency = Some(1_000.0);
        }
        x.send(&p).await;
        y.send(&packet("normal_y", *t, 20.0)).await;
    }
    x.await_acks(&seconds).await;
    y.await_acks(&seconds).await;

    // Past a bound: refused, naming the field and the packet.
    let t = Timestamp::from_unix(Timestamp::now().unix() - 1).unwrap();
    let mut p = packet("extreme_x", t, 50.0);
    p.grid.power = Some(1e300);
    x.send(&p).await;
    match x.next().await {
        Seen::Frame(Downstream::Error(e)) => {
            assert_eq!((e.code, e.timestamps), (ErrorCode::BadFrame, vec![t]));
            assert!(e.message.contains("grid.power"), "{}", e.message);
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    // A NUL character in an extension field (jsonb cannot hold it): refused, naming the path.
    let mut raw: serde_json::Value =
        serde_json::from_str(&packet("extreme_x", t, 50.0).to_json()).unwrap();
    raw["site"] = serde_json::json!({"note": "a\u{0}b"});
    x.send_text(raw.to_string()).await;
    match x.next().await {
        Seen::Frame(Downstream::Error(e)) => {
            assert_eq!((e.code, e.timestamps), (ErrorCode::BadFrame, vec![t]));
            assert!(e.message.contains("site.note"), "{}", e.message);
        }
        other => panic!("expected a refusal, got {other:?}"),
    }

    if backend == Backend::TimescaleDb {
        let client = ems_cloud::db::connect(&server.db_url).await.unwrap();
        client
            .batch_execute(
                "CALL refresh_continuous_aggregate('telemetry_1m', now() - INTERVAL '1 hour', \
                 now() - INTERVAL '1 minute')",
            )
            .await
            .unwrap();
    }
    let from = (seconds[0].as_datetime() - chrono::Duration::hours(1)).to_rfc3339();
    let to = (Timestamp::now().as_datetime() + chrono::Duration::hours(1)).to_rfc3339();
    for device in ["extreme_x", "normal_y"] {
        for bucket in ["", "&bucket=1s", "&bucket=1m", "&bucket=1h", "&bucket=1d"] {
            let h: History = server
                .get_json(&format!(
                    "/devices/{device}/telemetry?from={}&to={}{bucket}&limit=10000",
                    urlencode(&from),
                    urlencode(&to)
                ))
                .await;
            assert!(
                !(h.points.is_empty() && h.buckets.is_empty()),
                "{device}{bucket}"
            );
        }
    }
    let day: History = server
        .get_json(&format!(
            "/devices/extreme_x/telemetry?from={}&to={}&bucket=1d&fields=grid_power",
            urlencode(&from),
            urlencode(&to)
        ))
        .await;
    let stats = day
        .buckets
        .iter()
        .find_map(|b| b.values["grid_power"])
        .unwrap();
    assert_eq!(stats.min, -100_000_000.0);
    server.stop().await;
}

fn urlencode(s: &str) -> String {
    s.replace('+', "%2B").replace(':', "%3A")
}
