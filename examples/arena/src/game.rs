//! The window: the arena floor and walls, players as tinted sprites with name labels, the online
//! list, the chat (Enter to type), and a banner with the connection state. Everything it shows
//! comes from [`crate::net`]'s data; this module only draws it and reads the keyboard.

use std::fmt::Write as _;
use std::path::PathBuf;

use bevy::camera::ScalingMode;
use bevy::diagnostic::DiagnosticsStore;
use bevy::input::keyboard::{Key, KeyboardInput};
use bevy::prelude::*;
use bevy::render::view::screenshot::{Screenshot, save_to_disk};
use bevy::sprite::{Anchor, Text2dShadow};
use bevy_phoenix_channels::prelude::*;

use crate::net::{
    ArenaConnection, ArenaPos, ChatLog, LocalPlayer, LogKind, NetStatus, Player, RemotePlayer,
    SendChat, clamp_to_arena,
};
use crate::protocol::{ARENA_H, ARENA_W, CHAT_MAX, PALETTE, PLAYER_SPEED};

/// Chat lines shown under the arena.
const SHOWN_LINES: usize = 8;
const WALL: f32 = 32.0;
const FONT: &str = "fonts/DejaVuSans.ttf";
const FONT_BOLD: &str = "fonts/DejaVuSans-Bold.ttf";

/// Draws the game and reads the keyboard. Add it after [`crate::net::ArenaNetPlugin`].
#[derive(Default)]
pub struct GamePlugin {
    /// Save a screenshot of the window here, then quit (`--screenshot`).
    pub screenshot: Option<PathBuf>,
    /// Quit after this many seconds (`--exit-after`); the screenshot is taken a second before.
    pub exit_after: Option<f32>,
}

/// A palette colour.
pub fn palette(i: u8) -> Color {
    let [r, g, b] = PALETTE[i as usize % PALETTE.len()];
    Color::srgb(r, g, b)
}

/// Arena coordinates (y down) to world coordinates (centred, y up).
pub fn to_world(p: Vec2) -> Vec2 {
    Vec2::new(p.x - ARENA_W / 2.0, ARENA_H / 2.0 - p.y)
}

/// What the chat input holds.
#[derive(Resource, Debug, Default)]
pub struct ChatInput {
    /// True while typing (movement keys type instead of moving).
    pub open: bool,
    /// The text typed so far.
    pub text: String,
}

#[derive(Resource)]
struct GameAssets {
    player: Handle<Image>,
    shadow: Handle<Image>,
    ring: Handle<Image>,
    font: Handle<Font>,
    bold: Handle<Font>,
}

#[derive(Resource)]
struct Capture {
    path: Option<PathBuf>,
    exit_after: Option<f32>,
    taken: bool,
}

#[derive(Component)]
struct Body;
#[derive(Component)]
struct Label;
#[derive(Component)]
struct Banner;
#[derive(Component)]
struct OnlineList;
#[derive(Component)]
struct ChatLines;
#[derive(Component)]
struct ChatPrompt;

impl Plugin for GamePlugin {
    fn build(&self, app: &mut App) {
        app.insert_resource(ClearColor(Color::srgb(0.07, 0.08, 0.10)))
            .init_resource::<ChatInput>()
            .insert_resource(Capture {
                path: self.screenshot.clone(),
                exit_after: self.exit_after,
                taken: false,
            })
            .add_systems(Startup, setup)
            .add_observer(add_player_visuals)
            .add_systems(
                Update,
                (
                    chat_keys,
                    move_local.after(chat_keys),
                    place_players.after(move_local),
                    style_players,
                    update_banner,
                    update_online,
                    update_chat,
                    capture_and_quit,
                ),
            );
    }
}

