//! Device tags from emsctl: `devices add --tags`, `devices tag`, `devices list --tag`, and
//! `tokens create --tags` giving a token that sees exactly the tagged devices.

use crate::common;

use common::{Cloud, emsctl, run};

fn ids(run: &common::Run) -> Vec<String> {
    run.csv().into_iter().map(|r| r["id"].clone()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tags_scope_a_token_and_filter_the_list() {
    let cloud = Cloud::start().await;
    cloud
        .run(&["devices", "add", "lyon_1", "--tags", "site:lyon,fleet-a"])
        .await
        .expect(0);
    cloud.run(&["devices", "add", "paris_1"]).await.expect(0);
    let created = cloud
        .run(&[
            "tokens",
            "create",
            "--role",
            "viewer",
            "--name",
            "lyon",
            "--tags",
            "site:lyon",
            "-o",
            "json",
        ])
        .await
        .expect(0)
        .json();
    let lyon = created["token"].as_str().unwrap().to_string();
    let as_lyon = |args: &'static [&'static str]| {
        let mut cmd = emsctl(cloud.home.path());
        cmd.args(["--url", &cloud.url(), "--token", &lyon]);
        cmd.args(args);
        run(cmd)
    };
    let seen = as_lyon(&["devices", "list", "-o", "csv"]).await.expect(0);
    assert_eq!(ids(&seen), ["lyon_1"]);
    let listed = cloud.run(&["devices", "list", "-o", "csv"]).await.expect(0);
    let lyon_row = listed
        .csv()
        .into_iter()
        .find(|r| r["id"] == "lyon_1")
        .unwrap();
    assert_eq!(lyon_row["tags"], "fleet-a,site:lyon");

    // Tagging paris_1 brings it into the token's view; the list filter finds both.
    let tagged = cloud
        .run(&["devices", "tag", "paris_1", "--tags", "site:lyon"])
        .await
        .expect(0);
    assert!(tagged.stdout.contains("site:lyon"), "{}", tagged.stdout);
    let seen = as_lyon(&["devices", "list", "-o", "csv"]).await.expect(0);
    assert_eq!(ids(&seen), ["lyon_1", "paris_1"]);
    let filtered = cloud
        .run(&["devices", "list", "--tag", "fleet-a", "-o", "csv"])
        .await
        .expect(0);
    assert_eq!(ids(&filtered), ["lyon_1"]);

    // The token list shows the scope; a bad tag is refused naming the field.
    let tokens = cloud.run(&["tokens", "list", "-o", "csv"]).await.expect(0);
    let row = tokens
        .csv()
        .into_iter()
        .find(|r| r["name"] == "lyon")
        .unwrap();
    assert_eq!(row["tags"], "site:lyon");
    let bad = cloud
        .run(&["devices", "tag", "paris_1", "--tags", "two words"])
        .await;
    assert_ne!(bad.code, 0);
    assert!(bad.stderr.contains("tags"), "{}", bad.stderr);
    // An empty value removes them all.
    cloud
        .run(&["devices", "tag", "paris_1", "--tags", ""])
        .await
        .expect(0);
    let seen = as_lyon(&["devices", "list", "-o", "csv"]).await.expect(0);
    assert_eq!(ids(&seen), ["lyon_1"]);
    cloud.stop().await;
}
