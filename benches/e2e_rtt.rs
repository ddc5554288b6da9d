//! End-to-end push → reply round trip: sequential `echo` pushes with a small payload, one in
//! flight at a time, p50/p99 latency over 5k round trips (after 500 untimed ones).
//!
//! `cargo bench -p bevy_phoenix_channels --bench e2e_rtt`
//!
//! - raw: blocking tungstenite 0.24 (`TCP_NODELAY`): write + flush the push, read frames (each
//!   parsed with serde_json into the borrowed tuple) until the reply with its ref;
//! - plugin: a system in `Update` writes a `PushMessage` (it leaves in that frame's `PostUpdate`)
//!   and, in a later frame, reads its `PushReplied` and writes the next push at once; the app runs
//!   `app.update()` in an uncapped loop. Latency is from the write in `Update` to the read in
//!   `Update`;
//! - phoenix.js 1.8.16 on node with `ws`: `push(..).receive("ok", next)`.
#![allow(missing_docs, clippy::unwrap_used)]

#[path = "e2e_support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use bevy::prelude::*;
use bevy_phoenix_channels::prelude::*;
use support::{Frame, Raw, ServerProcess};

const WARMUP: usize = 500;

#[derive(Debug)]
struct Sample {
    /// Sorted latencies.
    lat: Vec<Duration>,
    secs: f64,
    client_cpu: Duration,
    frames: u64,
}

impl Sample {
    fn p(&self, p: f64) -> f64 {
        support::percentile(&self.lat, p).as_secs_f64() * 1e6
    }
}

