//! Hostile input to `PUT`/`GET /devices/<id>/tariff`: bodies too big or too long, prices that
//! are not numbers or not finite, reversed, overlapping and unsorted periods, timestamps at
//! the ends of the calendar, missing and unknown fields, wrong content types, ids that do not
//! exist, are out of the token's scope or cannot exist, a viewer writing. Every answer is a
//! 4xx with a JSON error (naming the period and field where there is one), and the tariff
//! stored before is still there, unchanged.

use ems_protocol::api::{Role, Tariff};
use reqwest::Method;
use serde_json::json;

use crate::hostile_support::{Answer, assert_refused, send, send_json};
use ems_cloud::testing::TestCloud;

fn stored() -> serde_json::Value {
    json!([
        {"start": "2026-12-01T00:00:00Z", "end": "2026-12-01T06:00:00Z", "import_price": 0.10, "export_price": 0.05},
        {"start": "2026-12-01T06:00:00Z", "end": "2026-12-01T17:00:00Z", "import_price": 0.25, "export_price": 0.05},
    ])
}

/// `n` adjacent 15-minute periods from 2026-12-01.
fn periods(n: usize) -> String {
    let start = chrono::DateTime::parse_from_rfc3339("2026-12-01T00:00:00Z").unwrap();
    let items: Vec<String> = (0..n)
        .map(|i| {
            let a = start + chrono::Duration::minutes(15 * i as i64);
            let b = a + chrono::Duration::minutes(15);
            format!(
                r#"{{"start":"{}","end":"{}","import_price":0.1,"export_price":0.05}}"#,
                a.to_rfc3339(),
                b.to_rfc3339()
            )
        })
        .collect();
    format!("[{}]", items.join(","))
}

