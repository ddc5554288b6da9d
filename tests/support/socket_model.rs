//! The socket model shared by `tests/protocol_props.rs` (proptest), the `socket` fuzz target
//! (`fuzz/fuzz_targets/socket.rs`) and the corpus replay (`tests/fuzz_corpus.rs`): the [`Op`]s
//! a session is made of, a [`Driver`] that applies them to a [`Socket`] with injected time and
//! checks the invariants after each ([`Driver::check`], [`Driver::quiesce`]), and a small
//! deterministic byte codec ([`decode_session`] / [`encode_session`]) so a fuzz input means the
//! same session on nightly and on stable.
//!
//! Include it with `#[path]` next to `support/protocol.rs` included as `mod support` at the
//! crate root.
#![allow(dead_code, clippy::unwrap_used)]

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use crate::support::*;

pub const JOIN_TOPICS: [&str; 4] = ["room:0", "room:1", "room:2", "phoenix"];
pub const ANY_TOPICS: [&str; 5] = ["room:0", "room:1", "room:2", "phoenix", "other"];
pub const EVENTS: [&str; 7] = [
    "phx_reply",
    "phx_error",
    "phx_close",
    "presence_state",
    "presence_diff",
    "msg",
    "phx_join",
];
pub const PAYLOADS: [&str; 9] = [
    "{}",
    "null",
    r#""str""#,
    "[1,2]",
    r#"{"status":"ok","response":{"a":1}}"#,
    r#"{"status":"error","response":{"reason":"x"}}"#,
    r#"{"response":{}}"#,
    r#"{"u1":{"metas":[{"phx_ref":"r1"}]}}"#,
    r#"{"joins":{"u2":{"metas":[{"phx_ref":"r2"}]}},"leaves":{"u1":{"metas":[{"phx_ref":"r1"}]}}}"#,
];
pub const RESPONSES: [&str; 6] = ["{}", "null", r#""s""#, "[1]", r#"{"a":1}"#, ""];
pub const STATUSES: [&str; 3] = ["ok", "error", "timeout"];

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefPick {
    Null,
    /// The k-th most recent ref we sent.
    Sent(u8),
    /// The k-th most recent join_ref we sent.
    Join(u8),
    Int(i64),
    Str(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// The transport opened (only if one is connecting).
    Open,
    /// The transport closed: 0 clean 1000, 1 no close frame, 2 error, 3 refused 403.
    Close(u8),
    Join {
        topic: u8,
        presence: bool,
    },
    /// kind: 0 json, 1 fire-and-forget, 2 binary, 3 short timeout, 4 faf binary.
    Push {
        chan: u8,
        kind: u8,
    },
    Leave {
        chan: u8,
    },
    Disconnect,
    Connect,
    Advance(u32),
    /// Jump to `poll_timeout`.
    Wake,
    /// Answer a frame we sent (its ref, join_ref and topic).
    Answer {
        which: u8,
        status: u8,
        response: u8,
    },
    /// A channel message addressed with a join_ref we sent: 0 phx_error, 1 phx_close,
    /// 2 presence_state, 3 presence_diff (broadcast), 4 msg, 5 msg broadcast.
    Channel {
        which: u8,
        event: u8,
        payload: u8,
    },
    /// A random valid-looking frame.
    Frame {
        jr: RefPick,
        r: RefPick,
        topic: u8,
        event: u8,
        payload: u8,
    },
    Garbage(String),
    RandomBinary(Vec<u8>),
    /// 0 push (to a join_ref we sent), 1 reply (to a ref we sent), 2 broadcast.
    ServerBinary {
        kind: u8,
        which: u8,
        payload: Vec<u8>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    None,
    Connecting,
    Open,
}

/// A frame we sent: (join_ref, ref, topic, event).
pub type Sent = (Option<String>, Option<String>, String, String);

pub struct Driver {
    h: H,
    transport: Transport,
    issued: HashMap<PushId, ChannelId>,
    resolved: HashMap<PushId, u32>,
    chans: Vec<ChannelId>,
    closed: HashSet<ChannelId>,
    /// True when the channel's last lifecycle event was Joined (not ChannelErrored).
    joined_last: HashMap<ChannelId, bool>,
    sent: Vec<Sent>,
    joins: Vec<(String, String)>,
}

pub fn pick<T>(v: &[T], k: u8) -> Option<&T> {
    (!v.is_empty()).then(|| &v[v.len() - 1 - usize::from(k) % v.len()])
}

pub fn json_ref(r: Option<&str>) -> String {
    r.map_or("null".to_owned(), |r| serde_json::to_string(r).unwrap())
}

impl Driver {
    /// `variant`: 0 defaults, 1 heartbeat timeout longer than the interval, 2 shorter,
    /// 3 at most 2 reconnect attempts and full jitter.
    pub fn new(variant: u8) -> Self {
        let base = cfg()
            .with_jitter(0.2)
            .with_max_buffered_pushes(4)
            .with_rng_seed(11);
        let config = match variant {
            0 => base,
            1 => base
                .with_heartbeat(Duration::from_secs(5))
                .with_heartbeat_timeout(Duration::from_secs(12)),
            2 => base
                .with_heartbeat(Duration::from_secs(20))
                .with_heartbeat_timeout(Duration::from_secs(3)),
            _ => base.with_max_reconnect_attempts(Some(2)).with_jitter(1.0),
        };
        Driver {
            h: H::new(config),
            transport: Transport::None,
            issued: HashMap::new(),
            resolved: HashMap::new(),
            chans: Vec::new(),
            closed: HashSet::new(),
            joined_last: HashMap::new(),
            sent: Vec::new(),
            joins: Vec::new(),
        }
    }

    fn ref_text(&self, p: &RefPick) -> String {
        match p {
            RefPick::Null => "null".into(),
            RefPick::Sent(k) => json_ref(
                pick(&self.sent, *k)
                    .and_then(|s| s.1.as_deref())
                    .or(Some("1")),
            ),
            RefPick::Join(k) => json_ref(pick(&self.joins, *k).map(|j| j.0.as_str()).or(Some("1"))),
            RefPick::Int(i) => i.to_string(),
            RefPick::Str(s) => json_ref(Some(s)),
        }
    }

    fn feed_text(&mut self, f: String) {
        if self.transport == Transport::Open {
            self.h.text(f);
        }
    }

    fn feed_binary(&mut self, b: Vec<u8>) {
        if self.transport == Transport::Open {
            self.h.binary(b);
        }
    }

    pub fn apply(&mut self, op: &Op) {
        let now = self.h.now;
        match op {
            Op::Open => {
                if self.transport == Transport::Connecting {
                    self.h.s.handle_open(now);
                    self.transport = Transport::Open;
                }
            }
            Op::Close(k) => {
                if self.transport != Transport::None {
                    let how = match k {
                        0 => TransportClosed::Closed {
                            code: Some(1000),
                            reason: String::new(),
                        },
                        1 => TransportClosed::Closed {
                            code: None,
                            reason: String::new(),
                        },
                        2 => TransportClosed::Error("reset".into()),
                        _ => TransportClosed::Refused { status: 403 },
                    };
                    self.h.closed(how);
                    self.transport = Transport::None;
                }
            }
            Op::Join { topic, presence } => {
                let topic = JOIN_TOPICS[usize::from(*topic)];
                let id = self.h.s.join(
                    now,
                    topic,
                    OutPayload::empty(),
                    JoinOptions {
                        presence: *presence,
                    },
                );
                assert!(!self.chans.contains(&id), "channel ids are never reused");
                self.chans.push(id);
            }
            Op::Push { chan, kind } => {
                let Some(&ch) = pick(&self.chans, *chan) else {
                    return;
                };
                let (payload, options) = match kind {
                    0 => (raw(r#"{"k":0}"#), PushOptions::default()),
                    1 => (raw("[1]"), PushOptions::fire_and_forget()),
                    2 => (OutPayload::binary([1, 2]), PushOptions::default()),
                    3 => (
                        OutPayload::empty(),
                        PushOptions::with_timeout(Duration::from_millis(50)),
                    ),
                    _ => (OutPayload::binary([3]), PushOptions::fire_and_forget()),
                };
                let id = self.h.s.push(now, ch, "ev", payload, options);
                assert!(self.issued.insert(id, ch).is_none(), "push ids are unique");
            }
            Op::Leave { chan } => {
                if let Some(&ch) = pick(&self.chans, *chan) {
                    self.h.s.leave(now, ch);
                }
            }
            Op::Disconnect => self.h.s.disconnect(now),
            Op::Connect => self.h.s.connect(now),
            Op::Advance(ms) => {
                self.h.now += Duration::from_millis(u64::from(*ms));
                self.h.s.handle_timeout(self.h.now);
                self.h.check_timeout();
            }
            Op::Wake => {
                if let Some(t) = self.h.s.poll_timeout() {
                    self.h.now = self.h.now.max(t);
                }
                self.h.s.handle_timeout(self.h.now);
                self.h.check_timeout();
            }
            Op::Answer {
                which,
                status,
                response,
            } => {
                let Some((jr, Some(r), topic, _)) = pick(&self.sent, *which).cloned() else {
                    return;
                };
                let resp = RESPONSES[usize::from(*response)];
                let status = STATUSES[usize::from(*status)];
                let body = if resp.is_empty() {
                    format!(r#"{{"status":"{status}"}}"#)
                } else {
                    format!(r#"{{"status":"{status}","response":{resp}}}"#)
                };
                let f = format!(
                    "[{},{},{},\"phx_reply\",{body}]",
                    json_ref(jr.as_deref()),
                    json_ref(Some(&r)),
                    json_ref(Some(&topic))
                );
                self.feed_text(f);
            }
            Op::Channel {
                which,
                event,
                payload,
            } => {
                let Some((jr, topic)) = pick(&self.joins, *which).cloned() else {
                    return;
                };
                let (jr, topic) = (json_ref(Some(&jr)), json_ref(Some(&topic)));
                let p = PAYLOADS[usize::from(*payload)];
                let f = match event {
                    0 => format!("[{jr},{jr},{topic},\"phx_error\",{p}]"),
                    1 => format!("[{jr},{jr},{topic},\"phx_close\",{{}}]"),
                    2 => format!("[{jr},null,{topic},\"presence_state\",{p}]"),
                    3 => format!("[null,null,{topic},\"presence_diff\",{p}]"),
                    4 => format!("[{jr},null,{topic},\"msg\",{p}]"),
                    _ => format!("[null,null,{topic},\"msg\",{p}]"),
                };
                self.feed_text(f);
            }
            Op::Frame {
                jr,
                r,
                topic,
                event,
                payload,
            } => {
                let f = format!(
                    "[{},{},{},{},{}]",
                    self.ref_text(jr),
                    self.ref_text(r),
                    json_ref(Some(ANY_TOPICS[usize::from(*topic)])),
                    json_ref(Some(EVENTS[usize::from(*event)])),
                    PAYLOADS[usize::from(*payload)]
                );
                self.feed_text(f);
            }
            Op::Garbage(s) => self.feed_text(s.clone()),
            Op::RandomBinary(b) => self.feed_binary(b.clone()),
            Op::ServerBinary {
                kind,
                which,
                payload,
            } => {
                let frame = match kind {
                    0 => pick(&self.joins, *which).map(|(jr, topic)| Bin::ServerPush {
                        join_ref: jr.clone(),
                        topic: topic.clone(),
                        event: "bin".into(),
                        payload: payload.clone(),
                    }),
                    1 => pick(&self.sent, *which).and_then(|(jr, r, topic, _)| {
                        Some(Bin::Reply {
                            join_ref: jr.clone().unwrap_or_default(),
                            msg_ref: r.clone()?,
                            topic: topic.clone(),
                            status: if which % 2 == 0 { "ok" } else { "error" }.into(),
                            payload: payload.clone(),
                        })
                    }),
                    _ => Some(Bin::Broadcast {
                        topic: ANY_TOPICS[usize::from(*which) % ANY_TOPICS.len()].into(),
                        event: "bin".into(),
                        payload: payload.clone(),
                    }),
                };
                if let Some(f) = frame {
                    self.feed_binary(encode_bin(&f));
                }
            }
        }
    }

    /// Drains outputs and events after an op and checks every invariant.
    pub fn check(&mut self) {
        for o in self.h.outputs() {
            match o {
                Output::Connect(_) => {
                    assert_eq!(self.transport, Transport::None, "Connect before Close");
                    self.transport = Transport::Connecting;
                }
                Output::Close => self.transport = Transport::None,
                Output::Send(t) => {
                    assert_eq!(
                        self.transport,
                        Transport::Open,
                        "frame on no open transport"
                    );
                    let sent = match &t {
                        Transmit::Text(f) => {
                            let a = arr(f);
                            let s = |v: &serde_json::Value| v.as_str().map(str::to_owned);
                            (s(&a[0]), s(&a[1]), s(&a[2]).unwrap(), s(&a[3]).unwrap())
                        }
                        Transmit::Binary(b) => match decode_client_push(b).unwrap() {
                            Bin::ClientPush {
                                join_ref,
                                msg_ref,
                                topic,
                                event,
                                ..
                            } => (
                                (!join_ref.is_empty()).then_some(join_ref),
                                Some(msg_ref),
                                topic,
                                event,
                            ),
                            other => panic!("{other:?}"),
                        },
                    };
                    if sent.3 == "phx_join" {
                        assert_eq!(sent.0, sent.1, "a join's ref is its join_ref");
                        let jr = sent.0.clone().unwrap();
                        assert!(
                            !self.joins.iter().any(|(j, _)| *j == jr),
                            "join_ref {jr} reused"
                        );
                        self.joins.push((jr, sent.2.clone()));
                    }
                    self.sent.push(sent);
                }
            }
        }
        assert_eq!(
            self.h.s.is_connected(),
            self.transport == Transport::Open,
            "connection state"
        );

        for e in self.h.events() {
            let live = |closed: &HashSet<ChannelId>, ch: &ChannelId| {
                assert!(!closed.contains(ch), "event for closed {ch}: {e:?}");
            };
            match &e {
                Event::Reply(r) => {
                    let ch = self
                        .issued
                        .get(&r.push)
                        .unwrap_or_else(|| panic!("reply for unknown {}", r.push));
                    assert_eq!(*ch, r.channel);
                    let n = self.resolved.entry(r.push).or_default();
                    *n += 1;
                    assert_eq!(*n, 1, "{} got two outcomes: {e:?}", r.push);
                }
                Event::ChannelClosed { channel, .. } => {
                    live(&self.closed, channel);
                    self.closed.insert(*channel);
                }
                Event::Joined { channel, .. } => {
                    live(&self.closed, channel);
                    assert!(self.h.s.is_connected() || self.transport == Transport::Open);
                    self.joined_last.insert(*channel, true);
                }
                Event::ChannelErrored { channel, .. } => {
                    live(&self.closed, channel);
                    self.joined_last.insert(*channel, false);
                }
                Event::RejoinScheduled { channel, .. } | Event::Presence { channel, .. } => {
                    live(&self.closed, channel);
                }
                Event::Message(m) => live(&self.closed, &m.channel),
                Event::Connected => assert_eq!(self.transport, Transport::Open),
                _ => {}
            }
        }

        // Channels: closed exactly when ChannelClosed was heard; states match the events.
        let mut live_topics: HashMap<Topic, ChannelId> = HashMap::new();
        for &ch in &self.chans {
            let info = self.h.s.channel(ch);
            assert_eq!(self.closed.contains(&ch), info.is_none(), "{ch}");
            let Some(info) = info else { continue };
            if info.state == ChannelState::Joined {
                assert!(self.h.s.is_connected(), "joined while disconnected");
                assert_eq!(
                    self.joined_last.get(&ch),
                    Some(&true),
                    "{ch} joined without a Joined event"
                );
            }
            if self.joined_last.get(&ch) == Some(&true) {
                assert!(
                    matches!(info.state, ChannelState::Joined | ChannelState::Leaving),
                    "{ch} is {:?} after Joined with no ChannelErrored",
                    info.state
                );
            }
            if info.state != ChannelState::Leaving {
                let prev = live_topics.insert(info.topic.clone(), ch);
                assert!(prev.is_none(), "two live channels on {}", info.topic);
            }
            assert!(info.buffered <= 4);
        }
        for topic in JOIN_TOPICS {
            assert_eq!(
                self.h.s.channel_for_topic(topic),
                live_topics.get(topic).copied(),
                "{topic}"
            );
        }
        let channels: Vec<ChannelId> = self.h.s.channels().collect();
        assert!(channels.iter().all(|c| self.chans.contains(c)));

        // Every unresolved push is still held (else it could never end).
        let unresolved = self.issued.len() - self.resolved.len();
        assert!(self.h.s.pending_pushes() >= unresolved);
    }

    /// Disconnect, then run every timer out.
    pub fn quiesce(&mut self) {
        self.h.s.disconnect(self.h.now);
        self.check();
        let mut guard = 0;
        while let Some(t) = self.h.s.poll_timeout() {
            self.h.now = self.h.now.max(t);
            self.h.s.handle_timeout(self.h.now);
            self.h.check_timeout();
            self.check();
            guard += 1;
            assert!(guard < 10_000, "timers never settle");
        }
        for p in self.issued.keys() {
            assert_eq!(self.resolved.get(p), Some(&1), "{p} never got an outcome");
        }
        assert_eq!(self.h.s.pending_pushes(), 0);
        assert_eq!(self.h.s.connection_state(), ConnectionState::Disconnected);
    }
}

/// Runs `ops` through a fresh [`Driver`], checking every invariant after each op, then
/// [`Driver::quiesce`]s (every push must have ended by then).
pub fn run(ops: &[Op], connect_first: bool, variant: u8) {
    let mut d = Driver::new(variant);
    if connect_first {
        d.h.s.connect(d.h.now);
        d.check();
        d.h.s.handle_open(d.h.now);
        d.transport = Transport::Open;
        d.check();
    }
    for op in ops {
        d.apply(op);
        d.check();
    }
    d.quiesce();
}

// ------------------------------------------------------------------------------ byte codec

/// At most this many ops are decoded from one input (keeps a fuzz execution short).
pub const MAX_OPS: usize = 256;

/// A session: whether the socket connects and opens before the first op, the config variant
/// ([`Driver::new`]) and the ops.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// Connect and open before the first op.
    pub connect_first: bool,
    /// Config variant, 0..4.
    pub variant: u8,
    /// The ops, in order.
    pub ops: Vec<Op>,
}

/// Reads bytes front to back; every read past the end is `None`.
struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn u8(&mut self) -> Option<u8> {
        let (&b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(b)
    }
    fn u16(&mut self) -> Option<u16> {
        Some(u16::from_le_bytes([self.u8()?, self.u8()?]))
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        let (b, rest) = self.0.split_at(n.min(self.0.len()));
        self.0 = rest;
        b.to_vec()
    }
    fn text(&mut self, n: usize) -> String {
        String::from_utf8_lossy(&self.bytes(n)).into_owned()
    }
    fn ref_pick(&mut self) -> Option<RefPick> {
        let tag = self.u8()?;
        Some(match tag % 5 {
            0 => RefPick::Null,
            1 => RefPick::Sent(self.u8()?),
            2 => RefPick::Join(self.u8()?),
            3 => RefPick::Int(i64::from(self.u8()? as i8)),
            _ => {
                let n = self.u8()?;
                RefPick::Str(self.text(usize::from(n)))
            }
        })
    }
    fn op(&mut self) -> Option<Op> {
        let tag = self.u8()?;
        Some(match tag % 15 {
            0 => Op::Open,
            1 => Op::Close(self.u8()? % 4),
            2 => {
                let b = self.u8()?;
                Op::Join {
                    topic: b & 3,
                    presence: b & 4 != 0,
                }
            }
            3 => Op::Push {
                chan: self.u8()?,
                kind: self.u8()? % 5,
            },
            4 => Op::Leave { chan: self.u8()? },
            5 => Op::Disconnect,
            6 => Op::Connect,
            7 => Op::Advance(u32::from(self.u16()?)),
            8 => Op::Wake,
            9 => Op::Answer {
                which: self.u8()?,
                status: self.u8()? % 3,
                response: self.u8()? % 6,
            },
            10 => Op::Channel {
                which: self.u8()?,
                event: self.u8()? % 6,
                payload: self.u8()? % 9,
            },
            11 => Op::Frame {
                jr: self.ref_pick()?,
                r: self.ref_pick()?,
                topic: self.u8()? % 5,
                event: self.u8()? % 7,
                payload: self.u8()? % 9,
            },
            12 => {
                let n = self.u16()?;
                Op::Garbage(self.text(usize::from(n)))
            }
            13 => {
                let n = self.u16()?;
                Op::RandomBinary(self.bytes(usize::from(n)))
            }
            _ => {
                let kind = self.u8()? % 3;
                let which = self.u8()?;
                let n = self.u8()?;
                Op::ServerBinary {
                    kind,
                    which,
                    payload: self.bytes(usize::from(n)),
                }
            }
        })
    }
}

/// Decodes a session from arbitrary bytes: a header byte (bits 0-1 the variant, bit 2
/// connect-first), then ops (a tag byte, `tag % 15` picks the op, then its fixed fields; texts
/// and byte strings are length-prefixed, text read as lossy UTF-8). An op cut short by the end
/// of the input is dropped; at most [`MAX_OPS`] ops.
pub fn decode_session(data: &[u8]) -> Session {
    let mut r = Reader(data);
    let h = r.u8().unwrap_or(0);
    let mut ops = Vec::new();
    while ops.len() < MAX_OPS {
        let Some(op) = r.op() else { break };
        ops.push(op);
    }
    Session {
        connect_first: h & 4 != 0,
        variant: h & 3,
        ops,
    }
}

fn put_text(out: &mut Vec<u8>, s: &[u8], wide: bool) {
    if wide {
        let n = u16::try_from(s.len()).expect("at most 65535 bytes");
        out.extend_from_slice(&n.to_le_bytes());
    } else {
        out.push(u8::try_from(s.len()).expect("at most 255 bytes"));
    }
    out.extend_from_slice(s);
}

fn put_ref(out: &mut Vec<u8>, p: &RefPick) {
    match p {
        RefPick::Null => out.push(0),
        RefPick::Sent(k) => out.extend_from_slice(&[1, *k]),
        RefPick::Join(k) => out.extend_from_slice(&[2, *k]),
        RefPick::Int(i) => out.extend_from_slice(&[3, i8::try_from(*i).expect("i8 range") as u8]),
        RefPick::Str(s) => {
            out.push(4);
            put_text(out, s.as_bytes(), false);
        }
    }
}

/// Encodes a session so that [`decode_session`] gives it back (for seeds and for the
/// proptest check of the codec). Panics on a field the format cannot hold (an `Advance` over
/// 65535 ms, an `Int` ref outside `i8`, a text over its length prefix).
pub fn encode_session(s: &Session) -> Vec<u8> {
    let mut out = vec![s.variant & 3 | if s.connect_first { 4 } else { 0 }];
    for op in &s.ops {
        match op {
            Op::Open => out.push(0),
            Op::Close(k) => out.extend_from_slice(&[1, *k]),
            Op::Join { topic, presence } => {
                out.extend_from_slice(&[2, topic & 3 | if *presence { 4 } else { 0 }]);
            }
            Op::Push { chan, kind } => out.extend_from_slice(&[3, *chan, *kind]),
            Op::Leave { chan } => out.extend_from_slice(&[4, *chan]),
            Op::Disconnect => out.push(5),
            Op::Connect => out.push(6),
            Op::Advance(ms) => {
                out.push(7);
                let ms = u16::try_from(*ms).expect("at most 65535 ms");
                out.extend_from_slice(&ms.to_le_bytes());
            }
            Op::Wake => out.push(8),
            Op::Answer {
                which,
                status,
                response,
            } => out.extend_from_slice(&[9, *which, *status, *response]),
            Op::Channel {
                which,
                event,
                payload,
            } => out.extend_from_slice(&[10, *which, *event, *payload]),
            Op::Frame {
                jr,
                r,
                topic,
                event,
                payload,
            } => {
                out.push(11);
                put_ref(&mut out, jr);
                put_ref(&mut out, r);
                out.extend_from_slice(&[*topic, *event, *payload]);
            }
            Op::Garbage(s) => {
                out.push(12);
                put_text(&mut out, s.as_bytes(), true);
            }
            Op::RandomBinary(b) => {
                out.push(13);
                put_text(&mut out, b, true);
            }
            Op::ServerBinary {
                kind,
                which,
                payload,
            } => {
                out.extend_from_slice(&[14, *kind, *which]);
                put_text(&mut out, payload, false);
            }
        }
    }
    out
}

/// The `socket` fuzz target: decode a session from `data` and run it through the driver
/// with every invariant checked (panics on a violation).
pub fn socket(data: &[u8]) {
    let s = decode_session(data);
    run(&s.ops, s.connect_first, s.variant);
}
