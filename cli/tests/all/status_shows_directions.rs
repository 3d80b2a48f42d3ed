//! `status` spells out the spec's sign conventions (battery charging/discharging, grid
//! importing/exporting), with units, state, mode, flags, age and presence; JSON and CSV too.

use crate::common;

use common::{Cloud, packet, seconds_ending};
use ems_protocol::{ErrorFlag, State};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_reads_like_a_sentence() {
    let cloud = Cloud::start().await;
    let token = cloud.add_device("ems_001").await;

    // Before any telemetry.
    let r = cloud.run(&["status"]).await.expect(0);
    assert!(r.stdout.contains("none stored yet"), "{}", r.stdout);
    assert!(r.stdout.contains("offline"), "{}", r.stdout);

    let mut device = cloud.device("ems_001", &token).await;
    let ts = seconds_ending(2, 5);
    let charging = packet("ems_001", ts[0], 84.0);
    let mut discharging = packet("ems_001", ts[1], 85.0);
    discharging.system_status.state = State::Error;
    discharging.system_status.error_flags = vec![ErrorFlag::Overheat];
    discharging.battery.power = Some(-1200.0);
    discharging.battery.current = Some(-22.5);
    discharging.grid.power = Some(350.0);
    device.send_stored(&[charging, discharging.clone()]).await;

    let r = cloud.run(&["status"]).await.expect(0);
    for expected in [
        "online",
        "ERROR",
        "AUTO",
        "OVERHEAT",
        "discharging 1200 W",
        "85 % SoC",
        "-22.5 A",
        "importing 350 W",
        "230.1 V",
        "50 Hz",
        "-45 dBm",
        &ts[1].to_string(),
        "s old",
    ] {
        assert!(
            r.stdout.contains(expected),
            "{expected:?} missing:\n{}",
            r.stdout
        );
    }

    let json = cloud.run(&["status", "-o", "json"]).await.expect(0).json();
    assert_eq!(json["device"]["id"], "ems_001");
    assert_eq!(json["device"]["online"], true);
    assert_eq!(json["telemetry"]["battery"]["power"], -1200);
    assert_eq!(
        json["telemetry"]["system_status"]["error_flags"][0],
        "OVERHEAT"
    );
    assert!(json["age_s"].as_i64().unwrap() >= 5);

    let rows = cloud.run(&["status", "-o", "csv"]).await.expect(0).csv();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["battery_power"], "-1200");
    assert_eq!(rows[0]["grid_power"], "350");
    assert_eq!(rows[0]["state"], "ERROR");
    assert_eq!(rows[0]["time"], ts[1].to_string());
    cloud.stop().await;
}
