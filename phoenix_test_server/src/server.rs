//! The server: builder, listener thread (with the refuse/rebind faults), the connect decision
//! (Phoenix.Transports.WebSocket + UserSocket.connect/3), the public [`TestServer`], [`Faults`]
//! and [`ServerHandle`].

use std::collections::{BTreeMap, HashMap};
use std::io::{self, Read};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard, Weak};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::builtin;
use crate::channel::Channel;
use crate::conn::{self, Accepted, Conn};
use crate::http::{self, Request, Response};
use crate::pubsub::{Presence, PubSub};
use crate::serializer::Payload;
use crate::static_files::{self, Lookup, StaticFile};
use crate::timer::Timers;

/// Locks a mutex, ignoring poisoning (a panicking test must not wedge the server).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

pub(crate) fn read<T>(m: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    m.read().unwrap_or_else(|e| e.into_inner())
}

pub(crate) fn write<T>(m: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    m.write().unwrap_or_else(|e| e.into_inner())
}

/// Which Phoenix release to imitate where 1.7.24 and 1.8.12 differ on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PhoenixVersion {
    /// Phoenix 1.7.24: `phx_error` payload `{}`, pushes with a stale join_ref are delivered,
    /// server disconnect closes with 1000.
    #[default]
    V1_7,
    /// Phoenix 1.8.12: `phx_error` payload `{"reason":"channel_crash"}`, pushes (and leaves) whose
    /// join_ref is not null and not the channel's current one are dropped, server disconnect
    /// closes with 1001.
    V1_8,
}

/// How [`Faults::refuse_connections`] refuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Answer the upgrade request with HTTP 403 (what a refused connect/3 does).
    Http403,
    /// Stop listening on the port (connect fails with "connection refused"); the same port is
    /// bound again when connections are allowed.
    TcpRefused,
}

/// One connect attempt, as seen by the server.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConnectInfo {
    /// The decoded query parameters (`vsn`, `token`, ...).
    pub params: BTreeMap<String, String>,
    /// The decoded auth token from `Sec-WebSocket-Protocol`, if there was exactly one.
    pub auth_token: Option<String>,
    /// The connection was upgraded (HTTP 101).
    pub accepted: bool,
    /// The HTTP status answered (101, 403 or 500).
    pub status: u16,
}

type Factory = Arc<dyn Fn() -> Box<dyn Channel> + Send + Sync>;
type ConnectCheck = Arc<dyn Fn(&BTreeMap<String, String>, Option<&str>) -> bool + Send + Sync>;

pub(crate) struct Config {
    pub idle_timeout: Duration,
    pub send_timeout: Duration,
    pub auth_token: bool,
    pub max_channels: usize,
    pub version: PhoenixVersion,
    /// Answer undecodable frames with an error reply instead of closing (see the builder).
    pub tolerate_bad_frames: bool,
    /// Canonical directory served over plain HTTP (set by `start` from the builder's path).
    static_dir: Option<PathBuf>,
    connect_check: Option<ConnectCheck>,
    routes: Vec<(String, Factory)>,
}

impl Config {
    /// The channel for a topic: the first pattern that matches (`"room:*"` or an exact topic).
    pub(crate) fn route(&self, topic: &str) -> Option<Box<dyn Channel>> {
        self.routes
            .iter()
            .find(|(pattern, _)| match pattern.strip_suffix('*') {
                Some(prefix) => topic.starts_with(prefix),
                None => topic == pattern,
            })
            .map(|(_, f)| f())
    }
}

/// The fault switches, read by the connection threads.
pub(crate) struct FaultState {
    pub answer_heartbeats: AtomicBool,
    pub stop_reading: AtomicBool,
    reading_mx: Mutex<()>,
    reading_cv: Condvar,
    pub delay_outgoing_ns: AtomicU64,
    pub drop_outgoing: AtomicBool,
    close_after_gen: AtomicU64,
    close_after_n: AtomicU64,
}

impl FaultState {
    fn new() -> Self {
        FaultState {
            answer_heartbeats: AtomicBool::new(true),
            stop_reading: AtomicBool::new(false),
            reading_mx: Mutex::new(()),
            reading_cv: Condvar::new(),
            delay_outgoing_ns: AtomicU64::new(0),
            drop_outgoing: AtomicBool::new(false),
            close_after_gen: AtomicU64::new(0),
            close_after_n: AtomicU64::new(u64::MAX),
        }
    }