fn setup(mut commands: Commands, assets: Res<AssetServer>) {
    let a = GameAssets {
        player: assets.load("sprites/player.png"),
        shadow: assets.load("sprites/shadow.png"),
        ring: assets.load("sprites/ring.png"),
        font: assets.load(FONT),
        bold: assets.load(FONT_BOLD),
    };
    commands.spawn((
        Camera2d,
        Projection::Orthographic(OrthographicProjection {
            // The arena and its walls always fit, with room for the panels at the sides.
            scaling_mode: ScalingMode::AutoMin {
                min_width: ARENA_W + 2.0 * WALL + 240.0,
                min_height: ARENA_H + 2.0 * WALL + 150.0,
            },
            ..OrthographicProjection::default_2d()
        }),
        // The arena sits left of centre: the online list has the right-hand margin.
        Transform::from_xyz(100.0, -40.0, 0.0),
    ));
    // Floor: one tiled sprite.
    commands.spawn((
        Sprite {
            image: assets.load("sprites/floor.png"),
            custom_size: Some(Vec2::new(ARENA_W, ARENA_H)),
            image_mode: SpriteImageMode::Tiled {
                tile_x: true,
                tile_y: true,
                stretch_value: 1.0,
            },
            ..default()
        },
        Transform::from_xyz(0.0, 0.0, 0.0),
    ));
    // Walls: four tiled strips.
    let wall = assets.load("sprites/wall.png");
    let (w, h) = (ARENA_W + 2.0 * WALL, ARENA_H + 2.0 * WALL);
    for (size, at) in [
        (Vec2::new(w, WALL), Vec2::new(0.0, (ARENA_H + WALL) / 2.0)),
        (Vec2::new(w, WALL), Vec2::new(0.0, -(ARENA_H + WALL) / 2.0)),
        (Vec2::new(WALL, h), Vec2::new(-(ARENA_W + WALL) / 2.0, 0.0)),
        (Vec2::new(WALL, h), Vec2::new((ARENA_W + WALL) / 2.0, 0.0)),
    ] {
        commands.spawn((
            Sprite {
                image: wall.clone(),
                custom_size: Some(size),
                image_mode: SpriteImageMode::Tiled {
                    tile_x: true,
                    tile_y: true,
                    stretch_value: 1.0,
                },
                ..default()
            },
            Transform::from_translation(at.extend(0.5)),
        ));
    }

    let panel = Color::srgba(0.04, 0.05, 0.07, 0.78);
    let text = |size: f32, font: &Handle<Font>| TextFont {
        font: font.clone().into(),
        font_size: FontSize::Px(size),
        ..default()
    };
    // Banner, top centre.
    commands
        .spawn(Node {
            position_type: PositionType::Absolute,
            top: px(10),
            width: percent(100),
            justify_content: JustifyContent::Center,
            ..default()
        })
        .with_child((
            Node {
                padding: UiRect::axes(px(14), px(6)),
                border_radius: BorderRadius::all(px(8)),
                ..default()
            },
            BackgroundColor(panel),
            Text::new("Connecting..."),
            text(18.0, &a.bold),
            TextColor(Color::srgb(1.0, 0.8, 0.3)),
            Banner,
        ));
    // Online list, top right.
    commands.spawn((
        Node {
            position_type: PositionType::Absolute,
            top: px(10),
            right: px(10),
            min_width: px(190),
            flex_direction: FlexDirection::Column,
            padding: UiRect::all(px(10)),
            row_gap: px(3),
            border_radius: BorderRadius::all(px(8)),
            ..default()
        },
        BackgroundColor(panel),
        OnlineList,
    ));
    // Chat, bottom left: the log, then the prompt.
    commands
        .spawn((
            Node {
                position_type: PositionType::Absolute,
                bottom: px(10),
                left: px(10),
                width: px(520),
                flex_direction: FlexDirection::Column,
                padding: UiRect::all(px(10)),
                row_gap: px(6),
                border_radius: BorderRadius::all(px(8)),
                ..default()
            },
            BackgroundColor(panel),
        ))
        .with_children(|p| {
            p.spawn((
                Node {
                    flex_direction: FlexDirection::Column,
                    row_gap: px(2),
                    ..default()
                },
                ChatLines,
            ));
            p.spawn((
                Text::new(""),
                text(15.0, &a.font),
                TextColor(Color::srgb(0.6, 0.65, 0.7)),
                ChatPrompt,
            ));
        });
    commands.insert_resource(a);
}

