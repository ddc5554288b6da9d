//! Fuzz target `socket`: the whole sans-IO `protocol::Socket` driven by a session decoded from
//! the input (`socket_model::decode_session`), every invariant of `socket_model::Driver`
//! checked after each op and after the final quiesce. tests/fuzz_corpus.rs replays
//! fuzz/corpus/socket/ through the same function on stable; tests/protocol_props.rs runs the
//! same driver under proptest.
#![no_main]

#[path = "../../tests/support/socket_model.rs"]
mod socket_model;
#[path = "../../tests/support/protocol.rs"]
mod support;

libfuzzer_sys::fuzz_target!(|data: &[u8]| socket_model::socket(data));
