//! What the app sends in (commands) and reads out (data messages and lifecycle events).
//!
//! Data arrives as Bevy [`Message`]s: [`ChannelMessage`], [`PushReplied`], [`PresenceChanged`].
//! Lifecycle (connected, disconnected, joined, errored, closed…) is both an [`EntityEvent`]
//! on the socket or channel entity, for observers, and a [`Message`], for systems.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bevy::prelude::*;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::protocol::{
    ChannelError, CloseReason, DecodeError, DisconnectReason, EncodeError, OutPayload, Payload,
    PayloadError, PresenceEvent, PushOptions, PushOutcome, Topic,
};

// ----- commands in ----------------------------------------------------------------------

/// Which channel a command is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChannelTarget {
    /// A channel entity.
    Entity(Entity),
    /// A topic on a socket (`None` = the default socket).
    Topic {
        /// The socket entity.
        socket: Option<Entity>,
        /// The topic.
        topic: String,
    },
}

impl From<Entity> for ChannelTarget {
    fn from(e: Entity) -> Self {
        ChannelTarget::Entity(e)
    }
}

impl From<&str> for ChannelTarget {
    fn from(topic: &str) -> Self {
        ChannelTarget::Topic {
            socket: None,
            topic: topic.to_owned(),
        }
    }
}

impl From<&String> for ChannelTarget {
    fn from(topic: &String) -> Self {
        ChannelTarget::from(topic.as_str())
    }
}

impl From<String> for ChannelTarget {
    fn from(topic: String) -> Self {
        ChannelTarget::Topic {
            socket: None,
            topic,
        }
    }
}

/// Correlates a [`PushMessage`] with its [`PushReplied`]. Unique in the process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PushHandle(pub u64);

impl PushHandle {
    /// A fresh handle.
    pub fn next() -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        PushHandle(NEXT.fetch_add(1, Ordering::Relaxed))
    }
}

/// Join a topic: spawns a [`PhoenixChannel`](super::PhoenixChannel) entity. To get the entity
/// at once, spawn the component yourself (or use
/// [`PhoenixCommandsExt::join_channel`](super::PhoenixCommandsExt::join_channel)).
#[derive(Message, Debug, Clone)]
pub struct JoinChannel {
    /// The socket (`None` = the default socket).
    pub socket: Option<Entity>,
    /// The topic.
    pub topic: String,
    /// The join payload.
    pub payload: OutPayload,
}

impl JoinChannel {
    /// Join `topic` on the default socket with `{}`.
    pub fn new(topic: impl Into<String>) -> Self {
        JoinChannel {
            socket: None,
            topic: topic.into(),
            payload: OutPayload::empty(),
        }
    }

    /// With a JSON join payload.
    pub fn with_payload<T: Serialize + ?Sized>(mut self, payload: &T) -> Result<Self, EncodeError> {
        self.payload = OutPayload::json(payload)?;
        Ok(self)
    }
}

/// Push an event on a channel. Its single outcome arrives as a [`PushReplied`] with the same
/// [`PushHandle`].
///
/// The plugin consumes these in [`PostUpdate`] (it drains them, so the payload moves into the
/// protocol core without a copy): other readers of `PushMessage` see none.
#[derive(Message, Debug, Clone)]
pub struct PushMessage {
    /// The channel.
    pub target: ChannelTarget,
    /// The event name.
    pub event: String,
    /// The payload (JSON or binary).
    pub payload: OutPayload,
    /// Timeout and fire-and-forget.
    pub options: PushOptions,
    /// The handle [`PushReplied`] will carry.
    pub handle: PushHandle,
    /// For a fire-and-forget push: also write a [`PushReplied`] with [`PushOutcome::Sent`] when
    /// it leaves (default false: only a push that is dropped reports, so 20 position updates a
    /// second make no messages nobody reads).
    pub report_sent: bool,
}

impl PushMessage {
    /// A push of `payload` to `target` (an entity or a topic).
    pub fn new(
        target: impl Into<ChannelTarget>,
        event: impl Into<String>,
        payload: OutPayload,
    ) -> Self {
        PushMessage {
            target: target.into(),
            event: event.into(),
            payload,
            options: PushOptions::default(),
            handle: PushHandle::next(),
            report_sent: false,
        }
    }

    /// A push of any `Serialize` value as JSON.
    pub fn json<T: Serialize + ?Sized>(
        target: impl Into<ChannelTarget>,
        event: impl Into<String>,
        payload: &T,
    ) -> Result<Self, EncodeError> {
        Ok(PushMessage::new(target, event, OutPayload::json(payload)?))
    }

    /// A push of bytes, sent as a binary frame.
    pub fn binary(
        target: impl Into<ChannelTarget>,
        event: impl Into<String>,
        bytes: impl Into<Vec<u8>>,
    ) -> Self {
        PushMessage::new(target, event, OutPayload::binary(bytes))
    }