fn add_player_visuals(
    add: On<Add, Player>,
    mut commands: Commands,
    assets: Res<GameAssets>,
    players: Query<(&Player, Has<LocalPlayer>)>,
) {
    let Ok((player, local)) = players.get(add.entity) else {
        return;
    };
    let mut e = commands.entity(add.entity);
    e.insert((Transform::default(), Visibility::Hidden));
    e.with_children(|p| {
        p.spawn((
            Sprite {
                image: assets.shadow.clone(),
                custom_size: Some(Vec2::new(50.0, 25.0)),
                ..default()
            },
            Transform::from_xyz(0.0, -20.0, -0.2),
        ));
        if local {
            p.spawn((
                Sprite {
                    image: assets.ring.clone(),
                    color: Color::srgba(1.0, 0.95, 0.6, 0.9),
                    custom_size: Some(Vec2::splat(66.0)),
                    ..default()
                },
                Transform::from_xyz(0.0, -2.0, -0.1),
            ));
        }
        p.spawn((
            Sprite {
                image: assets.player.clone(),
                color: palette(player.color),
                custom_size: Some(Vec2::splat(48.0)),
                ..default()
            },
            Body,
        ));
        p.spawn((
            Text2d::new(player.name.clone()),
            TextFont {
                font: assets.bold.clone().into(),
                font_size: FontSize::Px(15.0),
                ..default()
            },
            TextColor(Color::WHITE),
            Text2dShadow {
                offset: Vec2::new(1.5, -1.5),
                color: Color::srgba(0.0, 0.0, 0.0, 0.8),
            },
            Anchor::BOTTOM_CENTER,
            Transform::from_xyz(0.0, 28.0, 0.5),
            Label,
        ));
    });
}

fn move_local(
    keys: Res<ButtonInput<KeyCode>>,
    time: Res<Time>,
    input: Res<ChatInput>,
    mut me: Query<&mut ArenaPos, With<LocalPlayer>>,
) {
    if input.open {
        return;
    }
    let Ok(mut pos) = me.single_mut() else {
        return;
    };
    let pressed = |a: KeyCode, b: KeyCode| keys.pressed(a) || keys.pressed(b);
    let mut dir = Vec2::ZERO;
    if pressed(KeyCode::KeyA, KeyCode::ArrowLeft) {
        dir.x -= 1.0;
    }
    if pressed(KeyCode::KeyD, KeyCode::ArrowRight) {
        dir.x += 1.0;
    }
    if pressed(KeyCode::KeyW, KeyCode::ArrowUp) {
        dir.y -= 1.0;
    }
    if pressed(KeyCode::KeyS, KeyCode::ArrowDown) {
        dir.y += 1.0;
    }
    if dir != Vec2::ZERO {
        // The local player moves at once; the network catches up at 20 Hz.
        let step = dir.normalize() * PLAYER_SPEED * time.delta_secs().min(0.1);
        pos.0 = clamp_to_arena(pos.0 + step);
    }
}

fn place_players(
    mut players: Query<(
        &ArenaPos,
        &mut Transform,
        &mut Visibility,
        Option<&RemotePlayer>,
    )>,
) {
    for (pos, mut tf, mut vis, remote) in &mut players {
        let w = to_world(pos.0);
        // Lower on screen is nearer: drawn on top.
        let z = 10.0 + pos.0.y / ARENA_H;
        tf.translation = w.extend(z);
        let shown = remote.is_none_or(RemotePlayer::placed);
        vis.set_if_neq(if shown {
            Visibility::Inherited
        } else {
            Visibility::Hidden
        });
    }
}

fn style_players(
    players: Query<(&Player, Option<&RemotePlayer>, &Children)>,
    mut bodies: Query<&mut Sprite, With<Body>>,
    mut labels: Query<(&mut Text2d, &mut TextColor), With<Label>>,
) {
    for (player, remote, children) in &players {
        let stale = remote.is_some_and(|r| !r.live);
        for child in children.iter() {
            if let Ok(mut sprite) = bodies.get_mut(child) {
                let c = palette(player.color).with_alpha(if stale { 0.3 } else { 1.0 });
                if sprite.color != c {
                    sprite.color = c;
                }
            }
            if let Ok((mut text, mut color)) = labels.get_mut(child) {
                if text.0 != player.name {
                    text.0.clone_from(&player.name);
                }
                let c = if stale {
                    Color::srgba(0.7, 0.7, 0.7, 0.6)
                } else {
                    Color::WHITE
                };
                color.set_if_neq(TextColor(c));
            }
        }
    }
}

