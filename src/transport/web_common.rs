//! What the two browser transports share: the main-thread one (web.rs) and the one with its
//! socket in a Web Worker (web_worker.rs). Both keep the events their JavaScript callbacks
//! report in a [`Shared`] queue, which [`poll`] drains; both send hidden-tab keepalive
//! heartbeats, close on `pagehide` ([`PageHide`]) and start workers from Blob URLs
//! ([`blob_worker`]).

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;
use std::time::Duration;

use wasm_bindgen::closure::Closure;
use wasm_bindgen::{JsCast, JsValue};
use web_sys::Event;
use web_time::Instant;

use super::{CloseInfo, ConnectRequest, TransportError, TransportEvent, TransportStats};

/// How the server's replies to keepalive heartbeats begin (Phoenix echoes the ref, with a null
/// join_ref); no frame of the core's own starts like this, its refs are numbers. The worker's
/// script has the same text as `KA`.
pub(super) const KEEPALIVE_REPLY: &str = r#"[null,"keepalive-"#;

/// What a transport's callbacks share with it: the events they queue for `poll`, and the
/// keepalive's bookkeeping. `extra` is what only one transport needs (the worker's backlog).
pub(super) struct Shared<X = ()> {
    /// Events for `poll`, in arrival order.
    pub(super) events: VecDeque<TransportEvent>,
    /// The `open` event was seen.
    pub(super) opened: bool,
    /// A terminal event was queued: ignore whatever follows.
    pub(super) finished: bool,
    /// The largest received frame accepted, in bytes.
    pub(super) max_frame_size: usize,
    /// When `poll` last ran (the keepalive stays quiet while the app polls).
    pub(super) last_poll: Instant,
    /// Keepalive heartbeats sent.
    pub(super) keepalives: u64,
    /// Replies to them, consumed by the transport.
    pub(super) keepalive_replies: u64,
    /// The transport's own state.
    pub(super) extra: X,
}

impl<X> Shared<X> {
    /// A fresh state for a connection to `req`, shared between a transport and its callbacks.
    pub(super) fn new_rc(req: &ConnectRequest, extra: X) -> Rc<RefCell<Self>> {
        Rc::new(RefCell::new(Self {
            events: VecDeque::new(),
            opened: false,
            finished: false,
            max_frame_size: req.max_frame_size,
            last_poll: Instant::now(),
            keepalives: 0,
            keepalive_replies: 0,
            extra,
        }))
    }

    /// Queues a terminal event, unless one already was.
    pub(super) fn finish(&mut self, event: TransportEvent) {
        if !self.finished {
            self.finished = true;
            self.events.push_back(event);
        }
    }

    /// Records the socket's `open` (with the protocol the server selected, `None` if empty).
    pub(super) fn open(&mut self, protocol: Option<String>) {
        if !self.finished {
            self.opened = true;
            self.events.push_back(TransportEvent::Opened {
                protocol: protocol.filter(|p| !p.is_empty()),
            });
        }
    }

    /// Whether a received frame of `size` bytes fits `max_frame_size`; if not, fails the
    /// connection with [`TransportError::FrameTooLarge`].
    pub(super) fn fits(&mut self, size: usize) -> bool {
        let max = self.max_frame_size;
        if size > max {
            self.finish(TransportEvent::Failed(TransportError::FrameTooLarge {
                size,
                max,
            }));
            return false;
        }
        true
    }

    /// Records the socket's `close`: [`TransportEvent::Closed`] after `open` (1006, "abnormal",
    /// is no code), otherwise a failed connect (the browser does not say why).
    pub(super) fn closed(&mut self, code: u16, reason: String) {
        let event = if self.opened {
            TransportEvent::Closed(CloseInfo {
                code: (code != 1006).then_some(code),
                reason,
                by_peer: true,
            })
        } else {
            TransportEvent::Failed(TransportError::Connect(format!(
                "WebSocket connection failed (close code {code}); the browser does not say \
                 why (refused upgrade, TLS or network error)"
            )))
        };
        self.finish(event);
    }

    /// On a keepalive tick: the heartbeat to send if the socket is `open` and nobody has
    /// polled for `every` (counted as sent), otherwise `None`. The reply is
    /// `[null,"keepalive-N","phoenix","phx_reply",…]`, which starts with [`KEEPALIVE_REPLY`].
    pub(super) fn keepalive_due(&mut self, every: Duration, open: bool) -> Option<String> {
        if self.finished || !open || self.last_poll.elapsed() < every {
            return None;
        }
        self.keepalives += 1;
        Some(format!(
            r#"[null,"keepalive-{}","phoenix","heartbeat",{{}}]"#,
            self.keepalives
        ))
    }
}

/// The state `poll`, `is_open` and `stats` work on, the same in both transports.
pub(super) struct Conn<X = ()> {
    /// What the callbacks share.
    pub(super) shared: Rc<RefCell<Shared<X>>>,
    deadline: Instant,
    /// `Opened` was returned by `poll`.
    open_delivered: bool,
    /// Terminal event returned, or closed by us: `poll` returns `None` forever.
    pub(super) done: bool,
    /// Frames and bytes in and out (the keepalive's counters are in `shared`).
    pub(super) stats: TransportStats,
}

impl<X> Conn<X> {
    /// The state of a connection to `req` that has just started.
    pub(super) fn new(req: &ConnectRequest, shared: Rc<RefCell<Shared<X>>>) -> Self {
        Self {
            shared,
            deadline: Instant::now() + req.connect_timeout,
            open_delivered: false,
            done: false,
            stats: TransportStats::default(),
        }
    }

    /// Whether `Opened` was returned and the connection has not ended since.
    pub(super) fn is_open(&self) -> bool {
        self.open_delivered && !self.done && !self.shared.borrow().finished
    }

