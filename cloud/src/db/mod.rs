//! The database: connection pool, migrations at start, and the TimescaleDB-or-plain decision.
//!
//! Migrations are the versioned SQL files in the repository's `migrations/` folder, embedded and
//! applied by refinery. TimescaleDB setup follows in [`timescale`], outside any transaction.

pub mod columns;
pub mod retention;
pub mod timescale;
pub mod tls;

use std::time::Duration;

use deadpool_postgres::{ManagerConfig, Pool, PoolConfig, RecyclingMethod, Runtime, Timeouts};
use rocket::fairing::AdHoc;

use crate::config::CloudConfig;

refinery::embed_migrations!("../migrations");

/// Key of the advisory lock that serialises start-up schema work between instances.
const SCHEMA_LOCK: i64 = 0x656d_735f_636c_6f75; // "ems_clou"

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    // The driver's error is spelled out in the message (with what PostgreSQL said), not chained
    // as a source, so `{:#}` prints it once.
    #[error("connecting to the database at {target} failed: {}", describe(.error))]
    Connect {
        /// `user@host:port/database`, never the password.
        target: String,
        error: tokio_postgres::Error,
    },
    #[error("bad database_url: {0}")]
    Url(String),
    #[error("applying migrations failed: {0}")]
    Migrate(#[from] refinery::Error),
    #[error("{step} failed: {}", describe(.error))]
    Sql {
        step: &'static str,
        error: tokio_postgres::Error,
    },
    #[error(
        "this database uses TimescaleDB {version} (telemetry is a hypertable), but the server does \
         not preload it, so no query on telemetry can run: {hint}",
        hint = timescale::PRELOAD_HINT
    )]
    TimescaleNotPreloaded { version: String },
}

/// A PostgreSQL error as one line with what the server said: message, detail, hint and SQLSTATE
/// (tokio-postgres's own `Display` says only "db error").
pub fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => {
            let mut s = format!("{}: {}", db.severity(), db.message());
            if let Some(detail) = db.detail() {
                s.push_str(&format!("; detail: {detail}"));
            }
            if let Some(hint) = db.hint() {
                s.push_str(&format!("; hint: {hint}"));
            }
            s.push_str(&format!(" (SQLSTATE {})", db.code().code()));
            s
        }
        None => {
            let mut s = e.to_string();
            let mut source = std::error::Error::source(e);
            while let Some(cause) = source {
                s.push_str(&format!(": {cause}"));
                source = cause.source();
            }
            s
        }
    }
}

pub(crate) fn sql(step: &'static str) -> impl FnOnce(tokio_postgres::Error) -> DbError {
    move |error| DbError::Sql { step, error }
}

/// The pool, and what start-up found out about the server.
#[derive(Clone)]
pub struct Db {
    pub pool: Pool,
    /// For history, energy, the latest packet and events: the `read_database_url` replica's
    /// pool, or `pool` itself. A replica trails the primary by its replication lag.
    pub read_pool: Pool,
    /// Telemetry lives in a hypertable with a per-minute continuous aggregate `telemetry_1m`.
    pub timescale: bool,
    /// Which storage path is in use and why, one line (health, start-up log).
    pub storage: String,
    pub url: String,
}

impl Db {
    /// Connects, applies migrations and the TimescaleDB setup, and builds the pool.
    pub async fn open(config: &CloudConfig) -> Result<Db, DbError> {
        let tls = tls::target(&config.database_url)?;
        tracing::info!(
            "database: {} with {}",
            target_of(&config.database_url),
            tls.describe
        );
        let storage = prepare(config).await?;
        tracing::info!("storage: {}", storage.reason);
        let pool = pool(&config.database_url, config.database_pool_size)?;
        let read_pool = match &config.read_database_url {
            None => pool.clone(),
            Some(url) => {
                let tls = tls::target(url)?;
                tracing::info!("history reads: {} with {}", target_of(url), tls.describe);
                self::pool(url, config.database_pool_size)?
            }
        };
        Ok(Db {
            pool,
            read_pool,
            timescale: storage.timescale,
            storage: storage.reason,
            url: config.database_url.clone(),
        })
    }
}

