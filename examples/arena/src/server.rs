//! The embedded server: the arena channel in Rust on `phoenix_test_server`'s [`Channel`] trait,
//! with the same behaviour as the Elixir app in `server/` (see `PROTOCOL.md`). The native game
//! starts it in-process when nobody serves the default address, so the game runs with no Elixir.

use std::collections::HashMap;
use std::io;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use bevy::prelude::{Res, ResMut, Resource, Time};
use bevy::time::Real;
use phoenix_test_server::{
    Channel, ChannelContext, HandleResult, JoinResult, Payload, TerminateReason, TestServer,
    unix_seconds,
};
use serde_json::{Map, Value, json};

use crate::net::{ArenaConnection, ChatLog, LogKind, NetStatus};
use crate::protocol::{
    ARENA_H, ARENA_W, CHAT_BURST, COLORS, MAX_SPEED, SPAWN_MARGIN, clean_chat, clean_name, inside,
    move_allowance, valid_id,
};

/// Where the embedded server listens and what else it serves.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// Address to listen on (127.0.0.1: this machine only; 0.0.0.0: the local network too).
    pub bind: IpAddr,
    /// TCP port (0: any free port).
    pub port: u16,
    /// A folder served over plain HTTP on the same port (the web build: page, wasm, assets).
    pub static_dir: Option<PathBuf>,
}

/// Starts the embedded arena server.
pub fn start(options: &ServerOptions) -> io::Result<TestServer> {
    let rooms = Rooms::default();
    let mut builder = TestServer::builder()
        .without_builtin_channels()
        // Like the Phoenix app in server/: a frame that cannot be decoded gets an error reply,
        // and the connection (with the player's channel) stays up.
        .tolerate_bad_frames(true)
        .bind(options.bind)
        .port(options.port)
        .channel("arena:*", move || ArenaChannel::new(rooms.clone()));
    if let Some(dir) = &options.static_dir {
        builder = builder.static_dir(dir.clone());
    }
    builder.start()
}

/// The embedded server this process runs (if any), and whether it may start one: the first
/// window binds the port and hosts; when the host goes away, another window takes over
/// ([`take_over_hosting`]).
#[derive(Resource)]
pub struct Host {
    /// The running server, while this process hosts.
    pub server: Option<TestServer>,
    /// Where it listens.
    pub options: ServerOptions,
    /// False with `--url`/`PHOENIX_URL`, `--no-host` or `--observe`: never host.
    pub allowed: bool,
    next_try: f64,
}

impl Host {
    /// A host that does not run a server yet.
    pub fn new(options: ServerOptions, allowed: bool) -> Self {
        Host {
            server: None,
            options,
            allowed,
            next_try: 0.0,
        }
    }

    /// Binds the port and starts the server; false when someone else has the port.
    pub fn try_start(&mut self) -> bool {
        match start(&self.options) {
            Ok(s) => {
                println!(
                    "started the embedded arena server at {} (http://{}:{}/)",
                    s.url(),
                    display_host(self.options.bind),
                    s.addr().port()
                );
                self.server = Some(s);
                true
            }
            Err(e) if e.kind() == io::ErrorKind::AddrInUse => false,
            Err(e) => {
                eprintln!("arena: cannot start the embedded server: {e}");
                false
            }
        }
    }
}

/// The address to show for `ip` (`127.0.0.1` for an unspecified bind address).
pub fn display_host(ip: IpAddr) -> String {
    if ip.is_unspecified() {
        "127.0.0.1".into()
    } else {
        ip.to_string()
    }
}

/// The process that ran the embedded server went away: one of the others starts it again, on
/// the same port, and everybody reconnects to it. Never done after a real Phoenix answered
/// (`"server": "phoenix"` in the join reply): everybody waits for it to come back.
pub fn take_over_hosting(
    time: Res<Time<Real>>,
    mut host: ResMut<Host>,
    conn: Res<ArenaConnection>,
    mut log: ResMut<ChatLog>,
) {
    let now = time.elapsed_secs_f64();
    let down = matches!(
        conn.status,
        NetStatus::Reconnecting { .. } | NetStatus::Connecting
    );
    if !host.allowed || host.server.is_some() || !down || now < host.next_try {
        return;
    }
    if conn.server.as_deref() == Some("phoenix") {
        return;
    }
    // Spread the processes out, so one wins at once and the others just reconnect.
    host.next_try = now + 1.0 + fastrand::f64() * 1.5;
    if host.try_start() {
        log.add(
            LogKind::Notice,
            "The server went away: this window runs it now",
        );
    }
}

