//! Hostile and malformed SERVER behaviour, end to end: the plugin in a headless app on a real
//! socket on loopback, against a scripted server (a raw tungstenite WebSocket, or a raw TCP
//! listener for handshake-level misbehaviour) that answers what it must (the join, using the
//! client's refs) and then misbehaves.
//!
//! Each test names one kind of misbehaviour (or a few tightly related ones) and asserts what
//! the app sees (a `PhoenixProtocolError`, a `PushReplied` outcome, a connect failure or
//! disconnect, a counter in `SocketStats`), whether the socket stays up or reconnects, and that
//! nothing is lost silently: the push made before the bad frames gets exactly one outcome and
//! the valid broadcast sent after them still arrives. No test waits on a clock for correctness:
//! every wait is on a condition with a generous deadline.
#![allow(clippy::unwrap_used, missing_docs)]

mod support;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use bevy::prelude::*;
use bevy_phoenix_channels::prelude::*;
use bevy_phoenix_channels::protocol::{
    DecodeError, DisconnectReason, DropReason, SocketStats, presence::MAX_PENDING_DIFFS,
};
use serde_json::{Value, json};
use support::*;
use tungstenite::{Message, WebSocket};

/// The topic every scripted scenario joins.
const TOPIC: &str = "room:h";

// ----- the scripted server ---------------------------------------------------------------

/// A listener on 127.0.0.1 that runs `handler(stream, n)` on its own thread for the n-th
/// accepted connection (0, 1, ...). Returns the socket endpoint for the client config.
fn serve_tcp(handler: impl Fn(TcpStream, usize) + Send + Sync + 'static) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let handler = Arc::new(handler);
    let count = AtomicUsize::new(0);
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let n = count.fetch_add(1, Ordering::SeqCst);
            let handler = handler.clone();
            thread::spawn(move || handler(stream, n));
        }
    });
    format!("ws://127.0.0.1:{port}/socket")
}

/// Like [`serve_tcp`], with the WebSocket upgrade accepted first.
fn serve_ws(handler: impl Fn(Peer, usize) + Send + Sync + 'static) -> String {
    serve_tcp(move |s, n| {
        if let Ok(ws) = tungstenite::accept(s) {
            handler(Peer { ws }, n);
        }
    })
}

/// The server side of one connection, blocking.
struct Peer {
    ws: WebSocket<TcpStream>,
}

/// A client frame `[join_ref, ref, topic, event, payload]`.
type Frame = Value;

fn s(v: &Value) -> &str {
    v.as_str().unwrap_or_default()
}

impl Peer {
    /// The next client text frame; heartbeats are answered on the way. `None` once closed.
    fn recv(&mut self) -> Option<Frame> {
        loop {
            match self.ws.read() {
                Ok(Message::Text(t)) => {
                    let v: Value = serde_json::from_str(&t).ok()?;
                    if v[2] == "phoenix" && v[3] == "heartbeat" {
                        let r = reply_text(None, s(&v[1]), "phoenix", "ok", json!({}));
                        self.text(r);
                        continue;
                    }
                    return Some(v);
                }
                Ok(Message::Close(_)) | Err(_) => return None,
                Ok(_) => {}
            }
        }
    }

    /// Reads until a `phx_join`, answers it ok, and returns its join_ref.
    fn join(&mut self) -> Option<String> {
        loop {
            let f = self.recv()?;
            if f[3] == "phx_join" {
                self.ok(&f, json!({}));
                return Some(s(&f[0]).to_owned());
            }
        }
    }

    /// Reads until a client push (not a join or leave) and returns it.
    fn push(&mut self) -> Option<Frame> {
        loop {
            let f = self.recv()?;
            match s(&f[3]) {
                "phx_join" => self.ok(&f, json!({})),
                "phx_leave" => self.ok(&f, json!({})),
                _ => return Some(f),
            }
        }
    }

    /// Answers the client frame `f` with status ok.
    fn ok(&mut self, f: &Frame, response: Value) {
        let r = reply_text(Some(s(&f[0])), s(&f[1]), s(&f[2]), "ok", response);
        self.text(r);
    }

    fn text(&mut self, t: impl Into<String>) {
        let _ = self.ws.send(Message::text(t.into()));
    }

    fn send(&mut self, w: Wire) {
        match w {
            Wire::Text(t) => self.text(t),
            Wire::Binary(b) => {
                let _ = self.ws.send(Message::binary(b));
            }
            Wire::Raw(bytes) => {
                let _ = self.ws.flush();
                let _ = self.ws.get_mut().write_all(&bytes);
            }
        }
    }

    /// A well-behaved server from here on: joins, leaves and pushes answered ok (a push with
    /// its own payload), heartbeats answered, until the client goes.
    fn serve(mut self) {
        while let Some(f) = self.recv() {
            let response = if f[3] == "phx_join" || f[3] == "phx_leave" {
                json!({})
            } else {
                f[4].clone()
            };
            self.ok(&f, response);
        }
    }

    /// Reads (and drops) until the client closes; returns the close code it sent, if any.
    fn close_code(&mut self) -> Option<u16> {
        loop {
            match self.ws.read() {
                Ok(Message::Close(f)) => return f.map(|f| u16::from(f.code)),
                Ok(_) => {}
                Err(_) => return None,
            }
        }
    }
}

/// What a script sends.
enum Wire {
    /// A text frame.
    Text(String),
    /// A binary frame.
    Binary(Vec<u8>),
    /// Bytes written to the TCP stream as they are (hand-made WebSocket frames).
    Raw(Vec<u8>),
}

fn t(v: impl Into<String>) -> Wire {
    Wire::Text(v.into())
}

/// A server text frame.
fn frame(jr: Option<&str>, r: Option<&str>, topic: &str, event: &str, payload: Value) -> String {
    json!([jr, r, topic, event, payload]).to_string()
}

fn reply_text(jr: Option<&str>, r: &str, topic: &str, status: &str, response: Value) -> String {
    let payload = json!({"status": status, "response": response});
    frame(jr, Some(r), topic, "phx_reply", payload)
}

fn broadcast(event: &str, payload: Value) -> Wire {
    t(frame(None, None, TOPIC, event, payload))
}

/// A server binary frame: kind byte, one length byte per field, the fields, the payload.
fn bin(kind: u8, fields: &[&[u8]], payload: &[u8]) -> Vec<u8> {
    let mut out = vec![kind];
    out.extend(fields.iter().map(|f| u8::try_from(f.len()).unwrap()));
    for f in fields {
        out.extend_from_slice(f);
    }
    out.extend_from_slice(payload);
    out
}

