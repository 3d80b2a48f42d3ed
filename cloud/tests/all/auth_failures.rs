//! Who may do what: device sockets need their own device's token, the API needs a token with
//! the right role, and every refusal is a JSON error with the right status.

use crate::common;

use common::{Device, TestServer};
use ems_protocol::api::{ApiErrorBody, Role};
use tokio_tungstenite::tungstenite::Error as WsError;

async fn ws_status(server: &TestServer, device: &str, token: &str) -> u16 {
    match Device::connect(&server.ws(&format!("/ws/device/{device}")), token).await {
        Ok(_) => 101,
        Err(WsError::Http(resp)) => {
            let body: ApiErrorBody =
                serde_json::from_slice(resp.body().as_deref().unwrap_or_default()).unwrap();
            assert!(!body.error.is_empty());
            resp.status().as_u16()
        }
        Err(e) => panic!("unexpected {e}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn device_sockets_and_api_refuse_the_wrong_tokens() {
    let server = TestServer::fresh().await;
    let token_a = server.add_device("dev_a").await;
    let token_b = server.add_device("dev_b").await;

    assert_eq!(ws_status(&server, "dev_a", "").await, 401, "no token");
    assert_eq!(
        ws_status(&server, "dev_a", "emsd_nope").await,
        401,
        "unknown token"
    );
    assert_eq!(
        ws_status(&server, "dev_a", &token_b).await,
        403,
        "other device's token"
    );
    assert_eq!(
        ws_status(&server, "dev_x", &token_a).await,
        403,
        "token of a registered device for an unknown id"
    );
    assert_eq!(
        ws_status(&server, "dev_a", &server.admin).await,
        401,
        "API token on the device socket"
    );
    assert_eq!(
        ws_status(&server, "dev_a", &token_a).await,
        101,
        "own token"
    );

    // API: no token, unknown token, device token.
    let resp = server
        .http
        .get(server.api("/devices"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let body: ApiErrorBody = resp.json().await.unwrap();
    assert!(body.error.contains("missing"), "{}", body.error);
    assert_eq!(server.get("/devices", "emsa_nope").await.status(), 401);
    assert_eq!(server.get("/devices", &token_a).await.status(), 401);

    // Roles.
    let viewer = server.token("dashboard", Role::Viewer).await;
    let operator = server.token("ops", Role::Operator).await;
    assert_eq!(server.get("/devices", &viewer).await.status(), 200);
    let cmd = serde_json::json!({"action": "RESET_ERROR", "payload": {}});
    let (status, body) = server
        .post_json("/devices/dev_a/commands", &viewer, &cmd)
        .await;
    assert_eq!(status, 403, "viewer posting a command: {body}");
    assert!(
        body["error"].as_str().unwrap().contains("operator"),
        "{body}"
    );
    let (status, _) = server
        .post_json("/devices/dev_a/commands", &operator, &cmd)
        .await;
    assert_eq!(status, 201, "operator posting a command");
    let (status, _) = server
        .post_json("/devices", &operator, &serde_json::json!({"id": "dev_c"}))
        .await;
    assert_eq!(status, 403, "operator registering a device");
    let (status, _) = server
        .post_json(
            "/tokens",
            &operator,
            &serde_json::json!({"name": "x", "role": "admin"}),
        )
        .await;
    assert_eq!(status, 403, "operator creating a token");

    // Duplicates are conflicts.
    let (status, _) = server
        .post_json(
            "/devices",
            &server.admin,
            &serde_json::json!({"id": "dev_a"}),
        )
        .await;
    assert_eq!(status, 409);
    let (status, body) = server
        .post_json(
            "/devices",
            &server.admin,
            &serde_json::json!({"id": "bad id"}),
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(body["field"], "id");

    // Unknown routes are JSON too.
    let resp = server.get("/nowhere", &viewer).await;
    assert_eq!(resp.status(), 404);
    let _: ApiErrorBody = resp.json().await.unwrap();
    server.stop().await;
}
