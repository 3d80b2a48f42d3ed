//! Hostile query strings on the read endpoints: `/telemetry`, `/energy` and `/events` with
//! `from`/`to` at year 0, 9999 and 10000, `from` after `to`, buckets of 0 s, a million days or
//! more digits than an i64 holds, absurd limits and field lists. Every answer is a 200 or a
//! 4xx with a JSON error naming the parameter; never a 500 or a hang. A number that does not
//! parse (`limit=abc`) is refused, not silently read as absent.

use ems_protocol::api::Role;
use reqwest::Method;

use crate::hostile_support::{assert_refused, send};
use ems_cloud::testing::TestCloud;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_history_queries_answer_4xx_naming_the_parameter() {
    let server = TestCloud::fresh().await;
    server.add_device("ems_h").await;
    let viewer = server.token("viewer", Role::Viewer).await;

    // (query, the parameter the refusal names; None: a 200 is also fine)
    let refused: &[(&str, &str)] = &[
        ("from=10000-01-01T00:00:00Z", "from"),
        ("to=10000-01-01T00:00:00Z", "to"),
        ("from=%00", "from"),
        ("bucket=0s", "bucket"),
        ("bucket=0", "bucket"),
        ("bucket=1000000d", "bucket"),
        ("bucket=99999999999999999999999", "bucket"),
        ("bucket=-5m", "bucket"),
        ("bucket=1y", "bucket"),
        ("bucket=%00", "bucket"),
    ];
    let either: &[&str] = &[
        "from=0000-01-01T00:00:00Z&to=9999-12-31T23:59:59Z",
        "from=0000-01-01T00:00:00Z&to=9999-12-31T23:59:59Z&bucket=1s",
        "from=0000-01-01T00:00:00Z&to=9999-12-31T23:59:59Z&bucket=31d",
        "from=9999-12-31T23:59:59Z&to=0000-01-01T00:00:00Z",
        "from=2026-01-02T00:00:00Z&to=2026-01-01T00:00:00Z&bucket=1h",
        "from=9999-12-31T23:59:59%2B23:59&to=9999-12-31T23:59:59-23:59",
        "from=0000-01-01T00:00:00-23:59",
    ];
    for endpoint in ["telemetry", "energy"] {
        let base = format!("/devices/ems_h/{endpoint}");
        for (query, field) in refused {
            let answer = send(
                &server,
                Method::GET,
                &format!("{base}?{query}"),
                &viewer,
                None,
            )
            .await;
            assert_refused(
                &format!("{endpoint}?{query}"),
                &answer,
                Some(400),
                Some(field),
            );
        }
        for query in either {
            let answer = send(
                &server,
                Method::GET,
                &format!("{base}?{query}"),
                &viewer,
                None,
            )
            .await;
            if answer.status != 200 {
                assert_refused(&format!("{endpoint}?{query}"), &answer, Some(400), None);
            }
        }
    }
    let telemetry = "/devices/ems_h/telemetry";
    for (query, field) in [
        ("limit=0", "limit"),
        ("limit=-1", "limit"),
        ("limit=99999999999999999999", "limit"),
        ("limit=abc", "limit"),
        ("limit=1.5", "limit"),
        ("fields=%00", "fields"),
        ("fields=battery_soc;DROP%20TABLE%20telemetry", "fields"),
    ] {
        let answer = send(
            &server,
            Method::GET,
            &format!("{telemetry}?{query}"),
            &viewer,
            None,
        )
        .await;
        assert_refused(
            &format!("telemetry?{query}"),
            &answer,
            Some(400),
            Some(field),
        );
    }
    for query in [
        "from=0000-01-01T00:00:00Z&to=9999-12-31T23:59:59Z",
        "from=9999-12-31T23:59:59Z&to=0000-01-01T00:00:00Z",
        "limit=0",
        "limit=99999999999999999999",
        "limit=abc",
        "from=%00",
        "from=10000-01-01T00:00:00Z",
    ] {
        let answer = send(
            &server,
            Method::GET,
            &format!("/devices/ems_h/events?{query}"),
            &viewer,
            None,
        )
        .await;
        if answer.status != 200 {
            assert_refused(&format!("events?{query}"), &answer, Some(400), None);
        }
    }
    for query in [
        "limit=0",
        "limit=99999999999999999999",
        "status=%00",
        "status=NOPE",
    ] {
        let answer = send(
            &server,
            Method::GET,
            &format!("/devices/ems_h/commands?{query}"),
            &viewer,
            None,
        )
        .await;
        if answer.status != 200 {
            assert_refused(&format!("commands?{query}"), &answer, Some(400), None);
        }
    }
    for id in ["%00", "a%00b", &"c".repeat(5000)] {
        let answer = send(
            &server,
            Method::GET,
            &format!("/commands/{id}"),
            &viewer,
            None,
        )
        .await;
        assert_refused(&format!("command {id:.20}"), &answer, Some(404), None);
        for endpoint in [
            "telemetry",
            "energy",
            "events",
            "telemetry/latest",
            "commands",
        ] {
            let answer = send(
                &server,
                Method::GET,
                &format!("/devices/{id}/{endpoint}"),
                &viewer,
                None,
            )
            .await;
            assert_refused(&format!("{endpoint} of {id:.20}"), &answer, Some(404), None);
        }
    }
}
