//! Payloads in and out, and the small id types the core hands to the app.
//!
//! An incoming [`Payload`] keeps the frame it arrived in and points into it, so receiving a
//! message copies nothing: the app decodes straight into its own types with
//! [`Payload::decode`]. Outgoing payloads ([`OutPayload`]) are serialized once, when pushed.
//!
//! Natively the frame itself is a view of the transport's read buffer ([`FrameText`]), so a
//! payload kept for long keeps that buffer's chunk (up to 16 KiB) alive; decode it, or clone the
//! JSON text, if you keep many for a long time.

use std::fmt;
use std::ops::Range;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::wire::EncodeError;

/// A channel topic, e.g. `"room:lobby"`. Cheap to clone.
pub type Topic = Arc<str>;

/// Identifies one channel (one join of a topic) within a [`Socket`](super::Socket).
///
/// A new join of the same topic gets a new id, so events of a replaced channel can never be
/// mistaken for the live one's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChannelId {
    pub(crate) index: u32,
    pub(crate) generation: u32,
}

impl fmt::Display for ChannelId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ch{}v{}", self.index, self.generation)
    }
}

/// Identifies one push. It is also the `ref` the push carries on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PushId(pub u64);

impl fmt::Display for PushId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "push#{}", self.0)
    }
}

/// Why a [`Payload`] could not be decoded into the requested type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PayloadError {
    /// The payload is binary; use [`Payload::as_bytes`].
    NotJson,
    /// The JSON does not match the requested type (serde_json's message).
    Json(String),
}

impl fmt::Display for PayloadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PayloadError::NotJson => f.write_str("payload is binary, not JSON"),
            PayloadError::Json(e) => write!(f, "payload does not decode: {e}"),
        }
    }
}

impl std::error::Error for PayloadError {}

/// The text of a received frame: an owned `String`, or, natively, a view of the transport's read
/// buffer shared without a copy (tungstenite's `Utf8Bytes`). Either way it is valid UTF-8 and
/// cheap to keep: payloads point into it.
#[derive(Clone)]
pub struct FrameText(TextRepr);

#[derive(Clone)]
enum TextRepr {
    Owned(String),
    #[cfg(not(target_arch = "wasm32"))]
    Shared(tungstenite::Utf8Bytes),
}

impl FrameText {
    /// The text.
    pub fn as_str(&self) -> &str {
        match &self.0 {
            TextRepr::Owned(s) => s,
            #[cfg(not(target_arch = "wasm32"))]
            TextRepr::Shared(s) => s.as_str(),
        }
    }
}

