//! The channel API: what a Phoenix app writes as `use Phoenix.Channel`. A [`Channel`] value is
//! created per join (like a channel process) and receives `join`, `handle_in`, `handle_info` and
//! `terminate`; a [`ChannelContext`] gives it `push`, `broadcast`, `broadcast_from`, delayed
//! replies, timers and presence. The built-in `echo:*`, `room:*` and `private:*` channels use the
//! same API (see `builtin.rs`). The declared channels ([`Routes`]) are kept here too.
//!
//! Depends on `shared` (pubsub, presence, timers), `handle`, `peer` and `serializer`. It reaches
//! its own connection only through the `Connection` trait (`send_after` delivers through it), so
//! it never depends on the socket process (`conn`), which runs these callbacks, nor on the
//! server.

use std::collections::BTreeMap;
use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value};

use crate::handle::ServerHandle;
use crate::peer::Peer;
use crate::serializer::{self, Payload, Topic};
use crate::shared::{Connection, Shared};

/// The status of a reply (`{:reply, {status, payload}, socket}`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    /// `"ok"`
    Ok,
    /// `"error"`
    Error,
    /// Any other status atom.
    Other(String),
}

impl Status {
    /// The wire text of the status.
    pub fn as_str(&self) -> &str {
        match self {
            Status::Ok => "ok",
            Status::Error => "error",
            Status::Other(s) => s,
        }
    }
}

/// What `join` returns: Phoenix's `{:ok, reply, socket}` or `{:error, reply}`.
#[derive(Debug, Clone, PartialEq)]
pub enum JoinResult {
    /// Joined; the payload is the join reply's response (`{}` for `{:ok, socket}`).
    Ok(Payload),
    /// Refused; the payload is the error reply's response (e.g. `{"reason": "unauthorized"}`).
    Error(Payload),
}

impl JoinResult {
    /// `{:ok, socket}`: joined, reply `{}`.
    pub fn ok() -> Self {
        JoinResult::Ok(Payload::empty())
    }
}

/// What `handle_in` (and `handle_info`) returns.
#[derive(Debug, Clone, PartialEq)]
pub enum HandleResult {
    /// `{:reply, {status, payload}, socket}`. Ignored when returned from `handle_info` (no push to
    /// reply to).
    Reply(Status, Payload),
    /// `{:noreply, socket}`.
    NoReply,
    /// `{:stop, :normal, socket}`: sends `phx_close` only.
    Stop,
    /// `{:stop, :normal, reply, socket}`: the reply, then `phx_close`.
    StopWithReply(Status, Payload),
    /// The handler raised: `phx_error` is sent and the channel is forgotten. A panic in a callback
    /// has the same effect.
    Crash(String),
}

impl HandleResult {
    /// `{:reply, {:ok, payload}, socket}`.
    pub fn ok(payload: impl Into<Payload>) -> Self {
        HandleResult::Reply(Status::Ok, payload.into())
    }
    /// `{:reply, {:error, payload}, socket}`.
    pub fn error(payload: impl Into<Payload>) -> Self {
        HandleResult::Reply(Status::Error, payload.into())
    }
}

/// Why a channel ended (the argument of `terminate`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TerminateReason {
    /// The client sent `phx_leave`.
    Left,
    /// A callback returned [`HandleResult::Stop`] or [`HandleResult::StopWithReply`].
    Stopped,
    /// A callback crashed (returned [`HandleResult::Crash`] or panicked).
    Crashed(String),
    /// The client joined the same topic again; this channel was replaced.
    Replaced,
    /// The websocket closed.
    Closed,
}

