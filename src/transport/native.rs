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
use tungstenite::handshake::client::Request;
use tungstenite::http::HeaderValue;
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tungstenite::{Error as WsError, Message, WebSocket};

use super::wait::Waker;
use super::{CloseInfo, ConnectRequest, TransportError, TransportEvent, TransportStats, WaitHint};
use crate::protocol::Transmit;

/// How long `poll` keeps completing a closing handshake before dropping the socket.
const CLOSE_LINGER: Duration = Duration::from_secs(3);
/// Most frames discarded per `poll` while closing, so a chatty peer cannot stall a frame.
const CLOSING_READS_PER_POLL: usize = 1024;
/// Most bytes one socket read takes (tungstenite's read size), at most: tungstenite zero-fills
/// that much of its buffer before every read, and an idle frame makes one read.
const READ_BUFFER: usize = 4096;
/// Bound on data buffered by `send` that the socket did not take yet; past it `send` refuses.
const MAX_WRITE_BUFFER: usize = 64 << 20;

/// The byte stream under the WebSocket: plain TCP or rustls over TCP, counting what it wrote
/// (so the transport knows how much of what `send` accepted is still waiting).
pub(crate) struct Stream {
    io: Io,
    written: u64,
    reads: Reads,
}

enum Io {
    /// `ws://`
    Plain(TcpStream),
    /// `wss://`
    #[cfg(feature = "tls")]
    Tls(Box<super::tls::TlsStream>),
}

/// Whether the next socket read can be answered without a system call.
///
/// A nonblocking TCP read that returns fewer bytes than it asked for found the socket's receive
/// queue empty (Linux copies from every queued segment until the buffer is full). The read after
/// it would only fail with `EAGAIN`: one wasted system call per socket per visit, which at many
/// sockets is one per received message. So once the socket is open, a short read makes the next
/// ones report `WouldBlock` until [`Stream::rearm`], which the transport calls when a `poll`
/// finds nothing (the end of the caller's visit). Bytes that arrive meanwhile are not lost:
/// the socket stays readable, so the readiness set (level-triggered) or the next visit's read
/// finds them. (A visit the read budget cut short leaves the gate shut: the next one reads what
/// tungstenite has buffered, then finds nothing and rearms, one frame later at worst.) During
/// the blocking handshake every read goes to the socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Reads {
    /// Blocking socket (the handshake): every read goes to the socket.
    Blocking,
    /// The next read goes to the socket.
    Armed,
    /// A read came back short: the socket had nothing more.
    Empty,
}

/// `inner` read through the [`Reads`] gate.
pub(crate) struct Gated<'a, R> {
    pub(crate) inner: &'a mut R,
    pub(crate) reads: &'a mut Reads,
}

impl<R: Read> Read for Gated<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if *self.reads == Reads::Empty {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let n = self.inner.read(buf)?;
        // 0 is the end of the stream: every read says so again.
        if *self.reads == Reads::Armed && n != 0 && n < buf.len() {
            *self.reads = Reads::Empty;
        }
        Ok(n)
    }
}

impl Stream {
    fn new(io: Io) -> Self {
        Self {
            io,
            written: 0,
            reads: Reads::Blocking,
        }
    }

    fn tcp(&self) -> &TcpStream {
        match &self.io {
            Io::Plain(s) => s,
            #[cfg(feature = "tls")]
            Io::Tls(s) => s.tcp(),
        }
    }

    /// The socket is nonblocking now: short reads end a visit's reads ([`Reads`]).
    fn nonblocking(&mut self) {
        self.reads = Reads::Armed;
    }

