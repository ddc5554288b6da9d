//! Shared helpers for the `protocol_*` integration tests.
//!
//! - The Phoenix transcripts (copied from ../shared into `tests/data/`), parsed into frames.
//! - [`H`]: a harness that drives a [`Socket`] with injected time (no sleeps, no network).
//! - [`Replay`]: feeds a transcript's server frames into a socket as if it had sent the
//!   transcript's client frames, mapping the transcript's refs to the socket's own.
//! - Test-side binary codecs (independent of `wire`), for cross-checks.
#![allow(dead_code, clippy::unwrap_used)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use bevy_phoenix_channels::protocol::*;
use serde_json::Value;
use serde_json::value::RawValue;
use web_time::Instant;

// ------------------------------------------------------------------------------ transcripts

/// Which way a frame went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dir {
    /// `>>`: client to server.
    ToServer,
    /// `<<`: server to client.
    ToClient,
}

/// What the capture script printed next to a binary frame:
/// `kind=1(reply) join_ref_size=1 ... join_ref="1" ref="2" topic="echo:1" status="ok" data=00ff`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Note {
    /// The kind byte, when the script understood the frame.
    pub kind: Option<u8>,
    /// `key="value"` fields (join_ref, ref, topic, event, status) and `*_size` numbers.
    pub fields: HashMap<String, String>,
    /// `data=` as bytes.
    pub data: Option<Vec<u8>>,
}

/// A frame's content.
#[derive(Debug, Clone, PartialEq)]
pub enum Body {
    /// A text frame, exactly as captured.
    Text(String),
    /// A binary frame from its hex dump, with the script's annotation.
    Binary {
        /// The bytes (from the hex dump).
        bytes: Vec<u8>,
        /// The annotation.
        note: Note,
    },
}

/// One captured frame.
#[derive(Debug, Clone)]
pub struct Frame {
    /// File it came from (relative to tests/data).
    pub file: String,
    /// 1-based line number.
    pub line: usize,
    /// `[+ms]`.
    pub ms: u64,
    /// Direction.
    pub dir: Dir,
    /// Connection letter (A, B, ...).
    pub conn: char,
    /// Content.
    pub body: Body,
    /// True for a LongPoll message (transcript 34) rather than a WebSocket frame.
    pub longpoll: bool,
}

impl Frame {
    /// The text of a text frame (panics on binary).
    pub fn text(&self) -> &str {
        match &self.body {
            Body::Text(t) => t,
            Body::Binary { .. } => panic!("{}:{} is binary", self.file, self.line),
        }
    }

    /// Where it came from, for messages.
    pub fn at(&self) -> String {
        format!("{}:{}", self.file, self.line)
    }
}

/// A parsed transcript.
#[derive(Debug, Clone, Default)]
pub struct Transcript {
    /// File name relative to tests/data.
    pub name: String,
    /// Every WebSocket (and LongPoll) frame, in order.
    pub frames: Vec<Frame>,
    /// `-- X CONNECT url` lines.
    pub connects: Vec<(char, String)>,
    /// `Sec-WebSocket-Protocol:` lines of raw request heads (1.8 captures).
    pub subprotocols: Vec<(char, String)>,
    /// `-- X CLOSED by/after server: code=N` lines.
    pub closes: Vec<(char, u16)>,
}

impl Transcript {
    /// Frames of one connection.
    pub fn conn(&self, c: char) -> Vec<Frame> {
        self.frames
            .iter()
            .filter(|f| f.conn == c)
            .cloned()
            .collect()
    }
}

/// `tests/data`.
pub fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data")
}

/// Loads and parses `tests/data/<rel>`.
pub fn load(rel: &str) -> Transcript {
    let path = data_dir().join(rel);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    parse(rel, &text)
}

