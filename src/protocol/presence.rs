//! Phoenix Presence, sans-IO: parse `presence_state` / `presence_diff` payloads and keep the
//! list of who is present on a channel, as phoenix.js `Presence` does.
//!
//! Wire shapes (Phoenix 1.7, see `phoenix-wire/10`, `11`, `14`):
//! - `presence_state` (a push): `{"alice":{"metas":[{"phx_ref":"GOuQ…","online_at":1795687423}]}}`
//! - `presence_diff` (a broadcast): `{"joins":{…state shape…},"leaves":{…state shape…}}`
//!
//! The low-level functions [`sync_state`] and [`sync_diff`] merge a state or a diff into a
//! [`PresenceState`] and report what changed as [`PresenceChange`]s. [`PresenceTracker`] is the
//! per-channel object on top: it queues diffs that arrive before the `presence_state` of the
//! channel's current join (the server sends them in that order, transcript 10) and replays them
//! once the state is there.
//!
//! Differences from phoenix.js 1.8.16 (same facts, tidier results):
//! - Change events report only metas that were really added or removed. phoenix.js calls
//!   `onJoin` again when a queued diff re-joins a meta the state already holds, and `onLeave`
//!   when a leave names no meta that is present; here those produce no event.
//! - A join whose `phx_ref` is already present updates that meta in place instead of moving it
//!   to the end, so meta order stays the server's join order.
//! - After [`sync_state`] the state *is* the new state (meta order and extra keys included).
//! - A state never holds a key with an empty `metas` list, nor two metas with the same `phx_ref`.
//! - At most [`MAX_PENDING_DIFFS`] diffs are queued while waiting for the state.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashSet, VecDeque};
use std::fmt;
use std::fmt::Write as _;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

/// One presence entry's meta: its `phx_ref` (and `phx_ref_prev`) plus the app's fields.
///
/// Compact and cheap to clone: the app's fields are kept as one JSON object text (keys in
/// order, no spaces, as `serde_json` writes them) and decoded when asked for
/// ([`get`](Self::get), [`decode`](Self::decode), [`fields`](Self::fields)); the whole meta is
/// shared behind an [`Arc`], so the copies in change events and in the plugin's
/// `ChannelPresence` are one pointer each.
///
/// Two metas are equal when their `phx_ref`, `phx_ref_prev` and fields are (fields compared as
/// that text, which for JSON read by this crate is the same as comparing the values).
#[derive(Clone, PartialEq, Eq, Default)]
pub struct PresenceMeta(Arc<MetaData>);

#[derive(Clone, PartialEq, Eq, Default)]
struct MetaData {
    phx_ref: Box<str>,
    phx_ref_prev: Option<Box<str>>,
    /// The app's fields as a JSON object text; `None` for none (`{}`).
    fields: Option<Box<str>>,
}

impl fmt::Debug for PresenceMeta {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PresenceMeta")
            .field("phx_ref", &self.phx_ref())
            .field("phx_ref_prev", &self.phx_ref_prev())
            .field("fields", &self.fields_json())
            .finish()
    }
}

impl PresenceMeta {
    /// A meta with the given `phx_ref` and no fields.
    pub fn new(phx_ref: impl Into<String>) -> Self {
        Self(Arc::new(MetaData {
            phx_ref: phx_ref.into().into_boxed_str(),
            phx_ref_prev: None,
            fields: None,
        }))
    }

    /// This meta with `phx_ref_prev` set (as the server sends it after `Presence.update`).
    pub fn with_phx_ref_prev(mut self, phx_ref_prev: impl Into<String>) -> Self {
        Arc::make_mut(&mut self.0).phx_ref_prev = Some(phx_ref_prev.into().into_boxed_str());
        self
    }

    /// This meta with one app field set (replacing a field of the same name). The keys
    /// `phx_ref` and `phx_ref_prev` are not app fields: they are ignored here (use
    /// [`new`](Self::new) and [`with_phx_ref_prev`](Self::with_phx_ref_prev)).
    pub fn with_field(mut self, key: impl Into<String>, value: impl Into<Value>) -> Self {
        let key = key.into();
        if key == "phx_ref" || key == "phx_ref_prev" {
            return self;
        }
        let mut fields = self.fields();
        fields.insert(key, value.into());
        Arc::make_mut(&mut self.0).fields = fields_text(&fields);
        self
    }