async fn put(server: &TestCloud, device: &str, token: &str, body: impl Into<Vec<u8>>) -> Answer {
    send_json(
        server,
        Method::PUT,
        &format!("/devices/{device}/tariff"),
        token,
        body,
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_tariffs_are_refused_and_lose_nothing() {
    let server = TestCloud::fresh().await;
    server.add_device("ems_t").await;
    server.add_device("ems_other").await;
    let operator = server.token("op", Role::Operator).await;
    let viewer = server.token("viewer", Role::Viewer).await;
    let (status, body) = server
        .post_json(
            "/tokens",
            &server.admin.clone(),
            &json!({"name": "scoped", "role": "operator", "devices": ["ems_other"]}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let scoped = body["token"].as_str().unwrap().to_string();

    let ok = put(&server, "ems_t", &operator, stored().to_string()).await;
    assert_eq!(ok.status, 200, "{}", ok.text);

    let one = |start: &str, end: &str, import: &str| {
        format!(
            r#"[{{"start":"{start}","end":"{end}","import_price":{import},"export_price":0.05}}]"#
        )
    };
    let day = ("2026-12-01T00:00:00Z", "2026-12-01T01:00:00Z");
    // (what, body, field the answer names)
    let cases: Vec<(&str, String, Option<&str>)> = vec![
        ("3000 periods", periods(3000), None),
        ("NaN price", one(day.0, day.1, "NaN"), Some("[0].import_price")),
        ("Infinity price", one(day.0, day.1, "Infinity"), Some("[0].import_price")),
        ("1e309 price", one(day.0, day.1, "1e309"), Some("[0].import_price")),
        ("1e308 price", one(day.0, day.1, "1e308"), Some("[0].import_price")),
        ("string price", one(day.0, day.1, "\"0.1\""), Some("[0].import_price")),
        ("null price", one(day.0, day.1, "null"), Some("[0].import_price")),
        ("reversed", one(day.1, day.0, "0.1"), Some("[0].end")),
        ("empty", one(day.0, day.0, "0.1"), Some("[0].end")),
        (
            "year 0",
            one("0000-01-01T00:00:00Z", "0000-01-01T01:00:00Z", "0.1"),
            Some("[0].start"),
        ),
        (
            "negative year",
            one("-0001-01-01T00:00:00Z", "2026-01-01T01:00:00Z", "0.1"),
            Some("[0].start"),
        ),
        (
            "year 10000",
            one("9999-12-31T23:00:00Z", "+10000-01-01T00:00:00Z", "0.1"),
            Some("[0].end"),
        ),
        ("not a time", one("yesterday", day.1, "0.1"), Some("[0].start")),
        (
            "overlapping",
            json!([
                {"start": "2026-12-01T00:00:00Z", "end": "2026-12-01T02:00:00Z", "import_price": 0.1, "export_price": 0.0},
                {"start": "2026-12-01T01:00:00Z", "end": "2026-12-01T03:00:00Z", "import_price": 0.1, "export_price": 0.0},
            ])
            .to_string(),
            Some("[1].start"),
        ),
        (
            "unsorted",
            json!([
                {"start": "2026-12-02T00:00:00Z", "end": "2026-12-02T02:00:00Z", "import_price": 0.1, "export_price": 0.0},
                {"start": "2026-12-01T00:00:00Z", "end": "2026-12-01T03:00:00Z", "import_price": 0.1, "export_price": 0.0},
            ])
            .to_string(),
            Some("[1].start"),
        ),
        (
            "missing end",
            r#"[{"start":"2026-12-01T00:00:00Z","import_price":0.1,"export_price":0.0}]"#.into(),
            Some("[0].end"),
        ),
        (
            "unknown field",
            r#"[{"start":"2026-12-01T00:00:00Z","end":"2026-12-01T01:00:00Z","import_price":0.1,"export_price":0.0,"vat":0.2}]"#.into(),
            Some("[0].vat"),
        ),
        ("an object", r#"{"periods":[]}"#.into(), None),
        ("null", "null".into(), None),
        ("empty body", String::new(), None),
        ("truncated", r#"[{"start":"2026-12-01T00:00:00Z","#.into(), None),
        ("deep nesting", format!("{}{}", "[".repeat(100_000), "]".repeat(100_000)), None),
    ];
    for (what, body, field) in &cases {
        let answer = put(&server, "ems_t", &operator, body.clone()).await;
        assert_refused(what, &answer, Some(400), *field);
    }

    // Bodies over the JSON limit (1 MiB): 100,000 periods, a 2 MB string.
    let answer = put(&server, "ems_t", &operator, periods(100_000)).await;
    assert_refused("100000 periods", &answer, Some(413), None);
    let answer = put(
        &server,
        "ems_t",
        &operator,
        one(&"9".repeat(2 << 20), day.1, "0.1"),
    )
    .await;
    assert_refused("2 MB timestamp", &answer, Some(413), None);
    // Not UTF-8, not JSON as a content type, a form.
    let answer = put(&server, "ems_t", &operator, vec![b'[', 0xff, 0xfe, b']']).await;
    assert_refused("invalid UTF-8", &answer, Some(400), None);
    let answer = send(
        &server,
        Method::PUT,
        "/devices/ems_t/tariff",
        &operator,
        Some((
            "application/x-www-form-urlencoded",
            b"start=now&end=later".to_vec(),
        )),
    )
    .await;
    assert_refused("a form", &answer, None, None);

    // Who may write which device.
    let body = stored().to_string();
    let answer = put(&server, "ems_t", &viewer, body.clone()).await;
    assert_refused("viewer writes", &answer, Some(403), None);
    let answer = put(&server, "ems_t", &scoped, body.clone()).await;
    assert_refused("out of scope", &answer, Some(404), None);
    let answer = put(&server, "ems_t", "emsa_not-a-token", body.clone()).await;
    assert_refused("bad token", &answer, Some(401), None);
    let answer = put(&server, "ems_nobody", &operator, body.clone()).await;
    assert_refused("unknown device", &answer, Some(404), None);
    for id in [
        "%00",
        "ems%00t",
        "a%0Ab",
        &"x".repeat(5000),
        "%27%3B%20DROP%20TABLE%20tariffs%3B--",
    ] {
        let answer = put(&server, id, &operator, body.clone()).await;
        assert_refused(&format!("PUT id {id:.20}"), &answer, Some(404), None);
        let answer = send(
            &server,
            Method::GET,
            &format!("/devices/{id}/tariff"),
            &viewer,
            None,
        )
        .await;
        assert_refused(&format!("GET id {id:.20}"), &answer, Some(404), None);
    }
    let answer = send(&server, Method::GET, "/devices/ems_t/tariff", &scoped, None).await;
    assert_refused("GET out of scope", &answer, Some(404), None);

    // Nothing was lost or altered.
    let kept: Tariff = server.get_json("/devices/ems_t/tariff").await;
    assert_eq!(serde_json::to_value(&kept.periods).unwrap(), stored());
    let other: Tariff = server.get_json("/devices/ems_other/tariff").await;
    assert!(other.periods.is_empty());

    // The last hour the calendar allows is a tariff like any other, and reads back.
    let last = one("9999-12-31T23:00:00Z", "9999-12-31T23:59:59Z", "-10000");
    let answer = put(&server, "ems_t", &operator, last.clone()).await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    let kept: Tariff = server.get_json("/devices/ems_t/tariff").await;
    assert_eq!(kept.periods.len(), 1);
    assert_eq!(kept.periods[0].import_price, -10000.0);
}

/// Tariff `i` of the race below: three hours from a start shifted by `i` minutes, prices that
/// say which one it is.
fn racing_tariff(i: usize) -> serde_json::Value {
    let start = chrono::DateTime::parse_from_rfc3339("2026-12-01T00:00:00Z").unwrap()
        + chrono::Duration::minutes((i % 4) as i64);
    let periods: Vec<serde_json::Value> = (0..3)
        .map(|h| {
            json!({
                "start": (start + chrono::Duration::hours(h))
                    .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                "end": (start + chrono::Duration::hours(h + 1))
                    .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                "import_price": i as f64,
                "export_price": 0.0,
            })
        })
        .collect();
    json!(periods)
}

/// Sixteen operators replace one device's tariff at the same moment: each gets a 200 and what
/// is stored is exactly one of their tariffs, never two mixed (overlapping periods) and never
/// a 500 from two inserts of the same period.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_tariffs_raced_leave_one_whole_tariff() {
    let server = TestCloud::fresh().await;
    server.add_device("ems_race").await;
    let operator = server.token("op", Role::Operator).await;
    for round in 0..3 {
        let puts = (0..16).map(|i| {
            let (server, operator) = (&server, &operator);
            async move { put(server, "ems_race", operator, racing_tariff(i).to_string()).await }
        });
        for answer in futures_util::future::join_all(puts).await {
            assert_eq!(answer.status, 200, "round {round}: {}", answer.text);
        }
        let stored: Tariff = server.get_json("/devices/ems_race/tariff").await;
        let stored = serde_json::to_value(&stored.periods).unwrap();
        assert!(
            (0..16).any(|i| racing_tariff(i) == stored),
            "round {round}: a mix of tariffs was stored: {stored}"
        );
    }
}
