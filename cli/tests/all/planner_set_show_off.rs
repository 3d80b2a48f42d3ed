//! `emsctl planner set` opts a device in to the cloud planner with its battery figures (the
//! server fills in the defaults), `planner show` prints them (a table, or JSON), bad figures
//! are refused with exit code 2 naming the field and store nothing, and `planner off` opts out:
//! `show` then finds no settings (exit code 2). `plan` without the battery's figures and without
//! stored ones says how to store them.

use crate::common;

use common::Cloud;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn planner_set_show_and_off() {
    let cloud = Cloud::start().await;
    cloud.add_device("ems_planner").await;

    let none = cloud.run(&["planner", "show", "-d", "ems_planner"]).await;
    assert_eq!(none.code, 2, "{}", none.stderr);
    // `plan` without figures and without stored ones: refused, saying how to store them.
    let no_figures = cloud.run(&["plan", "-d", "ems_planner"]).await;
    assert_eq!(no_figures.code, 2, "{}", no_figures.stderr);
    assert!(
        no_figures.stderr.contains("planner set"),
        "{}",
        no_figures.stderr
    );

    let refused = cloud
        .run(&[
            "planner",
            "set",
            "-d",
            "ems_planner",
            "--capacity-wh",
            "10000",
            "--max-charge-w",
            "3000",
            "--max-discharge-w",
            "3000",
            "--efficiency",
            "1.5",
        ])
        .await;
    assert_eq!(refused.code, 2, "{}", refused.stderr);
    assert!(refused.stderr.contains("efficiency"), "{}", refused.stderr);
    let still = cloud.run(&["planner", "show", "-d", "ems_planner"]).await;
    assert_eq!(still.code, 2, "nothing stored: {}", still.stdout);

    let set = cloud
        .run(&[
            "planner",
            "set",
            "-d",
            "ems_planner",
            "--capacity-wh",
            "10000",
            "--max-charge-w",
            "3000",
            "--max-discharge-w",
            "2500",
            "--reserve",
            "20",
            "--time-zone",
            "Europe/Berlin",
        ])
        .await
        .expect(0);
    assert!(set.stdout.contains("cloud"), "{}", set.stdout);

    let shown = cloud
        .run(&["planner", "show", "-d", "ems_planner"])
        .await
        .expect(0);
    assert!(shown.stdout.starts_with("setting"), "{}", shown.stdout);
    assert!(shown.stdout.contains("Europe/Berlin"), "{}", shown.stdout);
    let json = cloud
        .run(&["planner", "show", "-d", "ems_planner", "-o", "json"])
        .await
        .expect(0)
        .json();
    assert_eq!(json["planner"], "cloud", "{json}");
    assert_eq!(json["max_discharge_w"], 2500.0, "{json}");
    assert_eq!(json["reserve_soc_pct"], 20.0, "{json}");
    assert_eq!(json["efficiency"], 0.95, "server default: {json}");

    let off = cloud
        .run(&["planner", "off", "-d", "ems_planner", "-o", "json"])
        .await
        .expect(0)
        .json();
    assert_eq!(off["planner"], "off", "{off}");
    let gone = cloud.run(&["planner", "show", "-d", "ems_planner"]).await;
    assert_eq!(gone.code, 2, "{}", gone.stdout);
}
