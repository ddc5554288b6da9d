//! The swarm itself (native only): see `main.rs`.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use bevy::prelude::*;
use bevy_phoenix_channels::prelude::*;
use serde::Serialize;

/// What to run (the command line's options).
pub struct Options {
    /// Bots, one socket each.
    pub bots: usize,
    /// Rooms (`room:swarm-K`); 0 = one per 10 bots.
    pub rooms: usize,
    /// Moves per bot per second.
    pub rate: f64,
    /// Length of the pushing phase.
    pub seconds: f64,
    /// The server; `None` starts the embedded test server.
    pub url: Option<String>,
    /// No `WaitForNetwork`: an uncapped loop.
    pub spin: bool,
    /// A fixed frame rate instead of `WaitForNetwork`.
    pub tick: Option<Duration>,
    /// Each socket's read buffer, bytes.
    pub read_buffer: usize,
    /// One JSON line instead of the human report.
    pub json: bool,
    /// Channels track presence.
    pub presence: bool,
    /// Wake the frame loop for each bot's next move (`WaitForNetwork::wake_by`) instead of
    /// sending what is due at the next wake-up.
    pub on_time: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            bots: 100,
            rooms: 0,
            rate: 5.0,
            seconds: 10.0,
            url: None,
            spin: false,
            tick: None,
            // Many sockets in one process: small read buffers (the library's default is 16 KiB).
            read_buffer: 1024,
            json: false,
            presence: true,
            on_time: false,
        }
    }
}

fn options() -> Options {
    let mut o = Options {
        url: std::env::var("PHOENIX_URL").ok().filter(|u| !u.is_empty()),
        ..Options::default()
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = |name: &str| {
            args.next()
                .unwrap_or_else(|| usage(&format!("{name} needs a value")))
        };
        match a.as_str() {
            "--bots" => o.bots = parse(&value("--bots")),
            "--rooms" => o.rooms = parse(&value("--rooms")),
            "--rate" => o.rate = parse(&value("--rate")),
            "--seconds" => o.seconds = parse(&value("--seconds")),
            "--url" => o.url = Some(value("--url")),
            "--spin" => o.spin = true,
            "--tick-ms" => {
                let ms: f64 = parse(&value("--tick-ms"));
                o.tick = (ms > 0.0).then(|| Duration::from_secs_f64(ms / 1000.0));
            }
            "--read-buffer" => o.read_buffer = parse(&value("--read-buffer")),
            "--json" => o.json = true,
            "--no-presence" => o.presence = false,
            "--on-time" => o.on_time = true,
            "-h" | "--help" => usage(""),
            other => usage(&format!("unknown option {other}")),
        }
    }
    o
}

fn parse<T: std::str::FromStr>(s: &str) -> T {
    s.parse()
        .unwrap_or_else(|_| usage(&format!("not a number: {s}")))
}

fn usage(error: &str) -> ! {
    if !error.is_empty() {
        eprintln!("swarm: {error}");
    }
    eprintln!(
        "usage: swarm [--bots N] [--rooms N] [--rate HZ] [--seconds S] [--url URL] [--spin] [--tick-ms MS] [--read-buffer BYTES] [--json] [--no-presence] [--on-time]"
    );
    std::process::exit(2);
}

/// One bot: its channel entity carries this.
#[derive(Component)]
struct Bot {
    index: usize,
    next_move: Duration,
    x: f32,
}

#[derive(Serialize)]
struct Move {
    x: f32,
    y: f32,
}

/// Running totals.
#[derive(Resource, Default, Clone, Copy, Serialize)]
pub struct Totals {
    pub pushes: u64,
    pub replies_ok: u64,
    pub replies_error: u64,
    pub timeouts: u64,
    pub dropped: u64,
    pub messages: u64,
    pub presence: u64,
    pub connects: u64,
    pub disconnects: u64,
    pub connect_failures: u64,
    pub channel_errors: u64,
    pub protocol_errors: u64,
}

