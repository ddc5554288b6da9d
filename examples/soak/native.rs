//! The soak run itself (native only): see `main.rs`.

use std::time::{Duration, Instant};

use bevy::prelude::*;
use bevy_phoenix_channels::prelude::*;
use bevy_phoenix_channels::protocol::socket::SocketFootprint;
use serde_json::json;

/// The process's allocator, counting live bytes across all threads (no `unsafe` here: `cap`
/// wraps the system allocator).
#[global_allocator]
static HEAP: cap::Cap<std::alloc::System> = cap::Cap::new(std::alloc::System, usize::MAX);

#[derive(Debug, Clone)]
struct Opts {
    messages: u64,
    pushes: u64,
    names: u64,
    window: u64,
    burst: u64,
    sample: u64,
    warmup: u64,
    heap_tolerance: u64,
    rss_tolerance: u64,
    /// A server to use instead of the embedded one (then only the client is measured).
    url: Option<String>,
}

impl Default for Opts {
    fn default() -> Self {
        Opts {
            messages: 1_000_000,
            pushes: 1_000_000,
            names: 1_000_000,
            window: 512,
            burst: 500,
            sample: 50_000,
            warmup: 300_000,
            heap_tolerance: 1 << 20,
            rss_tolerance: 8 << 20,
            url: None,
        }
    }
}

fn parse_args() -> Result<Opts, String> {
    let mut o = Opts::default();
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        if flag == "--help" || flag == "-h" {
            return Err(
                "usage: soak [--messages N] [--pushes N] [--names N] [--window N] \
                        [--burst N] [--sample N] [--warmup N] [--heap-tolerance-kib N] \
                        [--rss-tolerance-kib N] [--url ws://HOST:PORT/socket]"
                    .into(),
            );
        }
        let value = args.next().ok_or(format!("{flag} needs a value"))?;
        if flag == "--url" {
            o.url = Some(value);
            continue;
        }
        let n = value
            .parse::<f64>()
            .map_err(|e| format!("{flag} {value}: {e}"))? as u64;
        match flag.as_str() {
            "--messages" => o.messages = n,
            "--pushes" => o.pushes = n,
            "--names" => o.names = n,
            "--window" => o.window = n.max(1),
            "--burst" => o.burst = n.max(1),
            "--sample" => o.sample = n.max(1),
            "--warmup" => o.warmup = n,
            "--heap-tolerance-kib" => o.heap_tolerance = n * 1024,
            "--rss-tolerance-kib" => o.rss_tolerance = n * 1024,
            _ => return Err(format!("unknown flag {flag} (--help)")),
        }
    }
    Ok(o)
}

/// `VmRSS` and `VmHWM` from `/proc/self/status`, in bytes.
fn rss() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
            .unwrap_or(0)
            * 1024
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// One measurement.
#[derive(Debug, Clone, Copy)]
struct Sample {
    messages: u64,
    pushes: u64,
    rss: u64,
    hwm: u64,
    heap: u64,
    footprint: SocketFootprint,
}

fn print_footprint(label: &str, f: &SocketFootprint) {
    println!(
        "{label} pushes {} deadlines {} buffered {} names {} channels {} slots {} topics {} join_refs {} outputs {} events {}",
        f.pushes,
        f.deadlines,
        f.buffered,
        f.names,
        f.channels,
        f.channel_slots,
        f.topics,
        f.join_refs,
        f.outputs,
        f.events
    );
}

fn mib(b: u64) -> f64 {
    b as f64 / (1024.0 * 1024.0)
}

fn print_sample(label: &str, s: &Sample) {
    let f = &s.footprint;
    println!(
        "{label:<14} msgs {:>8} pushes {:>8} | RSS {:>7.2} MiB HWM {:>7.2} MiB heap {:>7.2} MiB | pushes {} deadlines {} buffered {} names {} channels {}/{} join_refs {} outputs {} events {}",
        s.messages,
        s.pushes,
        mib(s.rss),
        mib(s.hwm),
        mib(s.heap),
        f.pushes,
        f.deadlines,
        f.buffered,
        f.names,
        f.channels,
        f.channel_slots,
        f.join_refs,
        f.outputs,
        f.events
    );
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Steady,
    Names,
    Done,
}

