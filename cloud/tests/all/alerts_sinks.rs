//! The peers the alert tests deliver to: a webhook receiver (a small HTTP/1.1 server that
//! answers scripted statuses and records every request) and an SMTP sink (speaks enough SMTP
//! for a client to hand over a message, and records it). Both listen on 127.0.0.1:0.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ems_cloud::testing::DEADLINE;
use ems_protocol::api::AlertNotification;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

pub const SECRET: &str = "alert-webhook-secret-0123";

/// One request the webhook received.
#[derive(Debug, Clone)]
pub struct Hit {
    pub body: Vec<u8>,
    pub signature: Option<String>,
    /// What the receiver answered.
    pub status: u16,
}

impl Hit {
    /// The body, which must be an [`AlertNotification`].
    pub fn notification(&self) -> AlertNotification {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!("webhook body: {e}: {}", String::from_utf8_lossy(&self.body))
        })
    }

    /// Whether `X-Ems-Signature` is the HMAC-SHA256 of the body under [`SECRET`] (checked
    /// with the `hmac` crate's constant-time verify, independently of the server's code).
    pub fn signature_valid(&self) -> bool {
        let Some(hex) = self
            .signature
            .as_deref()
            .and_then(|s| s.strip_prefix("sha256="))
        else {
            return false;
        };
        let Some(bytes) = (0..hex.len())
            .step_by(2)
            .map(|i| {
                hex.get(i..i + 2)
                    .and_then(|b| u8::from_str_radix(b, 16).ok())
            })
            .collect::<Option<Vec<u8>>>()
        else {
            return false;
        };
        let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
        mac.update(&self.body);
        mac.verify_slice(&bytes).is_ok()
    }
}

/// A webhook receiver.
pub struct Webhook {
    pub url: String,
    hits: mpsc::UnboundedReceiver<Hit>,
}

impl Webhook {
    /// Answers the statuses of `script` in turn, then 200 for ever.
    pub async fn start(script: &[u16]) -> Webhook {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let script = Arc::new(Mutex::new(script.iter().copied().collect::<VecDeque<_>>()));
        let (tx, hits) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let (tx, script) = (tx.clone(), script.clone());
                tokio::spawn(async move {
                    let mut reader = BufReader::new(socket);
                    let mut length = 0usize;
                    let mut signature = None;
                    let mut line = String::new();
                    loop {
                        line.clear();
                        if reader.read_line(&mut line).await.unwrap_or(0) == 0 {
                            return;
                        }
                        let l = line.trim_end();
                        if l.is_empty() {
                            break;
                        }
                        if let Some((name, value)) = l.split_once(':') {
                            let value = value.trim().to_string();
                            if name.eq_ignore_ascii_case("content-length") {
                                length = value.parse().unwrap_or(0);
                            } else if name.eq_ignore_ascii_case("x-ems-signature") {
                                signature = Some(value);
                            }
                        }
                    }
                    let mut body = vec![0; length];
                    if reader.read_exact(&mut body).await.is_err() {
                        return;
                    }
                    let status = script.lock().unwrap().pop_front().unwrap_or(200);
                    let answer = format!(
                        "HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                    );
                    let _ = reader.get_mut().write_all(answer.as_bytes()).await;
                    let _ = reader.get_mut().shutdown().await;
                    let _ = tx.send(Hit {
                        body,
                        signature,
                        status,
                    });
                });
            }
        });
        Webhook { url, hits }
    }

    /// The next request, within [`DEADLINE`].
    pub async fn next(&mut self) -> Hit {
        tokio::time::timeout(DEADLINE, self.hits.recv())
            .await
            .expect("a webhook request within the deadline")
            .expect("receiver running")
    }

    /// A request arriving within `within`, if any (to show that none more comes).
    pub async fn next_within(&mut self, within: Duration) -> Option<Hit> {
        tokio::time::timeout(within, self.hits.recv())
            .await
            .ok()
            .flatten()
    }
}

/// A message the SMTP sink accepted.
#[derive(Debug, Clone)]
pub struct Mail {
    pub from: String,
    pub to: Vec<String>,
    pub data: String,
}

/// An SMTP sink: `smtp://127.0.0.1:port`.
pub struct SmtpSink {
    pub url: String,
    mails: mpsc::UnboundedReceiver<Mail>,
}

impl SmtpSink {
    pub async fn start() -> SmtpSink {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("smtp://{}", listener.local_addr().unwrap());
        let (tx, mails) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let tx = tx.clone();
                tokio::spawn(async move {
                    let mut s = BufReader::new(socket);
                    let _ = s.get_mut().write_all(b"220 sink ESMTP\r\n").await;
                    let mut mail = Mail {
                        from: String::new(),
                        to: Vec::new(),
                        data: String::new(),
                    };
                    let mut line = String::new();
                    loop {
                        line.clear();
                        if s.read_line(&mut line).await.unwrap_or(0) == 0 {
                            return;
                        }
                        let cmd = line.trim_end().to_string();
                        let upper = cmd.to_ascii_uppercase();
                        let reply: &[u8] = if upper.starts_with("EHLO") || upper.starts_with("HELO")
                        {
                            b"250 sink\r\n"
                        } else if upper.starts_with("MAIL FROM:") {
                            mail.from = cmd[10..].trim().to_string();
                            b"250 OK\r\n"
                        } else if upper.starts_with("RCPT TO:") {
                            mail.to.push(cmd[8..].trim().to_string());
                            b"250 OK\r\n"
                        } else if upper == "DATA" {
                            let _ = s.get_mut().write_all(b"354 go on\r\n").await;
                            loop {
                                line.clear();
                                if s.read_line(&mut line).await.unwrap_or(0) == 0 {
                                    return;
                                }
                                if line == ".\r\n" {
                                    break;
                                }
                                mail.data.push_str(&line);
                            }
                            let _ = tx.send(mail.clone());
                            b"250 OK queued\r\n"
                        } else if upper == "QUIT" {
                            let _ = s.get_mut().write_all(b"221 bye\r\n").await;
                            return;
                        } else if upper == "RSET" || upper == "NOOP" {
                            b"250 OK\r\n"
                        } else {
                            b"502 not here\r\n"
                        };
                        if s.get_mut().write_all(reply).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        SmtpSink { url, mails }
    }

    /// The next accepted message, within [`DEADLINE`].
    pub async fn next(&mut self) -> Mail {
        tokio::time::timeout(DEADLINE, self.mails.recv())
            .await
            .expect("a mail within the deadline")
            .expect("sink running")
    }
}
