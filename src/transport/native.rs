//! Native transport: handshake on a short-lived thread, then a nonblocking tungstenite socket
//! driven by `poll` / `send` / `flush` on the caller's thread.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, TryRecvError};
use tungstenite::client::IntoClientRequest;
use tungstenite::error::{CapacityError, ProtocolError};
use tungstenite::handshake::HandshakeError;
use tungstenite::handshake::client::Request;
use tungstenite::http::HeaderValue;
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tungstenite::{Error as WsError, Message, WebSocket};

use super::wait::Waker;
use super::{CloseInfo, ConnectRequest, TransportError, TransportEvent, TransportStats, WaitHint};
use crate::protocol::Transmit;

/// How long `poll` keeps completing a closing handshake before dropping the socket.
const CLOSE_LINGER: Duration = Duration::from_secs(3);
/// Most frames discarded per `poll` while closing, so a chatty peer cannot stall a frame.
const CLOSING_READS_PER_POLL: usize = 1024;
/// Most bytes one socket read takes (tungstenite's read buffer).
const READ_BUFFER: usize = 4096;
/// Bound on data buffered by `send` that the socket did not take yet; past it `send` refuses.
const MAX_WRITE_BUFFER: usize = 64 << 20;

/// The byte stream under the WebSocket: plain TCP or rustls over TCP.
pub(crate) enum Stream {
    /// `ws://`
    Plain(TcpStream),
    /// `wss://`
    #[cfg(feature = "tls")]
    Tls(Box<super::tls::TlsStream>),
}

impl Stream {
    fn tcp(&self) -> &TcpStream {
        match self {
            Self::Plain(s) => s,
            #[cfg(feature = "tls")]
            Self::Tls(s) => s.tcp(),
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Self::Plain(s) => s.read(buf),
            #[cfg(feature = "tls")]
            Self::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Self::Plain(s) => s.write(buf),
            #[cfg(feature = "tls")]
            Self::Tls(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Self::Plain(s) => s.flush(),
            #[cfg(feature = "tls")]
            Self::Tls(s) => s.flush(),
        }
    }
}

type Ws = WebSocket<Stream>;

/// What the handshake thread hands back.
struct Handshaken {
    ws: Ws,
    protocol: Option<String>,
}

type HandshakeResult = Result<Handshaken, TransportError>;

enum State {
    /// The handshake thread is working; frames sent meanwhile wait in `pending`.
    Connecting {
        rx: Receiver<HandshakeResult>,
        deadline: Instant,
        pending: VecDeque<Transmit>,
        /// The handshake thread wakes a network wait when it is done.
        wakes: bool,
    },
    /// Open and driven by poll/send/flush.
    Open {
        ws: Box<Ws>,
        /// A flush hit WouldBlock: retry on the next poll.
        flush_blocked: bool,
        /// A write failed: the terminal event to report once everything readable was read.
        write_failure: Option<TransportEvent>,
    },
    /// Terminal event delivered (or closed by us); still finishing the closing handshake.
    /// `raw`: the connection failed on a frame it read (too large, malformed), so the bytes
    /// that follow are drained from the stream without parsing: tungstenite's reader is left
    /// mid-frame (after a too-large header it would try to read the whole frame, and its
    /// buffer-full debug assertion panics).
    Closing {
        ws: Box<Ws>,
        deadline: Instant,
        raw: bool,
    },
    /// Nothing more to do. `pending_event` may hold one last event (e.g. an early failure).
    Done {
        pending_event: Option<TransportEvent>,
    },
}

pub(crate) struct Inner {
    state: State,
    stats: TransportStats,
    /// The last `poll` found nothing: every byte the socket had was read, and no whole frame is
    /// left in tungstenite's buffer (it reads the socket only when it has none).
    drained: bool,
}

fn closed_abnormally(reason: impl Into<String>) -> TransportEvent {
    TransportEvent::Closed(CloseInfo {
        code: None,
        reason: reason.into(),
        by_peer: true,
    })
}

fn is_disconnect(kind: io::ErrorKind) -> bool {
    matches!(
        kind,
        io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::UnexpectedEof
            | io::ErrorKind::NotConnected
    )
}

fn is_would_block(e: &WsError) -> bool {
    matches!(e, WsError::Io(io) if io.kind() == io::ErrorKind::WouldBlock)
}

#[cfg(feature = "tls")]
fn is_tls_error(e: &io::Error) -> bool {
    e.get_ref().is_some_and(|inner| inner.is::<rustls::Error>())
}

#[cfg(not(feature = "tls"))]
fn is_tls_error(_e: &io::Error) -> bool {
    false
}

/// Maps an error of an open connection to its terminal event.
fn event_from_error(e: WsError) -> TransportEvent {
    match e {
        WsError::ConnectionClosed | WsError::AlreadyClosed => {
            closed_abnormally("connection closed")
        }
        WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake) => {
            closed_abnormally("connection closed without a close frame")
        }
        WsError::Io(io) if is_tls_error(&io) => {
            TransportEvent::Failed(TransportError::Tls(io.to_string()))
        }
        WsError::Io(io) if is_disconnect(io.kind()) => closed_abnormally(io.to_string()),
        WsError::Io(io) => TransportEvent::Failed(TransportError::Io(io.to_string())),
        WsError::Capacity(CapacityError::MessageTooLong { size, max_size }) => {
            TransportEvent::Failed(TransportError::FrameTooLarge {
                size,
                max: max_size,
            })
        }
        WsError::Tls(e) => TransportEvent::Failed(TransportError::Tls(e.to_string())),
        WsError::Utf8(_) => TransportEvent::Failed(TransportError::Protocol(
            "invalid UTF-8 in a text frame".into(),
        )),
        other => TransportEvent::Failed(TransportError::Protocol(other.to_string())),
    }
}

