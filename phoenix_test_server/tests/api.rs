//! The public API: builder options, connect check and log, auth token, user channels (the
//! `Channel` trait), presence, max channels, the binary.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use phoenix_test_server::{
    Channel, ChannelContext, HandleResult, JoinResult, Payload, PhoenixVersion, Status,
    TerminateReason, TestServer,
};
use serde_json::{Value, json};
use tungstenite::Message;

#[test]
fn start_serves_on_a_free_port_with_the_socket_url() {
    let server = phoenix_test_server::start().unwrap();
    assert!(server.addr().ip().is_loopback());
    assert_ne!(server.addr().port(), 0);
    assert_eq!(
        server.url(),
        format!("ws://127.0.0.1:{}/socket", server.addr().port())
    );
    let (status, _, body, _, _) = raw_request(
        &server.addr().to_string(),
        "GET / HTTP/1.1\r\nHost: x\r\n\r\n",
    );
    assert_eq!((status, body.as_slice()), (200, &b"ok"[..]));
    let (status, _, _, _, _) = raw_request(
        &server.addr().to_string(),
        "GET /nope HTTP/1.1\r\nHost: x\r\n\r\n",
    );
    assert_eq!(status, 404);
    let (status, _, _, _, _) = raw_request(
        &server.addr().to_string(),
        "GET /socket/longpoll?vsn=2.0.0 HTTP/1.1\r\nHost: x\r\n\r\n",
    );
    assert_eq!(status, 404);
}

#[test]
fn default_connect_check_and_the_connect_log() {
    let server = phoenix_test_server::start().unwrap();
    let url = server.url();
    assert_eq!(
        connect_with(&format!("{url}/websocket?vsn=2.0.0&token=bad"), &[])
            .err()
            .unwrap()
            .status,
        403
    );
    assert_eq!(
        connect_with(&format!("{url}/websocket?vsn=3.0.0"), &[])
            .err()
            .unwrap()
            .status,
        403
    );
    let _ok = connect(&url, "vsn=2.0.0&token=good&user_id=a%20b");
    let log = server.connections();
    assert_eq!(log.len(), 3);
    assert_eq!(
        (log[0].accepted, log[0].params["token"].as_str()),
        (false, "bad")
    );
    assert!(!log[1].accepted);
    assert!(log[2].accepted);
    assert_eq!(log[2].params["user_id"], "a b");
    assert_eq!(log[2].auth_token, None);
    assert!(server.wait_for_open_connections(1, WAIT));
}

#[test]
fn custom_connect_check_gets_params_and_token() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let seen2 = seen.clone();
    let server = TestServer::builder()
        .connect_check(move |params, token| {
            seen2
                .lock()
                .unwrap()
                .push((params.get("user").cloned(), token.map(str::to_string)));
            token == Some("s3cret") || params.get("user").map(String::as_str) == Some("alice")
        })
        .start()
        .unwrap();
    let ws_url = format!("{}/websocket?vsn=2.0.0", server.url());
    let bearer = "phoenix, base64url.bearer.phx.czNjcmV0"; // btoa("s3cret")
    let (_ws, headers) = connect_with(&ws_url, &[("Sec-WebSocket-Protocol", bearer)]).unwrap();
    assert!(headers.contains(&("sec-websocket-protocol".into(), "phoenix".into())));
    assert!(connect_with(&format!("{ws_url}&user=alice"), &[]).is_ok());
    assert_eq!(
        connect_with(&format!("{ws_url}&user=bob"), &[])
            .err()
            .unwrap()
            .status,
        403
    );
    assert_eq!(
        *seen.lock().unwrap(),
        vec![
            (None, Some("s3cret".into())),
            (Some("alice".into()), None),
            (Some("bob".into()), None)
        ]
    );
    assert_eq!(
        server.connections()[0].auth_token.as_deref(),
        Some("s3cret")
    );
}

