//! The Phoenix message shapes and their wire encodings: the V2 JSON array `[join_ref, ref, topic,
//! event, payload]`, the V2 binary frames (client push kind 0, server push kind 0, reply kind 1,
//! broadcast kind 2) and the V1 JSON object (only for connects without `vsn`, as Phoenix does).
//!
//! Pure functions only: no sockets, no locks. Decoding errors are what makes Phoenix crash the
//! socket process (the connection then closes with 1011).

use serde_json::Value;

/// A message payload: JSON, or raw bytes carried in a V2 binary frame (Phoenix's `{:binary, data}`).
#[derive(Debug, Clone, PartialEq)]
pub enum Payload {
    /// Any JSON value (Phoenix accepts non-map payloads too: strings, numbers, null, arrays).
    Json(Value),
    /// Raw bytes: sent as a binary frame (push kind 0, reply kind 1, broadcast kind 2).
    Binary(Vec<u8>),
}

impl Payload {
    /// The empty JSON object `{}`.
    pub fn empty() -> Self {
        Payload::Json(Value::Object(serde_json::Map::new()))
    }

    /// The JSON value, or `None` for a binary payload.
    pub fn as_json(&self) -> Option<&Value> {
        match self {
            Payload::Json(v) => Some(v),
            Payload::Binary(_) => None,
        }
    }

    /// The bytes, or `None` for a JSON payload.
    pub fn as_binary(&self) -> Option<&[u8]> {
        match self {
            Payload::Json(_) => None,
            Payload::Binary(b) => Some(b),
        }
    }
}

impl From<Value> for Payload {
    fn from(v: Value) -> Self {
        Payload::Json(v)
    }
}

impl From<Vec<u8>> for Payload {
    fn from(b: Vec<u8>) -> Self {
        Payload::Binary(b)
    }
}

impl From<&[u8]> for Payload {
    fn from(b: &[u8]) -> Self {
        Payload::Binary(b.to_vec())
    }
}

/// Which serializer a connection negotiated through its `vsn` query parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Serializer {
    /// `vsn` missing or `1.0.x`: JSON objects, no binary frames.
    V1,
    /// `vsn=2.0.x`: JSON arrays and binary frames.
    V2,
}

/// A decoded client message. Refs, topic and event keep their JSON type (Phoenix echoes an integer
/// ref as an integer, and a numeric topic gets "unmatched topic").
#[derive(Debug, Clone)]
pub(crate) struct Message {
    pub join_ref: Value,
    pub ref_: Value,
    pub topic: Value,
    pub event: Value,
    pub payload: Payload,
}

/// The frame could not be decoded: Phoenix raises in the serializer and Bandit closes with 1011.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Malformed(pub &'static str);

/// An encoded outgoing frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Encoded {
    pub binary: bool,
    pub data: Vec<u8>,
}

/// The message cannot be encoded for this connection (binary on V1, a field over 255 bytes in a
/// binary frame). Phoenix raises while encoding, which takes the socket down (1011).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Unencodable(pub &'static str);

pub(crate) fn decode_text(ser: Serializer, data: &[u8]) -> Result<Message, Malformed> {
    let value: Value = serde_json::from_slice(data).map_err(|_| Malformed("not JSON"))?;
    match ser {
        Serializer::V2 => match value {
            Value::Array(items) if items.len() >= 5 => {
                let mut it = items.into_iter();
                let mut next = || it.next().unwrap_or(Value::Null);
                let join_ref = next();
                let ref_ = next();
                let topic = next();
                let event = next();
                let payload = Payload::Json(next());
                Ok(Message {
                    join_ref,
                    ref_,
                    topic,
                    event,
                    payload,
                })
            }
            _ => Err(Malformed("expected a JSON array of at least 5 elements")),
        },
        Serializer::V1 => match value {
            Value::Object(mut map) => {
                let mut take = |k: &'static str| map.remove(k).ok_or(Malformed("missing key"));
                let topic = take("topic")?;
                let event = take("event")?;
                let payload = take("payload")?;
                let ref_ = take("ref")?;
                let join_ref = map.remove("join_ref").unwrap_or(Value::Null);
                Ok(Message {
                    join_ref,
                    ref_,
                    topic,
                    event,
                    payload: Payload::Json(payload),
                })
            }
            _ => Err(Malformed("V1 expects a JSON object")),
        },
    }
}

