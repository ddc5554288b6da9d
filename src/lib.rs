//! # bevy_phoenix_channels
//!
//! A Phoenix Channels (V2) client for Bevy: join topics, push game state, and read replies,
//! broadcasts and presence as ordinary Bevy data, natively and on wasm32.
//!
//! ## Guide
//!
//! Add the plugin with the socket endpoint, spawn a [`PhoenixChannel`](plugin::PhoenixChannel)
//! entity to join a topic, and read what arrives:
//!
//! ```no_run
//! use bevy::prelude::*;
//! use bevy_phoenix_channels::prelude::*;
//!
//! #[derive(serde::Serialize, serde::Deserialize)]
//! struct Move { x: f32, y: f32 }
//!
//! fn join(mut commands: Commands) {
//!     commands.join_channel(PhoenixChannel::new("room:lobby").with_payload(&serde_json::json!({"user_id": "alice"})));
//! }
//!
//! fn send_moves(mut commands: Commands) {
//!     // 60 Hz state: fire-and-forget (the server handler answers `{:noreply, socket}`), no timers.
//!     let msg = PushMessage::json("room:lobby", "move", &Move { x: 1.0, y: 2.0 }).unwrap();
//!     commands.push(msg.fire_and_forget());
//! }
//!
//! fn read_moves(mut inbox: MessageReader<ChannelMessage>) {
//!     for msg in inbox.read().filter(|m| &*m.event == "move") {
//!         if let Ok(m) = msg.decode::<Move>() {
//!             info!("someone moved to {}, {}", m.x, m.y);
//!         }
//!     }
//! }
//!
//! App::new()
//!     .add_plugins((MinimalPlugins, PhoenixChannelsPlugin::new("ws://127.0.0.1:4000/socket")))
//!     .add_systems(Startup, join)
//!     .add_systems(Update, (send_moves.run_if(phoenix_connected), read_moves))
//!     .run();
//! ```
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
//!         .join_channel(PhoenixChannel::new("private:vault").with_payload(&serde_json::json!({"password": "secret"})))
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
