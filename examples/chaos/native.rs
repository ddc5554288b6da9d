//! The chaos run itself (native only): see `main.rs`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bevy::prelude::*;
use bevy_phoenix_channels::prelude::*;
use phoenix_test_server::{Refusal, ServerHandle, TestServer};
use serde_json::{Value, json};

// ----- options ------------------------------------------------------------------------------

/// Command-line options (public so that `tests/chaos_smoke.rs` can run a short chaos).
#[derive(Debug, Clone)]
pub struct Opts {
    /// Pushes to make before stopping.
    pub pushes: u64,
    /// Pushes per second.
    pub rate: f64,
    /// Channels on the main socket (one of them `room:chaos`, the rest `echo:*`).
    pub channels: usize,
    /// Heartbeat interval and timeout.
    pub heartbeat: Duration,
    /// How long a recovery may take before it counts as failed.
    pub recovery_timeout: Duration,
    /// Seq broadcasts per second.
    pub seq_rate: u64,
    /// RNG seed (pushes mix and fault parameters).
    pub seed: u64,
    /// `--server-down SECS` mode.
    pub server_down: Option<u64>,
    /// `WaitForNetwork` bound per frame (2 ms; 16 ms with `--server-down` unless given).
    pub wait: Duration,
}

impl Default for Opts {
    fn default() -> Self {
        Opts {
            pushes: 100_000,
            rate: 500.0,
            channels: 20,
            heartbeat: Duration::from_millis(1500),
            recovery_timeout: Duration::from_secs(30),
            seq_rate: 200,
            seed: 0x5eed,
            server_down: None,
            wait: Duration::from_millis(2),
        }
    }
}

fn parse_args() -> Result<Opts, String> {
    let mut o = Opts::default();
    let mut wait_given = false;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        if flag == "--help" || flag == "-h" {
            return Err(
                "usage: chaos [--pushes N] [--rate PER_S] [--channels N] [--heartbeat-ms MS] \
                        [--recovery-timeout-s S] [--seq-rate PER_S] [--seed N] [--wait-ms MS] \
                        [--server-down SECS]"
                    .into(),
            );
        }
        let value = args.next().ok_or(format!("{flag} needs a value"))?;
        let num = |v: &str| v.parse::<f64>().map_err(|e| format!("{flag} {v}: {e}"));
        match flag.as_str() {
            "--pushes" => o.pushes = num(&value)? as u64,
            "--rate" => o.rate = num(&value)?.max(1.0),
            "--channels" => o.channels = (num(&value)? as usize).max(2),
            "--heartbeat-ms" => o.heartbeat = Duration::from_millis(num(&value)? as u64),
            "--recovery-timeout-s" => o.recovery_timeout = Duration::from_secs_f64(num(&value)?),
            "--seq-rate" => o.seq_rate = (num(&value)? as u64).max(1),
            "--seed" => o.seed = num(&value)? as u64,
            "--wait-ms" => {
                o.wait = Duration::from_millis(num(&value)? as u64);
                wait_given = true;
            }
            "--server-down" => o.server_down = Some(num(&value)? as u64),
            _ => return Err(format!("unknown flag {flag} (--help)")),
        }
    }
    // Idle, a headless client sleeps as the README recommends: up to 16 ms per frame.
    if o.server_down.is_some() && !wait_given {
        o.wait = Duration::from_millis(16);
    }
    Ok(o)
}

pub fn main() {
    let opts = match parse_args() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    let ok = match opts.server_down {
        Some(secs) => server_down(&opts, secs),
        None => chaos(&opts),
    };
    if !ok {
        eprintln!("FAILED");
        std::process::exit(1);
    }
    println!("PASSED");
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// xorshift64*: deterministic mixes without a dependency.
#[derive(Debug, Clone)]
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// Process CPU time (user + system) from `/proc/self/stat`, in seconds (USER_HZ = 100, as
/// Linux exposes to user space on every architecture it runs on here).
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which is in parentheses and may contain spaces).
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line: 12 and 13 after ") ".
    let utime: f64 = f.get(11)?.parse().ok()?;
    let stime: f64 = f.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

// ----- chaos: shared state between the app and the fault thread ------------------------------

/// What the fault thread asks the app to do.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Phase {
    /// Nothing asked.
    Idle,
    /// Take a snapshot (join counts, connects) for fault `epoch`, then answer `Faulting`.
    Begin(u64),
    /// The snapshot is taken; the fault is on.
    Faulting(u64),
    /// The fault is over: check recovery, then answer `Idle` with a result.
    Check(u64),
}

/// One fault's outcome, written by the app's recovery check.
#[derive(Debug, Clone)]
struct Recovery {
    epoch: u64,
    ok: bool,
    seconds: f64,
    reconnected: u64,
    /// Channels of the main socket joined again since the fault began.
    rejoined: usize,
    /// The second socket's room joined again since the fault began.
    b_rejoined: bool,
    detail: String,
}

#[derive(Debug)]
struct Ctl {
    phase: Phase,
    recoveries: Vec<Recovery>,
}