/// Every transcript under tests/data (phoenix-wire, phoenix-wire-1.8 and its parity/), sorted.
pub fn all_transcripts() -> Vec<Transcript> {
    let mut names = Vec::new();
    for dir in [
        "phoenix-wire",
        "phoenix-wire-1.8",
        "phoenix-wire-1.8/parity",
    ] {
        let mut here: Vec<String> = std::fs::read_dir(data_dir().join(dir))
            .unwrap()
            .filter_map(|e| {
                let name = e.ok()?.file_name().into_string().ok()?;
                name.ends_with(".txt").then(|| format!("{dir}/{name}"))
            })
            .collect();
        here.sort();
        names.extend(here);
    }
    names.iter().map(|n| load(n)).collect()
}

fn is_hex_dump(l: &str) -> bool {
    let Some(rest) = l.strip_prefix("      ") else {
        return false;
    };
    let b = rest.as_bytes();
    b.len() > 6 && b[..4].iter().all(u8::is_ascii_hexdigit) && &b[4..6] == b"  "
}

fn parse_hex_dump(l: &str) -> Vec<u8> {
    let rest = &l.trim_start()[4..];
    let hex = rest.split('|').next().unwrap_or("");
    hex.split_whitespace()
        .map(|h| u8::from_str_radix(h, 16).unwrap())
        .collect()
}

fn parse_hex(s: &str) -> Vec<u8> {
    assert!(s.len().is_multiple_of(2), "odd hex {s:?}");
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// `kind=0(push) join_ref_size=1 ... join_ref="1" topic="echo:1" data=090807`.
fn parse_note(s: &str) -> Note {
    let mut note = Note::default();
    let mut rest = s.trim();
    while !rest.is_empty() {
        let Some(eq) = rest.find('=') else { break };
        let key = rest[..eq].trim().to_owned();
        let after = &rest[eq + 1..];
        let (value, next) = if let Some(q) = after.strip_prefix('"') {
            let end = q.find('"').unwrap();
            (q[..end].to_owned(), &q[end + 1..])
        } else {
            let end = after.find(' ').unwrap_or(after.len());
            (after[..end].to_owned(), &after[end..])
        };
        match key.as_str() {
            "kind" => {
                let digits: String = value.chars().take_while(char::is_ascii_digit).collect();
                note.kind = Some(digits.parse().unwrap());
            }
            "data" => note.data = Some(parse_hex(&value)),
            _ => {
                note.fields.insert(key, value);
            }
        }
        rest = next.trim_start();
    }
    note
}

/// Parses one transcript.
pub fn parse(name: &str, text: &str) -> Transcript {
    let lines: Vec<&str> = text.lines().collect();
    let mut t = Transcript {
        name: name.to_owned(),
        ..Transcript::default()
    };
    let mut i = 0;
    while i < lines.len() {
        let lineno = i + 1;
        let l = lines[i];
        i += 1;
        let Some(rest) = l.strip_prefix("[+") else {
            continue;
        };
        let Some(close) = rest.find("] ") else {
            continue;
        };
        let ms: u64 = rest[..close]
            .trim()
            .trim_end_matches("ms")
            .trim()
            .parse()
            .unwrap();
        let rest = &rest[close + 2..];
        let (dir, rest) = if let Some(r) = rest.strip_prefix(">> ") {
            (Some(Dir::ToServer), r)
        } else if let Some(r) = rest.strip_prefix("<< ") {
            (Some(Dir::ToClient), r)
        } else if let Some(r) = rest.strip_prefix("-- ") {
            (None, r)
        } else {
            continue;
        };
        let conn = rest.chars().next().unwrap_or('?');
        let rest = rest.get(2..).unwrap_or("");
        let Some(dir) = dir else {
            if let Some(url) = rest.strip_prefix("CONNECT ") {
                t.connects.push((conn, url.to_owned()));
            } else if let Some(c) = rest.strip_prefix("CLOSED by/after server: code=") {
                let code: String = c.chars().take_while(char::is_ascii_digit).collect();
                t.closes.push((conn, code.parse().unwrap()));
            } else if rest.starts_with("REQUEST HEAD") {
                while i < lines.len() && lines[i].starts_with("      ") {
                    if let Some(v) = lines[i].trim().strip_prefix("Sec-WebSocket-Protocol:") {
                        t.subprotocols.push((conn, v.trim().to_owned()));
                    }
                    i += 1;
                }
            }
            continue;
        };
        let frame = |body, longpoll| Frame {
            file: name.to_owned(),
            line: lineno,
            ms,
            dir,
            conn,
            body,
            longpoll,
        };
        if let Some(text) = rest.strip_prefix("TEXT") {
            let text = text.strip_prefix(' ').unwrap_or(text);
            t.frames.push(frame(Body::Text(text.to_owned()), false));
        } else if let Some(b) = rest.strip_prefix("BINARY ") {
            let (size, note) = b.split_once(" bytes:").unwrap();
            let size: usize = size.trim().parse().unwrap();
            let note = parse_note(note);
            let mut bytes = Vec::new();
            while i < lines.len() && is_hex_dump(lines[i]) {
                bytes.extend(parse_hex_dump(lines[i]));
                i += 1;
            }
            assert_eq!(bytes.len(), size, "{name}:{lineno}: hex dump length");
            t.frames.push(frame(Body::Binary { bytes, note }, false));
        } else if rest.starts_with("HTTP ") {
            // LongPoll (34): a POST body is one client frame; a GET answer holds a list of
            // server frames as JSON strings.
            let Some((_, body)) = rest.split_once(" body: ") else {
                continue;
            };
            match dir {
                Dir::ToServer => t.frames.push(frame(Body::Text(body.to_owned()), true)),
                Dir::ToClient => {
                    let v: Value = serde_json::from_str(body).unwrap();
                    if let Some(msgs) = v.get("messages").and_then(Value::as_array) {
                        for m in msgs {
                            let s = m.as_str().unwrap().to_owned();
                            t.frames.push(frame(Body::Text(s), true));
                        }
                    }
                }
            }
        }
    }
    t
}

// ------------------------------------------------------------------- test-side binary codec

/// A binary frame as the test decodes it (independently of `wire`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Bin {
    /// Client push (kind 0, 5-byte header).
    ClientPush {
        /// join_ref.
        join_ref: String,
        /// ref.
        msg_ref: String,
        /// topic.
        topic: String,
        /// event.
        event: String,
        /// payload.
        payload: Vec<u8>,
    },
    /// Server push (kind 0, 4-byte header).
    ServerPush {
        /// join_ref.
        join_ref: String,
        /// topic.
        topic: String,
        /// event.
        event: String,
        /// payload.
        payload: Vec<u8>,
    },
    /// Reply (kind 1).
    Reply {
        /// join_ref.
        join_ref: String,
        /// ref.
        msg_ref: String,
        /// topic.
        topic: String,
        /// status.
        status: String,
        /// payload.
        payload: Vec<u8>,
    },
    /// Broadcast (kind 2).
    Broadcast {
        /// topic.
        topic: String,
        /// event.
        event: String,
        /// payload.
        payload: Vec<u8>,
    },
}

