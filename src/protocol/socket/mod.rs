//! The Phoenix Channels client state machine: one socket, its channels and pushes.
//!
//! [`Socket`] does no I/O and reads no clock (the quinn-proto model). Feed it what happened
//! (`handle_open`, `handle_text`, `handle_binary`, `handle_closed`, `handle_timeout`) and what
//! the app wants (`connect`, `join`, `push`, `leave`, `disconnect`), each with the current
//! time; then drain [`Socket::poll_output`] (what to do on the wire, in order),
//! [`Socket::poll_event`] (what the app should hear) and read [`Socket::poll_timeout`] (when to
//! call `handle_timeout` next).
//!
//! # Rules it keeps (phoenix.js 1.8.16 unless said; ../shared/phoenix-wire is ground truth)
//! - A fresh ref for every message; a join's ref is its join_ref, so no join_ref is reused.
//! - Channel states: closed, joining, joined, leaving, errored. A join error, a join timeout
//!   (which also sends `phx_leave`) or a server `phx_error` make the channel errored; it
//!   rejoins with the rejoin backoff while the socket is open, and at once when the socket
//!   (re)opens. `phx_close` for the current join_ref closes it for good.
//! - A message whose join_ref is set and is not the channel's current one is stale and
//!   dropped (counted in [`SocketStats::stale_dropped`]); a null join_ref is accepted.
//! - A reply must name its push's topic (phoenix.js `isMember`); one that does not is dropped
//!   (counted in [`SocketStats::unroutable_dropped`]) and the push waits for its own.
//! - Every push ends in exactly one [`PushOutcome`]. A push made while its channel cannot
//!   send waits in the channel's buffer (bounded) and is sent when the join succeeds. A push
//!   made while the *socket* is down, on a channel that had already been joined, belongs to
//!   that old join: when the channel rejoins it is dropped as [`DropReason::Outdated`]
//!   instead of being replayed into a fresh server-side channel (inputs buffered during an
//!   outage are stale for a game). Pushes made before a channel's first join are kept.
//! - Pushes in flight when the connection drops, or when their channel crashes or closes,
//!   can never be answered: they end at once as dropped, not 10 s later as timeouts.
//! - Reply lookup is a hash map on the ref: O(1) however many pushes are in flight.

// One state machine, split by concern; each file adds an `impl Socket` block:
// - this file: the public types, `Socket` and its fields, accessors, the `handle_*` / `poll_*`
//   entry points, and the connection itself (connect, heartbeat, reconnect, teardown);
// - `channel`: channels, join / leave / rejoin, join_ref bookkeeping, closing;
// - `push`: the push table, buffering and flush, timeouts, reply events;
// - `routing`: what an incoming frame means, and acting on it.

mod channel;
mod push;
mod routing;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::fmt;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;
use std::time::Duration;

use web_time::Instant;

use self::channel::Slot;
use self::push::{Push, PushKind, PushState, RefMap};
use self::routing::Frame;
use super::Transmit;
use super::config::{SocketConfig, auth_subprotocols, websocket_url};
use super::payload::{ChannelId, FrameText, OutPayload, Payload, PushId, Topic};
use super::presence::{PresenceEvent, PresenceState, PresenceTracker};
use super::wire::{DecodeError, EncodeError, decode_binary, decode_text, encode_text, names};

/// An event name, shared between every message that carries it.
pub type EventName = Arc<str>;

/// What the adapter must do on the wire, in this order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Open a WebSocket. Any earlier transport has already been told to [`Output::Close`].
    Connect(ConnectRequest),
    /// Send a frame on the open WebSocket.
    Send(Transmit),
    /// Close the WebSocket (code 1000) and ignore every later event from it.
    Close,
}

/// Where and how to open the WebSocket.
#[derive(Clone, PartialEq, Eq)]
pub struct ConnectRequest {
    /// The full URL, `endpoint/websocket?params&vsn=2.0.0`.
    pub url: String,
    /// `Sec-WebSocket-Protocol` values to offer (the auth token, when one is set).
    pub subprotocols: Vec<String>,
}

impl fmt::Debug for ConnectRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The query holds the connect params (often a token) and the subprotocols may hold
        // the auth token: print neither.
        let base = self.url.split('?').next().unwrap_or_default();
        f.debug_struct("ConnectRequest")
            .field("url", &format_args!("{base}?<params redacted>"))
            .field(
                "subprotocols",
                &format_args!("<{} redacted>", self.subprotocols.len()),
            )
            .finish()
    }
}

