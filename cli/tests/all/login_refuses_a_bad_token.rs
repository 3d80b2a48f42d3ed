//! `login` writes nothing when the token is refused, the URL is dead or the device is not
//! visible to the token, and says so; it never takes the token on the command line, and without
//! a terminal it needs `--token-stdin`.

use crate::common;

use common::{Cloud, emsctl, run, write_default_config};
use ems_protocol::api::Role;

use crate::login_saves_a_private_config::with_stdin;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_refuses_a_bad_token() {
    let cloud = Cloud::start().await;
    cloud.add_device("ems_001").await;
    let viewer = cloud.token("viewer", Role::Viewer).await;
    let home = cloud.home.path();
    let url = cloud.url();
    let config = home.join(".config/emsctl/config.toml");
    let bogus = format!("emsa_{}", "x".repeat(43));

    // A token the server does not know: exit 3, nothing written.
    let r = with_stdin(home, &["login", "--url", &url, "--token-stdin"], &bogus)
        .await
        .expect(3);
    assert!(r.stderr.contains("authentication failed"), "{}", r.stderr);
    assert!(r.stderr.contains("nothing was written"), "{}", r.stderr);
    assert!(!config.exists());

    // A server that is not there: exit 3, nothing written.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let r = with_stdin(home, &["login", "--url", &dead, "--token-stdin"], &viewer)
        .await
        .expect(3);
    assert!(r.stderr.contains("cannot reach"), "{}", r.stderr);
    assert!(!config.exists());

    // An existing file is left exactly as it was.
    let before = "url = \"http://elsewhere.invalid\"\ntoken = \"emsa_old\"\n";
    write_default_config(home, before);
    let r = with_stdin(home, &["login", "--url", &url, "--token-stdin"], &bogus)
        .await
        .expect(3);
    assert!(r.stderr.contains("nothing was written"), "{}", r.stderr);
    // A device the token does not see.
    let r = with_stdin(
        home,
        &[
            "login",
            "--url",
            &url,
            "--device",
            "nope_9",
            "--token-stdin",
        ],
        &viewer,
    )
    .await
    .expect(2);
    assert!(r.stderr.contains("nope_9"), "{}", r.stderr);
    assert_eq!(std::fs::read_to_string(&config).unwrap(), before);

    // Never on the command line; no prompt without a terminal.
    let mut cmd = emsctl(home);
    cmd.args(["login", "--url", &url, "--token", &viewer]);
    let r = run(cmd).await.expect(2);
    assert!(r.stderr.contains("does not take --token"), "{}", r.stderr);
    let mut cmd = emsctl(home);
    cmd.args(["login", "--url", &url]);
    let r = run(cmd).await.expect(2);
    assert!(r.stderr.contains("--token-stdin"), "{}", r.stderr);
    assert_eq!(std::fs::read_to_string(&config).unwrap(), before);
    cloud.stop().await;
}
