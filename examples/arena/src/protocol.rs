//! The arena channel's messages and rules ([`PROTOCOL.md`](../PROTOCOL.md)), shared by the game
//! client, the bots and the embedded server. No Bevy and no I/O here.

use serde::{Deserialize, Serialize};

/// The room everybody joins.
pub const LOBBY: &str = "arena:lobby";
/// Arena width in arena units (x grows to the right).
pub const ARENA_W: f32 = 1200.0;
/// Arena height in arena units (y grows downwards, as on screen).
pub const ARENA_H: f32 = 800.0;
/// The fastest a player may move, in units per second (the server checks it).
pub const MAX_SPEED: f32 = 320.0;
/// How fast the game moves a player (a margin under [`MAX_SPEED`]).
pub const PLAYER_SPEED: f32 = 280.0;
/// A player's radius: the game keeps players this far from the walls.
pub const PLAYER_RADIUS: f32 = 22.0;
/// Spawn points are at least this far from the walls.
pub const SPAWN_MARGIN: f32 = 40.0;
/// Longest name, in characters, after trimming.
pub const NAME_MAX: usize = 16;
/// Longest id, in characters.
pub const ID_MAX: usize = 24;
/// Longest chat message, in characters, after trimming.
pub const CHAT_MAX: usize = 200;
/// Chat messages allowed in a burst (the bucket refills one per second).
pub const CHAT_BURST: f32 = 5.0;
/// Number of player colours (a palette index `0..COLORS`).
pub const COLORS: u8 = 8;
/// The default port of both servers (embedded and `server/`).
pub const DEFAULT_PORT: u16 = 4400;

/// The player colours, as sRGB.
pub const PALETTE: [[f32; 3]; COLORS as usize] = [
    [0.95, 0.33, 0.31], // red
    [0.29, 0.56, 0.96], // blue
    [0.35, 0.82, 0.42], // green
    [0.98, 0.80, 0.25], // yellow
    [0.72, 0.45, 0.95], // purple
    [0.99, 0.56, 0.20], // orange
    [0.25, 0.85, 0.86], // cyan
    [0.97, 0.47, 0.78], // pink
];

/// The join payload (`phx_join` of `arena:<room>`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JoinRequest {
    /// The player's id (stays the same across reconnects).
    pub id: String,
    /// The shown name.
    pub name: String,
    /// Palette index.
    pub color: u8,
    /// Where the player was (sent when coming back after a reconnect).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub x: Option<f32>,
    /// Where the player was.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub y: Option<f32>,
}

/// The arena's size and speed limit, as the server announces them.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ArenaInfo {
    /// Width.
    pub w: f32,
    /// Height.
    pub h: f32,
    /// Speed limit (units per second).
    pub max_speed: f32,
}

impl Default for ArenaInfo {
    fn default() -> Self {
        ArenaInfo {
            w: ARENA_W,
            h: ARENA_H,
            max_speed: MAX_SPEED,
        }
    }
}

/// One player in a join snapshot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlayerSnapshot {
    /// Player id.
    pub id: String,
    /// Shown name.
    pub name: String,
    /// Palette index.
    pub color: u8,
    /// Last accepted x.
    pub x: f32,
    /// Last accepted y.
    pub y: f32,
}

/// The join reply: who we are, where we start, and everyone in the room.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JoinReply {
    /// Our id, as the server took it.
    pub you: String,
    /// `"embedded"` (the Rust server in this game) or `"phoenix"` (the Elixir app in `server/`).
    pub server: String,
    /// The arena.
    pub arena: ArenaInfo,
    /// Where we start.
    pub x: f32,
    /// Where we start.
    pub y: f32,
    /// Everyone in the room, us included.
    pub players: Vec<PlayerSnapshot>,
}

/// `move`, client to server.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Move {
    /// New x.
    pub x: f32,
    /// New y.
    pub y: f32,
    /// Increasing sequence number.
    pub seq: u64,
}

impl bevy_phoenix_channels::plugin::ChannelEvent for Move {
    const EVENT: &'static str = "move";
}

/// `moved`, server to the others: a move with the mover's id, added by the server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Moved {
    /// Who moved.
    pub id: String,
    /// New x.
    pub x: f32,
    /// New y.
    pub y: f32,
    /// The mover's sequence number (0: just joined).
    pub seq: u64,
}

