//! One throwaway PostgreSQL server: initdb into a temp dir, start on a free port (as the
//! `postgres` user when we are root, with the parent-death signal), stop and restart with the
//! same data, and fresh databases on it.

use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use super::install::{chown, find_binaries, postgres_user_if_root, timescaledb_status};
use super::{Backend, PgError, io_err};

/// A PostgreSQL server in a temporary directory, listening on 127.0.0.1.
pub struct PgServer {
    bin: PathBuf,
    pub(super) dir: TempDir,
    port: u16,
    run_as: Option<(u32, u32)>,
    backend: Backend,
    /// More `-c name=value` settings for postgres.
    settings: Vec<String>,
    child: Mutex<Option<Child>>,
}

impl PgServer {
    /// initdb into a new temp dir and start the server on a free port, of the kind
    /// [`Backend::default_for_tests`] names.
    pub fn start() -> Result<PgServer, PgError> {
        PgServer::start_with(Backend::default_for_tests())
    }

    /// initdb into a new temp dir and start a server of kind `backend` on a free port.
    pub fn start_with(backend: Backend) -> Result<PgServer, PgError> {
        PgServer::init(backend)?.launch_on_free_port()
    }

    /// [`PgServer::start_with`] with TLS on (`ssl = on`): the server presents the certificate
    /// and key of these PEM files (copied into its directory, the key readable by it alone).
    /// Connections may still choose plain TCP.
    pub fn start_with_tls(backend: Backend, cert: &Path, key: &Path) -> Result<PgServer, PgError> {
        let mut server = PgServer::init(backend)?;
        let dir = server.dir.path().to_path_buf();
        for (from, name) in [(cert, "server.crt"), (key, "server.key")] {
            let to = dir.join(name);
            std::fs::copy(from, &to).map_err(io_err("copying the TLS files"))?;
            std::fs::set_permissions(&to, std::fs::Permissions::from_mode(0o600))
                .map_err(io_err("chmod of the TLS files"))?;
            if let Some((uid, gid)) = server.run_as {
                chown(&to, uid, gid)?;
            }
            let setting = if name == "server.crt" {
                "ssl_cert_file"
            } else {
                "ssl_key_file"
            };
            server.settings.push(format!("{setting}={}", to.display()));
        }
        server.settings.push("ssl=on".into());
        server.launch_on_free_port()
    }

