//! End-to-end pipelined pushes: n `echo` pushes sent without waiting, then every reply
//! received (replies/s from the first push to the last reply).
//!
//! `cargo bench -p bevy_phoenix_channels --bench e2e_pipeline`
//!
//! - raw: blocking tungstenite 0.24 (`TCP_NODELAY`): writes all n pushes (flushing at the end;
//!   tungstenite writes to the socket whenever its buffer fills), then reads frames, each parsed
//!   with serde_json into the borrowed tuple, until n replies have arrived. The test server queues
//!   its replies without bound, so this cannot deadlock;
//! - plugin: a system in `Update` writes the pushes as `PushMessage`s, `BATCH` per frame (so
//!   100k go out over a few frames, not in one), and counts `PushReplied` ok outcomes; the socket
//!   has a 600 s push timeout (default 10 s) so nothing times out. `max_buffered_pushes` (1024 per
//!   channel) does not apply: it only bounds pushes made before the channel has joined;
//! - phoenix.js 1.8.16: pushes in one loop, counts `receive("ok")`. Its reply dispatch scans
//!   every binding of the channel (one per push in flight), so it is quadratic: it runs at 10k
//!   and 20k, next to raw and plugin at the same sizes.
#![allow(missing_docs, clippy::unwrap_used)]

#[path = "e2e_support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use bevy::prelude::*;
use bevy_phoenix_channels::prelude::*;
use support::{Frame, Raw, ServerProcess};

#[derive(Clone, Copy, Debug)]
struct Sample {
    secs: f64,
    client_cpu: Duration,
    frames: u64,
}