pub(crate) fn decode_binary(ser: Serializer, data: &[u8]) -> Result<Message, Malformed> {
    if ser == Serializer::V1 {
        // Phoenix's V1 serializer JSON-decodes whatever arrives.
        return decode_text(ser, data);
    }
    if data.len() < 5 || data[0] != 0 {
        return Err(Malformed("binary frame: unknown kind or too short"));
    }
    let sizes = [
        data[1] as usize,
        data[2] as usize,
        data[3] as usize,
        data[4] as usize,
    ];
    let total: usize = 5 + sizes.iter().sum::<usize>();
    if data.len() < total {
        return Err(Malformed("binary frame truncated"));
    }
    let mut pos = 5;
    let mut field = |n: usize| {
        let s = String::from_utf8_lossy(&data[pos..pos + n]).into_owned();
        pos += n;
        Value::String(s)
    };
    let join_ref = field(sizes[0]);
    let ref_ = field(sizes[1]);
    let topic = field(sizes[2]);
    let event = field(sizes[3]);
    Ok(Message {
        join_ref,
        ref_,
        topic,
        event,
        payload: Payload::Binary(data[total..].to_vec()),
    })
}

fn json(out: &mut Vec<u8>, v: &Value) {
    if serde_json::to_writer(&mut *out, v).is_err() {
        out.extend_from_slice(b"null");
    }
}

fn json_str(out: &mut Vec<u8>, s: &str) {
    if serde_json::to_writer(&mut *out, s).is_err() {
        out.extend_from_slice(b"null");
    }
}

/// A ref or topic as the text Phoenix puts into a binary frame (`to_string/1`; nil is "").
fn field_text(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn push_field(out: &mut Vec<u8>, len_at: usize, s: &[u8]) -> Result<(), Unencodable> {
    if s.len() > 255 {
        return Err(Unencodable("binary frame field longer than 255 bytes"));
    }
    out[len_at] = s.len() as u8;
    out.extend_from_slice(s);
    Ok(())
}

/// The topic of an outgoing message: a joined channel's topic, or whatever JSON value the client
/// sent (a numeric topic is echoed as a number in "unmatched topic" replies).
#[derive(Debug, Clone, Copy)]
pub(crate) enum Topic<'a> {
    Str(&'a str),
    Raw(&'a Value),
}

impl Topic<'_> {
    fn write(&self, out: &mut Vec<u8>) {
        match self {
            Topic::Str(s) => json_str(out, s),
            Topic::Raw(v) => json(out, v),
        }
    }
    fn text(&self) -> String {
        match self {
            Topic::Str(s) => (*s).to_string(),
            Topic::Raw(v) => field_text(v),
        }
    }
}

/// The payload part of an outgoing JSON frame.
enum Body<'a> {
    Value(&'a Value),
    Reply {
        status: &'a str,
        response: &'a Value,
    },
}

impl Body<'_> {
    fn write(&self, out: &mut Vec<u8>) {
        match self {
            Body::Value(v) => json(out, v),
            Body::Reply { status, response } => {
                out.extend_from_slice(b"{\"response\":");
                json(out, response);
                out.extend_from_slice(b",\"status\":");
                json_str(out, status);
                out.push(b'}');
            }
        }
    }
}

