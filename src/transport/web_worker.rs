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

use js_sys::{Array, ArrayBuffer, Uint8Array, Uint32Array};
use wasm_bindgen::closure::Closure;
use wasm_bindgen::{JsCast, JsValue};
use web_sys::{Event, MessageEvent};

use super::web_common::{self, Conn, PageHide, WebConn, js_error_text};
use super::{ConnectRequest, TransportError, TransportEvent, TransportStats};
use crate::protocol::Transmit;

/// How long a closed transport's worker may take to close its socket cleanly before it is
/// terminated, in milliseconds.
pub(crate) const CLOSE_GRACE_MS: i32 = 1_000;

/// The worker's script (its `KA` is [`web_common::KEEPALIVE_REPLY`]). Messages from the page:
/// `[0, url, protocols, keepaliveMs]` opens the socket; `[1, batch, count, bytes, lengths]`
/// sends frames (each length word is `len * 2 + 1` for binary, `len * 2` for text); `[2, text]`
/// sends a keepalive heartbeat if open; `[3]` closes (1000) and ends the worker; `[4]` closes
/// (1000, "page hidden"). Messages to the page: `[0, protocol]` open; `[1, acked,
/// bufferedAmount, keepaliveReplies, byteCount, bytes, lengths]` frames and acknowledgements;
/// `[2, code, reason]` closed; `[3]` keepalive tick; `[5, error]` the WebSocket constructor
/// threw.
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

thread_local! {
    /// Workers started by this thread's worker transports and not yet terminated.
    static LIVE_WORKERS: Cell<usize> = const { Cell::new(0) };
}

/// Workers started by this thread's worker transports and not yet terminated.
pub(crate) fn live_workers() -> usize {
    LIVE_WORKERS.with(Cell::get)
}

/// What the worker's messages update besides the common [`web_common::Shared`].
#[derive(Clone, Copy, Default)]
pub(super) struct Backlog {
    /// The last batch the worker handed to its socket.
    acked: u64,
    /// The socket's `bufferedAmount` as last reported.
    buffered: usize,
}

/// What the worker's messages update, shared with the transport.
type Shared = web_common::Shared<Backlog>;