fn raw(server: &ServerProcess, n: u64) -> Sample {
    let mut c = Raw::connect(server);
    c.join(&support::topic("raw-pipe"));
    let cpu0 = support::self_cpu();
    let t0 = Instant::now();
    for i in 0..n {
        c.write_push("echo", &format!(r#"{{"i":{i}}}"#));
    }
    c.flush();
    let mut replies = 0;
    while replies < n {
        let text = c.read_text();
        let f: Frame = serde_json::from_str(&text).unwrap();
        if f.3 == "phx_reply" {
            replies += 1;
        }
    }
    let s = Sample {
        secs: t0.elapsed().as_secs_f64(),
        client_cpu: support::self_cpu() - cpu0,
        frames: 0,
    };
    c.close();
    s
}

/// The push payload, `{"i":N}` (as the raw client's).
#[derive(serde::Serialize)]
struct Echo {
    i: u64,
}

#[derive(Resource)]
struct Pipe {
    channel: Entity,
    total: u64,
    batch: u64,
    sent: u64,
    ok: u64,
    start: Option<Instant>,
    done: Option<Instant>,
}

fn pipe_system(
    mut st: ResMut<Pipe>,
    mut replies: MessageReader<PushReplied>,
    mut out: MessageWriter<PushMessage>,
) {
    let mut ok = 0;
    for r in replies.read() {
        assert!(r.is_ok(), "echo failed: {:?}", r.outcome);
        ok += 1;
    }
    st.ok += ok;
    if st.ok == st.total && st.done.is_none() {
        st.done = Some(Instant::now());
    }
    if st.sent < st.total {
        if st.start.is_none() {
            st.start = Some(Instant::now());
        }
        let k = st.batch.min(st.total - st.sent);
        let (channel, first) = (st.channel, st.sent);
        out.write_batch(
            (first..first + k).map(|i| PushMessage::json(channel, "echo", &Echo { i }).unwrap()),
        );
        st.sent += k;
    }
}

fn plugin(server: &ServerProcess, n: u64, batch: u64, single: bool, wait: bool) -> Sample {
    let mut app = support::plugin_app(&server.url);
    let channel = support::join(&mut app, &support::topic("plugin-pipe"));
    app.insert_resource(Pipe {
        channel,
        total: n,
        batch,
        sent: 0,
        ok: 0,
        start: None,
        done: None,
    })
    .add_systems(Update, pipe_system);
    if single {
        support::single_threaded(&mut app);
    }
    if wait {
        support::wait_for_network(&mut app);
    }
    let cpu0 = support::self_cpu();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut frames = 0;
    let (start, done) = loop {
        app.update();
        frames += 1;
        let st = app.world().resource::<Pipe>();
        if let (Some(s), Some(d)) = (st.start, st.done) {
            break (s, d);
        }
        assert!(Instant::now() < deadline, "plugin pipeline timed out");
    };
    Sample {
        secs: (done - start).as_secs_f64(),
        client_cpu: support::self_cpu() - cpu0,
        frames,
    }
}

fn js(server: &ServerProcess, n: u64) -> Sample {
    let r = support::run_js(server, &["pipeline", &n.to_string()]);
    assert_eq!(r.n, n);
    Sample {
        secs: r.secs,
        client_cpu: Duration::from_secs_f64(r.cpu_us / 1e6),
        frames: 0,
    }
}

/// Plugin pushes written per frame.
const BATCH: u64 = 10_000;

fn main() {
    support::serve_if_child();
    let full = support::full();
    let sizes: &[u64] = if full {
        &[100_000, 10_000, 20_000]
    } else {
        &[1_000]
    };
    let server = ServerProcess::spawn();
    let with_js = support::js_available();
    let clients = [
        "raw tungstenite",
        "plugin, 10k pushes per frame",
        "plugin, all pushes in one frame",
        "phoenix.js",
        "plugin, 10k per frame, single-threaded executor",
        "plugin, 10k per frame + WaitForNetwork, single-threaded executor",
    ];
    // results[size][client] = samples
    let mut results = vec![vec![Vec::<Sample>::new(); clients.len()]; sizes.len()];
    for run in 0..support::runs() {
        for (si, &n) in sizes.iter().enumerate() {
            let big = n >= 100_000;
            if support::enabled("raw") {
                results[si][0].push(raw(&server, n));
            }
            if support::enabled("plugin") {
                results[si][1].push(plugin(&server, n, BATCH, false, false));
                // Same as the row above when n <= BATCH.
                if n > BATCH {
                    results[si][2].push(plugin(&server, n, n, false, false));
                }
                results[si][4].push(plugin(&server, n, BATCH, true, false));
                results[si][5].push(plugin(&server, n, BATCH, true, true));
            }
            // phoenix.js is quadratic: 10k and 20k only.
            if with_js && support::enabled("js") && !big {
                results[si][3].push(js(&server, n));
            }
            for (ci, v) in results[si].iter().enumerate() {
                if let Some(s) = v.last() {
                    eprintln!(
                        "run {run} n={n}: {}: {:.0} replies/s, {:.2} µs CPU/push, {} frames",
                        clients[ci],
                        n as f64 / s.secs,
                        s.client_cpu.as_secs_f64() * 1e6 / n as f64,
                        s.frames
                    );
                }
            }
        }
    }
    if !full {
        println!("e2e_pipeline smoke round ok");
        return;
    }
    println!(
        "\n### Pipelined pushes → all replies (medians of {} runs)\n",
        support::runs()
    );
    println!("| n | client | replies/s | × raw | client CPU µs/push | × raw | frames |");
    println!("|---|---|---|---|---|---|---|");
    for (si, &n) in sizes.iter().enumerate() {
        let rate = |v: &[Sample]| {
            support::median(&v.iter().map(|s| n as f64 / s.secs).collect::<Vec<_>>())
        };
        let cpu = |v: &[Sample]| {
            support::median(
                &v.iter()
                    .map(|s| s.client_cpu.as_secs_f64() * 1e6 / n as f64)
                    .collect::<Vec<_>>(),
            )
        };
        let (rr, rc) = (rate(&results[si][0]), cpu(&results[si][0]));
        for (ci, v) in results[si].iter().enumerate() {
            if v.is_empty() {
                continue;
            }
            let frames = support::median(&v.iter().map(|s| s.frames as f64).collect::<Vec<_>>());
            println!(
                "| {n} | {} | {:.0} | {} | {:.2} | {} | {} |",
                clients[ci],
                rate(v),
                support::ratio(rate(v), rr),
                cpu(v),
                support::ratio(cpu(v), rc),
                if frames > 0.0 {
                    format!("{frames:.0}")
                } else {
                    String::new()
                }
            );
        }
    }
    println!("all runs (replies/s):");
    for (si, &n) in sizes.iter().enumerate() {
        for (ci, v) in results[si].iter().enumerate() {
            let all: Vec<String> = v
                .iter()
                .map(|s| format!("{:.0}", n as f64 / s.secs))
                .collect();
            if !all.is_empty() {
                println!("  n={n} {}: {}", clients[ci], all.join(", "));
            }
        }
    }
    println!("{}", support::machine_note());
}