/// How the transport ended. Passed to [`Socket::handle_closed`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransportClosed {
    /// The WebSocket closed. `code` is `None` when no close frame came (abnormal, 1006).
    Closed {
        /// The close code.
        code: Option<u16>,
        /// The close reason.
        reason: String,
    },
    /// The server refused the upgrade with this HTTP status (403 for a refused connect).
    Refused {
        /// The HTTP status.
        status: u16,
    },
    /// A network, TLS or protocol error.
    Error(String),
}

/// The socket's connection state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConnectionState {
    /// Not connected and not trying (never connected, disconnected, or gave up).
    Disconnected,
    /// A connect attempt is under way.
    Connecting,
    /// The WebSocket is open.
    Open,
    /// Waiting for the reconnect backoff to pass.
    WaitingToReconnect,
}

/// A channel's state (phoenix.js's names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChannelState {
    /// Left, closed by the server, or replaced. Terminal.
    Closed,
    /// Waiting for the socket, or the join was sent and no reply came yet.
    Joining,
    /// Joined: pushes go out at once.
    Joined,
    /// `phx_leave` sent, waiting for its reply.
    Leaving,
    /// The join failed, timed out, or the server channel crashed / the connection dropped:
    /// a rejoin is scheduled.
    Errored,
}

/// Why the connection dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DisconnectReason {
    /// [`Socket::disconnect`] was called.
    Requested,
    /// No heartbeat reply within the heartbeat timeout.
    HeartbeatTimeout,
    /// The WebSocket closed (`code` `None`: no close frame).
    Closed {
        /// The close code.
        code: Option<u16>,
        /// The close reason.
        reason: String,
    },
    /// A transport error.
    Error(String),
}

/// Why a channel became errored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChannelError {
    /// The server refused the join (e.g. `{"reason":"unauthorized"}` or "unmatched topic").
    JoinRefused(Payload),
    /// No join reply within the join timeout.
    JoinTimeout,
    /// The server channel crashed (`phx_error`; Phoenix 1.8 adds `{"reason":"channel_crash"}`).
    Crashed(Payload),
    /// The connection dropped.
    ConnectionLost,
}

/// Why a channel closed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CloseReason {
    /// [`Socket::leave`] finished (reply or timeout, or the socket was down).
    Left,
    /// The server closed it (`phx_close`: `{:stop, ..}` in the channel).
    ServerClosed,
    /// A newer join of the same topic replaced it.
    Replaced,
}

/// How a push ended. Every push gets exactly one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PushOutcome {
    /// The server replied `{:reply, {:ok, response}, socket}`.
    Ok(Payload),
    /// The server replied with an error (including Phoenix's "unmatched topic").
    Error(Payload),
    /// No reply within the push's timeout.
    Timeout,
    /// A fire-and-forget push was handed to the transport.
    Sent,
    /// The push was never sent, or can never be answered.
    Dropped(DropReason),
}

/// Why a push was dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DropReason {
    /// The channel's buffer was full.
    BufferFull,
    /// The channel was left, closed or replaced (or never existed).
    ChannelClosed,
    /// It was buffered while the socket was down and its channel has rejoined since.
    Outdated,
    /// It was sent, and the connection dropped before the reply.
    ConnectionLost,
    /// It was sent, and the server channel crashed before replying.
    ChannelCrashed,
    /// It could not be encoded (a binary header field over 255 bytes).
    Encode(EncodeError),
    /// The transport already held [`SocketConfig::max_send_backlog`] bytes the server had not
    /// taken (a slow or stalled server): it was never sent.
    SendQueueFull,
}

/// A push or broadcast from the server on a channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboundMessage {
    /// The channel it arrived on.
    pub channel: ChannelId,
    /// The channel's topic.
    pub topic: Topic,
    /// The event name.
    pub event: EventName,
    /// The payload, as received.
    pub payload: Payload,
    /// True for a broadcast (null join_ref), false for a push to this client.
    pub broadcast: bool,
}

/// The single outcome of one push.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushReply {
    /// Which push.
    pub push: PushId,
    /// Its channel.
    pub channel: ChannelId,
    /// Its channel's topic.
    pub topic: Topic,
    /// Its event.
    pub event: EventName,
    /// The push's [`PushOptions::tag`].
    pub tag: u64,
    /// How it ended.
    pub outcome: PushOutcome,
}