    /// (generation, frames left before closing).
    pub(crate) fn close_after(&self) -> (u64, Option<u64>) {
        let g = self.close_after_gen.load(Ordering::Acquire);
        let n = self.close_after_n.load(Ordering::Acquire);
        (g, (n != u64::MAX).then_some(n))
    }

    /// Blocks while `stop_reading` is on, unless `abort()` becomes true.
    pub(crate) fn wait_reading_allowed(&self, abort: impl Fn() -> bool) {
        let mut g = lock(&self.reading_mx);
        while self.stop_reading.load(Ordering::SeqCst) && !abort() {
            g = self
                .reading_cv
                .wait_timeout(g, Duration::from_millis(50))
                .map(|r| r.0)
                .unwrap_or_else(|e| e.into_inner().0);
        }
    }
}

#[derive(Default)]
pub(crate) struct Stats {
    pub frames_received: AtomicU64,
    pub frames_sent: AtomicU64,
}

#[derive(Default)]
struct AcceptCtl {
    refusal: Option<(Refusal, Option<Instant>)>,
    listening: bool,
    closed_gen: u64,
}

impl AcceptCtl {
    fn active(&self, how: Refusal) -> bool {
        match self.refusal {
            Some((r, deadline)) if r == how => deadline.is_none_or(|d| Instant::now() < d),
            _ => false,
        }
    }
}

/// Everything the threads of one server share.
pub(crate) struct Shared {
    pub config: Config,
    pub fault_state: Arc<FaultState>,
    faults: Faults,
    addr: SocketAddr,
    pub conns: Mutex<HashMap<u64, Arc<Conn>>>,
    sockets: Mutex<HashMap<u64, TcpStream>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    pub pubsub: PubSub,
    pub presence: Presence,
    pub timers: Timers,
    pub stats: Stats,
    log: Mutex<Vec<ConnectInfo>>,
    ids: AtomicU64,
    accept: Mutex<AcceptCtl>,
    accept_cv: Condvar,
    shutdown: AtomicBool,
}

impl Shared {
    pub(crate) fn next_id(&self) -> u64 {
        self.ids.fetch_add(1, Ordering::Relaxed) + 1
    }
}

/// The default connect check: the reference apps' `UserSocket.connect/3`. Without an auth token,
/// `token=bad` is refused (Phoenix 1.7 app); with one, only `"good-token"` is accepted (Phoenix
/// 1.8 app, `SocketAuth`).
pub fn default_connect_check(params: &BTreeMap<String, String>, auth_token: Option<&str>) -> bool {
    match auth_token {
        None => params.get("token").map(String::as_str) != Some("bad"),
        Some(token) => token == "good-token",
    }
}

/// Configures and starts a [`TestServer`].
pub struct ServerBuilder {
    ip: IpAddr,
    port: u16,
    static_dir: Option<PathBuf>,
    config: Config,
    builtins: bool,
}

impl Default for ServerBuilder {
    fn default() -> Self {
        ServerBuilder {
            ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            port: 0,
            static_dir: None,
            config: Config {
                idle_timeout: Duration::from_secs(60),
                send_timeout: Duration::from_secs(30),
                auth_token: false,
                max_channels: 100,
                version: PhoenixVersion::V1_7,
                tolerate_bad_frames: false,
                static_dir: None,
                connect_check: None,
                routes: Vec::new(),
            },
            builtins: true,
        }
    }
}

impl ServerBuilder {
    /// TCP port to listen on, on the [`bind`](Self::bind) address (default 0: any free port).
    pub fn port(mut self, port: u16) -> Self {
        self.port = port;
        self
    }

    /// The IP address to listen on (default `127.0.0.1`: this machine only). Use
    /// `Ipv4Addr::UNSPECIFIED.into()` (`0.0.0.0`) to accept clients from the local network, e.g.
    /// for a game's embedded server, or `Ipv6Addr::UNSPECIFIED.into()` (`::`) for IPv6.
    /// [`TestServer::url`] stays usable from this machine: for an unspecified address it names
    /// `127.0.0.1` / `[::1]`.
    ///
    /// ```
    /// use std::net::Ipv4Addr;
    /// let server = phoenix_test_server::TestServer::builder()
    ///     .bind(Ipv4Addr::UNSPECIFIED.into())
    ///     .start()
    ///     .unwrap();
    /// assert!(server.addr().ip().is_unspecified());
    /// assert!(server.url().starts_with("ws://127.0.0.1:"));
    /// ```
    pub fn bind(mut self, ip: IpAddr) -> Self {
        self.ip = ip;
        self
    }