/// Pushes waiting for their outcome, and how long the answered ones took.
#[derive(Resource, Default)]
struct Pending {
    /// When the frame that wrote each push ran.
    sent: HashMap<PushHandle, Instant>,
    /// Reply latencies not yet reported: from the frame that wrote the push to the frame that
    /// read its reply (what the game sees; the wait for the next frame included).
    replied: Vec<Duration>,
}

impl Totals {
    fn replies(&self) -> u64 {
        self.replies_ok + self.replies_error
    }
    /// Pushes plus everything received: what CPU per message divides by.
    fn counted(&self) -> u64 {
        self.pushes + self.replies() + self.messages + self.presence
    }
    /// What happened since `before` (a snapshot of the same run).
    fn since(&self, before: &Totals) -> Totals {
        Totals {
            pushes: self.pushes - before.pushes,
            replies_ok: self.replies_ok - before.replies_ok,
            replies_error: self.replies_error - before.replies_error,
            timeouts: self.timeouts - before.timeouts,
            dropped: self.dropped - before.dropped,
            messages: self.messages - before.messages,
            presence: self.presence - before.presence,
            connects: self.connects - before.connects,
            disconnects: self.disconnects - before.disconnects,
            connect_failures: self.connect_failures - before.connect_failures,
            channel_errors: self.channel_errors - before.channel_errors,
            protocol_errors: self.protocol_errors - before.protocol_errors,
        }
    }
    fn errors(&self) -> u64 {
        self.replies_error
            + self.timeouts
            + self.dropped
            + self.connect_failures
            + self.channel_errors
            + self.protocol_errors
    }
}

#[derive(Resource)]
struct Rate {
    period: Option<Duration>,
    pushing: bool,
    /// `--on-time`.
    on_time: bool,
}

/// When this frame began, and how long each frame's work took (the sleep in
/// `PhoenixSystems::Wait` excluded).
#[derive(Resource, Default)]
struct FrameClock {
    start: Option<Instant>,
    work: Vec<Duration>,
}

fn frame_start(mut clock: ResMut<FrameClock>) {
    clock.start = Some(Instant::now());
}

fn frame_end(mut clock: ResMut<FrameClock>) {
    if let Some(start) = clock.start.take() {
        clock.work.push(start.elapsed());
    }
}

fn drive(
    time: Res<Time<Real>>,
    rate: Res<Rate>,
    mut bots: Query<(Entity, &ChannelStatus, &mut Bot)>,
    mut out: MessageWriter<PushMessage>,
    mut totals: ResMut<Totals>,
    mut pending: ResMut<Pending>,
    wait: Option<ResMut<WaitForNetwork>>,
) {
    let (Some(period), true) = (rate.period, rate.pushing) else {
        return;
    };
    let now = time.elapsed();
    let sent_at = Instant::now();
    let mut next_due: Option<Duration> = None;
    let mut due = |at: Duration| next_due = Some(next_due.map_or(at, |d| d.min(at)));
    for (channel, status, mut bot) in &mut bots {
        if status.0 != ChannelState::Joined {
            continue;
        }
        if now < bot.next_move {
            due(bot.next_move);
            continue;
        }
        // Spread the bots over the period so the pushes do not all leave in one frame.
        if bot.next_move.is_zero() {
            bot.next_move = now + period.mul_f64((bot.index % 97) as f64 / 97.0);
            due(bot.next_move);
            continue;
        }
        bot.next_move += period;
        if bot.next_move < now {
            bot.next_move = now + period;
        }
        due(bot.next_move);
        bot.x = (bot.x + 1.0) % 100.0;
        let m = Move {
            x: bot.x,
            y: bot.index as f32,
        };
        match PushMessage::json(channel, "move", &m) {
            Ok(p) => {
                pending.sent.insert(p.handle, sent_at);
                out.write(p);
                totals.pushes += 1;
            }
            Err(e) => error!("swarm: cannot encode a move: {e}"),
        }
    }
    // `--on-time`: wake the frame loop when the next move is due, so every push leaves on time
    // (as phoenix.js's timers send them), not with the next wake-up's batch.
    if let (true, Some(mut wait), Some(at), Some(frame_start)) =
        (rate.on_time, wait, next_due, time.last_update())
    {
        wait.wake_by(frame_start + at.saturating_sub(now));
    }
}

