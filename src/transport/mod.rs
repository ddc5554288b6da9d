//! WebSocket transport: one connection, driven without blocking by the caller's frame loop.
//!
//! The transport knows nothing of Phoenix or Bevy. It moves [`Transmit`] frames out and yields
//! [`TransportEvent`]s in, in frame order, and is meant to be driven by `poll()` once per frame
//! (until it returns `None`) and `send()` + `flush()` after the app has produced its messages.
//!
//! # Transports are pluggable
//! The plugin drives every connection through the [`PhoenixTransport`] trait and opens each
//! one (every reconnect too) through the socket's [`PhoenixConnector`], set with
//! [`PhoenixSocketConfig::with_transport`](crate::plugin::PhoenixSocketConfig::with_transport).
//! The default is [`BuiltinConnector`], which opens the built-in [`Transport`] described below.
//! With the `ewebsock` feature, `ewebsock::EwebsockConnector` opens an ewebsock 0.8
//! connection instead (see that module for what it cannot do). A game can plug in its own: a
//! test double, a relay, a platform socket; [`PhoenixTransport`] states the contract, and
//! [`WaitHint`] how a transport lets a native `WaitForNetwork` sleep.
//!
//! # Native (everything but `wasm32`)
//! DNS, TCP connect (bounded by [`ConnectRequest::connect_timeout`]), `TCP_NODELAY`, optional TLS
//! and the WebSocket upgrade run on a short-lived thread. The connected socket is then handed back,
//! set nonblocking and driven directly by [`Transport::poll`], [`Transport::send`] and
//! [`Transport::flush`]: no I/O thread, no thread hop per message and no read-timeout latency.
//! `wss://` needs the `tls` feature (rustls with the ring provider, webpki-roots, plus
//! [`TlsConfig::extra_roots_der`]); without it a `wss://` URL fails with
//! [`TransportError::Tls`] instead of panicking.
//!
//! A caller with nothing else to do can block in [`wait_for_network`] until some transport has
//! something for `poll` (one `poll(2)`, or `WSAPoll` on Windows, over the sockets and a
//! [`NetworkWaker`]); the plugin's `WaitForNetwork` is built on it.
//!
//! # Web (`wasm32`)
//! A thin binding of the browser `WebSocket` with `binaryType = "arraybuffer"`, so every message
//! event is synchronous and frames arrive in order (ewebsock 0.8 switches to `Blob` after the first
//! binary send, and blobs are decoded asynchronously and can overtake text frames). Browser
//! callbacks push events into a queue that `poll` drains; the web `Transport` is `!Send`.
//! Browsers hide why a connection failed: a refused upgrade (HTTP 403), a TLS error and a network
//! error all look alike, so [`TransportError::Refused`] never occurs there; any failure before the
//! open is reported as [`TransportError::Connect`]. [`TlsConfig`] is ignored (the browser trusts
//! what it trusts).
//!
//! ## The WebSocket in a Web Worker ([`WebWorkerConnector`])
//! The browser delivers every WebSocket message as its own event on the page's main thread,
//! where the game renders: in headless Chromium about 30–35 µs of the browser's own work per
//! message, whichever client listens (BENCHMARKS.md, "The browser"). With
//! `PhoenixSocketConfig::with_transport(WebWorkerConnector)` the socket lives in a dedicated
//! worker instead (plain JavaScript from a Blob URL: nothing to serve, no bundler). The worker
//! packs the frames it receives into one buffer and posts a batch (the first frame after an
//! empty queue schedules the post with `setTimeout(0)`, so a lone frame is not held back and a
//! burst coalesces); the main thread copies each batch into wasm memory once. Frames sent in
//! one frame of the app go to the worker in one message at `flush`. The hidden-tab keepalive,
//! the clean close on `pagehide`, `send_backlog` (frames not yet taken by the worker's socket
//! plus its `bufferedAmount`), frame order and the events are as in the main-thread transport.
//! The cost is one more thread hop each way (latency, see BENCHMARKS.md); it pays off when the
//! main thread is the bottleneck and many messages arrive per frame. Not the default.

