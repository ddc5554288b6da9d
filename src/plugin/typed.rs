//! Typed channel messages: register an incoming event once, then read it as your own type.
//!
//! ```no_run
//! use bevy::prelude::*;
//! use bevy_phoenix_channels::prelude::*;
//!
//! #[derive(serde::Deserialize, Debug)]
//! struct PlayerMoved { id: String, x: f32, y: f32 }
//!
//! fn main() {
//!     App::new()
//!         .add_plugins((MinimalPlugins, PhoenixChannelsPlugin::new("ws://127.0.0.1:4000/socket")))
//!         // `moved` events on `game:*` topics, decoded once per message however many systems read them.
//!         .add_channel_message::<PlayerMoved>(ChannelRoute::event("moved").on_topics("game:*"))
//!         .add_systems(Update, |mut moved: MessageReader<Received<PlayerMoved>>| {
//!             for m in moved.read() {
//!                 info!("{} is at {}, {} (on {})", m.value.id, m.value.x, m.value.y, m.topic);
//!             }
//!         })
//!         .run();
//! }
//! ```
//!
//! A payload that does not decode is never dropped silently: it becomes a
//! [`ChannelDecodeError`] (topic, event, type and serde's error) and a log line, and the untyped
//! [`ChannelMessage`] stream still carries the raw message. Binary payloads register with
//! [`PhoenixAppExt::add_channel_binary`] and a decoder of your own. With
//! [`ChannelRoute::observed`], the value is triggered on the channel entity instead (a
//! [`ReceivedOn`] event for `.observe(...)` on the channel you spawned).

use std::any::type_name;
use std::hash::Hash;
use std::sync::Arc;

use bevy::platform::collections::HashMap;
use bevy::prelude::*;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{ChannelMessage, PhoenixSystems, PushMessage};
use crate::protocol::{EncodeError, EventName, Payload, Topic};

/// Which topics a route accepts: an exact topic, or a prefix ending in `*` (`"game:*"`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicPattern(String);

impl TopicPattern {
    /// `"game:*"` (every topic starting with `game:`), or an exact topic.
    pub fn new(pattern: impl Into<String>) -> Self {
        TopicPattern(pattern.into())
    }

    /// True when `topic` matches.
    pub fn matches(&self, topic: &str) -> bool {
        match self.0.strip_suffix('*') {
            Some(prefix) => topic.starts_with(prefix),
            None => topic == self.0,
        }
    }
}

impl From<&str> for TopicPattern {
    fn from(p: &str) -> Self {
        TopicPattern::new(p)
    }
}

/// Where a typed message comes from: an event name, optionally limited to some topics, and how
/// it is delivered (a [`Received`] message, or a [`ReceivedOn`] event on the channel entity).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelRoute {
    /// The event name, e.g. `"moved"`.
    pub event: String,
    /// Only these topics (`None`: any topic).
    pub topics: Option<TopicPattern>,
    /// Deliver as a [`ReceivedOn`] entity event on the channel entity instead of a message.
    pub observed: bool,
}

impl ChannelRoute {
    /// Every `event` on any topic, delivered as [`Received`] messages.
    pub fn event(event: impl Into<String>) -> Self {
        ChannelRoute {
            event: event.into(),
            topics: None,
            observed: false,
        }
    }

    /// Only on topics matching `pattern` (`"game:*"` or an exact topic).
    pub fn on_topics(mut self, pattern: impl Into<TopicPattern>) -> Self {
        self.topics = Some(pattern.into());
        self
    }

    /// Trigger a [`ReceivedOn`] on the channel entity (for observers) instead of writing a
    /// [`Received`] message. A trigger costs more than a message write (measured in
    /// BENCHMARKS.md); use it for the events a channel's own observers handle.
    pub fn observed(mut self) -> Self {
        self.observed = true;
        self
    }

    fn accepts(&self, m: &ChannelMessage) -> bool {
        *m.event == *self.event && self.topics.as_ref().is_none_or(|p| p.matches(&m.topic))
    }
}

