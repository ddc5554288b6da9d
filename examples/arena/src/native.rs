//! The native entry point: options, finding or starting the server, and the three modes
//! (window, `--server`, `--observe`).

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::time::Duration;

use arena::bots;
use arena::game::GamePlugin;
use arena::net::{
    ArenaConnection, ArenaNetPlugin, ChatLog, LogKind, NetStatus, Player, PlayerProfile,
    RemotePlayer,
};
use arena::protocol::{COLORS, DEFAULT_PORT, clean_name};
use arena::server::{Host, ServerOptions, display_host, take_over_hosting};
use bevy::app::ScheduleRunnerPlugin;
use bevy::prelude::*;
use bevy_phoenix_channels::prelude::*;

struct Options {
    bots: usize,
    name: Option<String>,
    color: Option<u8>,
    url: Option<String>,
    port: u16,
    bind: IpAddr,
    server_only: bool,
    web_dir: Option<PathBuf>,
    observe: bool,
    no_host: bool,
    screenshot: Option<PathBuf>,
    exit_after: Option<f32>,
}

fn parse() -> Result<Options, String> {
    let mut o = Options {
        bots: 0,
        name: None,
        color: None,
        url: std::env::var("PHOENIX_URL").ok().filter(|u| !u.is_empty()),
        port: DEFAULT_PORT,
        bind: IpAddr::V4(Ipv4Addr::LOCALHOST),
        server_only: false,
        web_dir: None,
        observe: false,
        no_host: false,
        screenshot: None,
        exit_after: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = |name: &str| args.next().ok_or(format!("{name} needs a value"));
        match a.as_str() {
            "--bots" => {
                o.bots = value("--bots")?
                    .parse()
                    .map_err(|e| format!("--bots: {e}"))?
            }
            "--name" => {
                let n = value("--name")?;
                o.name = Some(
                    clean_name(&n)
                        .ok_or("--name: 1 to 16 characters")?
                        .to_owned(),
                );
            }
            "--color" => {
                let c: u8 = value("--color")?
                    .parse()
                    .map_err(|e| format!("--color: {e}"))?;
                if c >= COLORS {
                    return Err(format!("--color: 0 to {}", COLORS - 1));
                }
                o.color = Some(c);
            }
            "--url" => o.url = Some(value("--url")?),
            "--port" => {
                o.port = value("--port")?
                    .parse()
                    .map_err(|e| format!("--port: {e}"))?
            }
            "--bind" => {
                o.bind = value("--bind")?
                    .parse()
                    .map_err(|e| format!("--bind: {e}"))?
            }
            "--server" => o.server_only = true,
            "--web-dir" => o.web_dir = Some(value("--web-dir")?.into()),
            "--observe" => o.observe = true,
            "--no-host" => o.no_host = true,
            "--screenshot" => o.screenshot = Some(value("--screenshot")?.into()),
            "--exit-after" => {
                o.exit_after = Some(
                    value("--exit-after")?
                        .parse()
                        .map_err(|e| format!("--exit-after: {e}"))?,
                )
            }
            "--" => {} // `cargo arena -- --bots 3` works as well as `cargo arena --bots 3`
            "-h" | "--help" => {
                println!(
                    "{}",
                    include_str!("main.rs")
                        .lines()
                        .filter_map(|l| l.strip_prefix("//! "))
                        .collect::<Vec<_>>()
                        .join("\n")
                );
                std::process::exit(0);
            }
            other => return Err(format!("unknown option {other:?} (try --help)")),
        }
    }
    Ok(o)
}

