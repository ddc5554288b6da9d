//! One websocket connection: the "socket process" (reader thread: decodes frames and runs the
//! channel callbacks inline, so the order of frames on a connection is deterministic) and the
//! writer thread (drains the outgoing queue through a `BufWriter`, flushing when the queue is
//! empty; applies the outgoing faults).
//!
//! Locks are taken in one order only: a connection's `state`, then presence, then pubsub. Sending
//! to another connection only touches its outgoing queue, never its state.
//!
//! Owns the joined channels of a connection ([`Conn`], [`ConnState`]) and runs the channel
//! callbacks (join, handle_in, handle_info, terminate). Depends on the channel API (`channel`),
//! `shared` (registry, pubsub, presence, config), `peer`, `state`, `serializer`, `ws` and
//! `locks`; nothing depends on it but `server`, which hands it accepted sockets. Code below it
//! reaches a connection through `shared::Connection`, which [`Conn`] implements.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io::{BufWriter, Write};
use std::net::{Shutdown, TcpStream};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, TryRecvError};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::channel::{
    self, Channel, ChannelContext, HandleResult, JoinResult, Routes, Status, TerminateReason,
};
use crate::locks::lock;
use crate::peer::{Data, Out, Peer};
use crate::serializer::{self, Message, Payload, Serializer, Topic};
use crate::shared::{Connection, Shared};
use crate::state::PhoenixVersion;
use crate::ws::{self, FrameReader, Incoming, ReadError};

/// How long a closing side waits for the peer's close reply before dropping TCP.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// A joined channel.
pub(crate) struct Slot {
    pub id: u64,
    pub topic: Arc<str>,
    pub join_ref: Value,
    pub handler: Box<dyn Channel>,
}

/// The per-connection state the socket process owns.
#[derive(Default)]
pub(crate) struct ConnState {
    pub channels: HashMap<String, Slot>,
}

/// A connected websocket.
pub(crate) struct Conn {
    /// Identity and outgoing side (what pubsub and reply handles hold).
    pub peer: Arc<Peer>,
    pub state: Mutex<ConnState>,
    /// The server's declared channels, for `phx_join`.
    routes: Arc<Routes>,
    reader_done: Mutex<bool>,
    reader_done_cv: Condvar,
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conn")
            .field("id", &self.peer.id)
            .field("socket_id", &self.peer.socket_id)
            .finish()
    }
}

impl Conn {
    fn set_reader_done(&self) {
        *lock(&self.reader_done) = true;
        self.reader_done_cv.notify_all();
    }

    fn wait_reader_done(&self, timeout: Duration) -> bool {
        let guard = lock(&self.reader_done);
        let (guard, _) = self
            .reader_done_cv
            .wait_timeout_while(guard, timeout, |done| !*done)
            .unwrap_or_else(|e| e.into_inner());
        *guard
    }
}

impl Connection for Conn {
    fn peer(&self) -> &Arc<Peer> {
        &self.peer
    }

    fn deliver_info(
        self: Arc<Self>,
        shared: &Arc<Shared>,
        topic: &str,
        chan_id: Option<u64>,
        msg: Value,
    ) {
        deliver_info(shared, &self, topic, chan_id, msg);
    }
}

/// What the handshake negotiated for an accepted connection.
pub(crate) struct Accepted {
    pub ser: Serializer,
    pub socket_id: String,
    pub params: BTreeMap<String, String>,
    pub auth_token: Option<String>,
    /// Bytes received after the request head.
    pub rest: Vec<u8>,
}

