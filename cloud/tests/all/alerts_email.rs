//! Alert notifications by email reach an SMTP server: an error flag raised opens an alert and
//! a mail arrives at the in-test SMTP sink; its clearing sends a "resolved" mail.

use crate::alerts_sinks::SmtpSink;
use crate::common;

use common::{TestServer, packet};
use ems_protocol::ErrorFlag;
use ems_protocol::Timestamp;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alert_mail_reaches_the_smtp_server() {
    let url = ems_testkit::pg::fresh_database().await;
    let mut sink = SmtpSink::start().await;
    let figment = common::figment(&url)
        .merge(("alerts.evaluate_interval_ms", 200))
        .merge(("alerts.smtp_url", &sink.url))
        .merge(("alerts.email_from", "ems <alerts@example.com>"))
        .merge(("alerts.email_to", ["ops@example.com", "oncall@example.com"]))
        .merge(("alerts.retry_base_ms", 50));
    let server = TestServer::with(figment, &url, reqwest::Client::new()).await;
    let token = server.add_device("ems_mail").await;
    let (status, body) = server
        .post_json(
            "/alert-rules",
            &server.admin,
            &serde_json::json!({"name": "fault", "kind": "ERROR_FLAG"}),
        )
        .await;
    assert_eq!(status, 201, "{body}");

    let mut device = server.device("ems_mail", &token).await;
    let second = Timestamp::now().unix() - 30;
    let mut p = packet("ems_mail", Timestamp::from_unix(second).unwrap(), 50.0);
    device.send_stored(&[p.clone()]).await;
    p.timestamp = Timestamp::from_unix(second + 1).unwrap();
    p.system_status.error_flags = vec![ErrorFlag::GridFault];
    device.send_stored(&[p.clone()]).await;

    let mail = sink.next().await;
    assert_eq!(mail.from, "<alerts@example.com>");
    assert_eq!(
        mail.to,
        ["<ops@example.com>", "<oncall@example.com>"],
        "{mail:?}"
    );
    assert!(
        mail.data
            .contains("Subject: [ems] ERROR_FLAG opened: fault on ems_mail"),
        "{}",
        mail.data
    );
    assert!(mail.data.contains("GRID_FAULT"), "{}", mail.data);

    p.timestamp = Timestamp::from_unix(second + 2).unwrap();
    p.system_status.error_flags.clear();
    device.send_stored(&[p]).await;
    let mail = sink.next().await;
    assert!(
        mail.data
            .contains("Subject: [ems] ERROR_FLAG resolved: fault on ems_mail"),
        "{}",
        mail.data
    );
}
