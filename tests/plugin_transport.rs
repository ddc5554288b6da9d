//! A game's own transport, plugged into a socket through the public API
//! (`PhoenixSocketConfig::with_transport`): an in-memory test double that the test drives frame
//! by frame, playing the server. The plugin connects through the connector, and every reconnect
//! goes through it again; `WaitForNetwork` follows the transport's `wait_hint`.
#![allow(clippy::unwrap_used)]

mod support;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bevy::prelude::*;
use bevy_phoenix_channels::prelude::*;
use bevy_phoenix_channels::protocol::Transmit;
use bevy_phoenix_channels::transport::{
    CloseInfo, ConnectRequest, NetworkWaker, PhoenixConnector, PhoenixTransport, TransportError,
    TransportEvent, TransportStats, WaitHint,
};
use serde_json::{Value, json};
use support::{Log, log, pump_until};

/// One connection the plugin opened, as the test sees it.
#[derive(Default)]
struct Line {
    /// What the plugin asked for.
    req: Option<ConnectRequest>,
    /// What the transport's `poll` returns next (the test pushes; the plugin pops).
    incoming: VecDeque<TransportEvent>,
    /// What the plugin sent, in order.
    sent: Vec<Transmit>,
    /// `close()` was called.
    closed: bool,
    /// The waker the connector got.
    waker: NetworkWaker,
}

type Shared = Arc<Mutex<Line>>;

/// Every connection, in connect order.
#[derive(Clone, Default)]
struct Wire {
    lines: Arc<Mutex<Vec<Shared>>>,
}

impl Wire {
    fn count(&self) -> usize {
        self.lines.lock().unwrap().len()
    }

    fn line(&self, i: usize) -> Shared {
        self.lines.lock().unwrap()[i].clone()
    }

    fn last(&self) -> Shared {
        self.lines.lock().unwrap().last().unwrap().clone()
    }
}

/// The double: everything goes through the shared `Line`.
struct Double {
    line: Shared,
    open: bool,
    done: bool,
    /// Says [`WaitHint::Waker`] (it is woken by the test) instead of the default.
    wakes: bool,
}

impl PhoenixTransport for Double {
    fn poll(&mut self) -> Option<TransportEvent> {
        if self.done {
            return None;
        }
        let ev = self.line.lock().unwrap().incoming.pop_front()?;
        match &ev {
            TransportEvent::Opened { .. } => self.open = true,
            TransportEvent::Closed(_) | TransportEvent::Failed(_) => {
                self.open = false;
                self.done = true;
            }
            _ => {}
        }
        Some(ev)
    }

    fn send(&mut self, frame: Transmit) -> Result<(), TransportError> {
        if self.done {
            return Err(TransportError::Io("not open".into()));
        }
        self.line.lock().unwrap().sent.push(frame);
        Ok(())
    }

    fn flush(&mut self) {}

    fn close(&mut self) {
        self.done = true;
        self.open = false;
        self.line.lock().unwrap().closed = true;
    }

    fn is_open(&self) -> bool {
        self.open
    }

    fn stats(&self) -> TransportStats {
        TransportStats {
            messages_out: self.line.lock().unwrap().sent.len() as u64,
            ..TransportStats::default()
        }
    }

    fn wait_hint(&self) -> WaitHint<'_> {
        if self.done {
            WaitHint::Idle
        } else if self.wakes && self.line.lock().unwrap().incoming.is_empty() {
            WaitHint::Waker
        } else {
            WaitHint::Ready
        }
    }
}

/// The double without a `wait_hint` of its own: the trait's default.
struct DefaultHint(Double);

impl PhoenixTransport for DefaultHint {
    fn poll(&mut self) -> Option<TransportEvent> {
        self.0.poll()
    }

    fn send(&mut self, frame: Transmit) -> Result<(), TransportError> {
        self.0.send(frame)
    }

    fn flush(&mut self) {}

    fn close(&mut self) {
        self.0.close()
    }

    fn is_open(&self) -> bool {
        self.0.is_open()
    }

    fn stats(&self) -> TransportStats {
        self.0.stats()
    }
}

struct DoubleConnector {
    wire: Wire,
    wakes: bool,
}

impl PhoenixConnector for DoubleConnector {
    fn connect(&self, req: ConnectRequest, waker: &NetworkWaker) -> Box<dyn PhoenixTransport> {
        let line = Arc::new(Mutex::new(Line {
            req: Some(req),
            waker: waker.clone(),
            ..Line::default()
        }));
        self.wire.lines.lock().unwrap().push(line.clone());
        let double = Double {
            line,
            open: false,
            done: false,
            wakes: self.wakes && waker.is_active(),
        };
        if self.wakes {
            Box::new(double)
        } else {
            Box::new(DefaultHint(double))
        }
    }

    fn name(&self) -> &str {
        "double"
    }
}

