//! A command the cloud gives up on (`--expires-in`, device offline) ends EXPIRED with exit 1,
//! before `--timeout` runs out.

use crate::common;

use common::Cloud;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_command_exits_one() {
    let cloud = Cloud::start().await;
    cloud.add_device("ems_001").await;
    let r = cloud
        .run(&[
            "reset-error",
            "--expires-in",
            "1",
            "--timeout",
            "15",
            "-o",
            "json",
        ])
        .await
        .expect(1);
    let json = r.json();
    assert_eq!(json["status"], "EXPIRED");
    assert!(
        json["reason"].as_str().is_some_and(|r| !r.is_empty()),
        "{json}"
    );
    cloud.stop().await;
}
