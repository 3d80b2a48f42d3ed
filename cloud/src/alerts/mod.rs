//! Alerts: rules watch devices; an alert opens when a rule's condition has held long enough
//! and resolves when it has been cleared long enough; each opening and resolving is notified
//! once, by webhook and/or email.
//!
//! - [`rules`] decides, pure: what a packet says about a rule, hysteresis and delays.
//! - [`store`] keeps rules and alerts in PostgreSQL and makes opening and resolving happen once
//!   across the instances sharing the database.
//! - [`notify`] delivers notifications from bounded queues, with retries.
//!
//! Rules live in the database and are managed over REST (`/api/v1/alert-rules`, admin), so
//! every instance evaluates the same rules and an operator changes them without a restart on
//! each instance. The evaluator of each instance listens to the hub's events (it tells, it does
//! not call): packets of devices connected here are read against the packet rules
//! (`ERROR_FLAG`, `SOC_BELOW`, `GRID_EXPORT_ABOVE`) as they are stored. A periodic tick
//! (`alerts.evaluate_interval_ms`) re-reads the rules and the open alerts and checks `OFFLINE`
//! rules in SQL; every instance runs it, and the statements open or resolve each alert once.
//! Ingest never waits for any of this: events reach the evaluator over the hub's broadcast,
//! and notifications are queued.

pub mod notify;
pub mod rules;
pub mod store;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use ems_protocol::Telemetry;
use ems_protocol::api::{AlertEvent, AlertKind, AlertNotification, AlertRecord, AlertRule};
use rocket::fairing::AdHoc;
use tokio::sync::{broadcast, watch};

use crate::config::CloudConfig;
use crate::db::Db;
use crate::hub::Hub;
use crate::stage::need;
use notify::Notifier;
use rules::{Decision, Watch};

/// The handle the API uses (Rocket-managed).
#[derive(Clone)]
pub struct Alerts {
    db: Db,
    hub: Arc<Hub>,
    notifier: Notifier,
    /// Rule changes made here, counted: the evaluator re-reads the rules when it moves ...
    changes: Arc<watch::Sender<u64>>,
    /// ... and says up to which change it has (its rules and its packet subscription).
    applied: watch::Receiver<u64>,
}

/// Longest a rule change waits for this instance's evaluator to take it in.
const APPLY_WAIT: Duration = Duration::from_secs(5);

impl Alerts {
    /// The rules changed on this instance: returns once this instance's evaluator uses the new
    /// rules (so a rule applies to every packet stored after its `POST` answered), or after
    /// [`APPLY_WAIT`] when the database is slow (the next tick takes it in). Other instances
    /// take it in at their next tick.
    pub async fn rules_changed(&self) {
        let mut wanted = 0;
        self.changes.send_modify(|n| {
            *n += 1;
            wanted = *n;
        });
        let mut applied = self.applied.clone();
        let _ = tokio::time::timeout(APPLY_WAIT, applied.wait_for(|a| *a >= wanted)).await;
    }

    /// Counts and queues the notification of `event` for `alert`.
    pub fn notify(&self, event: AlertEvent, alert: AlertRecord) {
        let metrics = &self.hub.metrics;
        match event {
            AlertEvent::Opened => metrics.alerts_opened.inc(),
            AlertEvent::Resolved => metrics.alerts_resolved.inc(),
        };
        tracing::info!(
            alert = alert.id,
            rule = %alert.rule_name,
            device = %alert.device_id,
            "alert {event}: {}",
            alert.message
        );
        self.notifier.send(AlertNotification {
            event,
            alert,
            instance: self.hub.instance_id.clone(),
        });
    }
}

/// What the evaluator knows between events.
#[derive(Default)]
struct Evaluator {
    rules: Vec<AlertRule>,
    /// Per (rule, device): the packet rules' progress.
    watches: HashMap<(i64, String), Watch>,
    /// (rule, device) of the open alerts, as of the last tick and this instance's own changes.
    open: HashSet<(i64, String)>,
}

impl Evaluator {
    /// Reads the rules again; whether that worked.
    async fn reload(&mut self, alerts: &Alerts) -> bool {
        match store::list_rules(&alerts.db).await {
            Ok(rules) => {
                let ids: HashSet<i64> = rules.iter().map(|r| r.id).collect();
                self.watches.retain(|(rule, _), _| ids.contains(rule));
                self.rules = rules;
                true
            }
            Err(e) => {
                tracing::warn!("alert rules not read: {e}");
                false
            }
        }
    }

    /// The tick: rules and open alerts again, then the `OFFLINE` rules.
    async fn sweep(&mut self, alerts: &Alerts) {
        if !self.reload(alerts).await {
            return;
        }
        match store::open_keys(&alerts.db).await {
            Ok(open) => {
                for (key, watch) in &mut self.watches {
                    watch.open = open.contains(key);
                }
                self.open = open;
            }
            Err(e) => tracing::warn!("open alerts not read: {e}"),
        }
        for rule in self
            .rules
            .iter()
            .filter(|r| r.rule.kind == AlertKind::Offline)
        {
            match store::open_offline(&alerts.db, rule).await {
                Ok(opened) => {
                    for a in opened {
                        self.open.insert((rule.id, a.device_id.clone()));
                        alerts.notify(AlertEvent::Opened, a);
                    }
                }
                Err(e) => tracing::warn!(rule = %rule.rule.name, "offline check failed: {e}"),
            }
            match store::resolve_offline(&alerts.db, rule).await {
                Ok(resolved) => {
                    for a in resolved {
                        self.open.remove(&(rule.id, a.device_id.clone()));
                        alerts.notify(AlertEvent::Resolved, a);
                    }
                }
                Err(e) => tracing::warn!(rule = %rule.rule.name, "offline check failed: {e}"),
            }
        }
    }

