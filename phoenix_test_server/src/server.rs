//! The server: builder, listener thread (with the refuse/rebind faults), the connect decision
//! (Phoenix.Transports.WebSocket + UserSocket.connect/3), the public [`TestServer`] and
//! [`Faults`].
//!
//! The top of the module graph: it may use every other module, and none uses it. It is the only
//! module that starts the listener, timer and per-connection threads (the socket process,
//! `conn`, starts its own writer thread).

use std::collections::BTreeMap;
use std::io::{self, Read};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::builtin;
use crate::channel::{Channel, Routes};
use crate::conn::{self, Accepted};
use crate::handle::ServerHandle;
use crate::http::{self, Request, Response};
use crate::locks::lock;
use crate::serializer::Payload;
use crate::shared::{Connection, Shared};
use crate::state::{Config, ConnectInfo, FaultState, PhoenixVersion, Refusal};
use crate::static_files::{self, Lookup, StaticFile};

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
    routes: Routes,
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
            },
            routes: Vec::new(),
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
        self.routes
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
            builtin::register(&mut self.routes);
        }
        let listener = TcpListener::bind((self.ip, self.port))?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared::new(self.config, addr));
        let faults = Faults {
            shared: Arc::downgrade(&shared),
            state: shared.fault_state.clone(),
        };
        let routes = Arc::new(self.routes);
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
                .spawn(move || accept_loop(&shared, &routes, listener))
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
            faults,
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
    faults: Faults,
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
        &self.faults
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
        let conns: Vec<Arc<dyn Connection>> = lock(&shared.conns).values().cloned().collect();
        for c in &conns {
            c.peer().close(1001, "");
        }
        let deadline = Instant::now() + Duration::from_millis(200);
        while !lock(&shared.conns).is_empty() && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(2));
        }
        for s in lock(&shared.sockets).values() {
            let _ = s.shutdown(Shutdown::Both);
        }
        for c in &conns {
            c.peer().kill();
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
    fn conns(&self) -> Vec<Arc<dyn Connection>> {
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
                c.peer().close(1001, "going away");
            } else {
                c.peer().kill();
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
        self.state.set_stop_reading(yes);
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
        self.state.set_close_after(n);
        for c in self.conns() {
            c.peer().wake_writer();
        }
    }
}

fn accept_loop(shared: &Arc<Shared>, routes: &Arc<Routes>, listener: TcpListener) {
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
                    spawn_connection(shared, routes, stream);
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

fn spawn_connection(shared: &Arc<Shared>, routes: &Arc<Routes>, stream: TcpStream) {
    let id = shared.next_id();
    if let Ok(clone) = stream.try_clone() {
        lock(&shared.sockets).insert(id, clone);
    }
    let s2 = shared.clone();
    let routes = routes.clone();
    let spawned = thread::Builder::new()
        .name(format!("pts-conn-{id}"))
        .spawn(move || {
            handle_connection(&s2, &routes, id, stream);
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

fn handle_connection(shared: &Arc<Shared>, routes: &Arc<Routes>, id: u64, mut stream: TcpStream) {
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
            conn::run(shared, routes, id, stream, &head, accepted);
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
    let refused = lock(&shared.accept).active(Refusal::Http403);
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