fn split_fields(b: &[u8], n: usize) -> Option<(Vec<String>, Vec<u8>)> {
    let lens = b.get(1..1 + n)?;
    let mut at = 1 + n;
    let mut out = Vec::new();
    for &l in lens {
        let f = b.get(at..at + usize::from(l))?;
        out.push(String::from_utf8(f.to_vec()).ok()?);
        at += usize::from(l);
    }
    Some((out, b[at..].to_vec()))
}

/// Decodes a client kind-0 push (5-byte header).
pub fn decode_client_push(b: &[u8]) -> Option<Bin> {
    if b.first() != Some(&0) {
        return None;
    }
    let (f, payload) = split_fields(b, 4)?;
    Some(Bin::ClientPush {
        join_ref: f[0].clone(),
        msg_ref: f[1].clone(),
        topic: f[2].clone(),
        event: f[3].clone(),
        payload,
    })
}

/// Decodes a server frame (kind 0 push with 4-byte header, 1 reply, 2 broadcast).
pub fn decode_server_bin(b: &[u8]) -> Option<Bin> {
    match b.first()? {
        0 => {
            let (f, payload) = split_fields(b, 3)?;
            Some(Bin::ServerPush {
                join_ref: f[0].clone(),
                topic: f[1].clone(),
                event: f[2].clone(),
                payload,
            })
        }
        1 => {
            let (f, payload) = split_fields(b, 4)?;
            Some(Bin::Reply {
                join_ref: f[0].clone(),
                msg_ref: f[1].clone(),
                topic: f[2].clone(),
                status: f[3].clone(),
                payload,
            })
        }
        2 => {
            let (f, payload) = split_fields(b, 2)?;
            Some(Bin::Broadcast {
                topic: f[0].clone(),
                event: f[1].clone(),
                payload,
            })
        }
        _ => None,
    }
}

