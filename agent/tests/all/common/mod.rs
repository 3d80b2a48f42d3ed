//! Shared set-up: a simulated site on pseudo-terminals and an agent configured against it with
//! the real driver plugins from this build.

#![allow(dead_code)]

pub mod cloud;

use std::path::{Path, PathBuf};
use std::time::Duration;

use ems_agent::app::RunningAgent;
use ems_agent::config::AgentConfig;
use ems_agent::run::Status;
use ems_protocol::{AnswerStatus, Command, ErrorFlag, State};
use ems_sim::site::{SimOptions, SimSite};

/// `target/debug` (or release) of this build, where the driver `.so` files are.
pub fn driver_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe
        .parent()
        .and_then(|p| p.parent())
        .expect("target/<profile>")
        .to_path_buf();
    for name in ["sunspec", "sdm630", "ina226"] {
        let so = dir.join(format!("libems_driver_{name}.so"));
        assert!(
            so.is_file(),
            "driver plugin {} is missing: build the workspace first (`cargo build --workspace`, as `./dev.sh test` does)",
            so.display()
        );
    }
    dir
}

pub struct Bench {
    pub sim: SimSite,
    pub agent: RunningAgent,
    pub dir: tempfile::TempDir,
}

/// Starts ems-sim and an agent polling it every 250 ms.
pub async fn start(initial_soc: f64, extra_toml: &str) -> Bench {
    start_in(tempfile::tempdir().unwrap(), initial_soc, extra_toml).await
}

/// How the agent reaches the simulated Modbus units.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModbusLink {
    /// Bus `rs485`: Modbus RTU on the sim's pseudo-terminal.
    Rtu,
    /// Bus `gateway`: Modbus TCP to the sim's gateway on a free port of 127.0.0.1.
    Tcp,
}

/// [`start`] in a directory prepared by the test (token files and the like).
pub async fn start_in(dir: tempfile::TempDir, initial_soc: f64, extra_toml: &str) -> Bench {
    start_with(dir, initial_soc, ModbusLink::Rtu, extra_toml).await
}

/// [`start`] with the inverter and the meter reached over `link`.
pub async fn start_with(
    dir: tempfile::TempDir,
    initial_soc: f64,
    link: ModbusLink,
    extra_toml: &str,
) -> Bench {
    start_with_inverter(dir, initial_soc, link, SUNSPEC, extra_toml).await
}

/// The inverter's driver lines in [`agent_toml`]: the real SunSpec plugin.
pub const SUNSPEC: &str = r#"driver = "sunspec""#;

/// The inverter's driver lines for `test-panicky` standing in front of the real SunSpec plugin,
/// failing as `fault_options` say (e.g. `fault = "sleep", trigger_file = "…"`).
pub fn panicky_sunspec(fault_options: &str) -> String {
    let sunspec = driver_dir().join("libems_driver_sunspec.so");
    let panicky = driver_dir().join("libems_driver_test_panicky.so");
    assert!(
        panicky.is_file(),
        "{} is missing: build the workspace first",
        panicky.display()
    );
    format!(
        "driver = \"test-panicky\"\noptions = {{ delegate = \"{}\", {fault_options} }}",
        sunspec.display()
    )
}

/// A running bench whose inverter is `test-panicky` in front of SunSpec, failing as
/// `fault_options` say once the file `trigger` (in the bench's directory) exists; the battery
/// discharges at 500 W (command `c1`) when it returns, with the trigger's path.
pub async fn start_with_faulty_inverter(trigger: &str, fault_options: &str) -> (Bench, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let trigger = dir.path().join(trigger);
    let inverter = panicky_sunspec(&format!(
        r#"{fault_options}, trigger_file = "{}""#,
        trigger.display()
    ));
    let mut bench = start_with_inverter(dir, 60.0, ModbusLink::Rtu, &inverter, "").await;
    bench.wait_running().await;
    bench.discharge_at_500_w("c1").await;
    (bench, trigger)
}

/// A running bench at 60 % SoC whose uplink goes to `cloud` as device `bench_1` (the token in the
/// bench's directory), with the `extra` lines in its `[uplink]` table.
pub async fn start_with_cloud(cloud: &cloud::Cloud, extra: &str) -> Bench {
    let dir = tempfile::tempdir().unwrap();
    let uplink = cloud.uplink_section("bench_1", dir.path(), extra).await;
    let mut bench = start_in(dir, 60.0, &uplink).await;
    bench.wait_running().await;
    bench
}

/// Waits up to 20 s until at least `n` seconds of `device` are stored; returns them in order.
pub async fn wait_stored(db_url: &str, device: &str, n: usize) -> Vec<i64> {
    ems_testkit::wait::until(
        &format!("{n} seconds of {device} stored"),
        Duration::from_secs(20),
        Duration::from_millis(200),
        || async {
            let s = cloud::stored_seconds(db_url, device).await;
            (s.len() >= n).then_some(s)
        },
    )
    .await
}