    /// Serves the files of `dir` over plain HTTP, like a Phoenix app's `Plug.Static`: a `GET` or
    /// `HEAD` for any path other than the websocket endpoint (`/socket/websocket`, which is never
    /// shadowed) answers the file at that path under `dir`, percent-decoded, with a
    /// `Content-Type` from its extension (`.html`, `.js`/`.mjs`, `.wasm` as `application/wasm`
    /// for `WebAssembly.instantiateStreaming`, `.css`, images, fonts, `.json`, `.txt`, ...;
    /// `application/octet-stream` otherwise), `Content-Length`, `Cache-Control: no-cache` and
    /// `Connection: close`. The body is streamed from the file, so multi-megabyte wasm builds are
    /// fine. `/` and other directories answer their `index.html`.
    ///
    /// A path with a `.` or `..` segment, or a segment holding `\`, `:`, NUL or an encoded `/`,
    /// is refused with 400; nothing outside `dir` is ever served (symlinks are resolved and
    /// checked too). A path with no file behind it gets the usual answer: 404, or `200 ok` for
    /// `/` without an `index.html`.
    ///
    /// `dir` is resolved (made absolute) by [`start`](Self::start), which fails if it is not
    /// an existing directory. Without this option no file is ever served.
    pub fn static_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.static_dir = Some(dir.into());
        self
    }

    /// Close a websocket with 1002 when nothing was received for this long (default 60 s).
    pub fn idle_timeout(mut self, d: Duration) -> Self {
        self.config.idle_timeout = d.max(Duration::from_millis(1));
        self
    }

    /// Drop the TCP connection (no close frame: 1006) when a send blocks this long (default 30 s,
    /// ThousandIsland's `send_timeout`).
    pub fn send_timeout(mut self, d: Duration) -> Self {
        self.config.send_timeout = d.max(Duration::from_millis(1));
        self
    }

    /// Behave like a Phoenix 1.8 socket declared with `auth_token: true`: `phoenix` becomes the
    /// only supported subprotocol, so a request offering only unknown subprotocols gets 403.
    /// Without it the token is still read and `phoenix` answered when offered (lenient).
    pub fn auth_token(mut self, yes: bool) -> Self {
        self.config.auth_token = yes;
        self
    }

    /// Channels per connection (`max_channels_per_transport`, default 100).
    pub fn max_channels(mut self, n: usize) -> Self {
        self.config.max_channels = n;
        self
    }

    /// The Phoenix release whose wire differences to imitate (default 1.7).
    pub fn phoenix_version(mut self, v: PhoenixVersion) -> Self {
        self.config.version = v;
        self
    }

    /// Replaces [`default_connect_check`]: gets the connect params and the decoded auth token;
    /// `false` answers the upgrade with HTTP 403.
    pub fn connect_check<F>(mut self, f: F) -> Self
    where
        F: Fn(&BTreeMap<String, String>, Option<&str>) -> bool + Send + Sync + 'static,
    {
        self.config.connect_check = Some(Arc::new(f));
        self
    }

    /// Declares a channel for a topic pattern (`"game:*"` or an exact topic), like Phoenix's
    /// `channel "game:*", GameChannel`. `factory` makes a fresh value per join. Patterns are tried
    /// in declaration order, before the built-in `echo:*`, `room:*` and `private:*`.
    pub fn channel<C, F>(mut self, pattern: &str, factory: F) -> Self
    where
        C: Channel,
        F: Fn() -> C + Send + Sync + 'static,
    {
        self.config
            .routes
            .push((pattern.to_string(), Arc::new(move || Box::new(factory()))));
        self
    }

    /// A frame that cannot be decoded (broken JSON, a number the JSON parser refuses such as
    /// `1e400`, JSON nested deeper than 128 levels, a short array, a malformed binary frame)
    /// gets an error reply on the `phoenix` topic,
    /// `[null,null,"phoenix","phx_reply",{"response":{"reason":"unmatched topic"},"status":"error"}]`,
    /// and the connection stays open. Stock Phoenix (the default here) closes the connection
    /// instead; a Phoenix app gets this behaviour from a serializer that turns such frames into
    /// an event on the `phoenix` topic, as the arena example's `server/` app does.
    pub fn tolerate_bad_frames(mut self, yes: bool) -> Self {
        self.config.tolerate_bad_frames = yes;
        self
    }

    /// Leaves out the built-in reference channels (`echo:*`, `room:*`, `private:*`).
    pub fn without_builtin_channels(mut self) -> Self {
        self.builtins = false;
        self
    }

    /// Binds the [`bind`](Self::bind) address (default 127.0.0.1) and [`port`](Self::port) and
    /// starts serving. Fails if the port cannot be bound or the
    /// [`static_dir`](Self::static_dir) is not a directory.
    pub fn start(mut self) -> io::Result<TestServer> {
        if let Some(dir) = &self.static_dir {
            let root = dir.canonicalize().map_err(|e| {
                io::Error::new(e.kind(), format!("static_dir {}: {e}", dir.display()))
            })?;
            if !root.is_dir() {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("static_dir {} is not a directory", dir.display()),
                ));
            }
            self.config.static_dir = Some(root);
        }
        if self.builtins {
            builtin::register(&mut self.config.routes);
        }
        let listener = TcpListener::bind((self.ip, self.port))?;
        let addr = listener.local_addr()?;
        let fault_state = Arc::new(FaultState::new());
        let shared = Arc::new_cyclic(|weak: &Weak<Shared>| Shared {
            config: self.config,
            fault_state: fault_state.clone(),
            faults: Faults {
                shared: weak.clone(),
                state: fault_state.clone(),
            },
            addr,
            conns: Mutex::new(HashMap::new()),
            sockets: Mutex::new(HashMap::new()),
            threads: Mutex::new(Vec::new()),
            pubsub: PubSub::default(),
            presence: Presence::default(),
            timers: Timers::default(),
            stats: Stats::default(),
            log: Mutex::new(Vec::new()),
            ids: AtomicU64::new(0),
            accept: Mutex::new(AcceptCtl {
                listening: true,
                ..AcceptCtl::default()
            }),
            accept_cv: Condvar::new(),
            shutdown: AtomicBool::new(false),
        });
        let timer = {
            let shared = shared.clone();
            thread::Builder::new()
                .name("pts-timer".into())
                .spawn(move || shared.timers.run())?
        };
        let acceptor = {
            let shared = shared.clone();
            thread::Builder::new()
                .name("pts-accept".into())
                .spawn(move || accept_loop(&shared, listener))
        };
        let acceptor = match acceptor {
            Ok(a) => a,
            Err(e) => {
                shared.timers.stop();
                let _ = timer.join();
                return Err(e);
            }
        };
        Ok(TestServer {
            shared,
            addr,
            acceptor: Some(acceptor),
            timer: Some(timer),
        })
    }
}

