//! Hostile input to the admin endpoints that store names: device tags (`PUT /devices/<id>/tags`
//! with 10,000 tags, a megabyte tag, control characters, SQL), `GET /devices?tag=` with odd
//! values, API tokens (`POST /tokens` with absurd `expires_at`, names with control characters
//! or a megabyte long, `+200000` years), odd query values on the device token and delete
//! routes, and alert rules (`POST`/`DELETE /alert-rules`). Every answer is a 4xx
//! with a JSON error naming the field, never a 500 (a NUL byte reaching PostgreSQL was one),
//! and the tags, tokens and rules stored before are unchanged.

use ems_protocol::api::{AlertRule, DeviceInfo, Role, TokenInfo};
use reqwest::Method;
use serde_json::json;

use crate::hostile_support::{Answer, assert_refused, send, send_json};
use ems_cloud::testing::TestCloud;

async fn json_to(
    server: &TestCloud,
    method: Method,
    path: &str,
    body: impl Into<Vec<u8>>,
) -> Answer {
    send_json(server, method, path, &server.admin.clone(), body).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_tags_are_refused_and_the_old_tags_stay() {
    let server = TestCloud::fresh().await;
    server.add_device("ems_g").await;
    let viewer = server.token("viewer", Role::Viewer).await;
    let path = "/devices/ems_g/tags";
    let ok = json_to(
        &server,
        Method::PUT,
        path,
        json!({"tags": ["site:lyon", "fleet-a"]}).to_string(),
    )
    .await;
    assert_eq!(ok.status, 200, "{}", ok.text);

    let many: Vec<String> = (0..10_000).map(|i| format!("t{i}")).collect();
    let cases: Vec<(&str, String, Option<&str>)> = vec![
        (
            "10000 tags",
            json!({"tags": many.clone()}).to_string(),
            Some("tags"),
        ),
        (
            "800 kB tag",
            json!({"tags": ["a".repeat(800_000)]}).to_string(),
            Some("tags"),
        ),
        (
            "newline",
            json!({"tags": ["a\nb"]}).to_string(),
            Some("tags"),
        ),
        (
            "NUL",
            json!({"tags": ["a\u{0}b"]}).to_string(),
            Some("tags"),
        ),
        (
            "escape sequence",
            json!({"tags": ["\u{1b}[31mred"]}).to_string(),
            Some("tags"),
        ),
        (
            "SQL",
            json!({"tags": ["'; DROP TABLE devices; --"]}).to_string(),
            Some("tags"),
        ),
        (
            "SQL or",
            json!({"tags": ["x' OR '1'='1"]}).to_string(),
            Some("tags"),
        ),
        ("empty tag", json!({"tags": [""]}).to_string(), Some("tags")),
        (
            "a number",
            json!({"tags": [1]}).to_string(),
            Some("tags[0]"),
        ),
        (
            "not a list",
            json!({"tags": "a,b"}).to_string(),
            Some("tags"),
        ),
        ("no tags", json!({}).to_string(), None),
        ("null", "null".into(), None),
        ("not JSON", "tags=a".into(), None),
    ];
    for (what, body, field) in &cases {
        let answer = json_to(&server, Method::PUT, path, body.clone()).await;
        assert_refused(what, &answer, Some(400), *field);
    }
    let answer = json_to(
        &server,
        Method::PUT,
        path,
        json!({"tags": ["a".repeat(2 << 20)]}).to_string(),
    )
    .await;
    assert_refused("2 MB tag", &answer, Some(413), None);
    let answer = send_json(
        &server,
        Method::PUT,
        path,
        &viewer,
        json!({"tags": []}).to_string(),
    )
    .await;
    assert_refused("viewer writes", &answer, Some(403), None);
    for id in ["ems_nobody", "%00", "ems%00g"] {
        let answer = json_to(
            &server,
            Method::PUT,
            &format!("/devices/{id}/tags"),
            json!({"tags": []}).to_string(),
        )
        .await;
        assert_refused(&format!("id {id}"), &answer, Some(404), None);
    }

    // The other admin routes of a device, with an id that cannot exist: refused, never a 500.
    for (method, path) in [
        (Method::POST, "/devices/ems%00g/token"),
        (Method::POST, "/devices/ems%00g/disable"),
        (Method::POST, "/devices/ems%00g/enable"),
        (Method::DELETE, "/devices/ems%00g?purge=true"),
        (Method::POST, "/devices/ems%00g/live-ticket"),
    ] {
        let answer = send(&server, method.clone(), path, &server.admin, None).await;
        assert_refused(&format!("{method} {path}"), &answer, None, None);
    }

    // Odd filters find nothing, or are refused; never a 500.
    for tag in [
        "%00",
        "a%00b",
        "%27%20OR%20%271%27%3D%271",
        "%0A",
        "",
        &"z".repeat(10_000),
    ] {
        let answer = send(
            &server,
            Method::GET,
            &format!("/devices?tag={tag}"),
            &viewer,
            None,
        )
        .await;
        if answer.status == 200 {
            assert_eq!(answer.json, json!([]), "tag {tag:.20}");
        } else {
            assert_refused(&format!("tag={tag:.20}"), &answer, Some(400), Some("tag"));
        }
    }

    // Registering a device: the same tag rules, names without control characters.
    let new_device =
        |body: serde_json::Value| json_to(&server, Method::POST, "/devices", body.to_string());
    for (what, body, field) in [
        (
            "NUL name",
            json!({"id": "ems_n1", "name": "a\u{0}b"}),
            "name",
        ),
        (
            "newline name",
            json!({"id": "ems_n2", "name": "a\nb"}),
            "name",
        ),
        (
            "SQL tag",
            json!({"id": "ems_n3", "tags": ["'; DROP TABLE devices; --"]}),
            "tags",
        ),
        ("10000 tags", json!({"id": "ems_n4", "tags": many}), "tags"),
        ("NUL id", json!({"id": "ems\u{0}n5"}), "id"),
        ("number id", json!({"id": 5}), "id"),
        ("no id", json!({"name": "x"}), "id"),
    ] {
        let answer = new_device(body).await;
        assert_refused(what, &answer, Some(400), Some(field));
    }
    let listed: Vec<DeviceInfo> = server.get_json("/devices").await;
    assert_eq!(listed.len(), 1, "nothing refused was registered");

    let device: DeviceInfo = server.get_json("/devices/ems_g").await;
    assert_eq!(device.tags, ["fleet-a", "site:lyon"]);
    let found: Vec<DeviceInfo> = server.get_json("/devices?tag=site:lyon").await;
    assert_eq!(found.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_tokens_are_refused_and_the_old_tokens_stay() {
    let server = TestCloud::fresh().await;
    server.add_device("ems_k").await;
    let kept = server.token("kept", Role::Viewer).await;
    let before: Vec<TokenInfo> = server.get_json("/tokens").await;

    let token = |name: &str, expires_at: serde_json::Value| {
        json!({"name": name, "role": "viewer", "expires_at": expires_at}).to_string()
    };
    let cases: Vec<(&str, String, Option<&str>)> = vec![
        ("NUL in name", token("a\u{0}b", json!(null)), Some("name")),
        (
            "newline in name",
            token("alice\nADMIN LOGIN", json!(null)),
            Some("name"),
        ),
        (
            "escape in name",
            token("\u{1b}[2Jbob", json!(null)),
            Some("name"),
        ),
        ("DEL in name", token("bob\u{7f}", json!(null)), Some("name")),
        (
            "800 kB name",
            token(&"n".repeat(800_000), json!(null)),
            Some("name"),
        ),
        ("blank name", token("   ", json!(null)), Some("name")),
        (
            "expired",
            token("e1", json!("2000-01-01T00:00:00Z")),
            Some("expires_at"),
        ),
        (
            "year 0",
            token("e2", json!("0000-01-01T00:00:00Z")),
            Some("expires_at"),
        ),
        (
            "year 200000",
            token("e3", json!("+200000-01-01T00:00:00Z")),
            Some("expires_at"),
        ),
        ("a number", token("e4", json!(1e308)), Some("expires_at")),
        (
            "not a time",
            token("e5", json!("never")),
            Some("expires_at"),
        ),
        (
            "unknown role",
            json!({"name": "r", "role": "root"}).to_string(),
            Some("role"),
        ),
        (
            "NUL device",
            json!({"name": "d", "role": "viewer", "devices": ["ems\u{0}k"]}).to_string(),
            Some("devices"),
        ),
        (
            "SQL tag",
            json!({"name": "t", "role": "viewer", "tags": ["' OR 1=1 --"]}).to_string(),
            Some("tags"),
        ),
        (
            "1001 devices (every request of the token checks its list)",
            json!({"name": "many", "role": "viewer",
                   "devices": (0..1001).map(|i| format!("d{i}")).collect::<Vec<_>>()})
            .to_string(),
            Some("devices"),
        ),
    ];
    for (what, body, field) in &cases {
        let answer = json_to(&server, Method::POST, "/tokens", body.clone()).await;
        assert_refused(what, &answer, Some(400), *field);
    }
    let answer = json_to(
        &server,
        Method::POST,
        "/tokens",
        token(&"n".repeat(2 << 20), json!(null)),
    )
    .await;
    assert_refused("2 MB name", &answer, Some(413), None);
    for name in ["%00", "a%00b", "%0A", &"q".repeat(5000)] {
        let answer = send(
            &server,
            Method::DELETE,
            &format!("/tokens/{name}"),
            &server.admin,
            None,
        )
        .await;
        assert_refused(&format!("revoke {name:.20}"), &answer, Some(404), None);
        let answer = send(
            &server,
            Method::POST,
            &format!("/tokens/{name}/rotate"),
            &server.admin,
            None,
        )
        .await;
        assert_refused(&format!("rotate {name:.20}"), &answer, Some(404), None);
    }
    for (query, field) in [
        ("device=%00", "device"),
        ("device=%27%20OR%201%3D1", "device"),
        ("action=%00", "action"),
        ("action=x%27%3B--", "action"),
        ("before=%00", "before"),
        ("before=10000-01-01T00:00:00Z", "before"),
        ("limit=-1", "limit"),
        ("limit=abc", "limit"),
        ("limit=99999999999999999999", "limit"),
    ] {
        let answer = send(
            &server,
            Method::GET,
            &format!("/audit?{query}"),
            &server.admin,
            None,
        )
        .await;
        assert_refused(&format!("audit?{query}"), &answer, Some(400), Some(field));
    }

    // Query values that do not parse are refused, not read as absent: `grace_s=1h` would
    // otherwise end the old device token at once, `purge=yes` keep the telemetry.
    let answer = send(
        &server,
        Method::POST,
        "/devices/ems_k/token?grace_s=1h",
        &server.admin,
        None,
    )
    .await;
    assert_refused("grace_s=1h", &answer, Some(400), Some("grace_s"));
    let answer = send(
        &server,
        Method::DELETE,
        "/devices/ems_k?purge=yes",
        &server.admin,
        None,
    )
    .await;
    assert_refused("purge=yes", &answer, Some(400), Some("purge"));
    let answer = send(
        &server,
        Method::GET,
        "/tokens?revoked=1",
        &server.admin,
        None,
    )
    .await;
    assert_refused("revoked=1", &answer, Some(400), Some("revoked"));
    let answer = send(&server, Method::GET, "/devices/ems_k", &server.admin, None).await;
    assert_eq!(
        answer.status, 200,
        "the device is still there: {}",
        answer.text
    );

    // A far but real expiry is a token like any other.
    let answer = json_to(
        &server,
        Method::POST,
        "/tokens",
        token("far", json!("9999-12-31T23:59:59Z")),
    )
    .await;
    assert_eq!(answer.status, 201, "{}", answer.text);
    let after: Vec<TokenInfo> = server.get_json("/tokens").await;
    assert_eq!(after.len(), before.len() + 1);
    let resp = server.get("/devices", &kept).await;
    assert_eq!(resp.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_alert_rules_are_refused_and_the_old_rules_stay() {
    let server = TestCloud::fresh().await;
    server.add_device("ems_r").await;
    let viewer = server.token("viewer", Role::Viewer).await;
    let ok = json_to(
        &server,
        Method::POST,
        "/alert-rules",
        json!({"name": "low", "kind": "SOC_BELOW", "threshold": 20}).to_string(),
    )
    .await;
    assert_eq!(ok.status, 201, "{}", ok.text);

    let rule = |extra: serde_json::Value| {
        let mut r = json!({"name": "r", "kind": "OFFLINE", "for_s": 60});
        for (k, v) in extra.as_object().unwrap() {
            r[k] = v.clone();
        }
        r.to_string()
    };
    let cases: Vec<(&str, String, Option<&str>)> = vec![
        ("NUL in name", rule(json!({"name": "a\u{0}"})), Some("name")),
        (
            "newline in name",
            rule(json!({"name": "a\nb"})),
            Some("name"),
        ),
        (
            "800 kB name",
            rule(json!({"name": "n".repeat(800_000)})),
            Some("name"),
        ),
        (
            "NUL device",
            rule(json!({"device_id": "ems\u{0}r"})),
            Some("device_id"),
        ),
        (
            "SQL device",
            rule(json!({"device_id": "x'; DROP TABLE alert_rules; --"})),
            Some("device_id"),
        ),
        (
            "unknown device",
            rule(json!({"device_id": "ems_nobody"})),
            Some("device_id"),
        ),
        (
            "NUL flag",
            json!({"name": "f", "kind": "ERROR_FLAG", "flag": "OVER\u{0}HEAT"}).to_string(),
            Some("flag"),
        ),
        (
            "long flag",
            json!({"name": "f", "kind": "ERROR_FLAG", "flag": "F".repeat(100_000)}).to_string(),
            Some("flag"),
        ),
        ("for_s negative", rule(json!({"for_s": -1})), Some("for_s")),
        ("for_s huge", rule(json!({"for_s": 1e18})), Some("for_s")),
        (
            "for_s 2^32",
            rule(json!({"for_s": 4294967296u64})),
            Some("for_s"),
        ),
        (
            "threshold 1e309",
            r#"{"name":"t","kind":"SOC_BELOW","threshold":1e309}"#.into(),
            Some("threshold"),
        ),
        (
            "threshold NaN",
            r#"{"name":"t","kind":"SOC_BELOW","threshold":NaN}"#.into(),
            Some("threshold"),
        ),
        (
            "threshold 1e308",
            json!({"name": "t", "kind": "GRID_EXPORT_ABOVE", "threshold": 1e308}).to_string(),
            Some("threshold"),
        ),
        ("unknown kind", rule(json!({"kind": "FIRE"})), Some("kind")),
        ("taken name", rule(json!({"name": "low"})), None),
    ];
    for (what, body, field) in &cases {
        let answer = json_to(&server, Method::POST, "/alert-rules", body.clone()).await;
        let status = if *what == "taken name" { 409 } else { 400 };
        assert_refused(what, &answer, Some(status), *field);
    }
    let answer = send_json(
        &server,
        Method::POST,
        "/alert-rules",
        &viewer,
        rule(json!({})),
    )
    .await;
    assert_refused("viewer writes", &answer, Some(403), None);
    for name in ["%00", "nobody", &"w".repeat(5000)] {
        let answer = send(
            &server,
            Method::DELETE,
            &format!("/alert-rules/{name}"),
            &server.admin,
            None,
        )
        .await;
        assert_refused(&format!("delete {name:.20}"), &answer, Some(404), None);
    }
    for query in [
        "state=%00",
        "device=%00",
        "device=ems_nobody",
        "limit=0",
        "limit=-5",
        "limit=1e9",
    ] {
        let answer = send(
            &server,
            Method::GET,
            &format!("/alerts?{query}"),
            &viewer,
            None,
        )
        .await;
        assert_refused(&format!("alerts?{query}"), &answer, None, None);
    }

    let rules: Vec<AlertRule> = server.get_json("/alert-rules").await;
    assert_eq!(rules.len(), 1);
    assert_eq!(rules[0].rule.name, "low");
    assert_eq!(rules[0].rule.threshold, Some(20.0));
}
