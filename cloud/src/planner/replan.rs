//! The background re-planner (receding horizon): every `planner.check_interval_ms` each
//! instance looks at the devices whose planner settings say `"cloud"` and plans again, and
//! sends the plan as a `SET_SCHEDULE`, those that are due:
//! - their tariff or settings changed since the last plan (`change_seq` > `planned_seq`);
//! - the last plan is `planner.replan_interval_s` old (or there is none);
//! - a packet newer than the plan reports a SoC more than `planner.soc_deviation_pct` away
//!   from the plan's SoC at that moment.
//!
//! On the interval alone, a plan that is the same as the schedule the device accepted (same
//! windows from now on, powers within 100 W and SoCs within 2 points, see
//! [`same_plan`]) is not sent again while that schedule still covers half the horizon.
//!
//! A device with no settings, or `"off"`, is never planned here. Instances sharing the
//! database plan each device once: a device is taken with an `UPDATE … RETURNING` that only
//! succeeds while nobody holds it (`claimed_until` past) and nobody planned it since this
//! instance read it (`planned_at` unchanged); PostgreSQL's row lock makes the second of two
//! simultaneous claims see the first's update and take nothing. A claim lasts
//! `planner.claim_s`, so a device held by an instance that died is planned again after that.
//!
//! Plans use the same code as `GET /devices/<id>/plan` ([`crate::api::plan::plan_device`]);
//! commands are issued as by `POST …/plan/apply`, by the user `planner`, and audited
//! (`COMMAND_ISSUED`).

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use ems_protocol::api::Role;
use rocket::fairing::AdHoc;

use crate::api::commands::{issue, record_issued};
use crate::api::plan::{PlanParams, plan_device};
use crate::api::planner::{COLUMNS, DevicePlanner, from_row};
use crate::audit::Audit;
use crate::auth::{ApiUser, Operator};
use crate::config::{CloudConfig, PlannerConfig};
use crate::db::Db;
use crate::hub::Hub;
use crate::planner::lp::SLOT_H;
use crate::planner::schedule::{same_plan, to_schedule};
use crate::stage::need;
use ems_protocol::schedule::SchedulePayload;

/// The name commands sent by the re-planner carry (`issued_by`) and the audit trail shows.
pub const PLANNER_USER: &str = "planner";

/// [`due`]'s reason when only time has passed.
const INTERVAL: &str = "interval";

/// What a re-plan did.
enum Sent {
    /// A new `SET_SCHEDULE`, by its command id.
    New(String),
    /// Nothing: the device's accepted schedule is the same plan ([`same_plan`]).
    Kept,
}

/// Starts the re-planner on this instance.
pub fn stage() -> AdHoc {
    AdHoc::try_on_ignite("planner", |rocket| async move {
        let config: CloudConfig = need!(rocket);
        let db: Db = need!(rocket);
        let hub: Arc<Hub> = need!(rocket);
        let audit: Audit = need!(rocket);
        let replanner = Replanner {
            instance: hub.instance_id.clone(),
            settings: config.planner.clone(),
            config,
            db,
            hub,
            audit,
        };
        tokio::spawn(replanner.run());
        Ok(rocket)
    })
}

struct Replanner {
    instance: String,
    settings: PlannerConfig,
    config: CloudConfig,
    db: Db,
    hub: Arc<Hub>,
    audit: Audit,
}

/// What a pass reads of one opted-in device to decide whether it is due.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    pub device_id: String,
    pub change_seq: i64,
    pub planned_seq: i64,
    pub planned_at: Option<DateTime<Utc>>,
    pub plan_start: Option<DateTime<Utc>>,
    /// The plan's SoC at its start, then at each slot's end, %.
    pub planned_soc: Option<Vec<f64>>,
    /// The latest packet's SoC and time.
    pub soc: Option<(f64, DateTime<Utc>)>,
}

