//! The dashboard in a real browser: ems-cloud serves the built `dashboard/dist` on a throwaway
//! database, a scripted device sends spec telemetry every second with changing values and
//! answers commands ACCEPTED (REJECTED above 5 kW), and `dashboard/tests/e2e.mjs` (playwright-core driving Debian's
//! headless Chromium) signs in, watches the live values change, sends commands from the page
//! and sees ACCEPTED and REJECTED with the reason, checks the energy flow and the energy per day and
//! month, that the cloud planner's plan chart is drawn (from planner settings that are off, so
//! nothing is sent), that a viewer gets no command panel, the offline banner of a device that is away, that
//! an admin creates a scoped token in the page (which then signs in) and revokes it (which then
//! cannot), and the layout at a phone's viewport; it saves `target/dashboard-screenshot.png` and
//! `target/dashboard-phone-screenshot.png`.
//!
//! Needs Node.js, `dashboard/node_modules` and `dashboard/dist` (`npm ci && npm run build` in
//! `dashboard/`) and `/usr/bin/chromium`; fails with an install hint when one is missing.

use crate::common;

use std::f64::consts::TAU;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use common::TestServer;
use ems_protocol::api::Role;
use ems_protocol::{
    AnswerStatus, Battery, CommandAction, CommandAnswer, Downstream, Grid, Mode, State,
    SystemStatus, TargetMode, Telemetry, Timestamp, Upstream, parse_downstream,
};
use futures_util::StreamExt;
use tokio::sync::oneshot;
use tokio_tungstenite::tungstenite::Message;

const DEVICE: &str = "ems_dash";
/// A device with a few stored packets that is not connected while the browser looks.
const OFFLINE_DEVICE: &str = "ems_dash_away";
const CHROMIUM: &str = "/usr/bin/chromium";
/// The whole browser script, generous for a loaded CI machine.
const E2E_DEADLINE: Duration = Duration::from_secs(180);

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("cloud/ has a parent")
        .to_path_buf()
}

/// Panics with the command that installs whatever is missing: a browser test that skips itself
/// silently proves nothing in CI.
fn check_prerequisites(dashboard: &Path) {
    let mut missing = Vec::new();
    let node = std::process::Command::new("node").arg("--version").output();
    if !node.map(|o| o.status.success()).unwrap_or(false) {
        missing.push("`node` is not on PATH: apt-get install -y nodejs npm (Node 20 or newer)");
    }
    if !dashboard.join("node_modules/playwright-core").is_dir() {
        missing.push("dashboard/node_modules is missing: cd dashboard && npm ci");
    }
    if !dashboard.join("dist/index.html").is_file() {
        missing.push("dashboard/dist is not built: cd dashboard && npm ci && npm run build");
    }
    if !Path::new(CHROMIUM).exists() {
        missing.push("/usr/bin/chromium is missing: apt-get install -y chromium");
    }
    assert!(
        missing.is_empty(),
        "the dashboard browser test cannot run:\n  - {}",
        missing.join("\n  - ")
    );
}

/// What the device is doing after the commands it accepted.
#[derive(Debug, Clone, Copy)]
struct Setpoint {
    mode: TargetMode,
    power_w: f64,
}

/// A spec packet whose values move every second: `i` is the packet number.
fn packet(ts: Timestamp, i: u64, set: Setpoint) -> Telemetry {
    let x = i as f64;
    let wobble = (x * 0.7).sin();
    let (state, battery_w) = match set.mode {
        TargetMode::Auto => (State::Charging, 600.0 + 150.0 * wobble),
        TargetMode::ManualCharge => (State::Charging, set.power_w + 10.0 * wobble),
        TargetMode::ManualDischarge => (State::Discharging, -(set.power_w + 10.0 * wobble)),
        TargetMode::ManualIdle => (State::Idle, 0.0),
    };
    spec_packet(
        ts,
        state,
        set.mode.telemetry_mode(),
        battery_w,
        60.0 + (x * 0.05) % 30.0,
        // Exports while charging from the surplus; imports to cover a forced discharge's gap.
        -battery_w * 0.4 - 80.0 * (x * 0.9).cos(),
        wobble,
    )
}

fn spec_packet(
    ts: Timestamp,
    state: State,
    mode: Mode,
    battery_w: f64,
    soc_pct: f64,
    grid_w: f64,
    wobble: f64,
) -> Telemetry {
    let voltage_v = 52.0 + 0.3 * wobble;
    let round = |v: f64, digits: i32| (v * 10f64.powi(digits)).round() / 10f64.powi(digits);
    Telemetry {
        device_id: DEVICE.into(),
        timestamp: ts,
        system_status: SystemStatus {
            state,
            mode,
            error_flags: Vec::new(),
            wifi_strength: Some(-50),
            schedule: None,
        },
        battery: Battery {
            voltage: Some(round(voltage_v, 2)),
            current: Some(round(battery_w / voltage_v, 2)),
            power: Some(round(battery_w, 1)),
            soc: Some(round(soc_pct, 1)),
        },
        grid: Grid {
            voltage: Some(round(230.0 + 2.0 * wobble, 1)),
            power: Some(round(grid_w, 1)),
            frequency: Some(round(50.0 + 0.02 * wobble, 3)),
        },
        // PV and the house use that balance grid and battery (house = grid + PV − battery).
        site: Some(ems_protocol::telemetry::SiteFlows {
            pv_power: Some(round(pv_w(battery_w, grid_w), 1)),
            house_power: Some(round(HOUSE_W, 1)),
        }),
    }
}