    /// The server's unique reference of this meta (changes on every `Presence.update`).
    pub fn phx_ref(&self) -> &str {
        &self.0.phx_ref
    }

    /// The `phx_ref` this meta replaced, when the server sent one (after `Presence.update`).
    pub fn phx_ref_prev(&self) -> Option<&str> {
        self.0.phx_ref_prev.as_deref()
    }

    /// The app's fields (every key of the meta object except `phx_ref` and `phx_ref_prev`) as
    /// one JSON object text, e.g. `{"online_at":1795687423,"user_id":"ada"}`; `{}` for none.
    pub fn fields_json(&self) -> &str {
        self.0.fields.as_deref().unwrap_or("{}")
    }

    /// Whether the meta has no app fields.
    pub fn has_no_fields(&self) -> bool {
        self.0.fields.is_none()
    }

    /// The app's fields, decoded into a new map (every key except `phx_ref` and
    /// `phx_ref_prev`). To read one field use [`get`](Self::get); to read them into your own
    /// type, [`decode`](Self::decode).
    pub fn fields(&self) -> Map<String, Value> {
        self.decode().unwrap_or_default()
    }

    /// One app field of the meta, decoded (never `phx_ref` / `phx_ref_prev`: see
    /// [`phx_ref`](Self::phx_ref)).
    pub fn get(&self, key: &str) -> Option<Value> {
        let text = self.0.fields.as_deref()?;
        let mut members: Members<'_> = serde_json::from_str(text).ok()?;
        serde_json::from_str(members.remove(key)?.get()).ok()
    }

    /// Decodes the app fields into the app's own type, e.g. a `#[derive(Deserialize)]` struct
    /// with the fields it wants (unknown fields are skipped unless the type denies them).
    pub fn decode<T: DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_str(self.fields_json())
    }

    /// The meta as a JSON object again, `phx_ref` (and `phx_ref_prev`) included.
    pub fn to_json(&self) -> Value {
        let mut m = self.fields();
        m.insert("phx_ref".to_owned(), Value::from(self.phx_ref()));
        if let Some(prev) = self.phx_ref_prev() {
            m.insert("phx_ref_prev".to_owned(), Value::from(prev));
        }
        Value::Object(m)
    }

    fn from_raw(key: &str, index: usize, v: &RawValue) -> Result<Self, PresenceError> {
        let bad = |reason: String| PresenceError::BadEntry {
            key: key.to_owned(),
            reason: format!("metas[{index}]: {reason}"),
        };
        let Some(mut fields) = raw_members(v)? else {
            return Err(bad(format!("is {}, not an object", raw_kind(v))));
        };
        let phx_ref = match fields.remove("phx_ref") {
            Some(raw) if raw_kind(raw) == STRING => raw_string(raw)?,
            Some(other) => return Err(bad(format!("phx_ref is {}", raw_kind(other)))),
            None => return Err(bad("no phx_ref".to_owned())),
        };
        let phx_ref_prev = match fields.remove("phx_ref_prev") {
            None => None,
            Some(raw) if raw_kind(raw) == NULL => None,
            Some(raw) if raw_kind(raw) == STRING => Some(raw_string(raw)?),
            Some(other) => return Err(bad(format!("phx_ref_prev is {}", raw_kind(other)))),
        };
        Ok(Self(Arc::new(MetaData {
            phx_ref,
            phx_ref_prev,
            fields: raw_fields_text(&fields),
        })))
    }
}

/// The text kept for a meta's fields read from the wire: the server's text of each value
/// (so numbers decode exactly as they would from the payload), keys in order; `None` for none.
fn raw_fields_text(fields: &Members<'_>) -> Option<Box<str>> {
    if fields.0.is_empty() {
        return None;
    }
    let len: usize = fields
        .0
        .iter()
        .map(|(k, v)| k.len() + v.get().len() + 4)
        .sum();
    let mut text = String::with_capacity(len + 2);
    text.push('{');
    for (i, (k, v)) in fields.0.iter().enumerate() {
        if i > 0 {
            text.push(',');
        }
        push_json_string(&mut text, k);
        text.push(':');
        text.push_str(v.get());
    }
    text.push('}');
    Some(text.into_boxed_str())
}

