//! The agent's main loop: every whole wall-clock second it composes the site from the devices'
//! latest readings, steps the state machine, writes the setpoint to the inverter and publishes
//! the spec's telemetry packet. Commands arrive on a channel and are answered exactly once per
//! `command_id`. A schedule (`SET_SCHEDULE`) is kept on disk and its window in force is handed to
//! the controller each cycle from the wall clock.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use chrono::{DateTime, Utc};
use ems_driver_sdk::Role;
use ems_protocol::telemetry::ScheduleWindow;
use ems_protocol::{
    AnswerStatus, Command, CommandAction, CommandAnswer, State, Telemetry, Timestamp,
};
use tokio::sync::{mpsc, oneshot, watch};

use crate::clock::Clock;
use crate::config::AgentConfig;
use crate::control::{Controller, Decision, Rejection};
use crate::devices::DeviceHandle;
use crate::metrics::CycleMetrics;
use crate::schedule::{ActiveWindow, Schedules};
use crate::site::{self, Source};

/// How many answered command ids are remembered for de-duplication.
const ANSWER_MEMORY: usize = 4096;

/// A command from the uplink with the channel its answer goes back on.
pub struct CommandRequest {
    pub command: Command,
    pub reply: oneshot::Sender<CommandAnswer>,
}

/// The latest cycle, for `probe`, health checks and tests.
#[derive(Debug, Clone)]
pub struct Status {
    pub telemetry: Telemetry,
    pub setpoint_w: f64,
    pub lost_devices: Vec<String>,
}

/// Channels the loop talks through.
pub struct Channels {
    /// Telemetry packets, one per second, for the uplink's queue.
    pub telemetry: mpsc::Sender<Telemetry>,
    pub commands: mpsc::Receiver<CommandRequest>,
    /// Whether the cloud link is up (for the manual-mode fallback).
    pub link_up: watch::Receiver<bool>,
    pub status: watch::Sender<Option<Status>>,
    /// Becomes true to stop: the battery goes to 0 W first.
    pub shutdown: watch::Receiver<bool>,
}

pub struct Agent {
    config: AgentConfig,
    controller: Controller,
    devices: Vec<DeviceHandle>,
    started: Instant,
    answered: HashMap<String, CommandAnswer>,
    answered_order: VecDeque<String>,
    /// Where telemetry timestamps come from.
    clock: Clock,
    /// Which seconds have been published (the clock may step back).
    seconds: SecondGuard,
    /// Telemetry fields currently sent as `null` because their values are implausible (logged
    /// when the set changes, not every second).
    implausible: Vec<&'static str>,
    /// Cycle duration and count, for the metrics endpoint.
    cycle_metrics: CycleMetrics,
    /// The schedule `SET_SCHEDULE` set, kept in the data directory.
    schedules: Schedules,
    /// The window in force in the last cycle (its changes are logged).
    window: Option<ActiveWindow>,
}

impl Agent {
    pub fn new(config: AgentConfig, devices: Vec<DeviceHandle>, clock: Clock) -> Self {
        let schedules = Schedules::open(config.data_dir());
        Agent {
            clock,
            seconds: SecondGuard::default(),
            controller: Controller::new(config.limits()),
            config,
            devices,
            started: Instant::now(),
            answered: HashMap::new(),
            answered_order: VecDeque::new(),
            implausible: Vec::new(),
            cycle_metrics: CycleMetrics::default(),
            schedules,
            window: None,
        }
    }

    /// The loop's cycle metrics (clones share the values).
    pub fn cycle_metrics(&self) -> CycleMetrics {
        self.cycle_metrics.clone()
    }

    fn inverter(&self) -> Option<&DeviceHandle> {
        self.devices.iter().find(|d| d.fills(Role::Inverter))
    }

    fn view(&self) -> site::SiteView {
        let slots: Vec<_> = self.devices.iter().map(|d| d.snapshot()).collect();
        let sources: Vec<Source<'_>> = self
            .devices
            .iter()
            .zip(&slots)
            .map(|(d, slot)| Source {
                name: &d.name,
                roles: &d.roles,
                slot,
            })
            .collect();
        site::compose(
            &sources,
            Instant::now(),
            self.started,
            Duration::from_secs_f64(self.config.comm.loss_after_s),
        )
    }

