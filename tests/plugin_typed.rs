//! Typed messages and the small conveniences around them, over real sockets: registered events
//! decoded once for every reader, decode failures reported (never silent) while the raw stream
//! keeps the message, topic patterns, binary decoders, observer delivery on the channel entity,
//! typed pushes, quiet fire-and-forget, and the `channel_joined` run condition.
//! Against the test server or `PHOENIX_URL` (the reference app's `echo:*` `push_me`).
#![allow(clippy::unwrap_used)]

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};

use bevy::prelude::*;
use bevy_phoenix_channels::prelude::*;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Value, json};
use support::*;

/// Counts how often a `Tick` is decoded (per process; each test uses its own counter type).
static TICK_DECODES: AtomicUsize = AtomicUsize::new(0);

fn counted<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    TICK_DECODES.fetch_add(1, Ordering::SeqCst);
    u32::deserialize(d)
}

#[derive(Deserialize, Debug, Clone, PartialEq)]
struct Tick {
    #[serde(deserialize_with = "counted")]
    n: u32,
}

#[derive(Resource, Default)]
struct Seen {
    a: Vec<u32>,
    b: Vec<u32>,
    errors: Vec<ChannelDecodeError>,
    raw: Vec<(String, Value)>,
}

fn reader_a(mut r: MessageReader<Received<Tick>>, mut seen: ResMut<Seen>) {
    seen.a.extend(r.read().map(|m| m.value.n));
}

fn reader_b(mut r: MessageReader<Received<Tick>>, mut seen: ResMut<Seen>) {
    seen.b.extend(r.read().map(|m| m.value.n));
}

fn errors_and_raw(
    mut e: MessageReader<ChannelDecodeError>,
    mut raw: MessageReader<ChannelMessage>,
    mut seen: ResMut<Seen>,
) {
    seen.errors.extend(e.read().cloned());
    for m in raw.read().filter(|m| m.is("tick")) {
        seen.raw
            .push((m.topic.to_string(), m.decode::<Value>().unwrap()));
    }
}

/// Asks the echo channel `topic` to push `event` with `payload` to us, and waits for its reply
/// (which comes after the push, so the push has arrived by then).
fn push_me(app: &mut App, topic: &str, event: &str, payload: Value) {
    let h = push(
        app,
        PushMessage::json(
            topic,
            "push_me",
            &json!({"event": event, "payload": payload}),
        )
        .unwrap(),
    );
    assert!(reply(app, h).is_ok());
}

fn typed_app(url: &str) -> App {
    let mut app = app(config(url));
    app.init_resource::<Seen>()
        .add_channel_message::<Tick>(ChannelRoute::event("tick").on_topics("echo:typed-a*"))
        .add_systems(Update, (reader_a, reader_b, errors_and_raw));
    app
}

#[test]
fn registered_events_decode_once_for_every_reader_and_failures_are_reported() {
    let server = Server::start();
    let mut app = typed_app(&server.url);
    let a = unique("echo:typed-a");
    let b = unique("echo:typed-b");
    let ca = join(&mut app, PhoenixChannel::new(&a));
    let cb = join(&mut app, PhoenixChannel::new(&b));
    wait_joined(&mut app, ca);
    wait_joined(&mut app, cb);

    let before = TICK_DECODES.load(Ordering::SeqCst);
    push_me(&mut app, &a, "tick", json!({"n": 1}));
    push_me(&mut app, &a, "tick", json!({"n": "two"}));
    push_me(&mut app, &a, "tock", json!({"n": 3})); // another event: not ours
    push_me(&mut app, &b, "tick", json!({"n": 4})); // another topic: not ours
    push_me(&mut app, &a, "tick", json!({"n": 5}));
    pump_for(&mut app, 50);

    let seen = app.world().resource::<Seen>();
    // Both readers see every good one, in order; each message was decoded once, not per reader.
    assert_eq!(seen.a, vec![1, 5]);
    assert_eq!(seen.b, vec![1, 5]);
    assert_eq!(
        TICK_DECODES.load(Ordering::SeqCst) - before,
        3,
        "one decode per message"
    );
    // The bad one is an error with everything needed to find it, and is still in the raw stream.
    assert_eq!(seen.errors.len(), 1, "{:?}", seen.errors);
    let e = &seen.errors[0];
    assert_eq!((&*e.topic, &*e.event, e.channel), (a.as_str(), "tick", ca));
    assert!(e.type_name.ends_with("Tick"), "{}", e.type_name);
    assert!(e.error.contains("invalid type"), "{}", e.error);
    let raw_a: Vec<&Value> = seen
        .raw
        .iter()
        .filter(|(t, _)| *t == a)
        .map(|(_, v)| v)
        .collect();
    assert_eq!(
        raw_a,
        vec![&json!({"n": 1}), &json!({"n": "two"}), &json!({"n": 5})]
    );
    assert!(
        seen.raw.iter().any(|(t, _)| *t == b),
        "the other topic's tick is raw only"
    );
}