fn app_with_double(wakes: bool) -> (App, Wire) {
    let wire = Wire::default();
    let config = support::config("ws://double.invalid/socket").with_transport(DoubleConnector {
        wire: wire.clone(),
        wakes,
    });
    (support::app(config), wire)
}

/// The server's side: a frame from the test.
fn deliver(line: &Shared, ev: TransportEvent) {
    line.lock().unwrap().incoming.push_back(ev);
}

fn text(v: Value) -> TransportEvent {
    TransportEvent::Text(v.to_string().into())
}

/// The text frames the plugin sent on `line`, as JSON.
fn sent(line: &Shared) -> Vec<Value> {
    line.lock()
        .unwrap()
        .sent
        .iter()
        .map(|t| match t {
            Transmit::Text(s) => serde_json::from_str(s).unwrap(),
            Transmit::Binary(b) => json!({ "binary": b }),
        })
        .collect()
}

/// Waits for the plugin's `phx_join` of `topic` on `line`; returns (join_ref, ref).
fn join_sent(app: &mut App, line: &Shared, topic: &str) -> (String, String) {
    let mut found = None;
    pump_until(app, 10, "a phx_join frame", |_| {
        found = sent(line)
            .into_iter()
            .find(|f| f[2] == topic && f[3] == "phx_join");
        found.is_some()
    });
    let f = found.unwrap();
    (
        f[0].as_str().unwrap().to_owned(),
        f[1].as_str().unwrap().to_owned(),
    )
}

fn reply_ok(line: &Shared, join_ref: &str, msg_ref: &str, topic: &str) {
    deliver(
        line,
        text(json!([join_ref, msg_ref, topic, "phx_reply", {"status": "ok", "response": {}}])),
    );
}

#[test]
fn a_custom_transport_carries_connect_join_reply_close_and_reconnect() {
    let (mut app, wire) = app_with_double(false);
    // The plugin connects through the connector, with the Phoenix URL and limits.
    pump_until(&mut app, 10, "a connect", |_| wire.count() == 1);
    let line = wire.line(0);
    let req = line.lock().unwrap().req.clone().unwrap();
    assert!(
        req.url
            .starts_with("ws://double.invalid/socket/websocket?vsn=2.0.0"),
        "{}",
        req.url
    );
    assert_eq!(
        req.max_frame_size,
        PhoenixSocketConfig::new("x").max_frame_size
    );

    deliver(&line, TransportEvent::Opened { protocol: None });
    pump_until(&mut app, 10, "connected", |w| {
        w.resource::<Log>().connected.len() == 1
    });

    let topic = "room:double";
    let ch = app.world_mut().spawn(PhoenixChannel::new(topic)).id();
    let (join_ref, msg_ref) = join_sent(&mut app, &line, topic);
    reply_ok(&line, &join_ref, &msg_ref, topic);
    deliver(
        &line,
        text(json!([Value::Null, Value::Null, topic, "shout", {"from": "server"}])),
    );
    pump_until(&mut app, 10, "joined and a broadcast", |w| {
        let l = w.resource::<Log>();
        l.joined.len() == 1 && l.messages.iter().any(|m| &*m.event == "shout")
    });
    assert_eq!(
        app.world().get::<ChannelStatus>(ch).map(|s| s.0),
        Some(ChannelState::Joined)
    );
    // A push goes out through the double, and its reply comes back through it.
    let h = support::push(
        &mut app,
        PushMessage::json(ch, "echo", &json!({"n": 1})).unwrap(),
    );
    let mut push_frame = None;
    pump_until(&mut app, 10, "the push frame", |_| {
        push_frame = sent(&line).into_iter().find(|f| f[3] == "echo");
        push_frame.is_some()
    });
    let f = push_frame.unwrap();
    assert_eq!(
        (&f[0], &f[2], &f[4]),
        (&json!(join_ref), &json!(topic), &json!({"n": 1}))
    );
    deliver(
        &line,
        text(json!([join_ref, f[1], topic, "phx_reply", {"status": "ok", "response": {"n": 1}}])),
    );
    let r = support::reply(&mut app, h);
    assert!(r.is_ok(), "{r:?}");

    // The "server" closes: the socket disconnects and reconnects through the connector again.
    deliver(
        &line,
        TransportEvent::Closed(CloseInfo {
            code: Some(1001),
            reason: "going away".into(),
            by_peer: true,
        }),
    );
    pump_until(&mut app, 10, "a second connect", |_| wire.count() == 2);
    assert_eq!(log(&app).disconnected.len(), 1);
    let reason = format!("{:?}", log(&app).disconnected[0].reason);
    assert!(
        reason.contains("1001") && reason.contains("going away"),
        "{reason}"
    );
    let line2 = wire.line(1);
    assert!(sent(&line2).is_empty(), "nothing is sent before Opened");
    deliver(&line2, TransportEvent::Opened { protocol: None });
    let (join_ref2, msg_ref2) = join_sent(&mut app, &line2, topic);
    assert_ne!(join_ref2, join_ref, "a rejoin has a fresh join_ref");
    reply_ok(&line2, &join_ref2, &msg_ref2, topic);
    pump_until(&mut app, 10, "rejoined", |w| {
        w.resource::<Log>().joined.iter().any(|j| j.rejoin)
    });
    assert_eq!(log(&app).connected.len(), 2);
    // The stats the plugin exposes are the transport's.
    let socket = support::socket_entity(&mut app);
    let stats = app
        .world()
        .non_send::<PhoenixTransports>()
        .stats(socket)
        .unwrap();
    assert_eq!(stats.messages_out, sent(&line2).len() as u64);

    // Despawning the socket closes the transport.
    app.world_mut().despawn(socket);
    pump_until(&mut app, 10, "the transport closed", |_| {
        line2.lock().unwrap().closed
    });
    assert!(
        !line.lock().unwrap().closed,
        "the first one ended by itself"
    );
}

