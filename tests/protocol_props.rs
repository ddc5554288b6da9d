//! Property tests of the socket: random interleavings of server frames (valid-looking with
//! random refs/topics/events/statuses, answers to what we sent, garbage, random binary),
//! transport events, app commands and time jumps. They never panic and keep the invariants:
//! every push gets exactly one reply (after driving to quiescence), at most one live channel
//! per topic, channel states consistent with the events, outputs only on an open transport,
//! no wake-up in the past.
#![allow(clippy::unwrap_used)]

#[path = "support/protocol.rs"]
mod support;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use proptest::prelude::*;
use support::*;

const JOIN_TOPICS: [&str; 4] = ["room:0", "room:1", "room:2", "phoenix"];
const ANY_TOPICS: [&str; 5] = ["room:0", "room:1", "room:2", "phoenix", "other"];
const EVENTS: [&str; 7] = [
    "phx_reply",
    "phx_error",
    "phx_close",
    "presence_state",
    "presence_diff",
    "msg",
    "phx_join",
];
const PAYLOADS: [&str; 9] = [
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
const RESPONSES: [&str; 6] = ["{}", "null", r#""s""#, "[1]", r#"{"a":1}"#, ""];
const STATUSES: [&str; 3] = ["ok", "error", "timeout"];

#[derive(Debug, Clone)]
enum RefPick {
    Null,
    /// The k-th most recent ref we sent.
    Sent(u8),
    /// The k-th most recent join_ref we sent.
    Join(u8),
    Int(i64),
    Str(String),
}

#[derive(Debug, Clone)]
enum Op {
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

fn ref_pick() -> impl Strategy<Value = RefPick> {
    prop_oneof![
        2 => Just(RefPick::Null),
        4 => any::<u8>().prop_map(RefPick::Sent),
        3 => any::<u8>().prop_map(RefPick::Join),
        1 => (0i64..5).prop_map(RefPick::Int),
        1 => prop_oneof![Just("hb".to_owned()), Just("01".to_owned()), "[0-9]{1,3}"].prop_map(RefPick::Str),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => Just(Op::Open),
        1 => (0u8..4).prop_map(Op::Close),
        4 => (0u8..4, any::<bool>()).prop_map(|(topic, presence)| Op::Join { topic, presence }),
        7 => (any::<u8>(), 0u8..5).prop_map(|(chan, kind)| Op::Push { chan, kind }),
        1 => any::<u8>().prop_map(|chan| Op::Leave { chan }),
        1 => Just(Op::Disconnect),
        2 => Just(Op::Connect),
        4 => prop_oneof![0u32..50, 0u32..3_000, 5_000u32..40_000].prop_map(Op::Advance),
        3 => Just(Op::Wake),
        8 => (any::<u8>(), 0u8..3, 0u8..6)
            .prop_map(|(which, status, response)| Op::Answer { which, status, response }),
        4 => (any::<u8>(), 0u8..6, 0u8..9)
            .prop_map(|(which, event, payload)| Op::Channel { which, event, payload }),
        3 => (ref_pick(), ref_pick(), 0u8..5, 0u8..7, 0u8..9)
            .prop_map(|(jr, r, topic, event, payload)| Op::Frame { jr, r, topic, event, payload }),
        1 => prop_oneof![any::<String>(), "\\[[\\[\\]\"0-9a-z,{}:]{0,30}"].prop_map(Op::Garbage),
        1 => prop::collection::vec(any::<u8>(), 0..24).prop_map(Op::RandomBinary),
        2 => (0u8..3, any::<u8>(), prop::collection::vec(any::<u8>(), 0..8))
            .prop_map(|(kind, which, payload)| Op::ServerBinary { kind, which, payload }),
    ]
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Transport {
    None,
    Connecting,
    Open,
}

/// A frame we sent: (join_ref, ref, topic, event).
type Sent = (Option<String>, Option<String>, String, String);

struct Driver {
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

fn pick<T>(v: &[T], k: u8) -> Option<&T> {
    (!v.is_empty()).then(|| &v[v.len() - 1 - usize::from(k) % v.len()])
}

fn json_ref(r: Option<&str>) -> String {
    r.map_or("null".to_owned(), |r| serde_json::to_string(r).unwrap())
}

impl Driver {
    /// `variant`: 0 defaults, 1 heartbeat timeout longer than the interval, 2 shorter,
    /// 3 at most 2 reconnect attempts and full jitter.
    fn new(variant: u8) -> Self {
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

    fn apply(&mut self, op: &Op) {
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
    fn check(&mut self) {
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
    fn quiesce(&mut self) {
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

fn run(ops: &[Op], connect_first: bool, variant: u8) {
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

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 256,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn random_sessions_keep_the_invariants(
        ops in prop::collection::vec(op(), 1..80),
        connect_first in any::<bool>(),
        variant in 0u8..4,
    ) {
        run(&ops, connect_first, variant);
    }
}

/// A long deterministic session through the same driver, so the invariants are also checked
/// on a run that certainly joins, pushes, crashes, reconnects and leaves.
#[test]
fn scripted_session_keeps_the_invariants() {
    let mut ops = vec![
        Op::Join {
            topic: 0,
            presence: true,
        },
        Op::Join {
            topic: 1,
            presence: false,
        },
    ];
    for i in 0..30u8 {
        ops.push(Op::Push {
            chan: i,
            kind: i % 5,
        });
        ops.push(Op::Answer {
            which: 0,
            status: i % 2,
            response: i % 6,
        });
        if i % 7 == 3 {
            ops.push(Op::Channel {
                which: 0,
                event: 0,
                payload: 0,
            });
        }
        if i % 11 == 5 {
            ops.push(Op::Close(1));
            ops.push(Op::Wake);
            ops.push(Op::Open);
        }
        ops.push(Op::Advance(700));
    }
    ops.push(Op::Leave { chan: 0 });
    for variant in 0..4 {
        run(&ops, true, variant);
    }
}
