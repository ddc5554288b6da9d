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

fn without_plugin(single: bool) -> App {
    let mut app = App::new();
    app.add_plugins(MinimalPlugins);
    app.finish();
    app.cleanup();
    if single {
        support::single_threaded(&mut app);
    }
    app
}

/// Mean time per update over `k` updates.
fn block(app: &mut App, k: u32) -> f64 {
    let t0 = Instant::now();
    for _ in 0..k {
        app.update();
    }
    t0.elapsed().as_secs_f64() * 1e6 / f64::from(k)
}

/// Median µs per update of (with, without) over alternating blocks.
fn timing(with: &mut App, without: &mut App, blocks: usize, k: u32) -> (f64, f64) {
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for _ in 0..blocks {
        a.push(block(with, k));
        b.push(block(without, k));
    }
    (support::median(&a), support::median(&b))
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
    let mut mt = (with_plugin(&server, false), without_plugin(false));
    let mut st = (with_plugin(&server, true), without_plugin(true));
    for app in [&mut mt.0, &mut mt.1, &mut st.0, &mut st.1] {
        for _ in 0..2_000 {
            app.update();
        }
    }
    let mut rows = Vec::new();
    for run in 0..support::runs() {
        let (a, b) = timing(&mut mt.0, &mut mt.1, blocks, k);
        let (c, d) = timing(&mut st.0, &mut st.1, blocks, k);
        let (st_with, _) = allocs(&mut st.0, alloc_k);
        let (st_without, _) = allocs(&mut st.1, alloc_k);
        let (mt_with, _) = allocs(&mut mt.0, alloc_k);
        let (mt_without, _) = allocs(&mut mt.1, alloc_k);
        eprintln!(
            "run {run}: multi-threaded {a:.2} vs {b:.2} µs, single-threaded {c:.2} vs {d:.2} µs; \
             allocs/frame st {st_with:.3} vs {st_without:.3}, mt (main thread) {mt_with:.3} vs {mt_without:.3}"
        );
        rows.push([a, b, c, d, st_with, st_without, mt_with, mt_without]);
    }
    // The sockets must still be up, or the frames were not idle frames of a connected socket.
    for app in [&mut mt.0, &mut st.0] {
        let world = app.world_mut();
        let mut q = world.query::<&SocketStatus>();
        assert!(q.iter(world).all(SocketStatus::is_connected));
        let mut q = world.query::<&ChannelStatus>();
        assert_eq!(
            q.iter(world)
                .filter(|s| s.0 == ChannelState::Joined)
                .count(),
            CHANNELS
        );
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
        "| executor | µs/update with plugin | without | plugin's share µs | allocs/frame with | without | plugin's allocs/frame |"
    );
    println!("|---|---|---|---|---|---|---|");
    println!(
        "| single-threaded (all on the calling thread) | {:.2} | {:.2} | {:.2} | {:.3} | {:.3} | {:.3} |",
        col(2),
        col(3),
        col(2) - col(3),
        col(4),
        col(5),
        col(4) - col(5)
    );
    println!(
        "| default multi-threaded | {:.2} | {:.2} | {:.2} | {:.3} (main thread only) | {:.3} | {:.3} |",
        col(0),
        col(1),
        col(0) - col(1),
        col(6),
        col(7),
        col(6) - col(7)
    );
    println!("allocation counts over {alloc_k} updates per app per run");
    println!("{}", support::machine_note());
}
