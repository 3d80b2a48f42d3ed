//! The credential commands against a real cloud: `tokens create --expires --devices`, `tokens
//! list|revoke|rotate`, `devices rotate-token|disable|enable|delete` and `audit`, each doing
//! what it says (a revoked or rotated-away token is refused, a scoped one sees its devices
//! only, a rotated device token lets the device in and the old one not).

use crate::common;

use common::{Cloud, emsctl, run};

/// `emsctl <args>` with `token` instead of the admin's.
async fn as_token(cloud: &Cloud, token: &str, args: &[&str]) -> common::Run {
    let mut cmd = emsctl(cloud.home.path());
    cmd.args(["--url", &cloud.url(), "--token", token]);
    cmd.args(args);
    run(cmd).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_devices_and_the_audit_trail() {
    let cloud = Cloud::start().await;
    for id in ["site_a", "site_b"] {
        cloud.run(&["devices", "add", id]).await.expect(0);
    }

    // A scoped, expiring operator token sees its device only.
    let created = cloud
        .run(&[
            "tokens",
            "create",
            "--role",
            "operator",
            "--name",
            "installer",
            "--expires",
            "30d",
            "--devices",
            "site_a",
            "-o",
            "json",
        ])
        .await
        .expect(0)
        .json();
    let installer = created["token"].as_str().unwrap().to_string();
    let expires: chrono::DateTime<chrono::Utc> =
        serde_json::from_value(created["expires_at"].clone()).unwrap();
    let in_30d = chrono::Utc::now() + chrono::Duration::days(30);
    assert!((expires - in_30d).num_seconds().abs() < 60, "{expires}");
    let listed = as_token(&cloud, &installer, &["devices", "list", "-o", "csv"])
        .await
        .expect(0)
        .csv();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["id"], "site_a");
    let r = as_token(&cloud, &installer, &["devices", "show", "site_b"]).await;
    assert_eq!(r.code, 2, "404 is a usage error: {}", r.stderr);

    // The list shows names, scopes and expiry, never a secret.
    let r = cloud.run(&["tokens", "list"]).await.expect(0);
    assert!(
        r.stdout.contains("installer") && r.stdout.contains("site_a"),
        "{}",
        r.stdout
    );
    assert!(!r.stdout.contains("emsa_"), "{}", r.stdout);

    // Rotated: the old secret is refused, the new one works.
    let rotated = cloud
        .run(&["tokens", "rotate", "installer", "-o", "json"])
        .await
        .expect(0)
        .json();
    let new_secret = rotated["token"].as_str().unwrap().to_string();
    assert_eq!(
        as_token(&cloud, &installer, &["devices", "list"])
            .await
            .code,
        3
    );
    as_token(&cloud, &new_secret, &["devices", "list"])
        .await
        .expect(0);

    // Revoked: refused; revoking again is a 404.
    cloud
        .run(&["tokens", "revoke", "installer"])
        .await
        .expect(0);
    assert_eq!(
        as_token(&cloud, &new_secret, &["devices", "list"])
            .await
            .code,
        3
    );
    assert_ne!(cloud.run(&["tokens", "revoke", "installer"]).await.code, 0);
    let all = cloud
        .run(&["tokens", "list", "--revoked", "-o", "json"])
        .await
        .expect(0)
        .json();
    assert_eq!(
        all.as_array()
            .unwrap()
            .iter()
            .filter(|t| t["name"] == "installer" && !t["revoked_at"].is_null())
            .count(),
        2
    );

    // Devices: rotate with a grace period, disable, enable, delete.
    let r = cloud
        .run(&[
            "devices",
            "rotate-token",
            "site_b",
            "--grace",
            "1h",
            "-o",
            "json",
        ])
        .await
        .expect(0)
        .json();
    assert!(r["token"].as_str().unwrap().starts_with("emsd_"));
    assert!(!r["previous_valid_until"].is_null());
    let r = cloud.run(&["devices", "disable", "site_b"]).await.expect(0);
    assert!(r.stdout.contains("disabled since"), "{}", r.stdout);
    let r = cloud.run(&["devices", "enable", "site_b"]).await.expect(0);
    assert!(r.stdout.contains("enabled"), "{}", r.stdout);
    let r = cloud.run(&["devices", "delete", "site_b"]).await.expect(0);
    assert!(r.stdout.contains("kept"), "{}", r.stdout);
    assert_ne!(cloud.run(&["devices", "show", "site_b"]).await.code, 0);
    let r = cloud
        .run(&["devices", "rotate-token", "site_a", "--grace", "5y"])
        .await;
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("--grace"), "{}", r.stderr);

    // The audit trail has all of it.
    let audit = ems_testkit::wait::until(
        "the audit trail to show the deletion",
        common::DEADLINE,
        std::time::Duration::from_millis(50),
        || async {
            let audit = cloud
                .run(&["audit", "--limit", "100", "-o", "json"])
                .await
                .expect(0)
                .json();
            let has = |a: &str| audit.as_array().unwrap().iter().any(|r| r["action"] == a);
            has("DEVICE_DELETED").then_some(audit)
        },
    )
    .await;
    let actions: Vec<&str> = audit
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["action"].as_str().unwrap())
        .collect();
    for a in [
        "DEVICE_CREATED",
        "TOKEN_CREATED",
        "TOKEN_ROTATED",
        "TOKEN_REVOKED",
        "DEVICE_TOKEN_ROTATED",
        "DEVICE_DISABLED",
        "DEVICE_ENABLED",
        "DEVICE_DELETED",
        "AUTH_FAILED",
    ] {
        assert!(actions.contains(&a), "{a} missing from {actions:?}");
    }
    let only = cloud
        .run(&["audit", "--for-device", "site_b", "-o", "csv"])
        .await
        .expect(0)
        .csv();
    assert!(!only.is_empty() && only.iter().all(|r| r["device"] == "site_b"));
    cloud.stop().await;
}