/// Registers the connection, sends the 101 response head and runs the websocket to its end
/// (called on the connection's thread). A client that got the 101 is already counted in
/// `open_connections()`.
pub(crate) fn run(
    shared: &Arc<Shared>,
    routes: &Arc<Routes>,
    conn_id: u64,
    mut stream: TcpStream,
    head: &str,
    acc: Accepted,
) {
    let (tx, rx) = mpsc::channel();
    let Ok(tcp) = stream.try_clone() else { return };
    let conn = Arc::new(Conn {
        peer: Arc::new(Peer {
            id: conn_id,
            ser: acc.ser,
            socket_id: acc.socket_id,
            params: acc.params,
            auth_token: acc.auth_token,
            out: tx,
            closing: AtomicBool::new(false),
            tcp,
            faults: shared.fault_state.clone(),
        }),
        state: Mutex::new(ConnState::default()),
        routes: routes.clone(),
        reader_done: Mutex::new(false),
        reader_done_cv: Condvar::new(),
    });
    let Ok(write_half) = stream.try_clone() else {
        return;
    };
    let _ = write_half.set_write_timeout(Some(shared.config.send_timeout));
    let writer = {
        let conn = conn.clone();
        let shared = shared.clone();
        thread::Builder::new()
            .name(format!("pts-write-{conn_id}"))
            .spawn(move || writer_loop(&shared, &conn, rx, write_half))
    };
    let Ok(writer) = writer else { return };
    lock(&shared.conns).insert(conn_id, conn.clone());

    if stream.write_all(head.as_bytes()).is_ok() {
        reader_loop(shared, &conn, stream.try_clone().ok(), acc.rest);
    }

    conn.set_reader_done();
    terminate_all(shared, &conn);
    let _ = conn.peer.out.send(Out::Shutdown);
    let _ = writer.join();
    let _ = stream.shutdown(Shutdown::Both);
    lock(&shared.conns).remove(&conn_id);
}

fn writer_loop(shared: &Shared, conn: &Conn, rx: Receiver<Out>, stream: TcpStream) {
    let faults = &shared.fault_state;
    let mut w = BufWriter::with_capacity(64 * 1024, stream);
    let (mut gen_seen, mut remaining) = faults.close_after();
    let close = |w: &mut BufWriter<TcpStream>, code: u16, reason: &str| {
        let ok = ws::write_close(w, code, reason)
            .and_then(|_| w.flush())
            .is_ok();
        conn.peer.closing.store(true, Ordering::SeqCst);
        if ok {
            let _ = w.get_ref().shutdown(Shutdown::Write);
            if !conn.wait_reader_done(CLOSE_GRACE) {
                let _ = w.get_ref().shutdown(Shutdown::Both);
            }
        } else {
            let _ = w.get_ref().shutdown(Shutdown::Both);
        }
    };
    loop {
        let msg = match rx.try_recv() {
            Ok(m) => m,
            Err(TryRecvError::Empty) => {
                if w.flush().is_err() {
                    conn.peer.kill();
                    return;
                }
                match rx.recv() {
                    Ok(m) => m,
                    Err(_) => return,
                }
            }
            Err(TryRecvError::Disconnected) => return,
        };
        match msg {
            Out::Frame {
                binary,
                data,
                not_before,
            } => {
                if let Some(t) = not_before {
                    let now = Instant::now();
                    if t > now {
                        if w.flush().is_err() {
                            conn.peer.kill();
                            return;
                        }
                        thread::sleep(t - now);
                    }
                }
                if faults.drop_outgoing.load(Ordering::Relaxed) {
                    continue;
                }
                let (g, r) = faults.close_after();
                if g != gen_seen {
                    (gen_seen, remaining) = (g, r);
                }
                let bytes = match &data {
                    Data::Owned(v) => v.as_slice(),
                    Data::Shared(e) => e.data.as_slice(),
                };
                if ws::write_frame(&mut w, if binary { 2 } else { 1 }, bytes).is_err() {
                    conn.peer.kill();
                    return;
                }
                shared.stats.frames_sent.fetch_add(1, Ordering::Relaxed);
                if let Some(r) = remaining.as_mut() {
                    *r = r.saturating_sub(1);
                    if *r == 0 {
                        close(&mut w, 1000, "");
                        return;
                    }
                }
            }
            Out::Pong(p) => {
                if ws::write_frame(&mut w, 0xA, &p).is_err() {
                    conn.peer.kill();
                    return;
                }
            }
            Out::Check => {
                let (g, r) = faults.close_after();
                if g != gen_seen {
                    (gen_seen, remaining) = (g, r);
                }
                if remaining == Some(0) {
                    close(&mut w, 1000, "");
                    return;
                }
            }
            Out::Close(code, reason) => {
                close(&mut w, code, &reason);
                return;
            }
            Out::Shutdown => {
                let _ = w.flush();
                return;
            }
        }
    }
}