/// The plan's SoC at `now`, interpolated within the slot (`None` outside the plan).
pub fn planned_soc_at(plan_start: DateTime<Utc>, soc: &[f64], now: DateTime<Utc>) -> Option<f64> {
    let slots = (now - plan_start).num_milliseconds() as f64 / 1000.0 / (SLOT_H * 3600.0);
    if slots < 0.0 || !slots.is_finite() {
        return None;
    }
    let i = slots.floor() as usize;
    let (a, b) = (soc.get(i)?, soc.get(i + 1)?);
    Some(a + (b - a) * (slots - i as f64))
}

/// Why `c` is due for a new plan at `now`, or `None`.
pub fn due(c: &Candidate, s: &PlannerConfig, now: DateTime<Utc>) -> Option<&'static str> {
    if c.change_seq > c.planned_seq {
        return Some("settings or tariff changed");
    }
    let Some(planned_at) = c.planned_at else {
        return Some("never planned");
    };
    if now - planned_at >= chrono::Duration::seconds(s.replan_interval_s as i64) {
        return Some(INTERVAL);
    }
    if let (Some(start), Some(plan), Some((soc, at))) = (c.plan_start, &c.planned_soc, c.soc)
        && at > planned_at
        && let Some(expected) = planned_soc_at(start, plan, at)
        && (soc - expected).abs() > s.soc_deviation_pct
    {
        return Some("SoC departed from the plan");
    }
    None
}

/// Takes `device_id` for `instance` for `claim_s` seconds: the row (the settings' columns, then
/// `change_seq`) when nobody holds the device, it is still opted in and nobody planned it since
/// it was read (`planned_at` as read); `None` otherwise. Of two instances claiming at once, the
/// second waits for the first's row lock, then sees its `claimed_until` and gets `None`.
pub async fn claim(
    client: &tokio_postgres::Client,
    device_id: &str,
    instance: &str,
    claim_s: u64,
    planned_at: Option<DateTime<Utc>>,
) -> Result<Option<tokio_postgres::Row>, tokio_postgres::Error> {
    client
        .query_opt(
            &format!(
                "UPDATE planner_settings SET claimed_by = $2, \
                   claimed_until = now() + $3 * interval '1 second' \
                 WHERE device_id = $1 AND mode = 'cloud' \
                   AND (claimed_until IS NULL OR claimed_until < now()) \
                   AND planned_at IS NOT DISTINCT FROM $4 \
                 RETURNING {COLUMNS}, change_seq"
            ),
            &[&device_id, &instance, &(claim_s as f64), &planned_at],
        )
        .await
}