use std::fmt;
#[cfg(not(target_arch = "wasm32"))]
use std::sync::Arc;
use std::time::Duration;

use crate::protocol::{FrameText, Transmit};

#[cfg(feature = "ewebsock")]
pub mod ewebsock;
#[cfg(not(target_arch = "wasm32"))]
mod native;
#[cfg(all(feature = "tls", not(target_arch = "wasm32")))]
mod tls;
#[cfg(not(target_arch = "wasm32"))]
mod wait;
#[cfg(target_arch = "wasm32")]
mod web;
#[cfg(target_arch = "wasm32")]
mod web_common;
#[cfg(target_arch = "wasm32")]
mod web_worker;

#[cfg(not(target_arch = "wasm32"))]
use native as imp;
#[cfg(target_arch = "wasm32")]
use web as imp;

/// Default for [`ConnectRequest::max_frame_size`]: 16 MiB.
pub const DEFAULT_MAX_FRAME_SIZE: usize = 16 << 20;

/// Default [`ConnectRequest::read_buffer`]: 16 KiB, so a burst of small frames takes about one
/// allocation per hundred frames and reads of the full 4 KiB.
pub const DEFAULT_READ_BUFFER: usize = 16 << 10;
/// Default for [`ConnectRequest::connect_timeout`]: 10 s, as phoenix.js.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Everything needed to open one WebSocket connection.
///
/// Its `Debug` output leaves out the query (connect params often carry a secret) and the
/// subprotocols (the auth token travels in one), so a connector can log the request safely.
#[derive(Clone, PartialEq, Eq)]
pub struct ConnectRequest {
    /// Full `ws://` or `wss://` URL, query string included.
    pub url: String,
    /// Subprotocols offered in `Sec-WebSocket-Protocol`; the one the server picked comes back in
    /// [`TransportEvent::Opened`]. If any are offered, the server must pick one of them.
    pub subprotocols: Vec<String>,
    /// Largest incoming frame (and message) payload accepted, in bytes; a bigger one ends the
    /// connection with [`TransportError::FrameTooLarge`].
    pub max_frame_size: usize,
    /// Bound on DNS + TCP connect + TLS + WebSocket upgrade. After it, the connection fails with
    /// [`TransportError::Connect`].
    pub connect_timeout: Duration,
    /// Extra TLS trust for `wss://` (native with the `tls` feature only; ignored elsewhere).
    ///
    /// The field exists in every build so that struct literals compile whatever the features
    /// (a feature-gated field would break other crates' literals when some crate turns it on).
    pub tls: Option<TlsConfig>,
    /// Extra HTTP headers for the WebSocket upgrade request (natively: the built-in and the
    /// ewebsock transports send them; browsers cannot set headers, so the web transports
    /// ignore them). E.g. an `Authorization` or `Cookie` a gateway in front of Phoenix wants.
    pub headers: Headers,
    /// Web only: while nobody calls [`Transport::poll`] for this long (a hidden browser tab
    /// stops a Bevy app's frames), a Web Worker timer makes the transport send a Phoenix
    /// heartbeat itself every `keepalive`, so the server does not close the idle connection
    /// (Phoenix does after 60 s without a message). `None`: no keepalive. Ignored natively,
    /// where nothing stops the app's loop.
    pub keepalive: Option<Duration>,
    /// Native built-in transport: the size of the buffers received frames are read into
    /// (16 KiB from [`PhoenixSocketConfig`](crate::plugin::PhoenixSocketConfig)). A received
    /// message is a view of its buffer, so a message the app keeps alive keeps its buffer; an
    /// open connection holds one for its whole life. Larger buffers mean fewer reads and
    /// allocations in a burst; smaller ones less memory per socket. One read takes at most
    /// 4 KiB either way. Other transports ignore it.
    pub read_buffer: usize,
}

