//! Phoenix Presence: phoenix.js 1.8.16 presence tests as a checklist, the real payloads of
//! transcripts 10, 11 and 14 (phoenix-wire), bad input, and model-based property tests.
#![allow(clippy::unwrap_used)]

use bevy_phoenix_channels::protocol::presence::{
    MAX_PENDING_DIFFS, PresenceChange, PresenceDiff, PresenceEntry, PresenceError, PresenceEvent,
    PresenceMeta, PresenceState, PresenceTracker, list, parse_diff, parse_state, sync_diff,
    sync_state,
};
use proptest::prelude::*;
use serde_json::{Value, json};

// ---------------------------------------------------------------- helpers

fn state(v: Value) -> PresenceState {
    parse_state(&v.to_string()).unwrap()
}

fn diff(joins: Value, leaves: Value) -> PresenceDiff {
    parse_diff(&json!({"joins": joins, "leaves": leaves}).to_string()).unwrap()
}

/// phoenix.js test fixture meta: `{id, phx_ref}`.
fn m(id: i64, phx_ref: &str) -> PresenceMeta {
    PresenceMeta::new(phx_ref).with_field("id", id)
}

fn entry(metas: Vec<PresenceMeta>) -> PresenceEntry {
    PresenceEntry::new(metas)
}

fn refs(metas: &[PresenceMeta]) -> Vec<&str> {
    metas.iter().map(PresenceMeta::phx_ref).collect()
}

fn key_refs<'a>(s: &'a PresenceState, key: &str) -> Vec<&'a str> {
    s.get(key).map(|e| refs(&e.metas)).unwrap_or_default()
}

fn fixture_state() -> PresenceState {
    state(json!({
        "u1": {"metas": [{"id": 1, "phx_ref": "1"}]},
        "u2": {"metas": [{"id": 2, "phx_ref": "2"}]},
        "u3": {"metas": [{"id": 3, "phx_ref": "3"}]}
    }))
}

fn changes(events: &[PresenceEvent]) -> Vec<&PresenceChange> {
    events
        .iter()
        .filter_map(|e| match e {
            PresenceEvent::Change(c) => Some(c),
            PresenceEvent::Sync => None,
        })
        .collect()
}

fn syncs(events: &[PresenceEvent]) -> usize {
    events
        .iter()
        .filter(|e| matches!(e, PresenceEvent::Sync))
        .count()
}

/// Payload of a text frame `[join_ref, ref, topic, event, payload]` as the transcripts show it.
fn payload(frame: &str) -> String {
    let v: Value = serde_json::from_str(frame).unwrap();
    v[4].to_string()
}

// ---------------------------------------------------------------- parse

