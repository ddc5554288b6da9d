//! The rest of the plugin's surface: two sockets at once, `JoinChannel`, `SocketCommand`, the
//! `Commands` extension, run conditions, observers on socket and channel entities, and
//! `PhoenixDiagnosticsPlugin`.
#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use bevy::diagnostic::{DiagnosticPath, DiagnosticsStore};
use bevy::prelude::*;
use bevy_phoenix_channels::prelude::*;
use serde_json::{Value, json};
use support::*;

#[test]
fn two_sockets_route_channels_and_pushes() {
    let server = Server::start();
    // The second socket always goes to an in-process server, so its side can be inspected.
    let other = phoenix_test_server::start().unwrap();
    let mut app = app(config(&server.url));
    let s1 = socket_entity(&mut app);
    let s2 = app
        .world_mut()
        .spawn(PhoenixSocket::new(config(&other.url())))
        .id();
    let t1 = unique("echo:one-");
    let t2 = unique("echo:two-");
    let c1 = join(&mut app, PhoenixChannel::new(&t1));
    let c2 = join(&mut app, PhoenixChannel::new(&t2).on_socket(s2));
    // The same topic on the second socket is a different channel.
    let c3 = join(&mut app, PhoenixChannel::new(&t1).on_socket(s2));
    for c in [c1, c2, c3] {
        wait_joined(&mut app, c);
    }
    let links: Vec<Entity> = [c1, c2, c3]
        .iter()
        .map(|c| app.world().get::<ChannelLink>(*c).unwrap().socket)
        .collect();
    assert_eq!(links, [s1, s2, s2]);
    let mut connected: Vec<Entity> = log(&app).connected.iter().map(|c| c.entity).collect();
    connected.sort();
    let mut want = vec![s1, s2];
    want.sort();
    assert_eq!(connected, want);
    let joined_on: Vec<(Entity, Entity)> = log(&app)
        .joined
        .iter()
        .map(|j| (j.entity, j.socket))
        .collect();
    for pair in [(c1, s1), (c2, s2), (c3, s2)] {
        assert!(joined_on.contains(&pair), "{pair:?} in {joined_on:?}");
    }

    let h1 = push(
        &mut app,
        PushMessage::json(c1, "echo", &json!({"to": 1})).unwrap(),
    );
    let h2 = push(
        &mut app,
        PushMessage::json(c2, "echo", &json!({"to": 2})).unwrap(),
    );
    let h3 = push(
        &mut app,
        PushMessage::json(t1.as_str(), "echo", &json!({"to": 3}))
            .unwrap()
            .on_socket(s2),
    );
    let h4 = push(
        &mut app,
        PushMessage::json(t1.as_str(), "echo", &json!({"to": 4})).unwrap(),
    );
    for (h, ch, sock, n) in [
        (h1, c1, s1, 1),
        (h2, c2, s2, 2),
        (h3, c3, s2, 3),
        (h4, c1, s1, 4),
    ] {
        let r = reply(&mut app, h);
        assert_eq!((r.channel, r.socket), (ch, sock), "push {n}: {r:?}");
        assert_eq!(r.decode_ok::<Value>().unwrap().unwrap(), json!({ "to": n }));
    }
    let h = other.handle();
    assert_eq!((h.subscribers(&t1), h.subscribers(&t2)), (1, 1));
    assert_eq!(other.connections().len(), 1);
    if let Some(local) = &server.local {
        let h = local.handle();
        assert_eq!((h.subscribers(&t1), h.subscribers(&t2)), (1, 0));
    }

    // Despawning the second socket closes its connection; the default one carries on.
    app.world_mut().despawn(s2);
    pump_until(&mut app, 10, "second connection closed", |_| {
        other.open_connections() == 0
    });
    let h = push(
        &mut app,
        PushMessage::json(c1, "echo", &json!({"still": 1})).unwrap(),
    );
    assert!(reply(&mut app, h).is_ok());
}