impl Replanner {
    async fn run(self) {
        let mut tick = tokio::time::interval(Duration::from_millis(
            self.settings.check_interval_ms.max(10),
        ));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Err(e) = self.pass().await {
                tracing::warn!("planner: {e}");
            }
        }
    }

    /// A pooled connection, or `None` (logged) when the database cannot give one: the pass is
    /// skipped and the next tick tries again.
    async fn client(&self) -> Option<deadpool_postgres::Object> {
        match self.db.pool.get().await {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::warn!("planner: no database connection: {e}");
                None
            }
        }
    }

    /// One look at every opted-in device nobody holds.
    async fn pass(&self) -> Result<(), tokio_postgres::Error> {
        let candidates = {
            let Some(client) = self.client().await else {
                return Ok(());
            };
            client
                .query(
                    "SELECT p.device_id, p.change_seq, p.planned_seq, p.planned_at, \
                       p.plan_start, p.planned_soc, t.battery_soc, t.time \
                     FROM planner_settings p \
                     LEFT JOIN LATERAL (SELECT battery_soc, time FROM telemetry \
                       WHERE device_id = p.device_id AND battery_soc IS NOT NULL \
                       ORDER BY time DESC LIMIT 1) t ON true \
                     WHERE p.mode = 'cloud' \
                       AND (p.claimed_until IS NULL OR p.claimed_until < now())",
                    &[],
                )
                .await?
                .iter()
                .map(|r| Candidate {
                    device_id: r.get(0),
                    change_seq: r.get(1),
                    planned_seq: r.get(2),
                    planned_at: r.get(3),
                    plan_start: r.get(4),
                    planned_soc: r.get(5),
                    soc: r
                        .get::<_, Option<f64>>(6)
                        .zip(r.get::<_, Option<DateTime<Utc>>>(7)),
                })
                .collect::<Vec<_>>()
        };
        let now = Utc::now();
        for c in candidates {
            if let Some(why) = due(&c, &self.settings, now) {
                self.replan(&c, why).await?;
            }
        }
        Ok(())
    }

    /// Claims `c`, plans it, sends the plan, records the attempt and releases the claim.
    async fn replan(&self, c: &Candidate, why: &str) -> Result<(), tokio_postgres::Error> {
        let Some(client) = self.client().await else {
            return Ok(());
        };
        let claimed = claim(
            &client,
            &c.device_id,
            &self.instance,
            self.settings.claim_s,
            c.planned_at,
        )
        .await?;
        let Some(row) = claimed else {
            // Another instance has it, planned it since, or it opted out.
            return Ok(());
        };
        drop(client);
        let settings: DevicePlanner = from_row(&row);
        let change_seq: i64 = row.get(COLUMNS.split(',').count());
        tracing::info!(device = %c.device_id, why, "planner: planning");
        // On the interval alone, a plan equal to the one the device accepted is not sent again.
        let keep = if why == INTERVAL {
            self.accepted_schedule(&settings).await
        } else {
            None
        };
        let (outcome, plan) = self.plan_and_send(&settings, keep.as_ref()).await;
        let (command_id, error, plan) = match outcome {
            Ok(Sent::New(id)) => (Some(id), None, plan),
            Ok(Sent::Kept) => {
                tracing::info!(device = %c.device_id, "planner: the plan is unchanged; kept");
                // The device goes on with the schedule it has: the SoC is checked against it.
                let old = c.plan_start.zip(c.planned_soc.clone());
                (None, None, old.or(plan))
            }
            Err(e) => {
                tracing::warn!(device = %c.device_id, "planner: no plan sent: {e}");
                (None, Some(e), plan)
            }
        };
        let (plan_start, planned_soc) = plan.unzip();
        let Some(client) = self.client().await else {
            // The claim runs out by itself.
            return Ok(());
        };
        client
            .execute(
                "UPDATE planner_settings SET planned_at = now(), \
                   planned_seq = greatest(planned_seq, $3), plan_start = $4, planned_soc = $5, \
                   last_command_id = coalesce($6, last_command_id), last_error = $7, \
                   claimed_by = NULL, claimed_until = NULL \
                 WHERE device_id = $1 AND claimed_by = $2",
                &[
                    &c.device_id,
                    &self.instance,
                    &change_seq,
                    &plan_start,
                    &planned_soc,
                    &command_id,
                    &error,
                ],
            )
            .await?;
        Ok(())
    }

    /// The schedule of the device's last planner command, when the device accepted it.
    async fn accepted_schedule(&self, d: &DevicePlanner) -> Option<SchedulePayload> {
        let id = d.last_command_id.as_deref()?;
        let client = self.db.pool.get().await.ok()?;
        let row = client
            .query_opt(
                "SELECT payload FROM commands WHERE command_id = $1 AND status = 'ACCEPTED'",
                &[&id],
            )
            .await
            .ok()??;
        serde_json::from_value(row.get(0)).ok()
    }

    /// Plans with the stored settings and sends the plan, unless it is the same as `keep` (the
    /// schedule the device has, while that still covers half the horizon); what was done, or
    /// why nothing was, and the plan's start and SoC course.
    async fn plan_and_send(
        &self,
        d: &DevicePlanner,
        keep: Option<&SchedulePayload>,
    ) -> (Result<Sent, String>, Option<(DateTime<Utc>, Vec<f64>)>) {
        let params = d.settings.params(&PlanParams::default());
        let computed = match plan_device(&self.db, &d.device_id, &params).await {
            Ok(c) => c,
            Err(e) => return (Err(e.to_string()), None),
        };
        let course: Vec<f64> = std::iter::once(computed.answer.soc_pct)
            .chain(computed.planned.iter().map(|p| p.soc_pct))
            .collect();
        let payload = to_schedule(computed.start, &computed.planned);
        let now = Utc::now();
        let half_horizon = chrono::Duration::seconds((d.settings.hours * 1800.0) as i64);
        if let Some(sent) = keep
            && sent
                .valid_until
                .is_some_and(|until| until - now >= half_horizon)
            && same_plan(sent, &payload, now)
        {
            return (Ok(Sent::Kept), Some((computed.start, course)));
        }
        let body = serde_json::json!({"action": "SET_SCHEDULE", "payload": payload}).to_string();
        let operator = Operator(ApiUser {
            name: PLANNER_USER.into(),
            role: Role::Operator,
            expires_at: None,
            devices: None,
            source: None,
        });
        let result = issue(
            &d.device_id,
            None,
            None,
            &operator,
            &self.db,
            &self.hub,
            &self.config,
            body,
        )
        .await;
        record_issued(&self.audit, &operator, &d.device_id, &result);
        let outcome = result
            .map(|(_, record)| Sent::New(record.command_id.clone()))
            .map_err(|e| e.to_string());
        (outcome, Some((computed.start, course)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(min: i64) -> DateTime<Utc> {
        "2026-12-01T00:00:00Z".parse::<DateTime<Utc>>().unwrap() + chrono::Duration::minutes(min)
    }

    fn planned(at_min: i64) -> Candidate {
        Candidate {
            device_id: "d".into(),
            change_seq: 3,
            planned_seq: 3,
            planned_at: Some(at(at_min)),
            plan_start: Some(at(15)),
            // 20 % at 00:15, 30 % at 00:30, 40 % at 00:45.
            planned_soc: Some(vec![20.0, 30.0, 40.0]),
            soc: None,
        }
    }

    #[test]
    fn the_plans_soc_is_interpolated_within_its_slots() {
        let soc = [20.0, 30.0, 40.0];
        assert_eq!(planned_soc_at(at(15), &soc, at(10)), None);
        assert_eq!(planned_soc_at(at(15), &soc, at(15)), Some(20.0));
        assert_eq!(
            planned_soc_at(at(15), &soc, at(37)),
            Some(30.0 + 10.0 * 7.0 / 15.0)
        );
        assert_eq!(planned_soc_at(at(15), &soc, at(45)), None);
    }

    #[test]
    fn due_on_a_change_the_interval_or_a_soc_departure_only() {
        let s = PlannerConfig {
            replan_interval_s: 3600,
            ..PlannerConfig::default()
        };
        let c = planned(10);
        assert_eq!(due(&c, &s, at(20)), None);
        assert_eq!(
            due(
                &Candidate {
                    change_seq: 4,
                    ..c.clone()
                },
                &s,
                at(20)
            ),
            Some("settings or tariff changed")
        );
        assert_eq!(
            due(
                &Candidate {
                    planned_at: None,
                    ..c.clone()
                },
                &s,
                at(20)
            ),
            Some("never planned")
        );
        assert_eq!(due(&c, &s, at(69)), None);
        assert_eq!(due(&c, &s, at(70)), Some("interval"));
        // At 00:30 the plan says 30 %: 38 % is within 10 points, 41 % is not.
        let near = Candidate {
            soc: Some((38.0, at(30))),
            ..c.clone()
        };
        assert_eq!(due(&near, &s, at(31)), None);
        let far = Candidate {
            soc: Some((41.0, at(30))),
            ..c.clone()
        };
        assert_eq!(due(&far, &s, at(31)), Some("SoC departed from the plan"));
        // A packet older than the plan says nothing about it.
        let stale = Candidate {
            soc: Some((90.0, at(5))),
            ..c
        };
        assert_eq!(due(&stale, &s, at(31)), None);
    }
}
