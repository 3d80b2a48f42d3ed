//! History: raw packets with field selection and limits, and buckets whose avg/min/max match
//! values computed by hand from the packets sent.

use crate::common;

on_both_backends!(buckets_match_hand_computed_values);

use std::collections::BTreeMap;

use common::{Backend, TestServer, packet};
use ems_protocol::Timestamp;
use ems_protocol::api::{FieldStats, History};

/// 180 packets, one per second from a 10-minute boundary two hours ago; `battery_power` = i,
/// `battery_voltage` unknown (null) during the second minute.
fn packets(device: &str) -> (i64, Vec<ems_protocol::Telemetry>) {
    let now = Timestamp::now().unix();
    let base = (now - 7200) / 600 * 600;
    let list = (0..180)
        .map(|i| {
            let mut p = packet(device, Timestamp::from_unix(base + i).unwrap(), 50.0);
            p.battery.power = Some(i as f64);
            if (60..120).contains(&i) {
                p.battery.voltage = None;
            }
            p
        })
        .collect();
    (base, list)
}

fn iso(unix: i64) -> String {
    Timestamp::from_unix(unix).unwrap().to_string()
}

async fn buckets_match_hand_computed_values(backend: Backend) {
    let Some(server) = TestServer::fresh_on(backend).await else {
        return;
    };
    let token = server.add_device("ems_hist").await;
    let mut device = server.device("ems_hist", &token).await;
    let (base, sent) = packets("ems_hist");
    for p in &sent {
        device.send(p).await;
    }
    let stamps: Vec<Timestamp> = sent.iter().map(|p| p.timestamp).collect();
    device.await_acks(&stamps).await;

    // One-minute buckets over a range that is not aligned: widened to whole minutes.
    let h: History = server
        .get_json(&format!(
            "/devices/ems_hist/telemetry?from={}&to={}&bucket=1m&fields=battery_power,battery_voltage",
            iso(base + 30),
            iso(base + 150)
        ))
        .await;
    assert_eq!(h.bucket_s, Some(60));
    assert_eq!(h.from.timestamp(), base);
    assert_eq!(h.to.timestamp(), base + 180);
    assert_eq!(h.buckets.len(), 3);
    for (k, b) in h.buckets.iter().enumerate() {
        let k = k as i64;
        assert_eq!(b.time.timestamp(), base + 60 * k);
        assert_eq!(b.count, 60);
        let power = b.values["battery_power"].expect("power known");
        assert_eq!(
            power,
            FieldStats {
                avg: (60 * k) as f64 + 29.5,
                min: (60 * k) as f64,
                max: (60 * k + 59) as f64
            }
        );
        let voltage = b.values["battery_voltage"];
        if k == 1 {
            assert_eq!(voltage, None, "all null in the second minute");
        } else {
            let v = voltage.unwrap();
            assert!((v.avg - 53.2).abs() < 1e-9 && v.min == 53.2 && v.max == 53.2);
        }
    }

    // 90-second buckets, aligned to the origin (Monday 2000-01-03): computed here by hand.
    let origin = 946_857_600_i64; // 2000-01-03T00:00:00Z
    let mut expect: BTreeMap<i64, Vec<f64>> = BTreeMap::new();
    for p in &sent {
        let t = p.timestamp.unix();
        let start = origin + (t - origin).div_euclid(90) * 90;
        expect
            .entry(start)
            .or_default()
            .push(p.battery.power.unwrap());
    }
    let h: History = server
        .get_json(&format!(
            "/devices/ems_hist/telemetry?from={}&to={}&bucket=90s&fields=battery_power",
            iso(base),
            iso(base + 180)
        ))
        .await;
    assert_eq!(h.buckets.len(), expect.len());
    for (b, (start, values)) in h.buckets.iter().zip(&expect) {
        assert_eq!(b.time.timestamp(), *start);
        assert_eq!(b.count, values.len() as i64);
        let s = b.values["battery_power"].unwrap();
        let avg = values.iter().sum::<f64>() / values.len() as f64;
        assert!((s.avg - avg).abs() < 1e-9, "{} vs {avg}", s.avg);
        assert_eq!(s.min, values.iter().cloned().fold(f64::INFINITY, f64::min));
        assert_eq!(
            s.max,
            values.iter().cloned().fold(f64::NEG_INFINITY, f64::max)
        );
    }

    // Raw packets: selected fields, oldest first, cut by the limit.
    let h: History = server
        .get_json(&format!(
            "/devices/ems_hist/telemetry?from={}&to={}&fields=battery_power,state&limit=10",
            iso(base),
            iso(base + 180)
        ))
        .await;
    assert_eq!(h.points.len(), 10);
    assert!(h.truncated);
    assert_eq!(h.points[3].time.timestamp(), base + 3);
    assert_eq!(h.points[3].values["battery_power"], serde_json::json!(3.0));
    assert_eq!(h.points[3].values["state"], "CHARGING");
    assert_eq!(h.points[3].values.len(), 2);

    // Bad parameters name themselves.
    for (query, field) in [
        ("bucket=5y", "bucket"),
        ("bucket=1m&fields=state", "fields"),
        ("fields=temperature", "fields"),
        ("from=yesterday", "from"),
        ("limit=0", "limit"),
        ("bucket=1s&from=2020-01-01T00:00:00Z", "bucket"),
    ] {
        let resp = server
            .get(
                &format!("/devices/ems_hist/telemetry?{query}"),
                &server.admin,
            )
            .await;
        assert_eq!(resp.status(), 400, "{query}");
        let body: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(body["field"], field, "{query}: {body}");
    }
    server.stop().await;
}
