//! The agent against ems-sim with `[metrics] listen` on a free port: `GET /metrics` is the
//! Prometheus text format and its values move with the running agent.

use std::time::{Duration, Instant};

use crate::common;

/// The value of one sample line (`name{labels} value`), by its exact name and labels.
fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no {series} in\n{text}"))
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_move_with_the_agent() {
    let bench = common::start(60.0, "[metrics]\nlisten = \"127.0.0.1:0\"\n").await;
    let addr = bench.agent.metrics_addr.expect("metrics endpoint bound");
    let url = format!("http://{addr}/metrics");
    let scrape = || async {
        let r = reqwest::get(&url).await.unwrap();
        assert_eq!(r.status(), 200);
        let ct = r.headers()["content-type"].to_str().unwrap().to_string();
        assert!(ct.starts_with("text/plain; version=0.0.4"), "{ct}");
        r.text().await.unwrap()
    };
    let inverter_polls = "ems_agent_device_poll_seconds_count{device=\"inverter\"}";

    // Wait (with a deadline) for a first cycle and a first poll.
    let deadline = Instant::now() + Duration::from_secs(15);
    let first = loop {
        let t = scrape().await;
        if t.contains(inverter_polls) && sample(&t, "ems_agent_cycles_total") >= 1.0 {
            break t;
        }
        assert!(Instant::now() < deadline, "no cycle within 15 s:\n{t}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    // Until at least two more cycles have run.
    let deadline = Instant::now() + Duration::from_secs(10);
    let second = loop {
        let t = scrape().await;
        if sample(&t, "ems_agent_cycles_total") >= sample(&first, "ems_agent_cycles_total") + 2.0 {
            break t;
        }
        assert!(Instant::now() < deadline, "cycles stuck:\n{t}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };

    assert!(sample(&second, inverter_polls) > sample(&first, inverter_polls));
    assert!(
        sample(&second, "ems_agent_cycle_seconds_count")
            > sample(&first, "ems_agent_cycle_seconds_count")
    );
    let tx = "ems_agent_device_bus_transactions_total{device=\"grid_meter\"}";
    assert!(sample(&second, tx) > sample(&first, tx));
    assert!(sample(&second, "ems_agent_bus_transactions_total{bus=\"i2c\"}") > 0.0);
    // No uplink configured: the link is down and nothing was refused.
    assert_eq!(sample(&second, "ems_agent_uplink_link_up"), 0.0);
    assert_eq!(sample(&second, "ems_agent_uplink_quarantined_total"), 0.0);
    assert!(sample(&second, "ems_agent_uplink_queue_depth") >= 1.0);
    // Nothing leaves the queue without a cloud: the oldest packet ages (whole seconds).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let t = scrape().await;
        if sample(&t, "ems_agent_uplink_queue_oldest_age_seconds") >= 2.0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "oldest packet does not age:\n{t}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(second.contains("ems_agent_battery_setpoint_watts "));
    assert!(second.contains("ems_agent_battery_power_watts "));
    assert!(second.contains("ems_agent_device_bus_crc_errors_total{device=\"inverter\"} 0"));

    let r = reqwest::get(format!("http://{addr}/")).await.unwrap();
    assert_eq!(r.status(), 404);
    bench.agent.stop().await;
}
