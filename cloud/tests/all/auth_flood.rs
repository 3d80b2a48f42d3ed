//! A flood of requests with made-up tokens costs the server little and locks nobody else out:
//! malformed tokens are refused without a database query, an address whose tokens keep failing
//! is answered 429 before any query, and meanwhile `/health` stays fast and an operator's
//! command still reaches its device.

use crate::common;

use std::time::{Duration, Instant};

use common::TestServer;
use ems_protocol::api::{ApiErrorBody, Role};
use rand::Rng;

fn random_token() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut rng = rand::rng();
    let body: String = (0..43)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect();
    format!("emsa_{body}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_tokens_are_cheap_to_refuse_and_lock_nobody_out() {
    let server = TestServer::fresh().await;
    let device_token = server.add_device("flooded").await;
    let operator = server.token("ops", Role::Operator).await;
    let mut device = server.device("flooded", &device_token).await;

    // A malformed token: refused, and said so.
    let resp = server.get("/devices", "emsa_short").await;
    assert_eq!(resp.status(), 401);
    let body: ApiErrorBody = resp.json().await.unwrap();
    assert!(body.error.contains("malformed"), "{}", body.error);

    // The attacker: 2,000 concurrent requests with random well-formed tokens, from another
    // source address than the operator's.
    let attacker_builder =
        reqwest::Client::builder().local_address("127.0.0.2".parse::<std::net::IpAddr>().unwrap());
    let url = server.api("/devices");
    // On a runtime of its own, so the client side of the flood does not delay the timing of
    // the operator's requests below (both share the machine's cores, as they would share a
    // server's).
    let flood_runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let flood = flood_runtime.spawn(async move {
        let attacker = attacker_builder.build().unwrap();
        let requests = (0..2000).map(|_| {
            let attacker = attacker.clone();
            let url = url.clone();
            async move {
                attacker
                    .get(&url)
                    .bearer_auth(random_token())
                    .send()
                    .await
                    .map(|r| r.status().as_u16())
                    .unwrap_or(0)
            }
        });
        futures_util::future::join_all(requests).await
    });

    // Meanwhile, from the operator's address: /health, timed.
    let mut health = Vec::new();
    let health_url = server.api("/health");
    for _ in 0..50 {
        let start = Instant::now();
        let resp = server.http.get(&health_url).send().await.unwrap();
        assert_eq!(resp.status(), 200);
        health.push(start.elapsed());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let statuses = flood.await.unwrap();
    flood_runtime.shutdown_background();
    health.sort();
    let p99 = health[health.len() * 99 / 100 - 1];
    // The figure is printed (issue 14's target is p99 < 200 ms; on an idle 2-core machine it is
    // 100-200 ms, most of it the client side of 2,000 connections on the same cores). What makes
    // a flood cheap is asserted below without a clock: at most burst + 16 made-up tokens reach a
    // database check, the rest are throttled. The bound here only catches a server that stops
    // answering, so a busy CI machine cannot fail it by being slow.
    println!(
        "/health under the flood: p50 {:?}, p99 {p99:?}",
        health[health.len() / 2]
    );
    assert!(
        p99 < Duration::from_secs(10),
        "/health p99 {p99:?} under the flood"
    );
    let refused = statuses.iter().filter(|s| **s == 401).count();
    let throttled = statuses.iter().filter(|s| **s == 429).count();
    assert_eq!(
        refused + throttled,
        2000,
        "every made-up token refused (401) or throttled (429): {:?}",
        statuses
            .iter()
            .filter(|s| **s != 401 && **s != 429)
            .take(5)
            .collect::<Vec<_>>()
    );
    assert!(
        refused <= 40,
        "the address was throttled after its failures ({refused} x 401)"
    );

    // The operator still commands the device.
    let (status, body) = server
        .post_json(
            "/devices/flooded/commands",
            &operator,
            &serde_json::json!({"action": "RESET_ERROR", "payload": {}}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let command = device.next_command().await;
    assert_eq!(command.command_id, body["command_id"].as_str().unwrap());
    server.stop().await;
}

/// Many honest devices behind one address (a site's NAT, or all of them after a restart of the
/// cloud) connect at the same moment: none is refused, because only failures count against an
/// address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconnect_storm_from_one_address_is_not_throttled() {
    let server = TestServer::fresh().await;
    let db = common::test_db(&server.db_url).await;
    let mut tokens = Vec::new();
    for i in 0..150 {
        let id = format!("storm_{i:03}");
        let created = ems_cloud::api::devices::add_device(&db, &id, None, &[])
            .await
            .unwrap();
        tokens.push((id, created.token));
    }
    let connects = tokens.iter().map(|(id, token)| {
        let url = server.ws(&format!("/ws/device/{id}"));
        async move { common::Device::connect(&url, token).await }
    });
    let results = futures_util::future::join_all(connects).await;
    let refused: Vec<String> = results
        .iter()
        .filter_map(|r| r.as_ref().err().map(|e| e.to_string()))
        .collect();
    assert!(
        refused.is_empty(),
        "{} of 150 refused: {:?}",
        refused.len(),
        &refused[..refused.len().min(3)]
    );
    server.stop().await;
}
