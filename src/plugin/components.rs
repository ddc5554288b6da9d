//! ECS data: sockets and channels are entities.
//!
//! A socket is an entity with [`PhoenixSocket`] (and [`SocketStatus`]). A channel is an entity
//! with [`PhoenixChannel`]: spawn it to join, despawn it to leave. Its [`ChannelStatus`] and,
//! for presence channels, [`ChannelPresence`] are kept up to date by the plugin.

use std::sync::Arc;
use std::time::Duration;

use bevy::platform::collections::HashMap;
use bevy::prelude::*;

use crate::protocol::{
    ChannelId, ChannelState, ConnectionState, OutPayload, PresenceState, Socket, SocketConfig,
    SocketStats,
};
use crate::transport::{
    BuiltinConnector, DEFAULT_CONNECT_TIMEOUT, DEFAULT_MAX_FRAME_SIZE, DEFAULT_READ_BUFFER,
    Headers, PhoenixConnector, TlsConfig,
};

/// Everything needed to run one socket: the protocol settings plus transport limits.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct PhoenixSocketConfig {
    /// Protocol settings: endpoint, params and token providers, timeouts, backoff, buffers.
    pub socket: SocketConfig,
    /// Largest incoming frame accepted, in bytes (16 MiB). A larger frame closes the
    /// connection with an error, and the socket reconnects.
    pub max_frame_size: usize,
    /// Bound on DNS + TCP + TLS + WebSocket upgrade (10 s; native only).
    pub connect_timeout: Duration,
    /// Connect as soon as the socket entity exists (default true).
    pub auto_connect: bool,
    /// At most this many frames are read per socket per Bevy frame (8192), so a burst from the
    /// server spreads over a few frames instead of stalling one; the rest wait in the socket.
    pub max_frames_per_update: usize,
    /// Size of the buffers the native built-in transport reads frames into (16 KiB). A
    /// received message is a view of its buffer, so each open connection holds one, and a
    /// message kept alive keeps its buffer. For thousands of sockets in one process (a swarm of
    /// bots), 1 KiB saves about 15 KiB per socket; a burst then takes more reads. See
    /// [`ConnectRequest::read_buffer`](crate::transport::ConnectRequest::read_buffer).
    pub read_buffer: usize,
    /// Extra TLS trust roots for `wss://` (native, `tls` feature).
    pub tls: Option<TlsConfig>,
    /// Extra HTTP headers for the WebSocket upgrade (native only: browsers cannot set them).
    /// Sent on every connect and reconnect; `Debug` shows their names, not their values.
    pub headers: Headers,
    /// What opens this socket's connections, once per connect and reconnect: the built-in
    /// transport ([`BuiltinConnector`]) unless set with [`with_transport`](Self::with_transport).
    pub transport: Arc<dyn PhoenixConnector>,
}

impl PhoenixSocketConfig {
    /// Defaults for `endpoint`, e.g. `ws://127.0.0.1:4000/socket`.
    pub fn new(endpoint: impl Into<String>) -> Self {
        PhoenixSocketConfig::from(SocketConfig::new(endpoint))
    }

    /// Changes the protocol settings with a closure, e.g.
    /// `.with(|s| s.with_heartbeat(Duration::from_secs(5)))`.
    pub fn with(mut self, f: impl FnOnce(SocketConfig) -> SocketConfig) -> Self {
        self.socket = f(self.socket);
        self
    }

    /// Sets the largest incoming frame.
    pub fn with_max_frame_size(mut self, bytes: usize) -> Self {
        self.max_frame_size = bytes;
        self
    }

    /// Sets the connect timeout.
    pub fn with_connect_timeout(mut self, t: Duration) -> Self {
        self.connect_timeout = t;
        self
    }

    /// Sets how many frames are read per socket per Bevy frame.
    pub fn with_max_frames_per_update(mut self, n: usize) -> Self {
        self.max_frames_per_update = n.max(1);
        self
    }

    /// Sets the size of the native transport's read buffers (at least 64 bytes).
    pub fn with_read_buffer(mut self, bytes: usize) -> Self {
        self.read_buffer = bytes.max(64);
        self
    }

    /// Whether to connect as soon as the socket entity exists.
    pub fn with_auto_connect(mut self, yes: bool) -> Self {
        self.auto_connect = yes;
        self
    }

