//! The Phoenix Channels V2 wire format: text (JSON array) and binary frames, both ways.
//!
//! This module owns encoding and decoding only. It knows nothing of channels, timers or
//! sockets: [`crate::protocol::Socket`] decides what to send and what a frame means.
//!
//! Text frames are `[join_ref, ref, topic, event, payload]`. Decoding borrows from the frame
//! (`&str` fields, `&RawValue` payload) and accepts what real Phoenix sends: integer refs,
//! extra array elements, non-object payloads, numeric topics. Binary frames use the layout in
//! `../shared/phoenix-wire/SUMMARY.md`: the client sends kind 0 (5-byte header); the server
//! sends kind 0 push (4-byte header, no ref), kind 1 reply, kind 2 broadcast. Every field is at
//! most 255 bytes; a longer one is an [`EncodeError`], never a panic.

use std::borrow::Cow;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, DeserializeSeed, IgnoredAny, SeqAccess, Visitor};
use serde_json::value::RawValue;

/// Phoenix's own event names and the socket-level topic.
pub mod names {
    /// Join a channel.
    pub const JOIN: &str = "phx_join";
    /// Leave a channel.
    pub const LEAVE: &str = "phx_leave";
    /// A reply to a push (or join, leave, heartbeat).
    pub const REPLY: &str = "phx_reply";
    /// The channel process crashed.
    pub const ERROR: &str = "phx_error";
    /// The channel was closed by the server (leave, stop, replaced by a newer join).
    pub const CLOSE: &str = "phx_close";
    /// The socket-level topic used for heartbeats.
    pub const PHOENIX_TOPIC: &str = "phoenix";
    /// The heartbeat event.
    pub const HEARTBEAT: &str = "heartbeat";
    /// Presence: the full state, pushed after a join.
    pub const PRESENCE_STATE: &str = "presence_state";
    /// Presence: joins and leaves, broadcast.
    pub const PRESENCE_DIFF: &str = "presence_diff";
    /// The serializer version this crate speaks.
    pub const VSN: &str = "2.0.0";
}

/// A join_ref or ref as it appeared on the wire.
///
/// Phoenix echoes refs with their JSON type: a string stays a string, an integer stays an
/// integer (transcript 04). This client always sends decimal strings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WireRef<'a> {
    /// A JSON string.
    Str(Cow<'a, str>),
    /// A JSON integer.
    Int(i64),
}

impl WireRef<'_> {
    /// The numeric value of a ref this client made (a canonical decimal string), if it is one.
    #[inline]
    pub fn as_ours(&self) -> Option<u64> {
        match self {
            WireRef::Str(s) => parse_canonical_u64(s),
            WireRef::Int(_) => None,
        }
    }
}

impl fmt::Display for WireRef<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WireRef::Str(s) => write!(f, "{s:?}"),
            WireRef::Int(i) => write!(f, "{i}"),
        }
    }
}

/// Parses `s` as a decimal u64 with no sign, no leading zeros (except "0") and no overflow.
#[inline]
pub(crate) fn parse_canonical_u64(s: &str) -> Option<u64> {
    let b = s.as_bytes();
    if b.is_empty() || b.len() > 20 || (b.len() > 1 && b[0] == b'0') {
        return None;
    }
    let mut v: u64 = 0;
    for &c in b {
        let d = c.wrapping_sub(b'0');
        if d > 9 {
            return None;
        }
        v = v.checked_mul(10)?.checked_add(u64::from(d))?;
    }
    Some(v)
}

/// A text frame decoded in place: every field borrows from the frame where it can.
#[derive(Debug, Clone)]
pub struct TextFrame<'a> {
    /// The channel's join_ref (null for broadcasts, heartbeats and "unmatched topic" replies).
    pub join_ref: Option<WireRef<'a>>,
    /// The message ref (null for server pushes and broadcasts).
    pub msg_ref: Option<WireRef<'a>>,
    /// The topic. A number (which Phoenix echoes when a client sends one) is kept as its text.
    pub topic: Cow<'a, str>,
    /// The event name.
    pub event: Cow<'a, str>,
    /// The payload, exactly as it was on the wire.
    pub payload: &'a RawValue,
}

