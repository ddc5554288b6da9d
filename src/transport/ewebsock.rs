//! An [`ewebsock`](https://crates.io/crates/ewebsock) 0.8-backed transport (feature `ewebsock`),
//! native and wasm32: [`EwebsockConnector`] for
//! [`PhoenixSocketConfig::with_transport`](crate::plugin::PhoenixSocketConfig::with_transport).
//!
//! The built-in transport stays the default and is better on every count measured here; this
//! one exists for apps that already use ewebsock, or want its behaviour. It runs the same
//! conformance tests (tests/transport_native.rs natively, tests/web.rs in headless Chromium);
//! where it cannot keep a promise of [`PhoenixTransport`], the test asserts the difference.
//!
//! What it cannot do (ewebsock 0.8 gives no way to):
//! - **Close codes.** ewebsock passes neither the peer's close code nor its reason: a close is
//!   always [`CloseInfo`] with `code: None`. Closing from this side sends a Close frame without
//!   a code (the peer sees 1005, not 1000), and a frame over
//!   [`ConnectRequest::max_frame_size`] closes without 1009.
//! - **The selected subprotocol.** `Opened` always has `protocol: None`. On the web, ewebsock
//!   0.8 does not even offer the subprotocols, so a Phoenix 1.8 auth token
//!   (`SocketConfig::with_auth_token`, sent as a subprotocol) never reaches the server there.
//! - **Frame order on the web, after a binary send.** ewebsock's first binary `send` switches
//!   the browser socket to `Blob` mode for good; from then on every incoming binary frame is
//!   decoded asynchronously (`FileReader`) and is delivered after text frames that arrived
//!   later. Phoenix replies and broadcasts can then be seen out of wire order. Text-only
//!   traffic, and binary traffic that only comes from the server, keep their order.
//! - **Native latency.** Natively ewebsock runs one thread per connection that sends at most
//!   one queued frame, then blocks in `read` for up to `read_timeout` (10 ms by default, see
//!   [`EwebsockConnector::with_read_timeout`]), so a push can wait that long before it leaves.
//!   See BENCHMARKS.md for the measured round trip and burst numbers.
//! - **`wss://` natively.** Built without ewebsock's `tls` feature (which panics without a
//!   process-wide rustls provider): a `wss://` URL fails with [`TransportError::Tls`]. Use the
//!   built-in transport with the `tls` feature. In the browser `wss://` works (the browser
//!   does TLS).
//! - **Connect timeout natively.** The handshake has no timeout of its own in ewebsock; this
//!   transport reports [`TransportError::Connect`] at [`ConnectRequest::connect_timeout`], but
//!   ewebsock's thread may stay blocked in the handshake until the OS gives up.
//! - **Hidden tabs and `pagehide`.** No keepalive worker ([`ConnectRequest::keepalive`] is
//!   ignored) and no clean close on `pagehide`: a hidden tab's connection drops after Phoenix's
//!   60 s idle timeout, and reconnects when frames run again.
//! - **Secrets in TRACE logs natively.** ewebsock's tungstenite 0.24 client handshake logs the
//!   whole upgrade request at TRACE level (target `tungstenite::handshake::client`), so an app
//!   that enables TRACE for that target (or forwards all `log` records) prints the auth token
//!   header and the connect params. The built-in transport writes the upgrade itself for this
//!   reason (tests/security_token.rs checks it); filter that target out if you use this one.
//! - **No send backlog.** [`PhoenixTransport::send_backlog`] reports 0 (ewebsock does not say
//!   what it has not sent), so `max_send_backlog` is not enforced on this transport.
//! - [`TransportError::Refused`] natively comes from parsing ewebsock's error text (`HTTP error:
//!   403 …`); other errors are classified from their text the same way, best effort.
//!
//! Sends before `Opened` are queued here and go out after it (the web backend would drop them),
//! and Ping, Pong and unknown messages are never sent (ewebsock panics on those on the web).
//! [`PhoenixTransport::flush`] does nothing: ewebsock writes on its own.
//!
//! Natively it works with `WaitForNetwork`: ewebsock's thread queues each event and then wakes
//! the [`NetworkWaker`] (a connect timeout is noticed by the next frame, at most
//! `WaitForNetwork::max_wait` late).

