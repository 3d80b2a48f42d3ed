//! The local stack (`stack/run.sh`, what `./dev.sh up` runs) started by a test: real PostgreSQL,
//! ems-cloud (one, or several behind HAProxy), ems-sim and ems-agent in a temp dir on free ports,
//! stopped with SIGTERM (its own ordered shutdown) when dropped. Its children also die by their
//! parent-death signal if the test process is killed outright.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use ems_testkit::process::{AsyncChildGuard, SpawnGuarded};
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::ChildStdout;

/// initdb, the cloud's migrations and the agent's first connection on a busy 2-core machine.
pub const STACK_DEADLINE: Duration = Duration::from_secs(120);

pub struct Stack {
    child: Option<AsyncChildGuard>,
    /// What the script printed up to "Ctrl-C stops everything."
    pub printed: Vec<String>,
    /// The rest of its output.
    pub lines: Lines<BufReader<ChildStdout>>,
    /// `EMS_LOCAL_DIR`: logs, tokens, pid files.
    pub state: PathBuf,
    /// A fresh HOME for the user's shells.
    pub home: PathBuf,
    /// The stack's PostgreSQL (database `ems`, user `postgres`).
    pub pg_port: u16,
    stderr_log: PathBuf,
    _tmp: tempfile::TempDir,
}

impl Stack {
    /// Runs `stack/run.sh --no-build <args>` with `env` added, and waits until it says it runs.
    pub async fn start(args: &[&str], env: &[(&str, String)]) -> Stack {
        let bin = bin_dir();
        let tmp = tempfile::tempdir().unwrap();
        // As root the stack runs PostgreSQL as `postgres`, which must reach its data in here.
        std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let state = tmp.path().join("state");
        let home = tmp.path().join("home");
        std::fs::create_dir(&home).unwrap();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../stack/run.sh");
        let stderr_log = tmp.path().join("stack.stderr");
        let pg_port = free_port();

        let mut cmd = tokio::process::Command::new("/bin/bash");
        cmd.arg(&script)
            .arg("--no-build")
            .args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", &home)
            .env("EMS_LOCAL_DIR", &state)
            .env("EMS_PG_PORT", pg_port.to_string())
            .env("EMS_CLOUD_PORT", free_port().to_string())
            .env("EMS_BIN_DIR", &bin)
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr_log).unwrap());
        let mut child = cmd.spawn_guarded().expect("stack/run.sh starts");
        let stdout = child.stdout.take().unwrap();
        let mut stack = Stack {
            child: Some(child),
            printed: Vec::new(),
            lines: BufReader::new(stdout).lines(),
            state,
            home,
            pg_port,
            stderr_log,
            _tmp: tmp,
        };
        let (lines, printed) = (&mut stack.lines, &mut stack.printed);
        let read = tokio::time::timeout(STACK_DEADLINE, async {
            while let Some(line) = lines.next_line().await.unwrap() {
                let done = line.starts_with("Ctrl-C stops everything");
                printed.push(line);
                if done {
                    return true;
                }
            }
            false
        })
        .await;
        assert!(
            matches!(read, Ok(true)),
            "the stack did not come up:\n{}\n{}",
            stack.printed.join("\n"),
            stack.logs()
        );
        stack
    }

    /// The rest of the printed line that starts with `label`.
    pub fn after(&self, label: &str) -> String {
        self.printed
            .iter()
            .find_map(|l| l.trim_start().strip_prefix(label))
            .map(|rest| rest.trim().to_string())
            .unwrap_or_else(|| panic!("no {label:?} line in:\n{}", self.printed.join("\n")))
    }

    /// The script's stderr and the tail of every log in the state directory, for a failure.
    pub fn logs(&self) -> String {
        let mut text = std::fs::read_to_string(&self.stderr_log).unwrap_or_default();
        let mut logs: Vec<PathBuf> = std::fs::read_dir(&self.state)
            .map(|d| d.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        logs.retain(|p| p.extension().is_some_and(|e| e == "log"));
        logs.sort();
        for log in logs {
            let body = std::fs::read_to_string(&log).unwrap_or_default();
            let tail: Vec<&str> = body.lines().rev().take(15).collect();
            text.push_str(&format!(
                "\n--- {} (tail, newest first)\n{}",
                log.display(),
                tail.join("\n")
            ));
        }
        text
    }

    /// `bash -c "<the printed source line> && <command>"` with nothing in the environment but the
    /// stack's fresh HOME and the system PATH, as a new terminal of a user without ems settings
    /// would have.
    pub async fn in_new_shell(&self, command: &str) -> (i32, String, String) {
        let source_line = self.after("In any shell:");
        let mut cmd = tokio::process::Command::new("/bin/bash");
        cmd.env_clear()
            .env("HOME", &self.home)
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .arg("-c")
            .arg(format!("{source_line} && {command}"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let child = cmd.spawn_guarded().expect("bash starts");
        let out = tokio::time::timeout(STACK_DEADLINE, child.wait_with_output())
            .await
            .expect("the command ends within the deadline")
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    fn terminate(&self) {
        if let Some(pid) = self.child.as_ref().and_then(|c| c.id()) {
            // SAFETY: signalling our own child process.
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
        }
    }

    /// Stops the stack, waits for the script to finish its clean-up, and returns what it printed
    /// meanwhile.
    pub async fn stop(mut self) -> Vec<String> {
        self.terminate();
        let mut child = self.child.take().expect("running");
        tokio::time::timeout(STACK_DEADLINE, child.wait())
            .await
            .expect("the stack stops within the deadline")
            .expect("wait for the stack");
        let mut rest = Vec::new();
        while let Ok(Some(line)) = self.lines.next_line().await {
            rest.push(line);
        }
        rest
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        self.terminate();
        if let Some(child) = self.child.as_mut() {
            let deadline = std::time::Instant::now() + Duration::from_secs(30);
            while let Ok(None) = child.try_wait() {
                if std::time::Instant::now() > deadline {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        // The guard kills whatever is left.
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Where this build put emsctl, and with it the other binaries and the driver plugins.
fn bin_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_BIN_EXE_emsctl"))
        .parent()
        .unwrap()
        .to_path_buf();
    for file in [
        "ems-cloud",
        "ems-sim",
        "ems-agent",
        "libems_driver_sunspec.so",
        "libems_driver_sdm630.so",
        "libems_driver_ina226.so",
    ] {
        assert!(
            dir.join(file).is_file(),
            "{} is missing: build the workspace first (`cargo build --workspace`, as `./dev.sh test` does)",
            dir.join(file).display()
        );
    }
    dir
}
