//! Many sockets in one app: a connected socket with nothing to read costs nothing per frame.
//! Its transport is not polled until the readiness set (epoll) reports its socket, so an idle
//! frame with many connections makes no read attempt per socket; data still arrives at once,
//! and `WaitForNetwork` sleeps over all of them and wakes for any. Counted with a transport that
//! wraps the built-in one and counts `poll` calls (no timing).
#![allow(clippy::unwrap_used)]

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bevy::prelude::*;
use bevy_phoenix_channels::prelude::*;
use bevy_phoenix_channels::protocol::Transmit;
use bevy_phoenix_channels::transport::{
    ConnectRequest, NetworkWaker, PhoenixTransport, Transport, TransportError, TransportEvent,
    TransportStats, WaitHint,
};
use serde_json::json;
use support::*;

const SOCKETS: usize = 40;

/// The built-in transport, counting `poll` calls.
struct Counting {
    inner: Transport,
    polls: Arc<AtomicU64>,
}

impl PhoenixTransport for Counting {
    fn poll(&mut self) -> Option<TransportEvent> {
        self.polls.fetch_add(1, Ordering::Relaxed);
        self.inner.poll()
    }
    fn send(&mut self, frame: Transmit) -> Result<(), TransportError> {
        self.inner.send(frame)
    }
    fn flush(&mut self) {
        self.inner.flush()
    }
    fn close(&mut self) {
        self.inner.close()
    }
    fn is_open(&self) -> bool {
        self.inner.is_open()
    }
    fn stats(&self) -> TransportStats {
        self.inner.stats()
    }
    fn send_backlog(&self) -> usize {
        self.inner.send_backlog()
    }
    fn wait_hint(&self) -> WaitHint<'_> {
        PhoenixTransport::wait_hint(&self.inner)
    }
}

/// An app with `SOCKETS` sockets, each joined to `topic`; returns the app, the poll counter
/// and the channel entities.
fn swarm(url: &str, topic: &str, wait: Option<Duration>) -> (App, Arc<AtomicU64>, Vec<Entity>) {
    let polls = Arc::new(AtomicU64::new(0));
    let mut app = App::new();
    app.add_plugins((MinimalPlugins, PhoenixChannelsPlugin::default()))
        .init_resource::<Log>()
        .add_systems(Update, collect);
    if let Some(w) = wait {
        app.insert_resource(WaitForNetwork::up_to(w));
    }
    let mut channels = Vec::new();
    for _ in 0..SOCKETS {
        let counter = polls.clone();
        // No timer due within a minute: only the network can end a wait early.
        let cfg = config(url).with(|s| {
            s.with_heartbeat(Duration::from_secs(60))
                .with_push_timeout(Duration::from_secs(60))
                .with_join_timeout(Duration::from_secs(60))
        });
        let cfg = cfg.with_transport(move |req: ConnectRequest, waker: &NetworkWaker| {
            Box::new(Counting {
                inner: Transport::connect_waking(req, waker),
                polls: counter.clone(),
            }) as Box<dyn PhoenixTransport>
        });
        let socket = app.world_mut().spawn(PhoenixSocket::new(cfg)).id();
        let ch = app
            .world_mut()
            .spawn(PhoenixChannel::new(topic).on_socket(socket))
            .id();
        channels.push(ch);
    }
    pump_until(&mut app, 30, "every socket joined", |w| {
        channels
            .iter()
            .all(|c| w.get::<ChannelStatus>(*c).map(|s| s.0) == Some(ChannelState::Joined))
    });
    (app, polls, channels)
}

/// When the first push reply was seen.
#[derive(Resource, Default)]
struct SeenReply(Option<Instant>);

/// Stamps the first reply, and wakes the frame's wait so the test loop sees it at once (as an
/// app that has work after a reply would).
fn stamp_reply(
    mut seen: ResMut<SeenReply>,
    mut replies: MessageReader<PushReplied>,
    wait: Res<WaitForNetwork>,
) {
    if replies.read().next().is_some() && seen.0.is_none() {
        seen.0 = Some(Instant::now());
        wait.waker().wake();
    }
}

fn ticks(app: &App) -> usize {
    log(app).messages.iter().filter(|m| m.is("tick")).count()
}

#[test]
fn idle_sockets_are_not_polled_and_data_still_arrives() {
    let server = Server::local(phoenix_test_server::start().unwrap());
    let topic = unique("echo:ready-");
    let (mut app, polls, channels) = swarm(&server.url, &topic, None);
    // Let the last join replies and acknowledgements settle.
    for _ in 0..50 {
        app.update();
    }
    let before = polls.load(Ordering::Relaxed);
    for _ in 0..200 {
        app.update();
    }
    let idle = polls.load(Ordering::Relaxed) - before;
    // Without readiness every frame polls every socket: 200 x 40 = 8000 calls.
    #[cfg(any(target_os = "linux", target_os = "android"))]
    assert!(
        idle < SOCKETS as u64,
        "{idle} polls in 200 idle frames of {SOCKETS} sockets"
    );
    eprintln!("{idle} polls in 200 idle frames of {SOCKETS} sockets");

    // A broadcast reaches every socket: the set reports them, they are polled, it arrives.
    server
        .local
        .as_ref()
        .unwrap()
        .broadcast(&topic, "tick", json!({"n": 1}));
    pump_until(&mut app, 15, "the broadcast on every socket", |w| {
        w.resource::<Log>()
            .messages
            .iter()
            .filter(|m| m.is("tick"))
            .count()
            == SOCKETS
    });
    // And a socket still pushes and gets its reply.
    let h = push(
        &mut app,
        PushMessage::json(channels[0], "echo", &json!({"n": 2})).unwrap(),
    );
    assert!(matches!(reply(&mut app, h).outcome, PushOutcome::Ok(_)));
}