fn raw(server: &ServerProcess, n: usize) -> Sample {
    let mut c = Raw::connect(server);
    c.join(&support::topic("raw-rtt"));
    let mut lat = Vec::with_capacity(n);
    let mut cpu0 = support::self_cpu();
    let mut t_start = Instant::now();
    for i in 0..WARMUP + n {
        if i == WARMUP {
            cpu0 = support::self_cpu();
            t_start = Instant::now();
        }
        let t0 = Instant::now();
        let r = c
            .write_push("echo", &format!(r#"{{"i":{i},"body":"hello"}}"#))
            .to_string();
        c.flush();
        loop {
            let text = c.read_text();
            let f: Frame = serde_json::from_str(&text).unwrap();
            if f.3 == "phx_reply" && f.1 == Some(r.as_str()) {
                break;
            }
        }
        if i >= WARMUP {
            lat.push(t0.elapsed());
        }
    }
    let secs = t_start.elapsed().as_secs_f64();
    let client_cpu = support::self_cpu() - cpu0;
    c.close();
    lat.sort();
    Sample {
        lat,
        secs,
        client_cpu,
        frames: 0,
    }
}

/// The push payload, `{"i":N,"body":"hello"}` (as the raw client's).
#[derive(serde::Serialize)]
struct Echo {
    i: usize,
    body: &'static str,
}

#[derive(Resource)]
struct Rtt {
    channel: Entity,
    total: usize,
    sent: usize,
    pending: Option<(PushHandle, Instant)>,
    lat: Vec<Duration>,
    started: Option<(Instant, Duration)>,
    finished: Option<Instant>,
}

fn rtt_system(
    mut st: ResMut<Rtt>,
    mut replies: MessageReader<PushReplied>,
    mut out: MessageWriter<PushMessage>,
) {
    for r in replies.read() {
        if let Some((h, t0)) = st.pending
            && r.handle == h
        {
            assert!(r.is_ok(), "echo failed: {:?}", r.outcome);
            let d = t0.elapsed();
            if st.sent > WARMUP {
                st.lat.push(d);
                if st.sent == st.total {
                    // Stamped here: with WaitForNetwork, this frame still sleeps in `Last`.
                    st.finished = Some(Instant::now());
                }
            }
            st.pending = None;
        }
    }
    if st.pending.is_none() && st.sent < st.total {
        if st.sent == WARMUP {
            st.started = Some((Instant::now(), support::self_cpu()));
        }
        let i = st.sent;
        let msg = PushMessage::json(st.channel, "echo", &Echo { i, body: "hello" }).unwrap();
        st.pending = Some((msg.handle, Instant::now()));
        st.sent += 1;
        out.write(msg);
    }
}

fn plugin(server: &ServerProcess, n: usize, single: bool, wait: bool, ewebsock: bool) -> Sample {
    let mut app = support::plugin_app_on(&server.url, ewebsock);
    let channel = support::join(&mut app, &support::topic("plugin-rtt"));
    app.insert_resource(Rtt {
        channel,
        total: WARMUP + n,
        sent: 0,
        pending: None,
        lat: Vec::with_capacity(n),
        started: None,
        finished: None,
    })
    .add_systems(Update, rtt_system);
    if single {
        support::single_threaded(&mut app);
    }
    if wait {
        support::wait_for_network(&mut app);
    }
    // ewebsock's round trip is about 16 ms (its read timeout): 5,500 of them take 90 s.
    let limit = if ewebsock { 600 } else { 60 };
    let deadline = Instant::now() + Duration::from_secs(limit);
    let mut frames = 0;
    loop {
        app.update();
        let st = app.world().resource::<Rtt>();
        if st.started.is_some() {
            frames += 1;
        }
        if st.lat.len() == n {
            break;
        }
        assert!(Instant::now() < deadline, "plugin rtt timed out");
    }
    let cpu1 = support::self_cpu();
    let mut st = app.world_mut().resource_mut::<Rtt>();
    let (t_start, cpu0) = st.started.unwrap();
    let t_end = st.finished.unwrap();
    let mut lat = std::mem::take(&mut st.lat);
    lat.sort();
    Sample {
        lat,
        secs: (t_end - t_start).as_secs_f64(),
        client_cpu: cpu1 - cpu0,
        frames,
    }
}

/// Median µs per `app.update()` of `MinimalPlugins` with one empty system in `Update` (the
/// shape of `rtt_system`) and no plugin: a frame-driven client's round trip cannot be shorter.
fn bare_frame(single: bool) -> f64 {
    fn nothing(_: Res<Time<Real>>) {}
    let mut app = App::new();
    app.add_plugins(MinimalPlugins).add_systems(Update, nothing);
    app.finish();
    app.cleanup();
    if single {
        support::single_threaded(&mut app);
    }
    for _ in 0..500 {
        app.update();
    }
    let mut blocks = Vec::new();
    for _ in 0..9 {
        let t = Instant::now();
        for _ in 0..1_000 {
            app.update();
        }
        blocks.push(t.elapsed().as_secs_f64() * 1e6 / 1_000.0);
    }
    support::median(&blocks)
}

fn js(server: &ServerProcess, n: usize) -> Sample {
    let r = support::run_js(server, &["rtt", &n.to_string()]);
    let mut lat: Vec<Duration> = r
        .lat_ns
        .iter()
        .map(|&ns| Duration::from_nanos(ns))
        .collect();
    lat.sort();
    Sample {
        lat,
        secs: r.secs,
        client_cpu: Duration::from_secs_f64(r.cpu_us / 1e6),
        frames: 0,
    }
}

fn main() {
    support::serve_if_child();
    let full = support::full();
    let n: usize = if full { 5_000 } else { 100 };
    let server = ServerProcess::spawn();
    let with_js = support::js_available();
    let mut results: Vec<(&str, Vec<Sample>)> = support::empty_rows();
    for run in 0..support::runs() {
        if support::enabled("raw") {
            results[0].1.push(raw(&server, n));
        }
        if support::enabled("plugin") {
            for (i, single, wait, ewebsock) in support::plugin_rows() {
                results[i]
                    .1
                    .push(plugin(&server, n, single, wait, ewebsock));
                support::settle(ewebsock);
            }
        }
        if with_js && support::enabled("js") {
            results[2].1.push(js(&server, n));
        }
        for (name, v) in &results {
            if let Some(s) = v.last() {
                eprintln!(
                    "run {run}: {name}: p50 {:.1} µs, p99 {:.1} µs, {:.0}/s",
                    s.p(50.0),
                    s.p(99.0),
                    n as f64 / s.secs
                );
            }
        }
    }
    if !full {
        println!("e2e_rtt smoke round ok");
        return;
    }
    let med = |v: &[Sample], f: &dyn Fn(&Sample) -> f64| {
        support::median(&v.iter().map(f).collect::<Vec<_>>())
    };
    let p50 = |s: &Sample| s.p(50.0);
    let p99 = |s: &Sample| s.p(99.0);
    let rate = |s: &Sample| n as f64 / s.secs;
    let cpu = |s: &Sample| s.client_cpu.as_secs_f64() * 1e6 / n as f64;
    let raw50 = med(&results[0].1, &p50);
    let raw99 = med(&results[0].1, &p99);
    println!(
        "\n### Push → reply round trip: {n} sequential echo pushes (medians of {} runs)\n",
        support::runs()
    );
    println!(
        "| client | p50 µs | × raw | p99 µs | × raw | round trips/s | client CPU µs/round trip |"
    );
    println!("|---|---|---|---|---|---|---|");
    for (name, v) in &results {
        if v.is_empty() {
            println!("| {name} | skipped | | | | | |");
            continue;
        }
        let (a, b) = (med(v, &p50), med(v, &p99));
        println!(
            "| {name} | {a:.1} | {} | {b:.1} | {} | {:.0} | {:.1} |",
            support::ratio(a, raw50),
            support::ratio(b, raw99),
            med(v, &rate),
            med(v, &cpu)
        );
    }
    for (e, b) in support::EWEBSOCK_PAIRS {
        let (ev, bv) = (&results[e].1, &results[b].1);
        if ev.is_empty() || bv.is_empty() {
            continue;
        }
        println!(
            "\n{} ÷ {}: p50 {}, p99 {}, round trips/s {}, client CPU {}",
            results[e].0,
            results[b].0,
            support::ratio(med(ev, &p50), med(bv, &p50)),
            support::ratio(med(ev, &p99), med(bv, &p99)),
            support::ratio(med(ev, &rate), med(bv, &rate)),
            support::ratio(med(ev, &cpu), med(bv, &cpu)),
        );
    }
    for (i, ..) in support::plugin_rows() {
        let frames = med(&results[i].1, &|s: &Sample| s.frames as f64 / n as f64);
        println!(
            "\n{}: median {frames:.2} app.update() calls per round trip (uncapped loop)",
            results[i].0
        );
    }
    let (bare, bare_single) = (bare_frame(false), bare_frame(true));
    println!(
        "\nfloor: one app.update() of MinimalPlugins + one empty Update system, no plugin: \
         {bare:.1} µs (default executor), {bare_single:.1} µs (single-threaded executor)"
    );
    println!("all runs (p50 / p99 µs):");
    for (name, v) in &results {
        let all: Vec<String> = v
            .iter()
            .map(|s| format!("{:.1} / {:.1}", s.p(50.0), s.p(99.0)))
            .collect();
        println!("  {name}: {}", all.join(", "));
    }
    println!("{}", support::machine_note());
}
