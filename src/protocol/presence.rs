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

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::fmt;

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

/// One presence entry's meta: `phx_ref` plus the app's fields (kept as JSON).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PresenceMeta {
    /// The server's unique reference of this meta (changes on every `Presence.update`).
    pub phx_ref: String,
    /// The `phx_ref` this meta replaced, when the server sent one (after `Presence.update`).
    pub phx_ref_prev: Option<String>,
    /// Every key of the meta object except `phx_ref` and `phx_ref_prev`.
    pub fields: Map<String, Value>,
}

impl PresenceMeta {
    /// A meta with the given `phx_ref` and no fields.
    pub fn new(phx_ref: impl Into<String>) -> Self {
        Self {
            phx_ref: phx_ref.into(),
            phx_ref_prev: None,
            fields: Map::new(),
        }
    }

    /// One app field of the meta (never `phx_ref` / `phx_ref_prev`, which are struct fields).
    pub fn get(&self, k: &str) -> Option<&Value> {
        self.fields.get(k)
    }

    /// Decodes the app fields (the [`fields`](Self::fields) map) into the app's own type.
    pub fn decode<T: DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        T::deserialize(&self.fields)
    }

    /// The meta as a JSON object again, `phx_ref` (and `phx_ref_prev`) included.
    pub fn to_json(&self) -> Value {
        let mut m = self.fields.clone();
        m.insert("phx_ref".to_owned(), Value::String(self.phx_ref.clone()));
        if let Some(prev) = &self.phx_ref_prev {
            m.insert("phx_ref_prev".to_owned(), Value::String(prev.clone()));
        }
        Value::Object(m)
    }

    fn from_value(key: &str, index: usize, v: Value) -> Result<Self, PresenceError> {
        let bad = |reason: String| PresenceError::BadEntry {
            key: key.to_owned(),
            reason: format!("metas[{index}]: {reason}"),
        };
        let Value::Object(mut fields) = v else {
            return Err(bad(format!("is {}, not an object", kind(&v))));
        };
        let phx_ref = match fields.remove("phx_ref") {
            Some(Value::String(s)) => s,
            Some(other) => return Err(bad(format!("phx_ref is {}", kind(&other)))),
            None => return Err(bad("no phx_ref".to_owned())),
        };
        let phx_ref_prev = match fields.remove("phx_ref_prev") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s),
            Some(other) => return Err(bad(format!("phx_ref_prev is {}", kind(&other)))),
        };
        Ok(Self {
            phx_ref,
            phx_ref_prev,
            fields,
        })
    }
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
        self.metas.iter().any(|m| m.phx_ref == phx_ref)
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

    fn from_value(key: &str, v: Value) -> Result<Self, PresenceError> {
        let bad = |reason: String| PresenceError::BadEntry {
            key: key.to_owned(),
            reason,
        };
        let Value::Object(mut extra) = v else {
            return Err(bad(format!("entry is {}, not an object", kind(&v))));
        };
        let metas = match extra.remove("metas") {
            Some(Value::Array(items)) => items
                .into_iter()
                .enumerate()
                .map(|(i, m)| PresenceMeta::from_value(key, i, m))
                .collect::<Result<Vec<_>, _>>()?,
            Some(other) => return Err(bad(format!("metas is {}, not an array", kind(&other)))),
            None => return Err(bad("no metas".to_owned())),
        };
        Ok(Self { metas, extra })
    }

    /// Drops metas whose `phx_ref` appeared earlier in the list.
    fn dedup_refs(&mut self) {
        let mut seen = HashSet::new();
        self.metas.retain(|m| seen.insert(m.phx_ref.clone()));
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

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn parse_json(json: &str) -> Result<Value, PresenceError> {
    serde_json::from_str(json).map_err(|e| PresenceError::NotAnObject(format!("invalid JSON: {e}")))
}

fn state_from_value(what: &str, v: Value) -> Result<PresenceState, PresenceError> {
    let Value::Object(entries) = v else {
        return Err(PresenceError::NotAnObject(format!(
            "{what} is {}",
            kind(&v)
        )));
    };
    entries
        .into_iter()
        .map(|(key, e)| {
            let entry = PresenceEntry::from_value(&key, e)?;
            Ok((key, entry))
        })
        .collect()
}

/// Parses a `presence_state` payload: `{key: {"metas": [{"phx_ref": …, …}], …}}`.
pub fn parse_state(json: &str) -> Result<PresenceState, PresenceError> {
    state_from_value("presence_state", parse_json(json)?)
}

/// Parses a `presence_diff` payload: `{"joins": {…}, "leaves": {…}}`.
///
/// A missing or `null` `joins` / `leaves` counts as empty.
pub fn parse_diff(json: &str) -> Result<PresenceDiff, PresenceError> {
    let v = parse_json(json)?;
    let Value::Object(mut m) = v else {
        return Err(PresenceError::NotAnObject(format!(
            "presence_diff is {}",
            kind(&v)
        )));
    };
    let mut part = |name: &str| match m.remove(name) {
        None | Some(Value::Null) => Ok(PresenceState::new()),
        Some(v) => state_from_value(name, v),
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
                metas.iter().map(|m| m.phx_ref.as_str()).collect(),
            ))
        }
    }

    fn contains(&self, phx_ref: &str) -> bool {
        match &self.0 {
            RefsInner::Few(metas) => metas.iter().any(|m| m.phx_ref == phx_ref),
            RefsInner::Many(set) => set.contains(phx_ref),
        }
    }
}

fn without_refs(metas: &[PresenceMeta], refs: &Refs<'_>) -> Vec<PresenceMeta> {
    metas
        .iter()
        .filter(|m| !refs.contains(&m.phx_ref))
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
        let mut new_metas = Vec::new();
        for meta in joined.metas {
            match entry.metas.iter_mut().find(|m| m.phx_ref == meta.phx_ref) {
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
            .extract_if(.., |m| refs.contains(&m.phx_ref))
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
        for diff in self.pending.drain(..) {
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
        assert_eq!(e.metas[0].phx_ref, "b");
        assert_eq!(e.metas[0].phx_ref_prev.as_deref(), Some("a"));
        assert_eq!(e.metas[0].get("x"), Some(&Value::from(1)));
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
