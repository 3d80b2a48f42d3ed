//! The background re-planner (issue 17), with two instances sharing one database, each looking
//! for due devices every 100 ms:
//! - a device that opts in (`PUT /devices/<id>/planner`, `planner = "cloud"`) receives a
//!   `SET_SCHEDULE` by the user `planner` without anyone asking for a plan, connected to the
//!   other instance; `GET …/planner` names that command;
//! - `GET …/plan` without the battery's figures uses the stored ones;
//! - a new tariff brings a new `SET_SCHEDULE`;
//! - after `DELETE …/planner` (opt out) a tariff change sends nothing: a witness device opted
//!   in after it gets its schedule, which proves the re-planner passed after the opt-out;
//! - a device that never opted in never gets one;
//! - each change was sent once, not once per instance.
//!
//! A packet whose SoC is far from the plan's at that moment brings a new plan from that SoC.
//! And the claim itself: of many instances claiming one device at the same moment, exactly one
//! gets it; nobody gets a device that opted out.
//!
//! When only time has passed and the new plan is the one the device accepted, nothing is sent:
//! the re-planner looks again and again (its `planned_at` moves) and the device keeps its
//! schedule, until the tariff changes.
//!
//! Same answers on TimescaleDB and plain PostgreSQL (the migration V7 on both).

use crate::common;

on_both_backends!(
    opted_in_devices_are_planned_others_never,
    of_eight_simultaneous_claims_one_wins,
    a_soc_that_departs_from_the_plan_brings_a_new_one,
    an_unchanged_plan_is_kept_not_sent_again
);

use chrono::{Duration, DurationRound, Utc};
use common::{Backend, DEADLINE, TestServer, count_rows, figment, fresh_database_on};
use ems_protocol::api::Role;
use ems_protocol::{AnswerStatus, Command, CommandAction};
use serde_json::{Value, json};

type MaybeTls = tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>;

const DEVICES: [&str; 3] = ["ems_in", "ems_witness", "ems_never"];

fn tariff(evening_price: f64) -> Vec<Value> {
    let hour = Utc::now().duration_trunc(Duration::hours(1)).unwrap() - Duration::hours(1);
    (0..26)
        .map(|h| {
            let price = match h {
                0..=6 => 0.10,
                11..=14 => evening_price,
                _ => 0.25,
            };
            json!({
                "start": hour + Duration::hours(h),
                "end": hour + Duration::hours(h + 1),
                "import_price": price,
                "export_price": 0.05,
            })
        })
        .collect()
}

fn settings() -> Value {
    json!({
        "planner": "cloud",
        "capacity_wh": 10000,
        "max_charge_w": 3000,
        "max_discharge_w": 3000,
        "reserve_soc_pct": 10,
    })
}

fn schedule_of(command: &Command) -> usize {
    let CommandAction::SetSchedule(schedule) = &command.action else {
        panic!("expected a SET_SCHEDULE: {command:?}");
    };
    assert!(!schedule.windows.is_empty(), "{command:?}");
    schedule.windows.len()
}