#[test]
fn auth_token_modes() {
    // Lenient default: an unknown subprotocol alone is ignored.
    let lenient = phoenix_test_server::start().unwrap();
    let url = format!("{}/websocket?vsn=2.0.0", lenient.url());
    let head = |sp: &str, addr: &str| {
        format!(
            "GET /socket/websocket?vsn=2.0.0 HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: {sp}\r\n\r\n"
        )
    };
    let addr = lenient.addr().to_string();
    let (status, headers, _, _, _) = raw_request(&addr, &head("foo", &addr));
    assert_eq!(status, 101);
    assert!(!headers.iter().any(|(k, _)| k == "sec-websocket-protocol"));
    // The default check accepts only "good-token" when a token is sent (Phoenix 1.8 reference app).
    let bad = connect_with(
        &url,
        &[(
            "Sec-WebSocket-Protocol",
            "phoenix, base64url.bearer.phx.YmFk",
        )],
    )
    .err()
    .unwrap();
    assert_eq!(bad.status, 403);
    assert!(
        bad.headers
            .contains(&("sec-websocket-protocol".into(), "phoenix".into()))
    );
    let (status, _, body, _, _) =
        raw_request(&addr, &head("phoenix, base64url.bearer.phx.Pz8-", &addr));
    assert_eq!(
        (status, body.as_slice()),
        (
            500,
            &br#"{"errors":{"detail":"Internal Server Error"}}"#[..]
        )
    );
    // auth_token(true): unknown subprotocols only -> 403.
    let strict = TestServer::builder().auth_token(true).start().unwrap();
    let addr = strict.addr().to_string();
    assert_eq!(raw_request(&addr, &head("foo", &addr)).0, 403);
    let (mut ws, headers) = connect_with(
        &format!("{}/websocket?vsn=2.0.0", strict.url()),
        &[(
            "Sec-WebSocket-Protocol",
            "phoenix, base64url.bearer.phx.Z29vZC10b2tlbg",
        )],
    )
    .unwrap();
    assert!(headers.contains(&("sec-websocket-protocol".into(), "phoenix".into())));
    send_json(&mut ws, json!(["1", "1", "echo:1", "phx_join", {}]));
    recv_json(&mut ws);
    send_json(&mut ws, json!(["1", "2", "echo:1", "whoami", {}]));
    assert_eq!(
        recv_json(&mut ws)[4]["response"],
        json!({"auth_token": "good-token"})
    );
}

/// A user channel exercising the whole `Channel` API.
struct Game {
    events: Arc<Mutex<Vec<String>>>,
    score: i64,
}

impl Channel for Game {
    fn join(&mut self, topic: &str, payload: Payload, ctx: &mut ChannelContext) -> JoinResult {
        self.events.lock().unwrap().push(format!("join {topic}"));
        match payload
            .as_json()
            .and_then(|p| p.get("player"))
            .and_then(Value::as_str)
        {
            Some("panic") => panic!("join blew up"),
            Some(_) => {
                ctx.send_self(json!("after_join"));
                JoinResult::Ok(json!({"topic": topic, "socket_id": ctx.socket_id()}).into())
            }
            None => JoinResult::Error(json!({"reason": "who are you?"}).into()),
        }
    }

    fn handle_in(
        &mut self,
        event: &str,
        payload: Payload,
        ctx: &mut ChannelContext,
    ) -> HandleResult {
        match event {
            "score" => {
                self.score += payload
                    .as_json()
                    .and_then(|p| p["add"].as_i64())
                    .unwrap_or(0);
                ctx.broadcast_from("scored", json!({"score": self.score}));
                HandleResult::ok(json!({"score": self.score}))
            }
            "later" => {
                let reply = ctx.reply_handle();
                std::thread::spawn(move || {
                    std::thread::sleep(Duration::from_millis(30));
                    reply.reply(Status::Other("done".into()), json!({"late": true}));
                });
                HandleResult::NoReply
            }
            "tick_after" => {
                ctx.send_after(Duration::from_millis(20), json!("tick"));
                HandleResult::ok(json!({}))
            }
            "panic" => panic!("handle_in blew up"),
            "bytes" => HandleResult::Reply(Status::Ok, Payload::Binary(vec![1, 2, 3])),
            "quit" => HandleResult::StopWithReply(Status::Ok, json!({"bye": 1}).into()),
            _ => HandleResult::Crash(format!("unknown event {event}")),
        }
    }

