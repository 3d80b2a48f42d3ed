//! One test per rule of the uplink state; time is passed in, so no test waits.

use std::time::Duration;

use ems_protocol::{AnswerStatus, CommandAnswer, ErrorCode, parse_downstream};
use tokio::time::Instant;

use super::*;
use crate::uplink::UplinkOptions;
use crate::uplink::connect::empty_tls_config;

const MS: Duration = Duration::from_millis(1);

fn opts(window: usize, batch: usize) -> UplinkOptions {
    let mut o = UplinkOptions::new(None, "dev".into(), String::new(), empty_tls_config());
    o.window = window;
    o.batch = batch;
    o.resend_after = Duration::from_secs(30);
    o.ping_every = Duration::from_secs(10);
    o
}

fn answer(id: &str) -> CommandAnswer {
    CommandAnswer {
        command_id: id.into(),
        status: AnswerStatus::Accepted,
        reason: None,
    }
}

#[test]
fn a_new_session_reads_the_backlog_from_the_oldest_packet_one_batch_at_a_time() {
    let t0 = Instant::now();
    let mut s = Session::new(&opts(1000, 100), t0);
    assert_eq!(
        s.batch_due(t0),
        BatchAction::Read {
            after: i64::MIN,
            limit: 100
        }
    );
}

#[test]
fn a_batch_asks_for_no_more_than_the_room_left_in_the_window() {
    let t0 = Instant::now();
    let mut s = Session::new(&opts(5, 100), t0);
    s.live_sent(1, t0);
    s.live_sent(2, t0);
    s.live_sent(3, t0);
    assert_eq!(
        s.batch_due(t0),
        BatchAction::Read {
            after: i64::MIN,
            limit: 2
        }
    );
}

#[test]
fn a_full_window_holds_the_backlog_back_until_acknowledgements_make_room() {
    let t0 = Instant::now();
    let mut s = Session::new(&opts(2, 100), t0);
    assert!(s.backlog_packet(10, t0));
    assert!(s.backlog_packet(11, t0));
    assert_eq!(s.batch_due(t0 + MS), BatchAction::Wait);
    s.acked([10]);
    assert_eq!(
        s.batch_due(t0 + MS),
        BatchAction::Read {
            after: 11,
            limit: 1
        }
    );
}

#[test]
fn live_packets_are_sent_whatever_the_window() {
    let t0 = Instant::now();
    let mut s = Session::new(&opts(1, 100), t0);
    s.live_sent(1, t0);
    s.live_sent(2, t0);
    s.live_sent(3, t0);
    assert_eq!(s.in_flight.len(), 3);
    assert_eq!(s.batch_due(t0), BatchAction::Wait);
}

#[test]
fn acknowledgements_of_unknown_packets_change_nothing() {
    let t0 = Instant::now();
    let mut s = Session::new(&opts(10, 100), t0);
    s.live_sent(5, t0);
    s.acked([4, 6]);
    assert_eq!(s.in_flight.keys().copied().collect::<Vec<_>>(), [5]);
}

#[test]
fn the_backlog_cursor_moves_past_every_packet_read() {
    let t0 = Instant::now();
    let mut s = Session::new(&opts(1000, 2), t0);
    assert!(s.backlog_packet(100, t0));
    assert!(s.backlog_packet(101, t0));
    // Acknowledged or not, what was read is not read again on this socket.
    s.acked([100, 101]);
    assert_eq!(
        s.batch_due(t0 + MS),
        BatchAction::Read {
            after: 101,
            limit: 2
        }
    );
}

#[test]
fn a_backlog_packet_already_sent_live_is_skipped_but_passed_by_the_cursor() {
    let t0 = Instant::now();
    let mut s = Session::new(&opts(1000, 100), t0);
    s.live_sent(200, t0);
    assert!(s.backlog_packet(199, t0));
    assert!(!s.backlog_packet(200, t0));
    assert_eq!(s.in_flight.len(), 2);
    assert_eq!(
        s.batch_due(t0),
        BatchAction::Read {
            after: 200,
            limit: 100
        }
    );
}

#[test]
fn a_packet_unacknowledged_for_longer_than_resend_after_restarts_the_backlog() {
    let t0 = Instant::now();
    let mut s = Session::new(&opts(3, 100), t0);
    assert!(s.backlog_packet(1, t0));
    assert!(s.backlog_packet(2, t0 + Duration::from_secs(5)));
    s.live_sent(3, t0 + Duration::from_secs(6));
    // Exactly `resend_after` is not yet too long.
    assert_eq!(s.batch_due(t0 + Duration::from_secs(30)), BatchAction::Wait);
    // Past it the window empties and everything still queued goes again, oldest first.
    assert_eq!(
        s.batch_due(t0 + Duration::from_secs(30) + MS),
        BatchAction::Read {
            after: i64::MIN,
            limit: 3
        }
    );
    assert!(s.in_flight.is_empty());
    assert!(s.backlog_packet(1, t0 + Duration::from_secs(31)));
}

