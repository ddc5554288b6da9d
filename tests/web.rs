//! Browser (wasm32) tests: the web transport (src/transport/web.rs) and the whole plugin, run in
//! headless Chromium by `wasm-bindgen-test-runner` against `phoenix_test_server` running natively
//! on loopback. The server's URL is baked in at compile time from `PHOENIX_TEST_URL` (and a
//! second server's, started with `--idle-timeout-ms 1500`, from `PHOENIX_TEST_IDLE_URL`)
//! (`ws://127.0.0.1:PORT/socket`); `.ci/extra` starts the server and sets it:
//!
//! ```sh
//! CHROMEDRIVER=/usr/bin/chromedriver CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER=wasm-bindgen-test-runner \
//!   PHOENIX_TEST_URL=ws://127.0.0.1:4000/socket \
//!   PHOENIX_TEST_IDLE_URL=ws://127.0.0.1:4001/socket \
//!   cargo test -p bevy_phoenix_channels --target wasm32-unknown-unknown --test web
//! ```
//!
//! The browser only runs WebSocket callbacks when the page's event loop gets control, so nothing
//! here blocks: each frame is one `app.update()` (or one transport `poll`) followed by an awaited
//! `setTimeout` promise. Bevy's `Time<Real>` comes from `performance.now()` (the `web` feature).
#![cfg(target_arch = "wasm32")]
#![allow(clippy::unwrap_used)]

use std::cell::Cell;
use std::time::Duration;

use bevy::prelude::*;
use bevy_phoenix_channels::prelude::*;
use bevy_phoenix_channels::protocol::Transmit;
use bevy_phoenix_channels::protocol::wire::{self, BinaryFrame};
use bevy_phoenix_channels::transport::{
    BuiltinConnector, ConnectRequest, NetworkWaker, PhoenixConnector, PhoenixTransport, Transport,
    TransportError, TransportEvent,
};
use serde_json::{Value, json};
use wasm_bindgen_test::{wasm_bindgen_test, wasm_bindgen_test_configure};
use web_time::Instant;

wasm_bindgen_test_configure!(run_in_browser);

/// The test server's socket endpoint, e.g. `ws://127.0.0.1:4000/socket`.
fn server_url() -> &'static str {
    match option_env!("PHOENIX_TEST_URL") {
        Some(url) if !url.is_empty() => url,
        // Failing (not skipping) keeps a misconfigured CI from passing with nothing tested.
        _ => panic!(
            "PHOENIX_TEST_URL was not set at compile time: start phoenix_test_server and build \
             this test with PHOENIX_TEST_URL=ws://127.0.0.1:PORT/socket (see .ci/extra)"
        ),
    }
}

/// A second test server that closes a websocket after 1.5 s without input
/// (`--idle-timeout-ms 1500`), for the hidden-tab keepalive. Baked in from
/// `PHOENIX_TEST_IDLE_URL`, like [`server_url`].
fn idle_server_url() -> &'static str {
    match option_env!("PHOENIX_TEST_IDLE_URL") {
        Some(url) if !url.is_empty() => url,
        _ => panic!(
            "PHOENIX_TEST_IDLE_URL was not set at compile time: start a second phoenix_test_server \
             with --idle-timeout-ms 1500 and build with its URL (see .ci/extra)"
        ),
    }
}

/// Hands control back to the browser for about `ms` milliseconds (callbacks run meanwhile).
async fn yield_ms(ms: i32) {
    let promise = js_sys::Promise::new(&mut |resolve, _reject| {
        web_sys::window()
            .expect("a window (run_in_browser)")
            .set_timeout_with_callback_and_timeout_and_arguments_0(&resolve, ms)
            .expect("setTimeout");
    });
    wasm_bindgen_futures::JsFuture::from(promise)
        .await
        .expect("setTimeout promise");
}

/// A topic suffix unique in this page and across runs against a long-lived server.
fn unique(prefix: &str) -> String {
    thread_local!(static N: Cell<u32> = const { Cell::new(0) });
    let n = N.with(|n| {
        n.set(n.get() + 1);
        n.get()
    });
    format!("{prefix}{}-{n}", js_sys::Date::now() as u64)
}

// ----- the transport alone -------------------------------------------------------------------

/// Polls `t` (yielding between polls) until `n` events arrived or `secs` passed.
async fn poll_events(
    t: &mut dyn PhoenixTransport,
    n: usize,
    secs: u64,
    what: &str,
) -> Vec<TransportEvent> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut got = Vec::new();
    while got.len() < n {
        while let Some(ev) = t.poll() {
            got.push(ev);
        }
        if got.len() >= n {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {n} events, got {}: {got:?}",
            got.len()
        );
        yield_ms(1).await;
    }
    got
}

/// A received frame in a comparable form: text frames as their JSON array, binary frames
/// decoded by the crate's V2 codec into a JSON description.
fn describe(ev: &TransportEvent) -> Value {
    match ev {
        TransportEvent::Text(s) => serde_json::from_str::<Value>(s).unwrap(),
        TransportEvent::Binary(b) => match wire::decode_binary(b).unwrap() {
            BinaryFrame::Push {
                join_ref,
                topic,
                event,
                payload,
            } => {
                json!({"bin": "push", "join_ref": join_ref, "topic": topic, "event": event, "payload": payload})
            }
            BinaryFrame::Reply {
                join_ref,
                msg_ref,
                topic,
                status,
                payload,
            } => {
                json!({"bin": "reply", "join_ref": join_ref, "ref": msg_ref, "topic": topic, "status": status, "payload": payload})
            }
            BinaryFrame::Broadcast {
                topic,
                event,
                payload,
            } => json!({"bin": "broadcast", "topic": topic, "event": event, "payload": payload}),
        },
        other => json!({ "other": format!("{other:?}") }),
    }
}

fn text_reply(topic: &str, msg_ref: u32, response: Value) -> Value {
    json!(["1", msg_ref.to_string(), topic, "phx_reply", {"status": "ok", "response": response}])
}

/// The test server's websocket URL, as a transport connects to it.
fn ws_url() -> String {
    format!("{}/websocket?vsn=2.0.0", server_url())
}

/// Opens a transport through `connector` to the test server, with `f` applied to the request.
fn connect_via(
    connector: &dyn PhoenixConnector,
    f: impl FnOnce(&mut ConnectRequest),
) -> Box<dyn PhoenixTransport> {
    let mut req = ConnectRequest::new(ws_url());
    f(&mut req);
    connector.connect(req, &NetworkWaker::none())
}

/// Joins `topic` on a raw transport opened through `connector` (with `f` applied to the
/// request); the join is sent before the socket opens (queued).
async fn raw_joined_via(
    connector: &dyn PhoenixConnector,
    topic: &str,
    f: impl FnOnce(&mut ConnectRequest),
) -> Box<dyn PhoenixTransport> {
    let mut t = connect_via(connector, f);
    t.send(Transmit::Text(
        json!(["1", "1", topic, "phx_join", {}]).to_string(),
    ))
    .unwrap();
    t.flush();
    let evs = poll_events(&mut *t, 2, 10, "open and join reply").await;
    assert_eq!(evs[0], TransportEvent::Opened { protocol: None });
    assert_eq!(
        describe(&evs[1]),
        text_reply(topic, 1, json!({ "joined": topic }))
    );
    assert!(t.is_open());
    t
}

