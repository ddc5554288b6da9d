//! Presence through the plugin, with several apps (clients) in one room: `ChannelPresence`
//! lists everyone, a leave removes its key, the same user twice is one key with two metas.
#![allow(clippy::unwrap_used)]

mod support;

use bevy::prelude::*;
use bevy_phoenix_channels::prelude::*;
use serde_json::json;
use support::*;

fn member(url: &str, topic: &str, user: &str) -> (App, Entity) {
    let mut app = app(config(url));
    let ch = join(
        &mut app,
        PhoenixChannel::new(topic)
            .with_payload(&json!({ "user_id": user }))
            .unwrap(),
    );
    wait_joined(&mut app, ch);
    (app, ch)
}

/// Keys and meta counts of a channel's presence list.
fn presence(app: &App, ch: Entity) -> Vec<(String, usize)> {
    app.world()
        .get::<ChannelPresence>(ch)
        .map(|p| {
            p.state
                .iter()
                .map(|(k, e)| (k.clone(), e.metas.len()))
                .collect()
        })
        .unwrap_or_default()
}

fn wait_presence(app: &mut App, ch: Entity, want: &[(&str, usize)], what: &str) {
    let want: Vec<(String, usize)> = want.iter().map(|(k, n)| (k.to_string(), *n)).collect();
    let w2 = want.clone();
    pump_until(app, 10, what, move |w| {
        w.get::<ChannelPresence>(ch).is_some_and(|p| {
            p.state
                .iter()
                .map(|(k, e)| (k.clone(), e.metas.len()))
                .collect::<Vec<_>>()
                == w2
        })
    });
    assert_eq!(presence(app, ch), want);
}

#[test]
fn presence_lists_both_clients_and_a_leave_removes_one() {
    let server = Server::start();
    let topic = unique("room:pres-");
    let (mut a, ach) = member(&server.url, &topic, "alice");
    wait_presence(&mut a, ach, &[("alice", 1)], "alice sees herself");
    let (mut b, bch) = member(&server.url, &topic, "bob");
    wait_presence(&mut b, bch, &[("alice", 1), ("bob", 1)], "bob sees both");
    wait_presence(&mut a, ach, &[("alice", 1), ("bob", 1)], "alice sees both");

    // The metas carry what the server tracked.
    let p = a.world().get::<ChannelPresence>(ach).unwrap();
    let meta = &p.state["bob"].metas[0];
    assert!(
        meta.get("online_at").is_some_and(|v| v.is_number()),
        "{meta:?}"
    );

    // PresenceChanged messages: a join of bob on a's channel, then a sync.
    let l = log(&a);
    assert!(
        l.presence
            .iter()
            .all(|p| p.channel == ach && *p.topic == *topic)
    );
    assert!(
        l.presence.iter().any(|p| matches!(
            &p.event,
            PresenceEvent::Change(PresenceChange::Join { key, current: None, new_metas })
                if key == "bob" && new_metas.len() == 1
        )),
        "{:?}",
        l.presence
    );
    assert!(l.presence.iter().any(|p| p.event == PresenceEvent::Sync));

    // Bob leaves by despawning his channel.
    b.world_mut().despawn(bch);
    pump_until(&mut b, 10, "bob left", |w| {
        !w.resource::<Log>().closed.is_empty()
    });
    wait_presence(&mut a, ach, &[("alice", 1)], "bob gone from alice's list");
    assert!(
        log(&a).presence.iter().any(|p| matches!(
            &p.event,
            PresenceEvent::Change(PresenceChange::Leave { key, remaining, left_metas })
                if key == "bob" && remaining.is_empty() && left_metas.len() == 1
        )),
        "{:?}",
        log(&a).presence
    );
    if let Some(local) = &server.local {
        let list = local.presence_list(&topic);
        assert!(
            list.get("alice").is_some() && list.get("bob").is_none(),
            "{list}"
        );
    }
}

#[test]
fn same_user_twice_is_one_key_with_two_metas() {
    let server = Server::start();
    let topic = unique("room:twice-");
    let (mut a, ach) = member(&server.url, &topic, "carol");
    let (mut b, bch) = member(&server.url, &topic, "carol");
    wait_presence(&mut a, ach, &[("carol", 2)], "two metas for carol on a");
    wait_presence(&mut b, bch, &[("carol", 2)], "two metas for carol on b");
    let refs = |app: &App, ch| -> Vec<String> {
        let p = app.world().get::<ChannelPresence>(ch).unwrap();
        let mut r: Vec<String> = p.state["carol"]
            .metas
            .iter()
            .map(|m| m.phx_ref().to_owned())
            .collect();
        r.sort();
        r
    };
    let ra = refs(&a, ach);
    assert_eq!(ra.len(), 2);
    assert_ne!(ra[0], ra[1], "two distinct metas");
    assert_eq!(ra, refs(&b, bch), "both clients see the same metas");

    // One of them leaves: the key stays, with the other meta.
    a.world_mut().despawn(ach);
    pump_until(&mut a, 10, "a left", |w| {
        !w.resource::<Log>().closed.is_empty()
    });
    wait_presence(&mut b, bch, &[("carol", 1)], "one meta left");
    let left = log(&b).presence.iter().find_map(|p| match &p.event {
        PresenceEvent::Change(PresenceChange::Leave {
            key,
            remaining,
            left_metas,
        }) => Some((key.clone(), remaining.len(), left_metas.len())),
        _ => None,
    });
    assert_eq!(left, Some(("carol".to_string(), 1, 1)));
}

#[test]
fn presence_off_delivers_plain_messages() {
    let server = Server::start();
    let topic = unique("room:raw-");
    let mut app = app(config(&server.url));
    let ch = join(
        &mut app,
        PhoenixChannel::new(&topic)
            .with_payload(&json!({"user_id": "dave"}))
            .unwrap()
            .without_presence(),
    );
    wait_joined(&mut app, ch);
    pump_until(&mut app, 10, "presence_state as a message", |w| {
        w.resource::<Log>()
            .messages
            .iter()
            .any(|m| &*m.event == "presence_state")
    });
    assert!(app.world().get::<ChannelPresence>(ch).is_none());
    assert!(log(&app).presence.is_empty());
    let m = log(&app)
        .messages
        .iter()
        .find(|m| &*m.event == "presence_state")
        .unwrap();
    assert!(m.payload.to_value().unwrap().get("dave").is_some());
}
