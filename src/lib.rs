//! # bevy_phoenix_channels
//!
//! A Phoenix Channels (V2) client for Bevy: join topics, push game state, and read replies,
//! broadcasts and presence as ordinary Bevy data, natively and on wasm32.
//!
//! ## Guide
//!
//! Your `Cargo.toml` needs `bevy`, this crate, and `serde` (with the `derive` feature) for your
//! payload types; `serde_json` is re-exported as [`serde_json`] for `json!`.
//!
//! Add the plugin with the socket endpoint, spawn a [`PhoenixChannel`](plugin::PhoenixChannel)
//! entity to join a topic, register the events you receive as your own types, and read them:
//!
//! ```no_run
//! use bevy::prelude::*;
//! use bevy_phoenix_channels::prelude::*;
//! use bevy_phoenix_channels::serde_json::json;
//!
//! #[derive(serde::Serialize, serde::Deserialize)]
//! struct Move { id: String, x: f32, y: f32 }
//!
//! impl ChannelEvent for Move {
//!     const EVENT: &'static str = "move";
//! }
//!
//! fn join(mut commands: Commands) -> Result {
//!     commands.join_channel(PhoenixChannel::new("room:lobby").with_payload(&json!({"user_id": "alice"}))?);
//!     Ok(())
//! }
//!
//! fn send_moves(mut commands: Commands) -> Result {
//!     // 60 Hz state: fire-and-forget (the server handler answers `{:noreply, socket}`): no
//!     // timer, and no `PushReplied` unless it cannot be sent.
//!     let push = PushMessage::event("room:lobby", &Move { id: "alice".into(), x: 1.0, y: 2.0 })?;
//!     commands.push(push.fire_and_forget());
//!     Ok(())
//! }
//!
//! fn read_moves(mut moves: MessageReader<Received<Move>>) {
//!     // Several moves of one player can arrive in one frame (after a slow frame): keep the last.
//!     for m in latest_by(moves.read(), |m| m.value.id.clone()) {
//!         info!("{} moved to {}, {}", m.value.id, m.value.x, m.value.y);
//!     }
//! }
//!
//! App::new()
//!     .add_plugins((MinimalPlugins, PhoenixChannelsPlugin::new("ws://127.0.0.1:4000/socket")))
//!     // Decoded once per message, however many systems read it; a payload that does not decode
//!     // becomes a `ChannelDecodeError` (and a log line), never silence.
//!     .add_channel_message::<Move>("move")
//!     .add_systems(Startup, join)
//!     // Pushes wait for the channel, not just the socket: the socket opens before the join.
//!     .add_systems(Update, (send_moves.run_if(channel_joined("room:lobby")), read_moves))
//!     .run();
//! ```
//!
//! The untyped stream is always there too: every push and broadcast is a
//! [`ChannelMessage`](plugin::ChannelMessage) (`msg.is("move")`, `msg.decode::<T>()`).
//!
//! Requests that need an answer carry a [`PushHandle`](plugin::PushHandle); the answer is a
//! [`PushReplied`](plugin::PushReplied) with the same handle, and every push gets exactly one:
//!
//! ```no_run
//! use bevy::prelude::*;
//! use bevy_phoenix_channels::prelude::*;
//!
//! #[derive(Resource)]
//! struct PendingScore(PushHandle);
//!
//! fn ask(mut commands: Commands) {
//!     let handle = commands.push(PushMessage::json("room:lobby", "get_score", &()).unwrap());
//!     commands.insert_resource(PendingScore(handle));
//! }
//!
//! fn answer(pending: Option<Res<PendingScore>>, mut replies: MessageReader<PushReplied>) {
//!     let Some(pending) = pending else { return };
//!     for r in replies.read().filter(|r| r.handle == pending.0) {
//!         match &r.outcome {
//!             PushOutcome::Ok(p) => info!("score: {:?}", p.decode::<u32>()),
//!             other => warn!("no score: {other:?}"), // Error, Timeout or Dropped(reason)
//!         }
//!     }
//! }
//! # App::new().add_systems(Startup, ask).add_systems(Update, answer);
//! ```
//!
//! Lifecycle events are `EntityEvent`s, so an observer on the channel entity sees them:
//!
//! ```no_run
//! use bevy::prelude::*;
//! use bevy_phoenix_channels::prelude::*;
//!
//! fn join(mut commands: Commands) {
//!     commands
//!         .join_channel(PhoenixChannel::new("private:vault").with_payload(&serde_json::json!({"password": "secret"})).unwrap())
//!         .observe(|e: On<ChannelJoined>| info!("in {}", e.topic))
//!         .observe(|e: On<ChannelErrored>, mut commands: Commands| {
//!             if let ChannelError::JoinRefused(reason) = &e.reason {
//!                 warn!("refused: {reason:?}; giving up");
//!                 commands.entity(e.entity).despawn(); // despawning leaves and stops rejoins
//!             }
//!         });
//! }
//! # App::new().add_systems(Startup, join);
//! ```
//!
//! Several servers at once: spawn more sockets and name them on channels and pushes.
//!
//! ```no_run
//! use bevy::prelude::*;
//! use bevy_phoenix_channels::prelude::*;
//!
//! fn setup(mut commands: Commands) {
//!     let config = PhoenixSocketConfig::new("wss://match.example.com/socket")
//!         .with(|s| s.with_auth_token_fn(|| Some("fresh-token".into())));
//!     let matches = commands.spawn(PhoenixSocket::new(config)).id();
//!     commands.join_channel(PhoenixChannel::new("match:42").on_socket(matches));
//!     commands.push(PushMessage::json("match:42", "ready", &true).unwrap().on_socket(matches));
//! }
//! # App::new().add_plugins(PhoenixChannelsPlugin::default()).add_systems(Startup, setup);
//! ```
//!
//! ## Layers
//!
//! - [`protocol`]: the sans-IO state machine (no Bevy, no I/O, time passed in).
//! - [`transport`]: the WebSocket (native nonblocking tungstenite; browser WebSocket on wasm32).
//! - [`plugin`]: the Bevy plugin that glues them to the ECS.

pub mod plugin;
pub mod protocol;
pub mod transport;

/// `serde_json`, re-exported for `json!` and `Value` in your payloads.
pub use serde_json;

/// Everything a game needs, in one import.
pub mod prelude {
    pub use crate::plugin::*;
    pub use crate::protocol::{
        Backoff, ChannelError, ChannelState, CloseReason, ConnectionState, DisconnectReason,
        DropReason, OutPayload, Payload, PresenceChange, PresenceEntry, PresenceEvent,
        PresenceMeta, PresenceState, PushOptions, PushOutcome, SocketConfig,
    };
}

#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