/// What the app should hear about, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A connect attempt started (`attempt` 1 is the first since the last open).
    Connecting {
        /// Attempt number.
        attempt: u32,
    },
    /// The WebSocket is open; channels are rejoining.
    Connected,
    /// A connect attempt failed before the WebSocket opened (network, TLS).
    ConnectFailed {
        /// What went wrong.
        error: String,
    },
    /// The server refused the connect (HTTP status, 403 when `connect/3` returned `:error`).
    ConnectRefused {
        /// The HTTP status.
        status: u16,
    },
    /// An open connection dropped.
    Disconnected {
        /// Why.
        reason: DisconnectReason,
    },
    /// The next connect attempt is scheduled.
    ReconnectScheduled {
        /// Attempt number it will be.
        attempt: u32,
        /// Delay (jitter included).
        delay: Duration,
    },
    /// `max_reconnect_attempts` failed connects in a row: no more attempts until
    /// [`Socket::connect`].
    GaveUp {
        /// Attempts made.
        attempts: u32,
    },
    /// A channel joined (also after every rejoin).
    Joined {
        /// The channel.
        channel: ChannelId,
        /// Its topic.
        topic: Topic,
        /// The join reply's response.
        response: Payload,
        /// True when this is a rejoin.
        rejoin: bool,
    },
    /// A channel errored; a rejoin follows.
    ChannelErrored {
        /// The channel.
        channel: ChannelId,
        /// Its topic.
        topic: Topic,
        /// Why.
        reason: ChannelError,
    },
    /// An errored channel will rejoin after `delay`.
    RejoinScheduled {
        /// The channel.
        channel: ChannelId,
        /// Its topic.
        topic: Topic,
        /// Delay (jitter included).
        delay: Duration,
    },
    /// A channel closed for good.
    ChannelClosed {
        /// The channel.
        channel: ChannelId,
        /// Its topic.
        topic: Topic,
        /// Why.
        reason: CloseReason,
    },
    /// A server push or broadcast.
    Message(InboundMessage),
    /// A push's outcome.
    Reply(PushReply),
    /// A presence change or sync on a channel.
    Presence {
        /// The channel.
        channel: ChannelId,
        /// Its topic.
        topic: Topic,
        /// What changed.
        event: PresenceEvent,
    },
    /// A frame from the server could not be decoded and was dropped; the socket stays up.
    ProtocolError(DecodeError),
}

/// Options for one push.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PushOptions {
    /// The push timeout (`None` = the socket's `push_timeout`).
    pub timeout: Option<Duration>,
    /// Fire-and-forget: the server handler answers `{:noreply, socket}`. No timer once sent;
    /// the outcome is [`PushOutcome::Sent`] when the frame is handed to the transport (while
    /// buffered it times out like any push).
    pub fire_and_forget: bool,
    /// An opaque value of yours, handed back in [`PushReply::tag`] (the Bevy plugin carries
    /// its `PushHandle` here, so no map from push to handle is needed).
    pub tag: u64,
}

impl PushOptions {
    /// A push that waits for a reply for `timeout`.
    pub fn with_timeout(timeout: Duration) -> Self {
        PushOptions {
            timeout: Some(timeout),
            ..PushOptions::default()
        }
    }

    /// A fire-and-forget push.
    pub fn fire_and_forget() -> Self {
        PushOptions {
            fire_and_forget: true,
            ..PushOptions::default()
        }
    }
}

/// Options for one join.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JoinOptions {
    /// Track `presence_state` / `presence_diff` and emit [`Event::Presence`] (default on).
    /// Off: they arrive as ordinary [`Event::Message`]s.
    pub presence: bool,
}

impl Default for JoinOptions {
    fn default() -> Self {
        JoinOptions { presence: true }
    }
}

/// Counters for diagnostics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SocketStats {
    /// Frames received.
    pub frames_in: u64,
    /// Frames sent.
    pub frames_out: u64,
    /// Bytes received (frame payloads).
    pub bytes_in: u64,
    /// Bytes sent (frame payloads).
    pub bytes_out: u64,
    /// Successful opens.
    pub connects: u64,
    /// Opens after the first.
    pub reconnects: u64,
    /// Messages dropped because their join_ref was not the channel's current one.
    pub stale_dropped: u64,
    /// Messages for a topic or ref this socket does not know (refs it never made, topics it
    /// has not joined, a reply naming another topic than its push's).
    pub unroutable_dropped: u64,
    /// Replies to pushes that expected none (fire-and-forget) or had already ended (timed out,
    /// dropped, a replaced channel's leave): expected, and not an error.
    pub ignored_replies: u64,
    /// Frames that could not be decoded.
    pub decode_errors: u64,
    /// Round trip of the last heartbeat.
    pub last_rtt: Option<Duration>,
}

