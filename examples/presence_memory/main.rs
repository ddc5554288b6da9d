//! Heap bytes one socket spends on a presence list, piece by piece (issue 12, memory per socket).
//!
//! `cargo run --release --example presence_memory`
//!
//! For rooms of 1, 10 and 100 members with the test server's metas (`{"online_at": …}` and a
//! 16-character `phx_ref`, keys `bot-N`), it counts the live heap (all allocations, through the
//! `cap` allocator) of what the plugin keeps per channel: the core's [`PresenceTracker`] after
//! the room's `presence_state` arrived, then the `ChannelPresence` copy that the plugin's sink
//! makes key by key. Nothing else runs, so the counts are exact.
//!
//! Native only (the counting allocator is a native dev-dependency).

#[cfg(not(target_arch = "wasm32"))]
mod native;

fn main() {
    #[cfg(not(target_arch = "wasm32"))]
    native::main();
}