#[test]
fn a_failed_connect_through_a_custom_transport_is_retried_through_it() {
    let (mut app, wire) = app_with_double(false);
    pump_until(&mut app, 10, "a connect", |_| wire.count() == 1);
    deliver(
        &wire.line(0),
        TransportEvent::Failed(TransportError::Refused { status: 403 }),
    );
    pump_until(&mut app, 10, "a retry", |_| wire.count() == 2);
    assert_eq!(log(&app).refused.len(), 1);
    assert_eq!(log(&app).refused[0].status, 403);
    assert!(log(&app).connected.is_empty());
}

/// A transport that keeps the default hint never lets `WaitForNetwork` sleep: the loop runs on
/// (a 20 s `max_wait` would show as 20 s per frame).
#[test]
fn wait_for_network_does_not_sleep_on_a_transport_with_the_default_hint() {
    let (mut app, wire) = app_with_double(false);
    app.insert_resource(WaitForNetwork::up_to(Duration::from_secs(20)));
    pump_until(&mut app, 10, "a connect", |_| wire.count() == 1);
    deliver(&wire.last(), TransportEvent::Opened { protocol: None });
    pump_until(&mut app, 10, "connected", |w| {
        w.resource::<Log>().connected.len() == 1
    });
    let t0 = Instant::now();
    for _ in 0..20 {
        app.update();
    }
    assert!(
        t0.elapsed() < Duration::from_secs(10),
        "frames slept: {:?}",
        t0.elapsed()
    );
}

/// A transport that says `WaitHint::Waker` lets the loop sleep, and its wake-up (from another
/// thread, after queueing the event) ends the sleep: the open is seen a frame or two after the
/// connect, where a spinning loop would run hundreds of frames and a missed wake-up would
/// sleep `max_wait` (20 s).
#[test]
fn wait_for_network_sleeps_on_a_waking_transport_until_it_wakes() {
    let (mut app, wire) = app_with_double(true);
    // The waker exists before the connect, so the connector gets an active one.
    app.insert_resource(WaitForNetwork::up_to(Duration::from_secs(20)));
    // Once connected, nothing more happens: end that frame's sleep, as an app would.
    app.add_systems(
        Update,
        |mut seen: MessageReader<SocketConnected>, wait: Res<WaitForNetwork>| {
            if seen.read().count() > 0 {
                wait.waker().wake();
            }
        },
    );
    let server_wire = wire.clone();
    let server = std::thread::spawn(move || {
        let t0 = Instant::now();
        while server_wire.count() == 0 {
            assert!(t0.elapsed() < Duration::from_secs(10), "no connect");
            std::thread::sleep(Duration::from_millis(1));
        }
        // Long enough for the app to be asleep in the wait by now.
        std::thread::sleep(Duration::from_millis(200));
        let line = server_wire.last();
        let waker = {
            let mut l = line.lock().unwrap();
            l.incoming
                .push_back(TransportEvent::Opened { protocol: None });
            l.waker.clone()
        };
        // After the event is visible to poll (the rule of WaitHint::Waker).
        waker.wake();
    });
    let t0 = Instant::now();
    let mut frames = 0;
    while log(&app).connected.is_empty() {
        app.update();
        frames += 1;
        assert!(
            t0.elapsed() < Duration::from_secs(15),
            "the wake-up did not end the sleep ({frames} frames)"
        );
    }
    server.join().unwrap();
    assert!(wire.last().lock().unwrap().waker.is_active());
    assert!(frames <= 10, "the loop did not sleep: {frames} frames");
}

/// An app on the test double with channels on `ta` and `tb` joined.
struct Joined2 {
    app: App,
    line: Shared,
    /// The channel entities.
    a: Entity,
    b: Entity,
    /// Their join refs.
    ja: String,
    jb: String,
}

