//! Shared test helpers: a server on a fresh database, REST calls, and a scripted device that
//! speaks the spec over a real WebSocket.
#![allow(dead_code)]

use std::time::Duration;

use ems_cloud::config::CloudConfig;
use ems_cloud::db::Db;
use ems_cloud::server::Running;
use ems_protocol::api::{DeviceCreated, NewDevice, NewToken, Role, TokenCreated};
use ems_protocol::telemetry::Timestamp;
use ems_protocol::{Downstream, Telemetry, parse_downstream};
use futures_util::{SinkExt, StreamExt};
use rocket::figment::Figment;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub use ems_testkit::pg::Backend;

pub const DEADLINE: Duration = Duration::from_secs(15);

/// Runs the scenario `async fn $scenario(backend: Backend)` as two tests,
/// `$scenario::timescaledb` and `$scenario::plain_postgresql`: the same assertions on both kinds
/// of storage ems-cloud supports.
#[macro_export]
macro_rules! on_both_backends {
    ($($scenario:ident),+ $(,)?) => {$(
        mod $scenario {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn timescaledb() {
                super::$scenario($crate::common::Backend::TimescaleDb).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn plain_postgresql() {
                super::$scenario($crate::common::Backend::Plain).await;
            }
        }
    )+};
}

/// The server's figment for tests: free port on 127.0.0.1, quiet, fast sweeper.
pub fn figment(db_url: &str) -> Figment {
    rocket::Config::figment()
        .merge(("address", "127.0.0.1"))
        .merge(("port", 0))
        .merge(("log_level", "off"))
        .merge(("cli_colors", false))
        .merge(("shutdown.ctrlc", false))
        .merge(("shutdown.grace", 0))
        .merge(("shutdown.mercy", 0))
        .merge(("database_url", db_url))
        .merge(("database_pool_size", 8))
        .merge(("command_sweep_interval_ms", 100))
}

pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_test_writer()
        .try_init();
}

/// A running server plus an admin token and an HTTP client.
pub struct TestServer {
    pub running: Running,
    pub db_url: String,
    pub admin: String,
    pub http: reqwest::Client,
}

impl TestServer {
    /// A server on a new empty database.
    pub async fn fresh() -> TestServer {
        let url = ems_testkit::pg::fresh_database().await;
        TestServer::on(&url).await
    }

    /// A server on a new empty database of kind `backend`. `None` when that kind cannot run on
    /// this machine (TimescaleDB not installed; under `CI=true` that panics instead): the
    /// reason is printed as a skip.
    pub async fn fresh_on(backend: Backend) -> Option<TestServer> {
        let url = fresh_database_on(backend).await?;
        Some(TestServer::on(&url).await)
    }

    /// A server on `db_url` (creates an admin token named `admin-<port>`).
    pub async fn on(db_url: &str) -> TestServer {
        TestServer::with(figment(db_url), db_url, reqwest::Client::new()).await
    }

    pub async fn with(figment: Figment, db_url: &str, http: reqwest::Client) -> TestServer {
        init_tracing();
        let running = ems_cloud::start(figment).await.expect("server starts");
        let db = test_db(db_url).await;
        let admin = ems_cloud::auth::create_api_token(
            &db,
            &format!("admin-{}", running.addr.port()),
            Role::Admin,
            None,
        )
        .await
        .expect("admin token");
        TestServer {
            running,
            db_url: db_url.to_string(),
            admin,
            http,
        }
    }

    pub fn api(&self, path: &str) -> String {
        format!("{}/api/v1{path}", self.running.http_url())
    }

    pub fn ws(&self, path: &str) -> String {
        format!("{}{path}", self.running.ws_url())
    }

    pub async fn add_device(&self, id: &str) -> String {
        let resp = self
            .http
            .post(self.api("/devices"))
            .bearer_auth(&self.admin)
            .json(&NewDevice {
                id: id.into(),
                name: None,
            })
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 201, "{}", resp.text().await.unwrap());
        resp.json::<DeviceCreated>().await.unwrap().token
    }

    pub async fn token(&self, name: &str, role: Role) -> String {
        let resp = self
            .http
            .post(self.api("/tokens"))
            .bearer_auth(&self.admin)
            .json(&NewToken {
                name: name.into(),
                role,
                expires_at: None,
                devices: None,
            })
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 201, "{}", resp.text().await.unwrap());
        resp.json::<TokenCreated>().await.unwrap().token
    }

    pub async fn get(&self, path: &str, token: &str) -> reqwest::Response {
        self.http
            .get(self.api(path))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
    }

    pub async fn get_json<T: serde::de::DeserializeOwned>(&self, path: &str) -> T {
        let resp = self.get(path, &self.admin).await;
        let status = resp.status();
        let text = resp.text().await.unwrap();
        assert!(status.is_success(), "GET {path}: {status} {text}");
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("GET {path}: {e}: {text}"))
    }

    pub async fn post_json(
        &self,
        path: &str,
        token: &str,
        body: &serde_json::Value,
    ) -> (u16, serde_json::Value) {
        let resp = self
            .http
            .post(self.api(path))
            .bearer_auth(token)
            .json(body)
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(serde_json::Value::Null),
        )
    }

    /// A single-use ticket for the live feed of `device`, asked for with `token`.
    pub async fn live_ticket(&self, device: &str, token: &str) -> reqwest::Response {
        self.http
            .post(self.api(&format!("/devices/{device}/live-ticket")))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
    }

    /// Opens the live feed of `device` as a browser does: a ticket from `token`, then
    /// `?ticket=`.
    pub async fn live_feed(
        &self,
        device: &str,
        token: &str,
    ) -> Result<WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>>, WsError> {
        let resp = self.live_ticket(device, token).await;
        let status = resp.status();
        if status != 201 {
            return Err(WsError::Http(
                tokio_tungstenite::tungstenite::http::Response::builder()
                    .status(status.as_u16())
                    .body(None)
                    .unwrap(),
            ));
        }
        let ticket: ems_protocol::api::LiveTicket = resp.json().await.unwrap();
        let (ws, _) = tokio_tungstenite::connect_async(
            self.ws(&format!("/ws/live/{device}?ticket={}", ticket.ticket)),
        )
        .await?;
        Ok(ws)
    }

    pub async fn device(
        &self,
        id: &str,
        token: &str,
    ) -> Device<MaybeTlsStream<tokio::net::TcpStream>> {
        Device::connect(&self.ws(&format!("/ws/device/{id}")), token)
            .await
            .expect("device connects")
    }
}

