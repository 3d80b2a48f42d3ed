//! PostgreSQL's own rates, the baselines ingest is held against: the UNNEST insert and binary
//! COPY, only the database's time counted.

use std::time::{Duration, Instant};

use ems_protocol::Telemetry;
use ems_protocol::telemetry::Timestamp;

use super::device::packet;

pub(crate) async fn raw_insert_rate(url: &str, rows: usize) -> f64 {
    let client = ems_cloud::db::connect(url).await.unwrap();
    client
        .batch_execute("CREATE TABLE raw_telemetry (LIKE telemetry INCLUDING ALL)")
        .await
        .unwrap();
    // The very statement ingest runs (ems_cloud::db::columns), on a table without the writer.
    let sql = ems_cloud::db::columns::insert_into("raw_telemetry");
    let stmt = client.prepare(&sql).await.unwrap();
    let base = Timestamp::now().unix() - 3 * 3600;
    let devices = 1000;
    // Only the statements are timed, not building their arrays: the baseline is PostgreSQL's
    // own rate.
    let mut spent = Duration::ZERO;
    let mut done = 0;
    while done < rows {
        let n = 1000.min(rows - done);
        let packets: Vec<Telemetry> = (done..done + n)
            .map(|i| {
                let ts = Timestamp::from_unix(base + (i / devices) as i64).unwrap();
                packet(&format!("dev{:05}", i % devices), ts, i as u64)
            })
            .collect();
        let time: Vec<_> = packets.iter().map(|p| p.timestamp.as_datetime()).collect();
        let dev: Vec<&str> = packets.iter().map(|p| p.device_id.as_str()).collect();
        let st: Vec<&str> = packets
            .iter()
            .map(|p| p.system_status.state.as_str())
            .collect();
        let md: Vec<&str> = packets
            .iter()
            .map(|p| p.system_status.mode.as_str())
            .collect();
        let fl: Vec<String> = packets.iter().map(|_| String::new()).collect();
        let wf: Vec<Option<i32>> = packets
            .iter()
            .map(|p| p.system_status.wifi_strength)
            .collect();
        let col = |f: fn(&Telemetry) -> Option<f64>| -> Vec<Option<f64>> {
            packets.iter().map(f).collect()
        };
        let bv = col(|p| p.battery.voltage);
        let bc = col(|p| p.battery.current);
        let bp = col(|p| p.battery.power);
        let bs = col(|p| p.battery.soc);
        let gv = col(|p| p.grid.voltage);
        let gp = col(|p| p.grid.power);
        let gf = col(|p| p.grid.frequency);
        let ext: Vec<Option<serde_json::Value>> = packets.iter().map(|_| None).collect();
        let started = Instant::now();
        client
            .execute(
                &stmt,
                &[
                    &time, &dev, &st, &md, &fl, &wf, &bv, &bc, &bp, &bs, &gv, &gp, &gf, &ext,
                ],
            )
            .await
            .unwrap();
        spent += started.elapsed();
        done += n;
    }
    rows as f64 / spent.as_secs_f64()
}

/// The stronger baseline: binary `COPY` of the same rows into an empty copy of the table,
/// 100,000 rows per COPY, only the COPY timed: PostgreSQL's fastest way in, the path ingest takes
/// for quiet batches of new packets.
pub(crate) async fn raw_copy_rate(url: &str, rows: usize) -> f64 {
    let client = ems_cloud::db::connect(url).await.unwrap();
    client
        .batch_execute("CREATE TABLE raw_copy (LIKE telemetry INCLUDING ALL)")
        .await
        .unwrap();
    let copy = client
        .prepare(&ems_cloud::ingest::copy_statement("raw_copy"))
        .await
        .unwrap();
    let base = Timestamp::now().unix() - 6 * 3600;
    let devices = 1000;
    let mut spent = Duration::ZERO;
    let mut done = 0;
    while done < rows {
        let n = 100_000.min(rows - done);
        let packets: Vec<Telemetry> = (done..done + n)
            .map(|i| {
                let ts = Timestamp::from_unix(base + (i / devices) as i64).unwrap();
                packet(&format!("dev{:05}", i % devices), ts, i as u64)
            })
            .collect();
        let started = Instant::now();
        ems_cloud::ingest::copy_rows(&client, &copy, packets.iter().map(|p| (p, None)))
            .await
            .unwrap();
        spent += started.elapsed();
        done += n;
    }
    rows as f64 / spent.as_secs_f64()
}