fn put(out: &mut Vec<u8>, kind: u8, fields: &[&str], payload: &[u8]) {
    out.push(kind);
    for f in fields {
        out.push(u8::try_from(f.len()).unwrap());
    }
    for f in fields {
        out.extend_from_slice(f.as_bytes());
    }
    out.extend_from_slice(payload);
}

/// Encodes a binary frame the way Phoenix (or phoenix.js, for `ClientPush`) does.
pub fn encode_bin(b: &Bin) -> Vec<u8> {
    let mut out = Vec::new();
    match b {
        Bin::ClientPush {
            join_ref,
            msg_ref,
            topic,
            event,
            payload,
        } => put(&mut out, 0, &[join_ref, msg_ref, topic, event], payload),
        Bin::ServerPush {
            join_ref,
            topic,
            event,
            payload,
        } => put(&mut out, 0, &[join_ref, topic, event], payload),
        Bin::Reply {
            join_ref,
            msg_ref,
            topic,
            status,
            payload,
        } => put(&mut out, 1, &[join_ref, msg_ref, topic, status], payload),
        Bin::Broadcast {
            topic,
            event,
            payload,
        } => put(&mut out, 2, &[topic, event], payload),
    }
    out
}

// ------------------------------------------------------------------------------- frames

/// A text frame parsed as a JSON array.
pub fn arr(frame: &str) -> Vec<Value> {
    match serde_json::from_str(frame) {
        Ok(Value::Array(a)) => a,
        other => panic!("not a JSON array: {frame:?} ({other:?})"),
    }
}

/// The raw JSON text of each element of a text frame (payload bytes kept exactly).
pub fn raw_elements(frame: &str) -> Vec<String> {
    let v: Vec<Box<RawValue>> = serde_json::from_str(frame).unwrap();
    v.into_iter().map(|r| r.get().to_owned()).collect()
}

/// The numeric value of a string ref in a frame we sent.
pub fn num_ref(v: &Value) -> u64 {
    v.as_str().unwrap().parse().unwrap()
}

/// `(join_ref, ref)` of a frame we sent.
pub fn refs_of(frame: &str) -> (Option<u64>, Option<u64>) {
    let a = arr(frame);
    let r = |v: &Value| (!v.is_null()).then(|| num_ref(v));
    (r(&a[0]), r(&a[1]))
}

/// Event name of a frame.
pub fn event_of(frame: &str) -> String {
    arr(frame)[3].as_str().unwrap().to_owned()
}

fn jref(r: Option<u64>) -> String {
    r.map_or("null".to_owned(), |r| format!("\"{r}\""))
}

/// A `phx_reply` text frame.
pub fn reply(join_ref: Option<u64>, r: u64, topic: &str, status: &str, response: &str) -> String {
    format!(
        "[{},\"{r}\",\"{topic}\",\"phx_reply\",{{\"response\":{response},\"status\":\"{status}\"}}]",
        jref(join_ref)
    )
}

/// An ok `phx_reply`.
pub fn ok(join_ref: u64, r: u64, topic: &str, response: &str) -> String {
    reply(Some(join_ref), r, topic, "ok", response)
}

/// A server push or broadcast `[join_ref, null, topic, event, payload]`.
pub fn msg(join_ref: Option<u64>, topic: &str, event: &str, payload: &str) -> String {
    format!(
        "[{},null,\"{topic}\",\"{event}\",{payload}]",
        jref(join_ref)
    )
}

