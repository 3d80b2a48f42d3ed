//! The schedule `SET_SCHEDULE` sets: kept in `<data_dir>/schedule.json` so that it survives a
//! restart and runs while the cloud is unreachable, and turned into the controller's schedule
//! action each cycle from the wall clock (the windows are wall-clock times by nature).
//!
//! A new schedule is checked whole (the protocol's rules, `valid_until` ahead, every action
//! within the battery's limits) and written (temporary file, fsync, rename) before it replaces
//! the old one, so a crash leaves the old or the new schedule, never half of one. A file that
//! cannot be read at start is set aside (`schedule.json.bad`) and logged: the agent runs
//! without a schedule rather than not at all.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use ems_protocol::schedule::{Active, Schedule, SchedulePayload, WindowAction};

use crate::control::{BatteryLimits, ScheduleAction, Strategy};

#[derive(Debug, thiserror::Error)]
pub enum ScheduleError {
    #[error("{0}")]
    Refused(String),
    #[error("writing {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The schedule in force and where it is kept.
pub struct Schedules {
    path: PathBuf,
    current: Option<Schedule>,
}

/// The active window, for telemetry (`system_status.schedule`, an additive field).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ActiveWindow {
    pub window: usize,
    pub action: &'static str,
    pub until: DateTime<Utc>,
}

impl Schedules {
    /// Loads `<data_dir>/schedule.json` if there is one.
    pub fn open(data_dir: &Path) -> Schedules {
        let path = data_dir.join("schedule.json");
        let current = match std::fs::read(&path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => {
                tracing::error!(
                    "schedule: cannot read {}: {e}; running without",
                    path.display()
                );
                None
            }
            Ok(bytes) => match serde_json::from_slice::<SchedulePayload>(&bytes)
                .map_err(|e| e.to_string())
                .and_then(|p| Schedule::from_payload(&p).map_err(|e| e.to_string()))
            {
                Ok(s) => {
                    tracing::info!(
                        windows = s.windows.len(),
                        valid_until = ?s.valid_until,
                        "schedule loaded from {}",
                        path.display()
                    );
                    Some(s)
                }
                Err(e) => {
                    let bad = path.with_extension("json.bad");
                    let _ = std::fs::rename(&path, &bad);
                    tracing::error!(
                        "schedule: {} is not a valid schedule ({e}); moved to {} and running \
                         without",
                        path.display(),
                        bad.display()
                    );
                    None
                }
            },
        };
        Schedules { path, current }
    }

    pub fn current(&self) -> Option<&Schedule> {
        self.current.as_ref()
    }

    /// Checks `schedule` at `now` against the battery, keeps it durably, and puts it in force.
    /// An empty schedule clears (and removes the file).
    pub fn replace(
        &mut self,
        schedule: Schedule,
        now: DateTime<Utc>,
        battery: &BatteryLimits,
        strategy: &Strategy,
    ) -> Result<(), ScheduleError> {
        schedule
            .check_current(now)
            .map_err(|e| ScheduleError::Refused(e.to_string()))?;
        for (i, w) in schedule.windows.iter().enumerate() {
            to_action(&w.action, strategy)
                .check(battery)
                .map_err(|reason| ScheduleError::Refused(format!("windows[{i}]: {reason}")))?;
        }
        if schedule.windows.is_empty() {
            match std::fs::remove_file(&self.path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => {
                    return Err(ScheduleError::Write {
                        path: self.path.clone(),
                        source,
                    });
                }
            }
            self.current = None;
            return Ok(());
        }
        let json = serde_json::to_vec_pretty(&schedule.to_payload())
            .map_err(|e| ScheduleError::Refused(e.to_string()))?;
        write_durably(&self.path, &json).map_err(|source| ScheduleError::Write {
            path: self.path.clone(),
            source,
        })?;
        self.current = Some(schedule);
        Ok(())
    }

    /// The window in force at `now` and the action it asks of AUTO.
    pub fn at(
        &self,
        now: DateTime<Utc>,
        strategy: &Strategy,
    ) -> Option<(ActiveWindow, ScheduleAction)> {
        let Active {
            index,
            window,
            until,
        } = self.current.as_ref()?.active_at(now)?;
        Some((
            ActiveWindow {
                window: index,
                action: window.action.name(),
                until,
            },
            to_action(&window.action, strategy),
        ))
    }
}