impl fmt::Debug for ConnectRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let base = self.url.split('?').next().unwrap_or_default();
        f.debug_struct("ConnectRequest")
            .field("url", &format_args!("{base}?<query redacted>"))
            .field(
                "subprotocols",
                &format_args!("<{} redacted>", self.subprotocols.len()),
            )
            .field("max_frame_size", &self.max_frame_size)
            .field("connect_timeout", &self.connect_timeout)
            .field("tls", &self.tls)
            .field("headers", &self.headers)
            .field("keepalive", &self.keepalive)
            .finish()
    }
}

impl ConnectRequest {
    /// A request for `url` with no subprotocol and the default limits.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            ..Self::default()
        }
    }
}

impl Default for ConnectRequest {
    fn default() -> Self {
        Self {
            url: String::new(),
            subprotocols: Vec::new(),
            max_frame_size: DEFAULT_MAX_FRAME_SIZE,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            tls: None,
            headers: Headers::default(),
            keepalive: None,
            read_buffer: DEFAULT_READ_BUFFER,
        }
    }
}

/// Extra HTTP headers for the WebSocket upgrade, as `(name, value)` pairs. Its `Debug` output
/// shows the names only: values are often credentials.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Headers(pub Vec<(String, String)>);

impl fmt::Debug for Headers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.0.iter().map(|(n, _)| format!("{n}: <redacted>")))
            .finish()
    }
}

/// TLS trust settings for `wss://` connections (used natively with the `tls` feature).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsConfig {
    /// Extra trusted root certificates, DER encoded (for example a test server's self-signed
    /// certificate or a private CA).
    pub extra_roots_der: Vec<Vec<u8>>,
    /// Trust only [`extra_roots_der`](Self::extra_roots_der), not the built-in Mozilla roots.
    pub only_extra_roots: bool,
}

/// Something that happened on the connection, in order.
///
/// `Opened` comes first (unless the connection fails before opening), then any number of
/// `Text`/`Binary` in frame order, then exactly one terminal `Closed` or `Failed`; after that
/// [`Transport::poll`] returns `None` forever. After [`Transport::close`] no event follows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransportEvent {
    /// The WebSocket upgrade succeeded.
    Opened {
        /// The subprotocol the server selected, if any.
        protocol: Option<String>,
    },
    /// A text frame (message).
    Text(FrameText),
    /// A binary frame (message).
    Binary(Vec<u8>),
    /// The connection ended (terminal).
    Closed(CloseInfo),
    /// The connection could not be opened or broke with an error (terminal).
    Failed(TransportError),
}

/// How a connection ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloseInfo {
    /// Close code from the peer's Close frame; `None` when the connection ended without one
    /// (EOF or reset, WebSocket code 1006). A Close frame without a code gives `Some(1005)`.
    pub code: Option<u16>,
    /// Close reason from the Close frame, or a description of how the connection ended.
    pub reason: String,
    /// `true` when the peer (or the network) ended the connection rather than this side.
    pub by_peer: bool,
}

/// Why a connection failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransportError {
    /// The server answered the WebSocket upgrade with an HTTP error status (e.g. 403).
    /// Native only: browsers do not expose it.
    Refused {
        /// The HTTP status code.
        status: u16,
    },
    /// DNS, TCP connect or handshake failure, timeout, or an invalid URL.
    Connect(String),
    /// TLS failure (untrusted certificate, bad handshake) or TLS not built in.
    Tls(String),
    /// The peer violated the WebSocket protocol.
    Protocol(String),
    /// An incoming frame or message exceeded [`ConnectRequest::max_frame_size`].
    FrameTooLarge {
        /// Size of the offending frame or message, in bytes.
        size: usize,
        /// The configured limit, in bytes.
        max: usize,
    },
    /// Other I/O failure, or an operation on a connection that is not open.
    Io(String),
}