    /// A packet of a device connected here was stored.
    async fn see(&mut self, alerts: &Alerts, t: &Telemetry) {
        let at = t.timestamp.as_datetime();
        for rule in &self.rules {
            if rule.rule.kind == AlertKind::Offline
                || rule
                    .rule
                    .device_id
                    .as_ref()
                    .is_some_and(|d| *d != t.device_id)
            {
                continue;
            }
            let key = (rule.id, t.device_id.clone());
            let open = self.open.contains(&key);
            let watch = self
                .watches
                .entry(key.clone())
                .or_insert_with(|| Watch::new(open));
            let result = match watch.see(&rule.rule, rules::read(&rule.rule, t), at) {
                None => continue,
                Some(Decision::Open) => {
                    self.open.insert(key);
                    let message = rules::describe(&rule.rule, t);
                    store::open(&alerts.db, rule, &t.device_id, &message)
                        .await
                        .map(|a| a.map(|a| (AlertEvent::Opened, a)))
                }
                Some(Decision::Resolve) => {
                    self.open.remove(&key);
                    store::resolve(&alerts.db, rule.id, &t.device_id)
                        .await
                        .map(|a| a.map(|a| (AlertEvent::Resolved, a)))
                }
            };
            match result {
                Ok(Some((event, alert))) => alerts.notify(event, alert),
                // Another instance (or an earlier run) got there first.
                Ok(None) => {}
                Err(e) => tracing::warn!(rule = %rule.rule.name, "alert not stored: {e}"),
            }
        }
    }
}

async fn evaluate(
    alerts: Alerts,
    interval: Duration,
    mut changes: watch::Receiver<u64>,
    applied: watch::Sender<u64>,
) {
    let hub = alerts.hub.clone();
    // Subscribed only while a packet rule exists: every packet received is a copy, which a
    // fleet with only OFFLINE rules (or none) should not pay for at full ingest rate.
    let mut events: Option<broadcast::Receiver<Telemetry>> = None;
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut evaluator = Evaluator::default();
    // Packets the broadcast dropped before the evaluator read them.
    let mut skipped: u64 = 0;
    loop {
        // The rule change the rules now reflect, to announce once subscribed accordingly.
        let mut done = None;
        let next_event = async {
            match events.as_mut() {
                Some(rx) => rx.recv().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = tick.tick() => evaluator.sweep(&alerts).await,
            Ok(()) = changes.changed() => {
                let change = *changes.borrow_and_update();
                if evaluator.reload(&alerts).await {
                    done = Some(change);
                }
            }
            // Packets this instance stored: those of devices on other instances are evaluated
            // there, and a device that disconnected right after sending is still evaluated.
            event = next_event => match event {
                Ok(telemetry) => evaluator.see(&alerts, &telemetry).await,
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    // Logged when the total crosses a power of two, not at every lag.
                    let before = skipped;
                    skipped += n;
                    if skipped.ilog2() > before.checked_ilog2().unwrap_or(0) || before == 0 {
                        tracing::warn!(
                            skipped,
                            "alert evaluation fell behind the packets; some were not evaluated"
                        );
                    }
                }
                Err(broadcast::error::RecvError::Closed) => break,
            },
            _ = hub.stopped() => break,
        }
        let wanted = evaluator
            .rules
            .iter()
            .any(|r| r.rule.kind != AlertKind::Offline);
        if wanted && events.is_none() {
            events = Some(hub.subscribe_stored());
        } else if !wanted {
            events = None;
        }
        if let Some(change) = done {
            applied.send_replace(change);
        }
    }
}

/// Checks `[alerts]`, manages [`Alerts`], starts the notifiers and the evaluator.
pub fn stage() -> AdHoc {
    AdHoc::try_on_ignite("alerts", |rocket| async move {
        let config: CloudConfig = need!(rocket);
        let db: Db = need!(rocket);
        let hub: Arc<Hub> = need!(rocket);
        if let Err(e) = config.alerts.validate() {
            tracing::error!("bad configuration: {e}");
            return Err(rocket);
        }
        let notifier = match Notifier::start(&config.alerts, &hub) {
            Ok(n) => n,
            Err(e) => {
                tracing::error!("bad configuration: {e}");
                return Err(rocket);
            }
        };
        let (changes, changes_rx) = watch::channel(0u64);
        let (applied, applied_rx) = watch::channel(0u64);
        let alerts = Alerts {
            db,
            hub,
            notifier,
            changes: Arc::new(changes),
            applied: applied_rx,
        };
        tokio::spawn(evaluate(
            alerts.clone(),
            config.alerts.evaluate_interval(),
            changes_rx,
            applied,
        ));
        Ok(rocket.manage(alerts))
    })
}
