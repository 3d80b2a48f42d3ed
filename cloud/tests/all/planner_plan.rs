//! `GET /devices/<id>/plan` plans the next 24 h from the stored tariff (cheap first six hours,
//! dear hours 10 to 14) and a week of the device's own house load (1 kW): it charges while
//! cheap and covers the dear hours from the battery, costs measurably less than plain
//! self-consumption and no battery on the same forecast, and keeps every slot within the
//! battery's power and SoC limits. `POST …/plan/apply` sends it as a `SET_SCHEDULE` with a
//! grid CHARGE window, which the device receives on connecting and, once it accepts it, is the
//! device's schedule. With `end_soc_pct` the plan ends at least that full. Without a tariff the answer is 409, without the battery's figures 400.
//! Same answers on TimescaleDB and plain PostgreSQL.

use crate::common;

on_both_backends!(plan_beats_self_consumption_and_applies_as_a_schedule);

use chrono::{Duration, DurationRound, Utc};
use common::{Backend, TestServer};
use ems_protocol::api::{DevicePlan, Role};
use serde_json::json;

const BATTERY: &str = "capacity_wh=10000&max_charge_w=3000&max_discharge_w=3000&reserve_soc_pct=10";

async fn plan_beats_self_consumption_and_applies_as_a_schedule(backend: Backend) {
    let Some(server) = TestServer::fresh_on(backend).await else {
        return;
    };
    let device_token = server.add_device("ems_plan").await;
    let operator = server.token("op", Role::Operator).await;
    let viewer = server.token("owner", Role::Viewer).await;

    // A week of 1 kW house load, a packet a minute, the last one at 20 % SoC.
    let client = ems_cloud::db::connect(&server.db_url).await.unwrap();
    client
        .execute(
            "INSERT INTO telemetry (time, device_id, state, mode, battery_power, grid_power, \
               battery_soc, extensions) \
             SELECT t, 'ems_plan', 'IDLE', 'AUTO', 0, 1000, 20, \
               jsonb_build_object('site', jsonb_build_object('house_power', 1000, 'pv_power', 0)) \
             FROM generate_series(now() - interval '7 days', now() - interval '1 minute', \
               interval '1 minute') AS t",
            &[],
        )
        .await
        .unwrap();

    let url = format!("/devices/ems_plan/plan?{BATTERY}");
    let resp = server.get(&url, &viewer).await;
    assert_eq!(resp.status(), 409, "no tariff yet");

    // Hourly prices from an hour ago for 26 hours.
    let hour = Utc::now().duration_trunc(Duration::hours(1)).unwrap() - Duration::hours(1);
    let periods: Vec<_> = (0..26)
        .map(|h| {
            let price = match h {
                0..=6 => 0.10,
                11..=14 => 0.40,
                _ => 0.25,
            };
            json!({
                "start": hour + Duration::hours(h),
                "end": hour + Duration::hours(h + 1),
                "import_price": price,
                "export_price": 0.05,
            })
        })
        .collect();
    let resp = server
        .http
        .put(server.api("/devices/ems_plan/tariff"))
        .bearer_auth(&operator)
        .json(&periods)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);

    let resp = server
        .get("/devices/ems_plan/plan?capacity_wh=10000", &viewer)
        .await;
    assert_eq!(resp.status(), 400);

    let resp = server.get(&url, &viewer).await;
    assert_eq!(resp.status(), 200);
    let plan: DevicePlan = resp.json().await.unwrap();
    assert_eq!(plan.slots.len(), 96);
    assert_eq!(plan.soc_pct, 20.0);
    for s in &plan.slots {
        assert!(s.battery_w.abs() <= 3000.0 + 1e-6, "{s:?}");
        assert!((10.0 - 1e-6..=100.0 + 1e-6).contains(&s.soc_pct), "{s:?}");
        assert!((s.load_w - 1000.0).abs() < 1e-6, "{s:?}");
        assert_eq!(s.forecast, "all_days");
    }
    // Charges from the grid while cheap, imports nothing while dear.
    let cheap_charge: f64 = plan
        .slots
        .iter()
        .filter(|s| s.import_price == 0.10)
        .map(|s| s.battery_w.max(0.0))
        .sum();
    assert!(cheap_charge > 4.0 * 3000.0, "{plan:?}");
    let dear_import: f64 = plan
        .slots
        .iter()
        .filter(|s| s.import_price == 0.40)
        .map(|s| s.grid_w.max(0.0))
        .sum();
    assert!(dear_import < 1.0, "{plan:?}");
    assert!(
        plan.cost < plan.cost_self_consumption - 0.5,
        "plan {} vs self-consumption {}",
        plan.cost,
        plan.cost_self_consumption
    );
    assert!(plan.cost_self_consumption <= plan.cost_no_battery + 1e-9);
    eprintln!(
        "24 h: plan {:.3}, self-consumption {:.3}, no battery {:.3}",
        plan.cost, plan.cost_self_consumption, plan.cost_no_battery
    );

    // With an end SoC the plan keeps it at the horizon's end, and costs no less.
    let kept: DevicePlan = server
        .get(&format!("{url}&end_soc_pct=60"), &viewer)
        .await
        .json()
        .await
        .unwrap();
    assert!(
        kept.slots.last().unwrap().soc_pct >= 60.0 - 1e-6,
        "{kept:?}"
    );
    assert!(plan.slots.last().unwrap().soc_pct < 60.0, "{plan:?}");
    assert!(kept.cost >= plan.cost - 1e-9);

    // Applied: a SET_SCHEDULE with a CHARGE from the grid.
    let resp = server
        .http
        .post(server.api(&format!("/devices/ems_plan/plan/apply?{BATTERY}")))
        .bearer_auth(&operator)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let record: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(record["action"], "SET_SCHEDULE", "{record}");
    let windows = record["payload"]["windows"].as_array().unwrap();
    assert!(
        windows
            .iter()
            .any(|w| w["action"] == "CHARGE" && w["from_grid"] == true),
        "{record}"
    );
    // The device, connecting, gets it as a schedule it can parse; once it accepts, it is the
    // device's schedule.
    let mut device = server.device("ems_plan", &device_token).await;
    let command = device.next_command().await;
    assert_eq!(command.command_id, record["command_id"].as_str().unwrap());
    let ems_protocol::CommandAction::SetSchedule(schedule) = &command.action else {
        panic!("{command:?}");
    };
    assert_eq!(schedule.windows.len(), windows.len());
    device
        .answer(
            &command.command_id,
            ems_protocol::AnswerStatus::Accepted,
            None,
        )
        .await;
    let deadline = tokio::time::Instant::now() + ems_cloud::testing::DEADLINE;
    loop {
        let resp = server.get("/devices/ems_plan/schedule", &viewer).await;
        if resp.status() == 200 {
            let accepted: ems_protocol::api::DeviceSchedule = resp.json().await.unwrap();
            assert_eq!(accepted.command_id, command.command_id);
            assert_eq!(accepted.schedule.windows.len(), windows.len());
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "schedule never accepted"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }

    // A viewer may look but not apply.
    let resp = server
        .http
        .post(server.api(&format!("/devices/ems_plan/plan/apply?{BATTERY}")))
        .bearer_auth(&viewer)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
}