/// A close code to echo back to a client close frame.
fn echo_code(code: Option<u16>) -> u16 {
    match code {
        Some(c @ 1000..=1003) | Some(c @ 1007..=1014) | Some(c @ 3000..=4999) => c,
        _ => 1000,
    }
}

fn reader_loop(shared: &Arc<Shared>, conn: &Arc<Conn>, stream: Option<TcpStream>, rest: Vec<u8>) {
    let Some(mut stream) = stream else { return };
    let idle = shared.config.idle_timeout;
    let _ = stream.set_read_timeout(Some(idle));
    let mut reader = FrameReader::new(rest);
    let faults = &shared.fault_state;
    // We sent a close frame ourselves (idle, malformed): wait for the client's close or EOF.
    let mut closing = false;
    // Slow consumer fault: park before reading more and before handling what was read.
    let park = || {
        if faults.stop_reading.load(Ordering::SeqCst) {
            faults.wait_reading_allowed(|| conn.peer.closing.load(Ordering::SeqCst));
        }
        !(conn.peer.closing.load(Ordering::SeqCst) && faults.stop_reading.load(Ordering::SeqCst))
    };
    loop {
        if !park() {
            return;
        }
        let next = reader.next(&mut stream);
        if !park() {
            return;
        }
        let ignoring = closing || conn.peer.closing.load(Ordering::SeqCst);
        match next {
            Ok(Incoming::Text(t)) => {
                if ignoring {
                    continue;
                }
                shared.stats.frames_received.fetch_add(1, Ordering::Relaxed);
                if std::str::from_utf8(&t).is_err() {
                    conn.peer.close(1007, "");
                    closing = true;
                    continue;
                }
                match serializer::decode_text(conn.peer.ser, &t) {
                    // Tolerant: a topic or event that is not a string is a bad frame too.
                    Ok(m)
                        if shared.config.tolerate_bad_frames
                            && !(m.topic.is_string() && m.event.is_string()) =>
                    {
                        bad_frame_reply(conn)
                    }
                    Ok(m) => dispatch(shared, conn, m),
                    Err(_) if shared.config.tolerate_bad_frames => bad_frame_reply(conn),
                    Err(_) => {
                        conn.peer.close(1011, "");
                        closing = true;
                    }
                }
            }
            Ok(Incoming::Binary(b)) => {
                if ignoring {
                    continue;
                }
                shared.stats.frames_received.fetch_add(1, Ordering::Relaxed);
                match serializer::decode_binary(conn.peer.ser, &b) {
                    // Tolerant: a topic or event that is not a string is a bad frame too.
                    Ok(m)
                        if shared.config.tolerate_bad_frames
                            && !(m.topic.is_string() && m.event.is_string()) =>
                    {
                        bad_frame_reply(conn)
                    }
                    Ok(m) => dispatch(shared, conn, m),
                    Err(_) if shared.config.tolerate_bad_frames => bad_frame_reply(conn),
                    Err(_) => {
                        conn.peer.close(1011, "");
                        closing = true;
                    }
                }
            }
            Ok(Incoming::Ping(p)) => {
                if !ignoring {
                    let _ = conn.peer.out.send(Out::Pong(p));
                }
            }
            Ok(Incoming::Pong) => {}
            Ok(Incoming::Close(code)) => {
                if !ignoring {
                    conn.peer.close(echo_code(code), "");
                }
                return;
            }
            Err(ReadError::Timeout) => {
                if ignoring {
                    return;
                }
                // Bandit closes an idle websocket with 1002.
                conn.peer.close(1002, "");
                closing = true;
            }
            Err(ReadError::Gone) => return,
            Err(ReadError::Protocol(code)) => {
                if !ignoring {
                    conn.peer.close(code, "");
                }
                return;
            }
        }
    }
}

