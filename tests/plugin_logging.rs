//! What the plugin logs while a server is away: the first failure as a warning, the retries at
//! debug level, and the recovery once, so a game's console is not flooded while a server
//! restarts. A capturing subscriber on the main thread (where the plugin emits its events).
#![allow(clippy::unwrap_used)]

mod support;

use std::sync::{Arc, Mutex};

use bevy::log::tracing::field::{Field, Visit};
use bevy::log::tracing::{Event, Level, Subscriber};
use bevy::log::tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use bevy::log::tracing_subscriber::registry::Registry;
use bevy::prelude::*;
use bevy_phoenix_channels::prelude::*;
use phoenix_test_server::{Refusal, TestServer};
use support::*;

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<(Level, String)>>>);

struct Message<'a>(&'a mut String);

impl Visit for Message<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            *self.0 = format!("{value:?}");
        }
    }
}

impl<S: Subscriber> Layer<S> for Captured {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let mut text = String::new();
        event.record(&mut Message(&mut text));
        if text.starts_with("phoenix:") {
            let level = *event.metadata().level();
            self.0.lock().unwrap().push((level, text));
        }
    }
}

impl Captured {
    fn lines(&self, level: Level, containing: &str) -> usize {
        let lines = self.0.lock().unwrap();
        lines
            .iter()
            .filter(|(l, t)| *l == level && t.contains(containing))
            .count()
    }
}

#[test]
fn a_server_outage_logs_one_warning_and_one_recovery() {
    let server = TestServer::builder().start().unwrap();
    let captured = Captured::default();
    let _guard =
        bevy::log::tracing::subscriber::set_default(Registry::default().with(captured.clone()));

    let mut app = app(config(&server.url()));
    let ch = join(&mut app, PhoenixChannel::new(unique("echo:log-")));
    wait_joined(&mut app, ch);

    // The server goes away: connections are refused for a while, the client retries.
    server
        .faults()
        .refuse_connections(Refusal::TcpRefused, None);
    server.faults().drop_all_connections(false);
    pump_until(&mut app, 15, "five failed reconnects", |w| {
        w.resource::<Log>().failed.len() >= 5
    });
    server.faults().allow_connections();
    pump_until(&mut app, 15, "reconnected and rejoined", |w| {
        w.resource::<Log>().connected.len() >= 2
            && w.get::<ChannelStatus>(ch).map(|s| s.0) == Some(ChannelState::Joined)
    });
    pump_for(&mut app, 20);

    // One warning for the whole outage (the disconnect); every failed retry at debug level.
    let warnings: Vec<String> = captured
        .0
        .lock()
        .unwrap()
        .iter()
        .filter(|(l, _)| *l == Level::WARN)
        .map(|(_, t)| t.clone())
        .collect();
    assert_eq!(warnings.len(), 1, "{warnings:#?}");
    assert!(warnings[0].contains("disconnected"), "{warnings:#?}");
    assert!(captured.lines(Level::DEBUG, "connect failed") >= 5);
    // The recovery is said once, with how many attempts failed.
    assert_eq!(captured.lines(Level::INFO, "connected again after"), 1);
    assert_eq!(
        captured.lines(Level::INFO, "rejoined"),
        0,
        "a lost connection is not a channel error"
    );
}