/// State shared by the app, the fault thread and the broadcaster.
#[derive(Debug)]
struct Coord {
    ctl: Mutex<Ctl>,
    /// The app has made all its pushes: faults stop after the current one.
    done_pushing: AtomicBool,
    /// The fault thread has finished.
    faults_done: AtomicBool,
    /// Connects of the main socket so far (written by the app).
    a_connects: AtomicU64,
    /// Disconnects of the main socket so far (written by the app).
    a_disconnects: AtomicU64,
    /// Of those, by heartbeat timeout.
    a_heartbeat_timeouts: AtomicU64,
}

impl Coord {
    fn phase(&self) -> Phase {
        lock(&self.ctl).phase
    }
    fn set_phase(&self, p: Phase) {
        lock(&self.ctl).phase = p;
    }
}

// ----- chaos: the app ------------------------------------------------------------------------

/// What each push asks the echo channel for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Kind {
    /// `echo`: an ok reply with the payload.
    Echo,
    /// `error_reply`: an error reply.
    ErrorReply,
    /// `noreply` with a short timeout: a timeout.
    NoReply,
    /// Fire-and-forget `echo` with `report_sent`: sent.
    FireAndForget,
}

#[derive(Resource)]
struct Run {
    opts: Opts,
    coord: Arc<Coord>,
    server: ServerHandle,
    rng: Rng,
    a: Entity,
    b: Entity,
    a_channels: Vec<Entity>,
    a_room: Entity,
    b_room: Entity,
    started: Instant,
    /// Push handle → what it was.
    pending: HashMap<u64, Kind>,
    issued: u64,
    issued_by_kind: BTreeMap<Kind, u64>,
    resolved: u64,
    outcomes: BTreeMap<String, u64>,
    /// Outcome per push kind.
    outcomes_by_kind: BTreeMap<(Kind, String), u64>,
    resolved_unknown: u64,
    wrong_outcome: Vec<String>,
    echo_mismatch: u64,
    /// Joins (first and rejoins) per channel entity.
    joins: HashMap<Entity, u64>,
    join_events: u64,
    rejoin_events: u64,
    a_connects: u64,
    b_connects: u64,
    disconnect_reasons: BTreeMap<String, u64>,
    refused: u64,
    connect_failed: u64,
    // Fault bookkeeping.
    snapshot_joins: HashMap<Entity, u64>,
    snapshot_connects: u64,
    check_started: Option<Instant>,
    stable_since: Option<Instant>,
    presence_checks: u64,
    // Sequence-numbered broadcasts.
    seq_last: Option<u64>,
    seq_received: u64,
    seq_violations: Vec<String>,
    seq_connections: u64,
    // End.
    stage: Stage,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Stage {
    Pushing,
    /// All pushes made: wait for the faults to end and every push to resolve.
    Draining(Instant),
    /// Disconnected: let timers run out.
    Disconnected(Instant),
    Finished,
}

fn kind_name(k: Kind) -> &'static str {
    match k {
        Kind::Echo => "echo",
        Kind::ErrorReply => "error_reply",
        Kind::NoReply => "noreply",
        Kind::FireAndForget => "fire_and_forget",
    }
}

fn outcome_name(o: &PushOutcome) -> String {
    match o {
        PushOutcome::Ok(_) => "ok".into(),
        PushOutcome::Error(_) => "error".into(),
        PushOutcome::Timeout => "timeout".into(),
        PushOutcome::Sent => "sent".into(),
        PushOutcome::Dropped(r) => format!("dropped:{r:?}"),
    }
}

/// Whether `outcome` can end a push of `kind` at all.
fn fits(kind: Kind, outcome: &PushOutcome) -> bool {
    match (kind, outcome) {
        (_, PushOutcome::Dropped(DropReason::Encode(_))) => false,
        (_, PushOutcome::Dropped(_)) => true,
        (Kind::Echo, PushOutcome::Ok(_) | PushOutcome::Timeout) => true,
        (Kind::ErrorReply, PushOutcome::Error(_) | PushOutcome::Timeout) => true,
        (Kind::NoReply, PushOutcome::Timeout) => true,
        (Kind::FireAndForget, PushOutcome::Sent) => true,
        _ => false,
    }
}

fn push_system(mut run: ResMut<Run>, mut out: MessageWriter<PushMessage>) {
    if run.stage != Stage::Pushing {
        return;
    }
    let due = ((run.started.elapsed().as_secs_f64() * run.opts.rate) as u64).min(run.opts.pushes);
    // At most a second's worth per frame (a stalled frame does not turn into a burst of 10k).
    let n = due.saturating_sub(run.issued).min(run.opts.rate as u64 + 1);
    let echo_channels = (run.opts.channels - 1) as u64;
    for _ in 0..n {
        let topic = format!("echo:chaos{}", run.rng.below(echo_channels));
        let roll = run.rng.below(100);
        let kind = match roll {
            0..=84 => Kind::Echo,
            85..=89 => Kind::ErrorReply,
            90..=92 => Kind::NoReply,
            _ => Kind::FireAndForget,
        };
        let handle = PushHandle::next();
        let payload = json!({ "h": handle.0 });
        let event = match kind {
            Kind::Echo | Kind::FireAndForget => "echo",
            Kind::ErrorReply => "error_reply",
            Kind::NoReply => "noreply",
        };
        let Ok(mut msg) = PushMessage::json(topic, event, &payload) else {
            continue;
        };
        msg.handle = handle;
        msg = match kind {
            Kind::NoReply => msg.with_timeout(Duration::from_millis(300)),
            Kind::FireAndForget => msg.fire_and_forget().report_sent(),
            _ => msg,
        };
        run.pending.insert(handle.0, kind);
        run.issued += 1;
        *run.issued_by_kind.entry(kind).or_default() += 1;
        out.write(msg);
    }
    if run.issued >= run.opts.pushes {
        run.coord.done_pushing.store(true, Ordering::SeqCst);
        run.stage = Stage::Draining(Instant::now());
    }
}

