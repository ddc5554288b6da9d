//! `WaitForNetwork`: a headless loop sleeps at the end of each frame, and wakes for server data,
//! a finished handshake, the core's timers, the app's own waker, and stays awake while a burst
//! is bigger than one frame's read budget.
//!
//! Each test runs `app.update()` back to back, with no sleep of its own, and counts frames: a
//! loop that spins instead of sleeping runs thousands of frames where these expect a handful,
//! and a wait that misses its wake-up blocks for `max_wait` (20 s), past every bound here. The
//! time bounds are generous (a loaded CI machine) and are about behaviour, not speed.
#![allow(clippy::unwrap_used)]

mod support;

use std::time::{Duration, Instant};

use bevy::prelude::*;
use bevy_phoenix_channels::prelude::*;
use serde_json::json;
use support::*;

/// Longer than every bound below: a wait that misses its wake-up fails the test.
const LONG: Duration = Duration::from_secs(20);

/// When the app saw what the tests wait for, stamped by a system in `Update` (the frame then
/// sleeps in `Last` unless something wakes it, so `update()` returning is not the moment).
#[derive(Resource, Default)]
struct Seen {
    connected: Option<Instant>,
    joined: Option<Instant>,
    replies: Vec<(PushHandle, Instant)>,
    ticks: usize,
    /// Wake the wait only when this many ticks have arrived, not for everything.
    quiet_until_ticks: Option<usize>,
}

/// Stamps what arrived, and wakes the frame's wait when anything did, so the test loop sees it
/// at once (the app's own use of `WaitForNetwork::waker`).
fn see(
    mut seen: ResMut<Seen>,
    wait: Res<WaitForNetwork>,
    mut connected: MessageReader<SocketConnected>,
    mut joined: MessageReader<ChannelJoined>,
    mut replies: MessageReader<PushReplied>,
    mut messages: MessageReader<ChannelMessage>,
) {
    let now = Instant::now();
    let mut any = false;
    for _ in connected.read() {
        seen.connected.get_or_insert(now);
        any = true;
    }
    for _ in joined.read() {
        seen.joined.get_or_insert(now);
        any = true;
    }
    for r in replies.read() {
        seen.replies.push((r.handle, now));
        any = true;
    }
    for m in messages.read() {
        if &*m.event == "tick" {
            seen.ticks += 1;
            any = true;
        }
    }
    let wake = match seen.quiet_until_ticks {
        Some(n) => seen.ticks >= n,
        None => any,
    };
    if wake {
        wait.waker().wake();
    }
}

fn waiting_app(config: PhoenixSocketConfig, max_wait: Duration) -> App {
    // No join or push timer may end a wrong sleep before the tests' bounds do (the heartbeat
    // is 30 s away, `max_wait` 20 s).
    let config = config.with(|s| {
        s.with_join_timeout(Duration::from_secs(60))
            .with_push_timeout(Duration::from_secs(60))
    });
    let mut app = app(config);
    app.insert_resource(WaitForNetwork::up_to(max_wait))
        .init_resource::<Seen>()
        .add_systems(Update, see);
    app
}

/// Runs frames back to back until `done`; returns the frames run. Panics after `secs`.
fn frames_until(app: &mut App, secs: u64, what: &str, mut done: impl FnMut(&Seen) -> bool) -> u32 {
    let t0 = Instant::now();
    let mut frames = 0;
    loop {
        app.update();
        frames += 1;
        if done(app.world().resource::<Seen>()) {
            return frames;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(secs),
            "timed out waiting for: {what} ({frames} frames)"
        );
    }
}

fn is_connected(app: &mut App) -> bool {
    let w = app.world_mut();
    let mut q = w.query_filtered::<&SocketStatus, With<DefaultSocket>>();
    q.iter(w).any(SocketStatus::is_connected)
}

fn reply_at(seen: &Seen, h: PushHandle) -> Option<Instant> {
    seen.replies.iter().find(|(x, _)| *x == h).map(|(_, t)| *t)
}

/// A joined echo channel on an app that waits up to `max_wait` per frame.
fn joined_app(config: PhoenixSocketConfig, max_wait: Duration) -> (App, Entity) {
    let mut app = waiting_app(config, max_wait);
    let channel = join(&mut app, PhoenixChannel::new(unique("echo:wait-")));
    frames_until(&mut app, 15, "joined", |s| s.joined.is_some());
    (app, channel)
}

