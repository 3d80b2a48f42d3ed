//! Assembling the server, and starting it in-process (tests, benchmark).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use rocket::fairing::AdHoc;
use rocket::figment::Figment;
use rocket::{Build, Ignite, Rocket};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::config::CloudConfig;
use crate::hub::Hub;
use crate::stage::need;
use crate::{alerts, api, audit, commands, db, error, hub, ingest, metrics, ws};

/// The whole server on `figment` (see [`crate::config::figment`]): stages in dependency order,
/// sockets at `/ws/…`, the REST API under `/api/v1`, the dashboard at `/`, JSON catchers.
pub fn build(figment: Figment) -> Rocket<Build> {
    rocket::custom(figment)
        .attach(AdHoc::config::<CloudConfig>())
        .attach(AdHoc::try_on_ignite("budgets", |rocket| async move {
            let config: CloudConfig = need!(rocket);
            let budgets =
                crate::budget::Budgets::new(config.device_packet_rate, config.device_packet_burst);
            let throttle =
                crate::auth::AuthThrottle::new(config.auth_failure_rate, config.auth_failure_burst);
            Ok(rocket.manage(Arc::new(budgets)).manage(Arc::new(throttle)))
        }))
        .attach(db::stage())
        .attach(audit::stage())
        .attach(hub::stage())
        .attach(ingest::stage())
        .attach(commands::stage())
        .attach(alerts::stage())
        .attach(crate::planner::replan::stage())
        .mount("/", ws::routes())
        .mount("/", metrics::routes())
        .mount("/api/v1", api::routes())
        .attach(api::dashboard::stage())
        .register("/", error::catchers())
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("the server failed to start: {0}")]
    Launch(String),
}

/// A server started with [`start`], listening on `addr`.
pub struct Running {
    pub addr: SocketAddr,
    /// Serving HTTPS/WSS.
    pub tls: bool,
    pub hub: Arc<Hub>,
    shutdown: rocket::Shutdown,
    task: JoinHandle<Result<Rocket<Ignite>, rocket::Error>>,
}

impl Running {
    /// `http://127.0.0.1:port` (or `https://`).
    pub fn http_url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// `ws://127.0.0.1:port` (or `wss://`).
    pub fn ws_url(&self) -> String {
        let scheme = if self.tls { "wss" } else { "ws" };
        format!("{scheme}://{}", self.addr)
    }

    /// Asks the server to stop and waits until it has.
    pub async fn stop(self) {
        self.shutdown.notify();
        let _ = self.task.await;
    }
}

/// Builds and launches the server on the current tokio runtime; returns once it listens.
/// Give `port = 0` in the figment for a free port.
pub async fn start(figment: Figment) -> Result<Running, StartError> {
    type Ready = (SocketAddr, bool, Arc<Hub>, rocket::Shutdown);
    let (tx, rx) = oneshot::channel::<Ready>();
    let tx = Mutex::new(Some(tx));
    let rocket = build(figment).attach(AdHoc::on_liftoff("report address", move |rocket| {
        let config = rocket.config();
        let addr = SocketAddr::new(config.address, config.port);
        let tls = config.tls_enabled();
        let hub = rocket.state::<Arc<Hub>>().expect("hub managed").clone();
        let ready = (addr, tls, hub, rocket.shutdown());
        if let Some(tx) = tx.lock().expect("not poisoned").take() {
            let _ = tx.send(ready);
        }
        Box::pin(async {})
    }));
    let mut task = tokio::spawn(rocket.launch());
    tokio::select! {
        ready = rx => match ready {
            Ok((addr, tls, hub, shutdown)) => Ok(Running { addr, tls, hub, shutdown, task }),
            Err(_) => Err(StartError::Launch("stopped before listening".into())),
        },
        done = &mut task => Err(StartError::Launch(match done {
            Ok(Ok(_)) => "stopped before listening".into(),
            Ok(Err(e)) => e.to_string(),
            Err(e) => e.to_string(),
        })),
    }
}