    /// With a timeout other than the socket's default.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.options.timeout = Some(timeout);
        self
    }

    /// Fire-and-forget: no reply expected, no timer. Its outcome is [`PushOutcome::Sent`]
    /// once it leaves, which is not reported unless you ask with
    /// [`report_sent`](Self::report_sent); a fire-and-forget push that cannot leave (buffer
    /// full, channel closed, connection lost, ...) still reports its `Dropped` outcome. A
    /// reply the server sends anyway is counted in `SocketStats::ignored_replies`.
    pub fn fire_and_forget(mut self) -> Self {
        self.options.fire_and_forget = true;
        self
    }

    /// Also report the `Sent` outcome of a fire-and-forget push.
    pub fn report_sent(mut self) -> Self {
        self.report_sent = true;
        self
    }

    /// On a given socket (for a topic target).
    pub fn on_socket(mut self, socket: Entity) -> Self {
        if let ChannelTarget::Topic { socket: s, .. } = &mut self.target {
            *s = Some(socket);
        }
        self
    }
}

/// Leave a channel: despawns its entity (which leaves it).
#[derive(Message, Debug, Clone)]
pub struct LeaveChannel {
    /// The channel.
    pub target: ChannelTarget,
}

impl LeaveChannel {
    /// Leave `target` (an entity or a topic on the default socket).
    pub fn new(target: impl Into<ChannelTarget>) -> Self {
        LeaveChannel {
            target: target.into(),
        }
    }
}

/// Connect or disconnect a socket by hand.
#[derive(Message, Debug, Clone, Copy, PartialEq, Eq)]
pub enum SocketCommand {
    /// Connect (and keep reconnecting). `None` = the default socket.
    Connect(Option<Entity>),
    /// Disconnect and stop reconnecting; channels stay and rejoin on the next connect.
    Disconnect(Option<Entity>),
}

// ----- data out -------------------------------------------------------------------------

/// A push or broadcast from the server.
#[derive(Message, Debug, Clone)]
pub struct ChannelMessage {
    /// The socket entity.
    pub socket: Entity,
    /// The channel entity.
    pub channel: Entity,
    /// The topic.
    pub topic: Topic,
    /// The event name.
    pub event: crate::protocol::EventName,
    /// The payload (zero-copy view of the received frame).
    pub payload: Payload,
    /// True for a broadcast, false for a push to this client.
    pub broadcast: bool,
}

impl ChannelMessage {
    /// True when the event is `event` (`msg.is("move")`).
    pub fn is(&self, event: &str) -> bool {
        *self.event == *event
    }

    /// Decodes the JSON payload into your type.
    pub fn decode<T: DeserializeOwned>(&self) -> Result<T, PayloadError> {
        self.payload.decode()
    }
}

/// The single outcome of a [`PushMessage`].
#[derive(Message, Debug, Clone)]
pub struct PushReplied {
    /// The push's handle.
    pub handle: PushHandle,
    /// The socket entity (`Entity::PLACEHOLDER` if the push named no existing socket).
    pub socket: Entity,
    /// The channel entity (`Entity::PLACEHOLDER` if it named no existing channel).
    pub channel: Entity,
    /// The topic.
    pub topic: Topic,
    /// The event pushed.
    pub event: crate::protocol::EventName,
    /// How it ended.
    pub outcome: PushOutcome,
}

impl PushReplied {
    /// True for an ok reply.
    pub fn is_ok(&self) -> bool {
        matches!(self.outcome, PushOutcome::Ok(_))
    }

    /// The response of an ok or error reply.
    pub fn response(&self) -> Option<&Payload> {
        match &self.outcome {
            PushOutcome::Ok(p) | PushOutcome::Error(p) => Some(p),
            _ => None,
        }
    }

    /// Decodes an ok reply's response into your type (`None` for any other outcome).
    pub fn decode_ok<T: DeserializeOwned>(&self) -> Option<Result<T, PayloadError>> {
        match &self.outcome {
            PushOutcome::Ok(p) => Some(p.decode()),
            _ => None,
        }
    }

    /// The ok reply decoded into your type, or why there is none: one `?` or `match` for a
    /// request/response.
    ///
    /// ```
    /// use bevy::prelude::*;
    /// use bevy_phoenix_channels::prelude::*;
    ///
    /// #[derive(Resource)]
    /// struct AskedScore(PushHandle);
    ///
    /// fn score(asked: Res<AskedScore>, mut replies: MessageReader<PushReplied>) -> Result {
    ///     for r in replies.read().filter(|r| r.handle == asked.0) {
    ///         let score: u32 = r.ok_as()?; // a refusal, timeout or drop is an error here
    ///         info!("score {score}");
    ///     }
    ///     Ok(())
    /// }
    /// # App::new().add_systems(Update, score);
    /// ```
    pub fn ok_as<T: DeserializeOwned>(&self) -> Result<T, ReplyError> {
        match &self.outcome {
            PushOutcome::Ok(p) => p.decode().map_err(ReplyError::Decode),
            PushOutcome::Error(p) => Err(ReplyError::Refused(p.clone())),
            PushOutcome::Timeout => Err(ReplyError::Timeout),
            PushOutcome::Dropped(r) => Err(ReplyError::Dropped(r.clone())),
            PushOutcome::Sent => Err(ReplyError::NoReply),
        }
    }
}