#[allow(clippy::too_many_arguments)]
fn count(
    mut totals: ResMut<Totals>,
    mut pending: ResMut<Pending>,
    mut messages: MessageReader<ChannelMessage>,
    mut replies: MessageReader<PushReplied>,
    mut presence: MessageReader<PresenceChanged>,
    mut connected: MessageReader<SocketConnected>,
    mut disconnected: MessageReader<SocketDisconnected>,
    mut failed: MessageReader<SocketConnectFailed>,
    (mut refused, mut errored, mut protocol): (
        MessageReader<SocketConnectRefused>,
        MessageReader<ChannelErrored>,
        MessageReader<PhoenixProtocolError>,
    ),
) {
    totals.messages += messages.read().count() as u64;
    let read_at = (!replies.is_empty()).then(Instant::now);
    for r in replies.read() {
        let sent = pending.sent.remove(&r.handle);
        match &r.outcome {
            PushOutcome::Ok(_) | PushOutcome::Sent => totals.replies_ok += 1,
            PushOutcome::Error(_) => totals.replies_error += 1,
            PushOutcome::Timeout => totals.timeouts += 1,
            PushOutcome::Dropped(_) => totals.dropped += 1,
        }
        if let (Some(sent), Some(read_at), PushOutcome::Ok(_) | PushOutcome::Error(_)) =
            (sent, read_at, &r.outcome)
        {
            pending.replied.push(read_at - sent);
        }
    }
    totals.presence += presence.read().count() as u64;
    totals.connects += connected.read().count() as u64;
    totals.disconnects += disconnected.read().count() as u64;
    totals.connect_failures += (failed.read().count() + refused.read().count()) as u64;
    totals.channel_errors += errored.read().count() as u64;
    totals.protocol_errors += protocol.read().count() as u64;
}

/// CPU time of the calling thread, the one that runs the app (the main thread in the binary;
/// with the headless preset every system and socket runs there), on Linux (`None` elsewhere),
/// in nanoseconds from the scheduler's own accounting (`schedstat`), not 10 ms ticks.
fn main_thread_cpu() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let ns: u64 = stat.split_whitespace().next()?.parse().ok()?;
    Some(Duration::from_nanos(ns))
}

/// The calling thread's CPU time in the kernel (Linux, 10 ms ticks; `None` elsewhere).
fn main_thread_system_cpu() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").ok()?;
    // Fields after the command name (which may hold spaces): state is the 3rd field, stime the 15th.
    let rest = &stat[stat.rfind(')')? + 2..];
    let ticks: u64 = rest.split_whitespace().nth(12)?.parse().ok()?;
    Some(Duration::from_millis(ticks * 10))
}