#[allow(clippy::too_many_arguments)]
fn observe_system(
    mut run: ResMut<Run>,
    mut replies: MessageReader<PushReplied>,
    mut messages: MessageReader<ChannelMessage>,
    mut connected: MessageReader<SocketConnected>,
    mut disconnected: MessageReader<SocketDisconnected>,
    mut joined: MessageReader<ChannelJoined>,
    (mut refused, mut failed): (
        MessageReader<SocketConnectRefused>,
        MessageReader<SocketConnectFailed>,
    ),
) {
    let run = &mut *run;
    for r in replies.read() {
        let Some(kind) = run.pending.remove(&r.handle.0) else {
            run.resolved_unknown += 1;
            continue;
        };
        run.resolved += 1;
        let name = outcome_name(&r.outcome);
        if !fits(kind, &r.outcome) && run.wrong_outcome.len() < 20 {
            run.wrong_outcome.push(format!(
                "{} push {} ended {name}",
                kind_name(kind),
                r.handle.0
            ));
        }
        if let (Kind::Echo, PushOutcome::Ok(p)) = (kind, &r.outcome) {
            let h = p.decode::<Value>().ok().and_then(|v| v.get("h")?.as_u64());
            if h != Some(r.handle.0) {
                run.echo_mismatch += 1;
            }
        }
        *run.outcomes_by_kind
            .entry((kind, name.clone()))
            .or_default() += 1;
        *run.outcomes.entry(name).or_default() += 1;
    }
    for m in messages.read() {
        if &*m.event != "seq" {
            continue;
        }
        let Some(n) = m.decode::<Value>().ok().and_then(|v| v.get("n")?.as_u64()) else {
            run.seq_violations.push("a seq broadcast without n".into());
            continue;
        };
        run.seq_received += 1;
        if let Some(last) = run.seq_last
            && n <= last
            && run.seq_violations.len() < 20
        {
            run.seq_violations.push(format!(
                "seq {n} after {last} (connection #{})",
                run.a_connects
            ));
        }
        run.seq_last = Some(run.seq_last.map_or(n, |l| l.max(n)));
    }
    for c in connected.read() {
        if c.entity == run.a {
            run.a_connects += 1;
            run.seq_connections += 1;
            run.coord.a_connects.store(run.a_connects, Ordering::SeqCst);
        } else if c.entity == run.b {
            run.b_connects += 1;
        }
    }
    for d in disconnected.read() {
        let reason = match &d.reason {
            DisconnectReason::Requested => "requested".to_string(),
            DisconnectReason::HeartbeatTimeout => "heartbeat_timeout".to_string(),
            DisconnectReason::Closed { code, .. } => format!("closed:{code:?}"),
            DisconnectReason::Error(_) => "error".to_string(),
        };
        let who = if d.entity == run.a { "A" } else { "B" };
        *run.disconnect_reasons
            .entry(format!("{who} {reason}"))
            .or_default() += 1;
        if d.entity == run.a {
            if d.reason == DisconnectReason::HeartbeatTimeout {
                run.coord
                    .a_heartbeat_timeouts
                    .fetch_add(1, Ordering::SeqCst);
            }
            run.coord.a_disconnects.fetch_add(1, Ordering::SeqCst);
        }
    }
    for j in joined.read() {
        *run.joins.entry(j.entity).or_default() += 1;
        run.join_events += 1;
        if j.rejoin {
            run.rejoin_events += 1;
        }
    }
    run.refused += refused.read().count() as u64;
    run.connect_failed += failed.read().count() as u64;
}

