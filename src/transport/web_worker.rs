//! Web transport with the browser `WebSocket` in a dedicated Web Worker
//! ([`WebWorkerConnector`](super::WebWorkerConnector)).
//!
//! In the main-thread transport (web.rs) the browser delivers every WebSocket message as its own
//! `message` event on the page's main thread, where the game renders: about 30–35 µs of
//! Chromium's own work per message (the event task and the `MessageEvent.data` string), whoever
//! listens. Here the socket lives in a worker, and the main thread pays per *batch*:
//!
//! - **Incoming.** The worker encodes each received frame (text as UTF-8 with `TextEncoder`,
//!   binary copied) into one growing buffer, with a length-and-kind word per frame. The first
//!   frame after an empty queue schedules a flush with `setTimeout(0)`, so a lone frame goes on
//!   at once and a burst coalesces; a buffer past 1 MiB goes at once too. A flush posts one
//!   message and transfers both buffers (no copy). On the main thread one `message` event then
//!   copies the whole batch into wasm memory once and splits it into frames.
//! - **Outgoing.** `send` appends the frame's bytes to one buffer on the Rust side; `flush` (the
//!   plugin calls it once per frame per socket) transfers that buffer to the worker in one
//!   `postMessage`, with a batch number. The worker decodes the text frames and sends them in
//!   order; frames that arrive before the socket opens wait there and go out right after it.
//! - **Backlog.** The worker acknowledges the last batch it handed to its socket and reports
//!   the socket's `bufferedAmount` with every message it posts (and again, every 10 ms while it
//!   is not zero, when it changes). An acknowledgement waits up to 8 ms for received frames to
//!   ride along (a reply usually comes sooner), so a round trip costs the page one worker
//!   message, not two. `send_backlog` is the bytes not yet posted, plus the bytes of
//!   the batches not yet acknowledged, plus the last `bufferedAmount` reported.
//! - **Close.** `close` (and dropping the transport) unregisters the callbacks at once, asks the
//!   worker to close its socket with code 1000, and terminates the worker after a grace period
//!   of [`CLOSE_GRACE_MS`] (the worker closes itself as soon as its socket is closed). After a
//!   terminal event (the server closed, a failure) the worker is terminated at once.
//! - **Keepalive and `pagehide`**, as in the main-thread transport: the worker's timer ticks
//!   every `keepalive` and, if nobody polled for that long, the main thread sends a heartbeat
//!   (`keepalive-N` refs; the worker consumes the replies and counts them); on `pagehide` the
//!   worker closes the socket cleanly (1000, "page hidden").
//!
//! The cost is latency: a received frame waits for the worker's `setTimeout(0)` and one
//! message hop, and a sent frame for one message hop (measured in BENCHMARKS.md).
//!
//! The worker is plain JavaScript, made from a Blob URL (no extra file to serve). A page whose
//! Content-Security-Policy forbids `blob:` workers gets [`TransportError::Connect`].

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;

use js_sys::{Array, ArrayBuffer, Uint8Array, Uint32Array};
use wasm_bindgen::closure::Closure;
use wasm_bindgen::{JsCast, JsValue};
use web_sys::{Event, MessageEvent};
use web_time::Instant;

use super::{CloseInfo, ConnectRequest, TransportError, TransportEvent, TransportStats};
use crate::protocol::Transmit;

/// How long a closed transport's worker may take to close its socket cleanly before it is
/// terminated, in milliseconds.
pub(crate) const CLOSE_GRACE_MS: i32 = 1_000;