#[test]
fn join_channel_message_spawns_one_channel() {
    let server = Server::start();
    let mut app = app(config(&server.url));
    let topic = unique("private:jc-");
    app.world_mut().write_message(
        JoinChannel::new(&topic)
            .with_payload(&json!({"password": "secret"}))
            .unwrap(),
    );
    pump_until(&mut app, 10, "joined", |w| {
        !w.resource::<Log>().joined.is_empty()
    });
    let ch = log(&app).joined[0].entity;
    assert_eq!(
        app.world()
            .get::<PhoenixChannel>(ch)
            .map(|c| c.topic.clone()),
        Some(topic.clone())
    );
    assert_eq!(channel_state(&app, ch), Some(ChannelState::Joined));
    let h = push(
        &mut app,
        PushMessage::json(topic.as_str(), "echo", &7).unwrap(),
    );
    assert_eq!(reply(&mut app, h).channel, ch);
    pump_for(&mut app, 200);
    let l = log(&app);
    assert_eq!(l.joined.len(), 1, "joined once: {:?}", l.joined);
    assert!(l.closed.is_empty() && l.errored.is_empty());
    let mut q = app.world_mut().query::<&PhoenixChannel>();
    assert_eq!(q.iter(app.world()).count(), 1);
}

#[test]
fn socket_command_disconnects_and_reconnects() {
    let server = Server::start();
    let mut app = app(config(&server.url));
    let ch = join(&mut app, PhoenixChannel::new(unique("echo:sc-")));
    wait_joined(&mut app, ch);
    let s = socket_entity(&mut app);
    app.world_mut()
        .write_message(SocketCommand::Disconnect(None));
    pump_until(&mut app, 5, "disconnected", |w| {
        !w.resource::<Log>().disconnected.is_empty()
    });
    let d = &log(&app).disconnected[0];
    assert_eq!((d.entity, &d.reason), (s, &DisconnectReason::Requested));
    pump_for(&mut app, 200);
    assert_eq!(
        app.world().get::<SocketStatus>(s).unwrap().0,
        ConnectionState::Disconnected,
        "no reconnect after a requested disconnect"
    );
    assert_eq!(log(&app).connected.len(), 1);
    app.world_mut()
        .write_message(SocketCommand::Connect(Some(s)));
    pump_until(&mut app, 10, "rejoined", |w| {
        w.resource::<Log>().joined.iter().any(|j| j.rejoin)
    });
    assert_eq!(log(&app).connected.len(), 2);
    wait_joined(&mut app, ch);
}

// ----- Commands extension -----------------------------------------------------------------

#[derive(Resource)]
struct Script {
    topic: String,
    step: u32,
    channel: Option<Entity>,
    first: Option<PushHandle>,
    second: Option<PushHandle>,
}

/// Joins and pushes in the same frame, then (once joined) pushes by topic, leaves, and
/// disconnects: all through `Commands`.
fn script(
    mut commands: Commands,
    mut s: ResMut<Script>,
    joined: Query<&ChannelStatus>,
    mut replies: MessageReader<PushReplied>,
) {
    let replied: Vec<PushHandle> = replies.read().map(|r| r.handle).collect();
    match s.step {
        0 => {
            let ch = commands
                .join_channel(PhoenixChannel::new(s.topic.clone()))
                .insert(Name::new("scripted"))
                .id();
            s.first = Some(commands.push(PushMessage::json(ch, "echo", &json!({"n": 1})).unwrap()));
            s.channel = Some(ch);
            s.step = 1;
        }
        1 if s
            .channel
            .and_then(|c| joined.get(c).ok())
            .is_some_and(|st| st.0 == ChannelState::Joined) =>
        {
            let topic = s.topic.clone();
            s.second =
                Some(commands.push(PushMessage::json(topic, "echo", &json!({"n": 2})).unwrap()));
            s.step = 2;
        }
        2 if s.second.is_some_and(|h| replied.contains(&h)) => {
            commands.leave_channel(LeaveChannel::new(s.channel.unwrap()));
            commands.socket_command(SocketCommand::Disconnect(None));
            s.step = 3;
        }
        _ => {}
    }
}

