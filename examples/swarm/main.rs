//! A swarm load generator: N bots in one headless Bevy app, each with its own socket, joining a
//! room (`room:swarm-K`, with Presence) and pushing moves at a steady rate while it receives the
//! room's broadcasts. It prints per-second totals and ends with a summary: what a Phoenix game
//! developer points at their own server before a playtest.
//!
//! ```text
//! cargo run --release --example swarm -- --bots 1000
//! cargo run --release --example swarm -- --bots 200 --url ws://127.0.0.1:4000/socket --rate 20
//! ```
//!
//! Without `--url` (or `PHOENIX_URL`) it starts the embedded test server in this process: then
//! the memory figures include the server's. The client's CPU is the main thread's (with the
//! headless preset every system and every socket runs there). Against your own server, the
//! channel must answer `"move"` pushes (the reference app's `room:*` channel replies `:ok` and
//! broadcasts them to the rest of the room).
//!
//! Options: `--bots N` (100), `--rooms N` (one per 10 bots), `--rate HZ` moves per bot per second
//! (5; 0 = idle), `--seconds S` (10), `--url URL`, `--spin` (no `WaitForNetwork`: an uncapped
//! loop), `--tick-ms MS` (no `WaitForNetwork`: one frame every MS milliseconds, like a game
//! server's tick or `ScheduleRunnerPlugin::run_loop`; each frame then handles what every socket
//! received since the last, which costs less CPU per message than a frame per wake-up),
//! `--read-buffer BYTES` (each socket's read buffer, 1024 here: the library's default of 16 KiB
//! suits a game's one socket, 1 KiB saves about 15 KiB per socket when there are thousands),
//! `--json` (one JSON summary line at the end, for scripts), `--no-presence` (channels without
//! presence tracking: the server's presence events arrive as plain messages), `--on-time`.
//!
//! A bot's move leaves with the first frame after it is due: the frame loop sleeps until the
//! network has something (or 16 ms), so moves go out in batches, as a game sends a frame's input
//! together. `--on-time` wakes the loop for each move instead (`WaitForNetwork::wake_by`), as
//! phoenix.js's timers do: lower reply latency, more wake-ups. Reply latency (per second and in the summary)
//! runs from the frame that wrote a push to the frame that read its reply: what the game sees,
//! the server's handling and the wait for the next frame included. The run ends once every push
//! has its outcome (a reply, or the 10 s push timeout).
//!
//! Native only: in the browser there is one socket per tab, and no embedded server.

#[cfg(not(target_arch = "wasm32"))]
mod native;

/// The process's allocator, counting live heap bytes (all threads) for the per-socket figure.
#[cfg(not(target_arch = "wasm32"))]
#[global_allocator]
static HEAP: cap::Cap<std::alloc::System> = cap::Cap::new(std::alloc::System, usize::MAX);

fn main() {
    #[cfg(not(target_arch = "wasm32"))]
    native::main(|| HEAP.allocated());
    #[cfg(target_arch = "wasm32")]
    panic!("the swarm runs natively");
}
