//! Web transport: the browser `WebSocket`, bound directly through web-sys.
//!
//! Why not ewebsock 0.8 (read from its `src/web.rs`):
//! - its `WsSender::send(Binary)` calls `set_binary_type(Blob)` on the socket for good; from then
//!   on every incoming binary frame is decoded with a `FileReader` (asynchronous), so a binary
//!   frame is delivered after text frames that arrived later: frame order breaks, and Phoenix
//!   needs it. The socket is private, so this cannot be undone from outside;
//! - it ignores `Options::subprotocols` on the web (`WebSocket::new(url)` only), reports neither
//!   the close code and reason nor the selected protocol, and leaks its callbacks (`forget`).
//!
//! Here `binaryType` stays `"arraybuffer"`, so every `message` event carries its data
//! synchronously and events are queued in arrival order. Callbacks push into an
//! `Rc<RefCell<..>>` queue drained by `poll`; callbacks are unregistered and freed on close/drop.
//! Browsers do not say why a connection failed, so a failure before `open` is always
//! [`TransportError::Connect`] (never `Refused`; a refused upgrade is an error then close 1006).
//!
//! **Hidden tabs.** A hidden tab stops `requestAnimationFrame` and throttles timers to once a
//! second, then once a minute, so a Bevy app stops polling and its heartbeats stop, and Phoenix
//! drops the connection after 60 s of silence. With [`ConnectRequest::keepalive`], a tiny Web
//! Worker ticks every `keepalive` (worker timers are not throttled, and its messages still reach
//! a hidden page). On each tick, if nobody has called `poll` for that long, the transport sends
//! a Phoenix heartbeat itself, with refs `keepalive-N`. The transport consumes the replies (they
//! start with [`KEEPALIVE_REPLY`]), so the protocol core never sees a frame it did not ask for.
//!
//! **Leaving the page.** On `pagehide`, as phoenix.js does, the transport closes its socket
//! cleanly (1000, "page hidden"): the server sees a clean close instead of a dropped connection,
//! and a page with no open socket can enter the back/forward cache. The close is reported like
//! any other, so when the page is shown again and frames resume, the socket reconnects and
//! rejoins.

use std::collections::VecDeque;

use wasm_bindgen::JsCast;
use wasm_bindgen::closure::Closure;
use web_sys::{BinaryType, CloseEvent, Event, MessageEvent, WebSocket};

use super::web_common::{
    self, Conn, KEEPALIVE_REPLY, PageHide, Shared, WebConn, blob_worker, js_error_text,
};
use super::{ConnectRequest, TransportError, TransportEvent, TransportStats};
use crate::protocol::Transmit;

/// The socket's event callbacks, kept alive while they are registered.
struct Callbacks {
    _open: Closure<dyn FnMut(Event)>,
    _message: Closure<dyn FnMut(MessageEvent)>,
    _error: Closure<dyn FnMut(Event)>,
    _close: Closure<dyn FnMut(CloseEvent)>,
}

/// The keepalive worker; terminated (and its script URL revoked) on drop.
struct Keepalive {
    worker: web_sys::Worker,
    url: String,
    _tick: Closure<dyn FnMut(MessageEvent)>,
}

impl Drop for Keepalive {
    fn drop(&mut self) {
        self.worker.set_onmessage(None);
        self.worker.terminate();
        let _ = web_sys::Url::revoke_object_url(&self.url);
    }
}

/// Starts a worker that posts a message every `every`; each one runs `tick` on this thread.
fn start_keepalive(
    every: std::time::Duration,
    tick: Closure<dyn FnMut(MessageEvent)>,
) -> Result<Keepalive, wasm_bindgen::JsValue> {
    let ms = web_common::keepalive_ms(every);
    let (worker, url) = blob_worker(&format!(
        "setInterval(function () {{ postMessage(0); }}, {ms});"
    ))?;
    worker.set_onmessage(Some(tick.as_ref().unchecked_ref()));
    Ok(Keepalive {
        worker,
        url,
        _tick: tick,
    })
}