fn error_of(event: &TransportEvent) -> TransportError {
    match event {
        TransportEvent::Failed(e) => e.clone(),
        TransportEvent::Closed(info) => {
            TransportError::Io(format!("connection closed: {}", info.reason))
        }
        _ => TransportError::Io("connection is not open".into()),
    }
}

fn not_open() -> TransportError {
    TransportError::Io("connection is not open".into())
}

fn message_of(t: Transmit) -> (Message, usize) {
    match t {
        Transmit::Text(s) => {
            let n = s.len();
            (Message::Text(s.into()), n)
        }
        Transmit::Binary(b) => {
            let n = b.len();
            (Message::Binary(b.into()), n)
        }
    }
}

impl Inner {
    pub(crate) fn connect(req: ConnectRequest, waker: Option<Arc<Waker>>) -> Self {
        let state = match start(req, waker) {
            Ok(state) => state,
            Err(e) => State::Done {
                pending_event: Some(TransportEvent::Failed(e)),
            },
        };
        Self {
            state,
            stats: TransportStats::default(),
            drained: false,
        }
    }

    /// What a network wait must watch before the next `poll` can find anything.
    pub(crate) fn wait_hint(&self) -> WaitHint<'_> {
        match &self.state {
            // The handshake thread wakes the waiter when done, if it was given a waker.
            State::Connecting { wakes, .. } => {
                if *wakes {
                    WaitHint::Waker
                } else {
                    WaitHint::Ready
                }
            }
            State::Open {
                ws,
                flush_blocked,
                write_failure,
            } => {
                if !self.drained || write_failure.is_some() {
                    WaitHint::Ready
                } else {
                    WaitHint::Socket {
                        tcp: ws.get_ref().tcp(),
                        write: *flush_blocked,
                    }
                }
            }
            // Only the peer's close (readable) ends the linger early.
            State::Closing { ws, .. } => WaitHint::Socket {
                tcp: ws.get_ref().tcp(),
                write: false,
            },
            State::Done { pending_event } => {
                if pending_event.is_some() {
                    WaitHint::Ready
                } else {
                    WaitHint::Idle
                }
            }
        }
    }

    pub(crate) fn poll(&mut self) -> Option<TransportEvent> {
        let event = self.poll_state();
        self.drained = event.is_none();
        event
    }

    fn poll_state(&mut self) -> Option<TransportEvent> {
        match &mut self.state {
            State::Connecting { rx, deadline, .. } => {
                let result = match rx.try_recv() {
                    Ok(result) => result,
                    Err(TryRecvError::Empty) => {
                        if Instant::now() < *deadline {
                            return None;
                        }
                        Err(TransportError::Connect("connect timed out".into()))
                    }
                    Err(TryRecvError::Disconnected) => Err(TransportError::Connect(
                        "handshake thread ended without a result".into(),
                    )),
                };
                Some(self.finish_handshake(result))
            }
            State::Open { .. } => self.poll_open(),
            State::Closing { .. } => {
                self.drive_closing();
                None
            }
            State::Done { pending_event } => pending_event.take(),
        }
    }

    fn finish_handshake(&mut self, result: HandshakeResult) -> TransportEvent {
        let old = std::mem::replace(
            &mut self.state,
            State::Done {
                pending_event: None,
            },
        );
        let State::Connecting { pending, .. } = old else {
            return TransportEvent::Failed(not_open());
        };
        match result {
            Ok(Handshaken { ws, protocol }) => {
                let mut ws = Box::new(ws);
                let mut write_failure = None;
                let mut flush_blocked = false;
                let had_pending = !pending.is_empty();
                for t in pending {
                    let (msg, _) = message_of(t);
                    match ws.write(msg) {
                        Ok(()) => {}
                        Err(e) if is_would_block(&e) => flush_blocked = true,
                        Err(e) => {
                            write_failure = Some(event_from_error(e));
                            break;
                        }
                    }
                }
                if had_pending && write_failure.is_none() {
                    match ws.flush() {
                        Ok(()) => flush_blocked = false,
                        Err(e) if is_would_block(&e) => flush_blocked = true,
                        Err(e) => write_failure = Some(event_from_error(e)),
                    }
                }
                self.state = State::Open {
                    ws,
                    flush_blocked,
                    write_failure,
                };
                TransportEvent::Opened { protocol }
            }
            Err(e) => TransportEvent::Failed(e),
        }
    }

    fn poll_open(&mut self) -> Option<TransportEvent> {
        let State::Open {
            ws,
            flush_blocked,
            write_failure,
        } = &mut self.state
        else {
            return None;
        };
        if *flush_blocked && write_failure.is_none() {
            match ws.flush() {
                Ok(()) => *flush_blocked = false,
                Err(e) if is_would_block(&e) => {}
                Err(e) => *write_failure = Some(event_from_error(e)),
            }
        }
        loop {
            match ws.read() {
                Ok(Message::Text(s)) => {
                    self.stats.messages_in += 1;
                    self.stats.bytes_in += s.len() as u64;
                    return Some(TransportEvent::Text(s.into()));
                }
                Ok(Message::Binary(b)) => {
                    self.stats.messages_in += 1;
                    self.stats.bytes_in += b.len() as u64;
                    return Some(TransportEvent::Binary(b.into()));
                }
                Ok(Message::Close(frame)) => {
                    let info = match frame {
                        Some(f) => CloseInfo {
                            code: Some(u16::from(f.code)),
                            reason: f.reason.as_str().to_owned(),
                            by_peer: true,
                        },
                        None => CloseInfo {
                            code: Some(1005),
                            reason: String::new(),
                            by_peer: true,
                        },
                    };
                    // tungstenite queued the close reply; closing state flushes it.
                    self.enter_closing(false);
                    return Some(TransportEvent::Closed(info));
                }
                // Pongs to pings are queued by tungstenite and written by the next read.
                Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_)) => {}
                Err(e) if is_would_block(&e) => {
                    return match write_failure.take() {
                        Some(event) => {
                            self.state = State::Done {
                                pending_event: None,
                            };
                            Some(event)
                        }
                        None => None,
                    };
                }
                Err(e) => {
                    let event = event_from_error(e);
                    match &event {
                        TransportEvent::Failed(TransportError::FrameTooLarge { .. }) => {
                            self.close_with(CloseCode::Size, "frame too large", true)
                        }
                        TransportEvent::Failed(TransportError::Protocol(_)) => {
                            self.close_with(CloseCode::Protocol, "protocol error", true)
                        }
                        _ => {
                            self.state = State::Done {
                                pending_event: None,
                            }
                        }
                    }
                    return Some(event);
                }
            }
        }
    }

    /// Moves an open socket to the closing state (the close frame is already queued); `raw`
    /// as in [`State::Closing`].
    fn enter_closing(&mut self, raw: bool) {
        let old = std::mem::replace(
            &mut self.state,
            State::Done {
                pending_event: None,
            },
        );
        if let State::Open { ws, .. } | State::Closing { ws, .. } = old {
            self.state = State::Closing {
                ws,
                deadline: Instant::now() + CLOSE_LINGER,
                raw,
            };
            self.drive_closing();
        }
    }

    /// Sends a Close frame with `code` (best effort) and moves to the closing state (`raw` as
    /// in [`State::Closing`]).
    fn close_with(&mut self, code: CloseCode, reason: &'static str, raw: bool) {
        if let State::Open { ws, .. } = &mut self.state {
            let frame = CloseFrame {
                code,
                reason: reason.into(),
            };
            match ws.close(Some(frame)) {
                Ok(()) => {}
                Err(e) if is_would_block(&e) => {}
                Err(_) => {
                    self.state = State::Done {
                        pending_event: None,
                    };
                    return;
                }
            }
        }
        self.enter_closing(raw);
    }

    /// Flushes the close frame and reads until the peer ends the connection or the linger ends.
    fn drive_closing(&mut self) {
        let State::Closing { ws, deadline, raw } = &mut self.state else {
            return;
        };
        let finished = 'drive: {
            if Instant::now() >= *deadline {
                break 'drive true;
            }
            match ws.flush() {
                Ok(()) => {}
                Err(e) if is_would_block(&e) => break 'drive false,
                Err(_) => break 'drive true,
            }
            if *raw {
                let mut scratch = [0u8; READ_BUFFER];
                for _ in 0..CLOSING_READS_PER_POLL {
                    match ws.get_mut().read(&mut scratch) {
                        Ok(0) => break 'drive true,
                        Ok(_) => {}
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break 'drive false,
                        Err(_) => break 'drive true,
                    }
                }
                break 'drive false;
            }
            for _ in 0..CLOSING_READS_PER_POLL {
                match ws.read() {
                    Ok(_) => {}
                    Err(e) if is_would_block(&e) => break 'drive false,
                    Err(_) => break 'drive true,
                }
            }
            false
        };
        if finished {
            self.state = State::Done {
                pending_event: None,
            };
        }
    }

    pub(crate) fn send(&mut self, t: Transmit) -> Result<(), TransportError> {
        match &mut self.state {
            State::Connecting { pending, .. } => {
                let n = match &t {
                    Transmit::Text(s) => s.len(),
                    Transmit::Binary(b) => b.len(),
                };
                pending.push_back(t);
                self.stats.messages_out += 1;
                self.stats.bytes_out += n as u64;
                Ok(())
            }
            State::Open {
                ws,
                flush_blocked,
                write_failure,
            } => {
                if let Some(event) = write_failure {
                    return Err(error_of(event));
                }
                let (msg, n) = message_of(t);
                match ws.write(msg) {
                    Ok(()) => {}
                    // The frame is queued; the rest goes out on flush.
                    Err(e) if is_would_block(&e) => *flush_blocked = true,
                    Err(WsError::WriteBufferFull(_)) => {
                        return Err(TransportError::Io(format!(
                            "send buffer full ({MAX_WRITE_BUFFER} bytes not yet taken by the socket)"
                        )));
                    }
                    Err(e) => {
                        let event = event_from_error(e);
                        let err = error_of(&event);
                        *write_failure = Some(event);
                        return Err(err);
                    }
                }
                self.stats.messages_out += 1;
                self.stats.bytes_out += n as u64;
                Ok(())
            }
            State::Closing { .. } | State::Done { .. } => Err(not_open()),
        }
    }

    pub(crate) fn flush(&mut self) {
        match &mut self.state {
            State::Open {
                ws,
                flush_blocked,
                write_failure,
            } => {
                if write_failure.is_some() {
                    return;
                }
                match ws.flush() {
                    Ok(()) => *flush_blocked = false,
                    Err(e) if is_would_block(&e) => *flush_blocked = true,
                    Err(e) => *write_failure = Some(event_from_error(e)),
                }
            }
            State::Closing { .. } => self.drive_closing(),
            State::Connecting { .. } | State::Done { .. } => {}
        }
    }

    pub(crate) fn close(&mut self) {
        match &self.state {
            State::Open { .. } => self.close_with(CloseCode::Normal, "", false),
            State::Closing { .. } => {}
            // Dropping the receiver tells the handshake thread to close what it opens.
            // After close() no event is reported, a pending failure included.
            State::Connecting { .. } | State::Done { .. } => {
                self.state = State::Done {
                    pending_event: None,
                }
            }
        }
    }

    pub(crate) fn is_open(&self) -> bool {
        matches!(
            &self.state,
            State::Open {
                write_failure: None,
                ..
            }
        )
    }

    pub(crate) fn stats(&self) -> TransportStats {
        self.stats
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let State::Open { ws, .. } = &mut self.state {
            // Best effort, nonblocking: queue a Close frame and push what the socket takes.
            let _ = ws.close(Some(CloseFrame {
                code: CloseCode::Normal,
                reason: "".into(),
            }));
            let _ = ws.flush();
        }
    }
}