/// Sends a burst on a joined `t` (round `round`): binary pushes, text pushes and binary echoes,
/// interleaved, all in one go so the server's answers arrive back to back. Returns the frames
/// received (described) and the wire order they were sent in.
async fn wire_order_burst(
    t: &mut dyn PhoenixTransport,
    topic: &str,
    round: u32,
) -> (Vec<Value>, Vec<Value>) {
    const N: u32 = 40;
    let mut want = Vec::new();
    for i in 0..N {
        let r = 2 + 3 * (i + round * N);
        let b = u8::try_from(i).unwrap();
        let push_binary =
            wire::encode_binary_push("1", &r.to_string(), topic, "push_binary", &[b, 0xff])
                .unwrap();
        t.send(Transmit::Binary(push_binary)).unwrap();
        t.send(Transmit::Text(
            json!(["1", (r + 1).to_string(), topic, "push_me", {"event": "text", "payload": {"i": i}}])
                .to_string(),
        ))
        .unwrap();
        let echo =
            wire::encode_binary_push("1", &(r + 2).to_string(), topic, "binary", &[b; 3]).unwrap();
        t.send(Transmit::Binary(echo)).unwrap();
        t.flush();

        want.push(json!({"bin": "push", "join_ref": "1", "topic": topic, "event": "binary_push", "payload": [b, 0xff]}));
        want.push(text_reply(topic, r, json!({})));
        want.push(json!(["1", Value::Null, topic, "text", {"i": i}]));
        want.push(text_reply(topic, r + 1, json!({})));
        want.push(json!({"bin": "reply", "join_ref": "1", "ref": (r + 2).to_string(), "topic": topic, "status": "ok", "payload": [b, b, b]}));
    }
    let got: Vec<Value> = poll_events(t, want.len(), 15, "the burst's answers")
        .await
        .iter()
        .map(describe)
        .collect();
    (got, want)
}

// ----- transport test bodies, shared by the main-thread, ewebsock and worker tests ------------

/// Text and binary frames, both ways, keep their wire order through `connector`'s transport for
/// `rounds` bursts ([`wire_order_burst`], so many frames arrive back to back); the stats count
/// every frame; after `close` nothing follows and sends fail.
async fn keeps_wire_order_of_text_and_binary_frames(
    connector: &dyn PhoenixConnector,
    prefix: &str,
    rounds: u32,
) {
    let topic = unique(prefix);
    let mut t = raw_joined_via(connector, &topic, |_| {}).await;
    for round in 0..rounds {
        let (got, want) = wire_order_burst(&mut *t, &topic, round).await;
        if got != want {
            let first = got.iter().zip(&want).position(|(g, w)| g != w);
            panic!(
                "round {round}: frames out of wire order; first difference at {first:?}\n \
                 got: {got:#?}\nwant: {want:#?}"
            );
        }
    }
    let stats = t.stats();
    let rounds = u64::from(rounds);
    assert_eq!(
        (stats.messages_out, stats.messages_in),
        (1 + rounds * 3 * 40, 1 + rounds * 5 * 40)
    );

    // Closing from this side: no event ever follows.
    t.close();
    assert!(!t.is_open());
    yield_ms(50).await;
    assert_eq!(t.poll(), None);
    assert!(t.send(Transmit::Text("[]".into())).is_err());
}

/// The server's close reaches the app through `connector`'s transport after the frames before
/// it (a server push and its reply), as a close by the peer with close code `code` (`None`: the
/// transport does not pass the code on); the transport is then closed and says nothing more.
/// Returns the closed transport, for the caller's own checks before it is dropped.
async fn reports_the_servers_close(
    connector: &dyn PhoenixConnector,
    prefix: &str,
    code: Option<u16>,
) -> Box<dyn PhoenixTransport> {
    let topic = unique(prefix);
    let mut t = raw_joined_via(connector, &topic, |_| {}).await;
    t.send(Transmit::Text(
        json!(["1", "2", &topic, "push_me", {"event": "last", "payload": {}}]).to_string(),
    ))
    .unwrap();
    t.send(Transmit::Text(
        json!(["1", "3", &topic, "disconnect_me", {}]).to_string(),
    ))
    .unwrap();
    t.flush();
    let evs = poll_events(&mut *t, 3, 10, "a push, its reply and the server's close").await;
    assert_eq!(
        describe(&evs[0]),
        json!(["1", Value::Null, &topic, "last", {}])
    );
    assert_eq!(describe(&evs[1]), text_reply(&topic, 2, json!({})));
    match &evs[2] {
        TransportEvent::Closed(info) => {
            assert_eq!((info.code, info.by_peer), (code, true), "{info:?}")
        }
        other => panic!("expected Closed, got {other:?}"),
    }
    assert!(!t.is_open());
    yield_ms(20).await;
    assert_eq!(t.poll(), None, "nothing after the terminal event");
    t
}

/// Offered subprotocols (the Phoenix 1.8 auth token's) reach the server through `connector`'s
/// transport, and the one it picked comes back in `Opened`.
async fn offers_subprotocols_and_reports_the_chosen_one(connector: &dyn PhoenixConnector) {
    let mut t = connect_via(connector, |r| {
        r.subprotocols = bevy_phoenix_channels::protocol::config::auth_subprotocols("good-token");
    });
    let evs = poll_events(&mut *t, 1, 10, "open").await;
    assert_eq!(
        evs,
        [TransportEvent::Opened {
            protocol: Some("phoenix".into())
        }]
    );
    t.close();
}

/// A subprotocol the browser refuses (an auth token whose base64 has a '/': "???" is "Pz8/")
/// fails `connector`'s connect with an error that says so, instead of the browser's bare
/// SyntaxError.
async fn names_the_auth_token_a_browser_cannot_send(connector: &dyn PhoenixConnector) {
    let mut t = connect_via(connector, |r| {
        r.subprotocols = vec!["phoenix".into(), "base64url.bearer.phx.Pz8/".into()];
    });
    let evs = poll_events(&mut *t, 1, 10, "the connect failure").await;
    match &evs[0] {
        TransportEvent::Failed(TransportError::Connect(msg)) => {
            assert!(msg.contains("cannot be sent from a browser"), "{msg}")
        }
        other => panic!("expected a connect failure, got {other:?}"),
    }
}

/// An incoming message over `max_frame_size` ends `connector`'s connection with
/// `FrameTooLarge`, text and binary alike, and nothing follows.
async fn enforces_max_frame_size(connector: &dyn PhoenixConnector, prefix: &str) {
    const MAX: usize = 600;
    for binary in [false, true] {
        let topic = unique(prefix);
        let mut t = raw_joined_via(connector, &topic, |r| r.max_frame_size = MAX).await;
        let frame = if binary {
            let body = vec![7u8; 1000];
            Transmit::Binary(wire::encode_binary_push("1", "2", &topic, "binary", &body).unwrap())
        } else {
            let body = "x".repeat(1000);
            Transmit::Text(json!(["1", "2", &topic, "echo", { "pad": body }]).to_string())
        };
        t.send(frame).unwrap();
        t.flush();
        let evs = poll_events(&mut *t, 1, 10, "the too-large reply").await;
        match &evs[..] {
            [TransportEvent::Failed(TransportError::FrameTooLarge { size, max })] => {
                assert!(*size > 1000 && *max == MAX, "{size} {max}");
            }
            other => panic!("binary={binary}: expected FrameTooLarge, got {other:?}"),
        }
        assert!(!t.is_open());
        yield_ms(20).await;
        assert_eq!(t.poll(), None);
    }
}

