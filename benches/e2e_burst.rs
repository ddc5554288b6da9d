//! End-to-end burst receive: the test server pushes 100k `tick`s with 100-byte pads
//! (`burst {"n":100000,"size":100}` on `echo:*`) to one client, which counts them.
//!
//! `cargo bench -p bevy_phoenix_channels --bench e2e_burst`
//!
//! Clients, side by side against the same server process, runs interleaved:
//! - raw: blocking tungstenite 0.24 (`TCP_NODELAY`), every frame parsed with serde_json into
//!   `(Option<&str>, Option<&str>, &str, &str, &RawValue)`;
//! - plugin: a headless app (`MinimalPlugins` + `PhoenixChannelsPlugin`), `app.update()` in an
//!   uncapped loop until a system in `Update` has counted 100k `ChannelMessage`s;
//! - phoenix.js 1.8.16 on node with `ws` (`benches/js/bench.mjs`);
//! - Bevy floor: what any Bevy client that hands frames to the game as `Message`s must do, and
//!   nothing else: the raw client's socket made nonblocking and read by a `PreUpdate` system
//!   (the same parse), each frame written as a `Message` the size of `ChannelMessage`, counted by
//!   the same kind of `Update` system, in the same headless app (single-threaded executor,
//!   blocking on the socket when a frame finds nothing, as `WaitForNetwork` does). No protocol
//!   (no refs, routing, channels, presence, heartbeat). `BPC_E2E_ONLY=floor` runs it alone.
//!
//! Time runs from the `burst` push to the last tick counted. Client CPU is the client process's
//! (all threads) over the same span; the server runs in a child process. Without `--bench`
//! (`cargo test --benches`) it runs one small smoke round and prints no table.
//!
//! `BPC_E2E_FIXED_US=200` sets the plugin and floor apps' fixed timestep to 200 µs. Bevy clears
//! `Messages` only after `FixedUpdate` has run (so fixed-step systems see every message), so at the
//! default 64 Hz an uncapped app keeps about 31 ms of received messages alive; with 200 µs it keeps
//! about two frames' worth. This shows what that retention costs; it is not a setting to ship.
#![allow(missing_docs, clippy::unwrap_used)]

#[path = "e2e_support/mod.rs"]
mod support;

use std::hint::black_box;
use std::io::ErrorKind;
use std::ops::Range;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bevy::prelude::*;
use bevy_phoenix_channels::prelude::*;
use support::{Frame, Raw, ServerProcess};

const SIZE: usize = 100;

/// One run of one client.
#[derive(Clone, Copy, Debug)]
struct Sample {
    secs: f64,
    client_cpu: Duration,
    server_cpu: Duration,
    frames: u64,
}

