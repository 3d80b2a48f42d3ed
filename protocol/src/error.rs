//! The one error type of the protocol crate.

/// Why a message was refused. Every variant names the field (a dotted path such as
/// `battery.soc`, or `.` for the whole message) so that the sender can fix it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ProtocolError {
    /// The text is not JSON of the expected shape: bad syntax, a wrong type, a missing or unknown
    /// field, an unknown enum value, a number out of range.
    #[error("malformed message at `{path}`: {message}")]
    Malformed { path: String, message: String },
    /// The JSON has the right shape but a value breaks a rule (range, finiteness, consistency).
    #[error("invalid `{field}`: {reason}")]
    Invalid { field: String, reason: String },
}

impl ProtocolError {
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        ProtocolError::Invalid {
            field: field.into(),
            reason: reason.into(),
        }
    }

    /// The dotted path of the offending field.
    pub fn field(&self) -> &str {
        match self {
            ProtocolError::Malformed { path, .. } => path,
            ProtocolError::Invalid { field, .. } => field,
        }
    }

    pub(crate) fn from_path_error(err: serde_path_to_error::Error<serde_json::Error>) -> Self {
        let path = err.path().to_string();
        ProtocolError::Malformed {
            path,
            message: err.into_inner().to_string(),
        }
    }
}

/// Deserialises `text` as `T`, reporting the path of the first offending field.
pub(crate) fn from_str_with_path<'de, T: serde::Deserialize<'de>>(
    text: &'de str,
) -> Result<T, ProtocolError> {
    let mut de = serde_json::Deserializer::from_str(text);
    let value =
        serde_path_to_error::deserialize(&mut de).map_err(ProtocolError::from_path_error)?;
    de.end().map_err(|e| ProtocolError::Malformed {
        path: ".".into(),
        message: e.to_string(),
    })?;
    Ok(value)
}

/// Like [`from_str_with_path`] for an already parsed value, with `prefix` prepended to the path.
pub(crate) fn from_value_with_path<T: serde::de::DeserializeOwned>(
    value: serde_json::Value,
    prefix: &str,
) -> Result<T, ProtocolError> {
    serde_path_to_error::deserialize(value).map_err(|err| {
        let inner = err.path().to_string();
        let path = if inner == "." {
            prefix.to_string()
        } else {
            format!("{prefix}.{inner}")
        };
        ProtocolError::Malformed {
            path,
            message: err.into_inner().to_string(),
        }
    })
}