fn text_frame(
    ser: Serializer,
    join_ref: &Value,
    ref_: &Value,
    topic: Topic<'_>,
    event: &str,
    body: Body<'_>,
) -> Encoded {
    let mut out = Vec::with_capacity(96);
    match ser {
        Serializer::V2 => {
            out.push(b'[');
            json(&mut out, join_ref);
            out.push(b',');
            json(&mut out, ref_);
            out.push(b',');
            topic.write(&mut out);
            out.push(b',');
            json_str(&mut out, event);
            out.push(b',');
            body.write(&mut out);
            out.push(b']');
        }
        Serializer::V1 => {
            // V1 drops join_ref (Map.take([:topic, :event, :payload, :ref])).
            out.extend_from_slice(b"{\"event\":");
            json_str(&mut out, event);
            out.extend_from_slice(b",\"payload\":");
            body.write(&mut out);
            out.extend_from_slice(b",\"ref\":");
            json(&mut out, ref_);
            out.extend_from_slice(b",\"topic\":");
            topic.write(&mut out);
            out.push(b'}');
        }
    }
    Encoded {
        binary: false,
        data: out,
    }
}

/// `phx_reply` to a push: `[join_ref, ref, topic, "phx_reply", {"response": .., "status": ..}]`, or
/// a kind-1 binary frame when the response is binary.
pub(crate) fn reply(
    ser: Serializer,
    join_ref: &Value,
    ref_: &Value,
    topic: Topic<'_>,
    status: &str,
    response: &Payload,
) -> Result<Encoded, Unencodable> {
    match response {
        Payload::Json(v) => Ok(text_frame(
            ser,
            join_ref,
            ref_,
            topic,
            "phx_reply",
            Body::Reply {
                status,
                response: v,
            },
        )),
        Payload::Binary(data) => {
            if ser == Serializer::V1 {
                return Err(Unencodable("binary payload on a V1 connection"));
            }
            let mut out = Vec::with_capacity(5 + 32 + data.len());
            out.extend_from_slice(&[1, 0, 0, 0, 0]);
            push_field(&mut out, 1, field_text(join_ref).as_bytes())?;
            push_field(&mut out, 2, field_text(ref_).as_bytes())?;
            push_field(&mut out, 3, topic.text().as_bytes())?;
            push_field(&mut out, 4, status.as_bytes())?;
            out.extend_from_slice(data);
            Ok(Encoded {
                binary: true,
                data: out,
            })
        }
    }
}

/// A server push (`push/3`): join_ref of the channel, ref null; kind-0 binary without ref field.
pub(crate) fn push(
    ser: Serializer,
    join_ref: &Value,
    topic: &str,
    event: &str,
    payload: &Payload,
) -> Result<Encoded, Unencodable> {
    match payload {
        Payload::Json(v) => Ok(text_frame(
            ser,
            join_ref,
            &Value::Null,
            Topic::Str(topic),
            event,
            Body::Value(v),
        )),
        Payload::Binary(data) => {
            if ser == Serializer::V1 {
                return Err(Unencodable("binary payload on a V1 connection"));
            }
            let mut out = Vec::with_capacity(4 + 32 + data.len());
            out.extend_from_slice(&[0, 0, 0, 0]);
            push_field(&mut out, 1, field_text(join_ref).as_bytes())?;
            push_field(&mut out, 2, topic.as_bytes())?;
            push_field(&mut out, 3, event.as_bytes())?;
            out.extend_from_slice(data);
            Ok(Encoded {
                binary: true,
                data: out,
            })
        }
    }
}

/// A broadcast (`broadcast!/3`, presence_diff): join_ref and ref null; kind-2 binary.
pub(crate) fn broadcast(
    ser: Serializer,
    topic: &str,
    event: &str,
    payload: &Payload,
) -> Result<Encoded, Unencodable> {
    match payload {
        Payload::Json(v) => Ok(text_frame(
            ser,
            &Value::Null,
            &Value::Null,
            Topic::Str(topic),
            event,
            Body::Value(v),
        )),
        Payload::Binary(data) => {
            if ser == Serializer::V1 {
                return Err(Unencodable("binary payload on a V1 connection"));
            }
            let mut out = Vec::with_capacity(3 + 32 + data.len());
            out.extend_from_slice(&[2, 0, 0]);
            push_field(&mut out, 1, topic.as_bytes())?;
            push_field(&mut out, 2, event.as_bytes())?;
            out.extend_from_slice(data);
            Ok(Encoded {
                binary: true,
                data: out,
            })
        }
    }
}

