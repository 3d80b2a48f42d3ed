//! The uplink over `wss://`: ems-cloud speaks TLS with a self-signed certificate; the agent
//! trusts it through `uplink.ca_file` and its telemetry is stored. The token file must not be
//! readable by other users.

use crate::common;

use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use common::cloud::{Cloud, stored_seconds};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn telemetry_over_wss_with_a_private_ca() {
    let dir = tempfile::tempdir().unwrap();
    let db_url = ems_testkit::pg::fresh_database().await;
    let cloud = Cloud::start_self_signed(&db_url, dir.path()).await;
    assert!(cloud.ws_base().starts_with("wss://"));
    let uplink = cloud.uplink_section("bench_1", dir.path(), "").await;
    assert!(uplink.contains("ca_file"), "{uplink}");
    let mut bench = common::start_in(dir, 55.0, &uplink).await;
    bench.wait_running().await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let rows = stored_seconds(&db_url, "bench_1").await;
        if rows.len() >= 3 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "nothing stored over wss: {rows:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(bench.agent.uplink.borrow().connected);
    bench.agent.stop().await;
}

#[test]
fn a_world_readable_token_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("device.token");
    std::fs::write(&path, "emsd_secret\n").unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let err = ems_agent::uplink::connect::read_token(&path)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("readable by every user") && err.contains("chmod 600"),
        "{err}"
    );
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert_eq!(
        ems_agent::uplink::connect::read_token(&path).unwrap(),
        "emsd_secret"
    );
}

#[test]
fn a_ca_file_without_certificates_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ca.pem");
    std::fs::write(&path, "not a certificate\n").unwrap();
    let err = ems_agent::uplink::connect::tls_config(Some(&path))
        .unwrap_err()
        .to_string();
    assert!(err.contains("ca.pem"), "{err}");
}
