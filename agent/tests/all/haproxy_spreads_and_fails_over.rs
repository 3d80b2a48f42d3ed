//! Three ems-cloud instances on one database behind a real HAProxy (Debian's `haproxy`, started
//! by the test with WebSocket-aware HTTP mode and health checks on `/api/v1/health`), three real
//! agents on simulated sites connecting through it. One instance is killed: its agents reconnect
//! through HAProxy to the others within their backoff, every second each agent produced is stored
//! exactly once, and a command still reaches a moved agent. The deployment is documented in
//! packaging/README.md ("Several ems-cloud instances behind HAProxy").

use crate::common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::cloud::{Cloud, rows_and_distinct, stored_seconds};
use common::{Bench, ModbusLink};
use ems_agent::config::AgentConfig;
use ems_sim::site::{SimOptions, SimSite};
use ems_testkit::process::{ChildGuard, SpawnGuarded};

const HAPROXY: &str = "/usr/sbin/haproxy";
const DEVICES: [&str; 3] = ["site_a", "site_b", "site_c"];

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// HAProxy in front of `backends`: HTTP mode (WebSocket upgrades become tunnels), round robin,
/// health checks every 500 ms, failed connects retried on another server.
fn start_haproxy(dir: &std::path::Path, port: u16, backends: &[u16]) -> ChildGuard {
    assert!(
        std::path::Path::new(HAPROXY).exists(),
        "{HAPROXY} is missing: apt-get install -y haproxy (./dev.sh deps installs it)"
    );
    let servers: String = backends
        .iter()
        .enumerate()
        .map(|(i, p)| format!("  server cloud{i} 127.0.0.1:{p} check\n"))
        .collect();
    let cfg = format!(
        "global\n  maxconn 1000\n\
         defaults\n  mode http\n  timeout connect 2s\n  timeout client 60s\n  timeout server 60s\n\
         \x20 timeout tunnel 1h\n  retries 3\n  option redispatch\n\
         frontend ems\n  bind 127.0.0.1:{port}\n  default_backend clouds\n\
         backend clouds\n  balance roundrobin\n  option httpchk GET /api/v1/health\n\
         \x20 http-check expect status 200\n  default-server inter 500ms fall 2 rise 2\n{servers}"
    );
    let path = dir.join("haproxy.cfg");
    std::fs::write(&path, cfg).unwrap();
    let check = Command::new(HAPROXY)
        .arg("-c")
        .arg("-f")
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "haproxy refuses its config: {}",
        String::from_utf8_lossy(&check.stderr)
    );
    let mut cmd = Command::new(HAPROXY);
    cmd.arg("-db")
        .arg("-f")
        .arg(&path)
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    cmd.spawn_guarded().expect("haproxy starts")
}

/// A simulated site and its agent as device `id`, whose uplink goes to `url`.
async fn site(id: &str, url: &str, dir: tempfile::TempDir, token_file: &std::path::Path) -> Bench {
    let mut opts = SimOptions::new(dir.path().join("sim"));
    opts.initial_soc_pct = 60.0;
    let sim = SimSite::start(opts).await.expect("start ems-sim");
    {
        let mut s = sim.state();
        s.site.pv_override_w = Some(0.0);
        s.site.load_override_w = Some(500.0);
    }
    let uplink = format!(
        "[uplink]\nurl = \"{url}\"\ntoken_file = \"{}\"\nreconnect_max_s = 4.0\n",
        token_file.display()
    );
    let text = common::agent_toml(&sim, dir.path(), ModbusLink::Rtu, &uplink)
        .replace("device_id = \"bench_1\"", &format!("device_id = \"{id}\""));
    let config = AgentConfig::from_toml_str(&text, "bench.toml").unwrap_or_else(|e| panic!("{e}"));
    let agent = ems_agent::app::start(config).unwrap_or_else(|e| panic!("{e}"));
    Bench { sim, agent, dir }
}