/// The worker's script. Messages from the page: `[0, url, protocols, keepaliveMs]` opens the
/// socket; `[1, batch, count, bytes, lengths]` sends frames (each length word is `len * 2 + 1`
/// for binary, `len * 2` for text); `[2, text]` sends a keepalive heartbeat if open; `[3]`
/// closes (1000) and ends the worker; `[4]` closes (1000, "page hidden"). Messages to the page:
/// `[0, protocol]` open; `[1, acked, bufferedAmount, keepaliveReplies, byteCount, bytes,
/// lengths]` frames and acknowledgements; `[2, code, reason]` closed; `[3]` keepalive tick;
/// `[5, error]` the WebSocket constructor threw.
const WORKER_JS: &str = r#""use strict";
var ws = null, closing = false, pending = [], acked = 0, replies = 0;
var buf = new Uint8Array(65536), pos = 0, lens = [], due = false, reported = 0, watching = false;
var ackTimer = 0, ACK_MS = 8;
var enc = new TextEncoder(), dec = new TextDecoder();
var KA = '[null,"keepalive-', FLUSH_AT = 1048576;
function room(n) {
  if (pos + n <= buf.length) return;
  var c = buf.length * 2;
  while (c < pos + n) c *= 2;
  var b = new Uint8Array(c);
  b.set(buf.subarray(0, pos));
  buf = b;
}
function flushDue() { if (due) flush(); }
function schedule() { if (!due) { due = true; setTimeout(flushDue, 0); } }
function ackLater() { if (!due && !ackTimer) ackTimer = setTimeout(flush, ACK_MS); }
function flush() {
  due = false;
  if (ackTimer) { clearTimeout(ackTimer); ackTimer = 0; }
  if (closing) return;
  var b = ws ? ws.bufferedAmount : 0;
  reported = b;
  if (lens.length) {
    var cap = Math.min(buf.length, FLUSH_AT), data = buf.buffer, l = new Uint32Array(lens).buffer;
    postMessage([1, acked, b, replies, pos, data, l], [data, l]);
    buf = new Uint8Array(cap);
    pos = 0;
    lens = [];
  } else {
    postMessage([1, acked, b, replies, 0, null, null]);
  }
  if (b > 0 && !watching) { watching = true; setTimeout(watch, 10); }
}
function watch() {
  watching = false;
  if (!ws || closing) return;
  var b = ws.bufferedAmount;
  if (b !== reported) schedule();
  else if (b > 0) { watching = true; setTimeout(watch, 10); }
}
function sendBatch(m) {
  var bytes = new Uint8Array(m[3]), l = new Uint32Array(m[4]), p = 0;
  for (var i = 0; i < m[2]; i++) {
    var w = l[i], n = w >>> 1, part = bytes.subarray(p, p + n);
    p += n;
    ws.send((w & 1) ? part : dec.decode(part));
  }
  acked = m[1];
}
function open(url, protocols, keepaliveMs) {
  try {
    ws = protocols.length ? new WebSocket(url, protocols) : new WebSocket(url);
  } catch (e) {
    postMessage([5, String((e && e.message) || e)]);
    return;
  }
  ws.binaryType = "arraybuffer";
  ws.onopen = function () {
    postMessage([0, ws.protocol]);
    var sent = pending.length > 0;
    while (pending.length) sendBatch(pending.shift());
    if (sent) ackLater();
  };
  ws.onmessage = function (e) {
    var d = e.data;
    if (typeof d === "string") {
      if (d.startsWith(KA)) { replies++; schedule(); return; }
      room(d.length * 3);
      var r = enc.encodeInto(d, buf.subarray(pos));
      pos += r.written;
      lens.push(r.written * 2);
    } else {
      var a = new Uint8Array(d);
      room(a.length);
      buf.set(a, pos);
      pos += a.length;
      lens.push(a.length * 2 + 1);
    }
    if (pos >= FLUSH_AT) flush(); else schedule();
  };
  ws.onclose = function (e) {
    if (closing) { close(); return; }
    if (lens.length) flush();
    postMessage([2, e.code, e.reason]);
  };
  if (keepaliveMs > 0) setInterval(function () { postMessage([3]); }, keepaliveMs);
}
onmessage = function (e) {
  var m = e.data;
  switch (m[0]) {
    case 0: open(m[1], m[2], m[3]); break;
    case 1:
      if (!ws || closing) break;
      if (ws.readyState === 0) { pending.push(m); break; }
      if (ws.readyState === 1) { sendBatch(m); ackLater(); }
      break;
    case 2: if (ws && !closing && ws.readyState === 1) ws.send(m[1]); break;
    case 3:
      closing = true;
      if (ws && ws.readyState < 2) ws.close(1000); else close();
      break;
    case 4: if (ws && ws.readyState < 2) ws.close(1000, "page hidden"); break;
  }
};
"#;