async fn opted_in_devices_are_planned_others_never(backend: Backend) {
    let Some(url) = fresh_database_on(backend).await else {
        return;
    };
    let quick = || figment(&url).merge(("planner.check_interval_ms", 100));
    let first = TestServer::with(quick(), &url, reqwest::Client::new()).await;
    let second = TestServer::with(quick(), &url, reqwest::Client::new()).await;
    let mut tokens = Vec::new();
    for id in DEVICES {
        tokens.push(first.add_device(id).await);
    }
    let operator = first.token("op", Role::Operator).await;
    let viewer = first.token("owner", Role::Viewer).await;

    // A week of 1 kW house load at 20 % SoC and a tariff for each device.
    let client = ems_cloud::db::connect(&url).await.unwrap();
    for id in DEVICES {
        client
            .execute(
                "INSERT INTO telemetry (time, device_id, state, mode, battery_power, \
                   grid_power, battery_soc, extensions) \
                 SELECT t, $1, 'IDLE', 'AUTO', 0, 1000, 20, jsonb_build_object('site', \
                   jsonb_build_object('house_power', 1000, 'pv_power', 0)) \
                 FROM generate_series(now() - interval '7 days', now() - interval '1 minute', \
                   interval '1 minute') AS t",
                &[&id],
            )
            .await
            .unwrap();
    }
    let put = |path: String, body: Value| {
        let request = first
            .http
            .put(first.api(&path))
            .bearer_auth(&operator)
            .json(&body);
        async move { request.send().await.unwrap() }
    };
    for id in DEVICES {
        let resp = put(format!("/devices/{id}/tariff"), json!(tariff(0.40))).await;
        assert_eq!(resp.status(), 200);
    }

    // Opt in: bad settings are refused and store nothing, viewers may not.
    let mut bad = settings();
    bad["planner"] = json!("sometimes");
    assert_eq!(
        put("/devices/ems_in/planner".into(), bad).await.status(),
        400
    );
    let mut bad = settings();
    bad["efficiency"] = json!(1.5);
    assert_eq!(
        put("/devices/ems_in/planner".into(), bad).await.status(),
        400
    );
    let resp = first
        .http
        .put(first.api("/devices/ems_in/planner"))
        .bearer_auth(&viewer)
        .json(&settings())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    assert_eq!(
        first.get("/devices/ems_in/planner", &viewer).await.status(),
        404
    );
    let resp = put("/devices/ems_in/planner".into(), settings()).await;
    assert_eq!(resp.status(), 200);
    let stored: Value = resp.json().await.unwrap();
    assert_eq!(stored["planner"], "cloud", "{stored}");
    assert_eq!(stored["efficiency"], 0.95, "defaults filled in: {stored}");
    // `GET /plan` without figures takes the stored ones; a device without settings needs them.
    let resp = first.get("/devices/ems_in/plan", &viewer).await;
    assert_eq!(resp.status(), 200);
    let plan: Value = resp.json().await.unwrap();
    assert_eq!(plan["slots"].as_array().unwrap().len(), 96, "{plan}");
    assert_eq!(
        first.get("/devices/ems_never/plan", &viewer).await.status(),
        400
    );

    // The device, on the other instance, receives a plan nobody asked for.
    let mut device = second.device("ems_in", &tokens[0]).await;
    let command = device.next_command().await;
    schedule_of(&command);
    device
        .answer(&command.command_id, AnswerStatus::Accepted, None)
        .await;
    let shown = wait_for_command(&first, &viewer, "ems_in", &command.command_id).await;
    assert_eq!(shown["planner"], "cloud");
    assert!(shown["last_error"].is_null(), "{shown}");

    // A new tariff: a new plan.
    let resp = put("/devices/ems_in/tariff".into(), json!(tariff(0.60))).await;
    assert_eq!(resp.status(), 200);
    let again = next_new_command(&mut device, &[&command.command_id]).await;
    schedule_of(&again);
    device
        .answer(&again.command_id, AnswerStatus::Accepted, None)
        .await;
    wait_for_command(&first, &viewer, "ems_in", &again.command_id).await;

    // Opt out, then change the tariff: nothing is sent. The witness opts in after both; once
    // it has its plan, the re-planner has looked at every device since the opt-out.
    let resp = first
        .http
        .delete(first.api("/devices/ems_in/planner"))
        .bearer_auth(&operator)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        first.get("/devices/ems_in/planner", &viewer).await.status(),
        404
    );
    let resp = put("/devices/ems_in/tariff".into(), json!(tariff(0.80))).await;
    assert_eq!(resp.status(), 200);
    let resp = put("/devices/ems_witness/planner".into(), settings()).await;
    assert_eq!(resp.status(), 200);
    let mut witness = first.device("ems_witness", &tokens[1]).await;
    let witnessed = witness.next_command().await;
    schedule_of(&witnessed);
    wait_for_command(&first, &viewer, "ems_witness", &witnessed.command_id).await;

    let sent = |id: &str| {
        format!(
            "SELECT count(*) FROM commands WHERE device_id = '{id}' \
             AND action = 'SET_SCHEDULE' AND issued_by = 'planner'"
        )
    };
    // Two changes while opted in, two plans: once each, not once per instance; none after.
    assert_eq!(count_rows(&url, &sent("ems_in")).await, 2);
    assert_eq!(count_rows(&url, &sent("ems_witness")).await, 1);
    assert_eq!(count_rows(&url, &sent("ems_never")).await, 0);
    // Opt-in and opt-out audited (the trail is written behind the answer).
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while count_rows(
        &url,
        "SELECT count(*) FROM audit_log WHERE action = 'PLANNER_SET' AND device_id = 'ems_in'",
    )
    .await
        != 2
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "PLANNER_SET not audited twice"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    first.stop().await;
    second.stop().await;
}

/// The next command other than `seen`: a command may reach a device twice (delivered on
/// connecting and again by its instance's notice); the device answers by id.
async fn next_new_command(device: &mut common::Device<MaybeTls>, seen: &[&str]) -> Command {
    loop {
        let c = device.next_command().await;
        if !seen.contains(&c.command_id.as_str()) {
            return c;
        }
    }
}

