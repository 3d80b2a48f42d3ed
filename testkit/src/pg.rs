//! Throwaway PostgreSQL servers for tests.
//!
//! [`shared()`] starts one server per test process on first use and stops it when the process
//! exits; [`fresh_database()`] creates an empty database on it for one test. [`PgServer::start()`]
//! gives a test its own server that it may [`stop`](PgServer::stop) and
//! [`restart`](PgServer::restart) (a database outage).
//!
//! Two kinds of server ([`Backend`]): with TimescaleDB preloaded (the production setup; the
//! default whenever the extension is installed) and plain PostgreSQL (the fallback ems-cloud also
//! supports; the extension, when installed, is *not* preloaded, which is the state of a server
//! right after installing TimescaleDB). [`shared_on`]/[`fresh_database_on`] give either kind, so
//! a test can run the same scenario on both. Under `CI=true` a missing TimescaleDB is an error,
//! never a silent fallback.
//!
//! The binaries are looked up in `$EMS_PG_BIN`, then `/usr/lib/postgresql/<newest>/bin`. As root
//! the server runs as the `postgres` user (PostgreSQL refuses root). The server process gets
//! `PR_SET_PDEATHSIG`, so even a test process killed with SIGKILL leaves no server behind; for that
//! to work the server is spawned from one long-lived keeper thread (the signal fires when the
//! *thread* that forked it ends; see [`crate::process`]).

use std::io;
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use tempfile::TempDir;

const INSTALL_HINT: &str = "install PostgreSQL with `apt-get update && apt-get install -y postgresql` \
     (or point EMS_PG_BIN at a directory holding initdb and postgres)";

#[derive(Debug, thiserror::Error)]
pub enum PgError {
    #[error("PostgreSQL server binaries not found ({searched}); {INSTALL_HINT}")]
    NotInstalled { searched: String },
    #[error("{step} failed: {source}")]
    Io {
        step: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("{step} failed: {detail}")]
    Failed { step: &'static str, detail: String },
    #[error("SQL on the test server failed: {0}")]
    Sql(#[from] tokio_postgres::Error),
}

fn io_err(step: &'static str) -> impl FnOnce(io::Error) -> PgError {
    move |source| PgError::Io { step, source }
}

/// Which kind of server a test runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Backend {
    /// TimescaleDB preloaded (`shared_preload_libraries = 'timescaledb'`).
    TimescaleDb,
    /// Plain PostgreSQL: TimescaleDB, even when installed, is not preloaded.
    Plain,
}

impl Backend {
    /// The kind [`shared`] and [`PgServer::start`] use: TimescaleDB when it is installed.
    /// Under `CI=true` TimescaleDB must be installed (panics with the reason otherwise).
    pub fn default_for_tests() -> Backend {
        match timescaledb_status() {
            Ok(()) => Backend::TimescaleDb,
            Err(why) if in_ci() => panic!(
                "CI=true and TimescaleDB is not usable here: {why}; build it with \
                 EMS_TIMESCALEDB_SRC=<timescaledb-x.y.z.tar.gz> ./dev.sh deps"
            ),
            Err(_) => Backend::Plain,
        }
    }

    /// Whether tests can run on this kind here. `Err` says why not; under `CI=true` it panics
    /// instead, so a missing TimescaleDB fails CI rather than skipping tests.
    pub fn available(self) -> Result<(), String> {
        match self {
            Backend::Plain => Ok(()),
            Backend::TimescaleDb => match timescaledb_status() {
                Ok(()) => Ok(()),
                Err(why) if in_ci() => panic!("CI=true and TimescaleDB is not usable here: {why}"),
                Err(why) => Err(why),
            },
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Backend::TimescaleDb => "TimescaleDB",
            Backend::Plain => "plain PostgreSQL",
        }
    }
}

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// `Ok` when the TimescaleDB extension is installed into the PostgreSQL whose binaries the tests
/// use (its loader library and its control file); `Err` says what is missing.
pub fn timescaledb_status() -> Result<(), String> {
    let bin = find_binaries().map_err(|e| e.to_string())?;
    let lib = bin.join("../lib/timescaledb.so");
    if !lib.is_file() {
        return Err(format!("{} not found", lib.display()));
    }
    let version = bin
        .parent()
        .and_then(|p| p.file_name())
        .and_then(|v| v.to_str())
        .unwrap_or_default()
        .to_string();
    let control = PathBuf::from(format!(
        "/usr/share/postgresql/{version}/extension/timescaledb.control"
    ));
    if !control.is_file() {
        return Err(format!("{} not found", control.display()));
    }
    Ok(())
}

/// A PostgreSQL server in a temporary directory, listening on 127.0.0.1.
pub struct PgServer {
    bin: PathBuf,
    dir: TempDir,
    port: u16,
    run_as: Option<(u32, u32)>,
    backend: Backend,
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
        let server = PgServer {
            bin,
            dir,
            port: 0,
            run_as,
            backend,
            child: Mutex::new(None),
        };
        server.launch_on_free_port()
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

static SHARED_TIMESCALE: OnceLock<Result<PgServer, String>> = OnceLock::new();
static SHARED_PLAIN: OnceLock<Result<PgServer, String>> = OnceLock::new();

fn shared_slot(backend: Backend) -> &'static OnceLock<Result<PgServer, String>> {
    match backend {
        Backend::TimescaleDb => &SHARED_TIMESCALE,
        Backend::Plain => &SHARED_PLAIN,
    }
}

/// The process-wide test server of the default kind ([`Backend::default_for_tests`]).
pub fn shared() -> &'static PgServer {
    shared_on(Backend::default_for_tests())
}