fn update_banner(
    time: Res<Time<Real>>,
    conn: Res<ArenaConnection>,
    diagnostics: Res<DiagnosticsStore>,
    players: Query<(), With<Player>>,
    mut banner: Query<(&mut Text, &mut TextColor), With<Banner>>,
    mut line: Local<String>,
) {
    let Ok((mut text, mut color)) = banner.single_mut() else {
        return;
    };
    let amber = Color::srgb(1.0, 0.78, 0.3);
    let red = Color::srgb(1.0, 0.42, 0.38);
    // Written into a reused buffer every frame (the countdown moves); the Text changes only
    // when the words do.
    line.clear();
    let c = match &conn.status {
        NetStatus::Connecting => {
            let _ = write!(line, "Connecting to {}...", conn.url);
            amber
        }
        NetStatus::Joining => {
            line.push_str("Connected, joining the arena...");
            amber
        }
        NetStatus::Joined => {
            let server = conn.server.as_deref().unwrap_or("?");
            let _ = write!(line, "Connected ({server} server) | ");
            match diagnostics
                .get(&PhoenixDiagnosticsPlugin::RTT)
                .and_then(|d| d.value())
            {
                Some(ms) => write!(line, "round trip {ms:.1} ms"),
                None => write!(line, "round trip: measuring"),
            }
            .ok();
            let _ = write!(line, " | {} online", players.iter().count());
            Color::srgb(0.45, 0.9, 0.5)
        }
        NetStatus::Reconnecting { at, attempt } => {
            let left = at - time.elapsed_secs_f64();
            if left > 0.05 {
                let _ = write!(line, "Connection lost: reconnecting in {left:.1} s");
            } else {
                line.push_str("Connection lost: reconnecting now");
            }
            let _ = write!(line, " (attempt {attempt})");
            red
        }
        NetStatus::Refused(status) => {
            let _ = write!(line, "Refused by the server (HTTP {status})");
            red
        }
        NetStatus::JoinRefused(reason) => {
            let _ = write!(line, "The server refused to let us in: {reason}");
            red
        }
    };
    if text.0 != *line {
        text.0.clone_from(&line);
    }
    color.set_if_neq(TextColor(c));
}

/// A player's name, colour or liveness may have changed.
type RosterChanged = Or<(Changed<Player>, Changed<RemotePlayer>)>;

fn update_online(
    mut commands: Commands,
    assets: Res<GameAssets>,
    players: Query<(&Player, Has<LocalPlayer>, Option<&RemotePlayer>)>,
    changed: Query<(), RosterChanged>,
    mut removed: RemovedComponents<Player>,
    list: Query<Entity, With<OnlineList>>,
    mut shown: Local<Vec<(String, u8, bool, bool)>>,
) {
    // Only when a player came, went or changed (interpolation does not count as a change).
    let gone = removed.read().count() > 0;
    if changed.is_empty() && !gone {
        return;
    }
    let Ok(list) = list.single() else {
        return;
    };
    let mut now: Vec<(String, u8, bool, bool)> = players
        .iter()
        .map(|(p, local, r)| (p.name.clone(), p.color, local, r.is_none_or(|r| r.live)))
        .collect();
    now.sort();
    if *shown == now {
        return;
    }
    let font = |size: f32| TextFont {
        font: assets.bold.clone().into(),
        font_size: FontSize::Px(size),
        ..default()
    };
    commands.entity(list).despawn_related::<Children>();
    commands.entity(list).with_children(|p| {
        p.spawn((
            Text::new(format!("Online ({})", now.len())),
            font(16.0),
            TextColor(Color::srgb(0.85, 0.88, 0.92)),
        ));
        for (name, color, local, live) in &now {
            let label = if *local {
                format!("● {name} (you)")
            } else {
                format!("● {name}")
            };
            let c = if *live {
                palette(*color)
            } else {
                palette(*color).with_alpha(0.4)
            };
            p.spawn((Text::new(label), font(14.0), TextColor(c)));
        }
    });
    *shown = now;
}