/// The address a client on this machine connects to: `addr`, with an unspecified IP (`0.0.0.0` /
/// `::`) replaced by loopback.
fn connectable(addr: SocketAddr) -> SocketAddr {
    let ip = match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, addr.port())
}

/// Starts a server with the default configuration on a free port of 127.0.0.1.
pub fn start() -> io::Result<TestServer> {
    ServerBuilder::default().start()
}

/// A running server. Dropping it closes the listener and every connection and joins all threads.
pub struct TestServer {
    shared: Arc<Shared>,
    addr: SocketAddr,
    acceptor: Option<JoinHandle<()>>,
    timer: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for TestServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestServer")
            .field("addr", &self.addr)
            .finish()
    }
}

impl TestServer {
    /// A builder for a non-default server.
    pub fn builder() -> ServerBuilder {
        ServerBuilder::default()
    }

    /// The listening address as bound (`127.0.0.1:PORT` by default; `0.0.0.0:PORT` after
    /// [`bind`](ServerBuilder::bind)`(0.0.0.0)`).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The socket endpoint, `ws://127.0.0.1:PORT/socket`; clients append `/websocket?vsn=2.0.0`.
    /// It names the bound address, except that an unspecified one (`0.0.0.0` / `::`) is replaced
    /// by loopback (`127.0.0.1` / `[::1]`), so a client on this machine can always use it.
    pub fn url(&self) -> String {
        format!("ws://{}/socket", connectable(self.addr))
    }

