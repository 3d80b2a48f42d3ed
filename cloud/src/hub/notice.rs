//! The notices instances send each other over `NOTIFY`, signed.
//!
//! Any role that may connect to the database may `NOTIFY` on any channel and `LISTEN` to it, so
//! a notice is only believed when it carries an HMAC-SHA256 over its text made with the secret
//! the instances share ([`secret`]), and only for [`MAX_AGE`] after it was sent: a forged notice
//! is dropped, a captured one cannot be replayed later. On the wire a notice is
//! `<64 hex digits of MAC>.<JSON>`.

use chrono::{DateTime, Utc};
use ems_protocol::Telemetry;
use ems_protocol::api::CommandRecord;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

/// How old a notice may be when it arrives (clock differences between hosts included).
pub const MAX_AGE_MS: i64 = 60_000;

/// A notice: who sent it, when, and what it says.
#[derive(Debug, Serialize, Deserialize)]
pub struct Notice {
    pub origin: String,
    /// The sender's clock, ms since the epoch.
    pub sent_ms: i64,
    #[serde(flatten)]
    pub kind: NoticeKind,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum NoticeKind {
    Command {
        command: CommandRecord,
    },
    Telemetry {
        telemetry: Telemetry,
    },
    Interest {
        device_id: String,
    },
    /// `device_id` connected to the sender at `at` (the database's clock, recorded with the
    /// connection): a socket for it that connected earlier closes; a later one stays.
    Connected {
        device_id: String,
        at: DateTime<Utc>,
    },
    Revoked {
        token: String,
    },
    /// The sockets of `device_id` that exist now close at `until` (at once when absent): its
    /// token was rotated or it was disabled or deleted.
    DeviceAccess {
        device_id: String,
        until: Option<DateTime<Utc>>,
        reason: String,
    },
}

/// Why a notice was not believed.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("not signed")]
    Unsigned,
    #[error("signature does not match: not from an instance of this cluster")]
    BadSignature,
    #[error("unreadable: {0}")]
    Unreadable(String),
    #[error("sent {0} ms ago: too old (replayed?) or from a clock far off")]
    Stale(i64),
}

/// Signs and checks notices with the cluster's secret.
#[derive(Clone)]
pub struct Signer {
    key: Vec<u8>,
}

impl Signer {
    pub fn new(key: &[u8]) -> Self {
        Signer { key: key.to_vec() }
    }

    fn mac(&self) -> Hmac<Sha256> {
        Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC takes keys of any length")
    }

    /// The wire text of `notice`.
    pub fn seal(&self, notice: &Notice) -> String {
        let json = serde_json::to_string(notice).expect("notices serialise");
        let mut mac = self.mac();
        mac.update(json.as_bytes());
        let tag: String = mac
            .finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        format!("{tag}.{json}")
    }

    /// The notice in `text`, if an instance of this cluster sent it within [`MAX_AGE_MS`] of
    /// `now_ms`.
    pub fn open(&self, text: &str, now_ms: i64) -> Result<Notice, Refused> {
        let (tag, json) = text.split_once('.').ok_or(Refused::Unsigned)?;
        let tag = decode_hex(tag).ok_or(Refused::Unsigned)?;
        let mut mac = self.mac();
        mac.update(json.as_bytes());
        mac.verify_slice(&tag).map_err(|_| Refused::BadSignature)?;
        let notice: Notice =
            serde_json::from_str(json).map_err(|e| Refused::Unreadable(e.to_string()))?;
        let age = now_ms - notice.sent_ms;
        if age.abs() > MAX_AGE_MS {
            return Err(Refused::Stale(age));
        }
        Ok(notice)
    }
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    if s.len() != 64 || !s.is_ascii() {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn notice(sent_ms: i64) -> Notice {
        Notice {
            origin: "a".into(),
            sent_ms,
            kind: NoticeKind::Revoked { token: "t".into() },
        }
    }

    #[test]
    fn a_sealed_notice_opens_with_the_same_secret_only() {
        let ours = Signer::new(b"cluster secret");
        let text = ours.seal(&notice(1_000));
        assert!(matches!(
            ours.open(&text, 1_500).unwrap().kind,
            NoticeKind::Revoked { .. }
        ));
        let theirs = Signer::new(b"another secret");
        assert_eq!(
            theirs.open(&text, 1_500).unwrap_err(),
            Refused::BadSignature
        );
        assert_eq!(
            theirs
                .open(&theirs.seal(&notice(1_000)), 1_000)
                .map(|n| n.origin),
            Ok("a".to_string())
        );
    }

    #[test]
    fn forged_altered_and_unsigned_notices_are_refused() {
        let s = Signer::new(b"k");
        let text = s.seal(&notice(0));
        let altered = text.replace("\"t\"", "\"u\"");
        assert_eq!(s.open(&altered, 0).unwrap_err(), Refused::BadSignature);
        let json = serde_json::to_string(&notice(0)).unwrap();
        assert_eq!(s.open(&json, 0).unwrap_err(), Refused::Unsigned);
        assert_eq!(
            s.open(&format!("{}.{json}", "0".repeat(64)), 0)
                .unwrap_err(),
            Refused::BadSignature
        );
        assert_eq!(s.open("zz.{}", 0).unwrap_err(), Refused::Unsigned);
        assert_eq!(s.open("é", 0).unwrap_err(), Refused::Unsigned);
    }

    #[test]
    fn a_replayed_notice_is_stale_after_a_minute() {
        let s = Signer::new(b"k");
        let text = s.seal(&notice(0));
        assert!(s.open(&text, MAX_AGE_MS).is_ok());
        assert_eq!(
            s.open(&text, MAX_AGE_MS + 1).unwrap_err(),
            Refused::Stale(MAX_AGE_MS + 1)
        );
        assert!(s.open(&text, -MAX_AGE_MS - 1).is_err(), "from the future");
    }
}
