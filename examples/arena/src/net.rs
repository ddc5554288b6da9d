//! The game's networking, with no rendering: join the room, send the local player's moves at a
//! fixed rate, and keep remote players, presence, chat and the connection state as ECS data. The
//! windowed game, the in-process bots and the headless tests all run this same plugin.
//!
//! What it gets right (lessons from a first trial game on the crate):
//! - moves start when the **channel** has joined, not when the socket opened;
//! - broadcasts carry the mover's id, added by the server, so they cannot be confused or forged;
//! - several `moved` of one player in one frame keep only the latest (no duplicate entities);
//! - while the connection is down, remote players are marked stale; on rejoin the join reply's
//!   snapshot and the fresh presence list replace them;
//! - the join payload always carries where the player is, so a reconnect (even to a restarted
//!   server) puts everybody back where they were.

use std::collections::VecDeque;
use std::time::Duration;

use bevy::platform::collections::HashMap;
use bevy::prelude::*;
use bevy_phoenix_channels::prelude::*;

use crate::protocol::{
    ARENA_H, ARENA_W, ChatLine, ChatSend, Correct, JoinReply, JoinRequest, LOBBY, Move, Moved,
    PLAYER_RADIUS, PlayerMeta, Refusal, inside,
};

/// How often the local position goes out while it changes (20 Hz).
pub const SEND_INTERVAL: Duration = Duration::from_millis(50);
/// Remote players are drawn this far in the past, so there are two positions to blend between.
pub const INTERP_DELAY: f64 = 0.1;
/// Chat and notices kept.
pub const CHAT_LINES: usize = 50;

/// Who the local player is.
#[derive(Resource, Debug, Clone)]
pub struct PlayerProfile {
    /// Stable id (kept across reconnects).
    pub id: String,
    /// Shown name.
    pub name: String,
    /// Palette index.
    pub color: u8,
}

impl PlayerProfile {
    /// A random id and name with the given colour.
    pub fn random() -> Self {
        PlayerProfile {
            id: crate::protocol::new_player_id(),
            name: crate::protocol::new_player_name(),
            color: fastrand::u8(..crate::protocol::COLORS),
        }
    }
}

/// Adds the arena networking: a socket to `url`, the room's channel, and the systems below.
pub struct ArenaNetPlugin {
    /// The socket endpoint, e.g. `ws://127.0.0.1:4400/socket`.
    pub url: String,
    /// The local player.
    pub profile: PlayerProfile,
    /// The room topic (default [`LOBBY`]).
    pub topic: String,
}

impl ArenaNetPlugin {
    /// The plugin for `url`, joining the lobby as `profile`.
    pub fn new(url: impl Into<String>, profile: PlayerProfile) -> Self {
        ArenaNetPlugin {
            url: url.into(),
            profile,
            topic: LOBBY.to_owned(),
        }
    }
}

/// The plugin's system sets: [`ArenaNetSystems::Receive`] in `PreUpdate` after the socket's
/// receive; [`ArenaNetSystems::Interpolate`] in `Update`; [`ArenaNetSystems::Send`] in
/// `PostUpdate` before the socket's send. Move the local player in `Update`.
#[derive(SystemSet, Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ArenaNetSystems {
    /// Apply what arrived.
    Receive,
    /// Move remote players along their buffered positions.
    Interpolate,
    /// Send the local position and chat.
    Send,
}

/// A player in the arena (local or remote).
#[derive(Component, Debug, Clone)]
pub struct Player {
    /// Player id.
    pub id: String,
    /// Shown name.
    pub name: String,
    /// Palette index.
    pub color: u8,
}

/// Position in arena coordinates (x right, y down, `0..=1200` × `0..=800`).
#[derive(Component, Debug, Clone, Copy, PartialEq, Default)]
pub struct ArenaPos(pub Vec2);

/// Marks the local player. Move it by changing its [`ArenaPos`] in `Update`.
#[derive(Component, Debug, Default)]
pub struct LocalPlayer;

/// A remote player: the positions heard from the server, blended [`INTERP_DELAY`] in the past.
#[derive(Component, Debug, Default)]
pub struct RemotePlayer {
    /// `(receive time in real seconds, position)`, oldest first.
    pub samples: VecDeque<(f64, Vec2)>,
    /// False while our connection is down: the position is stale.
    pub live: bool,
}

