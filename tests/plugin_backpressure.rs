//! A server that stops reading, over a real socket on loopback: the bytes the transport holds
//! unsent stay within `max_send_backlog` (plus one frame), pushes past it end as
//! `Dropped(SendQueueFull)` (every push exactly one outcome), the heartbeat still detects the
//! dead peer, and once the server reads again the socket reconnects, rejoins and pushes work.
#![allow(clippy::unwrap_used)]

mod support;

use std::collections::HashMap;
use std::time::Duration;

use bevy::prelude::*;
use bevy_phoenix_channels::prelude::*;
use serde_json::json;
use support::*;

const BOUND: usize = 1 << 20;
const FRAME: usize = 64 * 1024;

/// The core's view of the transport's unsent bytes (last report plus frames emitted since).
fn backlog(w: &mut World) -> usize {
    let mut q = w.query::<&PhoenixSocket>();
    q.iter(w).map(|s| s.core().send_backlog()).sum()
}

#[test]
fn a_server_that_stops_reading_gets_a_bounded_backlog_and_a_heartbeat_timeout() {
    let server = Server::start();
    let Some(local) = server.faulty("a_server_that_stops_reading") else {
        return;
    };
    // The heartbeat goes out every second; with the server not reading it is never answered,
    // and 10 s later the connection is declared dead (long enough for the backlog to build
    // first on a slow machine: that takes a few dozen frames).
    // A short connect timeout: attempts made while the server does not read fail fast.
    let cfg = config(&server.url)
        .with_connect_timeout(Duration::from_secs(2))
        .with(|s| {
            s.with_max_send_backlog(BOUND)
                .with_heartbeat(Duration::from_secs(1))
                .with_heartbeat_timeout(Duration::from_secs(10))
                .with_push_timeout(Duration::from_secs(60))
        });
    let mut app = app(cfg);
    let channel = join(&mut app, PhoenixChannel::new(unique("echo:stall-")));
    wait_joined(&mut app, channel);

    local.faults().stop_reading(true);
    // Half the bound per frame: drops come only from what the server does not take.
    let mut issued = Vec::new();
    let mut max_backlog = 0;
    pump_until(&mut app, 60, "the heartbeat timeout", |w| {
        // After each frame: what the transport held at the frame's start plus what the core
        // let through during it. The core never lets more than the bound (plus the one frame
        // allowed onto an empty line) wait.
        max_backlog = max_backlog.max(backlog(w));
        let log = w.resource::<Log>();
        let dead = log
            .disconnected
            .iter()
            .any(|d| d.reason == DisconnectReason::HeartbeatTimeout);
        if !dead {
            for _ in 0..8 {
                let msg =
                    PushMessage::binary(channel, "noreply", vec![1u8; FRAME]).fire_and_forget();
                issued.push(msg.handle);
                w.write_message(msg.report_sent());
            }
        }
        dead
    });
    assert!(max_backlog <= BOUND + FRAME + 64, "{max_backlog}");

    let log = log(&app);
    let mut outcomes: HashMap<PushHandle, Vec<&PushOutcome>> = HashMap::new();
    for r in &log.replies {
        outcomes.entry(r.handle).or_default().push(&r.outcome);
    }
    let full = outcomes
        .values()
        .filter(|o| *o[0] == PushOutcome::Dropped(DropReason::SendQueueFull))
        .count();
    assert!(full > 0, "no push was dropped for the full send queue");
    let sent = outcomes
        .values()
        .filter(|o| *o[0] == PushOutcome::Sent)
        .count();
    // What went out before the stall filled the kernel's buffers, and at most the bound after.
    assert!(sent > 0);

    // The server reads again: the socket reconnects and rejoins, and a push is answered.
    local.faults().stop_reading(false);
    wait_joined(&mut app, channel);
    let h = push(
        &mut app,
        PushMessage::json(channel, "echo", &json!({"after": "the stall"})).unwrap(),
    );
    let r = reply(&mut app, h);
    assert!(matches!(r.outcome, PushOutcome::Ok(_)), "{:?}", r.outcome);

    // Exactly one outcome for every push made during the stall (all ended before the
    // reconnect: sent, or dropped at once).
    let mut count: HashMap<PushHandle, usize> = HashMap::new();
    for r in &support::log(&app).replies {
        *count.entry(r.handle).or_default() += 1;
    }
    for h in &issued {
        assert_eq!(count.get(h), Some(&1), "{h:?}");
    }
    eprintln!(
        "stall: {} pushes, {sent} sent, {full} dropped (send queue full), max backlog {max_backlog} B",
        issued.len()
    );
}