#[test]
fn connecting_and_joining_wake_the_loop_instead_of_spinning() {
    let server = Server::start();
    let mut app = waiting_app(config(&server.url), LONG);
    let t0 = Instant::now();
    join(&mut app, PhoenixChannel::new(unique("echo:wait-")));
    // The handshake thread wakes the wait when the socket opens; the join reply is data.
    let frames = frames_until(&mut app, 10, "joined", |s| s.joined.is_some());
    let seen = app.world().resource::<Seen>();
    let (connected, joined) = (seen.connected.unwrap(), seen.joined.unwrap());
    assert!(
        frames <= 20,
        "{frames} frames to connect and join: the loop spun"
    );
    assert!(
        connected - t0 < Duration::from_secs(5),
        "{:?}",
        connected - t0
    );
    assert!(joined - t0 < Duration::from_secs(5), "{:?}", joined - t0);
}

#[test]
fn an_idle_frame_sleeps_for_max_wait() {
    let server = Server::start();
    let max_wait = Duration::from_millis(150);
    let (mut app, _) = joined_app(config(&server.url), max_wait);
    let t0 = Instant::now();
    for _ in 0..4 {
        app.update();
    }
    let elapsed = t0.elapsed();
    // Nothing to wake it (the heartbeat is 30 s away): each frame sleeps its full bound.
    assert!(
        elapsed >= max_wait * 4 - Duration::from_millis(20),
        "4 idle frames took {elapsed:?}, expected about {:?}",
        max_wait * 4
    );
    assert!(elapsed < Duration::from_secs(10), "{elapsed:?}");
}

#[test]
fn a_reply_wakes_the_loop() {
    let server = Server::start();
    let (mut app, channel) = joined_app(config(&server.url), LONG);
    // The server answers after 300 ms: the loop sleeps meanwhile and wakes for the reply.
    let t0 = Instant::now();
    let h = push(
        &mut app,
        PushMessage::json(channel, "slow", &json!({"ms": 300})).unwrap(),
    );
    let frames = frames_until(&mut app, 10, "slow reply", |s| reply_at(s, h).is_some());
    let waited = reply_at(app.world().resource::<Seen>(), h).unwrap() - t0;
    assert!(frames <= 10, "{frames} frames for one reply: the loop spun");
    assert!(waited >= Duration::from_millis(250), "{waited:?}");
    assert!(waited < Duration::from_secs(5), "{waited:?}");
    let r = log(&app).replies.iter().find(|r| r.handle == h).unwrap();
    assert!(matches!(r.outcome, PushOutcome::Ok(_)), "{:?}", r.outcome);
}

#[test]
fn the_heartbeat_timer_wakes_the_loop() {
    let server = Server::start();
    let cfg = config(&server.url).with(|s| s.with_heartbeat(Duration::from_millis(200)));
    let mut app = waiting_app(cfg, LONG);
    frames_until(&mut app, 10, "connected", |s| s.connected.is_some());
    // With max_wait 20 s, only the heartbeat timer (and its reply) can end these waits.
    let t0 = Instant::now();
    let mut frames = 0;
    while t0.elapsed() < Duration::from_millis(1_000) {
        app.update();
        frames += 1;
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "a wait missed its timer"
        );
    }
    assert!(
        (3..=60).contains(&frames),
        "{frames} frames in 1 s with a 200 ms heartbeat"
    );
    assert!(is_connected(&mut app), "heartbeats kept the socket up");
    assert!(
        log(&app).disconnected.is_empty(),
        "{:?}",
        log(&app).disconnected
    );
}

#[test]
fn the_apps_waker_ends_a_wait_from_another_thread() {
    let server = Server::start();
    let (mut app, _) = joined_app(config(&server.url), LONG);
    let waker = app.world().resource::<WaitForNetwork>().waker();
    assert!(waker.is_active());
    let t = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(200));
        waker.wake();
    });
    let t0 = Instant::now();
    app.update();
    let elapsed = t0.elapsed();
    t.join().unwrap();
    assert!(elapsed >= Duration::from_millis(150), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(10), "{elapsed:?}");
    // A wake-up is consumed: the next idle frame sleeps again.
    app.world_mut().resource_mut::<WaitForNetwork>().max_wait = Duration::from_millis(100);
    let t0 = Instant::now();
    app.update();
    assert!(
        t0.elapsed() >= Duration::from_millis(80),
        "{:?}",
        t0.elapsed()
    );
}

/// How far ahead the test's system sets the frame's deadline (`None`: it sets none).
#[derive(Resource, Default)]
struct Ahead(Option<Duration>);

fn set_deadline(ahead: Res<Ahead>, mut wait: ResMut<WaitForNetwork>) {
    if let Some(d) = ahead.0 {
        // A later deadline too: the earliest wins.
        wait.wake_by(Instant::now() + d * 50);
        wait.wake_by(Instant::now() + d);
    }
}