#[test]
fn packets_acknowledged_in_time_are_not_resent() {
    let t0 = Instant::now();
    let mut s = Session::new(&opts(10, 100), t0);
    assert!(s.backlog_packet(1, t0));
    s.acked([1]);
    assert_eq!(
        s.batch_due(t0 + Duration::from_secs(60)),
        BatchAction::Read {
            after: 1,
            limit: 10
        }
    );
}

#[test]
fn a_new_command_is_executed() {
    let mut s = Session::new(&opts(10, 10), Instant::now());
    assert_eq!(s.command("cmd_1", None), Dispatch::Execute);
}

#[test]
fn a_command_repeated_while_it_runs_is_ignored() {
    let mut s = Session::new(&opts(10, 10), Instant::now());
    assert_eq!(s.command("cmd_1", None), Dispatch::Execute);
    assert_eq!(s.command("cmd_1", None), Dispatch::Ignore);
    assert_eq!(s.command("cmd_2", None), Dispatch::Execute);
}

#[test]
fn a_command_answered_before_gets_the_stored_answer_again() {
    let mut s = Session::new(&opts(10, 10), Instant::now());
    // Answered in an earlier session or before a restart: nothing pending here.
    assert_eq!(
        s.command("cmd_1", Some(answer("cmd_1"))),
        Dispatch::Repeat(answer("cmd_1"))
    );
    // A stored answer wins over a pending run too.
    assert_eq!(s.command("cmd_2", None), Dispatch::Execute);
    assert_eq!(
        s.command("cmd_2", Some(answer("cmd_2"))),
        Dispatch::Repeat(answer("cmd_2"))
    );
}

#[test]
fn an_answered_command_is_no_longer_pending() {
    let mut s = Session::new(&opts(10, 10), Instant::now());
    assert_eq!(s.command("cmd_1", None), Dispatch::Execute);
    s.answered("cmd_1");
    assert!(s.pending_commands.is_empty());
    // Normally the answer is stored and repeated from there; if storing it failed, the command
    // runs again (the loop keeps its own record of answers and gives the first one).
    assert_eq!(s.command("cmd_1", None), Dispatch::Execute);
}

#[test]
fn the_link_is_pinged_while_the_cloud_was_heard_within_four_ping_periods() {
    let t0 = Instant::now();
    let s = Session::new(&opts(10, 10), t0);
    assert_eq!(s.ping_due(t0 + Duration::from_secs(10)), PingAction::Ping);
    assert_eq!(s.ping_due(t0 + Duration::from_secs(40)), PingAction::Ping);
}

#[test]
fn a_link_silent_for_more_than_four_ping_periods_is_closed() {
    let t0 = Instant::now();
    let s = Session::new(&opts(10, 10), t0);
    match s.ping_due(t0 + Duration::from_secs(40) + MS) {
        PingAction::Close(why) => assert!(why.starts_with("no sign of life for 40.001s"), "{why}"),
        other => panic!("expected Close, got {other:?}"),
    }
}

#[test]
fn any_frame_from_the_cloud_counts_as_a_sign_of_life() {
    let t0 = Instant::now();
    let mut s = Session::new(&opts(10, 10), t0);
    s.heard(t0 + Duration::from_secs(25));
    assert_eq!(s.ping_due(t0 + Duration::from_secs(65)), PingAction::Ping);
    assert!(matches!(
        s.ping_due(t0 + Duration::from_secs(66)),
        PingAction::Close(_)
    ));
}

#[test]
fn backoff_doubles_from_one_second_up_to_the_cap() {
    let mut b = Backoff::new(Duration::from_secs(10));
    let waits: Vec<u64> = (0..6).map(|_| b.wait(0.5).as_secs()).collect();
    assert_eq!(waits, [1, 2, 4, 8, 10, 10]);
}

#[test]
fn backoff_jitter_is_within_a_quarter_either_way() {
    let mut b = Backoff::new(Duration::from_secs(60));
    assert_eq!(b.wait(0.0), Duration::from_millis(750));
    assert_eq!(b.current(), Duration::from_secs(2));
    let high = b.wait(0.999_999);
    assert!(
        high < Duration::from_millis(2500) && high > Duration::from_millis(2499),
        "{high:?}"
    );
}

#[test]
fn backoff_starts_again_from_one_second_after_a_connection() {
    let mut b = Backoff::new(Duration::from_secs(60));
    b.wait(0.5);
    b.wait(0.5);
    assert_eq!(b.current(), Duration::from_secs(4));
    b.reset();
    assert_eq!(b.current(), Duration::from_secs(1));
}

#[test]
fn a_malformed_frame_is_refused_with_its_command_id() {
    let text = r#"{"command_id":"cmd_7","action":"EXPLODE"}"#;
    let err = parse_downstream(text).unwrap_err();
    let reply = refusal(text, &err);
    assert_eq!(reply.code, ErrorCode::BadFrame);
    assert_eq!(reply.command_id.as_deref(), Some("cmd_7"));
    assert_eq!(reply.message, err.to_string());
}

#[test]
fn a_refusal_names_no_command_when_the_frame_has_none() {
    for text in ["not json", r#"{"command_id":7}"#, r#"{"type":"NOPE"}"#] {
        let err = parse_downstream(text).unwrap_err();
        assert_eq!(refusal(text, &err).command_id, None, "{text}");
    }
}