pub fn main() {
    let o = match parse() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("arena: {e}");
            std::process::exit(2);
        }
    };
    // A hosting window also serves the web build (examples/arena/dist, made by web.sh), so a
    // browser tab can join whichever process hosts.
    let default_dist = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/dist"));
    let options = ServerOptions {
        bind: o.bind,
        port: o.port,
        static_dir: o
            .web_dir
            .clone()
            .or_else(|| default_dist.is_dir().then_some(default_dist)),
    };
    let mut host = Host::new(options, o.url.is_none() && !o.no_host && !o.observe);
    let url = o
        .url
        .clone()
        .unwrap_or_else(|| format!("ws://{}:{}/socket", display_host(o.bind), o.port));
    if host.allowed || o.server_only {
        // Binding is the test: whoever gets the port hosts; everyone else joins them.
        if !host.try_start() && o.server_only {
            eprintln!(
                "arena: port {} is taken (a game window hosting already serves the web build from \
                 examples/arena/dist: open http://{}:{}/), or use --port",
                o.port,
                display_host(o.bind),
                o.port
            );
            std::process::exit(1);
        }
        if host.server.is_none() {
            println!("joining the arena server already running at {url}");
        }
    }
    if o.server_only {
        if o.bots > 0 {
            bots::spawn(o.bots, &url, true);
        }
        if let Some(dir) = &o.web_dir {
            println!(
                "serving {} at http://{}:{}/",
                dir.display(),
                display_host(o.bind),
                o.port
            );
        }
        match o.exit_after {
            Some(s) => std::thread::sleep(Duration::from_secs_f32(s)),
            None => loop {
                std::thread::park();
            },
        }
        return;
    }
    let profile = PlayerProfile {
        name: o.name.clone().unwrap_or_else(|| {
            if o.observe {
                "Observer".into()
            } else {
                arena::protocol::new_player_name()
            }
        }),
        color: o.color.unwrap_or_else(|| fastrand::u8(..COLORS)),
        ..PlayerProfile::random()
    };
    if o.observe {
        observe(url, profile, o.exit_after);
        return;
    }
    if o.bots > 0 {
        bots::spawn(o.bots, &url, true);
    }
    let assets = concat!(env!("CARGO_MANIFEST_DIR"), "/../../assets");
    let assets = if std::path::Path::new(assets).is_dir() {
        assets.to_owned()
    } else {
        "assets".to_owned() // next to the executable
    };
    App::new()
        .add_plugins(
            DefaultPlugins
                .set(WindowPlugin {
                    primary_window: Some(Window {
                        title: format!("Phoenix Arena - {}", profile.name),
                        resolution: (1280, 820).into(),
                        ..default()
                    }),
                    ..default()
                })
                .set(AssetPlugin {
                    file_path: assets,
                    // Our assets have no .meta files: do not look for them.
                    meta_check: bevy::asset::AssetMetaCheck::Never,
                    ..default()
                }),
        )
        .add_plugins(PhoenixDiagnosticsPlugin)
        .add_plugins(ArenaNetPlugin::new(url, profile))
        .add_plugins(GamePlugin {
            screenshot: o.screenshot,
            exit_after: o.exit_after,
        })
        .insert_resource(host)
        .add_systems(Update, take_over_hosting)
        .run();
}

/// `--observe`: a headless player that prints what it sees, one line per fact.
fn observe(url: String, profile: PlayerProfile, exit_after: Option<f32>) {
    #[derive(Resource)]
    struct Quit(Option<f32>);
    let mut app = App::new();
    app.add_plugins(MinimalPlugins.set(ScheduleRunnerPlugin::run_loop(Duration::from_millis(5))))
        .add_plugins(ArenaNetPlugin::new(url, profile))
        .insert_resource(Quit(exit_after))
        .add_systems(
            Update,
            |time: Res<Time<Real>>,
             quit: Res<Quit>,
             conn: Res<ArenaConnection>,
             mut last: Local<Option<NetStatus>>,
             mut log_seen: Local<u64>,
             log: Res<ChatLog>,
             players: Query<(&Player, &RemotePlayer)>,
             mut printed: Local<std::collections::HashMap<String, f64>>,
             mut exit: MessageWriter<AppExit>| {
                if last.as_ref() != Some(&conn.status) {
                    println!("STATUS {:?}", conn.status);
                    *last = Some(conn.status.clone());
                }
                // Each position heard once, as it arrives.
                for (p, r) in &players {
                    if let Some(&(t, at)) = r.samples.back()
                        && printed.get(&p.id) != Some(&t)
                    {
                        printed.insert(p.id.clone(), t);
                        println!("PLAYER {} {:?} {:.1} {:.1}", p.id, p.name, at.x, at.y);
                    }
                }
                let new = (log.version - *log_seen) as usize;
                *log_seen = log.version;
                let skip = log.lines.len().saturating_sub(new);
                for l in log.lines.iter().skip(skip) {
                    match &l.kind {
                        LogKind::Chat { name, .. } => println!("CHAT {name:?} {:?}", l.text),
                        _ => println!("NOTICE {:?}", l.text),
                    }
                }
                if quit.0.is_some_and(|s| time.elapsed_secs() >= s) {
                    exit.write(AppExit::Success);
                }
            },
        );
    app.run();
}
