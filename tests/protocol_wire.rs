//! The wire codec against the real Phoenix transcripts (tests/data, copied from
//! ../shared/phoenix-wire and ../shared/phoenix-wire-1.8), malformed input fed to a socket,
//! and codec property tests.
#![allow(clippy::unwrap_used)]

#[path = "support/protocol.rs"]
mod support;

use std::borrow::Cow;

use bevy_phoenix_channels::protocol::config::{auth_subprotocols, websocket_url};
use bevy_phoenix_channels::protocol::wire::{
    self, BinaryFrame, WireRef, decode_binary, decode_reply, decode_text, encode_binary_push,
    encode_text,
};
use proptest::prelude::*;
use serde_json::Value;
use support::*;

// ------------------------------------------------------------------- transcript sanity

/// Counts `<<` / `>>` TEXT and BINARY lines straight from the files, so a parser that skips
/// frames cannot make the other tests pass vacuously.
#[test]
fn the_parser_finds_every_frame() {
    let mut total = 0;
    for t in all_transcripts() {
        let text = std::fs::read_to_string(data_dir().join(&t.name)).unwrap();
        let count = |dir: &str| {
            text.lines()
                .filter(|l| {
                    l.starts_with("[+")
                        && (l.contains(&format!("] {dir} ")))
                        && (l.contains(" TEXT") || l.contains(" BINARY "))
                })
                .count()
        };
        let ws = |d: Dir| {
            t.frames
                .iter()
                .filter(|f| f.dir == d && !f.longpoll)
                .count()
        };
        assert_eq!(ws(Dir::ToClient), count("<<"), "{}", t.name);
        assert_eq!(ws(Dir::ToServer), count(">>"), "{}", t.name);
        total += t.frames.len();
    }
    // 21 + 7 + 21 files; 1.7.24 alone has 150+ server frames.
    assert!(total > 500, "only {total} frames");
    let t13 = load("phoenix-wire/13_binary.txt");
    let bins = t13
        .frames
        .iter()
        .filter(|f| matches!(f.body, Body::Binary { .. }))
        .count();
    assert_eq!(bins, 8);
    // LongPoll messages (34) are frames too.
    let t34 = load("phoenix-wire-1.8/34_auth_token_longpoll.txt");
    assert!(t34.frames.iter().filter(|f| f.longpoll).count() >= 8);
}

// ------------------------------------------------------------ server frames (<<) decode

fn check_ref(at: &str, got: &Option<WireRef<'_>>, want: &Value) {
    match (got, want) {
        (None, Value::Null) => {}
        (Some(WireRef::Str(s)), Value::String(w)) => assert_eq!(s, w, "{at}"),
        (Some(WireRef::Int(i)), Value::Number(n)) => assert_eq!(Some(*i), n.as_i64(), "{at}"),
        _ => panic!("{at}: decoded ref {got:?}, transcript {want}"),
    }
}

fn name_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        other => panic!("topic/event {other}"),
    }
}

fn check_server_text(at: &str, text: &str) {
    let f = decode_text(text).unwrap_or_else(|e| panic!("{at}: {e}: {text}"));
    let a = arr(text);
    let raw = raw_elements(text);
    check_ref(at, &f.join_ref, &a[0]);
    check_ref(at, &f.msg_ref, &a[1]);
    assert_eq!(f.topic, name_text(&a[2]), "{at}");
    assert_eq!(f.event, name_text(&a[3]), "{at}");
    // The payload is the exact text on the wire, not a re-serialization.
    assert_eq!(f.payload.get(), raw[4], "{at}");
    if f.event == wire::names::REPLY {
        let r = decode_reply(f.payload).unwrap_or_else(|e| panic!("{at}: {e}"));
        assert_eq!(r.status, a[4]["status"].as_str().unwrap(), "{at}");
        assert_eq!(val(r.response.get()), a[4]["response"], "{at}");
    }
}