#[test]
fn commands_extension() {
    let server = Server::start();
    let mut app = app(config(&server.url));
    let topic = unique("echo:cmd-");
    app.insert_resource(Script {
        topic: topic.clone(),
        step: 0,
        channel: None,
        first: None,
        second: None,
    })
    .add_systems(Update, script);
    pump_until(&mut app, 10, "script done", |w| {
        w.resource::<Script>().step == 3
    });
    let (ch, first, second) = {
        let s = app.world().resource::<Script>();
        (s.channel.unwrap(), s.first.unwrap(), s.second.unwrap())
    };
    // The push queued in the same frame as the join waited for the join, then was answered.
    let r = reply(&mut app, first);
    assert_eq!(r.channel, ch);
    assert_eq!(r.decode_ok::<Value>().unwrap().unwrap(), json!({"n": 1}));
    let r = reply(&mut app, second);
    assert_eq!(r.channel, ch);
    assert_eq!(r.decode_ok::<Value>().unwrap().unwrap(), json!({"n": 2}));
    pump_until(&mut app, 10, "left and disconnected", |w| {
        let l = w.resource::<Log>();
        !l.closed.is_empty() && !l.disconnected.is_empty()
    });
    let l = log(&app);
    assert_eq!(
        (l.closed[0].entity, &l.closed[0].reason),
        (ch, &CloseReason::Left)
    );
    assert_eq!(l.disconnected[0].reason, DisconnectReason::Requested);
    assert!(app.world().get_entity(ch).is_err());
}

// ----- run conditions ---------------------------------------------------------------------

#[derive(Resource, Default)]
struct Ran {
    default: u32,
    by_entity: u32,
}

#[test]
fn run_condition_phoenix_connected() {
    let server = Server::start();
    let mut app = app(config(&server.url).with_auto_connect(false));
    let s = socket_entity(&mut app);
    app.init_resource::<Ran>()
        .add_systems(
            Update,
            (|mut r: ResMut<Ran>| r.default += 1).run_if(phoenix_connected),
        )
        .add_systems(
            Update,
            (|mut r: ResMut<Ran>| r.by_entity += 1).run_if(phoenix_socket_connected(s)),
        );
    pump_for(&mut app, 100);
    assert_eq!(app.world().resource::<Ran>().default, 0, "auto_connect off");
    assert_eq!(app.world().resource::<Ran>().by_entity, 0);
    if let Some(local) = &server.local {
        assert!(local.connections().is_empty());
    }
    app.world_mut().write_message(SocketCommand::Connect(None));
    pump_until(&mut app, 10, "condition true", |w| {
        let r = w.resource::<Ran>();
        r.default >= 3 && r.by_entity >= 3
    });
    app.world_mut()
        .write_message(SocketCommand::Disconnect(Some(s)));
    pump_until(&mut app, 10, "disconnected", |w| {
        !w.resource::<Log>().disconnected.is_empty()
    });
    let (d, e) = {
        let r = app.world().resource::<Ran>();
        (r.default, r.by_entity)
    };
    pump_for(&mut app, 100);
    let r = app.world().resource::<Ran>();
    assert_eq!(
        (r.default, r.by_entity),
        (d, e),
        "condition false once disconnected"
    );
}

// ----- observers --------------------------------------------------------------------------

#[derive(Resource, Default)]
struct Seen {
    global_joined: Vec<(Entity, Entity, bool)>,
    on_channel: Vec<String>,
    on_socket: Vec<String>,
}

