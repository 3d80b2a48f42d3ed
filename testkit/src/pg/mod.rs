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
//!
//! # Layout
//! - this file: [`PgError`], [`Backend`] and the process-wide shared servers.
//! - `server`: [`PgServer`], one server in a temp dir: initdb, start, stop, restart, databases.
//! - `install`: where PostgreSQL and TimescaleDB are installed, and the `postgres` user.

mod install;
mod server;

use std::io;
use std::sync::OnceLock;

use install::INSTALL_HINT;
pub use install::timescaledb_status;
pub use server::PgServer;

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
