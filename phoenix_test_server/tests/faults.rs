//! Fault injection: every switch of `Faults`, and the idle timeout.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::ErrorKind;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::*;
use phoenix_test_server::{Refusal, TestServer};
use serde_json::json;
use tungstenite::Message;

fn joined_echo(server: &TestServer) -> Ws {
    let mut ws = connect(&server.url(), "vsn=2.0.0");
    send_json(&mut ws, json!(["1", "1", "echo:1", "phx_join", {}]));
    assert_eq!(recv_json(&mut ws)[4]["status"], "ok");
    ws
}

fn echo(ws: &mut Ws, r: u64) {
    send_json(ws, json!(["1", r.to_string(), "echo:1", "echo", {"n": r}]));
}

#[test]
fn drop_all_connections_with_close_frame_sends_1001() {
    let server = phoenix_test_server::start().unwrap();
    let mut a = joined_echo(&server);
    let mut b = joined_echo(&server);
    server.faults().drop_all_connections(true);
    for ws in [&mut a, &mut b] {
        match recv(ws) {
            Message::Close(Some(f)) => {
                assert_eq!(u16::from(f.code), 1001);
                assert_eq!(f.reason, "going away");
                let _ = ws.flush();
            }
            other => panic!("expected close, got {other:?}"),
        }
    }
    assert!(server.wait_for_open_connections(0, WAIT));
}

#[test]
fn drop_all_connections_without_close_frame_just_drops_tcp() {
    let server = phoenix_test_server::start().unwrap();
    let mut a = joined_echo(&server);
    server.faults().drop_all_connections(false);
    assert_eq!(read_close(&mut a, false), None, "no close frame expected");
    assert!(server.wait_for_open_connections(0, WAIT));
    // The server still accepts new connections.
    let _b = joined_echo(&server);
}

#[test]
fn refuse_with_http_403_until_allowed() {
    let server = phoenix_test_server::start().unwrap();
    server.faults().refuse_connections(Refusal::Http403, None);
    let url = format!("{}/websocket?vsn=2.0.0", server.url());
    assert_eq!(connect_with(&url, &[]).err().unwrap().status, 403);
    server.faults().allow_connections();
    assert!(connect_with(&url, &[]).is_ok());
    let log = server.connections();
    assert_eq!(log.len(), 2);
    assert!(!log[0].accepted && log[0].status == 403);
    assert!(log[1].accepted);
}

#[test]
fn refuse_with_http_403_for_a_while() {
    let server = phoenix_test_server::start().unwrap();
    server
        .faults()
        .refuse_connections(Refusal::Http403, Some(Duration::from_millis(300)));
    let url = format!("{}/websocket?vsn=2.0.0", server.url());
    assert_eq!(connect_with(&url, &[]).err().unwrap().status, 403);
    assert!(wait_until(WAIT, || connect_with(&url, &[]).is_ok()));
}

#[test]
fn tcp_refused_closes_the_port_and_rebinds_the_same_one() {
    let server = phoenix_test_server::start().unwrap();
    let mut existing = joined_echo(&server);
    let addr = server.addr();
    server
        .faults()
        .refuse_connections(Refusal::TcpRefused, None);
    let err = TcpStream::connect(addr).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ConnectionRefused);
    // Open connections are not affected.
    echo(&mut existing, 2);
    assert_eq!(recv_json(&mut existing)[4]["response"]["n"], 2);
    server.faults().allow_connections();
    assert_eq!(server.addr(), addr);
    let _again = joined_echo(&server);
}

#[test]
fn tcp_refused_for_a_while_then_listens_again() {
    let server = phoenix_test_server::start().unwrap();
    server
        .faults()
        .refuse_connections(Refusal::TcpRefused, Some(Duration::from_millis(300)));
    let t0 = Instant::now();
    assert!(TcpStream::connect(server.addr()).is_err());
    assert!(wait_until(WAIT, || TcpStream::connect(server.addr()).is_ok()));
    assert!(t0.elapsed() >= Duration::from_millis(250));
    let _ws = joined_echo(&server);
}

#[test]
fn heartbeats_can_go_unanswered() {
    let server = phoenix_test_server::start().unwrap();
    let mut ws = joined_echo(&server);
    server.faults().answer_heartbeats(false);
    send_json(&mut ws, json!([null, "hb1", "phoenix", "heartbeat", {}]));
    echo(&mut ws, 2);
    // Only the echo reply comes back.
    assert_eq!(recv_json(&mut ws)[1], "2");
    assert_silent(&mut ws, Duration::from_millis(100));
    server.faults().answer_heartbeats(true);
    send_json(&mut ws, json!([null, "hb2", "phoenix", "heartbeat", {}]));
    assert_eq!(
        recv_json(&mut ws),
        json!([null, "hb2", "phoenix", "phx_reply", {"response": {}, "status": "ok"}])
    );
}