impl std::ops::Deref for FrameText {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl From<String> for FrameText {
    fn from(s: String) -> Self {
        FrameText(TextRepr::Owned(s))
    }
}

impl From<&str> for FrameText {
    fn from(s: &str) -> Self {
        FrameText(TextRepr::Owned(s.to_owned()))
    }
}

#[cfg(not(target_arch = "wasm32"))]
impl From<tungstenite::Utf8Bytes> for FrameText {
    fn from(s: tungstenite::Utf8Bytes) -> Self {
        FrameText(TextRepr::Shared(s))
    }
}

impl fmt::Debug for FrameText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for FrameText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq for FrameText {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for FrameText {}

impl PartialEq<str> for FrameText {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<String> for FrameText {
    fn eq(&self, other: &String) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for FrameText {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

#[derive(Clone)]
enum Buf {
    Text(FrameText),
    Binary(Vec<u8>),
}

/// A payload received from the server: JSON text or binary bytes, exactly as sent.
///
/// It shares the received frame's buffer (no copy); clone it only when you must keep it.
#[derive(Clone)]
pub struct Payload {
    buf: Buf,
    span: Range<usize>,
}

impl Payload {
    /// A JSON payload from its text. The text is not validated here; [`Payload::decode`]
    /// reports bad JSON.
    pub fn from_json(json: impl Into<String>) -> Self {
        let s = json.into();
        let span = 0..s.len();
        Payload {
            buf: Buf::Text(s.into()),
            span,
        }
    }

    /// A binary payload.
    pub fn from_binary(bytes: impl Into<Vec<u8>>) -> Self {
        let b = bytes.into();
        let span = 0..b.len();
        Payload {
            buf: Buf::Binary(b),
            span,
        }
    }

    /// JSON `null`.
    pub fn null() -> Self {
        Payload::from_json("null")
    }

    /// A JSON payload that is the `span` of a received text frame.
    pub(crate) fn in_text(frame: FrameText, span: Range<usize>) -> Self {
        if frame.get(span.clone()).is_some() {
            Payload {
                buf: Buf::Text(frame),
                span,
            }
        } else {
            Payload::null()
        }
    }

    /// A binary payload that is the `span` of a received binary frame.
    pub(crate) fn in_binary(frame: Vec<u8>, span: Range<usize>) -> Self {
        if frame.get(span.clone()).is_some() {
            Payload {
                buf: Buf::Binary(frame),
                span,
            }
        } else {
            Payload::from_binary(Vec::new())
        }
    }

    /// True for a binary payload.
    pub fn is_binary(&self) -> bool {
        matches!(self.buf, Buf::Binary(_))
    }

    /// The JSON text, or `None` for a binary payload.
    pub fn json(&self) -> Option<&str> {
        match &self.buf {
            Buf::Text(s) => s.get(self.span.clone()),
            Buf::Binary(_) => None,
        }
    }

    /// The bytes of a binary payload, or `None` for JSON.
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match &self.buf {
            Buf::Binary(b) => b.get(self.span.clone()),
            Buf::Text(_) => None,
        }
    }

    /// The raw bytes, JSON text or binary alike.
    pub fn raw(&self) -> &[u8] {
        let all: &[u8] = match &self.buf {
            Buf::Text(s) => s.as_bytes(),
            Buf::Binary(b) => b,
        };
        all.get(self.span.clone()).unwrap_or_default()
    }

    /// Decodes a JSON payload into any owned type.
    pub fn decode<T: DeserializeOwned>(&self) -> Result<T, PayloadError> {
        let json = self.json().ok_or(PayloadError::NotJson)?;
        serde_json::from_str(json).map_err(|e| PayloadError::Json(e.to_string()))
    }

    /// Decodes a JSON payload into a type that may borrow from it (`&str` fields, `&RawValue`).
    pub fn decode_borrowed<'a, T: Deserialize<'a>>(&'a self) -> Result<T, PayloadError> {
        let json = self.json().ok_or(PayloadError::NotJson)?;
        serde_json::from_str(json).map_err(|e| PayloadError::Json(e.to_string()))
    }

    /// The JSON payload as a `serde_json::Value` (convenient, slower than [`Payload::decode`]).
    pub fn to_value(&self) -> Result<serde_json::Value, PayloadError> {
        self.decode()
    }
}

impl PartialEq for Payload {
    fn eq(&self, other: &Self) -> bool {
        self.is_binary() == other.is_binary() && self.raw() == other.raw()
    }
}

impl Eq for Payload {}

impl fmt::Debug for Payload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.json() {
            Some(j) if j.len() <= 200 => write!(f, "Payload({j})"),
            Some(j) => {
                let cut = (0..=200)
                    .rev()
                    .find(|&i| j.is_char_boundary(i))
                    .unwrap_or(0);
                write!(f, "Payload({}… {} bytes)", &j[..cut], j.len())
            }
            None => write!(f, "Payload(<{} binary bytes>)", self.raw().len()),
        }
    }
}

/// A payload to send: JSON (serialized once, when pushed) or binary bytes.
#[derive(Clone)]
pub enum OutPayload {
    /// JSON text, valid by construction.
    Json(Box<RawValue>),
    /// Bytes, sent as a binary frame (kind 0 push).
    Binary(Vec<u8>),
}

impl OutPayload {
    /// Serializes any `Serialize` value to JSON.
    pub fn json<T: Serialize + ?Sized>(value: &T) -> Result<Self, EncodeError> {
        serde_json::value::to_raw_value(value)
            .map(OutPayload::Json)
            .map_err(|e| EncodeError::Json(e.to_string()))
    }

    /// JSON text you already have; it is validated.
    pub fn raw_json(json: impl Into<String>) -> Result<Self, EncodeError> {
        RawValue::from_string(json.into())
            .map(OutPayload::Json)
            .map_err(|e| EncodeError::Json(e.to_string()))
    }

    /// Binary bytes.
    pub fn binary(bytes: impl Into<Vec<u8>>) -> Self {
        OutPayload::Binary(bytes.into())
    }

    /// The empty JSON object `{}`, what phoenix.js sends when no payload is given.
    pub fn empty() -> Self {
        OutPayload::Json(empty_object())
    }

    /// Size in bytes of the serialized payload.
    pub fn len(&self) -> usize {
        match self {
            OutPayload::Json(j) => j.get().len(),
            OutPayload::Binary(b) => b.len(),
        }
    }

    /// True when the serialized payload has no bytes (only possible for binary).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn empty_object() -> Box<RawValue> {
    // "{}" is valid JSON, so this cannot fail; fall back to null just in case.
    RawValue::from_string("{}".to_owned()).unwrap_or_else(|_| RawValue::NULL.to_owned())
}

impl PartialEq for OutPayload {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (OutPayload::Json(a), OutPayload::Json(b)) => a.get() == b.get(),
            (OutPayload::Binary(a), OutPayload::Binary(b)) => a == b,
            _ => false,
        }
    }
}

impl Eq for OutPayload {}

impl Default for OutPayload {
    fn default() -> Self {
        OutPayload::empty()
    }
}

impl fmt::Debug for OutPayload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OutPayload::Json(j) if j.get().len() <= 200 => write!(f, "OutPayload({})", j.get()),
            OutPayload::Json(j) => write!(f, "OutPayload(<{} bytes of JSON>)", j.get().len()),
            OutPayload::Binary(b) => write!(f, "OutPayload(<{} binary bytes>)", b.len()),
        }
    }
}