/// A channel implementation, declared for a topic pattern with
/// [`ServerBuilder::channel`](crate::ServerBuilder::channel) (Phoenix: `channel "game:*", GameChannel`).
///
/// One value is created per join and lives until leave, stop, crash, rejoin or disconnect, so
/// its fields play the role of socket assigns. Callbacks run on the connection's thread, in
/// order; do not block in them for long (use [`ChannelContext::reply_handle`] and
/// [`ChannelContext::send_after`] for delayed work).
///
/// ```
/// use phoenix_test_server::{Channel, ChannelContext, HandleResult, JoinResult, Payload, TestServer};
/// use serde_json::json;
///
/// #[derive(Default)]
/// struct GameChannel {
///     moves: u64,
/// }
///
/// impl Channel for GameChannel {
///     fn join(&mut self, topic: &str, payload: Payload, ctx: &mut ChannelContext) -> JoinResult {
///         if payload.as_json().and_then(|p| p.get("player")).is_none() {
///             return JoinResult::Error(json!({"reason": "who are you?"}).into());
///         }
///         ctx.send_self(json!("after_join")); // handled after the join reply is sent
///         JoinResult::Ok(json!({"topic": topic}).into())
///     }
///
///     fn handle_in(&mut self, event: &str, payload: Payload, ctx: &mut ChannelContext) -> HandleResult {
///         match event {
///             "move" => {
///                 self.moves += 1;
///                 ctx.broadcast_from("move", payload);
///                 HandleResult::ok(json!({"moves": self.moves}))
///             }
///             _ => HandleResult::Crash(format!("unknown event {event}")),
///         }
///     }
///
///     fn handle_info(&mut self, msg: serde_json::Value, ctx: &mut ChannelContext) -> HandleResult {
///         if msg == "after_join" {
///             ctx.push("welcome", json!({"moves": self.moves}));
///         }
///         HandleResult::NoReply
///     }
/// }
///
/// let server = TestServer::builder().channel("game:*", GameChannel::default).start().unwrap();
/// assert!(server.url().starts_with("ws://127.0.0.1:"));
/// ```
pub trait Channel: Send + 'static {
    /// `join/3`: accept or refuse the join. Work that should follow the join reply (pushes,
    /// presence tracking) goes through [`ChannelContext::send_self`], like Phoenix's
    /// `send(self(), :after_join)`.
    fn join(&mut self, topic: &str, payload: Payload, ctx: &mut ChannelContext) -> JoinResult;

    /// `handle_in/3`: an event pushed by the client. Return [`HandleResult::Crash`] for events you
    /// do not handle (Elixir's FunctionClauseError).
    fn handle_in(
        &mut self,
        event: &str,
        payload: Payload,
        ctx: &mut ChannelContext,
    ) -> HandleResult;

    /// `handle_info/2`: a message from [`ChannelContext::send_self`], [`ChannelContext::send_after`]
    /// or [`ServerHandle::send_info`].
    fn handle_info(&mut self, msg: Value, ctx: &mut ChannelContext) -> HandleResult {
        let _ = (msg, ctx);
        HandleResult::NoReply
    }

    /// `terminate/2`: the channel is going away. Broadcasts still work; pushes to this client
    /// are not delivered once the channel is gone.
    fn terminate(&mut self, reason: &TerminateReason, ctx: &mut ChannelContext) {
        let _ = (reason, ctx);
    }
}

/// What a channel callback can do (Phoenix's `socket` argument plus the `Phoenix.Channel` and
/// `Presence` functions).
pub struct ChannelContext {
    pub(crate) shared: Arc<Shared>,
    pub(crate) conn: Arc<dyn Connection>,
    pub(crate) topic: Arc<str>,
    pub(crate) join_ref: Value,
    pub(crate) chan_id: u64,
    pub(crate) msg_ref: Value,
    pub(crate) infos: Vec<Value>,
}

impl ChannelContext {
    /// The channel's topic.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// The join_ref the server stored for this channel (any JSON type the client used).
    pub fn join_ref(&self) -> &Value {
        &self.join_ref
    }

    /// The socket id (`socket_id` connect param, or a generated `sock:N`).
    pub fn socket_id(&self) -> &str {
        &self.conn.peer().socket_id
    }

    /// The decoded connect params (query string of the websocket URL).
    pub fn params(&self) -> &BTreeMap<String, String> {
        &self.conn.peer().params
    }

    /// The auth token the client sent in `Sec-WebSocket-Protocol`, if any.
    pub fn auth_token(&self) -> Option<&str> {
        self.conn.peer().auth_token.as_deref()
    }

    /// `push/3`: sends `[join_ref, null, topic, event, payload]` (or a kind-0 binary frame) to
    /// this client.
    pub fn push(&mut self, event: &str, payload: impl Into<Payload>) {
        let peer = self.conn.peer();
        let enc = serializer::push(
            peer.ser,
            &self.join_ref,
            &self.topic,
            event,
            &payload.into(),
        );
        peer.send_encoded(enc);
    }

    /// `broadcast!/3`: sends `[null, null, topic, event, payload]` to every subscriber of the
    /// topic on this server, this client included (before this callback's reply).
    pub fn broadcast(&mut self, event: &str, payload: impl Into<Payload>) {
        self.shared
            .pubsub
            .broadcast(&self.topic, event, &payload.into(), None);
    }

