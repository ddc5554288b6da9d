//! The checks behind the `text_decoder`, `binary_decoder` and `presence` fuzz targets
//! (`fuzz/fuzz_targets/*.rs` are thin wrappers over these functions) and their stable corpus
//! replay (`tests/fuzz_corpus.rs`). Each takes raw bytes, never panics on bad input, and
//! panics when a property fails: what the decoder returns is compared with an independent
//! reading of the same bytes (serde_json values, a hand-written binary split, a naive presence
//! model), and re-encoding gives the same fields back.
//!
//! Include it with `#[path]`; it needs only `bevy_phoenix_channels` and `serde_json`.
#![allow(dead_code, clippy::unwrap_used)]

use std::collections::BTreeMap;

use bevy_phoenix_channels::protocol::presence::{
    self, PresenceChange, PresenceEvent, PresenceState, PresenceTracker,
};
use bevy_phoenix_channels::protocol::wire::{self, BinaryFrame, DecodeError, TextFrame, WireRef};
use serde_json::{Map, Value};

// ---------------------------------------------------------------------------- text frames

/// A ref element as serde_json sees it: `Ok(None)` null, `Ok(Some(..))` a ref the decoder must
/// accept, `Err(())` something it must reject.
fn expected_ref(v: &Value) -> Result<Option<WireRef<'static>>, ()> {
    match v {
        Value::Null => Ok(None),
        Value::String(s) => Ok(Some(WireRef::Str(s.clone().into()))),
        Value::Number(n) => n.as_i64().map(|i| Some(WireRef::Int(i))).ok_or(()),
        _ => Err(()),
    }
}

/// A topic or event element: a string, or a number (kept as its text; only its presence is
/// checked for numbers, as float formatting differs between libraries).
fn expected_name(v: &Value) -> Result<Option<&str>, ()> {
    match v {
        Value::String(s) => Ok(Some(s)),
        Value::Number(_) => Ok(None),
        _ => Err(()),
    }
}

fn same_fields(a: &TextFrame<'_>, b: &TextFrame<'_>, what: &str) {
    assert_eq!(a.join_ref, b.join_ref, "{what}: join_ref");
    assert_eq!(a.msg_ref, b.msg_ref, "{what}: ref");
    assert_eq!(a.topic, b.topic, "{what}: topic");
    assert_eq!(a.event, b.event, "{what}: event");
    assert_eq!(a.payload.get(), b.payload.get(), "{what}: payload");
}

