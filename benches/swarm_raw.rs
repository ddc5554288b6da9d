//! The swarm's yardstick: the swarm example's work (`examples/swarm`) done by the leanest Rust
//! client we could write, so `benches/swarm_compare.py --raw` can show how much of a message's CPU
//! any client pays (the kernel's share included) and how much is ours.
//!
//! One thread, no Bevy, no protocol state beyond a ref counter: N nonblocking tungstenite 0.30
//! sockets (`TCP_NODELAY`) in one level-triggered epoll set; each joins `room:swarm-K`
//! (`{"user_id":"bot-I"}`, K = I mod rooms, Presence on), pushes `move` `{"x":..,"y":..}` every
//! 1/RATE s (spread over the period as the swarm spreads them), heartbeats every 30 s, and reads
//! every frame with serde_json into `(join_ref, ref, topic, event, RawValue)`, counting replies
//! (ok or error by their status), broadcasts and presence events; a socket's reads stop at a read
//! that comes back short (as the plugin's transport's do), not at one that fails. The epoll wait
//! sleeps until a socket is readable or at most `--max-wait-ms` (16, as the headless preset's
//! `WaitForNetwork`), and each wake sends the pushes that are due, as the swarm's frames do
//! (`--max-wait-ms 0`: wake for every push on time instead, as the swarm's `--on-time` and
//! phoenix.js's timers do). CPU and memory are measured and printed as the swarm
//! example's `--json` summary (same field names, same `/proc` sources, the main thread).
//!
//! `cargo bench --bench swarm_raw -- --bots 1000 --url ws://127.0.0.1:PORT/socket --json`
//! (`--rate HZ` 5, `--seconds S` 10, `--rooms N` one per 10 bots). Without `--url` (as in
//! `cargo test --benches`) it runs 10 bots for 1 s against an embedded `phoenix_test_server` and
//! checks that every push was answered.
#![allow(missing_docs, clippy::unwrap_used)]

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use rustix::event::epoll::{self, EventData, EventFlags};
use serde_json::value::RawValue;
use tungstenite::protocol::WebSocketConfig;
use tungstenite::{Message, WebSocket};

type Frame<'a> = (
    Option<&'a str>,
    Option<&'a str>,
    &'a str,
    &'a str,
    &'a RawValue,
);

const HEARTBEAT: Duration = Duration::from_secs(30);

/// The socket, skipping the read that would only fail with `EAGAIN`: a nonblocking read that
/// comes back short found the receive queue empty, so the rest of this wake's reads of it are
/// answered `WouldBlock` without a system call (the plugin's transport does the same; the
/// socket stays readable in the level-triggered set if more came meanwhile).
struct Sock {
    tcp: TcpStream,
    /// Nonblocking now (the handshake's blocking reads are never skipped).
    gated: bool,
    /// A read this wake came back short.
    empty: bool,
}

impl Read for Sock {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.empty {
            return Err(ErrorKind::WouldBlock.into());
        }
        let n = self.tcp.read(buf)?;
        self.empty = self.gated && n != 0 && n < buf.len();
        Ok(n)
    }
}

impl Write for Sock {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.tcp.write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.tcp.flush()
    }
}

struct Bot {
    ws: WebSocket<Sock>,
    index: usize,
    topic: String,
    join_ref: u64,
    next_ref: u64,
    x: f32,
}

#[derive(Default, Clone, Copy, Debug)]
struct Totals {
    pushes: u64,
    replies_ok: u64,
    replies_error: u64,
    messages: u64,
    presence: u64,
    joined: u64,
}

impl Bot {
    fn send(&mut self, text: String) {
        // Written into tungstenite's buffer; a flush that would block is retried on the next
        // wake (`flush_all`), as the plugin's transport does.
        self.ws.write(Message::text(text)).unwrap();
        match self.ws.flush() {
            Ok(()) => {}
            Err(tungstenite::Error::Io(e)) if e.kind() == ErrorKind::WouldBlock => {}
            Err(e) => panic!("bot {}: {e}", self.index),
        }
    }

    fn push(&mut self, event: &str, payload: &str) {
        self.next_ref += 1;
        let frame = format!(
            r#"["{}","{}","{}","{event}",{payload}]"#,
            self.join_ref, self.next_ref, self.topic
        );
        self.send(frame);
    }