/// Why [`PushReplied::ok_as`] has no value.
#[derive(Debug, Clone)]
pub enum ReplyError {
    /// The server answered with an error status; its response.
    Refused(Payload),
    /// No reply within the push timeout.
    Timeout,
    /// The push never got an answer (buffer full, channel closed, connection lost, ...).
    Dropped(crate::protocol::DropReason),
    /// A fire-and-forget push: there is no reply.
    NoReply,
    /// The ok response does not decode into the type asked for.
    Decode(PayloadError),
}

impl std::fmt::Display for ReplyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReplyError::Refused(p) => write!(f, "the server refused: {p:?}"),
            ReplyError::Timeout => write!(f, "no reply in time"),
            ReplyError::Dropped(r) => write!(f, "dropped: {r:?}"),
            ReplyError::NoReply => write!(f, "a fire-and-forget push has no reply"),
            ReplyError::Decode(e) => write!(f, "the reply does not decode: {e}"),
        }
    }
}

impl std::error::Error for ReplyError {}

/// A presence change (join or leave of a key) or a sync on a channel. The full list is in the
/// channel's [`ChannelPresence`](super::ChannelPresence).
#[derive(Message, Debug, Clone)]
pub struct PresenceChanged {
    /// The socket entity.
    pub socket: Entity,
    /// The channel entity.
    pub channel: Entity,
    /// The topic.
    pub topic: Topic,
    /// What changed.
    pub event: PresenceEvent,
}

/// A frame from the server could not be decoded; it was dropped and the socket stays up.
#[derive(Message, Debug, Clone)]
pub struct PhoenixProtocolError {
    /// The socket entity.
    pub socket: Entity,
    /// What was wrong.
    pub error: DecodeError,
}

// ----- lifecycle ------------------------------------------------------------------------

/// The socket connected (WebSocket open; channels are rejoining).
#[derive(Message, EntityEvent, Debug, Clone)]
pub struct SocketConnected {
    /// The socket entity.
    pub entity: Entity,
}

/// An open socket dropped. A reconnect follows unless it was requested.
#[derive(Message, EntityEvent, Debug, Clone)]
pub struct SocketDisconnected {
    /// The socket entity.
    pub entity: Entity,
    /// Why.
    pub reason: DisconnectReason,
}

/// The server refused the connect (HTTP 403 from `connect/3` returning `:error`, a bad token).
/// Distinct from network errors ([`SocketConnectFailed`]). Native only: browsers hide the
/// status, so on the web a refusal is a [`SocketConnectFailed`].
#[derive(Message, EntityEvent, Debug, Clone)]
pub struct SocketConnectRefused {
    /// The socket entity.
    pub entity: Entity,
    /// The HTTP status.
    pub status: u16,
}

/// A connect attempt failed (network, TLS, timeout).
#[derive(Message, EntityEvent, Debug, Clone)]
pub struct SocketConnectFailed {
    /// The socket entity.
    pub entity: Entity,
    /// What went wrong.
    pub error: String,
}

/// A reconnect is scheduled.
#[derive(Message, EntityEvent, Debug, Clone)]
pub struct SocketReconnecting {
    /// The socket entity.
    pub entity: Entity,
    /// The attempt it will be.
    pub attempt: u32,
    /// In how long.
    pub delay: Duration,
}

/// The socket gave up reconnecting (`max_reconnect_attempts`).
#[derive(Message, EntityEvent, Debug, Clone)]
pub struct SocketGaveUp {
    /// The socket entity.
    pub entity: Entity,
    /// Attempts made.
    pub attempts: u32,
}

/// A channel joined (and after every rejoin).
#[derive(Message, EntityEvent, Debug, Clone)]
pub struct ChannelJoined {
    /// The channel entity.
    pub entity: Entity,
    /// The socket entity.
    pub socket: Entity,
    /// The topic.
    pub topic: Topic,
    /// The join reply.
    pub response: Payload,
    /// True for a rejoin.
    pub rejoin: bool,
}

/// A channel errored: join refused, join timeout, server crash or connection lost. It will
/// rejoin; despawn the entity to stop it.
#[derive(Message, EntityEvent, Debug, Clone)]
pub struct ChannelErrored {
    /// The channel entity.
    pub entity: Entity,
    /// The socket entity.
    pub socket: Entity,
    /// The topic.
    pub topic: Topic,
    /// Why.
    pub reason: ChannelError,
}

/// An errored channel will rejoin after `delay`.
#[derive(Message, EntityEvent, Debug, Clone)]
pub struct ChannelRejoining {
    /// The channel entity.
    pub entity: Entity,
    /// The topic.
    pub topic: Topic,
    /// In how long.
    pub delay: Duration,
}

/// A channel closed for good (left, closed by the server, replaced by a newer join). The
/// entity, if it still exists, keeps [`ChannelStatus`](super::ChannelStatus) `Closed`.
#[derive(Message, EntityEvent, Debug, Clone)]
pub struct ChannelClosed {
    /// The channel entity (may be despawned already).
    pub entity: Entity,
    /// The socket entity.
    pub socket: Entity,
    /// The topic.
    pub topic: Topic,
    /// Why.
    pub reason: CloseReason,
}
