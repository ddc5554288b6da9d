//! Failures and recovery through the plugin: channel crash, server restart, refused connects,
//! params and auth token re-read on reconnect, a stalled server, a paused virtual clock, and
//! exactly one outcome per push across a disconnect.
#![allow(clippy::unwrap_used)]

mod support;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use bevy::prelude::*;
use bevy_phoenix_channels::prelude::*;
use phoenix_test_server::TestServer;
use serde_json::{Value, json};
use support::*;

#[test]
fn server_crash_errors_drops_in_flight_and_rejoins() {
    let server = Server::start();
    let mut app = app(config(&server.url));
    let topic = unique("echo:crash-");
    let ch = join(&mut app, PhoenixChannel::new(&topic));
    wait_joined(&mut app, ch);
    let first_ref = join_ref_of(&app, ch).unwrap();
    // In flight when the channel crashes: a push that is never answered, then the crash
    // itself (Phoenix answers a crash with phx_error only).
    let slow = push(
        &mut app,
        PushMessage::json(ch, "noreply", &json!({})).unwrap(),
    );
    let crash = push(
        &mut app,
        PushMessage::json(ch, "crash", &json!({})).unwrap(),
    );
    pump_until(&mut app, 10, "channel errored", |w| {
        !w.resource::<Log>().errored.is_empty()
    });
    let e = &log(&app).errored[0];
    assert_eq!((e.entity, &*e.topic), (ch, topic.as_str()));
    assert!(
        matches!(e.reason, ChannelError::Crashed(_)),
        "expected Crashed, got {:?}",
        e.reason
    );
    for h in [slow, crash] {
        let r = reply(&mut app, h);
        assert_eq!(
            r.outcome,
            PushOutcome::Dropped(DropReason::ChannelCrashed),
            "{r:?}"
        );
        assert_eq!(r.channel, ch);
    }
    // Rejoins by itself (rejoin backoff 200 ms) with a fresh join_ref, and works again.
    pump_until(&mut app, 10, "rejoined", |w| {
        w.resource::<Log>().joined.len() >= 2
    });
    let j = &log(&app).joined[1];
    assert_eq!((j.entity, j.rejoin), (ch, true));
    assert_eq!(channel_state(&app, ch), Some(ChannelState::Joined));
    assert!(join_ref_of(&app, ch).unwrap() > first_ref);
    let h = push(
        &mut app,
        PushMessage::json(ch, "echo", &json!({"back": true})).unwrap(),
    );
    assert_eq!(
        reply(&mut app, h).decode_ok::<Value>().unwrap().unwrap(),
        json!({"back": true})
    );
    let l = log(&app);
    assert!(l.disconnected.is_empty(), "a crash keeps the socket up");
    assert_eq!(replies_for(&app, slow).len(), 1);
    assert_eq!(replies_for(&app, crash).len(), 1);
}

#[test]
fn server_restart_reconnects_and_rejoins_every_channel() {
    let server = Server::start();
    if server.faulty("server_restart").is_none() {
        return;
    }
    let mut server = server;
    let old = server.local.take().unwrap();
    let port = old.addr().port();
    let mut app = app(config(&server.url));
    let echo = join(&mut app, PhoenixChannel::new(unique("echo:restart-")));
    let room_topic = unique("room:restart-");
    let room = join(
        &mut app,
        PhoenixChannel::new(&room_topic)
            .with_payload(&json!({"user_id": "ann"}))
            .unwrap(),
    );
    let private = join(
        &mut app,
        PhoenixChannel::new(unique("private:restart-"))
            .with_payload(&json!({"password": "secret"}))
            .unwrap(),
    );
    let chans = [echo, room, private];
    for c in chans {
        wait_joined(&mut app, c);
    }
    let before: Vec<u64> = chans
        .iter()
        .map(|c| join_ref_of(&app, *c).unwrap())
        .collect();

    drop(old);
    pump_until(&mut app, 10, "disconnect seen", |w| {
        !w.resource::<Log>().disconnected.is_empty()
    });
    for c in chans {
        assert_ne!(channel_state(&app, c), Some(ChannelState::Joined));
    }
    let new = TestServer::builder().port(port).start().unwrap();
    pump_until(&mut app, 15, "every channel rejoined", |w| {
        chans.iter().all(|c| {
            w.resource::<Log>()
                .joined
                .iter()
                .any(|j| j.entity == *c && j.rejoin)
        }) && chans
            .iter()
            .all(|c| w.get::<ChannelStatus>(*c).map(|s| s.0) == Some(ChannelState::Joined))
    });
    let after: Vec<u64> = chans
        .iter()
        .map(|c| join_ref_of(&app, *c).unwrap())
        .collect();
    let max_before = *before.iter().max().unwrap();
    for (b, a) in before.iter().zip(&after) {
        assert!(
            *a > max_before,
            "fresh join_ref: {a} after {b} ({before:?} → {after:?})"
        );
    }
    let mut uniq = after.clone();
    uniq.sort_unstable();
    uniq.dedup();
    assert_eq!(uniq.len(), 3, "{after:?}");
    let l = log(&app);
    assert_eq!(l.connected.len(), 2);
    assert_eq!(l.joined.len(), 6, "one join and one rejoin each");
    let s = socket_entity(&mut app);
    assert_eq!(
        app.world()
            .get::<PhoenixSocket>(s)
            .unwrap()
            .stats()
            .reconnects,
        1
    );
    // The new server sees the rejoins: presence for the room, replies for the echo.
    pump_until(&mut app, 10, "presence on the new server", |_| {
        new.presence_list(&room_topic).get("ann").is_some()
    });
    let h = push(
        &mut app,
        PushMessage::json(echo, "echo", &json!({"n": 1})).unwrap(),
    );
    assert!(reply(&mut app, h).is_ok());
    let h = push(
        &mut app,
        PushMessage::json(private, "echo", &json!({"p": 1})).unwrap(),
    );
    assert!(reply(&mut app, h).is_ok());
    assert_eq!(new.connections().len(), 1);
}