/// How many entries the socket's internal tables hold right now ([`Socket::footprint`]): for
/// soak tests and leak hunting. Every count returns to a small constant when the socket is idle
/// (no pushes in flight, outputs and events drained); only `names` keeps what it learnt, up to a
/// fixed bound (1024 distinct event names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SocketFootprint {
    /// Pushes in the push table (in flight, buffered, joins and leaves awaiting a reply).
    pub pushes: usize,
    /// Entries in the timeout heap (ended pushes are removed lazily, so this can exceed
    /// `pushes`, but it is pruned when it grows past twice `pushes` plus 1024).
    pub deadlines: usize,
    /// Channels that are not closed.
    pub channels: usize,
    /// Channel slots allocated (used and free; slots are reused).
    pub channel_slots: usize,
    /// Entries in the topic index.
    pub topics: usize,
    /// Entries in the join_ref index.
    pub join_refs: usize,
    /// Entries in the channels' push buffers (ended pushes are skipped lazily).
    pub buffered: usize,
    /// Interned event names (bounded).
    pub names: usize,
    /// Outputs not yet taken by [`Socket::poll_output`].
    pub outputs: usize,
    /// Events not yet taken by [`Socket::poll_event`].
    pub events: usize,
}

/// A read-only view of one channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelInfo {
    /// Its topic.
    pub topic: Topic,
    /// Its state.
    pub state: ChannelState,
    /// The join_ref of the current (or last) join attempt.
    pub join_ref: Option<u64>,
    /// Pushes waiting in its buffer.
    pub buffered: usize,
}

// ---------------------------------------------------------------------------------------
// Internals
// ---------------------------------------------------------------------------------------

/// Hasher for topics: FxHash-style, 8 bytes a step (topics are short and not attacker-chosen
/// in a way that matters: the server only echoes topics this client joined).
#[derive(Default, Clone, Copy)]
struct TopicHasher(u64);

impl Hasher for TopicHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        const K: u64 = 0xf135_7aea_2e62_a9c5;
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.0 = (self.0.rotate_left(26) ^ u64::from_le_bytes(w)).wrapping_mul(K);
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut w = [0u8; 8];
            w[..rest.len()].copy_from_slice(rest);
            self.0 = (self.0.rotate_left(26) ^ u64::from_le_bytes(w)).wrapping_mul(K);
        }
    }
    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.0 = (self.0.rotate_left(26) ^ u64::from(i)).wrapping_mul(0xf135_7aea_2e62_a9c5);
    }
}

type TopicMap = HashMap<Topic, ChannelId, BuildHasherDefault<TopicHasher>>;

/// Event names seen so far, shared: a game uses a handful ("move", "shout", "tick"), so each
/// message and push clones an `Arc` instead of allocating its name.
type NameCache = std::collections::HashSet<EventName, BuildHasherDefault<TopicHasher>>;

/// Past this many distinct names, new ones are allocated per message instead of cached.
const NAME_CACHE_MAX: usize = 1024;

/// Longer names are allocated per message, never cached (the binary format's limit, 255).
const NAME_MAX_CACHED_LEN: usize = 255;

/// Slots the event queue keeps once drained (128 bytes each): a burst (a room's
/// `presence_state` is an event per key) must not hold its memory for the socket's life.
const EVENTS_KEPT: usize = 4;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Conn {
    Idle,
    Connecting,
    Open,
}

/// The sans-IO Phoenix Channels client. See the [module docs](self).
pub struct Socket {
    config: SocketConfig,
    rng: u64,
    conn: Conn,
    want_connected: bool,
    /// Failed connect attempts since the last open.
    connect_failures: u32,
    /// Reconnects scheduled since the last open (indexes the backoff table, as phoenix.js).
    reconnect_tries: u32,
    reconnect_at: Option<Instant>,
    heartbeat_at: Option<Instant>,
    heartbeat_pending: Option<(u64, Instant)>,
    next_ref: u64,
    next_channel_seq: u64,
    channels: Vec<Slot>,
    free: Vec<u32>,
    topics: TopicMap,
    /// The current join_ref of every channel that has one, leaving channels included: frames
    /// that carry a join_ref go to the channel that owns it, not to whichever channel now has
    /// the topic (after a duplicate join, Phoenix may close the old one with `phx_close` for its
    /// join_ref before, or instead of, answering its leave).
    join_refs: RefMap<ChannelId>,
    names: NameCache,
    recent_names: [Option<EventName>; 4],
    /// No channel rejoins before this (a lower bound; see `handle_timeout`).
    rejoin_due: Option<Instant>,
    pushes: RefMap<Push>,
    deadlines: BinaryHeap<Reverse<(Instant, u64)>>,
    outputs: VecDeque<Output>,
    events: VecDeque<Event>,
    stats: SocketStats,
    /// Bytes the transport holds unsent: its last report plus every frame emitted since.
    send_backlog: usize,
}

