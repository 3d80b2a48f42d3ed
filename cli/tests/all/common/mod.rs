//! Shared test helpers: an ems-cloud server on a fresh PostgreSQL database, the real `emsctl`
//! binary run as a subprocess with a clean environment (killed with the test), and a scripted
//! device that speaks the spec over a real WebSocket and answers commands.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use ems_cloud::config::CloudConfig;
use ems_cloud::db::Db;
use ems_cloud::server::Running;
use ems_protocol::api::{DeviceCreated, NewDevice, NewToken, Role, TokenCreated};
use ems_protocol::telemetry::Timestamp;
use ems_protocol::{AnswerStatus, Command, CommandAnswer, Downstream, Telemetry, parse_downstream};
use ems_testkit::process::{AsyncChildGuard, SpawnGuarded};
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// Longest any awaited condition may take before the test fails.
pub const DEADLINE: Duration = Duration::from_secs(20);

/// A running cloud with an admin token, plus a throwaway HOME for emsctl.
pub struct Cloud {
    pub running: Running,
    pub admin: String,
    pub http: reqwest::Client,
    pub home: tempfile::TempDir,
}

impl Cloud {
    pub async fn start() -> Cloud {
        Cloud::start_with(|f| f, reqwest::Client::new()).await
    }

    /// `adjust` can add keys to the server's figment (TLS); `http` is the helpers' client.
    pub async fn start_with(
        adjust: impl FnOnce(figment::Figment) -> figment::Figment,
        http: reqwest::Client,
    ) -> Cloud {
        let url = ems_testkit::pg::fresh_database().await;
        let figment = ems_cloud::figment()
            .merge(("address", "127.0.0.1"))
            .merge(("port", 0))
            .merge(("log_level", "off"))
            .merge(("cli_colors", false))
            .merge(("shutdown.ctrlc", false))
            .merge(("shutdown.grace", 0))
            .merge(("shutdown.mercy", 0))
            .merge(("database_url", url.as_str()))
            .merge(("database_pool_size", 8))
            .merge(("command_sweep_interval_ms", 100));
        let running = ems_cloud::start(adjust(figment))
            .await
            .expect("server starts");
        let config = CloudConfig {
            database_url: url.clone(),
            database_pool_size: 2,
            ..CloudConfig::default()
        };
        let db = Db::open(&config).await.expect("test db opens");
        let admin = ems_cloud::auth::create_api_token(&db, "admin", Role::Admin, None)
            .await
            .expect("admin token");
        Cloud {
            running,
            admin,
            http,
            home: tempfile::tempdir().unwrap(),
        }
    }

    pub fn url(&self) -> String {
        self.running.http_url()
    }

    pub fn api(&self, path: &str) -> String {
        format!("{}/api/v1{path}", self.url())
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
            })
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 201, "{}", resp.text().await.unwrap());
        resp.json::<DeviceCreated>().await.unwrap().token
    }

    /// Creates an API token with `role`.
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

    pub async fn device(&self, id: &str, token: &str) -> Device {
        let url = format!("{}/ws/device/{id}", self.running.ws_url());
        Device::connect(&url, token).await
    }

    /// `emsctl --url <this server> --token <admin> <args>`.
    pub fn ctl(&self, args: &[&str]) -> tokio::process::Command {
        let mut cmd = emsctl(self.home.path());
        cmd.args(["--url", &self.url(), "--token", &self.admin]);
        cmd.args(args);
        cmd
    }

    /// Runs [`ctl`](Self::ctl) to completion.
    pub async fn run(&self, args: &[&str]) -> Run {
        run(self.ctl(args)).await
    }

    pub async fn stop(self) {
        self.running.stop().await;
    }
}

/// The real binary with an environment that cannot leak the developer's settings: no `EMS_…`
/// variables, HOME a fresh directory.
pub fn emsctl(home: &Path) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_emsctl"));
    for var in [
        "EMS_URL",
        "EMS_TOKEN",
        "EMS_DEVICE",
        "EMS_CA_FILE",
        "EMSCTL_CONFIG",
        "XDG_CONFIG_HOME",
    ] {
        cmd.env_remove(var);
    }
    cmd.env("HOME", home)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    cmd
}