#[test]
fn stop_reading_stalls_input_until_resumed() {
    let server = phoenix_test_server::start().unwrap();
    let mut ws = joined_echo(&server);
    let received = server.frames_received();
    server.faults().stop_reading(true);
    echo(&mut ws, 2);
    echo(&mut ws, 3);
    assert_silent(&mut ws, Duration::from_millis(200));
    assert_eq!(server.frames_received(), received);
    server.faults().stop_reading(false);
    assert_eq!(recv_json(&mut ws)[1], "2");
    assert_eq!(recv_json(&mut ws)[1], "3");
}

#[test]
fn delay_outgoing_delays_every_frame_in_order() {
    let server = phoenix_test_server::start().unwrap();
    let mut ws = joined_echo(&server);
    server.faults().delay_outgoing(Duration::from_millis(150));
    let t0 = Instant::now();
    echo(&mut ws, 2);
    echo(&mut ws, 3);
    assert_eq!(recv_json(&mut ws)[1], "2");
    assert_eq!(recv_json(&mut ws)[1], "3");
    assert!(t0.elapsed() >= Duration::from_millis(150));
    server.faults().delay_outgoing(Duration::ZERO);
    let t1 = Instant::now();
    echo(&mut ws, 4);
    assert_eq!(recv_json(&mut ws)[1], "4");
    assert!(t1.elapsed() < Duration::from_millis(150));
}

#[test]
fn drop_outgoing_discards_frames() {
    let server = phoenix_test_server::start().unwrap();
    let mut ws = joined_echo(&server);
    server.faults().drop_outgoing(true);
    echo(&mut ws, 2);
    assert_silent(&mut ws, Duration::from_millis(150));
    server.faults().drop_outgoing(false);
    echo(&mut ws, 3);
    assert_eq!(recv_json(&mut ws)[1], "3");
}

#[test]
fn close_after_frames_counts_frames_sent() {
    let server = phoenix_test_server::start().unwrap();
    let mut ws = joined_echo(&server);
    server.faults().close_after_frames(Some(2));
    for r in 2..5 {
        echo(&mut ws, r);
    }
    assert_eq!(recv_json(&mut ws)[1], "2");
    assert_eq!(recv_json(&mut ws)[1], "3");
    assert_eq!(read_close(&mut ws, false), Some(1000));
    // A new connection counts from its start: join reply + 1 frame, then close.
    let mut ws2 = joined_echo(&server);
    echo(&mut ws2, 2);
    assert_eq!(recv_json(&mut ws2)[1], "2");
    assert_eq!(read_close(&mut ws2, false), Some(1000));
    server.faults().close_after_frames(None);
    let mut ws3 = joined_echo(&server);
    for r in 2..6 {
        echo(&mut ws3, r);
        assert_eq!(recv_json(&mut ws3)[1], r.to_string());
    }
    // Some(0): every open connection closes now.
    server.faults().close_after_frames(Some(0));
    assert_eq!(read_close(&mut ws3, false), Some(1000));
}

#[test]
fn idle_timeout_closes_with_1002_and_any_frame_resets_it() {
    let server = TestServer::builder()
        .idle_timeout(Duration::from_millis(400))
        .start()
        .unwrap();
    let mut idle = connect(&server.url(), "vsn=2.0.0");
    let mut busy = connect(&server.url(), "vsn=2.0.0");
    let t0 = Instant::now();
    for i in 0..6 {
        send_json(
            &mut busy,
            json!([null, i.to_string(), "phoenix", "heartbeat", {}]),
        );
        assert_eq!(recv_json(&mut busy)[1], i.to_string());
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(read_close(&mut idle, false), Some(1002));
    assert!(t0.elapsed() >= Duration::from_millis(300));
    // busy has been alive for 600 ms thanks to its heartbeats.
    send_json(&mut busy, json!([null, "x", "phoenix", "heartbeat", {}]));
    assert_eq!(recv_json(&mut busy)[1], "x");
}

#[test]
fn slow_consumer_is_dropped_after_the_send_timeout() {
    let server = TestServer::builder()
        .send_timeout(Duration::from_millis(200))
        .start()
        .unwrap();
    let mut ws = joined_echo(&server);
    send_json(
        &mut ws,
        json!(["1", "2", "echo:1", "burst", {"n": 3000, "size": 10000}]),
    );
    // Not reading: the server's send blocks, then the TCP connection is dropped (no close frame).
    assert!(server.wait_for_open_connections(0, Duration::from_secs(10)));
    assert_eq!(read_close(&mut ws, true), None);
}

#[test]
fn dropping_the_server_is_quick_even_with_stuck_clients() {
    let server = phoenix_test_server::start().unwrap();
    let mut stuck = joined_echo(&server);
    send_json(
        &mut stuck,
        json!(["1", "2", "echo:1", "burst", {"n": 400, "size": 10000}]),
    );
    let _idle = joined_echo(&server);
    let _half = TcpStream::connect(server.addr()).unwrap(); // never sends a request
    server.faults().stop_reading(true);
    std::thread::sleep(Duration::from_millis(50));
    let t0 = Instant::now();
    drop(server);
    assert!(
        t0.elapsed() < Duration::from_secs(2),
        "drop took {:?}",
        t0.elapsed()
    );
}