/// The answer to an undecodable frame when the server tolerates them: what Phoenix replies to an
/// event on the reserved `phoenix` topic (no refs: none could be read).
fn bad_frame_reply(conn: &Conn) {
    let enc = serializer::reply(
        conn.peer.ser,
        &Value::Null,
        &Value::Null,
        Topic::Str("phoenix"),
        "error",
        &Payload::Json(serde_json::json!({"reason": "unmatched topic"})),
    );
    conn.peer.send_encoded(enc);
}

fn send_reply(
    conn: &Conn,
    join_ref: &Value,
    ref_: &Value,
    topic: Topic<'_>,
    status: &str,
    p: &Payload,
) {
    conn.peer.send_encoded(serializer::reply(
        conn.peer.ser,
        join_ref,
        ref_,
        topic,
        status,
        p,
    ));
}

fn error_reason(reason: &str) -> Payload {
    Payload::Json(json!({ "reason": reason }))
}

/// Phoenix.Socket's `handle_in` for one decoded message.
pub(crate) fn dispatch(shared: &Arc<Shared>, conn: &Arc<Conn>, msg: Message) {
    let topic = msg.topic.as_str().map(str::to_owned);
    let event = msg.event.as_str();
    if topic.as_deref() == Some("phoenix") && event == Some("heartbeat") {
        if shared.fault_state.answer_heartbeats.load(Ordering::Relaxed) {
            send_reply(
                conn,
                &Value::Null,
                &msg.ref_,
                Topic::Str("phoenix"),
                "ok",
                &Payload::empty(),
            );
        }
        return;
    }
    let mut st = lock(&conn.state);
    match (topic, event) {
        (Some(t), Some("phx_join")) => join(shared, conn, &mut st, &t, msg),
        (Some(t), _) if st.channels.contains_key(&t) => {
            let Some(slot) = st.channels.get(&t) else {
                return;
            };
            if shared.config.version == PhoenixVersion::V1_8
                && !msg.join_ref.is_null()
                && msg.join_ref != slot.join_ref
            {
                return; // 1.8: a push for another join of this topic is dropped
            }
            if event == Some("phx_leave") {
                let Some(slot) = st.channels.remove(&t) else {
                    return;
                };
                shared.pubsub.unsubscribe(&t, slot.id);
                let jr = slot.join_ref.clone();
                send_reply(
                    conn,
                    &jr,
                    &msg.ref_,
                    Topic::Str(&t),
                    "ok",
                    &Payload::empty(),
                );
                finish_channel(shared, conn, slot, End::Close, TerminateReason::Left);
            } else {
                handle_in(shared, conn, &mut st, &t, msg);
            }
        }
        (_, Some("phx_leave")) => {
            send_reply(
                conn,
                &msg.join_ref,
                &msg.ref_,
                Topic::Raw(&msg.topic),
                "ok",
                &Payload::empty(),
            );
        }
        _ => {
            let p = error_reason("unmatched topic");
            send_reply(
                conn,
                &Value::Null,
                &msg.ref_,
                Topic::Raw(&msg.topic),
                "error",
                &p,
            );
        }
    }
}

fn context(shared: &Arc<Shared>, conn: &Arc<Conn>, slot: &Slot, msg_ref: Value) -> ChannelContext {
    ChannelContext {
        shared: shared.clone(),
        conn: conn.clone(),
        topic: slot.topic.clone(),
        join_ref: slot.join_ref.clone(),
        chan_id: slot.id,
        msg_ref,
        infos: Vec::new(),
    }
}

fn panic_text(e: Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = e.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = e.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic".to_string()
    }
}

