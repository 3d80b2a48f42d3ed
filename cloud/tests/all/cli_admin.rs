//! The admin subcommands print a working token once: `add-device` for the device socket,
//! `create-token` for the API; bad input fails with one message and exit code 1.

use crate::common;

use std::process::Command;

use common::{TestServer, packet, recent_seconds};
use ems_protocol::api::DeviceInfo;

fn ems_cloud(db_url: &str, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_ems-cloud"))
        .args(args)
        .env("EMS_CLOUD_DATABASE_URL", db_url)
        .env("EMS_CLOUD_CONFIG", "/nonexistent/cloud.toml")
        .env("ROCKET_CONFIG", "/nonexistent/Rocket.toml")
        .env("RUST_LOG", "warn")
        .output()
        .expect("running ems-cloud")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn add_device_and_create_token_print_usable_tokens() {
    let url = ems_testkit::pg::fresh_database().await;
    let out = ems_cloud(&url, &["add-device", "ems_cli", "--name", "Garage"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let device_token = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert!(device_token.starts_with("emsd_"), "{device_token}");

    let out = ems_cloud(
        &url,
        &["create-token", "--role", "viewer", "--name", "wall"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let api_token = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert!(api_token.starts_with("emsa_"), "{api_token}");

    let out = ems_cloud(&url, &["add-device", "ems_cli"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("already registered"), "{err}");
    let out = ems_cloud(&url, &["create-token", "--role", "root", "--name", "x"]);
    assert!(!out.status.success());

    let server = TestServer::on(&url).await;
    let mut device = server.device("ems_cli", &device_token).await;
    let ts = recent_seconds(1);
    device.send(&packet("ems_cli", ts[0], 1.0)).await;
    device.await_acks(&ts).await;
    let resp = server.get("/devices/ems_cli", &api_token).await;
    assert_eq!(resp.status(), 200);
    let info: DeviceInfo = resp.json().await.unwrap();
    assert_eq!(info.name, "Garage");
    server.stop().await;
}