#[derive(Resource)]
struct Soak {
    opts: Opts,
    phase: Phase,
    /// Pushes made and resolved, this phase.
    issued: u64,
    resolved: u64,
    /// Messages received, this phase (ticks or named ones).
    received: u64,
    /// Tick messages asked for with bursts, this phase.
    requested: u64,
    not_ok: u64,
    wrong_name: u64,
    next_sample: u64,
    /// Every `--sample` messages + pushes, per phase.
    samples: Vec<(Phase, Sample)>,
    /// When a phase ended: idle (every push answered, every asked message here).
    idle: Vec<Sample>,
    max_footprint: SocketFootprint,
}

fn measure(soak: &Soak, footprint: SocketFootprint) -> Sample {
    let (rss, hwm) = rss();
    Sample {
        messages: soak.received,
        pushes: soak.resolved,
        rss,
        hwm,
        heap: HEAP.allocated() as u64,
        footprint,
    }
}

fn soak_system(
    mut soak: ResMut<Soak>,
    sockets: Query<&PhoenixSocket, With<DefaultSocket>>,
    joined: Query<&ChannelStatus>,
    mut replies: MessageReader<PushReplied>,
    mut messages: MessageReader<ChannelMessage>,
    mut out: MessageWriter<PushMessage>,
) {
    let soak = &mut *soak;
    for r in replies.read() {
        soak.resolved += 1;
        if !r.is_ok() {
            soak.not_ok += 1;
        }
    }
    for m in messages.read() {
        match soak.phase {
            Phase::Steady => {
                if m.is("tick") {
                    soak.received += 1;
                }
            }
            Phase::Names => {
                // n<i>: every name new.
                if m.event.starts_with('n') {
                    soak.received += 1;
                } else {
                    soak.wrong_name += 1;
                }
            }
            Phase::Done => {}
        }
    }
    let Ok(socket) = sockets.single() else {
        return;
    };
    let footprint = socket.core().footprint();
    let mf = &mut soak.max_footprint;
    mf.pushes = mf.pushes.max(footprint.pushes);
    mf.deadlines = mf.deadlines.max(footprint.deadlines);
    mf.buffered = mf.buffered.max(footprint.buffered);
    mf.names = mf.names.max(footprint.names);
    mf.channels = mf.channels.max(footprint.channels);
    mf.channel_slots = mf.channel_slots.max(footprint.channel_slots);
    mf.topics = mf.topics.max(footprint.topics);
    mf.join_refs = mf.join_refs.max(footprint.join_refs);
    mf.outputs = mf.outputs.max(footprint.outputs);
    mf.events = mf.events.max(footprint.events);
    if joined.iter().any(|s| s.0 != ChannelState::Joined) {
        return;
    }
    let progress = soak.received + soak.resolved;
    if progress >= soak.next_sample {
        soak.next_sample += soak.opts.sample;
        let s = measure(soak, footprint);
        soak.samples.push((soak.phase, s));
        print_sample(
            match soak.phase {
                Phase::Steady => "steady",
                _ => "names",
            },
            &s,
        );
    }
    let o = soak.opts.clone();
    let in_flight = soak.issued - soak.resolved;
    let (target_msgs, target_pushes) = match soak.phase {
        Phase::Steady => (o.messages, o.pushes),
        Phase::Names => (o.names, o.names),
        Phase::Done => return,
    };
    let all_in = soak.received >= soak.requested && in_flight == 0;
    if soak.issued >= target_pushes && soak.requested >= target_msgs && all_in {
        // Phase over and idle: the end measurement.
        let s = measure(soak, footprint);
        print_sample("idle", &s);
        soak.idle.push(s);
        soak.phase = match soak.phase {
            Phase::Steady if o.names > 0 => Phase::Names,
            _ => Phase::Done,
        };
        soak.issued = 0;
        soak.resolved = 0;
        soak.received = 0;
        soak.requested = 0;
        soak.next_sample = 0;
        return;
    }
    let mut room = o.window.saturating_sub(in_flight);
    while room > 0 {
        let msg = match soak.phase {
            Phase::Steady => {
                // Ticks outstanding are bounded too (four bursts), so the server's queue is.
                let ticks_due = soak.requested - soak.received;
                if soak.requested < target_msgs && ticks_due < 4 * o.burst {
                    let n = o.burst.min(target_msgs - soak.requested);
                    soak.requested += n;
                    PushMessage::json("echo:soak", "burst", &json!({ "n": n, "size": 16 }))
                } else if soak.issued < target_pushes {
                    PushMessage::json("echo:soak", "echo", &json!({ "i": soak.issued }))
                } else {
                    break;
                }
            }
            _ if soak.issued < target_pushes => {
                // One message per push, under a name never used before.
                let i = soak.issued;
                soak.requested += 1;
                PushMessage::json(
                    "echo:soak",
                    "push_me",
                    &json!({ "event": format!("n{i}"), "payload": { "i": i } }),
                )
            }
            _ => break,
        };
        let Ok(msg) = msg else { break };
        out.write(msg);
        soak.issued += 1;
        room -= 1;
    }
}

