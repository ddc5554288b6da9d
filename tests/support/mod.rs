//! Shared harness for the plugin's integration tests: a headless Bevy app on a real WebSocket
//! to the test server on loopback, or to the server named by `PHOENIX_URL` (e.g. a real
//! Phoenix running ../shared/reference-app), so one suite proves us against both.
#![allow(dead_code, clippy::unwrap_used)]

use std::time::{Duration, Instant};

use bevy::prelude::*;
use bevy_phoenix_channels::prelude::*;
use phoenix_test_server::TestServer;

/// Where the tests connect.
pub struct Server {
    /// The in-process test server (`None` when `PHOENIX_URL` is set).
    pub local: Option<TestServer>,
    /// The socket endpoint.
    pub url: String,
}

impl Server {
    /// The test server, or `PHOENIX_URL`.
    pub fn start() -> Self {
        match std::env::var("PHOENIX_URL") {
            Ok(url) if !url.is_empty() => Server { local: None, url },
            _ => Self::local(phoenix_test_server::start().expect("start test server")),
        }
    }

    /// A specific local server (fault injection, custom config).
    pub fn local(server: TestServer) -> Self {
        let url = server.url();
        Server {
            local: Some(server),
            url,
        }
    }

    /// The local server, or `None` (and a note) when running against `PHOENIX_URL`: tests
    /// that need fault injection skip themselves then.
    pub fn faulty(&self, test: &str) -> Option<&TestServer> {
        if self.local.is_none() {
            eprintln!("{test}: skipped: needs fault injection, not available with PHOENIX_URL");
        }
        self.local.as_ref()
    }
}

/// Everything the app received, for assertions.
#[derive(Resource, Default)]
pub struct Log {
    pub messages: Vec<ChannelMessage>,
    pub replies: Vec<PushReplied>,
    pub presence: Vec<PresenceChanged>,
    pub connected: Vec<SocketConnected>,
    pub disconnected: Vec<SocketDisconnected>,
    pub refused: Vec<SocketConnectRefused>,
    pub failed: Vec<SocketConnectFailed>,
    pub reconnecting: Vec<SocketReconnecting>,
    pub joined: Vec<ChannelJoined>,
    pub errored: Vec<ChannelErrored>,
    pub closed: Vec<ChannelClosed>,
    pub protocol_errors: Vec<PhoenixProtocolError>,
}

/// Appends every message the plugin wrote this frame to [`Log`].
#[allow(clippy::too_many_arguments)]
pub fn collect(
    mut log: ResMut<Log>,
    mut m: MessageReader<ChannelMessage>,
    mut r: MessageReader<PushReplied>,
    mut p: MessageReader<PresenceChanged>,
    mut c: MessageReader<SocketConnected>,
    mut d: MessageReader<SocketDisconnected>,
    mut rf: MessageReader<SocketConnectRefused>,
    mut f: MessageReader<SocketConnectFailed>,
    mut rc: MessageReader<SocketReconnecting>,
    (mut j, mut e, mut cl, mut pe): (
        MessageReader<ChannelJoined>,
        MessageReader<ChannelErrored>,
        MessageReader<ChannelClosed>,
        MessageReader<PhoenixProtocolError>,
    ),
) {
    log.messages.extend(m.read().cloned());
    log.replies.extend(r.read().cloned());
    log.presence.extend(p.read().cloned());
    log.connected.extend(c.read().cloned());
    log.disconnected.extend(d.read().cloned());
    log.refused.extend(rf.read().cloned());
    log.failed.extend(f.read().cloned());
    log.reconnecting.extend(rc.read().cloned());
    log.joined.extend(j.read().cloned());
    log.errored.extend(e.read().cloned());
    log.closed.extend(cl.read().cloned());
    log.protocol_errors.extend(pe.read().cloned());
}

/// A headless app with the plugin and a default socket for `config`. Nothing runs until
/// [`pump_until`] calls `update()`.
pub fn app(config: impl Into<PhoenixSocketConfig>) -> App {
    let mut app = App::new();
    app.add_plugins(MinimalPlugins)
        .add_plugins(PhoenixChannelsPlugin::with_config(config))
        .init_resource::<Log>()
        .add_systems(Update, collect);
    app
}

