//! Connection settings: flags beat `EMS_…` variables beat the config file (default path under
//! HOME, or `--config` / `EMSCTL_CONFIG`); a broken or missing named file is a usage error.

use crate::common;

use common::{Cloud, emsctl, run, write_default_config};

/// The device `devices show` (no id) picked, from its JSON.
async fn shown_device(cmd: tokio::process::Command) -> String {
    let r = run(cmd).await.expect(0);
    r.json()["id"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flags_over_environment_over_file() {
    let cloud = Cloud::start().await;
    for id in ["ems_a", "ems_b", "ems_c", "ems_d"] {
        cloud.add_device(id).await;
    }
    let home = cloud.home.path();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let url = cloud.url();
    write_default_config(
        home,
        &format!(
            "url = \"{url}\"\ntoken = \"{}\"\ndevice = \"ems_a\"\n",
            cloud.admin
        ),
    );
    let show = || {
        let mut cmd = emsctl(home);
        cmd.args(["devices", "show", "-o", "json"]);
        cmd
    };

    // The file alone.
    assert_eq!(shown_device(show()).await, "ems_a");
    // The environment beats the file.
    let mut cmd = show();
    cmd.env("EMS_DEVICE", "ems_b");
    assert_eq!(shown_device(cmd).await, "ems_b");
    // A flag beats both.
    let mut cmd = show();
    cmd.env("EMS_DEVICE", "ems_b").args(["--device", "ems_c"]);
    assert_eq!(shown_device(cmd).await, "ems_c");

    // URL and token the same way: a dead URL in the file is overridden by EMS_URL, and a
    // dead --url overrides a good EMS_URL.
    write_default_config(home, &format!("url = \"{dead}\"\ndevice = \"ems_a\"\n"));
    let mut cmd = show();
    cmd.env("EMS_URL", &url).env("EMS_TOKEN", &cloud.admin);
    assert_eq!(shown_device(cmd).await, "ems_a");
    let mut cmd = show();
    cmd.env("EMS_URL", &url)
        .env("EMS_TOKEN", &cloud.admin)
        .args(["--url", &dead]);
    let r = run(cmd).await.expect(3);
    assert!(r.stderr.contains(&dead), "{}", r.stderr);
    let mut cmd = show();
    cmd.env("EMS_URL", &url).env("EMS_TOKEN", "emsa_wrong");
    run(cmd).await.expect(3);
    let mut cmd = show();
    cmd.env("EMS_URL", &url)
        .env("EMS_TOKEN", "emsa_wrong")
        .args(["--token", &cloud.admin]);
    assert_eq!(shown_device(cmd).await, "ems_a");

    // A named file replaces the default one, by flag or by EMSCTL_CONFIG.
    let other = home.join("site-d.toml");
    std::fs::write(
        &other,
        format!(
            "url = \"{url}\"\ntoken = \"{}\"\ndevice = \"ems_d\"\n",
            cloud.admin
        ),
    )
    .unwrap();
    let mut cmd = show();
    cmd.args(["--config", other.to_str().unwrap()]);
    assert_eq!(shown_device(cmd).await, "ems_d");
    let mut cmd = show();
    cmd.env("EMSCTL_CONFIG", &other);
    assert_eq!(shown_device(cmd).await, "ems_d");

    // A named file that is missing, or has a typo, is a usage error naming it.
    let mut cmd = show();
    cmd.args(["--config", "/nonexistent/emsctl.toml"]);
    let r = run(cmd).await.expect(2);
    assert!(
        r.stderr.contains("/nonexistent/emsctl.toml"),
        "{}",
        r.stderr
    );
    write_default_config(home, "urll = \"http://x\"\n");
    let r = run(show()).await.expect(2);
    assert!(r.stderr.contains("urll"), "{}", r.stderr);
    assert!(r.stderr.contains("config.toml"), "{}", r.stderr);
    cloud.stop().await;
}