impl fmt::Display for TransportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Refused { status } => {
                write!(
                    f,
                    "server refused the WebSocket upgrade with HTTP status {status}"
                )
            }
            Self::Connect(msg) => write!(f, "connection failed: {msg}"),
            Self::Tls(msg) => write!(f, "TLS error: {msg}"),
            Self::Protocol(msg) => write!(f, "WebSocket protocol error: {msg}"),
            Self::FrameTooLarge { size, max } => {
                write!(
                    f,
                    "incoming frame of {size} bytes exceeds the limit of {max} bytes"
                )
            }
            Self::Io(msg) => write!(f, "I/O error: {msg}"),
        }
    }
}

impl std::error::Error for TransportError {}

/// Traffic counters of one connection (message payloads, framing not included).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TransportStats {
    /// Payload bytes of the text and binary messages received.
    pub bytes_in: u64,
    /// Payload bytes of the text and binary messages sent (accepted by `send`).
    pub bytes_out: u64,
    /// Text and binary messages received (returned by `poll`).
    pub messages_in: u64,
    /// Text and binary messages sent (accepted by `send`).
    pub messages_out: u64,
    /// Web only: heartbeats the hidden-tab keepalive sent ([`ConnectRequest::keepalive`]).
    pub keepalives_sent: u64,
    /// Web only: the server's replies to them. The transport consumes these; `poll` never
    /// returns them, and they are not counted in `messages_in`.
    pub keepalive_replies: u64,
}

/// A connection the plugin can drive: the built-in [`Transport`], the `ewebsock`-backed one
/// (feature `ewebsock`), or your own (a test double, a relay, a platform socket).
///
/// The plugin calls, on the main thread, once per frame: [`poll`](Self::poll) until it returns
/// `None` (or the socket's read budget is spent), then [`send`](Self::send) for each frame the
/// protocol core produced and one [`flush`](Self::flush). It calls [`close`](Self::close) when
/// the socket disconnects, and drops the object after the terminal event or the close.
///
/// # The contract (what the conformance tests check)
/// - Events come in order: `Opened` first (unless the connection fails before it opens), then
///   `Text`/`Binary` in the order the peer sent them, then exactly one terminal `Closed` or
///   `Failed`; after it, `poll` returns `None` forever. After `close`, no event follows.
/// - Frames go out in `send` order, text and binary alike. Frames sent before `Opened` are
///   queued and go out right after it, in order (or `send` returns an error).
/// - Nothing blocks: `poll`, `send`, `flush` and `close` return at once.
/// - A failure to connect is an event (`Failed`), never a panic.
///
/// The object does not have to be `Send`: the plugin keeps transports in a non-send resource, on
/// the main thread (on the web it holds JavaScript objects).
///
/// # Waking a sleeping frame loop (native `WaitForNetwork`)
/// A headless app with [`WaitForNetwork`](crate::plugin::WaitForNetwork) sleeps at the end of a
/// frame until some transport has something for `poll`. It asks each transport
/// [`wait_hint`](Self::wait_hint) first; the default, [`WaitHint::Ready`], never lets it sleep
/// while this transport exists, which is always correct but spins the loop. A transport whose
/// events come from another thread or a callback should instead wake the [`NetworkWaker`] it
/// got from its [`PhoenixConnector`] and return [`WaitHint::Waker`]; the rule is in
/// [`WaitHint::Waker`]. A transport over a TCP socket it reads itself can return
/// [`WaitHint::Socket`]. The plugin itself never sleeps while a transport's last `poll` did not
/// return `None` (a burst larger than one frame's budget), whatever the hint.
pub trait PhoenixTransport: 'static {
    /// Returns the next event, or `None` when nothing is ready; never blocks.
    fn poll(&mut self) -> Option<TransportEvent>;

    /// Queues a frame; never blocks. An error means the frame was not accepted (the connection
    /// is not open, or broke: the terminal event follows from `poll`).
    fn send(&mut self, frame: Transmit) -> Result<(), TransportError>;

    /// Pushes queued frames towards the peer as far as possible without blocking.
    fn flush(&mut self);

    /// Closes the connection from this side (code 1000 where the transport can say so). No
    /// event follows.
    fn close(&mut self);

    /// `true` from the `Opened` event until the terminal event or [`close`](Self::close).
    fn is_open(&self) -> bool;

    /// Traffic counters, for diagnostics ([`PhoenixTransports::stats`](crate::plugin::PhoenixTransports::stats)).
    /// The default reports zeros.
    fn stats(&self) -> TransportStats {
        TransportStats::default()
    }

    /// Bytes [`send`](Self::send) accepted that the network has not taken yet (frames waiting
    /// for the connection to open included). The plugin reports it to the protocol core before
    /// every frame's pushes, which drops pushes past
    /// [`SocketConfig::max_send_backlog`](crate::protocol::SocketConfig::max_send_backlog)
    /// instead of queueing without limit behind a slow server. The default, 0, means "unknown":
    /// the bound is then not enforced.
    fn send_backlog(&self) -> usize {
        0
    }

    /// What a native [`WaitForNetwork`](crate::plugin::WaitForNetwork) sleep must watch before
    /// the next `poll` can find anything; see [`WaitHint`]. Ignored on the web. The default,
    /// [`WaitHint::Ready`], keeps the loop awake while this transport exists.
    fn wait_hint(&self) -> WaitHint<'_> {
        WaitHint::Ready
    }
}