    /// Reads every frame the socket has now.
    fn read_all(&mut self, t: &mut Totals) {
        self.ws.get_mut().empty = false;
        loop {
            let text = match self.ws.read() {
                Ok(Message::Text(text)) => text,
                Ok(_) => continue,
                Err(tungstenite::Error::Io(e)) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) => panic!("bot {}: {e}", self.index),
            };
            let (_, msg_ref, _, event, payload): Frame = serde_json::from_str(&text).unwrap();
            match event {
                "phx_reply" => {
                    let ok = payload.get().starts_with(r#"{"status":"ok""#)
                        || payload.get().contains(r#""status":"ok""#);
                    if msg_ref == Some(self.join_ref.to_string().as_str()) {
                        assert!(ok, "bot {}: join refused: {text}", self.index);
                        t.joined += 1;
                    } else if ok {
                        t.replies_ok += 1;
                    } else {
                        t.replies_error += 1;
                    }
                }
                "presence_state" | "presence_diff" => t.presence += 1,
                _ => t.messages += 1,
            }
        }
    }
}

struct Options {
    bots: usize,
    rooms: Option<usize>,
    rate: f64,
    seconds: f64,
    url: Option<String>,
    json: bool,
    max_wait: Option<Duration>,
}

fn options() -> Options {
    let mut o = Options {
        bots: 100,
        rooms: None,
        rate: 5.0,
        seconds: 10.0,
        url: None,
        json: false,
        max_wait: Some(Duration::from_millis(16)),
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = |name: &str| {
            args.next()
                .unwrap_or_else(|| panic!("{name} needs a value"))
        };
        match a.as_str() {
            "--bots" => o.bots = value("--bots").parse().unwrap(),
            "--rooms" => o.rooms = Some(value("--rooms").parse().unwrap()),
            "--rate" => o.rate = value("--rate").parse().unwrap(),
            "--seconds" => o.seconds = value("--seconds").parse().unwrap(),
            "--url" => o.url = Some(value("--url")),
            "--json" => o.json = true,
            "--max-wait-ms" => {
                let ms: u64 = value("--max-wait-ms").parse().unwrap();
                o.max_wait = (ms > 0).then(|| Duration::from_millis(ms));
            }
            // cargo bench / cargo test pass these.
            _ => {}
        }
    }
    o
}

fn connect(url: &str, index: usize) -> WebSocket<Sock> {
    let addr = url
        .trim_start_matches("ws://")
        .split('/')
        .next()
        .unwrap()
        .to_owned();
    let tcp = TcpStream::connect(addr).unwrap();
    tcp.set_nodelay(true).unwrap();
    let stream = Sock {
        tcp,
        gated: false,
        empty: false,
    };
    // The plugin's read size and first buffer (tungstenite zero-fills the part it reads into).
    let config = WebSocketConfig::default().read_buffer_size(4096);
    let (ws, _) = tungstenite::client::client_with_config(
        format!("{url}/websocket?vsn=2.0.0").as_str(),
        stream,
        Some(config),
    )
    .unwrap_or_else(|e| panic!("bot {index}: handshake: {e}"));
    let mut ws = ws;
    ws.get_ref().tcp.set_nonblocking(true).unwrap();
    ws.get_mut().gated = true;
    ws
}

/// CPU time of the main thread in nanoseconds (`schedstat`), as the swarm example reads it.
fn main_thread_cpu() -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/self/task/{}/schedstat", std::process::id()))
        .unwrap();
    Duration::from_nanos(stat.split_whitespace().next().unwrap().parse().unwrap())
}

/// The main thread's CPU time in the kernel (10 ms ticks), as the swarm example reads it.
fn main_thread_system_cpu() -> Duration {
    let stat =
        std::fs::read_to_string(format!("/proc/self/task/{}/stat", std::process::id())).unwrap();
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let ticks: u64 = rest.split_whitespace().nth(12).unwrap().parse().unwrap();
    Duration::from_millis(ticks * 10)
}

fn rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace()
        .nth(1)
        .unwrap()
        .parse::<u64>()
        .unwrap()
        * 1024
}

/// Waits on the set until a socket is readable or `until`; calls `ready` with each ready bot.
fn wait(
    set: &std::os::fd::OwnedFd,
    events: &mut Vec<epoll::Event>,
    bots: usize,
    until: Option<Instant>,
    mut ready: impl FnMut(usize),
) {
    let timeout = until.map(|u| {
        let d = u.saturating_duration_since(Instant::now());
        rustix::event::Timespec {
            tv_sec: d.as_secs() as i64,
            tv_nsec: i64::from(d.subsec_nanos()),
        }
    });
    events.clear();
    events.reserve(bots);
    match epoll::wait(
        set,
        rustix::buffer::spare_capacity(&mut *events),
        timeout.as_ref(),
    ) {
        Ok(_) | Err(rustix::io::Errno::INTR) => {}
        Err(e) => panic!("epoll_wait: {e}"),
    }
    for e in events.iter() {
        ready(e.data.u64() as usize);
    }
}