/// Why a frame from the server could not be decoded. The socket stays up; the frame is dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// The text frame is not a JSON array of at least five elements of the right types.
    /// Holds serde_json's message.
    Text(String),
    /// The binary frame is empty or shorter than its header says.
    Truncated,
    /// The binary frame's kind byte is not 0 (push), 1 (reply) or 2 (broadcast).
    UnknownKind(u8),
    /// A binary header field is not UTF-8.
    NotUtf8,
    /// A reply payload is not `{"status": .., "response": ..}`.
    BadReply(String),
    /// A `presence_state` / `presence_diff` payload is not a presence map.
    Presence(String),
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::Text(e) => write!(f, "malformed text frame: {e}"),
            DecodeError::Truncated => f.write_str("truncated binary frame"),
            DecodeError::UnknownKind(k) => write!(f, "binary frame of unknown kind {k}"),
            DecodeError::NotUtf8 => f.write_str("binary frame header field is not UTF-8"),
            DecodeError::BadReply(e) => write!(f, "malformed phx_reply payload: {e}"),
            DecodeError::Presence(e) => write!(f, "malformed presence payload: {e}"),
        }
    }
}

impl std::error::Error for DecodeError {}

/// Why a frame could not be encoded. Nothing was sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EncodeError {
    /// A binary frame header field (join_ref, ref, topic or event) is longer than 255 bytes.
    FieldTooLong {
        /// Which field.
        field: &'static str,
        /// Its length in bytes.
        len: usize,
    },
    /// The payload could not be serialized to JSON (holds serde_json's message).
    Json(String),
}

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EncodeError::FieldTooLong { field, len } => {
                write!(f, "binary frame field {field} is {len} bytes (at most 255)")
            }
            EncodeError::Json(e) => write!(f, "payload is not serializable to JSON: {e}"),
        }
    }
}

impl std::error::Error for EncodeError {}

/// Decodes a V2 text frame. Extra array elements are ignored, as Phoenix does.
pub fn decode_text(frame: &str) -> Result<TextFrame<'_>, DecodeError> {
    if let Some(f) = decode_text_fast(frame) {
        return Ok(f);
    }
    let mut de = serde_json::Deserializer::from_str(frame);
    let parsed = FrameSeed
        .deserialize(&mut de)
        .and_then(|f| de.end().map(|()| f));
    parsed.map_err(|e| DecodeError::Text(e.to_string()))
}

/// The shape Phoenix sends: no whitespace, refs null or plain strings, topic and event plain
/// strings (no escapes). The header is scanned by hand and only the payload goes through
/// serde_json (which validates it). Anything else returns `None` and takes the general path,
/// which gives the same result for every frame this one accepts.
fn decode_text_fast(frame: &str) -> Option<TextFrame<'_>> {
    let b = frame.as_bytes();
    if b.first() != Some(&b'[') {
        return None;
    }
    let mut i = 1;
    let join_ref = fast_ref(frame, &mut i)?;
    fast_comma(b, &mut i)?;
    let msg_ref = fast_ref(frame, &mut i)?;
    fast_comma(b, &mut i)?;
    let topic = fast_str(frame, &mut i)?;
    fast_comma(b, &mut i)?;
    let event = fast_str(frame, &mut i)?;
    fast_comma(b, &mut i)?;
    let rest = frame.get(i..)?;
    let mut values = serde_json::Deserializer::from_str(rest).into_iter::<&RawValue>();
    let payload = values.next()?.ok()?;
    // Exactly `]` must follow the payload (extra elements or whitespace: general path).
    if rest.get(values.byte_offset()..)? != "]" {
        return None;
    }
    Some(TextFrame {
        join_ref,
        msg_ref,
        topic: Cow::Borrowed(topic),
        event: Cow::Borrowed(event),
        payload,
    })
}

fn fast_comma(b: &[u8], i: &mut usize) -> Option<()> {
    (b.get(*i) == Some(&b',')).then(|| *i += 1)
}

/// A JSON string with no escapes and no control characters, starting at `*i`.
fn fast_str<'a>(frame: &'a str, i: &mut usize) -> Option<&'a str> {
    let b = frame.as_bytes();
    if b.get(*i) != Some(&b'"') {
        return None;
    }
    let start = *i + 1;
    let end = start + plain_len(b.get(start..)?)?;
    if b[end] != b'"' {
        return None;
    }
    *i = end + 1;
    frame.get(start..end)
}

