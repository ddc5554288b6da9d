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
//! - Every push ends in exactly one [`PushOutcome`]. A push made while its channel cannot
//!   send waits in the channel's buffer (bounded) and is sent when the join succeeds. A push
//!   made while the *socket* is down, on a channel that had already been joined, belongs to
//!   that old join: when the channel rejoins it is dropped as [`DropReason::Outdated`]
//!   instead of being replayed into a fresh server-side channel (inputs buffered during an
//!   outage are stale for a game). Pushes made before a channel's first join are kept.
//! - Pushes in flight when the connection drops, or when their channel crashes or closes,
//!   can never be answered: they end at once as dropped, not 10 s later as timeouts.
//! - Reply lookup is a hash map on the ref: O(1) however many pushes are in flight.

use std::cmp::Reverse;
use std::collections::hash_map::Entry;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::fmt;
use std::hash::{BuildHasherDefault, Hasher};
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use web_time::Instant;

use super::Transmit;
use super::config::{SocketConfig, auth_subprotocols, websocket_url};
use super::payload::{ChannelId, FrameText, OutPayload, Payload, PushId, Topic};
use super::presence::{PresenceEvent, PresenceState, PresenceTracker};
use super::wire::{
    BinaryFrame, DecodeError, EncodeError, TextFrame, WireRef, decode_binary, decode_reply,
    decode_text, encode_binary_push, encode_text, names,
};

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
    /// Messages for a topic or ref this socket does not know (late replies, old channels).
    pub unroutable_dropped: u64,
    /// Frames that could not be decoded.
    pub decode_errors: u64,
    /// Round trip of the last heartbeat.
    pub last_rtt: Option<Duration>,
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

/// Hasher for our u64 refs: a multiply-shift, no SipHash rounds.
#[derive(Default, Clone, Copy)]
struct RefHasher(u64);

impl Hasher for RefHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(5) ^ u64::from(b)).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n.wrapping_mul(0x9e37_79b9_7f4a_7c15).rotate_left(32);
    }
}

type RefMap<V> = HashMap<u64, V, BuildHasherDefault<RefHasher>>;

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

