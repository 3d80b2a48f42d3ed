//! The checks a telemetry packet passes before it is queued for storage: it is the
//! connection's device's, its time is within the window the cloud accepts, and its extension
//! fields are storable and not too large. A refusal of a recognisable packet names it, so the
//! device sets it aside instead of resending it.

use ems_protocol::message::ErrorCode;
use ems_protocol::{
    ErrorMessage, ProtocolError, Telemetry, Timestamp, check_storable, telemetry_extensions,
};
use serde_json::Value;

use crate::config::CloudConfig;

/// A frame the session did not take.
#[derive(Debug)]
pub(super) struct Refusal {
    pub error: ErrorMessage,
    /// Counts towards `bad_frame_limit` (the sender's fault, not ours).
    pub counts: bool,
}

impl Refusal {
    pub fn bad(error: ErrorMessage) -> Self {
        Refusal {
            error,
            counts: true,
        }
    }

    /// A recognisable telemetry packet refused for good: the error names it, the device sets it
    /// aside and does not resend it. Not counted towards `bad_frame_limit`: a device with a
    /// broken sensor or clock is told packet by packet instead of being disconnected in a loop.
    pub fn packet(mut error: ErrorMessage, timestamp: Timestamp) -> Self {
        error.timestamps = vec![timestamp];
        Refusal {
            error,
            counts: false,
        }
    }
}

/// `telemetry` as parsed from `raw` (the frame's JSON, when it had fields beyond the spec's),
/// received on `device_id`'s socket at `now_unix`: its extension fields to store, or why not.
pub(super) fn check_telemetry(
    telemetry: &Telemetry,
    raw: Option<Value>,
    device_id: &str,
    config: &CloudConfig,
    now_unix: i64,
) -> Result<Option<Value>, Refusal> {
    if telemetry.device_id != device_id {
        return Err(Refusal::bad(ErrorMessage {
            code: ErrorCode::WrongDevice,
            message: format!(
                "`device_id` {:?} does not match the connection's device {:?}",
                telemetry.device_id, device_id
            ),
            command_id: None,
            timestamps: Vec::new(),
        }));
    }
    let age = now_unix - telemetry.timestamp.unix();
    if -age > config.max_future_skew_s {
        return Err(Refusal::packet(
            ErrorMessage::bad_frame(&ProtocolError::invalid(
                "timestamp",
                format!(
                    "{} is {} s in the future (at most {} s allowed); check the device clock",
                    telemetry.timestamp, -age, config.max_future_skew_s
                ),
            )),
            telemetry.timestamp,
        ));
    }
    if age > config.max_packet_age_s() {
        return Err(Refusal::packet(
            ErrorMessage::bad_frame(&ProtocolError::invalid(
                "timestamp",
                format!(
                    "{} is older than the {} s the cloud accepts",
                    telemetry.timestamp,
                    config.max_packet_age_s()
                ),
            )),
            telemetry.timestamp,
        ));
    }
    let extensions = raw
        .map(|raw| telemetry_extensions(&raw))
        .filter(|ext| !ext.is_empty());
    if let Some(ext) = &extensions {
        check_storable(ext)
            .map_err(|e| Refusal::packet(ErrorMessage::bad_frame(&e), telemetry.timestamp))?;
    }
    if let Some(ext) = &extensions {
        let bytes = json_len(ext);
        if bytes > config.max_extension_bytes {
            return Err(Refusal::packet(
                ErrorMessage::bad_frame(&ProtocolError::invalid(
                    ".",
                    format!(
                        "extension fields take {bytes} bytes, at most {} are stored per packet",
                        config.max_extension_bytes
                    ),
                )),
                telemetry.timestamp,
            ));
        }
    }
    Ok(extensions.map(Value::Object))
}

/// The length of `map` as JSON text, counted without building the text.
fn json_len(map: &serde_json::Map<String, Value>) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    serde_json::to_writer(&mut count, map).expect("a JSON map serialises");
    count.0
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000;

    fn packet(device: &str, at: i64, extra: &str) -> (Telemetry, Option<Value>) {
        let t = Timestamp::from_unix(at).unwrap();
        let text = format!(
            r#"{{"device_id":"{device}","timestamp":"{t}",{extra}
            "system_status":{{"state":"IDLE","mode":"AUTO","error_flags":[],"wifi_strength":-60}},
            "battery":{{"voltage":51.2,"current":0.0,"power":0.0,"soc":50.0}},
            "grid":{{"voltage":230.0,"power":0.0,"frequency":50.0}}}}"#
        );
        let raw: Value = serde_json::from_str(&text).unwrap();
        (Telemetry::parse(&text).unwrap(), Some(raw))
    }

    fn check(device: &str, at: i64, extra: &str) -> Result<Option<Value>, Refusal> {
        let (t, raw) = packet(device, at, extra);
        check_telemetry(&t, raw, "ems_001", &CloudConfig::default(), NOW)
    }

    #[test]
    fn a_spec_packet_passes_with_no_extensions() {
        assert_eq!(check("ems_001", NOW, "").ok(), Some(None));
    }

    #[test]
    fn another_devices_packet_is_refused_and_counted_against_the_socket() {
        let r = check("ems_002", NOW, "").unwrap_err();
        assert_eq!(r.error.code, ErrorCode::WrongDevice);
        assert!(r.counts);
        assert!(r.error.timestamps.is_empty());
    }

    #[test]
    fn the_time_window_is_refused_packet_by_packet_naming_the_packet() {
        let config = CloudConfig::default();
        let future = NOW + config.max_future_skew_s + 1;
        let r = check("ems_001", future, "").unwrap_err();
        assert!(!r.counts, "a bad clock is not a bad sender");
        assert_eq!(
            r.error.timestamps,
            vec![Timestamp::from_unix(future).unwrap()]
        );
        assert!(
            r.error.message.contains("in the future"),
            "{}",
            r.error.message
        );
        assert!(check("ems_001", NOW + config.max_future_skew_s, "").is_ok());

        let old = NOW - config.max_packet_age_s() - 1;
        let r = check("ems_001", old, "").unwrap_err();
        assert!(
            r.error.message.contains("older than"),
            "{}",
            r.error.message
        );
        assert!(check("ems_001", NOW - config.max_packet_age_s(), "").is_ok());
    }

    #[test]
    fn extensions_are_kept_up_to_the_size_limit() {
        let ext = check("ems_001", NOW, r#""firmware":"1.2.3","#).unwrap();
        assert_eq!(ext, Some(serde_json::json!({"firmware": "1.2.3"})));

        let limit = CloudConfig::default().max_extension_bytes;
        // {"blob":"…"} is 11 bytes around the string.
        let fits = format!(r#""blob":"{}","#, "x".repeat(limit - 11));
        assert!(check("ems_001", NOW, &fits).is_ok());
        let over = format!(r#""blob":"{}","#, "x".repeat(limit - 10));
        let r = check("ems_001", NOW, &over).unwrap_err();
        assert!(!r.counts);
        assert!(
            r.error
                .message
                .contains(&format!("take {} bytes", limit + 1)),
            "{}",
            r.error.message
        );
    }

    #[test]
    fn json_len_is_the_length_of_the_text() {
        let v = serde_json::json!({"a": [1, 2.5, "é\"x"], "b": {"c": null}});
        let Value::Object(map) = &v else {
            unreachable!()
        };
        assert_eq!(json_len(map), v.to_string().len());
    }
}