/// The scripted site's house load, W.
const HOUSE_W: f64 = 400.0;

/// The PV that makes the balance hold: house = grid + PV − battery; never negative.
fn pv_w(battery_w: f64, grid_w: f64) -> f64 {
    (HOUSE_W - grid_w + battery_w).max(0.0)
}

/// The day before: a packet every 5 min until an hour ago, then every 30 s; the battery charges
/// and discharges in a 6 h cycle, so the charts have a shape and the event log state changes.
fn backlog() -> Vec<Telemetry> {
    let now = Timestamp::now().unix();
    let times = (now - 86_400..now - 3600)
        .step_by(300)
        .chain((now - 3600..now - 30).step_by(30));
    times
        .map(|t| {
            let phase = (t % 21_600) as f64 / 21_600.0 * TAU;
            let battery_w = 1500.0 * phase.sin();
            let state = if battery_w > 0.0 {
                State::Charging
            } else {
                State::Discharging
            };
            spec_packet(
                Timestamp::from_unix(t).unwrap(),
                state,
                Mode::Auto,
                battery_w,
                50.0 + 35.0 * (phase - TAU / 4.0).sin(),
                -battery_w * 0.6 + 300.0,
                phase.cos(),
            )
        })
        .collect()
}

/// Above this, W, the scripted device refuses a mode, so the page can show a REJECTED reason.
const INVERTER_LIMIT_W: f64 = 5000.0;

/// The device's answer to a command; an accepted `SET_MODE` becomes the new setpoint.
fn answer(action: &CommandAction, set: &mut Setpoint) -> (AnswerStatus, Option<String>) {
    match action {
        CommandAction::SetMode {
            target_power: Some(p),
            ..
        } if *p > INVERTER_LIMIT_W => (
            AnswerStatus::Rejected,
            Some(format!(
                "{p} W is above the inverter limit of {INVERTER_LIMIT_W} W"
            )),
        ),
        CommandAction::SetMode {
            target_mode,
            target_power,
            ..
        } => {
            *set = Setpoint {
                mode: *target_mode,
                power_w: target_power.unwrap_or(0.0),
            };
            (AnswerStatus::Accepted, None)
        }
        CommandAction::ResetError | CommandAction::SetSchedule(_) => (AnswerStatus::Accepted, None),
    }
}