/// A `phx_error` / `phx_close` (ref = join_ref, as Phoenix sends them).
pub fn ctl(join_ref: u64, topic: &str, event: &str) -> String {
    format!("[\"{join_ref}\",\"{join_ref}\",\"{topic}\",\"{event}\",{{}}]")
}

/// JSON text → value.
pub fn val(json: &str) -> Value {
    serde_json::from_str(json).unwrap_or_else(|e| panic!("{json:?}: {e}"))
}

/// A JSON payload as a value.
pub fn pval(p: &Payload) -> Value {
    p.to_value().unwrap()
}

/// JSON payload for a push.
pub fn raw(json: &str) -> OutPayload {
    OutPayload::raw_json(json).unwrap()
}

// -------------------------------------------------------------------------------- events

/// Every reply in `events`.
pub fn replies(events: &[Event]) -> Vec<&PushReply> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Reply(r) => Some(r),
            _ => None,
        })
        .collect()
}

/// The single outcome of `push` in `events` (panics unless exactly one).
pub fn outcome(events: &[Event], push: PushId) -> PushOutcome {
    let found: Vec<&PushReply> = replies(events)
        .into_iter()
        .filter(|r| r.push == push)
        .collect();
    assert_eq!(found.len(), 1, "replies for {push} in {events:#?}");
    found[0].outcome.clone()
}

/// Asserts no reply for `push` in `events`.
pub fn no_outcome(events: &[Event], push: PushId) {
    assert!(
        replies(events).iter().all(|r| r.push != push),
        "unexpected reply for {push}: {events:#?}"
    );
}

/// The ok payload of `push` as a JSON value.
pub fn ok_value(events: &[Event], push: PushId) -> Value {
    match outcome(events, push) {
        PushOutcome::Ok(p) => pval(&p),
        other => panic!("{push}: expected Ok, got {other:?}"),
    }
}

/// Messages in `events`.
pub fn messages(events: &[Event]) -> Vec<&InboundMessage> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Message(m) => Some(m),
            _ => None,
        })
        .collect()
}

/// Presence events in `events`.
pub fn presence_events(events: &[Event]) -> Vec<&PresenceEvent> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Presence { event, .. } => Some(event),
            _ => None,
        })
        .collect()
}

/// True when some event is a protocol error.
pub fn has_protocol_error(events: &[Event]) -> bool {
    events.iter().any(|e| matches!(e, Event::ProtocolError(_)))
}

// ------------------------------------------------------------------------------- harness

/// The endpoint every test uses.
pub const ENDPOINT: &str = "ws://127.0.0.1:4000/socket";

/// A config with no jitter and a fixed seed: exact delays.
pub fn cfg() -> SocketConfig {
    SocketConfig::new(ENDPOINT)
        .with_jitter(0.0)
        .with_rng_seed(7)
}

/// Drives a [`Socket`] with injected time.
pub struct H {
    /// The socket.
    pub s: Socket,
    /// Time zero.
    pub t0: Instant,
    /// Now.
    pub now: Instant,
}

impl H {
    /// A socket at time zero.
    pub fn new(config: SocketConfig) -> Self {
        let t0 = Instant::now();
        H {
            s: Socket::new(config),
            t0,
            now: t0,
        }
    }

    /// Time since t0.
    pub fn elapsed(&self) -> Duration {
        self.now - self.t0
    }

    /// Checks the no-busy-loop rule: after `handle_timeout(now)` the next timeout is later.
    pub fn check_timeout(&self) {
        if let Some(t) = self.s.poll_timeout() {
            assert!(
                t > self.now,
                "poll_timeout {:?} is not after now {:?} (busy loop)",
                t - self.t0,
                self.elapsed()
            );
        }
    }

