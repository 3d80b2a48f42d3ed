//! Exit 3 for everything that is not the user's arguments: an unknown token (401), a token
//! whose role may not do it (403), and a server that is not there. One line plus a hint each.

use crate::common;

use common::{Cloud, emsctl, run};
use ems_protocol::api::Role;

fn assert_one_error_line(stderr: &str) {
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 2, "{stderr}");
    assert!(lines[0].starts_with("error: "), "{stderr}");
    assert!(lines[1].starts_with("hint: "), "{stderr}");
    assert!(
        !stderr.contains("panicked") && !stderr.contains("Backtrace"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_credentials_and_unreachable_servers_exit_three() {
    let cloud = Cloud::start().await;
    cloud.add_device("ems_001").await;

    // Unknown token.
    let mut cmd = emsctl(cloud.home.path());
    cmd.args([
        "--url",
        &cloud.url(),
        "--token",
        "emsa_not_a_token",
        "status",
    ]);
    let r = run(cmd).await.expect(3);
    assert!(r.stderr.contains("authentication failed"), "{}", r.stderr);
    assert!(r.stderr.contains("(401)"), "{}", r.stderr);
    assert_one_error_line(&r.stderr);

    // A viewer may read but not command.
    let viewer = cloud.token("watcher", Role::Viewer).await;
    let mut cmd = emsctl(cloud.home.path());
    cmd.args(["--url", &cloud.url(), "--token", &viewer, "status"]);
    run(cmd).await.expect(0);
    let mut cmd = emsctl(cloud.home.path());
    cmd.args(["--url", &cloud.url(), "--token", &viewer]);
    cmd.args(["set-mode", "AUTO"]);
    let r = run(cmd).await.expect(3);
    assert!(r.stderr.contains("(403)"), "{}", r.stderr);
    assert!(r.stderr.contains("operator"), "{}", r.stderr);
    assert_one_error_line(&r.stderr);

    // The live feed refuses the same way.
    let mut cmd = emsctl(cloud.home.path());
    cmd.args([
        "--url",
        &cloud.url(),
        "--token",
        "emsa_nope",
        "-d",
        "ems_001",
        "watch",
    ]);
    let r = run(cmd).await.expect(3);
    assert!(r.stderr.contains("(401)"), "{}", r.stderr);

    // Nobody listens on this port any more.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    for args in [
        vec!["status", "-d", "ems_001"],
        vec!["set-mode", "AUTO", "-d", "ems_001"],
        vec!["watch", "-d", "ems_001"],
    ] {
        let mut cmd = emsctl(cloud.home.path());
        cmd.args(["--url", &dead, "--token", &cloud.admin])
            .args(&args);
        let r = run(cmd).await.expect(3);
        assert!(r.stderr.contains("cannot reach"), "{args:?}: {}", r.stderr);
        assert_one_error_line(&r.stderr);
    }
    cloud.stop().await;
}