/// The index of the first `"`, `\\` or control character (below 0x20) in `b`, eight bytes at a
/// time (topics are tens of bytes, and every received frame has two of them to scan).
fn plain_len(b: &[u8]) -> Option<usize> {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGH: u64 = u64::from_ne_bytes([0x80; 8]);
    // High bit of each byte that is zero; above the lowest such byte, a borrow can mark
    // others too, so only the lowest mark is exact, and only it is used.
    let zero = |v: u64| v.wrapping_sub(ONES) & !v & HIGH;
    let mut chunks = b.chunks_exact(8);
    let mut at = 0;
    for c in &mut chunks {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        let v = u64::from_le_bytes(w);
        let below_space = v.wrapping_sub(ONES * 0x20) & !v & HIGH;
        let hit =
            zero(v ^ (ONES * u64::from(b'"'))) | zero(v ^ (ONES * u64::from(b'\\'))) | below_space;
        if hit != 0 {
            return Some(at + (hit.trailing_zeros() / 8) as usize);
        }
        at += 8;
    }
    chunks
        .remainder()
        .iter()
        .position(|&c| c == b'"' || c == b'\\' || c < 0x20)
        .map(|p| at + p)
}

/// `null` or a plain string ref.
fn fast_ref<'a>(frame: &'a str, i: &mut usize) -> Option<Option<WireRef<'a>>> {
    if frame.as_bytes().get(*i..*i + 4) == Some(b"null") {
        *i += 4;
        return Some(None);
    }
    fast_str(frame, i).map(|s| Some(WireRef::Str(Cow::Borrowed(s))))
}

struct FrameSeed;

impl<'de> DeserializeSeed<'de> for FrameSeed {
    type Value = TextFrame<'de>;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_seq(FrameVisitor)
    }
}

struct FrameVisitor;

impl<'de> Visitor<'de> for FrameVisitor {
    type Value = TextFrame<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON array [join_ref, ref, topic, event, payload]")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let join_ref: Option<RefField<'de>> = seq
            .next_element()?
            .ok_or_else(|| de::Error::invalid_length(0, &self))?;
        let msg_ref: Option<RefField<'de>> = seq
            .next_element()?
            .ok_or_else(|| de::Error::invalid_length(1, &self))?;
        let topic: NameField<'de> = seq
            .next_element()?
            .ok_or_else(|| de::Error::invalid_length(2, &self))?;
        let event: NameField<'de> = seq
            .next_element()?
            .ok_or_else(|| de::Error::invalid_length(3, &self))?;
        let payload: &'de RawValue = seq
            .next_element()?
            .ok_or_else(|| de::Error::invalid_length(4, &self))?;
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(TextFrame {
            join_ref: join_ref.map(|r| r.0),
            msg_ref: msg_ref.map(|r| r.0),
            topic: topic.0,
            event: event.0,
            payload,
        })
    }
}

/// A ref: a string (borrowed when unescaped) or an integer.
struct RefField<'a>(WireRef<'a>);

impl<'de> Deserialize<'de> for RefField<'de> {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RefField<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string or integer ref")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(RefField(WireRef::Str(Cow::Borrowed(v))))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(RefField(WireRef::Str(Cow::Owned(v.to_owned()))))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                Ok(RefField(WireRef::Int(v)))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                i64::try_from(v)
                    .map(|v| RefField(WireRef::Int(v)))
                    .map_err(|_| E::custom("ref integer out of range"))
            }
        }
        d.deserialize_any(V)
    }
}

/// A topic or event name: a string, or a number kept as its decimal text.
struct NameField<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for NameField<'de> {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = NameField<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string (or number) topic or event")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(NameField(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(NameField(Cow::Owned(v.to_owned())))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                Ok(NameField(Cow::Owned(v.to_string())))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                Ok(NameField(Cow::Owned(v.to_string())))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
                Ok(NameField(Cow::Owned(v.to_string())))
            }
        }
        d.deserialize_any(V)
    }
}

/// The `{"status": .., "response": ..}` payload of a `phx_reply`.
#[derive(Debug, Clone)]
pub struct ReplyPayload<'a> {
    /// `"ok"`, `"error"`, or anything else the server chose.
    pub status: Cow<'a, str>,
    /// The response (JSON `null` if the server sent none).
    pub response: &'a RawValue,
}

/// Decodes a `phx_reply` payload. The key order does not matter; a missing `response` is null.
pub fn decode_reply(payload: &RawValue) -> Result<ReplyPayload<'_>, DecodeError> {
    #[derive(Deserialize)]
    struct Raw<'a> {
        #[serde(borrow)]
        status: Cow<'a, str>,
        #[serde(borrow, default)]
        response: Option<&'a RawValue>,
    }
    // serde's derived struct visitor also takes a sequence (`["ok", {..}]` as status and
    // response); a reply is an object, so anything else is rejected first.
    if !payload.get().trim_start().starts_with('{') {
        return Err(DecodeError::BadReply("not a JSON object".to_owned()));
    }
    let raw: Raw<'_> =
        serde_json::from_str(payload.get()).map_err(|e| DecodeError::BadReply(e.to_string()))?;
    Ok(ReplyPayload {
        status: raw.status,
        response: raw.response.unwrap_or(RawValue::NULL),
    })
}

