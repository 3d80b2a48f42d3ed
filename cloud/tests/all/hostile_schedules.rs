//! Hostile input to `PUT`/`GET`/`DELETE /devices/<id>/schedule`: 10,000 windows, deep nesting,
//! megabyte strings, time zones that are paths, empty or 10 kB long, `valid_until` at the ends
//! of the calendar, absurd `wait`s, ids that cannot exist, a viewer writing. Every answer is a
//! 4xx with a JSON error (naming the field where there is one); no command is stored for a
//! refused schedule, and the one sent before is still the device's only command.

use ems_protocol::api::Role;
use reqwest::Method;
use serde_json::json;

use crate::common::count_rows;
use crate::hostile_support::{Answer, assert_refused, send, send_json};
use ems_cloud::testing::TestCloud;

async fn put(server: &TestCloud, path: &str, token: &str, body: impl Into<Vec<u8>>) -> Answer {
    send_json(server, Method::PUT, path, token, body).await
}

fn tomorrow() -> String {
    (chrono::Utc::now() + chrono::Duration::days(1)).to_rfc3339()
}

fn schedule_with(time_zone: &str, valid_until: &str, windows: serde_json::Value) -> String {
    json!({"valid_until": valid_until, "time_zone": time_zone, "windows": windows}).to_string()
}