/// The `text_decoder` target: `wire::decode_text` (and `decode_reply` on its payload) agree
/// with serde_json's reading of the frame, accept every well-typed frame, and a frame with
/// this client's refs re-encoded by `encode_text` decodes to the same fields.
pub fn text_decoder(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let decoded = wire::decode_text(text);
    // serde_json's independent reading (None when it is not JSON or too deep for Value).
    let value: Option<Value> = serde_json::from_str(text).ok();
    let expected = value.as_ref().and_then(|v| {
        let a = v.as_array()?;
        if a.len() < 5 {
            return Some(Err(()));
        }
        let fields = (|| {
            Ok((
                expected_ref(&a[0])?,
                expected_ref(&a[1])?,
                expected_name(&a[2])?,
                expected_name(&a[3])?,
                &a[4],
            ))
        })();
        Some(fields)
    });
    match (&decoded, &expected) {
        (Ok(f), Some(Ok((jr, r, topic, event, payload)))) => {
            assert_eq!(&f.join_ref, jr, "join_ref of {text:?}");
            assert_eq!(&f.msg_ref, r, "ref of {text:?}");
            if let Some(t) = topic {
                assert_eq!(f.topic, *t, "topic of {text:?}");
            }
            if let Some(e) = event {
                assert_eq!(f.event, *e, "event of {text:?}");
            }
            let p: Value = serde_json::from_str(f.payload.get()).unwrap();
            assert_eq!(&p, *payload, "payload of {text:?}");
        }
        (Ok(_), Some(Err(()))) => panic!("decode_text accepted a mistyped frame: {text:?}"),
        (Err(e), Some(Ok(_))) => panic!("decode_text rejected a well-typed frame {text:?}: {e}"),
        (Err(e), _) => assert!(matches!(e, DecodeError::Text(_)), "{e:?}"),
        // Valid for the decoder but not for serde_json's Value (nesting deeper than its limit).
        (Ok(_), None) => {}
    }
    let Ok(f) = decoded else { return };

    // Compact re-serialization (the shape the fast path takes) decodes to the same fields.
    if let Some(v) = &value {
        let compact = serde_json::to_string(v).unwrap();
        if let Ok(g) = wire::decode_text(&compact) {
            assert_eq!(f.join_ref, g.join_ref, "compact {compact:?}");
            assert_eq!(f.msg_ref, g.msg_ref, "compact {compact:?}");
            if expected_name(&v[2]).ok().flatten().is_some() {
                assert_eq!(f.topic, g.topic, "compact {compact:?}");
            }
        } else {
            panic!("compact form {compact:?} of an accepted frame is rejected");
        }
    }

    // Round trip through encode_text when the refs are ones this client could have made.
    let ours = |r: &Option<WireRef<'_>>| match r {
        None => Some(None),
        Some(r) => r.as_ours().map(Some),
    };
    if let (Some(jr), Some(r)) = (ours(&f.join_ref), ours(&f.msg_ref)) {
        let again = wire::encode_text(jr, r, &f.topic, &f.event, f.payload.get());
        let g = wire::decode_text(&again)
            .unwrap_or_else(|e| panic!("re-encoded {again:?} does not decode: {e}"));
        same_fields(&f, &g, &again);
    }

    // A reply payload: status and response as serde_json reads them.
    if let Ok(reply) = wire::decode_reply(f.payload) {
        let v: Option<Value> = serde_json::from_str(f.payload.get()).ok();
        if let Some(v) = v {
            assert_eq!(v["status"].as_str(), Some(&*reply.status), "{text:?}");
            let resp: Value = serde_json::from_str(reply.response.get()).unwrap();
            assert_eq!(resp, v["response"], "response of {text:?}");
        }
    } else if f.event == wire::names::REPLY {
        // Rejected: then it is not an object with a string status. Asserted only where a
        // plain text search settles it: one "status" key, at most one "response", no escapes.
        let p = f.payload.get();
        let plain = p.matches("\"status\"").count() == 1
            && p.matches("\"response\"").count() <= 1
            && !p.contains('\\');
        if let Ok(Value::Object(m)) = serde_json::from_str::<Value>(p) {
            assert!(
                !(plain && m.get("status").is_some_and(Value::is_string)),
                "decode_reply rejected the reply payload of {text:?}"
            );
        }
    }
}

// -------------------------------------------------------------------------- binary frames

/// A binary frame split by hand: its header fields and its payload.
type Split<'a> = (Vec<&'a str>, &'a [u8]);

/// Splits `n` length-prefixed fields after the kind byte, by hand, field by field: `None`
/// when the input ends first, `Some(Err)` when a field before that is not UTF-8.
fn split(b: &[u8], n: usize) -> Option<Result<Split<'_>, ()>> {
    let lens = b.get(1..1 + n)?;
    let mut at = 1 + n;
    let mut out = Vec::new();
    for &l in lens {
        let f = b.get(at..at + usize::from(l))?;
        match std::str::from_utf8(f) {
            Ok(s) => out.push(s),
            Err(_) => return Some(Err(())),
        }
        at += usize::from(l);
    }
    Some(Ok((out, &b[at..])))
}

fn frame_bytes(kind: u8, fields: &[&str], payload: &[u8]) -> Vec<u8> {
    let mut out = vec![kind];
    out.extend(fields.iter().map(|f| u8::try_from(f.len()).unwrap()));
    for f in fields {
        out.extend_from_slice(f.as_bytes());
    }
    out.extend_from_slice(payload);
    out
}

