//! Real Phoenix transcripts replayed through a [`Socket`]: the socket's frames are compared
//! with the transcript's `>>` frames, and the transcript's `<<` frames are fed back in the
//! order they arrived (refs mapped to ours), asserting the events. Each scenario runs against
//! Phoenix 1.7.24 (`phoenix-wire`) and 1.8.12 (`phoenix-wire-1.8/parity`) captures.
#![allow(clippy::unwrap_used)]

#[path = "support/protocol.rs"]
mod support;

use std::time::Duration;

use serde_json::Value;
use support::*;

const SECS: fn(u64) -> Duration = Duration::from_secs;
const MS: fn(u64) -> Duration = Duration::from_millis;

/// The 1.7.24 capture and its 1.8.12 parity run.
fn both(name: &str) -> [String; 2] {
    [
        format!("phoenix-wire/{name}"),
        format!("phoenix-wire-1.8/parity/{name}"),
    ]
}

fn join(h: &mut H, topic: &str, payload: &str) -> ChannelId {
    h.s.join(h.now, topic, raw(payload), JoinOptions::default())
}

fn push(h: &mut H, ch: ChannelId, event: &str, payload: &str) -> PushId {
    h.s.push(h.now, ch, event, raw(payload), PushOptions::default())
}

fn push_bin(h: &mut H, ch: ChannelId, event: &str, bytes: &[u8]) -> PushId {
    h.s.push(
        h.now,
        ch,
        event,
        OutPayload::binary(bytes),
        PushOptions::default(),
    )
}

/// The `Joined` event of `ch`: (response, rejoin).
fn joined(ev: &[Event], ch: ChannelId) -> (Value, bool) {
    let found: Vec<_> = ev
        .iter()
        .filter_map(|e| match e {
            Event::Joined {
                channel,
                response,
                rejoin,
                ..
            } if *channel == ch => Some((pval(response), *rejoin)),
            _ => None,
        })
        .collect();
    assert_eq!(found.len(), 1, "Joined for {ch} in {ev:#?}");
    found[0].clone()
}