/// What a network wait must watch on one transport ([`PhoenixTransport::wait_hint`]).
///
/// Used natively by [`WaitForNetwork`](crate::plugin::WaitForNetwork) and
/// [`wait_for_network`]; it exists on the web too (so a transport compiles everywhere) but is
/// not used there: the browser paces the frames.
#[derive(Debug, Clone, Copy)]
pub enum WaitHint<'a> {
    /// `poll` may have something now, or the transport cannot tell when it will: do not sleep.
    Ready,
    /// Nothing can arrive any more (closed): no need to watch this transport.
    Idle,
    /// Sleep; the transport wakes the [`NetworkWaker`] it was given at connect as soon as
    /// `poll` would find something new.
    ///
    /// The rule: return this only if that waker [`is_active`](NetworkWaker::is_active), and
    /// wake it *after* making the event visible to `poll` (push to the queue, then `wake()`),
    /// every time something new arrives, the handshake's end and the terminal event included.
    /// Wake-ups are sticky: one that comes between the last `poll` and the sleep ends the sleep
    /// at once, so none is lost. An inactive waker (the app had no `WaitForNetwork` when the
    /// transport connected) wakes nothing: return [`Ready`](Self::Ready) then.
    Waker,
    /// Sleep until this TCP socket is readable (and writable too, with `write`: a flush was
    /// held back), or until the waker fires. Only correct if everything already received was
    /// returned by `poll` (nothing left in a user-space buffer).
    Socket {
        /// The socket to watch.
        tcp: &'a std::net::TcpStream,
        /// Also wake when the socket can take writes.
        write: bool,
    },
}

/// Opens transports for a socket: one call per connection attempt, so every reconnect goes
/// through it again. Set it per socket with
/// [`PhoenixSocketConfig::with_transport`](crate::plugin::PhoenixSocketConfig::with_transport);
/// the default is [`BuiltinConnector`].
///
/// `connect` must not block: start connecting and report progress through the transport's
/// `poll` (a failure too, as `Failed`). `waker` wakes a native
/// [`WaitForNetwork`](crate::plugin::WaitForNetwork) sleep (see [`WaitHint::Waker`]); it may be
/// inert ([`NetworkWaker::is_active`] is false) when the app has no such wait.
///
/// A closure `Fn(ConnectRequest, &NetworkWaker) -> Box<dyn PhoenixTransport>` that is
/// `Send + Sync + 'static` is a connector too.
pub trait PhoenixConnector: Send + Sync + 'static {
    /// Starts one connection.
    fn connect(&self, req: ConnectRequest, waker: &NetworkWaker) -> Box<dyn PhoenixTransport>;

    /// A short name for logs and `Debug` (default: the type's name).
    fn name(&self) -> &str {
        std::any::type_name::<Self>()
    }
}