impl From<&str> for ChannelRoute {
    fn from(event: &str) -> Self {
        ChannelRoute::event(event)
    }
}

impl From<String> for ChannelRoute {
    fn from(event: String) -> Self {
        ChannelRoute::event(event)
    }
}

/// A channel message decoded into `T` (see [`PhoenixAppExt::add_channel_message`]).
#[derive(Message, Debug, Clone)]
pub struct Received<T: Send + Sync + 'static> {
    /// The socket entity.
    pub socket: Entity,
    /// The channel entity.
    pub channel: Entity,
    /// The topic.
    pub topic: Topic,
    /// The event name.
    pub event: EventName,
    /// True for a broadcast, false for a push to this client.
    pub broadcast: bool,
    /// The decoded payload.
    pub value: T,
}

/// A channel message decoded into `T`, triggered on the channel entity (a route made with
/// [`ChannelRoute::observed`]).
#[derive(EntityEvent, Debug, Clone)]
pub struct ReceivedOn<T: Send + Sync + 'static> {
    /// The channel entity (the event's target).
    pub entity: Entity,
    /// The socket entity.
    pub socket: Entity,
    /// The topic.
    pub topic: Topic,
    /// The event name.
    pub event: EventName,
    /// True for a broadcast, false for a push to this client.
    pub broadcast: bool,
    /// The decoded payload.
    pub value: T,
}

/// A registered event whose payload did not decode into its type. The raw message is still in
/// the [`ChannelMessage`] stream.
#[derive(Message, Debug, Clone)]
pub struct ChannelDecodeError {
    /// The socket entity.
    pub socket: Entity,
    /// The channel entity.
    pub channel: Entity,
    /// The topic.
    pub topic: Topic,
    /// The event name.
    pub event: EventName,
    /// The type it was meant to decode into.
    pub type_name: &'static str,
    /// Why (serde's message, or your binary decoder's).
    pub error: String,
}

/// An event your game sends, with its name on the type: push it with [`PushMessage::event`].
///
/// ```
/// use bevy_phoenix_channels::prelude::*;
///
/// #[derive(serde::Serialize)]
/// struct Move { x: f32, y: f32 }
///
/// impl ChannelEvent for Move {
///     const EVENT: &'static str = "move";
/// }
///
/// let push = PushMessage::event("game:1", &Move { x: 1.0, y: 2.0 }).unwrap().fire_and_forget();
/// assert_eq!(push.event, "move");
/// ```
pub trait ChannelEvent: Serialize {
    /// The event name on the wire.
    const EVENT: &'static str;
}

impl PushMessage {
    /// A push of `value` as JSON, with the event name of its type.
    pub fn event<T: ChannelEvent>(
        target: impl Into<super::ChannelTarget>,
        value: &T,
    ) -> Result<Self, EncodeError> {
        PushMessage::json(target, T::EVENT, value)
    }
}

type Decode<T> = Arc<dyn Fn(&Payload) -> Result<T, String> + Send + Sync>;

/// Registers typed channel messages on an [`App`].
pub trait PhoenixAppExt {
    /// Decodes the JSON payload of every message matching `route` into `T`, once, and writes
    /// it as a [`Received<T>`] message (or triggers [`ReceivedOn<T>`], see
    /// [`ChannelRoute::observed`]). Failures become [`ChannelDecodeError`]s and a log line.
    fn add_channel_message<T: DeserializeOwned + Send + Sync + 'static>(
        &mut self,
        route: impl Into<ChannelRoute>,
    ) -> &mut Self;

    /// Like [`add_channel_message`](Self::add_channel_message) for binary payloads: `decode`
    /// gets the bytes (a JSON payload on this route is a decode error).
    fn add_channel_binary<T: Send + Sync + 'static>(
        &mut self,
        route: impl Into<ChannelRoute>,
        decode: impl Fn(&[u8]) -> Result<T, String> + Send + Sync + 'static,
    ) -> &mut Self;
}