impl RemotePlayer {
    /// True once a position is known.
    pub fn placed(&self) -> bool {
        !self.samples.is_empty()
    }

    /// Adds a position heard at `now`; a second one in the same frame replaces the first.
    pub fn push(&mut self, now: f64, pos: Vec2) {
        match self.samples.back_mut() {
            Some(last) if last.0 >= now => *last = (now, pos),
            _ => self.samples.push_back((now, pos)),
        }
        while self.samples.len() > 32 {
            self.samples.pop_front();
        }
    }

    /// Forgets the buffer and stands at `pos` (a snapshot or a teleport).
    pub fn snap(&mut self, now: f64, pos: Vec2) {
        self.samples.clear();
        self.samples.push_back((now, pos));
    }

    /// The position to show at `now`: blended between the two samples around `now - delay`.
    pub fn sample(&mut self, now: f64) -> Option<Vec2> {
        let t = now - INTERP_DELAY;
        while self.samples.len() > 2 && self.samples[1].0 <= t {
            self.samples.pop_front();
        }
        let (t0, p0) = *self.samples.front()?;
        match self.samples.get(1) {
            Some(&(t1, p1)) if t > t0 && t1 > t0 => {
                Some(p0.lerp(p1, ((t - t0) / (t1 - t0)).clamp(0.0, 1.0) as f32))
            }
            _ if t <= t0 => Some(p0),
            _ => self.samples.back().map(|s| s.1),
        }
    }
}

/// The state of our connection, for the banner.
#[derive(Debug, Clone, PartialEq)]
pub enum NetStatus {
    /// Opening the socket.
    Connecting,
    /// Socket open, waiting for the join reply.
    Joining,
    /// In the room.
    Joined,
    /// Connection lost; the next attempt is at `at` (real seconds).
    Reconnecting {
        /// When the next attempt starts (real seconds since startup).
        at: f64,
        /// Attempt number.
        attempt: u32,
    },
    /// The server refused the connection (HTTP status).
    Refused(u16),
    /// The server refused the join (reason); the plugin retries with backoff.
    JoinRefused(String),
}

/// Connection state and the server we reached.
#[derive(Resource, Debug, Clone)]
pub struct ArenaConnection {
    /// For the banner.
    pub status: NetStatus,
    /// `"embedded"` or `"phoenix"`, from the last join reply.
    pub server: Option<String>,
    /// The endpoint.
    pub url: String,
    /// The last transport error, if any.
    pub last_error: Option<String>,
    /// Times we joined (1 after the first join; more after rejoins).
    pub joins: u32,
    /// When the last join reply came (real seconds).
    pub joined_at: f64,
}

/// The room channel entity and the local send state.
#[derive(Resource, Debug)]
pub struct ArenaSession {
    /// The channel entity (`PhoenixChannel`).
    pub channel: Entity,
    /// The room topic.
    pub topic: String,
    /// The local player entity, once joined.
    pub local: Option<Entity>,
    seq: u64,
    last_sent: Option<Vec2>,
    payload_pos: Option<Vec2>,
    since_send: Duration,
    chats: HashMap<PushHandle, String>,
    /// Players in the last join reply: their presence joins are not announced (the fresh
    /// presence list after a (re)join would otherwise announce everybody again).
    known: Vec<String>,
}

/// Players by id.
#[derive(Resource, Debug, Default)]
pub struct PlayerIndex(pub HashMap<String, Entity>);

/// What the chat panel shows.
#[derive(Debug, Clone, PartialEq)]
pub enum LogKind {
    /// A chat line from a player with this colour.
    Chat {
        /// Sender name.
        name: String,
        /// Sender colour.
        color: u8,
    },
    /// Someone joined or left, we reconnected, ...
    Notice,
    /// Something went wrong (a chat was refused, ...).
    Error,
}

/// One line of the chat panel.
#[derive(Debug, Clone, PartialEq)]
pub struct LogLine {
    /// Kind.
    pub kind: LogKind,
    /// Text.
    pub text: String,
}

/// Chat and notices, newest last.
#[derive(Resource, Debug, Default)]
pub struct ChatLog {
    /// The lines.
    pub lines: VecDeque<LogLine>,
    /// Bumped on every change (the UI rebuilds when it moves).
    pub version: u64,
}