/// A connection through a `WebSocket` on this thread.
pub(crate) struct Inner {
    socket: Option<WebSocket>,
    _callbacks: Option<Callbacks>,
    /// Dropped (worker terminated) on shutdown.
    keepalive: Option<Keepalive>,
    /// Dropped (listener removed) on shutdown.
    pagehide: Option<PageHide>,
    /// Frames sent before `open` (the browser rejects sends while CONNECTING).
    pending: VecDeque<Transmit>,
    /// The event queue, connect deadline and counters.
    conn: Conn,
}

/// `readyState` of an open socket.
const OPEN: u16 = WebSocket::OPEN;
/// `readyState` of a socket still connecting.
const CONNECTING: u16 = WebSocket::CONNECTING;

impl WebConn for Inner {
    type Extra = ();

    fn conn(&mut self) -> &mut Conn {
        &mut self.conn
    }

    fn on_open(&mut self) {
        self.send_pending();
    }

    fn end(&mut self, _grace: bool) {
        self.shutdown();
    }
}

impl Inner {
    pub(crate) fn connect(req: ConnectRequest) -> Self {
        let shared = Shared::new_rc(&req, ());
        let mut inner = Self {
            socket: None,
            _callbacks: None,
            keepalive: None,
            pagehide: None,
            pending: VecDeque::new(),
            conn: Conn::new(&req, shared.clone()),
        };
        let socket = if req.subprotocols.is_empty() {
            WebSocket::new(&req.url)
        } else {
            WebSocket::new_with_str_sequence(&req.url, &web_common::js_strings(&req.subprotocols))
        };
        let socket = match socket {
            Ok(socket) => socket,
            Err(e) => {
                shared
                    .borrow_mut()
                    .finish(TransportEvent::Failed(web_common::cannot_open(
                        &req.url,
                        &req.subprotocols,
                        &js_error_text(&e),
                    )));
                return inner;
            }
        };
        socket.set_binary_type(BinaryType::Arraybuffer);

        let on_open = {
            let shared = shared.clone();
            Closure::<dyn FnMut(Event)>::new(move |e: Event| {
                let protocol = e
                    .target()
                    .and_then(|t| t.dyn_into::<WebSocket>().ok())
                    .map(|ws| ws.protocol());
                shared.borrow_mut().open(protocol);
            })
        };
        let on_message = {
            let shared = shared.clone();
            Closure::<dyn FnMut(MessageEvent)>::new(move |e: MessageEvent| {
                let mut s = shared.borrow_mut();
                if s.finished {
                    return;
                }
                let data = e.data();
                let event = if let Some(text) = data.as_string() {
                    if text.starts_with(KEEPALIVE_REPLY) {
                        s.keepalive_replies += 1;
                        return;
                    }
                    if !s.fits(text.len()) {
                        return;
                    }
                    TransportEvent::Text(text.into())
                } else if let Some(buf) = data.dyn_ref::<js_sys::ArrayBuffer>() {
                    if !s.fits(buf.byte_length() as usize) {
                        return;
                    }
                    TransportEvent::Binary(js_sys::Uint8Array::new(buf).to_vec())
                } else {
                    s.finish(TransportEvent::Failed(TransportError::Protocol(
                        "unexpected message data type (binaryType is not arraybuffer?)".into(),
                    )));
                    return;
                };
                s.events.push_back(event);
            })
        };
        // The browser gives no detail in `error`; the `close` that always follows reports.
        let on_error = Closure::<dyn FnMut(Event)>::new(|_e: Event| {});
        let on_close = {
            let shared = shared.clone();
            Closure::<dyn FnMut(CloseEvent)>::new(move |e: CloseEvent| {
                shared.borrow_mut().closed(e.code(), e.reason());
            })
        };
        socket.set_onopen(Some(on_open.as_ref().unchecked_ref()));
        socket.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
        socket.set_onerror(Some(on_error.as_ref().unchecked_ref()));
        socket.set_onclose(Some(on_close.as_ref().unchecked_ref()));
        if let Some(every) = req.keepalive {
            let tick = {
                let shared = shared.clone();
                let socket = socket.clone();
                Closure::<dyn FnMut(MessageEvent)>::new(move |_e: MessageEvent| {
                    let open = socket.ready_state() == OPEN;
                    if let Some(frame) = shared.borrow_mut().keepalive_due(every, open) {
                        // A failure here shows up as the socket's close.
                        let _ = socket.send_with_str(&frame);
                    }
                })
            };
            match start_keepalive(every, tick) {
                Ok(k) => inner.keepalive = Some(k),
                Err(e) => bevy::log::warn!(
                    "phoenix: no hidden-tab keepalive (cannot start a Web Worker: {}); the \
                     connection may drop while the tab is hidden",
                    js_error_text(&e)
                ),
            }
        }
        inner.pagehide = {
            let socket = socket.clone();
            PageHide::listen(move |_e: Event| {
                let state = socket.ready_state();
                if state == CONNECTING || state == OPEN {
                    // The `close` event that follows reports it (code 1000).
                    let _ = socket.close_with_code_and_reason(1000, "page hidden");
                }
            })
        };
        inner.socket = Some(socket);
        inner._callbacks = Some(Callbacks {
            _open: on_open,
            _message: on_message,
            _error: on_error,
            _close: on_close,
        });
        inner
    }

