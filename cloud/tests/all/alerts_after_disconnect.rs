//! A device that sends a low SoC and goes away before its packet is stored (a flaky link, a
//! reboot) still raises its alert: the evaluator sees every packet this instance stores, not
//! only those of devices still connected when it gets to them.

use crate::common;

use std::time::Duration;

use common::{DEADLINE, TestServer, count_rows, packet};
use ems_protocol::Timestamp;
use ems_protocol::api::AlertRecord;
use futures_util::SinkExt;
use tokio_tungstenite::tungstenite::Message;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_packet_stored_after_its_device_left_is_still_evaluated() {
    let server = TestServer::fresh().await;
    let token = server.add_device("ems_gone").await;
    let rule = serde_json::json!({"name": "low", "kind": "SOC_BELOW", "threshold": 20.0});
    let (status, body) = server.post_json("/alert-rules", &server.admin, &rule).await;
    assert_eq!(status, 201, "{body}");

    // Sent, and the socket closed at once: no waiting for the ack.
    let mut device = server.device("ems_gone", &token).await;
    let second = Timestamp::from_unix(Timestamp::now().unix() - 5).unwrap();
    let frame = packet("ems_gone", second, 8.0).to_json();
    device.ws.send(Message::Text(frame)).await.unwrap();
    device.ws.close(None).await.unwrap();
    drop(device);

    ems_testkit::wait::until(
        "the packet stored",
        DEADLINE,
        Duration::from_millis(20),
        || {
            let url = server.db_url.clone();
            async move {
                (count_rows(
                    &url,
                    "SELECT count(*) FROM telemetry WHERE device_id = 'ems_gone'",
                )
                .await
                    == 1)
                    .then_some(())
            }
        },
    )
    .await;
    let open: Vec<AlertRecord> = ems_testkit::wait::until(
        "the alert of the departed device",
        DEADLINE,
        Duration::from_millis(20),
        || async {
            let open: Vec<AlertRecord> = server.get_json("/alerts?state=open").await;
            (!open.is_empty()).then_some(open)
        },
    )
    .await;
    assert_eq!(open.len(), 1);
    assert_eq!(open[0].device_id, "ems_gone");
    server.stop().await;
}