impl ChatLog {
    /// Adds a line.
    pub fn add(&mut self, kind: LogKind, text: impl Into<String>) {
        self.lines.push_back(LogLine {
            kind,
            text: text.into(),
        });
        while self.lines.len() > CHAT_LINES {
            self.lines.pop_front();
        }
        self.version += 1;
    }
}

/// Counters (for tests and the curious).
#[derive(Resource, Debug, Default, Clone)]
pub struct NetStats {
    /// `move` pushes sent.
    pub moves_sent: u64,
    /// `moved` broadcasts received.
    pub moved_received: u64,
    /// `chat` broadcasts received.
    pub chats_received: u64,
    /// `correct` pushes received.
    pub corrections: u64,
    /// Payloads that did not decode.
    pub bad_payloads: u64,
}

/// Write this to send a chat line.
#[derive(Message, Debug, Clone)]
pub struct SendChat(pub String);

impl Plugin for ArenaNetPlugin {
    fn build(&self, app: &mut App) {
        let config = PhoenixSocketConfig::new(self.url.clone())
            // A 5 s heartbeat: a dead server is noticed within seconds, and the banner's round
            // trip (from the diagnostics) is fresh.
            .with(|s| s.with_heartbeat(Duration::from_secs(5)));
        if !app.is_plugin_added::<PhoenixChannelsPlugin>() {
            app.add_plugins(PhoenixChannelsPlugin::with_config(config));
        }
        let profile = self.profile.clone();
        let topic = self.topic.clone();
        let channel = app
            .world_mut()
            .spawn((
                PhoenixChannel::new(topic.clone())
                    .with_payload(&join_request(&profile, None))
                    .expect("a join request always encodes"),
                Name::new("arena channel"),
            ))
            .id();
        app.insert_resource(profile)
            .insert_resource(ArenaSession {
                channel,
                topic,
                local: None,
                seq: 0,
                last_sent: None,
                payload_pos: None,
                since_send: Duration::ZERO,
                chats: HashMap::default(),
                known: Vec::new(),
            })
            .insert_resource(ArenaConnection {
                status: NetStatus::Connecting,
                server: None,
                url: self.url.clone(),
                last_error: None,
                joins: 0,
                joined_at: 0.0,
            })
            .init_resource::<PlayerIndex>()
            .init_resource::<ChatLog>()
            .init_resource::<NetStats>()
            .add_message::<SendChat>()
            // The room's events, decoded once into our types (a payload that does not decode
            // becomes a ChannelDecodeError, counted in NetStats::bad_payloads).
            .add_channel_message::<Moved>(ChannelRoute::event("moved").on_topics("arena:*"))
            .add_channel_message::<ChatLine>(ChannelRoute::event("chat").on_topics("arena:*"))
            .add_channel_message::<Correct>(ChannelRoute::event("correct").on_topics("arena:*"))
            .configure_sets(
                PreUpdate,
                ArenaNetSystems::Receive.after(PhoenixSystems::Decode),
            )
            .configure_sets(
                PostUpdate,
                ArenaNetSystems::Send.before(PhoenixSystems::Send),
            )
            .add_systems(
                PreUpdate,
                (
                    on_socket_events,
                    on_joined,
                    (on_moved, on_chat, on_correct, on_bad_payloads),
                    on_presence,
                    on_replies,
                )
                    .chain()
                    .in_set(ArenaNetSystems::Receive),
            )
            .add_systems(Update, interpolate.in_set(ArenaNetSystems::Interpolate))
            .add_systems(
                PostUpdate,
                (send_moves, send_chat, refresh_join_payload).in_set(ArenaNetSystems::Send),
            );
    }
}

fn join_request(p: &PlayerProfile, at: Option<Vec2>) -> JoinRequest {
    JoinRequest {
        id: p.id.clone(),
        name: p.name.clone(),
        color: p.color,
        x: at.map(|v| v.x),
        y: at.map(|v| v.y),
    }
}

/// Keeps a position inside the arena, a player's radius from the walls.
pub fn clamp_to_arena(p: Vec2) -> Vec2 {
    p.clamp(
        Vec2::splat(PLAYER_RADIUS),
        Vec2::new(ARENA_W - PLAYER_RADIUS, ARENA_H - PLAYER_RADIUS),
    )
}