/// A binary frame from the server, decoded in place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BinaryFrame<'a> {
    /// Kind 0: a server push (`push/3` with `{:binary, data}`). Has no ref.
    Push {
        /// The channel's join_ref.
        join_ref: &'a str,
        /// The topic.
        topic: &'a str,
        /// The event.
        event: &'a str,
        /// The payload bytes.
        payload: &'a [u8],
    },
    /// Kind 1: a reply whose response is binary.
    Reply {
        /// The channel's join_ref.
        join_ref: &'a str,
        /// The ref of the push being answered.
        msg_ref: &'a str,
        /// The topic.
        topic: &'a str,
        /// `"ok"` or `"error"`.
        status: &'a str,
        /// The response bytes.
        payload: &'a [u8],
    },
    /// Kind 2: a broadcast (no join_ref, no ref).
    Broadcast {
        /// The topic.
        topic: &'a str,
        /// The event.
        event: &'a str,
        /// The payload bytes.
        payload: &'a [u8],
    },
}

impl BinaryFrame<'_> {
    /// The frame's topic.
    pub fn topic(&self) -> &str {
        match self {
            BinaryFrame::Push { topic, .. }
            | BinaryFrame::Reply { topic, .. }
            | BinaryFrame::Broadcast { topic, .. } => topic,
        }
    }
    /// The payload bytes.
    pub fn payload(&self) -> &[u8] {
        match self {
            BinaryFrame::Push { payload, .. }
            | BinaryFrame::Reply { payload, .. }
            | BinaryFrame::Broadcast { payload, .. } => payload,
        }
    }
}

/// Binary frame kinds.
pub mod kind {
    /// A push (client to server: 5-byte header; server to client: 4-byte header).
    pub const PUSH: u8 = 0;
    /// A reply (server to client).
    pub const REPLY: u8 = 1;
    /// A broadcast (server to client).
    pub const BROADCAST: u8 = 2;
}

/// Decodes a binary frame from the server.
pub fn decode_binary(frame: &[u8]) -> Result<BinaryFrame<'_>, DecodeError> {
    let (&k, rest) = frame.split_first().ok_or(DecodeError::Truncated)?;
    match k {
        kind::PUSH => {
            let (lens, body) = split_lens::<3>(rest)?;
            let mut r = FieldReader { body };
            let join_ref = r.field(lens[0])?;
            let topic = r.field(lens[1])?;
            let event = r.field(lens[2])?;
            Ok(BinaryFrame::Push {
                join_ref,
                topic,
                event,
                payload: r.body,
            })
        }
        kind::REPLY => {
            let (lens, body) = split_lens::<4>(rest)?;
            let mut r = FieldReader { body };
            let join_ref = r.field(lens[0])?;
            let msg_ref = r.field(lens[1])?;
            let topic = r.field(lens[2])?;
            let status = r.field(lens[3])?;
            Ok(BinaryFrame::Reply {
                join_ref,
                msg_ref,
                topic,
                status,
                payload: r.body,
            })
        }
        kind::BROADCAST => {
            let (lens, body) = split_lens::<2>(rest)?;
            let mut r = FieldReader { body };
            let topic = r.field(lens[0])?;
            let event = r.field(lens[1])?;
            Ok(BinaryFrame::Broadcast {
                topic,
                event,
                payload: r.body,
            })
        }
        other => Err(DecodeError::UnknownKind(other)),
    }
}

fn split_lens<const N: usize>(rest: &[u8]) -> Result<([u8; N], &[u8]), DecodeError> {
    let (head, body) = rest.split_at_checked(N).ok_or(DecodeError::Truncated)?;
    let mut lens = [0u8; N];
    lens.copy_from_slice(head);
    Ok((lens, body))
}

struct FieldReader<'a> {
    body: &'a [u8],
}

impl<'a> FieldReader<'a> {
    fn field(&mut self, len: u8) -> Result<&'a str, DecodeError> {
        let (f, rest) = self
            .body
            .split_at_checked(usize::from(len))
            .ok_or(DecodeError::Truncated)?;
        self.body = rest;
        std::str::from_utf8(f).map_err(|_| DecodeError::NotUtf8)
    }
}