/// The `binary_decoder` target: `wire::decode_binary` agrees with a hand-written split (same
/// fields, same error), decoding is exact (the fields re-assembled give the input bytes back),
/// and `encode_binary_push` of the decoded fields round-trips through the client layout.
pub fn binary_decoder(data: &[u8]) {
    let decoded = wire::decode_binary(data);
    let Some(&k) = data.first() else {
        assert_eq!(decoded, Err(DecodeError::Truncated));
        return;
    };
    let n = match k {
        0 => 3,
        1 => 4,
        2 => 2,
        other => {
            assert_eq!(decoded, Err(DecodeError::UnknownKind(other)));
            return;
        }
    };
    let (fields, payload) = match split(data, n) {
        None => {
            assert_eq!(decoded, Err(DecodeError::Truncated), "{data:?}");
            return;
        }
        Some(Err(())) => {
            assert_eq!(decoded, Err(DecodeError::NotUtf8), "{data:?}");
            return;
        }
        Some(Ok(x)) => x,
    };
    let f = decoded.unwrap_or_else(|e| panic!("{data:?} rejected: {e}"));
    let expected = match k {
        0 => BinaryFrame::Push {
            join_ref: fields[0],
            topic: fields[1],
            event: fields[2],
            payload,
        },
        1 => BinaryFrame::Reply {
            join_ref: fields[0],
            msg_ref: fields[1],
            topic: fields[2],
            status: fields[3],
            payload,
        },
        _ => BinaryFrame::Broadcast {
            topic: fields[0],
            event: fields[1],
            payload,
        },
    };
    assert_eq!(f, expected);
    assert_eq!(f.payload(), payload);
    assert_eq!(f.topic(), expected.topic());

    // Exact: the decoded fields laid out again are the input.
    let (jr, r, topic, ev, p) = match f {
        BinaryFrame::Push {
            join_ref,
            topic,
            event,
            payload,
        } => {
            assert_eq!(frame_bytes(0, &[join_ref, topic, event], payload), data);
            (join_ref, "", topic, event, payload)
        }
        BinaryFrame::Reply {
            join_ref,
            msg_ref,
            topic,
            status,
            payload,
        } => {
            assert_eq!(
                frame_bytes(1, &[join_ref, msg_ref, topic, status], payload),
                data
            );
            (join_ref, msg_ref, topic, status, payload)
        }
        BinaryFrame::Broadcast {
            topic,
            event,
            payload,
        } => {
            assert_eq!(frame_bytes(2, &[topic, event], payload), data);
            ("", "", topic, event, payload)
        }
    };
    // encode_binary_push of these fields is the client layout (kind 0, 5-byte header).
    let client = wire::encode_binary_push(jr, r, topic, ev, p).unwrap();
    assert_eq!(client, frame_bytes(0, &[jr, r, topic, ev], p));
    match split(&client, 4) {
        Some(Ok((back, rest))) => {
            assert_eq!(back, [jr, r, topic, ev]);
            assert_eq!(rest, p);
        }
        other => panic!("encoded push does not split: {other:?}"),
    }
}

// ------------------------------------------------------------------------------- presence

/// The naive model's entry: metas as JSON objects (`phx_ref_prev: null` dropped, as the
/// crate drops it), and the extra keys.
#[derive(Debug, Clone, PartialEq)]
struct NaiveEntry {
    metas: Vec<Value>,
    extra: Map<String, Value>,
}

type NaiveState = BTreeMap<String, NaiveEntry>;

fn meta_ref(m: &Value) -> &str {
    m["phx_ref"].as_str().unwrap()
}

/// A state-shaped object, or `None` when the crate must reject it.
fn naive_parse_state(v: &Value) -> Option<NaiveState> {
    let mut out = NaiveState::new();
    for (key, e) in v.as_object()? {
        let mut extra = e.as_object()?.clone();
        let metas = extra.remove("metas")?;
        let mut list = Vec::new();
        for m in metas.as_array()? {
            let mut m = m.as_object()?.clone();
            m.get("phx_ref")?.as_str()?;
            match m.get("phx_ref_prev") {
                None | Some(Value::String(_)) => {}
                Some(Value::Null) => {
                    m.remove("phx_ref_prev");
                }
                Some(_) => return None,
            }
            list.push(Value::Object(m));
        }
        out.insert(key.clone(), NaiveEntry { metas: list, extra });
    }
    Some(out)
}

/// `(joins, leaves)`, or `None` when the crate must reject the diff.
fn naive_parse_diff(v: &Value) -> Option<(NaiveState, NaiveState)> {
    let m = v.as_object()?;
    let part = |name: &str| match m.get(name) {
        None | Some(Value::Null) => Some(NaiveState::new()),
        Some(v) => naive_parse_state(v),
    };
    Some((part("joins")?, part("leaves")?))
}

