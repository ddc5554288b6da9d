//! The Bevy side: [`PhoenixChannelsPlugin`], its systems, and the ECS data they keep.
//!
//! Each frame, in [`PreUpdate`] ([`PhoenixSystems::Receive`]), every socket's transport is
//! polled without blocking; frames go into the protocol core, timers fire from
//! [`Time<Real>`] (never virtual time: a paused game keeps its connection), and what the core
//! says comes out as messages and events. In [`PostUpdate`] ([`PhoenixSystems::Send`]), the
//! commands written during the frame (`JoinChannel`, `PushMessage`, `LeaveChannel`, spawned
//! or despawned channel entities) go into the core and the frames it produces are written to
//! the socket before the frame ends. With a [`WaitForNetwork`] resource, a system in [`Last`]
//! ([`PhoenixSystems::Wait`]) then sleeps until a socket has something or a timer is due
//! (native only). Only this module touches the transport.

mod commands;
mod components;
mod diagnostics;
mod headless;
mod messages;
mod typed;
mod wait;

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use bevy::ecs::entity::EntityHashSet;
use bevy::ecs::system::{NonSendMarker, SystemParam};
use bevy::platform::collections::HashMap;
use bevy::prelude::*;
use web_time::Instant;

use crate::protocol::{
    ChannelError, ChannelState, Event as CoreEvent, JoinOptions, Output, PresenceEvent,
    PushOptions, PushOutcome, TransportClosed,
};
use crate::transport::{self, PhoenixTransport, TransportError, TransportEvent};

pub use commands::PhoenixCommandsExt;
pub use components::{
    ChannelLink, ChannelPresence, ChannelStatus, DefaultSocket, PhoenixChannel, PhoenixSocket,
    PhoenixSocketConfig, SocketStatus,
};
pub use diagnostics::PhoenixDiagnosticsPlugin;
pub use headless::{HeadlessTaskPoolPlugin, PhoenixHeadlessPlugin, PhoenixHeadlessPlugins};
pub use messages::*;
pub use typed::{
    ChannelDecodeError, ChannelEvent, ChannelRoute, PhoenixAppExt, Received, ReceivedOn,
    TopicPattern, latest_by,
};
pub use wait::WaitForNetwork;

/// Adds Phoenix Channels to an app.
///
/// With a `default_socket`, the plugin spawns a socket entity (marked [`DefaultSocket`]) that
/// connects at startup; without one, spawn [`PhoenixSocket`] entities yourself.
#[derive(Default)]
pub struct PhoenixChannelsPlugin {
    /// The socket the plugin spawns at startup (`None`: spawn your own).
    pub default_socket: Option<PhoenixSocketConfig>,
}

impl PhoenixChannelsPlugin {
    /// A plugin whose default socket connects to `endpoint` (e.g. `ws://127.0.0.1:4000/socket`).
    pub fn new(endpoint: impl Into<String>) -> Self {
        PhoenixChannelsPlugin {
            default_socket: Some(PhoenixSocketConfig::new(endpoint)),
        }
    }

    /// A plugin whose default socket uses `config`.
    pub fn with_config(config: impl Into<PhoenixSocketConfig>) -> Self {
        PhoenixChannelsPlugin {
            default_socket: Some(config.into()),
        }
    }
}

/// The plugin's system sets, chained in this order within their schedules.
#[derive(SystemSet, Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PhoenixSystems {
    /// [`PreUpdate`]: poll transports, feed the core, fire timers, emit messages and events.
    Receive,
    /// [`PreUpdate`], after [`Receive`](Self::Receive): decode typed messages (see
    /// [`PhoenixAppExt::add_channel_message`]). Read [`Received`] after this set.
    Decode,
    /// [`PostUpdate`]: apply commands, fire timers, write frames to the transports.
    Send,
    /// [`Last`]: with [`WaitForNetwork`], sleep until the network has something (native only).
    Wait,
}

/// The mark in a core push tag (above any `PushHandle`, which counts up from 1) for a
/// fire-and-forget push whose `Sent` outcome is not reported.
const QUIET_SENT: u64 = 1 << 63;

/// Maps [`Time<Real>`] onto the core's clock: `base + real elapsed`.
#[derive(Resource, Debug, Clone, Copy)]
pub struct PhoenixClock {
    base: Instant,
}

impl PhoenixClock {
    /// The core's "now" for the current frame.
    pub fn now(&self, time: &Time<Real>) -> Instant {
        self.base + time.elapsed()
    }
}

impl Default for PhoenixClock {
    fn default() -> Self {
        PhoenixClock {
            base: Instant::now(),
        }
    }
}

/// Open transports by socket entity, each made by its socket's
/// [`PhoenixConnector`](transport::PhoenixConnector). Transports need not be `Send` (on the web
/// they hold JavaScript objects), so this is a non-send resource.
///
/// Natively (on Linux), an open transport with nothing left to read is registered in a
/// readiness set (epoll) and polled again only once its socket is readable (or writable while a
/// flush is held back): an idle frame with a thousand connected sockets costs one
/// `epoll_wait`, not a thousand reads, and [`WaitForNetwork`] watches that one descriptor.
///
/// The same goes for the rest of a frame's work: the receive pass visits only the sockets with
/// something to do (ready or unwatched transports, due timers, a send backlog), so its cost
/// follows the active sockets, not all of them; the send pass handles only the sockets this
/// frame's commands name, and the emit pass only those with events (no pass reads every
/// socket, or its change ticks, each frame).
pub struct PhoenixTransports {
    map: HashMap<Entity, Link>,
    /// Handed to new transports so that their handshake ends a [`WaitForNetwork`] sleep.
    waker: transport::NetworkWaker,
    /// `None` where there is no epoll (or it could not be made): every transport is polled
    /// every frame.
    #[cfg(not(target_arch = "wasm32"))]
    readiness: Option<transport::Readiness>,
    /// Sockets whose transport is not in the readiness set: polled every frame.
    unwatched: EntityHashSet,
    /// Sockets the readiness set reported this frame.
    #[cfg(not(target_arch = "wasm32"))]
    ready: Vec<Entity>,
    /// Socket timers, earliest first: `(due, socket)`. A socket has an entry at or before its
    /// core's next timer ([`PhoenixSocket::scheduled`]); a later one left behind when a timer
    /// moved only makes a spare visit.
    timers: BinaryHeap<Reverse<(Instant, Entity)>>,
    /// Sockets whose core counts unsent bytes: visited every frame so the count stays fresh.
    backlogged: EntityHashSet,
}

