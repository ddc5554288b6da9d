//! The sans-IO Phoenix Channels V2 client core: no Bevy, no sockets, no clock.
//!
//! | file | owns |
//! |---|---|
//! | [`wire`] | the V2 frame format, text and binary, both ways |
//! | [`payload`] | payloads in (zero-copy views of received frames) and out; ids |
//! | [`config`] | endpoint, params and token providers, timeouts, backoff tables |
//! | [`socket`] | the state machine: connection, heartbeat, reconnect, channels, pushes |
//! | [`presence`] | Phoenix Presence: pure `sync_state` / `sync_diff` and a per-channel tracker |
//!
//! Drive a [`Socket`] like quinn-proto's `Connection`: give it inputs with the current time,
//! then drain `poll_output` (frames and connect/close requests, in order), `poll_event` (what
//! the app should hear) and `poll_timeout` (when to call `handle_timeout` next). Time is a
//! [`web_time::Instant`] you pass in, so tests jump it forward without sleeping and the core
//! works on wasm32.
//!
//! ```
//! use bevy_phoenix_channels::protocol::*;
//! use web_time::Instant;
//!
//! let now = Instant::now();
//! let mut socket = Socket::new(SocketConfig::new("ws://127.0.0.1:4000/socket"));
//! socket.connect(now);
//! let Some(Output::Connect(req)) = socket.poll_output() else { unreachable!() };
//! assert_eq!(req.url, "ws://127.0.0.1:4000/socket/websocket?vsn=2.0.0");
//!
//! let lobby = socket.join(now, "room:lobby", OutPayload::empty(), JoinOptions::default());
//! socket.handle_open(now); // the transport opened: the join goes out
//! let Some(Output::Send(Transmit::Text(join))) = socket.poll_output() else { unreachable!() };
//! assert_eq!(join, r#"["1","1","room:lobby","phx_join",{}]"#);
//!
//! socket.handle_text(now, r#"["1","1","room:lobby","phx_reply",{"status":"ok","response":{}}]"#);
//! let push = socket.push(now, lobby, "shout", OutPayload::json(&"hi").unwrap(), PushOptions::default());
//! socket.handle_text(now, r#"["1","2","room:lobby","phx_reply",{"status":"ok","response":{"n":1}}]"#);
//! let reply = std::iter::from_fn(|| socket.poll_event()).find_map(|e| match e {
//!     Event::Reply(r) if r.push == push => Some(r.outcome),
//!     _ => None,
//! });
//! assert!(matches!(reply, Some(PushOutcome::Ok(p)) if p.json() == Some(r#"{"n":1}"#)));
//! ```

pub mod config;
pub mod payload;
pub mod presence;
pub mod socket;
pub mod wire;

pub use config::{Backoff, Params, SocketConfig, TokenProvider};
pub use payload::{ChannelId, FrameText, OutPayload, Payload, PayloadError, PushId, Topic};
pub use presence::{PresenceChange, PresenceEntry, PresenceEvent, PresenceMeta, PresenceState};
pub use socket::{
    ChannelError, ChannelInfo, ChannelState, CloseReason, ConnectRequest, ConnectionState,
    DisconnectReason, DropReason, Event, EventName, InboundMessage, JoinOptions, Output,
    PushOptions, PushOutcome, PushReply, Socket, SocketFootprint, SocketStats, TransportClosed,
};
pub use wire::{DecodeError, EncodeError};

/// A WebSocket message the core wants sent, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transmit {
    /// A text frame (JSON array, V2 serializer).
    Text(String),
    /// A binary frame (V2 binary serializer, kind 0 push).
    Binary(Vec<u8>),
}

impl Transmit {
    /// The frame's payload length in bytes.
    pub fn len(&self) -> usize {
        match self {
            Transmit::Text(s) => s.len(),
            Transmit::Binary(b) => b.len(),
        }
    }

    /// True for an empty payload.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