impl fmt::Debug for dyn PhoenixConnector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PhoenixConnector({})", self.name())
    }
}

impl<F> PhoenixConnector for F
where
    F: Fn(ConnectRequest, &NetworkWaker) -> Box<dyn PhoenixTransport> + Send + Sync + 'static,
{
    fn connect(&self, req: ConnectRequest, waker: &NetworkWaker) -> Box<dyn PhoenixTransport> {
        self(req, waker)
    }
}

/// The default connector: the built-in [`Transport`] (nonblocking tungstenite natively, the
/// browser `WebSocket` on wasm32).
#[derive(Debug, Clone, Copy, Default)]
pub struct BuiltinConnector;

impl PhoenixConnector for BuiltinConnector {
    fn connect(&self, req: ConnectRequest, waker: &NetworkWaker) -> Box<dyn PhoenixTransport> {
        Box::new(Transport::connect_waking(req, waker))
    }

    fn name(&self) -> &str {
        "builtin"
    }
}

/// Opens the built-in web transport with the browser `WebSocket` in a dedicated Web Worker, so
/// the page's main thread handles received frames in batches (one event per batch instead of
/// one per frame) and sends each app frame's frames in one message. See the module docs
/// ("The WebSocket in a Web Worker") for what it changes and costs.
///
/// Set it per socket with
/// [`PhoenixSocketConfig::with_transport`](crate::plugin::PhoenixSocketConfig::with_transport).
/// Natively, where there is no page main thread to spare, it opens the built-in [`Transport`]
/// (the same as [`BuiltinConnector`]), so a game can set it on every target.
#[derive(Debug, Clone, Copy, Default)]
pub struct WebWorkerConnector;

impl WebWorkerConnector {
    /// Web Workers started by this thread's worker transports and not yet terminated (a
    /// closed or dropped transport's worker is terminated within a second). Always 0 natively.
    pub fn live_workers() -> usize {
        #[cfg(target_arch = "wasm32")]
        return web_worker::live_workers();
        #[cfg(not(target_arch = "wasm32"))]
        0
    }
}

impl PhoenixConnector for WebWorkerConnector {
    fn connect(&self, req: ConnectRequest, waker: &NetworkWaker) -> Box<dyn PhoenixTransport> {
        #[cfg(target_arch = "wasm32")]
        {
            let _ = waker;
            Box::new(WorkerTransport {
                inner: web_worker::Inner::connect(req),
            })
        }
        #[cfg(not(target_arch = "wasm32"))]
        Box::new(Transport::connect_waking(req, waker))
    }

    fn name(&self) -> &str {
        "web-worker"
    }
}

/// The worker transport ([`WebWorkerConnector`]).
#[cfg(target_arch = "wasm32")]
struct WorkerTransport {
    inner: web_worker::Inner,
}

#[cfg(target_arch = "wasm32")]
impl PhoenixTransport for WorkerTransport {
    fn poll(&mut self) -> Option<TransportEvent> {
        self.inner.poll()
    }

    fn send(&mut self, frame: Transmit) -> Result<(), TransportError> {
        self.inner.send(frame)
    }

    fn flush(&mut self) {
        self.inner.flush()
    }

    fn close(&mut self) {
        self.inner.close()
    }

    fn is_open(&self) -> bool {
        self.inner.is_open()
    }

    fn stats(&self) -> TransportStats {
        self.inner.stats()
    }

    fn send_backlog(&self) -> usize {
        self.inner.send_backlog()
    }
}