// On the web there is no readiness set, and the derived impl would do.
#[cfg_attr(target_arch = "wasm32", allow(clippy::derivable_impls))]
impl Default for PhoenixTransports {
    fn default() -> Self {
        PhoenixTransports {
            map: HashMap::default(),
            waker: transport::NetworkWaker::default(),
            #[cfg(not(target_arch = "wasm32"))]
            readiness: transport::Readiness::new().ok(),
            unwatched: EntityHashSet::default(),
            #[cfg(not(target_arch = "wasm32"))]
            ready: Vec::new(),
            timers: BinaryHeap::new(),
            backlogged: EntityHashSet::default(),
        }
    }
}

/// The sockets that need a look beyond what the readiness set, the timer heap and the send
/// backlog set report, kept as lists so that no pass reads every socket (or its change ticks)
/// each frame: only the plugin's own systems change a socket's core, and each says which ones
/// it changed. (A socket the send pass changed needs no receive visit: it sent that socket's
/// frames and put its next timer in the heap.)
#[derive(Resource, Default)]
struct Activity {
    /// Inserted since the send pass last ran: it starts them.
    inserted: Vec<Entity>,
    /// Sockets whose core may hold events (visited or changed since the last emit); the emit
    /// pass drains and clears them.
    emit: Vec<Entity>,
}

/// A socket component was inserted (spawned, or replaced): the send pass starts it.
fn socket_inserted(ev: On<Insert, PhoenixSocket>, mut activity: ResMut<Activity>) {
    activity.inserted.push(ev.entity);
}

/// One socket's transport.
struct Link {
    transport: Box<dyn PhoenixTransport>,
    /// The last `poll` returned `None`: everything the transport had was taken. Otherwise (the
    /// read budget ran out) a network wait must not sleep, whatever the transport says.
    drained: bool,
    /// How its socket is registered in the readiness set: while registered, the transport is
    /// polled only in frames where the set says the socket is ready.
    #[cfg(not(target_arch = "wasm32"))]
    watch: transport::Watch,
    /// The readiness set reported its socket this frame.
    #[cfg(not(target_arch = "wasm32"))]
    ready: bool,
}

impl Link {
    fn new(transport: Box<dyn PhoenixTransport>) -> Self {
        Link {
            transport,
            // Nothing polled yet: the transport's own hint says what to watch.
            drained: true,
            #[cfg(not(target_arch = "wasm32"))]
            watch: transport::Watch::No,
            #[cfg(not(target_arch = "wasm32"))]
            ready: false,
        }
    }

    /// Whether this frame must poll the transport: always, unless its socket is registered in
    /// the readiness set and the set did not report it.
    fn must_poll(&self) -> bool {
        #[cfg(not(target_arch = "wasm32"))]
        return self.watch == transport::Watch::No || self.ready;
        #[cfg(target_arch = "wasm32")]
        true
    }
}

impl PhoenixTransports {
    /// Transport counters of a socket, if it has an open or opening transport.
    pub fn stats(&self, socket: Entity) -> Option<transport::TransportStats> {
        self.map.get(&socket).map(|l| l.transport.stats())
    }

    /// Starts a socket's new transport (closing the one it replaces).
    fn insert_link(&mut self, entity: Entity, transport: Box<dyn PhoenixTransport>) {
        if let Some(mut old) = self.map.insert(entity, Link::new(transport)) {
            old.transport.close();
        }
        // Polled every frame until a poll finds it drained and the readiness set takes it.
        self.unwatched.insert(entity);
    }

    /// Takes a socket's transport out (the caller closes it if it is still open).
    fn remove_link(&mut self, entity: Entity) -> Option<Link> {
        self.unwatched.remove(&entity);
        self.map.remove(&entity)
    }

    /// What a network wait must watch, one hint per transport not in the readiness set (the
    /// set itself covers the others).
    #[cfg(not(target_arch = "wasm32"))]
    fn wait_hints(&self) -> impl Iterator<Item = transport::WaitHint<'_>> {
        self.unwatched
            .iter()
            .filter_map(|e| self.map.get(e))
            .map(|l| {
                if l.drained {
                    l.transport.wait_hint()
                } else {
                    transport::WaitHint::Ready
                }
            })
    }

    /// Marks the transports whose sockets the readiness set reports ready.
    #[cfg(not(target_arch = "wasm32"))]
    fn collect_ready(&mut self) {
        let Some(set) = &mut self.readiness else {
            return;
        };
        let map = &mut self.map;
        let ready = &mut self.ready;
        let result = set.ready(map.len(), |key| {
            if let Some(e) = Entity::try_from_bits(key)
                && let Some(l) = map.get_mut(&e)
            {
                l.ready = true;
                ready.push(e);
            }
        });
        if let Err(e) = result {
            // Fall back to polling everything, for good.
            warn!("phoenix: the readiness set failed ({e}); polling every socket each frame");
            self.readiness = None;
            for (e, l) in self.map.iter_mut() {
                l.watch = transport::Watch::No;
                self.unwatched.insert(*e);
            }
        }
    }

    /// After a poll or a flush: registers the socket's transport in the readiness set when it
    /// has nothing left to read and its hint names a socket, or stops relying on the set.
    #[cfg(not(target_arch = "wasm32"))]
    fn update_watch(&mut self, entity: Entity) {
        use transport::{WaitHint, Watch};
        let Some(link) = self.map.get_mut(&entity) else {
            return;
        };
        link.ready = false;
        let Some(set) = &self.readiness else {
            return;
        };
        let before = link.watch;
        let hint = if link.drained {
            link.transport.wait_hint()
        } else {
            WaitHint::Ready
        };
        match hint {
            WaitHint::Socket { tcp, write } => {
                let want = if write { Watch::ReadWrite } else { Watch::Read };
                match set.watch(tcp, entity.to_bits(), link.watch, want) {
                    Ok(()) => link.watch = want,
                    Err(e) => {
                        debug!("phoenix: cannot watch a socket for readiness ({e}); polling it");
                        link.watch = Watch::No;
                    }
                }
            }
            // Polled every frame; a stale registration only makes spurious wake-ups.
            _ => link.watch = Watch::No,
        }
        if link.watch != before {
            if link.watch == Watch::No {
                self.unwatched.insert(entity);
            } else {
                self.unwatched.remove(&entity);
            }
        }
    }
}

