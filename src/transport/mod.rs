//! WebSocket transport: one connection, driven without blocking by the caller's frame loop.
//!
//! The transport knows nothing of Phoenix or Bevy. It moves [`Transmit`] frames out and yields
//! [`TransportEvent`]s in, in frame order, and is meant to be driven by `poll()` once per frame
//! (until it returns `None`) and `send()` + `flush()` after the app has produced its messages.
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

use std::fmt;
#[cfg(not(target_arch = "wasm32"))]
use std::sync::Arc;
use std::time::Duration;

use crate::protocol::{FrameText, Transmit};

#[cfg(not(target_arch = "wasm32"))]
mod native;
#[cfg(all(feature = "tls", not(target_arch = "wasm32")))]
mod tls;
#[cfg(not(target_arch = "wasm32"))]
mod wait;
#[cfg(target_arch = "wasm32")]
mod web;

#[cfg(not(target_arch = "wasm32"))]
use native as imp;
#[cfg(target_arch = "wasm32")]
use web as imp;

/// Default for [`ConnectRequest::max_frame_size`]: 16 MiB.
pub const DEFAULT_MAX_FRAME_SIZE: usize = 16 << 20;
/// Default for [`ConnectRequest::connect_timeout`]: 10 s, as phoenix.js.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Everything needed to open one WebSocket connection.
#[derive(Debug, Clone, PartialEq, Eq)]
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
    /// Web only: while nobody calls [`Transport::poll`] for this long (a hidden browser tab
    /// stops a Bevy app's frames), a Web Worker timer makes the transport send a Phoenix
    /// heartbeat itself every `keepalive`, so the server does not close the idle connection
    /// (Phoenix does after 60 s without a message). `None`: no keepalive. Ignored natively,
    /// where nothing stops the app's loop.
    pub keepalive: Option<Duration>,
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
            keepalive: None,
        }
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

/// One WebSocket connection, driven by the caller without blocking.
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

/// Blocks until one of `transports` has something for [`Transport::poll`], `waker` is woken,
/// or `timeout` passes. Native only.
///
/// Returns `Ok(false)` at once, without sleeping, if some transport already has something
/// (`poll` was not called until it returned `None`, or an event is pending), or is still
/// connecting and was not started with this `waker` (nothing would wake the wait when it
/// opens). `Ok(true)` means it slept, until whichever came first; call `poll` next. A wait
/// ends early on readable data, on writability where a flush was blocked, when a closing
/// socket hears from the peer, and when a handshake started with
/// [`connect_waking`](Transport::connect_waking) ends.
#[cfg(not(target_arch = "wasm32"))]
pub fn wait_for_network<'a>(
    transports: impl IntoIterator<Item = &'a Transport>,
    waker: &NetworkWaker,
    timeout: Duration,
) -> std::io::Result<bool> {
    wait::wait(transports.into_iter(), waker.inner.as_deref(), timeout)
}
