//! Typed wire messages of ems: the spec's telemetry packet and control commands
//! (`shared/spec/communication-interface.md`), plus the documented extensions in `docs/protocol.md`.
//!
//! The agent, the cloud and `emsctl` all speak through these types, so a field name, unit or sign
//! convention lives in exactly one place.
//!
//! # Layout
//! - [`enums`]: the SCREAMING_CASE vocabularies: FSM [`State`], telemetry [`Mode`], command
//!   [`TargetMode`], [`ErrorFlag`], and the command lifecycle [`CommandStatus`].
//! - [`telemetry`]: the 1 Hz [`Telemetry`] packet and its [`Timestamp`] (RFC 3339 UTC, whole seconds).
//! - [`command`]: the downstream [`Command`] (`SET_MODE`, `RESET_ERROR`).
//! - [`message`]: what may travel on the device socket in each direction ([`Upstream`], [`Downstream`])
//!   including the extensions: [`CommandAnswer`], [`TelemetryAck`], [`ErrorMessage`].
//! - [`error`]: [`ProtocolError`], which always names the offending field.
//! - [`duration`]: the `90s`/`15m`/`1h`/`7d` grammar and the history bucket grid.
//! - [`api`]: bodies of the cloud's REST API and live feed, shared by the cloud and its clients.
//! - `num` (private): JSON number formatting so integral values stay integers on the wire.

pub mod api;
pub mod command;
pub mod duration;
pub mod enums;
pub mod error;
pub mod message;
mod num;
pub mod schedule;
pub mod telemetry;
pub mod zone;

pub use command::{Command, CommandAction};
pub use enums::{AnswerStatus, CommandStatus, ErrorFlag, Mode, State, TargetMode};
pub use error::ProtocolError;
pub use message::{
    CommandAnswer, Downstream, ErrorCode, ErrorMessage, TelemetryAck, Upstream, parse_downstream,
    parse_upstream,
};
pub use telemetry::{
    Battery, Grid, SystemStatus, Telemetry, Timestamp, check_storable, telemetry_extensions,
    telemetry_timestamp_of,
};

/// Longest accepted `device_id` or `command_id`, in bytes.
pub const MAX_ID_LEN: usize = 64;

/// Checks an identifier (`device_id`, `command_id`): 1 to [`MAX_ID_LEN`] bytes of ASCII letters,
/// digits, `_`, `-`, `.` or `:`. Identifiers end up in URLs, file names and log lines, so anything
/// else is refused rather than escaped.
pub fn validate_id(field: &str, id: &str) -> Result<(), ProtocolError> {
    if id.is_empty() {
        return Err(ProtocolError::invalid(field, "must not be empty"));
    }
    if id.len() > MAX_ID_LEN {
        return Err(ProtocolError::invalid(
            field,
            format!("is {} bytes long, at most {MAX_ID_LEN} allowed", id.len()),
        ));
    }
    if let Some(c) = id
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':')))
    {
        return Err(ProtocolError::invalid(
            field,
            format!(
                "contains {c:?}; only ASCII letters, digits, '_', '-', '.' and ':' are allowed"
            ),
        ));
    }
    Ok(())
}

/// Most tags one device or one API token may carry.
pub const MAX_TAGS: usize = 32;

/// Checks a list of device tags (each spelled like an identifier, see [`validate_id`]; at most
/// [`MAX_TAGS`]); returns them sorted without duplicates.
pub fn validate_tags(field: &str, tags: &[String]) -> Result<Vec<String>, ProtocolError> {
    if tags.len() > MAX_TAGS {
        return Err(ProtocolError::invalid(
            field,
            format!("{} tags, at most {MAX_TAGS} allowed", tags.len()),
        ));
    }
    for t in tags {
        validate_id(field, t)?;
    }
    let mut out = tags.to_vec();
    out.sort();
    out.dedup();
    Ok(out)
}

#[cfg(test)]
mod tag_tests {
    use super::*;

    #[test]
    fn tags_are_identifiers_sorted_once() {
        let tags = ["site:lyon", "fleet-a", "site:lyon"].map(String::from);
        assert_eq!(
            validate_tags("tags", &tags).unwrap(),
            vec!["fleet-a".to_string(), "site:lyon".to_string()]
        );
        assert!(validate_tags("tags", &["a b".to_string()]).is_err());
        assert!(validate_tags("tags", &[String::new()]).is_err());
        let many: Vec<String> = (0..=MAX_TAGS).map(|i| format!("t{i}")).collect();
        assert!(validate_tags("tags", &many).is_err());
    }
}
