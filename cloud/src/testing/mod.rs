//! Test support shared by the cloud's, the agent's and emsctl's tests (feature `testing`): an
//! in-process server on a throwaway database with an admin token ([`TestCloud`]: plain or TLS,
//! restartable on the same port), REST helpers, and a scripted device that speaks the spec over a
//! real WebSocket ([`Device`]). Not part of the server; never enabled in a release build.

use std::path::{Path, PathBuf};
use std::time::Duration;

use ems_protocol::api::{DeviceCreated, LiveTicket, NewDevice, NewToken, Role, TokenCreated};
use ems_protocol::telemetry::Timestamp;
pub use ems_testkit::pg::Backend;
use ems_testkit::tls::SelfSigned;
use rocket::figment::Figment;
use tokio_tungstenite::tungstenite::Error as WsError;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::config::{CloudConfig, TimescaleMode};
use crate::db::Db;
use crate::server::Running;

mod device;

pub use device::{Device, Seen};

/// Longest any awaited condition may take before a test fails.
pub const DEADLINE: Duration = Duration::from_secs(20);

/// A plain WebSocket (or WSS) to the server under test.
pub type Socket = WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>>;

/// The server's figment for tests: a free port on 127.0.0.1, quiet, no grace on shutdown, a
/// fast command sweeper.
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

/// Logs to the test's captured output, filtered by `RUST_LOG` (default `warn`).
pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_test_writer()
        .try_init();
}

/// A running server, its database, an admin token and an HTTP client that trusts it.
pub struct TestCloud {
    running: Option<Running>,
    figment: Figment,
    pub db_url: String,
    pub admin: String,
    pub http: reqwest::Client,
    /// The PEM certificate the server presents, when [`TestCloud::self_signed`] made it.
    pub cert_path: Option<PathBuf>,
    /// Serving HTTPS/WSS.
    tls: bool,
}

impl TestCloud {
    /// A server on a new empty database of the test's PostgreSQL server.
    pub async fn fresh() -> TestCloud {
        let url = ems_testkit::pg::fresh_database().await;
        TestCloud::on(&url).await
    }

    /// A server on a new empty database of kind `backend`. `None` when that kind cannot run on
    /// this machine (TimescaleDB not installed; under `CI=true` that panics instead): the
    /// reason is printed as a skip.
    pub async fn fresh_on(backend: Backend) -> Option<TestCloud> {
        let url = fresh_database_on(backend).await?;
        Some(TestCloud::on(&url).await)
    }

    /// A server on `db_url` with the test [`figment`].
    pub async fn on(db_url: &str) -> TestCloud {
        TestCloud::with(figment(db_url), db_url, reqwest::Client::new()).await
    }

    /// A server speaking HTTPS/WSS with a fresh self-signed certificate for 127.0.0.1, its PEM
    /// files written into `dir`; [`TestCloud::http`] trusts it.
    pub async fn self_signed(db_url: &str, dir: &Path) -> TestCloud {
        let cert = SelfSigned::for_localhost(dir).expect("self-signed certificate");
        let http = reqwest::Client::builder()
            .add_root_certificate(
                reqwest::Certificate::from_pem(cert.cert_pem.as_bytes()).expect("PEM"),
            )
            .build()
            .expect("HTTP client");
        let figment = figment(db_url)
            .merge(("tls.certs", cert.cert_path.display().to_string()))
            .merge(("tls.key", cert.key_path.display().to_string()));
        let mut cloud = TestCloud::with(figment, db_url, http).await;
        cloud.cert_path = Some(cert.cert_path);
        cloud
    }

    /// A server started from `figment` (usually [`figment`] with more keys) on `db_url`; creates
    /// an admin token named `admin-<port>`. `http` is the client the helpers use.
    pub async fn with(figment: Figment, db_url: &str, http: reqwest::Client) -> TestCloud {
        init_tracing();
        let running = crate::start(figment.clone()).await.expect("server starts");
        // A restart comes back at the same address.
        let figment = figment.merge(("port", running.addr.port()));
        let db = test_db(db_url).await;
        let admin = crate::auth::create_api_token(
            &db,
            &format!("admin-{}", running.addr.port()),
            Role::Admin,
            None,
        )
        .await
        .expect("admin token");
        let tls = running.tls;
        TestCloud {
            running: Some(running),
            figment,
            db_url: db_url.to_string(),
            admin,
            http,
            cert_path: None,
            tls,
        }
    }