/// Sends a packet every second and answers commands (ACCEPTED, and follows them, unless above
/// [`INVERTER_LIMIT_W`]) until `stop`.
async fn run_device(
    mut device: common::Device<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
    mut stop: oneshot::Receiver<()>,
) {
    let mut set = Setpoint {
        mode: TargetMode::Auto,
        power_w: 0.0,
    };
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut i = 0u64;
    let mut last_ts = 0;
    loop {
        tokio::select! {
            _ = &mut stop => return,
            _ = tick.tick() => {
                let ts = Timestamp::now();
                if ts.unix() == last_ts {
                    continue;
                }
                last_ts = ts.unix();
                i += 1;
                device.send(&packet(ts, i, set)).await;
            }
            frame = device.ws.next() => match frame {
                Some(Ok(Message::Text(text))) => {
                    if let Ok(Downstream::Command(c)) = parse_downstream(&text) {
                        let (status, reason) = answer(&c.action, &mut set);
                        let answer = Upstream::CommandAnswer(CommandAnswer {
                            command_id: c.command_id.clone(),
                            status,
                            reason,
                        });
                        device.send_text(answer.to_json()).await;
                    }
                }
                Some(Ok(_)) => {}
                other => panic!("device socket ended: {other:?}"),
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_signs_in_shows_live_values_and_sends_commands() {
    let root = repo_root();
    let dashboard = root.join("dashboard");
    check_prerequisites(&dashboard);

    let db_url = ems_testkit::pg::fresh_database().await;
    let figment = common::figment(&db_url)
        .merge(("dashboard_dir", dashboard.join("dist")))
        .merge(("alerts.evaluate_interval_ms", 200));
    let server = TestServer::with(figment, &db_url, reqwest::Client::new()).await;

    let device_token = server.add_device(DEVICE).await;
    let operator = server.token("dash-operator", Role::Operator).await;
    let viewer = server.token("dash-viewer", Role::Viewer).await;

    let mut device = server.device(DEVICE, &device_token).await;
    let history = backlog();
    for t in &history {
        device.send(t).await;
    }
    let stamps: Vec<Timestamp> = history.iter().map(|t| t.timestamp).collect();
    device.await_acks(&stamps).await;
    // The away device: three packets five minutes ago, then gone.
    let away_token = server.add_device(OFFLINE_DEVICE).await;
    let mut away = server.device(OFFLINE_DEVICE, &away_token).await;
    let five_min_ago = Timestamp::now().unix() - 300;
    let away_packets: Vec<Telemetry> = (0..3)
        .map(|i| {
            let ts = Timestamp::from_unix(five_min_ago + i).unwrap();
            Telemetry::example(OFFLINE_DEVICE, ts, 40.0)
        })
        .collect();
    away.send_stored(&away_packets).await;
    drop(away);
    // A rule that raises an alert for the away device, for the page's alert lists.
    let (code, rule) = server
        .post_json(
            "/alert-rules",
            &server.admin,
            &serde_json::json!({"name": "site offline", "kind": "OFFLINE", "for_s": 1}),
        )
        .await;
    assert_eq!(code, 201, "{rule}");
    let (stop, stopped) = oneshot::channel();
    let device_task = tokio::spawn(run_device(device, stopped));
    // A schedule the device accepted, for the page's schedule card.
    let until = (chrono::Utc::now() + chrono::Duration::days(7)).to_rfc3339();
    let resp = server
        .http
        .put(server.api(&format!("/devices/{DEVICE}/schedule?wait=10")))
        .bearer_auth(&server.admin)
        .json(&serde_json::json!({"valid_until": until, "time_zone": "Europe/Paris", "windows": [
            {"daily_start": "23:00", "daily_end": "06:00", "action": "CHARGE", "power_w": 2000, "to_soc_pct": 90},
            {"daily_start": "17:00", "daily_end": "21:00", "action": "DISCHARGE", "power_w": 2500, "down_to_soc_pct": 30}]}))
        .send()
        .await
        .unwrap();
    let rec: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(rec["status"], "ACCEPTED", "{rec}");

    // A tariff and planner settings (off: nothing is sent to the device) for the plan chart.
    let hour =
        chrono::DurationRound::duration_trunc(chrono::Utc::now(), chrono::Duration::hours(1))
            .unwrap()
            - chrono::Duration::hours(1);
    let periods: Vec<_> = (0..26)
        .map(|h| {
            let price = match (h + hour.timestamp() / 3600) % 24 {
                0..=5 => 0.18,
                17..=20 => 0.45,
                _ => 0.30,
            };
            serde_json::json!({
                "start": hour + chrono::Duration::hours(h),
                "end": hour + chrono::Duration::hours(h + 1),
                "import_price": price,
                "export_price": 0.08,
            })
        })
        .collect();
    for (path, body) in [
        (
            format!("/devices/{DEVICE}/tariff"),
            serde_json::json!(periods),
        ),
        (
            format!("/devices/{DEVICE}/planner"),
            serde_json::json!({"planner": "off", "capacity_wh": 10000, "max_charge_w": 3000,
                "max_discharge_w": 3000, "max_soc_pct": 95}),
        ),
    ] {
        let resp = server
            .http
            .put(server.api(&path))
            .bearer_auth(&server.admin)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{path}");
    }

    let screenshot = root.join("target/dashboard-screenshot.png");
    let phone_screenshot = root.join("target/dashboard-phone-screenshot.png");
    let _ = std::fs::remove_file(&screenshot);
    let _ = std::fs::remove_file(&phone_screenshot);
    let script = tokio::process::Command::new("node")
        .arg("tests/e2e.mjs")
        .current_dir(&dashboard)
        .env("EMS_URL", server.running().http_url())
        .env("EMS_DEVICE_ID", DEVICE)
        .env("EMS_OPERATOR_TOKEN", &operator)
        .env("EMS_VIEWER_TOKEN", &viewer)
        .env("EMS_ADMIN_TOKEN", &server.admin)
        .env("EMS_OFFLINE_DEVICE_ID", OFFLINE_DEVICE)
        .env("EMS_SCREENSHOT", &screenshot)
        .env("EMS_SCREENSHOT_PHONE", &phone_screenshot)
        .env("EMS_CHROMIUM", CHROMIUM)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(E2E_DEADLINE, script)
        .await
        .unwrap_or_else(|_| panic!("e2e.mjs did not finish within {E2E_DEADLINE:?}"))
        .expect("node starts");

    let _ = stop.send(());
    device_task
        .await
        .expect("the scripted device ran until stopped");
    server.stop().await;

    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stdout}");
    eprintln!("{stderr}");
    assert!(
        output.status.success(),
        "dashboard/tests/e2e.mjs failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    for shot in [&screenshot, &phone_screenshot] {
        assert!(shot.is_file(), "no screenshot at {}", shot.display());
    }
}