/// Validates the request and starts the handshake thread.
fn start(req: ConnectRequest, waker: Option<Arc<Waker>>) -> Result<State, TransportError> {
    let deadline = Instant::now() + req.connect_timeout;
    let mut request = req
        .url
        .as_str()
        .into_client_request()
        .map_err(|e| TransportError::Connect(format!("invalid URL {:?}: {e}", req.url)))?;
    let secure = match request.uri().scheme_str() {
        Some("ws") => false,
        Some("wss") => true,
        other => {
            return Err(TransportError::Connect(format!(
                "unsupported URL scheme {:?} (expected ws or wss)",
                other.unwrap_or("")
            )));
        }
    };
    let host = request
        .uri()
        .host()
        .ok_or_else(|| TransportError::Connect(format!("URL {:?} has no host", req.url)))?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let port = request
        .uri()
        .port_u16()
        .unwrap_or(if secure { 443 } else { 80 });
    if !req.subprotocols.is_empty() {
        // Comma without space: tungstenite 0.24 split the offer on "," without trimming, so
        // ", " made it reject a server that picked any but the first protocol (0.30 trims).
        let value = HeaderValue::from_str(&req.subprotocols.join(",")).map_err(|e| {
            TransportError::Connect(format!("invalid subprotocol {:?}: {e}", req.subprotocols))
        })?;
        request
            .headers_mut()
            .insert("Sec-WebSocket-Protocol", value);
    }

    #[cfg(feature = "tls")]
    let tls_client = if secure {
        Some(super::tls::client_config(req.tls.as_ref())?)
    } else {
        None
    };
    #[cfg(not(feature = "tls"))]
    if secure {
        return Err(TransportError::Tls("built without the tls feature".into()));
    }

    let max = req.max_frame_size;
    let config = WebSocketConfig::default()
        .max_frame_size(Some(max))
        .max_message_size(Some(max))
        .max_write_buffer_size(MAX_WRITE_BUFFER)
        // tungstenite zero-fills the free part of its read buffer (up to this size) before
        // every read, and an idle frame makes one read: keep it small.
        .read_buffer_size(READ_BUFFER);

    let (tx, rx) = crossbeam_channel::bounded(1);
    let wakes = waker.is_some();
    let job = move || {
        let target = Target {
            host,
            port,
            #[cfg(feature = "tls")]
            tls_client,
        };
        let result = handshake(&target, request, config, deadline);
        match tx.send(result) {
            // After the send, so the woken frame finds the result.
            Ok(()) => {
                if let Some(w) = &waker {
                    w.wake();
                }
            }
            Err(crossbeam_channel::SendError(Ok(mut h))) => {
                // Nobody waits any more (closed or timed out): leave politely.
                let tcp = h.ws.get_ref().tcp();
                let _ = tcp.set_write_timeout(Some(Duration::from_secs(1)));
                let _ = h.ws.close(None);
                let _ = h.ws.flush();
            }
            Err(_) => {}
        }
    };
    std::thread::Builder::new()
        .name("ws-handshake".into())
        .spawn(job)
        .map_err(|e| TransportError::Io(format!("cannot start the handshake thread: {e}")))?;
    Ok(State::Connecting {
        rx,
        deadline,
        pending: VecDeque::new(),
        wakes,
    })
}