/// [`start_with`] with the inverter's driver lines `inverter` (see [`SUNSPEC`]).
pub async fn start_with_inverter(
    dir: tempfile::TempDir,
    initial_soc: f64,
    link: ModbusLink,
    inverter: &str,
    extra_toml: &str,
) -> Bench {
    let mut opts = SimOptions::new(dir.path().join("sim"));
    opts.initial_soc_pct = initial_soc;
    if link == ModbusLink::Tcp {
        opts.modbus_tcp = Some("127.0.0.1:0".parse().unwrap());
    }
    let sim = SimSite::start(opts).await.expect("start ems-sim");
    {
        // Steady conditions unless a test changes them.
        let mut s = sim.state();
        s.site.pv_override_w = Some(0.0);
        s.site.load_override_w = Some(500.0);
    }
    let text = agent_toml_with_inverter(&sim, dir.path(), link, inverter, extra_toml);
    let config = AgentConfig::from_toml_str(&text, "bench.toml").unwrap_or_else(|e| panic!("{e}"));
    let agent = ems_agent::app::start(config).unwrap_or_else(|e| panic!("{e}"));
    Bench { sim, agent, dir }
}

/// The agent's configuration for `sim`, with its data in `dir/data`: the inverter and the meter
/// over `link`, the INA226 on the simulated I2C bus, every device polled every 250 ms.
pub fn agent_toml(sim: &SimSite, dir: &Path, link: ModbusLink, extra_toml: &str) -> String {
    agent_toml_with_inverter(sim, dir, link, SUNSPEC, extra_toml)
}

/// [`agent_toml`] with the inverter's driver lines `inverter`.
pub fn agent_toml_with_inverter(
    sim: &SimSite,
    dir: &Path,
    link: ModbusLink,
    inverter: &str,
    extra_toml: &str,
) -> String {
    let modbus_bus = match link {
        ModbusLink::Rtu => format!(
            r#"[buses.rs485]
kind = "rtu"
port = "{}"
baud = 19200
timeout_ms = 150
retries = 1"#,
            sim.rs485_path.display()
        ),
        ModbusLink::Tcp => format!(
            r#"[buses.gateway]
kind = "tcp"
address = "{}"
timeout_ms = 150
retries = 1"#,
            sim.modbus_tcp_addr.expect("the sim's Modbus TCP address")
        ),
    };
    let bus = match link {
        ModbusLink::Rtu => "rs485",
        ModbusLink::Tcp => "gateway",
    };
    format!(
        r#"
device_id = "bench_1"
data_dir = "{data}"
driver_dir = "{drivers}"
[comm]
loss_after_s = 3.0
backoff_max_s = 4.0
call_budget_s = 2.0
{modbus_bus}
[buses.i2c]
kind = "i2c-socket"
path = "{i2c}"
[devices.inverter]
{inverter}
bus = "{bus}"
unit = 1
roles = ["inverter", "battery"]
poll_ms = 250
[devices.grid_meter]
driver = "sdm630"
bus = "{bus}"
unit = 2
roles = ["grid_meter"]
poll_ms = 250
[devices.shunt]
driver = "ina226"
bus = "i2c"
address = 0x40
roles = ["battery_meter"]
poll_ms = 250
options = {{ shunt_ohms = 0.001, max_current_a = 80.0, voltage_divider = 2.0 }}
{extra_toml}
"#,
        data = dir.join("data").display(),
        drivers = driver_dir().display(),
        i2c = sim.i2c_path.display(),
    )
}

impl Bench {
    /// Waits until a cycle's status satisfies `cond`, failing after `secs` with the last status.
    /// Sends SET_MODE MANUAL_DISCHARGE 500 W as `command_id`, checks it is accepted, and waits
    /// until the battery discharges at 500 W AC (526 W DC with the inverter's losses) in manual
    /// mode with a -500 W setpoint; returns that cycle's status.
    pub async fn discharge_at_500_w(&mut self, command_id: &str) -> Status {
        use ems_protocol::{Mode, TargetMode};
        let answer = self
            .agent
            .command(Command::set_mode(
                command_id,
                TargetMode::ManualDischarge,
                Some(500.0),
            ))
            .await
            .unwrap();
        assert_eq!(answer.status, AnswerStatus::Accepted, "{answer:?}");
        let status = self
            .wait_status("discharging at 500 W", 15, |s| {
                s.telemetry.system_status.state == State::Discharging
                    && s.telemetry
                        .battery
                        .power
                        .is_some_and(|p| (p + 526.0).abs() < 30.0)
            })
            .await;
        assert_eq!(status.telemetry.system_status.mode, Mode::Manual);
        assert_eq!(status.setpoint_w, -500.0);
        status
    }

    /// Waits up to `secs` for a cycle in ERROR (`what` names it in the failure) and checks that
    /// it raises `flag` and commands 0 W; returns that cycle's status.
    pub async fn wait_error(&mut self, what: &str, secs: u64, flag: ErrorFlag) -> Status {
        let s = self
            .wait_status(what, secs, |s| {
                s.telemetry.system_status.state == State::Error
            })
            .await;
        assert!(
            s.telemetry.system_status.error_flags.contains(&flag),
            "{:?}",
            s.telemetry.system_status.error_flags
        );
        assert_eq!(s.setpoint_w, 0.0);
        s
    }