fn update_chat(
    mut commands: Commands,
    assets: Res<GameAssets>,
    log: Res<ChatLog>,
    input: Res<ChatInput>,
    lines: Query<Entity, With<ChatLines>>,
    mut prompt: Query<(&mut Text, &mut TextColor), With<ChatPrompt>>,
    mut shown: Local<Option<u64>>,
) {
    if input.is_changed()
        && let Ok((mut text, mut color)) = prompt.single_mut()
    {
        let (t, c) = if input.open {
            (format!("> {}_", input.text), Color::WHITE)
        } else {
            (
                "Enter: chat   WASD / arrows: move".to_owned(),
                Color::srgb(0.55, 0.6, 0.66),
            )
        };
        if text.0 != t {
            text.0 = t;
        }
        color.set_if_neq(TextColor(c));
    }
    if *shown == Some(log.version) {
        return;
    }
    *shown = Some(log.version);
    let Ok(lines) = lines.single() else {
        return;
    };
    let font = |f: &Handle<Font>| TextFont {
        font: f.clone().into(),
        font_size: FontSize::Px(15.0),
        ..default()
    };
    commands.entity(lines).despawn_related::<Children>();
    commands.entity(lines).with_children(|p| {
        let skip = log.lines.len().saturating_sub(SHOWN_LINES);
        for line in log.lines.iter().skip(skip) {
            match &line.kind {
                LogKind::Chat { name, color } => {
                    p.spawn((
                        Text::new(format!("{name}: ")),
                        font(&assets.bold),
                        TextColor(palette(*color)),
                    ))
                    .with_child((
                        TextSpan::new(line.text.clone()),
                        font(&assets.font),
                        TextColor(Color::srgb(0.92, 0.93, 0.95)),
                    ));
                }
                LogKind::Notice => {
                    p.spawn((
                        Text::new(line.text.clone()),
                        font(&assets.font),
                        TextColor(Color::srgb(0.6, 0.7, 0.8)),
                    ));
                }
                LogKind::Error => {
                    p.spawn((
                        Text::new(line.text.clone()),
                        font(&assets.font),
                        TextColor(Color::srgb(1.0, 0.5, 0.45)),
                    ));
                }
            }
        }
    });
}

fn chat_keys(
    mut keys: MessageReader<KeyboardInput>,
    mut input: ResMut<ChatInput>,
    mut send: MessageWriter<SendChat>,
) {
    for k in keys.read() {
        if !k.state.is_pressed() {
            continue;
        }
        match &k.logical_key {
            Key::Enter => {
                if input.open {
                    let text = std::mem::take(&mut input.text);
                    if !text.trim().is_empty() {
                        send.write(SendChat(text));
                    }
                    input.open = false;
                } else {
                    input.open = true;
                }
            }
            Key::Escape if input.open => {
                input.open = false;
                input.text.clear();
            }
            Key::Backspace if input.open => {
                input.text.pop();
            }
            Key::Space if input.open => push_text(&mut input.text, " "),
            Key::Character(c) if input.open => push_text(&mut input.text, c),
            _ => {}
        }
    }
}

fn push_text(text: &mut String, add: &str) {
    for ch in add.chars().filter(|c| !c.is_control()) {
        if text.chars().count() >= CHAT_MAX {
            return;
        }
        text.push(ch);
    }
}

fn capture_and_quit(
    mut commands: Commands,
    time: Res<Time<Real>>,
    mut capture: ResMut<Capture>,
    mut exit: MessageWriter<AppExit>,
) {
    let Some(after) = capture.exit_after else {
        return;
    };
    let t = time.elapsed_secs();
    if let Some(path) = capture.path.clone() {
        if !capture.taken && t >= (after - 1.5).max(0.5) {
            capture.taken = true;
            info!("arena: saving a screenshot to {}", path.display());
            commands
                .spawn(Screenshot::primary_window())
                .observe(save_to_disk(path));
        }
        // Wait for the file (the capture takes a few frames), up to 20 s more.
        let saved = capture.path.as_ref().is_some_and(|p| p.exists());
        if capture.taken && !(saved || t >= after + 20.0) {
            return;
        }
    }
    if t >= after {
        exit.write(AppExit::Success);
    }
}
