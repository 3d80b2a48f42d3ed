//! A schedule sent through the cloud's REST API (`PUT /devices/<id>/schedule`; `emsctl schedule
//! set` sends the same `SET_SCHEDULE` through `POST /devices/<id>/commands`, tested in emsctl's
//! tests) is accepted by the real agent and runs: the battery discharges as the
//! window says and telemetry names the window. With the cloud stopped it keeps running, and
//! after the agent itself is restarted (cloud still down) it runs again from the agent's disk.
//! A schedule beyond the battery's limits is refused with the reason, one with overlapping
//! windows never leaves the cloud, and a clear ends it.

use crate::common;

use chrono::{Duration as Span, Utc};
use common::cloud::Cloud;
use common::{Bench, ModbusLink};
use ems_agent::config::AgentConfig;
use ems_protocol::api::DeviceSchedule;
use serde_json::json;

async fn put_schedule(cloud: &Cloud, body: &serde_json::Value) -> (u16, serde_json::Value) {
    let resp = cloud
        .http
        .put(cloud.api("/devices/bench_1/schedule?wait=10"))
        .bearer_auth(&cloud.admin)
        .json(body)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(serde_json::Value::Null))
}

async fn wait_discharging_by_schedule(bench: &mut Bench, what: &str) {
    let s = bench
        .wait_status(what, 15, |s| {
            s.setpoint_w == -800.0
                && s.telemetry
                    .system_status
                    .schedule
                    .as_ref()
                    .is_some_and(|w| w.action == "DISCHARGE" && w.window == 0)
        })
        .await;
    assert_eq!(s.telemetry.system_status.mode, ems_protocol::Mode::Auto);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schedule_runs_while_the_cloud_is_down_and_after_an_agent_restart() {
    let db_url = ems_testkit::pg::fresh_database().await;
    let mut cloud = Cloud::on(&db_url).await;
    let dir = tempfile::tempdir().unwrap();
    let uplink = cloud.uplink_section("bench_1", dir.path(), "").await;
    let mut bench = common::start_in(dir, 60.0, &uplink).await;
    bench.wait_running().await;
    let link = bench.agent.uplink.clone();
    common::wait_for("the uplink connected", 20.0, || link.borrow().connected).await;

    // Refused by the agent: beyond its 3000 W discharge limit; nothing changes.
    let now = Utc::now();
    let window = |power: f64| {
        json!({
            "valid_until": (now + Span::hours(2)).to_rfc3339(),
            "windows": [{"start": (now - Span::minutes(1)).to_rfc3339(),
                         "end": (now + Span::hours(1)).to_rfc3339(),
                         "action": "DISCHARGE", "power_w": power, "down_to_soc_pct": 20}]
        })
    };
    let (code, rec) = put_schedule(&cloud, &window(9000.0)).await;
    assert_eq!(code, 201, "{rec}");
    assert_eq!(rec["status"], "REJECTED", "{rec}");
    assert!(
        rec["reason"].as_str().unwrap().contains("discharge limit"),
        "{rec}"
    );
    // Refused by the cloud before sending: overlapping windows.
    let overlapping = json!({
        "valid_until": (now + Span::hours(2)).to_rfc3339(),
        "windows": [
            {"daily_start": "10:00", "daily_end": "12:00", "action": "HOLD"},
            {"daily_start": "11:00", "daily_end": "13:00", "action": "HOLD"}]
    });
    let (code, err) = put_schedule(&cloud, &overlapping).await;
    assert_eq!(code, 400, "{err}");
    assert_eq!(err["field"], "payload.windows[1]", "{err}");

    // Accepted, and in force at once.
    let (code, rec) = put_schedule(&cloud, &window(800.0)).await;
    assert_eq!(code, 201, "{rec}");
    assert_eq!(rec["status"], "ACCEPTED", "{rec}");
    wait_discharging_by_schedule(&mut bench, "the schedule discharging at 800 W").await;
    let kept: DeviceSchedule = cloud.get_json("/devices/bench_1/schedule").await;
    assert_eq!(kept.schedule.windows[0].power_w, Some(800.0));

    // The cloud goes away: the schedule goes on.
    cloud.pause().await;
    common::wait_for("the uplink down", 30.0, || !link.borrow().connected).await;
    wait_discharging_by_schedule(&mut bench, "the schedule running without the cloud").await;

    // The agent restarts (same config and data directory), the cloud still down: the schedule
    // is read back from disk and runs again.
    bench.agent.stop().await;
    let text = common::agent_toml(&bench.sim, bench.dir.path(), ModbusLink::Rtu, &uplink);
    let config = AgentConfig::from_toml_str(&text, "bench.toml").unwrap();
    bench.agent = ems_agent::app::start(config).unwrap();
    wait_discharging_by_schedule(&mut bench, "the schedule after the restart").await;
    // The status is published before the setpoint reaches the inverter's poller: wait for it.
    common::wait_for("the inverter at -800 W", 5.0, || {
        bench.sim.state().site.setpoint_w == -800.0
    })
    .await;

    // Back online: a clear ends it; AUTO alone holds the grid near zero again.
    cloud.restart().await;
    let link = bench.agent.uplink.clone();
    common::wait_for("the uplink back", 30.0, || link.borrow().connected).await;
    let resp = cloud
        .http
        .delete(cloud.api("/devices/bench_1/schedule?wait=10"))
        .bearer_auth(&cloud.admin)
        .send()
        .await
        .unwrap();
    let rec: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(rec["status"], "ACCEPTED", "{rec}");
    bench
        .wait_status("no window after the clear", 10, |s| {
            s.telemetry.system_status.schedule.is_none() && s.setpoint_w > -800.0
        })
        .await;
    assert_eq!(
        cloud
            .get("/devices/bench_1/schedule", &cloud.admin)
            .await
            .status(),
        404
    );
    bench.agent.stop().await;
}