#[test]
fn parse_state_reads_metas_fields_and_extra() {
    let s = parse_state(
        r#"{"alice":{"metas":[{"phx_ref":"GOuQMrIxpaZuuggR","online_at":1795687423}],"user":{"name":"Alice"}}}"#,
    )
    .unwrap();
    let e = &s["alice"];
    assert_eq!(e.metas.len(), 1);
    assert_eq!(e.metas[0].phx_ref(), "GOuQMrIxpaZuuggR");
    assert_eq!(e.metas[0].phx_ref_prev(), None);
    assert_eq!(e.metas[0].get("online_at"), Some(json!(1795687423)));
    assert_eq!(e.metas[0].fields().len(), 1);
    assert_eq!(e.metas[0].fields_json(), r#"{"online_at":1795687423}"#);
    assert_eq!(e.extra.get("user"), Some(&json!({"name": "Alice"})));
}

#[test]
fn parse_meta_with_phx_ref_prev_and_decode() {
    #[derive(serde::Deserialize, Debug, PartialEq)]
    struct Meta {
        online_at: u64,
        status: String,
    }
    let s = parse_state(
        r#"{"u":{"metas":[{"phx_ref":"new","phx_ref_prev":"old","online_at":5,"status":"away"}]}}"#,
    )
    .unwrap();
    let meta = &s["u"].metas[0];
    assert_eq!(meta.phx_ref_prev(), Some("old"));
    assert_eq!(
        meta.decode::<Meta>().unwrap(),
        Meta {
            online_at: 5,
            status: "away".into()
        }
    );
    assert!(meta.decode::<Vec<u8>>().is_err());
    // phx_ref_prev: null is the same as absent
    let s = parse_state(r#"{"u":{"metas":[{"phx_ref":"a","phx_ref_prev":null}]}}"#).unwrap();
    assert_eq!(s["u"].metas[0].phx_ref_prev(), None);
    assert!(s["u"].metas[0].fields().is_empty());
    assert!(s["u"].metas[0].has_no_fields());
    assert_eq!(s["u"].metas[0].fields_json(), "{}");
}

#[test]
fn parse_diff_reads_joins_and_leaves() {
    let d = parse_diff(
        r#"{"joins":{},"leaves":{"bob":{"metas":[{"phx_ref":"GOuQMuiN5FVuughB","online_at":1795687424}]}}}"#,
    )
    .unwrap();
    assert!(d.joins.is_empty());
    assert_eq!(key_refs(&d.leaves, "bob"), ["GOuQMuiN5FVuughB"]);
    // missing or null parts count as empty
    assert_eq!(parse_diff("{}").unwrap(), PresenceDiff::default());
    assert_eq!(
        parse_diff(r#"{"joins":null,"leaves":null}"#).unwrap(),
        PresenceDiff::default()
    );
}

#[test]
fn entry_and_meta_round_trip_to_json() {
    let text = r#"{"u":{"metas":[{"phx_ref":"b","phx_ref_prev":"a","x":[1,2]}],"extra":true}}"#;
    let s = parse_state(text).unwrap();
    let back: Value = json!({"u": s["u"].to_json()});
    assert_eq!(back, serde_json::from_str::<Value>(text).unwrap());
}

#[test]
fn bad_input_is_an_error_not_a_panic() {
    let not_object = [
        "", "not json", "{", "[]", "null", "42", r#""str""#, r#"[1,2]"#,
    ];
    for bad in not_object {
        assert!(
            matches!(parse_state(bad), Err(PresenceError::NotAnObject(_))),
            "state {bad:?}"
        );
        assert!(
            matches!(parse_diff(bad), Err(PresenceError::NotAnObject(_))),
            "diff {bad:?}"
        );
    }
    assert!(matches!(
        parse_diff(r#"{"joins":[],"leaves":{}}"#),
        Err(PresenceError::NotAnObject(_))
    ));
    assert!(matches!(
        parse_diff(r#"{"joins":{},"leaves":"x"}"#),
        Err(PresenceError::NotAnObject(_))
    ));

    let bad_entries = [
        r#"{"k":1}"#,
        r#"{"k":{}}"#,
        r#"{"k":{"metas":{}}}"#,
        r#"{"k":{"metas":null}}"#,
        r#"{"k":{"metas":[1]}}"#,
        r#"{"k":{"metas":[{}]}}"#,
        r#"{"k":{"metas":[{"online_at":1}]}}"#,
        r#"{"k":{"metas":[{"phx_ref":1}]}}"#,
        r#"{"k":{"metas":[{"phx_ref":null}]}}"#,
        r#"{"k":{"metas":[{"phx_ref":"a","phx_ref_prev":7}]}}"#,
        r#"{"k":{"metas":[{"phx_ref":"a"},{"no":"ref"}]}}"#,
    ];
    for bad in bad_entries {
        let err = parse_state(bad).unwrap_err();
        assert!(
            matches!(&err, PresenceError::BadEntry { key, .. } if key == "k"),
            "{bad}: {err:?}"
        );
        assert!(err.to_string().contains("\"k\""), "{err}");
        let in_diff = format!(r#"{{"joins":{bad},"leaves":{{}}}}"#);
        assert!(matches!(
            parse_diff(&in_diff),
            Err(PresenceError::BadEntry { .. })
        ));
        let in_diff = format!(r#"{{"joins":{{}},"leaves":{bad}}}"#);
        assert!(matches!(
            parse_diff(&in_diff),
            Err(PresenceError::BadEntry { .. })
        ));
    }
    let err = parse_state(r#"{"k":{"metas":[{"x":1}]}}"#).unwrap_err();
    assert_eq!(
        err,
        PresenceError::BadEntry {
            key: "k".into(),
            reason: "metas[0]: no phx_ref".into()
        }
    );
    let e: &dyn std::error::Error = &err;
    assert!(e.to_string().starts_with("bad presence entry"));
}

#[test]
fn tracker_is_unchanged_on_bad_input() {
    let mut t = PresenceTracker::new();
    t.set_join_ref("1");
    let mut events = Vec::new();
    t.handle_diff(
        r#"{"joins":{"a":{"metas":[{"phx_ref":"1"}]}},"leaves":{}}"#,
        &mut events,
    )
    .unwrap();
    assert!(t.handle_diff("{", &mut events).is_err());
    assert!(
        t.handle_state(r#"{"a":{"metas":[{"nope":1}]}}"#, &mut events)
            .is_err()
    );
    assert!(events.is_empty());
    assert!(!t.is_synced());
    assert_eq!(t.pending_diffs(), 1);

    t.handle_state(r#"{"b":{"metas":[{"phx_ref":"2"}]}}"#, &mut events)
        .unwrap();
    let before = t.state().clone();
    events.clear();
    assert!(t.handle_diff("[1]", &mut events).is_err());
    assert!(
        t.handle_diff(r#"{"joins":{"c":{"metas":[{}]}}}"#, &mut events)
            .is_err()
    );
    assert!(t.handle_state("null", &mut events).is_err());
    assert!(events.is_empty());
    assert_eq!(t.state(), &before);
    assert!(t.is_synced());
}

// ---------------------------------------------------------------- syncState (phoenix.js checklist)

#[test]
fn sync_state_from_empty_joins_everyone() {
    let mut s = PresenceState::new();
    let mut ch = Vec::new();
    let new_state = state(json!({"u1": {"metas": [{"id": 1, "phx_ref": "1"}]}}));
    sync_state(&mut s, new_state.clone(), &mut ch);
    assert_eq!(s, new_state);
    assert_eq!(
        ch,
        [PresenceChange::Join {
            key: "u1".into(),
            current: None,
            new_metas: vec![m(1, "1")]
        }]
    );
}

#[test]
fn sync_state_on_joins_new_and_on_leaves_left() {
    let mut s = state(json!({"u4": {"metas": [{"id": 4, "phx_ref": "4"}]}}));
    let mut ch = Vec::new();
    sync_state(&mut s, fixture_state(), &mut ch);
    assert_eq!(s, fixture_state());
    assert_eq!(
        ch,
        [
            PresenceChange::Join {
                key: "u1".into(),
                current: None,
                new_metas: vec![m(1, "1")]
            },
            PresenceChange::Join {
                key: "u2".into(),
                current: None,
                new_metas: vec![m(2, "2")]
            },
            PresenceChange::Join {
                key: "u3".into(),
                current: None,
                new_metas: vec![m(3, "3")]
            },
            PresenceChange::Leave {
                key: "u4".into(),
                remaining: vec![],
                left_metas: vec![m(4, "4")]
            },
        ]
    );
}

#[test]
fn sync_state_on_joins_only_newly_added_metas() {
    let mut s = state(json!({"u3": {"metas": [{"id": 3, "phx_ref": "3"}]}}));
    let new_state =
        state(json!({"u3": {"metas": [{"id": 3, "phx_ref": "3"}, {"id": 3, "phx_ref": "3.new"}]}}));
    let mut ch = Vec::new();
    sync_state(&mut s, new_state.clone(), &mut ch);
    assert_eq!(s, new_state);
    assert_eq!(
        ch,
        [PresenceChange::Join {
            key: "u3".into(),
            current: Some(entry(vec![m(3, "3")])),
            new_metas: vec![m(3, "3.new")]
        }]
    );
}

#[test]
fn sync_state_changed_metas_give_join_and_leave() {
    let mut s =
        state(json!({"u": {"metas": [{"id": 1, "phx_ref": "a"}, {"id": 1, "phx_ref": "b"}]}}));
    let new_state =
        state(json!({"u": {"metas": [{"id": 1, "phx_ref": "b"}, {"id": 1, "phx_ref": "c"}]}}));
    let mut ch = Vec::new();
    sync_state(&mut s, new_state.clone(), &mut ch);
    assert_eq!(s, new_state);
    assert_eq!(
        ch,
        [
            PresenceChange::Join {
                key: "u".into(),
                current: Some(entry(vec![m(1, "a"), m(1, "b")])),
                new_metas: vec![m(1, "c")]
            },
            PresenceChange::Leave {
                key: "u".into(),
                remaining: vec![m(1, "b"), m(1, "c")],
                left_metas: vec![m(1, "a")]
            },
        ]
    );
}

#[test]
fn sync_state_same_state_is_silent_and_takes_new_extra() {
    let mut s = fixture_state();
    let mut ch = Vec::new();
    sync_state(&mut s, fixture_state(), &mut ch);
    assert!(ch.is_empty());
    assert_eq!(s, fixture_state());

    let with_extra = state(json!({"u1": {"metas": [{"id": 1, "phx_ref": "1"}], "name": "x"}}));
    sync_state(&mut s, with_extra.clone(), &mut ch);
    assert_eq!(s, with_extra);
    assert_eq!(ch.len(), 2); // u2, u3 left
    assert!(ch.iter().all(|c| matches!(c, PresenceChange::Leave { .. })));
}

#[test]
fn sync_state_drops_empty_entries_and_duplicate_refs() {
    let mut s = PresenceState::new();
    let mut ch = Vec::new();
    sync_state(
        &mut s,
        state(json!({"e": {"metas": []}, "d": {"metas": [{"phx_ref": "1"}, {"phx_ref": "1"}]}})),
        &mut ch,
    );
    assert!(!s.contains_key("e"));
    assert_eq!(key_refs(&s, "d"), ["1"]);
    assert_eq!(ch.len(), 1);
}

// ---------------------------------------------------------------- syncDiff (phoenix.js checklist)

#[test]
fn sync_diff_into_empty_state() {
    let mut s = PresenceState::new();
    let mut ch = Vec::new();
    let joins = json!({"u1": {"metas": [{"id": 1, "phx_ref": "1"}]}});
    sync_diff(&mut s, diff(joins.clone(), json!({})), &mut ch);
    assert_eq!(s, state(joins));
    assert_eq!(
        ch,
        [PresenceChange::Join {
            key: "u1".into(),
            current: None,
            new_metas: vec![m(1, "1")]
        }]
    );
}

#[test]
fn sync_diff_removes_presence_when_meta_is_empty_and_adds_additional_meta() {
    let mut s = fixture_state();
    let mut ch = Vec::new();
    sync_diff(
        &mut s,
        diff(
            json!({"u1": {"metas": [{"id": 1, "phx_ref": "1.2"}]}}),
            json!({"u2": {"metas": [{"id": 2, "phx_ref": "2"}]}}),
        ),
        &mut ch,
    );
    assert_eq!(
        s,
        state(json!({
            "u1": {"metas": [{"id": 1, "phx_ref": "1"}, {"id": 1, "phx_ref": "1.2"}]},
            "u3": {"metas": [{"id": 3, "phx_ref": "3"}]}
        }))
    );
    assert_eq!(
        ch,
        [
            PresenceChange::Join {
                key: "u1".into(),
                current: Some(entry(vec![m(1, "1")])),
                new_metas: vec![m(1, "1.2")]
            },
            PresenceChange::Leave {
                key: "u2".into(),
                remaining: vec![],
                left_metas: vec![m(2, "2")]
            },
        ]
    );
}

#[test]
fn sync_diff_removes_meta_while_leaving_key_if_other_metas_exist() {
    let mut s =
        state(json!({"u1": {"metas": [{"id": 1, "phx_ref": "1"}, {"id": 1, "phx_ref": "1.2"}]}}));
    let mut ch = Vec::new();
    sync_diff(
        &mut s,
        diff(
            json!({}),
            json!({"u1": {"metas": [{"id": 1, "phx_ref": "1"}]}}),
        ),
        &mut ch,
    );
    assert_eq!(
        s,
        state(json!({"u1": {"metas": [{"id": 1, "phx_ref": "1.2"}]}}))
    );
    assert_eq!(
        ch,
        [PresenceChange::Leave {
            key: "u1".into(),
            remaining: vec![m(1, "1.2")],
            left_metas: vec![m(1, "1")]
        }]
    );
}

#[test]
fn sync_diff_same_key_two_metas_in_one_join() {
    let mut s = PresenceState::new();
    let mut ch = Vec::new();
    sync_diff(
        &mut s,
        diff(
            json!({"u": {"metas": [{"id": 1, "phx_ref": "a"}, {"id": 2, "phx_ref": "b"}]}}),
            json!({}),
        ),
        &mut ch,
    );
    assert_eq!(key_refs(&s, "u"), ["a", "b"]);
    assert_eq!(ch.len(), 1);
    // leaving both at once drops the key
    sync_diff(
        &mut s,
        diff(
            json!({}),
            json!({"u": {"metas": [{"phx_ref": "b"}, {"phx_ref": "a"}]}}),
        ),
        &mut ch,
    );
    assert!(s.is_empty());
    assert_eq!(
        ch[1],
        PresenceChange::Leave {
            key: "u".into(),
            remaining: vec![],
            left_metas: vec![m(1, "a"), m(2, "b")]
        }
    );
}

#[test]
fn sync_diff_leave_of_absent_key_or_ref_is_a_no_op() {
    let mut s = fixture_state();
    let mut ch = Vec::new();
    sync_diff(
        &mut s,
        diff(
            json!({}),
            json!({"nobody": {"metas": [{"phx_ref": "1"}]}, "u1": {"metas": [{"phx_ref": "zzz"}]}}),
        ),
        &mut ch,
    );
    assert_eq!(s, fixture_state());
    assert!(ch.is_empty());
}

#[test]
fn sync_diff_join_of_present_ref_updates_in_place_without_event() {
    let mut s =
        state(json!({"u": {"metas": [{"id": 1, "phx_ref": "a"}, {"id": 2, "phx_ref": "b"}]}}));
    let mut ch = Vec::new();
    sync_diff(
        &mut s,
        diff(
            json!({"u": {"metas": [{"id": 9, "phx_ref": "a"}]}}),
            json!({}),
        ),
        &mut ch,
    );
    assert!(ch.is_empty());
    assert_eq!(s["u"].metas, [m(9, "a"), m(2, "b")]);
}

#[test]
fn sync_diff_join_replaces_extra_keys() {
    let mut s = state(json!({"u": {"metas": [{"phx_ref": "a"}], "user": {"v": 1}}}));
    let mut ch = Vec::new();
    sync_diff(
        &mut s,
        diff(
            json!({"u": {"metas": [{"phx_ref": "b"}], "user": {"v": 2}}}),
            json!({}),
        ),
        &mut ch,
    );
    assert_eq!(s["u"].extra.get("user"), Some(&json!({"v": 2})));
    assert_eq!(key_refs(&s, "u"), ["a", "b"]);
}

#[test]
fn sync_diff_joins_before_leaves() {
    // join and leave of the same key in one diff: the join is applied first
    let mut s = state(json!({"u": {"metas": [{"phx_ref": "old"}]}}));
    let mut ch = Vec::new();
    sync_diff(
        &mut s,
        diff(
            json!({"u": {"metas": [{"phx_ref": "new"}]}}),
            json!({"u": {"metas": [{"phx_ref": "old"}]}}),
        ),
        &mut ch,
    );
    assert_eq!(key_refs(&s, "u"), ["new"]);
    assert!(matches!(ch[0], PresenceChange::Join { .. }));
    assert!(
        matches!(&ch[1], PresenceChange::Leave { remaining, .. } if refs(remaining) == ["new"])
    );
    assert_eq!(ch[1].key(), "u");
}

// ---------------------------------------------------------------- list

#[test]
fn list_lists_full_presence_in_key_order() {
    let mut s = PresenceState::new();
    let mut ch = Vec::new();
    sync_state(
        &mut s,
        state(json!({
            "u3": {"metas": [{"id": 3, "phx_ref": "3"}]},
            "u1": {"metas": [{"id": 1, "phx_ref": "1"}]},
            "u2": {"metas": [{"id": 2, "phx_ref": "2"}]}
        })),
        &mut ch,
    );
    let listed: Vec<(&str, &PresenceEntry)> = list(&s).collect();
    assert_eq!(
        listed,
        [
            ("u1", &entry(vec![m(1, "1")])),
            ("u2", &entry(vec![m(2, "2")])),
            ("u3", &entry(vec![m(3, "3")])),
        ]
    );
}

#[test]
fn list_with_chooser() {
    let s = state(
        json!({"u1": {"metas": [{"id": 1, "phx_ref": "1.first"}, {"id": 1, "phx_ref": "1.second"}]}}),
    );
    let firsts: Vec<&PresenceMeta> = list(&s).filter_map(|(_, e)| e.metas.first()).collect();
    assert_eq!(firsts, [&m(1, "1.first")]);
}

// ---------------------------------------------------------------- tracker

#[test]
fn tracker_applies_pending_diff_once_state_arrives() {
    let mut t = PresenceTracker::default();
    t.set_join_ref("1");
    let mut ev = Vec::new();
    t.handle_diff(
        r#"{"joins":{},"leaves":{"u2":{"metas":[{"id":2,"phx_ref":"2"}]}}}"#,
        &mut ev,
    )
    .unwrap();
    assert!(ev.is_empty());
    assert!(t.state().is_empty());
    assert_eq!(t.pending_diffs(), 1);
    assert!(!t.is_synced());

    t.handle_state(
        r#"{"u1":{"metas":[{"id":1,"phx_ref":"1"}]},"u2":{"metas":[{"id":2,"phx_ref":"2"}]}}"#,
        &mut ev,
    )
    .unwrap();
    assert!(t.is_synced());
    assert_eq!(t.pending_diffs(), 0);
    assert_eq!(
        t.state(),
        &state(json!({"u1": {"metas": [{"id": 1, "phx_ref": "1"}]}}))
    );
    // state joins u1 and u2, the queued diff leaves u2, then one Sync at the end
    assert_eq!(ev.len(), 4);
    assert_eq!(ev.last(), Some(&PresenceEvent::Sync));
    assert_eq!(syncs(&ev), 1);
    assert!(
        matches!(&ev[2], PresenceEvent::Change(PresenceChange::Leave { key, .. }) if key == "u2")
    );
}

#[test]
fn tracker_diff_after_state_is_applied_with_sync() {
    let mut t = PresenceTracker::new();
    t.set_join_ref("1");
    let mut ev = Vec::new();
    t.handle_state("{}", &mut ev).unwrap();
    assert_eq!(ev, [PresenceEvent::Sync]);
    ev.clear();
    t.handle_diff(
        r#"{"joins":{"a":{"metas":[{"phx_ref":"1"}]}},"leaves":{}}"#,
        &mut ev,
    )
    .unwrap();
    assert_eq!(changes(&ev).len(), 1);
    assert_eq!(ev.last(), Some(&PresenceEvent::Sync));
    // a no-op diff still gives a Sync (phoenix.js calls onSync)
    ev.clear();
    t.handle_diff(
        r#"{"joins":{},"leaves":{"zz":{"metas":[{"phx_ref":"9"}]}}}"#,
        &mut ev,
    )
    .unwrap();
    assert_eq!(ev, [PresenceEvent::Sync]);
}

#[test]
fn tracker_new_join_ref_resets_to_pending() {
    let mut t = PresenceTracker::new();
    let mut ev = Vec::new();
    t.set_join_ref("1");
    t.handle_state(r#"{"a":{"metas":[{"phx_ref":"1"}]}}"#, &mut ev)
        .unwrap();
    assert!(t.is_synced());

    // same join_ref again: nothing changes
    t.set_join_ref("1");
    assert!(t.is_synced());
    assert_eq!(t.join_ref(), Some("1"));

    // rejoin: pending again, state kept, diffs queued
    t.set_join_ref("2");
    assert!(!t.is_synced());
    assert_eq!(t.join_ref(), Some("2"));
    assert_eq!(key_refs(t.state(), "a"), ["1"]);
    ev.clear();
    t.handle_diff(
        r#"{"joins":{"b":{"metas":[{"phx_ref":"2"}]}},"leaves":{}}"#,
        &mut ev,
    )
    .unwrap();
    assert!(ev.is_empty());
    assert_eq!(t.pending_diffs(), 1);
    assert!(!t.state().contains_key("b"));

    // the new state says a left while we were away; the queued diff adds b
    t.handle_state(r#"{"c":{"metas":[{"phx_ref":"3"}]}}"#, &mut ev)
        .unwrap();
    let keys: Vec<&str> = t.list().map(|(k, _)| k).collect();
    assert_eq!(keys, ["b", "c"]);
    let ch = changes(&ev);
    assert_eq!(ch.len(), 3);
    assert!(matches!(ch[0], PresenceChange::Join { key, .. } if key == "c"));
    assert!(matches!(ch[1], PresenceChange::Leave { key, .. } if key == "a"));
    assert!(matches!(ch[2], PresenceChange::Join { key, .. } if key == "b"));
}

#[test]
fn tracker_drops_diffs_queued_for_an_older_join() {
    let mut t = PresenceTracker::new();
    let mut ev = Vec::new();
    t.set_join_ref("1");
    t.handle_diff(
        r#"{"joins":{"ghost":{"metas":[{"phx_ref":"g"}]}},"leaves":{}}"#,
        &mut ev,
    )
    .unwrap();
    t.set_join_ref("2"); // join 1 failed before its state came
    assert_eq!(t.pending_diffs(), 0);
    t.handle_state(r#"{"a":{"metas":[{"phx_ref":"1"}]}}"#, &mut ev)
        .unwrap();
    assert!(!t.state().contains_key("ghost"));
}

#[test]
fn tracker_state_without_join_ref_syncs() {
    let mut t = PresenceTracker::new();
    let mut ev = Vec::new();
    assert!(!t.is_synced());
    t.handle_state(r#"{"a":{"metas":[{"phx_ref":"1"}]}}"#, &mut ev)
        .unwrap();
    assert!(t.is_synced());
    assert_eq!(t.join_ref(), None);
}

#[test]
fn tracker_clear_forgets_everything() {
    let mut t = PresenceTracker::new();
    let mut ev = Vec::new();
    t.set_join_ref("1");
    t.handle_state(r#"{"a":{"metas":[{"phx_ref":"1"}]}}"#, &mut ev)
        .unwrap();
    t.set_join_ref("2");
    t.handle_diff(
        r#"{"joins":{"b":{"metas":[{"phx_ref":"2"}]}},"leaves":{}}"#,
        &mut ev,
    )
    .unwrap();
    t.clear();
    assert!(t.state().is_empty());
    assert_eq!(t.pending_diffs(), 0);
    assert!(!t.is_synced());
    assert_eq!(t.join_ref(), None);
    // after clear, a rejoin behaves like the first join: every key is a join
    ev.clear();
    t.set_join_ref("3");
    t.handle_state(r#"{"a":{"metas":[{"phx_ref":"1"}]}}"#, &mut ev)
        .unwrap();
    assert!(matches!(
        changes(&ev)[..],
        [PresenceChange::Join { current: None, .. }]
    ));
}

#[test]
fn tracker_pending_queue_is_bounded() {
    let mut t = PresenceTracker::new();
    let mut ev = Vec::new();
    t.set_join_ref("1");
    let mut errors = Vec::new();
    for i in 0..MAX_PENDING_DIFFS + 10 {
        let d = json!({"joins": {format!("k{i}"): {"metas": [{"phx_ref": i.to_string()}]}}, "leaves": {}});
        if let Err(e) = t.handle_diff(&d.to_string(), &mut ev) {
            errors.push((i, e));
        }
    }
    // The first dropped diff is reported (once per wait for a state); the diff itself is queued.
    assert_eq!(
        errors,
        vec![(MAX_PENDING_DIFFS, PresenceError::PendingDiffsDropped)]
    );
    assert_eq!(t.pending_diffs(), MAX_PENDING_DIFFS);
    t.handle_state("{}", &mut ev).unwrap();
    assert_eq!(t.state().len(), MAX_PENDING_DIFFS);
    assert!(!t.state().contains_key("k0"));
    assert!(
        t.state()
            .contains_key(&format!("k{}", MAX_PENDING_DIFFS + 9))
    );
}

// ---------------------------------------------------------------- transcripts

/// 10_presence_state: join reply, then the own presence_diff, then presence_state.
#[test]
fn transcript_10_diff_before_state_does_not_duplicate() {
    let frames = [
        r#"["1","1","room:wire10","phx_reply",{"response":{},"status":"ok"}]"#,
        r#"[null,null,"room:wire10","presence_diff",{"joins":{"alice":{"metas":[{"phx_ref":"GOuQMrIxpaZuuggR","online_at":1795687423}]}},"leaves":{}}]"#,
        r#"["1",null,"room:wire10","presence_state",{"alice":{"metas":[{"phx_ref":"GOuQMrIxpaZuuggR","online_at":1795687423}]}}]"#,
    ];
    let mut t = PresenceTracker::new();
    let mut ev = Vec::new();
    t.set_join_ref("1"); // phx_join sent with join_ref "1"
    // frames[0] is the join reply: nothing for presence
    t.handle_diff(&payload(frames[1]), &mut ev).unwrap();
    assert!(ev.is_empty());
    t.handle_state(&payload(frames[2]), &mut ev).unwrap();

    assert_eq!(key_refs(t.state(), "alice"), ["GOuQMrIxpaZuuggR"]);
    assert_eq!(
        t.state()["alice"].metas[0].get("online_at"),
        Some(json!(1795687423))
    );
    let alice = PresenceMeta::new("GOuQMrIxpaZuuggR").with_field("online_at", 1795687423);
    assert_eq!(
        ev,
        [
            PresenceEvent::Change(PresenceChange::Join {
                key: "alice".into(),
                current: None,
                new_metas: vec![alice]
            }),
            PresenceEvent::Sync,
        ]
    );
}

/// 10 as seen with the stock inet backend (same order, other refs).
#[test]
fn transcript_10_inet_backend() {
    let mut t = PresenceTracker::new();
    let mut ev = Vec::new();
    t.set_join_ref("1");
    t.handle_diff(&payload(r#"[null,null,"room:wire10","presence_diff",{"joins":{"alice":{"metas":[{"phx_ref":"GOuPY3p-TRVuugbh","online_at":1795686533}]}},"leaves":{}}]"#), &mut ev).unwrap();
    t.handle_state(&payload(r#"["1",null,"room:wire10","presence_state",{"alice":{"metas":[{"phx_ref":"GOuPY3p-TRVuugbh","online_at":1795686533}]}}]"#), &mut ev).unwrap();
    assert_eq!(key_refs(t.state(), "alice"), ["GOuPY3p-TRVuugbh"]);
    assert_eq!(changes(&ev).len(), 1);
}

const T11_OLD_BOB: &str = "GOuQMuiN5FVuughB";
const T11_NEW_BOB: &str = "GOuQMwCXr8tuughx";

/// 11_presence_diff as client A sees it: bob joins twice (two devices), leaves, drops.
#[test]
fn transcript_11_client_a() {
    let frames = [
        r#"[null,null,"room:wire11","presence_diff",{"joins":{"alice":{"metas":[{"phx_ref":"GOuQMtBdZBVuuggh","online_at":1795687424}]}},"leaves":{}}]"#,
        r#"["1",null,"room:wire11","presence_state",{"alice":{"metas":[{"phx_ref":"GOuQMtBdZBVuuggh","online_at":1795687424}]}}]"#,
        r#"[null,null,"room:wire11","presence_diff",{"joins":{"bob":{"metas":[{"phx_ref":"GOuQMuiN5FVuughB","online_at":1795687424}]}},"leaves":{}}]"#,
        r#"[null,null,"room:wire11","presence_diff",{"joins":{"bob":{"metas":[{"phx_ref":"GOuQMwCXr8tuughx","online_at":1795687425}]}},"leaves":{}}]"#,
        r#"[null,null,"room:wire11","presence_diff",{"joins":{},"leaves":{"bob":{"metas":[{"phx_ref":"GOuQMuiN5FVuughB","online_at":1795687424}]}}}]"#,
        r#"[null,null,"room:wire11","presence_diff",{"joins":{},"leaves":{"bob":{"metas":[{"phx_ref":"GOuQMwCXr8tuughx","online_at":1795687425}]}}}]"#,
    ];
    let mut t = PresenceTracker::new();
    let mut ev = Vec::new();
    t.set_join_ref("1");
    t.handle_diff(&payload(frames[0]), &mut ev).unwrap();
    t.handle_state(&payload(frames[1]), &mut ev).unwrap();
    assert_eq!(changes(&ev).len(), 1);

    // bob's first device
    ev.clear();
    t.handle_diff(&payload(frames[2]), &mut ev).unwrap();
    assert!(matches!(
        changes(&ev)[..],
        [PresenceChange::Join { key, current: None, new_metas }] if key == "bob" && refs(new_metas) == [T11_OLD_BOB]
    ));
    // bob's second device: one key, two metas, in join order
    ev.clear();
    t.handle_diff(&payload(frames[3]), &mut ev).unwrap();
    assert_eq!(key_refs(t.state(), "bob"), [T11_OLD_BOB, T11_NEW_BOB]);
    assert!(matches!(
        changes(&ev)[..],
        [PresenceChange::Join { key, current: Some(cur), new_metas }]
            if key == "bob" && refs(&cur.metas) == [T11_OLD_BOB] && refs(new_metas) == [T11_NEW_BOB]
    ));
    assert_eq!(t.state().len(), 2);
    // B leaves: only that meta goes
    ev.clear();
    t.handle_diff(&payload(frames[4]), &mut ev).unwrap();
    assert_eq!(key_refs(t.state(), "bob"), [T11_NEW_BOB]);
    assert!(matches!(
        changes(&ev)[..],
        [PresenceChange::Leave { key, remaining, left_metas }]
            if key == "bob" && refs(remaining) == [T11_NEW_BOB] && refs(left_metas) == [T11_OLD_BOB]
    ));
    // C drops its websocket: bob is gone
    ev.clear();
    t.handle_diff(&payload(frames[5]), &mut ev).unwrap();
    assert!(!t.state().contains_key("bob"));
    assert!(matches!(
        changes(&ev)[..],
        [PresenceChange::Leave { key, remaining, left_metas }]
            if key == "bob" && remaining.is_empty() && refs(left_metas) == [T11_NEW_BOB]
    ));
    assert_eq!(ev.last(), Some(&PresenceEvent::Sync));
    let keys: Vec<&str> = t.list().map(|(k, _)| k).collect();
    assert_eq!(keys, ["alice"]);
}

/// 11 as client C sees it: own diff first, then a state with bob's two metas.
#[test]
fn transcript_11_client_c() {
    let frames = [
        r#"[null,null,"room:wire11","presence_diff",{"joins":{"bob":{"metas":[{"phx_ref":"GOuQMwCXr8tuughx","online_at":1795687425}]}},"leaves":{}}]"#,
        r#"["1",null,"room:wire11","presence_state",{"alice":{"metas":[{"phx_ref":"GOuQMtBdZBVuuggh","online_at":1795687424}]},"bob":{"metas":[{"phx_ref":"GOuQMuiN5FVuughB","online_at":1795687424},{"phx_ref":"GOuQMwCXr8tuughx","online_at":1795687425}]}}]"#,
        r#"[null,null,"room:wire11","presence_diff",{"joins":{},"leaves":{"bob":{"metas":[{"phx_ref":"GOuQMuiN5FVuughB","online_at":1795687424}]}}}]"#,
    ];
    let mut t = PresenceTracker::new();
    let mut ev = Vec::new();
    t.set_join_ref("1");
    t.handle_diff(&payload(frames[0]), &mut ev).unwrap();
    t.handle_state(&payload(frames[1]), &mut ev).unwrap();
    assert_eq!(key_refs(t.state(), "bob"), [T11_OLD_BOB, T11_NEW_BOB]);
    let ch = changes(&ev);
    assert_eq!(ch.len(), 2); // alice, bob (two metas); the replayed own diff adds nothing
    assert!(
        matches!(ch[1], PresenceChange::Join { key, new_metas, .. } if key == "bob" && new_metas.len() == 2)
    );
    assert_eq!(syncs(&ev), 1);

    t.handle_diff(&payload(frames[2]), &mut ev).unwrap();
    assert_eq!(key_refs(t.state(), "bob"), [T11_NEW_BOB]);
}

/// 14_duplicate_join of a presence room: join_ref 5, then a second join with join_ref 6.
#[test]
fn transcript_14_duplicate_join() {
    let old = "GOuQNGjd9YJuugkR";
    let new = "GOuQNHrI1UduugSi";
    let first = [
        r#"[null,null,"room:wire14","presence_diff",{"joins":{"dup":{"metas":[{"phx_ref":"GOuQNGjd9YJuugkR","online_at":1795687431}]}},"leaves":{}}]"#,
        r#"["5",null,"room:wire14","presence_state",{"dup":{"metas":[{"phx_ref":"GOuQNGjd9YJuugkR","online_at":1795687431}]}}]"#,
    ];
    let second = [
        r#"[null,null,"room:wire14","presence_diff",{"joins":{},"leaves":{"dup":{"metas":[{"phx_ref":"GOuQNGjd9YJuugkR","online_at":1795687431}]}}}]"#,
        r#"[null,null,"room:wire14","presence_diff",{"joins":{"dup":{"metas":[{"phx_ref":"GOuQNHrI1UduugSi","online_at":1795687431}]}},"leaves":{}}]"#,
        r#"["6",null,"room:wire14","presence_state",{"dup":{"metas":[{"phx_ref":"GOuQNHrI1UduugSi","online_at":1795687431}]}}]"#,
    ];
    let mut t = PresenceTracker::new();
    let mut ev = Vec::new();
    t.set_join_ref("5");
    t.handle_diff(&payload(first[0]), &mut ev).unwrap();
    t.handle_state(&payload(first[1]), &mut ev).unwrap();
    assert_eq!(key_refs(t.state(), "dup"), [old]);

    // second phx_join (join_ref 6): reply, phx_close for 5, leave diff, join diff, state
    ev.clear();
    t.set_join_ref("6");
    t.handle_diff(&payload(second[0]), &mut ev).unwrap();
    t.handle_diff(&payload(second[1]), &mut ev).unwrap();
    assert!(ev.is_empty());
    assert_eq!(key_refs(t.state(), "dup"), [old]);
    t.handle_state(&payload(second[2]), &mut ev).unwrap();
    assert_eq!(key_refs(t.state(), "dup"), [new]);

    let old_meta = PresenceMeta::new(old).with_field("online_at", 1795687431);
    let new_meta = PresenceMeta::new(new).with_field("online_at", 1795687431);
    assert_eq!(
        ev,
        [
            PresenceEvent::Change(PresenceChange::Join {
                key: "dup".into(),
                current: Some(entry(vec![old_meta.clone()])),
                new_metas: vec![new_meta.clone()]
            }),
            PresenceEvent::Change(PresenceChange::Leave {
                key: "dup".into(),
                remaining: vec![new_meta],
                left_metas: vec![old_meta]
            }),
            PresenceEvent::Sync,
        ]
    );
}

/// 14 with the inet backend: the leaves diff of the replaced channel never arrives.
#[test]
fn transcript_14_inet_backend_missing_leave() {
    let mut t = PresenceTracker::new();
    let mut ev = Vec::new();
    t.set_join_ref("5");
    t.handle_diff(&payload(r#"[null,null,"room:wire14","presence_diff",{"joins":{"dup":{"metas":[{"phx_ref":"GOuPZTIFSGBuugjB","online_at":1795686541}]}},"leaves":{}}]"#), &mut ev).unwrap();
    t.handle_state(&payload(r#"["5",null,"room:wire14","presence_state",{"dup":{"metas":[{"phx_ref":"GOuPZTIFSGBuugjB","online_at":1795686541}]}}]"#), &mut ev).unwrap();
    ev.clear();
    t.set_join_ref("6");
    t.handle_diff(&payload(r#"[null,null,"room:wire14","presence_diff",{"joins":{"dup":{"metas":[{"phx_ref":"GOuPZUP3lCNuugjh","online_at":1795686541}]}},"leaves":{}}]"#), &mut ev).unwrap();
    t.handle_state(&payload(r#"["6",null,"room:wire14","presence_state",{"dup":{"metas":[{"phx_ref":"GOuPZUP3lCNuugjh","online_at":1795686541}]}}]"#), &mut ev).unwrap();
    assert_eq!(key_refs(t.state(), "dup"), ["GOuPZUP3lCNuugjh"]);
    let ch = changes(&ev);
    assert_eq!(ch.len(), 2);
    assert!(
        matches!(ch[0], PresenceChange::Join { new_metas, .. } if refs(new_metas) == ["GOuPZUP3lCNuugjh"])
    );
    assert!(
        matches!(ch[1], PresenceChange::Leave { left_metas, .. } if refs(left_metas) == ["GOuPZTIFSGBuugjB"])
    );
}

// ---------------------------------------------------------------- property tests

/// One server diff: fresh metas joining keys, and leaves of metas live before the diff.
#[derive(Debug, Clone)]
struct Step {
    joins: Vec<u8>,
    leaves: Vec<prop::sample::Index>,
    leave_missing: Option<u8>,
}

fn step() -> impl Strategy<Value = Step> {
    (
        prop::collection::vec(0u8..4, 0..3),
        prop::collection::vec(any::<prop::sample::Index>(), 0..3),
        prop::option::of(0u8..6),
    )
        .prop_map(|(joins, leaves, leave_missing)| Step {
            joins,
            leaves,
            leave_missing,
        })
}

/// The model: live (key, phx_ref) pairs in join order.
#[derive(Default, Clone)]
struct Model {
    live: Vec<(String, String)>,
    next: u32,
}

fn meta_json(phx_ref: &str) -> Value {
    json!({"phx_ref": phx_ref, "n": phx_ref.len(), "dev": format!("d{phx_ref}")})
}

impl Model {
    /// Applies a step, returning the presence_diff payload the server would send.
    fn apply(&mut self, s: &Step) -> String {
        let mut joins = serde_json::Map::new();
        let mut leaves = serde_json::Map::new();
        let add = |map: &mut serde_json::Map<String, Value>, key: &str, r: &str| {
            let e = map
                .entry(key.to_owned())
                .or_insert_with(|| json!({"metas": []}));
            e["metas"].as_array_mut().unwrap().push(meta_json(r));
        };
        let mut gone = Vec::new();
        if !self.live.is_empty() {
            for ix in &s.leaves {
                let i = ix.index(self.live.len());
                if !gone.contains(&i) {
                    gone.push(i);
                }
            }
        }
        for &i in &gone {
            let (k, r) = &self.live[i];
            add(&mut leaves, k, r);
        }
        if let Some(k) = s.leave_missing {
            add(&mut leaves, &format!("k{k}"), "missing-ref");
        }
        gone.sort_unstable();
        for i in gone.into_iter().rev() {
            self.live.remove(i);
        }
        for &k in &s.joins {
            self.next += 1;
            let key = format!("k{k}");
            let r = format!("r{}", self.next);
            add(&mut joins, &key, &r);
            self.live.push((key, r));
        }
        json!({"joins": joins, "leaves": leaves}).to_string()
    }

    fn state_json(&self) -> String {
        let mut out = serde_json::Map::new();
        for (k, r) in &self.live {
            let e = out.entry(k.clone()).or_insert_with(|| json!({"metas": []}));
            e["metas"].as_array_mut().unwrap().push(meta_json(r));
        }
        Value::Object(out).to_string()
    }

    fn state(&self) -> PresenceState {
        parse_state(&self.state_json()).unwrap()
    }
}

/// Replays change events onto a set of (key, phx_ref).
fn apply_changes(set: &mut std::collections::BTreeSet<(String, String)>, ch: &[PresenceChange]) {
    for c in ch {
        match c {
            PresenceChange::Join { key, new_metas, .. } => {
                for m in new_metas {
                    assert!(
                        set.insert((key.clone(), m.phx_ref().to_owned())),
                        "double join"
                    );
                }
            }
            PresenceChange::Leave {
                key, left_metas, ..
            } => {
                for m in left_metas {
                    assert!(
                        set.remove(&(key.clone(), m.phx_ref().to_owned())),
                        "leave of absent"
                    );
                }
            }
        }
    }
}

fn pairs(s: &PresenceState) -> std::collections::BTreeSet<(String, String)> {
    s.iter()
        .flat_map(|(k, e)| {
            e.metas
                .iter()
                .map(move |m| (k.clone(), m.phx_ref().to_owned()))
        })
        .collect()
}

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        "[a-z_]{0,8}".prop_map(Value::from),
        Just(Value::from("phx_ref")),
        Just(Value::from("metas")),
    ];
    leaf.prop_recursive(5, 64, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec(
                (
                    prop_oneof![
                        Just("metas".to_owned()),
                        Just("phx_ref".to_owned()),
                        Just("phx_ref_prev".to_owned()),
                        Just("joins".to_owned()),
                        Just("leaves".to_owned()),
                        "[a-z]{1,3}"
                    ],
                    inner
                ),
                0..6
            )
            .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Diffs applied one by one give the same state as sync_state from scratch, and the
    /// change events describe exactly what happened.
    #[test]
    fn diffs_equal_state_from_scratch(steps in prop::collection::vec(step(), 0..25)) {
        let mut model = Model::default();
        let mut s = PresenceState::new();
        let mut seen = std::collections::BTreeSet::new();
        for st in &steps {
            let d = parse_diff(&model.apply(st)).unwrap();
            let mut ch = Vec::new();
            sync_diff(&mut s, d, &mut ch);
            apply_changes(&mut seen, &ch);
            for c in &ch {
                if let PresenceChange::Leave { key, remaining, .. } = c {
                    let now = s.get(key).map(|e| e.metas.clone()).unwrap_or_default();
                    prop_assert_eq!(remaining, &now);
                }
            }
            prop_assert_eq!(&seen, &pairs(&s));
            prop_assert!(s.values().all(|e| !e.metas.is_empty()));
            prop_assert_eq!(&s, &model.state());
        }
        let mut scratch = PresenceState::new();
        let mut ch = Vec::new();
        sync_state(&mut scratch, model.state(), &mut ch);
        prop_assert_eq!(&scratch, &s);
        let mut from_events = std::collections::BTreeSet::new();
        apply_changes(&mut from_events, &ch);
        prop_assert_eq!(from_events, pairs(&s));
    }

    /// sync_state from any earlier state reaches the new state, and its events turn the old
    /// meta set into the new one.
    #[test]
    fn sync_state_events_transform_old_into_new(
        steps in prop::collection::vec(step(), 0..20),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut model = Model::default();
        let cut = cut.index(steps.len() + 1);
        let mut old = PresenceState::new();
        for (i, st) in steps.iter().enumerate() {
            if i == cut { old = model.state(); }
            model.apply(st);
        }
        if cut == steps.len() { old = model.state(); }
        let mut s = old.clone();
        let mut ch = Vec::new();
        sync_state(&mut s, model.state(), &mut ch);
        prop_assert_eq!(&s, &model.state());
        let mut set = pairs(&old);
        apply_changes(&mut set, &ch);
        prop_assert_eq!(set, pairs(&s));
    }

    /// The tracker ends at the model's state whatever the point the presence_state was taken
    /// at and however many diffs arrived before it (queued, then replayed).
    #[test]
    fn tracker_converges_with_diffs_before_and_after_state(
        steps in prop::collection::vec(step(), 0..20),
        snap in any::<prop::sample::Index>(),
        before in any::<prop::sample::Index>(),
    ) {
        let mut model = Model::default();
        let snap = snap.index(steps.len() + 1);
        let before = before.index(steps.len() + 1);
        let mut diffs = Vec::new();
        let mut snapshot = model.state_json();
        for (i, st) in steps.iter().enumerate() {
            diffs.push(model.apply(st));
            if i + 1 == snap { snapshot = model.state_json(); }
        }
        let mut t = PresenceTracker::new();
        let mut ev = Vec::new();
        t.set_join_ref("1");
        for d in &diffs[..before] {
            t.handle_diff(d, &mut ev).unwrap();
        }
        prop_assert!(ev.is_empty());
        t.handle_state(&snapshot, &mut ev).unwrap();
        for d in &diffs[before..] {
            t.handle_diff(d, &mut ev).unwrap();
        }
        prop_assert_eq!(t.state(), &model.state());
        prop_assert_eq!(syncs(&ev), 1 + diffs.len() - before);
        // the events, replayed, lead to the same place
        let mut set = std::collections::BTreeSet::new();
        let ch: Vec<PresenceChange> = changes(&ev).into_iter().cloned().collect();
        apply_changes(&mut set, &ch);
        prop_assert_eq!(set, pairs(t.state()));
    }

    /// Random JSON never panics; an error leaves the tracker as it was.
    #[test]
    fn random_json_never_panics(v in arb_json(), text in "\\PC{0,40}", synced in any::<bool>()) {
        for input in [v.to_string(), text, json!({"joins": v.clone(), "leaves": v.clone()}).to_string(),
                      json!({"k": {"metas": [v.clone()]}}).to_string()] {
            let _ = parse_state(&input);
            let _ = parse_diff(&input);
            let mut t = PresenceTracker::new();
            let mut ev = Vec::new();
            t.set_join_ref("1");
            if synced {
                t.handle_state(r#"{"a":{"metas":[{"phx_ref":"1"}]}}"#, &mut ev).unwrap();
            }
            let before = t.state().clone();
            let pending = t.pending_diffs();
            ev.clear();
            if t.handle_diff(&input, &mut ev).is_err() {
                prop_assert_eq!(t.state(), &before);
                prop_assert_eq!(t.pending_diffs(), pending);
                prop_assert!(ev.is_empty());
            }
            let before = t.state().clone();
            ev.clear();
            if t.handle_state(&input, &mut ev).is_err() {
                prop_assert_eq!(t.state(), &before);
                prop_assert!(ev.is_empty());
            }
        }
    }
}

#[test]
fn meta_fields_keep_the_servers_values_exactly() {
    // Numbers decode exactly as from the payload (a float that serde_json would not write back
    // digit for digit, an integer past u64), nested values and escaped keys included.
    let payload = r#"{"u":{"metas":[{"phx_ref":"r","big":188888888151967660544,"f":0.30000000000000004,"nested":{"a":[1,"x"]},"k\"\\\n":true}]}}"#;
    let s = parse_state(payload).unwrap();
    let meta = &s["u"].metas[0];
    let whole: Value = serde_json::from_str(payload).unwrap();
    let mut expected = whole["u"]["metas"][0].as_object().unwrap().clone();
    expected.remove("phx_ref");
    assert_eq!(meta.fields(), expected);
    assert_eq!(meta.get("big"), Some(expected["big"].clone()));
    assert_eq!(meta.get("f"), Some(json!(0.30000000000000004)));
    assert_eq!(meta.get("k\"\\\n"), Some(json!(true)));
    assert_eq!(meta.get("nested"), Some(json!({"a": [1, "x"]})));
    assert_eq!(meta.get("phx_ref"), None);
    assert_eq!(meta.get("missing"), None);
    assert_eq!(meta.to_json(), whole["u"]["metas"][0]);
}

#[test]
fn metas_compare_by_value_whatever_the_key_order() {
    let a = parse_state(r#"{"u":{"metas":[{"phx_ref":"r","b":1,"a":"x"}]}}"#).unwrap();
    let b = parse_state(r#"{"u":{"metas":[{"a":"x","phx_ref":"r","b":1}]}}"#).unwrap();
    assert_eq!(a, b);
    let built = PresenceMeta::new("r")
        .with_field("b", 1)
        .with_field("a", "x");
    assert_eq!(a["u"].metas[0], built);
    assert_eq!(built.fields_json(), r#"{"a":"x","b":1}"#);
    // A repeated key: the last wins, as in a JSON object read by serde_json.
    let c = parse_state(r#"{"u":{"metas":[{"phx_ref":"r","a":"y","b":1,"a":"x"}]}}"#).unwrap();
    assert_eq!(a, c);
    assert_ne!(a["u"].metas[0], built.clone().with_field("b", 2));
    // phx_ref and phx_ref_prev are not app fields.
    let same = built.clone().with_field("phx_ref", "other");
    assert_eq!(same, built);
    assert_eq!(same.phx_ref(), "r");
    let moved = built.with_phx_ref_prev("q");
    assert_eq!(moved.phx_ref_prev(), Some("q"));
    assert_eq!(
        moved.to_json(),
        json!({"phx_ref": "r", "phx_ref_prev": "q", "a": "x", "b": 1})
    );
}