/// Resident memory of the process in bytes (Linux; `None` elsewhere).
fn rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn mean(v: &[Duration]) -> Duration {
    if v.is_empty() {
        return Duration::ZERO;
    }
    v.iter().sum::<Duration>() / v.len() as u32
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// Reply latencies of the run's pushes, microseconds.
#[derive(Serialize)]
pub struct Latency {
    /// Replies measured (ok and error).
    pub count: usize,
    pub mean_us: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub max_us: f64,
}

impl Latency {
    fn of(sorted: &[Duration]) -> Self {
        Latency {
            count: sorted.len(),
            mean_us: us(mean(sorted)),
            p50_us: us(percentile(sorted, 0.5)),
            p99_us: us(percentile(sorted, 0.99)),
            max_us: us(sorted.last().copied().unwrap_or_default()),
        }
    }
}

/// What a run measured (the `--json` line).
#[derive(Serialize)]
pub struct Summary {
    pub bots: usize,
    pub rooms: usize,
    pub rate: f64,
    pub seconds: f64,
    pub wait_for_network: bool,
    /// `--on-time`: the loop woke for each move.
    pub on_time: bool,
    /// `--tick-ms`: frames at a fixed rate instead of waiting for the network.
    pub tick_ms: Option<f64>,
    /// `--read-buffer`: each socket's read buffer, bytes.
    pub read_buffer: usize,
    pub embedded_server: bool,
    pub joined: usize,
    pub connect_seconds: f64,
    /// Everything since the start, joins included.
    pub totals: Totals,
    /// The pushing phase only (what the CPU figures cover; presence from the joins excluded).
    pub run_totals: Totals,
    pub client_cpu_seconds: Option<f64>,
    /// Of which in the kernel (system calls: reads, writes, epoll), from 10 ms ticks.
    pub client_system_cpu_seconds: Option<f64>,
    pub client_cpu_us_per_message: Option<f64>,
    pub rss_before_bytes: Option<u64>,
    pub rss_after_join_bytes: Option<u64>,
    pub rss_end_bytes: Option<u64>,
    pub rss_per_socket_bytes: Option<f64>,
    pub heap_before_bytes: usize,
    pub heap_after_join_bytes: usize,
    pub heap_per_socket_bytes: f64,
    /// Live heap after the run and a second of settling (no pushes; the swarm's own frame-time
    /// records excluded): what the sockets keep, without the join's transients.
    pub heap_settled_bytes: usize,
    pub heap_settled_per_socket_bytes: f64,
    pub frame_mean_us: f64,
    pub frame_p50_us: f64,
    pub frame_p99_us: f64,
    pub idle_frame_mean_us: f64,
    pub idle_frame_p50_us: f64,
    pub idle_frame_p99_us: f64,
    /// From the frame that wrote a push to the frame that read its reply, over every push of
    /// the run (the replies that land after it included).
    pub reply_latency: Latency,
}

/// The command: parses the options, runs, prints. `heap` reads the live heap bytes (the
/// binary's counting allocator).
pub fn main(heap: fn() -> usize) {
    let o = options();
    let summary = run(&o, heap);
    if o.json {
        println!(
            "{}",
            serde_json::to_string(&summary).expect("the summary encodes")
        );
    } else {
        print_summary(&o, &summary);
    }
}

/// Connects and joins the bots, pushes for `o.seconds` (per-second lines unless `o.json`),
/// waits for every push's outcome, times idle frames, and returns what it measured.
pub fn run(o: &Options, heap: fn() -> usize) -> Summary {
    let rooms = if o.rooms == 0 {
        o.bots.div_ceil(10).max(1)
    } else {
        o.rooms
    };
    let rss_before = rss();
    let heap_before = heap();
    let (_server, url, embedded) = match &o.url {
        Some(url) => (None, url.clone(), false),
        None => {
            let server = phoenix_test_server::start().expect("start the embedded test server");
            let url = server.url();
            (Some(server), url, true)
        }
    };
    if !o.json {
        println!(
            "swarm: {} bots in {} rooms against {url}{}, {} moves/s each, {} s",
            o.bots,
            rooms,
            if embedded { " (embedded server)" } else { "" },
            o.rate,
            o.seconds
        );
    }

    let mut app = App::new();
    if o.spin {
        app.add_plugins((MinimalPlugins, PhoenixChannelsPlugin::default()));
    } else {
        // The measured best headless configuration: single-threaded executor, WaitForNetwork.
        app.add_plugins(PhoenixHeadlessPlugins::without_socket());
    }
    app.init_resource::<Totals>()
        .init_resource::<Pending>()
        .init_resource::<FrameClock>()
        .insert_resource(Rate {
            period: (o.rate > 0.0).then(|| Duration::from_secs_f64(1.0 / o.rate)),
            // From the pushing phase on: no bot pushes while the others are still joining.
            pushing: false,
            on_time: o.on_time,
        })
        .add_systems(First, frame_start)
        .add_systems(Update, (drive, count))
        .add_systems(Last, frame_end.before(PhoenixSystems::Wait));
    for i in 0..o.bots {
        let config = PhoenixSocketConfig::new(url.clone())
            .with(|s| {
                // Room moves are answered at once; a slow server shows up as timeouts.
                s.with_push_timeout(Duration::from_secs(10))
            })
            .with_read_buffer(o.read_buffer);
        let socket = app.world_mut().spawn(PhoenixSocket::new(config)).id();
        let topic = format!("room:swarm-{}", i % rooms);
        let mut channel = PhoenixChannel::new(topic)
            .with_payload(&serde_json::json!({ "user_id": format!("bot-{i}") }))
            .expect("a JSON object always encodes")
            .on_socket(socket);
        if !o.presence {
            // The server still tracks and sends presence; it arrives as plain messages.
            channel = channel.without_presence();
        }
        app.world_mut().spawn((
            channel,
            Bot {
                index: i,
                next_move: Duration::ZERO,
                x: 0.0,
            },
        ));
    }
    app.finish();
    app.cleanup();
    if o.tick.is_some() {
        // A fixed frame rate instead (what `ScheduleRunnerPlugin::run_loop` does).
        app.world_mut().remove_resource::<WaitForNetwork>();
    }
    // With `--tick-ms`: sleep out the rest of the tick after a frame.
    let pace = |frame_start: Instant| {
        if let Some(left) = o.tick.map(|t| t.saturating_sub(frame_start.elapsed()))
            && !left.is_zero()
        {
            std::thread::sleep(left);
        }
    };

    let joined = |app: &mut App| {
        let world = app.world_mut();
        let mut q = world.query::<(&ChannelStatus, &Bot)>();
        q.iter(world)
            .filter(|(s, _)| s.0 == ChannelState::Joined)
            .count()
    };

    // Connect and join everybody (bounded: a server that refuses shows in the totals).
    let t0 = Instant::now();
    while joined(&mut app) < o.bots && t0.elapsed() < Duration::from_secs(60) {
        let f0 = Instant::now();
        app.update();
        pace(f0);
    }
    let connect_seconds = t0.elapsed().as_secs_f64();
    let rss_after_join = rss();
    let heap_after_join = heap();
    if !o.json {
        println!(
            "[connect] {}/{} joined in {connect_seconds:.2} s",
            joined(&mut app),
            o.bots
        );
    }

    // The run: per-second lines.
    app.world_mut().resource_mut::<FrameClock>().work.clear();
    app.world_mut().resource_mut::<Rate>().pushing = true;
    let run_start = Instant::now();
    let mut last = *app.world().resource::<Totals>();
    let mut last_cpu = main_thread_cpu();
    let mut next_report = run_start + Duration::from_secs(1);
    let mut all_frames: Vec<Duration> = Vec::new();
    let mut all_replied: Vec<Duration> = Vec::new();
    let run_before = *app.world().resource::<Totals>();
    let run_cpu0 = main_thread_cpu();
    let run_sys0 = main_thread_system_cpu();
    while run_start.elapsed().as_secs_f64() < o.seconds {
        let f0 = Instant::now();
        app.update();
        pace(f0);
        if Instant::now() >= next_report {
            next_report += Duration::from_secs(1);
            let now = *app.world().resource::<Totals>();
            let cpu = main_thread_cpu();
            let mut frames = std::mem::take(&mut app.world_mut().resource_mut::<FrameClock>().work);
            frames.sort();
            let mut replied =
                std::mem::take(&mut app.world_mut().resource_mut::<Pending>().replied);
            replied.sort();
            let mut line = format!(
                "[{:>3.0}s] joined {:>5} | pushes {:>6}/s replies {:>6}/s msgs {:>7}/s | reconnects {} errors {} | frame {:>6.0} µs mean {:>6.0} µs p99 ({} frames)",
                run_start.elapsed().as_secs_f64(),
                joined(&mut app),
                now.pushes - last.pushes,
                now.replies() - last.replies(),
                now.messages - last.messages,
                now.connects.saturating_sub(o.bots as u64),
                now.errors(),
                us(mean(&frames)),
                us(percentile(&frames, 0.99)),
                frames.len(),
            );
            if !replied.is_empty() {
                let _ = write!(
                    line,
                    " | reply {:.1} ms p50 {:.1} ms p99",
                    us(percentile(&replied, 0.5)) / 1000.0,
                    us(percentile(&replied, 0.99)) / 1000.0
                );
            }
            if let (Some(a), Some(b)) = (last_cpu, cpu) {
                let _ = write!(line, " | client cpu {:.0}%", (b - a).as_secs_f64() * 100.0);
            }
            if !o.json {
                println!("{line}");
            }
            all_frames.extend(frames);
            all_replied.extend(replied);
            last = now;
            last_cpu = cpu;
        }
    }
    let run_sys = match (run_sys0, main_thread_system_cpu()) {
        (Some(a), Some(b)) => Some(b - a),
        _ => None,
    };
    let run_cpu = match (run_cpu0, main_thread_cpu()) {
        (Some(a), Some(b)) => Some(b - a),
        _ => None,
    };
    all_frames.extend(std::mem::take(
        &mut app.world_mut().resource_mut::<FrameClock>().work,
    ));
    all_frames.sort();
    let totals = *app.world().resource::<Totals>();
    let run_totals = totals.since(&run_before);
    let (frame_mean, frame_p50, frame_p99) = (
        us(mean(&all_frames)),
        us(percentile(&all_frames, 0.5)),
        us(percentile(&all_frames, 0.99)),
    );
    drop(all_frames);

    // Idle: no more pushes; let the last replies and broadcasts land (every push has its
    // outcome, a reply or the 10 s timeout, and a second has passed), then time frames that
    // have nothing to do with every socket connected (the loop spins here on purpose: each
    // frame is one full pass over the sockets).
    app.world_mut().resource_mut::<Rate>().pushing = false;
    let settle = Instant::now();
    while settle.elapsed() < Duration::from_secs(1)
        || (!app.world().resource::<Pending>().sent.is_empty()
            && settle.elapsed() < Duration::from_secs(15))
    {
        let f0 = Instant::now();
        app.update();
        pace(f0);
    }
    all_replied.extend(std::mem::take(
        &mut app.world_mut().resource_mut::<Pending>().replied,
    ));
    all_replied.sort();
    let reply_latency = Latency::of(&all_replied);
    // The swarm's own records are not the sockets' memory.
    drop(all_replied);
    app.world_mut().resource_mut::<FrameClock>().work = Vec::new();
    let heap_settled = heap();
    app.world_mut().remove_resource::<WaitForNetwork>();
    let idle = Instant::now();
    while idle.elapsed() < Duration::from_secs(2) {
        app.update();
    }
    let mut idle_frames = std::mem::take(&mut app.world_mut().resource_mut::<FrameClock>().work);
    idle_frames.sort();
    let rss_end = rss();

    // Over the pushing phase only, like the CPU: the joins' presence (one `PresenceChanged` per
    // key, thousands at 1,000 bots) is not work of the run.
    let counted = run_totals.counted();
    Summary {
        bots: o.bots,
        rooms,
        rate: o.rate,
        seconds: o.seconds,
        wait_for_network: !o.spin && o.tick.is_none(),
        on_time: o.on_time,
        tick_ms: o.tick.map(|t| t.as_secs_f64() * 1000.0),
        read_buffer: o.read_buffer,
        embedded_server: embedded,
        joined: joined(&mut app),
        connect_seconds,
        totals,
        run_totals,
        client_cpu_seconds: run_cpu.map(|c| c.as_secs_f64()),
        client_system_cpu_seconds: run_sys.map(|c| c.as_secs_f64()),
        client_cpu_us_per_message: run_cpu
            .filter(|_| counted > 0)
            .map(|c| us(c) / counted as f64),
        rss_before_bytes: rss_before,
        rss_after_join_bytes: rss_after_join,
        rss_end_bytes: rss_end,
        rss_per_socket_bytes: match (rss_before, rss_after_join) {
            (Some(a), Some(b)) if o.bots > 0 => Some(b.saturating_sub(a) as f64 / o.bots as f64),
            _ => None,
        },
        heap_before_bytes: heap_before,
        heap_after_join_bytes: heap_after_join,
        heap_per_socket_bytes: heap_after_join.saturating_sub(heap_before) as f64
            / o.bots.max(1) as f64,
        heap_settled_bytes: heap_settled,
        heap_settled_per_socket_bytes: heap_settled.saturating_sub(heap_before) as f64
            / o.bots.max(1) as f64,
        frame_mean_us: frame_mean,
        frame_p50_us: frame_p50,
        frame_p99_us: frame_p99,
        idle_frame_mean_us: us(mean(&idle_frames)),
        idle_frame_p50_us: us(percentile(&idle_frames, 0.5)),
        idle_frame_p99_us: us(percentile(&idle_frames, 0.99)),
        reply_latency,
    }
}

/// The human report at the end of a run.
fn print_summary(o: &Options, summary: &Summary) {
    let totals = &summary.totals;
    let embedded = summary.embedded_server;
    let per_socket =
        |b: Option<f64>| b.map_or("n/a".to_owned(), |b| format!("{:.1} KiB", b / 1024.0));
    let mut by_room: HashMap<usize, usize> = HashMap::new();
    for i in 0..o.bots {
        *by_room.entry(i % summary.rooms).or_default() += 1;
    }
    println!("--- summary ---");
    println!(
        "bots {} ({} joined at the end), rooms {} (up to {} bots each), {} s at {} moves/s per bot",
        o.bots,
        summary.joined,
        summary.rooms,
        by_room.values().max().copied().unwrap_or(0),
        o.seconds,
        o.rate
    );
    println!(
        "pushes {} | replies ok {} error {} | timeouts {} | dropped {} | messages {} | presence {}",
        totals.pushes,
        totals.replies_ok,
        totals.replies_error,
        totals.timeouts,
        totals.dropped,
        totals.messages,
        totals.presence
    );
    println!(
        "connects {} (reconnects {}), disconnects {}, connect failures {}, channel errors {}, protocol errors {}",
        totals.connects,
        totals.connects.saturating_sub(o.bots as u64),
        totals.disconnects,
        totals.connect_failures,
        totals.channel_errors,
        totals.protocol_errors
    );
    if let (Some(cpu), Some(per)) = (
        summary.client_cpu_seconds,
        summary.client_cpu_us_per_message,
    ) {
        println!(
            "client cpu {cpu:.2} s over {} s ({:.0}%), {per:.2} µs per message (pushes + replies + broadcasts + presence, while pushing)",
            o.seconds,
            cpu / o.seconds * 100.0
        );
    }
    println!(
        "memory: rss {} before, {} after joining ({} per socket{}), {} at the end",
        summary
            .rss_before_bytes
            .map_or("n/a".into(), |b| format!("{:.1} MiB", b as f64 / 1048576.0)),
        summary
            .rss_after_join_bytes
            .map_or("n/a".into(), |b| format!("{:.1} MiB", b as f64 / 1048576.0)),
        per_socket(summary.rss_per_socket_bytes),
        if embedded {
            ", embedded server included"
        } else {
            ""
        },
        summary
            .rss_end_bytes
            .map_or("n/a".into(), |b| format!("{:.1} MiB", b as f64 / 1048576.0)),
    );
    println!(
        "heap: {:.1} MiB after joining, {:.1} KiB per socket; settled after the run {:.1} KiB per socket{}",
        summary.heap_after_join_bytes as f64 / 1048576.0,
        summary.heap_per_socket_bytes / 1024.0,
        summary.heap_settled_per_socket_bytes / 1024.0,
        if embedded {
            " (embedded server included)"
        } else {
            ""
        },
    );
    println!(
        "frame work: {:.0} µs mean, {:.0} µs p50, {:.0} µs p99 while pushing; idle with {} sockets: {:.1} µs mean, {:.1} µs p50, {:.1} µs p99",
        summary.frame_mean_us,
        summary.frame_p50_us,
        summary.frame_p99_us,
        o.bots,
        summary.idle_frame_mean_us,
        summary.idle_frame_p50_us,
        summary.idle_frame_p99_us
    );
    let l = &summary.reply_latency;
    if l.count > 0 {
        println!(
            "reply latency (push written -> reply read, {} replies): {:.2} ms mean, {:.2} ms p50, {:.2} ms p99, {:.2} ms max",
            l.count,
            l.mean_us / 1000.0,
            l.p50_us / 1000.0,
            l.p99_us / 1000.0,
            l.max_us / 1000.0
        );
    }
}