    /// A hot-standby streaming replica of `primary` (pg_basebackup with `-R`), of the same kind,
    /// started on a free port: read-only, following the primary's writes.
    pub fn start_replica_of(primary: &PgServer) -> Result<PgServer, PgError> {
        let bin = primary.bin.clone();
        let dir = tempfile::Builder::new()
            .prefix("ems-pg-replica-")
            .tempdir()
            .map_err(io_err("creating the temp dir"))?;
        let run_as = primary.run_as;
        if let Some((uid, gid)) = run_as {
            chown(dir.path(), uid, gid)?;
        }
        let mut backup = Command::new(bin.join("pg_basebackup"));
        backup
            .arg("-D")
            .arg(dir.path().join("data"))
            .args([
                "-R",
                "-X",
                "stream",
                "--checkpoint=fast",
                "-h",
                "127.0.0.1",
                "-U",
                "postgres",
            ])
            .arg("-p")
            .arg(primary.port.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some((uid, gid)) = run_as {
            backup.uid(uid).gid(gid);
        }
        let out = backup.output().map_err(io_err("running pg_basebackup"))?;
        if !out.status.success() {
            return Err(PgError::Failed {
                step: "pg_basebackup",
                detail: String::from_utf8_lossy(&out.stderr).into_owned(),
            });
        }
        let replica = PgServer {
            bin,
            dir,
            port: 0,
            run_as,
            backend: primary.backend,
            settings: primary.settings.clone(),
            child: Mutex::new(None),
        };
        replica.launch_on_free_port()
    }

    /// initdb into a new temp dir; not started.
    fn init(backend: Backend) -> Result<PgServer, PgError> {
        if backend == Backend::TimescaleDb {
            timescaledb_status().map_err(|detail| PgError::Failed {
                step: "finding TimescaleDB",
                detail,
            })?;
        }
        let bin = find_binaries()?;
        let dir = tempfile::Builder::new()
            .prefix("ems-pg-")
            .tempdir()
            .map_err(io_err("creating the temp dir"))?;
        let run_as = postgres_user_if_root()?;
        if let Some((uid, gid)) = run_as {
            chown(dir.path(), uid, gid)?;
        }
        let data = dir.path().join("data");
        let mut initdb = Command::new(bin.join("initdb"));
        initdb
            .arg("-D")
            .arg(&data)
            .args(["-U", "postgres", "--auth=trust", "--no-sync", "-E", "UTF8"])
            .args(["--locale=C"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some((uid, gid)) = run_as {
            initdb.uid(uid).gid(gid);
        }
        let out = initdb.output().map_err(io_err("running initdb"))?;
        if !out.status.success() {
            return Err(PgError::Failed {
                step: "initdb",
                detail: String::from_utf8_lossy(&out.stderr).into_owned(),
            });
        }
        Ok(PgServer {
            bin,
            dir,
            port: 0,
            run_as,
            backend,
            settings: Vec::new(),
            child: Mutex::new(None),
        })
    }

    fn launch_on_free_port(mut self) -> Result<PgServer, PgError> {
        let mut last = None;
        for _ in 0..5 {
            self.port = free_port()?;
            match self.launch() {
                Ok(()) => return Ok(self),
                Err(e) => last = Some(e),
            }
        }
        Err(last.expect("at least one attempt"))
    }

    fn launch(&self) -> Result<(), PgError> {
        let data = self.dir.path().join("data");
        let _ = std::fs::remove_file(data.join("postmaster.pid"));
        let log = std::fs::File::create(self.log_path()).map_err(io_err("creating the log"))?;
        if let Some((uid, gid)) = self.run_as {
            chown(&self.log_path(), uid, gid)?;
        }
        let mut cmd = Command::new(self.bin.join("postgres"));
        cmd.arg("-D")
            .arg(&data)
            .arg("-p")
            .arg(self.port.to_string())
            .arg("-k")
            .arg(self.dir.path())
            .args(["-c", "listen_addresses=127.0.0.1"])
            .args(["-c", "fsync=off", "-c", "full_page_writes=off"])
            .args(["-c", "max_connections=300"]);
        if self.backend == Backend::TimescaleDb {
            // One scheduler per database with the extension, and tests make many databases;
            // no telemetry reports from a test server (and no network to send them on).
            cmd.args(["-c", "shared_preload_libraries=timescaledb"])
                .args(["-c", "timescaledb.telemetry_level=off"])
                .args(["-c", "max_worker_processes=64"])
                .args(["-c", "timescaledb.max_background_workers=56"]);
        }
        for setting in &self.settings {
            cmd.args(["-c", setting]);
        }
        cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(log);
        if let Some((uid, gid)) = self.run_as {
            cmd.uid(uid).gid(gid);
        }
        crate::process::set_parent_death_signal(&mut cmd, libc::SIGQUIT);
        let mut child = crate::process::on_keeper(move || cmd.spawn())
            .and_then(|spawned| spawned)
            .map_err(io_err("starting postgres"))?;
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if self.is_ready() {
                *self.child.lock().expect("not poisoned") = Some(child);
                return Ok(());
            }
            if let Ok(Some(status)) = child.try_wait() {
                return Err(PgError::Failed {
                    step: "starting postgres",
                    detail: format!("it exited with {status}; log:\n{}", self.log_tail()),
                });
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                return Err(PgError::Failed {
                    step: "starting postgres",
                    detail: format!("not ready after 60 s; log:\n{}", self.log_tail()),
                });
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The postmaster writes "ready" into line 8 of postmaster.pid once it accepts connections
    /// (the same signal `pg_ctl start -w` waits for).
    fn is_ready(&self) -> bool {
        std::fs::read_to_string(self.dir.path().join("data/postmaster.pid"))
            .ok()
            .and_then(|s| s.lines().nth(7).map(|l| l.trim() == "ready"))
            .unwrap_or(false)
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("postgres.log")
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// The directory of its Unix socket (`host=` in a connection URL).
    pub fn socket_dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The server's log so far (what PostgreSQL wrote to stderr).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Connection URL for `database` as the superuser `postgres`.
    pub fn url(&self, database: &str) -> String {
        format!(
            "postgres://postgres@127.0.0.1:{}/{database}?sslmode=disable",
            self.port
        )
    }

    /// Stops the server at once (fast shutdown: open connections are cut), as an outage would.
    pub fn stop(&self) {
        if let Some(mut child) = self.child.lock().expect("not poisoned").take() {
            // SAFETY: plain kill(2) on our own child's pid.
            unsafe {
                libc::kill(child.id() as libc::pid_t, libc::SIGINT);
            }
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port with the same data, as kind `backend` (e.g. a
    /// TimescaleDB server restarted without preloading it).
    pub fn restart_as(&mut self, backend: Backend) -> Result<(), PgError> {
        self.stop();
        self.backend = backend;
        self.launch()
    }

    /// Starts the stopped server again on the same port with the same data.
    pub fn restart(&self) -> Result<(), PgError> {
        self.stop();
        self.launch()
    }

    /// Creates an empty database with a unique name and returns its URL.
    pub async fn create_database(&self) -> Result<String, PgError> {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "test_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let (client, conn) =
            tokio_postgres::connect(&self.url("postgres"), tokio_postgres::NoTls).await?;
        let driver = tokio::spawn(conn);
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await?;
        drop(client);
        let _ = driver.await;
        Ok(self.url(&name))
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn free_port() -> Result<u16, PgError> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(io_err("finding a free port"))?;
    Ok(listener
        .local_addr()
        .map_err(io_err("finding a free port"))?
        .port())
}
