//! The socket state machine with injected time: heartbeat, reconnect and rejoin backoff,
//! timeouts, buffering, stale join_refs, leave, disconnect/connect, providers. No sleeps: the
//! harness jumps the clock and calls `handle_timeout` at every `poll_timeout` on the way,
//! checking each time that the next timeout is in the future (no busy loop).
#![allow(clippy::unwrap_used)]

#[path = "support/protocol.rs"]
mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use serde_json::json;
use support::*;

const SECS: fn(u64) -> Duration = Duration::from_secs;
const MS: fn(u64) -> Duration = Duration::from_millis;

fn open() -> H {
    let mut h = H::new(cfg());
    h.open();
    h
}

/// The last ReconnectScheduled in `ev`.
fn reconnect_scheduled(ev: &[Event]) -> (u32, Duration) {
    ev.iter()
        .rev()
        .find_map(|e| match e {
            Event::ReconnectScheduled { attempt, delay } => Some((*attempt, *delay)),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no ReconnectScheduled in {ev:#?}"))
}

fn rejoin_delay(ev: &[Event]) -> Duration {
    ev.iter()
        .find_map(|e| match e {
            Event::RejoinScheduled { delay, .. } => Some(*delay),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no RejoinScheduled in {ev:#?}"))
}

fn channel_error(ev: &[Event], ch: ChannelId) -> ChannelError {
    ev.iter()
        .find_map(|e| match e {
            Event::ChannelErrored {
                channel, reason, ..
            } if *channel == ch => Some(reason.clone()),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no ChannelErrored for {ch} in {ev:#?}"))
}

fn close_reason(ev: &[Event], ch: ChannelId) -> CloseReason {
    ev.iter()
        .find_map(|e| match e {
            Event::ChannelClosed {
                channel, reason, ..
            } if *channel == ch => Some(reason.clone()),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no ChannelClosed for {ch} in {ev:#?}"))
}

fn joined_rejoin(ev: &[Event], ch: ChannelId) -> bool {
    ev.iter()
        .find_map(|e| match e {
            Event::Joined {
                channel, rejoin, ..
            } if *channel == ch => Some(*rejoin),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no Joined for {ch} in {ev:#?}"))
}

fn drop_conn(h: &mut H) {
    h.closed(TransportClosed::Closed {
        code: None,
        reason: String::new(),
    });
}

// ------------------------------------------------------------------------- heartbeat

#[test]
fn heartbeat_every_30_seconds() {
    let mut h = open();
    assert_eq!(h.s.poll_timeout(), Some(h.t0 + SECS(30)));
    h.advance_to(SECS(30) - MS(1));
    h.nothing_sent();
    for k in 1..=5u64 {
        h.advance_to(SECS(30 * k));
        let f = h.one_text();
        assert_eq!(
            val(&f),
            json!([null, k.to_string(), "phoenix", "heartbeat", {}])
        );
        assert_eq!(f, format!(r#"[null,"{k}","phoenix","heartbeat",{{}}]"#));
        h.advance(MS(7));
        h.text(reply(None, k, "phoenix", "ok", "{}"));
        assert_eq!(h.s.stats().last_rtt, Some(MS(7)));
        assert!(h.events().is_empty());
    }
    assert!(h.s.is_connected());
}

#[test]
fn heartbeat_timeout_closes_and_reconnects() {
    let mut h = open();
    let (ch, _) = h.join_ok("room:x");
    h.advance_to(SECS(30));
    assert_eq!(event_of(&h.one_text()), "heartbeat");
    h.advance_to(SECS(50));
    let p = h.s.push(
        h.now,
        ch,
        "e",
        OutPayload::empty(),
        PushOptions::with_timeout(SECS(30)),
    );
    h.one_text();
    h.advance_to(SECS(60) - MS(1));
    h.nothing_sent();
    assert!(h.events().is_empty());
    h.advance_to(SECS(60));
    // A dead connection gets a Close, not one more heartbeat.
    assert_eq!(h.outputs(), vec![Output::Close]);
    let ev = h.events();
    assert_eq!(
        ev[0],
        Event::Disconnected {
            reason: DisconnectReason::HeartbeatTimeout
        }
    );
    assert_eq!(
        outcome(&ev, p),
        PushOutcome::Dropped(DropReason::ConnectionLost)
    );
    assert_eq!(channel_error(&ev, ch), ChannelError::ConnectionLost);
    assert_eq!(reconnect_scheduled(&ev), (1, MS(10)));
    assert_eq!(h.s.connection_state(), ConnectionState::WaitingToReconnect);
    h.advance(MS(10));
    h.expect_connect();
}

#[test]
fn heartbeat_timeout_longer_or_shorter_than_the_interval() {
    // Timeout > interval: while the heartbeat is pending the next one is not due, and the
    // socket must not ask to be woken in the past meanwhile (H::advance_to checks that).
    let mut h = H::new(
        cfg()
            .with_heartbeat(SECS(30))
            .with_heartbeat_timeout(SECS(45)),
    );
    h.open();
    h.advance_to(SECS(30));
    assert_eq!(event_of(&h.one_text()), "heartbeat");
    h.advance_to(SECS(75) - MS(1));
    h.nothing_sent();
    assert!(h.s.is_connected());
    h.advance_to(SECS(75));
    assert_eq!(h.outputs(), vec![Output::Close]);

    // Answered late (after the interval, before the timeout): the next heartbeat is due.
    let mut h = H::new(
        cfg()
            .with_heartbeat(SECS(30))
            .with_heartbeat_timeout(SECS(45)),
    );
    h.open();
    h.advance_to(SECS(30));
    h.one_text();
    h.advance_to(SECS(40));
    h.text(reply(None, 1, "phoenix", "ok", "{}"));
    h.advance_to(SECS(60) - MS(1));
    h.nothing_sent();
    h.advance_to(SECS(60));
    assert_eq!(event_of(&h.one_text()), "heartbeat");
    assert!(h.s.is_connected());

    // Timeout < interval.
    let mut h = H::new(
        cfg()
            .with_heartbeat(SECS(30))
            .with_heartbeat_timeout(SECS(10)),
    );
    h.open();
    h.advance_to(SECS(40) - MS(1));
    h.one_text();
    h.advance_to(SECS(40));
    assert_eq!(h.outputs(), vec![Output::Close]);
}

// ------------------------------------------------------------------------- reconnect

/// Drops an open connection, then fails `n` connects; returns every (attempt, delay).
fn backoff_run(config: SocketConfig, n: usize) -> Vec<(u32, Duration)> {
    let mut h = H::new(config);
    h.open();
    drop_conn(&mut h);
    let mut seen = vec![reconnect_scheduled(&h.events())];
    for _ in 0..n {
        let (attempt, delay) = *seen.last().unwrap();
        assert_eq!(h.s.poll_timeout(), Some(h.now + delay));
        if delay > Duration::ZERO {
            h.advance(delay - Duration::from_nanos(1));
            h.nothing_sent();
        }
        h.advance_to(h.elapsed() + Duration::from_nanos(u64::from(delay > Duration::ZERO)));
        h.expect_connect();
        assert_eq!(h.events(), vec![Event::Connecting { attempt }]);
        h.closed(TransportClosed::Error("connection refused".into()));
        let ev = h.events();
        assert!(matches!(ev[0], Event::ConnectFailed { .. }), "{ev:?}");
        seen.push(reconnect_scheduled(&ev));
    }
    seen
}

#[test]
fn reconnect_backoff_table() {
    let seen = backoff_run(cfg(), 10);
    let ms: Vec<u64> = seen.iter().map(|(_, d)| d.as_millis() as u64).collect();
    assert_eq!(
        ms,
        [10, 50, 100, 150, 200, 250, 500, 1000, 2000, 5000, 5000]
    );
    let attempts: Vec<u32> = seen.iter().map(|(a, _)| *a).collect();
    assert_eq!(attempts, (1..=11).collect::<Vec<_>>());
}

#[test]
fn reconnect_jitter_stays_in_bounds() {
    let base = [10u64, 50, 100, 150, 200, 250, 500, 1000, 2000, 5000, 5000];
    let (mut below, mut above) = (0, 0);
    for seed in 0..200 {
        let config = || {
            SocketConfig::new(ENDPOINT)
                .with_jitter(0.25)
                .with_rng_seed(seed)
        };
        let seen = backoff_run(config(), 10);
        for ((_, d), b) in seen.iter().zip(base) {
            let b = MS(b);
            assert!(
                *d >= b.mul_f64(0.75) && *d <= b.mul_f64(1.25),
                "seed {seed}: {d:?} for {b:?}"
            );
            below += usize::from(*d < b);
            above += usize::from(*d > b);
        }
        // Same seed, same delays.
        assert_eq!(backoff_run(config(), 10), seen);
    }
    assert!(below > 500 && above > 500, "{below} below, {above} above");
    // Full jitter: [0, 2d].
    for seed in 0..50 {
        let seen = backoff_run(
            SocketConfig::new(ENDPOINT)
                .with_jitter(1.0)
                .with_rng_seed(seed),
            3,
        );
        for ((_, d), b) in seen.iter().zip(base) {
            assert!(*d <= MS(2 * b), "{d:?}");
        }
    }
}

#[test]
fn default_jitter_is_twenty_percent() {
    let base = [10u64, 50, 100, 150, 200, 250, 500, 1000, 2000, 5000, 5000];
    assert_eq!(SocketConfig::new(ENDPOINT).jitter, 0.2);
    let (mut wide, mut total) = (0, 0);
    for seed in 0..200 {
        // The default config, only seeded: no with_jitter.
        let seen = backoff_run(SocketConfig::new(ENDPOINT).with_rng_seed(seed), 10);
        for ((_, d), b) in seen.iter().zip(base) {
            let b = MS(b);
            assert!(
                *d >= b.mul_f64(0.8) && *d <= b.mul_f64(1.2),
                "seed {seed}: {d:?} for {b:?}"
            );
            // Past ±10 %: the spread is really ±20 %, not something smaller.
            wide += usize::from(*d < b.mul_f64(0.9) || *d > b.mul_f64(1.1));
            total += 1;
        }
    }
    // Uniform over ±20 %: about half the delays lie past ±10 %.
    assert!(
        wide * 10 > total * 3 && wide * 10 < total * 7,
        "{wide} of {total}"
    );
}

#[test]
fn reconnect_counter_resets_on_open() {
    let mut h = open();
    drop_conn(&mut h);
    assert_eq!(reconnect_scheduled(&h.events()), (1, MS(10)));
    for _ in 0..4 {
        h.advance(SECS(10));
        h.expect_connect();
        h.closed(TransportClosed::Error("x".into()));
    }
    assert_eq!(reconnect_scheduled(&h.events()), (5, MS(200)));
    h.advance(SECS(10));
    h.expect_connect();
    assert_eq!(h.events(), vec![Event::Connecting { attempt: 5 }]);
    h.s.handle_open(h.now);
    assert_eq!(h.events(), vec![Event::Connected]);
    assert_eq!(h.s.stats().connects, 2);
    assert_eq!(h.s.stats().reconnects, 1);
    drop_conn(&mut h);
    assert_eq!(reconnect_scheduled(&h.events()), (1, MS(10)));
}

#[test]
fn max_reconnect_attempts_gives_up_until_connect() {
    let mut h = H::new(cfg().with_max_reconnect_attempts(Some(3)));
    h.open();
    drop_conn(&mut h);
    h.events();
    for i in 1..=3 {
        h.advance(SECS(10));
        h.expect_connect();
        assert_eq!(h.events(), vec![Event::Connecting { attempt: i }]);
        h.closed(TransportClosed::Error("down".into()));
        let ev = h.events();
        if i < 3 {
            reconnect_scheduled(&ev);
        } else {
            assert_eq!(
                ev,
                vec![
                    Event::ConnectFailed {
                        error: "down".into()
                    },
                    Event::GaveUp { attempts: 3 }
                ]
            );
        }
    }
    assert_eq!(h.s.connection_state(), ConnectionState::Disconnected);
    assert_eq!(h.s.poll_timeout(), None);
    h.advance(SECS(3600));
    h.nothing_sent();
    assert!(h.events().is_empty());

    // connect() starts over: a full set of attempts again.
    h.connect();
    assert_eq!(h.events(), vec![Event::Connecting { attempt: 1 }]);
    h.closed(TransportClosed::Error("down".into()));
    let ev = h.events();
    assert!(
        !ev.iter().any(|e| matches!(e, Event::GaveUp { .. })),
        "{ev:?}"
    );
    reconnect_scheduled(&ev);
}

#[test]
fn refused_connect_is_not_a_failed_connect() {
    let mut h = H::new(cfg());
    h.connect();
    h.closed(TransportClosed::Refused { status: 403 });
    let ev = h.events();
    assert_eq!(ev[1], Event::ConnectRefused { status: 403 });
    assert!(!ev.iter().any(|e| matches!(e, Event::ConnectFailed { .. })));
    reconnect_scheduled(&ev);

    h.advance(SECS(1));
    h.expect_connect();
    h.closed(TransportClosed::Error("tls: bad certificate".into()));
    let ev = h.events();
    assert_eq!(
        ev[1],
        Event::ConnectFailed {
            error: "tls: bad certificate".into()
        }
    );
    assert!(!ev.iter().any(|e| matches!(e, Event::ConnectRefused { .. })));
}

#[test]
fn providers_are_reread_on_every_connect_and_never_printed() {
    let n = Arc::new(AtomicU32::new(0));
    let (n1, n2) = (n.clone(), n.clone());
    let config = cfg()
        .with_params_fn(move || {
            let i = n1.fetch_add(1, Ordering::SeqCst) + 1;
            vec![("token".to_owned(), format!("PARAMSECRET{i}"))]
        })
        .with_auth_token_fn(move || Some(format!("TOKENSECRET{}", n2.load(Ordering::SeqCst))));
    let debug_cfg = format!("{config:?}");
    let mut h = H::new(config);
    let mut reqs = vec![h.connect()];
    h.closed(TransportClosed::Refused { status: 403 });
    h.advance(SECS(1));
    reqs.push(h.expect_connect());
    h.s.handle_open(h.now);
    drop_conn(&mut h);
    h.advance(SECS(1));
    reqs.push(h.expect_connect());
    for (i, req) in reqs.iter().enumerate() {
        let i = i + 1;
        assert_eq!(
            req.url,
            format!("ws://127.0.0.1:4000/socket/websocket?token=PARAMSECRET{i}&vsn=2.0.0")
        );
        assert_eq!(
            req.subprotocols,
            auth_subprotocols(&format!("TOKENSECRET{i}"))
        );
        let dbg = format!("{req:?} {req:#?}");
        assert!(!dbg.contains("SECRET"), "{dbg}");
        assert!(!dbg.contains(&req.subprotocols[1]), "{dbg}");
        assert!(!dbg.contains("VE9LRU5TRUNSRVQ"), "{dbg}"); // base64 of TOKENSECRET
    }
    assert!(!debug_cfg.contains("SECRET"), "{debug_cfg}");
    let fixed = cfg()
        .with_params([("token", "PARAMSECRET")])
        .with_auth_token("TOKENSECRET");
    assert!(!format!("{fixed:?}").contains("SECRET"));
    // No token: no subprotocols at all.
    let mut h = H::new(cfg().with_auth_token_fn(|| None));
    assert!(h.connect().subprotocols.is_empty());
}

use bevy_phoenix_channels::protocol::config::auth_subprotocols;

// ---------------------------------------------------------------------------- rejoin

#[test]
fn rejoin_backoff_after_repeated_join_errors_and_reset_after_ok() {
    let mut h = open();
    let ch =
        h.s.join(h.now, "room:x", OutPayload::empty(), JoinOptions::default());
    let mut join_refs = vec![];
    for want in [1, 2, 5, 10, 10] {
        let f = h.one_text();
        let jr = refs_of(&f).0.unwrap();
        join_refs.push(jr);
        h.text(reply(
            Some(jr),
            jr,
            "room:x",
            "error",
            r#"{"reason":"nope"}"#,
        ));
        let ev = h.events();
        assert!(matches!(
            channel_error(&ev, ch),
            ChannelError::JoinRefused(_)
        ));
        assert_eq!(rejoin_delay(&ev), SECS(want));
        h.advance(SECS(want) - MS(1));
        h.nothing_sent();
        h.advance(MS(1));
    }
    let f = h.one_text();
    let jr = refs_of(&f).0.unwrap();
    h.text(ok(jr, jr, "room:x", "{}"));
    assert!(!joined_rejoin(&h.events(), ch), "never joined before");
    join_refs.push(jr);
    // Crash: the backoff starts over at 1 s.
    h.text(ctl(jr, "room:x", "phx_error"));
    assert_eq!(rejoin_delay(&h.events()), SECS(1));
    h.advance(SECS(1));
    let jr2 = refs_of(&h.one_text()).0.unwrap();
    h.text(ok(jr2, jr2, "room:x", "{}"));
    assert!(joined_rejoin(&h.events(), ch));
    join_refs.push(jr2);
    let mut sorted = join_refs.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(sorted.len(), join_refs.len(), "fresh join_ref every time");
}

#[test]
fn join_timeout_sends_leave_errors_and_rejoins() {
    let mut h = open();
    let ch =
        h.s.join(h.now, "room:x", OutPayload::empty(), JoinOptions::default());
    assert_eq!(h.one_text(), r#"["1","1","room:x","phx_join",{}]"#);
    h.advance(SECS(10) - MS(1));
    h.nothing_sent();
    h.advance(MS(1));
    assert_eq!(h.one_text(), r#"["1","2","room:x","phx_leave",{}]"#);
    let ev = h.events();
    assert_eq!(channel_error(&ev, ch), ChannelError::JoinTimeout);
    assert_eq!(rejoin_delay(&ev), SECS(1));
    assert_eq!(h.state(ch), Some(ChannelState::Errored));
    // The late reply to the timed-out join changes nothing.
    h.text(ok(1, 1, "room:x", "{}"));
    assert!(h.events().is_empty());
    assert_eq!(h.state(ch), Some(ChannelState::Errored));
    h.advance(SECS(1));
    assert_eq!(h.one_text(), r#"["3","3","room:x","phx_join",{}]"#);
    h.text(ok(3, 3, "room:x", "{}"));
    joined_rejoin(&h.events(), ch);
    assert_eq!(h.state(ch), Some(ChannelState::Joined));
}

// --------------------------------------------------------------------------- pushes

#[test]
fn push_timeout_while_buffered_and_in_flight() {
    // Buffered before the join reply.
    let mut h = open();
    let ch =
        h.s.join(h.now, "room:x", OutPayload::empty(), JoinOptions::default());
    h.one_text();
    let p = h.push(ch, "e");
    h.nothing_sent();
    assert_eq!(h.s.channel(ch).unwrap().buffered, 1);
    h.advance(SECS(10) - MS(1));
    no_outcome(&h.events(), p);
    h.advance(MS(1)); // the join timed out at the same instant; the push's timer counts too
    let ev = h.events();
    assert_eq!(outcome(&ev, p), PushOutcome::Timeout);
    assert_eq!(h.s.channel(ch).unwrap().buffered, 0);

    // Buffered with the socket down.
    let mut h = H::new(cfg());
    let ch =
        h.s.join(h.now, "room:x", OutPayload::empty(), JoinOptions::default());
    let p = h.s.push(
        h.now,
        ch,
        "e",
        OutPayload::empty(),
        PushOptions::with_timeout(SECS(3)),
    );
    h.advance(SECS(3));
    assert_eq!(outcome(&h.events(), p), PushOutcome::Timeout);
    // It is not sent once the channel joins.
    h.open();
    let jr = refs_of(&h.one_text()).0.unwrap();
    h.text(ok(jr, jr, "room:x", "{}"));
    h.nothing_sent();

    // In flight.
    let (ch, jr) = h.join_ok("room:y");
    let p = h.s.push(
        h.now,
        ch,
        "e",
        OutPayload::empty(),
        PushOptions::with_timeout(SECS(2)),
    );
    h.one_text();
    h.advance(SECS(2) - MS(1));
    no_outcome(&h.events(), p);
    h.advance(MS(1));
    assert_eq!(outcome(&h.events(), p), PushOutcome::Timeout);
    let before = *h.s.stats();
    h.text(ok(jr, p.0, "room:y", "{}"));
    assert!(h.events().is_empty(), "late reply ignored");
    assert_eq!(h.s.stats().ignored_replies, before.ignored_replies + 1);
    assert_eq!(h.s.stats().unroutable_dropped, before.unroutable_dropped);
    // A reply to a ref this socket never made is unroutable.
    h.text(ok(jr, 999_999, "room:y", "{}"));
    assert_eq!(
        h.s.stats().unroutable_dropped,
        before.unroutable_dropped + 1
    );
}

#[test]
fn push_made_while_the_socket_is_down_is_outdated_after_the_rejoin() {
    let mut h = open();
    let (a, ja) = h.join_ok("room:a");
    drop_conn(&mut h);
    h.events();
    let old = h.push(a, "input");
    // A channel never joined yet: its pushes are kept for the first join.
    let b =
        h.s.join(h.now, "room:b", OutPayload::empty(), JoinOptions::default());
    let fresh =
        h.s.push(h.now, b, "hello", raw(r#"{"n":1}"#), PushOptions::default());
    h.nothing_sent();
    h.advance(MS(10));
    h.expect_connect();
    h.s.handle_open(h.now);
    let joins = h.sent_text();
    assert_eq!(joins.len(), 2);
    let (jra, jrb) = (refs_of(&joins[0]).0.unwrap(), refs_of(&joins[1]).0.unwrap());
    assert!(jra > ja);
    h.events();
    h.text(ok(jra, jra, "room:a", "{}"));
    let ev = h.events();
    assert!(joined_rejoin(&ev, a));
    assert_eq!(
        outcome(&ev, old),
        PushOutcome::Dropped(DropReason::Outdated)
    );
    h.nothing_sent();
    h.text(ok(jrb, jrb, "room:b", "{}"));
    let sent = h.one_text();
    assert_eq!(
        sent,
        format!(r#"["{jrb}","{}","room:b","hello",{{"n":1}}]"#, fresh.0)
    );
    h.text(ok(jrb, fresh.0, "room:b", "{}"));
    assert!(matches!(outcome(&h.events(), fresh), PushOutcome::Ok(_)));
}

#[test]
fn buffer_is_bounded() {
    let mut h = H::new(cfg().with_max_buffered_pushes(3));
    let ch =
        h.s.join(h.now, "room:x", OutPayload::empty(), JoinOptions::default());
    let mut ps = vec![];
    for t in 1..=3 {
        ps.push(h.s.push(
            h.now,
            ch,
            "e",
            OutPayload::empty(),
            PushOptions::with_timeout(SECS(t)),
        ));
    }
    assert!(h.events().is_empty());
    let full = h.push(ch, "e");
    let ev = h.events();
    assert_eq!(ev.len(), 1);
    assert_eq!(
        outcome(&ev, full),
        PushOutcome::Dropped(DropReason::BufferFull)
    );
    assert_eq!(h.s.channel(ch).unwrap().buffered, 3);
    // Room again once one has timed out.
    h.advance(SECS(1));
    assert_eq!(outcome(&h.events(), ps[0]), PushOutcome::Timeout);
    let again = h.push(ch, "e");
    assert!(h.events().is_empty());
    h.open();
    let jr = refs_of(&h.one_text()).0.unwrap();
    h.text(ok(jr, jr, "room:x", "{}"));
    let sent: Vec<u64> = h
        .sent_text()
        .iter()
        .map(|f| refs_of(f).1.unwrap())
        .collect();
    assert_eq!(sent, vec![ps[1].0, ps[2].0, again.0], "in push order");
}

#[test]
fn every_push_gets_one_outcome_across_a_disconnect() {
    let mut h = open();
    let (a, _) = h.join_ok("room:a");
    let p1 = h.push(a, "one");
    let p2 = h.push(a, "two");
    assert_eq!(h.sent_text().len(), 2);
    h.closed(TransportClosed::Error("reset".into()));
    let ev = h.events();
    // In flight: ended at once, not 10 s later.
    assert_eq!(
        outcome(&ev, p1),
        PushOutcome::Dropped(DropReason::ConnectionLost)
    );
    assert_eq!(
        outcome(&ev, p2),
        PushOutcome::Dropped(DropReason::ConnectionLost)
    );
    let p3 = h.push(a, "three"); // socket down, joined before: outdated after the rejoin
    let c =
        h.s.join(h.now, "room:c", OutPayload::empty(), JoinOptions::default());
    let p4 = h.push(c, "four"); // before the first join: survives
    let p5 = h.s.push(
        h.now,
        c,
        "five",
        OutPayload::empty(),
        PushOptions::with_timeout(MS(5)),
    ); // times out while waiting
    h.advance(MS(5));
    assert_eq!(outcome(&h.events(), p5), PushOutcome::Timeout);
    h.advance(MS(5));
    h.expect_connect();
    h.s.handle_open(h.now);
    for f in h.sent_text() {
        let (jr, _) = refs_of(&f);
        let topic = arr(&f)[2].as_str().unwrap().to_owned();
        let jr = jr.unwrap();
        h.text(ok(jr, jr, &topic, "{}"));
    }
    let ev = h.events();
    assert_eq!(outcome(&ev, p3), PushOutcome::Dropped(DropReason::Outdated));
    let f = h.one_text();
    assert_eq!(refs_of(&f).1, Some(p4.0));
    h.text(ok(refs_of(&f).0.unwrap(), p4.0, "room:c", "{}"));
    let ev2 = h.events();
    assert!(matches!(outcome(&ev2, p4), PushOutcome::Ok(_)));
    assert_eq!(h.s.pending_pushes(), 0);
}

#[test]
fn fire_and_forget_is_sent_with_no_timer() {
    let mut h = open();
    let (ch, _) = h.join_ok("room:x");
    let before = h.s.poll_timeout();
    let p = h.s.push(
        h.now,
        ch,
        "move",
        raw("[1,2]"),
        PushOptions::fire_and_forget(),
    );
    assert_eq!(refs_of(&h.one_text()).1, Some(p.0));
    assert_eq!(outcome(&h.events(), p), PushOutcome::Sent);
    assert_eq!(h.s.poll_timeout(), before, "no timer");
    assert_eq!(h.s.pending_pushes(), 0);
    h.advance(SECS(11));
    no_outcome(&h.events(), p);

    // Buffered until the join: Sent when it goes out.
    let b =
        h.s.join(h.now, "room:b", OutPayload::empty(), JoinOptions::default());
    let jr = refs_of(&h.one_text()).0.unwrap();
    let q =
        h.s.push(h.now, b, "move", raw("{}"), PushOptions::fire_and_forget());
    assert!(h.events().is_empty());
    h.text(ok(jr, jr, "room:b", "{}"));
    assert_eq!(refs_of(&h.one_text()).1, Some(q.0));
    assert_eq!(outcome(&h.events(), q), PushOutcome::Sent);

    // Buffered on a channel that never joins: it still ends (timeout), it does not wait
    // forever.
    let mut h = H::new(cfg());
    let c =
        h.s.join(h.now, "room:c", OutPayload::empty(), JoinOptions::default());
    let r =
        h.s.push(h.now, c, "move", raw("{}"), PushOptions::fire_and_forget());
    h.advance(SECS(10));
    assert_eq!(outcome(&h.events(), r), PushOutcome::Timeout);
    assert_eq!(h.s.pending_pushes(), 0);
}

#[test]
fn unencodable_binary_push_is_dropped() {
    let topic = format!("room:{}", "x".repeat(300));
    let mut h = open();
    let (ch, _) = h.join_ok(&topic);
    let p = h.s.push(
        h.now,
        ch,
        "b",
        OutPayload::binary([1]),
        PushOptions::default(),
    );
    h.nothing_sent();
    assert!(matches!(
        outcome(&h.events(), p),
        PushOutcome::Dropped(DropReason::Encode(EncodeError::FieldTooLong {
            field: "topic",
            len: 305
        }))
    ));
    // The same when it was buffered.
    let ch2 = h.s.join(
        h.now,
        &format!("{topic}2"),
        OutPayload::empty(),
        JoinOptions::default(),
    );
    let jr = refs_of(&h.one_text()).0.unwrap();
    let q = h.s.push(
        h.now,
        ch2,
        "b",
        OutPayload::binary([1]),
        PushOptions::default(),
    );
    h.text(ok(jr, jr, &format!("{topic}2"), "{}"));
    h.nothing_sent();
    assert!(matches!(
        outcome(&h.events(), q),
        PushOutcome::Dropped(DropReason::Encode(_))
    ));
    // A text push on that topic is fine.
    let r = h.push(ch, "t");
    assert_eq!(refs_of(&h.one_text()).1, Some(r.0));
}

#[test]
fn reply_without_a_response_or_with_null_is_null() {
    let mut h = open();
    let (ch, jr) = h.join_ok("echo:1");
    for body in [r#"{"status":"ok"}"#, r#"{"response":null,"status":"ok"}"#] {
        let p = h.push(ch, "e");
        h.one_text();
        h.text(format!(r#"["{jr}","{}","echo:1","phx_reply",{body}]"#, p.0));
        match outcome(&h.events(), p) {
            PushOutcome::Ok(pl) => {
                assert_eq!(pl.json(), Some("null"));
                assert_eq!(pl.decode::<Option<u8>>(), Ok(None));
            }
            other => panic!("{other:?}"),
        }
    }
}

// ----------------------------------------------------------------- channels, join_refs

#[test]
fn stale_join_refs_are_dropped_and_null_is_accepted() {
    let mut h = open();
    let (ch, jr) = h.join_ok("room:x");
    assert_eq!(jr, 1);
    let stale = |h: &mut H, frame: String, n: u64| {
        h.text(frame);
        assert!(h.events().is_empty());
        assert_eq!(h.s.stats().stale_dropped, n);
        assert_eq!(h.state(ch), Some(ChannelState::Joined));
    };
    stale(&mut h, msg(Some(99), "room:x", "ev", "{}"), 1);
    stale(&mut h, r#"[1,null,"room:x","ev",{}]"#.into(), 2); // integer 1 is not "1"
    stale(&mut h, r#"["01",null,"room:x","ev",{}]"#.into(), 3);
    stale(&mut h, ctl(99, "room:x", "phx_error"), 4);
    stale(&mut h, ctl(99, "room:x", "phx_close"), 5);
    // phx_error / phx_close without a join_ref cannot say which join they end.
    stale(&mut h, msg(None, "room:x", "phx_error", "{}"), 6);
    stale(&mut h, msg(None, "room:x", "phx_close", "{}"), 7);
    let mut bin = encode_bin(&Bin::ServerPush {
        join_ref: "2".into(),
        topic: "room:x".into(),
        event: "b".into(),
        payload: vec![1],
    });
    h.binary(bin.clone());
    assert!(h.events().is_empty());
    assert_eq!(h.s.stats().stale_dropped, 8);

    h.text(msg(None, "room:x", "ev", r#"{"b":1}"#));
    h.text(msg(Some(1), "room:x", "ev", r#"{"p":1}"#));
    bin[4] = b'1';
    h.binary(bin);
    let ev = h.events();
    let m = messages(&ev);
    assert_eq!(m.len(), 3);
    assert!(m[0].broadcast && pval(&m[0].payload) == json!({"b":1}));
    assert!(!m[1].broadcast && pval(&m[1].payload) == json!({"p":1}));
    assert!(!m[2].broadcast && m[2].payload.as_bytes() == Some(&[1][..]));

    // After a rejoin the old join_ref is stale too.
    h.text(ctl(1, "room:x", "phx_error"));
    h.advance(SECS(1));
    let jr2 = refs_of(&h.one_text()).0.unwrap();
    h.text(ok(jr2, jr2, "room:x", "{}"));
    h.events();
    let before = h.s.stats().stale_dropped;
    h.text(ctl(1, "room:x", "phx_close"));
    assert!(h.events().is_empty());
    assert_eq!(h.s.stats().stale_dropped, before + 1);
    assert_eq!(h.state(ch), Some(ChannelState::Joined));
    h.text(ctl(jr2, "room:x", "phx_close"));
    assert_eq!(close_reason(&h.events(), ch), CloseReason::ServerClosed);
}

#[test]
fn duplicate_join() {
    // While open: the old channel is left (closed as Replaced on the leave reply).
    let mut h = open();
    let (old, jr) = h.join_ok("room:x");
    let p = h.push(old, "e");
    h.one_text();
    let new =
        h.s.join(h.now, "room:x", OutPayload::empty(), JoinOptions::default());
    assert_ne!(old, new);
    let out = h.sent_text();
    assert_eq!(out[0], format!(r#"["{jr}","3","room:x","phx_leave",{{}}]"#));
    assert_eq!(out[1], r#"["4","4","room:x","phx_join",{}]"#);
    assert_eq!(h.s.channel_for_topic("room:x"), Some(new));
    h.text(ok(4, 4, "room:x", "{}"));
    h.text(ok(jr, 3, "room:x", "{}"));
    let ev = h.events();
    joined_rejoin(&ev, new);
    assert_eq!(close_reason(&ev, old), CloseReason::Replaced);
    assert_eq!(
        outcome(&ev, p),
        PushOutcome::Dropped(DropReason::ChannelClosed)
    );
    assert_eq!(h.state(new), Some(ChannelState::Joined));

    // While down: replaced at once; one join goes out on open.
    let mut h = H::new(cfg());
    let a =
        h.s.join(h.now, "room:x", OutPayload::empty(), JoinOptions::default());
    let pa = h.push(a, "e");
    let b =
        h.s.join(h.now, "room:x", raw(r#"{"v":2}"#), JoinOptions::default());
    let ev = h.events();
    assert_eq!(close_reason(&ev, a), CloseReason::Replaced);
    assert_eq!(
        outcome(&ev, pa),
        PushOutcome::Dropped(DropReason::ChannelClosed)
    );
    h.open();
    let f = h.one_text();
    assert_eq!(arr(&f)[4], json!({"v":2}));
    let _ = b;
}

/// A duplicate join while open: `phx_leave` for the old join, then `phx_join`. A busy Phoenix
/// may take the new join first and shut the old channel down itself: `phx_close` for the OLD
/// join_ref, and no reply to the leave (`../shared/phoenix-wire/SUMMARY.md`, case 14). Frames
/// with a join_ref go to the join that owns it, so the old channel closes at once either way.
fn duplicate_join_in_flight() -> (H, ChannelId, u64, ChannelId, PushId) {
    let mut h = open();
    let (old, jr) = h.join_ok("room:x");
    let p = h.push(old, "e");
    h.one_text();
    let new =
        h.s.join(h.now, "room:x", OutPayload::empty(), JoinOptions::default());
    let out = h.sent_text();
    assert_eq!(out[0], format!(r#"["{jr}","3","room:x","phx_leave",{{}}]"#));
    assert_eq!(out[1], r#"["4","4","room:x","phx_join",{}]"#);
    assert_eq!(h.s.channel(old).unwrap().state, ChannelState::Leaving);
    (h, old, jr, new, p)
}

#[test]
fn duplicate_join_old_channel_closes_on_its_phx_close_before_or_without_the_leave_reply() {
    // Busy server: the new join's reply, then phx_close for the old join_ref; no leave reply.
    let (mut h, old, jr, new, p) = duplicate_join_in_flight();
    h.text(ok(4, 4, "room:x", "{}"));
    h.text(ctl(jr, "room:x", "phx_close"));
    let ev = h.events();
    joined_rejoin(&ev, new);
    assert_eq!(close_reason(&ev, old), CloseReason::Replaced);
    assert_eq!(
        outcome(&ev, p),
        PushOutcome::Dropped(DropReason::ChannelClosed)
    );
    assert_eq!(h.s.channel(old), None);
    assert_eq!(h.state(new), Some(ChannelState::Joined));
    assert_eq!(h.s.channel_for_topic("room:x"), Some(new));
    // Nothing more happens for the old channel: no leave timeout, no second close.
    h.advance(SECS(30));
    let ev = h.events();
    assert!(
        !ev.iter().any(|e| matches!(
            e,
            Event::ChannelClosed { .. } | Event::ChannelErrored { .. }
        )),
        "{ev:#?}"
    );
    assert_eq!(h.state(new), Some(ChannelState::Joined));

    // The same frames in the other order: phx_close for the old join first.
    let (mut h, old, jr, new, p) = duplicate_join_in_flight();
    h.text(ctl(jr, "room:x", "phx_close"));
    let ev = h.events();
    assert_eq!(close_reason(&ev, old), CloseReason::Replaced);
    assert_eq!(
        outcome(&ev, p),
        PushOutcome::Dropped(DropReason::ChannelClosed)
    );
    h.text(ok(4, 4, "room:x", "{}"));
    joined_rejoin(&h.events(), new);
    // A late leave reply (an idle server sends one) finds nothing to end.
    let before = h.s.stats().ignored_replies;
    h.text(ok(jr, 3, "room:x", "{}"));
    assert!(h.events().is_empty());
    assert_eq!(h.s.stats().ignored_replies, before + 1);
    assert_eq!(h.state(new), Some(ChannelState::Joined));
}

#[test]
fn a_leaving_channel_hears_only_how_it_ends() {
    // phx_error for the old join ends the leave too (closed as Replaced, not errored).
    let (mut h, old, jr, new, p) = duplicate_join_in_flight();
    h.text(ctl(jr, "room:x", "phx_error"));
    let ev = h.events();
    assert_eq!(close_reason(&ev, old), CloseReason::Replaced);
    assert_eq!(
        outcome(&ev, p),
        PushOutcome::Dropped(DropReason::ChannelClosed)
    );
    assert!(
        !ev.iter().any(|e| matches!(e, Event::ChannelErrored { .. })),
        "{ev:#?}"
    );
    assert_eq!(h.s.channel_for_topic("room:x"), Some(new));

    // Messages and presence for the old join while it leaves are stale: not delivered to the
    // new channel (they are not its join), nor as events of the channel the app let go of.
    let (mut h, old, jr, new, p) = duplicate_join_in_flight();
    let stale = h.s.stats().stale_dropped;
    h.text(msg(Some(jr), "room:x", "news", r#"{"old":true}"#));
    h.text(msg(
        Some(jr),
        "room:x",
        "presence_diff",
        r#"{"joins":{},"leaves":{}}"#,
    ));
    assert!(h.events().is_empty());
    assert_eq!(h.s.stats().stale_dropped, stale + 2);
    // A reply to the old channel's push still ends that push (by its ref), once.
    h.text(reply(Some(jr), 2, "room:x", "ok", r#"{"late":1}"#));
    assert_eq!(ok_value(&h.events(), p), json!({"late": 1}));
    // The new join's frames reach the new channel; a broadcast (no join_ref) too.
    h.text(ok(4, 4, "room:x", "{}"));
    joined_rejoin(&h.events(), new);
    h.text(msg(Some(4), "room:x", "news", r#"{"new":true}"#));
    h.text(msg(None, "room:x", "shout", "{}"));
    let ev = h.events();
    let got: Vec<(ChannelId, String)> = ev
        .iter()
        .filter_map(|e| match e {
            Event::Message(m) => Some((m.channel, m.event.to_string())),
            _ => None,
        })
        .collect();
    assert_eq!(got, vec![(new, "news".into()), (new, "shout".into())]);
    // The leave reply then closes the old channel as Replaced.
    h.text(ok(jr, 3, "room:x", "{}"));
    assert_eq!(close_reason(&h.events(), old), CloseReason::Replaced);
}

#[test]
fn closed_channel_ids_are_never_reused() {
    let mut h = H::new(cfg());
    let a =
        h.s.join(h.now, "room:a", OutPayload::empty(), JoinOptions::default());
    h.s.leave(h.now, a);
    assert_eq!(close_reason(&h.events(), a), CloseReason::Left);
    let b =
        h.s.join(h.now, "room:b", OutPayload::empty(), JoinOptions::default());
    assert_ne!(a, b);
    assert_eq!(h.s.channel(a), None);
    let p = h.push(a, "e");
    let ev = h.events();
    assert_eq!(
        outcome(&ev, p),
        PushOutcome::Dropped(DropReason::ChannelClosed)
    );
    assert_eq!(h.s.channel(b).unwrap().buffered, 0);
}

#[test]
fn presence_through_the_socket() {
    let mut h = open();
    let (room, jr) = h.join_ok("room:p");
    let meta = |r: &str| format!(r#"{{"u1":{{"metas":[{{"phx_ref":"{r}"}}]}}}}"#);
    h.text(msg(
        None,
        "room:p",
        "presence_diff",
        &format!(r#"{{"joins":{},"leaves":{{}}}}"#, meta("A")),
    ));
    assert!(h.events().is_empty());
    h.text(msg(Some(jr), "room:p", "presence_state", &meta("A")));
    let ev = h.events();
    assert_eq!(presence_events(&ev).len(), 2);
    assert_eq!(h.s.presence(room).unwrap()["u1"].metas.len(), 1);
    // A presence_state of an old join is stale.
    h.text(msg(Some(jr + 100), "room:p", "presence_state", "{}"));
    assert!(h.events().is_empty());
    assert_eq!(h.s.presence(room).unwrap().len(), 1);

    // Presence tracking off: they are plain messages.
    let ch = h.s.join(
        h.now,
        "room:q",
        OutPayload::empty(),
        JoinOptions { presence: false },
    );
    let jq = refs_of(&h.one_text()).0.unwrap();
    h.text(ok(jq, jq, "room:q", "{}"));
    h.events();
    h.text(msg(Some(jq), "room:q", "presence_state", &meta("B")));
    let ev = h.events();
    assert_eq!(messages(&ev)[0].event.as_ref(), "presence_state");
    assert!(h.s.presence(ch).is_none());
}

// ---------------------------------------------------------------------------- leave

#[test]
fn leave_ok_reply_timeout_and_while_disconnected() {
    // Ok reply; a push in flight is dropped as the channel closes.
    let mut h = open();
    let (ch, jr) = h.join_ok("room:x");
    let p = h.push(ch, "e");
    h.one_text();
    h.s.leave(h.now, ch);
    assert_eq!(
        h.one_text(),
        format!(r#"["{jr}","3","room:x","phx_leave",{{}}]"#)
    );
    let q = h.push(ch, "e"); // leaving: no new pushes
    assert_eq!(
        outcome(&h.events(), q),
        PushOutcome::Dropped(DropReason::ChannelClosed)
    );
    h.text(ok(jr, 3, "room:x", "{}"));
    let ev = h.events();
    assert_eq!(close_reason(&ev, ch), CloseReason::Left);
    assert_eq!(
        outcome(&ev, p),
        PushOutcome::Dropped(DropReason::ChannelClosed)
    );

    // Timeout.
    let (ch, _) = h.join_ok("room:y");
    h.s.leave(h.now, ch);
    h.one_text();
    h.advance(SECS(10) - MS(1));
    assert!(h.events().is_empty());
    h.advance(MS(1));
    assert_eq!(close_reason(&h.events(), ch), CloseReason::Left);

    // While disconnected: closed at once, buffered pushes dropped, no rejoin later.
    let (ch, _) = h.join_ok("room:z");
    drop_conn(&mut h);
    h.events();
    let p = h.push(ch, "e");
    h.s.leave(h.now, ch);
    let ev = h.events();
    assert_eq!(close_reason(&ev, ch), CloseReason::Left);
    assert_eq!(
        outcome(&ev, p),
        PushOutcome::Dropped(DropReason::ChannelClosed)
    );
    h.advance(MS(10));
    h.expect_connect();
    h.s.handle_open(h.now);
    h.nothing_sent();
    h.events();

    // While the join is pending: the leave supersedes it.
    let ch =
        h.s.join(h.now, "room:w", OutPayload::empty(), JoinOptions::default());
    let jr = refs_of(&h.one_text()).0.unwrap();
    h.s.leave(h.now, ch);
    let lr = refs_of(&h.one_text()).1.unwrap();
    h.text(ok(jr, jr, "room:w", "{}"));
    assert!(h.events().is_empty(), "late join reply ignored");
    h.text(ok(jr, lr, "room:w", "{}"));
    assert_eq!(close_reason(&h.events(), ch), CloseReason::Left);
}

// ------------------------------------------------------------------ disconnect/connect

#[test]
fn disconnect_stops_reconnecting_and_connect_rejoins_with_fresh_join_refs() {
    let mut h = open();
    let (a, ja) = h.join_ok("room:a");
    let (b, jb) = h.join_ok("room:b");
    let p = h.push(a, "e");
    h.one_text();
    h.s.disconnect(h.now);
    assert_eq!(h.outputs(), vec![Output::Close]);
    let ev = h.events();
    assert_eq!(
        ev[0],
        Event::Disconnected {
            reason: DisconnectReason::Requested
        }
    );
    assert_eq!(
        outcome(&ev, p),
        PushOutcome::Dropped(DropReason::ConnectionLost)
    );
    assert_eq!(channel_error(&ev, a), ChannelError::ConnectionLost);
    assert_eq!(channel_error(&ev, b), ChannelError::ConnectionLost);
    assert!(
        !ev.iter()
            .any(|e| matches!(e, Event::ReconnectScheduled { .. }))
    );
    assert_eq!(h.s.connection_state(), ConnectionState::Disconnected);
    h.advance(SECS(3600));
    h.nothing_sent();
    assert!(h.events().is_empty());
    assert_eq!(h.s.poll_timeout(), None, "nothing left to wake up for");

    let q = h.push(a, "while-down");
    h.connect();
    h.s.handle_open(h.now);
    let joins = h.sent_text();
    assert_eq!(joins.len(), 2);
    let refs: Vec<u64> = joins.iter().map(|f| refs_of(f).0.unwrap()).collect();
    assert!(refs.iter().all(|r| *r > ja.max(jb)));
    assert_ne!(refs[0], refs[1]);
    h.text(ok(refs[0], refs[0], "room:a", "{}"));
    h.text(ok(refs[1], refs[1], "room:b", "{}"));
    let ev = h.events();
    assert!(joined_rejoin(&ev, a) && joined_rejoin(&ev, b));
    assert_eq!(outcome(&ev, q), PushOutcome::Dropped(DropReason::Outdated));

    // disconnect() while connecting or waiting: no further attempts.
    let mut h = H::new(cfg());
    h.connect();
    h.s.disconnect(h.now);
    assert_eq!(h.outputs(), vec![Output::Close]);
    h.closed(TransportClosed::Error("late".into())); // ignored
    h.events();
    h.advance(SECS(60));
    h.nothing_sent();
    let mut h = open();
    drop_conn(&mut h);
    h.s.disconnect(h.now);
    h.advance(SECS(60));
    h.nothing_sent();
    assert_eq!(h.s.poll_timeout(), None);
}

#[test]
fn an_answered_push_is_not_a_timer() {
    // Each socket's next timer decides when a frame visits it (and when a wait ends): the
    // deadline of a push that got its reply must not stay one until it passes.
    let mut h = open();
    let heartbeat = h.s.poll_timeout();
    let (ch, jr) = h.join_ok("room:a");
    assert_eq!(h.s.poll_timeout(), heartbeat, "the answered join");
    let p1 = h.push(ch, "e");
    h.advance(MS(100));
    let p2 = h.push(ch, "e");
    let refs: Vec<u64> = h
        .sent_text()
        .iter()
        .map(|f| refs_of(f).1.unwrap())
        .collect();
    assert_eq!(refs.len(), 2);
    assert_eq!(h.s.poll_timeout(), Some(h.now - MS(100) + SECS(10)));
    // Answered out of order: the later push first, then the earlier one.
    h.text(ok(jr, refs[1], "room:a", "{}"));
    assert!(matches!(outcome(&h.events(), p2), PushOutcome::Ok(_)));
    assert_eq!(
        h.s.poll_timeout(),
        Some(h.now - MS(100) + SECS(10)),
        "p1 waits"
    );
    h.text(ok(jr, refs[0], "room:a", "{}"));
    assert!(matches!(outcome(&h.events(), p1), PushOutcome::Ok(_)));
    assert_eq!(h.s.poll_timeout(), heartbeat);
}

#[test]
fn poll_timeout_is_never_in_the_past() {
    // A busy scenario; H::advance_to asserts after every handle_timeout that the next
    // timeout is later than now.
    let mut h = H::new(cfg().with_jitter(0.3).with_rng_seed(3));
    h.open();
    let (a, ja) = h.join_ok("room:a");
    let b =
        h.s.join(h.now, "room:b", OutPayload::empty(), JoinOptions::default());
    for i in 0..20 {
        let _ = h.push(a, "e");
        let _ = h.push(b, "e");
        if i == 5 {
            h.text(ctl(ja, "room:a", "phx_error"));
        }
        if i == 10 {
            drop_conn(&mut h);
        }
        h.advance(MS(1700));
        h.outputs();
        h.events();
        if h.s.connection_state() == ConnectionState::Connecting && i % 3 == 0 {
            h.s.handle_open(h.now);
        }
    }
    h.advance(SECS(600));
    // Calling handle_timeout early is a no-op.
    let t = h.s.poll_timeout();
    h.s.handle_timeout(h.now);
    assert_eq!(h.s.poll_timeout(), t);
}

#[test]
fn first_connect_failure_retries_after_10ms_like_phoenix_js() {
    // The table is indexed by reconnects scheduled since the last open, whether or not the
    // socket was ever open: a failed first connect retries after 10 ms, then 50 ms.
    let mut h = H::new(cfg());
    h.connect();
    h.closed(TransportClosed::Error("connection refused".into()));
    let ev = h.events();
    assert_eq!(reconnect_scheduled(&ev), (2, MS(10)));
    h.advance(MS(10));
    h.expect_connect();
    h.closed(TransportClosed::Refused { status: 403 });
    assert_eq!(reconnect_scheduled(&h.events()), (3, MS(50)));
}

#[test]
fn rejoin_backoff_starts_over_on_a_new_connection() {
    let mut h = H::new(cfg());
    h.open();
    let ch = h.s.join(
        h.now,
        "private:x",
        OutPayload::empty(),
        JoinOptions::default(),
    );
    let delays = |ev: &[Event]| -> Vec<Duration> {
        ev.iter()
            .filter_map(|e| match e {
                Event::RejoinScheduled { delay, .. } => Some(*delay),
                _ => None,
            })
            .collect()
    };
    // Two refusals: 1 s then 2 s.
    for expect in [1, 2] {
        let (jr, _) = refs_of(&h.one_text());
        let jr = jr.unwrap();
        h.text(reply(
            Some(jr),
            jr,
            "private:x",
            "error",
            r#"{"reason":"unauthorized"}"#,
        ));
        assert_eq!(delays(&h.events()), vec![Duration::from_secs(expect)]);
        h.advance(Duration::from_secs(expect));
    }
    // The connection drops and comes back: the rejoin happens at once, and the next refusal
    // starts the table over at 1 s.
    h.outputs();
    drop_conn(&mut h);
    h.events();
    h.advance(MS(10));
    h.expect_connect();
    h.s.handle_open(h.now);
    h.events();
    let (jr, _) = refs_of(&h.one_text());
    let jr = jr.unwrap();
    h.text(reply(
        Some(jr),
        jr,
        "private:x",
        "error",
        r#"{"reason":"unauthorized"}"#,
    ));
    assert_eq!(delays(&h.events()), vec![Duration::from_secs(1)]);
    assert!(h.s.channel(ch).is_some());
}

#[test]
fn answered_pushes_do_not_pile_up_in_the_timer_heap() {
    // 100k pushes answered one by one with a long timeout: the socket's memory must follow
    // what is in flight, not everything ever pushed (poll_timeout stays correct throughout).
    let mut h = H::new(
        cfg()
            .with_push_timeout(Duration::from_secs(600))
            .with_heartbeat(Duration::from_secs(3600)),
    );
    h.open();
    let ch =
        h.s.join(h.now, "echo:1", OutPayload::empty(), JoinOptions::default());
    let (jr, _) = refs_of(&h.one_text());
    let jr = jr.unwrap();
    h.text(ok(jr, jr, "echo:1", "{}"));
    h.events();
    // Never answered: its deadline must survive every compaction of the heap.
    let first =
        h.s.push(h.now, ch, "echo", raw("{}"), PushOptions::default());
    for _ in 0..100_000 {
        let p =
            h.s.push(h.now, ch, "echo", raw("{}"), PushOptions::default());
        h.outputs();
        h.text(ok(jr, p.0, "echo:1", "{}"));
        assert!(matches!(h.s.poll_event(), Some(Event::Reply(_))));
    }
    assert_eq!(h.s.pending_pushes(), 1);
    let p =
        h.s.push(h.now, ch, "echo", raw("{}"), PushOptions::default());
    h.advance(Duration::from_secs(600));
    let ev = h.events();
    assert_eq!(outcome(&ev, first), PushOutcome::Timeout);
    assert_eq!(outcome(&ev, p), PushOutcome::Timeout);
    assert_eq!(h.s.pending_pushes(), 0);
}

#[test]
fn push_tag_comes_back_with_every_outcome() {
    let mut h = H::new(cfg());
    h.open();
    let ch =
        h.s.join(h.now, "echo:1", OutPayload::empty(), JoinOptions::default());
    let (jr, _) = refs_of(&h.one_text());
    let jr = jr.unwrap();
    h.text(ok(jr, jr, "echo:1", "{}"));
    h.events();
    let tagged = |tag| PushOptions {
        tag,
        ..PushOptions::default()
    };
    let replied = h.s.push(h.now, ch, "echo", raw("{}"), tagged(7));
    let lost = h.s.push(h.now, ch, "echo", raw("{}"), tagged(8));
    h.outputs();
    h.text(ok(jr, replied.0, "echo:1", "{}"));
    drop_conn(&mut h);
    let gone = h.s.push(h.now, ch, "echo", raw("{}"), tagged(9));
    h.s.leave(h.now, ch);
    let ev = h.events();
    let tag_of = |p: PushId| {
        replies(&ev)
            .into_iter()
            .find(|r| r.push == p)
            .map(|r| r.tag)
            .unwrap()
    };
    assert_eq!(tag_of(replied), 7);
    assert_eq!(tag_of(lost), 8);
    assert_eq!(tag_of(gone), 9);
}