#[test]
fn observers_fire_on_the_channel_and_socket_entities() {
    let server = Server::start();
    let mut app = app(config(&server.url));
    app.init_resource::<Seen>()
        .add_observer(|ev: On<ChannelJoined>, mut seen: ResMut<Seen>| {
            seen.global_joined
                .push((ev.event_target(), ev.entity, ev.rejoin));
        });
    let s = socket_entity(&mut app);
    app.world_mut()
        .entity_mut(s)
        .observe(|ev: On<SocketConnected>, mut seen: ResMut<Seen>| {
            seen.on_socket.push(format!("connected {:?}", ev.entity));
        });
    let topic = unique("echo:obs-");
    let ch = app.world_mut().spawn(PhoenixChannel::new(&topic)).id();
    app.world_mut()
        .entity_mut(ch)
        .observe(|ev: On<ChannelJoined>, mut seen: ResMut<Seen>| {
            seen.on_channel.push(format!("joined rejoin={}", ev.rejoin));
        })
        .observe(|ev: On<ChannelErrored>, mut seen: ResMut<Seen>| {
            seen.on_channel.push(format!(
                "errored {}",
                matches!(ev.reason, ChannelError::Crashed(_))
            ));
        })
        .observe(|ev: On<ChannelClosed>, mut seen: ResMut<Seen>| {
            seen.on_channel.push(format!("closed {:?}", ev.reason));
        });
    // An unrelated channel: its events must not reach `ch`'s observers.
    let other = join(&mut app, PhoenixChannel::new(unique("echo:obs-other-")));
    wait_joined(&mut app, ch);
    wait_joined(&mut app, other);
    // Crash → errored → rejoin, then the server stops the channel: closed for good.
    let h = push(
        &mut app,
        PushMessage::json(ch, "crash", &json!({})).unwrap(),
    );
    reply(&mut app, h);
    pump_until(&mut app, 10, "rejoined", |w| {
        w.resource::<Seen>().on_channel.len() >= 3
    });
    wait_joined(&mut app, ch);
    app.world_mut()
        .write_message(PushMessage::json(ch, "stop", &json!({})).unwrap());
    pump_until(&mut app, 10, "closed", |w| {
        w.resource::<Seen>().on_channel.len() >= 4
    });
    pump_for(&mut app, 400);
    let seen = app.world().resource::<Seen>();
    assert_eq!(
        seen.on_channel,
        [
            "joined rejoin=false",
            "errored true",
            "joined rejoin=true",
            "closed ServerClosed"
        ]
    );
    assert_eq!(seen.on_socket, [format!("connected {s:?}")]);
    let mut global = seen.global_joined.clone();
    global.sort();
    let mut want = vec![(ch, ch, false), (ch, ch, true), (other, other, false)];
    want.sort();
    assert_eq!(global, want);
    // Closed by the server: the entity stays, closed, and is not joined again.
    assert_eq!(channel_state(&app, ch), Some(ChannelState::Closed));
    assert_eq!(log(&app).joined.len(), 3);
    if let Some(local) = &server.local {
        assert_eq!(local.handle().subscribers(&topic), 0);
    }
}

// ----- diagnostics ------------------------------------------------------------------------

