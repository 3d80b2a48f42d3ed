//! The web dashboard: its built assets served at `/`, and `GET /api/v1/whoami`, which the
//! dashboard asks to learn the signed-in token's role (viewers get no command panel).
//!
//! The assets are built from the repository's `dashboard/` folder (`npm ci && npm run build`) and
//! read from the directory in the config key `dashboard_dir`. The key is read here rather than in
//! [`CloudConfig`](crate::config::CloudConfig) because only this stage uses it. When the directory
//! has no `index.html`, `/` answers a 503 page that says how to build it, a warning is logged at
//! start, and the API works as usual: the dashboard is optional.

use std::path::{Path, PathBuf};

use ems_protocol::api::Role;
use rocket::fairing::AdHoc;
use rocket::fs::FileServer;
use rocket::http::{ContentType, Status};
use rocket::serde::json::Json;
use rocket::{Route, get, routes};
use serde::{Deserialize, Serialize};

use crate::auth::Viewer;

/// Where the assets are looked for when `dashboard_dir` is not set: the build output of the
/// repository's `dashboard/`, relative to the working directory (`ems-cloud` started from the
/// checkout). Packages set `/usr/share/ems-cloud/dashboard`.
pub const DEFAULT_DASHBOARD_DIR: &str = "dashboard/dist";

/// FileServer's rank: after every API and socket route (Rocket's default ranks are negative), so
/// a file can never shadow them.
const ASSET_RANK: isize = 20;

#[derive(Debug, Deserialize)]
struct DashboardConfig {
    #[serde(default = "default_dir")]
    dashboard_dir: PathBuf,
}

fn default_dir() -> PathBuf {
    PathBuf::from(DEFAULT_DASHBOARD_DIR)
}

/// Whether `dir` holds a built dashboard.
fn is_built(dir: &Path) -> bool {
    dir.join("index.html").is_file()
}

/// Mounts the assets of `dashboard_dir` at `/`, or the "not built" page when they are missing.
pub fn stage() -> AdHoc {
    AdHoc::on_ignite("dashboard", |rocket| async move {
        let dir = match rocket.figment().extract::<DashboardConfig>() {
            Ok(c) => c.dashboard_dir,
            Err(e) => {
                tracing::error!("dashboard_dir: {e}; `/` answers 503");
                return rocket.mount("/", routes![not_built]);
            }
        };
        if is_built(&dir) {
            tracing::info!("dashboard served from {}", dir.display());
            rocket.mount("/", FileServer::from(dir).rank(ASSET_RANK))
        } else {
            tracing::warn!(
                "dashboard not built: no index.html in {} (dashboard_dir); `/` answers 503. \
                 Build it with `npm ci && npm run build` in dashboard/, or set dashboard_dir",
                dir.display()
            );
            rocket.mount("/", routes![not_built])
        }
    })
}

/// The page at `/` when the assets are missing.
const NOT_BUILT_PAGE: &str = r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>ems: dashboard not built</title></head>
<body style="font-family: sans-serif; max-width: 40em; margin: 3em auto">
<h1>The ems dashboard is not built</h1>
<p>This ems-cloud server found no <code>index.html</code> in its <code>dashboard_dir</code>
(default <code>dashboard/dist</code>, relative to the working directory; packages use
<code>/usr/share/ems-cloud/dashboard</code>).</p>
<p>Build it in the repository's <code>dashboard/</code> folder:</p>
<pre>cd dashboard
npm ci &amp;&amp; npm run build</pre>
<p>then start ems-cloud from the repository root, or set <code>dashboard_dir</code>
(<code>EMS_CLOUD_DASHBOARD_DIR=/path/to/dist</code>) to the built folder.</p>
<p>The REST API under <code>/api/v1</code> and the live feed work without it.</p>
</body></html>
"#;

#[get("/")]
fn not_built() -> (Status, (ContentType, &'static str)) {
    (
        Status::ServiceUnavailable,
        (ContentType::HTML, NOT_BUILT_PAGE),
    )
}

/// `GET /api/v1/whoami`: the token's name and role.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WhoAmI {
    /// The token's name (recorded as `issued_by` of its commands).
    pub name: String,
    pub role: Role,
}

#[get("/whoami")]
fn whoami(user: Viewer) -> Json<WhoAmI> {
    Json(WhoAmI {
        name: user.0.name,
        role: user.0.role,
    })
}

/// Mounted under `/api/v1`.
pub fn routes() -> Vec<Route> {
    routes![whoami]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dashboard_dir_defaults_to_the_build_output() {
        let c: DashboardConfig = rocket::figment::Figment::new().extract().unwrap();
        assert_eq!(c.dashboard_dir, PathBuf::from("dashboard/dist"));
    }

    #[test]
    fn a_directory_without_index_is_not_built() {
        let dir = tempfile::tempdir().unwrap();
        assert!(!is_built(dir.path()));
        std::fs::write(dir.path().join("index.html"), "<html></html>").unwrap();
        assert!(is_built(dir.path()));
    }
}
