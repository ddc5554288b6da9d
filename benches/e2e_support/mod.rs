//! Shared by the end-to-end benches (`benches/e2e_*.rs`): the test server in a child process,
//! process CPU from `/proc`, the raw blocking tungstenite client, the plugin app, the phoenix.js
//! runner, and the statistics. See BENCHMARKS.md for what is measured and how.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Read};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use bevy::prelude::*;
use bevy_phoenix_channels::prelude::*;
use serde_json::value::RawValue;
use tungstenite::{Message, WebSocket};

/// Set in the child process that serves (the bench binary re-executes itself).
const SERVE_ENV: &str = "BPC_E2E_SERVE";
/// Runs per client; the tables show medians.
pub const RUNS_ENV: &str = "BPC_E2E_RUNS";

/// True for `cargo bench` (the harness passes `--bench`); false for `cargo test --benches`,
/// where each bench runs a tiny smoke round with no timing.
pub fn full() -> bool {
    std::env::args().any(|a| a == "--bench")
}

/// Repetitions per client (3 by default, `BPC_E2E_RUNS` to change; 1 in smoke mode).
pub fn runs() -> usize {
    if !full() {
        return 1;
    }
    std::env::var(RUNS_ENV)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3)
}

/// Whether to run client `name` ("raw", "plugin", "js"): all unless `BPC_E2E_ONLY` lists
/// some (comma-separated), e.g. for profiling one of them.
pub fn enabled(name: &str) -> bool {
    match std::env::var("BPC_E2E_ONLY") {
        Ok(v) if !v.is_empty() => v.split(',').any(|x| x.trim() == name),
        _ => true,
    }
}

/// Call first in `main`: in the server child, serves until stdin closes and exits.
pub fn serve_if_child() {
    if std::env::var_os(SERVE_ENV).is_none() {
        return;
    }
    let server = phoenix_test_server::start().expect("start test server");
    println!("{}", server.url());
    // The parent holds our stdin: EOF means it is gone (or done), so we never outlive it.
    let mut sink = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut sink);
    drop(server);
    std::process::exit(0);
}

/// The test server (`phoenix_test_server::start()`, built in release like this binary) in a
/// child process, so that `/proc/self` counts only the client's CPU.
pub struct ServerProcess {
    child: Child,
    stdin: Option<ChildStdin>,
    /// `ws://127.0.0.1:PORT/socket`
    pub url: String,
}

impl ServerProcess {
    pub fn spawn() -> Self {
        let exe = std::env::current_exe().expect("current exe");
        let mut child = Command::new(exe)
            .env(SERVE_ENV, "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn server process");
        let stdin = child.stdin.take();
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("server url");
        let url = line.trim().to_owned();
        assert!(url.starts_with("ws://"), "server printed {url:?}");
        ServerProcess { child, stdin, url }
    }

    /// CPU time of the server process so far (live threads: measure while connections are open).
    pub fn cpu(&self) -> Duration {
        task_cpu(&self.child.id().to_string())
    }

    /// CPU time of the server process from `/proc/PID/stat` (utime + stime, 10 ms ticks), which
    /// keeps the time of threads that have ended (connections closed before it is read).
    pub fn stat_cpu(&self) -> Duration {
        let stat =
            std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap_or_default();
        // Fields after the ")" that ends the command name: utime and stime are the 12th and 13th.
        let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
        let f: Vec<u64> = rest
            .split_whitespace()
            .skip(11)
            .take(2)
            .map(|v| v.parse().unwrap_or(0))
            .collect();
        // USER_HZ is 100 on Linux.
        Duration::from_millis(f.iter().sum::<u64>() * 10)
    }

    /// `ws://…/socket/websocket?vsn=2.0.0`
    pub fn ws_url(&self) -> String {
        format!("{}/websocket?vsn=2.0.0", self.url)
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        drop(self.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// CPU time (user + system) of every live thread of a process, from
/// `/proc/PID/task/*/schedstat` (nanoseconds on CPU; finer than `/proc/PID/stat`'s 10 ms ticks).
pub fn task_cpu(pid: &str) -> Duration {
    let mut ns = 0u64;
    if let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for t in dir.flatten() {
            let Ok(s) = std::fs::read_to_string(t.path().join("schedstat")) else {
                continue;
            };
            ns += s
                .split_whitespace()
                .next()
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0);
        }
    }
    Duration::from_nanos(ns)
}

/// This process's CPU time (every live thread: the app's task pools included).
pub fn self_cpu() -> Duration {
    task_cpu("self")
}

// ----- the raw client ---------------------------------------------------------------------

/// A V2 frame as the raw client parses it: the physical limit for a Rust client.
pub type Frame<'a> = (
    Option<&'a str>,
    Option<&'a str>,
    &'a str,
    &'a str,
    &'a RawValue,
);