/// Appends `s` as a JSON string literal.
fn push_json_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if u32::from(c) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// The text kept for a meta's fields: `None` for an empty map.
fn fields_text(fields: &Map<String, Value>) -> Option<Box<str>> {
    if fields.is_empty() {
        return None;
    }
    // A map of JSON values always serializes.
    serde_json::to_string(fields)
        .ok()
        .map(String::into_boxed_str)
}

/// All presences of one key (one user, say): one meta per connection / `Presence.track`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PresenceEntry {
    /// The metas, in the server's order (oldest first).
    pub metas: Vec<PresenceMeta>,
    /// Keys of the entry other than `"metas"`, e.g. added by the server's `Presence` `fetch/2`.
    pub extra: Map<String, Value>,
}

impl PresenceEntry {
    /// An entry with these metas and no extra keys.
    pub fn new(metas: Vec<PresenceMeta>) -> Self {
        Self {
            metas,
            extra: Map::new(),
        }
    }

    /// Whether a meta with this `phx_ref` is present.
    pub fn contains_ref(&self, phx_ref: &str) -> bool {
        self.metas.iter().any(|m| m.phx_ref() == phx_ref)
    }

    /// The entry as a JSON object again (`{"metas":[…], …extra}`).
    pub fn to_json(&self) -> Value {
        let mut m = self.extra.clone();
        m.insert(
            "metas".to_owned(),
            Value::Array(self.metas.iter().map(PresenceMeta::to_json).collect()),
        );
        Value::Object(m)
    }

    fn from_raw(key: &str, v: &RawValue) -> Result<Self, PresenceError> {
        let bad = |reason: String| PresenceError::BadEntry {
            key: key.to_owned(),
            reason,
        };
        let Some(mut fields) = raw_members(v)? else {
            return Err(bad(format!("entry is {}, not an object", raw_kind(v))));
        };
        let metas = match fields.remove("metas") {
            Some(raw) if raw_kind(raw) == ARRAY => {
                let items: Vec<&RawValue> =
                    serde_json::from_str(raw.get()).map_err(invalid_json)?;
                let mut metas = Vec::with_capacity(items.len());
                for (i, m) in items.into_iter().enumerate() {
                    metas.push(PresenceMeta::from_raw(key, i, m)?);
                }
                metas
            }
            Some(other) => {
                return Err(bad(format!("metas is {}, not an array", raw_kind(other))));
            }
            None => return Err(bad("no metas".to_owned())),
        };
        let extra = fields
            .0
            .into_iter()
            .map(|(k, raw)| Ok((k.into_owned(), serde_json::from_str(raw.get())?)))
            .collect::<Result<Map<String, Value>, serde_json::Error>>()
            .map_err(invalid_json)?;
        Ok(Self { metas, extra })
    }

    /// Drops metas whose `phx_ref` appeared earlier in the list.
    fn dedup_refs(&mut self) {
        if self.metas.len() < 2 {
            return;
        }
        let mut seen = HashSet::new();
        self.metas.retain(|m| seen.insert(m.phx_ref().to_owned()));
    }
}

/// Everyone present on a channel, by key. A `BTreeMap`, so iteration order is deterministic.
pub type PresenceState = BTreeMap<String, PresenceEntry>;

/// A parsed `presence_diff` payload.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PresenceDiff {
    /// Metas that joined, by key.
    pub joins: PresenceState,
    /// Metas that left, by key.
    pub leaves: PresenceState,
}

