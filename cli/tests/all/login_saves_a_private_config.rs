//! `login` checks a token against the cloud and saves it with the URL in the default config file,
//! mode 0600 in a 0700 directory, keeping the keys already there; afterwards commands work with no
//! flags at all. `logout` takes the token out again and leaves the rest.

use std::os::unix::fs::PermissionsExt;
use std::process::Stdio;

use crate::common;

use common::{Cloud, emsctl, finish, run, write_default_config};
use ems_protocol::api::Role;
use ems_testkit::process::SpawnGuarded;
use tokio::io::AsyncWriteExt;

/// `emsctl <args>` with `stdin` written to its standard input.
pub async fn with_stdin(home: &std::path::Path, args: &[&str], stdin: &str) -> common::Run {
    let mut cmd = emsctl(home);
    cmd.args(args).stdin(Stdio::piped());
    let mut child = cmd.spawn_guarded().expect("emsctl starts");
    let mut pipe = child.stdin.take().unwrap();
    pipe.write_all(stdin.as_bytes()).await.unwrap();
    drop(pipe);
    finish(child).await
}

fn mode(path: &std::path::Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_saves_a_private_config() {
    let cloud = Cloud::start().await;
    cloud.add_device("ems_001").await;
    cloud.add_device("ems_002").await;
    let operator = cloud.token("site-operator", Role::Operator).await;
    let home = cloud.home.path();
    // A device chosen earlier stays chosen.
    let config = write_default_config(home, "device = \"ems_002\"\n");
    std::fs::set_permissions(
        config.parent().unwrap(),
        std::fs::Permissions::from_mode(0o700),
    )
    .unwrap();

    let url = cloud.url();
    let r = with_stdin(
        home,
        &["login", "--url", &url, "--token-stdin"],
        &format!("{operator}\n"),
    )
    .await
    .expect(0);
    assert!(
        r.stdout
            .contains(&format!("logged in to {url} as site-operator (operator)")),
        "{}",
        r.stdout
    );
    assert_eq!(mode(&config), 0o600);
    let text = std::fs::read_to_string(&config).unwrap();
    assert!(text.contains(&format!("token = \"{operator}\"")), "{text}");
    assert!(text.contains(&format!("url = \"{url}\"")), "{text}");
    assert!(text.contains("device = \"ems_002\""), "{text}");

    // No flags, no environment: the saved settings are used.
    let r = run(emsctl(home)).await;
    assert_eq!(r.code, 2, "no subcommand is a usage error: {r:?}");
    let mut status = emsctl(home);
    status.arg("status");
    let r = run(status).await.expect(0);
    assert!(r.stdout.contains("ems_002"), "{}", r.stdout);
    let mut cmd = emsctl(home);
    cmd.args(["set-mode", "MANUAL_IDLE", "--no-wait", "--id", "cmd_login"]);
    let r = run(cmd).await.expect(0);
    assert!(r.stdout.contains("cmd_login"), "{}", r.stdout);
    // Issued under the operator token's name, not the admin's.
    let r = cloud
        .run(&[
            "commands",
            "show",
            "cmd_login",
            "-d",
            "ems_002",
            "-o",
            "json",
        ])
        .await
        .expect(0);
    assert_eq!(r.json()["issued_by"], "site-operator");

    // A new directory is created private; --device is saved.
    let fresh = tempfile::tempdir().unwrap();
    let r = with_stdin(
        fresh.path(),
        &[
            "login",
            "--url",
            &url,
            "--device",
            "ems_001",
            "--token-stdin",
        ],
        &operator,
    )
    .await
    .expect(0);
    let saved = fresh.path().join(".config/emsctl/config.toml");
    assert!(
        r.stdout.contains(&saved.display().to_string()),
        "{}",
        r.stdout
    );
    assert_eq!(mode(&saved), 0o600);
    assert_eq!(mode(saved.parent().unwrap()), 0o700);
    let mut status = emsctl(fresh.path());
    status.arg("status");
    let r = run(status).await.expect(0);
    assert!(r.stdout.contains("ems_001"), "{}", r.stdout);

    // Logout removes the token and keeps the rest.
    let mut cmd = emsctl(fresh.path());
    cmd.arg("logout");
    run(cmd).await.expect(0);
    let text = std::fs::read_to_string(&saved).unwrap();
    assert!(!text.contains("token"), "{text}");
    assert!(text.contains("device = \"ems_001\""), "{text}");
    assert_eq!(mode(&saved), 0o600);
    let mut status = emsctl(fresh.path());
    status.arg("status");
    let r = run(status).await.expect(2);
    assert!(r.stderr.contains("no API token given"), "{}", r.stderr);
    cloud.stop().await;
}