impl PhoenixAppExt for App {
    fn add_channel_message<T: DeserializeOwned + Send + Sync + 'static>(
        &mut self,
        route: impl Into<ChannelRoute>,
    ) -> &mut Self {
        let decode: Decode<T> = Arc::new(|p: &Payload| p.decode::<T>().map_err(|e| e.to_string()));
        add_route(self, route.into(), decode)
    }

    fn add_channel_binary<T: Send + Sync + 'static>(
        &mut self,
        route: impl Into<ChannelRoute>,
        decode: impl Fn(&[u8]) -> Result<T, String> + Send + Sync + 'static,
    ) -> &mut Self {
        let decode: Decode<T> = Arc::new(move |p: &Payload| match p.as_bytes() {
            Some(bytes) => decode(bytes),
            None => Err("expected a binary payload, got JSON".to_owned()),
        });
        add_route(self, route.into(), decode)
    }
}

fn add_route<T: Send + Sync + 'static>(
    app: &mut App,
    route: ChannelRoute,
    decode: Decode<T>,
) -> &mut App {
    app.add_message::<ChannelMessage>()
        .add_message::<Received<T>>()
        .add_message::<ChannelDecodeError>()
        .configure_sets(
            PreUpdate,
            PhoenixSystems::Decode.after(PhoenixSystems::Receive),
        )
        .add_systems(
            PreUpdate,
            decode_system(route, decode).in_set(PhoenixSystems::Decode),
        )
}

fn decode_system<T: Send + Sync + 'static>(
    route: ChannelRoute,
    decode: Decode<T>,
) -> impl FnMut(
    MessageReader<ChannelMessage>,
    MessageWriter<Received<T>>,
    MessageWriter<ChannelDecodeError>,
    Commands,
) {
    move |mut inbox, mut out, mut errors, mut commands| {
        for m in inbox.read().filter(|m| route.accepts(m)) {
            match decode(&m.payload) {
                Ok(value) if route.observed => commands.trigger(ReceivedOn {
                    entity: m.channel,
                    socket: m.socket,
                    topic: m.topic.clone(),
                    event: m.event.clone(),
                    broadcast: m.broadcast,
                    value,
                }),
                Ok(value) => {
                    out.write(Received {
                        socket: m.socket,
                        channel: m.channel,
                        topic: m.topic.clone(),
                        event: m.event.clone(),
                        broadcast: m.broadcast,
                        value,
                    });
                }
                Err(error) => {
                    warn!(
                        "phoenix: {} {} does not decode into {}: {error}",
                        m.topic,
                        m.event,
                        type_name::<T>()
                    );
                    errors.write(ChannelDecodeError {
                        socket: m.socket,
                        channel: m.channel,
                        topic: m.topic.clone(),
                        event: m.event.clone(),
                        type_name: type_name::<T>(),
                        error,
                    });
                }
            }
        }
    }
}

/// The last item per key, in the order those last items came: several messages from one
/// sender can arrive in one frame (after a slow frame, or a burst), and a game usually wants
/// only the newest state of each.
///
/// ```
/// use bevy_phoenix_channels::prelude::latest_by;
///
/// let moves = [("ada", 1), ("bob", 5), ("ada", 2), ("ada", 3)];
/// let latest: Vec<_> = latest_by(&moves, |m| m.0);
/// assert_eq!(latest, vec![&("bob", 5), &("ada", 3)]);
/// ```
pub fn latest_by<'a, T, K: Eq + Hash>(
    items: impl IntoIterator<Item = &'a T>,
    key: impl Fn(&T) -> K,
) -> Vec<&'a T> {
    let items: Vec<&T> = items.into_iter().collect();
    let mut last: HashMap<K, usize> = HashMap::default();
    for (i, item) in items.iter().enumerate() {
        last.insert(key(item), i);
    }
    let mut keep: Vec<usize> = last.into_values().collect();
    keep.sort_unstable();
    keep.into_iter().map(|i| items[i]).collect()
}