    fn mono_s(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    pub async fn run(mut self, mut ch: Channels) {
        let mut next = next_whole_second(&self.clock);
        let mut resetting: Option<(ResetInProgress, CommandRequest)> = None;
        loop {
            // The clock stepped back since `next` was taken: aim at the next second of the new
            // time, or the loop would sleep for the size of the step.
            if until(&self.clock, next) > Duration::from_secs(1) {
                next = next_whole_second(&self.clock);
            }
            tokio::select! {
                biased;
                _ = ch.shutdown.changed() => {
                    if *ch.shutdown.borrow() {
                        self.write_final_zero().await;
                        return;
                    }
                }
                // While a reset is under way, further commands wait their turn.
                Some(req) = ch.commands.recv(), if resetting.is_none() => {
                    if self.needs_device_reset(&req.command) {
                        // Resetting and re-reading the devices takes bus time (up to 5 s with a
                        // hung driver); the cycles go on meanwhile and the answer comes after.
                        resetting = Some((Box::pin(reset_devices(self.devices.clone())), req));
                    } else {
                        let link = *ch.link_up.borrow();
                        let answer = self.decide(req.command, link);
                        let _ = req.reply.send(answer);
                    }
                }
                _ = async { (&mut resetting.as_mut().expect("guarded").0).await }, if resetting.is_some() => {
                    let (_, req) = resetting.take().expect("guarded");
                    let link = *ch.link_up.borrow();
                    let answer = self.decide(req.command, link);
                    let _ = req.reply.send(answer);
                }
                _ = tokio::time::sleep(until(&self.clock, next)) => {
                    let link = *ch.link_up.borrow();
                    let started = Instant::now();
                    let status = self.cycle(next, link).await;
                    self.cycle_metrics.seconds.observe(started.elapsed().as_secs_f64());
                    self.cycle_metrics.cycles.inc();
                    let publish = self.seconds.check(status.telemetry.timestamp.unix());
                    if publish && ch.telemetry.try_send(status.telemetry.clone()).is_err() {
                        tracing::warn!("telemetry channel full or closed; packet {} not queued", status.telemetry.timestamp);
                    }
                    let _ = ch.status.send(Some(status));
                    next = next_whole_second(&self.clock);
                }
            }
        }
    }

    /// One control cycle for the second `at`.
    pub async fn cycle(&mut self, at: SystemTime, link_up: bool) -> Status {
        self.apply_schedule(at);
        let view = self.view();
        let starting = self.controller.state() == State::Starting
            && view.lost.is_empty()
            && !view.waiting.is_empty();
        let decision = if starting {
            // Devices still coming up inside the start-up window: hold 0 W, no verdict yet; a
            // lease still ends on time.
            let lease_ended = self.controller.expire_lease(self.mono_s());
            Decision {
                state: State::Starting,
                setpoint_w: 0.0,
                error_flags: Vec::new(),
                mode: self.controller.mode(),
                fell_back_to_auto: false,
                lease_ended,
            }
        } else {
            self.controller
                .step(self.mono_s(), &view.measurements, link_up)
        };
        if let Some(lapsed) = decision.lease_ended {
            tracing::warn!(
                mode = %lapsed,
                "the lease of the manual mode ended: back to AUTO"
            );
        }
        if decision.fell_back_to_auto {
            tracing::warn!(
                "cloud link down for {} s: manual mode fell back to AUTO",
                self.config.control.manual_fallback_after_s
            );
        }
        self.write_setpoint(decision.setpoint_w);
        let implausible = site::implausible(&view.measurements);
        if implausible != self.implausible {
            if !implausible.is_empty() {
                tracing::warn!(
                    fields = ?implausible,
                    "implausible measurements are sent as null (unknown)"
                );
            }
            self.implausible = implausible;
        }
        let secs = at
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        let timestamp = Timestamp::from_unix(secs).unwrap_or_else(Timestamp::now);
        let mut telemetry = site::telemetry(
            &self.config.device_id,
            timestamp,
            &view.measurements,
            view.flows,
            &decision,
            site::wifi_strength(),
        );
        telemetry.system_status.schedule = self.window.as_ref().map(|w| ScheduleWindow {
            window: w.window,
            action: w.action.to_string(),
            until: w.until,
        });
        Status {
            telemetry,
            setpoint_w: decision.setpoint_w,
            lost_devices: view.lost,
        }
    }

    /// Puts the schedule window in force at wall-clock time `at` into the controller (none when
    /// no window is open), logging when it changes.
    fn apply_schedule(&mut self, at: SystemTime) {
        let now: DateTime<Utc> = at.into();
        let strategy = self.controller.limits().strategy.clone();
        let found = self.schedules.at(now, &strategy);
        let window = found.as_ref().map(|(w, _)| w.clone());
        if window != self.window {
            match &window {
                Some(w) => tracing::info!(
                    window = w.window,
                    action = w.action,
                    until = %w.until,
                    "schedule window opens"
                ),
                None => tracing::info!("no schedule window in force"),
            }
        }
        let action = found.map(|(_, a)| a);
        if self.controller.schedule_action() != action.as_ref()
            && let Err(e) = self.controller.set_schedule_action(action)
        {
            // Checked when the schedule was accepted; the limits cannot have changed since.
            tracing::error!("schedule window refused by the controller: {}", e.0);
            let _ = self.controller.set_schedule_action(None);
        }
        self.window = window;
    }

    /// Hands the setpoint to the inverter's poller without waiting for the bus: a failing or
    /// hung driver shows up in its slot (and so as a flag in the next cycle), never as a late
    /// cycle.
    fn write_setpoint(&self, power_w: f64) {
        if let Some(inv) = self.inverter() {
            inv.command_power(power_w);
        }
    }

    /// On stopping: writes 0 W and waits for it, at most the call budget and a second.
    async fn write_final_zero(&self) {
        let Some(inv) = self.inverter() else { return };
        let wait = Duration::from_secs_f64(self.config.comm.call_budget_s + 1.0);
        match tokio::time::timeout(wait, inv.set_power(0.0)).await {
            Ok(Ok(())) => tracing::info!("stopped; battery setpoint 0 W"),
            Ok(Err(e)) => tracing::error!("stopping: 0 W not written: {e}"),
            Err(_) => tracing::error!(
                "stopping: 0 W not confirmed within {} s",
                wait.as_secs_f64()
            ),
        }
    }

    /// Applies a command once; a repeated `command_id` gets the first answer again.
    pub async fn handle_command(&mut self, command: Command, link_up: bool) -> CommandAnswer {
        if let Some(previous) = self.answered.get(&command.command_id) {
            return previous.clone();
        }
        if self.needs_device_reset(&command) {
            reset_devices(self.devices.clone()).await;
        }
        self.decide(command, link_up)
    }

    /// Whether answering `command` first needs the devices' alarms reset and read again: a
    /// RESET_ERROR in ERROR, not answered before.
    fn needs_device_reset(&self, command: &Command) -> bool {
        matches!(command.action, CommandAction::ResetError)
            && self.controller.state() == State::Error
            && !self.answered.contains_key(&command.command_id)
    }

    /// Applies a command once (after [`reset_devices`] for a RESET_ERROR in ERROR); a repeated
    /// `command_id` gets the first answer again.
    fn decide(&mut self, command: Command, link_up: bool) -> CommandAnswer {
        if let Some(previous) = self.answered.get(&command.command_id) {
            return previous.clone();
        }
        let result = match &command.action {
            CommandAction::SetMode {
                target_mode,
                target_power,
                duration_s,
            } => {
                // The lease runs on the loop's monotonic clock from acceptance.
                let until = duration_s.map(|d| self.mono_s() + f64::from(d));
                self.controller
                    .set_mode_until(*target_mode, *target_power, until)
            }
            CommandAction::SetSchedule(schedule) => {
                let limits = self.controller.limits().clone();
                let result = self
                    .schedules
                    .replace(
                        schedule.clone(),
                        self.clock.now().into(),
                        &limits.battery,
                        &limits.strategy,
                    )
                    .map_err(|e| Rejection(e.to_string()));
                if result.is_ok() {
                    // In force from now, not from the next cycle.
                    self.apply_schedule(self.clock.now());
                }
                result
            }
            CommandAction::ResetError => {
                if self.controller.state() == State::Error {
                    // The devices' alarms were reset and read again: look before deciding.
                    let view = self.view();
                    self.controller
                        .step(self.mono_s(), &view.measurements, link_up);
                }
                self.controller.reset_error()
            }
        };
        let answer = match result {
            Ok(()) => CommandAnswer {
                command_id: command.command_id.clone(),
                status: AnswerStatus::Accepted,
                reason: None,
            },
            Err(rejection) => CommandAnswer {
                command_id: command.command_id.clone(),
                status: AnswerStatus::Rejected,
                reason: Some(rejection.0),
            },
        };
        tracing::info!(command_id = %command.command_id, action = command.action.name(), status = %answer.status, reason = answer.reason.as_deref().unwrap_or(""), "command");
        self.remember(answer.clone());
        answer
    }

    fn remember(&mut self, answer: CommandAnswer) {
        if self.answered_order.len() >= ANSWER_MEMORY
            && let Some(old) = self.answered_order.pop_front()
        {
            self.answered.remove(&old);
        }
        self.answered_order.push_back(answer.command_id.clone());
        self.answered.insert(answer.command_id.clone(), answer);
    }

    pub fn controller(&self) -> &Controller {
        &self.controller
    }
}

/// A [`reset_devices`] under way while the loop goes on.
type ResetInProgress = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Resets every device's latched alarms and reads it again, one after the other, for at most
/// 5 s in all.
async fn reset_devices(devices: Vec<DeviceHandle>) {
    let all = async {
        for d in &devices {
            d.reset_and_poll().await;
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(5), all).await;
}

/// A clock step back shorter than this holds telemetry until the clock is past the last
/// published second again; a longer one is reported and telemetry goes on at the new time.
const HOLD_STEP_BACK_MAX_S: i64 = 60;

/// Keeps the published telemetry seconds in order within a run. The control cycle runs every
/// second whatever the clock does; only publishing is decided here:
/// - a small step back (under [`HOLD_STEP_BACK_MAX_S`]; also a second seen twice): the packets
///   for seconds already published are not published again, until the clock passes the last one;
/// - a larger step back (a clock that was far ahead being corrected): logged as an event with its
///   size, and telemetry goes on at the corrected time (holding it for that long would leave the
///   cloud blind); a second still queued from before the step is superseded in the queue, the
///   older packet kept in its quarantine;
/// - a step forward: a gap, nothing to do.
#[derive(Debug, Default)]
struct SecondGuard {
    last: Option<i64>,
    /// Holding since a small step back (for one log line per episode).
    holding: bool,
}

impl SecondGuard {
    /// Whether the packet for `second` is published.
    fn check(&mut self, second: i64) -> bool {
        match self.last {
            Some(last) if second <= last && last - second < HOLD_STEP_BACK_MAX_S => {
                if !self.holding {
                    tracing::warn!(
                        behind_s = last - second + 1,
                        "clock stepped back: telemetry holds until the clock passes the last published second again; control goes on"
                    );
                    self.holding = true;
                }
                false
            }
            Some(last) if second <= last => {
                tracing::warn!(
                    stepped_back_s = last - second,
                    "clock stepped back: telemetry goes on at the new time (an event, not an error); control went on"
                );
                self.last = Some(second);
                self.holding = false;
                true
            }
            _ => {
                if self.holding {
                    tracing::info!("clock past the last published second again: telemetry resumes");
                }
                self.last = Some(second);
                self.holding = false;
                true
            }
        }
    }
}

/// The next whole second of wall-clock time.
fn next_whole_second(clock: &Clock) -> SystemTime {
    let now = clock.now();
    let since = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    UNIX_EPOCH + Duration::from_secs(since.as_secs() + 1)
}

fn until(clock: &Clock, t: SystemTime) -> Duration {
    t.duration_since(clock.now()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::{Agent, SecondGuard};
    use crate::clock::Clock;
    use crate::config::AgentConfig;
    use ems_protocol::{AnswerStatus, Command, TargetMode};

    #[tokio::test]
    async fn a_lease_runs_on_the_monotonic_clock_not_the_wall_clock() {
        let config = AgentConfig::from_toml_str(crate::config::tests::BASE, "test.toml").unwrap();
        let clock = Clock::default();
        let mut agent = Agent::new(config, Vec::new(), clock.clone());
        let lease = Command::set_mode_with_lease("c1", TargetMode::ManualIdle, None, 3600);
        let answer = agent.handle_command(lease, true).await;
        assert_eq!(answer.status, AnswerStatus::Accepted, "{answer:?}");
        let until = agent.controller().lease_until_s().unwrap();
        assert!((until - agent.mono_s() - 3600.0).abs() < 1.0, "{until}");

        // NTP moves the wall clock two days ahead: the lease is still on, and ends when it did.
        clock.set_offset_for_tests(2.0 * 86_400.0);
        agent.cycle(clock.now(), true).await;
        assert_eq!(agent.controller().mode(), TargetMode::ManualIdle);
        assert_eq!(agent.controller().lease_until_s(), Some(until));
        // And back by two days: not extended either.
        clock.set_offset_for_tests(-2.0 * 86_400.0);
        agent.cycle(clock.now(), true).await;
        assert_eq!(agent.controller().lease_until_s(), Some(until));
    }

    #[test]
    fn seconds_are_published_once_and_in_order_unless_the_clock_steps_far_back() {
        let mut g = SecondGuard::default();
        assert!(g.check(1000));
        assert!(g.check(1001));
        // A second seen twice, then a small step back: held until past 1001.
        assert!(!g.check(1001));
        assert!(!g.check(990));
        assert!(!g.check(1001));
        assert!(g.check(1002));
        // Forward: a gap.
        assert!(g.check(5000));
        // 10 minutes back (a fast clock corrected): goes on at the new time.
        assert!(g.check(4400));
        assert!(g.check(4401));
    }
}