    /// The running server. Panics between [`TestCloud::pause`] and [`TestCloud::restart`].
    pub fn running(&self) -> &Running {
        self.running.as_ref().expect("the test cloud is running")
    }

    /// `http://127.0.0.1:port` (or `https://`); valid while paused too.
    pub fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", self.port())
    }

    /// `ws://127.0.0.1:port` (or `wss://`); valid while paused too.
    pub fn ws_base(&self) -> String {
        let scheme = if self.tls { "wss" } else { "ws" };
        format!("{scheme}://127.0.0.1:{}", self.port())
    }

    /// The port it listens on, and comes back on after [`TestCloud::restart`].
    pub fn port(&self) -> u16 {
        self.figment.extract_inner("port").expect("port")
    }

    pub fn api(&self, path: &str) -> String {
        format!("{}/api/v1{path}", self.url())
    }

    pub fn ws(&self, path: &str) -> String {
        format!("{}{path}", self.ws_base())
    }

    /// Stops the server for good.
    pub async fn stop(mut self) {
        self.pause().await;
    }

    /// Stops the server; [`TestCloud::restart`] brings it back at the same address.
    pub async fn pause(&mut self) {
        if let Some(r) = self.running.take() {
            r.stop().await;
        }
    }

    /// Stops (if running) and starts again on the same port and database.
    pub async fn restart(&mut self) {
        self.pause().await;
        let mut last = None;
        for _ in 0..50 {
            match crate::start(self.figment.clone()).await {
                Ok(r) => {
                    self.running = Some(r);
                    return;
                }
                Err(e) => last = Some(e.to_string()),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("ems-cloud did not restart at {}: {last:?}", self.ws_base());
    }

    /// Registers a device; returns its device token.
    pub async fn add_device(&self, id: &str) -> String {
        let resp = self
            .http
            .post(self.api("/devices"))
            .bearer_auth(&self.admin)
            .json(&NewDevice {
                id: id.into(),
                name: None,
                tags: None,
            })
            .send()
            .await
            .expect("POST /devices");
        assert_eq!(
            resp.status(),
            201,
            "{}",
            resp.text().await.unwrap_or_default()
        );
        resp.json::<DeviceCreated>()
            .await
            .expect("DeviceCreated")
            .token
    }

    /// Registers a device and writes its token to `token_file` with mode 600, as the agent wants.
    pub async fn add_device_token_file(&self, id: &str, token_file: &Path) {
        use std::os::unix::fs::PermissionsExt;
        let token = self.add_device(id).await;
        std::fs::write(token_file, token).expect("token file");
        std::fs::set_permissions(token_file, std::fs::Permissions::from_mode(0o600))
            .expect("token file mode");
    }

    /// Registers `device_id`, writes its token to `dir/device.token` (mode 600) and returns the
    /// agent's `[uplink]` section for this server (with `ca_file` when it speaks TLS), followed by
    /// the `extra` lines.
    pub async fn uplink_section(&self, device_id: &str, dir: &Path, extra: &str) -> String {
        let token_file = dir.join("device.token");
        self.add_device_token_file(device_id, &token_file).await;
        let ca = match &self.cert_path {
            Some(cert) => format!("ca_file = \"{}\"\n", cert.display()),
            None => String::new(),
        };
        format!(
            "[uplink]\nurl = \"{}\"\ntoken_file = \"{}\"\n{ca}{extra}\n",
            self.ws_base(),
            token_file.display()
        )
    }

    /// Creates an API token with `role` (for every device).
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
                tags: None,
            })
            .send()
            .await
            .expect("POST /tokens");
        assert_eq!(
            resp.status(),
            201,
            "{}",
            resp.text().await.unwrap_or_default()
        );
        resp.json::<TokenCreated>()
            .await
            .expect("TokenCreated")
            .token
    }

    pub async fn get(&self, path: &str, token: &str) -> reqwest::Response {
        self.http
            .get(self.api(path))
            .bearer_auth(token)
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e}"))
    }

    /// `GET path` as admin, which must succeed, parsed as `T`.
    pub async fn get_json<T: serde::de::DeserializeOwned>(&self, path: &str) -> T {
        let resp = self.get(path, &self.admin).await;
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        assert!(status.is_success(), "GET {path}: {status} {text}");
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("GET {path}: {e}: {text}"))
    }

    /// `POST path` with a JSON body; the status and the body (`Null` when not JSON).
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
            .unwrap_or_else(|e| panic!("POST {path}: {e}"));
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        (
            status,
            serde_json::from_str(&text).unwrap_or(serde_json::Value::Null),
        )
    }

    /// Issues a command as admin and waits up to `wait` s for the device's answer.
    pub async fn command(
        &self,
        device: &str,
        body: serde_json::Value,
        wait: u32,
    ) -> (u16, serde_json::Value) {
        let path = format!("/devices/{device}/commands?wait={wait}");
        self.post_json(&path, &self.admin.clone(), &body).await
    }

    /// A single-use ticket for the live feed of `device`, asked for with `token`.
    pub async fn live_ticket(&self, device: &str, token: &str) -> reqwest::Response {
        self.http
            .post(self.api(&format!("/devices/{device}/live-ticket")))
            .bearer_auth(token)
            .send()
            .await
            .expect("POST live-ticket")
    }

    /// Opens the live feed of `device` as a browser does: a ticket from `token`, then
    /// `?ticket=`.
    pub async fn live_feed(&self, device: &str, token: &str) -> Result<Socket, WsError> {
        let resp = self.live_ticket(device, token).await;
        let status = resp.status();
        if status != 201 {
            return Err(WsError::Http(
                tokio_tungstenite::tungstenite::http::Response::builder()
                    .status(status.as_u16())
                    .body(None)
                    .expect("response"),
            ));
        }
        let ticket: LiveTicket = resp.json().await.expect("LiveTicket");
        let (ws, _) = tokio_tungstenite::connect_async(
            self.ws(&format!("/ws/live/{device}?ticket={}", ticket.ticket)),
        )
        .await?;
        Ok(ws)
    }

    /// A scripted device connected as `id` with `token` (plain WebSocket only).
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
/// [`TestCloud::fresh_on`]).
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
        timescale: TimescaleMode::Off,
        ..CloudConfig::default()
    };
    Db::open(&config).await.expect("test db opens")
}

/// The seconds (unix) stored for `device`, in order.
pub async fn stored_seconds(db_url: &str, device: &str) -> Vec<i64> {
    let client = crate::db::connect(db_url).await.expect("connect");
    client
        .query(
            "SELECT extract(epoch FROM time)::bigint FROM telemetry WHERE device_id = $1 ORDER BY time",
            &[&device],
        )
        .await
        .expect("stored seconds")
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// Duplicate check independent of the unique index: (rows, distinct seconds) of `device`.
pub async fn rows_and_distinct(db_url: &str, device: &str) -> (i64, i64) {
    let client = crate::db::connect(db_url).await.expect("connect");
    let row = client
        .query_one(
            "SELECT count(*), count(DISTINCT time) FROM telemetry WHERE device_id = $1",
            &[&device],
        )
        .await
        .expect("rows and distinct");
    (row.get(0), row.get(1))
}

/// `n` consecutive seconds ending `before_s` seconds ago.
pub fn seconds_ending(n: i64, before_s: i64) -> Vec<Timestamp> {
    let start = Timestamp::now().unix() - before_s - n;
    (0..n)
        .map(|i| Timestamp::from_unix(start + i).expect("timestamp"))
        .collect()
}
