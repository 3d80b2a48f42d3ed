//! `watch` survives a restart of the cloud: when the feed drops it says so on stderr (attempt and
//! delay), reconnects with a new connection once the cloud is back on the same port, and goes
//! on printing telemetry. A cloud that stops accepting its token ends it with exit 3.

use std::time::Duration;

use crate::common;

use common::{DEADLINE, emsctl, packet, seconds_ending};
use ems_cloud::config::CloudConfig;
use ems_cloud::db::Db;
use ems_cloud::server::Running;
use ems_protocol::api::Role;
use ems_protocol::telemetry::Timestamp;
use ems_testkit::process::SpawnGuarded;
use futures_util::SinkExt;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader, Lines};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;

/// An in-process cloud on a fixed port, so that it can come back at the same address.
struct FixedPortCloud {
    db_url: String,
    port: u16,
    running: Option<Running>,
}

impl FixedPortCloud {
    async fn start() -> FixedPortCloud {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut cloud = FixedPortCloud {
            db_url: ems_testkit::pg::fresh_database().await,
            port,
            running: None,
        };
        cloud.restart().await;
        cloud
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    async fn stop(&mut self) {
        if let Some(r) = self.running.take() {
            r.stop().await;
        }
    }

    /// Starts (again) on the same port; the old socket may take a moment to be free.
    async fn restart(&mut self) {
        self.stop().await;
        let figment = ems_cloud::figment()
            .merge(("address", "127.0.0.1"))
            .merge(("port", self.port))
            .merge(("log_level", "off"))
            .merge(("cli_colors", false))
            .merge(("shutdown.ctrlc", false))
            .merge(("shutdown.grace", 0))
            .merge(("shutdown.mercy", 0))
            .merge(("database_url", self.db_url.as_str()))
            .merge(("database_pool_size", 4));
        let running = ems_testkit::wait::until(
            "the cloud listens on its port again",
            DEADLINE,
            Duration::from_millis(100),
            || {
                let figment = figment.clone();
                async move { ems_cloud::start(figment).await.ok() }
            },
        )
        .await;
        self.running = Some(running);
    }

    async fn token(&self, name: &str, role: Role) -> String {
        let db = Db::open(&CloudConfig {
            database_url: self.db_url.clone(),
            database_pool_size: 1,
            ..CloudConfig::default()
        })
        .await
        .expect("test db opens");
        ems_cloud::auth::create_api_token(&db, name, role, None)
            .await
            .expect("token")
    }

    async fn add_device(&self, admin: &str, id: &str) -> String {
        let resp = reqwest::Client::new()
            .post(format!("{}/api/v1/devices", self.url()))
            .bearer_auth(admin)
            .json(&serde_json::json!({ "id": id }))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 201);
        let body: serde_json::Value = resp.json().await.unwrap();
        body["token"].as_str().unwrap().to_string()
    }

    /// A device connection that sends one packet (and waits until the cloud has taken it).
    async fn send_packet(&self, device: &str, token: &str, ts: Timestamp, soc: f64) {
        let mut req = format!("ws://127.0.0.1:{}/ws/device/{device}", self.port)
            .into_client_request()
            .unwrap();
        req.headers_mut().insert(
            "Authorization",
            HeaderValue::from_str(&format!("Bearer {token}")).unwrap(),
        );
        let (mut ws, _) = tokio_tungstenite::connect_async(req).await.unwrap();
        ws.send(Message::Text(packet(device, ts, soc).to_json()))
            .await
            .unwrap();
        // The acknowledgement says it is stored, and so published to the live feeds.
        use futures_util::StreamExt;
        let ack = tokio::time::timeout(DEADLINE, ws.next()).await.unwrap();
        assert!(matches!(ack, Some(Ok(Message::Text(_)))), "{ack:?}");
    }
}

async fn next_line<R: AsyncRead + Unpin>(lines: &mut Lines<BufReader<R>>) -> String {
    tokio::time::timeout(DEADLINE, lines.next_line())
        .await
        .expect("a line within the deadline")
        .unwrap()
        .expect("the stream is still open")
}

/// Stderr lines up to the first that contains `want`.
async fn stderr_until<R: AsyncRead + Unpin>(
    lines: &mut Lines<BufReader<R>>,
    want: &str,
) -> Vec<String> {
    let mut seen = Vec::new();
    loop {
        let line = next_line(lines).await;
        let done = line.contains(want);
        seen.push(line);
        if done {
            return seen;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_reconnects_after_cloud_restart() {
    let mut cloud = FixedPortCloud::start().await;
    let admin = cloud.token("admin", Role::Admin).await;
    let device_token = cloud.add_device(&admin, "ems_001").await;
    let viewer = cloud.token("watcher", Role::Viewer).await;
    let home = tempfile::tempdir().unwrap();
    let ts = seconds_ending(3, 5);

    let mut cmd = emsctl(home.path());
    cmd.args(["--url", &cloud.url(), "--token", &viewer, "watch"]);
    let mut child = cmd.spawn_guarded().unwrap();
    let mut err = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut out = BufReader::new(child.stdout.take().unwrap()).lines();
    stderr_until(&mut err, "watching ems_001").await;
    cloud
        .send_packet("ems_001", &device_token, ts[0], 61.0)
        .await;
    let line = next_line(&mut out).await;
    assert!(line.starts_with(&ts[0].to_string()), "{line}");

    // The cloud goes away: watch says so and keeps trying.
    cloud.stop().await;
    let said = stderr_until(&mut err, "reconnect attempt 2").await;
    assert!(said[0].starts_with("live feed lost ("), "{said:?}");
    assert!(said[0].contains("reconnect attempt 1 in 1."), "{said:?}");
    assert!(said[1].contains("reconnect attempt 2 in 2."), "{said:?}");

    // Back on the same port: watch reconnects and prints what comes next.
    cloud.restart().await;
    let said = stderr_until(&mut err, "reconnected").await;
    assert!(
        said.last().unwrap().contains("watching ems_001 again"),
        "{said:?}"
    );
    cloud
        .send_packet("ems_001", &device_token, ts[1], 62.0)
        .await;
    let line = next_line(&mut out).await;
    assert!(line.starts_with(&ts[1].to_string()), "{line}");
    assert!(line.contains("soc 62 %"), "{line}");

    // A revoked token closes the feed, and the reconnect is refused: exit 3, no retrying.
    let resp = reqwest::Client::new()
        .delete(format!("{}/api/v1/tokens/watcher", cloud.url()))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "{}", resp.status());
    let said = stderr_until(&mut err, "error:").await;
    assert!(
        said.iter().any(|l| l.contains("giving up after attempt 1")),
        "{said:?}"
    );
    assert!(
        said.last().unwrap().contains("authentication failed"),
        "{said:?}"
    );
    let status = tokio::time::timeout(DEADLINE, child.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status.code(), Some(3));
    cloud.stop().await;
}