fn pool(url: &str, size: usize) -> Result<Pool, DbError> {
    let target = tls::target(url)?;
    let manager = deadpool_postgres::Manager::from_config(
        target.config,
        target.tls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    let mut pool_cfg = PoolConfig::new(size.max(2));
    // A down database must fail requests (503) rather than hang them.
    pool_cfg.timeouts = Timeouts {
        wait: Some(Duration::from_secs(5)),
        create: Some(Duration::from_secs(5)),
        recycle: Some(Duration::from_secs(5)),
    };
    Pool::builder(manager)
        .config(pool_cfg)
        .runtime(Runtime::Tokio1)
        .build()
        .map_err(|e| DbError::Url(e.to_string()))
}

/// `user@host:port/database` of a connection URL, for messages: never the password.
pub fn target_of(url: &str) -> String {
    let Ok(tls::Target { config, .. }) = tls::target(url) else {
        return "(unparsable database_url)".into();
    };
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .zip(config.get_ports().iter().chain(std::iter::repeat(&5432)))
        .map(|(host, port)| match host {
            tokio_postgres::config::Host::Tcp(h) => format!("{h}:{port}"),
            tokio_postgres::config::Host::Unix(p) => format!("{}:{port}", p.display()),
        })
        .collect();
    format!(
        "{}@{}/{}",
        config.get_user().unwrap_or("(default user)"),
        if hosts.is_empty() {
            "localhost".into()
        } else {
            hosts.join(",")
        },
        config.get_dbname().unwrap_or("(default database)")
    )
}

/// One dedicated connection (not from the pool), driven on its own task; TLS as the URL's
/// `sslmode` says (see [`tls`]).
pub async fn connect(url: &str) -> Result<tokio_postgres::Client, DbError> {
    let (client, conn) = connect_raw(url).await?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!("database connection ended: {e}");
        }
    });
    Ok(client)
}

/// The stream of a connection: TLS or plain as the URL says.
pub type TlsStream =
    <tls::Connector as tokio_postgres::tls::MakeTlsConnect<tokio_postgres::Socket>>::Stream;

/// One dedicated connection and its driver, for callers that poll it themselves (`LISTEN`).
pub async fn connect_raw(
    url: &str,
) -> Result<
    (
        tokio_postgres::Client,
        tokio_postgres::Connection<tokio_postgres::Socket, TlsStream>,
    ),
    DbError,
> {
    let target = tls::target(url)?;
    target
        .config
        .connect(target.tls)
        .await
        .map_err(|error| DbError::Connect {
            target: target_of(url),
            error,
        })
}

/// Migrations and TimescaleDB setup under an advisory lock, so instances starting together do
/// not race. Returns the storage in use. The lock belongs to the session: if the session ends
/// (an error), the lock goes with it.
async fn prepare(config: &CloudConfig) -> Result<timescale::Storage, DbError> {
    let mut client = connect_waiting(config).await?;
    client
        .execute("SELECT pg_advisory_lock($1)", &[&SCHEMA_LOCK])
        .await
        .map_err(sql("taking the schema lock"))?;
    timescale::check_loadable(&client).await?;
    let report = migrations::runner().run_async(&mut client).await?;
    for m in report.applied_migrations() {
        tracing::info!("applied migration {}", m);
    }
    let storage = timescale::setup(&client, config).await?;
    client
        .execute("SELECT pg_advisory_unlock($1)", &[&SCHEMA_LOCK])
        .await
        .map_err(sql("releasing the schema lock"))?;
    Ok(storage)
}

/// Connects, waiting up to `database_wait_s` while the server is unreachable (under systemd
/// the database may come up after ems-cloud). A server that answers and refuses (wrong password,
/// missing database) fails at once.
async fn connect_waiting(config: &CloudConfig) -> Result<tokio_postgres::Client, DbError> {
    let wait = Duration::from_secs(config.database_wait_s);
    let deadline = tokio::time::Instant::now() + wait;
    let mut said = false;
    loop {
        match connect(&config.database_url).await {
            // Unreachable is worth waiting for; a certificate that fails verification is not.
            Err(DbError::Connect { target, error })
                if error.as_db_error().is_none()
                    && !describe(&error).contains("TLS handshake")
                    && tokio::time::Instant::now() < deadline =>
            {
                if !said {
                    tracing::warn!(
                        "the database at {target} is not reachable ({}); waiting up to {} s \
                         for it (database_wait_s)",
                        describe(&error),
                        wait.as_secs()
                    );
                    said = true;
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            other => return other,
        }
    }
}

/// Opens the database (fatal on failure) and manages [`Db`], unless the caller opened it
/// already (`ems-cloud serve` does, to exit with the database's own error).
pub fn stage() -> AdHoc {
    AdHoc::try_on_ignite("database", |rocket| async move {
        if rocket.state::<Db>().is_some() {
            return Ok(rocket);
        }
        let config = match rocket.state::<CloudConfig>() {
            Some(c) => c.clone(),
            None => {
                tracing::error!("configuration missing");
                return Err(rocket);
            }
        };
        match Db::open(&config).await {
            Ok(db) => {
                let rocket = match config.retention_days {
                    Some(days) => rocket.attach(retention::stage(db.clone(), days)),
                    None => rocket,
                };
                Ok(rocket.manage(db))
            }
            Err(e) => {
                tracing::error!("{e}");
                Err(rocket)
            }
        }
    })
}