/// A new state replaces the old one; within a key a repeated `phx_ref` keeps its first meta,
/// and a key with no metas is not present.
fn naive_sync_state(new: NaiveState) -> NaiveState {
    new.into_iter()
        .filter_map(|(k, mut e)| {
            let mut seen = Vec::new();
            e.metas.retain(|m| {
                let r = meta_ref(m).to_owned();
                let fresh = !seen.contains(&r);
                seen.push(r);
                fresh
            });
            (!e.metas.is_empty()).then_some((k, e))
        })
        .collect()
}

/// Joins: the entry's extra becomes the join's, a meta with a known `phx_ref` replaces it in
/// place, a new one is appended. Leaves: metas with a named `phx_ref` go. Empty keys go.
fn naive_sync_diff(state: &mut NaiveState, joins: NaiveState, leaves: NaiveState) {
    for (k, j) in joins {
        let mut e = state.remove(&k).unwrap_or(NaiveEntry {
            metas: Vec::new(),
            extra: Map::new(),
        });
        e.extra = j.extra;
        for m in j.metas {
            let pos = e.metas.iter().position(|x| meta_ref(x) == meta_ref(&m));
            match pos {
                Some(i) => e.metas[i] = m,
                None => e.metas.push(m),
            }
        }
        if !e.metas.is_empty() {
            state.insert(k, e);
        }
    }
    for (k, l) in leaves {
        if let Some(e) = state.get_mut(&k) {
            e.metas
                .retain(|m| !l.metas.iter().any(|x| meta_ref(x) == meta_ref(m)));
            if e.metas.is_empty() {
                state.remove(&k);
            }
        }
    }
}

fn as_naive(state: &PresenceState) -> NaiveState {
    state
        .iter()
        .map(|(k, e)| {
            let metas = e.metas.iter().map(|m| m.to_json()).collect();
            (
                k.clone(),
                NaiveEntry {
                    metas,
                    extra: e.extra.clone(),
                },
            )
        })
        .collect()
}

/// Invariants of any state: no key without metas, no `phx_ref` twice in a key.
fn check_state(state: &PresenceState, what: &str) {
    for (k, e) in state {
        assert!(!e.metas.is_empty(), "{what}: {k:?} has no metas");
        let mut refs: Vec<&str> = e.metas.iter().map(|m| m.phx_ref()).collect();
        refs.sort_unstable();
        let n = refs.len();
        refs.dedup();
        assert_eq!(refs.len(), n, "{what}: {k:?} repeats a phx_ref");
    }
}

/// Every change agrees with the states before and after: a join's `current` was the entry
/// before and its new metas were not in it; a leave's `remaining` is the entry after (in this
/// batch's last change for the key) and its left metas are gone.
fn check_changes(before: &PresenceState, after: &PresenceState, changes: &[PresenceChange]) {
    for (i, c) in changes.iter().enumerate() {
        let last_for_key = !changes[i + 1..].iter().any(|d| d.key() == c.key());
        match c {
            PresenceChange::Join {
                key,
                current,
                new_metas,
            } => {
                assert!(!new_metas.is_empty(), "empty join for {key:?}");
                assert_eq!(current.as_ref(), before.get(key), "join current of {key:?}");
                for m in new_metas {
                    assert!(
                        !before.get(key).is_some_and(|e| e.contains_ref(m.phx_ref())),
                        "{key:?}: {} joined but was there",
                        m.phx_ref()
                    );
                }
            }
            PresenceChange::Leave {
                key,
                remaining,
                left_metas,
            } => {
                assert!(!left_metas.is_empty(), "empty leave for {key:?}");
                if last_for_key {
                    let now = after.get(key).map_or(&[][..], |e| &e.metas[..]);
                    assert_eq!(remaining.as_slice(), now, "leave remaining of {key:?}");
                }
                for m in left_metas {
                    assert!(
                        remaining.iter().all(|r| r.phx_ref() != m.phx_ref()),
                        "{key:?}: {} left but remains",
                        m.phx_ref()
                    );
                }
            }
        }
    }
}

/// The naive model of a [`PresenceTracker`]: diffs wait for the state of the current join.
struct NaiveTracker {
    state: NaiveState,
    join_ref: Option<String>,
    synced: bool,
    pending: Vec<(NaiveState, NaiveState)>,
}

