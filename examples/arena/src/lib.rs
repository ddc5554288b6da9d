//! # Phoenix Arena
//!
//! A small top-down multiplayer game on `bevy_phoenix_channels`: move with WASD or the arrow keys,
//! chat with Enter, see who is online. It runs natively (one `cargo run`) and in the browser, and
//! talks to either the embedded Rust server ([`server`], started by the first window) or the
//! Phoenix app in `server/`. The channel protocol is in `PROTOCOL.md`.
//!
//! - [`protocol`]: payload types and rules, shared by everything below (no Bevy, no I/O).
//! - [`net`]: the networking plugin (no rendering): joins, moves at 20 Hz, interpolation,
//!   presence, chat, connection state. The game, the bots and the tests run it.
//! - [`game`]: the window: sprites, labels, the online list, chat and the connection banner.
//! - [`bots`]: wandering headless players, each its own app and socket (native only).
//! - [`server`]: the embedded server (native only).

pub mod game;
pub mod net;
pub mod protocol;

#[cfg(not(target_arch = "wasm32"))]
pub mod bots;
#[cfg(not(target_arch = "wasm32"))]
pub mod server;
