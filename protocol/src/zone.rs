//! IANA time zones for daily schedule windows, read at run time from the system's time-zone
//! database (`/usr/share/zoneinfo`, Debian's `tzdata`; `TZDIR` points elsewhere) through jiff.
//!
//! The zone rules are not compiled in: a built-in copy of the whole database costs the edge agent
//! about 2 MB of resident memory (its tables are relocated at start), and the system's copy is
//! the one the operating system keeps up to date when a country changes its rules. `UTC` needs
//! no database.

use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, Utc};

/// A named time zone.
#[derive(Debug, Clone)]
pub struct Zone {
    name: String,
    tz: jiff::tz::TimeZone,
}

/// Why a zone name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{name:?} is not a time zone of this system's database: {reason}")]
pub struct ZoneError {
    pub name: String,
    pub reason: String,
}

impl PartialEq for Zone {
    fn eq(&self, other: &Zone) -> bool {
        self.name == other.name
    }
}

impl Zone {
    /// Coordinated Universal Time.
    pub fn utc() -> Zone {
        Zone {
            name: "UTC".to_string(),
            tz: jiff::tz::TimeZone::UTC,
        }
    }

    /// The zone with an IANA name such as `Europe/Paris`, looked up in the system's database.
    pub fn named(name: &str) -> Result<Zone, ZoneError> {
        if name.eq_ignore_ascii_case("UTC") {
            return Ok(Zone::utc());
        }
        // jiff resolves names relative to the database directory; a path is never a zone name.
        if name.is_empty() || name.starts_with('/') || name.split('/').any(|p| p == "..") {
            return Err(ZoneError {
                name: name.to_string(),
                reason: "not an IANA time zone name (e.g. Europe/Paris)".to_string(),
            });
        }
        let tz = jiff::tz::TimeZone::get(name).map_err(|e| ZoneError {
            name: name.to_string(),
            reason: e.to_string(),
        })?;
        let name = tz.iana_name().unwrap_or(name).to_string();
        Ok(Zone { name, tz })
    }

    /// The IANA name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The local wall-clock time of an instant.
    pub fn local(&self, t: DateTime<Utc>) -> NaiveDateTime {
        let civil = self.tz.to_datetime(timestamp(t));
        let date = NaiveDate::from_ymd_opt(
            i32::from(civil.year()),
            civil.month().unsigned_abs().into(),
            civil.day().unsigned_abs().into(),
        );
        let time = NaiveTime::from_hms_nano_opt(
            civil.hour().unsigned_abs().into(),
            civil.minute().unsigned_abs().into(),
            civil.second().unsigned_abs().into(),
            civil.subsec_nanosecond().unsigned_abs(),
        );
        match (date, time) {
            (Some(d), Some(t)) => d.and_time(t),
            // jiff's civil range lies within chrono's; this is not reached.
            _ => t.naive_utc(),
        }
    }

    /// The instant of a local wall-clock time. A time that does not exist (skipped by a DST
    /// change) is shifted forward by the gap, to the first instant after it, as clocks do; a
    /// time that exists twice (the hour repeated in autumn) is its first occurrence. `None`
    /// only outside the representable range.
    pub fn instant(&self, local: NaiveDateTime) -> Option<DateTime<Utc>> {
        use chrono::{Datelike, Timelike};
        let civil = jiff::civil::DateTime::new(
            i16::try_from(local.year()).ok()?,
            i8::try_from(local.month()).ok()?,
            i8::try_from(local.day()).ok()?,
            i8::try_from(local.hour()).ok()?,
            i8::try_from(local.minute()).ok()?,
            i8::try_from(local.second()).ok()?,
            i32::try_from(local.nanosecond().min(999_999_999)).ok()?,
        )
        .ok()?;
        let ts = self.tz.to_ambiguous_timestamp(civil).compatible().ok()?;
        DateTime::from_timestamp(ts.as_second(), ts.subsec_nanosecond().unsigned_abs())
    }
}

fn timestamp(t: DateTime<Utc>) -> jiff::Timestamp {
    jiff::Timestamp::new(t.timestamp(), t.timestamp_subsec_nanos() as i32).unwrap_or(
        if t.timestamp() < 0 {
            jiff::Timestamp::MIN
        } else {
            jiff::Timestamp::MAX
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    fn local(s: &str) -> NaiveDateTime {
        s.parse().unwrap()
    }

    #[test]
    fn paris_in_winter_and_summer() {
        let paris = Zone::named("Europe/Paris").unwrap();
        assert_eq!(paris.name(), "Europe/Paris");
        assert_eq!(
            paris.local(at("2026-12-01T22:30:00Z")),
            local("2026-12-01T23:30:00")
        );
        assert_eq!(
            paris.local(at("2027-07-01T16:30:00Z")),
            local("2027-07-01T18:30:00")
        );
        assert_eq!(
            paris.instant(local("2027-07-01T18:30:00")),
            Some(at("2027-07-01T16:30:00Z"))
        );
    }

    #[test]
    fn dst_gap_and_fold() {
        let paris = Zone::named("Europe/Paris").unwrap();
        // 2027-03-28: 02:00 → 03:00. 02:30 does not exist: it becomes 03:30 local = 01:30 UTC.
        assert_eq!(
            paris.instant(local("2027-03-28T02:30:00")),
            Some(at("2027-03-28T01:30:00Z"))
        );
        // 2026-10-25: 03:00 → 02:00. 02:30 exists twice: the first is 00:30 UTC.
        assert_eq!(
            paris.instant(local("2026-10-25T02:30:00")),
            Some(at("2026-10-25T00:30:00Z"))
        );
    }

    #[test]
    fn utc_needs_no_database_and_bad_names_are_refused() {
        let utc = Zone::named("utc").unwrap();
        assert_eq!(utc, Zone::utc());
        assert_eq!(
            utc.instant(local("2026-12-01T10:00:00")),
            Some(at("2026-12-01T10:00:00Z"))
        );
        for bad in [
            "Mars/Olympus",
            "",
            "/etc/passwd",
            "../../etc/passwd",
            "Europe/../UTC",
        ] {
            let err = Zone::named(bad).unwrap_err();
            assert_eq!(err.name, bad);
        }
    }

    #[test]
    fn extreme_instants_do_not_panic() {
        let paris = Zone::named("Europe/Paris").unwrap();
        let _ = paris.local(DateTime::<Utc>::MIN_UTC);
        let _ = paris.local(DateTime::<Utc>::MAX_UTC);
        assert_eq!(paris.instant(NaiveDateTime::MAX), None);
    }
}