impl Plugin for PhoenixChannelsPlugin {
    fn build(&self, app: &mut App) {
        app.init_resource::<PhoenixClock>()
            .init_resource::<Activity>()
            .init_non_send::<PhoenixTransports>()
            .add_message::<JoinChannel>()
            .add_message::<PushMessage>()
            .add_message::<LeaveChannel>()
            .add_message::<SocketCommand>()
            .add_message::<ChannelMessage>()
            .add_message::<PushReplied>()
            .add_message::<PresenceChanged>()
            .add_message::<PhoenixProtocolError>()
            .add_message::<SocketConnected>()
            .add_message::<SocketDisconnected>()
            .add_message::<SocketConnectRefused>()
            .add_message::<SocketConnectFailed>()
            .add_message::<SocketReconnecting>()
            .add_message::<SocketGaveUp>()
            .add_message::<ChannelJoined>()
            .add_message::<ChannelErrored>()
            .add_message::<ChannelRejoining>()
            .add_message::<ChannelClosed>()
            .add_message::<ChannelDecodeError>()
            .configure_sets(PreUpdate, PhoenixSystems::Receive)
            .configure_sets(
                PreUpdate,
                PhoenixSystems::Decode.after(PhoenixSystems::Receive),
            )
            .configure_sets(PostUpdate, PhoenixSystems::Send)
            .add_systems(
                PreUpdate,
                (receive_system, emit_system.run_if(some_core_has_events))
                    .chain_ignore_deferred()
                    .in_set(PhoenixSystems::Receive),
            )
            .add_systems(
                PostUpdate,
                (send_system, emit_system.run_if(some_core_has_events))
                    .chain_ignore_deferred()
                    .in_set(PhoenixSystems::Send),
            )
            .add_observer(socket_removed)
            .add_observer(socket_inserted);
        #[cfg(not(target_arch = "wasm32"))]
        app.configure_sets(Last, PhoenixSystems::Wait).add_systems(
            Last,
            wait::wait_system
                .run_if(resource_exists::<WaitForNetwork>)
                .in_set(PhoenixSystems::Wait),
        );
        if let Some(config) = &self.default_socket {
            let socket = PhoenixSocket::new(config.clone());
            app.world_mut()
                .spawn((socket, DefaultSocket, Name::new("phoenix socket")));
        }
    }
}

/// A run condition: the default socket is connected.
pub fn phoenix_connected(sockets: Query<(&SocketStatus, Has<DefaultSocket>)>) -> bool {
    default_of(sockets.iter()).is_some_and(SocketStatus::is_connected)
}

/// A run condition: a channel of `topic` (on any socket) has joined. Gate what you push on
/// it with this, not with [`phoenix_connected`]: the socket opens before the channel joins,
/// and pushes made in between wait in a buffer and leave in a burst.
pub fn channel_joined(
    topic: impl Into<String>,
) -> impl FnMut(Query<(&PhoenixChannel, &ChannelStatus)>) -> bool + Clone {
    let topic: String = topic.into();
    move |q: Query<(&PhoenixChannel, &ChannelStatus)>| {
        q.iter()
            .any(|(c, s)| s.0 == ChannelState::Joined && c.topic == topic)
    }
}

/// A run condition: the given channel entity has joined.
pub fn channel_entity_joined(channel: Entity) -> impl FnMut(Query<&ChannelStatus>) -> bool + Clone {
    move |q: Query<&ChannelStatus>| q.get(channel).is_ok_and(|s| s.0 == ChannelState::Joined)
}

/// A run condition: the given socket entity is connected.
pub fn phoenix_socket_connected(
    socket: Entity,
) -> impl FnMut(Query<&SocketStatus>) -> bool + Clone {
    move |q: Query<&SocketStatus>| q.get(socket).is_ok_and(SocketStatus::is_connected)
}

/// The default of several items: the one marked default, else the only one.
fn default_of<T>(mut items: impl Iterator<Item = (T, bool)>) -> Option<T> {
    let (first, first_default) = items.next()?;
    if first_default {
        return Some(first);
    }
    let mut only = Some(first);
    for (item, is_default) in items {
        if is_default {
            return Some(item);
        }
        only = None;
    }
    only
}

/// Logs a connection failure: the first of a run as a warning, the retries that follow as
/// debug lines (so a console is not flooded while a server restarts); `Connected` logs the end.
fn connection_failure(sock: &mut PhoenixSocket, what: std::fmt::Arguments<'_>) {
    if sock.failures_in_a_row == 0 {
        warn!("phoenix: {what}; retrying with backoff");
    } else {
        debug!("phoenix: {what}");
    }
    sock.failures_in_a_row += 1;
}

/// Where the core's events go.
#[derive(SystemParam)]
struct Sinks<'w, 's> {
    commands: Commands<'w, 's>,
    messages: MessageWriter<'w, ChannelMessage>,
    replies: MessageWriter<'w, PushReplied>,
    presence: MessageWriter<'w, PresenceChanged>,
    errors: MessageWriter<'w, PhoenixProtocolError>,
    connected: MessageWriter<'w, SocketConnected>,
    disconnected: MessageWriter<'w, SocketDisconnected>,
    refused: MessageWriter<'w, SocketConnectRefused>,
    failed: MessageWriter<'w, SocketConnectFailed>,
    reconnecting: MessageWriter<'w, SocketReconnecting>,
    gave_up: MessageWriter<'w, SocketGaveUp>,
    joined: MessageWriter<'w, ChannelJoined>,
    errored: MessageWriter<'w, ChannelErrored>,
    rejoining: MessageWriter<'w, ChannelRejoining>,
    closed: MessageWriter<'w, ChannelClosed>,
    channels: Query<
        'w,
        's,
        (
            &'static mut ChannelStatus,
            Option<&'static mut ChannelPresence>,
        ),
    >,
}