#[test]
fn diagnostics_register_and_measure() {
    let server = Server::start();
    let mut app = app(config(&server.url).with(|s| {
        s.with_heartbeat(Duration::from_millis(100))
            .with_heartbeat_timeout(Duration::from_secs(5))
    }));
    app.add_plugins(PhoenixDiagnosticsPlugin);
    let paths = [
        PhoenixDiagnosticsPlugin::RTT,
        PhoenixDiagnosticsPlugin::MESSAGES_IN,
        PhoenixDiagnosticsPlugin::MESSAGES_OUT,
        PhoenixDiagnosticsPlugin::BYTES_IN,
        PhoenixDiagnosticsPlugin::BYTES_OUT,
        PhoenixDiagnosticsPlugin::RECONNECTS,
        PhoenixDiagnosticsPlugin::PENDING_PUSHES,
    ];
    {
        let store = app.world().resource::<DiagnosticsStore>();
        for p in &paths {
            assert!(store.get(p).is_some(), "{p} registered");
        }
    }
    let ch = join(&mut app, PhoenixChannel::new(unique("echo:diag-")));
    wait_joined(&mut app, ch);
    for i in 0..10 {
        let h = push(
            &mut app,
            PushMessage::json(ch, "echo", &json!({"i": i})).unwrap(),
        );
        reply(&mut app, h);
    }
    let max = |w: &World, p: &DiagnosticPath| -> f64 {
        w.resource::<DiagnosticsStore>()
            .get(p)
            .map(|d| d.values().copied().fold(0.0, f64::max))
            .unwrap_or(0.0)
    };
    pump_until(&mut app, 5, "rates and rtt measured", |w| {
        max(w, &PhoenixDiagnosticsPlugin::MESSAGES_IN) > 0.0
            && max(w, &PhoenixDiagnosticsPlugin::MESSAGES_OUT) > 0.0
            && max(w, &PhoenixDiagnosticsPlugin::BYTES_IN) > 0.0
            && max(w, &PhoenixDiagnosticsPlugin::BYTES_OUT) > 0.0
            && max(w, &PhoenixDiagnosticsPlugin::RTT) > 0.0
    });
    let store = app.world().resource::<DiagnosticsStore>();
    let latest = |p: &DiagnosticPath| store.get(p).and_then(|d| d.value());
    assert_eq!(latest(&PhoenixDiagnosticsPlugin::RECONNECTS), Some(0.0));
    assert_eq!(latest(&PhoenixDiagnosticsPlugin::PENDING_PUSHES), Some(0.0));
    assert!(latest(&PhoenixDiagnosticsPlugin::RTT).is_some_and(|ms| ms > 0.0 && ms < 5000.0));
}

// ----- despawned sockets, missing sockets --------------------------------------------------

#[test]
fn despawned_socket_ends_its_pushes_and_channels() {
    let server = Server::start();
    let other = phoenix_test_server::start().unwrap();
    let mut app = app(config(&server.url));
    let s2 = app
        .world_mut()
        .spawn(PhoenixSocket::new(config(&other.url())))
        .id();
    let topic = unique("echo:gone-");
    let ch = join(&mut app, PhoenixChannel::new(&topic).on_socket(s2));
    wait_joined(&mut app, ch);
    let base = other.frames_received();
    let in_flight = push(
        &mut app,
        PushMessage::json(ch, "slow", &json!({"ms": 5000})).unwrap(),
    );
    pump_until(&mut app, 5, "slow push sent", |_| {
        other.frames_received() > base
    });
    app.world_mut().despawn(s2);
    // The same frame: a push to the channel of the socket being removed.
    let same_frame = push(&mut app, PushMessage::json(ch, "echo", &1).unwrap());
    pump_until(&mut app, 5, "outcomes", |w| {
        let l = w.resource::<Log>();
        [in_flight, same_frame]
            .iter()
            .all(|h| l.replies.iter().any(|r| r.handle == *h))
    });
    let later = push(&mut app, PushMessage::json(ch, "echo", &2).unwrap());
    let r = reply(&mut app, later);
    assert!(
        matches!(r.outcome, PushOutcome::Dropped(_)),
        "a push to a channel of a despawned socket is dropped: {r:?}"
    );
    for h in [in_flight, same_frame] {
        let r = replies_for(&app, h);
        assert_eq!(r.len(), 1, "{r:?}");
        assert!(matches!(r[0].outcome, PushOutcome::Dropped(_)), "{r:?}");
    }
    pump_until(&mut app, 5, "connection closed", |_| {
        other.open_connections() == 0
    });
    assert_eq!(channel_state(&app, ch), Some(ChannelState::Closed));
    let closed: Vec<_> = log(&app).closed.iter().map(|c| c.entity).collect();
    assert_eq!(closed, [ch]);
}

