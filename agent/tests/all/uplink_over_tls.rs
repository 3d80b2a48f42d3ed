//! The uplink over `wss://`: ems-cloud speaks TLS with a self-signed certificate; the agent
//! trusts it through `uplink.ca_file` and its telemetry is stored; a CA file without a
//! certificate is refused.

use crate::common;

use std::time::{Duration, Instant};

use common::cloud::{Cloud, stored_seconds};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn telemetry_over_wss_with_a_private_ca() {
    let dir = tempfile::tempdir().unwrap();
    let db_url = ems_testkit::pg::fresh_database().await;
    let cloud = Cloud::self_signed(&db_url, dir.path()).await;
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
fn a_ca_file_without_certificates_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ca.pem");
    std::fs::write(&path, "not a certificate\n").unwrap();
    let err = ems_agent::uplink::connect::tls_config(Some(&path))
        .unwrap_err()
        .to_string();
    assert!(err.contains("ca.pem"), "{err}");
}
