//! End-to-end idle frame: one socket with 32 channels joined on the test server, then nothing
//! happens. What do the plugin's systems cost per `app.update()`, and do they allocate?
//!
//! `cargo bench -p bevy_phoenix_channels --bench e2e_idle`
//!
//! Two apps side by side in one process: `MinimalPlugins` + the plugin (32 joined `echo:*`
//! channels), and `MinimalPlugins` alone. Time per update is measured in alternating blocks of
//! updates (A, B, A, B, …) and the medians are compared; the difference is the plugin's share.
//! Both with Bevy's default (multi-threaded) executor and with every schedule on the
//! single-threaded executor.
//!
//! Heap allocations per frame are counted with `allocation-counter`'s counting
//! `#[global_allocator]` (linked into this bench binary only). It counts the calling thread's
//! allocations, so the count is taken with every schedule on the single-threaded executor,
//! where all systems run on the calling thread; the default executor's count (main thread only)
//! is printed too.
#![allow(missing_docs, clippy::unwrap_used)]

#[path = "e2e_support/mod.rs"]
mod support;

use std::time::Instant;

use bevy::prelude::*;
use bevy_phoenix_channels::prelude::*;
use support::ServerProcess;

const CHANNELS: usize = 32;

fn with_plugin(server: &ServerProcess, single: bool) -> App {
    let mut app = support::plugin_app(&server.url);
    if single {
        support::single_threaded(&mut app);
    }
    let channels: Vec<Entity> = (0..CHANNELS)
        .map(|_| {
            app.world_mut()
                .spawn(PhoenixChannel::new(support::topic("idle")))
                .id()
        })
        .collect();
    support::pump_until(&mut app, 15, "32 channels joined", |w| {
        channels
            .iter()
            .all(|&e| w.get::<ChannelStatus>(e).map(|s| s.0) == Some(ChannelState::Joined))
    });
    app
}

/// `MinimalPlugins` alone; with `populated`, plus an empty system in `PreUpdate` and one in
/// `PostUpdate` (MinimalPlugins has none there, so without them Bevy skips those two schedules
/// and the plugin's systems are charged for running two more schedules).
fn without_plugin(single: bool, populated: bool) -> App {
    let mut app = App::new();
    app.add_plugins(MinimalPlugins);
    if populated {
        app.add_systems(PreUpdate, || {})
            .add_systems(PostUpdate, || {});
    }
    app.finish();
    app.cleanup();
    if single {
        support::single_threaded(&mut app);
    }
    app
}

/// Median µs per update of each app over alternating blocks (A, B, C, A, B, C, …).
fn timing(apps: [&mut App; 3], blocks: usize, k: u32) -> [f64; 3] {
    let mut t: [Vec<f64>; 3] = Default::default();
    let [a, b, c] = apps;
    for _ in 0..blocks {
        t[0].push(block(a, k));
        t[1].push(block(b, k));
        t[2].push(block(c, k));
    }
    t.map(|v| support::median(&v))
}

/// Mean time per update over `k` updates.
fn block(app: &mut App, k: u32) -> f64 {
    let t0 = Instant::now();
    for _ in 0..k {
        app.update();
    }
    t0.elapsed().as_secs_f64() * 1e6 / f64::from(k)
}

/// Allocations per update on the calling thread, over `k` updates.
fn allocs(app: &mut App, k: u32) -> (f64, f64) {
    let info = allocation_counter::measure(|| {
        for _ in 0..k {
            app.update();
        }
    });
    (
        info.count_total as f64 / f64::from(k),
        info.bytes_total as f64 / f64::from(k),
    )
}

