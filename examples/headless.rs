//! A headless bot: joins `room:lobby`, watches presence, shouts, and prints what it receives.
//!
//! ```sh
//! cargo run --example headless                      # starts the bundled test server
//! PHOENIX_URL=ws://127.0.0.1:4000/socket cargo run --example headless   # a real Phoenix
//! ```
//!
//! It exits by itself after `BOT_SECONDS` seconds (default 5).

use std::time::Duration;

use bevy::prelude::*;
use bevy_phoenix_channels::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Debug)]
struct Shout {
    from: String,
    text: String,
}

#[derive(Resource)]
struct Bot {
    name: String,
    shouts_sent: u32,
    timer: Timer,
    quit: Timer,
}

/// The server to talk to: `PHOENIX_URL`, or the bundled test server started in-process.
#[cfg(not(target_arch = "wasm32"))]
fn server() -> (Option<phoenix_test_server::TestServer>, String) {
    match std::env::var("PHOENIX_URL") {
        Ok(url) if !url.is_empty() => (None, url),
        _ => {
            let server = phoenix_test_server::start().expect("start the test server");
            let url = server.url();
            println!("started the bundled test server at {url}");
            (Some(server), url)
        }
    }
}

/// In the browser there is no in-process server: `PHOENIX_URL` at build time, or localhost.
#[cfg(target_arch = "wasm32")]
fn server() -> ((), String) {
    let url = option_env!("PHOENIX_URL").unwrap_or("ws://127.0.0.1:4000/socket");
    ((), url.to_owned())
}

fn main() {
    let (_server, url) = server();
    let seconds: f32 = std::env::var("BOT_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5.0);
    let name = format!("bot-{}", std::process::id());

    App::new()
        // MinimalPlugins, the plugin and the headless preset: the single-threaded executor and
        // no frame cap, with WaitForNetwork sleeping until the server sends something
        // (natively; the browser paces frames itself), and at most 16 ms, so the timers tick.
        .add_plugins(PhoenixHeadlessPlugins::new(url).up_to(Duration::from_millis(16)))
        .add_plugins(bevy::log::LogPlugin::default())
        .insert_resource(Bot {
            name: name.clone(),
            shouts_sent: 0,
            timer: Timer::from_seconds(1.0, TimerMode::Repeating),
            quit: Timer::from_seconds(seconds, TimerMode::Once),
        })
        .add_systems(Startup, move |mut commands: Commands| {
            commands
                .join_channel(
                    PhoenixChannel::new("room:lobby")
                        .with_payload(&serde_json::json!({ "user_id": name }))
                        .expect("a JSON object always encodes"),
                )
                .observe(|joined: On<ChannelJoined>| {
                    println!("joined {} (rejoin: {})", joined.topic, joined.rejoin);
                });
        })
        .add_systems(
            Update,
            (shout.run_if(channel_joined("room:lobby")), print, quit),
        )
        .run();
}

fn shout(time: Res<Time>, mut bot: ResMut<Bot>, mut commands: Commands) {
    if !bot.timer.tick(time.delta()).just_finished() {
        return;
    }
    bot.shouts_sent += 1;
    let shout = Shout {
        from: bot.name.clone(),
        text: format!("hello #{}", bot.shouts_sent),
    };
    match PushMessage::json("room:lobby", "shout", &shout) {
        Ok(msg) => {
            commands.push(msg);
        }
        Err(e) => error!("cannot encode shout: {e}"),
    }
}

fn print(
    mut messages: MessageReader<ChannelMessage>,
    mut replies: MessageReader<PushReplied>,
    mut presence: MessageReader<PresenceChanged>,
    lists: Query<&ChannelPresence>,
) {
    for m in messages.read() {
        match m.decode::<Shout>() {
            Ok(s) => println!("{} {}: {} says {:?}", m.topic, m.event, s.from, s.text),
            Err(_) => println!("{} {}: {:?}", m.topic, m.event, m.payload),
        }
    }
    for r in replies.read() {
        println!("reply to {} on {}: {:?}", r.event, r.topic, r.outcome);
    }
    for p in presence.read() {
        if let PresenceEvent::Change(change) = &p.event {
            println!("presence on {}: {change:?}", p.topic);
        }
        if let (PresenceEvent::Sync, Ok(list)) = (&p.event, lists.get(p.channel)) {
            let online: Vec<&String> = list.state.keys().collect();
            println!("online in {}: {online:?}", p.topic);
        }
    }
}

fn quit(time: Res<Time<Real>>, mut bot: ResMut<Bot>, mut exit: MessageWriter<AppExit>) {
    if bot.quit.tick(time.delta()).just_finished() {
        println!("bot done after {} shouts", bot.shouts_sent);
        exit.write(AppExit::Success);
    }
}