/// How the server's replies to keepalive heartbeats begin (as in the worker's `KA`).
const KEEPALIVE_PREFIX: &str = "keepalive-";

thread_local! {
    /// Workers started by this thread's worker transports and not yet terminated.
    static LIVE_WORKERS: Cell<usize> = const { Cell::new(0) };
}

/// Workers started by this thread's worker transports and not yet terminated.
pub(crate) fn live_workers() -> usize {
    LIVE_WORKERS.with(Cell::get)
}

/// What the worker's messages update, shared with the transport.
struct Shared {
    events: VecDeque<TransportEvent>,
    /// The `open` event was seen.
    opened: bool,
    /// A terminal event was queued: ignore whatever follows.
    finished: bool,
    max_frame_size: usize,
    /// When `poll` last ran (the keepalive stays quiet while the app polls).
    last_poll: Instant,
    keepalives: u64,
    keepalive_replies: u64,
    /// The last batch the worker handed to its socket.
    acked: u64,
    /// The socket's `bufferedAmount` as last reported.
    buffered: usize,
}

impl Shared {
    fn finish(&mut self, event: TransportEvent) {
        if !self.finished {
            self.finished = true;
            self.events.push_back(event);
        }
    }

    /// Splits a batch of received frames (`lengths` as the worker's script describes).
    fn frames(&mut self, bytes: &[u8], lengths: &[u32]) {
        let max = self.max_frame_size;
        let mut at = 0usize;
        for &word in lengths {
            let size = (word >> 1) as usize;
            let Some(part) = at.checked_add(size).and_then(|end| bytes.get(at..end)) else {
                self.finish(TransportEvent::Failed(TransportError::Protocol(
                    "malformed batch from the WebSocket worker".into(),
                )));
                return;
            };
            at += size;
            if size > max {
                self.finish(TransportEvent::Failed(TransportError::FrameTooLarge {
                    size,
                    max,
                }));
                return;
            }
            let event = if word & 1 == 1 {
                TransportEvent::Binary(part.to_vec())
            } else {
                match std::str::from_utf8(part) {
                    Ok(text) => TransportEvent::Text(text.into()),
                    Err(_) => {
                        self.finish(TransportEvent::Failed(TransportError::Protocol(
                            "text frame is not UTF-8".into(),
                        )));
                        return;
                    }
                }
            };
            self.events.push_back(event);
        }
    }
}

/// The worker, its script URL and its callbacks. `retire` ends it; dropping it without
/// retiring terminates it at once.
struct WorkerHandle {
    worker: web_sys::Worker,
    url: String,
    _message: Closure<dyn FnMut(MessageEvent)>,
    _error: Closure<dyn FnMut(Event)>,
    live: bool,
}

impl WorkerHandle {
    /// Unregisters the callbacks; with `grace`, asks the worker to close its socket and
    /// terminates it [`CLOSE_GRACE_MS`] later, otherwise at once.
    fn retire(mut self, grace: bool) {
        self.worker.set_onmessage(None);
        self.worker.set_onerror(None);
        self.live = false;
        if grace {
            let _ = self.worker.post_message(&Array::of1(&JsValue::from(3)));
            if let Some(window) = web_sys::window() {
                let (worker, url) = (self.worker.clone(), self.url.clone());
                let later = Closure::once_into_js(move || end_worker(&worker, &url));
                if window
                    .set_timeout_with_callback_and_timeout_and_arguments_0(
                        later.unchecked_ref(),
                        CLOSE_GRACE_MS,
                    )
                    .is_ok()
                {
                    return;
                }
            }
        }
        end_worker(&self.worker, &self.url);
    }
}

/// Terminates a worker and frees its script URL.
fn end_worker(worker: &web_sys::Worker, url: &str) {
    worker.terminate();
    let _ = web_sys::Url::revoke_object_url(url);
    LIVE_WORKERS.with(|n| n.set(n.get().saturating_sub(1)));
}