fn errored(ev: &[Event], ch: ChannelId) -> ChannelError {
    let found: Vec<_> = ev
        .iter()
        .filter_map(|e| match e {
            Event::ChannelErrored {
                channel, reason, ..
            } if *channel == ch => Some(reason.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(found.len(), 1, "ChannelErrored for {ch} in {ev:#?}");
    found[0].clone()
}

fn rejoin_delay(ev: &[Event], ch: ChannelId) -> Duration {
    ev.iter()
        .find_map(|e| match e {
            Event::RejoinScheduled { channel, delay, .. } if *channel == ch => Some(*delay),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no RejoinScheduled for {ch} in {ev:#?}"))
}

fn closed(ev: &[Event], ch: ChannelId) -> CloseReason {
    let found: Vec<_> = ev
        .iter()
        .filter_map(|e| match e {
            Event::ChannelClosed {
                channel, reason, ..
            } if *channel == ch => Some(reason.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(found.len(), 1, "ChannelClosed for {ch} in {ev:#?}");
    found[0].clone()
}

fn refused_reason(e: &ChannelError) -> Value {
    match e {
        ChannelError::JoinRefused(p) => pval(p),
        other => panic!("expected JoinRefused, got {other:?}"),
    }
}

fn no_events(h: &mut H) {
    let ev = h.events();
    assert!(ev.is_empty(), "{ev:#?}");
}

/// The next output is a frame; returns its text.
fn next_text(h: &mut H) -> String {
    match h.s.poll_output() {
        Some(Output::Send(Transmit::Text(t))) => t,
        other => panic!("expected a text frame, got {other:?}"),
    }
}

fn open() -> H {
    let mut h = H::new(cfg());
    h.open();
    h
}

#[test]
fn replay_01_join_ok() {
    for rel in both("01_join_ok.txt") {
        let mut h = open();
        let mut r = Replay::new(&rel, 'A');
        let echo = join(&mut h, "echo:1", "{}");
        r.expect_sent(&mut h);
        r.deliver(&mut h);
        assert_eq!(
            joined(&h.events(), echo),
            (val(r#"{"joined":"echo:1"}"#), false)
        );

        let private = join(&mut h, "private:y", r#"{"password":"secret"}"#);
        r.expect_sent(&mut h);
        r.deliver(&mut h);
        assert_eq!(
            joined(&h.events(), private).0,
            val(r#"{"joined":"private:y"}"#)
        );

        let room = join(&mut h, "room:wire1", r#"{"user_id":"u1"}"#);
        r.expect_sent(&mut h);
        r.deliver_all(&mut h); // reply, presence_diff (own join), presence_state
        let ev = h.events();
        assert_eq!(joined(&ev, room).0, val("{}"));
        let pe = presence_events(&ev);
        assert!(
            matches!(pe.as_slice(), [PresenceEvent::Change(PresenceChange::Join { key, current: None, new_metas }), PresenceEvent::Sync] if key == "u1" && new_metas.len() == 1),
            "{pe:#?}"
        );
        assert_eq!(h.s.presence(room).unwrap()["u1"].metas.len(), 1);
        for ch in [echo, private, room] {
            assert_eq!(h.state(ch), Some(ChannelState::Joined));
        }
        assert!(r.done() && r.identity(), "refs line up with the transcript");
    }
}

#[test]
fn replay_02_join_error() {
    for rel in both("02_join_error.txt") {
        let mut h = open();
        let mut r = Replay::new(&rel, 'A');
        let ch = join(&mut h, "private:x", "{}");
        r.expect_sent(&mut h);
        r.deliver(&mut h);
        let ev = h.events();
        assert_eq!(
            refused_reason(&errored(&ev, ch)),
            val(r#"{"reason":"unauthorized"}"#)
        );
        assert_eq!(rejoin_delay(&ev, ch), SECS(1));
        assert_eq!(h.state(ch), Some(ChannelState::Errored));

        // The transcript's client pushes to the refused topic; ours keeps the push buffered
        // for the rejoin, and the "unmatched topic" reply for the same ref is not for it.
        let p = push(&mut h, ch, "echo", "{}");
        h.nothing_sent();
        let theirs = r.skip_sent();
        assert_eq!(refs_of(theirs.text()).1, Some(p.0));
        let unroutable = h.s.stats().unroutable_dropped;
        r.deliver(&mut h);
        no_events(&mut h);
        assert_eq!(h.s.stats().unroutable_dropped, unroutable + 1);
        assert_eq!(h.s.channel(ch).unwrap().buffered, 1);

        r.skip_sent(); // [null,"hb",...]: a hand-made ref
        r.deliver(&mut h);
        no_events(&mut h);
        assert!(r.done());

        // The rejoin, 1 s later, with a fresh join_ref.
        h.advance(SECS(1));
        assert_eq!(h.one_text(), r#"["3","3","private:x","phx_join",{}]"#);
    }
}

#[test]
fn replay_03_unmatched_topic() {
    for rel in both("03_join_unmatched_topic.txt") {
        let mut h = open();
        let mut r = Replay::new(&rel, 'A');
        let nope = join(&mut h, "nope:1", "{}");
        r.expect_sent(&mut h);
        r.deliver(&mut h); // join_ref null in the reply
        let ev = h.events();
        assert_eq!(
            refused_reason(&errored(&ev, nope)),
            val(r#"{"reason":"unmatched topic"}"#)
        );
        assert_eq!(rejoin_delay(&ev, nope), SECS(1));

        // A join of the topic "phoenix" (the heartbeat topic) is refused the same way; its
        // reply must reach the channel, not be taken for a heartbeat reply and dropped.
        let phx = join(&mut h, "phoenix", "{}");
        r.expect_sent(&mut h);
        r.deliver(&mut h);
        let ev = h.events();
        assert_eq!(
            refused_reason(&errored(&ev, phx)),
            val(r#"{"reason":"unmatched topic"}"#)
        );
        r.skip_sent();
        r.deliver(&mut h);
        no_events(&mut h);
        assert!(r.done());
    }
}

#[test]
fn replay_04_heartbeat() {
    for rel in both("04_heartbeat.txt") {
        let mut h = open();
        let mut r = Replay::new(&rel, 'A');
        h.advance(SECS(30));
        r.expect_sent(&mut h); // [null,"1","phoenix","heartbeat",{}], byte for byte
        h.advance(MS(1));
        r.deliver(&mut h);
        no_events(&mut h);
        assert_eq!(h.s.stats().last_rtt, Some(MS(1)));
        // Variants the transcript's client made by hand: a join_ref, an integer ref, another
        // event on "phoenix". Their replies are not ours and change nothing.
        for _ in 0..3 {
            r.skip_sent();
            r.deliver(&mut h);
            no_events(&mut h);
        }
        assert!(r.done());
        // The heartbeat was answered: no timeout, the next one goes out 30 s after the first.
        h.advance_to(SECS(60));
        assert_eq!(h.one_text(), r#"[null,"2","phoenix","heartbeat",{}]"#);
        no_events(&mut h);
        assert!(h.s.is_connected());
    }
}

#[test]
fn replay_05_echo_replies_with_non_object_payloads() {
    for rel in both("05_echo_reply.txt") {
        let mut h = open();
        let mut r = Replay::new(&rel, 'A');
        let ch = join(&mut h, "echo:1", "{}");
        r.expect_sent(&mut h);
        r.deliver(&mut h);
        joined(&h.events(), ch);

        let p = push(
            &mut h,
            ch,
            "echo",
            r#"{"hello":"world","n":1.5,"list":[1,null,true],"ü":"ß"}"#,
        );
        r.expect_sent(&mut h);
        r.deliver(&mut h);
        let ev = h.events();
        match outcome(&ev, p) {
            // The payload is the exact response text of the frame (no re-serialization).
            PushOutcome::Ok(pl) => assert_eq!(
                pl.json(),
                Some(r#"{"hello":"world","list":[1,null,true],"n":1.5,"ü":"ß"}"#)
            ),
            other => panic!("{other:?}"),
        }

        let noreply = push(&mut h, ch, "noreply", "{}");
        r.expect_sent(&mut h);

        for payload in [r#""just a string""#, "42", "null", "[1,2]"] {
            let p = push(&mut h, ch, "echo", payload);
            r.expect_sent(&mut h);
            r.deliver(&mut h);
            assert_eq!(ok_value(&h.events(), p), val(payload));
        }

        // Hand-made frames of the transcript's client (ref "hb", join_ref "99", null refs):
        // their replies do not match anything of ours.
        for _ in 0..3 {
            r.skip_sent();
            r.deliver_all(&mut h);
            no_events(&mut h);
        }

        // push_me: the server push comes before the reply, and is delivered in that order.
        let p = push(
            &mut h,
            ch,
            "push_me",
            r#"{"event":"custom","payload":{"x":1}}"#,
        );
        r.expect_sent(&mut h);
        r.deliver_all(&mut h);
        let ev = h.events();
        assert!(
            matches!(ev.as_slice(), [Event::Message(m), Event::Reply(rep)]
                if m.event.as_ref() == "custom" && !m.broadcast && m.channel == ch
                    && pval(&m.payload) == val(r#"{"x":1}"#)
                    && rep.push == p && rep.outcome == PushOutcome::Ok(Payload::from_json("{}"))),
            "{ev:#?}"
        );
        assert!(r.done());

        // noreply: no answer, so it times out 10 s after it was pushed.
        h.advance(SECS(10) - MS(1));
        no_outcome(&h.events(), noreply);
        h.advance(MS(1));
        assert_eq!(outcome(&h.events(), noreply), PushOutcome::Timeout);
        assert_eq!(h.s.pending_pushes(), 0);
    }
}

#[test]
fn replay_06_error_reply() {
    for rel in both("06_error_reply.txt") {
        let mut h = open();
        let mut r = Replay::new(&rel, 'A');
        let ch = join(&mut h, "echo:1", "{}");
        r.expect_sent(&mut h);
        r.deliver(&mut h);
        h.events();
        let p = push(&mut h, ch, "error_reply", "{}");
        r.expect_sent(&mut h);
        r.deliver(&mut h);
        match outcome(&h.events(), p) {
            PushOutcome::Error(e) => assert_eq!(pval(&e), val(r#"{"reason":"requested"}"#)),
            other => panic!("{other:?}"),
        }
        let p = push(&mut h, ch, "echo", r#"{"still":"alive"}"#);
        r.expect_sent(&mut h);
        r.deliver(&mut h);
        assert_eq!(ok_value(&h.events(), p), val(r#"{"still":"alive"}"#));
        assert_eq!(h.state(ch), Some(ChannelState::Joined));
        assert!(r.done() && r.identity());
    }
}

#[test]
fn replay_07_phx_error_crashes_the_channel() {
    for rel in both("07_phx_error_after_crash.txt") {
        let mut h = open();
        let mut r = Replay::new(&rel, 'A');
        let ch = join(&mut h, "echo:1", "{}");
        r.expect_sent(&mut h);
        r.deliver(&mut h);
        h.events();

        let crash = push(&mut h, ch, "crash", "{}");
        r.expect_sent(&mut h);
        let phx_error = r.peek().unwrap().text().to_owned();
        r.deliver(&mut h);
        let ev = h.events();
        assert_eq!(
            outcome(&ev, crash),
            PushOutcome::Dropped(DropReason::ChannelCrashed)
        );
        match errored(&ev, ch) {
            // {} in 1.7, {"reason":"channel_crash"} in 1.8
            ChannelError::Crashed(p) => assert_eq!(pval(&p), arr(&phx_error)[4]),
            other => panic!("{other:?}"),
        }
        assert_eq!(rejoin_delay(&ev, ch), SECS(1));
        assert_eq!(h.state(ch), Some(ChannelState::Errored));
        assert_eq!(h.s.channel_for_topic("echo:1"), Some(ch));

        // A push while errored waits for the rejoin; the server's "unmatched topic" for the
        // transcript client's push with the same ref is not taken as its reply.
        let buffered = push(&mut h, ch, "echo", "{}");
        h.nothing_sent();
        r.skip_sent();
        r.deliver(&mut h);
        no_outcome(&h.events(), buffered);

        // The rejoin timer: 1 s, a fresh join_ref (4, as in the transcript).
        h.advance(SECS(1));
        r.expect_sent(&mut h);
        r.deliver(&mut h);
        assert_eq!(
            joined(&h.events(), ch),
            (val(r#"{"joined":"echo:1"}"#), true)
        );
        // The buffered push goes out now, under the new join_ref.
        assert_eq!(next_text(&mut h), r#"["4","3","echo:1","echo",{}]"#);

        let p = push(&mut h, ch, "echo", r#"{"rejoined":true}"#);
        r.expect_sent(&mut h);
        r.deliver(&mut h);
        assert_eq!(ok_value(&h.events(), p), val(r#"{"rejoined":true}"#));
        assert!(r.done() && r.identity());

        // Pushed at 0 s: the buffered push's timer ran while it waited.
        h.advance_to(SECS(10));
        assert_eq!(outcome(&h.events(), buffered), PushOutcome::Timeout);
    }
}

#[test]
fn replay_08_leave() {
    for rel in both("08_phx_close_after_leave.txt") {
        let mut h = open();
        let mut r = Replay::new(&rel, 'A');
        let ch = join(&mut h, "echo:1", "{}");
        r.expect_sent(&mut h);
        r.deliver(&mut h);
        h.events();

        h.s.leave(h.now, ch);
        r.expect_sent(&mut h);
        assert_eq!(h.state(ch), Some(ChannelState::Leaving));
        assert_eq!(h.s.channel_for_topic("echo:1"), None);
        r.deliver(&mut h); // the leave reply
        assert_eq!(closed(&h.events(), ch), CloseReason::Left);
        assert_eq!(h.s.channel(ch), None);
        r.deliver(&mut h); // then phx_close: the channel is gone already
        no_events(&mut h);

        // A push on the closed channel ends at once; nothing is sent.
        let p = push(&mut h, ch, "echo", "{}");
        assert_eq!(
            outcome(&h.events(), p),
            PushOutcome::Dropped(DropReason::ChannelClosed)
        );
        h.nothing_sent();
        r.skip_sent();
        r.deliver(&mut h);
        r.skip_sent(); // phx_leave of a topic never joined
        r.deliver(&mut h);
        no_events(&mut h);
        assert!(r.done());
    }
}

#[test]
fn replay_09_stop() {
    for rel in both("09_stop.txt") {
        let mut h = open();
        let mut r = Replay::new(&rel, 'A');
        let ch1 = join(&mut h, "echo:1", "{}");
        r.expect_sent(&mut h);
        r.deliver(&mut h);
        h.events();
        let stop = push(&mut h, ch1, "stop", "{}");
        r.expect_sent(&mut h);
        r.deliver(&mut h); // only phx_close; the push never gets a reply
        let ev = h.events();
        assert_eq!(
            outcome(&ev, stop),
            PushOutcome::Dropped(DropReason::ChannelClosed)
        );
        assert_eq!(closed(&ev, ch1), CloseReason::ServerClosed);
        assert!(
            !ev.iter()
                .any(|e| matches!(e, Event::RejoinScheduled { .. }))
        );

        let ch2 = join(&mut h, "echo:2", "{}");
        r.expect_sent(&mut h);
        r.deliver(&mut h);
        h.events();
        let p = push(&mut h, ch2, "stop_reply", "{}");
        r.expect_sent(&mut h);
        r.deliver(&mut h);
        r.deliver(&mut h);
        let ev = h.events();
        assert_eq!(ok_value(&ev, p), val(r#"{"bye":true}"#));
        assert_eq!(closed(&ev, ch2), CloseReason::ServerClosed);
        r.skip_sent();
        r.deliver(&mut h);
        no_events(&mut h);
        assert!(r.done() && r.identity());
        assert_eq!(h.s.channels().count(), 0);
        // No rejoin: nothing happens until the heartbeat.
        h.advance(SECS(29));
        h.nothing_sent();
        no_events(&mut h);
    }
}

#[test]
fn replay_10_presence_diff_before_state() {
    for rel in both("10_presence_state.txt") {
        let mut h = open();
        let mut r = Replay::new(&rel, 'A');
        let room = join(&mut h, "room:wire10", r#"{"user_id":"alice"}"#);
        r.expect_sent(&mut h);
        r.deliver(&mut h);
        joined(&h.events(), room);
        r.deliver(&mut h); // presence_diff (own join) BEFORE presence_state
        assert!(presence_events(&h.events()).is_empty(), "diff is queued");
        r.deliver(&mut h); // presence_state
        let ev = h.events();
        let pe = presence_events(&ev);
        assert_eq!(pe.len(), 2, "one Join, one Sync: {pe:#?}");
        assert!(
            matches!(pe[0], PresenceEvent::Change(PresenceChange::Join { key, current: None, new_metas }) if key == "alice" && new_metas.len() == 1)
        );
        assert_eq!(*pe[1], PresenceEvent::Sync);
        // The diff's meta and the state's meta are the same phx_ref: no duplicate.
        assert_eq!(h.s.presence(room).unwrap()["alice"].metas.len(), 1);
        assert!(r.done() && r.identity());
    }
}

#[test]
fn replay_11_presence_diffs() {
    for rel in both("11_presence_diff.txt") {
        let mut h = open();
        let mut r = Replay::new(&rel, 'A');
        let room = join(&mut h, "room:wire11", r#"{"user_id":"alice"}"#);
        r.expect_sent(&mut h);
        r.deliver_all(&mut h);
        let ev = h.events();
        joined(&ev, room);
        let changes: Vec<(String, bool, usize)> = presence_events(&ev)
            .into_iter()
            .filter_map(|e| match e {
                PresenceEvent::Change(PresenceChange::Join { key, current, .. }) => Some((
                    key.clone(),
                    true,
                    current.as_ref().map_or(0, |c| c.metas.len()),
                )),
                PresenceEvent::Change(PresenceChange::Leave { key, remaining, .. }) => {
                    Some((key.clone(), false, remaining.len()))
                }
                PresenceEvent::Sync => None,
            })
            .collect();
        assert_eq!(
            changes,
            vec![
                ("alice".into(), true, 0),
                ("bob".into(), true, 0),
                ("bob".into(), true, 1), // second device: same key, 2 metas
                ("bob".into(), false, 1),
                ("bob".into(), false, 0),
            ]
        );
        let p = h.s.presence(room).unwrap();
        assert_eq!(p.keys().collect::<Vec<_>>(), vec!["alice"]);
        assert!(r.done());
    }
}

#[test]
fn replay_12_broadcast_before_own_reply() {
    for rel in both("12_broadcast.txt") {
        let mut h = open();
        let mut r = Replay::new(&rel, 'A');
        let room = join(&mut h, "room:wire12", r#"{"user_id":"alice"}"#);
        r.expect_sent(&mut h);
        r.deliver_all(&mut h); // reply, diff, state, diff (bob)
        let ev = h.events();
        joined(&ev, room);
        assert_eq!(h.s.presence(room).unwrap().len(), 2);

        let shout = push(&mut h, room, "shout", r#"{"msg":"hello"}"#);
        r.expect_sent(&mut h);
        r.deliver_all(&mut h);
        let ev = h.events();
        assert!(
            matches!(ev.as_slice(), [Event::Message(m), Event::Reply(rep)]
                if m.broadcast && m.event.as_ref() == "shout"
                    && pval(&m.payload) == val(r#"{"msg":"hello"}"#) && rep.push == shout),
            "{ev:#?}"
        );

        let mv = push(&mut h, room, "move", r#"{"x":1,"y":2}"#);
        r.expect_sent(&mut h);
        r.deliver_all(&mut h); // broadcast_from: only the reply
        let ev = h.events();
        assert_eq!(ev.len(), 1);
        assert_eq!(ok_value(&ev, mv), val("{}"));

        // A binary shout: our binary push is byte-identical; the broadcast is kind 2.
        let bin = push_bin(&mut h, room, "shout_binary", &[0xde, 0xad, 0xbe, 0xef]);
        r.expect_sent(&mut h);
        r.deliver(&mut h);
        r.deliver(&mut h);
        let ev = h.events();
        assert!(
            matches!(ev.as_slice(), [Event::Message(m), Event::Reply(rep)]
                if m.broadcast && m.event.as_ref() == "shout_binary" && m.payload.is_binary()
                    && m.payload.as_bytes() == Some(&[0xde, 0xad, 0xbe, 0xef][..])
                    && rep.push == bin),
            "{ev:#?}"
        );

        r.deliver_all(&mut h); // bob's websocket closed: leaves diff
        let ev = h.events();
        assert!(
            matches!(presence_events(&ev)[0], PresenceEvent::Change(PresenceChange::Leave { key, remaining, .. }) if key == "bob" && remaining.is_empty())
        );
        assert!(r.done() && r.identity());
    }
}

#[test]
fn replay_13_binary_payloads() {
    for rel in both("13_binary.txt") {
        let mut h = open();
        let mut r = Replay::new(&rel, 'A');
        let ch = join(&mut h, "echo:1", "{}");
        r.expect_sent(&mut h);
        r.deliver(&mut h);
        h.events();

        let expect_bin_reply = |h: &mut H, p: PushId, bytes: &[u8]| match outcome(&h.events(), p) {
            PushOutcome::Ok(pl) => {
                assert!(pl.is_binary());
                assert_eq!(pl.as_bytes(), Some(bytes));
                assert_eq!(pl.json(), None);
            }
            other => panic!("{other:?}"),
        };

        let p = push_bin(&mut h, ch, "binary", &[0, 1, 2, 0xfe, 0xff]);
        r.expect_sent(&mut h); // byte for byte
        r.deliver(&mut h); // kind 1 reply
        expect_bin_reply(&mut h, p, &[0, 1, 2, 0xfe, 0xff]);

        let p = push_bin(&mut h, ch, "binary", &[]);
        r.expect_sent(&mut h);
        r.deliver(&mut h);
        expect_bin_reply(&mut h, p, &[]);

        let p = push_bin(&mut h, ch, "push_binary", &[9, 8, 7]);
        r.expect_sent(&mut h);
        r.deliver_all(&mut h); // kind 0 server push, then a text reply
        let ev = h.events();
        assert!(
            matches!(ev.as_slice(), [Event::Message(m), Event::Reply(rep)]
                if !m.broadcast && m.event.as_ref() == "binary_push" && m.channel == ch
                    && m.payload.as_bytes() == Some(&[9, 8, 7][..])
                    && rep.push == p && rep.outcome == PushOutcome::Ok(Payload::from_json("{}"))),
            "{ev:#?}"
        );

        let p = push_bin(&mut h, ch, "echo", b"AB");
        r.expect_sent(&mut h);
        r.deliver(&mut h);
        expect_bin_reply(&mut h, p, b"AB");

        let p = push(&mut h, ch, "binary", r#"{"not":"binary"}"#);
        r.expect_sent(&mut h);
        r.deliver(&mut h); // FunctionClauseError: phx_error
        let ev = h.events();
        assert_eq!(
            outcome(&ev, p),
            PushOutcome::Dropped(DropReason::ChannelCrashed)
        );
        assert!(matches!(errored(&ev, ch), ChannelError::Crashed(_)));
        r.skip_sent();
        r.deliver(&mut h);
        no_events(&mut h);
        assert!(r.done() && r.identity());
    }
}

#[test]
fn replay_14_duplicate_join() {
    for rel in both("14_duplicate_join.txt") {
        let mut h = open();
        let mut r = Replay::new(&rel, 'A');
        let mut join_refs = Vec::new();
        let mut note_join = |frame: &str| {
            assert_eq!(event_of(frame), "phx_join");
            join_refs.push(refs_of(frame).0.unwrap());
        };

        let ch1 = join(&mut h, "echo:1", "{}");
        r.expect_sent(&mut h);
        note_join(r#"["1","1","echo:1","phx_join",{}]"#);
        r.deliver(&mut h);
        joined(&h.events(), ch1);

        // Second join of the same topic: we leave the old channel first, then join with a
        // fresh join_ref (3; the transcript's client used 2).
        let ch2 = join(&mut h, "echo:1", "{}");
        assert_ne!(ch1, ch2);
        assert_eq!(next_text(&mut h), r#"["1","2","echo:1","phx_leave",{}]"#);
        r.expect_sent(&mut h);
        note_join(r#"["3","3","echo:1","phx_join",{}]"#);
        assert_eq!(r.map["2"], "3");
        assert_eq!(h.state(ch1), Some(ChannelState::Leaving));
        assert_eq!(h.s.channel_for_topic("echo:1"), Some(ch2));
        r.deliver(&mut h); // ok for the new join
        joined(&h.events(), ch2);
        // phx_close for the OLD join_ref, after the new join's ok and with no leave reply:
        // it reaches the old (leaving) channel, which closes at once as Replaced.
        r.deliver(&mut h);
        assert_eq!(closed(&h.events(), ch1), CloseReason::Replaced);
        assert_eq!(h.state(ch1), None);
        assert_eq!(h.state(ch2), Some(ChannelState::Joined));

        // Third join. The transcript's client reused join_ref 2, so Phoenix's phx_close for
        // the replaced channel carried the live join_ref. We never reuse one (5 here), and
        // the server addresses the replaced channel by its own join_ref (3).
        let ch3 = join(&mut h, "echo:1", "{}");
        assert_eq!(next_text(&mut h), r#"["3","4","echo:1","phx_leave",{}]"#);
        let theirs = r.skip_sent();
        let ours = next_text(&mut h);
        assert_eq!(ours, r#"["5","5","echo:1","phx_join",{}]"#);
        assert_eq!(arr(theirs.text())[2..], arr(&ours)[2..]);
        note_join(&ours);
        r.map("3", 5);
        r.deliver(&mut h); // ["2","3",ok] -> routed by its ref to our join 5
        joined(&h.events(), ch3);
        r.deliver(&mut h); // ["2","2",phx_close] -> join_ref 3: the replaced channel's
        assert_eq!(closed(&h.events(), ch2), CloseReason::Replaced);
        assert_eq!(
            h.state(ch3),
            Some(ChannelState::Joined),
            "live channel kept"
        );

        let p = push(&mut h, ch3, "echo", r#"{"after":"dup"}"#);
        let theirs = r.skip_sent();
        let ours = next_text(&mut h);
        assert_eq!(ours, r#"["5","6","echo:1","echo",{"after":"dup"}]"#);
        assert_eq!(arr(theirs.text())[2..], arr(&ours)[2..]);
        r.map("4", 6);
        r.deliver(&mut h);
        assert_eq!(ok_value(&h.events(), p), val(r#"{"after":"dup"}"#));

        // Duplicate join of a presence room.
        let room1 = join(&mut h, "room:wire14", r#"{"user_id":"dup"}"#);
        r.expect_sent(&mut h);
        note_join(r#"["7","7","room:wire14","phx_join",{"user_id":"dup"}]"#);
        r.deliver_all(&mut h);
        let ev = h.events();
        joined(&ev, room1);
        assert_eq!(presence_events(&ev).len(), 2);
        let room2 = join(&mut h, "room:wire14", r#"{"user_id":"dup"}"#);
        assert_eq!(
            next_text(&mut h),
            r#"["7","8","room:wire14","phx_leave",{}]"#
        );
        r.expect_sent(&mut h);
        note_join(r#"["9","9","room:wire14","phx_join",{"user_id":"dup"}]"#);
        // ok, phx_close (old join_ref), [leaves diff of the old meta (1.7 only)], joins diff
        // of the new meta, presence_state.
        r.deliver_all(&mut h);
        let ev = h.events();
        joined(&ev, room2);
        assert_eq!(closed(&ev, room1), CloseReason::Replaced);
        let pe = presence_events(&ev);
        assert_eq!(pe.len(), 2, "{pe:#?}");
        let state_frame = load(&rel).frames.last().unwrap().text().to_owned();
        let new_ref = arr(&state_frame)[4]["dup"]["metas"][0]["phx_ref"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(
            matches!(pe[0], PresenceEvent::Change(PresenceChange::Join { key, current: None, new_metas })
            if key == "dup" && new_metas.len() == 1 && new_metas[0].phx_ref() == new_ref)
        );
        let metas = &h.s.presence(room2).unwrap()["dup"].metas;
        assert_eq!(metas.len(), 1);
        assert_eq!(metas[0].phx_ref(), new_ref);
        assert!(r.done());

        // The replaced channels got no leave reply in this capture, and need none: each
        // closed on its phx_close. Nothing is left for the leave timeout; the live ones stay.
        h.advance(SECS(10));
        no_events(&mut h);
        for old in [ch1, ch2, room1] {
            assert_eq!(h.state(old), None);
        }
        assert_eq!(h.state(ch3), Some(ChannelState::Joined));
        assert_eq!(h.state(room2), Some(ChannelState::Joined));
        let mut unique = join_refs.clone();
        unique.dedup();
        assert_eq!(join_refs, vec![1, 3, 5, 7, 9]);
        assert_eq!(unique, join_refs, "a join_ref is never reused");
    }
}

#[test]
fn replay_15_push_to_a_topic_the_server_does_not_know() {
    for rel in both("15_push_not_joined.txt") {
        // Our pushes always belong to a channel; here the server does not know the topic
        // (e.g. it restarted). Join locally with a made-up ok reply, then replay.
        let mut h = open();
        let mut r = Replay::new(&rel, 'A');
        let ch = join(&mut h, "echo:zzz", "{}");
        assert_eq!(next_text(&mut h), r#"["1","1","echo:zzz","phx_join",{}]"#);
        h.text(ok(1, 1, "echo:zzz", "{}"));
        h.events();

        let p = push(&mut h, ch, "echo", r#"{"a":1}"#);
        let theirs = r.skip_sent();
        let ours = next_text(&mut h);
        assert_eq!(arr(theirs.text())[2..], arr(&ours)[2..]);
        r.map("1", p.0);
        r.deliver(&mut h); // [null,"1",...unmatched topic] as [null,"2",...]
        match outcome(&h.events(), p) {
            PushOutcome::Error(e) => assert_eq!(pval(&e), val(r#"{"reason":"unmatched topic"}"#)),
            other => panic!("{other:?}"),
        }
        r.skip_sent(); // a push on a topic we have no channel for
        r.skip_received();

        // Binary push: byte-identical (join_ref 1, ref 3); its error reply is a text frame.
        let p = push_bin(&mut h, ch, "binary", &[1, 2, 3]);
        let theirs = r.skip_sent();
        let Some(Output::Send(Transmit::Binary(ours))) = h.s.poll_output() else {
            panic!()
        };
        let Body::Binary { bytes, .. } = &theirs.body else {
            panic!()
        };
        assert_eq!(&ours, bytes);
        r.map("3", p.0);
        r.deliver(&mut h);
        assert!(matches!(outcome(&h.events(), p), PushOutcome::Error(_)));

        h.s.leave(h.now, ch);
        let theirs = r.skip_sent();
        assert_eq!(next_text(&mut h), theirs.text()); // ["1","4","echo:zzz","phx_leave",{}]
        r.map.clear();
        r.deliver(&mut h);
        assert_eq!(closed(&h.events(), ch), CloseReason::Left);
        r.skip_sent();
        r.deliver(&mut h);
        no_events(&mut h);
        assert!(r.done());
    }
}

#[test]
fn replay_17_connect_refused() {
    let (url, _) = connect_and_close("phoenix-wire/17_connect_refused.txt", 'A');
    let mut h = H::new(cfg().with_params([("token", "bad")]));
    let req = h.connect();
    let query = |u: &str| {
        let mut q: Vec<String> = u
            .split_once('?')
            .unwrap()
            .1
            .split('&')
            .map(str::to_owned)
            .collect();
        q.sort();
        q
    };
    assert_eq!(query(&req.url), query(&url));
    h.closed(TransportClosed::Refused { status: 403 });
    let ev = h.events();
    assert!(
        matches!(
            ev.as_slice(),
            [
                Event::Connecting { attempt: 1 },
                Event::ConnectRefused { status: 403 },
                Event::ReconnectScheduled { .. }
            ]
        ),
        "{ev:#?}"
    );
}

#[test]
fn replay_18_server_disconnect() {
    for rel in both("18_server_disconnect.txt") {
        let (url, code) = connect_and_close(&rel, 'A');
        let mut h = H::new(cfg().with_params([("socket_id", "wire18")]));
        let ours = h.connect().url;
        assert_eq!(url.split_once('?').unwrap().1, "vsn=2.0.0&socket_id=wire18");
        assert_eq!(
            ours.split_once('?').unwrap().1,
            "socket_id=wire18&vsn=2.0.0"
        );
        h.s.handle_open(h.now);
        h.events();
        let mut r = Replay::new(&rel, 'A');
        let ch = join(&mut h, "echo:1", "{}");
        r.expect_sent(&mut h);
        r.deliver(&mut h);
        h.events();
        let p = push(&mut h, ch, "disconnect_me", "{}");
        r.expect_sent(&mut h);
        assert!(r.done());

        // 1000 in 1.7, 1001 in 1.8; no phx_close/phx_error first. phoenix.js 1.8.16
        // reconnects on any close it did not start.
        let code = code.unwrap();
        assert_eq!(code, if rel.contains("1.8") { 1001 } else { 1000 });
        h.closed(TransportClosed::Closed {
            code: Some(code),
            reason: String::new(),
        });
        let ev = h.events();
        assert_eq!(
            ev[0],
            Event::Disconnected {
                reason: DisconnectReason::Closed {
                    code: Some(code),
                    reason: String::new()
                }
            }
        );
        assert_eq!(
            outcome(&ev, p),
            PushOutcome::Dropped(DropReason::ConnectionLost)
        );
        assert_eq!(errored(&ev, ch), ChannelError::ConnectionLost);
        assert_eq!(
            ev.last(),
            Some(&Event::ReconnectScheduled {
                attempt: 1,
                delay: MS(10)
            })
        );
        h.advance(MS(10));
        h.expect_connect();
        h.s.handle_open(h.now);
        assert_eq!(h.one_text(), r#"["3","3","echo:1","phx_join",{}]"#);
    }
}

#[test]
fn replay_19_ordering() {
    for rel in both("19_ordering.txt") {
        let mut h = open();
        let mut r = Replay::new(&rel, 'A');
        let ch = join(&mut h, "echo:1", "{}");
        r.expect_sent(&mut h);
        r.deliver(&mut h);
        h.events();
        let p = push(&mut h, ch, "burst", r#"{"n":5,"size":3}"#);
        r.expect_sent(&mut h);
        r.deliver_all(&mut h);
        let ev = h.events();
        assert_eq!(ev.len(), 6);
        for (i, m) in messages(&ev).iter().enumerate() {
            assert_eq!(pval(&m.payload)["i"], i + 1);
        }
        assert!(matches!(&ev[5], Event::Reply(rep) if rep.push == p));
        assert!(r.done() && r.identity());
    }
}

#[test]
fn replay_35_max_channels() {
    let rel = "phoenix-wire-1.8/35_max_channels.txt";
    let t = load(rel);
    let (url, _) = connect_and_close(rel, 'B');
    let mut h = H::new(
        SocketConfig::new("ws://127.0.0.1:4001/socket_max3")
            .with_jitter(0.0)
            .with_auth_token("good-token"),
    );
    let req = h.connect();
    assert_eq!(req.url, url);
    let header = &t.subprotocols.iter().find(|(c, _)| *c == 'B').unwrap().1;
    assert_eq!(req.subprotocols.join(", "), *header);
    h.s.handle_open(h.now);
    h.events();

    let mut r = Replay::new(rel, 'B');
    let mut chans = Vec::new();
    for topic in ["echo:m1", "echo:m2", "echo:m3", "echo:m4"] {
        chans.push(join(&mut h, topic, "{}"));
        r.expect_sent(&mut h);
        r.deliver(&mut h);
    }
    let ev = h.events();
    assert_eq!(
        refused_reason(&errored(&ev, chans[3])),
        val(r#"{"reason":"too many channels joined"}"#)
    );
    assert_eq!(rejoin_delay(&ev, chans[3]), SECS(1));

    // Rejoin of a joined topic at the limit: ok, then phx_close for the old join_ref.
    let m1 = join(&mut h, "echo:m1", "{}");
    assert_eq!(next_text(&mut h), r#"["1","5","echo:m1","phx_leave",{}]"#);
    r.expect_sent(&mut h);
    r.deliver_all(&mut h);
    let ev = h.events();
    joined(&ev, m1);
    assert_eq!(h.state(m1), Some(ChannelState::Joined));

    // Leave m2 and join new1 at once: the join is refused before the leave is answered.
    h.s.leave(h.now, chans[1]);
    r.expect_sent(&mut h);
    let new1 = join(&mut h, "echo:new1", "{}");
    r.expect_sent(&mut h);
    r.deliver_all(&mut h);
    let ev = h.events();
    assert!(matches!(errored(&ev, new1), ChannelError::JoinRefused(_)));
    assert_eq!(closed(&ev, chans[1]), CloseReason::Left);

    // The rejoin timers (m4 and new1) fire after 1 s; new1's matches the transcript's retry.
    h.advance(SECS(1));
    assert_eq!(next_text(&mut h), r#"["9","9","echo:m4","phx_join",{}]"#);
    r.expect_sent(&mut h);
    r.deliver(&mut h);
    assert_eq!(
        joined(&h.events(), new1).0,
        val(r#"{"joined":"echo:new1"}"#)
    );

    let nope = join(&mut h, "nope:1", "{}");
    r.expect_sent(&mut h);
    r.deliver(&mut h);
    let private = join(&mut h, "private:x", "{}");
    r.expect_sent(&mut h);
    r.deliver(&mut h);
    let ev = h.events();
    assert_eq!(
        refused_reason(&errored(&ev, nope)),
        val(r#"{"reason":"unmatched topic"}"#)
    );
    assert_eq!(
        refused_reason(&errored(&ev, private)),
        val(r#"{"reason":"too many channels joined"}"#)
    );
    r.skip_sent();
    r.skip_received();
    let p = push(&mut h, new1, "echo", r#"{"ok":1}"#);
    r.expect_sent(&mut h);
    r.deliver(&mut h);
    assert_eq!(ok_value(&h.events(), p), val(r#"{"ok":1}"#));
    assert!(r.done());
}