#[derive(Resource, Default)]
struct Observed(Vec<(Entity, u32)>);

#[derive(Deserialize, Debug)]
struct Ping {
    n: u32,
}

#[test]
fn an_observed_route_triggers_on_the_channel_entity() {
    let server = Server::start();
    let mut app = app(config(&server.url));
    app.init_resource::<Observed>()
        .add_channel_message::<Ping>(ChannelRoute::event("ping").observed());
    let topic = unique("echo:observed-");
    let ch = app
        .world_mut()
        .spawn(PhoenixChannel::new(&topic))
        .observe(|e: On<ReceivedOn<Ping>>, mut seen: ResMut<Observed>| {
            seen.0.push((e.entity, e.value.n));
        })
        .id();
    wait_joined(&mut app, ch);
    push_me(&mut app, &topic, "ping", json!({"n": 7}));
    push_me(&mut app, &topic, "ping", json!({"n": 8}));
    pump_for(&mut app, 50);
    assert_eq!(app.world().resource::<Observed>().0, vec![(ch, 7), (ch, 8)]);
    // Delivered to the observer instead of as messages.
    let msgs = app.world().resource::<Messages<Received<Ping>>>();
    assert_eq!(msgs.iter_current_update_messages().count(), 0);
}

#[test]
fn binary_payloads_use_your_decoder() {
    let server = Server::start();
    let mut app = app(config(&server.url));
    #[derive(Resource, Default)]
    struct Frames(Vec<Vec<u8>>, Vec<String>);
    app.init_resource::<Frames>()
        .add_channel_binary::<Vec<u8>>("binary_push", |b| match b.first() {
            Some(0xff) => Err("starts with 0xff".into()),
            _ => Ok(b.to_vec()),
        })
        .add_systems(
            Update,
            |mut r: MessageReader<Received<Vec<u8>>>,
             mut e: MessageReader<ChannelDecodeError>,
             mut f: ResMut<Frames>| {
                f.0.extend(r.read().map(|m| m.value.clone()));
                f.1.extend(e.read().map(|e| e.error.clone()));
            },
        );
    let topic = unique("echo:bin-");
    let ch = join(&mut app, PhoenixChannel::new(&topic));
    wait_joined(&mut app, ch);
    for bytes in [vec![1u8, 2, 3], vec![0xff, 0]] {
        let h = push(&mut app, PushMessage::binary(&topic, "push_binary", bytes));
        assert!(reply(&mut app, h).is_ok());
    }
    push_me(&mut app, &topic, "binary_push", json!({"not": "binary"}));
    pump_for(&mut app, 50);
    let f = app.world().resource::<Frames>();
    assert_eq!(f.0, vec![vec![1u8, 2, 3]]);
    assert_eq!(
        f.1,
        vec![
            "starts with 0xff".to_string(),
            "expected a binary payload, got JSON".to_string()
        ]
    );
}

#[derive(Serialize)]
struct Echo {
    v: u32,
}

impl ChannelEvent for Echo {
    const EVENT: &'static str = "echo";
}