/// What a finished emsctl run left.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// Asserts the exit code, showing both streams when it differs.
    pub fn expect(self, code: i32) -> Run {
        assert_eq!(
            self.code, code,
            "exit code\nstdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        self
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{}", self.stdout))
    }

    /// CSV rows as header → value maps.
    pub fn csv(&self) -> Vec<std::collections::BTreeMap<String, String>> {
        let mut reader = csv::Reader::from_reader(self.stdout.as_bytes());
        let headers = reader.headers().unwrap().clone();
        reader
            .records()
            .map(|r| {
                let r = r.unwrap();
                headers
                    .iter()
                    .map(str::to_string)
                    .zip(r.iter().map(str::to_string))
                    .collect()
            })
            .collect()
    }
}

pub async fn run(cmd: tokio::process::Command) -> Run {
    let child = cmd.spawn_guarded().expect("emsctl starts");
    finish(child).await
}

/// Waits for a spawned emsctl to end (within [`DEADLINE`]).
pub async fn finish(child: AsyncChildGuard) -> Run {
    let out = tokio::time::timeout(DEADLINE, child.wait_with_output())
        .await
        .expect("emsctl ends within the deadline")
        .expect("emsctl output");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
    }
}

/// A config file under the run's HOME at the default path, with `body`.
pub fn write_default_config(home: &Path, body: &str) -> PathBuf {
    let dir = home.join(".config").join("emsctl");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("config.toml");
    std::fs::write(&path, body).unwrap();
    path
}

/// A spec packet: charging 558.6 W, exporting 200 W; `soc` varies so packets differ.
pub fn packet(device_id: &str, ts: Timestamp, soc: f64) -> Telemetry {
    Telemetry::example(device_id, ts, soc)
}

/// `n` consecutive seconds ending `before_s` seconds ago.
pub fn seconds_ending(n: i64, before_s: i64) -> Vec<Timestamp> {
    let start = Timestamp::now().unix() - before_s - n;
    (0..n)
        .map(|i| Timestamp::from_unix(start + i).unwrap())
        .collect()
}

/// A scripted device over a real WebSocket.
pub struct Device {
    pub ws: WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>>,
}

impl Device {
    pub async fn connect(url: &str, token: &str) -> Device {
        let mut req = url.into_client_request().unwrap();
        req.headers_mut().insert(
            "Authorization",
            HeaderValue::from_str(&format!("Bearer {token}")).unwrap(),
        );
        let (ws, _) = tokio_tungstenite::connect_async(req)
            .await
            .expect("device connects");
        Device { ws }
    }

    pub async fn send(&mut self, t: &Telemetry) {
        self.ws.send(Message::Text(t.to_json())).await.unwrap();
    }

    /// The next frame from the cloud within [`DEADLINE`].
    async fn next(&mut self) -> Downstream {
        tokio::time::timeout(DEADLINE, async {
            loop {
                match self.ws.next().await {
                    Some(Ok(Message::Text(t))) => return parse_downstream(&t).unwrap(),
                    Some(Ok(_)) => continue,
                    other => panic!("device socket ended: {other:?}"),
                }
            }
        })
        .await
        .expect("a frame from the cloud within the deadline")
    }

    /// Sends `packets` and waits until all are acknowledged (stored).
    pub async fn send_stored(&mut self, packets: &[Telemetry]) {
        for p in packets {
            self.send(p).await;
        }
        let mut missing: std::collections::HashSet<Timestamp> =
            packets.iter().map(|p| p.timestamp).collect();
        while !missing.is_empty() {
            if let Downstream::TelemetryAck(ack) = self.next().await {
                for t in ack.timestamps {
                    missing.remove(&t);
                }
            }
        }
    }

    /// The next command (acks in between are skipped).
    pub async fn next_command(&mut self) -> Command {
        loop {
            if let Downstream::Command(c) = self.next().await {
                return c;
            }
        }
    }

    pub async fn answer(&mut self, command_id: &str, status: AnswerStatus, reason: Option<&str>) {
        let answer = CommandAnswer {
            command_id: command_id.into(),
            status,
            reason: reason.map(Into::into),
        };
        let text = serde_json::to_string(&answer).unwrap();
        self.ws.send(Message::Text(text)).await.unwrap();
    }
}