use std::collections::VecDeque;
use std::ops::ControlFlow;
use std::time::Duration;

use ::ewebsock::{Options, WsEvent, WsMessage, WsSender};
use crossbeam_channel::{Receiver, TryRecvError};
use web_time::Instant;

use super::{
    CloseInfo, ConnectRequest, NetworkWaker, PhoenixConnector, PhoenixTransport, TransportError,
    TransportEvent, TransportStats, WaitHint,
};
use crate::protocol::Transmit;

/// Opens [`EwebsockTransport`]s: pass it to
/// [`PhoenixSocketConfig::with_transport`](crate::plugin::PhoenixSocketConfig::with_transport).
///
/// ```no_run
/// use bevy::prelude::*;
/// use bevy_phoenix_channels::prelude::*;
/// use bevy_phoenix_channels::transport::ewebsock::EwebsockConnector;
///
/// let config = PhoenixSocketConfig::new("ws://127.0.0.1:4000/socket")
///     .with_transport(EwebsockConnector::new());
/// App::new().add_plugins((MinimalPlugins, PhoenixChannelsPlugin::with_config(config)));
/// ```
#[derive(Debug, Clone)]
pub struct EwebsockConnector {
    read_timeout: Option<Duration>,
}

impl Default for EwebsockConnector {
    fn default() -> Self {
        Self {
            read_timeout: Options::default().read_timeout,
        }
    }
}

impl EwebsockConnector {
    /// ewebsock's defaults (a 10 ms read timeout natively).
    pub fn new() -> Self {
        Self::default()
    }

    /// Native only: how long ewebsock's connection thread blocks in `read` before it looks at
    /// the frames queued for sending (ewebsock's `Options::read_timeout`, 10 ms by default). A
    /// push can wait up to this long (in practice rounded up to the kernel's timer tick) before
    /// it leaves; shorter costs more wake-ups of that thread. Ignored on the web.
    pub fn with_read_timeout(mut self, timeout: Duration) -> Self {
        self.read_timeout = Some(timeout);
        self
    }
}

impl PhoenixConnector for EwebsockConnector {
    fn connect(&self, req: ConnectRequest, waker: &NetworkWaker) -> Box<dyn PhoenixTransport> {
        Box::new(EwebsockTransport::connect(req, waker, self))
    }

