//! Hostile input to the planner's routes: a figure that does not parse, is not finite, is
//! absurdly large or is given twice is refused naming it (Rocket alone would plan as if it were
//! absent: `import_limit_w=5kW` planned without the limit), and a broken settings body names its
//! field. Nothing stored changes.

use crate::common;

use common::TestServer;
use ems_protocol::api::Role;
use reqwest::Method;

use super::hostile_support::{assert_refused, send, send_json};

const BATTERY: &str = "capacity_wh=10000&max_charge_w=3000&max_discharge_w=3000";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_figures_are_used_or_refused_by_name() {
    let server = TestServer::fresh().await;
    server.add_device("ems_hp").await;
    let operator = server.token("op", Role::Operator).await;

    for (query, field) in [
        ("import_limit_w=abc", "import_limit_w"),
        ("import_limit_w=5kW", "import_limit_w"),
        ("efficiency=x", "efficiency"),
        ("end_soc_pct=abc", "end_soc_pct"),
        ("reserve_soc_pct=-1e308", "reserve_soc_pct"),
        ("export_limit_w=NaN", "export_limit_w"),
        ("soc_pct=inf", "soc_pct"),
        ("hours=1e10", "hours"),
        ("capacity_wh=20000", "capacity_wh"),
    ] {
        // The last case repeats `capacity_wh` (BATTERY has it): given twice.
        let path = format!("/devices/ems_hp/plan?{BATTERY}&{query}");
        let answer = send(&server, Method::GET, &path, &operator, None).await;
        assert_refused(&path, &answer, Some(400), Some(field));
        assert!(answer.text.len() < 400, "{path}: {}", answer.text);
        let apply = format!("/devices/ems_hp/plan/apply?{BATTERY}&{query}");
        let answer = send(&server, Method::POST, &apply, &operator, None).await;
        assert_refused(&apply, &answer, Some(400), Some(field));
    }
    let path = format!("/devices/ems_hp/plan/apply?{BATTERY}&wait=x");
    let answer = send(&server, Method::POST, &path, &operator, None).await;
    assert_refused(&path, &answer, Some(400), Some("wait"));
    // A good figure is still read (the answer is then about the missing tariff).
    let path = format!("/devices/ems_hp/plan?{BATTERY}&soc_pct=50&import_limit_w=9000");
    let answer = send(&server, Method::GET, &path, &operator, None).await;
    assert_eq!(answer.status, 409, "{}", answer.text);

    // Settings: a good body is stored; broken ones name their field and change nothing.
    let good = r#"{"planner": "off", "capacity_wh": 10000, "max_charge_w": 3000, "max_discharge_w": 3000}"#;
    let answer = send_json(
        &server,
        Method::PUT,
        "/devices/ems_hp/planner",
        &operator,
        good,
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    for (body, field) in [
        (
            r#"{"planner": "cloud", "capacity_wh": "x", "max_charge_w": 3000, "max_discharge_w": 3000}"#,
            "capacity_wh",
        ),
        (
            r#"{"planner": "cloud", "capacity_wh": 1e308, "max_charge_w": 3000, "max_discharge_w": 3000}"#,
            "capacity_wh",
        ),
        (
            r#"{"planner": "cloud", "capacity_wh": 10000, "max_charge_w": 3000, "max_discharge_w": 3000, "import_limit_w": -1e300}"#,
            "import_limit_w",
        ),
        (
            r#"{"planner": "cloud", "capacity_wh": 10000, "max_charge_w": 3000}"#,
            "max_discharge_w",
        ),
        (
            r#"{"planner": "cloud", "capacity_wh": 10000, "max_charge_w": 3000, "max_discharge_w": 3000, "surprise": 1}"#,
            "surprise",
        ),
    ] {
        let answer = send_json(
            &server,
            Method::PUT,
            "/devices/ems_hp/planner",
            &operator,
            body,
        )
        .await;
        assert_refused(body, &answer, Some(400), Some(field));
        assert!(answer.text.len() < 400, "{body}: {}", answer.text);
    }
    let stored = send(
        &server,
        Method::GET,
        "/devices/ems_hp/planner",
        &operator,
        None,
    )
    .await;
    assert_eq!(stored.status, 200, "{}", stored.text);
    assert_eq!(stored.json["planner"], "off");
    assert_eq!(stored.json["capacity_wh"], 10000.0);
    server.stop().await;
}
