//! Issue 18's "first five minutes": the local stack (`stack/run.sh`, what `./dev.sh up` runs)
//! starts a real PostgreSQL, ems-cloud, ems-sim and ems-agent in a temp dir on free ports, and
//! prints a `source …/env` line; in a new shell with nothing but that line, the printed
//! `emsctl set-mode MANUAL_DISCHARGE --power 500` gets ACCEPTED by the agent, and `emsctl
//! reset-error` and `emsctl status` work as typed too. The user's own config is not touched.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use ems_testkit::process::{AsyncChildGuard, SpawnGuarded};
use tokio::io::{AsyncBufReadExt, BufReader};

/// initdb, the cloud's migrations and the agent's first connection on a busy 2-core machine.
const STACK_DEADLINE: Duration = Duration::from_secs(120);

/// The stack script, stopped with SIGTERM (its own ordered shutdown) when dropped; its children
/// also die by their parent-death signal if the test process is killed outright.
struct Stack {
    child: Option<AsyncChildGuard>,
}

impl Stack {
    fn terminate(&self) {
        if let Some(pid) = self.child.as_ref().and_then(|c| c.id()) {
            // SAFETY: signalling our own child process.
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
        }
    }

    /// Stops the stack and waits for the script to finish its clean-up.
    async fn stop(mut self) {
        self.terminate();
        let mut child = self.child.take().expect("running");
        tokio::time::timeout(STACK_DEADLINE, child.wait())
            .await
            .expect("the stack stops within the deadline")
            .expect("wait for the stack");
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

fn free_port() -> u16 {
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

/// `bash -c "<line>; <command>"` with nothing in the environment but a fresh HOME and the
/// system PATH, as a new terminal of a user without ems settings would have.
async fn in_new_shell(home: &Path, source_line: &str, command: &str) -> (i32, String, String) {
    let mut cmd = tokio::process::Command::new("/bin/bash");
    cmd.env_clear()
        .env("HOME", home)
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stack_env_makes_emsctl_work_as_typed() {
    let bin = bin_dir();
    let tmp = tempfile::tempdir().unwrap();
    // As root the stack runs PostgreSQL as `postgres`, which must reach its data in here.
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let state = tmp.path().join("state");
    let home = tmp.path().join("home");
    std::fs::create_dir(&home).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../stack/run.sh");
    let stderr_log = tmp.path().join("stack.stderr");

    let mut cmd = tokio::process::Command::new("/bin/bash");
    cmd.arg(&script)
        .arg("--no-build")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", &home)
        .env("EMS_LOCAL_DIR", &state)
        .env("EMS_PG_PORT", free_port().to_string())
        .env("EMS_CLOUD_PORT", free_port().to_string())
        .env("EMS_BIN_DIR", &bin)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&stderr_log).unwrap());
    let mut child = cmd.spawn_guarded().expect("stack/run.sh starts");
    let stdout = child.stdout.take().unwrap();
    let stack = Stack { child: Some(child) };
    let logs = || {
        let mut text = std::fs::read_to_string(&stderr_log).unwrap_or_default();
        for log in ["cloud", "agent", "sim", "postgres"] {
            let body =
                std::fs::read_to_string(state.join(format!("{log}.log"))).unwrap_or_default();
            let tail: Vec<&str> = body.lines().rev().take(15).collect();
            text.push_str(&format!(
                "\n--- {log}.log (tail, newest first)\n{}",
                tail.join("\n")
            ));
        }
        text
    };

    // What the stack prints, up to its last line.
    let mut lines = BufReader::new(stdout).lines();
    let mut printed = Vec::new();
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
        printed.join("\n"),
        logs()
    );
    let after = |label: &str| {
        printed
            .iter()
            .find_map(|l| l.trim_start().strip_prefix(label))
            .map(|rest| rest.trim().to_string())
            .unwrap_or_else(|| panic!("no {label:?} line in:\n{}", printed.join("\n")))
    };
    let source_line = after("In any shell:");
    let try_line = after("Then try:");
    assert!(source_line.starts_with("source /"), "{source_line}");
    assert_eq!(try_line, "emsctl set-mode MANUAL_DISCHARGE --power 500");

    // A new shell: the printed source line, then the printed command, no flags, no EMS_… .
    let (code, out, err) = in_new_shell(&home, &source_line, &try_line).await;
    assert_eq!(
        code,
        0,
        "set-mode\nstdout: {out}\nstderr: {err}\n{}",
        logs()
    );
    assert!(out.starts_with("ACCEPTED "), "{out}");
    assert!(out.contains("SET_MODE MANUAL_DISCHARGE 500 W"), "{out}");

    let (code, out, err) = in_new_shell(&home, &source_line, "emsctl reset-error").await;
    assert_eq!(code, 0, "reset-error\nstdout: {out}\nstderr: {err}");
    assert!(out.starts_with("ACCEPTED "), "{out}");
    assert!(out.contains("RESET_ERROR"), "{out}");

    let (code, out, err) = in_new_shell(&home, &source_line, "emsctl status").await;
    assert_eq!(code, 0, "status\nstdout: {out}\nstderr: {err}");
    assert!(out.contains("sim_001 (Simulated site)"), "{out}");
    assert!(out.contains("online"), "{out}");

    // The stack's settings are private to it, and the user's own config was left alone.
    let config = state.join("emsctl.toml");
    let mode = std::fs::metadata(&config).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "{}", config.display());
    assert!(!home.join(".config").exists(), "the stack wrote into HOME");

    // SIGTERM: the script stops every part in order and says so.
    stack.stop().await;
    let mut rest = Vec::new();
    while let Ok(Some(line)) = lines.next_line().await {
        rest.push(line);
    }
    assert!(
        rest.iter().any(|l| l.starts_with("stopped; data kept in")),
        "{}",
        rest.join("\n")
    );
}