impl Sinks<'_, '_> {
    fn trigger_if_alive<E>(&mut self, entity: Entity, event: E)
    where
        E: for<'t> EntityEvent<Trigger<'t>: Default> + Clone,
    {
        if self.commands.get_entity(entity).is_ok() {
            self.commands.trigger(event);
        }
    }

    /// Turns everything the core has to say into messages, events and component updates.
    fn drain(&mut self, socket_entity: Entity, sock: &mut PhoenixSocket) {
        let mut any = false;
        // The channel entity of the last message: a burst is mostly one channel's messages.
        // Any other event may relink channels, so it forgets.
        let mut last: Option<(crate::protocol::ChannelId, Entity)> = None;
        while let Some(ev) = sock.core.poll_event() {
            any = true;
            match ev {
                CoreEvent::Message(m) => {
                    let channel = match last {
                        Some((id, e)) if id == m.channel => e,
                        _ => {
                            let e = sock
                                .channel_entities
                                .get(&m.channel)
                                .copied()
                                .unwrap_or(Entity::PLACEHOLDER);
                            last = Some((m.channel, e));
                            e
                        }
                    };
                    self.message(socket_entity, channel, m);
                }
                ev => {
                    last = None;
                    self.one(socket_entity, sock, ev);
                }
            }
        }
        if any {
            self.sync_statuses(sock);
        }
    }

    fn sync_statuses(&mut self, sock: &PhoenixSocket) {
        for (id, entity) in &sock.channel_entities {
            if let (Some(info), Ok((mut status, _))) =
                (sock.core.channel(*id), self.channels.get_mut(*entity))
            {
                status.set_if_neq(ChannelStatus(info.state));
            }
        }
    }

    fn message(&mut self, socket: Entity, channel: Entity, m: crate::protocol::InboundMessage) {
        self.messages.write(ChannelMessage {
            socket,
            channel,
            topic: m.topic,
            event: m.event,
            payload: m.payload,
            broadcast: m.broadcast,
        });
    }

    fn one(&mut self, s: Entity, sock: &mut PhoenixSocket, ev: CoreEvent) {
        let chan = |sock: &PhoenixSocket, id| {
            sock.channel_entities
                .get(&id)
                .copied()
                .unwrap_or(Entity::PLACEHOLDER)
        };
        match ev {
            CoreEvent::Message(m) => self.message(s, chan(sock, m.channel), m),
            CoreEvent::Reply(r) => {
                // The plugin pushes with its handle as the core's tag (plus the quiet mark).
                if r.tag & QUIET_SENT != 0 && r.outcome == PushOutcome::Sent {
                    return;
                }
                let handle = PushHandle(r.tag & !QUIET_SENT);
                if let PushOutcome::Dropped(reason) = &r.outcome {
                    debug!(
                        "phoenix: push {:?} on {:?} dropped: {reason:?}",
                        r.event, r.topic
                    );
                }
                self.replies.write(PushReplied {
                    handle,
                    socket: s,
                    channel: chan(sock, r.channel),
                    topic: r.topic,
                    event: r.event,
                    outcome: r.outcome,
                });
            }
            CoreEvent::Presence {
                channel,
                topic,
                event,
            } => {
                let entity = chan(sock, channel);
                // The component follows the core key by key: each change copies (or removes)
                // only its key's entry, as the core has it once the queued events are applied,
                // so a diff costs its own keys, not a copy of the whole room. The copy shares
                // the core's metas (each is an `Arc`): only the key and the list of metas
                // are the component's own.
                if let PresenceEvent::Change(change) = &event
                    && let Ok((_, Some(mut p))) = self.channels.get_mut(entity)
                    && let Some(state) = sock.core.presence(channel)
                {
                    let key = change.key();
                    match state.get(key) {
                        Some(entry) if p.state.get(key) != Some(entry) => {
                            p.state.insert(key.to_owned(), entry.clone());
                        }
                        Some(_) => {}
                        None => {
                            p.state.remove(key);
                        }
                    }
                }
                self.presence.write(PresenceChanged {
                    socket: s,
                    channel: entity,
                    topic,
                    event,
                });
            }
            CoreEvent::ProtocolError(error) => {
                warn!("phoenix: dropped a malformed frame from the server: {error}");
                self.errors.write(PhoenixProtocolError { socket: s, error });
            }
            CoreEvent::Connecting { attempt } => {
                debug!("phoenix: connecting (attempt {attempt})");
            }
            CoreEvent::Connected => {
                match std::mem::take(&mut sock.failures_in_a_row) {
                    0 => info!("phoenix: connected"),
                    n => info!("phoenix: connected again after {n} failed attempts"),
                }
                let e = SocketConnected { entity: s };
                self.connected.write(e.clone());
                self.trigger_if_alive(s, e);
            }
            CoreEvent::Disconnected { reason } => {
                connection_failure(sock, format_args!("disconnected: {reason:?}"));
                let e = SocketDisconnected { entity: s, reason };
                self.disconnected.write(e.clone());
                self.trigger_if_alive(s, e);
            }
            CoreEvent::ConnectRefused { status } => {
                connection_failure(
                    sock,
                    format_args!("connect refused by the server (HTTP {status})"),
                );
                let e = SocketConnectRefused { entity: s, status };
                self.refused.write(e.clone());
                self.trigger_if_alive(s, e);
            }
            CoreEvent::ConnectFailed { error } => {
                connection_failure(sock, format_args!("connect failed: {error}"));
                let e = SocketConnectFailed { entity: s, error };
                self.failed.write(e.clone());
                self.trigger_if_alive(s, e);
            }
            CoreEvent::ReconnectScheduled { attempt, delay } => {
                debug!("phoenix: reconnect attempt {attempt} in {delay:?}");
                let e = SocketReconnecting {
                    entity: s,
                    attempt,
                    delay,
                };
                self.reconnecting.write(e.clone());
                self.trigger_if_alive(s, e);
            }
            CoreEvent::GaveUp { attempts } => {
                warn!("phoenix: gave up reconnecting after {attempts} attempts");
                let e = SocketGaveUp {
                    entity: s,
                    attempts,
                };
                self.gave_up.write(e.clone());
                self.trigger_if_alive(s, e);
            }
            CoreEvent::Joined {
                channel,
                topic,
                response,
                rejoin,
            } => {
                if sock.errored_channels.remove(&channel) {
                    info!("phoenix: rejoined {topic}");
                } else {
                    debug!("phoenix: joined {topic}");
                }
                let entity = chan(sock, channel);
                let e = ChannelJoined {
                    entity,
                    socket: s,
                    topic,
                    response,
                    rejoin,
                };
                self.joined.write(e.clone());
                self.trigger_if_alive(entity, e);
            }
            CoreEvent::ChannelErrored {
                channel,
                topic,
                reason,
            } => {
                // The first error of a channel is a warning; the failed rejoins that follow
                // (and ConnectionLost, which the disconnect already reported) are debug lines.
                if matches!(reason, ChannelError::ConnectionLost)
                    || !sock.errored_channels.insert(channel)
                {
                    debug!("phoenix: channel {topic} errored: {reason:?}");
                } else {
                    warn!("phoenix: channel {topic} errored: {reason:?}");
                }
                let entity = chan(sock, channel);
                let e = ChannelErrored {
                    entity,
                    socket: s,
                    topic,
                    reason,
                };
                self.errored.write(e.clone());
                self.trigger_if_alive(entity, e);
            }
            CoreEvent::RejoinScheduled {
                channel,
                topic,
                delay,
            } => {
                let entity = chan(sock, channel);
                let e = ChannelRejoining {
                    entity,
                    topic,
                    delay,
                };
                self.rejoining.write(e.clone());
                self.trigger_if_alive(entity, e);
            }
            CoreEvent::ChannelClosed {
                channel,
                topic,
                reason,
            } => {
                debug!("phoenix: channel {topic} closed: {reason:?}");
                sock.errored_channels.remove(&channel);
                let entity = chan(sock, channel);
                sock.channel_entities.remove(&channel);
                sock.entity_channels.remove(&entity);
                if let Ok((mut status, _)) = self.channels.get_mut(entity) {
                    status.set_if_neq(ChannelStatus(ChannelState::Closed));
                }
                if let Ok(mut ec) = self.commands.get_entity(entity) {
                    ec.try_remove::<ChannelLink>();
                }
                let e = ChannelClosed {
                    entity,
                    socket: s,
                    topic,
                    reason,
                };
                self.closed.write(e.clone());
                self.trigger_if_alive(entity, e);
            }
        }
    }
}

