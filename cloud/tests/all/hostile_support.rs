//! What the `hostile_…` scenarios share: sending any bytes with any content type, and the one
//! check every hostile answer must pass (a 4xx with a JSON error, the field named when the
//! scenario knows it; never a 500, which would also mean a panic or a leaked database error).

use ems_cloud::testing::TestCloud;
use reqwest::Method;
use serde_json::Value;

/// One answer: its status, its body as JSON (`Null` when not JSON) and as text.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub json: Value,
    pub text: String,
}

/// `method path` with `token` and, when given, `body` sent as `content_type`.
pub async fn send(
    server: &TestCloud,
    method: Method,
    path: &str,
    token: &str,
    body: Option<(&str, Vec<u8>)>,
) -> Answer {
    let mut req = server
        .http
        .request(method.clone(), server.api(path))
        .bearer_auth(token)
        // The server may answer an oversized body before reading it and close the connection;
        // a pooled connection would then fail the next request. One connection per request.
        .header("connection", "close");
    if let Some((content_type, bytes)) = body {
        req = req.header("content-type", content_type).body(bytes);
    }
    let resp = req
        .send()
        .await
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap_or_default();
    Answer {
        status,
        json: serde_json::from_str(&text).unwrap_or(Value::Null),
        text,
    }
}

/// `method path` with a JSON body (any JSON text, valid or not).
pub async fn send_json(
    server: &TestCloud,
    method: Method,
    path: &str,
    token: &str,
    body: impl Into<Vec<u8>>,
) -> Answer {
    send(
        server,
        method,
        path,
        token,
        Some(("application/json", body.into())),
    )
    .await
}

/// The answer is a client error (4xx, `status` when given) with a JSON `error`, naming `field`
/// when given; `what` says which attack it answers.
#[track_caller]
pub fn assert_refused(what: &str, answer: &Answer, status: Option<u16>, field: Option<&str>) {
    assert!(
        (400..500).contains(&answer.status),
        "{what}: expected a 4xx, got {} {}",
        answer.status,
        shorten(&answer.text)
    );
    if let Some(status) = status {
        assert_eq!(answer.status, status, "{what}: {}", shorten(&answer.text));
    }
    assert!(
        answer.json["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{what}: no JSON error in {}",
        shorten(&answer.text)
    );
    if let Some(field) = field {
        assert_eq!(
            answer.json["field"].as_str(),
            Some(field),
            "{what}: {}",
            shorten(&answer.text)
        );
    }
}

/// At most 300 characters of `text`, for failure messages.
pub fn shorten(text: &str) -> String {
    text.chars().take(300).collect()
}
