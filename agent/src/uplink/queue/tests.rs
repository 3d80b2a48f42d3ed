//! Durability, eviction, quarantine, recovery and the report of the queue.

use std::path::Path;

use super::*;
use ems_protocol::{AnswerStatus, Battery, Grid, Mode, State, SystemStatus};

fn packet(ts: i64) -> Telemetry {
    Telemetry {
        device_id: "q".into(),
        timestamp: Timestamp::from_unix(ts).unwrap(),
        system_status: SystemStatus {
            state: State::Idle,
            mode: Mode::Auto,
            error_flags: vec![],
            wifi_strength: None,
            schedule: None,
        },
        battery: Battery {
            voltage: Some(52.0),
            current: Some(0.0),
            power: Some(0.0),
            soc: Some(50.0),
        },
        grid: Grid {
            voltage: Some(230.0),
            power: Some(10.0),
            frequency: Some(50.0),
        },
        site: None,
    }
}

#[test]
fn packets_survive_reopening_and_leave_only_when_acked() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("q.sqlite");
    {
        let mut q = Queue::open(&path, Budget::default()).unwrap();
        for ts in 1000..1010 {
            q.push(&packet(ts)).unwrap();
        }
        // The same second again (the clock stepped back): the newer packet is queued, the
        // older one kept in the quarantine.
        q.push(&packet(1005)).unwrap();
        assert_eq!(q.len(), 10);
        assert_eq!(q.quarantined().unwrap(), vec![1005]);
    }
    let mut q = Queue::open(&path, Budget::default()).unwrap();
    assert_eq!(q.len(), 10);
    let acked = q
        .ack(&[
            Timestamp::from_unix(1000).unwrap(),
            Timestamp::from_unix(1003).unwrap(),
        ])
        .unwrap();
    assert_eq!(acked, 2);
    let rest: Vec<i64> = q
        .oldest_after(i64::MIN, 100)
        .unwrap()
        .into_iter()
        .map(|r| r.0)
        .collect();
    assert_eq!(rest, vec![1001, 1002, 1004, 1005, 1006, 1007, 1008, 1009]);
    assert_eq!(q.oldest_after(1006, 2).unwrap().len(), 2);
}

#[test]
fn budget_evicts_first_queued_first_and_counts() {
    let dir = tempfile::tempdir().unwrap();
    let mut q = Queue::open(
        &dir.path().join("q.sqlite"),
        Budget {
            max_packets: 5,
            max_age_s: 100,
        },
    )
    .unwrap();
    for ts in 0..8 {
        q.push_at(&packet(1000 + ts), 1000 + ts).unwrap();
    }
    assert_eq!(q.len(), 5);
    assert_eq!(q.evicted_total().unwrap(), 3);
    assert_eq!(q.oldest_after(i64::MIN, 1).unwrap()[0].0, 1003);
    // Age: 200 s of queue time later, everything queued more than 100 s before goes.
    q.push_at(&packet(1300), 1300).unwrap();
    assert_eq!(q.len(), 1);
    assert_eq!(q.evicted_total().unwrap(), 8);
}

#[test]
fn a_packet_stamped_far_ahead_evicts_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut q = Queue::open(&dir.path().join("q.sqlite"), Budget::default()).unwrap();
    for ts in 1000..1010 {
        q.push(&packet(ts)).unwrap();
    }
    // The wall clock jumps 30 days ahead for one packet, then back.
    q.push(&packet(1010 + 30 * 86_400)).unwrap();
    q.push(&packet(1011)).unwrap();
    assert_eq!(q.len(), 12);
    assert_eq!(q.evicted_total().unwrap(), 0);
    // Over the packet cap, the first queued go first, not the lowest timestamps.
    let mut q2 = Queue::open(
        &dir.path().join("q2.sqlite"),
        Budget {
            max_packets: 2,
            max_age_s: 100,
        },
    )
    .unwrap();
    for ts in [5000, 100, 200] {
        q2.push(&packet(ts)).unwrap();
    }
    let left: Vec<i64> = q2
        .oldest_after(i64::MIN, 10)
        .unwrap()
        .into_iter()
        .map(|r| r.0)
        .collect();
    assert_eq!(left, vec![100, 200]);
}

#[test]
fn a_queue_from_before_insertion_order_is_migrated() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("q.sqlite");
    {
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(
            "CREATE TABLE telemetry (ts INTEGER PRIMARY KEY, body TEXT NOT NULL);
             INSERT INTO telemetry VALUES (1000, '{}'), (1001, '{}');",
        )
        .unwrap();
    }
    let mut q = Queue::open(&path, Budget::default()).unwrap();
    assert_eq!(q.len(), 2);
    q.push(&packet(1002)).unwrap();
    assert_eq!(q.len(), 3);
    assert_eq!(q.evicted_total().unwrap(), 0);
}