/// A socket is going away (despawned, its component removed, or replaced by a new one): its
/// pushes and channels end now, so every push still gets exactly one outcome and every channel
/// entity ends `Closed`. The send system closes its transport (a replacing socket's start
/// does).
fn socket_removed(
    ev: On<Discard, PhoenixSocket>,
    clock: Res<PhoenixClock>,
    time: Res<Time<Real>>,
    mut sockets: Query<&mut PhoenixSocket>,
    mut sinks: Sinks,
) {
    let entity = ev.entity;
    let Ok(mut sock) = sockets.get_mut(entity) else {
        return;
    };
    let now = clock.now(&time);
    let sock = &mut *sock;
    sock.core.disconnect(now);
    let ids: Vec<_> = sock.core.channels().collect();
    for id in ids {
        sock.core.leave(now, id);
    }
    while sock.core.poll_output().is_some() {}
    sinks.drain(entity, sock);
}

/// Tells the core what this socket's transport still holds unsent (0 without a transport).
fn refresh_backlog(sock: &mut PhoenixSocket, entity: Entity, transports: &PhoenixTransports) {
    let backlog = transports
        .map
        .get(&entity)
        .map_or(0, |l| l.transport.send_backlog());
    sock.core.handle_send_backlog(backlog);
}

/// Carries out the core's wire requests on this socket's transport.
fn apply_outputs(
    entity: Entity,
    sock: &mut PhoenixSocket,
    transports: &mut PhoenixTransports,
    now: Instant,
) {
    let mut wrote = false;
    while let Some(out) = sock.core.poll_output() {
        match out {
            Output::Connect(req) => {
                if let Some(mut old) = transports.remove_link(entity) {
                    old.transport.close();
                }
                let cfg = &sock.config;
                let t = cfg.transport.connect(
                    transport::ConnectRequest {
                        url: req.url,
                        subprotocols: req.subprotocols,
                        max_frame_size: cfg.max_frame_size,
                        connect_timeout: cfg.connect_timeout,
                        tls: cfg.tls.clone(),
                        headers: cfg.headers.clone(),
                        // A hidden tab stops the frames, and so the core's heartbeats.
                        keepalive: Some(cfg.socket.heartbeat_interval),
                        read_buffer: cfg.read_buffer,
                    },
                    &transports.waker,
                );
                transports.insert_link(entity, t);
            }
            Output::Send(frame) => {
                if let Some(l) = transports.map.get_mut(&entity) {
                    match l.transport.send(frame) {
                        Ok(()) => wrote = true,
                        // Refused on a live connection (natively: its send buffer is full).
                        // The frame is lost, so what follows could be misread by the server:
                        // end this connection; the core ends what was in flight and reconnects.
                        Err(e) if l.transport.is_open() => {
                            warn!("phoenix: send refused ({e}): closing the connection");
                            l.transport.close();
                            transports.remove_link(entity);
                            sock.core
                                .handle_closed(now, TransportClosed::Error(e.to_string()));
                        }
                        // The connection broke: the transport reports its end next poll, and
                        // the core then errors channels and ends in-flight pushes.
                        Err(e) => debug!("phoenix: send failed: {e}"),
                    }
                }
            }
            Output::Close => {
                if let Some(mut l) = transports.remove_link(entity) {
                    l.transport.close();
                }
            }
        }
    }
    if wrote && let Some(l) = transports.map.get_mut(&entity) {
        l.transport.flush();
        // A flush held back by a full socket needs its writability watched.
        #[cfg(not(target_arch = "wasm32"))]
        transports.update_watch(entity);
    }
}

fn closed_from(e: TransportError) -> TransportClosed {
    match e {
        TransportError::Refused { status } => TransportClosed::Refused { status },
        other => TransportClosed::Error(other.to_string()),
    }
}