/// Nothing listening: `connector`'s connect failure arrives as an event (a send before it is
/// accepted, queued), never as a panic or a hang; then the transport is closed and silent.
async fn nothing_listening_is_a_connect_failure(connector: &dyn PhoenixConnector) {
    // Port 9 (discard) is closed on loopback, and on Chromium's unsafe-port list anyway.
    let mut t = connector.connect(
        ConnectRequest::new("ws://127.0.0.1:9/socket/websocket"),
        &NetworkWaker::none(),
    );
    t.send(Transmit::Text("[]".into())).unwrap();
    t.flush();
    let evs = poll_events(&mut *t, 1, 10, "the connect failure").await;
    assert!(
        matches!(
            &evs[..],
            [TransportEvent::Failed(TransportError::Connect(_))]
        ),
        "{evs:?}"
    );
    assert!(!t.is_open());
    yield_ms(20).await;
    assert_eq!(t.poll(), None);
}

/// The hidden-tab keepalive of `connector`'s transport: silent while the app polls, heartbeats
/// on its own when it stops; the server answers each one, and the transport consumes and
/// counts the replies, never returns them.
async fn keepalive_speaks_only_while_nobody_polls(connector: &dyn PhoenixConnector) {
    let mut t = connect_via(connector, |r| {
        r.keepalive = Some(Duration::from_millis(200));
    });
    let opened = poll_events(&mut *t, 1, 10, "open").await;
    assert!(
        matches!(opened[0], TransportEvent::Opened { .. }),
        "{opened:?}"
    );
    // Polled every 20 ms for 1 s: nothing of its own goes out, nothing comes in.
    let until = Instant::now() + Duration::from_millis(1_000);
    while Instant::now() < until {
        if let Some(ev) = t.poll() {
            panic!("nothing was asked for: {ev:?}");
        }
        yield_ms(20).await;
    }
    assert_eq!(t.stats().keepalives_sent, 0);
    // Nobody polls for 1.5 s, as when a hidden tab stops the app's frames.
    yield_ms(1_500).await;
    let mut got = Vec::new();
    while let Some(ev) = t.poll() {
        got.push(ev);
    }
    // The replies to the last heartbeats may still be on their way: wait for them (polling
    // resets the quiet period, so no new heartbeat goes out meanwhile).
    let deadline = Instant::now() + Duration::from_secs(5);
    while t.stats().keepalive_replies != t.stats().keepalives_sent {
        assert!(Instant::now() < deadline, "{:?}", t.stats());
        while let Some(ev) = t.poll() {
            got.push(ev);
        }
        yield_ms(20).await;
    }
    let stats = t.stats();
    assert!(
        (3..=10).contains(&stats.keepalives_sent),
        "{stats:?}: one heartbeat per 200 ms for 1.5 s"
    );
    // The server answered each one; the transport consumed the replies itself.
    assert_eq!(stats.keepalive_replies, stats.keepalives_sent, "{stats:?}");
    assert!(got.is_empty(), "nothing for the app: {got:?}");
    assert_eq!(stats.messages_in, 0, "{stats:?}");
    t.close();
}

// ----- the main-thread transport ----------------------------------------------------------------

/// Text and binary frames, both ways, arrive in wire order: a burst of binary pushes, text
/// pushes, binary replies and text replies, all interleaved. This is what ewebsock 0.8 broke
/// (its Blob mode decodes binary frames asynchronously; see the ewebsock test below);
/// `binaryType = "arraybuffer"` keeps it.
#[wasm_bindgen_test]
async fn transport_keeps_wire_order_of_text_and_binary_frames() {
    keeps_wire_order_of_text_and_binary_frames(&BuiltinConnector, "echo:web-raw-", 1).await;
}

/// A close from the server reports its code (ewebsock 0.8 passed none on).
#[wasm_bindgen_test]
async fn transport_reports_the_servers_close_code() {
    reports_the_servers_close(&BuiltinConnector, "echo:web-close-", Some(1000)).await;
}

/// Offered subprotocols reach the server and the one it picked comes back (ewebsock 0.8 dropped
/// both on the web); the Phoenix 1.8 auth token travels this way.
#[wasm_bindgen_test]
async fn transport_offers_subprotocols_and_reports_the_chosen_one() {
    offers_subprotocols_and_reports_the_chosen_one(&BuiltinConnector).await;
}

/// An incoming message over `max_frame_size` ends the connection with `FrameTooLarge`, text and
/// binary alike, and nothing follows.
#[wasm_bindgen_test]
async fn transport_enforces_max_frame_size() {
    enforces_max_frame_size(&BuiltinConnector, "echo:web-big-").await;
}

/// A subprotocol the browser refuses (an auth token whose base64 has a '/': "???" is "Pz8/")
/// fails the connect with an error that says so, instead of the browser's bare SyntaxError.
#[wasm_bindgen_test]
async fn transport_names_the_auth_token_a_browser_cannot_send() {
    names_the_auth_token_a_browser_cannot_send(&BuiltinConnector).await;
}

/// The hidden-tab keepalive: silent while the app polls, heartbeats on its own when it stops.
#[wasm_bindgen_test]
async fn transport_keepalive_speaks_only_while_nobody_polls() {
    keepalive_speaks_only_while_nobody_polls(&BuiltinConnector).await;
}

/// A frozen app (no `update()` for 4 s, as in a hidden tab) keeps its connection to a server that
/// closes websockets after 1.5 s of silence, because the transport's keepalive speaks for it.
#[wasm_bindgen_test]
async fn plugin_keeps_its_connection_while_the_app_is_frozen() {
    keeps_its_connection_while_frozen(app_from(frozen_config()), "echo:web-frozen-").await;
}

/// Nothing listening, an invalid URL, a subprotocol the browser rejects: each failure arrives as
/// an event, never as a panic or a hang.
#[wasm_bindgen_test]
async fn transport_connect_failure_is_an_event() {
    nothing_listening_is_a_connect_failure(&BuiltinConnector).await;
    // An invalid URL fails the same way (the WebSocket constructor throws).
    let mut t = Transport::connect(ConnectRequest::new("not a url"));
    let evs = poll_events(&mut t, 1, 2, "the bad URL failure").await;
    assert!(
        matches!(
            &evs[..],
            [TransportEvent::Failed(TransportError::Connect(_))]
        ),
        "{evs:?}"
    );
    // So does a subprotocol the browser rejects: '/' is not a token character (RFC 6455), and
    // standard base64 of an auth token containing '?' has one ("???" encodes as "Pz8/").
    let mut req = ConnectRequest::new(ws_url());
    req.subprotocols = bevy_phoenix_channels::protocol::config::auth_subprotocols("???");
    let mut t = Transport::connect(req);
    let evs = poll_events(&mut t, 1, 2, "the bad subprotocol failure").await;
    assert!(
        matches!(&evs[..], [TransportEvent::Failed(TransportError::Connect(e))] if e.starts_with("cannot open")),
        "{evs:?}"
    );
}

// ----- the plugin in a Bevy app --------------------------------------------------------------

/// Everything the app received, in the order its systems read it.
#[derive(Resource, Default)]
struct Log {
    messages: Vec<ChannelMessage>,
    replies: Vec<PushReplied>,
    connected: usize,
    disconnected: Vec<SocketDisconnected>,
    refused: usize,
    failed: Vec<SocketConnectFailed>,
    reconnecting: usize,
    joined: Vec<ChannelJoined>,
    errored: Vec<ChannelErrored>,
    presence: Vec<PresenceChanged>,
}