/// A stored player: the last accepted position and who owns the entry.
#[derive(Debug, Clone)]
struct Stored {
    name: String,
    color: u8,
    x: f64,
    y: f64,
    owner: u64,
}

/// Every room's players, shared by all arena channels of one server (Phoenix: an ETS table).
#[derive(Debug, Clone, Default)]
pub struct Rooms(Arc<Mutex<HashMap<String, HashMap<String, Stored>>>>);

impl Rooms {
    fn with<R>(&self, f: impl FnOnce(&mut HashMap<String, HashMap<String, Stored>>) -> R) -> R {
        f(&mut self.0.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

static OWNERS: AtomicU64 = AtomicU64::new(1);

/// One join of `arena:<room>` (Phoenix: one channel process).
pub struct ArenaChannel {
    rooms: Rooms,
    owner: u64,
    topic: String,
    id: String,
    name: String,
    color: u8,
    x: f64,
    y: f64,
    last_move: Instant,
    chat_tokens: f64,
    chat_at: Instant,
}

impl ArenaChannel {
    /// A channel value for one join, sharing `rooms` with the others.
    pub fn new(rooms: Rooms) -> Self {
        let now = Instant::now();
        ArenaChannel {
            rooms,
            owner: OWNERS.fetch_add(1, Ordering::Relaxed),
            topic: String::new(),
            id: String::new(),
            name: String::new(),
            color: 0,
            x: 0.0,
            y: 0.0,
            last_move: now,
            chat_tokens: CHAT_BURST as f64,
            chat_at: now,
        }
    }
}

fn refuse(reason: &str) -> JoinResult {
    JoinResult::Error(json!({ "reason": reason }).into())
}

fn error(reason: &str) -> HandleResult {
    HandleResult::error(json!({ "reason": reason }))
}

fn object(payload: &Payload) -> Option<&Map<String, Value>> {
    payload.as_json().and_then(Value::as_object)
}

fn spawn_point() -> (f64, f64) {
    let m = SPAWN_MARGIN as f64;
    (
        m + fastrand::f64() * (ARENA_W as f64 - 2.0 * m),
        m + fastrand::f64() * (ARENA_H as f64 - 2.0 * m),
    )
}

fn unix_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl Channel for ArenaChannel {
    fn join(&mut self, topic: &str, payload: Payload, ctx: &mut ChannelContext) -> JoinResult {
        let Some(p) = object(&payload) else {
            return refuse("invalid payload");
        };
        let Some(id) = p
            .get("id")
            .and_then(Value::as_str)
            .filter(|id| valid_id(id))
        else {
            return refuse("invalid id");
        };
        let Some(name) = p.get("name").and_then(Value::as_str).and_then(clean_name) else {
            return refuse("invalid name");
        };
        let Some(color) = p
            .get("color")
            .and_then(Value::as_u64)
            .filter(|c| *c < COLORS as u64)
        else {
            return refuse("invalid color");
        };
        let (x, y) = match (
            p.get("x").and_then(Value::as_f64),
            p.get("y").and_then(Value::as_f64),
        ) {
            (Some(x), Some(y)) if inside(x, y) => (x, y),
            _ => spawn_point(),
        };
        self.topic = topic.to_owned();
        self.id = id.to_owned();
        self.name = name.to_owned();
        self.color = color as u8;
        (self.x, self.y) = (x, y);
        self.last_move = Instant::now();
        let players = self.rooms.with(|rooms| {
            let room = rooms.entry(topic.to_owned()).or_default();
            room.insert(
                self.id.clone(),
                Stored {
                    name: self.name.clone(),
                    color: self.color,
                    x,
                    y,
                    owner: self.owner,
                },
            );
            // The joiner first, then the others by id (as the Phoenix app does).
            let mut others: Vec<(&String, &Stored)> =
                room.iter().filter(|(id, _)| **id != self.id).collect();
            others.sort_by(|a, b| a.0.cmp(b.0));
            let me = room.get_key_value(&self.id);
            me.into_iter()
                .chain(others)
                .map(|(id, s)| json!({"id": id, "name": s.name, "color": s.color, "x": s.x, "y": s.y}))
                .collect::<Vec<_>>()
        });
        ctx.send_self(json!("after_join"));
        JoinResult::Ok(
            json!({
                "you": self.id,
                "server": "embedded",
                "arena": {"w": ARENA_W, "h": ARENA_H, "max_speed": MAX_SPEED},
                "x": x,
                "y": y,
                "players": players,
            })
            .into(),
        )
    }

    fn handle_info(&mut self, msg: Value, ctx: &mut ChannelContext) -> HandleResult {
        if msg == "after_join" {
            let id = self.id.clone();
            ctx.track(
                &id,
                json!({"name": self.name, "color": self.color, "online_at": unix_seconds()}),
            );
            let state = ctx.presence_list();
            ctx.push("presence_state", state);
            ctx.broadcast_from(
                "moved",
                json!({"id": id, "x": self.x, "y": self.y, "seq": 0}),
            );
        }
        HandleResult::NoReply
    }

    fn handle_in(
        &mut self,
        event: &str,
        payload: Payload,
        ctx: &mut ChannelContext,
    ) -> HandleResult {
        match event {
            "move" => self.on_move(&payload, ctx),
            "chat" => self.on_chat(&payload, ctx),
            _ => error("unknown event"),
        }
    }

    fn terminate(&mut self, _reason: &TerminateReason, _ctx: &mut ChannelContext) {
        if self.id.is_empty() {
            return;
        }
        self.rooms.with(|rooms| {
            if let Some(room) = rooms.get_mut(&self.topic) {
                if room.get(&self.id).is_some_and(|s| s.owner == self.owner) {
                    room.remove(&self.id);
                }
                if room.is_empty() {
                    rooms.remove(&self.topic);
                }
            }
        });
    }
}

impl ArenaChannel {
    fn on_move(&mut self, payload: &Payload, ctx: &mut ChannelContext) -> HandleResult {
        let parsed = object(payload).and_then(|p| {
            Some((
                p.get("x")?.as_f64()?,
                p.get("y")?.as_f64()?,
                p.get("seq")?.as_u64()?,
            ))
        });
        let Some((x, y, seq)) = parsed else {
            return error("bad move");
        };
        let reject = |this: &Self, ctx: &mut ChannelContext, reason: &str| {
            ctx.push(
                "correct",
                json!({"x": this.x, "y": this.y, "reason": reason}),
            );
            error(reason)
        };
        if !inside(x, y) {
            return reject(self, ctx, "out of bounds");
        }
        let now = Instant::now();
        let dt = now.duration_since(self.last_move).as_secs_f64();
        if (x - self.x).hypot(y - self.y) > move_allowance(dt) {
            return reject(self, ctx, "too fast");
        }
        (self.x, self.y, self.last_move) = (x, y, now);
        let owner = self.owner;
        self.rooms.with(|rooms| {
            if let Some(s) = rooms
                .get_mut(&self.topic)
                .and_then(|r| r.get_mut(&self.id))
                .filter(|s| s.owner == owner)
            {
                (s.x, s.y) = (x, y);
            }
        });
        ctx.broadcast_from("moved", json!({"id": self.id, "x": x, "y": y, "seq": seq}));
        HandleResult::NoReply
    }

    fn on_chat(&mut self, payload: &Payload, ctx: &mut ChannelContext) -> HandleResult {
        let Some(text) = object(payload)
            .and_then(|p| p.get("text"))
            .and_then(Value::as_str)
        else {
            return error("bad chat");
        };
        let text = match clean_chat(text) {
            Ok(t) => t.to_owned(),
            Err(reason) => return error(reason),
        };
        let now = Instant::now();
        let refill = now.duration_since(self.chat_at).as_secs_f64();
        self.chat_tokens = (self.chat_tokens + refill).min(CHAT_BURST as f64);
        self.chat_at = now;
        if self.chat_tokens < 1.0 {
            return error("rate limited");
        }
        self.chat_tokens -= 1.0;
        ctx.broadcast(
            "chat",
            json!({"id": self.id, "name": self.name, "text": text, "at": unix_millis()}),
        );
        HandleResult::ok(json!({}))
    }
}
