//! Issue 20: `stack/run.sh --instances 3` starts the multi-instance topology of
//! packaging/README.md locally: three ems-cloud instances sharing the stack's PostgreSQL behind
//! Debian's HAProxy. emsctl, set up by the printed line, reaches the agent through the proxy;
//! the instance holding the agent's socket is killed; the agent reconnects through HAProxy to a
//! survivor, the stack goes on, and the next command is ACCEPTED by the agent again.

use std::time::{Duration, Instant};

use crate::common::stack::{STACK_DEADLINE, Stack, free_port};

/// The instance holding the agent's socket, as the instances record it in the database (the
/// column commands are routed by).
async fn agent_instance(stack: &Stack) -> Option<String> {
    let url = format!("postgres://postgres@127.0.0.1:{}/ems", stack.pg_port);
    let client = ems_cloud::db::connect(&url).await.ok()?;
    let row = client
        .query_opt(
            "SELECT connected_instance FROM devices WHERE id = 'sim_001'",
            &[],
        )
        .await
        .ok()??;
    row.get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stack_instances_behind_haproxy_fail_over() {
    let ports = [free_port(), free_port(), free_port()];
    let stack = Stack::start(
        &["--instances", "3"],
        &[(
            "EMS_CLOUD_INSTANCE_PORTS",
            ports.map(|p| p.to_string()).join(" "),
        )],
    )
    .await;
    assert!(
        stack.after("Instances:").starts_with("3 behind HAProxy"),
        "{}",
        stack.printed.join("\n")
    );

    // The agent's commands go through HAProxy.
    let (code, out, err) = stack
        .in_new_shell("emsctl set-mode MANUAL_DISCHARGE --power 500")
        .await;
    assert_eq!(code, 0, "stdout: {out}\nstderr: {err}\n{}", stack.logs());
    assert!(out.starts_with("ACCEPTED "), "{out}");

    // Kill the instance that holds the agent's socket.
    let holder = agent_instance(&stack)
        .await
        .expect("the agent is connected");
    let n: u32 = holder
        .strip_prefix("cloud")
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("instance {holder:?}"));
    let pid: i32 = std::fs::read_to_string(stack.state.join(format!("cloud{n}.pid")))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // SAFETY: signalling a process the stack started for this test.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    let killed = Instant::now();

    // The agent reconnects through HAProxy to a survivor; the next command reaches it.
    let accepted = loop {
        let (code, out, err) = stack.in_new_shell("emsctl set-mode AUTO").await;
        if code == 0 && out.starts_with("ACCEPTED ") {
            break killed.elapsed();
        }
        assert!(
            killed.elapsed() < STACK_DEADLINE,
            "no ACCEPTED after the kill: {out} {err}\n{}",
            stack.logs()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    println!("instance {holder} killed; a command was ACCEPTED again after {accepted:?}");
    let moved = agent_instance(&stack).await;
    assert!(
        moved.as_deref().is_some_and(|m| m != holder),
        "the agent is on {moved:?}, not on a survivor"
    );
    let (code, out, _) = stack.in_new_shell("emsctl status").await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("online"), "{out}");

    // The stack survived the instance's death and still stops in order.
    let rest = stack.stop().await;
    assert!(
        rest.iter().any(|l| l.starts_with("stopped; data kept in")),
        "{}",
        rest.join("\n")
    );
}
