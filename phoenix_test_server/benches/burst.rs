//! Server push throughput: `burst` (100-byte pads) to one connection on loopback, read by a
//! minimal raw tungstenite client that only counts frames.
//!
//! `cargo bench -p phoenix_test_server --bench burst` runs 200k ticks x 3 and prints the median as
//! `server burst: N frames/s`, then 20k sequential echo round trips (`server echo: ...`); without
//! `--bench` (cargo test) it runs a small smoke round.
#![allow(clippy::unwrap_used)]

use std::net::TcpStream;
use std::time::Instant;

use tungstenite::Message;

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let (n, runs) = if full { (200_000u64, 3) } else { (2_000, 1) };
    let server = phoenix_test_server::start().unwrap();
    let url = format!("{}/websocket?vsn=2.0.0", server.url());
    let stream = TcpStream::connect(server.addr()).unwrap();
    stream.set_nodelay(true).unwrap();
    let (mut ws, _) = tungstenite::client::client(url.as_str(), stream).unwrap();
    ws.send(Message::Text(
        r#"["1","1","echo:bench","phx_join",{}]"#.into(),
    ))
    .unwrap();
    ws.read().unwrap();
    let mut rates = Vec::new();
    let mut bytes = 0;
    for run in 0..runs {
        let reply_prefix = format!(r#"["1","r{run}""#);
        let t0 = Instant::now();
        ws.send(Message::Text(format!(
            r#"["1","r{run}","echo:bench","burst",{{"n":{n},"size":100}}]"#
        )))
        .unwrap();
        let mut ticks = 0u64;
        loop {
            match ws.read().unwrap() {
                Message::Text(t) if t.starts_with(&reply_prefix) => break,
                Message::Text(t) => {
                    bytes = t.len();
                    ticks += 1;
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        let secs = t0.elapsed().as_secs_f64();
        assert_eq!(ticks, n);
        rates.push(n as f64 / secs);
    }
    rates.sort_by(|a, b| a.total_cmp(b));
    let median = rates[rates.len() / 2];
    println!("server burst: {median:.0} frames/s ({n} frames of {bytes} B, median of {runs})");

    let trips = if full { 20_000 } else { 200 };
    let mut rtts = Vec::with_capacity(trips);
    let t0 = Instant::now();
    for i in 0..trips {
        let t = Instant::now();
        ws.send(Message::Text(format!(
            r#"["1","e{i}","echo:bench","echo",{{"i":{i}}}]"#
        )))
        .unwrap();
        match ws.read().unwrap() {
            Message::Text(_) => rtts.push(t.elapsed()),
            other => panic!("unexpected {other:?}"),
        }
    }
    let per_sec = trips as f64 / t0.elapsed().as_secs_f64();
    rtts.sort();
    let p = |q: f64| rtts[((rtts.len() - 1) as f64 * q) as usize].as_micros();
    println!(
        "server echo: {per_sec:.0} round trips/s, p50 {} us, p99 {} us",
        p(0.5),
        p(0.99)
    );
}
