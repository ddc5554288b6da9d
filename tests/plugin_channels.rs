//! Channels through the plugin: connect, join (ok, refused, unmatched), push and its outcomes,
//! server pushes, broadcasts, binary payloads, leave, duplicate join. Against the test server,
//! or PHOENIX_URL.
#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use bevy::diagnostic::FrameCount;
use bevy::prelude::*;
use bevy_phoenix_channels::prelude::*;
use serde_json::{Value, json};
use support::*;

fn value(p: &Payload) -> Value {
    p.to_value().unwrap()
}

fn refused_reason(e: &ChannelErrored) -> Option<Value> {
    match &e.reason {
        ChannelError::JoinRefused(p) => Some(value(p)),
        _ => None,
    }
}

#[test]
fn connect() {
    let server = Server::start();
    let mut app = app(config(&server.url));
    let s = socket_entity(&mut app);
    assert_eq!(
        app.world().get::<SocketStatus>(s).unwrap().0,
        ConnectionState::Disconnected,
        "nothing runs before the first update"
    );
    wait_connected(&mut app);
    let l = log(&app);
    assert_eq!(l.connected.len(), 1);
    assert_eq!(l.connected[0].entity, s);
    assert!(l.disconnected.is_empty() && l.failed.is_empty() && l.refused.is_empty());
    let sock = app.world().get::<PhoenixSocket>(s).unwrap();
    assert_eq!(sock.state(), ConnectionState::Open);
    assert_eq!(sock.stats().connects, 1);
    assert_eq!(sock.stats().reconnects, 0);
    if let Some(local) = &server.local {
        assert_eq!(local.connections().len(), 1);
        assert!(local.connections()[0].accepted);
        assert_eq!(
            local.connections()[0].params.get("vsn").map(String::as_str),
            Some("2.0.0")
        );
    }
}

#[test]
fn join_ok() {
    let server = Server::start();
    let mut app = app(config(&server.url));
    let topic = unique("echo:join-");
    let ch = join(&mut app, PhoenixChannel::new(&topic));
    assert_eq!(channel_state(&app, ch), Some(ChannelState::Joining));
    wait_joined(&mut app, ch);
    let s = socket_entity(&mut app);
    let l = log(&app);
    assert_eq!(l.joined.len(), 1);
    let j = &l.joined[0];
    assert_eq!((j.entity, &*j.topic, j.rejoin), (ch, topic.as_str(), false));
    assert_eq!(j.socket, s);
    assert_eq!(value(&j.response), json!({ "joined": topic }));
    let link = *app.world().get::<ChannelLink>(ch).unwrap();
    assert_eq!(link.socket, socket_entity(&mut app));
    let sock = app.world().get::<PhoenixSocket>(link.socket).unwrap();
    assert_eq!(sock.channel_entity(&topic), Some(ch));
    assert!(log(&app).errored.is_empty());
}

#[test]
fn join_refused_then_rejoins() {
    let server = Server::start();
    let mut app = app(config(&server.url));
    let topic = unique("private:");
    let ch = join(&mut app, PhoenixChannel::new(&topic));
    // A refused join errors the channel, and it keeps trying (rejoin backoff 200 ms).
    pump_until(&mut app, 10, "two refused joins", |w| {
        w.resource::<Log>().errored.len() >= 2
    });
    let l = log(&app);
    for e in &l.errored {
        assert_eq!(e.entity, ch);
        assert_eq!(&*e.topic, topic.as_str());
        assert_eq!(
            refused_reason(e),
            Some(json!({"reason": "unauthorized"})),
            "{e:?}"
        );
    }
    assert!(l.joined.is_empty());
    assert_ne!(channel_state(&app, ch), Some(ChannelState::Joined));
    assert!(l.disconnected.is_empty(), "the socket stays up");
    // The same channel with the password joins.
    let good = join(
        &mut app,
        PhoenixChannel::new(unique("private:"))
            .with_payload(&json!({"password": "secret"}))
            .unwrap(),
    );
    wait_joined(&mut app, good);
}