#[test]
fn the_apps_deadline_ends_the_frames_wait_and_only_that_frames() {
    let server = Server::start();
    let (mut app, _) = joined_app(config(&server.url), LONG);
    app.init_resource::<Ahead>()
        .add_systems(Update, set_deadline);
    app.world_mut().resource_mut::<Ahead>().0 = Some(Duration::from_millis(30));
    // Each frame sleeps until its deadline: about 33 frames a second, not one (the 20 s bound)
    // and not thousands (no sleep).
    let frames = frames_in(&mut app, Duration::from_secs(1));
    assert!((5..=100).contains(&frames), "{frames} frames in a second");
    // No deadline set: the next frames sleep their bound again.
    app.world_mut().resource_mut::<Ahead>().0 = None;
    app.world_mut().resource_mut::<WaitForNetwork>().max_wait = Duration::from_millis(300);
    let t0 = Instant::now();
    for _ in 0..2 {
        app.update();
    }
    assert!(
        t0.elapsed() >= Duration::from_millis(550),
        "{:?}",
        t0.elapsed()
    );
    // A deadline already past: no sleep at all.
    app.world_mut().resource_mut::<Ahead>().0 = Some(Duration::ZERO);
    let t0 = Instant::now();
    for _ in 0..20 {
        app.update();
    }
    assert!(t0.elapsed() < Duration::from_secs(5), "{:?}", t0.elapsed());
}

#[test]
fn a_burst_bigger_than_the_read_budget_does_not_sleep_between_frames() {
    let server = Server::start();
    let cfg = config(&server.url).with_max_frames_per_update(5);
    let (mut app, channel) = joined_app(cfg, LONG);
    // The app wakes its wait only once, when the last tick arrives: until then, the frames
    // that end with unread ticks must not sleep.
    app.world_mut().resource_mut::<Seen>().quiet_until_ticks = Some(2_000);
    let t0 = Instant::now();
    push(
        &mut app,
        PushMessage::json(channel, "burst", &json!({"n": 2_000, "size": 10})).unwrap(),
    );
    // One frame sends the push (its wait ends with the first ticks); then the whole burst
    // lands in the socket buffers. tungstenite reads the socket 4 KiB (about 70 ticks) at a
    // time, so with 5 frames per update the last frames end with ticks left in its buffer and
    // none in the kernel's: only the transport knows they are there.
    app.update();
    std::thread::sleep(Duration::from_millis(500));
    let mut frames = 1;
    while app.world().resource::<Seen>().ticks < 2_000 {
        app.update();
        frames += 1;
        assert!(
            t0.elapsed() < Duration::from_secs(15),
            "a frame slept with ticks unread ({frames} frames)"
        );
    }
    // 2,000 ticks at 5 frames per update need at least 400 frames.
    assert!(frames >= 400, "{frames}");
}

#[test]
fn without_the_resource_frames_do_not_sleep() {
    let server = Server::start();
    let mut app = app(config(&server.url));
    let channel = join(&mut app, PhoenixChannel::new(unique("echo:wait-")));
    wait_joined(&mut app, channel);
    let t0 = Instant::now();
    for _ in 0..200 {
        app.update();
    }
    assert!(t0.elapsed() < Duration::from_secs(5), "{:?}", t0.elapsed());
}

#[test]
fn a_send_buffer_that_drains_wakes_the_loop() {
    let server = Server::start();
    let Some(local) = server.faulty("a_send_buffer_that_drains_wakes_the_loop") else {
        return;
    };
    // The send backlog bound (4 MiB by default) raised above the 18 MB written here: this test
    // is about the wake-up, the bound has its own tests (tests/plugin_backpressure.rs).
    let cfg = config(&server.url).with(|s| s.with_max_send_backlog(64 << 20));
    let (mut app, channel) = joined_app(cfg, LONG);
    let faults = local.faults();
    // The server stops reading: 300 pushes of 60 KB (18 MB) fill both kernel buffers, so the
    // frame's flush would block and the rest waits in the transport.
    faults.stop_reading(true);
    for _ in 0..300 {
        push(
            &mut app,
            PushMessage::binary(channel, "noreply", vec![7u8; 60_000]).fire_and_forget(),
        );
    }
    let h = push(
        &mut app,
        PushMessage::json(channel, "echo", &json!({"after": "the backlog"})).unwrap(),
    );
    let t0 = Instant::now();
    std::thread::scope(|s| {
        s.spawn(|| {
            std::thread::sleep(Duration::from_millis(300));
            faults.stop_reading(false);
        });
        // Only writability can end these waits: the echo's reply needs the whole backlog sent
        // first, and max_wait is 20 s.
        frames_until(&mut app, 15, "the echo after the backlog", |s| {
            reply_at(s, h).is_some()
        });
    });
    let waited = reply_at(app.world().resource::<Seen>(), h).unwrap() - t0;
    assert!(waited < Duration::from_secs(10), "{waited:?}");
    let r = log(&app).replies.iter().find(|r| r.handle == h).unwrap();
    assert!(matches!(r.outcome, PushOutcome::Ok(_)), "{:?}", r.outcome);
}
