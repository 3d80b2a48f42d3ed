//! `emsctl tariff set` uploads a CSV or a JSON file and `tariff show` prints what the cloud
//! stored (a table, or JSON that `set` reads back); a file with overlapping periods is refused
//! with exit code 2 and the period named, and the stored tariff stays.

use crate::common;

use common::Cloud;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tariff_from_csv_and_json_round_trips() {
    let cloud = Cloud::start().await;
    cloud.add_device("ems_tariff").await;
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("tariff.csv");
    std::fs::write(
        &csv,
        "start,end,import_price,export_price\n\
         2026-12-01T00:00:00Z,2026-12-01T06:00:00Z,0.1,0.05\n\
         2026-12-01T06:00:00Z,2026-12-01T17:00:00Z,0.2534,0.05\n\
         2026-12-01T17:00:00Z,2026-12-01T21:00:00Z,0.4,-0.01\n",
    )
    .unwrap();
    let csv = csv.to_str().unwrap();
    cloud
        .run(&["tariff", "set", csv, "-d", "ems_tariff"])
        .await
        .expect(0);

    let shown = cloud
        .run(&["tariff", "show", "-d", "ems_tariff"])
        .await
        .expect(0);
    assert!(shown.stdout.starts_with("start"), "{}", shown.stdout);
    assert!(shown.stdout.contains("0.2534"), "{}", shown.stdout);
    assert!(shown.stdout.contains("-0.01"), "{}", shown.stdout);
    let json = cloud
        .run(&["tariff", "show", "-d", "ems_tariff", "-o", "json"])
        .await
        .expect(0)
        .json();
    assert_eq!(json["periods"].as_array().unwrap().len(), 3, "{json}");
    assert_eq!(json["periods"][2]["end"], "2026-12-01T21:00:00Z", "{json}");

    // Overlapping: refused, the stored tariff stays.
    let bad = dir.path().join("bad.json");
    std::fs::write(
        &bad,
        r#"[{"start":"2026-12-02T00:00:00Z","end":"2026-12-02T06:00:00Z","import_price":0.1,"export_price":0},
            {"start":"2026-12-02T05:00:00Z","end":"2026-12-02T07:00:00Z","import_price":0.1,"export_price":0}]"#,
    )
    .unwrap();
    let refused = cloud
        .run(&["tariff", "set", bad.to_str().unwrap(), "-d", "ems_tariff"])
        .await;
    assert_eq!(refused.code, 2, "{}", refused.stderr);
    assert!(
        refused.stderr.contains("periods[1].start"),
        "{}",
        refused.stderr
    );
    let still = cloud
        .run(&["tariff", "show", "-d", "ems_tariff", "-o", "json"])
        .await
        .expect(0)
        .json();
    assert_eq!(still, json);

    // What `show -o json` printed is a file `set` takes (here with one period fewer).
    let mut fewer = json.clone();
    fewer["periods"].as_array_mut().unwrap().pop();
    let shown_file = dir.path().join("shown.json");
    std::fs::write(&shown_file, fewer.to_string()).unwrap();
    cloud
        .run(&[
            "tariff",
            "set",
            shown_file.to_str().unwrap(),
            "-d",
            "ems_tariff",
        ])
        .await
        .expect(0);
    let after = cloud
        .run(&["tariff", "show", "-d", "ems_tariff", "-o", "json"])
        .await
        .expect(0)
        .json();
    assert_eq!(after, fewer);
}