    fn handle_info(&mut self, msg: Value, ctx: &mut ChannelContext) -> HandleResult {
        self.events.lock().unwrap().push(format!("info {msg}"));
        match msg.as_str() {
            Some("after_join") => ctx.push("welcome", json!({"join_ref": ctx.join_ref().clone()})),
            Some("tick") => ctx.push("tick", json!({})),
            Some("server_says") => ctx.push("server_says", json!({"topic": ctx.topic()})),
            _ => {}
        }
        HandleResult::NoReply
    }

    fn terminate(&mut self, reason: &TerminateReason, _ctx: &mut ChannelContext) {
        self.events
            .lock()
            .unwrap()
            .push(format!("terminate {reason:?}"));
    }
}

fn game_server(events: &Arc<Mutex<Vec<String>>>) -> TestServer {
    let ev = events.clone();
    TestServer::builder()
        .channel("game:*", move || Game {
            events: ev.clone(),
            score: 0,
        })
        // An exact pattern declared by the user wins over the built-in echo:*.
        .channel("echo:special", || phoenix_test_server::PrivateChannel)
        .start()
        .unwrap()
}

#[test]
fn user_channel_join_push_reply_info_terminate() {
    let events = Arc::new(Mutex::new(Vec::new()));
    let server = game_server(&events);
    let mut a = connect(&server.url(), "vsn=2.0.0&socket_id=alice");
    let mut b = connect(&server.url(), "vsn=2.0.0");

    send_json(&mut a, json!(["1", "1", "game:1", "phx_join", {}]));
    assert_eq!(
        recv_json(&mut a),
        json!(["1", "1", "game:1", "phx_reply", {"response": {"reason": "who are you?"}, "status": "error"}])
    );
    send_json(
        &mut a,
        json!(["2", "2", "game:1", "phx_join", {"player": "a"}]),
    );
    assert_eq!(
        recv_json(&mut a)[4]["response"],
        json!({"topic": "game:1", "socket_id": "alice"})
    );
    assert_eq!(
        recv_json(&mut a),
        json!(["2", null, "game:1", "welcome", {"join_ref": "2"}])
    );
    send_json(&mut b, json!([7, 1, "game:1", "phx_join", {"player": "b"}]));
    assert_eq!(recv_json(&mut b)[0], 7);
    assert_eq!(
        recv_json(&mut b),
        json!([7, null, "game:1", "welcome", {"join_ref": 7}])
    );

    // broadcast_from: b gets it, a gets only its reply.
    send_json(&mut a, json!(["2", "3", "game:1", "score", {"add": 5}]));
    assert_eq!(
        recv_json(&mut a),
        json!(["2", "3", "game:1", "phx_reply", {"response": {"score": 5}, "status": "ok"}])
    );
    assert_eq!(
        recv_json(&mut b),
        json!([null, null, "game:1", "scored", {"score": 5}])
    );

    // Delayed reply from another thread, custom status.
    send_json(&mut a, json!(["2", "4", "game:1", "later", {}]));
    assert_eq!(
        recv_json(&mut a),
        json!(["2", "4", "game:1", "phx_reply", {"response": {"late": true}, "status": "done"}])
    );

    // send_after -> handle_info -> push.
    send_json(&mut a, json!(["2", "5", "game:1", "tick_after", {}]));
    assert_eq!(recv_json(&mut a)[3], "phx_reply");
    assert_eq!(recv_json(&mut a), json!(["2", null, "game:1", "tick", {}]));

    // Server-side broadcast and send_info.
    server.broadcast("game:1", "news", json!({"n": 1}));
    assert_eq!(
        recv_json(&mut a),
        json!([null, null, "game:1", "news", {"n": 1}])
    );
    assert_eq!(
        recv_json(&mut b),
        json!([null, null, "game:1", "news", {"n": 1}])
    );
    server.handle().send_info("game:1", json!("server_says"));
    assert_eq!(
        recv_json(&mut a),
        json!(["2", null, "game:1", "server_says", {"topic": "game:1"}])
    );
    assert_eq!(recv_json(&mut b)[3], "server_says");

    // Binary reply from a user channel.
    send_json(&mut a, json!(["2", "6", "game:1", "bytes", {}]));
    assert_eq!(
        recv(&mut a),
        Message::Binary(b"\x01\x01\x01\x06\x0226game:1ok\x01\x02\x03".to_vec())
    );

    // A panic in handle_in is a crash: phx_error, channel forgotten.
    send_json(&mut b, json!([7, 2, "game:1", "panic", {}]));
    assert_eq!(recv_json(&mut b), json!([7, 7, "game:1", "phx_error", {}]));
    send_json(&mut b, json!([7, 3, "game:1", "score", {}]));
    assert_eq!(
        recv_json(&mut b)[4]["response"]["reason"],
        "unmatched topic"
    );

    // A panic in join: "join crashed".
    send_json(
        &mut b,
        json!(["8", "8", "game:2", "phx_join", {"player": "panic"}]),
    );
    assert_eq!(
        recv_json(&mut b)[4],
        json!({"response": {"reason": "join crashed"}, "status": "error"})
    );

    // Stop with reply: reply, then phx_close.
    send_json(&mut a, json!(["2", "7", "game:1", "quit", {}]));
    assert_eq!(recv_json(&mut a)[4]["response"], json!({"bye": 1}));
    assert_eq!(
        recv_json(&mut a),
        json!(["2", "2", "game:1", "phx_close", {}])
    );

    // User exact pattern overrides the built-in echo:*.
    send_json(&mut a, json!(["9", "9", "echo:special", "phx_join", {}]));
    assert_eq!(recv_json(&mut a)[4]["response"]["reason"], "unauthorized");

    drop(a);
    drop(b);
    assert!(server.wait_for_open_connections(0, WAIT));
    let ev = events.lock().unwrap().clone();
    assert!(ev.contains(&"info \"after_join\"".to_string()), "{ev:?}");
    assert!(
        ev.iter().any(|e| e.starts_with("terminate Crashed")),
        "{ev:?}"
    );
    assert!(ev.contains(&"terminate Stopped".to_string()), "{ev:?}");
}

