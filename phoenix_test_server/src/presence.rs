//! Phoenix.Presence state per topic, shared by all connections of one server: `track`,
//! `untrack` and `list`, with the `presence_diff` broadcasts.
//!
//! Owns the tracked entries ([`Presence`]). Depends only on `pubsub` (the diffs are broadcasts),
//! `serializer` and `locks`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use base64::Engine as _;
use serde_json::{Map, Value, json};

use crate::locks::lock;
use crate::pubsub::PubSub;
use crate::serializer::Payload;

struct Entry {
    key: String,
    chan_id: u64,
    meta: Map<String, Value>,
}

/// Tracked presences per topic.
#[derive(Default)]
pub(crate) struct Presence {
    topics: Mutex<HashMap<String, Vec<Entry>>>,
    counter: AtomicU64,
}

fn metas(entries: &[&Entry]) -> Value {
    json!({ "metas": entries.iter().map(|e| Value::Object(e.meta.clone())).collect::<Vec<_>>() })
}

fn group(entries: &[&Entry]) -> Value {
    let mut out = Map::new();
    let mut keys: Vec<&str> = Vec::new();
    for e in entries {
        if !keys.contains(&e.key.as_str()) {
            keys.push(&e.key);
        }
    }
    for k in keys {
        let of_key: Vec<&Entry> = entries.iter().copied().filter(|e| e.key == k).collect();
        out.insert(k.to_string(), metas(&of_key));
    }
    Value::Object(out)
}

impl Presence {
    /// A unique, random-looking `phx_ref` (16 characters, like Phoenix's).
    fn new_ref(&self) -> String {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        let mut z = seed ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        let mut bytes = z.to_be_bytes().to_vec();
        bytes.extend_from_slice(&(n as u32).to_be_bytes());
        base64::engine::general_purpose::STANDARD_NO_PAD.encode(bytes)
    }

    pub(crate) fn track(
        &self,
        pubsub: &PubSub,
        topic: &str,
        chan_id: u64,
        key: &str,
        mut meta: Map<String, Value>,
    ) -> String {
        let phx_ref = self.new_ref();
        meta.insert("phx_ref".to_string(), Value::String(phx_ref.clone()));
        let mut topics = lock(&self.topics);
        let entry = Entry {
            key: key.to_string(),
            chan_id,
            meta,
        };
        let diff = json!({ "joins": group(&[&entry]), "leaves": {} });
        topics.entry(topic.to_string()).or_default().push(entry);
        pubsub.broadcast(topic, "presence_diff", &Payload::Json(diff), None);
        phx_ref
    }

    /// Removes the channel's presences (all keys, or one) and broadcasts the leaves diff.
    pub(crate) fn untrack(&self, pubsub: &PubSub, topic: &str, chan_id: u64, key: Option<&str>) {
        let mut topics = lock(&self.topics);
        let Some(entries) = topics.get_mut(topic) else {
            return;
        };
        let (gone, kept): (Vec<Entry>, Vec<Entry>) = std::mem::take(entries)
            .into_iter()
            .partition(|e| e.chan_id == chan_id && key.is_none_or(|k| k == e.key));
        *entries = kept;
        if entries.is_empty() {
            topics.remove(topic);
        }
        if !gone.is_empty() {
            let refs: Vec<&Entry> = gone.iter().collect();
            let diff = json!({ "joins": {}, "leaves": group(&refs) });
            pubsub.broadcast(topic, "presence_diff", &Payload::Json(diff), None);
        }
    }

    /// `{key: {"metas": [...]}}`.
    pub(crate) fn list(&self, topic: &str) -> Value {
        let topics = lock(&self.topics);
        match topics.get(topic) {
            Some(entries) => group(&entries.iter().collect::<Vec<_>>()),
            None => Value::Object(Map::new()),
        }
    }
}
