//! Wandering headless players, so one person sees a lively room. Each bot is its own Bevy app
//! (`MinimalPlugins` + [`ArenaNetPlugin`]) with its own socket, on its own thread: exactly what a
//! separate player process would do, minus the window.

use std::thread;
use std::time::Duration;

use bevy::app::ScheduleRunnerPlugin;
use bevy::prelude::*;

use crate::net::{ArenaNetPlugin, ArenaPos, LocalPlayer, PlayerProfile, SendChat, clamp_to_arena};
use crate::protocol::{ARENA_H, ARENA_W, PLAYER_SPEED};

const LINES: [&str; 8] = [
    "hello!",
    "nice arena",
    "anyone here?",
    "race you to the corner",
    "gg",
    "brb",
    "this floor is comfy",
    "o/",
];

/// A bot's wandering state.
#[derive(Resource)]
struct Brain {
    target: Vec2,
    pause: f32,
    next_chat: f32,
    chatty: bool,
}

/// Starts `n` bots against `url` on background threads (they run until the process exits).
pub fn spawn(n: usize, url: &str, chatty: bool) {
    for i in 0..n {
        let url = url.to_owned();
        let spawned = thread::Builder::new()
            .name(format!("bot-{i}"))
            .spawn(move || run_bot(i, url, chatty));
        if let Err(e) = spawned {
            error!("cannot start bot {i}: {e}");
        }
    }
}

fn run_bot(i: usize, url: String, chatty: bool) {
    let profile = PlayerProfile {
        id: format!("bot-{}-{:04x}", i + 1, fastrand::u16(..)),
        name: format!("Bot {}", i + 1),
        color: ((i + 3) % crate::protocol::COLORS as usize) as u8,
    };
    App::new()
        .add_plugins(MinimalPlugins.set(ScheduleRunnerPlugin::run_loop(Duration::from_millis(16))))
        .add_plugins(ArenaNetPlugin::new(url, profile))
        .insert_resource(Brain {
            target: random_point(),
            pause: 0.0,
            next_chat: 15.0 + fastrand::f32() * 45.0,
            chatty,
        })
        .add_systems(Update, wander)
        .run();
}

fn random_point() -> Vec2 {
    Vec2::new(
        60.0 + fastrand::f32() * (ARENA_W - 120.0),
        60.0 + fastrand::f32() * (ARENA_H - 120.0),
    )
}

fn wander(
    time: Res<Time>,
    mut brain: ResMut<Brain>,
    mut me: Query<&mut ArenaPos, With<LocalPlayer>>,
    mut chat: MessageWriter<SendChat>,
) {
    let dt = time.delta_secs();
    let Ok(mut pos) = me.single_mut() else {
        return;
    };
    if brain.chatty {
        brain.next_chat -= dt;
        if brain.next_chat <= 0.0 {
            brain.next_chat = 15.0 + fastrand::f32() * 30.0;
            chat.write(SendChat(LINES[fastrand::usize(..LINES.len())].into()));
        }
    }
    if brain.pause > 0.0 {
        brain.pause -= dt;
        return;
    }
    let to = brain.target - pos.0;
    let step = PLAYER_SPEED * 0.55 * dt;
    if to.length() <= step {
        pos.0 = clamp_to_arena(brain.target);
        brain.target = random_point();
        brain.pause = fastrand::f32() * 1.5;
    } else {
        pos.0 = clamp_to_arena(pos.0 + to.normalize() * step);
    }
}