#[test]
fn channels_end_with_the_right_terminate_reason() {
    let events = Arc::new(Mutex::new(Vec::new()));
    let server = game_server(&events);
    let mut a = connect(&server.url(), "vsn=2.0.0");
    for (jr, topic) in [
        ("1", "game:left"),
        ("2", "game:dup"),
        ("3", "game:dup"),
        ("4", "game:closed"),
    ] {
        send_json(&mut a, json!([jr, jr, topic, "phx_join", {"player": "x"}]));
        assert_eq!(recv_json(&mut a)[4]["status"], "ok");
        if jr == "3" {
            assert_eq!(
                recv_json(&mut a),
                json!(["2", "2", "game:dup", "phx_close", {}])
            );
        }
        assert_eq!(recv_json(&mut a)[3], "welcome");
    }
    send_json(&mut a, json!(["1", "5", "game:left", "phx_leave", {}]));
    assert_eq!(recv_json(&mut a)[3], "phx_reply");
    assert_eq!(recv_json(&mut a)[3], "phx_close");
    client_close(&mut a, 1000);
    assert_eq!(read_close(&mut a, false), Some(1000));
    assert!(server.wait_for_open_connections(0, WAIT));
    let ev: Vec<String> = events
        .lock()
        .unwrap()
        .iter()
        .filter(|e| e.starts_with("terminate"))
        .cloned()
        .collect();
    for want in ["terminate Replaced", "terminate Left", "terminate Closed"] {
        assert_eq!(
            ev.iter().filter(|e| *e == want).count(),
            if want == "terminate Closed" { 2 } else { 1 },
            "{ev:?}"
        );
    }
}