#[allow(clippy::too_many_arguments)]
fn collect(
    mut log: ResMut<Log>,
    mut m: MessageReader<ChannelMessage>,
    mut r: MessageReader<PushReplied>,
    mut c: MessageReader<SocketConnected>,
    mut d: MessageReader<SocketDisconnected>,
    mut j: MessageReader<ChannelJoined>,
    mut e: MessageReader<ChannelErrored>,
    mut p: MessageReader<PresenceChanged>,
    (mut rf, mut f, mut rc): (
        MessageReader<SocketConnectRefused>,
        MessageReader<SocketConnectFailed>,
        MessageReader<SocketReconnecting>,
    ),
) {
    log.refused += rf.read().count();
    log.failed.extend(f.read().cloned());
    log.reconnecting += rc.read().count();
    log.messages.extend(m.read().cloned());
    log.replies.extend(r.read().cloned());
    log.connected += c.read().count();
    log.disconnected.extend(d.read().cloned());
    log.joined.extend(j.read().cloned());
    log.errored.extend(e.read().cloned());
    log.presence.extend(p.read().cloned());
}

/// A headless app: `MinimalPlugins` (its schedule runner is never started: the test drives
/// `update()` itself) and the plugin's default socket on the test server.
fn app() -> App {
    app_with(|s| s)
}

/// [`app`] with more socket settings.
fn app_with(f: impl FnOnce(SocketConfig) -> SocketConfig) -> App {
    app_on(server_url(), f)
}

/// [`app_with`] on another server.
fn app_on(url: &str, f: impl FnOnce(SocketConfig) -> SocketConfig) -> App {
    app_from(socket_config(url, f))
}

fn socket_config(url: &str, f: impl FnOnce(SocketConfig) -> SocketConfig) -> PhoenixSocketConfig {
    PhoenixSocketConfig::new(url).with(|s| {
        f(s.with_jitter(0.0)
            .with_reconnect_backoff(Backoff::constant(Duration::from_millis(50))))
    })
}

/// The test app for a socket config.
fn app_from(config: PhoenixSocketConfig) -> App {
    let mut app = App::new();
    app.add_plugins(MinimalPlugins)
        .add_plugins(PhoenixChannelsPlugin::with_config(config))
        .init_resource::<Log>()
        .add_systems(Update, collect);
    app
}

fn log(app: &App) -> &Log {
    app.world().resource::<Log>()
}

/// Runs frames, yielding to the browser between them, until `done` holds; panics after `secs`.
async fn pump_until(
    app: &mut App,
    secs: u64,
    what: &str,
    mut done: impl FnMut(&mut World) -> bool,
) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        app.update();
        if done(app.world_mut()) {
            return;
        }
        if Instant::now() >= deadline {
            let l = log(app);
            panic!(
                "timed out after {secs} s waiting for: {what}\nconnected {} disconnected {:?}\n\
                 joined {:?}\nerrored {:?}\nreplies {:?}\nmessages {:?}",
                l.connected, l.disconnected, l.joined, l.errored, l.replies, l.messages
            );
        }
        yield_ms(1).await;
    }
}

fn push(app: &mut App, msg: PushMessage) -> PushHandle {
    let h = msg.handle;
    app.world_mut().write_message(msg);
    h
}

async fn reply(app: &mut App, h: PushHandle) -> PushReplied {
    pump_until(app, 10, "a push reply", |w| {
        w.resource::<Log>().replies.iter().any(|r| r.handle == h)
    })
    .await;
    let all: Vec<_> = log(app)
        .replies
        .iter()
        .filter(|r| r.handle == h)
        .cloned()
        .collect();
    assert_eq!(all.len(), 1, "exactly one outcome per push: {all:?}");
    all.into_iter().next().unwrap()
}

async fn joined(app: &mut App, channel: PhoenixChannel) -> Entity {
    let ch = app.world_mut().spawn(channel).id();
    pump_until(app, 10, "channel joined", |w| {
        w.get::<ChannelStatus>(ch).map(|s| s.0) == Some(ChannelState::Joined)
    })
    .await;
    ch
}

/// Runs frames until `app`'s socket was disconnected, has connected a second time and has
/// rejoined a channel; panics after 10 s.
async fn until_reconnected_and_rejoined(app: &mut App, what: &str) {
    pump_until(app, 10, what, |w| {
        let l = w.resource::<Log>();
        !l.disconnected.is_empty() && l.connected == 2 && l.joined.iter().any(|j| j.rejoin)
    })
    .await;
}

/// An `echo` push on `ch` (payload `{"after": after}`) gets an ok reply: the channel works.
async fn echo_after(app: &mut App, ch: Entity, after: &str) {
    let h = push(
        app,
        PushMessage::json(ch, "echo", &json!({ "after": after })).unwrap(),
    );
    assert!(reply(app, h).await.is_ok());
}

// ----- plugin test bodies, shared by the main-thread, ewebsock and worker tests ----------------

/// The socket config of the frozen-app tests: the idle-timeout server (closes websockets after
/// 1.5 s of silence), heartbeats every 500 ms.
fn frozen_config() -> PhoenixSocketConfig {
    socket_config(idle_server_url(), |s| {
        s.with_heartbeat(Duration::from_millis(500))
    })
}

/// `app` (on [`frozen_config`]) frozen for 4 s (no `update()`, as in a hidden tab) keeps its
/// connection: the transport's keepalive speaks for it; an echo then gets its reply, with no
/// disconnect and no rejoin.
async fn keeps_its_connection_while_frozen(mut app: App, prefix: &str) {
    let ch = joined(&mut app, PhoenixChannel::new(unique(prefix))).await;
    yield_ms(4_000).await;
    echo_after(&mut app, ch, "freeze").await;
    let l = log(&app);
    assert!(l.disconnected.is_empty(), "{:?}", l.disconnected);
    assert_eq!(l.connected, 1);
    assert_eq!(l.joined.len(), 1, "no rejoin: {:?}", l.joined);
}

/// The server drops `app`'s connection (a `disconnect_me` push on the joined `ch`): the plugin
/// reconnects and rejoins, and an echo on `ch` then gets its reply. Returns the first
/// disconnect's reason (debug-formatted), for the caller's transport-specific checks.
async fn server_disconnect_then_rejoin(app: &mut App, ch: Entity) -> String {
    push(
        app,
        PushMessage::json(ch, "disconnect_me", &json!({}))
            .unwrap()
            .fire_and_forget(),
    );
    until_reconnected_and_rejoined(app, "disconnect, reconnect and rejoin").await;
    echo_after(app, ch, "rejoin").await;
    format!("{:?}", log(app).disconnected[0].reason)
}

/// `pagehide` (as when the user navigates away) closes `app`'s socket cleanly (code 1000), as
/// phoenix.js does; when frames run again the plugin reconnects and rejoins, and an echo gets
/// its reply.
async fn closes_cleanly_on_pagehide_and_reconnects_after(mut app: App, prefix: &str) {
    let ch = joined(&mut app, PhoenixChannel::new(unique(prefix))).await;
    web_sys::window()
        .unwrap()
        .dispatch_event(&web_sys::Event::new("pagehide").unwrap())
        .unwrap();
    until_reconnected_and_rejoined(&mut app, "clean close, reconnect and rejoin").await;
    // A clean close: 1000 (the browser reports the code the server echoed, not our reason).
    let reason = format!("{:?}", log(&app).disconnected[0].reason);
    assert!(reason.contains("code: Some(1000)"), "{reason}");
    echo_after(&mut app, ch, "pagehide").await;
}

/// A JSON `echo` push on `ch` comes back as an ok reply with the same JSON.
async fn json_echo(app: &mut App, ch: Entity, body: &Value) {
    let h = push(app, PushMessage::json(ch, "echo", body).unwrap());
    match &reply(app, h).await.outcome {
        PushOutcome::Ok(p) => assert_eq!(&p.decode::<Value>().unwrap(), body),
        other => panic!("expected an ok echo, got {other:?}"),
    }
}