#[test]
fn refused_packets_move_to_the_quarantine_and_are_counted() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("q.sqlite");
    let stamp = |ts| Timestamp::from_unix(ts).unwrap();
    {
        let mut q = Queue::open(&path, Budget::default()).unwrap();
        for ts in 1000..1005 {
            q.push(&packet(ts)).unwrap();
        }
        // 1009 was never queued (or already gone): not counted.
        let moved = q
            .quarantine(
                &[stamp(1001), stamp(1003), stamp(1009)],
                "BAD_FRAME",
                "future",
                5,
            )
            .unwrap();
        assert_eq!(moved, 2);
        assert_eq!(q.len(), 3);
    }
    let q = Queue::open(&path, Budget::default()).unwrap();
    assert_eq!(q.len(), 3);
    let rest: Vec<i64> = q
        .oldest_after(i64::MIN, 10)
        .unwrap()
        .into_iter()
        .map(|r| r.0)
        .collect();
    assert_eq!(rest, vec![1000, 1002, 1004]);
    assert_eq!(q.quarantined().unwrap(), vec![1001, 1003]);
    assert_eq!(q.quarantined_total().unwrap(), 2);
}

#[test]
fn a_garbage_file_is_moved_aside_and_a_new_queue_started() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("q.sqlite");
    std::fs::write(&path, b"this is not a database, it is garbage".repeat(200)).unwrap();
    let (mut q, opened) = Queue::open_or_recover(&path, Budget::default());
    let Opened::MovedAside { kept, .. } = opened else {
        panic!("{opened:?}")
    };
    assert!(
        std::fs::read(&kept)
            .unwrap()
            .starts_with(b"this is not a database")
    );
    assert!(!q.is_in_memory());
    q.push(&packet(1000)).unwrap();
    drop(q);
    assert_eq!(Queue::open(&path, Budget::default()).unwrap().len(), 1);
}

#[test]
fn no_usable_directory_means_a_queue_in_memory() {
    let (mut q, opened) =
        Queue::open_or_recover(Path::new("/dev/null/ems/q.sqlite"), Budget::default());
    assert!(matches!(opened, Opened::InMemory { .. }), "{opened:?}");
    assert!(q.is_in_memory());
    q.push(&packet(1000)).unwrap();
    q.push(&packet(1001)).unwrap();
    assert_eq!(q.len(), 2);
    assert_eq!(q.ack(&[Timestamp::from_unix(1000).unwrap()]).unwrap(), 1);
}

#[test]
fn degrading_to_memory_leaves_the_queued_packets_in_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("q.sqlite");
    let mut q = Queue::open(&path, Budget::default()).unwrap();
    for ts in 1000..1010 {
        q.push(&packet(ts)).unwrap();
    }
    q.degrade_to_memory(&QueueError::Sqlite {
        path: "q".into(),
        source: rusqlite::Error::InvalidQuery,
    });
    assert!(q.is_in_memory());
    assert_eq!(q.budget.max_packets, IN_MEMORY_MAX_PACKETS);
    q.push(&packet(1010)).unwrap();
    assert_eq!(q.len(), 1);
    drop(q);
    assert_eq!(Queue::open(&path, Budget::default()).unwrap().len(), 10);
}

#[test]
fn the_report_counts_queued_and_quarantined_packets() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("q.sqlite");
    let mut q = Queue::open(&path, Budget::default()).unwrap();
    for ts in 1000..1004 {
        q.push(&packet(ts)).unwrap();
    }
    q.quarantine(
        &[Timestamp::from_unix(1001).unwrap()],
        "BAD_FRAME",
        "600 s in the future",
        7,
    )
    .unwrap();
    let r = report(&path, 5).unwrap();
    assert_eq!(r.queued, 3);
    assert_eq!(r.queued_span, Some((1000, 1003)));
    assert_eq!((r.quarantined_total, r.quarantined_kept), (1, 1));
    assert_eq!(
        r.latest_quarantined,
        vec![(
            1001,
            "BAD_FRAME".to_string(),
            "600 s in the future".to_string()
        )]
    );
}

#[test]
fn answers_are_remembered() {
    let dir = tempfile::tempdir().unwrap();
    let mut q = Queue::open(&dir.path().join("q.sqlite"), Budget::default()).unwrap();
    let a = CommandAnswer {
        command_id: "c1".into(),
        status: AnswerStatus::Rejected,
        reason: Some("no".into()),
    };
    q.store_answer(&a, 1000).unwrap();
    assert_eq!(q.answer("c1").unwrap(), Some(a));
    assert_eq!(q.answer("c2").unwrap(), None);
}

#[test]
fn oldest_age_is_read_on_the_queue_clock() {
    let dir = tempfile::tempdir().unwrap();
    let (mut q, _) = Queue::open_or_recover(&dir.path().join("q.sqlite"), Budget::default());
    assert_eq!(q.oldest_age_s().unwrap(), None);
    let now = q.queue_now();
    q.push_at(&packet(1000), now - 30).unwrap();
    q.push_at(&packet(1001), now - 10).unwrap();
    assert_eq!(q.oldest_age_s().unwrap(), Some(30));
}