    /// Sends RESET_ERROR as `command_id`, checks it is accepted, and waits until the MANUAL
    /// DISCHARGE at 500 W from before the fault resumes: a discharging cycle with a -500 W
    /// setpoint, then the inverter at -500 W.
    pub async fn reset_back_to_500_w_discharge(&mut self, command_id: &str) {
        let answer = self
            .agent
            .command(Command::reset_error(command_id))
            .await
            .unwrap();
        assert_eq!(answer.status, AnswerStatus::Accepted, "{answer:?}");
        self.wait_status("discharging at 500 W again", 10, |s| {
            s.telemetry.system_status.state == State::Discharging && s.setpoint_w == -500.0
        })
        .await;
        wait_for("the inverter at -500 W", 5.0, || {
            self.sim.state().site.setpoint_w == -500.0
        })
        .await;
    }

    /// Checks that a packet carries the simulated site's physics with the spec's names and
    /// signs: AUTO without flags; SoC, voltage and frequency as simulated; the grid reading the
    /// meter's (+ import; within the 600 W the battery may move it between two polls).
    pub fn assert_matches_sim(&self, t: &ems_protocol::Telemetry) {
        assert_eq!(t.system_status.mode, ems_protocol::Mode::Auto);
        assert!(
            t.system_status.error_flags.is_empty(),
            "{:?}",
            t.system_status.error_flags
        );
        let (soc, volts, grid_w, freq) = {
            let s = self.sim.state();
            (
                s.site.soc_pct(),
                s.site.battery_voltage_v(),
                s.site.grid_w(),
                s.site.grid_frequency_hz,
            )
        };
        let close = |what: &str, got: Option<f64>, want: f64, within: f64| {
            let got = got.unwrap_or_else(|| panic!("{what} missing"));
            assert!((got - want).abs() < within, "{what} {got} vs sim {want}");
        };
        close("soc", t.battery.soc, soc, 0.5);
        close("voltage", t.battery.voltage, volts, 0.5);
        close("frequency", t.grid.frequency, freq, 0.01);
        close("grid power", t.grid.power, grid_w, 600.0);
    }

    /// Sends RESET_ERROR as `command_id`; the agent's answer.
    pub async fn reset_error(&self, command_id: &str) -> ems_protocol::CommandAnswer {
        self.agent
            .command(Command::reset_error(command_id))
            .await
            .expect("the agent answers")
    }

    /// The handle of the device named `name` in the agent's config.
    pub fn device(&self, name: &str) -> ems_agent::devices::DeviceHandle {
        self.agent
            .devices
            .iter()
            .find(|d| d.name == name)
            .unwrap_or_else(|| panic!("no device {name}"))
            .clone()
    }

    /// Waits for the first cycle past start-up.
    pub async fn wait_running(&mut self) -> Status {
        self.wait_status("running", 15, |s| {
            s.telemetry.system_status.state != ems_protocol::State::Starting
        })
        .await
    }

    pub async fn wait_status(
        &mut self,
        what: &str,
        secs: u64,
        cond: impl Fn(&Status) -> bool,
    ) -> Status {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
        let mut last = None;
        loop {
            let changed = tokio::time::timeout_at(deadline, self.agent.status.changed()).await;
            if let Some(s) = self.agent.status.borrow_and_update().clone() {
                if cond(&s) {
                    return s;
                }
                last = Some(s);
            }
            if changed.is_err() {
                panic!("timed out after {secs} s waiting for {what}; last status: {last:#?}");
            }
        }
    }
}

/// Waits until `cond` holds, looking every 20 ms, failing after `secs`; returns how long it took.
pub async fn wait_for(what: &str, secs: f64, mut cond: impl FnMut() -> bool) -> Duration {
    let start = tokio::time::Instant::now();
    let deadline = start + Duration::from_secs_f64(secs);
    loop {
        if cond() {
            return start.elapsed();
        }
        if tokio::time::Instant::now() >= deadline {
            panic!("timed out after {secs} s waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Records the timestamp (Unix seconds) of every cycle's packet until the agent stops.
pub fn record_seconds(
    mut status: tokio::sync::watch::Receiver<Option<Status>>,
) -> std::sync::Arc<std::sync::Mutex<Vec<i64>>> {
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let out = seen.clone();
    tokio::spawn(async move {
        while status.changed().await.is_ok() {
            let t = status
                .borrow_and_update()
                .as_ref()
                .map(|s| s.telemetry.timestamp.unix());
            if let Some(t) = t {
                out.lock().unwrap().push(t);
            }
        }
    });
    seen
}

/// The seconds missing between the first and the last recorded one.
pub fn missing_seconds(seen: &[i64]) -> Vec<i64> {
    let (Some(first), Some(last)) = (seen.first(), seen.last()) else {
        return Vec::new();
    };
    (*first..=*last).filter(|t| !seen.contains(t)).collect()
}
