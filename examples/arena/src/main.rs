//! Phoenix Arena: `cargo run --manifest-path examples/arena/Cargo.toml -- [options]`.
//!
//! ```text
//! --bots N           add N wandering players (in-process, each with its own socket)
//! --name NAME        your name (default: a random one)      --color 0..7   your colour
//! --url URL          a Phoenix socket, e.g. ws://127.0.0.1:4400/socket (or env PHOENIX_URL)
//! --port P           the default server's port (4400)      --bind IP      listen address of
//!                    the embedded server (127.0.0.1; 0.0.0.0 lets your local network join)
//! --server           no window: run the embedded server (and --bots) until killed
//! --web-dir DIR      with the embedded server: serve DIR (the web build) over HTTP on the same port
//! --observe          no window: join, print what happens, one line each (for tests)
//! --no-host          never start the embedded server; only join one
//! --screenshot PATH  save a screenshot (then quit; with --exit-after)
//! --exit-after SECS  quit after SECS seconds
//! ```
//! Without `--url`/`PHOENIX_URL` the game joins the server at 127.0.0.1:PORT, and the first window
//! that finds nobody there starts the embedded server in-process (and says so). When that window
//! closes, another window takes over as the host.

#[cfg(not(target_arch = "wasm32"))]
mod native;

#[cfg(not(target_arch = "wasm32"))]
fn main() {
    native::main();
}

#[cfg(target_arch = "wasm32")]
fn main() {
    use arena::game::GamePlugin;
    use arena::net::{ArenaNetPlugin, PlayerProfile};
    use bevy::prelude::*;
    use bevy_phoenix_channels::prelude::PhoenixDiagnosticsPlugin;

    // The socket is on the origin that served the page (as a Phoenix app serves its own assets);
    // `?url=ws://...` points the page at another server.
    let location = web_sys::window().map(|w| w.location());
    let search = location
        .as_ref()
        .and_then(|l| l.search().ok())
        .unwrap_or_default();
    let from_query = search
        .trim_start_matches('?')
        .split('&')
        .find_map(|kv| kv.strip_prefix("url="))
        .map(|u| u.replace("%3A", ":").replace("%2F", "/"));
    let url = from_query.unwrap_or_else(|| {
        let host = location
            .as_ref()
            .and_then(|l| l.host().ok())
            .unwrap_or_else(|| "127.0.0.1:4400".into());
        let secure = location
            .as_ref()
            .and_then(|l| l.protocol().ok())
            .is_some_and(|p| p == "https:");
        format!("{}://{host}/socket", if secure { "wss" } else { "ws" })
    });
    // fastrand has no entropy source on wasm32: seed it, or every tab is the same player.
    fastrand::seed((js_sys::Math::random() * u64::MAX as f64) as u64 ^ js_sys::Date::now() as u64);
    App::new()
        .add_plugins(
            DefaultPlugins
                .set(WindowPlugin {
                    primary_window: Some(Window {
                        title: "Phoenix Arena".into(),
                        canvas: Some("#arena".into()),
                        fit_canvas_to_parent: true,
                        prevent_default_event_handling: true,
                        ..default()
                    }),
                    ..default()
                })
                // Served next to the page; no .meta files (each would be a 404 request).
                .set(AssetPlugin {
                    meta_check: bevy::asset::AssetMetaCheck::Never,
                    ..default()
                }),
        )
        .add_plugins(PhoenixDiagnosticsPlugin)
        .add_plugins(ArenaNetPlugin::new(url, PlayerProfile::random()))
        .add_plugins(GamePlugin::default())
        .run();
}