/// A new empty database of kind `backend`, or `None` with the skip reason printed (see
/// [`TestServer::fresh_on`]).
pub async fn fresh_database_on(backend: Backend) -> Option<String> {
    if let Err(why) = backend.available() {
        eprintln!("SKIPPED on {}: {why}", backend.name());
        return None;
    }
    Some(ems_testkit::pg::fresh_database_on(backend).await)
}

/// A database handle for checks behind the server's back. It leaves the server's TimescaleDB
/// setup alone (`timescale = off`: opening with default settings would reset the policies a
/// test configured), so its `timescale` field is always false.
pub async fn test_db(url: &str) -> Db {
    let config = CloudConfig {
        database_url: url.to_string(),
        database_pool_size: 2,
        timescale: ems_cloud::config::TimescaleMode::Off,
        ..CloudConfig::default()
    };
    Db::open(&config).await.expect("test db opens")
}

pub async fn count_rows(url: &str, sql: &str) -> i64 {
    let client = ems_cloud::db::connect(url).await.unwrap();
    client.query_one(sql, &[]).await.unwrap().get(0)
}

/// A spec packet with easy values; `soc` varies so packets differ.
pub fn packet(device_id: &str, ts: Timestamp, soc: f64) -> Telemetry {
    Telemetry::example(device_id, ts, soc)
}

/// `n` consecutive seconds ending a minute ago.
pub fn recent_seconds(n: i64) -> Vec<Timestamp> {
    let start = Timestamp::now().unix() - 60 - n;
    (0..n)
        .map(|i| Timestamp::from_unix(start + i).unwrap())
        .collect()
}

/// What a device saw from the cloud.
#[derive(Debug)]
pub enum Seen {
    Frame(Downstream),
    Closed(Option<CloseFrame<'static>>),
}

/// A scripted device over a real WebSocket.
pub struct Device<S> {
    pub ws: WebSocketStream<S>,
}

impl Device<MaybeTlsStream<tokio::net::TcpStream>> {
    pub async fn connect(url: &str, token: &str) -> Result<Self, WsError> {
        let mut req = url.into_client_request()?;
        if !token.is_empty() {
            req.headers_mut().insert(
                "Authorization",
                HeaderValue::from_str(&format!("Bearer {token}")).unwrap(),
            );
        }
        let (ws, _) = tokio_tungstenite::connect_async(req).await?;
        Ok(Device { ws })
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Device<S> {
    pub async fn send(&mut self, t: &Telemetry) {
        self.send_text(t.to_json()).await;
    }

    pub async fn send_text(&mut self, text: String) {
        self.ws.send(Message::Text(text)).await.expect("send");
    }

    /// The next frame or close, within `within`. Pings are answered by tungstenite.
    pub async fn next_within(&mut self, within: Duration) -> Option<Seen> {
        let next = tokio::time::timeout(within, async {
            loop {
                match self.ws.next().await {
                    Some(Ok(Message::Text(t))) => {
                        return Seen::Frame(parse_downstream(&t).expect("valid downstream"));
                    }
                    Some(Ok(Message::Close(frame))) => {
                        return Seen::Closed(frame.map(|f| f.into_owned()));
                    }
                    Some(Ok(_)) => continue,
                    Some(Err(_)) | None => return Seen::Closed(None),
                }
            }
        })
        .await;
        next.ok()
    }

    pub async fn next(&mut self) -> Seen {
        self.next_within(DEADLINE)
            .await
            .expect("a frame from the cloud within the deadline")
    }

    /// Waits until every timestamp in `want` has been acknowledged; panics on anything else
    /// than acks and commands (commands are returned).
    pub async fn await_acks(&mut self, want: &[Timestamp]) -> Vec<ems_protocol::Command> {
        let mut missing: std::collections::HashSet<Timestamp> = want.iter().copied().collect();
        let mut commands = Vec::new();
        let deadline = tokio::time::Instant::now() + DEADLINE;
        while !missing.is_empty() {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next_within(left).await {
                Some(Seen::Frame(Downstream::TelemetryAck(ack))) => {
                    for t in ack.timestamps {
                        missing.remove(&t);
                    }
                }
                Some(Seen::Frame(Downstream::Command(c))) => commands.push(c),
                Some(other) => panic!("expected acks, got {other:?}"),
                None => panic!("{} acks missing after {DEADLINE:?}", missing.len()),
            }
        }
        commands
    }

    /// The next command (acks in between are skipped).
    pub async fn next_command(&mut self) -> ems_protocol::Command {
        loop {
            match self.next().await {
                Seen::Frame(Downstream::Command(c)) => return c,
                Seen::Frame(Downstream::TelemetryAck(_)) => continue,
                other => panic!("expected a command, got {other:?}"),
            }
        }
    }
}