/// A hand-made, unmasked WebSocket frame (FIN set) with `opcode`.
fn raw_frame(first_byte: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![first_byte];
    match payload.len() {
        n if n < 126 => out.push(n as u8),
        n if n <= 0xffff => {
            out.push(126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(payload);
    out
}

/// The refs a script needs to forge frames.
struct Refs {
    /// The channel's join_ref.
    jr: String,
    /// The ref of the client's "ask" push.
    push: String,
}

// ----- the standard scenario -------------------------------------------------------------

/// What a scenario leaves for the test to assert.
struct Seen {
    app: App,
    ch: Entity,
    /// The single outcome of the "ask" push made before the hostile frames.
    reply: PushReplied,
}

impl Seen {
    fn stats(&mut self) -> SocketStats {
        let s = socket_entity(&mut self.app);
        *self.app.world().get::<PhoenixSocket>(s).unwrap().stats()
    }

    fn errors(&self) -> Vec<DecodeError> {
        log(&self.app)
            .protocol_errors
            .iter()
            .map(|e| e.error.clone())
            .collect()
    }

    /// The messages of `event` the app received.
    fn messages(&self, event: &str) -> Vec<ChannelMessage> {
        log(&self.app)
            .messages
            .iter()
            .filter(|m| m.is(event))
            .cloned()
            .collect()
    }

    fn answer(&self) -> Option<Value> {
        self.reply.decode_ok::<Value>().and_then(Result::ok)
    }
}

/// The standard scenario: the client joins `TOPIC` and pushes "ask"; the server reads the
/// push, sends the frames `hostile` makes, then answers the push ok with `{"answer":42}` and
/// broadcasts "after". Returns once "after" has arrived (so every hostile frame has been
/// handled), having checked that the socket never dropped and that the push had exactly one
/// outcome.
fn scenario(hostile: impl Fn(&Refs) -> Vec<Wire> + Send + Sync + 'static) -> Seen {
    let url = serve_ws(move |mut p, n| {
        if n > 0 {
            return p.serve();
        }
        let Some(jr) = p.join() else { return };
        let Some(ask) = p.push() else { return };
        let refs = Refs {
            jr,
            push: s(&ask[1]).to_owned(),
        };
        for w in hostile(&refs) {
            p.send(w);
        }
        p.ok(&ask, json!({"answer": 42}));
        p.send(broadcast("after", json!({"n": 1})));
        p.serve();
    });
    // A push timeout no busy machine reaches: the outcome must be the reply.
    let mut app = app(config(&url).with(|s| s.with_push_timeout(Duration::from_secs(600))));
    let ch = join(&mut app, PhoenixChannel::new(TOPIC));
    wait_joined(&mut app, ch);
    let h = push(&mut app, PushMessage::json(ch, "ask", &json!({})).unwrap());
    pump_until(
        &mut app,
        120,
        "the broadcast after the hostile frames",
        |w| w.resource::<Log>().messages.iter().any(|m| m.is("after")),
    );
    let replies = replies_for(&app, h);
    assert_eq!(replies.len(), 1, "exactly one outcome: {replies:?}");
    let l = log(&app);
    assert_eq!(l.connected.len(), 1, "the socket stayed up");
    assert!(l.disconnected.is_empty(), "{:?}", l.disconnected);
    assert_eq!(channel_state(&app, ch), Some(ChannelState::Joined));
    Seen {
        app,
        ch,
        reply: replies.into_iter().next().unwrap(),
    }
}

fn assert_answer_42(seen: &Seen) {
    assert_eq!(
        seen.answer(),
        Some(json!({"answer": 42})),
        "{:?}",
        seen.reply
    );
}

// ----- frame-level: the socket stays up ---------------------------------------------------

#[test]
fn bad_json_is_a_protocol_error_and_the_socket_stays_up() {
    let bad = [
        "{not json",
        "",
        "[",
        "null",
        "42",
        "\"text\"",
        "[1,2,3,4,5]]",
    ];
    let mut seen = scenario(move |_| bad.iter().map(|b| t(*b)).collect());
    assert_answer_42(&seen);
    let errors = seen.errors();
    assert_eq!(errors.len(), bad.len(), "{errors:?}");
    assert!(errors.iter().all(|e| matches!(e, DecodeError::Text(_))));
    assert_eq!(seen.stats().decode_errors, bad.len() as u64);
}

#[test]
fn wrong_arity_3_and_4_are_errors_6_is_accepted() {
    let mut seen = scenario(|_| {
        vec![
            t(r#"[null,null,"room:h"]"#),
            t(r#"[null,null,"room:h","four"]"#),
            t(r#"[null,null,"room:h","six",{"a":1},"extra"]"#),
            t("[]"),
        ]
    });
    assert_answer_42(&seen);
    assert_eq!(seen.errors().len(), 3, "{:?}", seen.errors());
    // Phoenix ignores extra elements; so does the client.
    let six = seen.messages("six");
    assert_eq!(six.len(), 1);
    assert_eq!(six[0].decode::<Value>().unwrap(), json!({"a": 1}));
    assert_eq!(seen.messages("four").len(), 0);
    assert_eq!(seen.stats().decode_errors, 3);
}

#[test]
fn wrong_field_types_are_errors_or_kept_as_phoenix_sends_them() {
    let mut seen = scenario(|r| {
        let push = &r.push;
        vec![
            // Errors: a ref that is an object or an array, a null or object event, a null topic.
            t(r#"[null,{"a":1},"room:h","obj_ref",{}]"#),
            t(r#"[[1],null,"room:h","arr_jr",{}]"#),
            t(r#"[null,null,"room:h",null,{}]"#),
            t(r#"[null,null,"room:h",{"e":1},{}]"#),
            t(r#"[null,null,null,"null_topic",{}]"#),
            // Kept: a numeric topic (never joined: dropped as unroutable) ...
            t(r#"[null,null,42,"num_topic",{}]"#),
            // ... payloads that are an array, a string, a number.
            t(r#"[null,null,"room:h","arr",[1,2]]"#),
            t(r#"[null,null,"room:h","str","s"]"#),
            t(r#"[null,null,"room:h","num",7]"#),
            // A reply whose ref is the push's, as a number: not a ref this client sent (it
            // sends strings, Phoenix echoes the type), so it does not end the push.
            t(format!(
                r#"[null,{push},"room:h","phx_reply",{{"status":"ok","response":{{"answer":-1}}}}]"#
            )),
        ]
    });
    assert_answer_42(&seen);
    let errors = seen.errors();
    assert_eq!(errors.len(), 5, "{errors:?}");
    assert!(errors.iter().all(|e| matches!(e, DecodeError::Text(_))));
    let payload = |e: &str| seen.messages(e)[0].decode::<Value>().unwrap();
    assert_eq!(payload("arr"), json!([1, 2]));
    assert_eq!(payload("str"), json!("s"));
    assert_eq!(payload("num"), json!(7));
    assert!(seen.messages("num_topic").is_empty());
    let st = seen.stats();
    assert_eq!(st.decode_errors, 5);
    // The numeric topic and the numeric ref.
    assert_eq!(st.unroutable_dropped, 2, "{st:?}");
}

#[test]
fn numeric_topic_reaches_a_channel_joined_by_that_name() {
    let url = serve_ws(|mut p, _| {
        let Some(_) = p.join() else { return };
        p.text(r#"[null,null,123,"num",{"n":1}]"#);
        p.serve();
    });
    let mut app = app(config(&url));
    let ch = join(&mut app, PhoenixChannel::new("123"));
    pump_until(&mut app, 60, "message on topic 123", |w| {
        w.resource::<Log>().messages.iter().any(|m| m.is("num"))
    });
    let m = log(&app).messages[0].clone();
    assert_eq!((m.channel, &*m.topic), (ch, "123"));
}

#[test]
fn unknown_events_are_delivered_as_messages() {
    let seen = scenario(|r| {
        vec![
            broadcast("phx_unknown", json!({})),
            broadcast("zzz", json!({})),
            t(frame(Some(&r.jr), None, TOPIC, "phx_push_like", json!({}))),
            Wire::Binary(bin(2, &[TOPIC.as_bytes(), b"bin_unknown"], b"\x00\x01")),
        ]
    });
    assert_answer_42(&seen);
    for e in ["phx_unknown", "zzz", "phx_push_like", "bin_unknown"] {
        assert_eq!(seen.messages(e).len(), 1, "{e}");
    }
    assert!(!seen.messages("phx_push_like")[0].broadcast);
    assert_eq!(seen.messages("zzz")[0].channel, seen.ch);
    assert!(seen.errors().is_empty());
}

#[test]
fn reply_with_unknown_status_is_the_single_error_outcome() {
    let mut seen = scenario(|r| {
        vec![t(reply_text(
            Some(&r.jr),
            &r.push,
            TOPIC,
            "weird",
            json!({"why": "weird"}),
        ))]
    });
    // phoenix.js would call no hook (and cancel the timeout): the push would never end.
    // Here anything but "ok" is an error outcome, and the ok reply after it is ignored.
    match &seen.reply.outcome {
        PushOutcome::Error(p) => assert_eq!(p.decode::<Value>().unwrap(), json!({"why": "weird"})),
        other => panic!("expected Error, got {other:?}"),
    }
    assert_eq!(seen.stats().ignored_replies, 1);
}

#[test]
fn malformed_reply_payload_is_an_error_and_the_push_waits_for_its_reply() {
    let mut seen = scenario(|r| {
        let reply = |payload: Value| {
            t(frame(
                Some(&r.jr),
                Some(&r.push),
                TOPIC,
                "phx_reply",
                payload,
            ))
        };
        vec![
            reply(json!([1, 2])),
            reply(json!("ok")),
            reply(json!({"response": {}})),
            reply(json!({"status": 5})),
        ]
    });
    assert_answer_42(&seen);
    let errors = seen.errors();
    assert_eq!(errors.len(), 4, "{errors:?}");
    assert!(errors.iter().all(|e| matches!(e, DecodeError::BadReply(_))));
    assert_eq!(seen.stats().decode_errors, 4);
}

#[test]
fn truncated_binary_frames_are_errors() {
    let mut seen = scenario(|r| {
        // A kind 1 reply to the push whose header says the status is 200 bytes long.
        let mut reply = vec![1, r.jr.len() as u8, r.push.len() as u8, 6, 200];
        reply.extend_from_slice(r.jr.as_bytes());
        reply.extend_from_slice(r.push.as_bytes());
        reply.extend_from_slice(b"room:hok");
        vec![
            Wire::Binary(vec![]),
            Wire::Binary(vec![0]),
            Wire::Binary(vec![0, 5, 5]),
            Wire::Binary(vec![0, 5, 5, 5, b'a', b'b']),
            Wire::Binary(vec![2, 200, 200, b'x']),
            Wire::Binary(vec![1, 1, 1, 1]),
            Wire::Binary(reply),
            // A header field that is not UTF-8.
            Wire::Binary(bin(2, &[b"\xff\xfe", b"e"], b"p")),
        ]
    });
    assert_answer_42(&seen);
    let errors = seen.errors();
    assert_eq!(errors.len(), 8, "{errors:?}");
    assert!(
        errors[..7]
            .iter()
            .all(|e| matches!(e, DecodeError::Truncated))
    );
    assert_eq!(errors[7], DecodeError::NotUtf8);
    assert_eq!(seen.stats().decode_errors, 8);
}

#[test]
fn unknown_binary_kind_byte_is_an_error() {
    let seen = scenario(|_| {
        vec![
            Wire::Binary(bin(3, &[TOPIC.as_bytes(), b"e"], b"p")),
            Wire::Binary(vec![7]),
            Wire::Binary(vec![255, 0, 0, 0, 0]),
        ]
    });
    assert_answer_42(&seen);
    assert_eq!(
        seen.errors(),
        vec![
            DecodeError::UnknownKind(3),
            DecodeError::UnknownKind(7),
            DecodeError::UnknownKind(255)
        ]
    );
}

#[test]
fn message_for_a_topic_never_joined_is_dropped_and_counted() {
    let mut seen = scenario(|r| {
        vec![
            t(frame(None, None, "room:other", "b", json!({}))),
            t(frame(Some(&r.jr), None, "room:other", "p", json!({}))),
            Wire::Binary(bin(2, &[b"room:other", b"bb"], b"x")),
            Wire::Binary(bin(0, &[r.jr.as_bytes(), b"room:other", b"bp"], b"x")),
            t(frame(None, None, "phoenix", "b", json!({}))),
        ]
    });
    assert_answer_42(&seen);
    assert_eq!(log(&seen.app).messages.len(), 1, "only 'after'");
    assert!(seen.errors().is_empty());
    assert_eq!(seen.stats().unroutable_dropped, 5);
}

#[test]
fn reply_to_a_ref_never_sent_is_dropped_and_counted() {
    let mut seen = scenario(|r| {
        ["999999", "abc", "007", "-1", "18446744073709551616"]
            .iter()
            .map(|bad| {
                t(reply_text(
                    Some(&r.jr),
                    bad,
                    TOPIC,
                    "ok",
                    json!({"answer": -1}),
                ))
            })
            .collect()
    });
    assert_answer_42(&seen);
    assert_eq!(seen.stats().unroutable_dropped, 5);
}

#[test]
fn reply_for_another_topic_does_not_end_the_push() {
    let mut seen = scenario(|r| {
        vec![
            t(reply_text(
                Some(&r.jr),
                &r.push,
                "room:other",
                "ok",
                json!({"answer": -1}),
            )),
            Wire::Binary(bin(
                1,
                &[r.jr.as_bytes(), r.push.as_bytes(), b"room:else", b"ok"],
                b"-1",
            )),
        ]
    });
    // phoenix.js `isMember`: the topic must match. The push takes its own reply.
    assert_answer_42(&seen);
    assert_eq!(seen.stats().unroutable_dropped, 2);
}

#[test]
fn duplicate_replies_to_one_ref_give_exactly_one_outcome() {
    let mut seen = scenario(|r| {
        let ok = reply_text(Some(&r.jr), &r.push, TOPIC, "ok", json!({"answer": 42}));
        let err = reply_text(Some(&r.jr), &r.push, TOPIC, "error", json!({"answer": -1}));
        vec![t(ok.clone()), t(err), t(ok)]
    });
    assert_answer_42(&seen);
    // The two here after the first, and the scenario's own reply.
    assert_eq!(seen.stats().ignored_replies, 3);
}

#[test]
fn close_and_error_for_unknown_join_refs_are_dropped() {
    let mut seen = scenario(|r| {
        vec![
            t(frame(
                Some("999"),
                Some("999"),
                TOPIC,
                "phx_close",
                json!({}),
            )),
            t(frame(
                Some("998"),
                Some("998"),
                TOPIC,
                "phx_error",
                json!({}),
            )),
            t(frame(Some("x"), None, TOPIC, "phx_error", json!({}))),
            // Without a join_ref it cannot name a join: not trusted.
            t(frame(None, None, TOPIC, "phx_close", json!({}))),
            t(frame(None, None, TOPIC, "phx_error", json!({}))),
            // The right join_ref on a topic never joined.
            t(frame(
                Some(&r.jr),
                Some(&r.jr),
                "room:other",
                "phx_close",
                json!({}),
            )),
        ]
    });
    assert_answer_42(&seen);
    let l = log(&seen.app);
    assert!(
        l.closed.is_empty() && l.errored.is_empty(),
        "{:?}",
        l.errored
    );
    let st = seen.stats();
    assert_eq!((st.stale_dropped, st.unroutable_dropped), (5, 1), "{st:?}");
}

#[test]
fn ping_flood_is_answered_without_events() {
    let seen = scenario(|_| {
        let mut pings = Vec::with_capacity(100_000 * 6);
        for i in 0..100_000u32 {
            pings.extend(raw_frame(0x89, &i.to_be_bytes()));
        }
        vec![Wire::Raw(pings)]
    });
    assert_answer_42(&seen);
    assert!(seen.errors().is_empty());
    assert_eq!(log(&seen.app).messages.len(), 1);
}

/// Whether two messages share one allocation of their event name (the interned-name cache).
fn same_name(a: &ChannelMessage, b: &ChannelMessage) -> bool {
    Arc::ptr_eq(&a.event, &b.event)
}

/// `name`, then five other names (more than the four most recent the core remembers), then
/// `name` again.
fn name_probe(name: &str) -> Vec<Wire> {
    // Formatted by hand (names are plain ASCII): serializing 10 MB names through serde_json
    // in a debug build is slow enough to matter on a busy machine.
    let b = |e: &str| t(format!(r#"[null,null,"{TOPIC}","{e}",{{}}]"#));
    let mut v = vec![b(name)];
    v.extend((0..5).map(|i| b(&format!("filler{i}"))));
    v.push(b(name));
    v
}

#[test]
fn ten_mb_topic_and_event_names() {
    const TEN_MB: usize = 10 << 20;
    let mut seen = scenario(|_| {
        let long_topic = "t".repeat(TEN_MB);
        let long_event = format!("long{}", "e".repeat(TEN_MB));
        let mut v = vec![t(format!(r#"[null,null,"{long_topic}","x",{{}}]"#))];
        v.extend(name_probe(&long_event));
        v.extend(name_probe("short"));
        v
    });
    assert_answer_42(&seen);
    assert_eq!(seen.stats().unroutable_dropped, 1, "the unknown topic");
    let long: Vec<_> = log(&seen.app)
        .messages
        .iter()
        .filter(|m| m.event.starts_with("long"))
        .cloned()
        .collect();
    assert_eq!(long.len(), 2);
    assert_eq!(long[0].event.len(), TEN_MB + 4);
    // A 10 MB name is not kept in the name cache (1024 of them would pin 10 GB) ...
    assert!(!same_name(&long[0], &long[1]));
    // ... while a short one is.
    let short = seen.messages("short");
    assert!(same_name(&short[0], &short[1]));
    assert!(seen.errors().is_empty());
}

// ----- floods (a lean app that counts instead of keeping every message) -------------------

#[derive(Resource, Default)]
struct Counts {
    messages: usize,
    /// Messages whose event starts with "keep", kept.
    kept: Vec<ChannelMessage>,
    presence_changes: usize,
    syncs: usize,
    errors: usize,
    disconnects: usize,
}

fn count(
    mut c: ResMut<Counts>,
    mut m: MessageReader<ChannelMessage>,
    mut p: MessageReader<PresenceChanged>,
    mut e: MessageReader<PhoenixProtocolError>,
    mut d: MessageReader<SocketDisconnected>,
) {
    for m in m.read() {
        c.messages += 1;
        if m.event.starts_with("keep") {
            c.kept.push(m.clone());
        }
    }
    for p in p.read() {
        match p.event {
            PresenceEvent::Sync => c.syncs += 1,
            PresenceEvent::Change(_) => c.presence_changes += 1,
        }
    }
    c.errors += e.read().count();
    c.disconnects += d.read().count();
}

fn lean_app(url: &str) -> App {
    let mut app = App::new();
    app.add_plugins(MinimalPlugins)
        .add_plugins(PhoenixChannelsPlugin::with_config(config(url)))
        .init_resource::<Counts>()
        .add_systems(Update, count);
    app
}

fn counts(app: &App) -> &Counts {
    app.world().resource::<Counts>()
}

#[test]
fn distinct_event_name_flood_keeps_the_name_cache_bounded() {
    const N: usize = 100_000;
    let url = serve_ws(|mut p, _| {
        let Some(_) = p.join() else { return };
        // Before the flood: names are cached.
        for w in name_probe("keep-before") {
            p.send(w);
        }
        for i in 0..N {
            p.text(frame(None, None, TOPIC, &format!("e{i}"), json!(i)));
        }
        // After it: the cache is full, a new name is not kept.
        for w in name_probe("keep-after") {
            p.send(w);
        }
        p.send(broadcast("keep-end", json!({})));
        p.serve();
    });
    let mut app = lean_app(&url);
    let ch = join(&mut app, PhoenixChannel::new(TOPIC));
    pump_until(&mut app, 120, "the end of the flood", |w| {
        w.resource::<Counts>().kept.iter().any(|m| m.is("keep-end"))
    });
    let c = counts(&app);
    assert_eq!(c.messages, N + 2 * 7 + 1);
    let kept = |e: &str| -> Vec<&ChannelMessage> { c.kept.iter().filter(|m| m.is(e)).collect() };
    let (before, after) = (kept("keep-before"), kept("keep-after"));
    assert!(same_name(before[0], before[1]), "cached before the flood");
    assert!(
        !same_name(after[0], after[1]),
        "after {N} distinct names the cache takes no more"
    );
    assert_eq!(c.errors + c.disconnects, 0);
    assert_eq!(channel_state(&app, ch), Some(ChannelState::Joined));
}

fn meta(r: &str) -> Value {
    json!({"metas": [{"phx_ref": r}]})
}

fn presence_keys(app: &App, ch: Entity) -> Vec<String> {
    app.world()
        .get::<ChannelPresence>(ch)
        .map(|p| p.state.keys().cloned().collect())
        .unwrap_or_default()
}

fn core_presence_len(app: &mut App, ch: Entity) -> usize {
    let link = *app.world().get::<ChannelLink>(ch).unwrap();
    let sock = app.world().get::<PhoenixSocket>(link.socket).unwrap();
    sock.core()
        .presence(link.id)
        .map_or(usize::MAX, |p| p.len())
}

#[test]
fn presence_diff_flood_of_100k_new_keys_keeps_state_right() {
    const N: usize = 100_000;
    let url = serve_ws(|mut p, _| {
        let Some(jr) = p.join() else { return };
        p.text(frame(
            Some(&jr),
            None,
            TOPIC,
            "presence_state",
            json!({"alice": meta("a1")}),
        ));
        // Each diff invents a key and removes the one before it.
        for i in 0..N {
            let mut diff =
                json!({"joins": {format!("k{i}"): meta(&format!("r{i}"))}, "leaves": {}});
            if i > 0 {
                diff["leaves"] = json!({format!("k{}", i - 1): meta(&format!("r{}", i - 1))});
            }
            p.text(frame(None, None, TOPIC, "presence_diff", diff));
        }
        let last =
            json!({"joins": {}, "leaves": {format!("k{}", N - 1): meta(&format!("r{}", N - 1))}});
        p.text(frame(None, None, TOPIC, "presence_diff", last));
        p.send(broadcast("keep-end", json!({})));
        p.serve();
    });
    let mut app = lean_app(&url);
    let ch = join(&mut app, PhoenixChannel::new(TOPIC));
    pump_until(&mut app, 120, "the end of the flood", |w| {
        !w.resource::<Counts>().kept.is_empty()
    });
    let c = counts(&app);
    // alice's join, then a join and a leave per key.
    assert_eq!(c.presence_changes, 1 + 2 * N);
    assert_eq!(c.syncs, 1 + N + 1);
    assert_eq!(c.errors + c.disconnects, 0);
    assert_eq!(presence_keys(&app, ch), vec!["alice".to_owned()]);
    assert_eq!(core_presence_len(&mut app, ch), 1);
}

#[test]
fn presence_diff_flood_before_the_state_is_bounded() {
    const N: usize = 5_000;
    let url = serve_ws(|mut p, _| {
        let Some(jr) = p.join() else { return };
        for i in 0..N {
            let diff = json!({"joins": {format!("k{i:04}"): meta(&format!("r{i}"))}, "leaves": {}});
            p.text(frame(None, None, TOPIC, "presence_diff", diff));
        }
        p.text(frame(Some(&jr), None, TOPIC, "presence_state", json!({})));
        p.send(broadcast("keep-end", json!({})));
        p.serve();
    });
    let mut app = lean_app(&url);
    let ch = join(&mut app, PhoenixChannel::new(TOPIC));
    pump_until(&mut app, 120, "the state after the flood", |w| {
        !w.resource::<Counts>().kept.is_empty()
    });
    // At most MAX_PENDING_DIFFS (4096) wait for the state; the oldest go, and the app is told
    // once (a protocol error: the list is incomplete until the next state), not 904 times.
    let keys = presence_keys(&app, ch);
    assert_eq!(keys.len(), MAX_PENDING_DIFFS);
    assert_eq!(keys[0], format!("k{:04}", N - MAX_PENDING_DIFFS));
    let c = counts(&app);
    assert_eq!((c.presence_changes, c.syncs), (MAX_PENDING_DIFFS, 1));
    assert_eq!((c.errors, c.disconnects), (1, 0));
}

#[test]
fn deeply_nested_json_is_no_stack_overflow() {
    let mut seen = scenario(|r| {
        let deep = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
        vec![
            // As a message payload, a reply response and a presence payload.
            t(format!(r#"[null,null,"room:h","deep",{}]"#, deep(100_000))),
            t(format!(
                r#"["{}","{}","room:h","phx_reply",{{"status":"ok","response":{}}}]"#,
                r.jr,
                r.push,
                deep(100_000)
            )),
            t(format!(
                r#"[null,null,"room:h","presence_diff",{{"joins":{}}}]"#,
                deep(100_000)
            )),
            // 100 levels is fine.
            t(format!(r#"[null,null,"room:h","deep100",{}]"#, deep(100))),
        ]
    });
    // Valid JSON, so the frames decode (the payload is kept raw, not parsed); decoding one
    // into a value then fails at serde_json's recursion limit instead of overflowing a stack.
    let too_deep = |r: Result<Value, String>| r.unwrap_err().contains("recursion limit");
    let reply = seen.reply.decode_ok::<Value>().unwrap();
    assert!(too_deep(reply.map_err(|e| e.to_string())));
    let deep = seen.messages("deep");
    assert_eq!(deep.len(), 1);
    assert!(too_deep(
        deep[0].decode::<Value>().map_err(|e| e.to_string())
    ));
    assert_eq!(seen.messages("deep100").len(), 1);
    // Presence is parsed by the client: there it is a protocol error.
    let errors = seen.errors();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(matches!(&errors[0], DecodeError::Presence(e) if e.contains("recursion limit")));
    let st = seen.stats();
    assert_eq!((st.decode_errors, st.ignored_replies), (1, 1));
}

// ----- presence ---------------------------------------------------------------------------

#[test]
fn presence_diffs_before_the_state_are_applied_after_it() {
    let url = serve_ws(|mut p, _| {
        let Some(jr) = p.join() else { return };
        let diff = |j: Value, l: Value| {
            frame(
                None,
                None,
                TOPIC,
                "presence_diff",
                json!({"joins": j, "leaves": l}),
            )
        };
        p.text(diff(json!({"bob": meta("b1")}), json!({})));
        p.text(diff(json!({}), json!({"alice": meta("a1")})));
        p.text(diff(json!({"carol": meta("c1")}), json!({})));
        p.text(frame(
            Some(&jr),
            None,
            TOPIC,
            "presence_state",
            json!({"alice": meta("a1"), "dave": meta("d1")}),
        ));
        p.send(broadcast("after", json!({})));
        p.serve();
    });
    let mut app = app(config(&url));
    let ch = join(&mut app, PhoenixChannel::new(TOPIC));
    pump_until(&mut app, 60, "after", |w| {
        w.resource::<Log>().messages.iter().any(|m| m.is("after"))
    });
    assert_eq!(presence_keys(&app, ch), ["bob", "carol", "dave"]);
    let syncs = log(&app)
        .presence
        .iter()
        .filter(|p| matches!(p.event, PresenceEvent::Sync))
        .count();
    assert_eq!(syncs, 1, "queued diffs are one sync with the state");
    assert!(log(&app).protocol_errors.is_empty());
}

#[test]
fn presence_state_with_malformed_metas_is_an_error_and_changes_nothing() {
    let url = serve_ws(|mut p, _| {
        let Some(jr) = p.join() else { return };
        let state = |v: Value| frame(Some(&jr), None, TOPIC, "presence_state", v);
        p.text(state(json!({"alice": meta("a1")})));
        for bad in [
            json!({"x": {"metas": [{"no_ref": 1}]}}),
            json!({"x": {"metas": [{"phx_ref": 5}]}}),
            json!({"x": {"metas": "nope"}}),
            json!({"x": {}}),
            json!({"x": [1]}),
            json!([1, 2]),
            json!("state"),
            json!({"x": {"metas": [{"phx_ref": "x1", "phx_ref_prev": 3}]}}),
        ] {
            p.text(state(bad));
        }
        let diff = json!({"joins": {"y": {"metas": [7]}}, "leaves": {}});
        p.text(frame(None, None, TOPIC, "presence_diff", diff));
        // Presence is JSON: in a binary frame it is malformed too.
        p.send(Wire::Binary(bin(
            2,
            &[TOPIC.as_bytes(), b"presence_diff"],
            b"{}",
        )));
        p.text(frame(
            None,
            None,
            TOPIC,
            "presence_diff",
            json!({"joins": {"bob": meta("b1")}, "leaves": {}}),
        ));
        p.send(broadcast("after", json!({})));
        p.serve();
    });
    let mut app = app(config(&url));
    let ch = join(&mut app, PhoenixChannel::new(TOPIC));
    pump_until(&mut app, 60, "after", |w| {
        w.resource::<Log>().messages.iter().any(|m| m.is("after"))
    });
    let errors: Vec<_> = log(&app)
        .protocol_errors
        .iter()
        .map(|e| e.error.clone())
        .collect();
    assert_eq!(errors.len(), 10, "{errors:?}");
    assert!(errors.iter().all(|e| matches!(e, DecodeError::Presence(_))));
    // The bad payloads changed nothing; the good diff after them applied.
    assert_eq!(presence_keys(&app, ch), ["alice", "bob"]);
    assert_eq!(log(&app).connected.len(), 1);
}

// ----- the connection ends: the client reconnects as phoenix.js would ---------------------

/// Runs a scenario whose connection 0 ends after the client pushed "ask", by `kill` (given the
/// peer); connection 1 behaves. Returns the app once the channel has rejoined, with the close
/// code the client sent on connection 0 (if the kill left a way to read it).
fn killed(
    kill: impl Fn(&mut Peer) + Send + Sync + 'static,
    tweak: impl FnOnce(PhoenixSocketConfig) -> PhoenixSocketConfig,
) -> (App, Option<u16>) {
    let (tx, rx) = mpsc::channel();
    let url = serve_ws(move |mut p, n| {
        if n > 0 {
            return p.serve();
        }
        let Some(_) = p.join() else { return };
        let Some(_) = p.push() else { return };
        kill(&mut p);
        let _ = tx.send(p.close_code());
    });
    let mut app = app(tweak(config(&url)));
    let ch = join(&mut app, PhoenixChannel::new(TOPIC));
    wait_joined(&mut app, ch);
    let h = push(&mut app, PushMessage::json(ch, "ask", &json!({})).unwrap());
    pump_until(&mut app, 60, "reconnected and rejoined", |w| {
        w.resource::<Log>().joined.iter().any(|j| j.rejoin)
            && w.get::<ChannelStatus>(ch).map(|s| s.0) == Some(ChannelState::Joined)
    });
    let code = rx.recv_timeout(Duration::from_secs(30)).unwrap();
    // The push had exactly one outcome: dropped with the connection.
    assert_eq!(
        reply(&mut app, h).outcome,
        PushOutcome::Dropped(DropReason::ConnectionLost)
    );
    let l = log(&app);
    assert_eq!((l.disconnected.len(), l.connected.len()), (1, 2));
    // And the new connection works.
    let h2 = push(
        &mut app,
        PushMessage::json(ch, "echo", &json!({"n": 2})).unwrap(),
    );
    assert_eq!(
        reply(&mut app, h2).decode_ok::<Value>().unwrap().unwrap(),
        json!({"n": 2})
    );
    (app, code)
}

fn disconnect_reason(app: &App) -> DisconnectReason {
    log(app).disconnected[0].reason.clone()
}

#[test]
fn frame_above_max_frame_size_disconnects_with_1009_and_reconnects() {
    let (app, code) = killed(
        |p| p.text(frame(None, None, TOPIC, "big", json!("x".repeat(100_000)))),
        |c| c.with_max_frame_size(64 << 10),
    );
    match disconnect_reason(&app) {
        DisconnectReason::Error(e) => assert!(
            e.contains("incoming frame of 100029 bytes exceeds the limit of 65536"),
            "{e}"
        ),
        other => panic!("{other:?}"),
    }
    assert_eq!(code, Some(1009));
    assert!(log(&app).messages.iter().all(|m| !m.is("big")));
}

#[test]
fn frame_header_claiming_exabytes_is_refused_before_any_allocation() {
    // A binary frame header announcing 2^62 bytes, and 8 bytes of it.
    let mut head = vec![0x82, 127];
    head.extend_from_slice(&(1u64 << 62).to_be_bytes());
    head.extend_from_slice(&[0; 8]);
    let (app, code) = killed(move |p| p.send(Wire::Raw(head.clone())), |c| c);
    match disconnect_reason(&app) {
        DisconnectReason::Error(e) => assert!(e.contains(&(1u64 << 62).to_string()), "{e}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(code, Some(1009));
}

#[test]
fn fragmented_message_above_max_frame_size_disconnects_and_reconnects() {
    // 40 fragments of 2 KiB, each under the 64 KiB limit, 80 KiB together.
    let (app, code) = killed(
        |p| {
            let chunk = [b'x'; 2048];
            let mut bytes = Vec::new();
            for i in 0..40 {
                let opcode = if i == 0 { 0x01 } else { 0x00 };
                let mut f = raw_frame(opcode, &chunk);
                if i == 39 {
                    f[0] |= 0x80;
                } else {
                    f[0] &= 0x7f;
                }
                bytes.extend(f);
            }
            p.send(Wire::Raw(bytes));
        },
        |c| c.with_max_frame_size(64 << 10),
    );
    match disconnect_reason(&app) {
        DisconnectReason::Error(e) => assert!(e.contains("exceeds the limit of 65536"), "{e}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(code, Some(1009));
}

#[test]
fn frame_that_never_completes_times_out_the_heartbeat_and_reconnects() {
    // The header of a 1000-byte text frame and 10 bytes of it, then nothing: the heartbeat
    // reply can never get through.
    let (app, _) = killed(
        |p| {
            p.send(Wire::Raw(vec![
                0x81, 126, 0x03, 0xe8, b'[', 0, 0, 0, 0, 0, 0, 0, 0, 0,
            ]))
        },
        |c| {
            c.with(|s| {
                s.with_heartbeat(Duration::from_millis(200))
                    .with_heartbeat_timeout(Duration::from_millis(600))
            })
        },
    );
    assert_eq!(disconnect_reason(&app), DisconnectReason::HeartbeatTimeout);
}

#[test]
fn invalid_utf8_in_a_text_frame_disconnects_and_reconnects() {
    let (app, code) = killed(|p| p.send(Wire::Raw(raw_frame(0x81, b"[\xff\xfe]"))), |c| c);
    match disconnect_reason(&app) {
        DisconnectReason::Error(e) => assert!(e.contains("UTF-8"), "{e}"),
        other => panic!("{other:?}"),
    }
    // A browser closes with 1007 here; the native transport reports a protocol error (1002).
    assert_eq!(code, Some(1002));
}

/// Connection k (k < frames.len()) answers the join, sends `frames[k]` as raw bytes and waits
/// for the client's close; the next one behaves. Returns the app once the channel has joined on
/// that last, well-behaved connection.
fn one_raw_frame_per_connection(frames: Vec<Vec<u8>>) -> App {
    let n_bad = frames.len();
    let url = serve_ws(move |mut p, n| {
        let Some(_) = p.join() else { return };
        match frames.get(n) {
            Some(bytes) => {
                p.send(Wire::Raw(bytes.clone()));
                let _ = p.close_code();
            }
            None => p.serve(),
        }
    });
    let mut app = app(config(&url));
    let ch = join(&mut app, PhoenixChannel::new(TOPIC));
    pump_until(&mut app, 60, "joined on the last connection", |w| {
        w.resource::<Log>().connected.len() == n_bad + 1
            && w.get::<ChannelStatus>(ch).map(|s| s.0) == Some(ChannelState::Joined)
    });
    app
}

#[test]
fn websocket_protocol_violations_disconnect_and_reconnect() {
    // Each on its own connection: a continuation with nothing to continue, a masked frame
    // from the server, a reserved opcode, reserved bits set.
    let cases: [&[u8]; 4] = [
        &[0x80, 0x00],
        &[0x81, 0x82, 1, 2, 3, 4, b'a', b'b'],
        &[0x83, 0x00],
        &[0xC1, 0x00],
    ];
    let app = one_raw_frame_per_connection(cases.iter().map(|c| c.to_vec()).collect());
    let l = log(&app);
    assert_eq!(l.disconnected.len(), 4);
    eprintln!("protocol violations: {:#?}", l.disconnected);
    for d in &l.disconnected {
        assert!(
            matches!(d.reason, DisconnectReason::Error(_)),
            "{:?}",
            d.reason
        );
    }
}

#[test]
fn truncated_websocket_frame_then_eof_disconnects_and_reconnects() {
    let (app, _) = killed(
        |p| {
            p.send(Wire::Raw(vec![0x81, 100, b'[', b'n']));
            let _ = p.ws.get_mut().shutdown(std::net::Shutdown::Both);
        },
        |c| c,
    );
    assert!(
        matches!(
            disconnect_reason(&app),
            DisconnectReason::Closed { code: None, .. }
        ),
        "{:?}",
        disconnect_reason(&app)
    );
}

#[test]
fn weird_close_frames_disconnect_and_reconnect() {
    // Connection n sends close frame n, then behaves.
    let closes: [Vec<u8>; 4] = [
        // An application code with a non-ASCII reason.
        {
            let mut p = 4321u16.to_be_bytes().to_vec();
            p.extend_from_slice("bye ☃".as_bytes());
            raw_frame(0x88, &p)
        },
        // 1005 ("no status") must never be sent.
        raw_frame(0x88, &1005u16.to_be_bytes()),
        // A one-byte close payload.
        raw_frame(0x88, &[3]),
        // A reason that is not UTF-8.
        raw_frame(0x88, &[0x0f, 0xa0, 0xff, 0xfe]),
    ];
    let app = one_raw_frame_per_connection(closes.to_vec());
    let reasons: Vec<_> = log(&app)
        .disconnected
        .iter()
        .map(|d| d.reason.clone())
        .collect();
    assert_eq!(reasons.len(), 4, "{reasons:?}");
    assert_eq!(
        reasons[0],
        DisconnectReason::Closed {
            code: Some(4321),
            reason: "bye ☃".into()
        }
    );
    eprintln!("weird close reasons: {reasons:#?}");
}

#[test]
fn server_that_stops_reading_times_out_and_reconnects() {
    let (stop_tx, stop_rx) = mpsc::channel::<()>();
    let stop_rx = std::sync::Mutex::new(stop_rx);
    let url = serve_ws(move |mut p, n| {
        if n > 0 {
            return p.serve();
        }
        let Some(_) = p.join() else { return };
        // Stop reading (and answering) with the connection open.
        let _ = stop_rx
            .lock()
            .unwrap()
            .recv_timeout(Duration::from_secs(60));
    });
    let hb = Duration::from_millis(200);
    let cfg = config(&url).with(|s| {
        s.with_heartbeat(hb)
            .with_heartbeat_timeout(Duration::from_millis(600))
    });
    let mut app = app(cfg);
    let ch = join(&mut app, PhoenixChannel::new(TOPIC));
    wait_joined(&mut app, ch);
    // 16 MB of pushes the server never reads (4 times the default send backlog bound).
    let big = "x".repeat(1 << 20);
    let handles: Vec<_> = (0..16)
        .map(|_| push(&mut app, PushMessage::json(ch, "big", &big).unwrap()))
        .collect();
    pump_until(&mut app, 60, "reconnected and rejoined", |w| {
        w.resource::<Log>().joined.iter().any(|j| j.rejoin)
            && w.get::<ChannelStatus>(ch).map(|s| s.0) == Some(ChannelState::Joined)
    });
    assert_eq!(disconnect_reason(&app), DisconnectReason::HeartbeatTimeout);
    // The first 4 MiB (the default `max_send_backlog`) went to the transport and were lost
    // with the connection; the rest never left: dropped at once, the send queue being full.
    let outcomes: Vec<PushOutcome> = handles
        .into_iter()
        .map(|h| reply(&mut app, h).outcome)
        .collect();
    let lost = PushOutcome::Dropped(DropReason::ConnectionLost);
    let full = PushOutcome::Dropped(DropReason::SendQueueFull);
    let n_lost = outcomes.iter().take_while(|o| **o == lost).count();
    assert!(
        n_lost >= 1 && outcomes[n_lost..].iter().all(|o| *o == full) && n_lost < outcomes.len(),
        "{outcomes:?}"
    );
    let h = push(&mut app, PushMessage::json(ch, "echo", &json!(1)).unwrap());
    assert!(reply(&mut app, h).is_ok());
    let _ = stop_tx.send(());
}

#[test]
fn frames_for_an_old_join_ref_are_dropped() {
    let url = serve_ws(|mut p, n| {
        if n > 0 {
            return p.serve();
        }
        let Some(jr1) = p.join() else { return };
        // A push in flight on the first join; then the server channel "crashes".
        let Some(old) = p.push() else { return };
        p.text(frame(Some(&jr1), Some(&jr1), TOPIC, "phx_error", json!({})));
        let Some(_) = p.join() else { return };
        let Some(ask) = p.push() else { return };
        let ask_ref = s(&ask[1]).to_owned();
        // Everything below names the first join: a reply to the push it had in flight, a
        // message, a close and a crash ...
        p.text(reply_text(
            Some(&jr1),
            s(&old[1]),
            TOPIC,
            "ok",
            json!({"answer": -1}),
        ));
        p.text(frame(Some(&jr1), None, TOPIC, "stale", json!({})));
        p.text(frame(Some(&jr1), Some(&jr1), TOPIC, "phx_close", json!({})));
        p.text(frame(Some(&jr1), Some(&jr1), TOPIC, "phx_error", json!({})));
        // ... and the reply to the live push, with the old join_ref: a ref names one push, so
        // it is taken (phoenix.js would drop it and time the push out).
        p.text(reply_text(
            Some(&jr1),
            &ask_ref,
            TOPIC,
            "ok",
            json!({"answer": 42}),
        ));
        p.send(broadcast("after", json!({})));
        p.serve();
    });
    let mut app = app(config(&url));
    let ch = join(&mut app, PhoenixChannel::new(TOPIC));
    wait_joined(&mut app, ch);
    let old = push(&mut app, PushMessage::json(ch, "old", &json!({})).unwrap());
    assert_eq!(
        reply(&mut app, old).outcome,
        PushOutcome::Dropped(DropReason::ChannelCrashed)
    );
    pump_until(&mut app, 60, "rejoined", |w| {
        w.resource::<Log>().joined.iter().any(|j| j.rejoin)
    });
    let ask = push(&mut app, PushMessage::json(ch, "ask", &json!({})).unwrap());
    pump_until(&mut app, 60, "after", |w| {
        w.resource::<Log>().messages.iter().any(|m| m.is("after"))
    });
    let r = reply(&mut app, ask);
    assert_eq!(
        r.decode_ok::<Value>().unwrap().unwrap(),
        json!({"answer": 42})
    );
    assert_eq!(replies_for(&app, old).len(), 1);
    let l = log(&app);
    assert!(l.messages.iter().all(|m| !m.is("stale")));
    assert_eq!(l.errored.len(), 1, "only the first crash");
    assert!(l.closed.is_empty());
    assert_eq!(channel_state(&app, ch), Some(ChannelState::Joined));
    let s = socket_entity(&mut app);
    let st = *app.world().get::<PhoenixSocket>(s).unwrap().stats();
    assert_eq!((st.stale_dropped, st.ignored_replies), (3, 1), "{st:?}");
}

// ----- handshake-level misbehaviour (raw TCP) ---------------------------------------------

/// Reads an HTTP request head (up to the blank line), or until the client goes.
fn read_request(s: &mut TcpStream) -> Vec<u8> {
    let mut req = Vec::new();
    let mut buf = [0u8; 1024];
    while !req.windows(4).any(|w| w == b"\r\n\r\n") {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => req.extend_from_slice(&buf[..n]),
        }
    }
    req
}

/// Connection 0 is handled by `bad`; later ones are a good server. Returns the app once the
/// channel joined, after at least one failed attempt.
fn bad_handshake(bad: impl Fn(TcpStream) + Send + Sync + 'static) -> App {
    let url = serve_tcp(move |s, n| {
        if n == 0 {
            return bad(s);
        }
        if let Ok(ws) = tungstenite::accept(s) {
            Peer { ws }.serve();
        }
    });
    let cfg = config(&url).with_connect_timeout(Duration::from_millis(300));
    let mut app = app(cfg);
    let ch = join(&mut app, PhoenixChannel::new(TOPIC));
    wait_joined(&mut app, ch);
    let l = log(&app);
    assert!(
        l.failed.len() + l.refused.len() >= 1,
        "a failed attempt first"
    );
    assert!(!l.reconnecting.is_empty());
    assert_eq!(l.connected.len(), 1);
    assert!(
        l.disconnected.is_empty(),
        "a failed connect is not a disconnect"
    );
    app
}

fn first_failure(app: &App) -> String {
    log(app).failed[0].error.clone()
}

#[test]
fn close_during_the_websocket_handshake_fails_the_connect_and_retries() {
    let app = bad_handshake(|mut s| {
        read_request(&mut s);
        let _ = s.write_all(b"HTTP/1.1 101 Switching Protocols\r\nUpgr");
    });
    assert!(log(&app).refused.is_empty());
    eprintln!("close during handshake: {}", first_failure(&app));
}

#[test]
fn silent_upgrade_hits_the_connect_timeout_and_retries() {
    let app = bad_handshake(|mut s| {
        read_request(&mut s);
        // Say nothing until the client gives up.
        let mut buf = [0u8; 64];
        while matches!(s.read(&mut buf), Ok(n) if n > 0) {}
    });
    eprintln!("silent: {}", first_failure(&app));
    assert!(
        first_failure(&app).contains("timed out"),
        "{}",
        first_failure(&app)
    );
}

#[test]
fn garbage_upgrade_response_fails_the_connect_and_retries() {
    let app = bad_handshake(|mut s| {
        read_request(&mut s);
        let _ = s.write_all(b"\x00\x01garbage\xff\r\n\r\n");
    });
    assert!(log(&app).refused.is_empty());
    eprintln!("garbage: {}", first_failure(&app));
}

/// A 101 response for `req` with the given accept key.
fn switching(accept: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
    )
    .into_bytes()
}

#[test]
fn wrong_sec_websocket_accept_fails_the_connect_and_retries() {
    let app = bad_handshake(|mut s| {
        read_request(&mut s);
        let _ = s.write_all(&switching("AAAAAAAAAAAAAAAAAAAAAAAAAAA="));
        let mut buf = [0u8; 64];
        while matches!(s.read(&mut buf), Ok(n) if n > 0) {}
    });
    let e = first_failure(&app);
    eprintln!("wrong accept: {e}");
    assert!(e.to_lowercase().contains("accept"), "{e}");
}

#[test]
fn http_500_and_403_on_upgrade_are_refusals_and_retry() {
    for (status, text) in [(500u16, "Internal Server Error"), (403, "Forbidden")] {
        let app = bad_handshake(move |mut s| {
            read_request(&mut s);
            let resp = format!("HTTP/1.1 {status} {text}\r\nContent-Length: 0\r\n\r\n");
            let _ = s.write_all(resp.as_bytes());
        });
        let l = log(&app);
        assert_eq!(l.refused.len(), 1, "{status}");
        assert_eq!(l.refused[0].status, status);
        assert!(l.failed.is_empty(), "a refusal is not a network failure");
    }
}