fn check_server_binary(at: &str, bytes: &[u8], note: &Note) {
    let f = decode_binary(bytes).unwrap_or_else(|e| panic!("{at}: {e}"));
    let field = |k: &str| note.fields.get(k).map(String::as_str).unwrap_or("");
    let data = note.data.as_deref().unwrap();
    match (note.kind, &f) {
        (
            Some(0),
            BinaryFrame::Push {
                join_ref,
                topic,
                event,
                payload,
            },
        ) => {
            assert_eq!(
                (*join_ref, *topic, *event, *payload),
                (field("join_ref"), field("topic"), field("event"), data),
                "{at}"
            );
        }
        (
            Some(1),
            BinaryFrame::Reply {
                join_ref,
                msg_ref,
                topic,
                status,
                payload,
            },
        ) => {
            assert_eq!(
                (*join_ref, *msg_ref, *topic, *status, *payload),
                (
                    field("join_ref"),
                    field("ref"),
                    field("topic"),
                    field("status"),
                    data
                ),
                "{at}"
            );
        }
        (
            Some(2),
            BinaryFrame::Broadcast {
                topic,
                event,
                payload,
            },
        ) => {
            assert_eq!(
                (*topic, *event, *payload),
                (field("topic"), field("event"), data),
                "{at}"
            );
        }
        (kind, f) => panic!("{at}: transcript kind {kind:?}, decoded {f:?}"),
    }
    assert_eq!(f.topic(), field("topic"), "{at}");
    assert_eq!(f.payload(), data, "{at}");
    // And the test-side decoder agrees (cross-check of the layout in SUMMARY.md).
    let mine = decode_server_bin(bytes).unwrap();
    assert_eq!(encode_bin(&mine), bytes, "{at}");
}

#[test]
fn every_server_frame_decodes_as_captured() {
    let (mut texts, mut bins) = (0, 0);
    for t in all_transcripts() {
        for f in t.frames.iter().filter(|f| f.dir == Dir::ToClient) {
            match &f.body {
                Body::Text(text) => {
                    // The only server frames that are not V2 arrays: the V1 contrast in 17.
                    if text.starts_with('{') {
                        assert!(t.name.contains("17_connect_refused"), "{}", f.at());
                        assert!(decode_text(text).is_err());
                        continue;
                    }
                    check_server_text(&f.at(), text);
                    texts += 1;
                }
                Body::Binary { bytes, note } => {
                    check_server_binary(&f.at(), bytes, note);
                    bins += 1;
                }
            }
        }
    }
    assert!(texts > 300, "{texts}");
    assert_eq!(
        bins, 12,
        "6 binary server frames in 1.7 (12, 13), 6 in 1.8 parity"
    );
}

// ------------------------------------------------------- client frames (>>) encode identically

/// Our refs are canonical decimal strings: a transcript ref we could have produced.
fn our_ref(v: &Value) -> Option<Option<u64>> {
    match v {
        Value::Null => Some(None),
        Value::String(s) => {
            let n: u64 = s.parse().ok()?;
            (n.to_string() == *s).then_some(Some(n))
        }
        _ => None,
    }
}