    /// The fault injection switches.
    pub fn faults(&self) -> &Faults {
        &self.shared.faults
    }

    /// Every accepted or refused connect attempt so far, in order.
    pub fn connections(&self) -> Vec<ConnectInfo> {
        lock(&self.shared.log).clone()
    }

    /// Websockets currently open (a closed one is counted until its channels are cleaned up).
    pub fn open_connections(&self) -> usize {
        lock(&self.shared.conns).len()
    }

    /// Text and binary frames received from clients so far.
    pub fn frames_received(&self) -> u64 {
        self.shared.stats.frames_received.load(Ordering::Relaxed)
    }

    /// Text and binary frames written to clients so far.
    pub fn frames_sent(&self) -> u64 {
        self.shared.stats.frames_sent.load(Ordering::Relaxed)
    }

    /// A cloneable handle (broadcast, disconnect, presence) usable from any thread.
    pub fn handle(&self) -> ServerHandle {
        ServerHandle {
            shared: self.shared.clone(),
        }
    }

    /// `Endpoint.broadcast(topic, event, payload)`: to every subscriber of `topic`.
    pub fn broadcast(&self, topic: &str, event: &str, payload: impl Into<Payload>) {
        self.handle().broadcast(topic, event, payload);
    }

    /// `Endpoint.broadcast(socket_id, "disconnect", %{})`: closes every websocket with that id.
    pub fn disconnect(&self, socket_id: &str) {
        self.handle().disconnect(socket_id);
    }

    /// `Presence.list(topic)`.
    pub fn presence_list(&self, topic: &str) -> Value {
        self.shared.presence.list(topic)
    }

    /// Polls until `open_connections() == n` or the timeout passes; returns whether it did.
    pub fn wait_for_open_connections(&self, n: usize, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self.open_connections() == n {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            thread::sleep(Duration::from_millis(2));
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        let shared = &self.shared;
        shared.shutdown.store(true, Ordering::SeqCst);
        let listening = {
            let ctl = lock(&shared.accept);
            shared.accept_cv.notify_all();
            ctl.listening
        };
        if listening {
            let _ = TcpStream::connect_timeout(&connectable(self.addr), Duration::from_millis(500));
        }
        if let Some(a) = self.acceptor.take() {
            let _ = a.join();
        }
        let conns: Vec<Arc<Conn>> = lock(&shared.conns).values().cloned().collect();
        for c in &conns {
            c.close(1001, "");
        }
        let deadline = Instant::now() + Duration::from_millis(200);
        while !lock(&shared.conns).is_empty() && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(2));
        }
        for s in lock(&shared.sockets).values() {
            let _ = s.shutdown(Shutdown::Both);
        }
        for c in &conns {
            c.kill();
        }
        drop(conns);
        let threads: Vec<JoinHandle<()>> = std::mem::take(&mut *lock(&shared.threads));
        for t in threads {
            let _ = t.join();
        }
        shared.timers.stop();
        if let Some(t) = self.timer.take() {
            let _ = t.join();
        }
    }
}

/// A cloneable handle on a running server, for channel code and other threads.
#[derive(Clone)]
pub struct ServerHandle {
    pub(crate) shared: Arc<Shared>,
}

impl std::fmt::Debug for ServerHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerHandle")
            .field("addr", &self.shared.addr)
            .finish()
    }
}

impl ServerHandle {
    /// `Endpoint.broadcast(topic, event, payload)`.
    pub fn broadcast(&self, topic: &str, event: &str, payload: impl Into<Payload>) {
        self.shared
            .pubsub
            .broadcast(topic, event, &payload.into(), None);
    }

    /// `Endpoint.broadcast(socket_id, "disconnect", %{})`: closes those websockets (code 1000, or
    /// 1001 with [`PhoenixVersion::V1_8`]); no `phx_close`/`phx_error` is sent.
    pub fn disconnect(&self, socket_id: &str) {
        let code = match self.shared.config.version {
            PhoenixVersion::V1_7 => 1000,
            PhoenixVersion::V1_8 => 1001,
        };
        for c in lock(&self.shared.conns).values() {
            if c.socket_id == socket_id {
                c.close(code, "");
            }
        }
    }