/// A control message with a JSON payload and explicit refs (`phx_close`, `phx_error`: ref = join_ref).
pub(crate) fn message(
    ser: Serializer,
    join_ref: &Value,
    ref_: &Value,
    topic: &str,
    event: &str,
    payload: &Value,
) -> Encoded {
    text_frame(
        ser,
        join_ref,
        ref_,
        Topic::Str(topic),
        event,
        Body::Value(payload),
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    #[test]
    fn decodes_v2_text_and_keeps_json_types() {
        let m = decode_text(Serializer::V2, br#"[1,"2","echo:1","phx_join",{},"extra"]"#).unwrap();
        assert_eq!(m.join_ref, json!(1));
        assert_eq!(m.ref_, json!("2"));
        assert_eq!(m.payload, Payload::Json(json!({})));
        for bad in [
            &b"hello"[..],
            b"",
            b"[1,2,3]",
            br#"["1","1","t","e"]"#,
            br#"{"topic":"x"}"#,
        ] {
            assert!(decode_text(Serializer::V2, bad).is_err());
        }
    }

    #[test]
    fn decodes_binary_push_and_rejects_bad_kinds() {
        let frame = [
            0, 1, 1, 6, 6, b'1', b'2', b'e', b'c', b'h', b'o', b':', b'1',
        ];
        let mut f = frame.to_vec();
        f.extend_from_slice(b"binary\x00\x01\x02\xfe\xff");
        let m = decode_binary(Serializer::V2, &f).unwrap();
        assert_eq!(m.topic, json!("echo:1"));
        assert_eq!(m.event, json!("binary"));
        assert_eq!(m.payload, Payload::Binary(vec![0, 1, 2, 0xfe, 0xff]));
        assert!(decode_binary(Serializer::V2, &[5, 1, 1, 1, 1, 65, 66, 67, 68]).is_err());
        assert!(decode_binary(Serializer::V2, &[0, 1, 1, 10, 4, b'1', b'2']).is_err());
        assert!(decode_binary(Serializer::V2, &[1, 1, 1, 1, 1, b'1', b'2', b'a', b'b']).is_err());
        assert!(decode_binary(Serializer::V2, &[]).is_err());
    }

    #[test]
    fn encodes_binary_frames_like_phoenix() {
        let r = reply(
            Serializer::V2,
            &json!("1"),
            &json!("2"),
            Topic::Str("echo:1"),
            "ok",
            &Payload::Binary(vec![0, 1, 2, 0xfe, 0xff]),
        )
        .unwrap();
        assert_eq!(
            r.data,
            b"\x01\x01\x01\x06\x0212echo:1ok\x00\x01\x02\xfe\xff"
        );
        let p = push(
            Serializer::V2,
            &json!("1"),
            "echo:1",
            "binary_push",
            &Payload::Binary(vec![9, 8, 7]),
        )
        .unwrap();
        assert_eq!(p.data, b"\x00\x01\x06\x0b1echo:1binary_push\x09\x08\x07");
        let b = broadcast(
            Serializer::V2,
            "room:wire12",
            "shout_binary",
            &Payload::Binary(vec![0xde, 0xad]),
        )
        .unwrap();
        assert_eq!(b.data, b"\x02\x0b\x0croom:wire12shout_binary\xde\xad");
    }

    #[test]
    fn encodes_text_frames() {
        let r = reply(
            Serializer::V2,
            &json!(1),
            &json!(3),
            Topic::Raw(&json!(123)),
            "ok",
            &Payload::empty(),
        )
        .unwrap();
        let v: Value = serde_json::from_slice(&r.data).unwrap();
        assert_eq!(
            v,
            json!([1, 3, 123, "phx_reply", {"response": {}, "status": "ok"}])
        );
        let r1 = reply(
            Serializer::V1,
            &json!("1"),
            &json!("2"),
            Topic::Str("t"),
            "ok",
            &Payload::empty(),
        )
        .unwrap();
        let v: Value = serde_json::from_slice(&r1.data).unwrap();
        assert_eq!(
            v,
            json!({"event": "phx_reply", "payload": {"response": {}, "status": "ok"}, "ref": "2", "topic": "t"})
        );
    }
}
