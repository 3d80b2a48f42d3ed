//! A real ems-cloud (in-process, on a fixed port so it can be restarted at the same address)
//! on a database of the test's own PostgreSQL server.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use ems_cloud::config::CloudConfig;
use ems_cloud::db::Db;
use ems_cloud::server::Running;
use ems_protocol::api::Role;
use rocket::figment::Figment;

pub struct Cloud {
    pub running: Option<Running>,
    pub db_url: String,
    pub port: u16,
    pub admin: String,
    pub http: reqwest::Client,
    /// (certificate, key) PEM paths when the server speaks HTTPS/WSS.
    tls: Option<(String, String)>,
}

fn figment(db_url: &str, port: u16, tls: Option<&(String, String)>) -> Figment {
    let fig = rocket::Config::figment();
    let fig = match tls {
        Some((cert, key)) => fig
            .merge(("tls.certs", cert.as_str()))
            .merge(("tls.key", key.as_str())),
        None => fig,
    };
    fig.merge(("address", "127.0.0.1"))
        .merge(("port", port))
        .merge(("log_level", "off"))
        .merge(("cli_colors", false))
        .merge(("shutdown.ctrlc", false))
        .merge(("shutdown.grace", 0))
        .merge(("shutdown.mercy", 0))
        .merge(("database_url", db_url))
        .merge(("database_pool_size", 4))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Cloud {
    pub async fn start(db_url: &str) -> Cloud {
        Cloud::start_with(db_url, None, reqwest::Client::new()).await
    }

    /// A server speaking HTTPS/WSS with the certificate and key in these PEM files; `http` must
    /// trust the certificate.
    pub async fn start_tls(db_url: &str, cert: &Path, key: &Path, http: reqwest::Client) -> Cloud {
        let tls = (cert.display().to_string(), key.display().to_string());
        Cloud::start_with(db_url, Some(tls), http).await
    }

    async fn start_with(
        db_url: &str,
        tls: Option<(String, String)>,
        http: reqwest::Client,
    ) -> Cloud {
        let port = free_port();
        let running = ems_cloud::start(figment(db_url, port, tls.as_ref()))
            .await
            .expect("ems-cloud starts");
        let db = Db::open(&CloudConfig {
            database_url: db_url.to_string(),
            database_pool_size: 1,
            ..CloudConfig::default()
        })
        .await
        .expect("db");
        let admin = ems_cloud::auth::create_api_token(&db, "e2e-admin", Role::Admin, None)
            .await
            .expect("admin token");
        Cloud {
            running: Some(running),
            db_url: db_url.to_string(),
            port,
            admin,
            http,
            tls,
        }
    }

    pub fn ws_base(&self) -> String {
        let scheme = if self.tls.is_some() { "wss" } else { "ws" };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    fn api(&self, path: &str) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}/api/v1{path}", self.port)
    }

    pub async fn stop(&mut self) {
        if let Some(r) = self.running.take() {
            r.stop().await;
        }
    }

    /// Starts again on the same port.
    pub async fn restart(&mut self) {
        self.stop().await;
        let mut last = None;
        for _ in 0..50 {
            match ems_cloud::start(figment(&self.db_url, self.port, self.tls.as_ref())).await {
                Ok(r) => {
                    self.running = Some(r);
                    return;
                }
                Err(e) => last = Some(e.to_string()),
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        panic!("ems-cloud did not restart on port {}: {last:?}", self.port);
    }

    /// A server speaking HTTPS/WSS with a fresh self-signed certificate for 127.0.0.1, its PEM
    /// files kept in `dir`; the agent trusts it through the `ca_file` of [`Cloud::uplink_section`].
    pub async fn start_self_signed(db_url: &str, dir: &Path) -> Cloud {
        let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
        let (cert_path, key_path) = (dir.join("cert.pem"), dir.join("key.pem"));
        std::fs::write(&cert_path, cert.cert.pem()).unwrap();
        std::fs::write(&key_path, cert.key_pair.serialize_pem()).unwrap();
        let http = reqwest::Client::builder()
            .add_root_certificate(
                reqwest::Certificate::from_pem(cert.cert.pem().as_bytes()).unwrap(),
            )
            .build()
            .unwrap();
        Cloud::start_tls(db_url, &cert_path, &key_path, http).await
    }

    /// Registers `device_id`, writes its token to `dir/device.token` (mode 600) and returns the
    /// agent's `[uplink]` section for this server (with `ca_file` when it speaks TLS), followed by
    /// the `extra` lines.
    pub async fn uplink_section(&self, device_id: &str, dir: &Path, extra: &str) -> String {
        let token_file = dir.join("device.token");
        self.add_device(device_id, &token_file).await;
        let ca = match &self.tls {
            Some((cert, _)) => format!("ca_file = \"{cert}\"\n"),
            None => String::new(),
        };
        format!(
            "[uplink]\nurl = \"{}\"\ntoken_file = \"{}\"\n{ca}{extra}\n",
            self.ws_base(),
            token_file.display()
        )
    }

    /// Registers a device and writes its token to `token_file` with mode 600.
    pub async fn add_device(&self, id: &str, token_file: &Path) {
        let resp = self
            .http
            .post(self.api("/devices"))
            .bearer_auth(&self.admin)
            .json(&serde_json::json!({ "id": id, "name": "e2e site" }))
            .send()
            .await
            .unwrap();
        assert!(resp.status().is_success(), "{}", resp.text().await.unwrap());
        let body: serde_json::Value = resp.json().await.unwrap();
        std::fs::write(token_file, body["token"].as_str().unwrap()).unwrap();
        std::fs::set_permissions(token_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    }

    /// POSTs a command and waits up to `wait` s for the device's answer.
    pub async fn command(
        &self,
        device: &str,
        body: serde_json::Value,
        wait: u32,
    ) -> (u16, serde_json::Value) {
        let resp = self
            .http
            .post(self.api(&format!("/devices/{device}/commands?wait={wait}")))
            .bearer_auth(&self.admin)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(serde_json::Value::Null))
    }
}

/// The seconds (unix) stored for `device`, in order.
pub async fn stored_seconds(db_url: &str, device: &str) -> Vec<i64> {
    let client = ems_cloud::db::connect(db_url).await.unwrap();
    client
        .query(
            "SELECT extract(epoch FROM time)::bigint FROM telemetry WHERE device_id = $1 ORDER BY time",
            &[&device],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// Duplicate check independent of the unique index: rows vs distinct seconds.
pub async fn rows_and_distinct(db_url: &str, device: &str) -> (i64, i64) {
    let client = ems_cloud::db::connect(db_url).await.unwrap();
    let row = client
        .query_one(
            "SELECT count(*), count(DISTINCT time) FROM telemetry WHERE device_id = $1",
            &[&device],
        )
        .await
        .unwrap();
    (row.get(0), row.get(1))
}
