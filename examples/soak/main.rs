//! Soak run (issue 11): one steady headless app on the embedded test server receives a million
//! messages and makes a million pushes, then a million pushes whose replies each come with a
//! message under an event name never seen before. It samples resident memory (VmRSS / VmHWM),
//! the live heap of the whole process (every thread, the in-process server included) and the
//! protocol core's table sizes (`Socket::footprint`), and fails (exit 1) when memory or a table
//! grows between the end of the warm-up and the end of a phase by more than the tolerance.
//!
//! ```sh
//! cargo run --release --example soak
//! cargo run --release --example soak -- --messages 200000 --pushes 200000 --names 100000
//! # the client alone: the server in its own process
//! cargo run --release -p phoenix_test_server -- --port 4000 &
//! cargo run --release --example soak -- --url ws://127.0.0.1:4000/socket
//! ```
//!
//! Flatness: the heap and RSS at the start (median of 5 samples after `--warmup` operations)
//! and at the end of each phase (median of the last 5 samples), within `--heap-tolerance-kib`
//! (1 MiB) and `--rss-tolerance-kib` (8 MiB); the least-squares slope of the heap is printed in
//! bytes per million operations. The core's tables (`Socket::footprint`) must be back to one
//! channel and no push when each phase is idle, and the interned names never above 1024.
//!
//! Phase "steady": `echo` pushes (a window of them in flight) and `burst` pushes that make the
//! server send `--burst` `tick` messages each, until both counts are reached. Phase "names":
//! `push_me` pushes, each making the server push one message named `n<i>`: the core interns at
//! most 1024 event names (`NAME_CACHE_MAX`), so a server inventing names must not grow memory.
//!
//! Native only (it runs the embedded test server in this process).

#[cfg(not(target_arch = "wasm32"))]
mod native;

fn main() {
    #[cfg(not(target_arch = "wasm32"))]
    native::main();
    #[cfg(target_arch = "wasm32")]
    panic!("the soak run is native only");
}