fn main() {
    let mut o = options();
    let server = if o.url.is_none() {
        o.bots = 10;
        o.seconds = 1.0;
        let s = phoenix_test_server::start().unwrap();
        o.url = Some(s.url());
        Some(s)
    } else {
        None
    };
    let url = o.url.clone().unwrap();
    let rooms = o.rooms.unwrap_or(o.bots.div_ceil(10)).max(1);
    let set = epoll::create(epoll::CreateFlags::CLOEXEC).unwrap();
    let mut events = Vec::new();
    let mut totals = Totals::default();

    let rss_before = rss();
    let t0 = Instant::now();
    let mut bots: Vec<Bot> = (0..o.bots)
        .map(|i| {
            let ws = connect(&url, i);
            epoll::add(
                &set,
                &ws.get_ref().tcp,
                EventData::new_u64(i as u64),
                EventFlags::IN | EventFlags::RDHUP,
            )
            .unwrap();
            let mut b = Bot {
                ws,
                index: i,
                topic: format!("room:swarm-{}", i % rooms),
                join_ref: 1,
                next_ref: 1,
                x: 0.0,
            };
            let frame = format!(
                r#"["1","1","{}","phx_join",{{"user_id":"bot-{i}"}}]"#,
                b.topic
            );
            b.send(frame);
            b
        })
        .collect();
    while totals.joined < o.bots as u64 {
        assert!(t0.elapsed() < Duration::from_secs(120), "joins timed out");
        wait(&set, &mut events, o.bots, None, |i| {
            bots[i].read_all(&mut totals)
        });
    }
    let connect_seconds = t0.elapsed().as_secs_f64();
    let rss_after_join = rss();

    // Pushes and heartbeats from one timer heap: (due, bot, is heartbeat).
    let period = (o.rate > 0.0).then(|| Duration::from_secs_f64(1.0 / o.rate));
    let start = Instant::now();
    let mut timers: BinaryHeap<Reverse<(Instant, usize, bool)>> = BinaryHeap::new();
    for b in &bots {
        if let Some(p) = period {
            let first = start + p.mul_f64((b.index % 97) as f64 / 97.0);
            timers.push(Reverse((first, b.index, false)));
        }
        timers.push(Reverse((start + HEARTBEAT, b.index, true)));
    }
    let before = totals;
    let (cpu0, sys0) = (main_thread_cpu(), main_thread_system_cpu());
    let end = start + Duration::from_secs_f64(o.seconds);
    loop {
        let now = Instant::now();
        if now >= end {
            break;
        }
        while let Some(&Reverse((due, i, heartbeat))) = timers.peek() {
            if due > now {
                break;
            }
            timers.pop();
            let b = &mut bots[i];
            if heartbeat {
                b.next_ref += 1;
                b.send(format!(
                    r#"[null,"{}","phoenix","heartbeat",{{}}]"#,
                    b.next_ref
                ));
                timers.push(Reverse((due + HEARTBEAT, i, true)));
            } else {
                b.x = (b.x + 1.0) % 100.0;
                let payload = format!(r#"{{"x":{:?},"y":{:?}}}"#, b.x, b.index as f32);
                b.push("move", &payload);
                totals.pushes += 1;
                let p = period.unwrap();
                let next = if due + p < now { now + p } else { due + p };
                timers.push(Reverse((next, i, false)));
            }
        }
        let until = match o.max_wait {
            Some(w) => Instant::now() + w,
            None => timers.peek().map(|Reverse((d, ..))| *d).unwrap_or(end),
        }
        .min(end);
        wait(&set, &mut events, o.bots, Some(until), |i| {
            let b = &mut bots[i];
            b.read_all(&mut totals);
            // A flush that would have blocked earlier goes out now.
            let _ = b.ws.flush();
        });
    }
    let cpu = main_thread_cpu() - cpu0;
    let sys = main_thread_system_cpu() - sys0;
    let wall = start.elapsed().as_secs_f64();
    let run = Totals {
        pushes: totals.pushes - before.pushes,
        replies_ok: totals.replies_ok - before.replies_ok,
        replies_error: totals.replies_error - before.replies_error,
        messages: totals.messages - before.messages,
        presence: totals.presence - before.presence,
        joined: totals.joined,
    };
    let counted = run.pushes + run.replies_ok + run.replies_error + run.messages + run.presence;
    let summary = serde_json::json!({
        "client": "raw tungstenite + epoll",
        "bots": o.bots,
        "rooms": rooms,
        "rate": o.rate,
        "seconds": wall,
        "connect_seconds": connect_seconds,
        "totals": {
            "pushes": totals.pushes,
            "replies_ok": totals.replies_ok,
            "replies_error": totals.replies_error,
            "messages": totals.messages,
            "presence": totals.presence,
        },
        "run_totals": {
            "pushes": run.pushes,
            "replies_ok": run.replies_ok,
            "replies_error": run.replies_error,
            "messages": run.messages,
            "presence": run.presence,
        },
        "client_cpu_seconds": cpu.as_secs_f64(),
        "client_system_cpu_seconds": sys.as_secs_f64(),
        "client_cpu_us_per_message": cpu.as_secs_f64() * 1e6 / counted.max(1) as f64,
        "rss_before_bytes": rss_before,
        "rss_after_join_bytes": rss_after_join,
        "rss_per_socket_bytes": (rss_after_join as f64 - rss_before as f64) / o.bots as f64,
    });
    if o.json {
        println!("{summary}");
    } else {
        println!("{summary:#}");
    }
    if server.is_some() {
        // The smoke round: every bot joined, pushed and heard the room.
        assert!(run.pushes >= o.bots as u64, "{run:?}");
        assert!(run.messages > 0, "{run:?}");
        println!("swarm_raw smoke round ok");
    }
}
