//! Everything that may travel on the device socket, in each direction.
//!
//! The spec defines two messages: telemetry (up) and commands (down). The extensions carry a
//! `"type"` field, which no spec message has, so one look at the object tells them apart and a
//! consumer that knows only the spec still parses every spec message unchanged.
//!
//! | direction | message | tells apart by |
//! |---|---|---|
//! | up   | [`Telemetry`] (spec)            | no `type` |
//! | up   | [`CommandAnswer`]               | `"type": "COMMAND_ANSWER"` |
//! | up   | [`ErrorMessage`]                | `"type": "ERROR"` |
//! | down | [`Command`] (spec)              | no `type` |
//! | down | [`TelemetryAck`]                | `"type": "TELEMETRY_ACK"` |
//! | down | [`ErrorMessage`]                | `"type": "ERROR"` |

use serde::{Deserialize, Serialize};

use crate::command::Command;
use crate::enums::AnswerStatus;
use crate::error::from_str_with_path;
use crate::telemetry::{Telemetry, Timestamp};
use crate::{ProtocolError, validate_id};

/// Agent → cloud.
#[derive(Debug, Clone, PartialEq)]
pub enum Upstream {
    Telemetry(Telemetry),
    CommandAnswer(CommandAnswer),
    Error(ErrorMessage),
}

/// Cloud → agent.
#[derive(Debug, Clone, PartialEq)]
pub enum Downstream {
    Command(Command),
    TelemetryAck(TelemetryAck),
    Error(ErrorMessage),
}

/// The agent's answer to a command. A repeated `command_id` gets the same answer again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename = "COMMAND_ANSWER")]
pub struct CommandAnswer {
    pub command_id: String,
    pub status: AnswerStatus,
    /// Why a command was rejected (required for `REJECTED`), or a note on success.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// The cloud's receipt for telemetry it has committed to storage. The agent may delete the
/// packets with these timestamps from its queue; nothing else is ever a reason to delete.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename = "TELEMETRY_ACK")]
pub struct TelemetryAck {
    pub timestamps: Vec<Timestamp>,
}

/// A frame could not be accepted. The connection stays open; the sender should fix and resend.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename = "ERROR")]
pub struct ErrorMessage {
    pub code: ErrorCode,
    /// Human-readable, names the offending field.
    pub message: String,
    /// The command this error is about, when the bad frame was a recognisable command.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command_id: Option<String>,
    /// The telemetry packets (by timestamp) this error refuses for good, with code `BAD_FRAME`
    /// (a recognisable packet that fails validation) or `REJECTED` (the database refused it):
    /// the sender must not resend them (the agent quarantines them). Empty otherwise.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub timestamps: Vec<Timestamp>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ErrorCode {
    /// Not JSON, or JSON of the wrong shape or values.
    BadFrame,
    /// The frame is larger than the receiver accepts.
    TooLarge,
    /// Telemetry for another device than the connection's.
    WrongDevice,
    /// The receiver failed internally; the frame may be resent later.
    Internal,
    /// Valid packets that the database refused to store (named in `timestamps`); kept aside by
    /// the cloud in `rejected_telemetry`, never to be resent.
    Rejected,
    /// The sender is over its budget (packets or error frames per second); the connection is
    /// closed next. What was not acknowledged may be resent later, more slowly.
    RateLimited,
    /// A code this build does not know (a newer peer's): treated like `INTERNAL`.
    #[serde(other)]
    Other,
}

impl ErrorCode {
    /// Whether an error with this code and `timestamps` refuses those packets for good.
    pub fn is_final_refusal(self) -> bool {
        matches!(self, ErrorCode::BadFrame | ErrorCode::Rejected)
    }
}

impl ErrorMessage {
    pub fn bad_frame(err: &ProtocolError) -> Self {
        ErrorMessage {
            code: ErrorCode::BadFrame,
            message: err.to_string(),
            command_id: None,
            timestamps: Vec::new(),
        }
    }
}

impl CommandAnswer {
    pub fn validate(&self) -> Result<(), ProtocolError> {
        validate_id("command_id", &self.command_id)?;
        if self.status == AnswerStatus::Rejected
            && self.reason.as_deref().is_none_or(|r| r.trim().is_empty())
        {
            return Err(ProtocolError::invalid("reason", "is required for REJECTED"));
        }
        Ok(())
    }
}

/// Only the discriminating field, borrowed, to route a frame without building it twice.
#[derive(Deserialize)]
struct Peek<'a> {
    #[serde(rename = "type", borrow, default)]
    kind: Option<std::borrow::Cow<'a, str>>,
}

fn peek(text: &str) -> Result<Option<String>, ProtocolError> {
    let p: Peek<'_> = from_str_with_path(text)?;
    Ok(p.kind.map(|k| k.into_owned()))
}

/// Parses and validates one frame from an agent.
pub fn parse_upstream(text: &str) -> Result<Upstream, ProtocolError> {
    match peek(text)?.as_deref() {
        None | Some("TELEMETRY") => Telemetry::parse(text).map(Upstream::Telemetry),
        Some("COMMAND_ANSWER") => {
            let answer: CommandAnswer = from_str_with_path(text)?;
            answer.validate()?;
            Ok(Upstream::CommandAnswer(answer))
        }
        Some("ERROR") => from_str_with_path(text).map(Upstream::Error),
        Some(other) => Err(ProtocolError::invalid(
            "type",
            format!(
                "unknown message type {other:?}, expected COMMAND_ANSWER or ERROR (or none for telemetry)"
            ),
        )),
    }
}

/// Parses and validates one frame from the cloud.
pub fn parse_downstream(text: &str) -> Result<Downstream, ProtocolError> {
    match peek(text)?.as_deref() {
        None => Command::parse(text).map(Downstream::Command),
        Some("TELEMETRY_ACK") => from_str_with_path(text).map(Downstream::TelemetryAck),
        Some("ERROR") => from_str_with_path(text).map(Downstream::Error),
        Some(other) => Err(ProtocolError::invalid(
            "type",
            format!(
                "unknown message type {other:?}, expected TELEMETRY_ACK or ERROR (or none for a command)"
            ),
        )),
    }
}

impl Upstream {
    pub fn to_json(&self) -> String {
        match self {
            Upstream::Telemetry(t) => serde_json::to_string(t),
            Upstream::CommandAnswer(a) => serde_json::to_string(a),
            Upstream::Error(e) => serde_json::to_string(e),
        }
        .expect("upstream messages always serialise")
    }
}

impl Downstream {
    pub fn to_json(&self) -> String {
        match self {
            Downstream::Command(c) => serde_json::to_string(c),
            Downstream::TelemetryAck(a) => serde_json::to_string(a),
            Downstream::Error(e) => serde_json::to_string(e),
        }
        .expect("downstream messages always serialise")
    }
}