    /// Moves the clock to `t0 + at`, calling `handle_timeout` at every `poll_timeout` on the
    /// way (as an adapter does), then at `at` itself.
    pub fn advance_to(&mut self, at: Duration) {
        let target = self.t0 + at;
        assert!(target >= self.now, "time goes forward");
        let mut guard = 0;
        while let Some(t) = self.s.poll_timeout() {
            if t > target {
                break;
            }
            self.now = self.now.max(t);
            self.s.handle_timeout(self.now);
            self.check_timeout();
            guard += 1;
            assert!(guard < 100_000, "timers never settle");
        }
        self.now = target;
        self.s.handle_timeout(self.now);
        self.check_timeout();
    }

    /// Moves the clock forward by `d`.
    pub fn advance(&mut self, d: Duration) {
        self.advance_to(self.elapsed() + d);
    }

    /// Drains outputs.
    pub fn outputs(&mut self) -> Vec<Output> {
        std::iter::from_fn(|| self.s.poll_output()).collect()
    }

    /// Drains events.
    pub fn events(&mut self) -> Vec<Event> {
        std::iter::from_fn(|| self.s.poll_event()).collect()
    }

    /// Drains outputs, which must all be frames.
    pub fn sent(&mut self) -> Vec<Transmit> {
        self.outputs()
            .into_iter()
            .map(|o| match o {
                Output::Send(t) => t,
                other => panic!("expected a frame, got {other:?}"),
            })
            .collect()
    }

    /// Drains outputs, which must all be text frames.
    pub fn sent_text(&mut self) -> Vec<String> {
        self.sent()
            .into_iter()
            .map(|t| match t {
                Transmit::Text(s) => s,
                Transmit::Binary(b) => panic!("expected text, got binary {b:?}"),
            })
            .collect()
    }

    /// Drains outputs, which must be exactly one text frame.
    pub fn one_text(&mut self) -> String {
        let mut v = self.sent_text();
        assert_eq!(v.len(), 1, "expected one frame, got {v:?}");
        v.remove(0)
    }

    /// Asserts nothing is waiting to go out.
    pub fn nothing_sent(&mut self) {
        let o = self.outputs();
        assert!(o.is_empty(), "unexpected outputs {o:?}");
    }

    /// `connect`, expecting a Connect output; returns it.
    pub fn connect(&mut self) -> ConnectRequest {
        self.s.connect(self.now);
        self.expect_connect()
    }

    /// The next outputs must be exactly one Connect.
    pub fn expect_connect(&mut self) -> ConnectRequest {
        let mut o = self.outputs();
        assert_eq!(o.len(), 1, "expected one Connect, got {o:?}");
        match o.remove(0) {
            Output::Connect(r) => r,
            other => panic!("expected Connect, got {other:?}"),
        }
    }

    /// Connects and opens; drains the events.
    pub fn open(&mut self) {
        self.connect();
        self.s.handle_open(self.now);
        assert!(self.s.is_connected());
        self.events();
    }

    /// Feeds a text frame.
    pub fn text(&mut self, frame: impl Into<String>) {
        self.s.handle_text(self.now, frame.into());
    }

    /// Feeds a binary frame.
    pub fn binary(&mut self, frame: impl Into<Vec<u8>>) {
        self.s.handle_binary(self.now, frame.into());
    }

    /// The transport closed.
    pub fn closed(&mut self, how: TransportClosed) {
        self.s.handle_closed(self.now, how);
    }

    /// Joins `topic` on an open socket and answers ok; returns the channel and its join_ref.
    pub fn join_ok(&mut self, topic: &str) -> (ChannelId, u64) {
        let ch = self
            .s
            .join(self.now, topic, OutPayload::empty(), JoinOptions::default());
        let frame = self.one_text();
        let (jr, r) = refs_of(&frame);
        assert_eq!(event_of(&frame), "phx_join");
        assert_eq!(jr, r);
        let jr = jr.unwrap();
        self.text(ok(jr, jr, topic, "{}"));
        let ev = self.events();
        assert!(
            ev.iter()
                .any(|e| matches!(e, Event::Joined { channel, .. } if *channel == ch)),
            "{ev:?}"
        );
        (ch, jr)
    }

