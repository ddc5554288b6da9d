//! The measurement itself (native only): see `main.rs`.

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

pub fn main() {
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
    // CPU, for information: a room of 100's presence_state into a fresh tracker, and a diff
    // (one join, one leave) on a synced room of 100.
    let json = state_json(100);
    let mut events = Vec::new();
    let runs = 2000;
    let t0 = std::time::Instant::now();
    for _ in 0..runs {
        let mut t = PresenceTracker::new();
        t.set_join_ref("1");
        t.handle_state(&json, &mut events)
            .expect("a valid presence_state");
        events.clear();
    }
    let state_us = t0.elapsed().as_secs_f64() * 1e6 / runs as f64;
    let mut t = PresenceTracker::new();
    t.set_join_ref("1");
    t.handle_state(&json, &mut events)
        .expect("a valid presence_state");
    let meta = r#"{"new":{"metas":[{"online_at":1795687423,"phx_ref":"GOuQMrIxpaZunew0"}]}}"#;
    let diffs = [
        format!(r#"{{"joins":{meta},"leaves":{{}}}}"#),
        format!(r#"{{"joins":{{}},"leaves":{meta}}}"#),
    ];
    let runs = 20000;
    let t0 = std::time::Instant::now();
    for i in 0..runs {
        t.handle_diff(&diffs[i % 2], &mut events)
            .expect("a valid presence_diff");
        events.clear();
    }
    let diff_us = t0.elapsed().as_secs_f64() * 1e6 / runs as f64;
    println!(
        "cpu: presence_state of 100 {state_us:.1} µs, presence_diff of one key {diff_us:.2} µs"
    );
}
