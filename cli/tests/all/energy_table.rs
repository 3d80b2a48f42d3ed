//! `emsctl energy` shows the cloud's kWh per day: three packets, one second apart, charging at
//! 3.6 kW and exporting 1.8 kW, are 3 Wh charged and 1.5 Wh exported; with the `site` extension
//! also PV and house kWh and the self-consumption and self-sufficiency ratios.

use crate::common;

use common::{Cloud, packet, seconds_ending};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn energy_per_day_in_table_and_json() {
    let cloud = Cloud::start().await;
    let token = cloud
        .run(&["devices", "add", "ems_kwh", "-o", "json"])
        .await
        .expect(0)
        .json()["token"]
        .as_str()
        .unwrap()
        .to_string();
    let mut device = cloud.device("ems_kwh", &token).await;
    let packets: Vec<_> = seconds_ending(3, 30)
        .into_iter()
        .map(|t| {
            let mut p = packet("ems_kwh", t, 50.0);
            p.battery.power = Some(3600.0);
            p.grid.power = Some(-1800.0);
            p
        })
        .collect();
    device.send_stored(&packets).await;

    let json = cloud
        .run(&["energy", "-d", "ems_kwh", "-o", "json"])
        .await
        .expect(0)
        .json();
    let total = |key: &str| -> f64 {
        json["buckets"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b[key].as_f64().unwrap())
            .sum()
    };
    assert!((total("charged_kwh") - 0.003).abs() < 1e-12, "{json}");
    assert!((total("exported_kwh") - 0.0015).abs() < 1e-12, "{json}");
    assert_eq!(total("discharged_kwh"), 0.0);

    let table = cloud.run(&["energy", "-d", "ems_kwh"]).await.expect(0);
    assert!(table.stdout.starts_with("start"), "{}", table.stdout);
    assert!(table.stdout.contains("0.003"), "{}", table.stdout);
    let bad = cloud
        .run(&["energy", "-d", "ems_kwh", "--bucket", "soon"])
        .await;
    assert_eq!(bad.code, 2);
    assert!(bad.stderr.contains("--bucket"), "{}", bad.stderr);
    // Without the agent's `site` extension there are no PV columns.
    assert!(!table.stdout.contains("pv_kwh"), "{}", table.stdout);

    // With it: PV 3.6 kW, house 1.8 kW, exporting 1.8 kW: half the PV used on site, the house
    // fully supplied without import.
    let token = cloud.add_device("ems_pv").await;
    let mut device = cloud.device("ems_pv", &token).await;
    let packets: Vec<_> = seconds_ending(3, 30)
        .into_iter()
        .map(|t| {
            let mut p = packet("ems_pv", t, 50.0);
            p.battery.power = Some(0.0);
            p.grid.power = Some(-1800.0);
            p.site = Some(ems_protocol::telemetry::SiteFlows {
                pv_power: Some(3600.0),
                house_power: Some(1800.0),
            });
            p
        })
        .collect();
    device.send_stored(&packets).await;
    let json = cloud
        .run(&["energy", "-d", "ems_pv", "-o", "json"])
        .await
        .expect(0)
        .json();
    let buckets = json["buckets"].as_array().unwrap();
    let sum = |key: &str| -> f64 { buckets.iter().map(|b| b[key].as_f64().unwrap()).sum() };
    assert!((sum("pv_kwh") - 0.003).abs() < 1e-12, "{json}");
    assert!((sum("house_kwh") - 0.0015).abs() < 1e-12, "{json}");
    let rows = cloud
        .run(&["energy", "-d", "ems_pv", "-o", "csv"])
        .await
        .expect(0)
        .csv();
    for r in &rows {
        assert!(!r["discharged_kwh"].starts_with('-'), "{rows:?}");
        assert_eq!(r["self_consumption_pct"], "50.0", "{rows:?}");
        assert_eq!(r["self_sufficiency_pct"], "100.0", "{rows:?}");
    }
    cloud.stop().await;
}