/// One WebSocket connection, driven by the caller without blocking: the built-in transport
/// (see the module docs), and the plugin's default ([`BuiltinConnector`]). It implements
/// [`PhoenixTransport`]; its inherent methods are the same and can be called without the trait.
///
/// Natively it is `Send + Sync`; on the web it is `!Send` (keep it in a non-send resource).
/// Dropping it closes the connection (best effort, without waiting).
pub struct Transport {
    inner: imp::Inner,
}

impl fmt::Debug for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Transport")
            .field("open", &self.is_open())
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl Transport {
    /// Starts connecting; never blocks. Progress and errors arrive through [`poll`](Self::poll).
    pub fn connect(req: ConnectRequest) -> Self {
        Self::connect_waking(req, &NetworkWaker::none())
    }

    /// Like [`connect`](Self::connect), and `waker` is woken when the handshake ends, so a
    /// [`wait_for_network`] that watches this transport returns at once then.
    pub fn connect_waking(req: ConnectRequest, waker: &NetworkWaker) -> Self {
        #[cfg(not(target_arch = "wasm32"))]
        let inner = imp::Inner::connect(req, waker.inner.clone());
        #[cfg(target_arch = "wasm32")]
        let inner = {
            let _ = waker;
            imp::Inner::connect(req)
        };
        Self { inner }
    }

    /// Returns the next event, or `None` when nothing is ready; never blocks.
    ///
    /// Call it until it returns `None` each frame. After the terminal event (or after
    /// [`close`](Self::close)) it returns `None` forever.
    pub fn poll(&mut self) -> Option<TransportEvent> {
        self.inner.poll()
    }

    /// Queues a frame; never blocks. Frames go out in `send` order, text and binary alike.
    ///
    /// Frames sent before the connection opened are queued and go out right after it opens.
    /// Call [`flush`](Self::flush) to push them to the socket. An error means the frame was not
    /// accepted: the connection is not open (or broke; the terminal event follows from `poll`).
    pub fn send(&mut self, t: Transmit) -> Result<(), TransportError> {
        self.inner.send(t)
    }

    /// Pushes buffered frames to the socket as far as it takes them without blocking; the rest
    /// goes on the next `flush` or `poll`.
    pub fn flush(&mut self) {
        self.inner.flush()
    }

    /// Closes the connection cleanly (code 1000) from this side. No event follows; `poll` keeps
    /// completing the closing handshake in the background while it is called.
    pub fn close(&mut self) {
        self.inner.close()
    }

    /// `true` from the `Opened` event until the terminal event or [`close`](Self::close).
    pub fn is_open(&self) -> bool {
        self.inner.is_open()
    }

    /// Traffic counters, for diagnostics.
    pub fn stats(&self) -> TransportStats {
        self.inner.stats()
    }

    /// Bytes [`send`](Self::send) accepted that the network has not taken yet: natively, what
    /// waits in the WebSocket's buffer (counted against what the socket wrote); in the browser,
    /// the WebSocket's `bufferedAmount`. Frames waiting for the connection to open count too.
    pub fn send_backlog(&self) -> usize {
        self.inner.send_backlog()
    }
}

impl PhoenixTransport for Transport {
    fn poll(&mut self) -> Option<TransportEvent> {
        Transport::poll(self)
    }

    fn send(&mut self, frame: Transmit) -> Result<(), TransportError> {
        Transport::send(self, frame)
    }

    fn flush(&mut self) {
        Transport::flush(self)
    }

    fn close(&mut self) {
        Transport::close(self)
    }

    fn is_open(&self) -> bool {
        Transport::is_open(self)
    }

    fn stats(&self) -> TransportStats {
        Transport::stats(self)
    }

    fn send_backlog(&self) -> usize {
        Transport::send_backlog(self)
    }

    fn wait_hint(&self) -> WaitHint<'_> {
        #[cfg(not(target_arch = "wasm32"))]
        return self.inner.wait_hint();
        #[cfg(target_arch = "wasm32")]
        WaitHint::Ready
    }
}