#[test]
fn typed_pushes_and_quiet_fire_and_forget() {
    let server = Server::start();
    let mut app = app(config(&server.url));
    let topic = unique("echo:ff-");
    let ch = join(&mut app, PhoenixChannel::new(&topic));
    wait_joined(&mut app, ch);

    // A typed push names its event by its type; the typed reply decodes.
    let h = push(
        &mut app,
        PushMessage::event(&topic, &Echo { v: 42 }).unwrap(),
    );
    assert_eq!(
        reply(&mut app, h).decode_ok::<Value>().unwrap().unwrap(),
        json!({"v": 42})
    );

    // ok_as: the value, or why there is none.
    let h = push(
        &mut app,
        PushMessage::event(&topic, &Echo { v: 9 }).unwrap(),
    );
    #[derive(Deserialize)]
    struct V {
        v: u32,
    }
    assert_eq!(reply(&mut app, h).ok_as::<V>().unwrap().v, 9);
    let h = push(
        &mut app,
        PushMessage::json(&topic, "error_reply", &json!({})).unwrap(),
    );
    match reply(&mut app, h).ok_as::<V>() {
        Err(ReplyError::Refused(p)) => {
            assert_eq!(p.decode::<Value>().unwrap(), json!({"reason": "requested"}))
        }
        other => panic!("{:?}", other.map(|v| v.v)),
    }
    let h = push(
        &mut app,
        PushMessage::event(&topic, &Echo { v: 1 }).unwrap(),
    );
    assert!(matches!(
        reply(&mut app, h).ok_as::<String>(),
        Err(ReplyError::Decode(_))
    ));

    // Fire-and-forget reports nothing when it leaves; the server's reply (echo answers
    // anyway) is counted as ignored, not as an anomaly.
    let s = socket_entity(&mut app);
    let stats = |app: &App| *app.world().get::<PhoenixSocket>(s).unwrap().stats();
    let before = stats(&app);
    let quiet = push(
        &mut app,
        PushMessage::event(&topic, &Echo { v: 1 })
            .unwrap()
            .fire_and_forget(),
    );
    let loud = push(
        &mut app,
        PushMessage::event(&topic, &Echo { v: 2 })
            .unwrap()
            .fire_and_forget()
            .report_sent(),
    );
    // A request after them: its reply comes after theirs.
    let barrier = push(
        &mut app,
        PushMessage::event(&topic, &Echo { v: 3 }).unwrap(),
    );
    reply(&mut app, barrier);
    pump_for(&mut app, 20);
    assert!(
        replies_for(&app, quiet).is_empty(),
        "{:?}",
        replies_for(&app, quiet)
    );
    let r = replies_for(&app, loud);
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].outcome, PushOutcome::Sent);
    let after = stats(&app);
    assert_eq!(after.ignored_replies - before.ignored_replies, 2);
    assert_eq!(after.unroutable_dropped, before.unroutable_dropped);

    // A fire-and-forget push that cannot leave still reports (nothing is lost silently).
    let lost = push(
        &mut app,
        PushMessage::event("echo:never-joined", &Echo { v: 4 })
            .unwrap()
            .fire_and_forget(),
    );
    let r = reply(&mut app, lost);
    assert!(matches!(r.outcome, PushOutcome::Dropped(_)), "{r:?}");
}

#[derive(Resource, Default)]
struct Ran(u32, u32);

#[test]
fn channel_joined_gates_systems_on_the_channel_not_the_socket() {
    let server = Server::start();
    let mut app = app(config(&server.url));
    let topic = unique("private:gate-");
    app.init_resource::<Ran>().add_systems(
        Update,
        (|mut r: ResMut<Ran>| r.0 += 1).run_if(channel_joined(topic.clone())),
    );
    // Refused first (wrong password): the socket is up, the channel is not joined.
    let ch = join(
        &mut app,
        PhoenixChannel::new(&topic)
            .with_payload(&json!({"password": "wrong"}))
            .unwrap(),
    );
    app.add_systems(
        Update,
        (|mut r: ResMut<Ran>| r.1 += 1).run_if(channel_entity_joined(ch)),
    );
    wait_connected(&mut app);
    pump_until(&mut app, 15, "the join refused", |w| {
        !w.resource::<Log>().errored.is_empty()
    });
    pump_for(&mut app, 30);
    let ran = app.world().resource::<Ran>();
    assert_eq!((ran.0, ran.1), (0, 0), "gated while not joined");

    // With the right password the next rejoin succeeds, and both conditions open.
    app.world_mut()
        .get_mut::<PhoenixChannel>(ch)
        .unwrap()
        .payload = OutPayload::json(&json!({"password": "secret"})).unwrap();
    wait_joined(&mut app, ch);
    pump_for(&mut app, 30);
    let ran = app.world().resource::<Ran>();
    assert!(ran.0 > 0 && ran.1 > 0, "ran {} and {} times", ran.0, ran.1);
}