/// `correct`, server to the mover: a move was refused, go back here.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Correct {
    /// Last accepted x.
    pub x: f32,
    /// Last accepted y.
    pub y: f32,
    /// Why (`"too fast"`, `"out of bounds"`).
    pub reason: String,
}

/// `chat`, client to server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatSend {
    /// The text (trimmed and checked by the server).
    pub text: String,
}

impl bevy_phoenix_channels::plugin::ChannelEvent for ChatSend {
    const EVENT: &'static str = "chat";
}

/// `chat`, server to everyone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatLine {
    /// Sender id.
    pub id: String,
    /// Sender name.
    pub name: String,
    /// The text.
    pub text: String,
    /// Unix milliseconds when the server took it.
    pub at: u64,
}

/// An error reply's payload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Refusal {
    /// Why.
    pub reason: String,
}

/// A presence meta of the arena channel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlayerMeta {
    /// Shown name.
    pub name: String,
    /// Palette index.
    pub color: u8,
}

/// True for an id of 1..=24 characters of `A-Z a-z 0-9 _ -`.
pub fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= ID_MAX
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// The trimmed name if it has 1..=16 characters and no control characters.
pub fn clean_name(name: &str) -> Option<&str> {
    let name = name.trim();
    let n = name.chars().count();
    ((1..=NAME_MAX).contains(&n) && !name.chars().any(char::is_control)).then_some(name)
}

/// The trimmed chat text, or the refusal reason.
pub fn clean_chat(text: &str) -> Result<&str, &'static str> {
    let text = text.trim();
    match text.chars().count() {
        0 => Err("empty"),
        n if n > CHAT_MAX => Err("too long"),
        _ => Ok(text),
    }
}

/// True when `(x, y)` is inside the arena.
pub fn inside(x: f64, y: f64) -> bool {
    x.is_finite()
        && y.is_finite()
        && (0.0..=ARENA_W as f64).contains(&x)
        && (0.0..=ARENA_H as f64).contains(&y)
}

/// The farthest a move may go after `dt` seconds since the last accepted one.
pub fn move_allowance(dt_secs: f64) -> f64 {
    MAX_SPEED as f64 * dt_secs.clamp(0.0, 1.0) * 1.5 + 48.0
}

/// A fresh player id, e.g. `p-3fa2c1d0`.
pub fn new_player_id() -> String {
    format!("p-{:08x}", fastrand::u32(..))
}

/// A name for a new player, e.g. `Swift Fox`.
pub fn new_player_name() -> String {
    const ADJ: [&str; 8] = [
        "Swift", "Brave", "Quiet", "Lucky", "Clever", "Jolly", "Sly", "Bold",
    ];
    const NOUN: [&str; 8] = [
        "Fox", "Otter", "Heron", "Lynx", "Badger", "Wren", "Moth", "Newt",
    ];
    format!(
        "{} {}",
        ADJ[fastrand::usize(..ADJ.len())],
        NOUN[fastrand::usize(..NOUN.len())]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_names_and_chat() {
        assert!(valid_id("p-3fa2c1d0"));
        assert!(valid_id("bot_1"));
        assert!(!valid_id(""));
        assert!(!valid_id("a b"));
        assert!(!valid_id(&"x".repeat(25)));
        assert_eq!(clean_name("  Ada  "), Some("Ada"));
        assert_eq!(clean_name("   "), None);
        assert_eq!(clean_name(&"é".repeat(16)), Some("éééééééééééééééé"));
        assert_eq!(clean_name(&"é".repeat(17)), None);
        assert_eq!(clean_name("a\u{7}b"), None);
        assert_eq!(clean_chat("  hi "), Ok("hi"));
        assert_eq!(clean_chat(" \n "), Err("empty"));
        assert_eq!(clean_chat(&"x".repeat(201)), Err("too long"));
        assert!(inside(0.0, 800.0));
        assert!(!inside(-0.1, 10.0));
        assert!(!inside(f64::NAN, 10.0));
        assert!(!inside(10.0, f64::INFINITY));
        assert_eq!(move_allowance(10.0), move_allowance(1.0));
        assert_eq!(move_allowance(0.0), 48.0);
    }
}
