//! The auth token is a secret: it travels only in the `Sec-WebSocket-Protocol` header, never in
//! the URL, never in a log line at any level (every crate's, captured at TRACE, `log` records of
//! tungstenite included) and never in a `Debug` output. A full session: connect, join, push,
//! a refused token, a server outage with reconnects, and a disconnect.
#![allow(clippy::unwrap_used)]

mod support;

use std::sync::{Arc, Mutex};

use base64::Engine as _;
use bevy::log::tracing::field::{Field, Visit};
use bevy::log::tracing::span::{Attributes, Id, Record};
use bevy::log::tracing::{Event, Subscriber};
use bevy::log::tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use bevy::log::tracing_subscriber::registry::{LookupSpan, Registry};
use bevy::prelude::*;
use bevy_phoenix_channels::prelude::*;
use bevy_phoenix_channels::transport::{ConnectRequest, NetworkWaker, PhoenixTransport, Transport};
use phoenix_test_server::{Refusal, TestServer};
use serde_json::json;
use support::*;

const SECRET: &str = "tok-3f9aSECRETc1d7";
const WRONG: &str = "tok-WRONGSECRET-55e2";

/// Every event and span field, from every thread and crate, formatted.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<String>>>);

struct Fields<'a>(&'a mut String);

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.push_str(&format!(" {}={:?}", field.name(), value));
    }
}

impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for Captured {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let m = event.metadata();
        let mut text = format!("{} {}:", m.level(), m.target());
        event.record(&mut Fields(&mut text));
        self.0.lock().unwrap().push(text);
    }

    fn on_new_span(&self, attrs: &Attributes<'_>, _id: &Id, _ctx: Context<'_, S>) {
        let mut text = format!("span {}:", attrs.metadata().name());
        attrs.record(&mut Fields(&mut text));
        self.0.lock().unwrap().push(text);
    }

    fn on_record(&self, _id: &Id, values: &Record<'_>, _ctx: Context<'_, S>) {
        let mut text = String::from("record:");
        values.record(&mut Fields(&mut text));
        self.0.lock().unwrap().push(text);
    }
}

/// The forms a leak could take: the token, its base64 (the header value), the header itself.
fn forms(token: &str) -> Vec<String> {
    let b64 = base64::engine::general_purpose::STANDARD_NO_PAD.encode(token);
    let url_b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(token);
    vec![
        token.to_owned(),
        b64.clone(),
        url_b64,
        format!("base64url.bearer.phx.{b64}"),
    ]
}

fn assert_clean(what: &str, text: &str) {
    for token in [SECRET, WRONG] {
        for form in forms(token) {
            assert!(!text.contains(&form), "{what} contains {form:?}:\n{text}");
        }
    }
}

#[test]
fn the_auth_token_is_never_in_a_url_a_log_line_or_a_debug_output() {
    let captured = Captured::default();
    // Global, so the handshake threads' records are captured too; `log` records (tungstenite)
    // are routed in. This test binary has this one test.
    bevy::log::tracing::subscriber::set_global_default(Registry::default().with(captured.clone()))
        .unwrap();
    tracing_log::LogTracer::init().unwrap();

    let server = TestServer::builder()
        .auth_token(true)
        .connect_check(|_params, token| token == Some(SECRET))
        .start()
        .unwrap();
    // A connector that logs what it is asked to open, as an app might (`Debug` of the request).
    let requests: Arc<Mutex<Vec<String>>> = Arc::default();
    let seen = requests.clone();
    let config = config(&server.url())
        .with(|s| s.with_auth_token(SECRET))
        // A header with a credential in it: sent, but never printed either.
        .with_header("Authorization", format!("Bearer {SECRET}"))
        .with_transport(move |req: ConnectRequest, waker: &NetworkWaker| {
            seen.lock().unwrap().push(format!("{req:?} {req:#?}"));
            Box::new(Transport::connect_waking(req, waker)) as Box<dyn PhoenixTransport>
        });
    let mut app = app(config.clone());
    // A second socket with a wrong token: refused (HTTP 403), retried, logged.
    let wrong = app
        .world_mut()
        .spawn(PhoenixSocket::new(support::config(&server.url()).with(
            |s| {
                s.with_auth_token(WRONG)
                    .with_max_reconnect_attempts(Some(3))
            },
        )))
        .id();

    let ch = join(&mut app, PhoenixChannel::new(unique("echo:secret-")));
    wait_joined(&mut app, ch);
    let h = push(
        &mut app,
        PushMessage::json(ch, "echo", &json!({"hello": "world"})).unwrap(),
    );
    assert!(matches!(reply(&mut app, h).outcome, PushOutcome::Ok(_)));
    pump_until(&mut app, 15, "the wrong token gave up", |w| {
        w.get::<SocketStatus>(wrong).map(|s| s.0) == Some(ConnectionState::Disconnected)
            && !w.resource::<Log>().refused.is_empty()
    });

    // An outage: refused, then back; the token is sent again on every reconnect.
    server.faults().refuse_connections(Refusal::Http403, None);
    server.faults().drop_all_connections(false);
    pump_until(&mut app, 15, "refused reconnects", |w| {
        w.resource::<Log>().refused.len() >= 4
    });
    server.faults().allow_connections();
    pump_until(&mut app, 15, "rejoined", |w| {
        w.resource::<Log>().connected.len() >= 2
            && w.get::<ChannelStatus>(ch).map(|s| s.0) == Some(ChannelState::Joined)
    });
    app.world_mut()
        .write_message(SocketCommand::Disconnect(None));
    pump_for(&mut app, 50);

    // The server got the token in the header, on every attempt, and never in the URL.
    let conns = server.connections();
    assert!(conns.len() >= 6, "{}", conns.len());
    let with_secret = conns
        .iter()
        .filter(|c| c.auth_token.as_deref() == Some(SECRET))
        .count();
    assert!(with_secret >= 3, "{conns:?}");
    for c in &conns {
        assert!(c.auth_token.is_some());
        for (k, v) in &c.params {
            assert_clean("a URL query parameter", &format!("{k}={v}"));
        }
    }

    // Debug outputs of everything the app can print.
    let world = app.world_mut();
    let mut q = world.query::<(&PhoenixSocket, &SocketStatus)>();
    for (sock, status) in q.iter(world) {
        let text = format!(
            "{:?} {:#?} {:?} {:?} {:?}",
            sock.config(),
            sock.config(),
            sock.core(),
            sock.core().config(),
            status
        );
        assert_clean("a Debug output", &text);
    }
    assert_clean(
        "PhoenixSocketConfig Debug",
        &format!("{config:?} {config:#?}"),
    );
    let requests = requests.lock().unwrap();
    assert!(requests.len() >= 3, "{requests:?}");
    assert_clean("a transport ConnectRequest Debug", &requests.join("\n"));
    let log = support::log(&app);
    let everything = format!(
        "{:?} {:?} {:?} {:?} {:?} {:?} {:?} {:?}",
        log.connected,
        log.disconnected,
        log.refused,
        log.failed,
        log.reconnecting,
        log.joined,
        log.errored,
        log.replies
    );
    assert_clean("the app's messages", &everything);

    // Every log line, at every level, from every crate and thread.
    let lines = captured.0.lock().unwrap().clone();
    let all = lines.join("\n");
    // The capture works at the lowest levels (so the absence below means something).
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("DEBUG bevy_phoenix_channels")),
        "no debug line captured:\n{all}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("TRACE") || l.starts_with("DEBUG tungstenite")),
        "no trace or tungstenite line captured:\n{all}"
    );
    assert_clean("a log line", &all);
    eprintln!("{} log lines checked", lines.len());
}