/// A binary `binary` push on `ch` comes back as a binary ok reply with the same bytes.
async fn binary_echo(app: &mut App, ch: Entity, bytes: Vec<u8>) {
    let h = push(app, PushMessage::binary(ch, "binary", bytes.clone()));
    match &reply(app, h).await.outcome {
        PushOutcome::Ok(p) => {
            assert!(p.is_binary(), "{p:?}");
            assert_eq!(p.as_bytes(), Some(&bytes[..]));
        }
        other => panic!("expected a binary ok reply, got {other:?}"),
    }
}

/// A larger binary payload (256 KiB) both ways on `ch`; nothing errored or disconnected.
async fn big_binary_echo(app: &mut App, ch: Entity) {
    let big: Vec<u8> = (0..256 * 1024).map(|i| (i % 251) as u8).collect();
    let h = push(app, PushMessage::binary(ch, "binary", big.clone()));
    let r = reply(app, h).await;
    assert!(r.response().and_then(Payload::as_bytes) == Some(&big[..]));
    let l = log(app);
    assert!(l.errored.is_empty() && l.disconnected.is_empty());
}

/// `msg` (a push whose event its room channel broadcasts back, e.g. `shout`) gets an ok reply,
/// and the broadcast of `event` arrives; returns it.
async fn broadcast_back(app: &mut App, msg: PushMessage, event: &str) -> ChannelMessage {
    let h = push(app, msg);
    assert!(reply(app, h).await.is_ok());
    pump_until(app, 10, &format!("the {event} broadcast"), |w| {
        w.resource::<Log>()
            .messages
            .iter()
            .any(|m| &*m.event == event)
    })
    .await;
    log(app)
        .messages
        .iter()
        .find(|m| &*m.event == event)
        .cloned()
        .unwrap()
}

/// A binary shout on the room channel `ch` comes back as a binary broadcast with the same
/// bytes; returns it.
async fn binary_broadcast_back(app: &mut App, ch: Entity) -> ChannelMessage {
    let data = vec![0xde_u8, 0xad, 0xbe, 0xef];
    let msg = PushMessage::binary(ch, "shout_binary", data.clone());
    let m = broadcast_back(app, msg, "shout_binary").await;
    assert_eq!(m.payload.as_bytes(), Some(&data[..]));
    m
}

/// `app`'s auth token ("good-token") reached the server's `connect/3`: `whoami` on the echo
/// channel `ch` answers it.
async fn auth_token_reached_the_server(app: &mut App, ch: Entity) {
    let h = push(app, PushMessage::json(ch, "whoami", &json!({})).unwrap());
    let r = reply(app, h).await;
    assert_eq!(
        r.response().unwrap().decode::<Value>().unwrap(),
        json!({"auth_token": "good-token"})
    );
}

// ----- the plugin on the main-thread transport ---------------------------------------------------

/// Connect, join, JSON echo, binary both ways (binary reply, binary server push), and the
/// plugin's `Time<Real>` clock running in the browser.
#[wasm_bindgen_test]
async fn plugin_connects_joins_echoes_and_moves_binary_both_ways() {
    let mut app = app();
    pump_until(&mut app, 10, "socket connected", |w| {
        w.resource::<Log>().connected == 1
    })
    .await;
    assert!(app.world().resource::<Time<Real>>().elapsed() > Duration::ZERO);

    let topic = unique("echo:web-");
    let ch = joined(&mut app, PhoenixChannel::new(&topic)).await;
    let j = &log(&app).joined[0];
    assert_eq!((j.entity, &*j.topic, j.rejoin), (ch, topic.as_str(), false));

    json_echo(
        &mut app,
        ch,
        &json!({"hello": "browser", "n": [1, 2, 3], "s": "é ✓"}),
    )
    .await;
    binary_echo(&mut app, ch, vec![0u8, 1, 2, 0x7f, 0x80, 0xfe, 0xff]).await;
    binary_echo(&mut app, ch, Vec::new()).await;

    let h = push(
        &mut app,
        PushMessage::binary(ch, "push_binary", vec![9u8, 8, 7]),
    );
    assert!(reply(&mut app, h).await.is_ok());
    let m = log(&app)
        .messages
        .iter()
        .find(|m| &*m.event == "binary_push")
        .expect("the binary push arrives no later than the reply after it");
    assert_eq!((m.channel, m.broadcast), (ch, false));
    assert_eq!(m.payload.as_bytes(), Some(&[9u8, 8, 7][..]));

    big_binary_echo(&mut app, ch).await;
}

/// Presence: joining a room with a user id lists it in `ChannelPresence`; a binary shout comes
/// back as a binary broadcast.
#[wasm_bindgen_test]
async fn plugin_presence_and_binary_broadcast() {
    let mut app = app();
    let topic = unique("room:web-");
    let ch = joined(
        &mut app,
        PhoenixChannel::new(&topic)
            .with_payload(&json!({"user_id": "wasm-alice"}))
            .unwrap(),
    )
    .await;
    pump_until(&mut app, 10, "presence lists wasm-alice", |w| {
        w.get::<ChannelPresence>(ch).is_some_and(|p| {
            p.state
                .iter()
                .map(|(k, e)| (k.as_str(), e.metas.len()))
                .eq([("wasm-alice", 1)])
        })
    })
    .await;
    assert!(
        log(&app)
            .presence
            .iter()
            .any(|p| p.channel == ch && p.event == PresenceEvent::Sync)
    );

    let m = binary_broadcast_back(&mut app, ch).await;
    assert_eq!(
        (m.channel, m.broadcast, &*m.topic),
        (ch, true, topic.as_str())
    );
}

/// Frame order through the plugin: after a binary send (what switched ewebsock to Blob mode),
/// interleaved binary pushes, text pushes and binary/text replies are seen in wire order.
#[wasm_bindgen_test]
async fn plugin_sees_interleaved_binary_and_text_frames_in_wire_order() {
    let mut app = app();
    let ch = joined(&mut app, PhoenixChannel::new(unique("echo:web-order-"))).await;
    let h = push(&mut app, PushMessage::binary(ch, "binary", vec![1u8]));
    assert!(reply(&mut app, h).await.is_ok());
    let before = log(&app).messages.len();

    for round in 0..3u8 {
        // All written in one frame, so the answers arrive back to back.
        let mut handles = Vec::new();
        for i in 0u8..30 {
            let i = round * 30 + i;
            let p = match i % 3 {
                0 => PushMessage::binary(ch, "push_binary", vec![i]),
                1 => PushMessage::json(
                    ch,
                    "push_me",
                    &json!({"event": "text", "payload": {"i": i}}),
                )
                .unwrap(),
                _ => PushMessage::binary(ch, "binary", vec![i, i]),
            };
            handles.push(push(&mut app, p));
        }
        let last = *handles.last().unwrap();
        reply(&mut app, last).await;
        // Replies (text for push_binary/push_me, binary for "binary") in push order.
        let replies: Vec<_> = log(&app)
            .replies
            .iter()
            .filter(|r| handles.contains(&r.handle))
            .collect();
        assert_eq!(
            replies.iter().map(|r| r.handle).collect::<Vec<_>>(),
            handles
        );
        for (k, r) in replies.iter().enumerate() {
            let i = round * 30 + k as u8;
            let p = r.response().unwrap();
            if i % 3 == 2 {
                assert_eq!(p.as_bytes(), Some(&[i, i][..]), "reply {i}");
            } else {
                assert_eq!(p.json(), Some("{}"), "reply {i}");
            }
        }
    }
    // Server pushes (binary and text alternating) in wire order.
    let got: Vec<Value> = log(&app).messages[before..]
        .iter()
        .map(|m| match m.payload.as_bytes() {
            Some(b) => json!({ "bin": b }),
            None => json!({ "text": m.decode::<Value>().unwrap()["i"] }),
        })
        .collect();
    let want: Vec<Value> = (0u8..90)
        .filter_map(|i| match i % 3 {
            0 => Some(json!({ "bin": [i] })),
            1 => Some(json!({ "text": i })),
            _ => None,
        })
        .collect();
    assert_eq!(got, want);
}