fn join(shared: &Arc<Shared>, conn: &Arc<Conn>, st: &mut ConnState, topic: &str, msg: Message) {
    let Some(factory) = channel::route(&conn.routes, topic) else {
        let p = error_reason("unmatched topic");
        send_reply(
            conn,
            &Value::Null,
            &msg.ref_,
            Topic::Str(topic),
            "error",
            &p,
        );
        return;
    };
    // Duplicate join: the old channel is shut down first; its phx_close follows the new reply.
    let old = st.channels.remove(topic);
    if let Some(old) = &old {
        shared.pubsub.unsubscribe(topic, old.id);
    }
    if old.is_none() && st.channels.len() >= shared.config.max_channels {
        let p = error_reason("too many channels joined");
        send_reply(
            conn,
            &msg.join_ref,
            &msg.ref_,
            Topic::Str(topic),
            "error",
            &p,
        );
        return;
    }
    let slot = Slot {
        id: shared.next_id(),
        topic: Arc::from(topic),
        join_ref: msg.join_ref.clone(),
        handler: factory,
    };
    let mut slot = slot;
    let mut ctx = context(shared, conn, &slot, msg.ref_.clone());
    let payload = msg.payload;
    let result = catch_unwind(AssertUnwindSafe(|| {
        slot.handler.join(topic, payload, &mut ctx)
    }));
    let infos = std::mem::take(&mut ctx.infos);
    let joined = match result {
        Ok(JoinResult::Ok(reply)) => {
            shared.pubsub.subscribe(topic, slot.id, conn.peer.clone());
            send_reply(
                conn,
                &msg.join_ref,
                &msg.ref_,
                Topic::Str(topic),
                "ok",
                &reply,
            );
            let id = slot.id;
            st.channels.insert(topic.to_string(), slot);
            Some(id)
        }
        Ok(JoinResult::Error(reply)) => {
            send_reply(
                conn,
                &msg.join_ref,
                &msg.ref_,
                Topic::Str(topic),
                "error",
                &reply,
            );
            None
        }
        Err(_) => {
            let p = error_reason("join crashed");
            send_reply(
                conn,
                &msg.join_ref,
                &msg.ref_,
                Topic::Str(topic),
                "error",
                &p,
            );
            None
        }
    };
    if let Some(old) = old {
        finish_channel(shared, conn, old, End::Close, TerminateReason::Replaced);
    }
    if let Some(id) = joined {
        run_infos(shared, conn, st, topic, id, infos.into());
    }
}

fn handle_in(
    shared: &Arc<Shared>,
    conn: &Arc<Conn>,
    st: &mut ConnState,
    topic: &str,
    msg: Message,
) {
    let Some(slot) = st.channels.get_mut(topic) else {
        return;
    };
    let id = slot.id;
    let mut ctx = context(shared, conn, slot, msg.ref_.clone());
    let result = match msg.event.as_str() {
        Some(event) => {
            let payload = msg.payload;
            match catch_unwind(AssertUnwindSafe(|| {
                slot.handler.handle_in(event, payload, &mut ctx)
            })) {
                Ok(r) => r,
                Err(e) => HandleResult::Crash(panic_text(e)),
            }
        }
        // No handle_in clause matches a non-string event.
        None => HandleResult::Crash("FunctionClauseError".to_string()),
    };
    let infos = std::mem::take(&mut ctx.infos);
    apply(shared, conn, st, topic, id, &msg.ref_, true, result);
    run_infos(shared, conn, st, topic, id, infos.into());
}

/// Delivers `msg` to `handle_info` of the channel on `topic` (only if it is still join `chan_id`).
fn deliver_info(
    shared: &Arc<Shared>,
    conn: &Arc<Conn>,
    topic: &str,
    chan_id: Option<u64>,
    msg: Value,
) {
    let mut st = lock(&conn.state);
    let Some(slot) = st.channels.get(topic) else {
        return;
    };
    let id = slot.id;
    if chan_id.is_some_and(|c| c != id) {
        return;
    }
    run_infos(shared, conn, &mut st, topic, id, VecDeque::from([msg]));
}