    /// Pushes `{}` on `ch` with default options.
    pub fn push(&mut self, ch: ChannelId, event: &str) -> PushId {
        self.s.push(
            self.now,
            ch,
            event,
            OutPayload::empty(),
            PushOptions::default(),
        )
    }

    /// A channel's state (`None` once closed).
    pub fn state(&self, ch: ChannelId) -> Option<ChannelState> {
        self.s.channel(ch).map(|c| c.state)
    }
}

// -------------------------------------------------------------------------------- replay

/// The connect URL and close code of connection `conn` in `tests/data/<rel>`.
pub fn connect_and_close(rel: &str, conn: char) -> (String, Option<u16>) {
    let t = load(rel);
    let url = t
        .connects
        .iter()
        .find(|(c, _)| *c == conn)
        .unwrap()
        .1
        .clone();
    let code = t
        .closes
        .iter()
        .find(|(c, _)| *c == conn)
        .map(|(_, code)| *code);
    (url, code)
}

/// Replays one connection of a transcript against a socket.
///
/// `expect_sent` takes the socket's next output and checks it against the transcript's next
/// `>>` frame: topic, event and payload equal (JSON as values, binary byte for byte), refs
/// equal once mapped. The first time a transcript ref is seen it is mapped to ours. When
/// every mapping so far is the identity the frames must also be byte-identical.
/// `deliver` feeds the next `<<` frame with its refs mapped to ours.
pub struct Replay {
    /// The transcript.
    pub name: String,
    frames: Vec<Frame>,
    pos: usize,
    /// Transcript ref → our ref.
    pub map: HashMap<String, String>,
}

impl Replay {
    /// Replays connection `conn` of `tests/data/<rel>`.
    pub fn new(rel: &str, conn: char) -> Self {
        let t = load(rel);
        let frames = t.conn(conn);
        assert!(!frames.is_empty(), "{rel}: no frames for {conn}");
        Replay {
            name: rel.to_owned(),
            frames,
            pos: 0,
            map: HashMap::new(),
        }
    }

    /// The next frame, if any.
    pub fn peek(&self) -> Option<&Frame> {
        self.frames.get(self.pos)
    }

    fn take(&mut self, dir: Dir) -> Frame {
        let f = self
            .frames
            .get(self.pos)
            .unwrap_or_else(|| panic!("{}: no more frames", self.name))
            .clone();
        assert_eq!(f.dir, dir, "{}: next frame is {:?}", f.at(), f.body);
        self.pos += 1;
        f
    }

    /// Skips a `>>` frame our client does not send (a hand-made ref, a malformed frame).
    pub fn skip_sent(&mut self) -> Frame {
        self.take(Dir::ToServer)
    }

    /// Skips a `<<` frame.
    pub fn skip_received(&mut self) -> Frame {
        self.take(Dir::ToClient)
    }

    /// Maps transcript ref `theirs` to our ref `ours`.
    pub fn map(&mut self, theirs: &str, ours: u64) {
        self.map.insert(theirs.to_owned(), ours.to_string());
    }

    /// True when every mapping so far is the identity.
    pub fn identity(&self) -> bool {
        self.map.iter().all(|(k, v)| k == v)
    }

    /// True when every frame has been used.
    pub fn done(&self) -> bool {
        self.pos == self.frames.len()
    }

    fn match_ref(&mut self, at: &str, theirs: Option<&str>, ours: Option<&str>) {
        match (theirs, ours) {
            (None, None) => {}
            (Some(t), Some(o)) => match self.map.get(t) {
                Some(m) => assert_eq!(m, o, "{at}: transcript ref {t} is our {m}, not {o}"),
                None => {
                    assert!(
                        !self.map.values().any(|v| v == o),
                        "{at}: our ref {o} already stands for another transcript ref"
                    );
                    self.map.insert(t.to_owned(), o.to_owned());
                }
            },
            _ => panic!("{at}: ref {theirs:?} vs ours {ours:?}"),
        }
    }