fn real_now(time: &Time<Real>) -> f64 {
    time.elapsed_secs_f64()
}

#[allow(clippy::too_many_arguments)]
fn on_socket_events(
    time: Res<Time<Real>>,
    mut conn: ResMut<ArenaConnection>,
    mut log: ResMut<ChatLog>,
    mut connected: MessageReader<SocketConnected>,
    mut disconnected: MessageReader<SocketDisconnected>,
    mut reconnecting: MessageReader<SocketReconnecting>,
    mut refused: MessageReader<SocketConnectRefused>,
    mut failed: MessageReader<SocketConnectFailed>,
    mut errored: MessageReader<ChannelErrored>,
    session: Res<ArenaSession>,
    mut remotes: Query<&mut RemotePlayer>,
) {
    let now = real_now(&time);
    let mut lost = false;
    for _ in connected.read() {
        conn.status = NetStatus::Joining;
        conn.last_error = None;
    }
    for d in disconnected.read() {
        if conn.status == NetStatus::Joined {
            log.add(LogKind::Notice, "Connection lost; reconnecting...");
        }
        info!("arena: disconnected: {:?}", d.reason);
        lost = true;
    }
    for f in failed.read() {
        conn.last_error = Some(f.error.clone());
    }
    for r in refused.read() {
        conn.status = NetStatus::Refused(r.status);
    }
    for r in reconnecting.read() {
        if !matches!(conn.status, NetStatus::Refused(_)) || r.attempt > 1 {
            conn.status = NetStatus::Reconnecting {
                at: now + r.delay.as_secs_f64(),
                attempt: r.attempt,
            };
        }
    }
    for e in errored.read().filter(|e| e.entity == session.channel) {
        match &e.reason {
            ChannelError::JoinRefused(p) => {
                let reason = p
                    .decode::<Refusal>()
                    .map(|r| r.reason)
                    .unwrap_or_else(|_| format!("{p:?}"));
                if conn.status != NetStatus::JoinRefused(reason.clone()) {
                    log.add(LogKind::Error, format!("The server refused us: {reason}"));
                }
                conn.status = NetStatus::JoinRefused(reason);
            }
            ChannelError::Crashed(_) | ChannelError::JoinTimeout => {
                conn.status = NetStatus::Joining;
                lost = true;
            }
            ChannelError::ConnectionLost => lost = true,
        }
    }
    if lost {
        for mut r in &mut remotes {
            r.live = false;
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn on_joined(
    mut commands: Commands,
    time: Res<Time<Real>>,
    mut joined: MessageReader<ChannelJoined>,
    mut session: ResMut<ArenaSession>,
    mut conn: ResMut<ArenaConnection>,
    mut index: ResMut<PlayerIndex>,
    mut log: ResMut<ChatLog>,
    mut stats: ResMut<NetStats>,
    profile: Res<PlayerProfile>,
    mut players: Query<(&mut Player, &mut ArenaPos, Option<&mut RemotePlayer>)>,
) {
    let now = real_now(&time);
    let channel = session.channel;
    for j in joined.read().filter(|j| j.entity == channel) {
        let reply = match j.response.decode::<JoinReply>() {
            Ok(r)
                if inside(r.x as f64, r.y as f64)
                    && r.players.iter().all(|p| inside(p.x as f64, p.y as f64)) =>
            {
                r
            }
            Ok(r) => {
                stats.bad_payloads += 1;
                error!("arena: join reply with positions outside the arena: {r:?}");
                continue;
            }
            Err(e) => {
                stats.bad_payloads += 1;
                error!("arena: join reply does not decode: {e}");
                continue;
            }
        };
        conn.status = NetStatus::Joined;
        conn.joins += 1;
        conn.joined_at = now;
        let first = conn.joins == 1;
        let server = reply.server.clone();
        conn.server = Some(server.clone());
        log.add(
            LogKind::Notice,
            if first {
                format!("Joined as {} ({server} server)", profile.name)
            } else {
                format!("Back in the arena ({server} server)")
            },
        );
        // Us: where the server placed us.
        let me = Vec2::new(reply.x, reply.y);
        match session.local.and_then(|e| players.get_mut(e).ok()) {
            Some((_, mut pos, _)) => pos.0 = me,
            None => {
                let e = commands
                    .spawn((
                        Player {
                            id: profile.id.clone(),
                            name: profile.name.clone(),
                            color: profile.color,
                        },
                        LocalPlayer,
                        ArenaPos(me),
                        Name::new("local player"),
                    ))
                    .id();
                session.local = Some(e);
                index.0.insert(profile.id.clone(), e);
            }
        }
        session.last_sent = Some(me);
        session.payload_pos = None;
        // Everyone else: the snapshot replaces what we had.
        let mut seen: Vec<&str> = Vec::with_capacity(reply.players.len());
        session.known = reply.players.iter().map(|p| p.id.clone()).collect();
        for p in reply.players.iter().filter(|p| p.id != profile.id) {
            seen.push(&p.id);
            let pos = Vec2::new(p.x, p.y);
            match index.0.get(&p.id).and_then(|e| players.get_mut(*e).ok()) {
                Some((mut player, mut at, Some(mut remote))) => {
                    player.name.clone_from(&p.name);
                    player.color = p.color;
                    at.0 = pos;
                    remote.snap(now, pos);
                    remote.live = true;
                }
                _ => spawn_remote(
                    &mut commands,
                    &mut index,
                    Player {
                        id: p.id.clone(),
                        name: p.name.clone(),
                        color: p.color,
                    },
                    Some((now, pos)),
                ),
            }
        }
        let gone: Vec<String> = index
            .0
            .keys()
            .filter(|id| **id != profile.id && !seen.contains(&id.as_str()))
            .cloned()
            .collect();
        for id in gone {
            if let Some(e) = index.0.remove(&id) {
                commands.entity(e).despawn();
            }
        }
    }
}

/// Spawns a remote player (placed at `at`, `(receive time, position)`, if known) and indexes it.
fn spawn_remote(
    commands: &mut Commands,
    index: &mut PlayerIndex,
    player: Player,
    at: Option<(f64, Vec2)>,
) {
    let mut remote = RemotePlayer {
        live: true,
        ..default()
    };
    if let Some((now, pos)) = at {
        remote.snap(now, pos);
    }
    let id = player.id.clone();
    let e = commands
        .spawn((
            Name::new(format!("player {id}")),
            player,
            remote,
            ArenaPos(at.map_or(Vec2::ZERO, |a| a.1)),
        ))
        .id();
    index.0.insert(id, e);
}

#[allow(clippy::too_many_arguments)]
fn on_moved(
    mut commands: Commands,
    time: Res<Time<Real>>,
    mut moved: MessageReader<Received<Moved>>,
    session: Res<ArenaSession>,
    profile: Res<PlayerProfile>,
    mut index: ResMut<PlayerIndex>,
    mut stats: ResMut<NetStats>,
    mut remotes: Query<&mut RemotePlayer>,
) {
    let now = real_now(&time);
    for m in moved.read().filter(|m| m.channel == session.channel) {
        stats.moved_received += 1;
        let mv = &m.value;
        if mv.id == profile.id {
            continue;
        }
        if !inside(mv.x as f64, mv.y as f64) {
            stats.bad_payloads += 1;
            warn!("arena: moved outside the arena ignored: {mv:?}");
            continue;
        }
        let pos = Vec2::new(mv.x, mv.y);
        match index.0.get(&mv.id).and_then(|e| remotes.get_mut(*e).ok()) {
            Some(mut r) => {
                r.live = true;
                if mv.seq == 0 {
                    r.snap(now, pos);
                } else {
                    r.push(now, pos);
                }
            }
            // Heard before its presence: placed now, named when presence arrives.
            None => spawn_remote(
                &mut commands,
                &mut index,
                Player {
                    id: mv.id.clone(),
                    name: mv.id.clone(),
                    color: 0,
                },
                Some((now, pos)),
            ),
        }
    }
}

fn on_chat(
    mut chat: MessageReader<Received<ChatLine>>,
    session: Res<ArenaSession>,
    profile: Res<PlayerProfile>,
    index: Res<PlayerIndex>,
    players: Query<&Player>,
    mut log: ResMut<ChatLog>,
    mut stats: ResMut<NetStats>,
) {
    for m in chat.read().filter(|m| m.channel == session.channel) {
        stats.chats_received += 1;
        let c = &m.value;
        let color = index
            .0
            .get(&c.id)
            .and_then(|e| players.get(*e).ok())
            .map_or(if c.id == profile.id { profile.color } else { 0 }, |p| {
                p.color
            });
        log.add(
            LogKind::Chat {
                name: c.name.clone(),
                color,
            },
            c.text.clone(),
        );
    }
}

fn on_correct(
    mut correct: MessageReader<Received<Correct>>,
    session: Res<ArenaSession>,
    mut stats: ResMut<NetStats>,
    mut local: Query<&mut ArenaPos, With<LocalPlayer>>,
) {
    for m in correct.read().filter(|m| m.channel == session.channel) {
        let c = &m.value;
        if !inside(c.x as f64, c.y as f64) {
            stats.bad_payloads += 1;
            warn!("arena: correct outside the arena ignored: {c:?}");
            continue;
        }
        stats.corrections += 1;
        debug!(
            "arena: move refused ({}), back to {}, {}",
            c.reason, c.x, c.y
        );
        if let Ok(mut pos) = local.single_mut() {
            pos.0 = Vec2::new(c.x, c.y);
        }
    }
}

/// Payloads that do not decode into our types (the plugin logs each one).
fn on_bad_payloads(mut errors: MessageReader<ChannelDecodeError>, mut stats: ResMut<NetStats>) {
    stats.bad_payloads += errors.read().count() as u64;
}

fn meta_of(entry: &PresenceEntry) -> Option<PlayerMeta> {
    let meta = entry.metas.last()?;
    meta.decode().ok()
}

#[allow(clippy::too_many_arguments)]
fn on_presence(
    mut commands: Commands,
    mut changes: MessageReader<PresenceChanged>,
    mut session: ResMut<ArenaSession>,
    profile: Res<PlayerProfile>,
    lists: Query<&ChannelPresence>,
    mut index: ResMut<PlayerIndex>,
    mut log: ResMut<ChatLog>,
    mut players: Query<&mut Player>,
) {
    let channel = session.channel;
    for c in changes.read().filter(|c| c.channel == channel) {
        match &c.event {
            PresenceEvent::Change(PresenceChange::Join {
                key,
                current: None,
                new_metas,
            }) if *key != profile.id => {
                if let Some(i) = session.known.iter().position(|k| k == key) {
                    session.known.swap_remove(i);
                    continue;
                }
                let name = new_metas
                    .last()
                    .and_then(|m| m.get("name"))
                    .and_then(|n| n.as_str().map(str::to_owned))
                    .unwrap_or_else(|| key.clone());
                log.add(LogKind::Notice, format!("{name} joined"));
            }
            PresenceEvent::Change(PresenceChange::Leave {
                key,
                remaining,
                left_metas,
            }) if remaining.is_empty() && *key != profile.id => {
                let name = left_metas
                    .last()
                    .and_then(|m| m.get("name"))
                    .and_then(|n| n.as_str().map(str::to_owned))
                    .unwrap_or_else(|| key.clone());
                log.add(LogKind::Notice, format!("{name} left"));
            }
            PresenceEvent::Sync => {
                let Ok(list) = lists.get(session.channel) else {
                    continue;
                };
                // Presence is who is here: name and colour from the metas; the rest goes.
                for (key, entry) in &list.state {
                    if *key == profile.id {
                        continue;
                    }
                    let Some(meta) = meta_of(entry) else {
                        continue;
                    };
                    match index.0.get(key).and_then(|e| players.get_mut(*e).ok()) {
                        Some(mut p) => {
                            if p.name != meta.name || p.color != meta.color {
                                p.name = meta.name;
                                p.color = meta.color;
                            }
                        }
                        // Known by presence only: shown once a position arrives.
                        None => spawn_remote(
                            &mut commands,
                            &mut index,
                            Player {
                                id: key.clone(),
                                name: meta.name,
                                color: meta.color,
                            },
                            None,
                        ),
                    }
                }
                let gone: Vec<String> = index
                    .0
                    .keys()
                    .filter(|id| **id != profile.id && !list.state.contains_key(*id))
                    .cloned()
                    .collect();
                for id in gone {
                    if let Some(e) = index.0.remove(&id) {
                        commands.entity(e).despawn();
                    }
                }
            }
            _ => {}
        }
    }
}

fn on_replies(
    mut replies: MessageReader<PushReplied>,
    mut session: ResMut<ArenaSession>,
    mut log: ResMut<ChatLog>,
) {
    for r in replies.read() {
        let Some(text) = session.chats.remove(&r.handle) else {
            continue;
        };
        let why = match &r.outcome {
            PushOutcome::Ok(_) => continue,
            PushOutcome::Error(p) => p
                .decode::<Refusal>()
                .map(|r| r.reason)
                .unwrap_or_else(|_| "refused".into()),
            PushOutcome::Timeout => "no answer".into(),
            PushOutcome::Dropped(reason) => format!("{reason:?}"),
            PushOutcome::Sent => continue,
        };
        log.add(LogKind::Error, format!("Not sent ({why}): {text}"));
    }
}

fn interpolate(time: Res<Time<Real>>, mut remotes: Query<(&mut RemotePlayer, &mut ArenaPos)>) {
    let now = real_now(&time);
    for (mut r, mut pos) in &mut remotes {
        // Dropping samples that have been passed is bookkeeping, not a change: `Changed<RemotePlayer>`
        // stays a signal that a position arrived or the player went stale.
        if let Some(p) = r.bypass_change_detection().sample(now) {
            pos.set_if_neq(ArenaPos(p));
        }
    }
}

fn channel_joined(session: &ArenaSession, channels: &Query<&ChannelStatus>) -> bool {
    channels
        .get(session.channel)
        .is_ok_and(|s| s.0 == ChannelState::Joined)
}

fn send_moves(
    mut commands: Commands,
    time: Res<Time<Real>>,
    mut session: ResMut<ArenaSession>,
    mut stats: ResMut<NetStats>,
    channels: Query<&ChannelStatus>,
    local: Query<&ArenaPos, With<LocalPlayer>>,
) {
    session.since_send += time.delta();
    if session.since_send < SEND_INTERVAL || !channel_joined(&session, &channels) {
        return;
    }
    let Ok(pos) = local.single() else {
        return;
    };
    session.since_send = Duration::ZERO;
    if session.last_sent == Some(pos.0) {
        return;
    }
    session.seq += 1;
    let mv = Move {
        x: pos.0.x,
        y: pos.0.y,
        seq: session.seq,
    };
    match PushMessage::event(session.topic.as_str(), &mv) {
        Ok(push) => {
            commands.push(push.fire_and_forget());
            session.last_sent = Some(pos.0);
            stats.moves_sent += 1;
        }
        Err(e) => error!("arena: cannot encode a move: {e}"),
    }
}

fn send_chat(
    mut commands: Commands,
    mut chats: MessageReader<SendChat>,
    mut session: ResMut<ArenaSession>,
    mut log: ResMut<ChatLog>,
    channels: Query<&ChannelStatus>,
) {
    for SendChat(text) in chats.read() {
        let text = text.trim();
        if text.is_empty() {
            continue;
        }
        if !channel_joined(&session, &channels) {
            log.add(LogKind::Error, format!("Not sent (offline): {text}"));
            continue;
        }
        let msg = ChatSend {
            text: text.to_owned(),
        };
        match PushMessage::event(session.topic.as_str(), &msg) {
            Ok(push) => {
                let handle = commands.push(push.with_timeout(Duration::from_secs(5)));
                session.chats.insert(handle, text.to_owned());
            }
            Err(e) => error!("arena: cannot encode a chat line: {e}"),
        }
    }
}

/// While we are not in the room, the join payload follows the local player, so the rejoin
/// (after a reconnect, or to a restarted server) puts us back where we were.
fn refresh_join_payload(
    mut session: ResMut<ArenaSession>,
    profile: Res<PlayerProfile>,
    local: Query<&ArenaPos, With<LocalPlayer>>,
    mut channels: Query<(&mut PhoenixChannel, &ChannelStatus)>,
) {
    let Ok(pos) = local.single() else {
        return;
    };
    let Ok((mut channel, status)) = channels.get_mut(session.channel) else {
        return;
    };
    if status.0 == ChannelState::Joined || session.payload_pos == Some(pos.0) {
        return;
    }
    session.payload_pos = Some(pos.0);
    // Changing the component's payload is what the plugin sends with the next rejoin.
    match OutPayload::json(&join_request(&profile, Some(pos.0))) {
        Ok(p) => channel.payload = p,
        Err(e) => error!("arena: cannot encode the join payload: {e}"),
    }
}