/// The server drops the connection: the plugin reconnects and rejoins, in the browser too.
#[wasm_bindgen_test]
async fn plugin_reconnects_and_rejoins_after_a_server_disconnect() {
    let mut app = app();
    let ch = joined(&mut app, PhoenixChannel::new(unique("echo:web-recon-"))).await;
    server_disconnect_then_rejoin(&mut app, ch).await;
    assert_eq!(
        app.world().get::<ChannelStatus>(ch).map(|s| s.0),
        Some(ChannelState::Joined)
    );
}

/// `pagehide` (as when the user navigates away) closes the socket cleanly, as phoenix.js does;
/// when frames run again the plugin reconnects and rejoins.
#[wasm_bindgen_test]
async fn plugin_closes_cleanly_on_pagehide_and_reconnects_after() {
    closes_cleanly_on_pagehide_and_reconnects_after(app(), "echo:web-pagehide-").await;
}

/// The Phoenix 1.8 auth token (a `Sec-WebSocket-Protocol` entry, the only way a browser can send
/// it) reaches the server's `connect/3` and the channel.
#[wasm_bindgen_test]
async fn plugin_sends_the_auth_token_as_a_subprotocol() {
    let mut app = app_with(|s| s.with_auth_token("good-token"));
    let ch = joined(&mut app, PhoenixChannel::new(unique("echo:web-auth-"))).await;
    auth_token_reached_the_server(&mut app, ch).await;
}

/// A refused connect (HTTP 403 from `connect/3`) is, in a browser, a connect failure: the
/// status is hidden, so `SocketConnectFailed`, never `SocketConnectRefused`; then reconnects.
#[wasm_bindgen_test]
async fn plugin_refused_connect_is_a_connect_failure_then_reconnects() {
    let mut app = app_with(|s| s.with_params([("token", "bad")]));
    pump_until(&mut app, 10, "two connect failures and a reconnect", |w| {
        let l = w.resource::<Log>();
        l.failed.len() >= 2 && l.reconnecting >= 1
    })
    .await;
    let l = log(&app);
    assert_eq!((l.connected, l.refused), (0, 0));
    assert!(
        l.failed[0].error.contains("connection failed"),
        "{:?}",
        l.failed
    );
}

// ----- the same through the ewebsock transport (feature `ewebsock`) ------------------------------

/// The ewebsock transport (`--features ewebsock`) in the browser: what it does like the
/// built-in one, and, asserted as such, what it does not (src/transport/ewebsock.rs).
#[cfg(feature = "ewebsock")]
mod ewebsock {
    use super::*;
    use bevy_phoenix_channels::transport::ewebsock::EwebsockConnector;

    /// The test app with its default socket on the ewebsock transport.
    fn app_ewebsock() -> App {
        app_from(socket_config(server_url(), |s| s).with_transport(EwebsockConnector::new()))
    }

    /// Frame order after a binary send: ewebsock's first binary `send` switches the socket to
    /// Blob mode, and from then on incoming binary frames are decoded asynchronously, so they
    /// are delivered after text frames that arrived later. Measured here, not assumed: the same
    /// burst as the built-in transport's wire-order test, up to 10 rounds, until a round comes
    /// back out of order (every round so far did). Nothing is lost: each round's frames are the
    /// wire's, only their order differs.
    #[wasm_bindgen_test]
    async fn ewebsock_reorders_binary_frames_after_a_binary_send() {
        let topic = unique("echo:web-ew-order-");
        let mut t = raw_joined_via(&EwebsockConnector::new(), &topic, |_| {}).await;
        let mut reordered = None;
        for round in 0..10 {
            let (got, want) = wire_order_burst(&mut *t, &topic, round).await;
            let mut a: Vec<String> = got.iter().map(Value::to_string).collect();
            let mut b: Vec<String> = want.iter().map(Value::to_string).collect();
            a.sort();
            b.sort();
            assert_eq!(
                a, b,
                "round {round}: frames lost or changed, not only reordered"
            );
            let moved = got.iter().zip(&want).filter(|(g, w)| g != w).count();
            wasm_bindgen_test::console_log!(
                "ewebsock round {round}: {moved} of {} frames out of wire order",
                want.len()
            );
            if moved > 0 {
                reordered = Some((round, moved));
                break;
            }
        }
        let (round, moved) =
            reordered.expect("ewebsock kept wire order for 10 rounds: update the docs");
        wasm_bindgen_test::console_log!(
            "ewebsock: out of wire order in round {round} ({moved} frames moved)"
        );
        t.close();
    }

    /// Text frames keep their order (only Blob-decoded binary frames move).
    #[wasm_bindgen_test]
    async fn ewebsock_keeps_the_order_of_text_frames() {
        let topic = unique("echo:web-ew-text-");
        let mut t = raw_joined_via(&EwebsockConnector::new(), &topic, |_| {}).await;
        let mut want = Vec::new();
        for i in 0..100u32 {
            let r = 2 + i;
            t.send(Transmit::Text(
                json!(["1", r.to_string(), &topic, "push_me", {"event": "text", "payload": {"i": i}}])
                    .to_string(),
            ))
            .unwrap();
            want.push(json!(["1", Value::Null, &topic, "text", {"i": i}]));
            want.push(text_reply(&topic, r, json!({})));
        }
        t.flush();
        let got: Vec<Value> = poll_events(&mut *t, want.len(), 15, "the text burst")
            .await
            .iter()
            .map(describe)
            .collect();
        assert_eq!(got, want);
        t.close();
    }

    /// A close from the server: reported, after the frames before it, but without its code
    /// (ewebsock passes none on).
    #[wasm_bindgen_test]
    async fn ewebsock_reports_a_close_without_its_code() {
        reports_the_servers_close(&EwebsockConnector::new(), "echo:web-ew-close-", None).await;
    }

    /// ewebsock 0.8 does not offer subprotocols on the web: the Phoenix 1.8 auth token never
    /// reaches the server (`whoami` answers null), and no chosen protocol is reported.
    #[wasm_bindgen_test]
    async fn ewebsock_does_not_send_subprotocols_so_no_auth_token() {
        let topic = unique("echo:web-ew-auth-");
        let mut t = raw_joined_via(&EwebsockConnector::new(), &topic, |r| {
            r.subprotocols =
                bevy_phoenix_channels::protocol::config::auth_subprotocols("good-token");
        })
        .await;
        t.send(Transmit::Text(
            json!(["1", "2", &topic, "whoami", {}]).to_string(),
        ))
        .unwrap();
        let evs = poll_events(&mut *t, 1, 10, "the whoami reply").await;
        assert_eq!(
            describe(&evs[0]),
            text_reply(&topic, 2, json!({"auth_token": null}))
        );
        t.close();
    }