fn two_joined(ta: &str, tb: &str) -> Joined2 {
    let (mut app, wire) = app_with_double(false);
    pump_until(&mut app, 10, "a connect", |_| wire.count() == 1);
    let line = wire.line(0);
    deliver(&line, TransportEvent::Opened { protocol: None });
    let a = app.world_mut().spawn(PhoenixChannel::new(ta)).id();
    let b = app.world_mut().spawn(PhoenixChannel::new(tb)).id();
    let (ja, ra) = join_sent(&mut app, &line, ta);
    let (jb, rb) = join_sent(&mut app, &line, tb);
    reply_ok(&line, &ja, &ra, ta);
    reply_ok(&line, &jb, &rb, tb);
    pump_until(&mut app, 10, "both joined", |w| {
        w.resource::<Log>().joined.len() == 2
    });
    Joined2 {
        app,
        line,
        a,
        b,
        ja,
        jb,
    }
}

/// Messages of two channels arriving interleaved in one frame (so one drain of the core's
/// events delivers them all, with a channel closing in the middle) each name their own
/// channel entity, in arrival order.
#[test]
fn interleaved_messages_of_two_channels_name_their_own_entities() {
    let (ta, tb) = ("room:a", "room:b");
    let Joined2 {
        mut app,
        line,
        a,
        b,
        ja,
        jb,
    } = two_joined(ta, tb);
    let before = log(&app).messages.len();
    // a, a, b, a, b, b, a's close, b: pushes (with join_ref) and broadcasts (without).
    let order = [ta, ta, tb, ta, tb, tb, "close", tb];
    for (n, t) in order.iter().enumerate() {
        let f = match *t {
            "close" => json!([ja, ja, ta, "phx_close", {}]),
            t if n % 2 == 0 => {
                let jr = if t == ta { &ja } else { &jb };
                json!([jr, Value::Null, t, "tick", {"n": n}])
            }
            t => json!([Value::Null, Value::Null, t, "tick", {"n": n}]),
        };
        deliver(&line, text(f));
    }
    let updates = {
        let mut k = 0;
        pump_until(&mut app, 10, "every tick", |w| {
            k += 1;
            w.resource::<Log>().messages.len() == before + 7
        });
        k
    };
    assert_eq!(updates, 1, "all in one frame, so in one drain");
    let got: Vec<(Entity, String, u64)> = log(&app).messages[before..]
        .iter()
        .map(|m| {
            let n = m.decode::<Value>().unwrap()["n"].as_u64().unwrap();
            (m.channel, m.topic.to_string(), n)
        })
        .collect();
    let want: Vec<(Entity, String, u64)> = order
        .iter()
        .enumerate()
        .filter(|(_, t)| **t != "close")
        .map(|(n, t)| (if *t == ta { a } else { b }, t.to_string(), n as u64))
        .collect();
    assert_eq!(got, want);
    assert_eq!(log(&app).closed.len(), 1, "a closed in the same frame");
}

/// A burst far longer than the receive pass's drain interval (the core's events go out every
/// few hundred transport frames, while they are in cache) arrives whole and in order in one
/// update, with a channel closing in the middle of it: nothing is lost or repeated at the
/// drain points, and the closed channel's status is current after the update.
#[test]
fn a_long_burst_with_a_close_inside_arrives_whole_and_in_order_in_one_update() {
    let (ta, tb) = ("room:a", "room:b");
    let Joined2 {
        mut app,
        line,
        a,
        b,
        ja: _,
        jb,
    } = two_joined(ta, tb);
    let before = log(&app).messages.len();
    // 1,000 ticks on a (not a multiple of any drain interval), b closed after the 300th.
    const N: u64 = 1000;
    for n in 0..N {
        deliver(
            &line,
            text(json!([Value::Null, Value::Null, ta, "tick", {"n": n}])),
        );
        if n == 299 {
            deliver(&line, text(json!([jb, jb, tb, "phx_close", {}])));
        }
    }
    let mut updates = 0;
    pump_until(&mut app, 10, "every tick", |w| {
        updates += 1;
        w.resource::<Log>().messages.len() as u64 >= before as u64 + N
    });
    assert_eq!(updates, 1, "the burst is within one frame's read budget");
    let got: Vec<u64> = log(&app).messages[before..]
        .iter()
        .map(|m| {
            assert_eq!(m.channel, a);
            m.decode::<Value>().unwrap()["n"].as_u64().unwrap()
        })
        .collect();
    assert_eq!(got, (0..N).collect::<Vec<_>>(), "each tick once, in order");
    assert_eq!(log(&app).closed.len(), 1, "b closed within the burst");
    let status = app.world().get::<ChannelStatus>(b).map(|s| s.0);
    assert_eq!(status, Some(ChannelState::Closed));
}