/// Waits until `GET /devices/<id>/planner` names `command_id` as the last one sent.
async fn wait_for_command(
    server: &TestServer,
    token: &str,
    device_id: &str,
    command_id: &str,
) -> Value {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let resp = server
            .get(&format!("/devices/{device_id}/planner"), token)
            .await;
        assert_eq!(resp.status(), 200);
        let shown: Value = resp.json().await.unwrap();
        if shown["last_command_id"] == command_id {
            return shown;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the planner never recorded {command_id}: {shown}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

async fn of_eight_simultaneous_claims_one_wins(backend: Backend) {
    let Some(url) = fresh_database_on(backend).await else {
        return;
    };
    // The server's own re-planner looks once at start (nothing to plan) and then not for an
    // hour: the claims below are the test's alone.
    let slow = figment(&url).merge(("planner.check_interval_ms", 3_600_000));
    let server = TestServer::with(slow, &url, reqwest::Client::new()).await;
    server.add_device("ems_claimed").await;
    let operator = server.token("op", Role::Operator).await;
    let resp = server
        .http
        .put(server.api("/devices/ems_claimed/planner"))
        .bearer_auth(&operator)
        .json(&settings())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);

    // Eight instances, each on its own connection, claim at once.
    let mut clients = Vec::new();
    for _ in 0..8 {
        clients.push(ems_cloud::db::connect(&url).await.unwrap());
    }
    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(clients.len()));
    let tasks: Vec<_> = clients
        .into_iter()
        .enumerate()
        .map(|(i, client)| {
            let barrier = barrier.clone();
            tokio::spawn(async move {
                barrier.wait().await;
                let instance = format!("instance-{i}");
                ems_cloud::planner::replan::claim(&client, "ems_claimed", &instance, 60, None)
                    .await
                    .unwrap()
                    .map(|_| instance)
            })
        })
        .collect();
    let mut winners = Vec::new();
    for t in tasks {
        if let Some(w) = t.await.unwrap() {
            winners.push(w);
        }
    }
    assert_eq!(winners.len(), 1, "{winners:?}");
    assert_eq!(
        count_rows(
            &url,
            &format!(
                "SELECT count(*) FROM planner_settings WHERE claimed_by = '{}'",
                winners[0]
            )
        )
        .await,
        1
    );

    // Released, but opted out: nobody gets it.
    let client = ems_cloud::db::connect(&url).await.unwrap();
    client
        .execute(
            "UPDATE planner_settings SET claimed_until = NULL, mode = 'off'",
            &[],
        )
        .await
        .unwrap();
    let none = ems_cloud::planner::replan::claim(&client, "ems_claimed", "late", 60, None)
        .await
        .unwrap();
    assert!(none.is_none());
    server.stop().await;
}

async fn a_soc_that_departs_from_the_plan_brings_a_new_one(backend: Backend) {
    let Some(url) = fresh_database_on(backend).await else {
        return;
    };
    let quick = figment(&url).merge(("planner.check_interval_ms", 100));
    let server = TestServer::with(quick, &url, reqwest::Client::new()).await;
    let token = server.add_device("ems_soc").await;
    let operator = server.token("op", Role::Operator).await;
    let viewer = server.token("owner", Role::Viewer).await;
    let client = ems_cloud::db::connect(&url).await.unwrap();
    client
        .execute(
            "INSERT INTO telemetry (time, device_id, state, mode, battery_power, \
               grid_power, battery_soc, extensions) \
             SELECT t, 'ems_soc', 'IDLE', 'AUTO', 0, 1000, 20, jsonb_build_object('site', \
               jsonb_build_object('house_power', 1000, 'pv_power', 0)) \
             FROM generate_series(now() - interval '7 days', now() - interval '1 minute', \
               interval '1 minute') AS t",
            &[],
        )
        .await
        .unwrap();
    for (path, body) in [
        ("/devices/ems_soc/tariff", json!(tariff(0.40))),
        ("/devices/ems_soc/planner", settings()),
    ] {
        let resp = server
            .http
            .put(server.api(path))
            .bearer_auth(&operator)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{path}");
    }
    let mut device = server.device("ems_soc", &token).await;
    let first = device.next_command().await;
    schedule_of(&first);
    device
        .answer(&first.command_id, AnswerStatus::Accepted, None)
        .await;
    wait_for_command(&server, &viewer, "ems_soc", &first.command_id).await;
    let plan: Vec<f64> = client
        .query_one(
            "SELECT planned_soc FROM planner_settings WHERE device_id = 'ems_soc'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        plan[0], 20.0,
        "the plan starts at the last packet's SoC: {plan:?}"
    );

    // The plan's first slot starts at the next quarter hour; move it a minute into the past
    // instead of waiting, then report a SoC far from the plan's.
    client
        .execute(
            "UPDATE planner_settings SET plan_start = now() - interval '1 minute'",
            &[],
        )
        .await
        .unwrap();
    assert!(plan[1] < 60.0, "{plan:?}");
    // Packets carry whole seconds: the next second is surely after the plan was recorded (a
    // real device's next packet is).
    let next_second =
        ems_protocol::telemetry::Timestamp::from_unix(chrono::Utc::now().timestamp() + 1).unwrap();
    device
        .send_stored(&[ems_protocol::Telemetry::example(
            "ems_soc",
            next_second,
            95.0,
        )])
        .await;
    let second = next_new_command(&mut device, &[&first.command_id]).await;
    schedule_of(&second);
    wait_for_command(&server, &viewer, "ems_soc", &second.command_id).await;
    let plan: Vec<f64> = client
        .query_one(
            "SELECT planned_soc FROM planner_settings WHERE device_id = 'ems_soc'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        plan[0], 95.0,
        "planned again from the SoC measured: {plan:?}"
    );
    server.stop().await;
}