/// Wakes a [`wait_for_network`] (and so a frame loop sleeping in
/// [`WaitForNetwork`](crate::plugin::WaitForNetwork)) from any thread.
///
/// Cheap to clone; all clones wake the same waiter. On the web, and if the waker could not be
/// made (see [`NetworkWaker::new`]), [`wake`](Self::wake) does nothing.
#[derive(Clone, Default)]
pub struct NetworkWaker {
    #[cfg(not(target_arch = "wasm32"))]
    inner: Option<Arc<wait::Waker>>,
}

impl fmt::Debug for NetworkWaker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NetworkWaker")
            .field("active", &self.is_active())
            .finish()
    }
}

impl NetworkWaker {
    /// A waker that wakes nothing.
    pub fn none() -> Self {
        Self::default()
    }

    /// A new waker. Natively it is a loopback UDP socket connected to itself (it works with
    /// `WSAPoll` on Windows, which a pipe does not); making it can fail, for example when the
    /// process is out of file descriptors. On the web it is inert.
    pub fn new() -> std::io::Result<Self> {
        #[cfg(not(target_arch = "wasm32"))]
        return Ok(Self {
            inner: Some(Arc::new(wait::Waker::new()?)),
        });
        #[cfg(target_arch = "wasm32")]
        Ok(Self {})
    }

    /// Ends the current (or the next) [`wait_for_network`] that uses this waker.
    pub fn wake(&self) {
        #[cfg(not(target_arch = "wasm32"))]
        if let Some(w) = &self.inner {
            w.wake();
        }
    }

    /// `true` if [`wake`](Self::wake) can wake anything.
    pub fn is_active(&self) -> bool {
        #[cfg(not(target_arch = "wasm32"))]
        return self.inner.is_some();
        #[cfg(target_arch = "wasm32")]
        false
    }
}

/// Blocks until one of `transports` has something for `poll`, `waker` is woken, or `timeout`
/// passes. Works with the built-in [`Transport`] and any [`PhoenixTransport`]
/// (through its [`wait_hint`](PhoenixTransport::wait_hint)).
///
/// Returns `Ok(false)` at once, without sleeping, if some transport already has something
/// (`poll` was not called until it returned `None`, or an event is pending), or is still
/// connecting and was not started with this `waker` (nothing would wake the wait when it
/// opens), or its hint is [`WaitHint::Ready`]. `Ok(true)` means it slept, until whichever came
/// first; call `poll` next. A wait ends early on readable data, on writability where a flush
/// was blocked, when a closing socket hears from the peer, and when a handshake started with
/// [`connect_waking`](Transport::connect_waking) ends.
///
/// On the web it never sleeps (a page must not block; the browser paces the frames) and
/// returns `Ok(false)` at once: it exists there so that code calling it compiles everywhere,
/// like [`NetworkWaker`] and [`WaitHint`].
pub fn wait_for_network<'a, T>(
    transports: impl IntoIterator<Item = &'a T>,
    waker: &NetworkWaker,
    timeout: Duration,
) -> std::io::Result<bool>
where
    T: PhoenixTransport + ?Sized + 'a,
{
    #[cfg(not(target_arch = "wasm32"))]
    return wait::wait(
        transports.into_iter().map(|t| t.wait_hint()),
        waker.inner.as_deref(),
        None,
        timeout,
    );
    #[cfg(target_arch = "wasm32")]
    {
        let _ = (transports, waker, timeout);
        Ok(false)
    }
}

/// [`wait_for_network`] over hints the caller already has (the plugin adds its own "not drained"
/// knowledge to each transport's hint).
#[cfg(not(target_arch = "wasm32"))]
pub(crate) fn wait_for_hints<'a>(
    hints: impl Iterator<Item = WaitHint<'a>>,
    waker: &NetworkWaker,
    set: Option<&Readiness>,
    timeout: Duration,
) -> std::io::Result<bool> {
    wait::wait(hints, waker.inner.as_deref(), set, timeout)
}

#[cfg(not(target_arch = "wasm32"))]
pub(crate) use wait::{Readiness, Watch};