fn night_charge() -> serde_json::Value {
    json!([{"daily_start": "23:00", "daily_end": "06:00", "action": "CHARGE", "power_w": 2000, "to_soc_pct": 90}])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_schedules_are_refused_and_store_nothing() {
    let server = TestCloud::fresh().await;
    server.add_device("ems_s").await;
    let operator = server.token("op", Role::Operator).await;
    let viewer = server.token("viewer", Role::Viewer).await;
    let path = "/devices/ems_s/schedule";

    // The device is offline: a good schedule is stored as a PENDING command.
    let good = schedule_with("Europe/Paris", &tomorrow(), night_charge());
    let answer = put(&server, path, &operator, good.clone()).await;
    assert_eq!(answer.status, 201, "{}", answer.text);
    let commands = "SELECT count(*) FROM commands WHERE device_id = 'ems_s'";
    assert_eq!(count_rows(&server.db_url, commands).await, 1);

    let many: Vec<serde_json::Value> = (0..10_000)
        .map(|i| {
            json!({"start": format!("2027-01-01T00:00:{:02}Z", i % 60), "end": "2027-01-02T00:00:00Z", "action": "HOLD"})
        })
        .collect();
    let long_zone = "Europe/".to_string() + &"x".repeat(10_000);
    let cases: Vec<(&str, String, Option<&str>)> = vec![
        (
            "10000 windows",
            schedule_with("UTC", &tomorrow(), json!(many)),
            Some("payload.windows"),
        ),
        (
            "zone ../../etc/passwd",
            schedule_with("../../etc/passwd", &tomorrow(), night_charge()),
            Some("payload.time_zone"),
        ),
        (
            "zone /etc/localtime",
            schedule_with("/etc/localtime", &tomorrow(), night_charge()),
            Some("payload.time_zone"),
        ),
        (
            "empty zone",
            schedule_with("", &tomorrow(), night_charge()),
            Some("payload.time_zone"),
        ),
        (
            "10 kB zone",
            schedule_with(&long_zone, &tomorrow(), night_charge()),
            Some("payload.time_zone"),
        ),
        (
            "NUL zone",
            schedule_with("Europe/\u{0}Paris", &tomorrow(), night_charge()),
            Some("payload.time_zone"),
        ),
        (
            "valid_until year 1",
            schedule_with("UTC", "0001-01-01T00:00:00Z", night_charge()),
            Some("payload.valid_until"),
        ),
        (
            "valid_until year 9999",
            schedule_with("UTC", "9999-12-31T23:59:59Z", night_charge()),
            Some("payload.valid_until"),
        ),
        (
            "valid_until year 200000",
            schedule_with("UTC", "+200000-01-01T00:00:00Z", night_charge()),
            Some("payload.valid_until"),
        ),
        (
            "no valid_until",
            json!({"windows": night_charge()}).to_string(),
            Some("payload.valid_until"),
        ),
        (
            "power 1e308",
            schedule_with(
                "UTC",
                &tomorrow(),
                json!([{"daily_start": "23:00", "daily_end": "06:00", "action": "CHARGE", "power_w": 1e308}]),
            ),
            None,
        ),
        (
            "daily_start 25:00",
            schedule_with(
                "UTC",
                &tomorrow(),
                json!([{"daily_start": "25:00", "daily_end": "06:00", "action": "HOLD"}]),
            ),
            None,
        ),
        (
            "unknown action",
            schedule_with(
                "UTC",
                &tomorrow(),
                json!([{"daily_start": "23:00", "daily_end": "06:00", "action": "EXPLODE"}]),
            ),
            None,
        ),
        (
            "unknown field",
            json!({"valid_until": tomorrow(), "windows": night_charge(), "owner": "root"})
                .to_string(),
            None,
        ),
        (
            "deep nesting",
            format!(
                r#"{{"valid_until":"{}","windows":{}{}}}"#,
                tomorrow(),
                "[".repeat(50_000),
                "]".repeat(50_000)
            ),
            None,
        ),
        ("a list", "[]".into(), None),
        ("truncated", r#"{"windows": [{"daily_start""#.into(), None),
        (
            "half a megabyte zone",
            schedule_with(&"A".repeat(500_000), &tomorrow(), night_charge()),
            Some("payload.time_zone"),
        ),
    ];
    for (what, body, field) in &cases {
        let answer = put(&server, path, &operator, body.clone()).await;
        assert_refused(what, &answer, Some(400), *field);
    }
    let answer = put(
        &server,
        path,
        &operator,
        schedule_with(&"A".repeat(3 << 20), &tomorrow(), night_charge()),
    )
    .await;
    assert_refused("3 MB zone", &answer, Some(413), None);

    for wait in ["NaN", "-1", "inf", "1e308", "99999999999999999999", "x"] {
        let answer = put(
            &server,
            &format!("{path}?wait={wait}"),
            &operator,
            good.clone(),
        )
        .await;
        assert_refused(&format!("wait={wait}"), &answer, Some(400), Some("wait"));
        let answer = send(
            &server,
            Method::DELETE,
            &format!("{path}?wait={wait}"),
            &operator,
            None,
        )
        .await;
        assert_refused(
            &format!("DELETE wait={wait}"),
            &answer,
            Some(400),
            Some("wait"),
        );
    }

    let answer = put(&server, path, &viewer, good.clone()).await;
    assert_refused("viewer writes", &answer, Some(403), None);
    let answer = send(&server, Method::DELETE, path, &viewer, None).await;
    assert_refused("viewer clears", &answer, Some(403), None);
    for id in ["ems_nobody", "%00", "ems%00s", &"y".repeat(5000)] {
        let p = format!("/devices/{id}/schedule");
        let answer = put(&server, &p, &operator, good.clone()).await;
        assert_refused(&format!("PUT id {id:.20}"), &answer, Some(404), None);
        let answer = send(&server, Method::DELETE, &p, &operator, None).await;
        assert_refused(&format!("DELETE id {id:.20}"), &answer, Some(404), None);
        let answer = send(&server, Method::GET, &p, &viewer, None).await;
        assert_refused(&format!("GET id {id:.20}"), &answer, Some(404), None);
    }

    // Nothing refused was stored; the schedule sent before is the device's only command.
    assert_eq!(count_rows(&server.db_url, commands).await, 1);
    let answer = send(&server, Method::GET, path, &viewer, None).await;
    assert_refused("never accepted", &answer, Some(404), None);
}