async fn an_unchanged_plan_is_kept_not_sent_again(backend: Backend) {
    let Some(url) = fresh_database_on(backend).await else {
        return;
    };
    // Due every second on the interval alone.
    let config = figment(&url)
        .merge(("planner.check_interval_ms", 100))
        .merge(("planner.replan_interval_s", 1));
    let server = TestServer::with(config, &url, reqwest::Client::new()).await;
    let token = server.add_device("ems_same").await;
    let operator = server.token("op", Role::Operator).await;
    let client = ems_cloud::db::connect(&url).await.unwrap();
    client
        .execute(
            "INSERT INTO telemetry (time, device_id, state, mode, battery_power, grid_power, \
               battery_soc, extensions) \
             SELECT t, 'ems_same', 'IDLE', 'AUTO', 0, 1000, 20, jsonb_build_object('site', \
               jsonb_build_object('house_power', 1000, 'pv_power', 0)) \
             FROM generate_series(now() - interval '7 days', now() - interval '1 minute', \
               interval '1 minute') AS t",
            &[],
        )
        .await
        .unwrap();
    let put = |path: &str, body: Value| {
        let request = server
            .http
            .put(server.api(path))
            .bearer_auth(&operator)
            .json(&body);
        async move { request.send().await.unwrap() }
    };
    assert_eq!(
        put("/devices/ems_same/tariff", json!(tariff(0.40)))
            .await
            .status(),
        200
    );
    assert_eq!(
        put("/devices/ems_same/planner", settings()).await.status(),
        200
    );
    let mut device = server.device("ems_same", &token).await;
    let first = device.next_command().await;
    schedule_of(&first);
    device
        .answer(&first.command_id, AnswerStatus::Accepted, None)
        .await;
    let shown = wait_for_command(&server, &operator, "ems_same", &first.command_id).await;

    // The re-planner plans again three times (each a second after the last) and keeps the
    // accepted schedule every time.
    let planned_at = |v: &Value| v["planned_at"].as_str().unwrap_or_default().to_string();
    let mut seen = vec![planned_at(&shown)];
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while seen.len() < 4 {
        let now: Value = server
            .get("/devices/ems_same/planner", &operator)
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(now["last_command_id"], first.command_id.as_str(), "{now}");
        assert!(now["last_error"].is_null(), "{now}");
        if !seen.contains(&planned_at(&now)) {
            seen.push(planned_at(&now));
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the re-planner did not look again: {seen:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let sent = "SELECT count(*) FROM commands WHERE device_id = 'ems_same' \
                AND action = 'SET_SCHEDULE' AND issued_by = 'planner'";
    assert_eq!(
        count_rows(&url, sent).await,
        1,
        "an equal plan was sent again"
    );

    // A new tariff changes the plan: it is sent.
    assert_eq!(
        put("/devices/ems_same/tariff", json!(tariff(0.60)))
            .await
            .status(),
        200
    );
    let again = next_new_command(&mut device, &[&first.command_id]).await;
    schedule_of(&again);
    assert_eq!(count_rows(&url, sent).await, 2);
    server.stop().await;
}