#[test]
fn every_client_frame_we_could_send_encodes_identically() {
    let (mut texts, mut bins, mut skipped) = (0, 0, Vec::new());
    for t in all_transcripts() {
        for f in t.frames.iter().filter(|f| f.dir == Dir::ToServer) {
            match &f.body {
                Body::Text(text) => {
                    let Ok(Value::Array(a)) = serde_json::from_str::<Value>(text) else {
                        skipped.push(f.at());
                        continue;
                    };
                    let (Some(jr), Some(r), Some(topic), Some(event)) = (
                        a.first().and_then(our_ref),
                        a.get(1).and_then(our_ref),
                        a.get(2).and_then(Value::as_str),
                        a.get(3).and_then(Value::as_str),
                    ) else {
                        skipped.push(f.at());
                        continue;
                    };
                    if a.len() != 5 {
                        skipped.push(f.at());
                        continue;
                    }
                    let payload = &raw_elements(text)[4];
                    let ours = encode_text(jr, r, topic, event, payload);
                    assert_eq!(val(&ours), val(text), "{}", f.at());
                    assert_eq!(&ours, text, "{}: byte for byte", f.at());
                    // Through OutPayload too (what Socket::push uses): the payload is kept verbatim.
                    let OutPayload::Json(p) = raw(payload) else {
                        unreachable!()
                    };
                    assert_eq!(encode_text(jr, r, topic, event, p.get()), *text);
                    texts += 1;
                }
                Body::Binary { bytes, note } => {
                    let Some(Bin::ClientPush {
                        join_ref,
                        msg_ref,
                        topic,
                        event,
                        payload,
                    }) = decode_client_push(bytes)
                    else {
                        skipped.push(f.at());
                        continue;
                    };
                    if note.kind != Some(0) {
                        skipped.push(f.at());
                        continue;
                    }
                    let ours =
                        encode_binary_push(&join_ref, &msg_ref, &topic, &event, &payload).unwrap();
                    assert_eq!(&ours, bytes, "{}", f.at());
                    assert_eq!(Some(&payload), note.data.as_ref(), "{}", f.at());
                    bins += 1;
                }
            }
        }
    }
    assert!(texts > 180, "{texts}");
    assert_eq!(
        bins, 12,
        "6 well-formed binary pushes in 1.7 (12, 13, 15) and 6 in parity"
    );
    // What we skip: hand-made refs ("hb", integers), malformed input (16), V1 objects (17).
    assert!(skipped.len() < 60, "{skipped:?}");
}

#[test]
fn connect_urls_and_token_subprotocols_match_the_captures() {
    let mut n = 0;
    for t in all_transcripts() {
        for (conn, url) in &t.connects {
            let Some((endpoint, query)) = url.split_once("/websocket?") else {
                continue;
            };
            let pairs: Vec<(String, String)> = query
                .split('&')
                .filter(|p| !p.is_empty())
                .map(|p| {
                    let (k, v) = p.split_once('=').unwrap_or((p, ""));
                    (k.to_owned(), v.to_owned())
                })
                .collect();
            if !pairs.contains(&("vsn".into(), "2.0.0".into())) {
                continue; // the vsn=3.0.0 / no-vsn contrasts in 17
            }
            let params: Vec<_> = pairs.iter().filter(|(k, _)| k != "vsn").cloned().collect();
            let ours = websocket_url(endpoint, &params);
            let (path, q) = ours.split_once('?').unwrap();
            assert_eq!(path, format!("{endpoint}/websocket"), "{} {conn}", t.name);
            let mut got: Vec<&str> = q.split('&').collect();
            let mut want: Vec<&str> = query.split('&').collect();
            got.sort_unstable();
            want.sort_unstable();
            assert_eq!(got, want, "{} {conn}", t.name);
            assert!(ours.ends_with("vsn=2.0.0"));
            n += 1;
        }
    }
    assert!(n > 50, "{n}");

    // phoenix.js's header for "good-token", as captured by 30 and 35.
    let ours = auth_subprotocols("good-token").join(", ");
    let t30 = load("phoenix-wire-1.8/30_auth_token_ok.txt");
    assert_eq!(t30.subprotocols[0].1, ours);
    let t35 = load("phoenix-wire-1.8/35_max_channels.txt");
    assert!(t35.subprotocols.iter().all(|(_, v)| *v == ours));
    // And the socket offers it.
    let mut h = H::new(cfg().with_auth_token("good-token"));
    let req = h.connect();
    assert_eq!(
        req.subprotocols,
        vec!["phoenix", "base64url.bearer.phx.Z29vZC10b2tlbg"]
    );
    assert_eq!(req.url, "ws://127.0.0.1:4000/socket/websocket?vsn=2.0.0");
}

// ------------------------------------------------------------- malformed input (16)

/// An open socket with echo:1 joined (join_ref 1).
fn joined_echo() -> (H, ChannelId) {
    let mut h = H::new(cfg());
    h.open();
    let (ch, jr) = h.join_ok("echo:1");
    assert_eq!(jr, 1);
    (h, ch)
}