#[test]
fn channel_without_a_socket_is_closed() {
    let server = Server::start();
    let mut app = app(config(&server.url));
    let ghost = app.world_mut().spawn_empty().id();
    app.world_mut().despawn(ghost);
    let ch = join(
        &mut app,
        PhoenixChannel::new(unique("echo:nosock-")).on_socket(ghost),
    );
    app.world_mut().write_message(JoinChannel {
        socket: Some(ghost),
        topic: unique("echo:nosock-msg-"),
        payload: OutPayload::empty(),
    });
    pump_for(&mut app, 100);
    assert_eq!(channel_state(&app, ch), Some(ChannelState::Closed));
    let mut q = app.world_mut().query::<(Entity, &ChannelStatus)>();
    let states: Vec<_> = q.iter(app.world()).map(|(_, s)| s.0).collect();
    assert_eq!(states, [ChannelState::Closed, ChannelState::Closed]);
    let h = push(&mut app, PushMessage::json(ch, "echo", &1).unwrap());
    assert_eq!(
        reply(&mut app, h).outcome,
        PushOutcome::Dropped(DropReason::ChannelClosed)
    );
}

// ----- sockets spawned early, sockets replaced ---------------------------------------------

/// A socket spawned before the plugin was added (so before the plugin could see it being
/// inserted) still starts: the first send pass looks at every socket once.
#[test]
fn a_socket_spawned_before_the_plugin_connects() {
    let server = Server::start();
    let mut app = App::new();
    app.add_plugins(MinimalPlugins);
    let s = app
        .world_mut()
        .spawn(PhoenixSocket::new(config(&server.url)))
        .id();
    app.add_plugins(PhoenixChannelsPlugin::default())
        .init_resource::<Log>()
        .add_systems(Update, collect);
    pump_until(&mut app, 10, "connected", |w| {
        w.resource::<Log>().connected.iter().any(|c| c.entity == s)
    });
}

/// Inserting a new `PhoenixSocket` over an existing one ends the old one as a despawn would
/// (its pushes dropped, its channels closed, its connection closed) and starts the new one.
#[test]
fn replacing_a_socket_component_ends_the_old_socket_and_starts_the_new() {
    let server = Server::start();
    let old = phoenix_test_server::start().unwrap();
    let new = phoenix_test_server::start().unwrap();
    let mut app = app(config(&server.url));
    let s2 = app
        .world_mut()
        .spawn(PhoenixSocket::new(config(&old.url())))
        .id();
    let topic = unique("echo:replaced-");
    let ch = join(&mut app, PhoenixChannel::new(&topic).on_socket(s2));
    wait_joined(&mut app, ch);
    let base = old.frames_received();
    let in_flight = push(
        &mut app,
        PushMessage::json(ch, "slow", &json!({"ms": 5000})).unwrap(),
    );
    pump_until(&mut app, 5, "slow push sent", |_| {
        old.frames_received() > base
    });
    app.world_mut()
        .entity_mut(s2)
        .insert(PhoenixSocket::new(config(&new.url())));
    pump_until(&mut app, 10, "the new socket connected", |w| {
        w.resource::<Log>()
            .connected
            .iter()
            .filter(|c| c.entity == s2)
            .count()
            == 2
    });
    let r = replies_for(&app, in_flight);
    assert_eq!(r.len(), 1, "{r:?}");
    assert!(matches!(r[0].outcome, PushOutcome::Dropped(_)), "{r:?}");
    assert_eq!(channel_state(&app, ch), Some(ChannelState::Closed));
    pump_until(&mut app, 5, "the old connection closed", |_| {
        old.open_connections() == 0
    });
    assert_eq!(new.open_connections(), 1);
    // The new socket works: a channel on it joins and echoes.
    let ch2 = join(&mut app, PhoenixChannel::new(&topic).on_socket(s2));
    wait_joined(&mut app, ch2);
    let h = push(&mut app, PushMessage::json(ch2, "echo", &7).unwrap());
    assert!(matches!(reply(&mut app, h).outcome, PushOutcome::Ok(_)));
}
