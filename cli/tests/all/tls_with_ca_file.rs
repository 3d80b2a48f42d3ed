//! Against an HTTPS/WSS server with a self-signed certificate: refused without `--ca-file`
//! (exit 3), and REST and the live feed both work with it (flag or `EMS_CA_FILE`).

use crate::common;

use ems_testkit::process::SpawnGuarded;
use std::sync::Arc;

use common::{Cloud, packet, run, seconds_ending};
use futures_util::SinkExt;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_rustls::rustls::{ClientConfig, RootCertStore, crypto};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn self_signed_server_needs_the_ca_file() {
    let dir = tempfile::tempdir().unwrap();
    let tls = ems_testkit::tls::SelfSigned::for_localhost(dir.path()).unwrap();
    let (cert_path, key_path) = (tls.cert_path.clone(), tls.key_path.clone());
    let http = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(tls.cert_pem.as_bytes()).unwrap())
        .build()
        .unwrap();
    let (c, k) = (cert_path.clone(), key_path.clone());
    let cloud = Cloud::start_with(
        move |f| {
            f.merge(("tls.certs", c.to_str().unwrap()))
                .merge(("tls.key", k.to_str().unwrap()))
        },
        http,
    )
    .await;
    assert!(cloud.url().starts_with("https://"));
    let device_token = cloud.add_device("ems_001").await;
    let ca = cert_path.to_str().unwrap();

    // Unknown issuer without the CA file, for REST and for the live feed.
    let r = cloud.run(&["status"]).await.expect(3);
    assert!(r.stderr.contains("--ca-file"), "{}", r.stderr);
    let r = cloud.run(&["watch", "-d", "ems_001"]).await.expect(3);
    assert!(
        r.stderr.to_lowercase().contains("certificate"),
        "{}",
        r.stderr
    );

    // With it: REST by flag, by environment; a bad CA file is a usage error.
    cloud.run(&["status", "--ca-file", ca]).await.expect(0);
    let mut cmd = cloud.ctl(&["devices", "list"]);
    cmd.env("EMS_CA_FILE", ca);
    run(cmd).await.expect(0);
    let r = cloud
        .run(&["status", "--ca-file", key_path.to_str().unwrap()])
        .await
        .expect(2);
    assert!(r.stderr.contains("CA file"), "{}", r.stderr);

    // The live feed over WSS.
    let mut child = cloud
        .ctl(&["watch", "--ca-file", ca])
        .spawn_guarded()
        .unwrap();
    let mut err = BufReader::new(child.stderr.take().unwrap()).lines();
    let line = tokio::time::timeout(common::DEADLINE, err.next_line())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(line.starts_with("watching"), "{line}");
    // The test's device connects over WSS with the same certificate.
    let mut roots = RootCertStore::empty();
    roots
        .add(tokio_rustls::rustls::pki_types::CertificateDer::from(
            tls.cert_der.clone(),
        ))
        .unwrap();
    let config = ClientConfig::builder_with_provider(Arc::new(crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(cloud.running().addr)
        .await
        .unwrap();
    let tls = TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("127.0.0.1").unwrap(), tcp)
        .await
        .unwrap();
    let mut req = format!("{}/ws/device/ems_001", cloud.running().ws_url())
        .into_client_request()
        .unwrap();
    req.headers_mut().insert(
        "Authorization",
        format!("Bearer {device_token}").parse().unwrap(),
    );
    let (mut ws, _) = tokio_tungstenite::client_async(req, tls).await.unwrap();
    let ts = seconds_ending(1, 5)[0];
    ws.send(Message::Text(packet("ems_001", ts, 42.0).to_json()))
        .await
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap()).lines();
    let line = tokio::time::timeout(common::DEADLINE, out.next_line())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(
        line.starts_with(&ts.to_string()) && line.contains("soc 42 %"),
        "{line}"
    );
    child.kill().await.unwrap();
    cloud.stop().await;
}