    /// The next event (see [`web_common::poll`]); `Opened` also sends the frames queued before it.
    pub(crate) fn poll(&mut self) -> Option<TransportEvent> {
        web_common::poll(self)
    }

    /// Sends the frames queued before `open`, in order; stops at the first failure.
    fn send_pending(&mut self) {
        while let Some(t) = self.pending.pop_front() {
            if let Err(e) = self.send_now(&t) {
                // Surfaces through the `close`/`error` the browser reports next.
                log_send_error(&e);
                self.pending.clear();
                return;
            }
        }
    }

    /// Sends one frame on the socket now.
    fn send_now(&self, t: &Transmit) -> Result<(), TransportError> {
        let Some(socket) = &self.socket else {
            return Err(not_open());
        };
        let result = match t {
            Transmit::Text(s) => socket.send_with_str(s),
            Transmit::Binary(b) => socket.send_with_u8_array(b),
        };
        result.map_err(|e| TransportError::Io(js_error_text(&e)))
    }

    pub(crate) fn send(&mut self, t: Transmit) -> Result<(), TransportError> {
        if self.conn.done {
            return Err(not_open());
        }
        let Some(socket) = &self.socket else {
            return Err(not_open());
        };
        let size = t.len();
        match socket.ready_state() {
            CONNECTING => self.pending.push_back(t),
            OPEN => {
                self.send_pending();
                self.send_now(&t)?;
            }
            _ => return Err(TransportError::Io("connection is closing".into())),
        }
        self.conn.stats.messages_out += 1;
        self.conn.stats.bytes_out += size as u64;
        Ok(())
    }

    pub(crate) fn flush(&mut self) {
        // The browser writes on its own; only frames queued before `open` may wait here.
        if !self.pending.is_empty()
            && !self.conn.done
            && self
                .socket
                .as_ref()
                .is_some_and(|s| s.ready_state() == OPEN)
        {
            self.send_pending();
        }
    }

    pub(crate) fn close(&mut self) {
        self.pending.clear();
        self.conn.close();
        self.shutdown();
    }

    /// Unregisters the callbacks and closes the socket (code 1000) if it is still live.
    fn shutdown(&mut self) {
        self.conn.done = true;
        self.keepalive = None;
        self.pagehide = None;
        if let Some(socket) = self.socket.take() {
            socket.set_onopen(None);
            socket.set_onmessage(None);
            socket.set_onerror(None);
            socket.set_onclose(None);
            let state = socket.ready_state();
            if state == CONNECTING || state == OPEN {
                let _ = socket.close_with_code(1000);
            }
        }
    }

    pub(crate) fn is_open(&self) -> bool {
        self.conn.is_open()
    }

    pub(crate) fn send_backlog(&self) -> usize {
        let pending: usize = self.pending.iter().map(Transmit::len).sum();
        let buffered = match &self.socket {
            Some(s) if !self.conn.done => s.buffered_amount() as usize,
            _ => 0,
        };
        pending + buffered
    }

    pub(crate) fn stats(&self) -> TransportStats {
        self.conn.stats()
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Callbacks must be unregistered before their closures are freed.
        self.shutdown();
    }
}

/// The error for a send on a connection that is not open.
fn not_open() -> TransportError {
    TransportError::Io("connection is not open".into())
}

/// Logs a failed send of a frame queued before `open`.
fn log_send_error(e: &TransportError) {
    bevy::log::warn!("WebSocket send of a queued frame failed: {e}");
}