/// A blocking tungstenite 0.30 client with `TCP_NODELAY` speaking Phoenix V2 frames.
pub struct Raw {
    pub ws: WebSocket<TcpStream>,
    next_ref: u64,
    join_ref: u64,
    pub topic: String,
}

impl Raw {
    pub fn connect(server: &ServerProcess) -> Self {
        let url = server.ws_url();
        let addr = url
            .trim_start_matches("ws://")
            .split('/')
            .next()
            .expect("host:port")
            .to_owned();
        let stream = TcpStream::connect(addr).expect("connect");
        stream.set_nodelay(true).expect("nodelay");
        // The plugin's read buffer size (tungstenite zero-fills its free part before each read).
        let config = tungstenite::protocol::WebSocketConfig::default().read_buffer_size(4096);
        let (ws, _) = tungstenite::client::client_with_config(url.as_str(), stream, Some(config))
            .expect("handshake");
        Raw {
            ws,
            next_ref: 0,
            join_ref: 0,
            topic: String::new(),
        }
    }

    /// Joins `topic` and waits for the ok reply.
    pub fn join(&mut self, topic: &str) {
        self.topic = topic.to_owned();
        self.next_ref += 1;
        self.join_ref = self.next_ref;
        let r = self.join_ref;
        let frame = format!(r#"["{r}","{r}","{topic}","phx_join",{{}}]"#);
        self.ws.send(Message::text(frame)).expect("send join");
        loop {
            let text = self.read_text();
            let (_, msg_ref, _, event, payload): Frame =
                serde_json::from_str(&text).expect("frame");
            if event == "phx_reply" && msg_ref == Some(r.to_string().as_str()) {
                assert!(payload.get().contains(r#""status":"ok""#), "join: {text}");
                return;
            }
        }
    }

    /// Queues a push (no flush) and returns its ref.
    pub fn write_push(&mut self, event: &str, payload: &str) -> u64 {
        self.next_ref += 1;
        let r = self.next_ref;
        let frame = format!(
            r#"["{}","{r}","{}","{event}",{payload}]"#,
            self.join_ref, self.topic
        );
        self.ws.write(Message::text(frame)).expect("write push");
        r
    }

    pub fn flush(&mut self) {
        self.ws.flush().expect("flush");
    }

    /// The next text frame (a view of tungstenite's read buffer, no copy).
    pub fn read_text(&mut self) -> tungstenite::Utf8Bytes {
        match self.ws.read().expect("read") {
            Message::Text(t) => t,
            other => panic!("unexpected {other:?}"),
        }
    }

    pub fn close(mut self) {
        let _ = self.ws.close(None);
        let _ = self.ws.flush();
    }
}

// ----- the plugin app -----------------------------------------------------------------------

/// A headless app: `MinimalPlugins` + the plugin with a default socket to `url`, a long push
/// timeout (nothing times out in a bench) and a 64 MiB send backlog bound (`e2e_pipeline` writes
/// up to 100k pushes, about 5 MB, in one frame: the default 4 MiB bound drops the rest as
/// `SendQueueFull`, as it should for a game). No frame cap: the bench calls `app.update()` in a
/// loop.
pub fn plugin_app(url: &str) -> App {
    plugin_app_on(url, false)
}

/// [`plugin_app`], over the ewebsock transport with `ewebsock` (feature `ewebsock`, with
/// ewebsock's default options: a 10 ms read timeout).
pub fn plugin_app_on(url: &str, ewebsock: bool) -> App {
    let mut app = App::new();
    let mut config = PhoenixSocketConfig::new(url).with(|s| {
        s.with_push_timeout(Duration::from_secs(600))
            .with_max_send_backlog(64 << 20)
    });
    if ewebsock {
        #[cfg(feature = "ewebsock")]
        {
            config = config.with_transport(
                bevy_phoenix_channels::transport::ewebsock::EwebsockConnector::new(),
            );
        }
        #[cfg(not(feature = "ewebsock"))]
        panic!("the ewebsock rows need --features ewebsock");
    }
    // BPC_E2E_BUDGET: frames read per socket per update (default: the plugin's default).
    if let Some(n) = std::env::var("BPC_E2E_BUDGET")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        config = config.with_max_frames_per_update(n);
    }
    app.add_plugins(MinimalPlugins)
        .add_plugins(PhoenixChannelsPlugin::with_config(config));
    app.finish();
    app.cleanup();
    app
}

/// Runs frames until `done` holds (panics after `secs`).
pub fn pump_until(app: &mut App, secs: u64, what: &str, mut done: impl FnMut(&mut World) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        app.update();
        if done(app.world_mut()) {
            return;
        }
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
    }
}

/// Spawns a channel entity for `topic` and runs frames until it has joined.
pub fn join(app: &mut App, topic: &str) -> Entity {
    let e = app.world_mut().spawn(PhoenixChannel::new(topic)).id();
    pump_until(app, 15, "channel joined", |w| {
        w.get::<ChannelStatus>(e).map(|s| s.0) == Some(ChannelState::Joined)
    });
    e
}

/// The result rows of `e2e_burst` and `e2e_rtt`, in print order.
pub const ROWS: [&str; 8] = [
    "raw tungstenite",
    "plugin",
    "phoenix.js",
    "plugin, single-threaded executor",
    "plugin + WaitForNetwork",
    "plugin + WaitForNetwork, single-threaded executor",
    "plugin over ewebsock, single-threaded executor",
    "plugin over ewebsock + WaitForNetwork, single-threaded executor",
];

/// The ewebsock rows of [`ROWS`] and the built-in rows they compare with (same executor, same
/// wait).
pub const EWEBSOCK_PAIRS: [(usize, usize); 2] = [(6, 3), (7, 5)];

/// After a run over ewebsock: lets its connection thread notice the dropped sender and end (it
/// looks once per 10 ms read timeout), so the next client's CPU (summed over live threads) is
/// not read across that thread's exit.
pub fn settle(ewebsock: bool) {
    if ewebsock {
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// The plugin rows of [`ROWS`] this run measures, as (row, single-threaded executor,
/// WaitForNetwork, over ewebsock): all four built-in ones, plus the ewebsock one with
/// `--features ewebsock`, unless `BPC_E2E_ROWS` lists some (`1,5`, for profiling one).
pub fn plugin_rows() -> impl Iterator<Item = (usize, bool, bool, bool)> {
    let wanted = std::env::var("BPC_E2E_ROWS").unwrap_or_default();
    [
        (1, false, false, false),
        (3, true, false, false),
        (4, false, true, false),
        (5, true, true, false),
        (6, true, false, true),
        (7, true, true, true),
    ]
    .into_iter()
    .filter(|(.., ewebsock)| cfg!(feature = "ewebsock") || !ewebsock)
    .filter(move |(i, ..)| {
        wanted.is_empty() || wanted.split(',').any(|r| r.trim() == i.to_string())
    })
}

/// Empty result lists for [`ROWS`].
pub fn empty_rows<S>() -> Vec<(&'static str, Vec<S>)> {
    ROWS.iter().map(|name| (*name, Vec::new())).collect()
}

/// Lets the app sleep at the end of a frame until the socket has data ([`WaitForNetwork`]).
pub fn wait_for_network(app: &mut App) {
    app.insert_resource(WaitForNetwork::up_to(Duration::from_secs(1)));
}

/// Runs every schedule of the app on the calling thread (Bevy's single-threaded executor).
pub fn single_threaded(app: &mut App) {
    let mut schedules = app.world_mut().resource_mut::<Schedules>();
    for (_, s) in schedules.iter_mut() {
        s.set_executor(bevy::ecs::schedule::SingleThreadedExecutor::new());
    }
}

/// A unique topic.
pub fn topic(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "echo:{prefix}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

// ----- phoenix.js ----------------------------------------------------------------------------

/// One phoenix.js run's result (the JSON line `benches/js/bench.mjs` prints).
#[derive(Debug, serde::Deserialize)]
pub struct JsResult {
    pub n: u64,
    pub secs: f64,
    pub cpu_us: f64,
    #[serde(default)]
    pub lat_ns: Vec<u64>,
}

fn js_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("benches/js")
}

/// Whether node and phoenix.js are there (installs the locked packages with `npm ci` once if
/// node_modules is missing). Prints why not, once, and the bench then skips phoenix.js.
pub fn js_available() -> bool {
    let dir = js_dir();
    let node_ok = Command::new("node")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !node_ok {
        eprintln!("phoenix.js: skipped (no node)");
        return false;
    }
    if !dir.join("node_modules/phoenix").exists() {
        let ok = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--silent"])
            .current_dir(&dir)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            eprintln!("phoenix.js: skipped (npm ci in {} failed)", dir.display());
            return false;
        }
    }
    true
}

/// Runs `node benches/js/bench.mjs URL args…` and parses its result line.
pub fn run_js(server: &ServerProcess, args: &[&str]) -> JsResult {
    let out = Command::new("node")
        .arg(js_dir().join("bench.mjs"))
        .arg(&server.url)
        .args(args)
        .stderr(Stdio::inherit())
        .output()
        .expect("run node");
    assert!(out.status.success(), "bench.mjs {args:?} failed");
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().last().expect("bench.mjs printed nothing");
    serde_json::from_str(line).expect("bench.mjs result")
}

// ----- statistics ----------------------------------------------------------------------------

pub fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    if s.is_empty() {
        return f64::NAN;
    }
    s[s.len() / 2]
}

/// The `p`-th percentile (0..=100, nearest rank) of latencies.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// `a / b` as "0.93×".
pub fn ratio(a: f64, b: f64) -> String {
    format!("{:.2}×", a / b)
}

/// The machine note printed under each table.
pub fn machine_note() -> String {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    format!(
        "{cores} cores, load average {} at the end; runs per client: {}",
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" "),
        runs()
    )
}
