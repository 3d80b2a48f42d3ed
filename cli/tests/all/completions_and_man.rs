//! `completions <shell>` and `man` are generated from the command definition and need no server.

use crate::common;

use common::{emsctl, run};

#[tokio::test]
async fn completions_and_man_pages() {
    let home = tempfile::tempdir().unwrap();
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let mut cmd = emsctl(home.path());
        cmd.args(["completions", shell]);
        let r = run(cmd).await.expect(0);
        assert!(r.stdout.contains("set-mode"), "{shell}: {}", r.stdout);
        assert!(r.stdout.contains("MANUAL_DISCHARGE"), "{shell}");
    }
    let mut cmd = emsctl(home.path());
    cmd.args(["completions", "tcsh"]);
    run(cmd).await.expect(2);

    let mut cmd = emsctl(home.path());
    cmd.arg("man");
    let r = run(cmd).await.expect(0);
    assert!(
        r.stdout.starts_with(".ie") || r.stdout.contains(".TH emsctl"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.contains("Exit codes"),
        "exit codes documented in the man page"
    );

    let dir = home.path().join("man1");
    let mut cmd = emsctl(home.path());
    cmd.args(["man", "--dir", dir.to_str().unwrap()]);
    run(cmd).await.expect(0);
    for page in [
        "emsctl.1",
        "emsctl-set-mode.1",
        "emsctl-history.1",
        "emsctl-devices-add.1",
    ] {
        assert!(dir.join(page).is_file(), "{page} written");
    }

    let mut cmd = emsctl(home.path());
    cmd.arg("--help");
    let r = run(cmd).await.expect(0);
    assert!(r.stdout.contains("4  timed out waiting"), "{}", r.stdout);
}
