//! The agent under a service manager, without one: the real `ems-agent` binary with
//! `NOTIFY_SOCKET` pointing at a datagram socket of this test, as systemd would set it for
//! `Type=notify` with `WatchdogSec=`. It must say READY=1 once running, feed the watchdog while
//! its loop runs, and on SIGTERM say STOPPING=1, put the battery back to 0 W and exit cleanly.

use crate::common;

use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{ModbusLink, agent_toml};
use ems_sim::site::{SimOptions, SimSite};
use ems_testkit::process::{ChildGuard, SpawnGuarded};

struct Service {
    sim: SimSite,
    socket: UnixDatagram,
    child: ChildGuard,
    _dir: tempfile::TempDir,
}

/// ems-sim (steady 500 W load, no PV, so AUTO discharges) and the agent binary started with
/// `env` added to its environment.
async fn start(env: &[(&str, String)]) -> Service {
    let dir = tempfile::tempdir().unwrap();
    let sim = SimSite::start(SimOptions::new(dir.path().join("sim")))
        .await
        .expect("start ems-sim");
    {
        let mut s = sim.state();
        s.site.pv_override_w = Some(0.0);
        s.site.load_override_w = Some(500.0);
    }
    let config = dir.path().join("agent.toml");
    std::fs::write(&config, agent_toml(&sim, dir.path(), ModbusLink::Rtu, "")).unwrap();
    let notify = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&notify).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut agent = Command::new(env!("CARGO_BIN_EXE_ems-agent"));
    agent
        .args(["--config", config.to_str().unwrap(), "run"])
        .env("NOTIFY_SOCKET", &notify)
        .env("EMS_LOG", "warn")
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null());
    let child = agent.spawn_guarded().expect("start ems-agent");
    Service {
        sim,
        socket,
        child,
        _dir: dir,
    }
}

impl Service {
    /// Notifications received during `window`.
    fn collect(&self, window: Duration) -> Vec<String> {
        let deadline = Instant::now() + window;
        let mut got = Vec::new();
        let mut buf = [0u8; 256];
        while Instant::now() < deadline {
            if let Ok(n) = self.socket.recv(&mut buf) {
                got.push(String::from_utf8_lossy(&buf[..n]).into_owned());
            }
        }
        got
    }

    /// Waits up to `within` for the notification `state`; the ones before it are returned.
    fn expect(&self, state: &str, within: Duration) -> Vec<String> {
        let deadline = Instant::now() + within;
        let mut seen = Vec::new();
        let mut buf = [0u8; 256];
        while Instant::now() < deadline {
            if let Ok(n) = self.socket.recv(&mut buf) {
                let got = String::from_utf8_lossy(&buf[..n]).into_owned();
                if got == state {
                    return seen;
                }
                seen.push(got);
            }
        }
        panic!("no {state:?} within {within:?}; received {seen:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_watchdog_and_a_clean_stop_at_0_w() {
    let mut service = start(&[("WATCHDOG_USEC", "2000000".into())]).await;
    let before = service.expect("READY=1", Duration::from_secs(20));
    assert!(before.is_empty(), "nothing before READY=1: {before:?}");

    // The watchdog period is 2 s: the agent pings every 1 s while cycles run.
    let pings = service.collect(Duration::from_secs(5));
    let watchdog = pings.iter().filter(|m| *m == "WATCHDOG=1").count();
    assert!(watchdog >= 2, "WATCHDOG=1 pings in 5 s: {pings:?}");

    // AUTO covers the 500 W load from the battery.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let setpoint = service.sim.state().site.setpoint_w;
        if setpoint < -100.0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "AUTO never discharged against the 500 W load (setpoint {setpoint} W)"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let pid = service.child.id() as libc::pid_t;
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    service.expect("STOPPING=1", Duration::from_secs(10));
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(status) = service.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "ems-agent still running after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(status.success(), "exit after SIGTERM: {status}");
    assert_eq!(
        service.sim.state().site.setpoint_w,
        0.0,
        "the inverter is left at 0 W"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watchdog_meant_for_another_process_is_not_fed() {
    // systemd sets WATCHDOG_PID to the service's main process; a process that inherited the
    // variables (started by a script, say) must not ping in its place.
    let service = start(&[
        ("WATCHDOG_USEC", "2000000".into()),
        ("WATCHDOG_PID", "1".into()),
    ])
    .await;
    service.expect("READY=1", Duration::from_secs(20));
    let later = service.collect(Duration::from_secs(4));
    assert!(
        !later.iter().any(|m| m == "WATCHDOG=1"),
        "pinged another process's watchdog: {later:?}"
    );
}