/// What the send system writes to directly.
#[derive(SystemParam)]
struct SendSinks<'w, 's> {
    commands: Commands<'w, 's>,
    replies: MessageWriter<'w, PushReplied>,
    channels: Query<
        'w,
        's,
        (
            &'static mut ChannelStatus,
            Option<&'static mut ChannelPresence>,
        ),
    >,
}

/// Run condition of [`emit_system`]: a socket visited or changed since the last emit has
/// events queued (a core only gains events when the plugin changes its socket). It reads no
/// socket, only the [`Activity`] list. (The message writers are fetched every frame anyway:
/// the receive pass takes them to drain long bursts as it reads.)
fn some_core_has_events(activity: Res<Activity>) -> bool {
    !activity.emit.is_empty()
}

/// Turns the events every core has queued into messages, events and component updates.
///
/// It stays on the main thread, next to the (non-send) I/O systems: handing it to a task-pool
/// thread costs more than it does.
fn emit_system(
    _main_thread: NonSendMarker,
    mut activity: ResMut<Activity>,
    mut sockets: Query<&mut PhoenixSocket>,
    mut sinks: Sinks,
) {
    let activity = activity.bypass_change_detection();
    for entity in activity.emit.drain(..) {
        if let Ok(mut sock) = sockets.get_mut(entity)
            && sock.core.has_events()
        {
            // Draining only reads the core otherwise: not a change.
            sinks.drain(entity, sock.bypass_change_detection());
        }
    }
}

/// After a visit: makes sure the socket's next timer has an entry in the timer heap, and
/// keeps the set of sockets with a send backlog current. Writes only the socket's
/// bookkeeping, without marking it changed.
fn schedule(transports: &mut PhoenixTransports, entity: Entity, sock: &mut Mut<PhoenixSocket>) {
    let next = sock.core.poll_timeout();
    if let Some(t) = next
        && sock.scheduled.is_none_or(|s| t < s)
    {
        sock.bypass_change_detection().scheduled = Some(t);
        transports.timers.push(Reverse((t, entity)));
    }
    if sock.core.send_backlog() != 0 {
        transports.backlogged.insert(entity);
    } else if !transports.backlogged.is_empty() {
        transports.backlogged.remove(&entity);
    }
}

/// Rebuilds the timer heap when entries left behind by moved timers outnumber the sockets:
/// one entry per socket with a timer.
fn compact_timers(
    transports: &mut PhoenixTransports,
    sockets: &Query<(Entity, &mut PhoenixSocket, &mut SocketStatus)>,
) {
    if transports.timers.len() <= 256 || transports.timers.len() <= 2 * sockets.iter().len() {
        return;
    }
    transports.timers = sockets
        .iter()
        .filter_map(|(e, sock, _)| sock.scheduled.map(|t| Reverse((t, e))))
        .collect();
}

/// Transport frames between two drains of a socket's core events inside the receive pass: a
/// burst's events go out while they are still in cache, and the core's queue stays small.
const DRAIN_EVERY: usize = 256;

/// PreUpdate: poll the transports that have something, feed the cores, fire due timers, send
/// what that produced. Only active sockets are visited: those whose transport the readiness
/// set reported or that are not in it, and those with a due timer or a send backlog (see
/// [`Activity`] for why no other socket needs a visit).
fn receive_system(
    clock: Res<PhoenixClock>,
    time: Res<Time<Real>>,
    mut transports: NonSendMut<PhoenixTransports>,
    mut sockets: Query<(Entity, &mut PhoenixSocket, &mut SocketStatus)>,
    mut visit: Local<Vec<Entity>>,
    mut activity: ResMut<Activity>,
    mut sinks: Sinks,
) {
    let now = clock.now(&time);
    let activity = activity.bypass_change_detection();
    let transports = &mut *transports;
    visit.clear();
    #[cfg(not(target_arch = "wasm32"))]
    {
        transports.ready.clear();
        transports.collect_ready();
        visit.extend_from_slice(&transports.ready);
    }
    #[cfg(target_arch = "wasm32")]
    visit.extend(transports.map.keys().copied());
    visit.extend(transports.unwatched.iter().copied());
    visit.extend(transports.backlogged.iter().copied());
    while let Some(&Reverse((t, e))) = transports.timers.peek()
        && t <= now
    {
        transports.timers.pop();
        if let Ok((_, mut sock, _)) = sockets.get_mut(e) {
            if sock.scheduled == Some(t) {
                // Its entry is used up: the visit gives it the next one.
                sock.bypass_change_detection().scheduled = None;
            }
            visit.push(e);
        }
    }
    visit.sort_unstable();
    visit.dedup();

    for &entity in visit.iter() {
        let Ok((_, mut sock, mut status)) = sockets.get_mut(entity) else {
            // Despawned: nothing is left to visit.
            transports.backlogged.remove(&entity);
            continue;
        };
        // A count of unsent bytes left from an earlier frame is stale: the transport has sent
        // some since. Refresh it before this frame's frames go out (buffered pushes flushed by
        // a join reply are held to the bound too). A zero count costs nothing.
        if sock.core.send_backlog() != 0 {
            refresh_backlog(&mut sock, entity, transports);
        }
        if let Some(link) = transports.map.get_mut(&entity)
            && link.must_poll()
        {
            let sock = &mut *sock;
            let t = &mut link.transport;
            let mut ended = false;
            let mut budget = sock.config.max_frames_per_update;
            link.drained = false;
            loop {
                if budget == 0 {
                    break;
                }
                let Some(ev) = t.poll() else {
                    link.drained = true;
                    break;
                };
                budget -= 1;
                if budget % DRAIN_EVERY == 0 && sock.core.has_events() {
                    sinks.drain(entity, sock);
                }
                match ev {
                    TransportEvent::Text(s) => sock.core.handle_text(now, s),
                    TransportEvent::Binary(b) => sock.core.handle_binary(now, b),
                    TransportEvent::Opened { .. } => sock.core.handle_open(now),
                    TransportEvent::Closed(info) => {
                        sock.core.handle_closed(
                            now,
                            TransportClosed::Closed {
                                code: info.code,
                                reason: info.reason,
                            },
                        );
                        ended = true;
                        break;
                    }
                    TransportEvent::Failed(e) => {
                        sock.core.handle_closed(now, closed_from(e));
                        ended = true;
                        break;
                    }
                }
            }
            if ended {
                transports.remove_link(entity);
            } else {
                #[cfg(not(target_arch = "wasm32"))]
                transports.update_watch(entity);
            }
        }
        // Read-only until something is due: an idle socket is not marked changed.
        if sock.core.poll_timeout().is_some_and(|t| t <= now) {
            sock.core.handle_timeout(now);
        }
        if sock.core.has_outputs() {
            apply_outputs(entity, &mut sock, transports, now);
        }
        status.set_if_neq(SocketStatus(sock.core.connection_state()));
        schedule(transports, entity, &mut sock);
        if sock.core.has_events() {
            activity.emit.push(entity);
        }
    }
    compact_timers(transports, &sockets);
}