/// The process-wide test server of kind `backend`, started on first use and stopped at process
/// exit.
///
/// Panics with instructions when PostgreSQL cannot be started: a test that needs it must fail
/// loudly, never pass by skipping.
pub fn shared_on(backend: Backend) -> &'static PgServer {
    let result = shared_slot(backend).get_or_init(|| {
        let server = PgServer::start_with(backend).map_err(|e| e.to_string())?;
        // SAFETY: registering a plain extern "C" fn; it only touches the OnceLocks above.
        unsafe {
            libc::atexit(stop_shared_at_exit);
        }
        Ok(server)
    });
    match result {
        Ok(server) => server,
        Err(e) => panic!(
            "cannot start the test PostgreSQL server ({}): {e}",
            backend.name()
        ),
    }
}

extern "C" fn stop_shared_at_exit() {
    for slot in [&SHARED_TIMESCALE, &SHARED_PLAIN] {
        if let Some(Ok(server)) = slot.get() {
            server.stop();
            let _ = std::fs::remove_dir_all(server.dir.path());
        }
    }
}

/// A new empty database on the [`shared`] server; returns its URL.
pub async fn fresh_database() -> String {
    fresh_database_on(Backend::default_for_tests()).await
}

/// A new empty database on the shared server of kind `backend`; returns its URL.
pub async fn fresh_database_on(backend: Backend) -> String {
    let server = shared_on(backend);
    match server.create_database().await {
        Ok(url) => url,
        Err(e) => panic!("cannot create a test database: {e}"),
    }
}

fn find_binaries() -> Result<PathBuf, PgError> {
    let has_both = |p: &Path| p.join("initdb").is_file() && p.join("postgres").is_file();
    if let Some(dir) = std::env::var_os("EMS_PG_BIN") {
        let dir = PathBuf::from(dir);
        if has_both(&dir) {
            return Ok(dir);
        }
        return Err(PgError::NotInstalled {
            searched: format!("EMS_PG_BIN={}", dir.display()),
        });
    }
    let root = Path::new("/usr/lib/postgresql");
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir(root)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            has_both(&bin).then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions
        .pop()
        .map(|(_, bin)| bin)
        .ok_or_else(|| PgError::NotInstalled {
            searched: "/usr/lib/postgresql/*/bin".into(),
        })
}

fn postgres_user_if_root() -> Result<Option<(u32, u32)>, PgError> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Ok(None);
    }
    let name = c"postgres";
    // SAFETY: getpwnam returns a pointer into static storage or null; we copy the ids out at once.
    let pw = unsafe { libc::getpwnam(name.as_ptr()) };
    if pw.is_null() {
        return Err(PgError::Failed {
            step: "finding the postgres user",
            detail: format!(
                "running as root, and PostgreSQL refuses root, but there is no `postgres` user; {INSTALL_HINT}"
            ),
        });
    }
    // SAFETY: pw is non-null and points to a valid passwd record.
    let (uid, gid) = unsafe { ((*pw).pw_uid, (*pw).pw_gid) };
    Ok(Some((uid, gid)))
}

fn chown(path: &Path, uid: u32, gid: u32) -> Result<(), PgError> {
    std::os::unix::fs::chown(path, Some(uid), Some(gid)).map_err(io_err("chown for postgres"))
}

fn free_port() -> Result<u16, PgError> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(io_err("finding a free port"))?;
    Ok(listener
        .local_addr()
        .map_err(io_err("finding a free port"))?
        .port())
}
