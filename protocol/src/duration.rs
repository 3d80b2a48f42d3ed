//! Lengths of time as people write them, in the REST API (`?bucket=`) and on `emsctl`'s command
//! line (`--bucket`, `--from -7d`), and the grid that history buckets sit on. The cloud and
//! `emsctl` both use this module, so a width `emsctl` accepts is one the cloud accepts, and a
//! bucket `emsctl` pages by starts where the cloud's does.
//!
//! Grammar: a whole number with an optional unit: none or `s` seconds, `m` or `min` minutes,
//! `h` hours, `d` days, `w` weeks (`90`, `90s`, `15m`, `1h`, `7d`, `2w`).

use chrono::{DateTime, TimeZone, Utc};

/// Why a text is not a duration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("{0:?} is not a duration; write a whole number with a unit: 90s, 15m, 1h, 7d, 2w")]
    Malformed(String),
    #[error("{0:?} has an unknown unit; use s, m, h, d or w")]
    UnknownUnit(String),
    #[error("{0:?} is longer than any time ems stores")]
    TooLong(String),
}

/// Seconds of `text` (surrounding spaces allowed).
pub fn parse_seconds(text: &str) -> Result<i64, DurationError> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    if num.is_empty() {
        return Err(DurationError::Malformed(text.to_string()));
    }
    let unit_s: i64 = match unit {
        "" | "s" => 1,
        "m" | "min" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        _ => return Err(DurationError::UnknownUnit(text.to_string())),
    };
    // Beyond 100 years nothing is stored; also keeps every later `DateTime` arithmetic finite.
    const MAX_S: i64 = 100 * 366 * 86_400;
    num.parse::<i64>()
        .ok()
        .and_then(|n| n.checked_mul(unit_s))
        .filter(|s| *s <= MAX_S)
        .ok_or_else(|| DurationError::TooLong(text.to_string()))
}

/// History buckets start at whole multiples of their width from this instant: Monday
/// 2000-01-03 00:00 UTC, the origin of TimescaleDB's `time_bucket` (so a 1-week bucket starts
/// on a Monday).
pub fn bucket_origin() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2000, 1, 3, 0, 0, 0)
        .single()
        .expect("a valid UTC time")
}

/// The start of the `bucket_s` bucket that holds `t` (whole seconds).
pub fn align_down(t: DateTime<Utc>, bucket_s: i64) -> DateTime<Utc> {
    assert!(bucket_s > 0, "a bucket is at least one second wide");
    let o = bucket_origin().timestamp();
    let start = o + (t.timestamp() - o).div_euclid(bucket_s) * bucket_s;
    DateTime::from_timestamp(start, 0).expect("within chrono's range")
}

/// `t` when it is a bucket start, else the start of the next bucket.
pub fn align_up(t: DateTime<Utc>, bucket_s: i64) -> DateTime<Utc> {
    let down = align_down(t, bucket_s);
    if down == t {
        t
    } else {
        down + chrono::Duration::seconds(bucket_s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_unit_and_a_bare_number() {
        for (text, s) in [
            ("90", 90),
            ("90s", 90),
            ("15m", 900),
            ("15min", 900),
            ("1h", 3600),
            ("7d", 604_800),
            ("2w", 1_209_600),
            (" 1h ", 3600),
            ("0s", 0),
        ] {
            assert_eq!(parse_seconds(text), Ok(s), "{text}");
        }
    }

    #[test]
    fn refusals_say_why() {
        assert!(matches!(
            parse_seconds(""),
            Err(DurationError::Malformed(_))
        ));
        assert!(matches!(
            parse_seconds("h"),
            Err(DurationError::Malformed(_))
        ));
        assert!(matches!(
            parse_seconds("-5m"),
            Err(DurationError::Malformed(_))
        ));
        assert!(matches!(
            parse_seconds("5y"),
            Err(DurationError::UnknownUnit(_))
        ));
        assert!(matches!(
            parse_seconds("1.5h"),
            Err(DurationError::UnknownUnit(_))
        ));
        assert!(matches!(
            parse_seconds("99999999999999999999"),
            Err(DurationError::TooLong(_))
        ));
        assert!(matches!(
            parse_seconds("9999999999999w"),
            Err(DurationError::TooLong(_))
        ));
        let message = parse_seconds("5y").unwrap_err().to_string();
        assert!(message.contains("\"5y\"") && message.contains("s, m, h, d or w"));
    }

    #[test]
    fn buckets_sit_on_the_grid_from_the_origin() {
        let t = |s: &str| s.parse::<DateTime<Utc>>().unwrap();
        assert_eq!(
            align_down(t("2026-01-31T12:03:20.5Z"), 300),
            t("2026-01-31T12:00:00Z")
        );
        assert_eq!(
            align_up(t("2026-01-31T12:03:20Z"), 300),
            t("2026-01-31T12:05:00Z")
        );
        assert_eq!(
            align_up(t("2026-01-31T12:05:00Z"), 300),
            t("2026-01-31T12:05:00Z")
        );
        // A week bucket starts on a Monday (2026-01-26), also before the origin.
        assert_eq!(
            align_down(t("2026-01-31T12:00:00Z"), 604_800),
            t("2026-01-26T00:00:00Z")
        );
        assert_eq!(
            align_down(t("1999-12-31T00:00:00Z"), 604_800),
            t("1999-12-27T00:00:00Z")
        );
    }
}