pub fn main() {
    let opts = match parse_args() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    // The embedded server, unless `--url` names one (e.g. `cargo run --release -p
    // phoenix_test_server` in another process, so that memory is the client's alone).
    let (server, url) = match &opts.url {
        Some(u) => (None, u.clone()),
        None => {
            let s = phoenix_test_server::start().expect("start the test server");
            let u = s.url();
            (Some(s), u)
        }
    };
    println!(
        "soak: server {url} ({}), {opts:?}",
        if server.is_some() {
            "embedded: its memory is counted too"
        } else {
            "external: only the client is measured"
        }
    );
    let mut app = App::new();
    app.add_plugins(MinimalPlugins)
        .add_plugins(PhoenixChannelsPlugin::new(url))
        .insert_resource(WaitForNetwork::up_to(Duration::from_millis(5)))
        .insert_resource(Soak {
            opts: opts.clone(),
            phase: Phase::Steady,
            issued: 0,
            resolved: 0,
            received: 0,
            requested: 0,
            not_ok: 0,
            wrong_name: 0,
            next_sample: 0,
            samples: Vec::new(),
            idle: Vec::new(),
            max_footprint: SocketFootprint::default(),
        })
        .add_systems(Startup, |mut commands: Commands| {
            commands.join_channel(PhoenixChannel::new("echo:soak"));
        })
        .add_systems(Update, soak_system);
    let start = Instant::now();
    let mut phase_start = start;
    let mut phase_times = Vec::new();
    let mut last = Phase::Steady;
    loop {
        app.update();
        let phase = app.world().resource::<Soak>().phase;
        if phase != last {
            phase_times.push(phase_start.elapsed().as_secs_f64());
            phase_start = Instant::now();
            last = phase;
        }
        if phase == Phase::Done {
            break;
        }
        if start.elapsed() > Duration::from_secs(3600) {
            println!("INVARIANT FAILED: not done after an hour");
            std::process::exit(1);
        }
    }
    let soak = app.world().resource::<Soak>();
    let o = &soak.opts;
    let mut ok = true;
    let mut fail = |what: String| {
        ok = false;
        println!("INVARIANT FAILED: {what}");
    };
    println!("\n===== soak summary =====");
    println!(
        "wall {:.1} s (steady {:.1} s, names {:.1} s)",
        start.elapsed().as_secs_f64(),
        phase_times.first().copied().unwrap_or(0.0),
        phase_times.get(1).copied().unwrap_or(0.0)
    );
    if soak.not_ok > 0 {
        fail(format!("{} pushes did not end ok", soak.not_ok));
    }
    if soak.wrong_name > 0 {
        fail(format!(
            "{} messages with an unexpected name",
            soak.wrong_name
        ));
    }
    // Per phase: flatness from the end of the warm-up to the end of the phase. One sample is
    // noisy (messages in flight, the server's queues, Bevy's message buffers), so the start and
    // the end are each the median of `WINDOW` samples; the least-squares slope over every
    // sample after the warm-up says how many bytes a million operations would add.
    const WINDOW: usize = 5;
    let mut idle = soak.idle.iter();
    for (name, phase) in [("steady", Phase::Steady), ("names", Phase::Names)] {
        let Some(end) = idle.next() else { break };
        let after: Vec<Sample> = soak
            .samples
            .iter()
            .filter(|(p, s)| *p == phase && s.messages + s.pushes >= o.warmup)
            .map(|(_, s)| *s)
            .collect();
        if after.len() < 2 * WINDOW {
            println!(
                "{name}: only {} samples after a warm-up of {} ops: too short to judge flatness (need {})",
                after.len(),
                o.warmup,
                2 * WINDOW
            );
            continue;
        }
        let median = |v: &[Sample], f: fn(&Sample) -> u64| {
            let mut x: Vec<u64> = v.iter().map(f).collect();
            x.sort_unstable();
            x[x.len() / 2]
        };
        let first = &after[..WINDOW];
        let last = &after[after.len() - WINDOW..];
        let (heap0, heap1) = (median(first, |s| s.heap), median(last, |s| s.heap));
        let (rss0, rss1) = (median(first, |s| s.rss), median(last, |s| s.rss));
        let ops = |s: &Sample| (s.messages + s.pushes) as f64;
        let n = after.len() as f64;
        let mx = after.iter().map(ops).sum::<f64>() / n;
        let my = after.iter().map(|s| s.heap as f64).sum::<f64>() / n;
        let sxy: f64 = after
            .iter()
            .map(|s| (ops(s) - mx) * (s.heap as f64 - my))
            .sum();
        let sxx: f64 = after.iter().map(|s| (ops(s) - mx).powi(2)).sum();
        let slope = if sxx > 0.0 { sxy / sxx * 1e6 } else { 0.0 };
        let peak_heap = after.iter().map(|s| s.heap).max().unwrap_or(0);
        let peak_rss = after.iter().map(|s| s.rss).max().unwrap_or(0);
        println!("{name}: {} samples after the warm-up", after.len());
        print_sample("  after warm-up", &first[0]);
        print_sample("  last sample", &last[WINDOW - 1]);
        print_sample("  idle end", end);
        println!(
            "  heap: start {:.2} MiB (median of {WINDOW}), peak {:.2} MiB, end {:.2} MiB (median of {WINDOW}), idle {:.2} MiB; slope {:+.0} bytes per million ops",
            mib(heap0),
            mib(peak_heap),
            mib(heap1),
            mib(end.heap),
            slope
        );
        println!(
            "  RSS:  start {:.2} MiB, peak {:.2} MiB, end {:.2} MiB, idle {:.2} MiB; VmHWM {:.2} MiB",
            mib(rss0),
            mib(peak_rss),
            mib(rss1),
            mib(end.rss),
            mib(end.hwm)
        );
        println!(
            "  growth start -> end: heap {:+.3} MiB (tolerance {:.2}), RSS {:+.3} MiB (tolerance {:.2})",
            (heap1 as f64 - heap0 as f64) / 1048576.0,
            mib(o.heap_tolerance),
            (rss1 as f64 - rss0 as f64) / 1048576.0,
            mib(o.rss_tolerance)
        );
        print_footprint("  footprint start", &first[0].footprint);
        print_footprint("  footprint idle ", &end.footprint);
        if heap1 > heap0 + o.heap_tolerance {
            fail(format!("{name}: heap grew {} bytes", heap1 - heap0));
        }
        if end.heap > heap0 + o.heap_tolerance {
            fail(format!(
                "{name}: idle heap {} bytes above the start",
                end.heap - heap0
            ));
        }
        if rss1 > rss0 + o.rss_tolerance {
            fail(format!("{name}: RSS grew {} bytes", rss1 - rss0));
        }
        let f = end.footprint;
        if f.pushes != 0 || f.buffered != 0 || f.outputs != 0 || f.events != 0 {
            fail(format!("{name}: the core is not empty when idle: {f:?}"));
        }
        if f.channels != 1 || f.topics != 1 || f.join_refs != 1 || f.channel_slots != 1 {
            fail(format!("{name}: channel tables grew: {f:?}"));
        }
        if f.deadlines > 2 * o.window as usize + 1024 {
            fail(format!("{name}: the timeout heap holds {}", f.deadlines));
        }
    }
    let mf = soak.max_footprint;
    println!("largest footprint seen: {mf:?}");
    if mf.names > 1024 {
        fail(format!("{} event names interned (bound 1024)", mf.names));
    }
    // The window, plus the joins/heartbeats in flight.
    if mf.pushes > o.window as usize + 8 {
        fail(format!(
            "{} pushes in the table (window {})",
            mf.pushes, o.window
        ));
    }
    drop(server);
    if !ok {
        println!("FAILED");
        std::process::exit(1);
    }
    println!("PASSED");
}