    /// Adds an HTTP header to the WebSocket upgrade request (native only), e.g. an
    /// `Authorization` a proxy in front of Phoenix checks. Phoenix itself reads connect params
    /// and the auth token, not headers (unless the endpoint declares `connect_info`).
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.0.push((name.into(), value.into()));
        self
    }

    /// Extra TLS trust for `wss://`.
    pub fn with_tls(mut self, tls: TlsConfig) -> Self {
        self.tls = Some(tls);
        self
    }

    /// Opens this socket's connections with `connector` instead of the built-in transport: the
    /// `ewebsock` one (feature `ewebsock`), or your own [`PhoenixTransport`](crate::transport::PhoenixTransport)
    /// (a test double, a relay, a platform socket). Every connect and reconnect calls it.
    ///
    /// ```
    /// use bevy_phoenix_channels::prelude::*;
    /// use bevy_phoenix_channels::transport::{BuiltinConnector, ConnectRequest, NetworkWaker, Transport};
    ///
    /// // A closure is a connector too: here one that logs, then opens the built-in transport.
    /// // (Not the query: connect params often hold a secret. The auth token is never in the URL.)
    /// let config = PhoenixSocketConfig::new("ws://127.0.0.1:4000/socket").with_transport(
    ///     |req: ConnectRequest, waker: &NetworkWaker| {
    ///         let endpoint = req.url.split('?').next().unwrap_or_default();
    ///         bevy::log::info!("connecting to {endpoint}");
    ///         Box::new(Transport::connect_waking(req, waker))
    ///             as Box<dyn bevy_phoenix_channels::transport::PhoenixTransport>
    ///     },
    /// );
    /// # let _ = BuiltinConnector;
    /// ```
    pub fn with_transport(mut self, connector: impl PhoenixConnector) -> Self {
        self.transport = Arc::new(connector);
        self
    }
}

impl From<SocketConfig> for PhoenixSocketConfig {
    fn from(socket: SocketConfig) -> Self {
        PhoenixSocketConfig {
            socket,
            max_frame_size: DEFAULT_MAX_FRAME_SIZE,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            auto_connect: true,
            max_frames_per_update: 8192,
            read_buffer: DEFAULT_READ_BUFFER,
            tls: None,
            headers: Headers::default(),
            transport: Arc::new(BuiltinConnector),
        }
    }
}

/// One Phoenix socket (one WebSocket connection). Spawn an entity with it to connect; despawn
/// it to disconnect. Several may coexist (e.g. a lobby server and a match server).
#[derive(Component)]
#[require(SocketStatus)]
pub struct PhoenixSocket {
    pub(crate) core: Socket,
    pub(crate) config: PhoenixSocketConfig,
    pub(crate) started: bool,
    pub(crate) channel_entities: HashMap<ChannelId, Entity>,
    pub(crate) entity_channels: HashMap<Entity, ChannelId>,
    /// Connection failures since the last open (only the first is logged as a warning).
    pub(crate) failures_in_a_row: u32,
    /// Channels that errored and have not joined again (only the first error is a warning).
    pub(crate) errored_channels: bevy::platform::collections::HashSet<ChannelId>,
    /// When the plugin's timer heap visits this socket next (at or before the core's next
    /// timer); `None` when no entry is pending.
    pub(crate) scheduled: Option<web_time::Instant>,
}

impl PhoenixSocket {
    /// A socket for `config` (not connected until the plugin sees it).
    pub fn new(config: impl Into<PhoenixSocketConfig>) -> Self {
        let config = config.into();
        PhoenixSocket {
            core: Socket::new(config.socket.clone()),
            config,
            started: false,
            channel_entities: HashMap::default(),
            entity_channels: HashMap::default(),
            failures_in_a_row: 0,
            errored_channels: Default::default(),
            scheduled: None,
        }
    }

    /// The protocol state machine (read-only: channels, presence, stats).
    pub fn core(&self) -> &Socket {
        &self.core
    }

    /// The connection state.
    pub fn state(&self) -> ConnectionState {
        self.core.connection_state()
    }

    /// Counters (frames and bytes in and out, reconnects, last heartbeat RTT…).
    pub fn stats(&self) -> &SocketStats {
        self.core.stats()
    }

    /// The settings this socket was made with.
    pub fn config(&self) -> &PhoenixSocketConfig {
        &self.config
    }