struct Target {
    host: String,
    port: u16,
    #[cfg(feature = "tls")]
    tls_client: Option<std::sync::Arc<rustls::ClientConfig>>,
}

fn remaining(deadline: Instant) -> Option<Duration> {
    let left = deadline.saturating_duration_since(Instant::now());
    (!left.is_zero()).then_some(left)
}

fn timed_out(stage: &str) -> TransportError {
    TransportError::Connect(format!("timed out during {stage}"))
}

/// Runs on the handshake thread: DNS, TCP, TLS, WebSocket upgrade.
fn handshake(
    target: &Target,
    request: Request,
    config: WebSocketConfig,
    deadline: Instant,
) -> HandshakeResult {
    let addrs: Vec<SocketAddr> = (target.host.as_str(), target.port)
        .to_socket_addrs()
        .map_err(|e| TransportError::Connect(format!("cannot resolve {}: {e}", target.host)))?
        .collect();
    if addrs.is_empty() {
        return Err(TransportError::Connect(format!(
            "{} resolved to no address",
            target.host
        )));
    }
    let mut last_error = None;
    let mut tcp = None;
    for addr in &addrs {
        let left = remaining(deadline).ok_or_else(|| timed_out("the TCP connect"))?;
        match TcpStream::connect_timeout(addr, left) {
            Ok(s) => {
                tcp = Some(s);
                break;
            }
            Err(e) => last_error = Some((addr, e)),
        }
    }
    let tcp = match (tcp, last_error) {
        (Some(tcp), _) => tcp,
        (None, Some((addr, e))) if e.kind() == io::ErrorKind::TimedOut => {
            return Err(TransportError::Connect(format!(
                "connect to {addr} timed out"
            )));
        }
        (None, Some((addr, e))) => {
            return Err(TransportError::Connect(format!("connect to {addr}: {e}")));
        }
        (None, None) => return Err(timed_out("the TCP connect")),
    };
    let io_err = |e: io::Error| TransportError::Io(e.to_string());
    tcp.set_nodelay(true).map_err(io_err)?;
    let left = remaining(deadline).ok_or_else(|| timed_out("the handshake"))?;
    tcp.set_read_timeout(Some(left)).map_err(io_err)?;
    tcp.set_write_timeout(Some(left)).map_err(io_err)?;

    #[cfg(feature = "tls")]
    let stream = match &target.tls_client {
        Some(config) => Stream::Tls(super::tls::handshake(config.clone(), &target.host, tcp)?),
        None => Stream::Plain(tcp),
    };
    #[cfg(not(feature = "tls"))]
    let stream = Stream::Plain(tcp);

    let (ws, response) = tungstenite::client::client_with_config(request, stream, Some(config))
        .map_err(|e| match e {
            HandshakeError::Interrupted(_) => timed_out("the WebSocket upgrade"),
            HandshakeError::Failure(e) => handshake_error(e),
        })?;
    let protocol = response
        .headers()
        .get("Sec-WebSocket-Protocol")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let tcp = ws.get_ref().tcp();
    tcp.set_read_timeout(None).map_err(io_err)?;
    tcp.set_write_timeout(None).map_err(io_err)?;
    tcp.set_nonblocking(true).map_err(io_err)?;
    Ok(Handshaken { ws, protocol })
}

fn handshake_error(e: WsError) -> TransportError {
    match e {
        WsError::Http(response) => TransportError::Refused {
            status: response.status().as_u16(),
        },
        WsError::Io(io) if is_tls_error(&io) => TransportError::Tls(io.to_string()),
        WsError::Io(io)
            if matches!(
                io.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ) =>
        {
            timed_out("the WebSocket upgrade")
        }
        WsError::Io(io) => TransportError::Connect(format!("during the WebSocket upgrade: {io}")),
        WsError::Protocol(p) => TransportError::Protocol(p.to_string()),
        WsError::Url(u) => TransportError::Connect(format!("invalid URL: {u}")),
        WsError::Tls(t) => TransportError::Tls(t.to_string()),
        other => TransportError::Protocol(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send_sync<T: Send + Sync>() {}

    #[test]
    fn transport_is_send_and_sync() {
        assert_send_sync::<Inner>();
    }
}
