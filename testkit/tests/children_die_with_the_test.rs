//! Children started with `spawn_guarded` are gone when the test that started them panics, and
//! when the test process is killed with SIGKILL (no destructor runs then: the kernel's
//! parent-death signal does the work). Both the `std::process` and the `tokio::process` kind.

use std::process::Command;
use std::time::Duration;

use ems_testkit::process::SpawnGuarded;
use tokio::io::{AsyncBufReadExt, BufReader};

/// Set in the environment of the process that [`holder_for_the_kill_test`] runs in.
const HOLDER: &str = "EMS_TESTKIT_CHILD_HOLDER";

fn sleeper() -> Command {
    let mut cmd = Command::new("sleep");
    cmd.arg("600");
    cmd
}

/// Whether `pid` names no process at all (`kill(pid, 0)` fails with ESRCH; a zombie would
/// still answer).
fn is_gone(pid: u32) -> bool {
    // SAFETY: signal 0 only checks that the process exists.
    let rc = unsafe { libc::kill(pid as libc::pid_t, 0) };
    rc == -1 && std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH)
}

#[tokio::test]
async fn a_panicking_test_leaves_no_child_behind() {
    let (pids_tx, pids_rx) = std::sync::mpsc::channel();
    let test = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let _entered = runtime.enter();
        let std_child = sleeper().spawn_guarded().unwrap();
        let tokio_child = tokio::process::Command::from(sleeper())
            .spawn_guarded()
            .unwrap();
        let tokio_pid = tokio_child.id().expect("running");
        pids_tx.send([std_child.id(), tokio_pid]).unwrap();
        panic!("the test fails while its children run");
    });
    assert!(test.join().is_err(), "the thread panicked");
    for pid in pids_rx.recv().unwrap() {
        ems_testkit::wait::until(
            &format!("child {pid} to be gone"),
            Duration::from_secs(10),
            Duration::from_millis(10),
            || async move { is_gone(pid).then_some(()) },
        )
        .await;
    }
}

#[tokio::test]
async fn a_killed_test_process_takes_its_children_along() {
    // This machine's PID 1 need not reap orphans, and a zombie still answers kill(pid, 0). As a
    // subreaper this process adopts the orphaned children, so it can reap them and see the
    // signal that ended them.
    // SAFETY: prctl with an integer argument.
    assert_eq!(
        unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1) },
        0,
        "{}",
        std::io::Error::last_os_error()
    );
    let mut holder = tokio::process::Command::new(std::env::current_exe().unwrap());
    holder
        .args(["--exact", "holder_for_the_kill_test", "--nocapture"])
        .env(HOLDER, "1")
        .stdout(std::process::Stdio::piped());
    let mut holder = holder.spawn_guarded().unwrap();
    let mut lines = BufReader::new(holder.stdout.take().unwrap()).lines();
    let pids: Vec<u32> = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some(pids) = line.strip_prefix("pids: ") {
                return pids.split(' ').map(|p| p.parse().unwrap()).collect();
            }
        }
        panic!("the holder ended without naming its children");
    })
    .await
    .expect("the holder names its children within 20 s");
    assert_eq!(pids.len(), 2);

    holder.kill().await.unwrap();

    for pid in pids {
        let status = ems_testkit::wait::until(
            &format!("orphaned child {pid} to end"),
            Duration::from_secs(10),
            Duration::from_millis(10),
            || async move {
                let mut status = 0;
                // SAFETY: waitpid on a pid that became our child when its parent died.
                let got = unsafe { libc::waitpid(pid as libc::pid_t, &mut status, libc::WNOHANG) };
                (got == pid as libc::pid_t).then_some(status)
            },
        )
        .await;
        assert!(
            libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == libc::SIGKILL,
            "child {pid} ended by SIGKILL (wait status {status:#x})"
        );
        assert!(is_gone(pid), "child {pid} is gone");
    }
}

/// Not a check of its own: the process that [`a_killed_test_process_takes_its_children_along`]
/// starts (this test binary, with [`HOLDER`] set) and kills. It starts two guarded children,
/// names them on stdout and waits to be killed.
#[test]
fn holder_for_the_kill_test() {
    if std::env::var_os(HOLDER).is_none() {
        return;
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _entered = runtime.enter();
    let std_child = sleeper().spawn_guarded().unwrap();
    let tokio_child = tokio::process::Command::from(sleeper())
        .spawn_guarded()
        .unwrap();
    println!(
        "pids: {} {}",
        std_child.id(),
        tokio_child.id().expect("running")
    );
    std::thread::sleep(Duration::from_secs(600));
}
