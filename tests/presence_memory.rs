//! Heap budgets of presence (issue 12, memory per socket): what a socket keeps for a room's
//! presence list, counted exactly by a counting allocator (this binary's only test, so no other
//! test allocates meanwhile). Sizes are deterministic: no timing, no network.
#![allow(clippy::unwrap_used)]

#[path = "support/protocol.rs"]
mod support;

use bevy_phoenix_channels::protocol::PresenceState;
use bevy_phoenix_channels::protocol::presence::PresenceTracker;
use support::*;

#[global_allocator]
static HEAP: cap::Cap<std::alloc::System> = cap::Cap::new(std::alloc::System, usize::MAX);

/// A room of `n` as the test server (and Phoenix) sends it: keys `bot-N`, one meta each with
/// `online_at` and a 16-character `phx_ref`.
fn room(n: usize) -> String {
    let entries: serde_json::Map<String, serde_json::Value> = (0..n)
        .map(|i| {
            let meta = serde_json::json!({
                "online_at": 1_795_687_423u64 + i as u64,
                "phx_ref": format!("GOuQMrIxpaZu{i:04}"),
            });
            (format!("bot-{i}"), serde_json::json!({ "metas": [meta] }))
        })
        .collect();
    serde_json::Value::Object(entries).to_string()
}

/// The fewest live heap bytes `f`'s result keeps over three tries (the test harness's own
/// thread may allocate at any moment; it only ever adds, once, so the least is exact).
fn least<T>(mut f: impl FnMut() -> (T, isize)) -> (T, usize) {
    let mut best: Option<(T, usize)> = None;
    for _ in 0..3 {
        let (kept, bytes) = f();
        let bytes = usize::try_from(bytes).unwrap_or(0);
        if best.as_ref().is_none_or(|(_, b)| bytes < *b) {
            best = Some((kept, bytes));
        }
    }
    best.unwrap()
}

fn live() -> isize {
    HEAP.allocated() as isize
}

/// Live heap bytes a tracker keeps for `json`.
fn tracker_bytes(json: &str) -> (PresenceTracker, usize) {
    least(|| {
        let base = live();
        let mut t = PresenceTracker::new();
        t.set_join_ref("1");
        let mut events = Vec::new();
        t.handle_state(json, &mut events).unwrap();
        drop(events);
        let bytes = live() - base;
        (t, bytes)
    })
}

#[test]
fn presence_keeps_a_room_compactly_and_a_burst_leaves_nothing_behind() {
    // The core's list of a room of 10: each meta was a `serde_json::Map` (a B-tree node of
    // ~600 bytes for one field) plus its strings, 16.6 KB in all; now its fields are one short
    // JSON text behind an `Arc`: ~2 KB.
    let (tracker, core) = tracker_bytes(&room(10));
    assert!(core < 3 * 1024, "the core's list of 10 takes {core} bytes");

    // The plugin's `ChannelPresence` copy, made key by key as its sink does, shares the
    // metas: keys, entries and pointers only (it was a deep copy, 8.1 KB).
    let (copy, copied) = least(|| {
        let base = live();
        let mut copy = PresenceState::new();
        for (key, entry) in tracker.state() {
            copy.insert(key.clone(), entry.clone());
        }
        (copy, live() - base)
    });
    assert!(
        copied < 1200,
        "the copy of a list of 10 takes {copied} bytes"
    );
    assert_eq!(&copy, tracker.state());
    drop(copy);
    drop(tracker);

    // The same room built by diffs (everyone joining after us) takes what the state takes, give
    // or take the map's nodes: a new key's list of metas is as long as its metas, not grown to 4.
    let (_, diffed) = least(|| {
        let base = live();
        let mut t = PresenceTracker::new();
        t.set_join_ref("1");
        let mut events = Vec::new();
        t.handle_state("{}", &mut events).unwrap();
        for i in 0..10 {
            let diff = format!(
                r#"{{"joins":{{"bot-{i}":{{"metas":[{{"online_at":{},"phx_ref":"GOuQMrIxpaZu{i:04}"}}]}}}}}}"#,
                1_795_687_423u64 + i as u64
            );
            t.handle_diff(&diff, &mut events).unwrap();
        }
        drop(events);
        (t, live() - base)
    });
    assert!(
        diffed <= core + 64,
        "a room of 10 by diffs takes {diffed} bytes, by a state {core}"
    );

    // A socket that got a room of 200's presence_state (an event per key) keeps, once its
    // events are drained, about what the list itself takes: the event queue and the presence
    // scratch give their burst-sized buffers back (without that they kept 32 KB more, for the
    // socket's whole life).
    let json = room(200);
    let (alone, list) = tracker_bytes(&json);
    drop(alone);
    let (h, held) = least(|| {
        let mut h = H::new(cfg());
        h.open();
        let (ch, jr) = h.join_ok("room:p");
        let frame = msg(Some(jr), "room:p", "presence_state", &json);
        // The frame's text is the socket's to drop: count it as given.
        let base = live() - frame.capacity() as isize;
        h.text(frame);
        let events = h.events();
        assert_eq!(presence_events(&events).len(), 201);
        drop(events);
        assert_eq!(h.s.presence(ch).unwrap().len(), 200);
        let held = live() - base;
        (h, held)
    });
    drop(h);
    assert!(
        held < list + 1024,
        "the socket holds {held} bytes for a list of {list}"
    );
}
