//! Issue 18's "first five minutes": the local stack (`stack/run.sh`, what `./dev.sh up` runs)
//! starts a real PostgreSQL, ems-cloud, ems-sim and ems-agent in a temp dir on free ports, and
//! prints a `source …/env` line; in a new shell with nothing but that line, the printed
//! `emsctl set-mode MANUAL_DISCHARGE --power 500` gets ACCEPTED by the agent, and `emsctl
//! reset-error` and `emsctl status` work as typed too. The user's own config is not touched.

use std::os::unix::fs::PermissionsExt;

use crate::common::stack::Stack;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stack_env_makes_emsctl_work_as_typed() {
    let stack = Stack::start(&[], &[]).await;
    let source_line = stack.after("In any shell:");
    let try_line = stack.after("Then try:");
    assert!(source_line.starts_with("source /"), "{source_line}");
    assert_eq!(try_line, "emsctl set-mode MANUAL_DISCHARGE --power 500");

    // A new shell: the printed source line, then the printed command, no flags, no EMS_… .
    let (code, out, err) = stack.in_new_shell(&try_line).await;
    assert_eq!(
        code,
        0,
        "set-mode\nstdout: {out}\nstderr: {err}\n{}",
        stack.logs()
    );
    assert!(out.starts_with("ACCEPTED "), "{out}");
    assert!(out.contains("SET_MODE MANUAL_DISCHARGE 500 W"), "{out}");

    let (code, out, err) = stack.in_new_shell("emsctl reset-error").await;
    assert_eq!(code, 0, "reset-error\nstdout: {out}\nstderr: {err}");
    assert!(out.starts_with("ACCEPTED "), "{out}");
    assert!(out.contains("RESET_ERROR"), "{out}");

    let (code, out, err) = stack.in_new_shell("emsctl status").await;
    assert_eq!(code, 0, "status\nstdout: {out}\nstderr: {err}");
    assert!(out.contains("sim_001 (Simulated site)"), "{out}");
    assert!(out.contains("online"), "{out}");

    // The stack's settings are private to it, and the user's own config was left alone.
    let config = stack.state.join("emsctl.toml");
    let mode = std::fs::metadata(&config).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "{}", config.display());
    assert!(
        !stack.home.join(".config").exists(),
        "the stack wrote into HOME"
    );

    // SIGTERM: the script stops every part in order and says so.
    let rest = stack.stop().await;
    assert!(
        rest.iter().any(|l| l.starts_with("stopped; data kept in")),
        "{}",
        rest.join("\n")
    );
}
