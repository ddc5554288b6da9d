//! Protocol core benchmarks (criterion). Numbers go into BENCHMARKS.md.
//!
//! `cargo bench --bench core`
//!
//! - `decode_route`: a typical V2 push frame through `Socket::handle_text` (decode, route to
//!   its channel, build the app event, and drop it) next to a bare `serde_json::from_str` of the
//!   same bytes into the borrowed tuple `(Option<&str>, Option<&str>, &str, &str, &RawValue)`.
//!   The owned `String` the socket is handed is made outside the timing (the transport makes
//!   it anyway); `string_clone` shows what that copy costs.
//! - `reply_routing`: routing one reply (decode, O(1) lookup by ref, outcome event) with 1k vs
//!   100k other pushes in flight.
#![allow(missing_docs, clippy::unwrap_used)]

use std::hint::black_box;
use std::time::Duration;

use bevy_phoenix_channels::protocol::*;
use criterion::{BatchSize, BenchmarkId, Criterion, criterion_group, criterion_main};
use serde_json::value::RawValue;
use web_time::Instant;

const FRAME: &str = r#"["1",null,"room:lobby","move",{"id":"player-17","x":123.5,"y":-48.25,"vx":1.5,"vy":0.0,"seq":123456,"t":1795687424.123}]"#;

/// A socket with `room:lobby` joined (join_ref "1").
fn joined_socket(now: Instant) -> (Socket, ChannelId) {
    let mut s = Socket::new(
        SocketConfig::new("ws://127.0.0.1:4000/socket")
            .with_push_timeout(Duration::from_secs(3600))
            .with_heartbeat(Duration::from_secs(3600)),
    );
    s.connect(now);
    s.handle_open(now);
    let ch = s.join(
        now,
        "room:lobby",
        OutPayload::empty(),
        JoinOptions::default(),
    );
    s.handle_text(
        now,
        r#"["1","1","room:lobby","phx_reply",{"status":"ok","response":{}}]"#.to_owned(),
    );
    while s.poll_output().is_some() {}
    while s.poll_event().is_some() {}
    (s, ch)
}

fn decode_route(c: &mut Criterion) {
    let now = Instant::now();
    let mut g = c.benchmark_group("decode_route");
    g.bench_function("bare_tuple_parse", |b| {
        b.iter(|| {
            let t: (Option<&str>, Option<&str>, &str, &str, &RawValue) =
                serde_json::from_str(black_box(FRAME)).unwrap();
            black_box(t);
        })
    });
    g.bench_function("string_clone", |b| {
        let owned = FRAME.to_owned();
        b.iter(|| black_box(owned.clone()))
    });
    g.bench_function("socket_handle_text", |b| {
        // The transport hands the socket an owned String per frame; making that copy is the
        // transport's cost (see string_clone), so it is done outside the timed part here.
        let (mut s, _) = joined_socket(now);
        b.iter_batched(
            || FRAME.to_owned(),
            |frame| {
                s.handle_text(now, frame);
                let ev = s.poll_event();
                debug_assert!(matches!(ev, Some(Event::Message(_))));
                // Dropped inside the timing: freeing the frame is part of the socket's work.
                drop(black_box(ev));
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

fn reply_routing(c: &mut Criterion) {
    let now = Instant::now();
    let mut g = c.benchmark_group("reply_routing");
    for in_flight in [1_000u64, 100_000] {
        g.bench_with_input(
            BenchmarkId::from_parameter(in_flight),
            &in_flight,
            |b, &n| {
                let (mut s, ch) = joined_socket(now);
                let payload = OutPayload::raw_json("{}").unwrap();
                for _ in 0..n {
                    let _ = s.push(now, ch, "echo", payload.clone(), PushOptions::default());
                }
                while s.poll_output().is_some() {}
                b.iter_custom(|iters| {
                // Per iteration: push one more (not timed), then time only the routing of its
                // reply, so in-flight stays n and the figure is the per-reply cost alone.
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let id = s.push(now, ch, "echo", payload.clone(), PushOptions::default()).0;
                    while s.poll_output().is_some() {}
                    let frame = format!(
                        r#"["1","{id}","room:lobby","phx_reply",{{"status":"ok","response":{{}}}}]"#
                    );
                    let t0 = std::time::Instant::now();
                    s.handle_text(now, frame);
                    let ev = s.poll_event();
                    total += t0.elapsed();
                    debug_assert!(matches!(ev, Some(Event::Reply(_))));
                    black_box(ev);
                }
                total
            });
                assert_eq!(s.pending_pushes() as u64, n);
            },
        );
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = decode_route, reply_routing
}
criterion_main!(benches);