/// A window's action as the controller's: `LIMITS` are the configured strategy with the
/// window's values in place (never its backup reserve, which only the config sets).
pub fn to_action(action: &WindowAction, strategy: &Strategy) -> ScheduleAction {
    match *action {
        WindowAction::Charge {
            power_w,
            to_soc_pct,
            from_grid,
        } => ScheduleAction::Charge {
            power_w,
            to_soc_pct,
            from_grid,
        },
        WindowAction::Hold => ScheduleAction::Hold,
        WindowAction::Discharge {
            power_w,
            down_to_soc_pct,
        } => ScheduleAction::Discharge {
            power_w,
            down_to_soc_pct,
        },
        WindowAction::Limits {
            target_grid_w,
            export_limit_w,
            import_limit_w,
        } => ScheduleAction::Strategy(Strategy {
            target_grid_w: target_grid_w.unwrap_or(strategy.target_grid_w),
            export_limit_w: export_limit_w.or(strategy.export_limit_w),
            import_limit_w: import_limit_w.or(strategy.import_limit_w),
            backup_reserve_pct: None,
            ..strategy.clone()
        }),
    }
}

/// Writes `bytes` to a temporary file beside `path`, syncs it, renames it over `path` and syncs
/// the directory.
fn write_durably(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("json.tmp");
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schedule(v: serde_json::Value) -> Schedule {
        Schedule::from_value(v).unwrap()
    }

    fn now() -> DateTime<Utc> {
        "2026-12-01T12:00:00Z".parse().unwrap()
    }

    #[test]
    fn a_schedule_survives_a_restart_and_a_clear_removes_it() {
        let dir = tempfile::tempdir().unwrap();
        let battery = BatteryLimits::default();
        let strategy = Strategy::default();
        let mut s = Schedules::open(dir.path());
        assert!(s.current().is_none());
        s.replace(
            schedule(json!({"valid_until": "2026-12-08T00:00:00Z", "windows": [
                {"daily_start": "11:00", "daily_end": "13:00", "action": "CHARGE", "power_w": 1500, "to_soc_pct": 80}
            ]})),
            now(),
            &battery,
            &strategy,
        )
        .unwrap();
        let again = Schedules::open(dir.path());
        let (active, action) = again.at(now(), &strategy).unwrap();
        assert_eq!(active.action, "CHARGE");
        assert_eq!(
            active.until,
            "2026-12-01T13:00:00Z".parse::<DateTime<Utc>>().unwrap()
        );
        assert_eq!(
            action,
            ScheduleAction::Charge {
                power_w: 1500.0,
                to_soc_pct: 80.0,
                from_grid: true
            }
        );
        let mut again = again;
        again
            .replace(schedule(json!({"windows": []})), now(), &battery, &strategy)
            .unwrap();
        assert!(Schedules::open(dir.path()).current().is_none());
    }

    #[test]
    fn beyond_the_battery_or_past_it_is_refused_and_the_old_one_stays() {
        let dir = tempfile::tempdir().unwrap();
        let battery = BatteryLimits::default();
        let strategy = Strategy::default();
        let mut s = Schedules::open(dir.path());
        let good = schedule(json!({"valid_until": "2026-12-08T00:00:00Z", "windows": [
            {"daily_start": "11:00", "daily_end": "13:00", "action": "HOLD"}]}));
        s.replace(good.clone(), now(), &battery, &strategy).unwrap();
        let too_strong = schedule(json!({"valid_until": "2026-12-08T00:00:00Z", "windows": [
            {"daily_start": "01:00", "daily_end": "02:00", "action": "DISCHARGE", "power_w": 90000, "down_to_soc_pct": 20}]}));
        let err = s
            .replace(too_strong, now(), &battery, &strategy)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("windows[0]") && err.contains("discharge limit"),
            "{err}"
        );
        let past = schedule(json!({"valid_until": "2026-11-01T00:00:00Z", "windows": [
            {"daily_start": "01:00", "daily_end": "02:00", "action": "HOLD"}]}));
        assert!(s.replace(past, now(), &battery, &strategy).is_err());
        assert_eq!(Schedules::open(dir.path()).current(), Some(&good));
    }

    #[test]
    fn a_corrupt_file_is_set_aside() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("schedule.json"), b"{not json").unwrap();
        let s = Schedules::open(dir.path());
        assert!(s.current().is_none());
        assert!(dir.path().join("schedule.json.bad").exists());
    }

    #[test]
    fn limits_keep_the_configured_rest_but_never_the_reserve() {
        let strategy = Strategy {
            export_limit_w: Some(3000.0),
            backup_reserve_pct: Some(30.0),
            ..Strategy::default()
        };
        let a = to_action(
            &WindowAction::Limits {
                target_grid_w: None,
                export_limit_w: Some(0.0),
                import_limit_w: None,
            },
            &strategy,
        );
        let ScheduleAction::Strategy(s) = a else {
            panic!("{a:?}")
        };
        assert_eq!(s.export_limit_w, Some(0.0));
        assert_eq!(s.backup_reserve_pct, None);
    }
}