impl Shared {
    /// Splits a batch of received frames (`lengths` as the worker's script describes).
    fn frames(&mut self, bytes: &[u8], lengths: &[u32]) {
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
            if !self.fits(size) {
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

/// A connection through a worker's socket.
pub(crate) struct Inner {
    worker: Option<WorkerHandle>,
    pagehide: Option<PageHide>,
    /// Frames sent since the last flush: their bytes, back to back, and one length word each.
    out_bytes: Vec<u8>,
    out_lengths: Vec<u32>,
    /// Batches posted to the worker and not yet acknowledged: (number, bytes).
    in_flight: VecDeque<(u64, usize)>,
    /// The number of the next batch to post.
    next_batch: u64,
    /// The event queue, connect deadline and counters.
    conn: Conn<Backlog>,
}

/// The error for a worker that could not be started (or sent its first message).
fn start_failed(e: &JsValue) -> TransportEvent {
    TransportEvent::Failed(TransportError::Connect(format!(
        "cannot start the WebSocket worker: {}",
        js_error_text(e)
    )))
}

/// Handles one message from the worker.
fn on_worker_message(
    shared: &RefCell<Shared>,
    worker: &web_sys::Worker,
    req: &ConnectRequest,
    m: &Array,
) {
    let mut s = shared.borrow_mut();
    let kind = m.get(0).as_f64().unwrap_or(-1.0) as i32;
    match kind {
        1 => {
            s.extra.acked = m.get(1).as_f64().unwrap_or(0.0) as u64;
            s.extra.buffered = m.get(2).as_f64().unwrap_or(0.0) as usize;
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
        0 => s.open(m.get(1).as_string()),
        2 => {
            let code = m.get(1).as_f64().unwrap_or(1006.0) as u16;
            s.closed(code, m.get(2).as_string().unwrap_or_default());
        }
        3 => {
            let Some(every) = req.keepalive else { return };
            let open = s.opened;
            // The worker eats the reply.
            if let Some(frame) = s.keepalive_due(every, open) {
                let _ = worker.post_message(&Array::of2(&JsValue::from(2), &frame.into()));
            }
        }
        5 => {
            let error = m.get(1).as_string().unwrap_or_default();
            s.finish(TransportEvent::Failed(web_common::cannot_open(
                &req.url,
                &req.subprotocols,
                &error,
            )));
        }
        _ => {}
    }
}

impl WebConn for Inner {
    type Extra = Backlog;

    fn conn(&mut self) -> &mut Conn<Backlog> {
        &mut self.conn
    }

    fn on_open(&mut self) {}

    fn end(&mut self, grace: bool) {
        self.shutdown(grace);
    }
}

impl Inner {
    pub(crate) fn connect(req: ConnectRequest) -> Self {
        let shared = Shared::new_rc(&req, Backlog::default());
        let mut inner = Self {
            worker: None,
            pagehide: None,
            out_bytes: Vec::new(),
            out_lengths: Vec::new(),
            in_flight: VecDeque::new(),
            next_batch: 1,
            conn: Conn::new(&req, shared.clone()),
        };
        let (worker, url) = match web_common::blob_worker(WORKER_JS) {
            Ok(w) => w,
            Err(e) => {
                shared.borrow_mut().finish(start_failed(&e));
                return inner;
            }
        };
        LIVE_WORKERS.with(|n| n.set(n.get() + 1));
        let on_message = {
            let shared = shared.clone();
            let worker = worker.clone();
            let req = req.clone();
            Closure::<dyn FnMut(MessageEvent)>::new(move |e: MessageEvent| {
                if let Some(m) = e.data().dyn_ref::<Array>() {
                    on_worker_message(&shared, &worker, &req, m);
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
        let keepalive_ms = req.keepalive.map_or(0, web_common::keepalive_ms);
        let start = Array::of4(
            &JsValue::from(0),
            &JsValue::from_str(&req.url),
            &web_common::js_strings(&req.subprotocols),
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
            shared.borrow_mut().finish(start_failed(&e));
            return inner;
        }
        inner.pagehide = PageHide::listen(move |_e: Event| {
            // The `close` that follows reports it (code 1000).
            let _ = worker.post_message(&Array::of1(&JsValue::from(4)));
        });
        inner
    }

    /// The next event (see [`web_common::poll`]).
    pub(crate) fn poll(&mut self) -> Option<TransportEvent> {
        web_common::poll(self)
    }

    pub(crate) fn send(&mut self, t: Transmit) -> Result<(), TransportError> {
        if self.conn.done || self.worker.is_none() {
            return Err(TransportError::Io("connection is not open".into()));
        }
        if self.conn.shared.borrow().finished {
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
        self.conn.stats.messages_out += 1;
        self.conn.stats.bytes_out += bytes.len() as u64;
        Ok(())
    }

    pub(crate) fn flush(&mut self) {
        let acked = self.conn.shared.borrow().extra.acked;
        while self.in_flight.front().is_some_and(|&(n, _)| n <= acked) {
            self.in_flight.pop_front();
        }
        if self.out_lengths.is_empty() || self.conn.done {
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
        self.conn.close();
        self.shutdown(true);
    }

    /// Unregisters the callbacks and ends the worker (with `grace`, after asking it to close
    /// its socket cleanly).
    fn shutdown(&mut self, grace: bool) {
        self.conn.done = true;
        self.out_bytes = Vec::new();
        self.out_lengths = Vec::new();
        self.in_flight.clear();
        self.pagehide = None;
        if let Some(w) = self.worker.take() {
            w.retire(grace);
        }
    }

    pub(crate) fn is_open(&self) -> bool {
        self.conn.is_open()
    }

    pub(crate) fn send_backlog(&self) -> usize {
        if self.conn.done {
            return 0;
        }
        let s = self.conn.shared.borrow().extra;
        let posted: usize = self
            .in_flight
            .iter()
            .filter(|&&(n, _)| n > s.acked)
            .map(|&(_, bytes)| bytes)
            .sum();
        self.out_bytes.len() + posted + s.buffered
    }

    pub(crate) fn stats(&self) -> TransportStats {
        self.conn.stats()
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Callbacks must be unregistered before their closures are freed.
        let grace = !self.conn.shared.borrow().finished;
        self.shutdown(grace);
    }
}