/// Encodes a client push as a binary frame (kind 0, 5-byte header).
///
/// `join_ref` is empty for a push without a join_ref (Phoenix reads an empty field as null).
pub fn encode_binary_push(
    join_ref: &str,
    msg_ref: &str,
    topic: &str,
    event: &str,
    payload: &[u8],
) -> Result<Vec<u8>, EncodeError> {
    let len = |field: &'static str, s: &str| -> Result<u8, EncodeError> {
        u8::try_from(s.len()).map_err(|_| EncodeError::FieldTooLong {
            field,
            len: s.len(),
        })
    };
    let header = [
        kind::PUSH,
        len("join_ref", join_ref)?,
        len("ref", msg_ref)?,
        len("topic", topic)?,
        len("event", event)?,
    ];
    let mut out = Vec::with_capacity(
        5 + join_ref.len() + msg_ref.len() + topic.len() + event.len() + payload.len(),
    );
    out.extend_from_slice(&header);
    out.extend_from_slice(join_ref.as_bytes());
    out.extend_from_slice(msg_ref.as_bytes());
    out.extend_from_slice(topic.as_bytes());
    out.extend_from_slice(event.as_bytes());
    out.extend_from_slice(payload);
    Ok(out)
}

/// Appends `s` to `out` as a JSON string literal (quoted and escaped).
pub fn push_json_str(out: &mut String, s: &str) {
    out.push('"');
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let esc: Option<&str> = match b {
            b'"' => Some("\\\""),
            b'\\' => Some("\\\\"),
            b'\n' => Some("\\n"),
            b'\r' => Some("\\r"),
            b'\t' => Some("\\t"),
            0..=0x1f => None,
            _ => continue,
        };
        out.push_str(&s[start..i]);
        match esc {
            Some(e) => out.push_str(e),
            None => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.push_str("\\u00");
                out.push(char::from(HEX[usize::from(b >> 4)]));
                out.push(char::from(HEX[usize::from(b & 0xf)]));
            }
        }
        start = i + 1;
    }
    out.push_str(&s[start..]);
    out.push('"');
}

/// Appends a ref (`None` = JSON null, else the decimal string) to `out`.
fn push_ref(out: &mut String, r: Option<u64>) {
    use std::fmt::Write as _;
    match r {
        None => out.push_str("null"),
        Some(v) => {
            // Writing to a String cannot fail.
            let _ = write!(out, "\"{v}\"");
        }
    }
}

