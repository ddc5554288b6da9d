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

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;

use wasm_bindgen::JsCast;
use wasm_bindgen::closure::Closure;
use web_sys::{BinaryType, CloseEvent, Event, MessageEvent, WebSocket};
use web_time::Instant;

use super::{CloseInfo, ConnectRequest, TransportError, TransportEvent, TransportStats};
use crate::protocol::Transmit;

/// What the callbacks share with the transport.
struct Shared {
    events: VecDeque<TransportEvent>,
    /// The `open` event was seen.
    opened: bool,
    /// A terminal event was queued: ignore whatever follows.
    finished: bool,
    max_frame_size: usize,
    /// When `poll` last ran (the keepalive stays quiet while the app polls).
    last_poll: Instant,
    /// Keepalive heartbeats sent.
    keepalives: u64,
    /// Replies to them, consumed here.
    keepalive_replies: u64,
}

impl Shared {
    fn finish(&mut self, event: TransportEvent) {
        if !self.finished {
            self.finished = true;
            self.events.push_back(event);
        }
    }
}

struct Callbacks {
    _open: Closure<dyn FnMut(Event)>,
    _message: Closure<dyn FnMut(MessageEvent)>,
    _error: Closure<dyn FnMut(Event)>,
    _close: Closure<dyn FnMut(CloseEvent)>,
}

/// How the server's replies to keepalive heartbeats begin (Phoenix echoes the ref, with a null
/// join_ref); no frame of the core's own starts like this, its refs are numbers.
const KEEPALIVE_REPLY: &str = r#"[null,"keepalive-"#;

/// The `pagehide` listener on `window`; removed on drop.
struct PageHide {
    window: web_sys::Window,
    callback: Closure<dyn FnMut(Event)>,
}

impl Drop for PageHide {
    fn drop(&mut self) {
        let _ = self.window.remove_event_listener_with_callback(
            "pagehide",
            self.callback.as_ref().unchecked_ref(),
        );
    }
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
    let ms = every.as_millis().clamp(50, i32::MAX as u128);
    let code = format!("setInterval(function () {{ postMessage(0); }}, {ms});");
    let parts = js_sys::Array::of1(&wasm_bindgen::JsValue::from_str(&code));
    let options = web_sys::BlobPropertyBag::new();
    options.set_type("application/javascript");
    let blob = web_sys::Blob::new_with_str_sequence_and_options(&parts, &options)?;
    let url = web_sys::Url::create_object_url_with_blob(&blob)?;
    let worker = match web_sys::Worker::new(&url) {
        Ok(w) => w,
        Err(e) => {
            let _ = web_sys::Url::revoke_object_url(&url);
            return Err(e);
        }
    };
    worker.set_onmessage(Some(tick.as_ref().unchecked_ref()));
    Ok(Keepalive {
        worker,
        url,
        _tick: tick,
    })
}

pub(crate) struct Inner {
    socket: Option<WebSocket>,
    _callbacks: Option<Callbacks>,
    /// Dropped (worker terminated) on shutdown.
    keepalive: Option<Keepalive>,
    /// Dropped (listener removed) on shutdown.
    pagehide: Option<PageHide>,
    shared: Rc<RefCell<Shared>>,
    /// Frames sent before `open` (the browser rejects sends while CONNECTING).
    pending: VecDeque<Transmit>,
    deadline: Instant,
    /// `Opened` was returned by `poll`.
    open_delivered: bool,
    /// Terminal event returned, or closed by us: `poll` returns `None` forever.
    done: bool,
    stats: TransportStats,
}

fn js_error_text(value: &wasm_bindgen::JsValue) -> String {
    value
        .as_string()
        .or_else(|| {
            value
                .dyn_ref::<js_sys::Error>()
                .map(|e| String::from(e.message()))
        })
        .unwrap_or_else(|| format!("{value:?}"))
}

const OPEN: u16 = WebSocket::OPEN;
const CONNECTING: u16 = WebSocket::CONNECTING;

