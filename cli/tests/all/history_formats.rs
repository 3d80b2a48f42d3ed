//! `history` as table, CSV and JSON, parsed back: every stored packet once, in order, across
//! pages; buckets with avg/min/max; no progress bar when stdout is a pipe.

use crate::common;

use common::{Cloud, packet, seconds_ending};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_round_trips_through_every_format() {
    let cloud = Cloud::start().await;
    let token = cloud.add_device("ems_001").await;
    let mut device = cloud.device("ems_001", &token).await;
    let ts = seconds_ending(150, 10);
    let packets: Vec<_> = ts
        .iter()
        .enumerate()
        .map(|(i, t)| packet("ems_001", *t, i as f64 * 0.5))
        .collect();
    device.send_stored(&packets).await;

    let range = ["--from", "-10m", "--to", "now"];
    let fields = ["--fields", "battery.soc,grid.power"];

    // CSV, in one request and in pages of 40.
    for page in ["1000", "40"] {
        let mut args = vec!["history", "-o", "csv", "--page-size", page];
        args.extend(range);
        args.extend(fields);
        let r = cloud.run(&args).await.expect(0);
        assert_eq!(r.stderr, "", "no progress bar into a pipe");
        let rows = r.csv();
        assert_eq!(rows.len(), 150, "page size {page}");
        for (i, row) in rows.iter().enumerate() {
            assert_eq!(row["time"], ts[i].to_string());
            assert_eq!(row["battery_soc"].parse::<f64>().unwrap(), i as f64 * 0.5);
            assert_eq!(row["grid_power"], "-200");
            assert_eq!(row.len(), 3);
        }
    }

    // JSON: the API's History shape, pages merged.
    let mut args = vec!["history", "-o", "json", "--page-size", "64"];
    args.extend(range);
    let json = cloud.run(&args).await.expect(0).json();
    assert_eq!(json["device_id"], "ems_001");
    assert_eq!(json["truncated"], false);
    assert_eq!(json["bucket_s"], serde_json::Value::Null);
    let points = json["points"].as_array().unwrap();
    assert_eq!(points.len(), 150);
    assert_eq!(points[0]["time"], ts[0].to_string());
    assert_eq!(points[0]["state"], "CHARGING");
    assert_eq!(points[149]["battery_soc"], 74.5);

    // Buckets of a minute: counts add up, stats per field.
    let mut args = vec!["history", "-o", "csv", "--bucket", "1m", "--page-size", "2"];
    args.extend(range);
    args.extend(["--fields", "battery.soc"]);
    let rows = cloud.run(&args).await.expect(0).csv();
    let total: i64 = rows
        .iter()
        .map(|r| r["count"].parse::<i64>().unwrap())
        .sum();
    assert_eq!(total, 150);
    assert!(rows.len() >= 3, "{rows:?}");
    let first = &rows[0];
    assert_eq!(
        first.keys().cloned().collect::<Vec<_>>(),
        [
            "battery_soc_avg",
            "battery_soc_max",
            "battery_soc_min",
            "count",
            "time"
        ]
    );
    assert_eq!(first["battery_soc_min"], "0");
    let json = {
        let mut args = vec!["history", "-o", "json", "--bucket", "60"];
        args.extend(range);
        cloud.run(&args).await.expect(0).json()
    };
    assert_eq!(json["bucket_s"], 60);
    let buckets = json["buckets"].as_array().unwrap();
    assert_eq!(buckets[0]["battery_soc"]["min"], 0.0);

    // Table: a header and one aligned line per packet.
    let mut args = vec!["history"];
    args.extend(range);
    args.extend(fields);
    let r = cloud.run(&args).await.expect(0);
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(lines.len(), 151);
    assert!(lines[0].starts_with("time"), "{}", lines[0]);
    assert!(lines[0].contains("battery_soc  grid_power"), "{}", lines[0]);
    let width = lines[0].len();
    assert!(lines.iter().all(|l| l.len() == width), "{}", r.stdout);
    cloud.stop().await;
}