/// Encodes a client text frame `[join_ref, ref, topic, event, payload]`.
///
/// Refs are this client's numeric refs, sent as decimal strings as phoenix.js does;
/// `payload_json` must be valid JSON (it is copied verbatim).
pub fn encode_text(
    join_ref: Option<u64>,
    msg_ref: Option<u64>,
    topic: &str,
    event: &str,
    payload_json: &str,
) -> String {
    let mut out = String::with_capacity(32 + topic.len() + event.len() + payload_json.len());
    out.push('[');
    push_ref(&mut out, join_ref);
    out.push(',');
    push_ref(&mut out, msg_ref);
    out.push(',');
    push_json_str(&mut out, topic);
    out.push(',');
    push_json_str(&mut out, event);
    out.push(',');
    out.push_str(payload_json);
    out.push(']');
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn canonical_refs() {
        assert_eq!(parse_canonical_u64("0"), Some(0));
        assert_eq!(parse_canonical_u64("123"), Some(123));
        assert_eq!(parse_canonical_u64("18446744073709551615"), Some(u64::MAX));
        assert_eq!(parse_canonical_u64("18446744073709551616"), None);
        assert_eq!(parse_canonical_u64("01"), None);
        assert_eq!(parse_canonical_u64(""), None);
        assert_eq!(parse_canonical_u64("hb"), None);
        assert_eq!(parse_canonical_u64("-1"), None);
        assert_eq!(parse_canonical_u64("+1"), None);
    }

    #[test]
    fn text_escapes_round_trip() {
        let topic = "room:\"quoted\"\\\n\t\u{1}é";
        let f = encode_text(Some(1), Some(2), topic, "ev", "{}");
        let d = decode_text(&f).unwrap();
        assert_eq!(d.topic, topic);
        let v: serde_json::Value = serde_json::from_str(&f).unwrap();
        assert_eq!(v[2], topic);
    }

    #[test]
    fn fast_and_general_paths_agree() {
        let frames = [
            r#"["1",null,"room:lobby","move",{"x":1.5}]"#,
            r#"[null,null,"t","e",null]"#,
            r#"[null,null,"t","e",123]"#,
            r#"[null,"12","t","e","str"]"#,
            r#"["1","2","t","e",[1,{"a":"]"}]]"#,
            r#"["1","2","t\"q","e",{}]"#,
            r#"[1,2,"t","e",{}]"#,
            r#"[ "1","2","t","e",{}]"#,
            r#"["1","2","t","e",{},"extra"]"#,
            r#"["1","2","t","e",{}] "#,
            r#"["1","2","t","e",{}]x"#,
            r#"["1","2","t","e",{]"#,
            r#"["1","2","t","e"]"#,
            r#"["1","2","t","e",{}"#,
            "[\"1\",\"2\",\"t\u{1}\",\"e\",{}]",
            r#"["é","ü","tö","e€",{"k":"v"}]"#,
        ];
        for f in frames {
            let fast = decode_text_fast(f);
            let mut de = serde_json::Deserializer::from_str(f);
            let general = FrameSeed
                .deserialize(&mut de)
                .and_then(|x| de.end().map(|()| x));
            match (&fast, &general) {
                (Some(a), Ok(b)) => {
                    assert_eq!(a.join_ref, b.join_ref, "{f}");
                    assert_eq!(a.msg_ref, b.msg_ref, "{f}");
                    assert_eq!(a.topic, b.topic, "{f}");
                    assert_eq!(a.event, b.event, "{f}");
                    assert_eq!(a.payload.get(), b.payload.get(), "{f}");
                }
                (Some(_), Err(e)) => {
                    panic!("fast path accepted a frame the general one rejects: {f}: {e}")
                }
                (None, _) => {}
            }
        }
        assert!(decode_text_fast(frames[0]).is_some());
        assert!(decode_text_fast(frames[1]).is_some());
    }

    /// The word-at-a-time scan finds what a byte-by-byte one finds, at every position and
    /// next to every byte value (multi-byte UTF-8 included).
    #[test]
    fn plain_len_matches_a_byte_scan() {
        let slow = |b: &[u8]| b.iter().position(|&c| c == b'"' || c == b'\\' || c < 0x20);
        for len in 0..40 {
            for at in 0..=len {
                for stop in (0u8..=255).step_by(1) {
                    let mut b: Vec<u8> = (0..len).map(|k| b'a' + (k % 26) as u8).collect();
                    if at < len {
                        b[at] = stop;
                    }
                    assert_eq!(plain_len(&b), slow(&b), "len {len} at {at} byte {stop:#x}");
                }
            }
        }
        // Bytes just above each boundary, and high bytes before a stop.
        for filler in [0x20u8, 0x21, 0x23, 0x5b, 0x5d, 0x7f, 0x80, 0xc3, 0xff] {
            for stop in [b'"', b'\\', 0x00, 0x1f] {
                for at in 0..20 {
                    let mut b = vec![filler; 24];
                    b[at] = stop;
                    assert_eq!(plain_len(&b), Some(at), "filler {filler:#x} stop {stop:#x}");
                }
            }
            assert_eq!(plain_len(&[filler; 24]), None, "filler {filler:#x}");
        }
    }

    #[test]
    fn decode_rejects_short_and_trailing() {
        assert!(decode_text("[1,2,3]").is_err());
        assert!(decode_text("").is_err());
        assert!(decode_text("{\"topic\":\"x\"}").is_err());
        assert!(decode_text("[null,null,\"t\",\"e\",{}] x").is_err());
        assert!(decode_text("[null,null,\"t\",\"e\",{},\"extra\",[1]]").is_ok());
    }

    #[test]
    fn binary_field_too_long_is_an_error() {
        let long = "x".repeat(256);
        assert_eq!(
            encode_binary_push("1", "2", &long, "e", b""),
            Err(EncodeError::FieldTooLong {
                field: "topic",
                len: 256
            })
        );
        assert!(encode_binary_push("1", "2", &"x".repeat(255), "e", b"").is_ok());
    }

    #[test]
    fn phoenix_js_serializer_vector() {
        // From phoenix.js's serializer tests: join_ref "0", ref "1", topic "t", event "e", payload [1].
        let f = encode_binary_push("0", "1", "t", "e", &[1]).unwrap();
        assert_eq!(f, b"\0\x01\x01\x01\x0101te\x01");
    }
}