    /// `Presence.list(topic)`.
    pub fn presence_list(&self, topic: &str) -> Value {
        self.shared.presence.list(topic)
    }

    /// Number of channels subscribed to `topic` on this server.
    pub fn subscribers(&self, topic: &str) -> usize {
        self.shared.pubsub.count(topic)
    }

    /// Sends `msg` to `handle_info` of every channel joined to `topic` (asynchronously, so it is
    /// safe to call from a channel callback).
    pub fn send_info(&self, topic: &str, msg: Value) {
        let weak = Arc::downgrade(&self.shared);
        let topic = topic.to_string();
        self.shared.timers.schedule(Duration::ZERO, move || {
            let Some(shared) = weak.upgrade() else { return };
            let conns: Vec<Arc<Conn>> = lock(&shared.conns).values().cloned().collect();
            for c in conns {
                conn::deliver_info(&shared, &c, &topic, None, msg.clone());
            }
        });
    }

    /// Runs `f` on the server's timer thread after `delay`.
    pub fn run_after(&self, delay: Duration, f: impl FnOnce() + Send + 'static) {
        self.shared.timers.schedule(delay, f);
    }
}

/// Fault injection. Every switch takes effect immediately for all connections (existing and new).
pub struct Faults {
    shared: Weak<Shared>,
    state: Arc<FaultState>,
}

impl std::fmt::Debug for Faults {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Faults").finish_non_exhaustive()
    }
}

impl Faults {
    fn conns(&self) -> Vec<Arc<Conn>> {
        match self.shared.upgrade() {
            Some(s) => lock(&s.conns).values().cloned().collect(),
            None => Vec::new(),
        }
    }

    /// Drops every open websocket: with a close frame (code 1001, reason "going away"), or by
    /// just shutting the TCP socket (the client sees 1006 / an error).
    pub fn drop_all_connections(&self, send_close_frame: bool) {
        for c in self.conns() {
            if send_close_frame {
                c.close(1001, "going away");
            } else {
                c.kill();
            }
        }
    }

    /// Refuses new connections, for `for_` or until [`allow_connections`](Self::allow_connections).
    /// With [`Refusal::TcpRefused`] the listener is closed before this returns.
    pub fn refuse_connections(&self, how: Refusal, for_: Option<Duration>) {
        let Some(shared) = self.shared.upgrade() else {
            return;
        };
        let mut ctl = lock(&shared.accept);
        ctl.refusal = Some((how, for_.map(|d| Instant::now() + d)));
        shared.accept_cv.notify_all();
        if how == Refusal::TcpRefused && ctl.listening {
            let closed_gen = ctl.closed_gen;
            drop(ctl);
            // Wake the blocking accept(); the acceptor sees the refusal and closes the listener.
            let _ = TcpStream::connect_timeout(&connectable(shared.addr), Duration::from_secs(1));
            let ctl = lock(&shared.accept);
            let _ = shared
                .accept_cv
                .wait_timeout_while(ctl, Duration::from_secs(2), |c| {
                    c.closed_gen == closed_gen && c.active(Refusal::TcpRefused)
                });
        }
    }

    /// Ends a refusal; with `TcpRefused` the port is listening again when this returns.
    pub fn allow_connections(&self) {
        let Some(shared) = self.shared.upgrade() else {
            return;
        };
        let mut ctl = lock(&shared.accept);
        ctl.refusal = None;
        shared.accept_cv.notify_all();
        if !ctl.listening {
            let _ = shared
                .accept_cv
                .wait_timeout_while(ctl, Duration::from_secs(2), |c| !c.listening);
        }
    }

    /// Whether heartbeats get their reply (default yes). Off = the client's heartbeat times out.
    pub fn answer_heartbeats(&self, yes: bool) {
        self.state.answer_heartbeats.store(yes, Ordering::SeqCst);
    }

    /// Slow consumer: stop reading client sockets (their kernel buffers fill up).
    pub fn stop_reading(&self, yes: bool) {
        self.state.stop_reading.store(yes, Ordering::SeqCst);
        let _g = lock(&self.state.reading_mx);
        self.state.reading_cv.notify_all();
    }