#[test]
fn max_channels_per_connection() {
    let server = TestServer::builder().max_channels(3).start().unwrap();
    let mut ws = connect(&server.url(), "vsn=2.0.0");
    for i in 1..=3 {
        send_json(
            &mut ws,
            json!([
                i.to_string(),
                i.to_string(),
                format!("echo:m{i}"),
                "phx_join",
                {}
            ]),
        );
        assert_eq!(recv_json(&mut ws)[4]["status"], "ok");
    }
    let too_many = json!({"response": {"reason": "too many channels joined"}, "status": "error"});
    send_json(&mut ws, json!(["4", "4", "echo:m4", "phx_join", {}]));
    assert_eq!(
        recv_json(&mut ws),
        json!(["4", "4", "echo:m4", "phx_reply", too_many])
    );
    // Route lookup comes first; the limit is checked before join/3.
    send_json(&mut ws, json!(["9", "9", "nope:1", "phx_join", {}]));
    assert_eq!(
        recv_json(&mut ws)[4]["response"]["reason"],
        "unmatched topic"
    );
    send_json(&mut ws, json!(["10", "10", "private:x", "phx_join", {}]));
    assert_eq!(recv_json(&mut ws)[4], too_many);
    // Rejoining a joined topic at the limit is allowed.
    send_json(&mut ws, json!(["5", "5", "echo:m1", "phx_join", {}]));
    assert_eq!(recv_json(&mut ws)[4]["status"], "ok");
    assert_eq!(
        recv_json(&mut ws),
        json!(["1", "1", "echo:m1", "phx_close", {}])
    );
    // Leave frees the slot once its phx_close is sent (here: before the next frame is read).
    send_json(&mut ws, json!(["2", "6", "echo:m2", "phx_leave", {}]));
    send_json(&mut ws, json!(["7", "7", "echo:new1", "phx_join", {}]));
    assert_eq!(
        recv_json(&mut ws),
        json!(["2", "6", "echo:m2", "phx_reply", {"response": {}, "status": "ok"}])
    );
    assert_eq!(
        recv_json(&mut ws),
        json!(["2", "2", "echo:m2", "phx_close", {}])
    );
    assert_eq!(recv_json(&mut ws)[4]["status"], "ok");
}

