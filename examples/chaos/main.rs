//! Chaos run (issue 11): one headless Bevy app, one socket joined to 20 channels on the embedded
//! test server, pushing at a steady rate while a fault thread drops, refuses, stalls and delays
//! its connections. Invariants are checked as it runs; the summary is printed at the end and the
//! exit code is 1 if any invariant failed.
//!
//! ```sh
//! cargo run --release --example chaos                       # 100k pushes at 500/s (~3.5 min)
//! cargo run --release --example chaos -- --pushes 20000 --rate 1000
//! cargo run --release --example chaos -- --server-down 60   # backoff and idle CPU, no server
//! ```
//!
//! Invariants:
//! - every push ends in exactly one `PushReplied` (none twice, none unknown; at the end, after
//!   a disconnect and the push timeout, issued == resolved), with an outcome that fits its kind
//!   (an `echo` never gets an error reply, a fire-and-forget never a reply, ...), and an ok
//!   echo carries the handle it was sent with;
//! - after each fault: both sockets open again, every channel joined again (a fresh
//!   `ChannelJoined` per channel if the connection dropped), and the presence lists of both
//!   sockets equal the server's `Presence.list` (stable for 300 ms);
//! - faults that cut the connection (including the ones only the heartbeat can see) do cut it;
//! - sequence-numbered broadcasts from the server arrive strictly increasing (no frame twice,
//!   none reordered), across every reconnect.
//!
//! `--server-down SECS`: the server accepts TCP and closes at once for SECS seconds; counts the
//! connect attempts against the reconnect backoff table (with its ±20 % jitter), checks every
//! scheduled delay against the table, and reports CPU seconds per wall second.
//!
//! Native only (it runs the embedded test server in this process).

#[cfg(not(target_arch = "wasm32"))]
mod native;

fn main() {
    #[cfg(not(target_arch = "wasm32"))]
    native::main();
    #[cfg(target_arch = "wasm32")]
    panic!("the chaos run is native only");
}