/// The `presence` target. The input is lines; the first byte of a line says what it is:
/// `s` a `presence_state` JSON, `d` a `presence_diff` JSON, `j` a new join_ref (the rest of
/// the line), `c` clear; other lines are ignored. Each document goes through
/// `parse_state`/`parse_diff` + `sync_state`/`sync_diff` on a plain state and through a
/// [`PresenceTracker`]; both are compared with a naive model after every line, with the
/// invariants of [`check_state`] and [`check_changes`].
pub fn presence(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut plain = PresenceState::new();
    let mut model = NaiveState::new();
    let mut tracker = PresenceTracker::new();
    let mut tmodel = NaiveTracker {
        state: NaiveState::new(),
        join_ref: None,
        synced: false,
        pending: Vec::new(),
    };
    for line in text.split('\n').take(64) {
        let Some(tag) = line.chars().next() else {
            continue;
        };
        let rest = &line[tag.len_utf8()..];
        let value: Option<Value> = serde_json::from_str(rest).ok();
        let mut events = Vec::new();
        match tag {
            's' => {
                let naive = value.as_ref().and_then(naive_parse_state);
                let parsed = presence::parse_state(rest);
                assert_eq!(parsed.is_ok(), naive.is_some(), "parse_state {rest:?}");
                let res = tracker.handle_state(rest, &mut events);
                assert_eq!(res.is_ok(), naive.is_some(), "handle_state {rest:?}");
                if let (Ok(new), Some(naive)) = (parsed, naive) {
                    assert_eq!(as_naive(&new), naive, "parse_state {rest:?}");
                    let before = plain.clone();
                    let mut changes = Vec::new();
                    presence::sync_state(&mut plain, new, &mut changes);
                    check_changes(&before, &plain, &changes);
                    model = naive_sync_state(naive.clone());
                    tmodel.state = naive_sync_state(naive);
                    for (j, l) in tmodel.pending.drain(..) {
                        naive_sync_diff(&mut tmodel.state, j, l);
                    }
                    tmodel.synced = true;
                    assert_eq!(events.last(), Some(&PresenceEvent::Sync));
                } else {
                    assert!(events.is_empty());
                }
            }
            'd' => {
                let naive = value.as_ref().and_then(naive_parse_diff);
                let parsed = presence::parse_diff(rest);
                assert_eq!(parsed.is_ok(), naive.is_some(), "parse_diff {rest:?}");
                let res = tracker.handle_diff(rest, &mut events);
                assert_eq!(res.is_ok(), naive.is_some(), "handle_diff {rest:?}");
                if let (Ok(diff), Some((joins, leaves))) = (parsed, naive) {
                    assert_eq!(as_naive(&diff.joins), joins, "joins of {rest:?}");
                    assert_eq!(as_naive(&diff.leaves), leaves, "leaves of {rest:?}");
                    let before = plain.clone();
                    let mut changes = Vec::new();
                    presence::sync_diff(&mut plain, diff, &mut changes);
                    check_changes(&before, &plain, &changes);
                    naive_sync_diff(&mut model, joins.clone(), leaves.clone());
                    if tmodel.synced {
                        naive_sync_diff(&mut tmodel.state, joins, leaves);
                        assert_eq!(events.last(), Some(&PresenceEvent::Sync));
                    } else {
                        tmodel.pending.push((joins, leaves));
                        assert!(events.is_empty());
                    }
                } else {
                    assert!(events.is_empty());
                }
            }
            'j' => {
                tracker.set_join_ref(rest);
                if tmodel.join_ref.as_deref() != Some(rest) {
                    tmodel.join_ref = Some(rest.to_owned());
                    tmodel.synced = false;
                    tmodel.pending.clear();
                }
            }
            'c' => {
                tracker.clear();
                tmodel = NaiveTracker {
                    state: NaiveState::new(),
                    join_ref: None,
                    synced: false,
                    pending: Vec::new(),
                };
            }
            _ => continue,
        }
        check_state(&plain, "sync_state/sync_diff");
        check_state(tracker.state(), "tracker");
        assert_eq!(
            as_naive(&plain),
            model,
            "plain state vs naive model after {line:?}"
        );
        assert_eq!(
            as_naive(tracker.state()),
            tmodel.state,
            "tracker vs naive model"
        );
        assert_eq!(tracker.is_synced(), tmodel.synced);
        assert_eq!(tracker.pending_diffs(), tmodel.pending.len());
        assert_eq!(tracker.join_ref(), tmodel.join_ref.as_deref());
    }
}