/// The server's `Presence.list` as key → phx_refs.
fn server_presence(v: &Value) -> BTreeMap<String, BTreeSet<String>> {
    let mut out = BTreeMap::new();
    if let Some(m) = v.as_object() {
        for (k, entry) in m {
            let refs = entry
                .get("metas")
                .and_then(Value::as_array)
                .map(|metas| {
                    metas
                        .iter()
                        .filter_map(|m| m.get("phx_ref")?.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default();
            out.insert(k.clone(), refs);
        }
    }
    out
}

fn client_presence(p: &ChannelPresence) -> BTreeMap<String, BTreeSet<String>> {
    p.state
        .iter()
        .map(|(k, e)| {
            (
                k.clone(),
                e.metas.iter().map(|m| m.phx_ref().to_owned()).collect(),
            )
        })
        .collect()
}

/// Answers the fault thread: snapshots at the start of a fault, the recovery check after it.
fn fault_check_system(
    mut run: ResMut<Run>,
    sockets: Query<&SocketStatus>,
    channels: Query<&ChannelStatus>,
    presence: Query<&ChannelPresence>,
) {
    let run = &mut *run;
    match run.coord.phase() {
        Phase::Idle | Phase::Faulting(_) => {}
        Phase::Begin(e) => {
            run.snapshot_joins = run.joins.clone();
            run.snapshot_connects = run.a_connects;
            run.check_started = None;
            run.stable_since = None;
            run.coord.set_phase(Phase::Faulting(e));
        }
        Phase::Check(e) => {
            let now = Instant::now();
            let started = *run.check_started.get_or_insert(now);
            // What is not (yet) right; empty = recovered.
            let mut wrong = Vec::new();
            for (name, s) in [("A", run.a), ("B", run.b)] {
                if !sockets.get(s).is_ok_and(SocketStatus::is_connected) {
                    wrong.push(format!("socket {name} not open"));
                }
            }
            let reconnected = run.a_connects - run.snapshot_connects;
            let mut rejoined = 0;
            let mut b_rejoined = false;
            for &c in run.a_channels.iter().chain([&run.b_room]) {
                if channels.get(c).ok().map(|s| s.0) != Some(ChannelState::Joined) {
                    wrong.push(format!("channel {c} not joined"));
                }
                let now_joins = run.joins.get(&c).copied().unwrap_or(0);
                let before = run.snapshot_joins.get(&c).copied().unwrap_or(0);
                if now_joins > before && c == run.b_room {
                    b_rejoined = true;
                } else if now_joins > before {
                    rejoined += 1;
                } else if reconnected > 0 && run.a_channels.contains(&c) {
                    wrong.push(format!("channel {c} not joined again after the reconnect"));
                }
            }
            let truth = server_presence(&run.server.presence_list("room:chaos"));
            let pa = presence
                .get(run.a_room)
                .map(client_presence)
                .unwrap_or_default();
            let pb = presence
                .get(run.b_room)
                .map(client_presence)
                .unwrap_or_default();
            let expected: BTreeSet<&str> = ["A", "B"].into();
            if truth.keys().map(String::as_str).collect::<BTreeSet<_>>() != expected
                || truth.values().any(|refs| refs.len() != 1)
            {
                wrong.push(format!("server presence {truth:?}"));
            }
            if pa != truth {
                wrong.push(format!("A presence {pa:?} != server {truth:?}"));
            }
            if pb != truth {
                wrong.push(format!("B presence {pb:?} != server {truth:?}"));
            }
            run.presence_checks += 1;
            let stable_since = run.stable_since;
            let finish = |ok: bool, detail: String| {
                let rec = Recovery {
                    epoch: e,
                    ok,
                    // Until the state was right (and then stayed right for 300 ms).
                    seconds: stable_since
                        .unwrap_or(now)
                        .duration_since(started)
                        .as_secs_f64(),
                    reconnected,
                    rejoined,
                    b_rejoined,
                    detail,
                };
                let mut ctl = lock(&run.coord.ctl);
                ctl.recoveries.push(rec);
                ctl.phase = Phase::Idle;
            };
            if wrong.is_empty() {
                let since = *run.stable_since.get_or_insert(now);
                if now.duration_since(since) >= Duration::from_millis(300) {
                    finish(true, String::new());
                }
            } else {
                run.stable_since = None;
                if now.duration_since(started) > run.opts.recovery_timeout {
                    finish(false, wrong.join("; "));
                }
            }
        }
    }
}

/// The end: wait for the faults and every push, disconnect, let timers run out.
fn stage_system(mut run: ResMut<Run>, mut cmds: MessageWriter<SocketCommand>) {
    let now = Instant::now();
    match run.stage {
        Stage::Pushing | Stage::Finished => {}
        Stage::Draining(since) => {
            let faults_done = run.coord.faults_done.load(Ordering::SeqCst);
            if faults_done && (run.pending.is_empty() || now - since > Duration::from_secs(60)) {
                cmds.write(SocketCommand::Disconnect(Some(run.a)));
                cmds.write(SocketCommand::Disconnect(Some(run.b)));
                run.stage = Stage::Disconnected(now);
            }
        }
        Stage::Disconnected(since) => {
            // The push timeout (10 s) plus slack, or at once when nothing is pending.
            if run.pending.is_empty() && now - since > Duration::from_millis(500)
                || now - since > Duration::from_secs(15)
            {
                run.stage = Stage::Finished;
            }
        }
    }
}

// ----- chaos: the fault thread ---------------------------------------------------------------

/// Fault kinds, injected in this order, round and round.
const FAULTS: [&str; 9] = [
    "close_after_frames",
    "drop_all(close frame)",
    "drop_all(no close frame)",
    "refuse(Http403)",
    "refuse(TcpRefused)",
    "stop_reading",
    "answer_heartbeats(false)",
    "delay_outgoing",
    "close_after_frames+delay",
];

#[derive(Debug, Default, Clone)]
struct FaultStats {
    injected: u64,
    recovered: u64,
    failed: u64,
    reconnects: u64,
    max_recovery: f64,
    sum_recovery: f64,
}

fn wait_phase(coord: &Coord, want: impl Fn(Phase) -> bool, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if want(coord.phase()) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    false
}

/// Waits until the main socket has dropped at least `n` more times than `from`, or `limit`.
fn wait_disconnects(coord: &Coord, from: u64, n: u64, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if coord.a_disconnects.load(Ordering::SeqCst) >= from + n {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    false
}

/// Injects faults until the app has made its pushes; returns the stats per fault kind and the
/// failures (fault that did not cut the connection when it must).
fn fault_thread(
    server: &TestServer,
    coord: &Coord,
    opts: &Opts,
) -> (BTreeMap<&'static str, FaultStats>, Vec<String>) {
    let f = server.faults();
    let mut rng = Rng(opts.seed ^ 0xfa17);
    let mut stats: BTreeMap<&'static str, FaultStats> = BTreeMap::new();
    let mut failures = Vec::new();
    let hb = opts.heartbeat;
    // Let everything join first.
    std::thread::sleep(Duration::from_secs(2));
    let mut epoch = 0u64;
    while !coord.done_pushing.load(Ordering::SeqCst) {
        let kind = FAULTS[(epoch as usize) % FAULTS.len()];
        epoch += 1;
        // Quiet time: pushes flow normally for 0.5-2 s.
        std::thread::sleep(Duration::from_millis(500 + rng.below(1500)));
        coord.set_phase(Phase::Begin(epoch));
        if !wait_phase(
            coord,
            |p| p == Phase::Faulting(epoch),
            Duration::from_secs(30),
        ) {
            failures.push(format!("fault #{epoch}: the app did not take its snapshot"));
            break;
        }
        let d0 = coord.a_disconnects.load(Ordering::SeqCst);
        let h0 = coord.a_heartbeat_timeouts.load(Ordering::SeqCst);
        let hold = Duration::from_secs(10) + 3 * hb;
        // Whether this fault must cut the main socket's connection.
        let must_cut = kind != "delay_outgoing";
        match kind {
            "close_after_frames" | "close_after_frames+delay" => {
                // Connections die every few hundred frames: three in a row, then off.
                let n = 200 + rng.below(400);
                if kind.ends_with("delay") {
                    f.delay_outgoing(Duration::from_millis(20 + rng.below(80)));
                }
                f.close_after_frames(Some(n));
                wait_disconnects(coord, d0, 3, hold * 3);
                f.close_after_frames(None);
                f.delay_outgoing(Duration::ZERO);
            }
            "drop_all(close frame)" => {
                f.drop_all_connections(true);
                wait_disconnects(coord, d0, 1, hold);
            }
            "drop_all(no close frame)" => {
                f.drop_all_connections(false);
                wait_disconnects(coord, d0, 1, hold);
            }
            "refuse(Http403)" | "refuse(TcpRefused)" => {
                let how = if kind == "refuse(Http403)" {
                    Refusal::Http403
                } else {
                    Refusal::TcpRefused
                };
                let d = Duration::from_millis(1000 + rng.below(3000));
                f.refuse_connections(how, Some(d));
                f.drop_all_connections(false);
                wait_disconnects(coord, d0, 1, hold);
                std::thread::sleep(d);
                f.allow_connections();
            }
            "stop_reading" => {
                // The server reads nothing: only the heartbeat timeout can notice.
                f.stop_reading(true);
                wait_disconnects(coord, d0, 1, hold);
                f.stop_reading(false);
            }
            "answer_heartbeats(false)" => {
                f.answer_heartbeats(false);
                wait_disconnects(coord, d0, 1, hold);
                f.answer_heartbeats(true);
            }
            _ => {
                // delay_outgoing: every frame late by up to a third of the heartbeat.
                let d = Duration::from_millis(50 + rng.below(hb.as_millis() as u64 / 3));
                f.delay_outgoing(d);
                std::thread::sleep(Duration::from_millis(2000 + rng.below(2000)));
                f.delay_outgoing(Duration::ZERO);
            }
        }
        let cut = coord.a_disconnects.load(Ordering::SeqCst) - d0;
        if must_cut && cut == 0 {
            failures.push(format!(
                "fault #{epoch} {kind}: the connection was never cut"
            ));
        }
        // A stall shows nothing on the wire: only the heartbeat can have cut it.
        let stall = matches!(kind, "stop_reading" | "answer_heartbeats(false)");
        if stall && coord.a_heartbeat_timeouts.load(Ordering::SeqCst) == h0 {
            failures.push(format!("fault #{epoch} {kind}: no heartbeat timeout"));
        }
        coord.set_phase(Phase::Check(epoch));
        let ok = wait_phase(
            coord,
            |p| p == Phase::Idle,
            opts.recovery_timeout + Duration::from_secs(30),
        );
        let rec = lock(&coord.ctl).recoveries.last().cloned();
        let s = stats.entry(kind).or_default();
        s.injected += 1;
        match rec {
            Some(r) if ok && r.epoch == epoch => {
                s.reconnects += r.reconnected;
                if r.ok {
                    s.recovered += 1;
                    s.max_recovery = s.max_recovery.max(r.seconds);
                    s.sum_recovery += r.seconds;
                } else {
                    s.failed += 1;
                    failures.push(format!("fault #{epoch} {kind}: no recovery: {}", r.detail));
                }
                println!(
                    "fault #{epoch:>3} {kind:<26} cut {cut}, A reconnected {}, A channels joined again {}/{}, B room {}, {} {:.2} s after the fault ended",
                    r.reconnected,
                    r.rejoined,
                    opts.channels,
                    if r.b_rejoined { "joined again" } else { "kept" },
                    if r.ok { "consistent" } else { "NOT RECOVERED" },
                    r.seconds
                );
            }
            _ => {
                s.failed += 1;
                failures.push(format!(
                    "fault #{epoch} {kind}: the app never answered the check"
                ));
                break;
            }
        }
    }
    coord.faults_done.store(true, Ordering::SeqCst);
    (stats, failures)
}

/// The chaos run; prints as it goes and returns whether every invariant held.
pub fn chaos(opts: &Opts) -> bool {
    let server = TestServer::builder()
        .start()
        .expect("start the test server");
    let url = server.url();
    println!("chaos: server {url}, {opts:?}");
    let coord = Arc::new(Coord {
        ctl: Mutex::new(Ctl {
            phase: Phase::Idle,
            recoveries: Vec::new(),
        }),
        done_pushing: AtomicBool::new(false),
        faults_done: AtomicBool::new(false),
        a_connects: AtomicU64::new(0),
        a_disconnects: AtomicU64::new(0),
        a_heartbeat_timeouts: AtomicU64::new(0),
    });
    let config =
        |url: &str| PhoenixSocketConfig::new(url).with(|s| s.with_heartbeat(opts.heartbeat));

    let mut app = App::new();
    app.add_plugins(MinimalPlugins)
        .add_plugins(PhoenixChannelsPlugin::with_config(config(&url)))
        .insert_resource(WaitForNetwork::up_to(opts.wait));
    app.update();
    let a = {
        let world = app.world_mut();
        let mut q = world.query_filtered::<Entity, With<DefaultSocket>>();
        q.single(world).expect("the plugin's default socket")
    };
    let b = app.world_mut().spawn(PhoenixSocket::new(config(&url))).id();
    let mut a_channels = Vec::new();
    for i in 0..opts.channels - 1 {
        a_channels.push(
            app.world_mut()
                .spawn(PhoenixChannel::new(format!("echo:chaos{i}")))
                .id(),
        );
    }
    let room = |user: &str| {
        PhoenixChannel::new("room:chaos")
            .with_payload(&json!({ "user_id": user }))
            .expect("a JSON object")
    };
    let a_room = app.world_mut().spawn(room("A")).id();
    a_channels.push(a_room);
    let b_room = app.world_mut().spawn(room("B").on_socket(b)).id();

    app.insert_resource(Run {
        opts: opts.clone(),
        coord: coord.clone(),
        server: server.handle(),
        rng: Rng(opts.seed | 1),
        a,
        b,
        a_channels,
        a_room,
        b_room,
        started: Instant::now(),
        pending: HashMap::new(),
        issued: 0,
        issued_by_kind: BTreeMap::new(),
        resolved: 0,
        outcomes: BTreeMap::new(),
        outcomes_by_kind: BTreeMap::new(),
        resolved_unknown: 0,
        wrong_outcome: Vec::new(),
        echo_mismatch: 0,
        joins: HashMap::new(),
        join_events: 0,
        rejoin_events: 0,
        a_connects: 0,
        b_connects: 0,
        disconnect_reasons: BTreeMap::new(),
        refused: 0,
        connect_failed: 0,
        snapshot_joins: HashMap::new(),
        snapshot_connects: 0,
        check_started: None,
        stable_since: None,
        presence_checks: 0,
        seq_last: None,
        seq_received: 0,
        seq_violations: Vec::new(),
        seq_connections: 0,
        stage: Stage::Pushing,
    })
    .add_systems(
        Update,
        (
            observe_system,
            fault_check_system,
            push_system,
            stage_system,
        )
            .chain(),
    );

    let wall = Instant::now();
    let cpu0 = cpu_seconds();
    let seq_stop = AtomicBool::new(false);
    let (fault_stats, fault_failures) = std::thread::scope(|scope| {
        // Sequence-numbered broadcasts on echo:chaos0, from their own thread.
        let seq_thread = scope.spawn(|| {
            let mut n = 0u64;
            let period = Duration::from_secs_f64(1.0 / opts.seq_rate as f64);
            while !seq_stop.load(Ordering::SeqCst) {
                n += 1;
                server.broadcast("echo:chaos0", "seq", json!({ "n": n }));
                std::thread::sleep(period);
            }
            n
        });
        let faults = scope.spawn(|| fault_thread(&server, &coord, opts));
        let mut last_print = Instant::now();
        let mut stalled = false;
        loop {
            app.update();
            let run = app.world().resource::<Run>();
            if run.stage == Stage::Finished {
                break;
            }
            if last_print.elapsed() >= Duration::from_secs(10) {
                last_print = Instant::now();
                let fp = app
                    .world()
                    .get::<PhoenixSocket>(a)
                    .map(|s| s.core().footprint());
                let run = app.world().resource::<Run>();
                println!(
                    "[{:>6.1} s] issued {} resolved {} pending {} | A connects {} | seq {} | {:?} | footprint {:?}",
                    wall.elapsed().as_secs_f64(),
                    run.issued,
                    run.resolved,
                    run.pending.len(),
                    run.a_connects,
                    run.seq_received,
                    run.outcomes,
                    fp
                );
            }
            // A run that cannot finish is a failure, not a hang.
            let limit = Duration::from_secs_f64(opts.pushes as f64 / opts.rate) * 3
                + Duration::from_secs(300);
            if wall.elapsed() > limit {
                stalled = true;
                coord.done_pushing.store(true, Ordering::SeqCst);
                break;
            }
        }
        seq_stop.store(true, Ordering::SeqCst);
        let sent = seq_thread.join().unwrap_or(0);
        println!("seq broadcasts sent by the server thread: {sent}");
        let mut r = faults.join().unwrap_or_default();
        if stalled {
            r.1.push("the run did not finish in time".into());
        }
        r
    });
    let wall_s = wall.elapsed().as_secs_f64();
    let cpu = cpu_seconds().zip(cpu0).map(|(c1, c0)| c1 - c0);

    let fp = app
        .world()
        .get::<PhoenixSocket>(a)
        .map(|s| s.core().footprint());
    let run = app.world().resource::<Run>();
    let mut ok = true;
    println!("\n===== chaos summary =====");
    println!(
        "wall {wall_s:.1} s, process CPU {:.1} s",
        cpu.unwrap_or(f64::NAN)
    );
    println!(
        "pushes issued {} resolved {} still pending {} resolved-unknown/twice {}",
        run.issued,
        run.resolved,
        run.pending.len(),
        run.resolved_unknown
    );
    println!("issued by kind: {:?}", run.issued_by_kind);
    println!("outcomes: {:?}", run.outcomes);
    for ((k, o), n) in &run.outcomes_by_kind {
        println!("  {:<16} {o:<28} {n}", kind_name(*k));
    }
    println!(
        "A connects {} B connects {}, connect refused (403) {}, connect failed {}",
        run.a_connects, run.b_connects, run.refused, run.connect_failed
    );
    println!("disconnects: {:?}", run.disconnect_reasons);
    println!(
        "joins {} (rejoins {}), presence checks {}",
        run.join_events, run.rejoin_events, run.presence_checks
    );
    println!(
        "seq broadcasts received {} over {} connections, last {:?}, order violations {}",
        run.seq_received,
        run.seq_connections,
        run.seq_last,
        run.seq_violations.len()
    );
    println!("footprint of A at the end: {fp:?}");
    println!("faults:");
    for (k, s) in &fault_stats {
        println!(
            "  {k:<26} injected {:>3} recovered {:>3} failed {} A reconnects {:>3} recovery mean {:.2} s max {:.2} s",
            s.injected,
            s.recovered,
            s.failed,
            s.reconnects,
            if s.recovered > 0 {
                s.sum_recovery / s.recovered as f64
            } else {
                0.0
            },
            s.max_recovery
        );
    }
    let mut fail = |what: String| {
        ok = false;
        println!("INVARIANT FAILED: {what}");
    };
    if run.issued != run.resolved || !run.pending.is_empty() {
        fail(format!(
            "issued {} != resolved {} ({} pending)",
            run.issued,
            run.resolved,
            run.pending.len()
        ));
    }
    if run.resolved_unknown > 0 {
        fail(format!(
            "{} outcomes for no pending push",
            run.resolved_unknown
        ));
    }
    for w in &run.wrong_outcome {
        fail(format!("wrong outcome: {w}"));
    }
    if run.echo_mismatch > 0 {
        fail(format!(
            "{} echo replies carried another push's handle",
            run.echo_mismatch
        ));
    }
    for v in &run.seq_violations {
        fail(format!("broadcast order: {v}"));
    }
    if run.seq_received == 0 {
        fail("no seq broadcast received".into());
    }
    for f in &fault_failures {
        fail(f.clone());
    }
    if fault_stats.values().map(|s| s.injected).sum::<u64>() == 0 {
        fail("no fault injected".into());
    }
    if let Some(fp) = fp
        && (fp.pushes != 0 || fp.buffered != 0)
    {
        fail(format!("the core still holds pushes at the end: {fp:?}"));
    }
    ok
}

// ----- server down ---------------------------------------------------------------------------

/// The reconnect table's delay before retry `k` (1-based), as `Backoff::reconnect_default`.
fn table_delay(k: u32) -> Duration {
    Backoff::reconnect_default().delay(k)
}

/// Connect attempts that fit in `secs` if every delay is scaled by `factor` (the first attempt
/// at 0, each retry after its delay; the attempt itself is taken as instant).
fn attempts_within(secs: f64, factor: f64) -> u64 {
    let mut t = 0.0;
    let mut n = 1;
    let mut k = 1;
    loop {
        t += table_delay(k).as_secs_f64() * factor;
        if t > secs {
            return n;
        }
        n += 1;
        k += 1;
    }
}

/// The server-down run; returns whether the attempts and the CPU were as expected.
pub fn server_down(opts: &Opts, secs: u64) -> bool {
    // A "server" that accepts TCP and closes at once, counting each attempt.
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    let addr = listener.local_addr().expect("local address");
    let accepts = Arc::new(Mutex::new(Vec::<Instant>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let acceptor = {
        let accepts = accepts.clone();
        let stop = stop.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stop.load(Ordering::SeqCst) {
                    return;
                }
                lock(&accepts).push(Instant::now());
                drop(stream);
            }
        })
    };
    let url = format!("ws://{addr}/socket");
    println!(
        "server-down: {secs} s against {url} (accepts TCP and closes at once), WaitForNetwork {:?}",
        opts.wait
    );

    let mut app = App::new();
    app.add_plugins(MinimalPlugins)
        .add_plugins(PhoenixChannelsPlugin::with_config(
            PhoenixSocketConfig::new(url.clone()).with(|s| s.with_heartbeat(opts.heartbeat)),
        ))
        .insert_resource(WaitForNetwork::up_to(opts.wait));
    #[derive(Resource, Default)]
    struct Seen {
        reconnecting: Vec<(u32, Duration)>,
        failed: u64,
    }
    app.init_resource::<Seen>().add_systems(
        Update,
        |mut seen: ResMut<Seen>,
         mut r: MessageReader<SocketReconnecting>,
         mut f: MessageReader<SocketConnectFailed>| {
            for e in r.read() {
                seen.reconnecting.push((e.attempt, e.delay));
            }
            seen.failed += f.read().count() as u64;
        },
    );
    app.update();
    for i in 0..opts.channels {
        app.world_mut()
            .spawn(PhoenixChannel::new(format!("echo:down{i}")));
    }
    let start = Instant::now();
    let cpu0 = cpu_seconds();
    let mut frames = 0u64;
    while start.elapsed() < Duration::from_secs(secs) {
        app.update();
        frames += 1;
    }
    let wall = start.elapsed().as_secs_f64();
    let cpu = cpu_seconds().zip(cpu0).map(|(c1, c0)| c1 - c0);
    stop.store(true, Ordering::SeqCst);
    let _ = std::net::TcpStream::connect(addr);
    let _ = acceptor.join();

    let times = lock(&accepts).clone();
    let seen = app.world().resource::<Seen>();
    let jitter = 0.2;
    let lo = attempts_within(wall, 1.0 + jitter);
    let hi = attempts_within(wall, 1.0 - jitter);
    let nominal = attempts_within(wall, 1.0);
    let mut ok = true;
    println!("\n===== server-down summary =====");
    println!(
        "wall {wall:.1} s, frames {frames}, process CPU {:.3} s = {:.4} CPU s per wall s",
        cpu.unwrap_or(f64::NAN),
        cpu.unwrap_or(f64::NAN) / wall
    );
    println!(
        "connect attempts seen by the listener: {} (expected {lo}..={hi} from the table with ±20 % jitter, {nominal} without); SocketConnectFailed {}",
        times.len(),
        seen.failed
    );
    let gaps: Vec<String> = times
        .windows(2)
        .map(|w| format!("{:.0}", (w[1] - w[0]).as_secs_f64() * 1000.0))
        .collect();
    println!("gaps between attempts (ms): {}", gaps.join(" "));
    // The i-th scheduled reconnect (1-based) waits the table's i-th delay, jittered: with no
    // open in between, the core's try counter is i (`SocketReconnecting::attempt` is i + 1,
    // the connect attempt it will be).
    let mut bad_delays = Vec::new();
    for (i, &(attempt, delay)) in seen.reconnecting.iter().enumerate() {
        let t = table_delay(i as u32 + 1).as_secs_f64();
        let d = delay.as_secs_f64();
        if d < t * (1.0 - jitter) - 1e-6 || d > t * (1.0 + jitter) + 1e-6 {
            bad_delays.push(format!(
                "reconnect {} (attempt {attempt}): {d:.3} s vs table {t:.3} s",
                i + 1
            ));
        }
    }
    // What the listener saw: the gap before attempt i + 1 is at least the jittered delay (it
    // also holds the failed handshake) and at most that plus 100 ms of scheduling slack.
    for (i, w) in times.windows(2).enumerate() {
        let t = table_delay(i as u32 + 1).as_secs_f64();
        let g = (w[1] - w[0]).as_secs_f64();
        if g < t * (1.0 - jitter) - 0.001 || g > t * (1.0 + jitter) + 0.1 {
            bad_delays.push(format!(
                "gap before attempt {}: {g:.3} s vs table {t:.3} s",
                i + 2
            ));
        }
    }
    println!(
        "scheduled delays and listener gaps checked against the table: {} + {} ({} outside ±20 %)",
        seen.reconnecting.len(),
        times.len().saturating_sub(1),
        bad_delays.len()
    );
    let count = times.len() as u64;
    if count < lo || count > hi {
        ok = false;
        println!("INVARIANT FAILED: {count} attempts, expected {lo}..={hi}");
    }
    for b in &bad_delays {
        ok = false;
        println!("INVARIANT FAILED: delay {b}");
    }
    // "Near zero": under 2 % of one core while nothing can connect.
    if let Some(c) = cpu
        && c / wall > 0.02
    {
        ok = false;
        println!(
            "INVARIANT FAILED: CPU {:.4} s per s while the server is down",
            c / wall
        );
    }
    ok
}