fn raw(server: &ServerProcess, n: u64) -> Sample {
    let mut c = Raw::connect(server);
    c.join(&support::topic("raw-burst"));
    let (cpu0, scpu0) = (support::self_cpu(), server_stat_cpu(server));
    let t0 = Instant::now();
    c.write_push("burst", &format!(r#"{{"n":{n},"size":{SIZE}}}"#));
    c.flush();
    let mut ticks = 0;
    while ticks < n {
        let text = c.read_text();
        let f: Frame = serde_json::from_str(&text).unwrap();
        if f.3 == "tick" {
            black_box(f.4);
            ticks += 1;
        }
    }
    let secs = t0.elapsed().as_secs_f64();
    let s = Sample {
        secs,
        client_cpu: support::self_cpu() - cpu0,
        server_cpu: server_stat_cpu(server) - scpu0,
        frames: 0,
    };
    c.close();
    s
}

#[derive(Resource, Default)]
struct Ticks {
    target: u64,
    seen: u64,
    done: Option<Instant>,
}

impl Ticks {
    /// Counts `k` more ticks; the first time the target is reached is the end of the burst.
    fn add(&mut self, k: u64) {
        self.seen += k;
        if self.seen >= self.target && self.done.is_none() {
            self.done = Some(Instant::now());
        }
    }
}

fn count_ticks(mut inbox: MessageReader<ChannelMessage>, mut t: ResMut<Ticks>) {
    t.add(inbox.read().filter(|m| &*m.event == "tick").count() as u64);
}

fn plugin(server: &ServerProcess, n: u64, single: bool, wait: bool, ewebsock: bool) -> Sample {
    let mut app = support::plugin_app_on(&server.url, ewebsock);
    app.insert_resource(Ticks {
        target: u64::MAX,
        ..default()
    })
    .add_systems(Update, count_ticks);
    fixed_timestep_from_env(&mut app);
    if single {
        support::single_threaded(&mut app);
    }
    if wait {
        support::wait_for_network(&mut app);
    }
    let channel = support::join(&mut app, &support::topic("plugin-burst"));
    app.world_mut().resource_mut::<Ticks>().target = n;
    let (cpu0, scpu0) = (support::self_cpu(), server_stat_cpu(server));
    let t0 = Instant::now();
    app.world_mut().write_message(
        PushMessage::json(channel, "burst", &serde_json::json!({"n": n, "size": SIZE})).unwrap(),
    );
    run_burst(&mut app, server, n, (t0, cpu0, scpu0), "plugin")
}

/// Updates `app` until its `Ticks` counted `n`, and measures from `start` (time, client CPU,
/// server CPU).
fn run_burst(
    app: &mut App,
    server: &ServerProcess,
    n: u64,
    (t0, cpu0, scpu0): (Instant, Duration, Duration),
    what: &str,
) -> Sample {
    let deadline = t0 + Duration::from_secs(60);
    let mut frames = 0;
    let done = loop {
        app.update();
        frames += 1;
        if let Some(done) = app.world().resource::<Ticks>().done {
            break done;
        }
        assert!(Instant::now() < deadline, "{what} burst timed out");
    };
    let s = Sample {
        secs: (done - t0).as_secs_f64(),
        client_cpu: support::self_cpu() - cpu0,
        server_cpu: server_stat_cpu(server) - scpu0,
        frames,
    };
    assert_eq!(app.world().resource::<Ticks>().seen, n);
    s
}

/// `BPC_E2E_FIXED_US` (see the module doc).
fn fixed_timestep_from_env(app: &mut App) {
    if let Some(us) = std::env::var("BPC_E2E_FIXED_US")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        app.insert_resource(Time::<Fixed>::from_duration(Duration::from_micros(us)));
    }
}

/// The floor's message: `ChannelMessage`'s fields (a payload is a view of the frame's buffer).
#[derive(Message)]
#[allow(dead_code)]
struct FloorMessage {
    socket: Entity,
    channel: Entity,
    topic: Arc<str>,
    event: Arc<str>,
    payload: (tungstenite::Utf8Bytes, Range<usize>),
    broadcast: bool,
}

/// The floor's socket, its topic, the last event name (interned as the plugin does) and the
/// plugin's default read budget (frames per socket per update).
#[derive(Resource)]
struct FloorSocket {
    client: Raw,
    topic: Arc<str>,
    event: Arc<str>,
    budget: usize,
}

/// Reads what the socket has (up to the plugin's per-frame budget) into `FloorMessage`s; when the
/// first read finds nothing, blocks until the socket is readable (the floor's `WaitForNetwork`).
fn floor_read(mut sock: ResMut<FloorSocket>, mut out: MessageWriter<FloorMessage>) {
    let FloorSocket {
        client,
        topic,
        event,
        budget,
    } = &mut *sock;
    for i in 0..*budget {
        let text = match client.ws.read() {
            Ok(tungstenite::Message::Text(t)) => t,
            Ok(_) => continue,
            Err(tungstenite::Error::Io(e)) if e.kind() == ErrorKind::WouldBlock => {
                if i == 0 {
                    let s = client.ws.get_mut();
                    s.set_nonblocking(false).unwrap();
                    let _ = s.peek(&mut [0u8; 1]);
                    s.set_nonblocking(true).unwrap();
                }
                return;
            }
            Err(e) => panic!("floor read: {e}"),
        };
        let (span, broadcast) = {
            let f: Frame = serde_json::from_str(&text).unwrap();
            if f.3 != &**event {
                *event = f.3.into();
            }
            let start = f.4.get().as_ptr() as usize - text.as_ptr() as usize;
            (start..start + f.4.get().len(), f.0.is_none())
        };
        out.write(FloorMessage {
            socket: Entity::PLACEHOLDER,
            channel: Entity::PLACEHOLDER,
            topic: topic.clone(),
            event: event.clone(),
            payload: (text, span),
            broadcast,
        });
    }
}

fn floor_count(mut inbox: MessageReader<FloorMessage>, mut t: ResMut<Ticks>) {
    t.add(inbox.read().filter(|m| &*m.event == "tick").count() as u64);
}

fn floor(server: &ServerProcess, n: u64) -> Sample {
    let mut client = Raw::connect(server);
    client.join(&support::topic("floor-burst"));
    let topic = client.topic.as_str().into();
    let mut app = App::new();
    app.add_plugins(MinimalPlugins)
        .add_message::<FloorMessage>()
        .insert_resource(Ticks {
            target: n,
            ..default()
        })
        .add_systems(PreUpdate, floor_read)
        .add_systems(Update, floor_count);
    fixed_timestep_from_env(&mut app);
    app.finish();
    app.cleanup();
    support::single_threaded(&mut app);
    let (cpu0, scpu0) = (support::self_cpu(), server_stat_cpu(server));
    let t0 = Instant::now();
    client.write_push("burst", &format!(r#"{{"n":{n},"size":{SIZE}}}"#));
    client.flush();
    // The wait in `floor_read` blocks at most this long, so the deadline below still holds.
    let stream = client.ws.get_mut();
    stream
        .set_read_timeout(Some(Duration::from_secs(1)))
        .unwrap();
    stream.set_nonblocking(true).unwrap();
    app.insert_resource(FloorSocket {
        client,
        topic,
        event: "tick".into(),
        budget: PhoenixSocketConfig::new(server.url.as_str()).max_frames_per_update,
    });
    run_burst(&mut app, server, n, (t0, cpu0, scpu0), "floor")
}

fn js(server: &ServerProcess, n: u64) -> Sample {
    let scpu0 = server_stat_cpu(server);
    let r = support::run_js(server, &["burst", &n.to_string(), &SIZE.to_string()]);
    assert_eq!(r.n, n);
    Sample {
        secs: r.secs,
        client_cpu: Duration::from_secs_f64(r.cpu_us / 1e6),
        // Includes node's connect and join (a few frames): negligible next to 100k ticks.
        server_cpu: server_stat_cpu(server) - scpu0,
        frames: 0,
    }
}

/// Server CPU from `/proc/PID/stat` (10 ms ticks, but it keeps the time of connection threads
/// that have ended, which node's connection has by the time we read it).
fn server_stat_cpu(server: &ServerProcess) -> Duration {
    server.stat_cpu()
}

fn main() {
    support::serve_if_child();
    let full = support::full();
    let n: u64 = if full { 100_000 } else { 1_000 };
    let server = ServerProcess::spawn();
    let with_js = support::js_available();
    let mut results: Vec<(&str, Vec<Sample>)> = support::empty_rows();
    const FLOOR: &str = "Bevy floor: tungstenite → Messages, no protocol";
    results.push((FLOOR, Vec::new()));
    let floor_row = results.len() - 1;
    for run in 0..support::runs() {
        if support::enabled("raw") {
            let r = raw(&server, n);
            eprintln!("run {run}: raw {r:?}");
            results[0].1.push(r);
        }
        if support::enabled("plugin") {
            for (i, single, wait, ewebsock) in support::plugin_rows() {
                let p = plugin(&server, n, single, wait, ewebsock);
                support::settle(ewebsock);
                eprintln!("run {run}: {} {p:?}", results[i].0);
                results[i].1.push(p);
            }
        }
        if support::enabled("floor") {
            let f = floor(&server, n);
            eprintln!("run {run}: {FLOOR} {f:?}");
            results[floor_row].1.push(f);
        }
        if with_js && support::enabled("js") {
            let j = js(&server, n);
            eprintln!("run {run}: phoenix.js {j:?}");
            results[2].1.push(j);
        }
    }
    if !full {
        println!("e2e_burst smoke round ok");
        return;
    }
    let rate =
        |v: &[Sample]| support::median(&v.iter().map(|s| n as f64 / s.secs).collect::<Vec<_>>());
    let cpu = |v: &[Sample]| {
        support::median(
            &v.iter()
                .map(|s| s.client_cpu.as_secs_f64() * 1e6 / n as f64)
                .collect::<Vec<_>>(),
        )
    };
    let scpu = |v: &[Sample]| {
        support::median(
            &v.iter()
                .map(|s| s.server_cpu.as_secs_f64() * 1e6 / n as f64)
                .collect::<Vec<_>>(),
        )
    };
    let (raw_rate, raw_cpu) = (rate(&results[0].1), cpu(&results[0].1));
    println!(
        "\n### Burst receive: {n} ticks of {SIZE}-byte pads (medians of {} runs)\n",
        support::runs()
    );
    println!("| client | msgs/s | × raw | client CPU µs/msg | × raw | server CPU µs/msg |");
    println!("|---|---|---|---|---|---|");
    for (name, v) in &results {
        if v.is_empty() {
            println!("| {name} | skipped | | | | |");
            continue;
        }
        let (r, c) = (rate(v), cpu(v));
        println!(
            "| {name} | {r:.0} | {} | {c:.2} | {} | {:.2} |",
            support::ratio(r, raw_rate),
            support::ratio(c, raw_cpu),
            scpu(v)
        );
    }
    for (e, b) in support::EWEBSOCK_PAIRS {
        let (ev, bv) = (&results[e].1, &results[b].1);
        if ev.is_empty() || bv.is_empty() {
            continue;
        }
        println!(
            "\n{} ÷ {}: msgs/s {}, client CPU/msg {}",
            results[e].0,
            results[b].0,
            support::ratio(rate(ev), rate(bv)),
            support::ratio(cpu(ev), cpu(bv)),
        );
    }
    for (name, v) in results
        .iter()
        .filter(|(name, v)| (name.starts_with("plugin") || *name == FLOOR) && !v.is_empty())
    {
        let frames = support::median(&v.iter().map(|s| s.frames as f64).collect::<Vec<_>>());
        println!("\n{name}: median {frames:.0} app.update() calls per burst");
    }
    let best = support::ROWS[5];
    if let (Some((_, p)), f) = (
        results.iter().find(|(name, _)| *name == best),
        &results[floor_row].1,
    ) && !p.is_empty()
        && !f.is_empty()
    {
        println!(
            "\n{best} ÷ floor: msgs/s {}, client CPU/msg {} (message sizes: ChannelMessage {} bytes, floor's {})",
            support::ratio(rate(p), rate(f)),
            support::ratio(cpu(p), cpu(f)),
            std::mem::size_of::<ChannelMessage>(),
            std::mem::size_of::<FloorMessage>(),
        );
    }
    println!("all runs (msgs/s):");
    for (name, v) in &results {
        let all: Vec<String> = v
            .iter()
            .map(|s| format!("{:.0}", n as f64 / s.secs))
            .collect();
        println!("  {name}: {}", all.join(", "));
    }
    println!("{}", support::machine_note());
}
