//! On a terminal (a real pseudo-terminal with echo on, as a person's), `login` prompts for the
//! token with the echo off: what is typed never shows, the echo is on again afterwards, and the
//! token is saved.

use std::os::fd::{AsRawFd, OwnedFd};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ems_protocol::api::Role;
use ems_testkit::process::SpawnGuarded;
use ems_testkit::pty::PtyPair;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::common;

use common::{Cloud, DEADLINE, emsctl};

fn termios(fd: &OwnedFd) -> libc::termios {
    // SAFETY: tcgetattr fills a zeroed termios for a valid tty fd.
    unsafe {
        let mut t: libc::termios = std::mem::zeroed();
        assert_eq!(libc::tcgetattr(fd.as_raw_fd(), &mut t), 0);
        t
    }
}

/// Line editing, echo and newline translation on, as in an interactive shell.
fn cooked(fd: &OwnedFd) {
    let mut t = termios(fd);
    t.c_lflag |= libc::ICANON | libc::ECHO | libc::ECHONL | libc::ISIG;
    t.c_iflag |= libc::ICRNL;
    t.c_oflag |= libc::OPOST | libc::ONLCR;
    // SAFETY: tcsetattr with a termios read from the same fd.
    assert_eq!(
        unsafe { libc::tcsetattr(fd.as_raw_fd(), libc::TCSANOW, &t) },
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_prompt_hides_the_token() {
    let cloud = Cloud::start().await;
    let operator = cloud.token("operator", Role::Operator).await;
    let home = cloud.home.path();
    let url = cloud.url();

    let pair = PtyPair::open().unwrap();
    cooked(&pair.slave);
    let (master, slave, _) = pair.into_master_stream().unwrap();
    let (mut from_terminal, mut to_terminal) = tokio::io::split(master);
    let seen = Arc::new(Mutex::new(Vec::<u8>::new()));
    let reader = {
        let seen = seen.clone();
        tokio::spawn(async move {
            let mut buf = [0u8; 1024];
            while let Ok(n) = from_terminal.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                seen.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        })
    };
    let shown = || String::from_utf8_lossy(&seen.lock().unwrap()).into_owned();
    let wait_for = |what: &'static str| {
        ems_testkit::wait::until(what, DEADLINE, Duration::from_millis(20), move || {
            let found = shown().contains(what);
            async move { found.then_some(()) }
        })
    };

    let mut cmd = emsctl(home);
    cmd.args(["login", "--url", &url])
        .stdin(Stdio::from(slave.try_clone().unwrap()))
        .stdout(Stdio::from(slave.try_clone().unwrap()))
        .stderr(Stdio::from(slave.try_clone().unwrap()));
    let mut child = cmd.spawn_guarded().unwrap();
    wait_for("API token for ").await;
    to_terminal
        .write_all(format!("{operator}\n").as_bytes())
        .await
        .unwrap();
    let status = tokio::time::timeout(DEADLINE, child.wait())
        .await
        .unwrap()
        .unwrap();
    wait_for("logged in to").await;
    let text = shown();
    assert_eq!(status.code(), Some(0), "{text}");
    assert!(!text.contains(&operator), "the token was echoed:\n{text}");
    assert!(!text.contains("warning"), "{text}");
    assert_ne!(termios(&slave).c_lflag & libc::ECHO, 0, "echo left off");
    let saved = std::fs::read_to_string(home.join(".config/emsctl/config.toml")).unwrap();
    assert!(saved.contains(&operator), "{saved}");
    reader.abort();
    drop(slave);
    cloud.stop().await;
}