/// One change to a [`PresenceState`], as phoenix.js reports it to `onJoin` / `onLeave`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PresenceChange {
    /// Metas joined under `key`.
    Join {
        /// The presence key (e.g. the user id).
        key: String,
        /// The key's entry before the join; `None` when the key is new.
        current: Option<PresenceEntry>,
        /// The metas added (only those not present before).
        new_metas: Vec<PresenceMeta>,
    },
    /// Metas left `key`.
    Leave {
        /// The presence key (e.g. the user id).
        key: String,
        /// The key's metas after the leave; empty means the key is gone.
        remaining: Vec<PresenceMeta>,
        /// The metas removed.
        left_metas: Vec<PresenceMeta>,
    },
}

impl PresenceChange {
    /// The presence key this change is about.
    pub fn key(&self) -> &str {
        match self {
            Self::Join { key, .. } | Self::Leave { key, .. } => key,
        }
    }
}

/// A presence payload that could not be understood (nothing was changed), or diffs dropped
/// while waiting for a state ([`PresenceError::PendingDiffsDropped`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PresenceError {
    /// The payload (or its `joins` / `leaves`) is not a JSON object, or not JSON at all.
    NotAnObject(String),
    /// One key's entry has the wrong shape (no `metas` array, a meta without `phx_ref`, …).
    BadEntry {
        /// The presence key of the bad entry.
        key: String,
        /// What is wrong with it.
        reason: String,
    },
    /// More than [`MAX_PENDING_DIFFS`] diffs came before the `presence_state`: the oldest queued
    /// one was dropped to make room (the new diff is queued), so the list will be incomplete
    /// until the next state. Reported once per wait for a state.
    PendingDiffsDropped,
}

impl fmt::Display for PresenceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotAnObject(what) => write!(f, "presence payload is not a JSON object: {what}"),
            Self::BadEntry { key, reason } => write!(f, "bad presence entry {key:?}: {reason}"),
            Self::PendingDiffsDropped => write!(
                f,
                "more than {MAX_PENDING_DIFFS} presence diffs before the presence_state: the oldest were dropped"
            ),
        }
    }
}

impl std::error::Error for PresenceError {}

const NULL: &str = "null";
const STRING: &str = "a string";
const ARRAY: &str = "an array";
const OBJECT: &str = "an object";

/// What kind of JSON value `raw` is, for error messages.
fn raw_kind(raw: &RawValue) -> &'static str {
    match raw.get().trim_start().as_bytes().first() {
        Some(b'{') => OBJECT,
        Some(b'[') => ARRAY,
        Some(b'"') => STRING,
        Some(b't' | b'f') => "a boolean",
        Some(b'n') => NULL,
        _ => "a number",
    }
}

/// An object's members by key (a repeated key: the last wins, as in a `serde_json::Map`),
/// each value still as its text; `None` when `raw` is not an object.
type RawObject<'a> = BTreeMap<String, &'a RawValue>;

fn raw_object(raw: &RawValue) -> Result<Option<RawObject<'_>>, PresenceError> {
    if raw_kind(raw) != OBJECT {
        return Ok(None);
    }
    serde_json::from_str(raw.get())
        .map(Some)
        .map_err(invalid_json)
}

/// A small object's members (a diff's, an entry's, a meta's), each value still as its text, sorted by
/// key with a repeated key's last value kept (as in a `serde_json::Map`). Keys without escapes
/// are borrowed from the payload.
struct Members<'a>(Vec<(Cow<'a, str>, &'a RawValue)>);

impl<'a> Members<'a> {
    /// Takes out the member `key`.
    fn remove(&mut self, key: &str) -> Option<&'a RawValue> {
        let i = self.0.binary_search_by(|(k, _)| k.as_ref().cmp(key)).ok()?;
        Some(self.0.remove(i).1)
    }
}

impl<'de: 'a, 'a> serde::Deserialize<'de> for Members<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(MembersVisitor(std::marker::PhantomData))
    }
}

struct MembersVisitor<'a>(std::marker::PhantomData<&'a ()>);

