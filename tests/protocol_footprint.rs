//! `Socket::footprint`: the core's tables return to their idle size after pushes end in every
//! way (reply, timeout, connection lost, outdated), and the interned event names stay bounded
//! however many distinct names a server invents. Injected time, no sockets.

#[path = "support/protocol.rs"]
mod support;

use std::time::Duration;

use support::*;

/// Everything waiting drained; the footprint then.
fn idle(h: &mut H) -> socket::SocketFootprint {
    h.outputs();
    h.events();
    h.s.footprint()
}

#[test]
fn footprint_returns_to_idle_after_replies_timeouts_drops_and_rejoins() {
    let mut h = H::new(cfg().with_heartbeat(Duration::from_secs(3600)));
    h.open();
    let (ch, jr) = h.join_ok("echo:1");
    let base = idle(&mut h);
    assert_eq!(
        (
            base.pushes,
            base.channels,
            base.topics,
            base.join_refs,
            base.buffered
        ),
        (0, 1, 1, 1, 0),
        "{base:?}"
    );

    // 5000 pushes answered.
    let ids: Vec<PushId> = (0..5000).map(|_| h.push(ch, "echo")).collect();
    assert_eq!(h.s.footprint().pushes, 5000);
    for id in &ids {
        h.text(ok(jr, id.0, "echo:1", "{}"));
    }
    let f = idle(&mut h);
    assert_eq!((f.pushes, f.outputs, f.events), (0, 0, 0), "{f:?}");

    // 2000 pushes that time out.
    for _ in 0..2000 {
        h.push(ch, "noreply");
    }
    h.advance(Duration::from_secs(11));
    let f = idle(&mut h);
    assert_eq!(f.pushes, 0, "{f:?}");
    assert_eq!(f.deadlines, 0, "every deadline has passed: {f:?}");

    // 2000 in flight when the connection drops, then 500 made while it is down (buffered,
    // outdated when the channel rejoins).
    for _ in 0..2000 {
        h.push(ch, "echo");
    }
    h.outputs();
    h.closed(TransportClosed::Closed {
        code: None,
        reason: String::new(),
    });
    for _ in 0..500 {
        h.push(ch, "echo");
    }
    assert_eq!(h.s.footprint().buffered, 500);
    h.advance(Duration::from_millis(50));
    h.expect_connect();
    h.s.handle_open(h.now);
    let frames = h.sent_text();
    let join = frames
        .iter()
        .find(|f| event_of(f) == "phx_join")
        .expect("a rejoin");
    let (jr2, _) = refs_of(join);
    h.text(ok(
        jr2.expect("join_ref"),
        jr2.expect("ref"),
        "echo:1",
        "{}",
    ));
    let f = idle(&mut h);
    assert_eq!(
        (
            f.pushes,
            f.buffered,
            f.channels,
            f.topics,
            f.join_refs,
            f.channel_slots
        ),
        (0, 0, 1, 1, 1, 1),
        "{f:?}"
    );
    h.advance(Duration::from_secs(11));
    let f = idle(&mut h);
    assert_eq!(f.deadlines, 0, "{f:?}");

    // Joining and leaving 100 topics reuses the slots.
    for i in 0..100 {
        let (c, jr) = h.join_ok(&format!("room:{i}"));
        h.s.leave(h.now, c);
        let leave = h.one_text();
        let (_, r) = refs_of(&leave);
        h.text(ok(jr, r.expect("ref"), &format!("room:{i}"), "{}"));
    }
    let f = idle(&mut h);
    assert_eq!((f.channels, f.topics, f.join_refs), (1, 1, 1), "{f:?}");
    assert!(f.channel_slots <= 2, "slots are reused: {f:?}");
}

#[test]
fn interned_event_names_stay_bounded_when_every_message_has_a_new_name() {
    let mut h = H::new(cfg().with_heartbeat(Duration::from_secs(3600)));
    h.open();
    let (ch, jr) = h.join_ok("echo:1");
    for i in 0..20_000 {
        h.text(msg(Some(jr), "echo:1", &format!("n{i}"), "{}"));
        if i % 1000 == 0 {
            h.events();
        }
    }
    let got = messages(&h.events()).len();
    assert!(got > 0);
    // Pushes with new names too.
    for i in 0..5_000 {
        let id = h.push(ch, &format!("p{i}"));
        h.text(ok(jr, id.0, "echo:1", "{}"));
    }
    let f = idle(&mut h);
    assert!(f.names <= 1024, "the name cache is bounded: {f:?}");
    assert!(f.names >= 1000, "and it is used: {f:?}");
}