impl Inner {
    pub(crate) fn connect(req: ConnectRequest) -> Self {
        let shared = Rc::new(RefCell::new(Shared {
            events: VecDeque::new(),
            opened: false,
            finished: false,
            max_frame_size: req.max_frame_size,
            last_poll: Instant::now(),
            keepalives: 0,
            keepalive_replies: 0,
        }));
        let mut inner = Self {
            socket: None,
            _callbacks: None,
            keepalive: None,
            pagehide: None,
            shared: shared.clone(),
            pending: VecDeque::new(),
            deadline: Instant::now() + req.connect_timeout,
            open_delivered: false,
            done: false,
            stats: TransportStats::default(),
        };
        let socket = if req.subprotocols.is_empty() {
            WebSocket::new(&req.url)
        } else {
            let list = js_sys::Array::new();
            for p in &req.subprotocols {
                list.push(&wasm_bindgen::JsValue::from_str(p));
            }
            WebSocket::new_with_str_sequence(&req.url, &list)
        };
        let socket = match socket {
            Ok(socket) => socket,
            Err(e) => {
                // Browsers refuse subprotocols with characters outside RFC 7230 tokens; a
                // Phoenix auth token whose standard base64 has a '/' is the usual cause.
                let hint = if req
                    .subprotocols
                    .iter()
                    .any(|p| p.contains(['/', '=', ',', ' ']))
                {
                    " (a subprotocol has a character browsers refuse: an auth token whose \
                     base64 contains '/' cannot be sent from a browser, with phoenix.js either)"
                } else {
                    ""
                };
                shared
                    .borrow_mut()
                    .finish(TransportEvent::Failed(TransportError::Connect(format!(
                        "cannot open {:?}: {}{hint}",
                        req.url,
                        js_error_text(&e)
                    ))));
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
                    .map(|ws| ws.protocol())
                    .filter(|p| !p.is_empty());
                let mut s = shared.borrow_mut();
                if !s.finished {
                    s.opened = true;
                    s.events.push_back(TransportEvent::Opened { protocol });
                }
            })
        };
        let on_message = {
            let shared = shared.clone();
            Closure::<dyn FnMut(MessageEvent)>::new(move |e: MessageEvent| {
                let mut s = shared.borrow_mut();
                if s.finished {
                    return;
                }
                let max = s.max_frame_size;
                let data = e.data();
                let event = if let Some(text) = data.as_string() {
                    if text.starts_with(KEEPALIVE_REPLY) {
                        s.keepalive_replies += 1;
                        return;
                    }
                    if text.len() > max {
                        Err(text.len())
                    } else {
                        Ok(TransportEvent::Text(text.into()))
                    }
                } else if let Some(buf) = data.dyn_ref::<js_sys::ArrayBuffer>() {
                    let size = buf.byte_length() as usize;
                    if size > max {
                        Err(size)
                    } else {
                        Ok(TransportEvent::Binary(
                            js_sys::Uint8Array::new(buf).to_vec(),
                        ))
                    }
                } else {
                    s.finish(TransportEvent::Failed(TransportError::Protocol(
                        "unexpected message data type (binaryType is not arraybuffer?)".into(),
                    )));
                    return;
                };
                match event {
                    Ok(event) => s.events.push_back(event),
                    Err(size) => s.finish(TransportEvent::Failed(TransportError::FrameTooLarge {
                        size,
                        max,
                    })),
                }
            })
        };
        // The browser gives no detail in `error`; the `close` that always follows reports.
        let on_error = Closure::<dyn FnMut(Event)>::new(|_e: Event| {});
        let on_close = {
            let shared = shared.clone();
            Closure::<dyn FnMut(CloseEvent)>::new(move |e: CloseEvent| {
                let mut s = shared.borrow_mut();
                let code = e.code();
                let event = if s.opened {
                    TransportEvent::Closed(CloseInfo {
                        code: (code != 1006).then_some(code),
                        reason: e.reason(),
                        by_peer: true,
                    })
                } else {
                    TransportEvent::Failed(TransportError::Connect(format!(
                        "WebSocket connection failed (close code {code}); the browser does not say \
                         why (refused upgrade, TLS or network error)"
                    )))
                };
                s.finish(event);
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
                    let mut s = shared.borrow_mut();
                    if s.finished || socket.ready_state() != OPEN || s.last_poll.elapsed() < every {
                        return;
                    }
                    s.keepalives += 1;
                    // The reply is `[null,"keepalive-N","phoenix","phx_reply",…]`.
                    let frame = format!(
                        r#"[null,"keepalive-{}","phoenix","heartbeat",{{}}]"#,
                        s.keepalives
                    );
                    // A failure here shows up as the socket's close.
                    let _ = socket.send_with_str(&frame);
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
        if let Some(window) = web_sys::window() {
            let socket = socket.clone();
            let callback = Closure::<dyn FnMut(Event)>::new(move |_e: Event| {
                let state = socket.ready_state();
                if state == CONNECTING || state == OPEN {
                    // The `close` event that follows reports it (code 1000).
                    let _ = socket.close_with_code_and_reason(1000, "page hidden");
                }
            });
            if window
                .add_event_listener_with_callback("pagehide", callback.as_ref().unchecked_ref())
                .is_ok()
            {
                inner.pagehide = Some(PageHide { window, callback });
            }
        }
        inner.socket = Some(socket);
        inner._callbacks = Some(Callbacks {
            _open: on_open,
            _message: on_message,
            _error: on_error,
            _close: on_close,
        });
        inner
    }

    pub(crate) fn poll(&mut self) -> Option<TransportEvent> {
        if self.done {
            return None;
        }
        let event = {
            let mut s = self.shared.borrow_mut();
            s.last_poll = Instant::now();
            s.events.pop_front()
        };
        let Some(event) = event else {
            if !self.open_delivered
                && !self.shared.borrow().opened
                && Instant::now() >= self.deadline
            {
                self.shutdown();
                return Some(TransportEvent::Failed(TransportError::Connect(
                    "connect timed out".into(),
                )));
            }
            return None;
        };
        match &event {
            TransportEvent::Opened { .. } => {
                self.open_delivered = true;
                self.send_pending();
            }
            TransportEvent::Text(s) => {
                self.stats.messages_in += 1;
                self.stats.bytes_in += s.len() as u64;
            }
            TransportEvent::Binary(b) => {
                self.stats.messages_in += 1;
                self.stats.bytes_in += b.len() as u64;
            }
            TransportEvent::Closed(_) | TransportEvent::Failed(_) => self.shutdown(),
        }
        Some(event)
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
        if self.done {
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
        self.stats.messages_out += 1;
        self.stats.bytes_out += size as u64;
        Ok(())
    }

    pub(crate) fn flush(&mut self) {
        // The browser writes on its own; only frames queued before `open` may wait here.
        if !self.pending.is_empty()
            && !self.done
            && self
                .socket
                .as_ref()
                .is_some_and(|s| s.ready_state() == OPEN)
        {
            self.send_pending();
        }
    }

    pub(crate) fn close(&mut self) {
        self.done = true;
        self.pending.clear();
        self.shared.borrow_mut().events.clear();
        self.shutdown();
    }

    /// Unregisters the callbacks and closes the socket (code 1000) if it is still live.
    fn shutdown(&mut self) {
        self.done = true;
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
        self.open_delivered && !self.done && !self.shared.borrow().finished
    }

    pub(crate) fn send_backlog(&self) -> usize {
        let pending: usize = self.pending.iter().map(Transmit::len).sum();
        let buffered = match &self.socket {
            Some(s) if !self.done => s.buffered_amount() as usize,
            _ => 0,
        };
        pending + buffered
    }

    pub(crate) fn stats(&self) -> TransportStats {
        let s = self.shared.borrow();
        TransportStats {
            keepalives_sent: s.keepalives,
            keepalive_replies: s.keepalive_replies,
            ..self.stats
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Callbacks must be unregistered before their closures are freed.
        self.shutdown();
    }
}

fn not_open() -> TransportError {
    TransportError::Io("connection is not open".into())
}

fn log_send_error(e: &TransportError) {
    bevy::log::warn!("WebSocket send of a queued frame failed: {e}");
}