impl<'de: 'a, 'a> serde::de::Visitor<'de> for MembersVisitor<'a> {
    type Value = Members<'a>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Members<'a>, A::Error> {
        let mut members = Vec::new();
        while let Some(Key(k)) = map.next_key()? {
            members.push((k, map.next_value::<&'a RawValue>()?));
        }
        // Stable: equal keys stay in document order, and the later value moves into the slot
        // that dedup keeps.
        members.sort_by(|a, b| a.0.cmp(&b.0));
        members.dedup_by(|later, kept| {
            let same = later.0 == kept.0;
            if same {
                std::mem::swap(later, kept);
            }
            same
        });
        Ok(Members(members))
    }
}

/// An object key, borrowed when it has no escapes.
struct Key<'a>(Cow<'a, str>);

impl<'de: 'a, 'a> serde::Deserialize<'de> for Key<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_str(KeyVisitor(std::marker::PhantomData))
    }
}

struct KeyVisitor<'a>(std::marker::PhantomData<&'a ()>);

impl<'de: 'a, 'a> serde::de::Visitor<'de> for KeyVisitor<'a> {
    type Value = Key<'a>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object key")
    }
    fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Key<'a>, E> {
        Ok(Key(Cow::Borrowed(s)))
    }
    fn visit_str<E>(self, s: &str) -> Result<Key<'a>, E> {
        Ok(Key(Cow::Owned(s.to_owned())))
    }
    fn visit_string<E>(self, s: String) -> Result<Key<'a>, E> {
        Ok(Key(Cow::Owned(s)))
    }
}

fn raw_members(raw: &RawValue) -> Result<Option<Members<'_>>, PresenceError> {
    if raw_kind(raw) != OBJECT {
        return Ok(None);
    }
    serde_json::from_str(raw.get())
        .map(Some)
        .map_err(invalid_json)
}

fn raw_string(raw: &RawValue) -> Result<Box<str>, PresenceError> {
    serde_json::from_str::<String>(raw.get())
        .map(String::into_boxed_str)
        .map_err(invalid_json)
}

fn invalid_json(e: serde_json::Error) -> PresenceError {
    PresenceError::NotAnObject(format!("invalid JSON: {e}"))
}

/// Accepts exactly the JSON documents a `serde_json::Value` accepts (syntax, string escapes,
/// numbers in range, nesting depth) without building anything.
struct Valid;

impl<'de> serde::Deserialize<'de> for Valid {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(Valid)
    }
}