/// With the bound raised past the native transport's own limit (64 MiB it will hold), the
/// transport refuses a frame on a live connection. A lost frame would leave the server reading
/// a broken stream, so the plugin ends that connection: every push still gets exactly one
/// outcome, and the socket reconnects and rejoins once the server reads again.
#[test]
fn a_frame_the_transport_refuses_ends_the_connection_not_the_push_silently() {
    let server = Server::start();
    let Some(local) = server.faulty("a_frame_the_transport_refuses") else {
        return;
    };
    let cfg = config(&server.url)
        .with_connect_timeout(Duration::from_secs(2))
        .with(|s| {
            s.with_max_send_backlog(1 << 30)
                .with_push_timeout(Duration::from_secs(120))
        });
    let mut app = app(cfg);
    let channel = join(&mut app, PhoenixChannel::new(unique("echo:refused-")));
    wait_joined(&mut app, channel);

    local.faults().stop_reading(true);
    let mut issued = Vec::new();
    pump_until(&mut app, 60, "the refused frame ends the connection", |w| {
        let ended = !w.resource::<Log>().disconnected.is_empty();
        if !ended {
            for _ in 0..4 {
                let msg = PushMessage::binary(channel, "noreply", vec![2u8; 1 << 20]);
                issued.push(msg.handle);
                w.write_message(msg);
            }
        }
        ended
    });
    let log = support::log(&app);
    match &log.disconnected[0].reason {
        DisconnectReason::Error(e) => assert!(e.contains("send buffer full"), "{e}"),
        other => panic!("expected a send error, got {other:?}"),
    }
    local.faults().stop_reading(false);
    wait_joined(&mut app, channel);
    pump_until(&mut app, 30, "every push has its outcome", |w| {
        let n: std::collections::HashSet<PushHandle> = w
            .resource::<Log>()
            .replies
            .iter()
            .map(|r| r.handle)
            .collect();
        issued.iter().all(|h| n.contains(h))
    });
    let mut count: HashMap<PushHandle, Vec<PushOutcome>> = HashMap::new();
    for r in &support::log(&app).replies {
        count.entry(r.handle).or_default().push(r.outcome.clone());
    }
    let mut lost = 0;
    for h in &issued {
        let o = &count[h];
        assert_eq!(o.len(), 1, "{h:?}: {o:?}");
        if o[0] == PushOutcome::Dropped(DropReason::ConnectionLost) {
            lost += 1;
        }
    }
    assert!(lost > 0);
    eprintln!(
        "refused: {} pushes, {lost} ended as connection lost",
        issued.len()
    );
}

/// The core's count of unsent bytes is refreshed from the transport, not only when the app
/// pushes: pushes buffered until their channel joins go out when the join reply arrives (in
/// `PreUpdate`), and must not be dropped for bytes the transport sent long ago.
#[test]
fn pushes_flushed_at_a_join_see_the_transport_drained_since() {
    let server = Server::start();
    let Some(local) = server.faulty("pushes_flushed_at_a_join") else {
        return;
    };
    let cfg = config(&server.url).with(|s| s.with_max_send_backlog(4 << 20));
    let mut app = app(cfg);
    let a = join(&mut app, PhoenixChannel::new(unique("echo:drained-a-")));
    wait_joined(&mut app, a);
    // The server's frames now take 2 s to leave: channel B's join reply comes long after the
    // transport handed the 3 MiB below to the kernel.
    local.faults().delay_outgoing(Duration::from_secs(2));
    // One frame: 2 MiB on channel B, which is still joining (buffered until its join reply),
    // and 3 MiB on the joined channel A (sent). 3 + 2 passes the 4 MiB bound only while the
    // 3 MiB have not left.
    let b = join(&mut app, PhoenixChannel::new(unique("echo:drained-b-")));
    let buffered = push(
        &mut app,
        PushMessage::binary(b, "binary", vec![2u8; 2 << 20]),
    );
    let big = push(
        &mut app,
        PushMessage::binary(a, "binary", vec![1u8; 3 << 20]),
    );
    let r = reply(&mut app, big);
    assert!(matches!(r.outcome, PushOutcome::Ok(_)), "{:?}", r.outcome);
    let r = reply(&mut app, buffered);
    assert!(matches!(r.outcome, PushOutcome::Ok(_)), "{:?}", r.outcome);
}