    /// Delays every outgoing frame by `d` (order kept); zero turns it off.
    pub fn delay_outgoing(&self, d: Duration) {
        self.state
            .delay_outgoing_ns
            .store(d.as_nanos().min(u64::MAX as u128) as u64, Ordering::SeqCst);
    }

    /// Silently discards outgoing text/binary frames while on (close frames still go out).
    pub fn drop_outgoing(&self, yes: bool) {
        self.state.drop_outgoing.store(yes, Ordering::SeqCst);
    }

    /// Closes each connection (code 1000) after it has sent `n` more frames; `None` turns it off.
    /// `Some(0)` closes every connection now.
    pub fn close_after_frames(&self, n: Option<u64>) {
        self.state
            .close_after_n
            .store(n.unwrap_or(u64::MAX), Ordering::Release);
        self.state.close_after_gen.fetch_add(1, Ordering::AcqRel);
        for c in self.conns() {
            c.wake_writer();
        }
    }
}

fn accept_loop(shared: &Arc<Shared>, listener: TcpListener) {
    let mut listener = Some(listener);
    loop {
        if shared.shutdown.load(Ordering::SeqCst) {
            return;
        }
        if let Some(l) = &listener {
            match l.accept() {
                Ok((stream, _)) => {
                    if shared.shutdown.load(Ordering::SeqCst) {
                        return;
                    }
                    let mut ctl = lock(&shared.accept);
                    if ctl.active(Refusal::TcpRefused) {
                        drop(stream);
                        listener = None;
                        ctl.listening = false;
                        ctl.closed_gen += 1;
                        shared.accept_cv.notify_all();
                        continue;
                    }
                    drop(ctl);
                    spawn_connection(shared, stream);
                }
                Err(_) => thread::sleep(Duration::from_millis(10)),
            }
        } else {
            {
                let mut ctl = lock(&shared.accept);
                loop {
                    if shared.shutdown.load(Ordering::SeqCst) {
                        return;
                    }
                    let wait = match ctl.refusal {
                        Some((Refusal::TcpRefused, Some(deadline))) => {
                            let now = Instant::now();
                            if now >= deadline {
                                ctl.refusal = None;
                                break;
                            }
                            Some(deadline - now)
                        }
                        Some((Refusal::TcpRefused, None)) => None,
                        _ => break,
                    };
                    ctl = match wait {
                        Some(d) => shared
                            .accept_cv
                            .wait_timeout(ctl, d)
                            .map(|r| r.0)
                            .unwrap_or_else(|e| e.into_inner().0),
                        None => shared
                            .accept_cv
                            .wait(ctl)
                            .unwrap_or_else(|e| e.into_inner()),
                    };
                }
            }
            // Rebind the same port (retry briefly: the old socket may linger for a moment).
            let mut bound = None;
            for _ in 0..200 {
                match TcpListener::bind(shared.addr) {
                    Ok(l) => {
                        bound = Some(l);
                        break;
                    }
                    Err(_) => thread::sleep(Duration::from_millis(10)),
                }
            }
            if let Some(l) = bound {
                listener = Some(l);
                let mut ctl = lock(&shared.accept);
                ctl.listening = true;
                shared.accept_cv.notify_all();
            }
        }
    }
}

fn spawn_connection(shared: &Arc<Shared>, stream: TcpStream) {
    let id = shared.next_id();
    if let Ok(clone) = stream.try_clone() {
        lock(&shared.sockets).insert(id, clone);
    }
    let s2 = shared.clone();
    let spawned = thread::Builder::new()
        .name(format!("pts-conn-{id}"))
        .spawn(move || {
            handle_connection(&s2, id, stream);
            lock(&s2.sockets).remove(&id);
        });
    match spawned {
        Ok(h) => {
            let mut threads = lock(&shared.threads);
            threads.retain(|h| !h.is_finished());
            threads.push(h);
        }
        Err(_) => {
            lock(&shared.sockets).remove(&id);
        }
    }
}

enum Decision {
    Respond(Response),
    /// A static file (`head_only` for `HEAD`).
    File {
        file: StaticFile,
        head_only: bool,
    },
    Upgrade {
        key: String,
        subprotocol: Option<&'static str>,
        accepted: Accepted,
    },
}

