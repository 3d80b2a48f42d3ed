//! `alerts rules add|list|delete` and `alerts [--open|--resolved] [--device]` against a real
//! cloud: a rule added with emsctl opens an alert when the device's SoC drops, emsctl lists
//! it in every format, a refused rule is a usage error, and a viewer may not manage rules.

use crate::common;

use std::time::Duration;

use common::{Cloud, DEADLINE, packet};
use ems_protocol::Timestamp;
use ems_protocol::api::Role;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_and_alerts_from_the_command_line() {
    let cloud = Cloud::start().await;
    let token = cloud.add_device("ems_low").await;
    cloud.add_device("ems_fine").await;

    let added = cloud
        .run(&[
            "alerts",
            "rules",
            "add",
            "low",
            "--kind",
            "SOC_BELOW",
            "--threshold",
            "20",
            "--clear-threshold",
            "30",
            "--for",
            "0s",
            "-o",
            "json",
        ])
        .await
        .expect(0)
        .json();
    assert_eq!(added["name"], "low");
    assert_eq!(added["kind"], "SOC_BELOW");
    assert_eq!(added["clear_threshold"], 30.0);
    let r = cloud
        .run(&["alerts", "rules", "add", "broken", "--kind", "soc_below"])
        .await
        .expect(2);
    assert!(r.stderr.contains("threshold"), "{}", r.stderr);
    let r = cloud
        .run(&["alerts", "rules", "add", "x", "--kind", "smoke"])
        .await
        .expect(2);
    assert!(r.stderr.contains("smoke"), "{}", r.stderr);
    let rules = cloud
        .run(&["alerts", "rules", "list", "-o", "csv"])
        .await
        .expect(0)
        .csv();
    assert_eq!(rules.len(), 1);
    assert_eq!(rules[0]["name"], "low");
    assert_eq!(rules[0]["device"], "(all)");

    let mut device = cloud.device("ems_low", &token).await;
    let second = Timestamp::now().unix() - 30;
    device
        .send_stored(&[packet(
            "ems_low",
            Timestamp::from_unix(second).unwrap(),
            12.0,
        )])
        .await;
    let open = ems_testkit::wait::until(
        "emsctl to list the open alert",
        DEADLINE,
        Duration::from_millis(100),
        || async {
            let open = cloud
                .run(&["alerts", "--open", "-o", "json"])
                .await
                .expect(0)
                .json();
            (open.as_array().is_some_and(|a| a.len() == 1)).then_some(open)
        },
    )
    .await;
    assert_eq!(open[0]["device_id"], "ems_low");
    assert_eq!(open[0]["rule_name"], "low");
    assert!(open[0]["resolved_at"].is_null());

    let table = cloud
        .run(&["alerts", "--device", "ems_low"])
        .await
        .expect(0);
    let mut lines = table.stdout.lines();
    assert!(lines.next().unwrap().starts_with("id"), "{}", table.stdout);
    assert!(
        lines.next().unwrap().contains("SOC_BELOW"),
        "{}",
        table.stdout
    );
    let other = cloud
        .run(&["alerts", "--device", "ems_fine", "-o", "csv"])
        .await
        .expect(0)
        .csv();
    assert!(other.is_empty(), "{other:?}");
    let resolved = cloud
        .run(&["alerts", "--resolved", "-o", "json"])
        .await
        .expect(0)
        .json();
    assert_eq!(resolved, serde_json::json!([]));

    let viewer = cloud.token("look", Role::Viewer).await;
    let mut as_viewer = common::emsctl(cloud.home.path());
    as_viewer.args([
        "--url",
        &cloud.url(),
        "--token",
        &viewer,
        "alerts",
        "rules",
        "list",
    ]);
    let r = common::run(as_viewer).await.expect(3);
    assert!(r.stderr.contains("403"), "{}", r.stderr);

    cloud
        .run(&["alerts", "rules", "delete", "low"])
        .await
        .expect(0);
    let open = cloud
        .run(&["alerts", "--open", "-o", "json"])
        .await
        .expect(0)
        .json();
    assert_eq!(
        open,
        serde_json::json!([]),
        "deleting the rule resolves its alert"
    );
    let resolved = cloud
        .run(&["alerts", "--resolved", "-o", "csv"])
        .await
        .expect(0)
        .csv();
    assert_eq!(resolved.len(), 1);
    assert_eq!(resolved[0]["device"], "ems_low");
    cloud
        .run(&["alerts", "rules", "delete", "low"])
        .await
        .expect(2);
}
