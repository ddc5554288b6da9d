//! The swarm example (`examples/swarm/native.rs`, shared through `#[path]`) as a load tester
//! would run it: a few bots in rooms, pushing moves, against the test server or `PHOENIX_URL`.
//! Checks what its summary promises: every push ends in exactly one outcome, each answered
//! push has one reply latency, broadcasts come only from room mates, and the pushing phase's
//! totals are the whole run's minus the joins.
#![allow(clippy::unwrap_used)]

#[allow(dead_code)]
#[path = "../examples/swarm/native.rs"]
mod swarm;

mod support;

use support::*;

#[test]
fn a_small_swarm_answers_every_push_and_times_each_reply() {
    let server = Server::start();
    let o = swarm::Options {
        bots: 6,
        rooms: 2,
        rate: 20.0,
        seconds: 1.5,
        url: Some(server.url.clone()),
        json: true,
        ..swarm::Options::default()
    };
    let s = swarm::run(&o, || 0);
    assert_eq!(s.joined, 6);
    assert_eq!(s.rooms, 2);
    let t = &s.totals;
    assert!(s.run_totals.pushes > 0, "no pushes while pushing");
    assert_eq!(
        t.pushes, s.run_totals.pushes,
        "pushes happen only in the pushing phase"
    );
    // The run waits for every outcome: one each, and all of them replies here.
    assert_eq!(
        t.replies_ok + t.replies_error + t.timeouts + t.dropped,
        t.pushes,
        "every push ends in exactly one outcome"
    );
    assert_eq!(t.replies_ok, t.pushes, "the room answers every move :ok");
    assert_eq!(
        (t.protocol_errors, t.channel_errors, t.connect_failures),
        (0, 0, 0)
    );
    // One latency per answered push, in order.
    let l = &s.reply_latency;
    assert_eq!(l.count as u64, t.replies_ok + t.replies_error);
    assert!(l.p50_us > 0.0, "{}", l.p50_us);
    assert!(l.p50_us <= l.p99_us && l.p99_us <= l.max_us);
    assert!(l.mean_us > 0.0 && l.mean_us <= l.max_us);
    // Moves are broadcast to the two room mates of each pusher (`broadcast_from`), never back.
    assert!(t.messages > 0, "no broadcast arrived");
    assert!(
        t.messages <= 2 * t.pushes,
        "{} broadcasts for {} pushes in rooms of 3",
        t.messages,
        t.pushes
    );
    assert!(
        t.presence > 0,
        "presence is on: the joins bring presence events"
    );
    #[cfg(target_os = "linux")]
    assert!(s.client_cpu_us_per_message.is_some_and(|c| c > 0.0));
}
