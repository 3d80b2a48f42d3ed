//! Tokens scoped by device tag: a token for `site:lyon` sees the devices tagged so, tagged
//! before or after it was made, and stops seeing one whose tag is taken away (404, as for a
//! device that does not exist); the same for commands. Tags are validated, listed, filtered on,
//! kept by a token's rotation, refused for admin tokens, and set by admins only.

use ems_protocol::api::{DeviceInfo, Role, TokenCreated, TokenInfo};
use serde_json::json;

use crate::common::TestServer;

async fn ids(server: &TestServer, path: &str, token: &str) -> Vec<String> {
    let resp = server.get(path, token).await;
    assert_eq!(resp.status(), 200, "GET {path}");
    let list: Vec<DeviceInfo> = resp.json().await.unwrap();
    list.into_iter().map(|d| d.id).collect()
}

async fn put_tags(server: &TestServer, device: &str, token: &str, tags: &[&str]) -> u16 {
    server
        .http
        .put(server.api(&format!("/devices/{device}/tags")))
        .bearer_auth(token)
        .json(&json!({ "tags": tags }))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_scoped_to_a_tag_follows_the_tags() {
    let server = TestServer::fresh().await;
    let (code, body) = server
        .post_json(
            "/devices",
            &server.admin,
            &json!({"id": "lyon_1", "tags": ["site:lyon", "fleet-a", "site:lyon"]}),
        )
        .await;
    assert_eq!(code, 201, "{body}");
    assert_eq!(
        body["device"]["tags"],
        json!(["fleet-a", "site:lyon"]),
        "sorted, once"
    );
    server.add_device("paris_1").await;
    server.add_device("lyon_2").await;

    let (code, body) = server
        .post_json(
            "/tokens",
            &server.admin,
            &json!({"name": "lyon-ops", "role": "operator", "tags": ["site:lyon"]}),
        )
        .await;
    assert_eq!(code, 201, "{body}");
    let lyon: TokenCreated = serde_json::from_value(body).unwrap();
    let t = &lyon.token;

    assert_eq!(ids(&server, "/devices", t).await, ["lyon_1"]);
    assert_eq!(server.get("/devices/paris_1", t).await.status(), 404);
    assert_eq!(server.get("/devices/lyon_2", t).await.status(), 404);
    let reset = json!({"action": "RESET_ERROR", "payload": {}});
    let (code, _) = server
        .post_json("/devices/paris_1/commands", t, &reset)
        .await;
    assert_eq!(code, 404, "no command outside the scope");
    let (code, body) = server
        .post_json("/devices/lyon_1/commands", t, &reset)
        .await;
    assert_eq!(code, 201, "{body}");

    // Tagged after the token was made: seen from the next request on.
    assert_eq!(
        put_tags(&server, "lyon_2", &server.admin, &["site:lyon"]).await,
        200
    );
    assert_eq!(ids(&server, "/devices", t).await, ["lyon_1", "lyon_2"]);
    assert_eq!(server.get("/devices/lyon_2", t).await.status(), 200);
    // The tag taken away: gone for it at once.
    assert_eq!(put_tags(&server, "lyon_1", &server.admin, &[]).await, 200);
    assert_eq!(ids(&server, "/devices", t).await, ["lyon_2"]);
    assert_eq!(server.get("/devices/lyon_1", t).await.status(), 404);

    // Listing and filtering; a tag filter inside a scope stays inside it.
    assert_eq!(
        ids(&server, "/devices?tag=site:lyon", &server.admin).await,
        ["lyon_2"]
    );
    assert_eq!(
        ids(&server, "/devices?tag=nothing", &server.admin).await,
        Vec::<String>::new()
    );
    let tokens: Vec<TokenInfo> = server.get_json("/tokens").await;
    let info = tokens.iter().find(|k| k.name == "lyon-ops").unwrap();
    assert_eq!(info.tags.as_deref(), Some(&["site:lyon".to_string()][..]));
    assert_eq!(info.devices, None);

    // A rotation keeps the scope.
    let (code, body) = server
        .post_json("/tokens/lyon-ops/rotate", &server.admin, &json!({}))
        .await;
    assert_eq!(code, 201, "{body}");
    let rotated = body["token"].as_str().unwrap().to_string();
    assert_eq!(ids(&server, "/devices", &rotated).await, ["lyon_2"]);

    // Devices and tags together: the union.
    let (code, body) = server
        .post_json(
            "/tokens",
            &server.admin,
            &json!({"name": "both", "role": "viewer", "devices": ["paris_1"], "tags": ["site:lyon"]}),
        )
        .await;
    assert_eq!(code, 201, "{body}");
    let both = body["token"].as_str().unwrap().to_string();
    assert_eq!(ids(&server, "/devices", &both).await, ["lyon_2", "paris_1"]);

    // Refused: a tag that is not an identifier, an admin token with tags, an empty tag list, a
    // viewer or operator setting tags, tags of a device that does not exist.
    assert_eq!(
        put_tags(&server, "lyon_2", &server.admin, &["two words"]).await,
        400
    );
    for body in [
        json!({"name": "x1", "role": "admin", "tags": ["site:lyon"]}),
        json!({"name": "x2", "role": "viewer", "tags": []}),
        json!({"name": "x3", "role": "viewer", "tags": ["a/b"]}),
    ] {
        let (code, answer) = server.post_json("/tokens", &server.admin, &body).await;
        assert_eq!(code, 400, "{body}: {answer}");
        assert_eq!(answer["field"], "tags", "{answer}");
    }
    let viewer = server.token("plain-viewer", Role::Viewer).await;
    assert_eq!(put_tags(&server, "lyon_2", &viewer, &["x"]).await, 403);
    assert_eq!(put_tags(&server, "lyon_2", &rotated, &["x"]).await, 403);
    assert_eq!(
        server.get("/devices", t).await.status(),
        401,
        "the rotated-away secret"
    );
    assert_eq!(
        put_tags(&server, "nowhere", &server.admin, &["x"]).await,
        404
    );
    server.stop().await;
}