impl Drop for WorkerHandle {
    fn drop(&mut self) {
        if self.live {
            self.worker.set_onmessage(None);
            self.worker.set_onerror(None);
            end_worker(&self.worker, &self.url);
        }
    }
}

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

pub(crate) struct Inner {
    worker: Option<WorkerHandle>,
    pagehide: Option<PageHide>,
    shared: Rc<RefCell<Shared>>,
    /// Frames sent since the last flush: their bytes, back to back, and one length word each.
    out_bytes: Vec<u8>,
    out_lengths: Vec<u32>,
    /// Batches posted to the worker and not yet acknowledged: (number, bytes).
    in_flight: VecDeque<(u64, usize)>,
    next_batch: u64,
    deadline: Instant,
    /// `Opened` was returned by `poll`.
    open_delivered: bool,
    /// Terminal event returned, or closed by us: `poll` returns `None` forever.
    done: bool,
    stats: TransportStats,
}

fn js_error_text(value: &JsValue) -> String {
    value
        .as_string()
        .or_else(|| {
            value
                .dyn_ref::<js_sys::Error>()
                .map(|e| String::from(e.message()))
        })
        .unwrap_or_else(|| format!("{value:?}"))
}

/// Creates the worker from [`WORKER_JS`] through a Blob URL.
fn new_worker() -> Result<(web_sys::Worker, String), JsValue> {
    let parts = Array::of1(&JsValue::from_str(WORKER_JS));
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

/// Handles one message from the worker.
fn on_worker_message(
    shared: &RefCell<Shared>,
    worker: &web_sys::Worker,
    keepalive: Option<std::time::Duration>,
    req_url: &str,
    hint: &str,
    m: &Array,
) {
    let mut s = shared.borrow_mut();
    let kind = m.get(0).as_f64().unwrap_or(-1.0) as i32;
    match kind {
        1 => {
            s.acked = m.get(1).as_f64().unwrap_or(0.0) as u64;
            s.buffered = m.get(2).as_f64().unwrap_or(0.0) as usize;
            s.keepalive_replies = m.get(3).as_f64().unwrap_or(0.0) as u64;
            if s.finished {
                return;
            }
            let n = m.get(4).as_f64().unwrap_or(0.0) as u32;
            if let (Some(data), Some(lengths)) = (
                m.get(5).dyn_ref::<ArrayBuffer>(),
                m.get(6).dyn_ref::<ArrayBuffer>(),
            ) {
                let bytes = Uint8Array::new_with_byte_offset_and_length(data, 0, n).to_vec();
                let lengths = Uint32Array::new(lengths).to_vec();
                s.frames(&bytes, &lengths);
            }
        }
        0 if !s.finished => {
            let protocol = m.get(1).as_string().filter(|p| !p.is_empty());
            s.opened = true;
            s.events.push_back(TransportEvent::Opened { protocol });
        }
        2 => {
            let code = m.get(1).as_f64().unwrap_or(1006.0) as u16;
            let event = if s.opened {
                TransportEvent::Closed(CloseInfo {
                    code: (code != 1006).then_some(code),
                    reason: m.get(2).as_string().unwrap_or_default(),
                    by_peer: true,
                })
            } else {
                TransportEvent::Failed(TransportError::Connect(format!(
                    "WebSocket connection failed (close code {code}); the browser does not say \
                     why (refused upgrade, TLS or network error)"
                )))
            };
            s.finish(event);
        }
        3 => {
            let Some(every) = keepalive else { return };
            if s.finished || !s.opened || s.last_poll.elapsed() < every {
                return;
            }
            s.keepalives += 1;
            // The reply is `[null,"keepalive-N","phoenix","phx_reply",…]`; the worker eats it.
            let frame = format!(
                r#"[null,"{KEEPALIVE_PREFIX}{}","phoenix","heartbeat",{{}}]"#,
                s.keepalives
            );
            let _ = worker.post_message(&Array::of2(&JsValue::from(2), &frame.into()));
        }
        5 => {
            let error = m.get(1).as_string().unwrap_or_default();
            s.finish(TransportEvent::Failed(TransportError::Connect(format!(
                "cannot open {req_url:?}: {error}{hint}"
            ))));
        }
        _ => {}
    }
}

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
            acked: 0,
            buffered: 0,
        }));
        let mut inner = Self {
            worker: None,
            pagehide: None,
            shared: shared.clone(),
            out_bytes: Vec::new(),
            out_lengths: Vec::new(),
            in_flight: VecDeque::new(),
            next_batch: 1,
            deadline: Instant::now() + req.connect_timeout,
            open_delivered: false,
            done: false,
            stats: TransportStats::default(),
        };
        let (worker, url) = match new_worker() {
            Ok(w) => w,
            Err(e) => {
                shared
                    .borrow_mut()
                    .finish(TransportEvent::Failed(TransportError::Connect(format!(
                        "cannot start the WebSocket worker: {}",
                        js_error_text(&e)
                    ))));
                return inner;
            }
        };
        LIVE_WORKERS.with(|n| n.set(n.get() + 1));
        // Browsers refuse subprotocols with characters outside RFC 7230 tokens; a Phoenix auth
        // token whose standard base64 has a '/' is the usual cause.
        let hint = if req
            .subprotocols
            .iter()
            .any(|p| p.contains(['/', '=', ',', ' ']))
        {
            " (a subprotocol has a character browsers refuse: an auth token whose base64 \
             contains '/' cannot be sent from a browser, with phoenix.js either)"
        } else {
            ""
        };
        let on_message = {
            let shared = shared.clone();
            let worker = worker.clone();
            let keepalive = req.keepalive;
            let req_url = req.url.clone();
            Closure::<dyn FnMut(MessageEvent)>::new(move |e: MessageEvent| {
                if let Some(m) = e.data().dyn_ref::<Array>() {
                    on_worker_message(&shared, &worker, keepalive, &req_url, hint, m);
                }
            })
        };
        let on_error = {
            let shared = shared.clone();
            Closure::<dyn FnMut(Event)>::new(move |e: Event| {
                let detail = e
                    .dyn_ref::<web_sys::ErrorEvent>()
                    .map(|e| e.message())
                    .unwrap_or_default();
                let mut s = shared.borrow_mut();
                let text = format!("the WebSocket worker failed: {detail}");
                let error = if s.opened {
                    TransportError::Io(text)
                } else {
                    TransportError::Connect(text)
                };
                s.finish(TransportEvent::Failed(error));
            })
        };
        worker.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
        worker.set_onerror(Some(on_error.as_ref().unchecked_ref()));
        let protocols = Array::new();
        for p in &req.subprotocols {
            protocols.push(&JsValue::from_str(p));
        }
        let keepalive_ms = req
            .keepalive
            .map_or(0, |d| d.as_millis().clamp(50, i32::MAX as u128) as i32);
        let start = Array::of4(
            &JsValue::from(0),
            &JsValue::from_str(&req.url),
            &protocols,
            &JsValue::from(keepalive_ms),
        );
        let posted = worker.post_message(&start);
        inner.worker = Some(WorkerHandle {
            worker: worker.clone(),
            url,
            _message: on_message,
            _error: on_error,
            live: true,
        });
        if let Err(e) = posted {
            shared
                .borrow_mut()
                .finish(TransportEvent::Failed(TransportError::Connect(format!(
                    "cannot start the WebSocket worker: {}",
                    js_error_text(&e)
                ))));
            return inner;
        }
        if let Some(window) = web_sys::window() {
            let callback = Closure::<dyn FnMut(Event)>::new(move |_e: Event| {
                // The `close` that follows reports it (code 1000).
                let _ = worker.post_message(&Array::of1(&JsValue::from(4)));
            });
            if window
                .add_event_listener_with_callback("pagehide", callback.as_ref().unchecked_ref())
                .is_ok()
            {
                inner.pagehide = Some(PageHide { window, callback });
            }
        }
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
                self.shutdown(true);
                return Some(TransportEvent::Failed(TransportError::Connect(
                    "connect timed out".into(),
                )));
            }
            return None;
        };
        match &event {
            TransportEvent::Opened { .. } => self.open_delivered = true,
            TransportEvent::Text(s) => {
                self.stats.messages_in += 1;
                self.stats.bytes_in += s.len() as u64;
            }
            TransportEvent::Binary(b) => {
                self.stats.messages_in += 1;
                self.stats.bytes_in += b.len() as u64;
            }
            TransportEvent::Closed(_) | TransportEvent::Failed(_) => self.shutdown(false),
        }
        Some(event)
    }

    pub(crate) fn send(&mut self, t: Transmit) -> Result<(), TransportError> {
        if self.done || self.worker.is_none() {
            return Err(TransportError::Io("connection is not open".into()));
        }
        if self.shared.borrow().finished {
            return Err(TransportError::Io("connection is closing".into()));
        }
        let (bytes, kind) = match &t {
            Transmit::Text(s) => (s.as_bytes(), 0),
            Transmit::Binary(b) => (&b[..], 1),
        };
        let Some(word) = u32::try_from(bytes.len())
            .ok()
            .filter(|&n| n < 1 << 31)
            .map(|n| n * 2 + kind)
        else {
            return Err(TransportError::Io("frame too large to send".into()));
        };
        self.out_bytes.extend_from_slice(bytes);
        self.out_lengths.push(word);
        self.stats.messages_out += 1;
        self.stats.bytes_out += bytes.len() as u64;
        Ok(())
    }

    pub(crate) fn flush(&mut self) {
        let acked = self.shared.borrow().acked;
        while self.in_flight.front().is_some_and(|&(n, _)| n <= acked) {
            self.in_flight.pop_front();
        }
        if self.out_lengths.is_empty() || self.done {
            return;
        }
        let Some(worker) = &self.worker else { return };
        let batch = self.next_batch;
        self.next_batch += 1;
        let bytes = Uint8Array::from(&self.out_bytes[..]).buffer();
        let lengths = Uint32Array::from(&self.out_lengths[..]).buffer();
        let message = Array::of5(
            &JsValue::from(1),
            &JsValue::from(batch as f64),
            &JsValue::from(self.out_lengths.len() as u32),
            &bytes,
            &lengths,
        );
        let transfer = Array::of2(&bytes, &lengths);
        match worker
            .worker
            .post_message_with_transfer(&message, &transfer)
        {
            Ok(()) => self.in_flight.push_back((batch, self.out_bytes.len())),
            // Surfaces through the terminal event that follows (the worker is gone).
            Err(e) => bevy::log::warn!(
                "phoenix: posting frames to the WebSocket worker failed: {}",
                js_error_text(&e)
            ),
        }
        self.out_bytes.clear();
        self.out_lengths.clear();
    }

    pub(crate) fn close(&mut self) {
        self.done = true;
        self.shared.borrow_mut().events.clear();
        self.shutdown(true);
    }

    /// Unregisters the callbacks and ends the worker (with `grace`, after asking it to close
    /// its socket cleanly).
    fn shutdown(&mut self, grace: bool) {
        self.done = true;
        self.out_bytes = Vec::new();
        self.out_lengths = Vec::new();
        self.in_flight.clear();
        self.pagehide = None;
        if let Some(w) = self.worker.take() {
            w.retire(grace);
        }
    }

    pub(crate) fn is_open(&self) -> bool {
        self.open_delivered && !self.done && !self.shared.borrow().finished
    }

    pub(crate) fn send_backlog(&self) -> usize {
        if self.done {
            return 0;
        }
        let s = self.shared.borrow();
        let posted: usize = self
            .in_flight
            .iter()
            .filter(|&&(n, _)| n > s.acked)
            .map(|&(_, bytes)| bytes)
            .sum();
        self.out_bytes.len() + posted + s.buffered
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
        let grace = !self.shared.borrow().finished;
        self.shutdown(grace);
    }
}