    /// The socket's next output must be the transcript's next `>>` frame.
    pub fn expect_sent(&mut self, h: &mut H) {
        let f = self.take(Dir::ToServer);
        let ours = match h.s.poll_output() {
            Some(Output::Send(t)) => t,
            other => panic!("{}: expected {:?}, socket output {other:?}", f.at(), f.body),
        };
        self.compare_sent(&f, &ours);
    }

    /// Compares one of our frames with transcript frame `f`.
    pub fn compare_sent(&mut self, f: &Frame, ours: &Transmit) {
        let at = f.at();
        match (&f.body, ours) {
            (Body::Text(theirs), Transmit::Text(ours)) => {
                let t = arr(theirs);
                let o = arr(ours);
                assert_eq!(o.len(), 5, "{at}: {ours}");
                assert_eq!(t[2..5], o[2..5], "{at}: topic/event/payload of {ours}");
                self.match_ref(&at, t[0].as_str(), o[0].as_str());
                self.match_ref(&at, t[1].as_str(), o[1].as_str());
                if self.identity() {
                    assert_eq!(theirs, ours, "{at}: byte-identical frame");
                }
            }
            (Body::Binary { bytes, .. }, Transmit::Binary(ours)) => {
                let Some(Bin::ClientPush {
                    join_ref: tj,
                    msg_ref: tr,
                    topic: tt,
                    event: te,
                    payload: tp,
                }) = decode_client_push(bytes)
                else {
                    panic!("{at}: not a client push")
                };
                let Some(Bin::ClientPush {
                    join_ref: oj,
                    msg_ref: or,
                    topic: ot,
                    event: oe,
                    payload: op,
                }) = decode_client_push(ours)
                else {
                    panic!("{at}: ours is not a client push: {ours:?}")
                };
                assert_eq!((tt, te, tp), (ot, oe, op), "{at}");
                let opt = |s: &str| (!s.is_empty()).then(|| s.to_owned());
                self.match_ref(&at, opt(&tj).as_deref(), opt(&oj).as_deref());
                self.match_ref(&at, Some(&tr), Some(&or));
                if self.identity() {
                    assert_eq!(bytes, ours, "{at}: byte-identical binary frame");
                }
            }
            (theirs, ours) => panic!("{at}: {theirs:?} vs ours {ours:?}"),
        }
    }

    fn mapped(&self, r: &str) -> String {
        self.map.get(r).cloned().unwrap_or_else(|| r.to_owned())
    }

    /// The next `<<` frame with refs mapped to ours.
    pub fn next_received(&mut self) -> Body {
        let f = self.take(Dir::ToClient);
        match &f.body {
            Body::Text(t) => {
                let mut el = raw_elements(t);
                for e in el.iter_mut().take(2) {
                    if let Ok(Value::String(s)) = serde_json::from_str::<Value>(e) {
                        *e = Value::String(self.mapped(&s)).to_string();
                    }
                }
                Body::Text(format!("[{}]", el.join(",")))
            }
            Body::Binary { bytes, note } => {
                let mut b = decode_server_bin(bytes)
                    .unwrap_or_else(|| panic!("{}: not a server frame", f.at()));
                match &mut b {
                    Bin::ServerPush { join_ref, .. } => *join_ref = self.mapped(join_ref),
                    Bin::Reply {
                        join_ref, msg_ref, ..
                    } => {
                        *join_ref = self.mapped(join_ref);
                        *msg_ref = self.mapped(msg_ref);
                    }
                    Bin::Broadcast { .. } | Bin::ClientPush { .. } => {}
                }
                Body::Binary {
                    bytes: encode_bin(&b),
                    note: note.clone(),
                }
            }
        }
    }

    /// Feeds the next `<<` frame (refs mapped) to the socket.
    pub fn deliver(&mut self, h: &mut H) {
        match self.next_received() {
            Body::Text(t) => h.text(t),
            Body::Binary { bytes, .. } => h.binary(bytes),
        }
    }

    /// Feeds every `<<` frame up to the next `>>` (or the end).
    pub fn deliver_all(&mut self, h: &mut H) {
        while self.peek().is_some_and(|f| f.dir == Dir::ToClient) {
            self.deliver(h);
        }
    }
}