    fn name(&self) -> &str {
        "ewebsock"
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Waiting for ewebsock's `Opened`; sends wait in `pending`.
    Connecting,
    /// `Opened` was returned by `poll`.
    Open,
    /// Terminal event returned (or about to be, from `early`), or closed by us.
    Done,
}

/// One ewebsock connection behind [`PhoenixTransport`]; made by [`EwebsockConnector`].
///
/// Natively it is `Send + Sync`; on the web it is `!Send` (it holds the browser socket).
pub struct EwebsockTransport {
    /// Dropping it closes the connection.
    sender: Option<WsSender>,
    /// What ewebsock's callback reported, in order.
    events: Receiver<WsEvent>,
    state: State,
    /// A terminal event found before anything could be polled (bad URL, `wss://` natively).
    early: Option<TransportEvent>,
    /// Frames sent before `Opened`.
    pending: VecDeque<Transmit>,
    deadline: Instant,
    max_frame_size: usize,
    /// ewebsock's callback wakes an active waker.
    wakes: bool,
    stats: TransportStats,
}

impl std::fmt::Debug for EwebsockTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EwebsockTransport")
            .field("state", &self.state)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl EwebsockTransport {
    /// Starts connecting; never blocks. Progress and errors arrive through `poll`.
    pub fn connect(req: ConnectRequest, waker: &NetworkWaker, config: &EwebsockConnector) -> Self {
        let (tx, rx) = crossbeam_channel::unbounded();
        let mut t = Self {
            sender: None,
            events: rx,
            state: State::Connecting,
            early: None,
            pending: VecDeque::new(),
            deadline: Instant::now() + req.connect_timeout,
            max_frame_size: req.max_frame_size,
            wakes: waker.is_active(),
            stats: TransportStats::default(),
        };
        #[cfg(not(target_arch = "wasm32"))]
        if req
            .url
            .get(..6)
            .is_some_and(|s| s.eq_ignore_ascii_case("wss://"))
        {
            t.fail_early(TransportError::Tls(
                "the ewebsock transport is built without TLS natively; use the built-in \
                 transport with the `tls` feature for wss://"
                    .into(),
            ));
            return t;
        }
        // Natively every field is set; the update keeps this compiling if ewebsock adds one.
        #[allow(clippy::needless_update)]
        let options = Options {
            max_incoming_frame_size: req.max_frame_size,
            subprotocols: req.subprotocols,
            additional_headers: req.headers.0,
            read_timeout: config.read_timeout,
            ..Options::default()
        };
        let waker = waker.clone();
        let on_event = Box::new(move |event: WsEvent| {
            // Queued first, then the wake-up, so a woken frame finds it.
            if tx.send(event).is_err() {
                // The transport is gone: ewebsock closes the connection.
                return ControlFlow::Break(());
            }
            waker.wake();
            ControlFlow::Continue(())
        });
        match ::ewebsock::ws_connect(req.url, options, on_event) {
            Ok(sender) => t.sender = Some(sender),
            Err(e) => t.fail_early(TransportError::Connect(e)),
        }
        t
    }

    fn fail_early(&mut self, e: TransportError) {
        self.finish();
        self.early = Some(TransportEvent::Failed(e));
    }

    /// No more events: closes the connection (dropping the sender) and stops listening.
    fn finish(&mut self) {
        self.state = State::Done;
        self.pending.clear();
        if let Some(mut sender) = self.sender.take() {
            sender.close();
        }
        // Dropping the receiver makes ewebsock's callback return `Break`.
        self.events = crossbeam_channel::never();
    }

    fn send_now(&mut self, t: Transmit) {
        if let Some(sender) = &mut self.sender {
            // Only Text and Binary: ewebsock panics on Ping/Pong/Unknown on the web.
            sender.send(match t {
                Transmit::Text(s) => WsMessage::Text(s),
                Transmit::Binary(b) => WsMessage::Binary(b),
            });
        }
    }

    /// The event for one of ewebsock's error strings.
    fn error_event(&self, msg: String) -> TransportEvent {
        if self.state == State::Connecting {
            if let Some(status) = http_status(&msg) {
                return TransportEvent::Failed(TransportError::Refused { status });
            }
            return TransportEvent::Failed(TransportError::Connect(format!("ewebsock: {msg}")));
        }
        if let Some((size, max)) = too_long(&msg) {
            return TransportEvent::Failed(TransportError::FrameTooLarge { size, max });
        }
        let lower = msg.to_ascii_lowercase();
        if [
            "without closing handshake",
            "connection reset",
            "broken pipe",
        ]
        .iter()
        .any(|p| lower.contains(p))
        {
            return TransportEvent::Closed(CloseInfo {
                code: None,
                reason: msg,
                by_peer: true,
            });
        }
        TransportEvent::Failed(TransportError::Io(format!("ewebsock: {msg}")))
    }

    /// A received message, or the terminal event if it is over `max_frame_size`.
    fn message(&mut self, size: usize, event: TransportEvent) -> TransportEvent {
        if size > self.max_frame_size {
            let max = self.max_frame_size;
            self.finish();
            return TransportEvent::Failed(TransportError::FrameTooLarge { size, max });
        }
        self.stats.messages_in += 1;
        self.stats.bytes_in += size as u64;
        event
    }
}

/// `… HTTP error: 403 Forbidden` (tungstenite's text for a refused upgrade) → 403.
fn http_status(msg: &str) -> Option<u16> {
    let rest = &msg[msg.find("HTTP error: ")? + "HTTP error: ".len()..];
    rest.split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

/// `… Message too long: 2048 > 1024` (tungstenite's capacity error) → (2048, 1024).
fn too_long(msg: &str) -> Option<(usize, usize)> {
    let rest = &msg[msg.find("too long: ")? + "too long: ".len()..];
    let (size, max) = rest.split_once(" > ")?;
    let max = max.split(|c: char| !c.is_ascii_digit()).next()?;
    Some((size.trim().parse().ok()?, max.parse().ok()?))
}

fn not_open() -> TransportError {
    TransportError::Io("connection is not open".into())
}

impl PhoenixTransport for EwebsockTransport {
    fn poll(&mut self) -> Option<TransportEvent> {
        if self.state == State::Done {
            return self.early.take();
        }
        loop {
            let event = match self.events.try_recv() {
                Ok(event) => event,
                Err(TryRecvError::Empty) => {
                    if self.state == State::Connecting && Instant::now() >= self.deadline {
                        self.finish();
                        return Some(TransportEvent::Failed(TransportError::Connect(
                            "connect timed out".into(),
                        )));
                    }
                    return None;
                }
                Err(TryRecvError::Disconnected) => {
                    // ewebsock's thread ended without a last word.
                    let connecting = self.state == State::Connecting;
                    self.finish();
                    return Some(if connecting {
                        TransportEvent::Failed(TransportError::Connect(
                            "ewebsock ended before the connection opened".into(),
                        ))
                    } else {
                        TransportEvent::Closed(CloseInfo {
                            code: None,
                            reason: "ewebsock ended the connection".into(),
                            by_peer: true,
                        })
                    });
                }
            };
            match event {
                WsEvent::Opened => {
                    if self.state != State::Connecting {
                        continue;
                    }
                    self.state = State::Open;
                    while let Some(t) = self.pending.pop_front() {
                        self.send_now(t);
                    }
                    return Some(TransportEvent::Opened { protocol: None });
                }
                WsEvent::Message(WsMessage::Text(s)) => {
                    return Some(self.message(s.len(), TransportEvent::Text(s.into())));
                }
                WsEvent::Message(WsMessage::Binary(b)) => {
                    return Some(self.message(b.len(), TransportEvent::Binary(b)));
                }
                // Pongs are answered by ewebsock (natively) or the browser.
                WsEvent::Message(
                    WsMessage::Ping(_) | WsMessage::Pong(_) | WsMessage::Unknown(_),
                ) => {}
                WsEvent::Error(msg) => {
                    let event = self.error_event(msg);
                    self.finish();
                    return Some(event);
                }
                WsEvent::Closed => {
                    let connecting = self.state == State::Connecting;
                    self.finish();
                    return Some(if connecting {
                        TransportEvent::Failed(TransportError::Connect(
                            "the connection closed before it opened".into(),
                        ))
                    } else {
                        TransportEvent::Closed(CloseInfo {
                            code: None,
                            reason: "closed (ewebsock reports no close code)".into(),
                            by_peer: true,
                        })
                    });
                }
            }
        }
    }

    fn send(&mut self, t: Transmit) -> Result<(), TransportError> {
        let size = t.len();
        match self.state {
            State::Connecting => self.pending.push_back(t),
            State::Open => self.send_now(t),
            State::Done => return Err(not_open()),
        }
        self.stats.messages_out += 1;
        self.stats.bytes_out += size as u64;
        Ok(())
    }

    fn flush(&mut self) {}

    fn close(&mut self) {
        self.finish();
        self.early = None;
    }

    fn is_open(&self) -> bool {
        self.state == State::Open
    }

    fn stats(&self) -> TransportStats {
        self.stats
    }

    fn wait_hint(&self) -> WaitHint<'_> {
        if self.state == State::Done {
            return if self.early.is_some() {
                WaitHint::Ready
            } else {
                WaitHint::Idle
            };
        }
        if !self.events.is_empty() || !self.wakes {
            return WaitHint::Ready;
        }
        WaitHint::Waker
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_texts() {
        assert_eq!(http_status("Connect: HTTP error: 403 Forbidden"), Some(403));
        assert_eq!(http_status("Connect: IO error: refused"), None);
        assert_eq!(
            too_long("read: Space limit exceeded: Message too long: 2048 > 1024"),
            Some((2048, 1024))
        );
        assert_eq!(too_long("read: something else"), None);
    }

    #[cfg(not(target_arch = "wasm32"))]
    #[test]
    fn transport_is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<EwebsockTransport>();
    }
}