    /// `max_frame_size` holds (checked by the transport, since ewebsock ignores its own limit
    /// on the web), text and binary alike.
    #[wasm_bindgen_test]
    async fn ewebsock_enforces_max_frame_size() {
        enforces_max_frame_size(&EwebsockConnector::new(), "echo:web-ew-big-").await;
    }

    /// Nothing listening: a connect failure event, no panic.
    #[wasm_bindgen_test]
    async fn ewebsock_connect_failure_is_an_event() {
        nothing_listening_is_a_connect_failure(&EwebsockConnector::new()).await;
    }

    /// The plugin on ewebsock: connect, join, JSON echo, one binary echo (a single binary frame
    /// in flight cannot be overtaken), and a reconnect and rejoin after the server disconnects.
    #[wasm_bindgen_test]
    async fn ewebsock_plugin_connects_joins_echoes_and_reconnects() {
        let mut app = app_ewebsock();
        let ch = joined(&mut app, PhoenixChannel::new(unique("echo:web-ew-"))).await;
        json_echo(&mut app, ch, &json!({"hello": "ewebsock"})).await;
        binary_echo(&mut app, ch, vec![0u8, 1, 2, 0xff]).await;
        let reason = server_disconnect_then_rejoin(&mut app, ch).await;
        assert!(reason.contains("code: None"), "{reason}");
    }
}

// ----- the same with the WebSocket in a Web Worker (`WebWorkerConnector`) --------------------------

/// The worker transport (src/transport/web_worker.rs): the socket lives in a dedicated Web Worker
/// and frames cross to the page in batches. The same behaviour as the main-thread transport,
/// plus what only it has: a worker to free, and a send backlog that is acknowledged by the
/// worker.
mod worker {
    use super::*;
    use bevy_phoenix_channels::transport::WebWorkerConnector;

    /// The test app with its default socket on the worker transport.
    fn app_worker() -> App {
        app_worker_with(|s| s)
    }

    /// [`app_worker`] with more socket settings.
    fn app_worker_with(f: impl FnOnce(SocketConfig) -> SocketConfig) -> App {
        app_from(socket_config(server_url(), f).with_transport(WebWorkerConnector))
    }

    /// The live worker count once it has stopped changing: workers of earlier tests' closed
    /// transports end within their grace period (1 s); a test that panicked leaves its workers
    /// live for good, and they must not fail the next test.
    async fn settled_workers() -> usize {
        let mut last = WebWorkerConnector::live_workers();
        for _ in 0..10 {
            yield_ms(1_200).await;
            let now = WebWorkerConnector::live_workers();
            if now == last {
                return now;
            }
            last = now;
        }
        panic!("the live worker count keeps changing: {last}");
    }

    /// Whether dropping an `App` frees its transports here. After a test in this page panicked,
    /// `std::thread::panicking()` stays true (wasm32 aborts the panic without unwinding, and the
    /// runner goes on with the next test), and Bevy then leaks non-send resources, the
    /// transports among them, when a `World` is dropped. So the app-drop checks hold only in a
    /// run in which no earlier test failed (and a run with a failure is red anyway).
    fn app_drop_frees_transports() -> bool {
        if std::thread::panicking() {
            wasm_bindgen_test::console_log!(
                "an earlier test panicked: Bevy leaks dropped apps' transports now; app-drop check skipped"
            );
            return false;
        }
        true
    }