    /// The counters, with the keepalive's.
    pub(super) fn stats(&self) -> TransportStats {
        let s = self.shared.borrow();
        TransportStats {
            keepalives_sent: s.keepalives,
            keepalive_replies: s.keepalive_replies,
            ..self.stats
        }
    }

    /// Ends the connection from our side: `poll` returns `None` from now on, and the events
    /// already queued are dropped.
    pub(super) fn close(&mut self) {
        self.done = true;
        self.shared.borrow_mut().events.clear();
    }
}

/// A browser transport, as [`poll`] drives it.
pub(super) trait WebConn {
    /// What its callbacks do not share.
    type Extra;
    /// Its polling state.
    fn conn(&mut self) -> &mut Conn<Self::Extra>;
    /// Runs when `poll` returns `Opened`.
    fn on_open(&mut self);
    /// Ends the connection after a terminal event; `grace` is set when we end it (connect
    /// timeout), so a socket that is still live should be closed cleanly.
    fn end(&mut self, grace: bool);
}

/// A transport's `poll`: the next event its callbacks queued (counting received frames), or
/// a failed connect once the connect timeout passes before `open`; the transport ends after a
/// terminal event, and `None` is returned ever after.
pub(super) fn poll<T: WebConn>(t: &mut T) -> Option<TransportEvent> {
    let c = t.conn();
    if c.done {
        return None;
    }
    let event = {
        let mut s = c.shared.borrow_mut();
        s.last_poll = Instant::now();
        s.events.pop_front()
    };
    let Some(event) = event else {
        if !c.open_delivered && !c.shared.borrow().opened && Instant::now() >= c.deadline {
            t.end(true);
            return Some(TransportEvent::Failed(TransportError::Connect(
                "connect timed out".into(),
            )));
        }
        return None;
    };
    match &event {
        TransportEvent::Opened { .. } => {
            c.open_delivered = true;
            t.on_open();
        }
        TransportEvent::Text(s) => {
            c.stats.messages_in += 1;
            c.stats.bytes_in += s.len() as u64;
        }
        TransportEvent::Binary(b) => {
            c.stats.messages_in += 1;
            c.stats.bytes_in += b.len() as u64;
        }
        TransportEvent::Closed(_) | TransportEvent::Failed(_) => t.end(false),
    }
    Some(event)
}

/// The text of a JavaScript error (a string, an `Error`'s message, or its debug form).
pub(super) fn js_error_text(value: &JsValue) -> String {
    value
        .as_string()
        .or_else(|| {
            value
                .dyn_ref::<js_sys::Error>()
                .map(|e| String::from(e.message()))
        })
        .unwrap_or_else(|| format!("{value:?}"))
}

/// The subprotocols as a JavaScript array of strings.
pub(super) fn js_strings(list: &[String]) -> js_sys::Array {
    let array = js_sys::Array::new();
    for p in list {
        array.push(&JsValue::from_str(p));
    }
    array
}

/// The error for a `WebSocket` constructor that threw `error` on `url`. Browsers refuse
/// subprotocols with characters outside RFC 7230 tokens; a Phoenix auth token whose standard
/// base64 has a '/' is the usual cause, which the message then says.
pub(super) fn cannot_open(url: &str, subprotocols: &[String], error: &str) -> TransportError {
    let hint = if subprotocols
        .iter()
        .any(|p| p.contains(['/', '=', ',', ' ']))
    {
        " (a subprotocol has a character browsers refuse: an auth token whose base64 \
         contains '/' cannot be sent from a browser, with phoenix.js either)"
    } else {
        ""
    };
    TransportError::Connect(format!("cannot open {url:?}: {error}{hint}"))
}

/// The keepalive period in milliseconds, as the worker's timer takes it (50 ms at least).
pub(super) fn keepalive_ms(every: Duration) -> i32 {
    every.as_millis().clamp(50, i32::MAX as u128) as i32
}

/// Starts a Web Worker running the JavaScript `code`, from a Blob URL; returns the worker and
/// the URL (to revoke when the worker ends).
pub(super) fn blob_worker(code: &str) -> Result<(web_sys::Worker, String), JsValue> {
    let parts = js_sys::Array::of1(&JsValue::from_str(code));
    let options = web_sys::BlobPropertyBag::new();
    options.set_type("application/javascript");
    let blob = web_sys::Blob::new_with_str_sequence_and_options(&parts, &options)?;
    let url = web_sys::Url::create_object_url_with_blob(&blob)?;
    match web_sys::Worker::new(&url) {
        Ok(w) => Ok((w, url)),
        Err(e) => {
            let _ = web_sys::Url::revoke_object_url(&url);
            Err(e)
        }
    }
}

/// The `pagehide` listener on `window`; removed on drop.
pub(super) struct PageHide {
    window: web_sys::Window,
    callback: Closure<dyn FnMut(Event)>,
}

impl PageHide {
    /// Runs `on_hide` on every `pagehide` of the window, until dropped; `None` where there is
    /// no window or the listener cannot be added.
    pub(super) fn listen(on_hide: impl FnMut(Event) + 'static) -> Option<Self> {
        let window = web_sys::window()?;
        let callback = Closure::<dyn FnMut(Event)>::new(on_hide);
        window
            .add_event_listener_with_callback("pagehide", callback.as_ref().unchecked_ref())
            .ok()?;
        Some(Self { window, callback })
    }
}

impl Drop for PageHide {
    fn drop(&mut self) {
        let _ = self.window.remove_event_listener_with_callback(
            "pagehide",
            self.callback.as_ref().unchecked_ref(),
        );
    }
}