#[test]
fn presence_across_connections_and_dropped_websockets() {
    let server = phoenix_test_server::start().unwrap();
    let mut a = connect(&server.url(), "vsn=2.0.0");
    send_json(
        &mut a,
        json!(["1", "1", "room:p", "phx_join", {"user_id": "alice"}]),
    );
    assert_eq!(recv_json(&mut a)[3], "phx_reply");
    assert_eq!(recv_json(&mut a)[3], "presence_diff");
    assert_eq!(recv_json(&mut a)[3], "presence_state");
    let mut b1 = connect(&server.url(), "vsn=2.0.0");
    let mut b2 = connect(&server.url(), "vsn=2.0.0");
    for b in [&mut b1, &mut b2] {
        send_json(b, json!(["1", "1", "room:p", "phx_join", {"user_id": 42}]));
        assert_eq!(recv_json(b)[3], "phx_reply");
        assert_eq!(recv_json(b)[3], "presence_diff");
        assert_eq!(recv_json(b)[3], "presence_state");
    }
    let list = server.presence_list("room:p");
    assert_eq!(list["alice"]["metas"].as_array().unwrap().len(), 1);
    let metas = list["42"]["metas"].as_array().unwrap();
    assert_eq!(metas.len(), 2);
    let (r1, r2) = (
        metas[0]["phx_ref"].as_str().unwrap(),
        metas[1]["phx_ref"].as_str().unwrap(),
    );
    assert_ne!(r1, r2);
    assert!(metas[0]["online_at"].as_u64().unwrap() > 1_700_000_000);
    // alice saw two joins for "42".
    assert_eq!(
        recv_json(&mut a)[4]["joins"]["42"]["metas"][0]["phx_ref"],
        r1
    );
    assert_eq!(
        recv_json(&mut a)[4]["joins"]["42"]["metas"][0]["phx_ref"],
        r2
    );
    // Dropping b1's TCP connection (no close frame) gives the leave diff for its meta only.
    drop(b1);
    let leave = recv_json(&mut a);
    assert_eq!(
        leave,
        json!([null, null, "room:p", "presence_diff", {"joins": {}, "leaves": {"42": {"metas": [metas[0].clone()]}}}])
    );
    assert_eq!(
        server.presence_list("room:p")["42"]["metas"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    drop(b2);
}

#[test]
fn server_disconnect_by_socket_id() {
    for (version, code) in [(PhoenixVersion::V1_7, 1000), (PhoenixVersion::V1_8, 1001)] {
        let server = TestServer::builder()
            .phoenix_version(version)
            .start()
            .unwrap();
        let mut a = connect(&server.url(), "vsn=2.0.0&socket_id=user:1");
        let mut b = connect(&server.url(), "vsn=2.0.0&socket_id=user:2");
        send_json(&mut a, json!(["1", "1", "echo:1", "phx_join", {}]));
        recv_json(&mut a);
        server.disconnect("user:1");
        assert_eq!(read_close(&mut a, false), Some(code));
        send_json(&mut b, json!([null, "1", "phoenix", "heartbeat", {}]));
        assert_eq!(recv_json(&mut b)[1], "1");
    }
}

#[test]
fn slow_replies_later_without_blocking_the_connection() {
    let server = phoenix_test_server::start().unwrap();
    let mut ws = connect(&server.url(), "vsn=2.0.0");
    send_json(&mut ws, json!(["1", "1", "echo:1", "phx_join", {}]));
    recv_json(&mut ws);
    let t0 = Instant::now();
    send_json(&mut ws, json!(["1", "2", "echo:1", "slow", {"ms": 200}]));
    send_json(&mut ws, json!([null, "hb", "phoenix", "heartbeat", {}]));
    assert_eq!(recv_json(&mut ws)[1], "hb");
    assert_eq!(
        recv_json(&mut ws),
        json!(["1", "2", "echo:1", "phx_reply", {"response": {"ms": 200}, "status": "ok"}])
    );
    assert!(t0.elapsed() >= Duration::from_millis(190));
}

#[test]
fn ping_gets_pong_and_counters_count() {
    let server = phoenix_test_server::start().unwrap();
    let mut ws = connect(&server.url(), "vsn=2.0.0");
    ws.send(Message::Ping(b"hi".to_vec())).unwrap();
    ws.get_ref().set_read_timeout(Some(WAIT)).unwrap();
    match ws.read().unwrap() {
        Message::Pong(p) => assert_eq!(p, b"hi"),
        other => panic!("unexpected {other:?}"),
    }
    send_json(&mut ws, json!([null, "1", "phoenix", "heartbeat", {}]));
    recv_json(&mut ws);
    assert_eq!(server.frames_received(), 1);
    assert!(wait_until(WAIT, || server.frames_sent() == 1));
    assert_eq!(server.open_connections(), 1);
}

#[test]
fn binary_broadcast_and_push() {
    let server = phoenix_test_server::start().unwrap();
    let mut a = connect(&server.url(), "vsn=2.0.0");
    let mut b = connect(&server.url(), "vsn=2.0.0");
    for ws in [&mut a, &mut b] {
        send_json(ws, json!(["1", "1", "room:bin", "phx_join", {}]));
        for _ in 0..3 {
            recv_json(ws);
        }
    }
    recv_json(&mut a); // b's join diff
    send_binary(
        &mut a,
        binary_push("1", "2", "room:bin", "shout_binary", &[0xde, 0xad]),
    );
    let kind2 = b"\x02\x08\x0croom:binshout_binary\xde\xad".to_vec();
    assert_eq!(recv(&mut a), Message::Binary(kind2.clone()));
    assert_eq!(recv_json(&mut a)[1], "2");
    assert_eq!(recv(&mut b), Message::Binary(kind2));
}

#[test]
fn many_connections_in_parallel() {
    let server = phoenix_test_server::start().unwrap();
    let url = server.url();
    let done = Arc::new(AtomicUsize::new(0));
    let threads: Vec<_> = (0..20)
        .map(|i| {
            let url = url.clone();
            let done = done.clone();
            std::thread::spawn(move || {
                let mut ws = connect(&url, "vsn=2.0.0");
                let topic = format!("echo:{i}");
                send_json(&mut ws, json!(["1", "1", topic, "phx_join", {}]));
                recv_json(&mut ws);
                for r in 0..50 {
                    send_json(&mut ws, json!(["1", r, topic, "echo", {"r": r}]));
                    assert_eq!(recv_json(&mut ws)[4]["response"]["r"], r);
                }
                done.fetch_add(1, Ordering::SeqCst);
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(done.load(Ordering::SeqCst), 20);
}

#[test]
fn binary_prints_its_url_and_serves() {
    let exe = env!("CARGO_BIN_EXE_phoenix_test_server");
    let help = Command::new(exe).arg("--help").output().unwrap();
    assert!(help.status.success());
    assert!(String::from_utf8_lossy(&help.stdout).contains("--idle-timeout-ms"));
    assert!(
        !Command::new(exe)
            .arg("--bogus")
            .output()
            .unwrap()
            .status
            .success()
    );

    let mut child = Command::new(exe)
        .args([
            "--port",
            "0",
            "--idle-timeout-ms",
            "5000",
            "--phoenix-version",
            "1.8",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line.trim().to_string();
    assert!(
        url.starts_with("ws://127.0.0.1:") && url.ends_with("/socket"),
        "{url}"
    );
    let mut ws = connect(&url, "vsn=2.0.0");
    send_json(&mut ws, json!(["1", "1", "echo:1", "phx_join", {}]));
    recv_json(&mut ws);
    send_json(&mut ws, json!(["1", "2", "echo:1", "crash", {}]));
    assert_eq!(recv_json(&mut ws)[4], json!({"reason": "channel_crash"}));
    child.kill().unwrap();
    child.wait().unwrap();
}

/// With `tolerate_bad_frames`, every kind of undecodable frame (and one whose topic or event is
/// not a string) gets the `phoenix`-topic error
/// reply and the connection (and its channels) stays up; by default the connection closes, as
/// stock Phoenix does.
#[test]
fn tolerate_bad_frames_answers_instead_of_closing() {
    let server = TestServer::builder()
        .tolerate_bad_frames(true)
        .start()
        .unwrap();
    let mut ws = connect(&server.url(), "vsn=2.0.0");
    send_json(&mut ws, json!(["1", "1", "echo:t", "phx_join", {}]));
    assert_eq!(recv_json(&mut ws)[4]["status"], "ok");
    let mut deep = String::new();
    for _ in 0..200 {
        deep.push('[');
    }
    for _ in 0..200 {
        deep.push(']');
    }
    let bad = [
        "this is not json".to_string(),
        "[1]".to_string(),
        r#"{"topic":"x"}"#.to_string(),
        r#"["1","2",5,"echo",{}]"#.to_string(),
        r#"["1","2","echo:t",["echo"],{}]"#.to_string(),
        r#"["1","2","echo:t","echo",{"x":1e400}]"#.to_string(),
        format!(r#"["1","2","echo:t","echo",{deep}]"#),
    ];
    let want = json!([null, null, "phoenix", "phx_reply",
        {"response": {"reason": "unmatched topic"}, "status": "error"}]);
    for frame in &bad {
        send_text(&mut ws, frame);
        assert_eq!(recv_json(&mut ws), want, "{frame:.40}");
    }
    send_binary(&mut ws, vec![0, 200, 1, 2, 3]);
    assert_eq!(recv_json(&mut ws), want);
    // Still open, the channel still answers.
    send_json(
        &mut ws,
        json!(["1", "3", "echo:t", "echo", {"still": "here"}]),
    );
    let reply = recv_json(&mut ws);
    assert_eq!(reply[4]["response"], json!({"still": "here"}), "{reply}");

    // The default: the connection closes on the first bad frame.
    let strict = TestServer::builder().start().unwrap();
    let mut ws = connect(&strict.url(), "vsn=2.0.0");
    send_text(&mut ws, "this is not json");
    assert!(read_close(&mut ws, true).is_some());
}