/// A socket config for `url` with fast reconnects and no jitter.
pub fn config(url: &str) -> PhoenixSocketConfig {
    PhoenixSocketConfig::new(url).with(|s| {
        s.with_jitter(0.0)
            .with_reconnect_backoff(Backoff::constant(Duration::from_millis(50)))
            .with_rejoin_backoff(Backoff::constant(Duration::from_millis(200)))
    })
}

/// Runs frames (with a short sleep between them) until `done` holds, or panics after `secs`.
pub fn pump_until(app: &mut App, secs: u64, what: &str, mut done: impl FnMut(&mut World) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        app.update();
        if done(app.world_mut()) {
            return;
        }
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Runs frames back to back, with no sleep of the test's own, for `d`; returns how many ran
/// (a loop that sleeps in `WaitForNetwork` runs a handful where a spinning one runs thousands).
pub fn frames_in(app: &mut App, d: Duration) -> usize {
    let t0 = Instant::now();
    let mut frames = 0;
    while t0.elapsed() < d {
        app.update();
        frames += 1;
    }
    frames
}

/// Runs frames for `ms` milliseconds.
pub fn pump_for(app: &mut App, ms: u64) {
    let deadline = Instant::now() + Duration::from_millis(ms);
    while Instant::now() < deadline {
        app.update();
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// The log.
pub fn log(app: &App) -> &Log {
    app.world().resource::<Log>()
}

/// Spawns a channel entity on the default socket.
pub fn join(app: &mut App, channel: PhoenixChannel) -> Entity {
    app.world_mut().spawn(channel).id()
}

/// Writes a push and returns its handle.
pub fn push(app: &mut App, msg: PushMessage) -> PushHandle {
    let h = msg.handle;
    app.world_mut().write_message(msg);
    h
}

/// Waits for the single reply of `h`.
pub fn reply(app: &mut App, h: PushHandle) -> PushReplied {
    pump_until(app, 15, "push reply", |w| {
        w.resource::<Log>().replies.iter().any(|r| r.handle == h)
    });
    let all: Vec<_> = log(app)
        .replies
        .iter()
        .filter(|r| r.handle == h)
        .cloned()
        .collect();
    assert_eq!(all.len(), 1, "exactly one outcome per push: {all:?}");
    all.into_iter().next().unwrap()
}

/// Waits until the channel entity has joined.
pub fn wait_joined(app: &mut App, channel: Entity) {
    pump_until(app, 15, "channel joined", |w| {
        w.get::<ChannelStatus>(channel).map(|s| s.0) == Some(ChannelState::Joined)
    });
}

/// A unique topic suffix, so parallel tests (and a shared real server) never collide.
pub fn unique(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let pid = std::process::id();
    format!("{prefix}{pid}-{}", N.fetch_add(1, Ordering::Relaxed))
}

// ----- helpers for the plugin_* suites ---------------------------------------------------

/// The app's default socket entity.
pub fn socket_entity(app: &mut App) -> Entity {
    let world = app.world_mut();
    let mut q = world.query_filtered::<Entity, With<DefaultSocket>>();
    q.single(world).expect("one default socket")
}

/// Waits until the default socket is open.
pub fn wait_connected(app: &mut App) {
    pump_until(app, 15, "socket connected", |w| {
        let mut q = w.query_filtered::<&SocketStatus, With<DefaultSocket>>();
        q.iter(w).any(SocketStatus::is_connected)
    });
}

/// A channel entity's state (`None` if it has no `ChannelStatus`).
pub fn channel_state(app: &App, channel: Entity) -> Option<ChannelState> {
    app.world().get::<ChannelStatus>(channel).map(|s| s.0)
}

/// The join_ref of a channel entity's current (or last) join, read from its socket's core.
pub fn join_ref_of(app: &App, channel: Entity) -> Option<u64> {
    let link = *app.world().get::<ChannelLink>(channel)?;
    let sock = app.world().get::<PhoenixSocket>(link.socket)?;
    sock.core().channel(link.id)?.join_ref
}

/// The replies logged for `h` so far.
pub fn replies_for(app: &App, h: PushHandle) -> Vec<PushReplied> {
    log(app)
        .replies
        .iter()
        .filter(|r| r.handle == h)
        .cloned()
        .collect()
}