/// Channel entities to join: added since the last frame and not linked yet. Added, not just
/// unlinked: a closed channel loses its link and must not join again.
type NewChannel = (Added<PhoenixChannel>, Without<ChannelLink>);

/// Linked channel entities whose [`PhoenixChannel`] changed: their next rejoin sends the new
/// payload.
type EditedChannel = (Changed<PhoenixChannel>, With<ChannelLink>);

/// The sockets as the send system sees them.
type SendSockets<'w, 's> = Query<
    'w,
    's,
    (
        Entity,
        &'static mut PhoenixSocket,
        &'static mut SocketStatus,
        Has<DefaultSocket>,
    ),
>;

/// What the send system keeps between passes, and the sockets it changes.
#[derive(SystemParam)]
struct SendState<'w, 's> {
    activity: ResMut<'w, Activity>,
    /// Sockets this pass changed.
    touched: Local<'s, Vec<Entity>>,
    /// The first pass looked at every socket.
    first_run_done: Local<'s, bool>,
    wait: Option<Res<'w, WaitForNetwork>>,
}

/// What the send system reads.
#[derive(SystemParam)]
struct SendInput<'w, 's> {
    joins: MessageReader<'w, 's, JoinChannel>,
    pushes: ResMut<'w, Messages<PushMessage>>,
    leaves: MessageReader<'w, 's, LeaveChannel>,
    controls: MessageReader<'w, 's, SocketCommand>,
    new_channels: Query<'w, 's, (Entity, &'static PhoenixChannel), NewChannel>,
    edited_channels: Query<'w, 's, (&'static PhoenixChannel, &'static ChannelLink), EditedChannel>,
    links: Query<'w, 's, &'static ChannelLink>,
    removed_channels: RemovedComponents<'w, 's, PhoenixChannel>,
    removed_sockets: RemovedComponents<'w, 's, PhoenixSocket>,
    /// Sockets whose send backlog was read this frame.
    reported: Local<'s, EntityHashSet>,
}

/// Leaves the channel of entity `e` on whichever socket has it (at most one); returns that
/// socket.
fn leave_entity(sockets: &mut SendSockets, e: Entity, now: Instant) -> Option<Entity> {
    for (s, mut sock, _, _) in sockets.iter_mut() {
        if let Some(id) = sock.entity_channels.remove(&e) {
            sock.core.leave(now, id);
            return Some(s);
        }
    }
    None
}

/// PostUpdate: apply this frame's commands, fire timers, write frames.
fn send_system(
    clock: Res<PhoenixClock>,
    time: Res<Time<Real>>,
    mut transports: NonSendMut<PhoenixTransports>,
    mut sockets: SendSockets,
    mut input: SendInput,
    mut sinks: SendSinks,
    mut state: SendState,
) {
    let now = clock.now(&time);
    let transports = &mut *transports;
    let SendState {
        activity,
        touched,
        first_run_done,
        wait,
    } = &mut state;
    let activity = activity.bypass_change_detection();
    input.reported.clear();
    touched.clear();
    if let Some(wait) = wait
        && wait.is_changed()
    {
        // Transports started from now on end a WaitForNetwork sleep when their handshake ends.
        transports.waker = wait.waker();
    }

    for gone in input.removed_sockets.read() {
        if let Some(mut l) = transports.remove_link(gone) {
            l.transport.close();
        }
    }
    // The default socket, read only when a command does not name its socket.
    let mut default_socket: Option<Option<Entity>> = None;
    let mut resolve = |s: Option<Entity>, sockets: &SendSockets| {
        s.or_else(|| {
            *default_socket
                .get_or_insert_with(|| default_of(sockets.iter().map(|(e, _, _, d)| (e, d))))
        })
    };

    // Sockets that have not started yet: inserted since the last pass (and, on the first
    // pass, any spawned before the plugin's observer existed).
    if !**first_run_done {
        **first_run_done = true;
        activity
            .inserted
            .extend(sockets.iter().map(|(e, _, _, _)| e));
    }
    for e in activity.inserted.drain(..) {
        if let Ok((_, mut sock, _, _)) = sockets.get_mut(e)
            && !sock.started
        {
            // A transport here belongs to the socket this one replaced.
            if let Some(mut old) = transports.remove_link(e) {
                old.transport.close();
            }
            sock.started = true;
            if sock.config.auto_connect {
                sock.core.connect(now);
            }
            touched.push(e);
        }
    }
    for c in input.controls.read() {
        let (target, connect) = match *c {
            SocketCommand::Connect(s) => (resolve(s, &sockets), true),
            SocketCommand::Disconnect(s) => (resolve(s, &sockets), false),
        };
        let Some(Ok((e, mut sock, _, _))) = target.map(|t| sockets.get_mut(t)) else {
            warn!("phoenix: {c:?}: no such socket");
            continue;
        };
        touched.push(e);
        if connect {
            sock.core.connect(now);
        } else {
            sock.core.disconnect(now);
        }
    }

    // Leaves: despawned channel entities, and LeaveChannel messages (which despawn).
    for gone in input.removed_channels.read() {
        touched.extend(leave_entity(&mut sockets, gone, now));
    }
    for leave in input.leaves.read() {
        let entity = match &leave.target {
            ChannelTarget::Entity(e) => Some(*e),
            ChannelTarget::Topic { socket, topic } => resolve(*socket, &sockets)
                .and_then(|s| sockets.get(s).ok())
                .and_then(|(_, sock, _, _)| sock.channel_entity(topic)),
        };
        match entity {
            Some(e) => {
                // Left now (not a frame later through the despawn), so a push written after
                // the leave in this frame is already dropped as closed.
                touched.extend(leave_entity(&mut sockets, e, now));
                if let Ok(mut ec) = sinks.commands.get_entity(e) {
                    ec.despawn();
                }
            }
            None => warn!("phoenix: {leave:?}: no such channel"),
        }
    }

    // Joins: new channel entities, and JoinChannel messages (which spawn one).
    let mut to_join: Vec<(Entity, PhoenixChannel)> = Vec::new();
    for (e, ch) in &input.new_channels {
        // A channel that could not join when it was spawned (no socket) stays closed.
        let closed = sinks
            .channels
            .get(e)
            .is_ok_and(|(s, _)| s.0 == ChannelState::Closed);
        if !closed {
            to_join.push((e, ch.clone()));
        }
    }
    for j in input.joins.read() {
        let ch = PhoenixChannel {
            topic: j.topic.clone(),
            socket: j.socket,
            payload: j.payload.clone(),
            presence: true,
        };
        if resolve(j.socket, &sockets).is_none_or(|s| !sockets.contains(s)) {
            error!("phoenix: cannot join {:?}: no socket", ch.topic);
            sinks
                .commands
                .spawn((ch, ChannelStatus(ChannelState::Closed)));
            continue;
        }
        let e = sinks.commands.spawn(ch.clone()).id();
        to_join.push((e, ch));
    }
    for (e, ch) in to_join {
        let Some(Ok((s, mut sock, _, _))) =
            resolve(ch.socket, &sockets).map(|s| sockets.get_mut(s))
        else {
            error!("phoenix: cannot join {:?}: no socket", ch.topic);
            if let Ok((mut st, _)) = sinks.channels.get_mut(e) {
                st.set_if_neq(ChannelStatus(ChannelState::Closed));
            }
            continue;
        };
        touched.push(s);
        let id = sock.core.join(
            now,
            &ch.topic,
            ch.payload.clone(),
            JoinOptions {
                presence: ch.presence,
            },
        );
        sock.channel_entities.insert(id, e);
        sock.entity_channels.insert(e, id);
        if let Ok(mut ec) = sinks.commands.get_entity(e) {
            ec.insert(ChannelLink { socket: s, id });
            if ch.presence {
                ec.insert(ChannelPresence::default());
            }
        }
    }

    // Edited channels: the payload of their next (re)join, e.g. a fresh token or where the
    // player is now. A changed topic or socket is not applied (leave and join for that).
    for (ch, link) in &input.edited_channels {
        if let Ok((s, mut sock, _, _)) = sockets.get_mut(link.socket) {
            sock.core.set_join_payload(link.id, ch.payload.clone());
            touched.push(s);
        }
    }

    // Pushes: drained, so each payload moves into the core without a copy.
    for p in input.pushes.drain() {
        let found = match &p.target {
            // The link is inserted by command, so a channel spawned this frame has none yet:
            // then its socket's entity map (filled by the joins above) knows it.
            ChannelTarget::Entity(e) => input
                .links
                .get(*e)
                .ok()
                .map(|l| (l.socket, Some(l.id)))
                .or_else(|| {
                    sockets.iter().find_map(|(s, sock, _, _)| {
                        sock.entity_channels.get(e).map(|id| (s, Some(*id)))
                    })
                }),
            ChannelTarget::Topic { socket, topic } => resolve(*socket, &sockets).map(|s| {
                let id = sockets
                    .get(s)
                    .ok()
                    .and_then(|(_, sock, _, _)| sock.core.channel_for_topic(topic));
                (s, id)
            }),
        };
        // A link may still name a socket despawned this frame: dropped too, never silent.
        let sock = found
            .and_then(|(s, id)| Some((s, id?)))
            .filter(|(s, _)| sockets.contains(*s));
        let Some((s, id)) = sock else {
            sinks.replies.write(PushReplied {
                handle: p.handle,
                socket: found.map(|(s, _)| s).unwrap_or(Entity::PLACEHOLDER),
                channel: Entity::PLACEHOLDER,
                topic: match &p.target {
                    ChannelTarget::Topic { topic, .. } => topic.as_str().into(),
                    ChannelTarget::Entity(_) => "".into(),
                },
                event: p.event.into(),
                outcome: PushOutcome::Dropped(crate::protocol::DropReason::ChannelClosed),
            });
            continue;
        };
        let Ok((_, mut sock, _, _)) = sockets.get_mut(s) else {
            continue;
        };
        // Before this frame's first push on a socket: what its transport still holds unsent,
        // so the core drops pushes past its bound instead of queueing them without limit
        // behind a slow or stalled server. Only sockets that push pay for it.
        if input.reported.insert(s) {
            refresh_backlog(&mut sock, s, transports);
        }
        // A quiet fire-and-forget push carries a mark in its tag, so its Sent outcome is not
        // reported (no lookup table, no allocation per push).
        let quiet = p.options.fire_and_forget && !p.report_sent;
        let options = PushOptions {
            tag: p.handle.0 | if quiet { QUIET_SENT } else { 0 },
            ..p.options
        };
        let _ = sock.core.push(now, id, &p.event, p.payload, options);
        touched.push(s);
    }

    // Frames out, from the sockets this pass changed (the receive pass sent what its visits
    // produced). Timers were fired in `PreUpdate` for this frame's `now` (the same clock
    // reading): one due from a command made since (a zero timeout) goes into the timer heap
    // here and fires in the next receive pass.
    touched.sort_unstable();
    touched.dedup();
    for &entity in touched.iter() {
        let Ok((_, mut sock, mut status, _)) = sockets.get_mut(entity) else {
            continue;
        };
        if sock.core.has_outputs() {
            apply_outputs(entity, &mut sock, transports, now);
        }
        status.set_if_neq(SocketStatus(sock.core.connection_state()));
        schedule(transports, entity, &mut sock);
        if sock.core.has_events() {
            activity.emit.push(entity);
        }
    }
}