impl<'de> serde::de::Visitor<'de> for Valid {
    type Value = Valid;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, _: bool) -> Result<Valid, E> {
        Ok(Valid)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Valid, E> {
        Ok(Valid)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Valid, E> {
        Ok(Valid)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Valid, E> {
        Ok(Valid)
    }
    fn visit_str<E>(self, _: &str) -> Result<Valid, E> {
        Ok(Valid)
    }
    fn visit_unit<E>(self) -> Result<Valid, E> {
        Ok(Valid)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Valid, A::Error> {
        while seq.next_element::<Valid>()?.is_some() {}
        Ok(Valid)
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Valid, A::Error> {
        while map.next_key::<Valid>()?.is_some() {
            map.next_value::<Valid>()?;
        }
        Ok(Valid)
    }
}

/// Checks `json` whole (so a bad document is refused as a `Value` parse would refuse it),
/// then returns it as one raw value to take apart.
fn parse_json(json: &str) -> Result<&RawValue, PresenceError> {
    serde_json::from_str::<Valid>(json).map_err(invalid_json)?;
    serde_json::from_str(json).map_err(invalid_json)
}

fn state_from_raw(what: &str, raw: &RawValue) -> Result<PresenceState, PresenceError> {
    let Some(entries) = raw_object(raw)? else {
        return Err(PresenceError::NotAnObject(format!(
            "{what} is {}",
            raw_kind(raw)
        )));
    };
    entries
        .into_iter()
        .map(|(key, e)| {
            let entry = PresenceEntry::from_raw(&key, e)?;
            Ok((key, entry))
        })
        .collect()
}

/// Parses a `presence_state` payload: `{key: {"metas": [{"phx_ref": …, …}], …}}`.
pub fn parse_state(json: &str) -> Result<PresenceState, PresenceError> {
    state_from_raw("presence_state", parse_json(json)?)
}

/// Parses a `presence_diff` payload: `{"joins": {…}, "leaves": {…}}`.
///
/// A missing or `null` `joins` / `leaves` counts as empty.
pub fn parse_diff(json: &str) -> Result<PresenceDiff, PresenceError> {
    let raw = parse_json(json)?;
    let Some(mut m) = raw_members(raw)? else {
        return Err(PresenceError::NotAnObject(format!(
            "presence_diff is {}",
            raw_kind(raw)
        )));
    };
    let mut part = |name: &str| match m.remove(name) {
        None => Ok(PresenceState::new()),
        Some(v) if raw_kind(v) == NULL => Ok(PresenceState::new()),
        Some(v) => state_from_raw(name, v),
    };
    let joins = part("joins")?;
    let leaves = part("leaves")?;
    Ok(PresenceDiff { joins, leaves })
}

/// The `phx_ref`s of `metas`, for membership tests that stay fast on long meta lists.
struct Refs<'a>(RefsInner<'a>);

enum RefsInner<'a> {
    Few(&'a [PresenceMeta]),
    Many(HashSet<&'a str>),
}

impl<'a> Refs<'a> {
    fn of(metas: &'a [PresenceMeta]) -> Self {
        if metas.len() <= 16 {
            Self(RefsInner::Few(metas))
        } else {
            Self(RefsInner::Many(
                metas.iter().map(PresenceMeta::phx_ref).collect(),
            ))
        }
    }

    fn contains(&self, phx_ref: &str) -> bool {
        match &self.0 {
            RefsInner::Few(metas) => metas.iter().any(|m| m.phx_ref() == phx_ref),
            RefsInner::Many(set) => set.contains(phx_ref),
        }
    }
}

fn without_refs(metas: &[PresenceMeta], refs: &Refs<'_>) -> Vec<PresenceMeta> {
    metas
        .iter()
        .filter(|m| !refs.contains(m.phx_ref()))
        .cloned()
        .collect()
}

/// Replaces `state` with `new_state` (a full `presence_state` from the server) and pushes the
/// differences to `changes`, compared by `phx_ref` per key: first every [`PresenceChange::Join`]
/// (key order), then every [`PresenceChange::Leave`] (key order). A key present on both sides
/// whose metas changed gives a join for the new metas and a leave for the removed ones.
pub fn sync_state(
    state: &mut PresenceState,
    mut new_state: PresenceState,
    changes: &mut Vec<PresenceChange>,
) {
    new_state.retain(|_, entry| {
        entry.dedup_refs();
        !entry.metas.is_empty()
    });
    for (key, new_entry) in &new_state {
        match state.get(key) {
            Some(cur) => {
                let joined = without_refs(&new_entry.metas, &Refs::of(&cur.metas));
                if !joined.is_empty() {
                    changes.push(PresenceChange::Join {
                        key: key.clone(),
                        current: Some(cur.clone()),
                        new_metas: joined,
                    });
                }
            }
            None => changes.push(PresenceChange::Join {
                key: key.clone(),
                current: None,
                new_metas: new_entry.metas.clone(),
            }),
        }
    }
    for (key, cur) in state.iter() {
        match new_state.get(key) {
            Some(new_entry) => {
                let left = without_refs(&cur.metas, &Refs::of(&new_entry.metas));
                if !left.is_empty() {
                    changes.push(PresenceChange::Leave {
                        key: key.clone(),
                        remaining: new_entry.metas.clone(),
                        left_metas: left,
                    });
                }
            }
            None if cur.metas.is_empty() => {}
            None => changes.push(PresenceChange::Leave {
                key: key.clone(),
                remaining: Vec::new(),
                left_metas: cur.metas.clone(),
            }),
        }
    }
    *state = new_state;
}

/// Applies a `presence_diff` to `state` and pushes what changed to `changes`: first the joins,
/// then the leaves (each in key order), as phoenix.js does.
///
/// - A join appends the metas whose `phx_ref` is new; a meta whose `phx_ref` is already there
///   is updated in place (no event for it). The entry's extra keys become the join's.
/// - A leave removes the metas with the given `phx_ref`s and drops a key left with no metas.
///   Leaving a key or a `phx_ref` that is not present is a no-op, with no event.
pub fn sync_diff(state: &mut PresenceState, diff: PresenceDiff, changes: &mut Vec<PresenceChange>) {
    for (key, joined) in diff.joins {
        let current = state.get(&key).cloned();
        let entry = state.entry(key.clone()).or_default();
        entry.extra = joined.extra;
        if entry.metas.is_empty() {
            // A new key: its list is as long as its metas (kept for the key's life).
            entry.metas.reserve_exact(joined.metas.len());
        }
        let mut new_metas = Vec::new();
        for meta in joined.metas {
            match entry
                .metas
                .iter_mut()
                .find(|m| m.phx_ref() == meta.phx_ref())
            {
                Some(slot) => *slot = meta,
                None => {
                    entry.metas.push(meta.clone());
                    new_metas.push(meta);
                }
            }
        }
        if entry.metas.is_empty() {
            state.remove(&key);
        }
        if !new_metas.is_empty() {
            changes.push(PresenceChange::Join {
                key,
                current,
                new_metas,
            });
        }
    }
    for (key, left) in diff.leaves {
        let Some(entry) = state.get_mut(&key) else {
            continue;
        };
        let refs = Refs::of(&left.metas);
        let left_metas: Vec<PresenceMeta> = entry
            .metas
            .extract_if(.., |m| refs.contains(m.phx_ref()))
            .collect();
        if left_metas.is_empty() {
            continue;
        }
        let remaining = entry.metas.clone();
        if remaining.is_empty() {
            state.remove(&key);
        }
        changes.push(PresenceChange::Leave {
            key,
            remaining,
            left_metas,
        });
    }
}

/// Every key with its entry, in key order (phoenix.js `Presence.list` without a chooser; map
/// the iterator to choose).
pub fn list(state: &PresenceState) -> impl Iterator<Item = (&str, &PresenceEntry)> {
    state.iter().map(|(k, v)| (k.as_str(), v))
}

/// At most this many diffs are queued while waiting for a `presence_state`; past it the oldest
/// is dropped (a channel that gets diffs but never a state must not grow without bound).
pub const MAX_PENDING_DIFFS: usize = 4096;

/// What a [`PresenceTracker`] reports, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PresenceEvent {
    /// A key joined or left (phoenix.js `onJoin` / `onLeave`).
    Change(PresenceChange),
    /// A state or diff has been fully applied (phoenix.js `onSync`).
    Sync,
}

/// Per-channel presence: queues diffs until the `presence_state` for the channel's current
/// join has arrived, then keeps the state in sync.
#[derive(Debug, Clone, Default)]
pub struct PresenceTracker {
    state: PresenceState,
    join_ref: Option<String>,
    synced: bool,
    pending: VecDeque<PresenceDiff>,
    /// A queued diff was dropped while waiting for the current state (reported once).
    dropped: bool,
}

impl PresenceTracker {
    /// An empty tracker, waiting for its first `presence_state`.
    pub fn new() -> Self {
        Self::default()
    }

    /// The channel's current join_ref (call on every new join; a new join_ref puts the tracker
    /// back in the pending state until its presence_state arrives).
    ///
    /// The state is kept, so the next `presence_state` reports who joined and left meanwhile.
    /// Diffs still queued for an older join are dropped (that join's state never came).
    /// Setting the same join_ref again changes nothing.
    pub fn set_join_ref(&mut self, join_ref: &str) {
        if self.join_ref.as_deref() != Some(join_ref) {
            self.join_ref = Some(join_ref.to_owned());
            self.synced = false;
            self.pending.clear();
            self.dropped = false;
        }
    }

    /// The join_ref last given to [`set_join_ref`](Self::set_join_ref).
    pub fn join_ref(&self) -> Option<&str> {
        self.join_ref.as_deref()
    }

    /// Handles a `presence_state` payload: [`sync_state`], then the queued diffs, then one
    /// [`PresenceEvent::Sync`]. On error nothing changes (the queue is kept too).
    pub fn handle_state(
        &mut self,
        json: &str,
        events: &mut Vec<PresenceEvent>,
    ) -> Result<(), PresenceError> {
        let new_state = parse_state(json)?;
        let mut changes = Vec::new();
        sync_state(&mut self.state, new_state, &mut changes);
        // Taken, not drained: the queue's buffer is not kept for the channel's whole life.
        for diff in std::mem::take(&mut self.pending) {
            sync_diff(&mut self.state, diff, &mut changes);
        }
        self.dropped = false;
        self.synced = true;
        events.extend(changes.into_iter().map(PresenceEvent::Change));
        events.push(PresenceEvent::Sync);
        Ok(())
    }

    /// Handles a `presence_diff` payload: queued while the state is pending, else
    /// [`sync_diff`] and one [`PresenceEvent::Sync`]. On error nothing changes, except for
    /// [`PresenceError::PendingDiffsDropped`]: the diff was queued and the oldest one dropped.
    pub fn handle_diff(
        &mut self,
        json: &str,
        events: &mut Vec<PresenceEvent>,
    ) -> Result<(), PresenceError> {
        let diff = parse_diff(json)?;
        if !self.synced {
            let overflow = self.pending.len() >= MAX_PENDING_DIFFS;
            if overflow {
                self.pending.pop_front();
            }
            self.pending.push_back(diff);
            if overflow && !self.dropped {
                self.dropped = true;
                return Err(PresenceError::PendingDiffsDropped);
            }
            return Ok(());
        }
        let mut changes = Vec::new();
        sync_diff(&mut self.state, diff, &mut changes);
        events.extend(changes.into_iter().map(PresenceEvent::Change));
        events.push(PresenceEvent::Sync);
        Ok(())
    }

    /// The current presences.
    pub fn state(&self) -> &PresenceState {
        &self.state
    }

    /// Every key with its entry, in key order.
    pub fn list(&self) -> impl Iterator<Item = (&str, &PresenceEntry)> {
        list(&self.state)
    }

    /// Whether the `presence_state` of the current join has arrived.
    pub fn is_synced(&self) -> bool {
        self.synced
    }

    /// How many diffs are queued, waiting for the `presence_state`.
    pub fn pending_diffs(&self) -> usize {
        self.pending.len()
    }

    /// Channel left/closed: empty state, nothing pending, no join_ref.
    pub fn clear(&mut self) {
        *self = Self::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presence_meta_splits_refs_from_fields() {
        let s = parse_state(
            r#"{"u":{"metas":[{"phx_ref":"b","phx_ref_prev":"a","x":1}],"user":{"n":2}}}"#,
        );
        let s = s.unwrap_or_default();
        let e = &s["u"];
        assert_eq!(e.metas[0].phx_ref(), "b");
        assert_eq!(e.metas[0].phx_ref_prev(), Some("a"));
        assert_eq!(e.metas[0].get("x"), Some(Value::from(1)));
        assert_eq!(e.metas[0].fields_json(), r#"{"x":1}"#);
        assert_eq!(e.metas[0].get("phx_ref"), None);
        assert_eq!(e.extra.get("user"), Some(&serde_json::json!({"n": 2})));
        assert_eq!(
            e.to_json(),
            serde_json::json!({"metas":[{"phx_ref":"b","phx_ref_prev":"a","x":1}],"user":{"n":2}})
        );
    }

    #[test]
    fn presence_refs_many_uses_set() {
        let metas: Vec<_> = (0..40).map(|i| PresenceMeta::new(i.to_string())).collect();
        let refs = Refs::of(&metas);
        assert!(refs.contains("39"));
        assert!(!refs.contains("40"));
    }

    #[test]
    fn presence_error_messages() {
        assert!(matches!(
            parse_state("[]"),
            Err(PresenceError::NotAnObject(_))
        ));
        let err = parse_state(r#"{"k":{"metas":[{"x":1}]}}"#);
        assert_eq!(
            err,
            Err(PresenceError::BadEntry {
                key: "k".into(),
                reason: "metas[0]: no phx_ref".into()
            })
        );
        if let Err(e) = err {
            assert_eq!(
                e.to_string(),
                r#"bad presence entry "k": metas[0]: no phx_ref"#
            );
        }
    }
}
