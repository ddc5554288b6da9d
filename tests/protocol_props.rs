//! Property tests of the socket: random interleavings of server frames (valid-looking with
//! random refs/topics/events/statuses, answers to what we sent, garbage, random binary),
//! transport events, app commands and time jumps. They never panic and keep the invariants:
//! every push gets exactly one reply (after driving to quiescence), at most one live channel
//! per topic, channel states consistent with the events, outputs only on an open transport,
//! no wake-up in the past.
//!
//! The ops, the driver and its invariants live in `support/socket_model.rs`, shared with the
//! `socket` fuzz target and its corpus replay (`tests/fuzz_corpus.rs`).
#![allow(clippy::unwrap_used)]

#[path = "support/socket_model.rs"]
mod socket_model;
#[path = "support/protocol.rs"]
mod support;

use proptest::prelude::*;
use socket_model::*;

fn ref_pick() -> impl Strategy<Value = RefPick> {
    prop_oneof![
        2 => Just(RefPick::Null),
        4 => any::<u8>().prop_map(RefPick::Sent),
        3 => any::<u8>().prop_map(RefPick::Join),
        1 => (0i64..5).prop_map(RefPick::Int),
        1 => prop_oneof![Just("hb".to_owned()), Just("01".to_owned()), "[0-9]{1,3}"].prop_map(RefPick::Str),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => Just(Op::Open),
        1 => (0u8..4).prop_map(Op::Close),
        4 => (0u8..4, any::<bool>()).prop_map(|(topic, presence)| Op::Join { topic, presence }),
        7 => (any::<u8>(), 0u8..5).prop_map(|(chan, kind)| Op::Push { chan, kind }),
        1 => any::<u8>().prop_map(|chan| Op::Leave { chan }),
        1 => Just(Op::Disconnect),
        2 => Just(Op::Connect),
        4 => prop_oneof![0u32..50, 0u32..3_000, 5_000u32..40_000].prop_map(Op::Advance),
        3 => Just(Op::Wake),
        8 => (any::<u8>(), 0u8..3, 0u8..6)
            .prop_map(|(which, status, response)| Op::Answer { which, status, response }),
        4 => (any::<u8>(), 0u8..6, 0u8..9)
            .prop_map(|(which, event, payload)| Op::Channel { which, event, payload }),
        3 => (ref_pick(), ref_pick(), 0u8..5, 0u8..7, 0u8..9)
            .prop_map(|(jr, r, topic, event, payload)| Op::Frame { jr, r, topic, event, payload }),
        1 => prop_oneof![any::<String>(), "\\[[\\[\\]\"0-9a-z,{}:]{0,30}"].prop_map(Op::Garbage),
        1 => prop::collection::vec(any::<u8>(), 0..24).prop_map(Op::RandomBinary),
        2 => (0u8..3, any::<u8>(), prop::collection::vec(any::<u8>(), 0..8))
            .prop_map(|(kind, which, payload)| Op::ServerBinary { kind, which, payload }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 256,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn random_sessions_keep_the_invariants(
        ops in prop::collection::vec(op(), 1..80),
        connect_first in any::<bool>(),
        variant in 0u8..4,
    ) {
        run(&ops, connect_first, variant);
    }

    /// The fuzz target's byte codec gives back every session the strategy makes, so a fuzz
    /// input and its stable replay are the same session.
    #[test]
    fn session_bytes_round_trip(
        ops in prop::collection::vec(op(), 0..80),
        connect_first in any::<bool>(),
        variant in 0u8..4,
    ) {
        let s = Session { connect_first, variant, ops };
        prop_assert_eq!(decode_session(&encode_session(&s)), s);
    }
}

/// A long deterministic session through the same driver, so the invariants are also checked
/// on a run that certainly joins, pushes, crashes, reconnects and leaves.
#[test]
fn scripted_session_keeps_the_invariants() {
    let mut ops = vec![
        Op::Join {
            topic: 0,
            presence: true,
        },
        Op::Join {
            topic: 1,
            presence: false,
        },
    ];
    for i in 0..30u8 {
        ops.push(Op::Push {
            chan: i,
            kind: i % 5,
        });
        ops.push(Op::Answer {
            which: 0,
            status: i % 2,
            response: i % 6,
        });
        if i % 7 == 3 {
            ops.push(Op::Channel {
                which: 0,
                event: 0,
                payload: 0,
            });
        }
        if i % 11 == 5 {
            ops.push(Op::Close(1));
            ops.push(Op::Wake);
            ops.push(Op::Open);
        }
        ops.push(Op::Advance(700));
    }
    ops.push(Op::Leave { chan: 0 });
    for variant in 0..4 {
        run(&ops, true, variant);
    }
}