#[test]
fn refused_connect_is_distinct_and_keeps_retrying() {
    let server = Server::start();
    let mut app = app(config(&server.url).with(|s| s.with_params([("token", "bad")])));
    pump_until(&mut app, 10, "three refusals", |w| {
        w.resource::<Log>().refused.len() >= 3
    });
    let s = socket_entity(&mut app);
    let l = log(&app);
    for r in &l.refused {
        assert_eq!((r.entity, r.status), (s, 403));
    }
    assert!(
        l.failed.is_empty(),
        "a refusal is not a network failure: {:?}",
        l.failed
    );
    assert!(l.connected.is_empty());
    assert!(l.reconnecting.len() >= 3, "{:?}", l.reconnecting.len());
    assert!(
        l.reconnecting
            .windows(2)
            .all(|w| w[1].attempt > w[0].attempt)
    );
    assert_ne!(
        app.world().get::<SocketStatus>(s).unwrap().0,
        ConnectionState::Open
    );
    if let Some(local) = &server.local {
        let c = local.connections();
        assert!(c.len() >= 3, "{c:?}");
        assert!(c.iter().all(|c| !c.accepted && c.status == 403));
        assert!(
            c.iter()
                .all(|c| c.params.get("token").map(String::as_str) == Some("bad"))
        );
    }
}

#[test]
fn params_and_auth_token_are_reread_on_reconnect() {
    let local = TestServer::builder()
        .connect_check(|params, token| {
            params.get("attempt").is_some() && token.is_some_and(|t| t.starts_with("tok/"))
        })
        .start()
        .unwrap();
    let server = Server::local(local);
    if server.faulty("params_and_auth_token").is_none() {
        return;
    }
    let params_calls = Arc::new(AtomicU32::new(0));
    let token_calls = Arc::new(AtomicU32::new(0));
    let (p, t) = (params_calls.clone(), token_calls.clone());
    let cfg = config(&server.url).with(move |s| {
        s.with_params_fn(move || {
            let n = p.fetch_add(1, Ordering::SeqCst) + 1;
            vec![("attempt".to_string(), n.to_string())]
        })
        .with_auth_token_fn(move || {
            let n = t.fetch_add(1, Ordering::SeqCst) + 1;
            Some(format!("tok/{n}+é ü"))
        })
    });
    let mut app = app(cfg);
    wait_connected(&mut app);
    let local = server.local.as_ref().unwrap();
    local.faults().drop_all_connections(true);
    pump_until(&mut app, 10, "reconnected", |w| {
        w.resource::<Log>().connected.len() >= 2
    });
    let c = local.connections();
    assert_eq!(c.len(), 2, "{c:?}");
    assert!(c.iter().all(|c| c.accepted));
    let attempts: Vec<_> = c.iter().map(|c| c.params.get("attempt").cloned()).collect();
    assert_eq!(attempts, [Some("1".into()), Some("2".into())]);
    let tokens: Vec<_> = c.iter().map(|c| c.auth_token.clone()).collect();
    assert_eq!(
        tokens,
        [Some("tok/1+é ü".to_string()), Some("tok/2+é ü".to_string())],
        "the token arrives decoded, fresh on every connect"
    );
    assert!(
        c.iter()
            .all(|c| c.params.get("vsn").map(String::as_str) == Some("2.0.0"))
    );
    assert_eq!(params_calls.load(Ordering::SeqCst), 2);
    assert_eq!(token_calls.load(Ordering::SeqCst), 2);
}