    /// Waits (yielding) until at most `base` workers are live, for up to `secs`.
    async fn workers_back_to(base: usize, secs: u64, what: &str) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while WebWorkerConnector::live_workers() > base {
            assert!(
                Instant::now() < deadline,
                "{what}: {} worker(s) live after {secs} s, {base} before",
                WebWorkerConnector::live_workers()
            );
            yield_ms(10).await;
        }
    }

    /// Text and binary frames, both ways, in wire order through the worker (several rounds, so
    /// batches of many frames cross in both directions); the stats count every frame; after
    /// `close` nothing follows and sends fail.
    #[wasm_bindgen_test]
    async fn worker_transport_keeps_wire_order_of_text_and_binary_frames() {
        keeps_wire_order_of_text_and_binary_frames(&WebWorkerConnector, "echo:web-wk-raw-", 3)
            .await;
    }

    /// The server's close reaches the page with its code, after the frames before it; the
    /// worker is terminated at once on that terminal event, before the transport is dropped.
    #[wasm_bindgen_test]
    async fn worker_transport_reports_the_servers_close_code() {
        let base = settled_workers().await;
        let t =
            reports_the_servers_close(&WebWorkerConnector, "echo:web-wk-close-", Some(1000)).await;
        assert_eq!(WebWorkerConnector::live_workers(), base);
        drop(t);
    }

    /// The auth token's subprotocols reach the server through the worker, and the one it
    /// picked comes back; a subprotocol the browser refuses fails the connect with the hint;
    /// nothing listening is a connect failure too.
    #[wasm_bindgen_test]
    async fn worker_transport_offers_subprotocols_and_names_a_refused_one() {
        offers_subprotocols_and_reports_the_chosen_one(&WebWorkerConnector).await;
        names_the_auth_token_a_browser_cannot_send(&WebWorkerConnector).await;
        nothing_listening_is_a_connect_failure(&WebWorkerConnector).await;
    }

    /// Incoming frames over `max_frame_size` end the connection with `FrameTooLarge`.
    #[wasm_bindgen_test]
    async fn worker_transport_enforces_max_frame_size() {
        enforces_max_frame_size(&WebWorkerConnector, "echo:web-wk-big-").await;
    }

    /// `send_backlog` counts what `send` accepted until the worker's socket took it: frames not
    /// yet flushed, then frames posted and not acknowledged, and it drains to 0 once the worker
    /// acknowledges them (with no frame received in between to carry the acknowledgement).
    #[wasm_bindgen_test]
    async fn worker_transport_send_backlog_counts_until_the_worker_acknowledges() {
        let topic = unique("echo:web-wk-backlog-");
        let mut t = raw_joined_via(&WebWorkerConnector, &topic, |_| {}).await;
        assert_eq!(t.send_backlog(), 0);
        let mut total = 0;
        for i in 0..4u8 {
            // Fire-and-forget-like frames: the server never replies to "noreply".
            let frame = wire::encode_binary_push(
                "1",
                &(10 + u32::from(i)).to_string(),
                &topic,
                "noreply",
                &[i; 50_000],
            )
            .unwrap();
            total += frame.len();
            t.send(Transmit::Binary(frame)).unwrap();
        }
        assert_eq!(t.send_backlog(), total, "accepted, not flushed");
        t.flush();
        assert!(
            t.send_backlog() >= total,
            "posted, not acknowledged yet: {} < {total}",
            t.send_backlog()
        );
        let deadline = Instant::now() + Duration::from_secs(10);
        while t.send_backlog() != 0 {
            assert!(
                Instant::now() < deadline,
                "backlog stuck at {}",
                t.send_backlog()
            );
            if let Some(ev) = t.poll() {
                panic!("nothing was asked for: {ev:?}");
            }
            t.flush();
            yield_ms(5).await;
        }
        assert!(t.is_open());
        t.close();
    }

    /// The hidden-tab keepalive works from the worker: silent while the app polls, heartbeats
    /// when it stops; the replies are consumed and counted, never returned.
    #[wasm_bindgen_test]
    async fn worker_transport_keepalive_speaks_only_while_nobody_polls() {
        keepalive_speaks_only_while_nobody_polls(&WebWorkerConnector).await;
    }

    /// A frozen app on the worker transport keeps its connection to a server that closes
    /// websockets after 1.5 s of silence.
    #[wasm_bindgen_test]
    async fn worker_plugin_keeps_its_connection_while_the_app_is_frozen() {
        let app = app_from(frozen_config().with_transport(WebWorkerConnector));
        keeps_its_connection_while_frozen(app, "echo:web-wk-frozen-").await;
    }

    /// The plugin on the worker transport: join, JSON push/reply, binary both ways (a 256 KiB
    /// one too), a server broadcast (text and binary), the auth token.
    #[wasm_bindgen_test]
    async fn worker_plugin_joins_pushes_and_gets_replies_broadcasts_and_binary() {
        let mut app = app_worker_with(|s| s.with_auth_token("good-token"));
        let topic = unique("room:web-wk-");
        let ch = joined(
            &mut app,
            PhoenixChannel::new(&topic)
                .with_payload(&json!({"user_id": "wk-alice"}))
                .unwrap(),
        )
        .await;
        let body = json!({"hello": "worker", "s": "é ✓"});
        let shout = PushMessage::json(ch, "shout", &body).unwrap();
        let m = broadcast_back(&mut app, shout, "shout").await;
        assert_eq!((m.channel, m.broadcast), (ch, true));
        assert_eq!(m.decode::<Value>().unwrap(), body);
        binary_broadcast_back(&mut app, ch).await;

        let echo = joined(&mut app, PhoenixChannel::new(unique("echo:web-wk-"))).await;
        auth_token_reached_the_server(&mut app, echo).await;
        big_binary_echo(&mut app, echo).await;
    }

    /// A server-initiated close: the plugin reconnects (a new worker) and rejoins, and the
    /// first connection's worker is freed.
    #[wasm_bindgen_test]
    async fn worker_plugin_reconnects_and_rejoins_after_a_server_disconnect() {
        let base = settled_workers().await;
        let mut app = app_worker();
        let ch = joined(&mut app, PhoenixChannel::new(unique("echo:web-wk-recon-"))).await;
        assert_eq!(WebWorkerConnector::live_workers(), base + 1);
        let reason = server_disconnect_then_rejoin(&mut app, ch).await;
        assert!(reason.contains("code: Some(1000)"), "{reason}");
        assert_eq!(
            WebWorkerConnector::live_workers(),
            base + 1,
            "the old worker is gone"
        );
        drop(app);
        if app_drop_frees_transports() {
            workers_back_to(base, 5, "after the app was dropped").await;
        }
    }

    /// `pagehide` closes the worker's socket cleanly (1000); the plugin reconnects after.
    #[wasm_bindgen_test]
    async fn worker_plugin_closes_cleanly_on_pagehide_and_reconnects_after() {
        closes_cleanly_on_pagehide_and_reconnects_after(app_worker(), "echo:web-wk-pagehide-")
            .await;
    }

    /// Pushes past `max_send_backlog` in one frame end as dropped (send queue full), every push
    /// ends in exactly one outcome, and once the worker has acknowledged the batch a push goes
    /// out again: the backlog it reports drains.
    #[wasm_bindgen_test]
    async fn worker_plugin_bounds_the_send_backlog_and_drains_it() {
        let mut app = app_worker_with(|s| s.with_max_send_backlog(10_000));
        let ch = joined(&mut app, PhoenixChannel::new(unique("echo:web-wk-bound-"))).await;
        let pad = "p".repeat(4_000);
        let handles: Vec<_> = (0..8)
            .map(|i| {
                push(
                    &mut app,
                    PushMessage::json(ch, "echo", &json!({"i": i, "pad": pad})).unwrap(),
                )
            })
            .collect();
        let last = *handles.last().unwrap();
        pump_until(&mut app, 10, "an outcome for every push", |w| {
            let replies = &w.resource::<Log>().replies;
            handles
                .iter()
                .all(|h| replies.iter().any(|r| r.handle == *h))
        })
        .await;
        let _ = last;
        let l = log(&app);
        let mut ok = 0;
        let mut full = 0;
        for h in &handles {
            let outcomes: Vec<_> = l.replies.iter().filter(|r| r.handle == *h).collect();
            assert_eq!(outcomes.len(), 1, "exactly one outcome: {outcomes:?}");
            match &outcomes[0].outcome {
                PushOutcome::Ok(_) => ok += 1,
                PushOutcome::Dropped(DropReason::SendQueueFull) => full += 1,
                other => panic!("unexpected outcome {other:?}"),
            }
        }
        assert!(ok >= 1 && full >= 1, "ok {ok}, dropped {full}");
        // Later pushes go out: the worker acknowledged the batch, the backlog is back to 0.
        for _ in 0..3 {
            let h = push(
                &mut app,
                PushMessage::json(ch, "echo", &json!({"pad": pad})).unwrap(),
            );
            assert!(reply(&mut app, h).await.is_ok());
        }
    }

    /// `close` and drop end the socket (the server sees the user leave the room's presence)
    /// and terminate the worker.
    #[wasm_bindgen_test]
    async fn worker_close_and_drop_free_the_socket_and_the_worker() {
        let base = settled_workers().await;
        let topic = unique("room:web-wk-free-");
        // The watcher is on the main-thread transport, so every live worker is the leaver's.
        let mut watcher = app();
        let wch = joined(
            &mut watcher,
            PhoenixChannel::new(&topic)
                .with_payload(&json!({"user_id": "watcher"}))
                .unwrap(),
        )
        .await;
        let users = |w: &mut World| -> Vec<String> {
            let mut v: Vec<String> = w
                .get::<ChannelPresence>(wch)
                .map(|p| p.state.keys().map(|k| k.to_string()).collect())
                .unwrap_or_default();
            v.sort();
            v
        };

        // 1. `close` on a raw transport.
        let mut t = connect_via(&WebWorkerConnector, |_| {});
        t.send(Transmit::Text(
            json!(["1", "1", &topic, "phx_join", {"user_id": "raw"}]).to_string(),
        ))
        .unwrap();
        t.flush();
        poll_events(&mut *t, 2, 10, "open and join reply").await;
        assert_eq!(WebWorkerConnector::live_workers(), base + 1);
        pump_until(&mut watcher, 10, "raw joins", |w| {
            users(w) == ["raw", "watcher"]
        })
        .await;
        t.close();
        pump_until(&mut watcher, 10, "raw leaves after close", |w| {
            users(w) == ["watcher"]
        })
        .await;
        workers_back_to(base, 5, "after close").await;
        drop(t);

        // 2. Dropping a plugin app whose socket is on the worker transport.
        let mut leaver = app_worker();
        joined(
            &mut leaver,
            PhoenixChannel::new(&topic)
                .with_payload(&json!({"user_id": "leaver"}))
                .unwrap(),
        )
        .await;
        assert_eq!(WebWorkerConnector::live_workers(), base + 1);
        pump_until(&mut watcher, 10, "leaver joins", |w| {
            users(w) == ["leaver", "watcher"]
        })
        .await;
        drop(leaver);
        if app_drop_frees_transports() {
            pump_until(&mut watcher, 10, "leaver leaves after the drop", |w| {
                users(w) == ["watcher"]
            })
            .await;
            workers_back_to(base, 5, "after the drop").await;
        }

        // 3. Many connections opened and dropped at once leave no worker behind.
        // (Counted from here: a leaked app's worker, see above, stays.)
        let base = WebWorkerConnector::live_workers();
        let many: Vec<_> = (0..8)
            .map(|_| connect_via(&WebWorkerConnector, |_| {}))
            .collect();
        assert_eq!(WebWorkerConnector::live_workers(), base + 8);
        drop(many);
        workers_back_to(base, 5, "after dropping 8 connections").await;
    }
}
