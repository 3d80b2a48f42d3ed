//! emsctl's test helpers: the shared in-process cloud of `ems_cloud::testing` on a fresh
//! PostgreSQL database with a throwaway HOME, and the real `emsctl` binary run as a subprocess
//! with a clean environment (killed with the test). The scripted device is
//! `ems_cloud::testing::Device`, reached through [`Cloud::device`](TestCloud::device).
#![allow(dead_code)]

use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use ems_cloud::testing::TestCloud;
use ems_protocol::Telemetry;
use ems_protocol::telemetry::Timestamp;
use ems_testkit::process::{AsyncChildGuard, SpawnGuarded};

pub use ems_cloud::testing::DEADLINE;

pub mod stack;

/// A running cloud with an admin token (the shared [`TestCloud`], which it derefs to), plus a
/// throwaway HOME for emsctl.
pub struct Cloud {
    pub server: TestCloud,
    pub home: tempfile::TempDir,
}

impl Deref for Cloud {
    type Target = TestCloud;

    fn deref(&self) -> &TestCloud {
        &self.server
    }
}

impl Cloud {
    pub async fn start() -> Cloud {
        Cloud::start_with(|f| f, reqwest::Client::new()).await
    }

    /// `adjust` can add keys to the server's figment (TLS); `http` is the helpers' client.
    pub async fn start_with(
        adjust: impl FnOnce(figment::Figment) -> figment::Figment,
        http: reqwest::Client,
    ) -> Cloud {
        let url = ems_testkit::pg::fresh_database().await;
        let figment = adjust(ems_cloud::testing::figment(&url));
        Cloud {
            server: TestCloud::with(figment, &url, http).await,
            home: tempfile::tempdir().unwrap(),
        }
    }

    /// `emsctl --url <this server> --token <admin> <args>`.
    pub fn ctl(&self, args: &[&str]) -> tokio::process::Command {
        let mut cmd = emsctl(self.home.path());
        cmd.args(["--url", &self.url(), "--token", &self.admin]);
        cmd.args(args);
        cmd
    }

    /// Runs [`ctl`](Self::ctl) to completion.
    pub async fn run(&self, args: &[&str]) -> Run {
        run(self.ctl(args)).await
    }

    pub async fn stop(self) {
        self.server.stop().await;
    }
}

/// The real binary with an environment that cannot leak the developer's settings: no `EMS_…`
/// variables, HOME a fresh directory.
pub fn emsctl(home: &Path) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_emsctl"));
    for var in [
        "EMS_URL",
        "EMS_TOKEN",
        "EMS_DEVICE",
        "EMS_CA_FILE",
        "EMSCTL_CONFIG",
        "XDG_CONFIG_HOME",
    ] {
        cmd.env_remove(var);
    }
    cmd.env("HOME", home)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    cmd
}

/// What a finished emsctl run left.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// Asserts the exit code, showing both streams when it differs.
    pub fn expect(self, code: i32) -> Run {
        assert_eq!(
            self.code, code,
            "exit code\nstdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        self
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{}", self.stdout))
    }

    /// CSV rows as header → value maps.
    pub fn csv(&self) -> Vec<std::collections::BTreeMap<String, String>> {
        let mut reader = csv::Reader::from_reader(self.stdout.as_bytes());
        let headers = reader.headers().unwrap().clone();
        reader
            .records()
            .map(|r| {
                let r = r.unwrap();
                headers
                    .iter()
                    .map(str::to_string)
                    .zip(r.iter().map(str::to_string))
                    .collect()
            })
            .collect()
    }
}

pub async fn run(cmd: tokio::process::Command) -> Run {
    let child = cmd.spawn_guarded().expect("emsctl starts");
    finish(child).await
}

/// Waits for a spawned emsctl to end (within [`DEADLINE`]).
pub async fn finish(child: AsyncChildGuard) -> Run {
    let out = tokio::time::timeout(DEADLINE, child.wait_with_output())
        .await
        .expect("emsctl ends within the deadline")
        .expect("emsctl output");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
    }
}

/// A config file under the run's HOME at the default path, with `body`.
pub fn write_default_config(home: &Path, body: &str) -> PathBuf {
    let dir = home.join(".config").join("emsctl");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("config.toml");
    std::fs::write(&path, body).unwrap();
    path
}

/// A spec packet: charging 558.6 W, exporting 200 W; `soc` varies so packets differ.
pub fn packet(device_id: &str, ts: Timestamp, soc: f64) -> Telemetry {
    Telemetry::example(device_id, ts, soc)
}

/// `n` consecutive seconds ending `before_s` seconds ago.
pub fn seconds_ending(n: i64, before_s: i64) -> Vec<Timestamp> {
    ems_cloud::testing::seconds_ending(n, before_s)
}
