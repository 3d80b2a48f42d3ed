//! ems-cloud serves the built dashboard at `/` without shadowing the API, answers a 503 page
//! that says how to build it when `dashboard_dir` holds no build, and tells a token its role at
//! `GET /api/v1/whoami` (the dashboard hides the command panel from viewers).

use crate::common;

use common::TestServer;
use ems_cloud::api::dashboard::WhoAmI;
use ems_protocol::api::Role;

async fn server_with_dashboard_dir(dir: &std::path::Path) -> TestServer {
    let db_url = ems_testkit::pg::fresh_database().await;
    let figment = common::figment(&db_url).merge(("dashboard_dir", dir));
    TestServer::with(figment, &db_url, reqwest::Client::new()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn built_dashboard_is_served_at_the_root_and_the_api_still_answers() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("assets")).unwrap();
    std::fs::write(
        dir.path().join("index.html"),
        "<!doctype html><div id=app></div>",
    )
    .unwrap();
    std::fs::write(dir.path().join("assets/app.js"), "console.log(1)").unwrap();
    // A file where an API route lives must not shadow it.
    std::fs::create_dir_all(dir.path().join("api/v1")).unwrap();
    std::fs::write(dir.path().join("api/v1/health"), "shadow").unwrap();
    let server = server_with_dashboard_dir(dir.path()).await;
    let base = server.running().http_url();

    let index = server.http.get(format!("{base}/")).send().await.unwrap();
    assert_eq!(index.status(), 200);
    assert!(
        index.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    assert!(index.text().await.unwrap().contains("id=app"));

    let js = server
        .http
        .get(format!("{base}/assets/app.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(js.status(), 200);
    assert!(
        js.headers()["content-type"]
            .to_str()
            .unwrap()
            .contains("javascript")
    );

    let health = server.get("/health", "").await;
    assert_eq!(health.status(), 200);
    assert!(health.text().await.unwrap().contains("\"database\""));
    let missing = server.get("/no-such-route", &server.admin).await;
    assert_eq!(missing.status(), 404);
    assert!(missing.text().await.unwrap().contains("\"error\""));

    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_dashboard_answers_503_with_build_instructions() {
    let dir = tempfile::tempdir().unwrap();
    let server = server_with_dashboard_dir(&dir.path().join("dist")).await;

    let root = server
        .http
        .get(server.running().http_url())
        .send()
        .await
        .unwrap();
    assert_eq!(root.status(), 503);
    let page = root.text().await.unwrap();
    assert!(page.contains("not built"), "{page}");
    assert!(page.contains("npm run build"), "{page}");

    let health = server.get("/health", "").await;
    assert_eq!(health.status(), 200, "the API works without the dashboard");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whoami_tells_a_token_its_name_and_role() {
    let dir = tempfile::tempdir().unwrap();
    let server = server_with_dashboard_dir(dir.path()).await;
    let viewer = server.token("wall-screen", Role::Viewer).await;
    let operator = server.token("night-shift", Role::Operator).await;

    for (token, name, role) in [
        (&viewer, "wall-screen", Role::Viewer),
        (&operator, "night-shift", Role::Operator),
    ] {
        let resp = server.get("/whoami", token).await;
        assert_eq!(resp.status(), 200);
        let me: WhoAmI = resp.json().await.unwrap();
        assert_eq!(
            me,
            WhoAmI {
                name: name.into(),
                role
            }
        );
    }
    assert_eq!(server.get("/whoami", "emsa_unknown").await.status(), 401);
    server.stop().await;
}