    /// A visit ended: the next read goes to the socket again.
    fn rearm(&mut self) {
        if self.reads == Reads::Empty {
            self.reads = Reads::Armed;
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let reads = &mut self.reads;
        match &mut self.io {
            Io::Plain(s) => Gated { inner: s, reads }.read(buf),
            #[cfg(feature = "tls")]
            Io::Tls(s) => s.read_gated(buf, reads),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = match &mut self.io {
            Io::Plain(s) => s.write(buf),
            #[cfg(feature = "tls")]
            Io::Tls(s) => s.write(buf),
        }?;
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        match &mut self.io {
            Io::Plain(s) => s.flush(),
            #[cfg(feature = "tls")]
            Io::Tls(s) => s.flush(),
        }
    }
}

/// Bytes a client frame with an `n`-byte payload takes on the wire (header, mask, payload).
fn wire_len(n: usize) -> u64 {
    let ext = if n < 126 {
        0
    } else if n <= usize::from(u16::MAX) {
        2
    } else {
        8
    };
    (2 + ext + 4 + n) as u64
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
    /// Wire bytes of the frames `send` accepted, on the scale of [`Stream::written`] (reset to
    /// it whenever a flush empties tungstenite's buffer): the difference is what still waits.
    /// While connecting: the wire bytes of the pending frames.
    queued: u64,
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
            queued: 0,
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
        if self.drained
            && let State::Open { ws, .. } | State::Closing { ws, .. } = &mut self.state
        {
            ws.get_mut().rearm();
        }
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
                // The upgrade request went through the counter too: start from there.
                self.queued = ws.get_ref().written;
                for t in pending {
                    let (msg, n) = message_of(t);
                    match ws.write(msg) {
                        Ok(()) => self.queued += wire_len(n),
                        Err(e) if is_would_block(&e) => {
                            self.queued += wire_len(n);
                            flush_blocked = true
                        }
                        Err(e) => {
                            write_failure = Some(event_from_error(e));
                            break;
                        }
                    }
                }
                if had_pending && write_failure.is_none() {
                    match ws.flush() {
                        Ok(()) => {
                            flush_blocked = false;
                            self.queued = ws.get_ref().written;
                        }
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
                Ok(()) => {
                    *flush_blocked = false;
                    self.queued = ws.get_ref().written;
                }
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
                let n = t.len();
                pending.push_back(t);
                self.queued += wire_len(n);
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
                    Ok(()) => self.queued += wire_len(n),
                    // The frame is queued; the rest goes out on flush.
                    Err(e) if is_would_block(&e) => {
                        self.queued += wire_len(n);
                        *flush_blocked = true
                    }
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
                    Ok(()) => {
                        *flush_blocked = false;
                        self.queued = ws.get_ref().written;
                    }
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

    /// Bytes `send` accepted that the network has not taken yet (frames waiting for the
    /// connection to open included).
    pub(crate) fn send_backlog(&self) -> usize {
        let waiting = match &self.state {
            State::Connecting { .. } => self.queued,
            State::Open { ws, .. } => self.queued.saturating_sub(ws.get_ref().written),
            State::Closing { .. } | State::Done { .. } => 0,
        };
        usize::try_from(waiting).unwrap_or(usize::MAX)
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
    for (name, value) in &req.headers.0 {
        let name = tungstenite::http::HeaderName::from_bytes(name.as_bytes())
            .map_err(|e| TransportError::Connect(format!("invalid header name {name:?}: {e}")))?;
        let value = HeaderValue::from_str(value).map_err(|e| {
            TransportError::Connect(format!("invalid value for header {name}: {e}"))
        })?;
        request.headers_mut().append(name, value);
    }
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
    let chunk = req.read_buffer.max(64);
    let config = WebSocketConfig::default()
        .max_frame_size(Some(max))
        .max_message_size(Some(max))
        .max_write_buffer_size(MAX_WRITE_BUFFER)
        // tungstenite zero-fills the free part of its read buffer (up to this size) before
        // every read, and an idle frame makes one read: keep it small.
        .read_buffer_size(READ_BUFFER.min(chunk));

    let (tx, rx) = crossbeam_channel::bounded(1);
    let wakes = waker.is_some();
    let job = move || {
        let target = Target {
            host,
            port,
            #[cfg(feature = "tls")]
            tls_client,
        };
        let result = handshake(&target, request, config, chunk, deadline);
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
    chunk: usize,
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
        Some(config) => Stream::new(Io::Tls(super::tls::handshake(
            config.clone(),
            &target.host,
            tcp,
        )?)),
        None => Stream::new(Io::Plain(tcp)),
    };
    #[cfg(not(feature = "tls"))]
    let stream = Stream::new(Io::Plain(tcp));

    let (mut ws, protocol) = upgrade(stream, &request, config, chunk)?;
    let tcp = ws.get_ref().tcp();
    tcp.set_read_timeout(None).map_err(io_err)?;
    tcp.set_write_timeout(None).map_err(io_err)?;
    tcp.set_nonblocking(true).map_err(io_err)?;
    ws.get_mut().nonblocking();
    Ok(Handshaken { ws, protocol })
}

/// Most bytes of the server's answer to the upgrade (status line and headers).
const MAX_UPGRADE_RESPONSE: usize = 16 * 1024;

/// The WebSocket upgrade (RFC 6455 section 4.1) on a connected blocking stream. Written here
/// rather than left to tungstenite's client handshake, which logs the whole request at TRACE
/// level: the `Sec-WebSocket-Protocol` header, so the auth token, and the query, so the connect
/// params (tests/security_token.rs). Checks what tungstenite checks: status 101, `Upgrade`,
/// `Connection`, `Sec-WebSocket-Accept`, and a subprotocol answer that was offered.
fn upgrade(
    mut stream: Stream,
    request: &Request,
    config: WebSocketConfig,
    chunk: usize,
) -> Result<(Ws, Option<String>), TransportError> {
    let uri = request.uri();
    let authority = uri
        .authority()
        .ok_or_else(|| TransportError::Connect(format!("URL {uri} has no host")))?;
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let key = tungstenite::handshake::client::generate_key();
    let mut req = format!(
        "GET {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {key}\r\n"
    );
    let mut offered: Option<Vec<String>> = None;
    for (name, value) in request.headers() {
        // `into_client_request` fills these in; they are written above (with our own key).
        if matches!(
            name.as_str(),
            "host" | "connection" | "upgrade" | "sec-websocket-version" | "sec-websocket-key"
        ) {
            continue;
        }
        let value = value
            .to_str()
            .map_err(|_| TransportError::Connect(format!("header {name} is not visible ASCII")))?;
        if name == "sec-websocket-protocol" {
            // Some servers match header names case-sensitively (as tungstenite does).
            req.push_str("Sec-WebSocket-Protocol");
            offered = Some(value.split(',').map(|p| p.trim().to_owned()).collect());
        } else {
            req.push_str(name.as_str());
        }
        req.push_str(": ");
        req.push_str(value);
        req.push_str("\r\n");
    }
    req.push_str("\r\n");
    stream.write_all(req.as_bytes()).map_err(upgrade_io)?;
    stream.flush().map_err(upgrade_io)?;

    let mut buf = Vec::with_capacity(512);
    let mut piece = [0u8; 1024];
    let (len, status, headers) = loop {
        let n = stream.read(&mut piece).map_err(upgrade_io)?;
        if n == 0 {
            return Err(TransportError::Connect(
                "the server closed the connection during the WebSocket upgrade".into(),
            ));
        }
        buf.extend_from_slice(&piece[..n]);
        let mut slots = [httparse::EMPTY_HEADER; 64];
        let mut response = httparse::Response::new(&mut slots);
        match response.parse(&buf) {
            Ok(httparse::Status::Complete(len)) => {
                let status = response.code.unwrap_or(0);
                let headers: Vec<(String, Vec<u8>)> = response
                    .headers
                    .iter()
                    .map(|h| (h.name.to_ascii_lowercase(), h.value.to_vec()))
                    .collect();
                break (len, status, headers);
            }
            Ok(httparse::Status::Partial) if buf.len() <= MAX_UPGRADE_RESPONSE => {}
            Ok(httparse::Status::Partial) => {
                return Err(TransportError::Protocol(format!(
                    "the answer to the WebSocket upgrade has more than {MAX_UPGRADE_RESPONSE} bytes of headers"
                )));
            }
            Err(e) => {
                return Err(TransportError::Protocol(format!(
                    "invalid HTTP answer to the WebSocket upgrade: {e}"
                )));
            }
        }
    };
    if status != 101 {
        return Err(TransportError::Refused { status });
    }
    let header = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| String::from_utf8_lossy(v).trim().to_owned())
    };
    let refuse = |why: &str| {
        Err(TransportError::Protocol(format!(
            "WebSocket upgrade: {why}"
        )))
    };
    if !header("upgrade").is_some_and(|v| v.eq_ignore_ascii_case("websocket")) {
        return refuse("no \"Upgrade: websocket\" header in the response");
    }
    if !header("connection").is_some_and(|v| {
        v.split(',')
            .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
    }) {
        return refuse("no \"Connection: Upgrade\" header in the response");
    }
    let accept = tungstenite::handshake::derive_accept_key(key.as_bytes());
    if header("sec-websocket-accept").as_deref() != Some(accept.as_str()) {
        return refuse("Sec-WebSocket-Accept does not match the key sent");
    }
    let protocol = header("sec-websocket-protocol");
    match (&offered, &protocol) {
        (Some(_), None) => return refuse("the server chose none of the offered subprotocols"),
        (None, Some(_)) => return refuse("the server chose a subprotocol none was offered"),
        (Some(offer), Some(p)) if !offer.contains(p) => {
            return refuse("the server chose a subprotocol that was not offered");
        }
        _ => {}
    }
    let tail = buf.split_off(len);
    let ws = open_websocket(stream, &tail, config, chunk);
    Ok((ws, protocol))
}

/// The client side of an upgraded connection; `tail` holds the bytes read past the upgrade
/// answer (the start of the first frames, if any).
///
/// tungstenite reads into one buffer and hands out each text frame as a view of it. While any
/// frame is still alive (the app keeps received messages for two Bevy frames), it cannot reuse
/// that buffer in place: it allocates a new one, as large as the buffer's first allocation. A
/// buffer made from the tail alone has no such size, so every new buffer would hold exactly
/// the frame being read: one socket read and one allocation per frame. Starting from a
/// `chunk`-byte allocation ([`ConnectRequest::read_buffer`]) makes each new buffer that large
/// instead. (tungstenite turns the
/// `Vec` into its buffer with `BytesMut::from_iter`, which keeps the allocation; the test
/// `kept_frames_do_not_shrink_the_reads` checks the effect.)
fn open_websocket<S: Read + Write>(
    stream: S,
    tail: &[u8],
    config: WebSocketConfig,
    chunk: usize,
) -> WebSocket<S> {
    let mut first = Vec::with_capacity(chunk.max(tail.len()));
    first.extend_from_slice(tail);
    WebSocket::from_partially_read(stream, first, Role::Client, Some(config))
}

/// An I/O error during the upgrade.
fn upgrade_io(e: io::Error) -> TransportError {
    if is_tls_error(&e) {
        TransportError::Tls(e.to_string())
    } else if matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    ) {
        timed_out("the WebSocket upgrade")
    } else {
        TransportError::Connect(format!("during the WebSocket upgrade: {e}"))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn assert_send_sync<T: Send + Sync>() {}

    #[test]
    fn transport_is_send_and_sync() {
        assert_send_sync::<Inner>();
    }

    /// A stream that hands out `data` as the socket would (at most what the reader asks
    /// for, then WouldBlock) and counts the reads.
    struct Feed {
        data: Vec<u8>,
        at: usize,
        reads: usize,
    }

    impl Read for Feed {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            self.reads += 1;
            let rest = &self.data[self.at..];
            if rest.is_empty() {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            let n = rest.len().min(buf.len());
            buf[..n].copy_from_slice(&rest[..n]);
            self.at += n;
            Ok(n)
        }
    }

    impl Write for Feed {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// A short read means the socket had nothing more: the read after it is not made (it would
    /// only fail with EAGAIN) until the gate is armed again; a full read leaves it open, and the
    /// blocking handshake's reads always reach the socket.
    #[test]
    fn a_short_read_spares_the_read_that_would_find_nothing() {
        let mut feed = Feed {
            data: vec![7; 100],
            at: 0,
            reads: 0,
        };
        let mut reads = Reads::Armed;
        let mut buf = [0u8; 64];
        let read = |feed: &mut Feed, reads: &mut Reads, buf: &mut [u8]| {
            Gated { inner: feed, reads }.read(buf)
        };
        assert_eq!(read(&mut feed, &mut reads, &mut buf).unwrap(), 64);
        assert_eq!(
            reads,
            Reads::Armed,
            "a full read says nothing about what is left"
        );
        assert_eq!(read(&mut feed, &mut reads, &mut buf).unwrap(), 36);
        assert_eq!(reads, Reads::Empty);
        // More arrives; the gate answers without reading (the readiness set will report it).
        feed.data.extend([8; 10]);
        let e = read(&mut feed, &mut reads, &mut buf).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
        assert_eq!(feed.reads, 2, "the socket was not read");
        // The next visit reads it.
        reads = Reads::Armed;
        assert_eq!(read(&mut feed, &mut reads, &mut buf).unwrap(), 10);
        assert_eq!(feed.reads, 3);
        // Blocking (the handshake): a short read is just a piece of the answer.
        let mut reads = Reads::Blocking;
        feed.data.extend([9; 10]);
        assert_eq!(read(&mut feed, &mut reads, &mut buf).unwrap(), 10);
        assert_eq!(reads, Reads::Blocking);
        assert_eq!(
            read(&mut feed, &mut reads, &mut buf).unwrap_err().kind(),
            io::ErrorKind::WouldBlock
        );
        assert_eq!(feed.reads, 5, "both reads reached the socket");
    }

    /// An unmasked server text frame.
    fn server_frame(text: &str) -> Vec<u8> {
        let mut f = vec![0x81];
        match u16::try_from(text.len()) {
            Ok(n) if n < 126 => f.push(n as u8),
            Ok(n) => {
                f.push(126);
                f.extend_from_slice(&n.to_be_bytes());
            }
            Err(_) => unreachable!("test frames are small"),
        }
        f.extend_from_slice(text.as_bytes());
        f
    }

    /// Every received frame is kept (as the app keeps messages for two frames), so no read
    /// buffer can be reused in place: the reads must still take several frames each, not one
    /// frame per read (which is what a buffer without a first allocation size gives).
    #[test]
    fn kept_frames_do_not_shrink_the_reads() {
        const FRAMES: usize = 2000;
        let texts: Vec<String> = (0..FRAMES)
            .map(|i| {
                let pad = "x".repeat(60 + i % 80);
                format!(r#"["1","{i}","echo:burst","tick",{{"n":{i},"pad":"{pad}"}}]"#)
            })
            .collect();
        let wire: Vec<u8> = texts.iter().flat_map(|t| server_frame(t)).collect();
        // No tail, a tail inside the first header, and a tail of more than one frame; the
        // default buffer and a small one (many sockets in one process).
        for (tail_len, chunk) in [(0, 16 << 10), (1, 16 << 10), (300, 16 << 10), (0, 1024)] {
            let feed = Feed {
                data: wire[tail_len..].to_vec(),
                at: 0,
                reads: 0,
            };
            let config = WebSocketConfig::default().read_buffer_size(READ_BUFFER.min(chunk));
            let mut ws = open_websocket(feed, &wire[..tail_len], config, chunk);
            let mut kept = Vec::with_capacity(FRAMES);
            loop {
                match ws.read() {
                    Ok(Message::Text(t)) => kept.push(t),
                    Err(e) if is_would_block(&e) => break,
                    other => panic!("unexpected {other:?}"),
                }
            }
            assert_eq!(kept.len(), FRAMES, "tail {tail_len}");
            for (got, want) in kept.iter().zip(&texts) {
                assert_eq!(got.as_str(), want.as_str(), "tail {tail_len}");
            }
            // Full reads would be wire / read size (about 70 of 4 KiB, 280 of 1 KiB); one per
            // frame would be 2,000.
            let reads = ws.get_ref().reads;
            assert!(
                reads <= wire.len() / READ_BUFFER.min(chunk) * 2,
                "tail {tail_len}: {reads} reads for {} bytes in {FRAMES} frames",
                wire.len()
            );
        }
    }
}
