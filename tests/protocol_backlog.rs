//! The send backlog bound on the core, with injected time: pushes that would take the bytes the
//! transport holds unsent past `max_send_backlog` end at once as `Dropped(SendQueueFull)`
//! (exactly one outcome, nothing queued), joins and heartbeats are never held back, a push is
//! accepted whenever nothing waits, and a new connection starts from zero.
#![allow(clippy::unwrap_used)]

#[path = "support/protocol.rs"]
mod support;

use std::time::Duration;

use support::*;

const BOUND: usize = 1000;

fn open_with_bound() -> (H, ChannelId) {
    let mut h = H::new(cfg().with_max_send_backlog(BOUND));
    h.open();
    let (ch, _) = h.join_ok("room:1");
    (h, ch)
}

/// A push whose frame is about `len` bytes.
fn push_bytes(h: &mut H, ch: ChannelId, len: usize, faf: bool) -> PushId {
    let body = format!("\"{}\"", "x".repeat(len.saturating_sub(40)));
    let options = if faf {
        PushOptions::fire_and_forget()
    } else {
        PushOptions::default()
    };
    h.s.push(h.now, ch, "big", raw(&body), options)
}

fn dropped_full(ev: &[Event], p: PushId) -> bool {
    outcome(ev, p) == PushOutcome::Dropped(DropReason::SendQueueFull)
}

#[test]
fn pushes_past_the_bound_are_dropped_with_a_reason() {
    let (mut h, ch) = open_with_bound();
    // The transport reports it still holds 900 bytes: a 300-byte push does not fit.
    h.s.handle_send_backlog(900);
    let p = push_bytes(&mut h, ch, 300, false);
    h.nothing_sent();
    let ev = h.events();
    assert!(dropped_full(&ev, p), "{ev:?}");
    assert_eq!(replies(&ev).len(), 1);
    assert_eq!(h.s.pending_pushes(), 0, "nothing kept for a dropped push");

    // Fire-and-forget too: dropped, not reported as sent.
    let f = push_bytes(&mut h, ch, 300, true);
    h.nothing_sent();
    let ev = h.events();
    assert!(dropped_full(&ev, f), "{ev:?}");

    // Once the transport has drained, the same push goes out and is answered.
    h.s.handle_send_backlog(0);
    let p = push_bytes(&mut h, ch, 300, false);
    let frame = h.one_text();
    let (jr, r) = refs_of(&frame);
    h.text(ok(jr.unwrap(), r.unwrap(), "room:1", r#"{"n":1}"#));
    let ev = h.events();
    assert!(matches!(outcome(&ev, p), PushOutcome::Ok(_)), "{ev:?}");
}

#[test]
fn frames_emitted_since_the_last_report_count() {
    let (mut h, ch) = open_with_bound();
    h.s.handle_send_backlog(0);
    // Three 400-byte pushes in one frame: the third would pass 1000 bytes.
    let a = push_bytes(&mut h, ch, 400, true);
    let b = push_bytes(&mut h, ch, 400, true);
    let c = push_bytes(&mut h, ch, 400, true);
    assert_eq!(h.sent().len(), 2);
    let ev = h.events();
    assert_eq!(outcome(&ev, a), PushOutcome::Sent);
    assert_eq!(outcome(&ev, b), PushOutcome::Sent);
    assert!(dropped_full(&ev, c), "{ev:?}");
    assert!(h.s.send_backlog() > 700 && h.s.send_backlog() <= BOUND);
}

#[test]
fn one_push_larger_than_the_bound_goes_out_when_nothing_waits() {
    let (mut h, ch) = open_with_bound();
    h.s.handle_send_backlog(0);
    let big = push_bytes(&mut h, ch, 5 * BOUND, true);
    assert_eq!(h.sent().len(), 1);
    assert_eq!(outcome(&h.events(), big), PushOutcome::Sent);
    // Behind it, nothing more until the transport reports progress.
    let next = push_bytes(&mut h, ch, 10, true);
    h.nothing_sent();
    assert!(dropped_full(&h.events(), next));
}

#[test]
fn heartbeats_and_joins_are_never_held_back() {
    let (mut h, _) = open_with_bound();
    h.s.handle_send_backlog(10 * BOUND);
    // A join goes out whatever the backlog.
    h.s.join(h.now, "room:2", OutPayload::empty(), JoinOptions::default());
    let join = h.one_text();
    assert_eq!(event_of(&join), "phx_join");
    let (jr, _) = refs_of(&join);
    h.text(ok(jr.unwrap(), jr.unwrap(), "room:2", "{}"));
    // So does the heartbeat (what detects a server that stopped reading), and its timeout
    // still closes the connection.
    h.advance(Duration::from_secs(30));
    assert_eq!(event_of(&h.one_text()), "heartbeat");
    h.advance(Duration::from_secs(30));
    let ev = h.events();
    assert!(
        ev.iter().any(|e| matches!(
            e,
            Event::Disconnected {
                reason: DisconnectReason::HeartbeatTimeout
            }
        )),
        "{ev:?}"
    );
}

#[test]
fn buffered_pushes_flushed_on_join_respect_the_bound() {
    let mut h = H::new(cfg().with_max_send_backlog(BOUND));
    h.open();
    let ch =
        h.s.join(h.now, "room:1", OutPayload::empty(), JoinOptions::default());
    let join = h.one_text();
    let (jr, _) = refs_of(&join);
    // Buffered while joining: three 400-byte pushes.
    let ps: Vec<PushId> = (0..3).map(|_| push_bytes(&mut h, ch, 400, false)).collect();
    h.nothing_sent();
    h.s.handle_send_backlog(0);
    h.text(ok(jr.unwrap(), jr.unwrap(), "room:1", "{}"));
    // The join reply flushes the buffer: two fit, the third ends at once.
    assert_eq!(h.sent().len(), 2);
    let ev = h.events();
    assert!(dropped_full(&ev, ps[2]), "{ev:?}");
    no_outcome(&ev, ps[0]);
    no_outcome(&ev, ps[1]);
    // The two sent ones still end exactly once (here: the connection drops).
    h.closed(TransportClosed::Closed {
        code: None,
        reason: String::new(),
    });
    let ev = h.events();
    for p in &ps[..2] {
        assert_eq!(
            outcome(&ev, *p),
            PushOutcome::Dropped(DropReason::ConnectionLost)
        );
    }
}

#[test]
fn a_new_connection_starts_with_an_empty_backlog() {
    let (mut h, ch) = open_with_bound();
    h.s.handle_send_backlog(10 * BOUND);
    assert_eq!(h.s.send_backlog(), 10 * BOUND);
    h.closed(TransportClosed::Closed {
        code: None,
        reason: String::new(),
    });
    assert_eq!(h.s.send_backlog(), 0);
    h.advance(Duration::from_secs(1));
    h.expect_connect();
    h.s.handle_open(h.now);
    h.events();
    // The rejoin goes out; answer it, then a push fits again.
    let rejoin = h.one_text();
    let (jr, _) = refs_of(&rejoin);
    h.text(ok(jr.unwrap(), jr.unwrap(), "room:1", "{}"));
    h.events();
    let p = push_bytes(&mut h, ch, 300, true);
    assert_eq!(h.sent().len(), 1);
    assert_eq!(outcome(&h.events(), p), PushOutcome::Sent);
}
