//! Reading a JSON request body so that a broken one is answered like any other bad value: 400
//! with the path of the offending field (`[2].end`, `tags[0]`), or 413 when the body is over
//! the `json` limit. Rocket's own `Json` guard answers 422 without saying where.

use rocket::data::{Data, Limits};
use serde::de::DeserializeOwned;

use crate::error::{ApiError, ApiResult};

/// Reads `data` (at most the `json` limit) as a `T`. A refusal names the field by its path in
/// the body, after `prefix` (e.g. `payload.` where the body is a command's payload); a body
/// that is not JSON at all names `.`.
pub async fn read_json<T: DeserializeOwned>(
    data: Data<'_>,
    limits: &Limits,
    prefix: &str,
) -> ApiResult<T> {
    let limit = limits.get("json").unwrap_or(Limits::JSON);
    let bytes = data
        .open(limit)
        .into_bytes()
        .await
        .map_err(|e| ApiError::bad_request(format!("the body could not be read: {e}")))?;
    if !bytes.is_complete() {
        return Err(ApiError::TooLarge(format!(
            "the body is over the JSON limit of {} bytes",
            limit.as_u64()
        )));
    }
    let text = std::str::from_utf8(&bytes)
        .map_err(|e| ApiError::bad_field(".", format!("the body is not UTF-8: {e}")))?;
    let mut de = serde_json::Deserializer::from_str(text);
    let value: T = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let message = e.inner().to_string();
        let mut path = e.path().to_string();
        // A missing or unknown field is reported at its object; name the field itself.
        if let Some(name) = named_field(&message)
            && !path.ends_with(&format!(".{name}"))
            && path != name
        {
            path = match path.as_str() {
                "." => name.to_string(),
                _ => format!("{path}.{name}"),
            };
        }
        let field = match path.as_str() {
            "." => ".".to_string(),
            path => format!("{prefix}{path}"),
        };
        ApiError::bad_field(field.clone(), format!("{field}: {message}"))
    })?;
    // Nothing but white space may follow the value.
    de.end()
        .map_err(|e| ApiError::bad_field(".", format!("after the JSON value: {e}")))?;
    Ok(value)
}

/// The field serde names in "missing field `x`" and "unknown field `x`, expected …".
fn named_field(message: &str) -> Option<&str> {
    let rest = message
        .strip_prefix("missing field `")
        .or_else(|| message.strip_prefix("unknown field `"))?;
    rest.split('`').next()
}

#[cfg(test)]
mod tests {
    use ems_protocol::api::TariffPeriod;

    /// The path serde_path_to_error reports for each kind of mistake, as the routes name it.
    fn field_of(body: &str) -> String {
        let mut de = serde_json::Deserializer::from_str(body);
        let err = serde_path_to_error::deserialize::<_, Vec<TariffPeriod>>(&mut de).unwrap_err();
        err.path().to_string()
    }

    #[test]
    fn the_path_names_the_period_and_field() {
        let good =
            r#""start":"2026-12-01T00:00:00Z","end":"2026-12-01T01:00:00Z","import_price":0.1"#;
        assert_eq!(
            field_of(&format!("[{{{good},\"export_price\":NaN}}]")),
            "[0].export_price"
        );
        assert_eq!(field_of(&format!("[{{{good}}}]")), "[0]");
        assert_eq!(
            super::named_field("missing field `export_price` at line 1 column 9"),
            Some("export_price")
        );
        assert_eq!(field_of("null"), ".");
    }
}