fn handle_connection(shared: &Arc<Shared>, id: u64, mut stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let req = match http::read_request(&mut stream) {
        Ok(Some(r)) => r,
        _ => return,
    };
    match decide(shared, &req) {
        Decision::Respond(resp) => {
            if resp.write_to(&mut stream).is_ok() {
                linger_close(&mut stream);
            }
        }
        Decision::File { file, head_only } => {
            let _ = stream.set_write_timeout(Some(shared.config.send_timeout));
            if static_files::write_file(&mut stream, file, head_only).is_ok() {
                linger_close(&mut stream);
            }
        }
        Decision::Upgrade {
            key,
            subprotocol,
            accepted,
        } => {
            let head = http::upgrade_response(&key, subprotocol);
            conn::run(shared, id, stream, &head, accepted);
        }
    }
}

/// Lets the client read the response before the socket goes away.
fn linger_close(stream: &mut TcpStream) {
    let _ = stream.shutdown(Shutdown::Write);
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    let mut sink = [0u8; 1024];
    while matches!(stream.read(&mut sink), Ok(n) if n > 0) {}
}

fn decide(shared: &Arc<Shared>, req: &Request) -> Decision {
    let text = Some("text/plain; charset=utf-8");
    if req.path != "/socket/websocket" {
        let is_head = req.method == "HEAD";
        let mut invalid = false;
        if let Some(root) = &shared.config.static_dir
            && (is_head || req.method == "GET")
        {
            match static_files::lookup(root, &req.path) {
                Lookup::Found(file) => {
                    return Decision::File {
                        file,
                        head_only: is_head,
                    };
                }
                Lookup::Invalid => invalid = true,
                Lookup::Miss => {}
            }
        }
        let mut r = if invalid {
            Response::new(400, text, b"bad request")
        } else if req.path == "/" {
            Response::new(200, text, b"ok")
        } else {
            Response::new(404, text, b"not found")
        };
        if is_head && shared.config.static_dir.is_some() {
            r.body.clear(); // content-length stays that of the GET answer
        }
        return Decision::Respond(r);
    }
    let config = &shared.config;
    let params = http::decode_query(&req.query);
    let upgrade = http::validate_upgrade(req);
    let record = |token: Option<String>, status: u16| {
        if upgrade.is_ok() {
            lock(&shared.log).push(ConnectInfo {
                params: params.clone(),
                auth_token: token,
                accepted: status == 101,
                status,
            });
        }
    };
    let sp = match http::parse_subprotocols(&http::subprotocol_lines(req)) {
        Ok(sp) => sp,
        Err(()) => {
            // Base.decode64! raises: Bandit answers 500 and connect/3 never runs.
            record(None, 500);
            let body = br#"{"errors":{"detail":"Internal Server Error"}}"#;
            return Decision::Respond(Response::new(
                500,
                Some("application/json; charset=utf-8"),
                body,
            ));
        }
    };
    let subprotocol = sp.phoenix.then_some("phoenix");
    let forbidden = |token: Option<String>| {
        record(token, 403);
        let mut r = Response::new(403, None, b"");
        if let Some(p) = subprotocol {
            r.headers.push(("sec-websocket-protocol", p.to_string()));
        }
        Decision::Respond(r)
    };
    if config.auth_token && sp.any_left && !sp.phoenix {
        return forbidden(sp.token);
    }
    let Some(ser) = http::negotiate(params.get("vsn").map(String::as_str)) else {
        return forbidden(sp.token);
    };
    let refused = lock(&shared.accept).active(crate::Refusal::Http403);
    if refused {
        return forbidden(sp.token);
    }
    let ok = match &config.connect_check {
        Some(check) => check(&params, sp.token.as_deref()),
        None => default_connect_check(&params, sp.token.as_deref()),
    };
    if !ok {
        return forbidden(sp.token);
    }
    match upgrade.clone() {
        Err(body) => Decision::Respond(Response::new(400, text, body.as_bytes())),
        Ok(key) => {
            record(sp.token.clone(), 101);
            let socket_id = params
                .get("socket_id")
                .cloned()
                .unwrap_or_else(|| format!("sock:{}", shared.next_id()));
            Decision::Upgrade {
                key,
                subprotocol,
                accepted: Accepted {
                    ser,
                    socket_id,
                    params: params.clone(),
                    auth_token: sp.token,
                    rest: req.rest.clone(),
                },
            }
        }
    }
}