/// The socket still works: a push goes out and its reply is routed.
fn still_usable(h: &mut H, ch: ChannelId) {
    assert!(h.s.is_connected());
    let p = h.s.push(
        h.now,
        ch,
        "echo",
        raw(r#"{"alive":true}"#),
        PushOptions::default(),
    );
    let f = h.one_text();
    let (jr, r) = refs_of(&f);
    assert_eq!(r, Some(p.0));
    h.text(ok(jr.unwrap(), p.0, "echo:1", r#"{"alive":true}"#));
    let ev = h.events();
    assert_eq!(ok_value(&ev, p), val(r#"{"alive":true}"#));
}

#[test]
fn malformed_frames_from_16_yield_protocol_errors_and_the_socket_stays_usable() {
    let mut errors = 0;
    for rel in [
        "phoenix-wire/16_malformed.txt",
        "phoenix-wire-1.8/parity/16_malformed.txt",
    ] {
        // The client frames of 16, fed to us as if the server had sent them.
        for f in load(rel).frames.iter().filter(|f| f.dir == Dir::ToServer) {
            let (mut h, ch) = joined_echo();
            let before = h.s.stats().decode_errors;
            let expect_error = match &f.body {
                Body::Text(t) => {
                    h.text(t.clone());
                    !t.starts_with('[') || arr(t).len() < 5
                }
                Body::Binary { bytes, .. } => {
                    h.binary(bytes.clone());
                    // A kind-1 frame from a client is a well-formed *reply* to us.
                    bytes[0] != 1
                }
            };
            let ev = h.events();
            let errs: Vec<_> = ev
                .iter()
                .filter_map(|e| match e {
                    Event::ProtocolError(e) => Some(e.clone()),
                    _ => None,
                })
                .collect();
            if expect_error {
                assert_eq!(errs.len(), 1, "{}: {ev:?}", f.at());
                assert_eq!(h.s.stats().decode_errors, before + 1);
                errors += 1;
                if let Body::Binary { bytes, .. } = &f.body {
                    let want = if bytes[0] == 5 {
                        wire::DecodeError::UnknownKind(5)
                    } else {
                        wire::DecodeError::Truncated
                    };
                    assert_eq!(errs[0], want, "{}", f.at());
                } else {
                    assert!(matches!(errs[0], wire::DecodeError::Text(_)), "{}", f.at());
                }
            } else {
                assert!(errs.is_empty(), "{}: {ev:?}", f.at());
            }
            // Nothing else happened to the channel or the connection.
            assert!(
                !ev.iter().any(|e| matches!(
                    e,
                    Event::ChannelErrored { .. }
                        | Event::ChannelClosed { .. }
                        | Event::Disconnected { .. }
                )),
                "{}: {ev:?}",
                f.at()
            );
            assert_eq!(h.state(ch), Some(ChannelState::Joined));
            still_usable(&mut h, ch);
        }
    }
    // not JSON, empty, arity 3, arity 4, V1 object, kind 5, truncated: twice (1.7 and 1.8).
    assert_eq!(errors, 14);
}

/// What it is, the frame (text or binary), whether it is a protocol error.
type Case = (&'static str, Result<String, Vec<u8>>, bool);

#[test]
fn more_malformed_server_input_never_panics() {
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let cases: Vec<Case> = vec![
        (
            "reply payload not an object",
            Ok(r#"["1","2","echo:1","phx_reply","str"]"#.into()),
            true,
        ),
        (
            "reply without status",
            Ok(r#"["1","2","echo:1","phx_reply",{"response":{}}]"#.into()),
            true,
        ),
        (
            "status not a string",
            Ok(r#"["1","2","echo:1","phx_reply",{"status":1}]"#.into()),
            true,
        ),
        (
            "topic an object",
            Ok(r#"[null,null,{},"e",{}]"#.into()),
            true,
        ),
        (
            "ref a float",
            Ok(r#"[null,1.5,"echo:1","e",{}]"#.into()),
            true,
        ),
        (
            "ref a bool",
            Ok(r#"[true,null,"echo:1","e",{}]"#.into()),
            true,
        ),
        (
            "ref out of i64",
            Ok(r#"[null,18446744073709551615,"t","e",{}]"#.into()),
            true,
        ),
        (
            "trailing garbage",
            Ok(r#"[null,null,"echo:1","e",{}] x"#.into()),
            true,
        ),
        (
            "unterminated",
            Ok(r#"[null,null,"echo:1","e",{"#.into()),
            true,
        ),
        ("deep nesting", Ok(deep), true),
        (
            "huge ref",
            Ok(format!(
                r#"["1","{}","echo:1","phx_reply",{{"status":"ok","response":{{}}}}]"#,
                "9".repeat(5000)
            )),
            false,
        ),
        ("empty binary", Err(vec![]), true),
        ("kind only", Err(vec![0]), true),
        ("kind 1 short header", Err(vec![1, 1, 1]), true),
        (
            "kind 2 lengths past end",
            Err(vec![2, 200, 200, b'a']),
            true,
        ),
        ("bad utf-8 topic", Err(vec![2, 1, 1, 0xff, b'e']), true),
        ("kind 255", Err(vec![255, 0, 0, 0, 0]), true),
    ];
    for (what, input, expect_error) in cases {
        let (mut h, ch) = joined_echo();
        match input {
            Ok(t) => h.text(t),
            Err(b) => h.binary(b),
        }
        let ev = h.events();
        assert_eq!(has_protocol_error(&ev), expect_error, "{what}: {ev:?}");
        assert_eq!(h.state(ch), Some(ChannelState::Joined), "{what}");
        still_usable(&mut h, ch);
    }

    // A presence payload that is not a presence map: a protocol error, presence unchanged.
    let (mut h, ch) = joined_echo();
    h.text(msg(Some(1), "echo:1", "presence_state", "[1,2]"));
    h.text(msg(None, "echo:1", "presence_diff", r#"{"joins":5}"#));
    let ev = h.events();
    let n = ev
        .iter()
        .filter(|e| matches!(e, Event::ProtocolError(wire::DecodeError::Presence(_))))
        .count();
    assert_eq!(n, 2, "{ev:?}");
    assert!(h.s.presence(ch).unwrap().is_empty());
    still_usable(&mut h, ch);
}

// ------------------------------------------------------------------- codec properties

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        // Binary fractions: exact in f64, so text -> value -> text is lossless.
        any::<i32>().prop_map(|n| Value::from(f64::from(n) / 8.0)),
        any::<String>().prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(any::<String>(), inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Strings that are often longer than 255 bytes (multi-byte chars included).
fn field() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => "[a-z0-9:_]{0,20}",
        2 => any::<String>(),
        1 => prop::collection::vec(any::<char>(), 60..90).prop_map(|c| c.into_iter().collect()),
        1 => (250usize..260).prop_map(|n| "x".repeat(n)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn text_frames_round_trip(
        jr in any::<Option<u64>>(),
        r in any::<Option<u64>>(),
        topic in any::<String>(),
        event in any::<String>(),
        payload in json_value(),
    ) {
        let payload = serde_json::to_string(&payload).unwrap();
        let frame = encode_text(jr, r, &topic, &event, &payload);
        let f = decode_text(&frame).unwrap();
        prop_assert_eq!(f.join_ref.as_ref().and_then(WireRef::as_ours), jr);
        prop_assert_eq!(f.msg_ref.as_ref().and_then(WireRef::as_ours), r);
        prop_assert_eq!(&f.topic, &topic);
        prop_assert_eq!(&f.event, &event);
        prop_assert_eq!(f.payload.get(), payload.as_str());
        // Any JSON parser reads the same thing.
        let a = arr(&frame);
        prop_assert_eq!(&a[2], &Value::String(topic.clone()));
        prop_assert_eq!(&a[3], &Value::String(event.clone()));
        prop_assert_eq!(&a[4], &val(&payload));
        prop_assert_eq!(&a[0], &jr.map_or(Value::Null, |j| Value::String(j.to_string())));
        // Escapes produce owned fields, plain text borrows.
        if !topic.contains(['"', '\\']) && !topic.chars().any(char::is_control) {
            prop_assert!(matches!(f.topic, Cow::Borrowed(_)));
        }
    }

    #[test]
    fn replies_round_trip(status in any::<String>(), response in json_value()) {
        let payload = serde_json::json!({"status": status, "response": response}).to_string();
        let frame = encode_text(Some(1), Some(2), "t", "phx_reply", &payload);
        let f = decode_text(&frame).unwrap();
        let r = decode_reply(f.payload).unwrap();
        prop_assert_eq!(&r.status, &status);
        prop_assert_eq!(val(r.response.get()), response);
    }

    #[test]
    fn binary_pushes_round_trip_or_fail_cleanly(
        jr in field(), r in field(), topic in field(), event in field(),
        payload in prop::collection::vec(any::<u8>(), 0..64),
    ) {
        let got = encode_binary_push(&jr, &r, &topic, &event, &payload);
        let too_long = [("join_ref", &jr), ("ref", &r), ("topic", &topic), ("event", &event)]
            .into_iter()
            .find(|(_, s)| s.len() > 255);
        match (got, too_long) {
            (Ok(bytes), None) => {
                prop_assert_eq!(
                    decode_client_push(&bytes),
                    Some(Bin::ClientPush {
                        join_ref: jr.clone(), msg_ref: r.clone(), topic: topic.clone(),
                        event: event.clone(), payload: payload.clone(),
                    })
                );
                prop_assert_eq!(bytes.len(), 5 + jr.len() + r.len() + topic.len() + event.len() + payload.len());
            }
            (Err(e), Some((field, s))) => {
                prop_assert_eq!(e, EncodeError::FieldTooLong { field, len: s.len() });
            }
            (got, want) => prop_assert!(false, "{:?} vs too long {:?}", got, want),
        }
    }

    #[test]
    fn server_binary_frames_decode(
        kind in 0u8..3,
        a in "[ -~]{0,30}", b in "[ -~]{0,30}", c in any::<String>(), d in "[a-z]{0,10}",
        payload in prop::collection::vec(any::<u8>(), 0..64),
    ) {
        prop_assume!(c.len() <= 255);
        let frame = match kind {
            0 => Bin::ServerPush { join_ref: a, topic: c, event: b, payload },
            1 => Bin::Reply { join_ref: a, msg_ref: b, topic: c, status: d, payload },
            _ => Bin::Broadcast { topic: c, event: b, payload },
        };
        let bytes = encode_bin(&frame);
        let got = decode_binary(&bytes).unwrap();
        let back = match got {
            BinaryFrame::Push { join_ref, topic, event, payload } => Bin::ServerPush {
                join_ref: join_ref.into(), topic: topic.into(), event: event.into(), payload: payload.to_vec(),
            },
            BinaryFrame::Reply { join_ref, msg_ref, topic, status, payload } => Bin::Reply {
                join_ref: join_ref.into(), msg_ref: msg_ref.into(), topic: topic.into(),
                status: status.into(), payload: payload.to_vec(),
            },
            BinaryFrame::Broadcast { topic, event, payload } => Bin::Broadcast {
                topic: topic.into(), event: event.into(), payload: payload.to_vec(),
            },
        };
        prop_assert_eq!(back, frame);
        // Every strict prefix that cuts into the header is an error, never a panic.
        for cut in 0..bytes.len() {
            let _ = decode_binary(&bytes[..cut]);
        }
    }

    #[test]
    fn decoders_never_panic(s in any::<String>(), b in prop::collection::vec(any::<u8>(), 0..64)) {
        let _ = decode_text(&s);
        let _ = decode_binary(&b);
        // A JSON-ish prefix makes the decoder go deeper.
        let _ = decode_text(&format!("[null,\"1\",\"t\",\"phx_reply\",{s}"));
    }
}

#[test]
fn binary_field_limits_are_exact() {
    let ok = "x".repeat(255);
    let long = "x".repeat(256);
    for i in 0..4 {
        let mut f = ["1", "2", "t", "e"].map(str::to_owned);
        f[i].clone_from(&ok);
        assert!(encode_binary_push(&f[0], &f[1], &f[2], &f[3], b"").is_ok());
        f[i].clone_from(&long);
        let field = ["join_ref", "ref", "topic", "event"][i];
        assert_eq!(
            encode_binary_push(&f[0], &f[1], &f[2], &f[3], b""),
            Err(EncodeError::FieldTooLong { field, len: 256 })
        );
    }
}