    /// The channel entity joined to `topic`, if any.
    pub fn channel_entity(&self, topic: &str) -> Option<Entity> {
        let id = self.core.channel_for_topic(topic)?;
        self.channel_entities.get(&id).copied()
    }
}

impl From<&str> for PhoenixSocketConfig {
    fn from(endpoint: &str) -> Self {
        PhoenixSocketConfig::new(endpoint)
    }
}

impl From<String> for PhoenixSocketConfig {
    fn from(endpoint: String) -> Self {
        PhoenixSocketConfig::new(endpoint)
    }
}

/// Marks the socket that messages without an explicit socket go to. The plugin's own socket
/// has it; when there is exactly one socket, it is the default even without the marker.
#[derive(Component, Debug, Default, Clone, Copy)]
pub struct DefaultSocket;

/// A socket's connection state, updated every frame.
#[derive(Component, Debug, Clone, Copy, PartialEq, Eq)]
pub struct SocketStatus(pub ConnectionState);

impl Default for SocketStatus {
    fn default() -> Self {
        SocketStatus(ConnectionState::Disconnected)
    }
}

impl SocketStatus {
    /// True while the WebSocket is open.
    pub fn is_connected(&self) -> bool {
        self.0 == ConnectionState::Open
    }
}

/// A channel. Spawn an entity with it to join `topic`; despawn the entity to leave.
#[derive(Component, Debug, Clone)]
#[require(ChannelStatus)]
pub struct PhoenixChannel {
    /// The topic, e.g. `"room:lobby"`.
    pub topic: String,
    /// The socket entity (`None` = the default socket).
    pub socket: Option<Entity>,
    /// The join payload (sent with every join and rejoin). Changing it on a channel that has
    /// joined (through `Query<&mut PhoenixChannel>`) sets what its next rejoin sends, after a
    /// reconnect or an error: a fresh token, or where the player is now. Changing `topic`,
    /// `socket` or `presence` of a joined channel has no effect; leave and join for that.
    pub payload: OutPayload,
    /// Track Phoenix Presence on this channel (default true): see [`ChannelPresence`].
    pub presence: bool,
}

impl PhoenixChannel {
    /// A channel on the default socket, joined with `{}`.
    pub fn new(topic: impl Into<String>) -> Self {
        PhoenixChannel {
            topic: topic.into(),
            socket: None,
            payload: OutPayload::empty(),
            presence: true,
        }
    }

    /// Joins with this payload (any `Serialize`). Like [`JoinChannel::with_payload`](super::JoinChannel::with_payload),
    /// a value that does not serialize is an error, so a system can use `?`:
    ///
    /// ```
    /// use bevy::prelude::*;
    /// use bevy_phoenix_channels::prelude::*;
    ///
    /// fn join(mut commands: Commands) -> Result {
    ///     commands.join_channel(PhoenixChannel::new("room:lobby").with_payload(&serde_json::json!({"user_id": "ada"}))?);
    ///     Ok(())
    /// }
    /// # App::new().add_systems(Startup, join);
    /// ```
    pub fn with_payload<T: serde::Serialize + ?Sized>(
        mut self,
        payload: &T,
    ) -> Result<Self, crate::protocol::EncodeError> {
        self.payload = OutPayload::json(payload)?;
        Ok(self)
    }

    /// Joins through this socket entity.
    pub fn on_socket(mut self, socket: Entity) -> Self {
        self.socket = Some(socket);
        self
    }

    /// Turns presence tracking off (presence events then arrive as plain messages).
    pub fn without_presence(mut self) -> Self {
        self.presence = false;
        self
    }
}

/// A channel's state, updated by the plugin.
#[derive(Component, Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChannelStatus(pub ChannelState);

impl Default for ChannelStatus {
    fn default() -> Self {
        ChannelStatus(ChannelState::Joining)
    }
}

/// The presence list of a channel, updated on every presence sync.
///
/// It shares its metas with the protocol core's list (a [`PresenceMeta`](crate::protocol::PresenceMeta)
/// is one pointer to data both hold), so a room costs its metas once per socket.
#[derive(Component, Debug, Clone, Default)]
pub struct ChannelPresence {
    /// Key (usually a user id) to its metas.
    pub state: PresenceState,
}

/// Links a channel entity to its socket and protocol channel. Inserted by the plugin.
#[derive(Component, Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChannelLink {
    /// The socket entity.
    pub socket: Entity,
    /// The channel in that socket's protocol core.
    pub id: ChannelId,
}
