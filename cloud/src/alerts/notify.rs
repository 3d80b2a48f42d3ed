//! Sending alert notifications: one worker per channel (webhook, email), each behind a bounded
//! queue. Opening an alert only queues ([`Notifier::send`] never waits), so neither ingest nor
//! evaluation waits on a slow receiver; when a channel's queue is full (its receiver has been
//! down for long) the notification is dropped and counted in
//! `ems_cloud_alert_notifications{channel, outcome="dropped"}`.
//!
//! A webhook gets the [`AlertNotification`] as JSON, signed in the `X-Ems-Signature` header:
//! `sha256=` and the lowercase hex HMAC-SHA256 of the body under `webhook_secret`. A failed
//! delivery (no answer, or a status other than 2xx) is retried after 1, 2, 4, … times
//! `retry_base_ms` (at most a minute apart) up to `max_attempts` attempts.
//! Email goes through the SMTP server of `smtp_url` (lettre, rustls), retried the same way.

use std::sync::Arc;
use std::time::Duration;

use ems_protocol::api::AlertNotification;
use hmac::{Hmac, Mac};
use lettre::message::header::ContentType;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use sha2::Sha256;
use tokio::sync::mpsc;

use crate::config::AlertsConfig;
use crate::hub::Hub;
use crate::metrics::Metrics;

/// The header that carries the body's HMAC.
pub const SIGNATURE_HEADER: &str = "X-Ems-Signature";
/// Longest wait between two attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// `sha256=<hex>`: the HMAC-SHA256 of `body` under `secret`.
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}

/// Queues notifications for the configured channels (cheap to clone).
#[derive(Clone)]
pub struct Notifier {
    channels: Vec<(&'static str, mpsc::Sender<Arc<AlertNotification>>)>,
    metrics: Arc<Metrics>,
}

impl Notifier {
    /// Starts one worker per configured channel; stops with the hub. `config` is validated.
    pub fn start(config: &AlertsConfig, hub: &Arc<Hub>) -> Result<Notifier, String> {
        let mut channels = Vec::new();
        let queue = config.queue.max(1);
        if let Some(url) = &config.webhook_url {
            let http = reqwest::Client::builder()
                .timeout(Duration::from_secs(config.timeout_s.max(1)))
                .build()
                .map_err(|e| format!("alerts.webhook_url: no HTTP client: {e}"))?;
            let webhook = Webhook {
                http,
                url: url.clone(),
                secret: config.webhook_secret.clone().unwrap_or_default(),
            };
            let (tx, rx) = mpsc::channel(queue);
            tokio::spawn(worker(
                rx,
                Channel::Webhook(webhook),
                config.clone(),
                hub.clone(),
            ));
            channels.push(("webhook", tx));
        }
        if let Some(url) = &config.smtp_url {
            let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
                .map_err(|e| format!("alerts.smtp_url: {e}"))?
                .timeout(Some(Duration::from_secs(config.timeout_s.max(1))))
                .build();
            let email = Email {
                transport,
                from: config.email_from.clone().unwrap_or_default(),
                to: config.email_to.clone(),
            };
            let (tx, rx) = mpsc::channel(queue);
            tokio::spawn(worker(
                rx,
                Channel::Email(Box::new(email)),
                config.clone(),
                hub.clone(),
            ));
            channels.push(("email", tx));
        }
        Ok(Notifier {
            channels,
            metrics: hub.metrics.clone(),
        })
    }

    /// Queues `n` on every channel without waiting; a full queue drops it (counted).
    pub fn send(&self, n: AlertNotification) {
        let n = Arc::new(n);
        for (channel, tx) in &self.channels {
            if tx.try_send(n.clone()).is_err() {
                self.metrics.alert_notification(channel, "dropped");
                tracing::warn!(
                    channel,
                    alert = n.alert.id,
                    "alert notification dropped: the {channel} queue is full"
                );
            }
        }
    }
}

struct Webhook {
    http: reqwest::Client,
    url: String,
    secret: String,
}

struct Email {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: String,
    to: Vec<String>,
}

enum Channel {
    Webhook(Webhook),
    Email(Box<Email>),
}

impl Channel {
    fn name(&self) -> &'static str {
        match self {
            Channel::Webhook(_) => "webhook",
            Channel::Email(_) => "email",
        }
    }

    /// One attempt.
    async fn deliver(&self, n: &AlertNotification) -> Result<(), String> {
        match self {
            Channel::Webhook(w) => {
                let body = serde_json::to_vec(n).map_err(|e| e.to_string())?;
                let resp = w
                    .http
                    .post(&w.url)
                    .header("Content-Type", "application/json")
                    .header(SIGNATURE_HEADER, sign(w.secret.as_bytes(), &body))
                    .body(body)
                    .send()
                    .await
                    .map_err(|e| e.to_string())?;
                if resp.status().is_success() {
                    Ok(())
                } else {
                    Err(format!("the webhook answered {}", resp.status()))
                }
            }
            Channel::Email(e) => {
                let a = &n.alert;
                let subject = format!(
                    "[ems] {} {}: {} on {}",
                    a.kind, n.event, a.rule_name, a.device_id
                );
                let text = format!(
                    "Alert {} {}.\n\nRule: {} ({})\nDevice: {}\nOpened: {}\nResolved: {}\n\
                     What was seen: {}\nSent by ems-cloud instance {}.\n",
                    a.id,
                    n.event,
                    a.rule_name,
                    a.kind,
                    a.device_id,
                    a.opened_at.to_rfc3339(),
                    a.resolved_at
                        .map(|t| t.to_rfc3339())
                        .unwrap_or_else(|| "-".into()),
                    a.message,
                    n.instance
                );
                let mut builder = Message::builder()
                    .from(e.from.parse().map_err(|err| format!("email_from: {err}"))?)
                    .subject(subject)
                    .header(ContentType::TEXT_PLAIN);
                for to in &e.to {
                    builder = builder.to(to.parse().map_err(|err| format!("email_to: {err}"))?);
                }
                let message = builder.body(text).map_err(|err| err.to_string())?;
                e.transport
                    .send(message)
                    .await
                    .map(|_| ())
                    .map_err(|err| err.to_string())
            }
        }
    }
}

/// Delivers the queued notifications one after the other, each retried with backoff.
async fn worker(
    mut rx: mpsc::Receiver<Arc<AlertNotification>>,
    channel: Channel,
    config: AlertsConfig,
    hub: Arc<Hub>,
) {
    let name = channel.name();
    let attempts = config.max_attempts.max(1);
    loop {
        let n = tokio::select! {
            n = rx.recv() => n,
            _ = hub.stopped() => None,
        };
        let Some(n) = n else { break };
        let mut backoff = Duration::from_millis(config.retry_base_ms.max(1));
        let mut attempt = 1;
        loop {
            match channel.deliver(&n).await {
                Ok(()) => {
                    hub.metrics.alert_notification(name, "sent");
                    break;
                }
                Err(e) if attempt >= attempts => {
                    hub.metrics.alert_notification(name, "failed");
                    tracing::warn!(
                        channel = name,
                        alert = n.alert.id,
                        attempt,
                        "alert notification given up: {e}"
                    );
                    break;
                }
                Err(e) => {
                    hub.metrics.alert_notification(name, "retried");
                    tracing::info!(
                        channel = name,
                        alert = n.alert.id,
                        attempt,
                        "alert notification failed, retrying in {backoff:?}: {e}"
                    );
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = hub.stopped() => return,
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    attempt += 1;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_matches_rfc4231_case_2() {
        // RFC 4231, test case 2: key "Jefe", data "what do ya want for nothing?".
        assert_eq!(
            sign(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