fn main() {
    support::serve_if_child();
    let full = support::full();
    let (blocks, k, alloc_k) = if full {
        (21, 2_000, 50_000)
    } else {
        (3, 100, 1_000)
    };
    let server = ServerProcess::spawn();
    // (with plugin, without, without + 2 empty systems), per executor.
    let mut mt = (
        with_plugin(&server, false),
        without_plugin(false, false),
        without_plugin(false, true),
    );
    let mut st = (
        with_plugin(&server, true),
        without_plugin(true, false),
        without_plugin(true, true),
    );
    for app in [
        &mut mt.0, &mut mt.1, &mut mt.2, &mut st.0, &mut st.1, &mut st.2,
    ] {
        for _ in 0..2_000 {
            app.update();
        }
    }
    // For profiling (`perf record`): only run idle frames of one app for 5 s:
    // `BPC_E2E_PROFILE=st-with` (or st-without, st-populated, mt-with, mt-without, mt-populated).
    if let Ok(which) = std::env::var("BPC_E2E_PROFILE") {
        let app = match which.as_str() {
            "st-with" => &mut st.0,
            "st-without" => &mut st.1,
            "st-populated" => &mut st.2,
            "mt-with" => &mut mt.0,
            "mt-populated" => &mut mt.2,
            _ => &mut mt.1,
        };
        let (t0, mut frames) = (Instant::now(), 0u64);
        while t0.elapsed().as_secs() < 5 {
            app.update();
            frames += 1;
        }
        println!("{which}: {frames} frames in 5 s");
        return;
    }
    let mut rows = Vec::new();
    for run in 0..support::runs() {
        let [a, b, b2] = timing([&mut mt.0, &mut mt.1, &mut mt.2], blocks, k);
        let [c, d, d2] = timing([&mut st.0, &mut st.1, &mut st.2], blocks, k);
        let (st_with, _) = allocs(&mut st.0, alloc_k);
        let (st_without, _) = allocs(&mut st.1, alloc_k);
        let (st_pop, _) = allocs(&mut st.2, alloc_k);
        let (mt_with, _) = allocs(&mut mt.0, alloc_k);
        let (mt_without, _) = allocs(&mut mt.1, alloc_k);
        let (mt_pop, _) = allocs(&mut mt.2, alloc_k);
        eprintln!(
            "run {run} (with / without / without + 2 empty systems): µs/update multi-threaded \
             {a:.2} / {b:.2} / {b2:.2}, single-threaded {c:.2} / {d:.2} / {d2:.2}; allocs/frame \
             single-threaded {st_with:.3} / {st_without:.3} / {st_pop:.3}, multi-threaded (main \
             thread) {mt_with:.3} / {mt_without:.3} / {mt_pop:.3}"
        );
        rows.push([
            a, b, b2, c, d, d2, st_with, st_without, st_pop, mt_with, mt_without, mt_pop,
        ]);
    }
    // The sockets must still be up, or the frames were not idle frames of a connected socket.
    for app in [&mut mt.0, &mut st.0] {
        let world = app.world_mut();
        let mut q = world.query::<&SocketStatus>();
        assert!(q.iter(world).all(SocketStatus::is_connected));
        let mut q = world.query::<&ChannelStatus>();
        let joined = q
            .iter(world)
            .filter(|s| s.0 == ChannelState::Joined)
            .count();
        assert_eq!(joined, CHANNELS);
    }
    if !full {
        println!("e2e_idle smoke round ok");
        return;
    }
    let col = |i: usize| support::median(&rows.iter().map(|r| r[i]).collect::<Vec<_>>());
    println!(
        "\n### Idle frame: 1 socket, {CHANNELS} joined channels (medians of {} runs; each run: \
         median of {blocks} alternating blocks of {k} updates)\n",
        support::runs()
    );
    println!(
        "| executor | µs/update with plugin | without | plugin's share µs | without + 2 empty \
         systems | plugin's share vs that µs | allocs/frame with | without | without + 2 empty |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for (name, base, allocs_at, note) in [
        ("single-threaded (all on the calling thread)", 3, 6, ""),
        ("default multi-threaded", 0, 9, " (main thread only)"),
    ] {
        let (w, wo, pop) = (col(base), col(base + 1), col(base + 2));
        println!(
            "| {name} | {w:.2} | {wo:.2} | {:.2} | {pop:.2} | {:.2} | {:.3}{note} | {:.3} | {:.3} |",
            w - wo,
            w - pop,
            col(allocs_at),
            col(allocs_at + 1),
            col(allocs_at + 2)
        );
    }
    println!("allocation counts over {alloc_k} updates per app per run");
    println!("{}", support::machine_note());
}