#[test]
fn stalled_server_times_out_heartbeat_and_recovers() {
    let server = Server::start();
    let Some(local) = server.faulty("stalled_server") else {
        return;
    };
    let hb = Duration::from_millis(200);
    let hb_timeout = Duration::from_millis(500);
    let mut app =
        app(config(&server.url).with(|s| s.with_heartbeat(hb).with_heartbeat_timeout(hb_timeout)));
    let ch = join(&mut app, PhoenixChannel::new(unique("echo:stall-")));
    wait_joined(&mut app, ch);
    // Heartbeats are answered for a while.
    let s = socket_entity(&mut app);
    pump_until(&mut app, 5, "a heartbeat round trip", |w| {
        w.get::<PhoenixSocket>(s)
            .unwrap()
            .stats()
            .last_rtt
            .is_some()
    });
    assert!(log(&app).disconnected.is_empty());

    local.faults().answer_heartbeats(false);
    let t0 = Instant::now();
    pump_until(&mut app, 5, "heartbeat timeout", |w| {
        !w.resource::<Log>().disconnected.is_empty()
    });
    let took = t0.elapsed();
    local.faults().answer_heartbeats(true);
    let d = &log(&app).disconnected[0];
    assert_eq!(
        (d.entity, &d.reason),
        (s, &DisconnectReason::HeartbeatTimeout)
    );
    assert!(
        // The unanswered heartbeat went out at most one interval before the switch.
        took >= hb_timeout - hb && took < hb_timeout + hb + Duration::from_secs(3),
        "{took:?}"
    );
    let e = log(&app).errored.iter().find(|e| e.entity == ch).cloned();
    assert_eq!(e.map(|e| e.reason), Some(ChannelError::ConnectionLost));

    pump_until(&mut app, 10, "rejoined", |w| {
        w.resource::<Log>()
            .joined
            .iter()
            .any(|j| j.rejoin && j.entity == ch)
            && w.get::<ChannelStatus>(ch).map(|s| s.0) == Some(ChannelState::Joined)
    });
    assert_eq!(log(&app).connected.len(), 2);
    let h = push(
        &mut app,
        PushMessage::json(ch, "echo", &json!({"ok": 1})).unwrap(),
    );
    assert!(reply(&mut app, h).is_ok());
    assert_eq!(log(&app).disconnected.len(), 1);
}

#[test]
fn paused_virtual_time_still_heartbeats() {
    let server = Server::start();
    let hb = Duration::from_millis(200);
    // A generous timeout: a slow test machine must not turn into a disconnect here.
    let mut app = app(config(&server.url).with(|s| {
        s.with_heartbeat(hb)
            .with_heartbeat_timeout(Duration::from_secs(5))
    }));
    let ch = join(&mut app, PhoenixChannel::new(unique("echo:pause-")));
    wait_joined(&mut app, ch);
    let s = socket_entity(&mut app);
    app.world_mut().resource_mut::<Time<Virtual>>().pause();
    let out0 = app
        .world()
        .get::<PhoenixSocket>(s)
        .unwrap()
        .stats()
        .frames_out;
    let srv0 = server.local.as_ref().map(TestServer::frames_received);
    let v0 = app.world().resource::<Time<Virtual>>().elapsed();
    // 5 heartbeat intervals with the game paused.
    pump_for(&mut app, 1000);
    assert!(app.world().resource::<Time<Virtual>>().is_paused());
    assert_eq!(
        app.world().resource::<Time<Virtual>>().elapsed(),
        v0,
        "virtual time really was paused"
    );
    let st = *app.world().get::<PhoenixSocket>(s).unwrap().stats();
    assert!(
        st.frames_out >= out0 + 3,
        "heartbeats while paused: {} → {}",
        out0,
        st.frames_out
    );
    assert!(
        st.last_rtt.is_some_and(|r| r > Duration::ZERO),
        "heartbeat replies while paused: {:?}",
        st.last_rtt
    );
    if let (Some(local), Some(srv0)) = (&server.local, srv0) {
        assert!(
            local.frames_received() >= srv0 + 3,
            "server saw heartbeats: {srv0} → {}",
            local.frames_received()
        );
    }
    let l = log(&app);
    assert!(l.disconnected.is_empty(), "{:?}", l.disconnected);
    assert_eq!(l.connected.len(), 1);
    assert_eq!(channel_state(&app, ch), Some(ChannelState::Joined));
}

