//! The server speaks HTTPS and WSS itself (Rocket's rustls TLS) with a certificate generated here.

use crate::common;

use std::sync::Arc;

use common::{Device, TestServer, figment, packet, recent_seconds};
use ems_protocol::api::Health;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_rustls::rustls::{ClientConfig, RootCertStore};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_api_and_wss_device_socket() {
    let dir = tempfile::tempdir().unwrap();
    let tls = ems_testkit::tls::SelfSigned::for_localhost(dir.path()).unwrap();
    let (cert_path, key_path) = (tls.cert_path.clone(), tls.key_path.clone());

    let url = ems_testkit::pg::fresh_database().await;
    let fig = figment(&url)
        .merge(("tls.certs", cert_path.to_str().unwrap()))
        .merge(("tls.key", key_path.to_str().unwrap()));
    let http = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(tls.cert_pem.as_bytes()).unwrap())
        .build()
        .unwrap();
    let server = TestServer::with(fig, &url, http).await;
    assert!(server.running().tls);
    assert!(server.api("/health").starts_with("https://"));

    let health: Health = server.get_json("/health").await;
    assert!(health.database);
    let token = server.add_device("ems_tls").await;

    // WSS with the generated certificate as the only trusted root.
    let mut roots = RootCertStore::empty();
    roots
        .add(tokio_rustls::rustls::pki_types::CertificateDer::from(
            tls.cert_der.clone(),
        ))
        .unwrap();
    let config = ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(server.running().addr)
        .await
        .unwrap();
    let tls = TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("127.0.0.1").unwrap(), tcp)
        .await
        .expect("TLS handshake with the server's certificate");
    let mut req = server
        .ws("/ws/device/ems_tls")
        .into_client_request()
        .unwrap();
    assert!(req.uri().to_string().starts_with("wss://"));
    req.headers_mut().insert(
        "Authorization",
        HeaderValue::from_str(&format!("Bearer {token}")).unwrap(),
    );
    let (ws, _) = tokio_tungstenite::client_async(req, tls).await.unwrap();
    let mut device = Device { ws };
    let ts = recent_seconds(3);
    for t in &ts {
        device.send(&packet("ems_tls", *t, 70.0)).await;
    }
    device.await_acks(&ts).await;

    // Plain HTTP to the TLS port does not get an answer.
    let plain = reqwest::get(format!("http://{}/api/v1/health", server.running().addr)).await;
    assert!(plain.is_err() || !plain.unwrap().status().is_success());
    server.stop().await;
}
