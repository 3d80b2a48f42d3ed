//! What `ems-cloud serve` (the real binary) does with the database it is given at start:
//! - a server with TimescaleDB installed but not preloaded (the state right after installing the
//!   package): it starts on plain tables and says why in one log line, and health reports it;
//! - a database whose telemetry is a hypertable, on a server that no longer preloads
//!   TimescaleDB: exit 1 with that reason, no panic;
//! - an unreachable database: it waits `database_wait_s`, then exits 1 naming the address and
//!   never the password.

use crate::common;

on_both_backends!(a_role_that_is_not_superuser_starts_and_stores);

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{Backend, TestServer, fresh_database_on, packet, recent_seconds};
use ems_protocol::api::Health;
use ems_testkit::pg::PgServer;

/// The ems-cloud binary, killed when the test ends (also when it fails).
struct Cloud {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
    port: u16,
}

impl Cloud {
    fn spawn(db_url: &str, extra_env: &[(&str, &str)]) -> Cloud {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_ems-cloud"));
        cmd.arg("serve")
            .env("EMS_CLOUD_CONFIG", "/nonexistent/cloud.toml")
            .env("EMS_CLOUD_DATABASE_URL", db_url)
            .env("ROCKET_ADDRESS", "127.0.0.1")
            .env("ROCKET_PORT", port.to_string())
            .env("ROCKET_CLI_COLORS", "false")
            .env("NO_COLOR", "1")
            .env("RUST_LOG", "info,rocket=warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in extra_env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("ems-cloud starts (built by cargo test)");
        let stderr = child.stderr.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Cloud {
            child,
            lines,
            seen: Vec::new(),
            port,
        }
    }

    /// Collects stderr until a line contains `needle`; panics with everything seen otherwise.
    fn wait_for_line(&mut self, needle: &str, within: Duration) -> String {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(_) => panic!(
                    "no stderr line with {needle:?} within {within:?}; seen:\n{}",
                    self.seen.join("\n")
                ),
            }
        }
    }

    /// Waits for the process to exit; returns its code and all of stderr.
    fn wait_exit(&mut self, within: Duration) -> (Option<i32>, String) {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                while let Ok(line) = self.lines.recv_timeout(Duration::from_millis(200)) {
                    self.seen.push(line);
                }
                return (status.code(), self.seen.join("\n"));
            }
            while let Ok(line) = self.lines.try_recv() {
                self.seen.push(line);
            }
            assert!(
                Instant::now() < deadline,
                "ems-cloud still running after {within:?}; stderr:\n{}",
                self.seen.join("\n")
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Cloud {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// TimescaleDB must be installed for these scenarios to mean anything (else skipped, or a
/// failure under CI=true).
fn timescaledb_installed() -> bool {
    match Backend::TimescaleDb.available() {
        Ok(()) => true,
        Err(why) => {
            eprintln!("SKIPPED: {why}");
            false
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn installed_but_not_preloaded_starts_on_plain_tables_and_says_why() {
    if !timescaledb_installed() {
        return;
    }
    let server = ems_testkit::pg::shared_on(Backend::Plain);
    let url = server.create_database().await.unwrap();
    let mut cloud = Cloud::spawn(&url, &[]);
    let line = cloud.wait_for_line("storage:", Duration::from_secs(60));
    assert!(
        line.contains("plain PostgreSQL tables")
            && line.contains("installed but not preloaded")
            && line.contains("shared_preload_libraries"),
        "{line}"
    );

    // It serves, and health says the same.
    let health_url = format!("http://127.0.0.1:{}/api/v1/health", cloud.port);
    let deadline = Instant::now() + Duration::from_secs(30);
    let health: Health = loop {
        if let Ok(resp) = reqwest::get(&health_url).await {
            break resp.json().await.unwrap();
        }
        assert!(Instant::now() < deadline, "health never answered");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(health.status, "ok");
    assert!(!health.timescale);
    assert_eq!(health.storage, line[line.find("plain").unwrap()..].trim());
    assert!(
        cloud.seen.iter().filter(|l| l.contains("storage:")).count() == 1,
        "one storage line: {:?}",
        cloud.seen
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hypertable_on_a_server_that_stopped_preloading_is_a_clear_start_error() {
    if !timescaledb_installed() {
        return;
    }
    let mut pg = PgServer::start_with(Backend::TimescaleDb).unwrap();
    let url = pg.create_database().await.unwrap();
    // A first start on TimescaleDB makes telemetry a hypertable.
    let first = TestServer::on(&url).await;
    let health: Health = first.get_json("/health").await;
    assert!(health.timescale, "{health:?}");
    first.stop().await;

    pg.restart_as(Backend::Plain).unwrap();
    let mut cloud = Cloud::spawn(&url, &[]);
    let (code, stderr) = cloud.wait_exit(Duration::from_secs(60));
    assert_eq!(code, Some(1), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let last = stderr.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("ems-cloud: this database uses TimescaleDB")
            && last.contains("shared_preload_libraries"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_database_is_waited_for_then_named_in_the_exit_error() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("postgres://ems:s3cretpw@127.0.0.1:{closed}/emsdb");
    let started = Instant::now();
    let mut cloud = Cloud::spawn(&url, &[("EMS_CLOUD_DATABASE_WAIT_S", "2")]);
    let (code, stderr) = cloud.wait_exit(Duration::from_secs(60));
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "gave up before database_wait_s"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(!stderr.contains("s3cretpw"), "password leaked: {stderr}");
    assert!(stderr.contains("waiting up to 2 s"), "{stderr}");
    let last = stderr.lines().last().unwrap_or_default();
    assert!(
        last.starts_with(&format!(
            "ems-cloud: connecting to the database at ems@127.0.0.1:{closed}/emsdb failed"
        )) && last.contains("refused"),
        "{stderr}"
    );
}

/// A production database user is rarely a superuser: it may not read
/// `shared_preload_libraries` (nor create TimescaleDB). The cloud still decides, starts and
/// stores, and says which storage it took.
async fn a_role_that_is_not_superuser_starts_and_stores(backend: Backend) {
    let Some(url) = fresh_database_on(backend).await else {
        return;
    };
    let role = match backend {
        Backend::TimescaleDb => "ems_app_ts",
        Backend::Plain => "ems_app_plain",
    };
    let admin = ems_cloud::db::connect(&url).await.unwrap();
    let database = url.rsplit('/').next().unwrap().split('?').next().unwrap();
    admin
        .batch_execute(&format!(
            "CREATE ROLE {role} LOGIN; ALTER DATABASE {database} OWNER TO {role};"
        ))
        .await
        .unwrap();
    let app_url = url.replacen("postgres@", &format!("{role}@"), 1);
    let server = TestServer::on(&app_url).await;
    let health: Health = server.get_json("/health").await;
    assert!(health.database, "{health:?}");
    if !health.timescale {
        assert!(
            health.storage.starts_with("plain PostgreSQL tables: "),
            "{}",
            health.storage
        );
    }
    if backend == Backend::Plain {
        assert!(!health.timescale);
        assert!(
            health.storage.contains("installed but not preloaded"),
            "{}",
            health.storage
        );
    }
    let token = server.add_device("not_super").await;
    let mut device = server.device("not_super", &token).await;
    let stamps = recent_seconds(3);
    for t in &stamps {
        device.send(&packet("not_super", *t, 50.0)).await;
    }
    device.await_acks(&stamps).await;
    server.stop().await;
}
