//! Property tests: every valid message survives serialise → parse unchanged, and arbitrary bytes
//! never make a parser panic.

use ems_protocol::command::MAX_LEASE_S;
use ems_protocol::{
    AnswerStatus, Battery, Command, CommandAnswer, Downstream, ErrorFlag, Grid, Mode, State,
    SystemStatus, TargetMode, Telemetry, TelemetryAck, Timestamp, Upstream, parse_downstream,
    parse_upstream,
};
use proptest::prelude::*;

fn id() -> impl Strategy<Value = String> {
    "[A-Za-z0-9_.:-]{1,64}"
}

fn finite(lo: f64, hi: f64) -> impl Strategy<Value = Option<f64>> {
    prop_oneof![
        1 => Just(None),
        3 => (lo..hi).prop_map(Some),
        1 => (lo as i64..hi as i64).prop_map(|v| Some(v as f64)),
    ]
}

fn timestamp() -> impl Strategy<Value = Timestamp> {
    (0i64..4_102_444_800).prop_map(|s| Timestamp::from_unix(s).unwrap())
}

fn flag() -> impl Strategy<Value = ErrorFlag> {
    prop_oneof![
        proptest::sample::select(ErrorFlag::KNOWN.to_vec()),
        "[A-Z][A-Z0-9_]{0,20}".prop_map(|s| s.parse::<ErrorFlag>().unwrap()),
    ]
}

prop_compose! {
    fn telemetry()(
        device_id in id(),
        timestamp in timestamp(),
        state in proptest::sample::select(State::ALL.to_vec()),
        mode in proptest::sample::select(Mode::ALL.to_vec()),
        flags in proptest::collection::btree_set(flag(), 0..5),
        wifi in proptest::option::of(-120i32..=0),
        bv in finite(0.0, 1000.0), bc in finite(-500.0, 500.0), bp in finite(-1e5, 1e5), soc in finite(0.0, 100.0),
        gv in finite(0.0, 500.0), gp in finite(-1e5, 1e5), gf in finite(0.0, 70.0),
    ) -> Telemetry {
        Telemetry {
            device_id, timestamp,
            system_status: SystemStatus { state, mode, error_flags: flags.into_iter().collect(), wifi_strength: wifi , schedule: None},
            battery: Battery { voltage: bv, current: bc, power: bp, soc },
            grid: Grid { voltage: gv, power: gp, frequency: gf },
            site: None,
        }
    }
}

fn command() -> impl Strategy<Value = Command> {
    let mode = proptest::sample::select(TargetMode::ALL.to_vec());
    prop_oneof![
        (
            id(),
            mode,
            0.0..100_000.0f64,
            proptest::option::of(1u32..=MAX_LEASE_S)
        )
            .prop_map(|(id, m, p, lease)| {
                let power = m.needs_power().then_some(p);
                match lease {
                    Some(d) if m != TargetMode::Auto => {
                        Command::set_mode_with_lease(id, m, power, d)
                    }
                    _ => Command::set_mode(id, m, power),
                }
            }),
        id().prop_map(Command::reset_error),
    ]
}

proptest! {
    #[test]
    fn telemetry_round_trips(packet in telemetry()) {
        let text = packet.to_json();
        let back = Telemetry::parse(&text).unwrap();
        prop_assert_eq!(&back, &packet);
        prop_assert_eq!(parse_upstream(&text).unwrap(), Upstream::Telemetry(packet));
    }

    #[test]
    fn commands_round_trip(cmd in command()) {
        let text = cmd.to_json();
        prop_assert_eq!(&Command::parse(&text).unwrap(), &cmd);
        prop_assert_eq!(parse_downstream(&text).unwrap(), Downstream::Command(cmd));
    }

    #[test]
    fn answers_and_acks_round_trip(
        cid in id(),
        status in proptest::sample::select(AnswerStatus::ALL.to_vec()),
        // A REJECTED answer needs a reason with something in it (not only spaces).
        reason in "[!-~][ -~]{0,39}",
        stamps in proptest::collection::vec(timestamp(), 0..10),
    ) {
        let answer = Upstream::CommandAnswer(CommandAnswer { command_id: cid, status, reason: Some(reason) });
        prop_assert_eq!(parse_upstream(&answer.to_json()).unwrap(), answer);
        let ack = Downstream::TelemetryAck(TelemetryAck { timestamps: stamps });
        prop_assert_eq!(parse_downstream(&ack.to_json()).unwrap(), ack);
    }

    #[test]
    fn arbitrary_text_never_panics(text in any::<String>()) {
        let _ = parse_upstream(&text);
        let _ = parse_downstream(&text);
    }

    #[test]
    fn mutated_valid_json_never_panics(packet in telemetry(), pos in any::<prop::sample::Index>(), byte in any::<u8>()) {
        let mut bytes = packet.to_json().into_bytes();
        let i = pos.index(bytes.len());
        bytes[i] = byte;
        if let Ok(text) = std::str::from_utf8(&bytes) {
            let _ = parse_upstream(text);
        }
    }
}