/// The instance each device is connected to, from the database.
async fn connections(db_url: &str) -> Vec<(String, Option<String>)> {
    let client = ems_cloud::db::connect(db_url).await.unwrap();
    client
        .query(
            "SELECT id, connected_instance FROM devices ORDER BY id",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_behind_haproxy_lose_nothing_when_one_dies() {
    let db_url = ems_testkit::pg::fresh_database().await;
    let mut clouds = Vec::new();
    for _ in 0..3 {
        clouds.push(Cloud::on(&db_url).await);
    }
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let ports: Vec<u16> = clouds.iter().map(|c| c.port()).collect();
    let _haproxy = start_haproxy(dir.path(), port, &ports);
    let front = format!("ws://127.0.0.1:{port}");
    ems_testkit::wait::until(
        "HAProxy answering /api/v1/health",
        Duration::from_secs(20),
        Duration::from_millis(200),
        || async {
            let r = reqwest::get(format!("http://127.0.0.1:{port}/api/v1/health")).await;
            r.ok().filter(|r| r.status() == 200).map(|_| ())
        },
    )
    .await;

    let mut benches = Vec::new();
    for id in DEVICES {
        let site_dir = tempfile::tempdir().unwrap();
        let token_file = site_dir.path().join("device.token");
        clouds[0].add_device_token_file(id, &token_file).await;
        benches.push(site(id, &front, site_dir, &token_file).await);
    }
    for id in DEVICES {
        common::wait_stored(&db_url, id, 3).await;
    }
    // Round robin put the three agents on different instances; kill the first one's.
    let before = connections(&db_url).await;
    let victim_instance = before[0].1.clone().expect("site_a is connected");
    let victim = clouds
        .iter()
        .position(|c| c.running().hub.instance_id == victim_instance)
        .expect("an instance of this test");
    let moved: Vec<String> = before
        .iter()
        .filter(|(_, inst)| inst.as_deref() == Some(victim_instance.as_str()))
        .map(|(id, _)| id.clone())
        .collect();
    let survivors: Vec<String> = clouds
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != victim)
        .map(|(_, c)| c.running().hub.instance_id.clone())
        .collect();
    let killed_at = chrono::Utc::now().timestamp();
    clouds.remove(victim).stop().await;

    // Every agent, the moved ones too, is stored again well after the kill, through a survivor.
    for id in DEVICES {
        ems_testkit::wait::until(
            &format!("{id} stored 10 s after the kill"),
            Duration::from_secs(60),
            Duration::from_millis(250),
            || async {
                let s = stored_seconds(&db_url, id).await;
                (s.last().copied().unwrap_or(0) >= killed_at + 10).then_some(())
            },
        )
        .await;
    }
    let after = connections(&db_url).await;
    for (id, inst) in &after {
        let inst = inst.as_deref().unwrap_or("none");
        assert!(
            survivors.iter().any(|s| s == inst),
            "{id} is on {inst}, not on a surviving instance ({survivors:?})"
        );
    }
    // Nothing lost, nothing twice: every second from the first to the last stored, once.
    for id in DEVICES {
        let s = stored_seconds(&db_url, id).await;
        let (first, last) = (s[0], *s.last().unwrap());
        let missing: Vec<i64> = (first..=last).filter(|t| !s.contains(t)).collect();
        assert!(missing.is_empty(), "{id}: seconds missing {missing:?}");
        let (rows, distinct) = rows_and_distinct(&db_url, id).await;
        assert_eq!(rows, distinct, "{id}: a second stored twice");
    }
    // A command to a moved agent, through a surviving instance, is answered.
    let target = moved.first().expect("the killed instance held an agent");
    let (status, record) = clouds[0]
        .command(
            target,
            serde_json::json!({"action": "SET_MODE", "payload": {"target_mode": "MANUAL_IDLE"}}),
            10,
        )
        .await;
    assert_eq!(status, 201, "{record}");
    assert_eq!(record["status"], "ACCEPTED", "{record}");

    for b in benches {
        b.agent.stop().await;
    }
    for c in clouds {
        c.stop().await;
    }
}