#[test]
fn join_unmatched_topic() {
    let server = Server::start();
    let mut app = app(config(&server.url));
    let topic = unique("nope:");
    let ch = join(&mut app, PhoenixChannel::new(&topic));
    pump_until(&mut app, 10, "unmatched join refused", |w| {
        !w.resource::<Log>().errored.is_empty()
    });
    let e = &log(&app).errored[0];
    assert_eq!(e.entity, ch);
    assert_eq!(
        refused_reason(e),
        Some(json!({"reason": "unmatched topic"}))
    );
    assert_ne!(channel_state(&app, ch), Some(ChannelState::Joined));
}

#[test]
fn push_reply_ok_and_error() {
    let server = Server::start();
    let mut app = app(config(&server.url));
    let topic = unique("echo:");
    let ch = join(&mut app, PhoenixChannel::new(&topic));
    wait_joined(&mut app, ch);

    let ok = push(
        &mut app,
        PushMessage::json(ch, "echo", &json!({"n": [1, 2, 3]})).unwrap(),
    );
    // By topic on the default socket too.
    let by_topic = push(
        &mut app,
        PushMessage::json(topic.as_str(), "echo", &"just a string").unwrap(),
    );
    let err = push(
        &mut app,
        PushMessage::json(ch, "error_reply", &json!({})).unwrap(),
    );

    let r = reply(&mut app, ok);
    assert_eq!(
        (r.channel, &*r.topic, &*r.event),
        (ch, topic.as_str(), "echo")
    );
    assert_eq!(
        r.outcome,
        PushOutcome::Ok(Payload::from_json(r#"{"n":[1,2,3]}"#)),
        "{r:?}"
    );
    let r = reply(&mut app, by_topic);
    assert_eq!(r.channel, ch);
    assert_eq!(
        r.decode_ok::<String>().unwrap().unwrap(),
        "just a string".to_string()
    );
    let r = reply(&mut app, err);
    assert!(!r.is_ok());
    match &r.outcome {
        PushOutcome::Error(p) => assert_eq!(value(p), json!({"reason": "requested"})),
        other => panic!("expected an error reply, got {other:?}"),
    }
    // The channel survives an error reply.
    assert_eq!(channel_state(&app, ch), Some(ChannelState::Joined));
    let again = push(&mut app, PushMessage::json(ch, "echo", &1).unwrap());
    assert_eq!(
        reply(&mut app, again).decode_ok::<i64>().unwrap().unwrap(),
        1
    );
}

#[test]
fn push_timeout() {
    let server = Server::start();
    let mut app =
        app(config(&server.url).with(|s| s.with_push_timeout(Duration::from_millis(300))));
    let ch = join(&mut app, PhoenixChannel::new(unique("echo:")));
    wait_joined(&mut app, ch);
    let t0 = std::time::Instant::now();
    let h = push(
        &mut app,
        PushMessage::json(ch, "noreply", &json!({})).unwrap(),
    );
    // A per-push timeout overrides the socket's.
    let h2 = push(
        &mut app,
        PushMessage::json(ch, "noreply", &json!({}))
            .unwrap()
            .with_timeout(Duration::from_millis(100)),
    );
    let r2 = reply(&mut app, h2);
    assert_eq!(r2.outcome, PushOutcome::Timeout);
    assert!(
        replies_for(&app, h).is_empty(),
        "the 300 ms push must not time out with the 100 ms one"
    );
    let r = reply(&mut app, h);
    let took = t0.elapsed();
    assert_eq!(r.outcome, PushOutcome::Timeout);
    assert_eq!(r.channel, ch);
    assert!(took >= Duration::from_millis(300), "{took:?}");
    assert!(took < Duration::from_secs(3), "{took:?}");
    assert_eq!(channel_state(&app, ch), Some(ChannelState::Joined));
}

#[test]
fn fire_and_forget_is_sent() {
    let server = Server::start();
    let mut app = app(config(&server.url));
    let topic = unique("echo:");
    let ch = join(&mut app, PhoenixChannel::new(&topic));
    wait_joined(&mut app, ch);
    let h = push(
        &mut app,
        PushMessage::json(
            ch,
            "push_me",
            &json!({"event": "ff", "payload": {"k": 7}, "noreply": true}),
        )
        .unwrap()
        .fire_and_forget()
        .report_sent(),
    );
    let r = reply(&mut app, h);
    assert_eq!(r.outcome, PushOutcome::Sent);
    assert_eq!(r.channel, ch);
    // It really went out: the server pushed back.
    pump_until(&mut app, 10, "server push after fire-and-forget", |w| {
        w.resource::<Log>()
            .messages
            .iter()
            .any(|m| &*m.event == "ff")
    });
    let m = log(&app)
        .messages
        .iter()
        .find(|m| &*m.event == "ff")
        .unwrap();
    assert_eq!(value(&m.payload), json!({"k": 7}));
    assert_eq!(replies_for(&app, h).len(), 1);
}

#[test]
fn server_push() {
    let server = Server::start();
    let mut app = app(config(&server.url));
    let topic = unique("echo:");
    let ch = join(&mut app, PhoenixChannel::new(&topic));
    wait_joined(&mut app, ch);
    let h = push(
        &mut app,
        PushMessage::json(
            ch,
            "push_me",
            &json!({"event": "custom", "payload": {"x": 1}}),
        )
        .unwrap(),
    );
    let r = reply(&mut app, h);
    assert!(r.is_ok(), "{r:?}");
    let s = socket_entity(&mut app);
    let msgs: Vec<_> = log(&app)
        .messages
        .iter()
        .filter(|m| &*m.event == "custom")
        .collect();
    assert_eq!(msgs.len(), 1, "the push arrives before the reply");
    let m = msgs[0];
    assert_eq!((m.channel, &*m.topic), (ch, topic.as_str()));
    assert_eq!(m.socket, s);
    assert!(!m.broadcast);
    assert_eq!(value(&m.payload), json!({"x": 1}));
    assert_eq!(m.decode::<Value>().unwrap(), json!({"x": 1}));
}

/// The frame in which each message and reply was read, to compare arrival order.
#[derive(Resource, Default)]
struct Arrivals {
    messages: Vec<(u32, String)>,
    replies: Vec<(u32, PushHandle)>,
}

fn record_arrivals(
    frame: Res<FrameCount>,
    mut a: ResMut<Arrivals>,
    mut m: MessageReader<ChannelMessage>,
    mut r: MessageReader<PushReplied>,
) {
    for m in m.read() {
        a.messages.push((frame.0, m.event.to_string()));
    }
    for r in r.read() {
        a.replies.push((frame.0, r.handle));
    }
}

fn room_app(url: &str, topic: &str, user: &str) -> (App, Entity) {
    let mut app = app(config(url));
    app.init_resource::<Arrivals>()
        .add_systems(Update, record_arrivals);
    let ch = join(
        &mut app,
        PhoenixChannel::new(topic)
            .with_payload(&json!({"user_id": user}))
            .unwrap(),
    );
    wait_joined(&mut app, ch);
    (app, ch)
}

#[test]
fn broadcast_reaches_sender_before_its_reply() {
    let server = Server::start();
    let topic = unique("room:shout-");
    let (mut a, ach) = room_app(&server.url, &topic, "a");
    let (mut b, _) = room_app(&server.url, &topic, "b");
    let h = push(
        &mut a,
        PushMessage::json(ach, "shout", &json!({"text": "hi"})).unwrap(),
    );
    let r = reply(&mut a, h);
    assert!(r.is_ok(), "{r:?}");
    let arr = a.world().resource::<Arrivals>();
    let reply_frame = arr.replies.iter().find(|(_, x)| *x == h).unwrap().0;
    let shout_frame = arr
        .messages
        .iter()
        .find(|(_, e)| e == "shout")
        .map(|(f, _)| *f);
    assert!(
        shout_frame.is_some_and(|f| f <= reply_frame),
        "the sender's copy of the broadcast must come before its reply: {shout_frame:?} vs {reply_frame}"
    );
    let m = log(&a)
        .messages
        .iter()
        .find(|m| &*m.event == "shout")
        .unwrap();
    assert!(m.broadcast);
    assert_eq!(m.channel, ach);
    assert_eq!(value(&m.payload), json!({"text": "hi"}));
    pump_until(&mut b, 10, "b gets the shout", |w| {
        w.resource::<Log>()
            .messages
            .iter()
            .any(|m| &*m.event == "shout")
    });
    let m = log(&b)
        .messages
        .iter()
        .find(|m| &*m.event == "shout")
        .unwrap();
    assert!(m.broadcast);
    assert_eq!(value(&m.payload), json!({"text": "hi"}));
}

#[test]
fn broadcast_from_skips_sender() {
    let server = Server::start();
    let topic = unique("room:move-");
    let (mut a, ach) = room_app(&server.url, &topic, "a");
    let (mut b, bch) = room_app(&server.url, &topic, "b");
    let h = push(
        &mut a,
        PushMessage::json(ach, "move", &json!({"x": 3, "y": 4})).unwrap(),
    );
    assert!(reply(&mut a, h).is_ok());
    pump_until(&mut b, 10, "b gets the move", |w| {
        w.resource::<Log>()
            .messages
            .iter()
            .any(|m| &*m.event == "move")
    });
    let m = log(&b)
        .messages
        .iter()
        .find(|m| &*m.event == "move")
        .unwrap();
    assert_eq!((m.channel, m.broadcast), (bch, true));
    assert_eq!(value(&m.payload), json!({"x": 3, "y": 4}));
    // A marker broadcast from b, after the move: once a has it, a would have had the move.
    let h = push(
        &mut b,
        PushMessage::json(bch, "shout", &json!({"m": 1})).unwrap(),
    );
    assert!(reply(&mut b, h).is_ok());
    pump_until(&mut a, 10, "a gets b's shout", |w| {
        w.resource::<Log>()
            .messages
            .iter()
            .any(|m| &*m.event == "shout")
    });
    assert!(
        !log(&a).messages.iter().any(|m| &*m.event == "move"),
        "broadcast_from must skip the sender"
    );
}

#[test]
fn binary_push_reply_and_server_push() {
    let server = Server::start();
    let mut app = app(config(&server.url));
    let topic = unique("echo:bin-");
    let ch = join(&mut app, PhoenixChannel::new(&topic));
    wait_joined(&mut app, ch);
    let bytes = vec![0u8, 1, 2, 0xfe, 0xff];
    let h = push(&mut app, PushMessage::binary(ch, "binary", bytes.clone()));
    let r = reply(&mut app, h);
    match &r.outcome {
        PushOutcome::Ok(p) => {
            assert!(p.is_binary(), "{p:?}");
            assert_eq!(p.as_bytes(), Some(&bytes[..]));
        }
        other => panic!("expected a binary ok reply, got {other:?}"),
    }
    // Empty binary works too.
    let h = push(&mut app, PushMessage::binary(ch, "binary", Vec::new()));
    let r = reply(&mut app, h);
    assert_eq!(r.response().and_then(Payload::as_bytes), Some(&[][..]));

    let h = push(
        &mut app,
        PushMessage::binary(ch, "push_binary", vec![9u8, 8, 7]),
    );
    assert!(reply(&mut app, h).is_ok());
    let m = log(&app)
        .messages
        .iter()
        .find(|m| &*m.event == "binary_push")
        .expect("binary push before the reply");
    assert_eq!((m.channel, m.broadcast), (ch, false));
    assert_eq!(m.payload.as_bytes(), Some(&[9u8, 8, 7][..]));
}

#[test]
fn binary_broadcast_to_two_clients() {
    let server = Server::start();
    let topic = unique("room:bin-");
    let (mut a, ach) = room_app(&server.url, &topic, "a");
    let (mut b, bch) = room_app(&server.url, &topic, "b");
    let data = vec![0xde_u8, 0xad, 0xbe, 0xef];
    let h = push(
        &mut a,
        PushMessage::binary(ach, "shout_binary", data.clone()),
    );
    assert!(reply(&mut a, h).is_ok());
    for (app, ch) in [(&mut a, ach), (&mut b, bch)] {
        pump_until(app, 10, "binary broadcast", |w| {
            w.resource::<Log>()
                .messages
                .iter()
                .any(|m| &*m.event == "shout_binary")
        });
        let m = log(app)
            .messages
            .iter()
            .find(|m| &*m.event == "shout_binary")
            .unwrap();
        assert_eq!(
            (m.channel, m.broadcast, &*m.topic),
            (ch, true, topic.as_str())
        );
        assert_eq!(m.payload.as_bytes(), Some(&data[..]));
    }
}

#[test]
fn binary_and_text_frames_keep_their_order() {
    let server = Server::start();
    let mut app = app(config(&server.url));
    let ch = join(&mut app, PhoenixChannel::new(unique("echo:order-")));
    wait_joined(&mut app, ch);
    let mut handles = Vec::new();
    for i in 0u8..20 {
        let p = if i % 2 == 0 {
            PushMessage::json(
                ch,
                "push_me",
                &json!({"event": "text", "payload": {"i": i}}),
            )
            .unwrap()
        } else {
            PushMessage::binary(ch, "push_binary", vec![i])
        };
        handles.push(push(&mut app, p));
    }
    let last = *handles.last().unwrap();
    reply(&mut app, last);
    let got: Vec<Value> = log(&app)
        .messages
        .iter()
        .map(|m| match m.payload.as_bytes() {
            Some(b) => json!({"bin": b}),
            None => json!({"text": value(&m.payload)["i"]}),
        })
        .collect();
    let want: Vec<Value> = (0u8..20)
        .map(|i| {
            if i % 2 == 0 {
                json!({"text": i})
            } else {
                json!({"bin": [i]})
            }
        })
        .collect();
    assert_eq!(got, want);
    // Replies in push order too.
    let order: Vec<PushHandle> = log(&app).replies.iter().map(|r| r.handle).collect();
    assert_eq!(order, handles);
}

#[test]
fn leave_by_despawn() {
    let server = Server::start();
    let mut app = app(config(&server.url));
    let topic = unique("echo:leave-");
    let ch = join(&mut app, PhoenixChannel::new(&topic));
    wait_joined(&mut app, ch);
    if let Some(local) = &server.local {
        assert_eq!(local.handle().subscribers(&topic), 1);
    }
    app.world_mut().despawn(ch);
    pump_until(&mut app, 10, "channel closed", |w| {
        !w.resource::<Log>().closed.is_empty()
    });
    let c = &log(&app).closed[0];
    assert_eq!(
        (c.entity, &*c.topic, &c.reason),
        (ch, topic.as_str(), &CloseReason::Left)
    );
    assert_eq!(log(&app).closed.len(), 1);
    let s = socket_entity(&mut app);
    let sock = app.world().get::<PhoenixSocket>(s).unwrap();
    assert_eq!(sock.channel_entity(&topic), None);
    assert_eq!(sock.core().channels().count(), 0);
    if let Some(local) = &server.local {
        let h = local.handle();
        pump_until(&mut app, 5, "server unsubscribed", |_| {
            h.subscribers(&topic) == 0
        });
    }
    // A push to the topic now ends at once as dropped.
    let h = push(
        &mut app,
        PushMessage::json(topic.as_str(), "echo", &1).unwrap(),
    );
    assert_eq!(
        reply(&mut app, h).outcome,
        PushOutcome::Dropped(DropReason::ChannelClosed)
    );
}

#[test]
fn leave_channel_message() {
    let server = Server::start();
    let mut app = app(config(&server.url));
    let t1 = unique("echo:lc-");
    let t2 = unique("echo:lc-");
    let c1 = join(&mut app, PhoenixChannel::new(&t1));
    let c2 = join(&mut app, PhoenixChannel::new(&t2));
    wait_joined(&mut app, c1);
    wait_joined(&mut app, c2);
    app.world_mut().write_message(LeaveChannel::new(c1));
    app.world_mut()
        .write_message(LeaveChannel::new(t2.as_str()));
    pump_until(&mut app, 10, "both closed", |w| {
        w.resource::<Log>().closed.len() >= 2
    });
    let mut closed: Vec<_> = log(&app)
        .closed
        .iter()
        .map(|c| (c.entity, c.topic.to_string(), format!("{:?}", c.reason)))
        .collect();
    closed.sort();
    let mut want = vec![(c1, t1, "Left".to_string()), (c2, t2, "Left".to_string())];
    want.sort();
    assert_eq!(closed, want);
    assert!(app.world().get_entity(c1).is_err(), "LeaveChannel despawns");
    assert!(app.world().get_entity(c2).is_err(), "LeaveChannel despawns");
    pump_for(&mut app, 100);
    assert_eq!(log(&app).closed.len(), 2, "one ChannelClosed per channel");
}

#[test]
fn duplicate_join_replaces_the_old_channel() {
    let server = Server::start();
    let mut app = app(config(&server.url));
    let topic = unique("echo:dup-");
    let old = join(&mut app, PhoenixChannel::new(&topic));
    wait_joined(&mut app, old);
    let old_ref = join_ref_of(&app, old).unwrap();
    let new = join(&mut app, PhoenixChannel::new(&topic));
    pump_until(&mut app, 10, "old closed", |w| {
        !w.resource::<Log>().closed.is_empty()
    });
    wait_joined(&mut app, new);
    let c = &log(&app).closed[0];
    assert_eq!((c.entity, &c.reason), (old, &CloseReason::Replaced));
    assert_eq!(channel_state(&app, old), Some(ChannelState::Closed));
    let new_ref = join_ref_of(&app, new).unwrap_or_else(|| {
        let l = log(&app);
        panic!(
            "no join_ref for the new channel: joined {:?} closed {:?}",
            l.joined.iter().map(|j| j.entity).collect::<Vec<_>>(),
            l.closed
                .iter()
                .map(|c| (c.entity, c.reason.clone()))
                .collect::<Vec<_>>()
        )
    });
    assert!(new_ref > old_ref, "fresh join_ref: {new_ref} vs {old_ref}");

    // Let the server's phx_close for the old join_ref come, and more frames run: the new
    // channel stays joined, the old one stays closed (it must not be joined again).
    let h = push(
        &mut app,
        PushMessage::json(new, "echo", &json!({"v": 2})).unwrap(),
    );
    let r = reply(&mut app, h);
    assert_eq!(r.channel, new);
    assert_eq!(r.decode_ok::<Value>().unwrap().unwrap(), json!({"v": 2}));
    pump_for(&mut app, 300);
    assert_eq!(channel_state(&app, new), Some(ChannelState::Joined));
    assert_eq!(channel_state(&app, old), Some(ChannelState::Closed));
    let l = log(&app);
    assert_eq!(l.closed.len(), 1, "{:?}", l.closed);
    assert_eq!(l.joined.len(), 2, "one join each: {:?}", l.joined);
    assert!(l.errored.is_empty(), "{:?}", l.errored);
    let s = socket_entity(&mut app);
    assert_eq!(
        app.world()
            .get::<PhoenixSocket>(s)
            .unwrap()
            .channel_entity(&topic),
        Some(new)
    );
    // A push to the old entity is dropped, not sent on the new channel.
    let h = push(&mut app, PushMessage::json(old, "echo", &1).unwrap());
    let r = reply(&mut app, h);
    assert_eq!(r.outcome, PushOutcome::Dropped(DropReason::ChannelClosed));
    if let Some(local) = &server.local {
        assert_eq!(local.handle().subscribers(&topic), 1);
    }
}
