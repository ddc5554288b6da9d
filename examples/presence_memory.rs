//! Heap bytes one socket spends on a presence list, piece by piece (issue 12, memory per socket).
//!
//! `cargo run --release --example presence_memory`
//!
//! For rooms of 1, 10 and 100 members with the test server's metas (`{"online_at": …}` and a
//! 16-character `phx_ref`, keys `bot-N`), it counts the live heap (all allocations, through the
//! `cap` allocator) of what the plugin keeps per channel: the core's [`PresenceTracker`] after
//! the room's `presence_state` arrived, then the `ChannelPresence` copy that the plugin's sink
//! makes key by key. Nothing else runs, so the counts are exact.

use std::collections::BTreeMap;

use bevy_phoenix_channels::protocol::presence::PresenceTracker;
use bevy_phoenix_channels::protocol::{PresenceEntry, PresenceMeta, PresenceState};

#[global_allocator]
static HEAP: cap::Cap<std::alloc::System> = cap::Cap::new(std::alloc::System, usize::MAX);

/// A `presence_state` payload for a room of `n` like the test server sends.
fn state_json(n: usize) -> String {
    let entries: serde_json::Map<String, serde_json::Value> = (0..n)
        .map(|i| {
            (
                format!("bot-{i}"),
                serde_json::json!({"metas": [{"online_at": 1_795_687_423u64 + i as u64, "phx_ref": format!("GOuQMrIxpaZu{i:04}")}]}),
            )
        })
        .collect();
    serde_json::Value::Object(entries).to_string()
}

fn main() {
    println!(
        "size_of: PresenceMeta {} B, PresenceEntry {} B, PresenceTracker {} B, PresenceEvent {} B, core Event {} B",
        size_of::<PresenceMeta>(),
        size_of::<PresenceEntry>(),
        size_of::<PresenceTracker>(),
        size_of::<bevy_phoenix_channels::protocol::PresenceEvent>(),
        size_of::<bevy_phoenix_channels::protocol::Event>(),
    );
    println!(
        "| room | tracker (core) B | per member B | ChannelPresence copy B | per member B | both per member B |"
    );
    println!("|---|---|---|---|---|---|");
    for n in [1usize, 10, 100] {
        let json = state_json(n);
        let mut events = Vec::new();
        let base = HEAP.allocated();
        let mut tracker = PresenceTracker::new();
        tracker.set_join_ref("1");
        tracker
            .handle_state(&json, &mut events)
            .expect("a valid presence_state");
        events.clear();
        events.shrink_to_fit();
        let core = HEAP.allocated() - base;
        // The plugin's copy, made as its sink does: one insert of a clone per key.
        let base = HEAP.allocated();
        let mut copy = PresenceState::new();
        for (key, entry) in tracker.state() {
            copy.insert(key.clone(), entry.clone());
        }
        let component = HEAP.allocated() - base;
        println!(
            "| {n} | {core} | {:.0} | {component} | {:.0} | {:.0} |",
            core as f64 / n as f64,
            component as f64 / n as f64,
            (core + component) as f64 / n as f64
        );
        drop::<BTreeMap<_, _>>(copy);
        drop(tracker);
    }
}