fn run_infos(
    shared: &Arc<Shared>,
    conn: &Arc<Conn>,
    st: &mut ConnState,
    topic: &str,
    chan_id: u64,
    mut infos: VecDeque<Value>,
) {
    while let Some(msg) = infos.pop_front() {
        let Some(slot) = st.channels.get_mut(topic) else {
            return;
        };
        if slot.id != chan_id {
            return;
        }
        let mut ctx = context(shared, conn, slot, Value::Null);
        let result =
            match catch_unwind(AssertUnwindSafe(|| slot.handler.handle_info(msg, &mut ctx))) {
                Ok(r) => r,
                Err(e) => HandleResult::Crash(panic_text(e)),
            };
        infos.extend(ctx.infos.drain(..));
        apply(
            shared,
            conn,
            st,
            topic,
            chan_id,
            &Value::Null,
            false,
            result,
        );
    }
}

/// Carries out what a callback returned.
#[allow(clippy::too_many_arguments)]
fn apply(
    shared: &Arc<Shared>,
    conn: &Arc<Conn>,
    st: &mut ConnState,
    topic: &str,
    chan_id: u64,
    msg_ref: &Value,
    can_reply: bool,
    result: HandleResult,
) {
    let Some(slot) = st.channels.get(topic) else {
        return;
    };
    if slot.id != chan_id {
        return;
    }
    let join_ref = slot.join_ref.clone();
    let reply = |status: &Status, p: &Payload| {
        if can_reply {
            send_reply(
                conn,
                &join_ref,
                msg_ref,
                Topic::Str(topic),
                status.as_str(),
                p,
            );
        }
    };
    let (end, reason) = match result {
        HandleResult::Reply(status, p) => {
            reply(&status, &p);
            return;
        }
        HandleResult::NoReply => return,
        HandleResult::Stop => (End::Close, TerminateReason::Stopped),
        HandleResult::StopWithReply(status, p) => {
            reply(&status, &p);
            (End::Close, TerminateReason::Stopped)
        }
        HandleResult::Crash(why) => (End::Error, TerminateReason::Crashed(why)),
    };
    if let Some(slot) = st.channels.remove(topic) {
        shared.pubsub.unsubscribe(topic, slot.id);
        finish_channel(shared, conn, slot, end, reason);
    }
}

/// How a channel's end is announced to its client.
enum End {
    /// `phx_close` (leave, stop, replaced).
    Close,
    /// `phx_error` (crash).
    Error,
    /// Nothing (the websocket is gone).
    Silent,
}

/// Ends a channel already removed from the state and unsubscribed: announce, untrack presences
/// (leaves diff), call `terminate`.
fn finish_channel(
    shared: &Arc<Shared>,
    conn: &Arc<Conn>,
    mut slot: Slot,
    end: End,
    reason: TerminateReason,
) {
    let jr = slot.join_ref.clone();
    match end {
        End::Close => conn.peer.send_encoded(Ok(serializer::message(
            conn.peer.ser,
            &jr,
            &jr,
            &slot.topic,
            "phx_close",
            &json!({}),
        ))),
        End::Error => {
            let payload = match shared.config.version {
                PhoenixVersion::V1_7 => json!({}),
                PhoenixVersion::V1_8 => json!({"reason": "channel_crash"}),
            };
            conn.peer.send_encoded(Ok(serializer::message(
                conn.peer.ser,
                &jr,
                &jr,
                &slot.topic,
                "phx_error",
                &payload,
            )))
        }
        End::Silent => {}
    }
    shared
        .presence
        .untrack(&shared.pubsub, &slot.topic, slot.id, None);
    let mut ctx = context(shared, conn, &slot, Value::Null);
    let _ = catch_unwind(AssertUnwindSafe(|| {
        slot.handler.terminate(&reason, &mut ctx)
    }));
}

/// The websocket is gone: end every channel without telling the client.
fn terminate_all(shared: &Arc<Shared>, conn: &Arc<Conn>) {
    let slots: Vec<Slot> = {
        let mut st = lock(&conn.state);
        st.channels.drain().map(|(_, s)| s).collect()
    };
    for slot in slots {
        shared.pubsub.unsubscribe(&slot.topic, slot.id);
        finish_channel(shared, conn, slot, End::Silent, TerminateReason::Closed);
    }
}
