//! The throwaway PostgreSQL server starts, hands out separate databases, and survives a restart.

use ems_testkit::pg;

#[tokio::test]
async fn fresh_databases_are_separate_and_answer_queries() {
    let a = pg::fresh_database().await;
    let b = pg::fresh_database().await;
    assert_ne!(a, b);
    let (client, conn) = tokio_postgres::connect(&a, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    client
        .batch_execute("CREATE TABLE t (x int); INSERT INTO t VALUES (41), (1)")
        .await
        .unwrap();
    let row = client
        .query_one("SELECT sum(x)::int FROM t", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, i32>(0), 42);

    let (other, conn) = tokio_postgres::connect(&b, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let err = other
        .query_one("SELECT count(*) FROM t", &[])
        .await
        .unwrap_err();
    let db = err.as_db_error().expect("a server-side error");
    assert!(db.message().contains("does not exist"), "{db:?}");
}

#[tokio::test]
async fn an_owned_server_can_be_stopped_and_restarted_with_its_data() {
    let server = pg::PgServer::start().expect("start postgres");
    let url = server.create_database().await.unwrap();
    {
        let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(conn);
        client
            .batch_execute("CREATE TABLE kept (v text); INSERT INTO kept VALUES ('yes')")
            .await
            .unwrap();
    }
    server.stop();
    assert!(
        tokio_postgres::connect(&url, tokio_postgres::NoTls)
            .await
            .is_err(),
        "server should be down"
    );
    server.restart().unwrap();
    let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let row = client.query_one("SELECT v FROM kept", &[]).await.unwrap();
    assert_eq!(row.get::<_, String>(0), "yes");
}