#[test]
fn every_push_gets_exactly_one_outcome_across_a_disconnect() {
    let server = Server::start();
    let Some(local) = server.faulty("one_outcome_per_push") else {
        return;
    };
    let mut app = app(config(&server.url));
    let ch = join(&mut app, PhoenixChannel::new(unique("echo:outcomes-")));
    wait_joined(&mut app, ch);
    let base = local.frames_received();
    let mut in_flight = Vec::new();
    for i in 0..25 {
        in_flight.push(push(
            &mut app,
            PushMessage::json(ch, "noreply", &json!({"i": i})).unwrap(),
        ));
        in_flight.push(push(
            &mut app,
            PushMessage::json(ch, "slow", &json!({"ms": 5000, "i": i})).unwrap(),
        ));
    }
    pump_until(&mut app, 10, "server got every push", |_| {
        local.frames_received() >= base + 50
    });
    local.faults().drop_all_connections(false);
    pump_until(&mut app, 10, "disconnect seen", |w| {
        !w.resource::<Log>().disconnected.is_empty()
    });
    // Pushed during the outage, on a channel that was joined: outdated once it rejoins.
    let mut during = Vec::new();
    for i in 0..5 {
        during.push(push(
            &mut app,
            PushMessage::json(ch, "echo", &json!({"late": i})).unwrap(),
        ));
    }
    let all: Vec<PushHandle> = in_flight.iter().chain(&during).copied().collect();
    pump_until(&mut app, 10, "an outcome for every push", |w| {
        let got: std::collections::HashSet<_> = w
            .resource::<Log>()
            .replies
            .iter()
            .map(|r| r.handle)
            .collect();
        all.iter().all(|h| got.contains(h))
    });
    wait_joined(&mut app, ch);
    let h = push(
        &mut app,
        PushMessage::json(ch, "echo", &json!({"after": 1})).unwrap(),
    );
    assert!(reply(&mut app, h).is_ok());
    pump_for(&mut app, 200);

    let mut outcomes: HashMap<PushHandle, Vec<PushOutcome>> = HashMap::new();
    for r in &log(&app).replies {
        outcomes
            .entry(r.handle)
            .or_default()
            .push(r.outcome.clone());
    }
    for h in &in_flight {
        assert_eq!(
            outcomes.get(h).map(Vec::as_slice),
            Some(&[PushOutcome::Dropped(DropReason::ConnectionLost)][..]),
            "in flight at the disconnect: {h:?}"
        );
    }
    for h in &during {
        assert_eq!(
            outcomes.get(h).map(Vec::as_slice),
            Some(&[PushOutcome::Dropped(DropReason::Outdated)][..]),
            "pushed during the outage: {h:?}"
        );
    }
    assert_eq!(log(&app).replies.len(), all.len() + 1, "no extra outcomes");
    let s = socket_entity(&mut app);
    assert_eq!(
        app.world()
            .get::<PhoenixSocket>(s)
            .unwrap()
            .core()
            .pending_pushes(),
        0
    );
}

/// Changing `PhoenixChannel::payload` on a joined channel sets what its rejoin sends: after a
/// dropped connection the room sees the new `user_id` in presence, not the old one.
#[test]
fn edited_join_payload_is_sent_with_the_rejoin() {
    let server = Server::start();
    let Some(local) = server.faulty("edited_join_payload") else {
        return;
    };
    let mut app = app(config(&server.url));
    let topic = unique("room:edit-");
    let room = join(
        &mut app,
        PhoenixChannel::new(&topic)
            .with_payload(&json!({"user_id": "before"}))
            .unwrap(),
    );
    wait_joined(&mut app, room);
    pump_until(&mut app, 10, "tracked as before", |_| {
        local.presence_list(&topic).get("before").is_some()
    });

    app.world_mut()
        .get_mut::<PhoenixChannel>(room)
        .unwrap()
        .payload = OutPayload::json(&json!({"user_id": "after"})).unwrap();
    let join_ref = join_ref_of(&app, room);
    pump_for(&mut app, 100);
    // Nothing is sent for the edit itself: the channel stays as it is until it rejoins.
    assert_eq!(join_ref_of(&app, room), join_ref);
    assert!(local.presence_list(&topic).get("before").is_some());

    local.faults().drop_all_connections(false);
    pump_until(&mut app, 15, "rejoined as after", |w| {
        w.resource::<Log>()
            .joined
            .iter()
            .any(|j| j.entity == room && j.rejoin)
            && local.presence_list(&topic).get("after").is_some()
    });
    assert!(
        local.presence_list(&topic).get("before").is_none(),
        "{:?}",
        local.presence_list(&topic)
    );
}