#[derive(Debug)]
enum PushKind {
    User {
        event: EventName,
        /// Kept while buffered; `None` once sent.
        payload: Option<OutPayload>,
        fire_and_forget: bool,
        tag: u64,
    },
    Join,
    Leave {
        reason: CloseReason,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PushState {
    /// Waiting in the channel buffer. `stale_for` is the join_ref it belongs to when it was
    /// buffered while the socket was down on an already-joined channel.
    Buffered { stale_for: Option<u64> },
    /// Sent; waiting for the reply.
    InFlight,
}

#[derive(Debug)]
struct Push {
    channel: ChannelId,
    kind: PushKind,
    deadline: Option<Instant>,
    state: PushState,
}

#[derive(Debug)]
struct Channel {
    id: ChannelId,
    /// Creation order: joins and rejoins go out in the order the app joined (as phoenix.js
    /// iterates its channel list), whatever slot a channel reuses.
    seq: u64,
    topic: Topic,
    state: ChannelState,
    join_payload: OutPayload,
    join_ref: Option<u64>,
    /// The join push in flight, if any (its ref = join_ref).
    join_pending: bool,
    ever_joined: bool,
    /// Why the channel is leaving (meaningful in [`ChannelState::Leaving`]): the close that
    /// ends the leave carries it, whether the leave reply or the server's `phx_close` comes first.
    leave_reason: CloseReason,
    rejoin_tries: u32,
    rejoin_at: Option<Instant>,
    /// Buffered push ids in order. Entries whose push has ended are skipped lazily.
    buffer: VecDeque<u64>,
    buffered: usize,
    presence: Option<PresenceTracker>,
}

#[derive(Debug)]
enum Slot {
    Free { next_generation: u32 },
    Used(Box<Channel>),
}

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
    presence_scratch: Vec<PresenceEvent>,
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
            presence_scratch: Vec::new(),
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

    /// True when [`Socket::poll_event`] has something.
    pub fn has_events(&self) -> bool {
        !self.events.is_empty()
    }

    /// The next event for the app.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
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

    // ----- commands ------------------------------------------------------------------

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

    /// Joins `topic` with `payload` (JSON). A live channel of the same topic is left first
    /// (closed as [`CloseReason::Replaced`]). The join is sent now if the socket is open,
    /// else when it opens.
    pub fn join(
        &mut self,
        now: Instant,
        topic: &str,
        payload: OutPayload,
        options: JoinOptions,
    ) -> ChannelId {
        if let Some(old) = self.topics.get(topic).copied() {
            self.leave_with(now, old, CloseReason::Replaced);
        }
        let topic: Topic = Arc::from(topic);
        let index = match self.free.pop() {
            Some(i) => i,
            None => {
                self.channels.push(Slot::Free { next_generation: 0 });
                u32::try_from(self.channels.len() - 1).unwrap_or(u32::MAX)
            }
        };
        let generation = match self.channels.get(index as usize) {
            Some(Slot::Free { next_generation }) => *next_generation,
            _ => 0,
        };
        let id = ChannelId { index, generation };
        self.next_channel_seq += 1;
        let channel = Channel {
            id,
            seq: self.next_channel_seq,
            topic: topic.clone(),
            state: ChannelState::Joining,
            join_payload: payload,
            join_ref: None,
            join_pending: false,
            ever_joined: false,
            leave_reason: CloseReason::Left,
            rejoin_tries: 0,
            rejoin_at: None,
            buffer: VecDeque::new(),
            buffered: 0,
            presence: options.presence.then(PresenceTracker::new),
        };
        if let Some(slot) = self.channels.get_mut(index as usize) {
            *slot = Slot::Used(Box::new(channel));
        }
        self.topics.insert(topic, id);
        if self.conn == Conn::Open {
            self.send_join(now, id);
        }
        id
    }

    /// Pushes `event` with `payload` on a channel. The outcome arrives as an
    /// [`Event::Reply`] with the returned id, always exactly once.
    pub fn push(
        &mut self,
        now: Instant,
        channel: ChannelId,
        event: &str,
        payload: OutPayload,
        options: PushOptions,
    ) -> PushId {
        let id = self.make_ref();
        let name = self.intern(event);
        let Some(c) = self.chan(channel) else {
            self.events.push_back(Event::Reply(PushReply {
                push: PushId(id),
                channel,
                topic: Arc::from(""),
                event: name,
                tag: options.tag,
                outcome: PushOutcome::Dropped(DropReason::ChannelClosed),
            }));
            return PushId(id);
        };
        let topic = c.topic.clone();
        let state = c.state;
        let ever_joined = c.ever_joined;
        let join_ref = c.join_ref;
        let buffered = c.buffered;
        // Fire-and-forget pushes sent at once need no timer (and get none: they are not kept);
        // buffered ones do, or they could wait forever for a join that never comes.
        let deadline = Some(now + options.timeout.unwrap_or(self.config.push_timeout));
        let reply = |outcome| {
            Event::Reply(PushReply {
                push: PushId(id),
                channel,
                topic: topic.clone(),
                event: name.clone(),
                tag: options.tag,
                outcome,
            })
        };
        match state {
            ChannelState::Closed | ChannelState::Leaving => {
                self.events
                    .push_back(reply(PushOutcome::Dropped(DropReason::ChannelClosed)));
            }
            ChannelState::Joined if self.conn == Conn::Open => {
                let frame = encode_push(join_ref, id, &topic, event, &payload);
                match frame {
                    Err(e) => self
                        .events
                        .push_back(reply(PushOutcome::Dropped(DropReason::Encode(e)))),
                    Ok(t) => {
                        self.transmit(t);
                        if options.fire_and_forget {
                            self.events.push_back(reply(PushOutcome::Sent));
                        } else {
                            self.insert_push(
                                id,
                                Push {
                                    channel,
                                    kind: PushKind::User {
                                        event: name.clone(),
                                        tag: options.tag,
                                        payload: None,
                                        fire_and_forget: false,
                                    },
                                    deadline,
                                    state: PushState::InFlight,
                                },
                            );
                        }
                    }
                }
            }
            _ => {
                if buffered >= self.config.max_buffered_pushes {
                    self.events
                        .push_back(reply(PushOutcome::Dropped(DropReason::BufferFull)));
                    return PushId(id);
                }
                let stale_for = if self.conn != Conn::Open && ever_joined {
                    join_ref
                } else {
                    None
                };
                self.insert_push(
                    id,
                    Push {
                        channel,
                        kind: PushKind::User {
                            event: name.clone(),
                            tag: options.tag,
                            payload: Some(payload),
                            fire_and_forget: options.fire_and_forget,
                        },
                        deadline,
                        state: PushState::Buffered { stale_for },
                    },
                );
                let pushes = &self.pushes;
                if let Some(Slot::Used(c)) = self.channels.get_mut(channel.index as usize) {
                    c.buffer.push_back(id);
                    c.buffered += 1;
                    // Ids of pushes that timed out while buffered are skipped lazily; compact
                    // now and then so a channel that never joins does not grow without bound.
                    if c.buffer.len() > 2 * c.buffered + 64 {
                        c.buffer.retain(|r| pushes.contains_key(r));
                    }
                }
            }
        }
        PushId(id)
    }

    /// Leaves a channel: `phx_leave`, then [`Event::ChannelClosed`] with
    /// [`CloseReason::Left`] on the reply or the leave timeout (at once if it cannot be sent).
    pub fn leave(&mut self, now: Instant, channel: ChannelId) {
        self.leave_with(now, channel, CloseReason::Left);
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

    /// The channels for which `pick` holds, in the order they were joined.
    fn channels_in_join_order(&self, pick: impl Fn(&Channel) -> bool) -> Vec<ChannelId> {
        let mut found: Vec<(u64, ChannelId)> = self
            .channels
            .iter()
            .filter_map(|s| match s {
                Slot::Used(c) if pick(c) => Some((c.seq, c.id)),
                _ => None,
            })
            .collect();
        found.sort_unstable_by_key(|(seq, _)| *seq);
        found.into_iter().map(|(_, id)| id).collect()
    }

    // ----- internals -----------------------------------------------------------------

    /// A shared copy of an event name.
    fn intern(&mut self, name: &str) -> EventName {
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

    fn chan(&self, id: ChannelId) -> Option<&Channel> {
        match self.channels.get(id.index as usize)? {
            Slot::Used(c) if c.id == id => Some(c),
            _ => None,
        }
    }

    fn chan_mut(&mut self, id: ChannelId) -> Option<&mut Channel> {
        match self.channels.get_mut(id.index as usize)? {
            Slot::Used(c) if c.id == id => Some(c),
            _ => None,
        }
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
        self.stats.frames_out += 1;
        self.stats.bytes_out += match &t {
            Transmit::Text(s) => s.len(),
            Transmit::Binary(b) => b.len(),
        } as u64;
        self.outputs.push_back(Output::Send(t));
    }

    fn insert_push(&mut self, r: u64, push: Push) {
        if let Some(d) = push.deadline {
            // Answered pushes leave their deadline behind (removed lazily when it passes).
            // When those outnumber the live ones, drop them all at once: amortized O(1), and
            // the heap stays proportional to what is really in flight.
            if self.deadlines.len() > 2 * self.pushes.len() + 1024 {
                let pushes = &self.pushes;
                self.deadlines.retain(|Reverse((d, r))| {
                    pushes.get(r).is_some_and(|p| p.deadline == Some(*d))
                });
            }
            self.deadlines.push(Reverse((d, r)));
        }
        self.pushes.insert(r, push);
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

    fn send_join(&mut self, now: Instant, id: ChannelId) {
        let r = self.make_ref();
        let timeout = self.config.join_timeout;
        let Some(c) = self.chan_mut(id) else { return };
        // A join still pending (e.g. a rejoin racing a timeout) is superseded.
        let old = c.join_ref.filter(|_| c.join_pending);
        let previous = c.join_ref.replace(r);
        c.join_pending = true;
        c.state = ChannelState::Joining;
        c.rejoin_at = None;
        if let Some(p) = c.presence.as_mut() {
            p.set_join_ref(&r.to_string());
        }
        let frame = match &c.join_payload {
            OutPayload::Json(j) => encode_text(Some(r), Some(r), &c.topic, names::JOIN, j.get()),
            OutPayload::Binary(_) => encode_text(Some(r), Some(r), &c.topic, names::JOIN, "{}"),
        };
        if let Some(old) = old {
            self.pushes.remove(&old);
        }
        if let Some(p) = previous {
            self.join_refs.remove(&p);
        }
        self.join_refs.insert(r, id);
        self.transmit(Transmit::Text(frame));
        self.insert_push(
            r,
            Push {
                channel: id,
                kind: PushKind::Join,
                deadline: Some(now + timeout),
                state: PushState::InFlight,
            },
        );
    }

    fn schedule_rejoin(&mut self, now: Instant, id: ChannelId) {
        let Some(c) = self.chan_mut(id) else { return };
        c.rejoin_tries += 1;
        let tries = c.rejoin_tries;
        let base = self.config.rejoin_backoff.delay(tries);
        let delay = self.jittered(base);
        let Some(c) = self.chan_mut(id) else { return };
        c.rejoin_at = Some(now + delay);
        let topic = c.topic.clone();
        self.rejoin_due = min_opt(self.rejoin_due, Some(now + delay));
        self.events.push_back(Event::RejoinScheduled {
            channel: id,
            topic,
            delay,
        });
    }

    fn leave_with(&mut self, now: Instant, id: ChannelId, reason: CloseReason) {
        let Some(c) = self.chan_mut(id) else { return };
        let state = c.state;
        let topic = c.topic.clone();
        let join_ref = c.join_ref;
        if self.topics.get(&topic) == Some(&id) {
            self.topics.remove(&topic);
        }
        self.drop_buffered(id, DropReason::ChannelClosed);
        let can_send = self.conn == Conn::Open
            && matches!(state, ChannelState::Joined | ChannelState::Joining)
            && join_ref.is_some();
        if state == ChannelState::Leaving {
            return;
        }
        if !can_send {
            self.close_channel(id, reason);
            return;
        }
        // The pending join, if any, is superseded by the leave.
        if let Some(c) = self.chan_mut(id)
            && c.join_pending
            && let Some(j) = c.join_ref
        {
            c.join_pending = false;
            self.pushes.remove(&j);
        }
        let r = self.make_ref();
        let timeout = self.config.leave_timeout;
        if let Some(c) = self.chan_mut(id) {
            c.state = ChannelState::Leaving;
            c.leave_reason = reason.clone();
            c.rejoin_at = None;
        }
        self.transmit(Transmit::Text(encode_text(
            join_ref,
            Some(r),
            &topic,
            names::LEAVE,
            "{}",
        )));
        self.insert_push(
            r,
            Push {
                channel: id,
                kind: PushKind::Leave { reason },
                deadline: Some(now + timeout),
                state: PushState::InFlight,
            },
        );
    }

    /// Ends every buffered push of a channel with `reason`.
    fn drop_buffered(&mut self, id: ChannelId, reason: DropReason) {
        let Some(c) = self.chan_mut(id) else { return };
        let ids: Vec<u64> = c.buffer.drain(..).collect();
        c.buffered = 0;
        for r in ids {
            if let Some(p) = self.pushes.remove(&r)
                && let PushKind::User { event, tag, .. } = p.kind
            {
                self.reply_event(r, id, event, tag, PushOutcome::Dropped(reason.clone()));
            }
        }
    }

    /// Ends every in-flight user push of a channel with `reason`.
    fn drop_in_flight(&mut self, id: ChannelId, reason: DropReason) {
        let rs: Vec<u64> = self
            .pushes
            .iter()
            .filter(|(_, p)| {
                p.channel == id
                    && p.state == PushState::InFlight
                    && matches!(p.kind, PushKind::User { .. })
            })
            .map(|(r, _)| *r)
            .collect();
        for r in rs {
            if let Some(p) = self.pushes.remove(&r)
                && let PushKind::User { event, tag, .. } = p.kind
            {
                self.reply_event(r, id, event, tag, PushOutcome::Dropped(reason.clone()));
            }
        }
    }

    fn close_channel(&mut self, id: ChannelId, reason: CloseReason) {
        self.drop_buffered(id, DropReason::ChannelClosed);
        self.drop_in_flight(id, DropReason::ChannelClosed);
        // Any join or leave of this channel still in the table is now meaningless.
        self.pushes.retain(|_, p| p.channel != id);
        let Some(slot) = self.channels.get_mut(id.index as usize) else {
            return;
        };
        let Slot::Used(c) = slot else { return };
        if c.id != id {
            return;
        }
        let topic = c.topic.clone();
        if let Some(jr) = c.join_ref
            && self.join_refs.get(&jr) == Some(&id)
        {
            self.join_refs.remove(&jr);
        }
        *slot = Slot::Free {
            next_generation: id.generation.wrapping_add(1),
        };
        self.free.push(id.index);
        if self.topics.get(&topic) == Some(&id) {
            self.topics.remove(&topic);
        }
        self.events.push_back(Event::ChannelClosed {
            channel: id,
            topic,
            reason,
        });
    }

    fn reply_event(
        &mut self,
        r: u64,
        channel: ChannelId,
        event: EventName,
        tag: u64,
        outcome: PushOutcome,
    ) {
        let topic = self
            .chan(channel)
            .map(|c| c.topic.clone())
            .unwrap_or_else(|| Arc::from(""));
        self.events.push_back(Event::Reply(PushReply {
            push: PushId(r),
            channel,
            topic,
            event,
            tag,
            outcome,
        }));
    }

    fn expire_push(&mut self, now: Instant, r: u64) {
        let Some(p) = self.pushes.remove(&r) else {
            return;
        };
        match p.kind {
            PushKind::User { event, tag, .. } => {
                if let PushState::Buffered { .. } = p.state
                    && let Some(c) = self.chan_mut(p.channel)
                {
                    c.buffered = c.buffered.saturating_sub(1);
                }
                self.reply_event(r, p.channel, event, tag, PushOutcome::Timeout);
            }
            PushKind::Join => {
                let Some(c) = self.chan_mut(p.channel) else {
                    return;
                };
                if c.join_ref != Some(r) || c.state != ChannelState::Joining {
                    return;
                }
                c.join_pending = false;
                c.state = ChannelState::Errored;
                let topic = c.topic.clone();
                // phoenix.js sends phx_leave so the server drops a join it may still finish.
                if self.conn == Conn::Open {
                    let lr = self.make_ref();
                    self.transmit(Transmit::Text(encode_text(
                        Some(r),
                        Some(lr),
                        &topic,
                        names::LEAVE,
                        "{}",
                    )));
                }
                self.events.push_back(Event::ChannelErrored {
                    channel: p.channel,
                    topic,
                    reason: ChannelError::JoinTimeout,
                });
                if self.conn == Conn::Open {
                    self.schedule_rejoin(now, p.channel);
                }
            }
            PushKind::Leave { reason } => self.close_channel(p.channel, reason),
        }
    }

    // ----- routing -------------------------------------------------------------------

    fn route_text(
        &mut self,
        now: Instant,
        base: &str,
        f: &TextFrame<'_>,
    ) -> Result<Option<Route>, DecodeError> {
        let base = base.as_bytes();
        if f.event == names::REPLY {
            let reply = decode_reply(f.payload)?;
            let ok = reply.status == "ok";
            let span = span_in(base, reply.response.get().as_bytes());
            return Ok(self.route_reply(now, f.msg_ref.as_ref(), &f.topic, ok, span));
        }
        let span = span_in(base, f.payload.get().as_bytes());
        Ok(self.route_message(f.join_ref.as_ref(), &f.topic, &f.event, span))
    }

    fn route_binary(&mut self, now: Instant, base: &[u8], f: &BinaryFrame<'_>) -> Option<Route> {
        let span = span_in(base, f.payload());
        match *f {
            BinaryFrame::Reply {
                msg_ref,
                topic,
                status,
                ..
            } => {
                let r = WireRef::Str(msg_ref.into());
                self.route_reply(now, Some(&r), topic, status == "ok", span)
            }
            BinaryFrame::Push {
                join_ref,
                topic,
                event,
                ..
            } => {
                let jr = (!join_ref.is_empty()).then(|| WireRef::Str(join_ref.into()));
                self.route_message(jr.as_ref(), topic, event, span)
            }
            BinaryFrame::Broadcast { topic, event, .. } => {
                self.route_message(None, topic, event, span)
            }
        }
    }

    fn route_reply(
        &mut self,
        now: Instant,
        msg_ref: Option<&WireRef<'_>>,
        topic: &str,
        ok: bool,
        span: Range<usize>,
    ) -> Option<Route> {
        let Some(r) = msg_ref.and_then(WireRef::as_ours) else {
            self.stats.unroutable_dropped += 1;
            return None;
        };
        if topic == names::PHOENIX_TOPIC
            && let Some((hr, sent)) = self.heartbeat_pending
            && hr == r
        {
            self.heartbeat_pending = None;
            self.stats.last_rtt = Some(now.saturating_duration_since(sent));
            return None;
        }
        // Anything else, on "phoenix" too (a channel may join that topic, as in phoenix.js,
        // and Phoenix refuses it with "unmatched topic"), is looked up by its ref.
        let Entry::Occupied(e) = self.pushes.entry(r) else {
            self.stats.unroutable_dropped += 1;
            return None;
        };
        if e.get().state != PushState::InFlight {
            self.stats.unroutable_dropped += 1;
            return None;
        }
        let p = e.remove();
        match p.kind {
            PushKind::User { event, tag, .. } => Some(Route::Reply {
                push: r,
                channel: p.channel,
                event,
                tag,
                ok,
                span,
            }),
            PushKind::Join => {
                let c = self.chan_mut(p.channel)?;
                if c.join_ref != Some(r) {
                    self.stats.stale_dropped += 1;
                    return None;
                }
                c.join_pending = false;
                if ok {
                    c.state = ChannelState::Joined;
                    c.rejoin_tries = 0;
                    let rejoin = c.ever_joined;
                    c.ever_joined = true;
                    Some(Route::JoinOk {
                        channel: p.channel,
                        rejoin,
                        span,
                    })
                } else {
                    c.state = ChannelState::Errored;
                    Some(Route::JoinError {
                        channel: p.channel,
                        span,
                    })
                }
            }
            PushKind::Leave { reason } => {
                self.close_channel(p.channel, reason);
                None
            }
        }
    }

    fn route_message(
        &mut self,
        join_ref: Option<&WireRef<'_>>,
        topic: &str,
        event: &str,
        span: Range<usize>,
    ) -> Option<Route> {
        let id = match join_ref {
            // A join_ref names one join: the channel that owns it, if it has this topic.
            Some(jr) => {
                let owner = jr
                    .as_ours()
                    .and_then(|r| self.join_refs.get(&r).copied())
                    .filter(|id| self.chan(*id).is_some_and(|c| &*c.topic == topic));
                match owner {
                    Some(id) => id,
                    None if self.topics.contains_key(topic) => {
                        self.stats.stale_dropped += 1;
                        return None;
                    }
                    None => {
                        self.stats.unroutable_dropped += 1;
                        return None;
                    }
                }
            }
            // Broadcasts name a topic only: the channel that has it now.
            None => match self.topics.get(topic) {
                Some(&id) => id,
                None => {
                    self.stats.unroutable_dropped += 1;
                    return None;
                }
            },
        };
        let c = self.chan(id)?;
        // A leaving channel only hears how it ends; what else its old join sends is stale
        // (the app has let go of it).
        if c.state == ChannelState::Leaving && !matches!(event, names::ERROR | names::CLOSE) {
            self.stats.stale_dropped += 1;
            return None;
        }
        let has_presence = c.presence.is_some();
        match event {
            // phx_error / phx_close always carry the join_ref (ref = join_ref): without one we
            // cannot tell which join they end, so they are not trusted.
            names::ERROR | names::CLOSE if join_ref.is_none() => {
                self.stats.stale_dropped += 1;
                None
            }
            names::ERROR => Some(Route::Crashed { channel: id, span }),
            names::CLOSE => Some(Route::Closed { channel: id }),
            names::PRESENCE_STATE | names::PRESENCE_DIFF if has_presence => Some(Route::Presence {
                channel: id,
                state: event == names::PRESENCE_STATE,
                span,
            }),
            _ => {
                let topic = c.topic.clone();
                Some(Route::Message {
                    channel: id,
                    topic,
                    event: self.intern(event),
                    broadcast: join_ref.is_none(),
                    span,
                })
            }
        }
    }

    /// Acts on a routed frame; owns the frame so payloads can point into it.
    fn deliver(&mut self, now: Instant, route: Route, frame: Frame) {
        match route {
            Route::Reply {
                push,
                channel,
                event,
                tag,
                ok,
                span,
            } => {
                let payload = frame.into_payload(span);
                let outcome = if ok {
                    PushOutcome::Ok(payload)
                } else {
                    PushOutcome::Error(payload)
                };
                self.reply_event(push, channel, event, tag, outcome);
            }
            Route::Message {
                channel,
                topic,
                event,
                broadcast,
                span,
            } => {
                self.events.push_back(Event::Message(InboundMessage {
                    channel,
                    topic,
                    event,
                    payload: frame.into_payload(span),
                    broadcast,
                }));
            }
            Route::JoinOk {
                channel,
                rejoin,
                span,
            } => {
                let Some(c) = self.chan(channel) else { return };
                let topic = c.topic.clone();
                self.events.push_back(Event::Joined {
                    channel,
                    topic,
                    response: frame.into_payload(span),
                    rejoin,
                });
                self.flush_buffer(channel);
            }
            Route::JoinError { channel, span } => {
                let Some(c) = self.chan(channel) else { return };
                let topic = c.topic.clone();
                self.events.push_back(Event::ChannelErrored {
                    channel,
                    topic,
                    reason: ChannelError::JoinRefused(frame.into_payload(span)),
                });
                self.schedule_rejoin(now, channel);
            }
            Route::Crashed { channel, span } => {
                let Some(c) = self.chan_mut(channel) else {
                    return;
                };
                match c.state {
                    ChannelState::Leaving => {
                        let reason = c.leave_reason.clone();
                        self.close_channel(channel, reason);
                        return;
                    }
                    ChannelState::Closed | ChannelState::Errored => return,
                    ChannelState::Joined | ChannelState::Joining => {}
                }
                c.state = ChannelState::Errored;
                let pending_join = c.join_ref.filter(|_| c.join_pending);
                c.join_pending = false;
                let topic = c.topic.clone();
                if let Some(j) = pending_join {
                    self.pushes.remove(&j);
                }
                self.drop_in_flight(channel, DropReason::ChannelCrashed);
                self.events.push_back(Event::ChannelErrored {
                    channel,
                    topic,
                    reason: ChannelError::Crashed(frame.into_payload(span)),
                });
                self.schedule_rejoin(now, channel);
            }
            Route::Closed { channel } => {
                let reason = match self.chan(channel) {
                    Some(c) if c.state == ChannelState::Leaving => c.leave_reason.clone(),
                    _ => CloseReason::ServerClosed,
                };
                self.close_channel(channel, reason);
            }
            Route::Presence {
                channel,
                state,
                span,
            } => {
                let Frame::Text(text) = &frame else {
                    self.stats.unroutable_dropped += 1;
                    return;
                };
                let json = text.get(span).unwrap_or("null");
                let mut out = std::mem::take(&mut self.presence_scratch);
                let result = match self.chan_mut(channel).and_then(|c| c.presence.as_mut()) {
                    Some(t) if state => t.handle_state(json, &mut out),
                    Some(t) => t.handle_diff(json, &mut out),
                    None => Ok(()),
                };
                if let Err(e) = result {
                    self.protocol_error(DecodeError::Presence(e.to_string()));
                }
                if let Some(topic) = self.chan(channel).map(|c| c.topic.clone()) {
                    for ev in out.drain(..) {
                        self.events.push_back(Event::Presence {
                            channel,
                            topic: topic.clone(),
                            event: ev,
                        });
                    }
                }
                out.clear();
                self.presence_scratch = out;
            }
        }
    }

    /// Sends (or drops as outdated) every buffered push of a channel that just joined.
    fn flush_buffer(&mut self, id: ChannelId) {
        let Some(c) = self.chan_mut(id) else { return };
        let ids: Vec<u64> = c.buffer.drain(..).collect();
        c.buffered = 0;
        let join_ref = c.join_ref;
        let topic = c.topic.clone();
        for r in ids {
            let Some(p) = self.pushes.get_mut(&r) else {
                continue;
            };
            let PushState::Buffered { stale_for } = p.state else {
                continue;
            };
            if stale_for.is_some() && stale_for != join_ref {
                if let Some(p) = self.pushes.remove(&r)
                    && let PushKind::User { event, tag, .. } = p.kind
                {
                    self.reply_event(
                        r,
                        id,
                        event,
                        tag,
                        PushOutcome::Dropped(DropReason::Outdated),
                    );
                }
                continue;
            }
            let PushKind::User {
                event,
                payload,
                fire_and_forget,
                ..
            } = &mut p.kind
            else {
                continue;
            };
            let Some(payload) = payload.take() else {
                continue;
            };
            let frame = encode_push(join_ref, r, &topic, event, &payload);
            let faf = *fire_and_forget;
            match frame {
                Err(e) => {
                    if let Some(p) = self.pushes.remove(&r)
                        && let PushKind::User { event, tag, .. } = p.kind
                    {
                        self.reply_event(
                            r,
                            id,
                            event,
                            tag,
                            PushOutcome::Dropped(DropReason::Encode(e)),
                        );
                    }
                }
                Ok(t) => {
                    self.transmit(t);
                    if faf {
                        if let Some(p) = self.pushes.remove(&r)
                            && let PushKind::User { event, tag, .. } = p.kind
                        {
                            self.reply_event(r, id, event, tag, PushOutcome::Sent);
                        }
                    } else if let Some(p) = self.pushes.get_mut(&r) {
                        p.state = PushState::InFlight;
                    }
                }
            }
        }
    }
}

/// A received frame, owned, so payloads can point into it without a copy.
enum Frame {
    Text(FrameText),
    Binary(Vec<u8>),
}

impl Frame {
    fn into_payload(self, span: Range<usize>) -> Payload {
        match self {
            // A JSON value is never empty: an empty span is a payload that was not in the
            // frame (a reply whose response is null or missing).
            Frame::Text(_) if span.is_empty() => Payload::null(),
            Frame::Text(s) => Payload::in_text(s, span),
            Frame::Binary(b) => Payload::in_binary(b, span),
        }
    }
}

/// What a frame means, decided while it is borrowed; acted on once it is owned.
enum Route {
    Reply {
        push: u64,
        channel: ChannelId,
        event: EventName,
        tag: u64,
        ok: bool,
        span: Range<usize>,
    },
    Message {
        channel: ChannelId,
        topic: Topic,
        event: EventName,
        broadcast: bool,
        span: Range<usize>,
    },
    JoinOk {
        channel: ChannelId,
        rejoin: bool,
        span: Range<usize>,
    },
    JoinError {
        channel: ChannelId,
        span: Range<usize>,
    },
    Crashed {
        channel: ChannelId,
        span: Range<usize>,
    },
    Closed {
        channel: ChannelId,
    },
    Presence {
        channel: ChannelId,
        state: bool,
        span: Range<usize>,
    },
}

/// The byte range of `part` inside `whole` (`part` must be a sub-slice of `whole`).
fn span_in(whole: &[u8], part: &[u8]) -> Range<usize> {
    let start = (part.as_ptr() as usize).wrapping_sub(whole.as_ptr() as usize);
    if start <= whole.len() && part.len() <= whole.len() - start {
        start..start + part.len()
    } else {
        0..0
    }
}

fn encode_push(
    join_ref: Option<u64>,
    r: u64,
    topic: &str,
    event: &str,
    payload: &OutPayload,
) -> Result<Transmit, EncodeError> {
    match payload {
        OutPayload::Json(j) => Ok(Transmit::Text(encode_text(
            join_ref,
            Some(r),
            topic,
            event,
            j.get(),
        ))),
        OutPayload::Binary(b) => {
            let jr = join_ref.map(|j| j.to_string()).unwrap_or_default();
            encode_binary_push(&jr, &r.to_string(), topic, event, b).map(Transmit::Binary)
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