#[test]
fn wait_for_network_sleeps_over_many_sockets_and_wakes_for_any() {
    let server = Server::local(phoenix_test_server::start().unwrap());
    let topic = unique("echo:ready-wait-");
    let (mut app, _, channels) = swarm(&server.url, &topic, Some(Duration::from_millis(500)));
    app.update();
    // Idle: each frame sleeps its 500 ms (no timer is due for 30 s).
    let frames = frames_in(&mut app, Duration::from_secs(1));
    assert!(
        frames <= 5,
        "{frames} idle frames in a second: the loop did not sleep"
    );

    // Data on one socket ends the sleep: a push from the last socket, answered by the server.
    // The frames may now sleep 20 s: only the reply's arrival can end the wait sooner. When it
    // was seen is stamped inside the frame (the frame then sleeps again at its end).
    app.insert_resource(WaitForNetwork::up_to(Duration::from_secs(20)))
        .init_resource::<SeenReply>()
        .add_systems(Update, stamp_reply);
    let t0 = Instant::now();
    let h = push(
        &mut app,
        PushMessage::json(*channels.last().unwrap(), "echo", &json!({"k": 1})).unwrap(),
    );
    while app.world().resource::<SeenReply>().0.is_none() {
        app.update();
        assert!(t0.elapsed() < Duration::from_secs(60), "no reply");
    }
    let waited = app.world().resource::<SeenReply>().0.unwrap() - t0;
    assert!(
        waited < Duration::from_secs(10),
        "{waited:?}: a wait missed the reply"
    );
    assert!(log(&app).replies.iter().any(|r| r.handle == h));
    assert_eq!(ticks(&app), 0);
}

/// Every socket's next timer sits in one heap for all sockets; entries left behind when a timer
/// moves are dropped by rebuilding the heap once they outnumber the sockets. A rebuild must keep
/// each socket's current entry: socket A waits only for its push timeout (nothing else happens
/// on it, so only the heap brings it back), while socket B moves its next timer earlier 300
/// times, one entry each, and so forces a rebuild while A waits.
#[test]
fn a_timer_heap_rebuild_keeps_every_sockets_next_timer() {
    let server = Server::start();
    let mut app = App::new();
    app.add_plugins((MinimalPlugins, PhoenixChannelsPlugin::default()))
        .init_resource::<Log>()
        .add_systems(Update, collect);
    let mut channels = Vec::new();
    for _ in 0..2 {
        let cfg = config(&server.url).with(|s| {
            // Every timer but the pushes' is an hour away.
            s.with_heartbeat(Duration::from_secs(3600))
                .with_push_timeout(Duration::from_secs(3600))
                .with_join_timeout(Duration::from_secs(3600))
        });
        let socket = app.world_mut().spawn(PhoenixSocket::new(cfg)).id();
        let topic = unique("echo:heap-");
        channels.push(
            app.world_mut()
                .spawn(PhoenixChannel::new(topic).on_socket(socket))
                .id(),
        );
    }
    pump_until(&mut app, 30, "both sockets joined", |w| {
        channels
            .iter()
            .all(|c| w.get::<ChannelStatus>(*c).map(|s| s.0) == Some(ChannelState::Joined))
    });
    let (a, b) = (channels[0], channels[1]);
    // "noreply" is never answered: A's push ends by its timeout, A's only timer.
    let t0 = Instant::now();
    let ha = push(
        &mut app,
        PushMessage::json(a, "noreply", &json!({}))
            .unwrap()
            .with_timeout(Duration::from_secs(8)),
    );
    app.update();
    // B: each push is due a second before the one before (and long before B's heartbeat), so
    // each moves B's next timer earlier.
    let mut b_pushes = Vec::new();
    for i in 0..300u64 {
        b_pushes.push(push(
            &mut app,
            PushMessage::json(b, "noreply", &json!({ "i": i }))
                .unwrap()
                .with_timeout(Duration::from_secs(900 - i)),
        ));
        app.update();
    }
    let churn = t0.elapsed();
    if !replies_for(&app, ha).is_empty() {
        // Only on a machine so loaded that 300 frames took 8 s: nothing to check then.
        eprintln!("A timed out during B's pushes ({churn:?}): the rebuild was not tested");
        return;
    }
    pump_until(&mut app, 60, "A's push timeout", |w| {
        w.resource::<Log>().replies.iter().any(|r| r.handle == ha)
    });
    assert_eq!(reply(&mut app, ha).outcome, PushOutcome::Timeout);
    // B's pushes are all still waiting.
    assert!(b_pushes.iter().all(|h| replies_for(&app, *h).is_empty()));
}