    /// `broadcast_from!/3`: like [`broadcast`](Self::broadcast) but not to this channel.
    pub fn broadcast_from(&mut self, event: &str, payload: impl Into<Payload>) {
        self.shared
            .pubsub
            .broadcast(&self.topic, event, &payload.into(), Some(self.chan_id));
    }

    /// `socket_ref/1`: a handle to reply to the push being handled later, from any thread
    /// (return [`HandleResult::NoReply`] now). In `handle_info` the ref is null.
    pub fn reply_handle(&self) -> ReplyHandle {
        ReplyHandle {
            conn: Arc::downgrade(self.conn.peer()),
            topic: self.topic.clone(),
            join_ref: self.join_ref.clone(),
            ref_: self.msg_ref.clone(),
        }
    }

    /// `send(self(), msg)`: `handle_info(msg)` runs right after the current callback (after the
    /// join reply, for a join).
    pub fn send_self(&mut self, msg: Value) {
        self.infos.push(msg);
    }

    /// `Process.send_after(self(), msg, ms)`: `handle_info(msg)` after `delay`, if this channel
    /// (this join) is still alive then.
    pub fn send_after(&self, delay: Duration, msg: Value) {
        let shared = Arc::downgrade(&self.shared);
        let conn = Arc::downgrade(&self.conn);
        let topic = self.topic.clone();
        let chan_id = self.chan_id;
        self.shared.timers.schedule(delay, move || {
            if let (Some(shared), Some(conn)) = (shared.upgrade(), conn.upgrade()) {
                conn.deliver_info(&shared, &topic, Some(chan_id), msg);
            }
        });
    }

    /// `Presence.track/3`: adds a presence for `key` on this topic with `meta` (an object; a
    /// `phx_ref` is added) and broadcasts the `presence_diff`. Returns the `phx_ref`. The
    /// presence is removed (with a leaves diff) when the channel ends.
    pub fn track(&mut self, key: &str, meta: Value) -> String {
        let meta = match meta {
            Value::Object(m) => m,
            _ => Map::new(),
        };
        self.shared
            .presence
            .track(&self.shared.pubsub, &self.topic, self.chan_id, key, meta)
    }

    /// `Presence.untrack/2`: removes this channel's presences for `key` (leaves diff).
    pub fn untrack(&mut self, key: &str) {
        self.shared
            .presence
            .untrack(&self.shared.pubsub, &self.topic, self.chan_id, Some(key));
    }

    /// `Presence.list/1`: `{key: {"metas": [...]}}` for this topic.
    pub fn presence_list(&self) -> Value {
        self.shared.presence.list(&self.topic)
    }

    /// A handle on the whole server (broadcast to any topic, disconnect a socket id, timers).
    pub fn server(&self) -> ServerHandle {
        ServerHandle {
            shared: self.shared.clone(),
        }
    }
}

/// Replies later to one push (Phoenix `reply(socket_ref, {status, payload})`). `Send`, so it can
/// move to another thread.
#[derive(Debug, Clone)]
pub struct ReplyHandle {
    conn: Weak<Peer>,
    topic: Arc<str>,
    join_ref: Value,
    ref_: Value,
}

impl ReplyHandle {
    /// Sends the reply (dropped silently if the connection is gone).
    pub fn reply(&self, status: Status, payload: impl Into<Payload>) {
        if let Some(conn) = self.conn.upgrade() {
            let enc = serializer::reply(
                conn.ser,
                &self.join_ref,
                &self.ref_,
                Topic::Str(&self.topic),
                status.as_str(),
                &payload.into(),
            );
            conn.send_encoded(enc);
        }
    }
}

/// Unix time in seconds (presence `online_at`).
pub fn unix_seconds() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Makes a fresh channel value for one join.
pub(crate) type Factory = Arc<dyn Fn() -> Box<dyn Channel> + Send + Sync>;

/// The declared channels, `(topic pattern, factory)` in declaration order (Phoenix's
/// `channel "room:*", RoomChannel` lines in the socket module).
pub(crate) type Routes = Vec<(String, Factory)>;

/// The channel for a topic: the first pattern that matches (`"room:*"` or an exact topic).
pub(crate) fn route(routes: &Routes, topic: &str) -> Option<Box<dyn Channel>> {
    routes
        .iter()
        .find(|(pattern, _)| match pattern.strip_suffix('*') {
            Some(prefix) => topic.starts_with(prefix),
            None => topic == pattern,
        })
        .map(|(_, f)| f())
}
