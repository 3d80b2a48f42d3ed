//! Points in time as the user types them: `now`, relative (`-90s`, `-15m`, `-1h`, `-7d`, `-2w`,
//! also with `+`), a date (`2026-01-31`, midnight UTC) or RFC 3339.

use chrono::{DateTime, Duration, NaiveDate, Utc};

/// Parses `text` relative to `now`. The error names the accepted forms.
pub fn parse(text: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, String> {
    let t = text.trim();
    if t.eq_ignore_ascii_case("now") {
        return Ok(now);
    }
    if let Some(rest) = t.strip_prefix('-') {
        return Ok(now - duration(rest).ok_or_else(|| forms(text))?);
    }
    if let Some(rest) = t.strip_prefix('+') {
        return Ok(now + duration(rest).ok_or_else(|| forms(text))?);
    }
    if let Ok(d) = DateTime::parse_from_rfc3339(t) {
        return Ok(d.with_timezone(&Utc));
    }
    if let Ok(d) = NaiveDate::parse_from_str(t, "%Y-%m-%d") {
        return Ok(d.and_hms_opt(0, 0, 0).expect("midnight exists").and_utc());
    }
    Err(forms(text))
}

/// A relative offset in the grammar of [`ems_protocol::duration`].
fn duration(text: &str) -> Option<Duration> {
    ems_protocol::duration::parse_seconds(text)
        .ok()
        .and_then(Duration::try_seconds)
}

fn forms(text: &str) -> String {
    format!(
        "{text:?} is not a time; use `now`, a relative time such as -90s, -15m, -1h, -7d, -2w, \
         a date (2026-01-31) or RFC 3339 (2026-01-31T12:00:00Z)"
    )
}

/// RFC 3339 UTC with whole seconds, as the API wants it.
pub fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 31, 12, 0, 0).unwrap()
    }

    #[test]
    fn relative_times() {
        assert_eq!(parse("now", now()).unwrap(), now());
        assert_eq!(parse("-1h", now()).unwrap(), now() - Duration::hours(1));
        assert_eq!(parse("-7d", now()).unwrap(), now() - Duration::days(7));
        assert_eq!(parse("-90", now()).unwrap(), now() - Duration::seconds(90));
        assert_eq!(parse("+15m", now()).unwrap(), now() + Duration::minutes(15));
    }

    #[test]
    fn absolute_times() {
        assert_eq!(parse("2026-01-31T13:00:00+01:00", now()).unwrap(), now());
        assert_eq!(
            parse("2026-01-31", now()).unwrap(),
            Utc.with_ymd_and_hms(2026, 1, 31, 0, 0, 0).unwrap()
        );
    }

    #[test]
    fn nonsense_names_the_forms() {
        let err = parse("yesterday", now()).unwrap_err();
        assert!(err.contains("-1h"), "{err}");
        assert!(parse("-1y", now()).is_err());
        assert!(parse("-h", now()).is_err());
    }
}
