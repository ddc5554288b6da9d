//! Bad input from the network never panics the game or a server, and play goes on.
//! - Either server (embedded, or the Phoenix app in `server/` with `ARENA_URL`) answers hostile
//!   pushes and joins with the error replies of `PROTOCOL.md`, and the channel keeps working.
//! - The game's networking, fed garbage by a hostile server, counts and logs it, stays joined,
//!   and still applies the next good message.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use arena::net::{
    ArenaConnection, ArenaNetPlugin, NetStats, NetStatus, PlayerIndex, PlayerProfile,
};
use arena::protocol::LOBBY;
use bevy::prelude::*;
use bevy_phoenix_channels::prelude::*;
use phoenix_test_server::{Channel, ChannelContext, HandleResult, JoinResult, Payload, TestServer};
use serde_json::{Value, json};

fn pump(app: &mut App, what: &str, mut done: impl FnMut(&mut App) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        app.update();
        if done(app) {
            return;
        }
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// `ARENA_URL`, or a fresh embedded server.
fn arena_server() -> (Option<TestServer>, String) {
    match std::env::var("ARENA_URL") {
        Ok(url) if !url.is_empty() => (None, url),
        _ => {
            let s = arena::server::start(&arena::server::ServerOptions {
                bind: [127, 0, 0, 1].into(),
                port: 0,
                static_dir: None,
            })
            .expect("start the embedded server");
            let url = format!("ws://127.0.0.1:{}/socket", s.addr().port());
            (Some(s), url)
        }
    }
}

fn joined_player(url: &str, id: &str) -> App {
    let mut app = App::new();
    app.add_plugins(MinimalPlugins)
        .add_plugins(ArenaNetPlugin::new(
            url,
            PlayerProfile {
                id: id.into(),
                name: "Mallory".into(),
                color: 4,
            },
        ));
    pump(&mut app, "joined", |a| {
        a.world().resource::<ArenaConnection>().status == NetStatus::Joined
    });
    app
}

/// Sends `event` with `payload` on the lobby and returns the reply's outcome.
fn ask(app: &mut App, event: &str, payload: OutPayload) -> PushOutcome {
    let push = PushMessage::new(LOBBY, event, payload).with_timeout(Duration::from_secs(10));
    let handle = push.handle;
    app.world_mut().write_message(push);
    let mut outcome = None;
    pump(app, &format!("the reply to {event}"), |a| {
        let msgs = a.world().resource::<Messages<PushReplied>>();
        let mut cursor = msgs.get_cursor();
        if let Some(r) = cursor.read(msgs).find(|r| r.handle == handle) {
            outcome = Some(r.outcome.clone());
        }
        outcome.is_some()
    });
    outcome.expect("an outcome")
}

fn reason(outcome: &PushOutcome) -> Option<String> {
    match outcome {
        PushOutcome::Error(p) => p
            .decode::<Value>()
            .ok()?
            .get("reason")?
            .as_str()
            .map(String::from),
        _ => None,
    }
}

fn json_payload(v: Value) -> OutPayload {
    OutPayload::json(&v).expect("encodes")
}

#[test]
fn the_server_answers_hostile_pushes_with_errors_and_keeps_the_channel() {
    let (_server, url) = arena_server();
    let tag = format!("{:04x}", fastrand::u16(..));
    let mut app = joined_player(&url, &format!("mallory-{tag}"));
    // 100 kB: far beyond any limit, under the Phoenix app's 1 MiB frame limit.
    let huge = "A".repeat(100_000);
    let cases: Vec<(&str, OutPayload, &str)> = vec![
        (
            "move",
            json_payload(json!({"x": "left", "y": 1, "seq": 1})),
            "bad move",
        ),
        ("move", json_payload(json!({"x": 1, "y": 1})), "bad move"),
        (
            "move",
            json_payload(json!({"x": 1, "y": 1, "seq": -3})),
            "bad move",
        ),
        (
            "move",
            json_payload(json!({"x": 1, "y": 1, "seq": 1.5})),
            "bad move",
        ),
        ("move", json_payload(json!([1, 2, 3])), "bad move"),
        ("move", json_payload(json!("NaN")), "bad move"),
        (
            "move",
            json_payload(json!({"x": 1e308, "y": 10, "seq": 1})),
            "out of bounds",
        ),
        (
            "move",
            json_payload(json!({"x": -0.5, "y": 10, "seq": 1})),
            "out of bounds",
        ),
        (
            "move",
            OutPayload::binary(vec![0u8, 159, 146, 150]),
            "bad move",
        ),
        ("chat", json_payload(json!({"text": huge})), "too long"),
        ("chat", json_payload(json!({"text": 42})), "bad chat"),
        (
            "chat",
            json_payload(json!({"text": {"nested": [1, 2]}})),
            "bad chat",
        ),
        ("chat", json_payload(json!("hello")), "bad chat"),
        ("chat", json_payload(json!({"text": " \t\n "})), "empty"),
        ("explode", json_payload(json!({})), "unknown event"),
        (&huge[..64], json_payload(json!({})), "unknown event"),
    ];
    for (event, payload, want) in cases {
        let outcome = ask(&mut app, event, payload);
        assert_eq!(
            reason(&outcome).as_deref(),
            Some(want),
            "{event:.20}: {outcome:?}"
        );
    }
    // Teleporting across the arena is refused as too fast (and a `correct` is pushed).
    let corrections = app.world().resource::<NetStats>().corrections;
    let far = ask(
        &mut app,
        "move",
        json_payload(json!({"x": 1.0, "y": 1.0, "seq": 2})),
    );
    let far2 = ask(
        &mut app,
        "move",
        json_payload(json!({"x": 1199.0, "y": 799.0, "seq": 3})),
    );
    assert!(
        [reason(&far), reason(&far2)].contains(&Some("too fast".into())),
        "{far:?} {far2:?}"
    );
    pump(&mut app, "a correct push", |a| {
        a.world().resource::<NetStats>().corrections > corrections
    });
    // The channel still works: a good chat is accepted.
    let ok = ask(
        &mut app,
        "chat",
        json_payload(json!({"text": "still here"})),
    );
    assert!(matches!(ok, PushOutcome::Ok(_)), "{ok:?}");
    assert_eq!(
        app.world().resource::<ArenaConnection>().status,
        NetStatus::Joined
    );

    // The chat rate limit: a burst of 5 more is accepted at most; the rest are refused.
    let mut limited = 0;
    for i in 0..8 {
        let o = ask(
            &mut app,
            "chat",
            json_payload(json!({"text": format!("spam {i}")})),
        );
        if reason(&o).as_deref() == Some("rate limited") {
            limited += 1;
        }
    }
    assert!(limited >= 3, "{limited} of 8 rate limited");
}

#[test]
fn hostile_joins_are_refused_with_a_reason() {
    let (_server, url) = arena_server();
    let cases = [
        (json!({"id": "", "name": "A", "color": 1}), "invalid id"),
        (json!({"id": "a b", "name": "A", "color": 1}), "invalid id"),
        (
            json!({"id": "x".repeat(10_000), "name": "A", "color": 1}),
            "invalid id",
        ),
        (
            json!({"id": "ok-1", "name": "   ", "color": 1}),
            "invalid name",
        ),
        (
            json!({"id": "ok-1", "name": "N".repeat(100_000), "color": 1}),
            "invalid name",
        ),
        (
            json!({"id": "ok-1", "name": ["A"], "color": 1}),
            "invalid name",
        ),
        (
            json!({"id": "ok-1", "name": "A", "color": 8}),
            "invalid color",
        ),
        (
            json!({"id": "ok-1", "name": "A", "color": "red"}),
            "invalid color",
        ),
        (
            json!({"id": "ok-1", "name": "A", "color": -1}),
            "invalid color",
        ),
        (json!(["not", "an", "object"]), "invalid payload"),
    ];
    let mut app = App::new();
    app.add_plugins((MinimalPlugins, PhoenixChannelsPlugin::new(url)));
    for (payload, want) in cases {
        let e = app
            .world_mut()
            .spawn(PhoenixChannel::new(LOBBY).with_payload(&payload).unwrap())
            .id();
        let mut got = None;
        pump(&mut app, &format!("the refusal {want}"), |a| {
            let msgs = a.world().resource::<Messages<ChannelErrored>>();
            let mut cursor = msgs.get_cursor();
            for err in cursor.read(msgs).filter(|m| m.entity == e) {
                if let ChannelError::JoinRefused(p) = &err.reason {
                    got = p.decode::<Value>().ok();
                }
            }
            got.is_some()
        });
        assert_eq!(
            got.and_then(|v| v["reason"].as_str().map(String::from))
                .as_deref(),
            Some(want)
        );
        app.world_mut().entity_mut(e).despawn();
    }
}

/// A server that answers the join with a good snapshot and then pushes garbage.
struct Hostile;

impl Channel for Hostile {
    fn join(&mut self, _topic: &str, _payload: Payload, ctx: &mut ChannelContext) -> JoinResult {
        ctx.send_self(json!("garbage"));
        JoinResult::Ok(
            json!({"you": "me", "server": "hostile", "arena": {"w": 1200, "h": 800, "max_speed": 320},
                   "x": 100.0, "y": 100.0, "players": []})
            .into(),
        )
    }

    fn handle_info(&mut self, _msg: Value, ctx: &mut ChannelContext) -> HandleResult {
        let huge = "Z".repeat(1 << 20);
        for (event, payload) in [
            ("moved", json!({"id": 5, "x": 1, "y": 2, "seq": 1})),
            (
                "moved",
                json!({"id": "ghost", "x": "NaN", "y": 2, "seq": 1}),
            ),
            (
                "moved",
                json!({"id": "ghost", "x": f64::MAX, "y": 2.0, "seq": 1}),
            ),
            (
                "moved",
                json!({"id": "ghost", "x": -50.0, "y": 2.0, "seq": 1}),
            ),
            ("moved", json!([1, 2, 3])),
            (
                "chat",
                json!({"id": "ghost", "name": huge, "text": 7, "at": 0}),
            ),
            ("chat", json!("just a string")),
            ("correct", json!({"x": "here", "y": [], "reason": 1})),
            ("presence_diff", json!({"joins": "no", "leaves": 5})),
            ("made_up_event", json!({"anything": huge})),
        ] {
            ctx.push(event, payload);
        }
        ctx.push(
            "moved",
            json!({"id": "ghost", "x": 300.0, "y": 200.0, "seq": 0}),
        );
        HandleResult::NoReply
    }

    fn handle_in(&mut self, _e: &str, _p: Payload, _ctx: &mut ChannelContext) -> HandleResult {
        HandleResult::NoReply
    }
}

#[test]
fn the_game_survives_a_hostile_server() {
    let server = TestServer::builder()
        .without_builtin_channels()
        .channel("arena:*", || Hostile)
        .start()
        .expect("start");
    let url = format!("ws://127.0.0.1:{}/socket", server.addr().port());
    let mut app = joined_player(&url, "me");
    pump(&mut app, "the good message after the garbage", |a| {
        a.world().resource::<PlayerIndex>().0.contains_key("ghost")
            && a.world().resource::<NetStats>().bad_payloads >= 8
    });
    // Still in the room, still connected; the garbage was counted, not applied.
    for _ in 0..20 {
        app.update();
    }
    let stats = app.world().resource::<NetStats>().clone();
    assert!(stats.bad_payloads >= 8, "{stats:?}");
    assert_eq!(
        app.world().resource::<ArenaConnection>().status,
        NetStatus::Joined
    );
    assert_eq!(stats.corrections, 0, "a bad correct must not move us");
}
