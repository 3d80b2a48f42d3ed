//! The agent against ems-sim with `[metrics] listen` on a free port: `GET /metrics` is the
//! Prometheus text format and its values move with the running agent.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::common;

/// `GET /metrics` from the agent at `addr`, which must answer 200 in the text format.
pub(crate) async fn scrape(addr: SocketAddr) -> String {
    let r = reqwest::get(format!("http://{addr}/metrics"))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let ct = r.headers()["content-type"].to_str().unwrap().to_string();
    assert!(ct.starts_with("text/plain; version=0.0.4"), "{ct}");
    r.text().await.unwrap()
}

/// The value of one sample line (`name{labels} value`), by its exact name and labels.
pub(crate) fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no {series} in\n{text}"))
        .parse()
        .unwrap()
}

/// The cumulative buckets of one device's histogram `name`, in the order written, as
/// (upper bound, count).
fn buckets(text: &str, name: &str, device: &str) -> Vec<(f64, f64)> {
    let prefix = format!("{name}_bucket{{");
    let label = format!("device=\"{device}\"");
    text.lines()
        .filter_map(|l| l.strip_prefix(&prefix))
        .filter(|l| l.contains(&label))
        .map(|l| {
            let le = l.split("le=\"").nth(1).unwrap().split('"').next().unwrap();
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().unwrap()
            };
            let count = l.rsplit(' ').next().unwrap().parse().unwrap();
            (le, count)
        })
        .collect()
}

/// `ems_agent_device_poll_transactions` observes, per poll, what the bus counted for the device:
/// between two scrapes the grid meter's (it only polls, never writes) sum grows by exactly its
/// transaction counter's increase, and every SunSpec poll of the inverter needs two reads at least.
/// A scrape may fall inside a poll (the bus has counted, the histogram not yet), so the pair of
/// scrapes is retried until one brackets whole polls, within a deadline.
async fn poll_transactions_match_the_bus_counters<F, Fut>(scrape: &F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = String>,
{
    let name = "ems_agent_device_poll_transactions";
    let of = |what: &str, device: &str| format!("{name}_{what}{{device=\"{device}\"}}");
    let bus_tx = "ems_agent_device_bus_transactions_total{device=\"grid_meter\"}";
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut before = scrape().await;
    loop {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let after = scrape().await;
        let grown = |series: &str| sample(&after, series) - sample(&before, series);
        let polls = grown(&of("count", "grid_meter"));
        if polls >= 2.0 && grown(&of("sum", "grid_meter")) == grown(bus_tx) {
            assert!(grown(&of("sum", "grid_meter")) >= polls, "{after}");
            let inverter_polls = grown(&of("count", "inverter"));
            assert!(inverter_polls >= 1.0, "{after}");
            assert!(
                grown(&of("sum", "inverter")) >= 2.0 * inverter_polls,
                "{after}"
            );
            for device in ["inverter", "grid_meter", "shunt"] {
                let b = buckets(&after, name, device);
                assert!(b.len() > 2, "no buckets for {device}:\n{after}");
                assert!(
                    b.windows(2).all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1),
                    "{b:?}"
                );
                assert_eq!(
                    b.last().unwrap(),
                    &(f64::INFINITY, sample(&after, &of("count", device)))
                );
            }
            return;
        }
        assert!(
            Instant::now() < deadline,
            "poll transactions never matched the bus counter:\n{before}\n---\n{after}"
        );
        if polls >= 2.0 {
            before = after;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_move_with_the_agent() {
    let bench = common::start(60.0, "[metrics]\nlisten = \"127.0.0.1:0\"\n").await;
    let addr = bench.agent.metrics_addr.expect("metrics endpoint bound");
    let scrape = || scrape(addr);
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
    poll_transactions_match_the_bus_counters(&scrape).await;
    assert!(second.contains("ems_agent_battery_setpoint_watts "));
    assert!(second.contains("ems_agent_battery_power_watts "));
    assert!(second.contains("ems_agent_device_bus_crc_errors_total{device=\"inverter\"} 0"));

    let r = reqwest::get(format!("http://{addr}/")).await.unwrap();
    assert_eq!(r.status(), 404);
    bench.agent.stop().await;
}