impl fmt::Debug for Socket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Socket")
            .field("state", &self.connection_state())
            .field("channels", &self.topics.len())
            .field("pushes", &self.pushes.len())
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl Socket {
    /// A socket that is not connected yet. Call [`Socket::connect`].
    pub fn new(config: SocketConfig) -> Self {
        let seed = config.rng_seed.unwrap_or_else(clock_seed);
        Socket {
            config,
            rng: seed ^ 0x2545_f491_4f6c_dd1d,
            conn: Conn::Idle,
            want_connected: false,
            connect_failures: 0,
            reconnect_tries: 0,
            reconnect_at: None,
            heartbeat_at: None,
            heartbeat_pending: None,
            next_ref: 0,
            next_channel_seq: 0,
            channels: Vec::new(),
            free: Vec::new(),
            topics: TopicMap::default(),
            join_refs: RefMap::default(),
            names: NameCache::default(),
            recent_names: Default::default(),
            rejoin_due: None,
            pushes: RefMap::default(),
            deadlines: BinaryHeap::new(),
            outputs: VecDeque::new(),
            events: VecDeque::new(),
            stats: SocketStats::default(),
            send_backlog: 0,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &SocketConfig {
        &self.config
    }

    /// Counters.
    pub fn stats(&self) -> &SocketStats {
        &self.stats
    }

    /// The size of every internal table (see [`SocketFootprint`]). Read-only and cheap: it
    /// walks the channel slots, nothing else.
    pub fn footprint(&self) -> SocketFootprint {
        let mut channels = 0;
        let mut buffered = 0;
        for s in &self.channels {
            if let Slot::Used(c) = s {
                channels += 1;
                buffered += c.buffer.len();
            }
        }
        SocketFootprint {
            pushes: self.pushes.len(),
            deadlines: self.deadlines.len(),
            channels,
            channel_slots: self.channels.len(),
            topics: self.topics.len(),
            join_refs: self.join_refs.len(),
            buffered,
            names: self.names.len(),
            outputs: self.outputs.len(),
            events: self.events.len(),
        }
    }

    /// The connection state.
    pub fn connection_state(&self) -> ConnectionState {
        match self.conn {
            Conn::Open => ConnectionState::Open,
            Conn::Connecting => ConnectionState::Connecting,
            Conn::Idle if self.reconnect_at.is_some() => ConnectionState::WaitingToReconnect,
            Conn::Idle => ConnectionState::Disconnected,
        }
    }

    /// True while the WebSocket is open.
    pub fn is_connected(&self) -> bool {
        self.conn == Conn::Open
    }

    /// Pushes waiting for a reply or in a buffer.
    pub fn pending_pushes(&self) -> usize {
        self.pushes.len()
    }

    /// A view of a channel that is not closed yet.
    pub fn channel(&self, id: ChannelId) -> Option<ChannelInfo> {
        self.chan(id).map(|c| ChannelInfo {
            topic: c.topic.clone(),
            state: c.state,
            join_ref: c.join_ref,
            buffered: c.buffered,
        })
    }

    /// The live channel (not leaving, not closed) of a topic.
    pub fn channel_for_topic(&self, topic: &str) -> Option<ChannelId> {
        self.topics.get(topic).copied()
    }

    /// Every channel that is not closed yet, in slot order.
    pub fn channels(&self) -> impl Iterator<Item = ChannelId> + '_ {
        self.channels.iter().filter_map(|s| match s {
            Slot::Used(c) => Some(c.id),
            Slot::Free { .. } => None,
        })
    }

    /// The presence list of a channel (empty until its `presence_state` arrives).
    pub fn presence(&self, id: ChannelId) -> Option<&PresenceState> {
        self.chan(id)?.presence.as_ref().map(PresenceTracker::state)
    }

    /// Replaces the payload sent with the channel's next (re)join, e.g. a fresh token.
    pub fn set_join_payload(&mut self, id: ChannelId, payload: OutPayload) {
        if let Some(c) = self.chan_mut(id) {
            c.join_payload = payload;
        }
    }

    // ----- outputs -------------------------------------------------------------------

    /// The next thing to do on the wire.
    #[must_use]
    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// True when [`Socket::poll_output`] has something.
    pub fn has_outputs(&self) -> bool {
        !self.outputs.is_empty()
    }

    /// True when [`Socket::poll_event`] has something.
    pub fn has_events(&self) -> bool {
        !self.events.is_empty()
    }

    /// The next event for the app.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<Event> {
        let event = self.events.pop_front();
        if event.is_none() {
            self.events.shrink_to(EVENTS_KEPT);
        }
        event
    }

    /// When [`Socket::handle_timeout`] must be called next (`None`: nothing scheduled).
    /// A call before that time is a harmless no-op.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        let mut t = self.reconnect_at;
        match self.heartbeat_pending {
            // No heartbeat goes out while one is pending: only its timeout is a wake-up
            // (heartbeat_at may already be past when the timeout is longer than the interval).
            Some((_, sent)) => t = min_opt(t, Some(sent + self.config.heartbeat_timeout)),
            None => t = min_opt(t, self.heartbeat_at),
        }
        if let Some(Reverse((d, _))) = self.deadlines.peek() {
            t = min_opt(t, Some(*d));
        }
        min_opt(t, self.rejoin_due)
    }

    // ----- commands (join, leave: channel.rs; push: push.rs) -------------------------

    /// Starts connecting (and keeps reconnecting until [`Socket::disconnect`]). Idempotent.
    /// Connect params and the auth token are read now, and again on every reconnect.
    pub fn connect(&mut self, now: Instant) {
        if !self.want_connected {
            // After GaveUp (or disconnect) the app asks again: a full set of attempts.
            self.connect_failures = 0;
            self.reconnect_tries = 0;
        }
        self.want_connected = true;
        if self.conn == Conn::Idle {
            self.reconnect_at = None;
            self.start_connect(now);
        }
    }

    /// Closes the connection and stops reconnecting. Channels stay registered (errored) and
    /// rejoin on the next [`Socket::connect`]; pushes in flight end as dropped.
    pub fn disconnect(&mut self, now: Instant) {
        self.want_connected = false;
        self.reconnect_at = None;
        self.connect_failures = 0;
        self.reconnect_tries = 0;
        match self.conn {
            Conn::Idle => {}
            Conn::Connecting => {
                self.outputs.push_back(Output::Close);
                self.conn = Conn::Idle;
            }
            Conn::Open => {
                self.outputs.push_back(Output::Close);
                self.events.push_back(Event::Disconnected {
                    reason: DisconnectReason::Requested,
                });
                self.teardown(now);
            }
        }
    }

    // ----- transport input -----------------------------------------------------------

    /// The WebSocket opened.
    pub fn handle_open(&mut self, now: Instant) {
        if self.conn != Conn::Connecting {
            return;
        }
        self.conn = Conn::Open;
        self.stats.connects += 1;
        if self.stats.connects > 1 {
            self.stats.reconnects += 1;
        }
        self.connect_failures = 0;
        self.reconnect_tries = 0;
        self.reconnect_at = None;
        self.heartbeat_pending = None;
        self.heartbeat_at = Some(now + self.config.heartbeat_interval);
        self.events.push_back(Event::Connected);
        for id in self.channels_in_join_order(|_| true) {
            // A fresh connection starts every channel's rejoin backoff over (phoenix.js).
            if let Some(c) = self.chan_mut(id) {
                c.rejoin_tries = 0;
            }
            let rejoin = matches!(
                self.chan(id).map(|c| c.state),
                Some(ChannelState::Joining | ChannelState::Errored)
            );
            if rejoin {
                self.send_join(now, id);
            }
        }
    }

    /// The WebSocket closed or failed. Events after [`Output::Close`] must not be passed in.
    pub fn handle_closed(&mut self, now: Instant, how: TransportClosed) {
        match self.conn {
            Conn::Idle => return,
            Conn::Connecting => {
                self.conn = Conn::Idle;
                self.connect_failures += 1;
                self.events.push_back(match how {
                    TransportClosed::Refused { status } => Event::ConnectRefused { status },
                    TransportClosed::Error(error) => Event::ConnectFailed { error },
                    TransportClosed::Closed { code, reason } => Event::ConnectFailed {
                        error: format!("closed before open (code {code:?}) {reason}"),
                    },
                });
            }
            Conn::Open => {
                let reason = match how {
                    TransportClosed::Closed { code, reason } => {
                        DisconnectReason::Closed { code, reason }
                    }
                    TransportClosed::Error(e) => DisconnectReason::Error(e),
                    TransportClosed::Refused { status } => {
                        DisconnectReason::Error(format!("HTTP {status}"))
                    }
                };
                self.events.push_back(Event::Disconnected { reason });
                self.teardown(now);
            }
        }
        self.schedule_reconnect(now);
    }

    /// A text frame arrived.
    pub fn handle_text(&mut self, now: Instant, frame: impl Into<FrameText>) {
        let frame = frame.into();
        self.stats.frames_in += 1;
        self.stats.bytes_in += frame.len() as u64;
        let routed = match decode_text(&frame) {
            Err(e) => Err(e),
            Ok(f) => self.route_text(now, &frame, &f),
        };
        match routed {
            Err(e) => self.protocol_error(e),
            Ok(None) => {}
            Ok(Some(r)) => self.deliver(now, r, Frame::Text(frame)),
        }
    }

    /// A binary frame arrived.
    pub fn handle_binary(&mut self, now: Instant, frame: Vec<u8>) {
        self.stats.frames_in += 1;
        self.stats.bytes_in += frame.len() as u64;
        let routed = match decode_binary(&frame) {
            Err(e) => Err(e),
            Ok(f) => Ok(self.route_binary(now, &frame, &f)),
        };
        match routed {
            Err(e) => self.protocol_error(e),
            Ok(None) => {}
            Ok(Some(r)) => self.deliver(now, r, Frame::Binary(frame)),
        }
    }

    /// The transport's count of bytes it accepted and has not handed to the network yet (a
    /// slow or stalled server makes it grow). Call it before pushing, e.g. once per frame;
    /// pushes that would take it past [`SocketConfig::max_send_backlog`] end as
    /// [`DropReason::SendQueueFull`]. Frames the core emits after the call count on top of it
    /// until the next report. Never calling it leaves the bound unenforced.
    pub fn handle_send_backlog(&mut self, bytes: usize) {
        self.send_backlog = bytes;
    }

    /// Bytes the transport holds unsent, as last reported plus what was emitted since.
    pub fn send_backlog(&self) -> usize {
        self.send_backlog
    }

    /// Fires every timer due at `now`: heartbeat, heartbeat timeout, reconnect, rejoins,
    /// push / join / leave timeouts.
    pub fn handle_timeout(&mut self, now: Instant) {
        // Heartbeat timeout first: a dead connection must not get one more heartbeat.
        if self.conn == Conn::Open
            && let Some((_, sent)) = self.heartbeat_pending
            && now >= sent + self.config.heartbeat_timeout
        {
            self.outputs.push_back(Output::Close);
            self.events.push_back(Event::Disconnected {
                reason: DisconnectReason::HeartbeatTimeout,
            });
            self.teardown(now);
            self.schedule_reconnect(now);
        }
        if self.conn == Conn::Open
            && self.heartbeat_pending.is_none()
            && self.heartbeat_at.is_some_and(|t| now >= t)
        {
            let r = self.make_ref();
            let frame = encode_text(None, Some(r), names::PHOENIX_TOPIC, names::HEARTBEAT, "{}");
            self.transmit(Transmit::Text(frame));
            self.heartbeat_pending = Some((r, now));
            self.heartbeat_at = Some(now + self.config.heartbeat_interval);
        }
        if self.conn == Conn::Idle && self.reconnect_at.is_some_and(|t| now >= t) {
            self.reconnect_at = None;
            self.start_connect(now);
        }
        // Push, join and leave timeouts.
        while let Some(&Reverse((deadline, r))) = self.deadlines.peek() {
            if deadline > now {
                break;
            }
            self.deadlines.pop();
            let live = self
                .pushes
                .get(&r)
                .is_some_and(|p| p.deadline == Some(deadline));
            if live {
                self.expire_push(now, r);
            }
        }
        // Rejoins. `rejoin_due` is a lower bound of every channel's rejoin time (kept so that
        // poll_timeout need not scan the channels every frame); recomputed here.
        if self.rejoin_due.is_some_and(|t| now >= t) {
            let due = self.channels_in_join_order(|c| c.rejoin_at.is_some_and(|t| now >= t));
            // Due while the socket is down: the rejoin happens on open instead.
            if self.conn == Conn::Open {
                for id in due {
                    self.send_join(now, id);
                }
            }
            self.rejoin_due = self
                .channels
                .iter()
                .filter_map(|s| match s {
                    Slot::Used(c) if c.rejoin_at.is_some_and(|t| t > now) => c.rejoin_at,
                    _ => None,
                })
                .min();
        }
    }

    // ----- internals -----------------------------------------------------------------

    /// A shared copy of an event name.
    fn intern(&mut self, name: &str) -> EventName {
        // A long name is no name a game repeats: cached, a hostile server could pin
        // NAME_CACHE_MAX frames' worth of memory (16 GiB at the default frame limit).
        if name.len() > NAME_MAX_CACHED_LEN {
            return Arc::from(name);
        }
        // The few most recent names first: a game repeats the same events, and a short
        // compare beats hashing.
        for n in self.recent_names.iter().flatten() {
            if n.len() == name.len() && **n == *name {
                return n.clone();
            }
        }
        let n = match self.names.get(name) {
            Some(n) => n.clone(),
            None => {
                let n: EventName = Arc::from(name);
                if self.names.len() < NAME_CACHE_MAX {
                    self.names.insert(n.clone());
                }
                n
            }
        };
        self.recent_names.rotate_right(1);
        self.recent_names[0] = Some(n.clone());
        n
    }

    fn make_ref(&mut self) -> u64 {
        self.next_ref += 1;
        self.next_ref
    }

    fn rand_unit(&mut self) -> f64 {
        // SplitMix64.
        self.rng = self.rng.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }

    fn jittered(&mut self, d: Duration) -> Duration {
        let j = self.config.jitter;
        if j <= 0.0 {
            return d;
        }
        let f = 1.0 + j * (2.0 * self.rand_unit() - 1.0);
        d.mul_f64(f.max(0.0))
    }

    fn transmit(&mut self, t: Transmit) {
        let n = t.len();
        self.stats.frames_out += 1;
        self.stats.bytes_out += n as u64;
        self.send_backlog = self.send_backlog.saturating_add(n);
        self.outputs.push_back(Output::Send(t));
    }

    /// Whether a user push of `n` bytes may go out now (see [`SocketConfig::max_send_backlog`]).
    pub(super) fn backlog_allows(&self, n: usize) -> bool {
        self.send_backlog == 0
            || self.send_backlog.saturating_add(n) <= self.config.max_send_backlog
    }

    fn protocol_error(&mut self, e: DecodeError) {
        self.stats.decode_errors += 1;
        self.events.push_back(Event::ProtocolError(e));
    }

    fn start_connect(&mut self, _now: Instant) {
        let params = self.config.params.get();
        let url = websocket_url(&self.config.endpoint, &params);
        let subprotocols = match &self.config.auth_token {
            Some(f) => f().map(|t| auth_subprotocols(&t)).unwrap_or_default(),
            None => Vec::new(),
        };
        self.conn = Conn::Connecting;
        // A new transport holds nothing yet.
        self.send_backlog = 0;
        self.events.push_back(Event::Connecting {
            attempt: self.connect_failures + 1,
        });
        self.outputs
            .push_back(Output::Connect(ConnectRequest { url, subprotocols }));
    }

    fn schedule_reconnect(&mut self, now: Instant) {
        if !self.want_connected || self.conn != Conn::Idle {
            return;
        }
        if let Some(max) = self.config.max_reconnect_attempts
            && self.connect_failures >= max
        {
            self.want_connected = false;
            self.events.push_back(Event::GaveUp {
                attempts: self.connect_failures,
            });
            return;
        }
        self.reconnect_tries += 1;
        let tries = self.reconnect_tries;
        let delay = self.jittered(self.config.reconnect_backoff.delay(tries));
        self.reconnect_at = Some(now + delay);
        self.events.push_back(Event::ReconnectScheduled {
            attempt: self.connect_failures + 1,
            delay,
        });
    }

    /// The open connection is gone: error every channel, end every push in flight.
    fn teardown(&mut self, _now: Instant) {
        self.conn = Conn::Idle;
        self.send_backlog = 0;
        self.heartbeat_at = None;
        self.heartbeat_pending = None;
        // Pushes in flight can never be answered on a new connection.
        let in_flight: Vec<u64> = self
            .pushes
            .iter()
            .filter(|(_, p)| p.state == PushState::InFlight)
            .map(|(r, _)| *r)
            .collect();
        let mut leaving = Vec::new();
        for r in in_flight {
            let Some(p) = self.pushes.remove(&r) else {
                continue;
            };
            match p.kind {
                PushKind::User { event, tag, .. } => {
                    self.reply_event(
                        r,
                        p.channel,
                        event,
                        tag,
                        PushOutcome::Dropped(DropReason::ConnectionLost),
                    );
                }
                PushKind::Join => {
                    if let Some(c) = self.chan_mut(p.channel) {
                        c.join_pending = false;
                    }
                }
                PushKind::Leave { reason } => leaving.push((p.channel, reason)),
            }
        }
        for (id, reason) in leaving {
            self.close_channel(id, reason);
        }
        let ids: Vec<ChannelId> = self.channels().collect();
        for id in ids {
            let Some(c) = self.chan_mut(id) else { continue };
            c.rejoin_at = None;
            match c.state {
                ChannelState::Joined | ChannelState::Joining => {
                    let was_joined_or_sent =
                        c.state == ChannelState::Joined || c.join_ref.is_some();
                    c.state = ChannelState::Errored;
                    let topic = c.topic.clone();
                    if was_joined_or_sent {
                        self.events.push_back(Event::ChannelErrored {
                            channel: id,
                            topic,
                            reason: ChannelError::ConnectionLost,
                        });
                    }
                }
                ChannelState::Leaving => self.close_channel(id, CloseReason::Left),
                ChannelState::Errored | ChannelState::Closed => {}
            }
        }
    }
}

fn min_opt(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, None) => a,
        (None, b) => b,
    }
}

fn clock_seed() -> u64 {
    use std::hash::BuildHasher;
    let t = web_time::SystemTime::now()
        .duration_since(web_time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let local = 0u8;
    std::collections::hash_map::RandomState::new().hash_one((t, &raw const local as usize))
}
