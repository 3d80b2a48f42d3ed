//! ems-cloud to PostgreSQL over TLS, as `database_url`'s `sslmode` and `sslrootcert` ask, against
//! a real server with `ssl = on`: every connection of the cloud is encrypted and the data flows;
//! without `sslmode` a Unix socket (the packaged default) connects as before;
//! a server whose certificate no trusted root vouches for is refused at once, naming TLS; a
//! certificate for another host name passes `verify-ca` and fails `verify-full`.

use std::time::{Duration, Instant};

use ems_cloud::config::CloudConfig;
use ems_cloud::db::Db;
use ems_testkit::pg::{Backend, PgServer};
use ems_testkit::tls::SelfSigned;

use crate::common::{TestServer, packet, recent_seconds};

/// `url` (which ends in `?sslmode=disable`) asking for `mode` with `root` as the trusted root.
fn with_tls(url: &str, mode: &str, root: &std::path::Path) -> String {
    let base = url.split_once('?').map_or(url, |(b, _)| b);
    format!("{base}?sslmode={mode}&sslrootcert={}", root.display())
}

async fn open(url: &str) -> Result<Db, String> {
    let config = CloudConfig {
        database_url: url.to_string(),
        database_pool_size: 2,
        database_wait_s: 20,
        ..CloudConfig::default()
    };
    Db::open(&config).await.map_err(|e| e.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cloud_talks_to_postgresql_over_verified_tls_only() {
    let dir = tempfile::tempdir().unwrap();
    let cert = SelfSigned::for_localhost(dir.path()).unwrap();
    let backend = Backend::default_for_tests();
    let pg = tokio::task::spawn_blocking({
        let (c, k) = (cert.cert_path.clone(), cert.key_path.clone());
        move || PgServer::start_with_tls(backend, &c, &k)
    })
    .await
    .unwrap()
    .expect("PostgreSQL with ssl = on starts");
    let plain_url = pg.create_database().await.unwrap();
    let tls_url = with_tls(&plain_url, "verify-full", &cert.cert_path);

    // TLS off over a Unix socket (the packaged default, peer authentication) still connects:
    // the TLS connector, prepared for every host, accepts a socket directory as its host.
    let dbname = plain_url
        .rsplit('/')
        .next()
        .unwrap()
        .split('?')
        .next()
        .unwrap();
    let unix_url = format!(
        "postgresql:///{dbname}?host={}&port={}&user=postgres",
        pg.socket_dir().display(),
        pg.port()
    );
    open(&unix_url)
        .await
        .unwrap_or_else(|e| panic!("{unix_url}: {e}"));

    // The whole server on TLS: a device's packets are stored and acknowledged.
    let server = TestServer::on(&tls_url).await;
    let token = server.add_device("ems_tls_db").await;
    let mut device = server.device("ems_tls_db", &token).await;
    let seconds = recent_seconds(5);
    for t in &seconds {
        device.send(&packet("ems_tls_db", *t, 50.0)).await;
    }
    device.await_acks(&seconds).await;

    // Seen from the server's side: every connection of this database other than ours is TLS.
    let admin = ems_cloud::db::connect(&plain_url).await.unwrap();
    let row = admin
        .query_one(
            "SELECT count(*), count(*) FILTER (WHERE s.ssl) FROM pg_stat_activity a \
             JOIN pg_stat_ssl s USING (pid) \
             WHERE a.datname = current_database() AND a.pid <> pg_backend_pid() \
               AND a.backend_type = 'client backend'",
            &[],
        )
        .await
        .unwrap();
    let (all, tls): (i64, i64) = (row.get(0), row.get(1));
    assert!(
        all >= 2,
        "the pool and the notice listener are connected: {all}"
    );
    assert_eq!(tls, all, "{} of {all} connections are plain", all - tls);
    let stored: i64 = admin
        .query_one(
            "SELECT count(*) FROM telemetry WHERE device_id = 'ems_tls_db'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(stored, 5);
    drop(device);
    server.stop().await;

    // A root that did not sign the server's certificate: refused at once (no waiting out
    // database_wait_s as for an unreachable server), and the message says why.
    let other_dir = tempfile::tempdir().unwrap();
    let other = SelfSigned::for_localhost(other_dir.path()).unwrap();
    let started = Instant::now();
    let err = open(&with_tls(&plain_url, "verify-full", &other.cert_path))
        .await
        .err()
        .expect("an untrusted certificate is refused");
    assert!(err.contains("TLS"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(10), "{err}");

    // The certificate names 127.0.0.1; reached as `localhost`, only verify-ca accepts it.
    let by_name = plain_url.replace("127.0.0.1", "localhost");
    let err = open(&with_tls(&by_name, "verify-full", &cert.cert_path))
        .await
        .err()
        .expect("a certificate for another name fails verify-full");
    assert!(err.contains("TLS"), "{err}");
    open(&with_tls(&by_name, "verify-ca", &cert.cert_path))
        .await
        .expect("verify-ca checks the chain, not the name");
}
