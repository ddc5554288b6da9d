//! Transport conformance, natively, against real sockets on 127.0.0.1: a tiny tungstenite server
//! runs inside the test (one thread per connection). Poll loops with deadlines, no sleeps for
//! correctness.
//!
//! Every conformance test is a function of a [`Kind`] (a connector plus what it is known not to
//! do), run once per transport by [`conformance!`]: module `builtin` (the default transport) and,
//! with `--features ewebsock`, module `ewebsock`. Where a transport cannot keep a promise of
//! `PhoenixTransport` (ewebsock reports no close codes, for example), the test asserts what it
//! does instead, so a change either way shows.
// `result_large_err`: the handshake callback signature is tungstenite's.
#![allow(clippy::unwrap_used, clippy::result_large_err, missing_docs)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use bevy_phoenix_channels::protocol::Transmit;
use bevy_phoenix_channels::transport::{
    BuiltinConnector, CloseInfo, ConnectRequest, Headers, NetworkWaker, PhoenixConnector,
    PhoenixTransport, Transport, TransportError, TransportEvent,
};
use tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tungstenite::protocol::CloseFrame;
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::{Message, WebSocket};

const WAIT: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------- server side

/// Listens on 127.0.0.1 and runs `handler` on its own thread for each accepted connection.
fn serve(handler: impl Fn(TcpStream) + Send + Sync + 'static) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let handler = Arc::new(handler);
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let handler = handler.clone();
            thread::spawn(move || handler(stream));
        }
    });
    port
}

fn url(port: u16) -> String {
    format!("ws://127.0.0.1:{port}/socket/websocket?vsn=2.0.0")
}

/// Echoes text and binary messages until the connection ends.
fn echo_loop<S: Read + Write>(mut ws: WebSocket<S>) {
    loop {
        match ws.read() {
            Ok(m @ (Message::Text(_) | Message::Binary(_))) => {
                if ws.send(m).is_err() {
                    return;
                }
            }
            Ok(_) => {}
            Err(_) => return,
        }
    }
}

/// Accepts the upgrade, answering the offered subprotocol "phoenix" if present.
fn accept(stream: TcpStream) -> Option<WebSocket<TcpStream>> {
    tungstenite::accept_hdr(stream, |req: &Request, mut resp: Response| {
        if let Some(offer) = req.headers().get("Sec-WebSocket-Protocol") {
            let offer = offer.to_str().unwrap();
            if offer.split(',').any(|p| p.trim() == "phoenix") {
                resp.headers_mut()
                    .insert("Sec-WebSocket-Protocol", "phoenix".parse().unwrap());
            }
        }
        Ok(resp)
    })
    .ok()
}

fn echo_server() -> u16 {
    serve(|s| {
        if let Some(ws) = accept(s) {
            echo_loop(ws)
        }
    })
}

// ---------------------------------------------------------------- client side

/// A transport under test and what it is known not to do (each `false` is asserted as such).
#[derive(Clone, Copy)]
struct Kind {
    connector: fn() -> Box<dyn PhoenixConnector>,
    /// Reports the peer's close code and reason, and sends 1000 / 1009 when it closes.
    close_codes: bool,
    /// Reports the subprotocol the server picked in `Opened`.
    reports_protocol: bool,
    /// Accepts a server that picks any offered subprotocol, not only the first (ewebsock's
    /// tungstenite 0.24 rejects the others; Phoenix picks the first, "phoenix", so Phoenix
    /// sockets are not affected).
    any_offered_protocol: bool,
    /// Error texts say why (ewebsock's "URL error: Unable to connect" hides "refused").
    error_details: bool,
}

const BUILTIN: Kind = Kind {
    connector: || Box::new(BuiltinConnector),
    close_codes: true,
    reports_protocol: true,
    any_offered_protocol: true,
    error_details: true,
};

type Conn = Box<dyn PhoenixTransport>;

impl Kind {
    fn connect(&self, req: ConnectRequest) -> Conn {
        (self.connector)().connect(req, &NetworkWaker::none())
    }

    fn open_with(&self, req: ConnectRequest) -> Conn {
        let mut t = self.connect(req);
        match next_event(&mut t, WAIT) {
            TransportEvent::Opened { .. } => {}
            other => panic!("expected Opened, got {other:?}"),
        }
        assert!(t.is_open());
        t
    }

    fn open(&self, url: String) -> Conn {
        self.open_with(request(url))
    }

    /// The close code a test expects: `code` from a transport that reports codes, else `None`.
    fn code(&self, code: u16) -> Option<u16> {
        self.close_codes.then_some(code)
    }
}

fn request(url: String) -> ConnectRequest {
    ConnectRequest {
        connect_timeout: Duration::from_secs(5),
        ..ConnectRequest::new(url)
    }
}

/// Polls (and flushes) until an event arrives; panics after `within`.
fn next_event(t: &mut Conn, within: Duration) -> TransportEvent {
    let end = Instant::now() + within;
    loop {
        if let Some(e) = t.poll() {
            return e;
        }
        assert!(Instant::now() < end, "no event within {within:?}");
        t.flush();
        // Only to leave the core to the server thread; correctness never depends on it.
        thread::sleep(Duration::from_micros(20));
    }
}

/// After the terminal event: nothing more, ever, and sends are refused.
fn assert_silent_forever(t: &mut Conn) {
    for _ in 0..1000 {
        assert_eq!(t.poll(), None);
        t.flush();
    }
    assert!(!t.is_open());
    assert!(t.send(Transmit::Text("late".into())).is_err());
    assert_eq!(t.poll(), None);
}

fn text_of(i: usize) -> String {
    format!("t{i}:{}", "x".repeat(i % 37))
}

fn binary_of(i: usize) -> Vec<u8> {
    let len = if i % 100 == 1 { 64 * 1024 } else { 8 + i % 29 };
    let mut b = vec![(i % 251) as u8; len];
    b[..8].copy_from_slice(&(i as u64).to_le_bytes());
    b
}

fn transmit_of(i: usize) -> Transmit {
    if i.is_multiple_of(2) {
        Transmit::Text(text_of(i))
    } else {
        Transmit::Binary(binary_of(i))
    }
}

/// Sends `n` interleaved text/binary frames (some of 64 KiB) and checks the echoes, in order.
fn interleaved_echo(t: &mut Conn, n: usize) {
    for i in 0..n {
        t.send(transmit_of(i)).unwrap();
        if i % 500 == 0 {
            t.flush();
        }
    }
    t.flush();
    for i in 0..n {
        match next_event(t, Duration::from_secs(60)) {
            TransportEvent::Text(s) => {
                assert_eq!(i % 2, 0, "text frame where binary #{i} was expected");
                assert_eq!(s, text_of(i));
            }
            TransportEvent::Binary(b) => {
                assert_eq!(i % 2, 1, "binary frame where text #{i} was expected");
                assert_eq!(b, binary_of(i));
            }
            other => panic!("unexpected {other:?} at #{i}"),
        }
    }
}

// ---------------------------------------------------------------- tests

#[test]
fn transport_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<Transport>();
}

fn open_and_echo_text(k: Kind) {
    let port = echo_server();
    let mut t = k.open(url(port));
    t.send(Transmit::Text("hello".into())).unwrap();
    t.flush();
    assert_eq!(
        next_event(&mut t, WAIT),
        TransportEvent::Text("hello".into())
    );
    let stats = t.stats();
    assert_eq!((stats.messages_out, stats.bytes_out), (1, 5));
    assert_eq!((stats.messages_in, stats.bytes_in), (1, 5));
}

fn echo_binary(k: Kind) {
    let port = echo_server();
    let mut t = k.open(url(port));
    let payload: Vec<u8> = (0..=255).collect();
    t.send(Transmit::Binary(payload.clone())).unwrap();
    t.flush();
    assert_eq!(next_event(&mut t, WAIT), TransportEvent::Binary(payload));
}

fn interleaved_text_and_binary_keep_order_over_10k_messages(k: Kind) {
    let port = echo_server();
    let mut t = k.open(url(port));
    interleaved_echo(&mut t, 10_000);
}

fn server_to_client_interleaved_burst_keeps_order(k: Kind) {
    // The server writes 10k interleaved frames on its own (no echo), as fast as it can.
    let port = serve(|s| {
        let Some(mut ws) = accept(s) else { return };
        for i in 0..10_000 {
            let m = if i % 2 == 0 {
                Message::text(text_of(i))
            } else {
                Message::binary(binary_of(i))
            };
            ws.write(m).unwrap();
        }
        ws.flush().unwrap();
        echo_loop(ws);
    });
    let mut t = k.open(url(port));
    for i in 0..10_000 {
        let expected = match transmit_of(i) {
            Transmit::Text(s) => TransportEvent::Text(s.into()),
            Transmit::Binary(b) => TransportEvent::Binary(b),
        };
        assert_eq!(next_event(&mut t, WAIT), expected, "frame #{i}");
    }
}

fn pipelined_100k_small_messages_arrive_complete_and_in_order(k: Kind) {
    let port = echo_server();
    let mut t = k.open(url(port));
    const N: usize = 100_000;
    for i in 0..N {
        t.send(Transmit::Text(format!("m{i}"))).unwrap();
    }
    t.flush();
    for i in 0..N {
        match next_event(&mut t, Duration::from_secs(60)) {
            TransportEvent::Text(s) => assert_eq!(s, format!("m{i}")),
            other => panic!("unexpected {other:?} at #{i}"),
        }
    }
    let stats = t.stats();
    assert_eq!(stats.messages_out, N as u64);
    assert_eq!(stats.messages_in, N as u64);
    assert_eq!(stats.bytes_in, stats.bytes_out);
}

fn frames_sent_before_open_are_queued_in_order(k: Kind) {
    let port = echo_server();
    let mut t = k.connect(request(url(port)));
    assert!(!t.is_open());
    t.send(Transmit::Text("early".into())).unwrap();
    t.send(Transmit::Binary(vec![1, 2, 3])).unwrap();
    t.send(Transmit::Text("early 2".into())).unwrap();
    t.flush();
    assert!(matches!(
        next_event(&mut t, WAIT),
        TransportEvent::Opened { .. }
    ));
    assert_eq!(
        next_event(&mut t, WAIT),
        TransportEvent::Text("early".into())
    );
    assert_eq!(
        next_event(&mut t, WAIT),
        TransportEvent::Binary(vec![1, 2, 3])
    );
    assert_eq!(
        next_event(&mut t, WAIT),
        TransportEvent::Text("early 2".into())
    );
}

fn subprotocol_offered_and_answered(k: Kind) {
    let port = echo_server();
    // Phoenix's case: the server picks the first subprotocol offered.
    let mut t = k.connect(ConnectRequest {
        subprotocols: vec!["phoenix".into(), "other".into()],
        ..request(url(port))
    });
    // ewebsock offers the subprotocols (the server only answers one it was offered) but does
    // not say which one the server picked.
    let picked = k.reports_protocol.then(|| "phoenix".to_owned());
    assert_eq!(
        next_event(&mut t, WAIT),
        TransportEvent::Opened {
            protocol: picked.clone()
        }
    );
    t.send(Transmit::Text("with protocol".into())).unwrap();
    t.flush();
    assert_eq!(
        next_event(&mut t, WAIT),
        TransportEvent::Text("with protocol".into())
    );

    // The server picks the second one offered.
    let mut second = k.connect(ConnectRequest {
        subprotocols: vec!["other".into(), "phoenix".into()],
        ..request(url(port))
    });
    match next_event(&mut second, WAIT) {
        TransportEvent::Opened { protocol } if k.any_offered_protocol => {
            assert_eq!(protocol, picked)
        }
        TransportEvent::Failed(TransportError::Connect(msg)) if !k.any_offered_protocol => {
            assert!(msg.contains("subprotocol"), "{msg}")
        }
        other => panic!("unexpected {other:?}"),
    }

    let mut plain = k.connect(request(url(port)));
    assert_eq!(
        next_event(&mut plain, WAIT),
        TransportEvent::Opened { protocol: None }
    );
}

fn extra_headers_are_sent_with_the_upgrade(k: Kind) {
    let (tx, rx) = mpsc::channel::<Vec<(String, String)>>();
    let tx = std::sync::Mutex::new(tx);
    let port = serve(move |s| {
        let tx = tx.lock().unwrap().clone();
        let ws = tungstenite::accept_hdr(s, move |req: &Request, resp: Response| {
            let seen: Vec<(String, String)> = req
                .headers()
                .iter()
                .map(|(n, v)| (n.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
                .collect();
            let _ = tx.send(seen);
            Ok(resp)
        });
        if let Ok(ws) = ws {
            echo_loop(ws);
        }
    });
    let mut t = k.open_with(ConnectRequest {
        headers: Headers(vec![
            ("X-Game-Build".into(), "1.2.3".into()),
            ("Authorization".into(), "Bearer s3cret".into()),
        ]),
        ..request(url(port))
    });
    let seen = rx.recv_timeout(WAIT).unwrap();
    let get = |name: &str| {
        seen.iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    };
    assert_eq!(get("x-game-build"), Some("1.2.3"), "{seen:?}");
    assert_eq!(get("authorization"), Some("Bearer s3cret"), "{seen:?}");
    // The standard ones are there once, not doubled by the extra ones.
    assert_eq!(
        seen.iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case("sec-websocket-key"))
            .count(),
        1
    );
    t.send(Transmit::Text("with headers".into())).unwrap();
    t.flush();
    assert_eq!(
        next_event(&mut t, WAIT),
        TransportEvent::Text("with headers".into())
    );
    // Their values never show in a Debug output.
    let dbg = format!(
        "{:?}",
        ConnectRequest {
            headers: Headers(vec![("Authorization".into(), "Bearer s3cret".into())]),
            ..ConnectRequest::new("ws://h/socket")
        }
    );
    assert!(
        !dbg.contains("s3cret") && dbg.contains("Authorization"),
        "{dbg}"
    );
}

fn http_403_on_upgrade_is_refused(k: Kind) {
    let port = serve(|s| {
        let _ = tungstenite::accept_hdr(s, |_: &Request, _: Response| {
            let mut denied = ErrorResponse::new(Some("forbidden".into()));
            *denied.status_mut() = tungstenite::http::StatusCode::FORBIDDEN;
            Err(denied)
        });
    });
    let mut t = k.connect(request(url(port)));
    assert_eq!(
        next_event(&mut t, WAIT),
        TransportEvent::Failed(TransportError::Refused { status: 403 })
    );
    assert_silent_forever(&mut t);
}

fn connection_refused_fails_quickly(k: Kind) {
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let start = Instant::now();
    let mut t = k.connect(request(url(port)));
    match next_event(&mut t, WAIT) {
        TransportEvent::Failed(TransportError::Connect(msg)) => {
            // ewebsock: "URL error: Unable to connect to ws://…", without the cause.
            assert_eq!(msg.contains("refused"), k.error_details, "{msg}")
        }
        other => panic!("expected Failed(Connect), got {other:?}"),
    }
    assert!(start.elapsed() < Duration::from_secs(1));
    assert_silent_forever(&mut t);
}

fn silent_server_hits_the_connect_timeout(k: Kind) {
    // Accepts TCP, never answers the upgrade.
    let port = serve(|mut s| {
        let mut buf = [0u8; 1024];
        while matches!(s.read(&mut buf), Ok(n) if n > 0) {}
    });
    let timeout = Duration::from_millis(300);
    let start = Instant::now();
    let mut t = k.connect(ConnectRequest {
        connect_timeout: timeout,
        ..ConnectRequest::new(url(port))
    });
    match next_event(&mut t, WAIT) {
        TransportEvent::Failed(TransportError::Connect(msg)) => {
            assert!(msg.contains("timed out"), "{msg}")
        }
        other => panic!("expected Failed(Connect), got {other:?}"),
    }
    let elapsed = start.elapsed();
    assert!(
        elapsed >= timeout - Duration::from_millis(50),
        "{elapsed:?}"
    );
    assert!(
        elapsed < timeout + Duration::from_millis(500),
        "{elapsed:?}"
    );
    assert_silent_forever(&mut t);
}

fn peer_close_1001_is_reported_and_answered(k: Kind) {
    let (tx, rx) = mpsc::channel();
    let port = serve(move |s| {
        let Some(mut ws) = accept(s) else { return };
        ws.close(Some(CloseFrame {
            code: CloseCode::Away,
            reason: "bye".into(),
        }))
        .unwrap();
        // Wait for the client's close reply.
        let answered = loop {
            match ws.read() {
                Ok(_) => {}
                Err(tungstenite::Error::ConnectionClosed) => break true,
                Err(_) => break false,
            }
        };
        tx.send(answered).unwrap();
    });
    let mut t = k.open(url(port));
    match next_event(&mut t, WAIT) {
        TransportEvent::Closed(info) if k.close_codes => assert_eq!(
            info,
            CloseInfo {
                code: Some(1001),
                reason: "bye".into(),
                by_peer: true,
            }
        ),
        // ewebsock: a close, but neither code nor reason.
        TransportEvent::Closed(CloseInfo { code, by_peer, .. }) => {
            assert_eq!((code, by_peer), (None, true))
        }
        other => panic!("expected Closed, got {other:?}"),
    }
    assert!(!t.is_open());
    // Keep polling a little: the closing handshake completes in the background.
    let end = Instant::now() + WAIT;
    let answered = loop {
        assert_eq!(t.poll(), None);
        if let Ok(answered) = rx.try_recv() {
            break answered;
        }
        assert!(Instant::now() < end, "server never saw the close reply");
        thread::sleep(Duration::from_micros(50));
    };
    assert!(answered, "the client did not answer the close frame");
    assert_silent_forever(&mut t);
}

fn peer_dropping_tcp_gives_closed_without_code(k: Kind) {
    let port = serve(|s| {
        let Some(mut ws) = accept(s) else { return };
        ws.send(Message::Text("last words".into())).unwrap();
        drop(ws);
    });
    let mut t = k.open(url(port));
    assert_eq!(
        next_event(&mut t, WAIT),
        TransportEvent::Text("last words".into())
    );
    match next_event(&mut t, WAIT) {
        TransportEvent::Closed(CloseInfo {
            code: None,
            by_peer: true,
            ..
        }) => {}
        other => panic!("expected Closed without code, got {other:?}"),
    }
    assert_silent_forever(&mut t);
}

fn frame_over_max_frame_size_fails_and_closes_with_1009(k: Kind) {
    let (tx, rx) = mpsc::channel();
    let port = serve(move |s| {
        let Some(mut ws) = accept(s) else { return };
        ws.send(Message::binary(vec![7; 2048])).unwrap();
        let code = loop {
            match ws.read() {
                Ok(Message::Close(frame)) => break frame.map(|f| u16::from(f.code)),
                Ok(_) => {}
                Err(_) => break None,
            }
        };
        tx.send(code).unwrap();
    });
    let mut t = k.open_with(ConnectRequest {
        max_frame_size: 1024,
        ..request(url(port))
    });
    assert_eq!(
        next_event(&mut t, WAIT),
        TransportEvent::Failed(TransportError::FrameTooLarge {
            size: 2048,
            max: 1024
        })
    );
    let end = Instant::now() + WAIT;
    let code = loop {
        assert_eq!(t.poll(), None);
        if let Ok(code) = rx.try_recv() {
            break code;
        }
        assert!(Instant::now() < end, "server never saw a close frame");
        thread::sleep(Duration::from_micros(50));
    };
    // ewebsock closes without a code.
    assert_eq!(code, k.code(1009));
    assert_silent_forever(&mut t);
}

fn exactly_one_terminal_event_then_none_forever(k: Kind) {
    let port = serve(|s| {
        let Some(mut ws) = accept(s) else { return };
        ws.close(None).unwrap();
        while ws.read().is_ok() {}
    });
    let mut t = k.open(url(port));
    match next_event(&mut t, WAIT) {
        TransportEvent::Closed(CloseInfo { code, .. }) => assert_eq!(code, k.code(1005)),
        other => panic!("expected Closed, got {other:?}"),
    }
    // Even once the server has gone away entirely, nothing else is reported.
    let end = Instant::now() + Duration::from_millis(200);
    while Instant::now() < end {
        assert_eq!(t.poll(), None);
        t.flush();
    }
    assert_silent_forever(&mut t);
}

fn close_sends_1000_and_reports_nothing_more(k: Kind) {
    let (tx, rx) = mpsc::channel();
    let port = serve(move |s| {
        let Some(mut ws) = accept(s) else { return };
        let code = loop {
            match ws.read() {
                Ok(Message::Close(frame)) => break frame.map(|f| u16::from(f.code)),
                Ok(m) => {
                    let _ = ws.send(m);
                }
                Err(_) => break None,
            }
        };
        tx.send(code).unwrap();
        while ws.read().is_ok() {}
    });
    let mut t = k.open(url(port));
    t.send(Transmit::Text("before close".into())).unwrap();
    t.flush();
    assert_eq!(
        next_event(&mut t, WAIT),
        TransportEvent::Text("before close".into())
    );
    t.close();
    assert!(!t.is_open());
    // ewebsock's Close frame has no code.
    assert_eq!(rx.recv_timeout(WAIT).unwrap(), k.code(1000));
    assert_silent_forever(&mut t);
}

fn ping_is_answered_without_an_event(k: Kind) {
    let port = serve(|s| {
        let Some(mut ws) = accept(s) else { return };
        ws.send(Message::Ping(b"are you there".to_vec().into()))
            .unwrap();
        loop {
            match ws.read() {
                Ok(Message::Pong(p)) => {
                    assert_eq!(&p[..], b"are you there");
                    ws.send(Message::Text("pong received".into())).unwrap();
                    break;
                }
                Ok(_) => {}
                Err(_) => return,
            }
        }
        echo_loop(ws);
    });
    let mut t = k.open(url(port));
    assert_eq!(
        next_event(&mut t, WAIT),
        TransportEvent::Text("pong received".into())
    );
}

fn invalid_urls_fail_without_panicking(k: Kind) {
    for bad in ["not a url", "http://127.0.0.1:1/socket", "ws:///nohost"] {
        let mut t = k.connect(ConnectRequest::new(bad));
        match next_event(&mut t, WAIT) {
            TransportEvent::Failed(TransportError::Connect(_)) => {}
            other => panic!("{bad}: expected Failed(Connect), got {other:?}"),
        }
        assert_silent_forever(&mut t);
    }
}

fn idle_poll_does_not_allocate(k: Kind) {
    let port = echo_server();
    let mut t = k.open(url(port));
    t.send(Transmit::Text("warm up".into())).unwrap();
    t.flush();
    assert_eq!(
        next_event(&mut t, WAIT),
        TransportEvent::Text("warm up".into())
    );
    // The counter is live (so the zero below is not vacuous).
    let probe = allocation_counter::measure(|| drop(std::hint::black_box(vec![1u8; 16])));
    assert_eq!(probe.count_total, 1);
    let info = allocation_counter::measure(|| {
        for _ in 0..10_000 {
            assert!(t.poll().is_none());
            t.flush();
        }
    });
    assert_eq!(info.count_total, 0, "{info:?}");
}

/// One `#[test]` per conformance test, for the transport `$kind`.
macro_rules! conformance {
    ($kind:expr) => {
        conformance!(
            $kind;
            open_and_echo_text,
            echo_binary,
            interleaved_text_and_binary_keep_order_over_10k_messages,
            server_to_client_interleaved_burst_keeps_order,
            pipelined_100k_small_messages_arrive_complete_and_in_order,
            frames_sent_before_open_are_queued_in_order,
            subprotocol_offered_and_answered,
            extra_headers_are_sent_with_the_upgrade,
            http_403_on_upgrade_is_refused,
            connection_refused_fails_quickly,
            silent_server_hits_the_connect_timeout,
            peer_close_1001_is_reported_and_answered,
            peer_dropping_tcp_gives_closed_without_code,
            frame_over_max_frame_size_fails_and_closes_with_1009,
            exactly_one_terminal_event_then_none_forever,
            close_sends_1000_and_reports_nothing_more,
            ping_is_answered_without_an_event,
            invalid_urls_fail_without_panicking,
            idle_poll_does_not_allocate,
        );
    };
    ($kind:expr; $($test:ident),* $(,)?) => {
        $(
            #[test]
            fn $test() {
                super::$test($kind)
            }
        )*
    };
}

/// The built-in transport (the default).
mod builtin {
    conformance!(super::BUILTIN);
}

/// The ewebsock transport (feature `ewebsock`), with ewebsock's default options.
#[cfg(feature = "ewebsock")]
mod ewebsock {
    use super::*;
    use bevy_phoenix_channels::transport::ewebsock::EwebsockConnector;

    const EWEBSOCK: Kind = Kind {
        connector: || Box::new(EwebsockConnector::new()),
        close_codes: false,
        reports_protocol: false,
        any_offered_protocol: false,
        error_details: false,
    };

    conformance!(EWEBSOCK);

    /// Built without ewebsock's `tls` feature: `wss://` fails as a TLS error, whatever this
    /// crate's `tls` feature says (that one is the built-in transport's).
    #[test]
    fn wss_fails_cleanly_with_a_tls_error() {
        let mut t = EWEBSOCK.connect(ConnectRequest::new("wss://127.0.0.1:1/socket"));
        match next_event(&mut t, WAIT) {
            TransportEvent::Failed(TransportError::Tls(msg)) => {
                assert!(msg.contains("built-in transport"), "{msg}")
            }
            other => panic!("expected Failed(Tls), got {other:?}"),
        }
        assert_silent_forever(&mut t);
    }
}

/// The built-in transport counts what `send` accepted and the peer has not taken: frames
/// queued before the open, then what waits behind a peer that does not read, back to zero
/// once it reads. The plugin feeds this to the core's `max_send_backlog` bound.
#[test]
fn send_backlog_counts_what_the_peer_has_not_taken() {
    const N: usize = 40;
    const SIZE: usize = 512 * 1024;
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let go_rx = std::sync::Mutex::new(Some(go_rx));
    let port = serve(move |s| {
        let Some(mut ws) = accept(s) else { return };
        // Read nothing until told to: 20 MB fill both kernel buffers.
        if let Some(rx) = go_rx.lock().unwrap().take() {
            let _ = rx.recv();
        }
        let mut got = 0;
        while got < N + 1 {
            match ws.read() {
                Ok(Message::Binary(_) | Message::Text(_)) => got += 1,
                Ok(_) => {}
                Err(_) => return,
            }
        }
        let _ = ws.send(Message::Text("all read".into()));
    });
    let mut t = BUILTIN.connect(request(url(port)));
    // Queued before the open: counted (payload plus a client frame header).
    t.send(Transmit::Text("early".into())).unwrap();
    assert!(
        (5..=5 + 14).contains(&t.send_backlog()),
        "{}",
        t.send_backlog()
    );
    match next_event(&mut t, WAIT) {
        TransportEvent::Opened { .. } => {}
        other => panic!("expected Opened, got {other:?}"),
    }
    for i in 0..N {
        t.send(Transmit::Binary(vec![i as u8; SIZE])).unwrap();
        t.flush();
    }
    let waiting = t.send_backlog();
    let total = N * (SIZE + 14) + 5 + 6;
    assert!(
        waiting > 0 && waiting <= total,
        "backlog {waiting} of {total} bytes sent to a peer that reads nothing"
    );
    go_tx.send(()).unwrap();
    assert_eq!(
        next_event(&mut t, Duration::from_secs(60)),
        TransportEvent::Text("all read".into())
    );
    assert_eq!(t.send_backlog(), 0, "everything was taken");
}

#[cfg(not(feature = "tls"))]
#[test]
fn wss_without_the_tls_feature_fails_cleanly() {
    let mut t = BUILTIN.connect(ConnectRequest::new("wss://127.0.0.1:1/socket"));
    assert_eq!(
        next_event(&mut t, WAIT),
        TransportEvent::Failed(TransportError::Tls("built without the tls feature".into()))
    );
    assert_silent_forever(&mut t);
}

#[cfg(feature = "tls")]
mod tls {
    use super::*;
    use bevy_phoenix_channels::transport::TlsConfig;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

    /// A wss:// echo server with a fresh self-signed certificate for `localhost` and `127.0.0.1`;
    /// returns (port, cert DER).
    fn tls_echo_server() -> (u16, Vec<u8>) {
        tls_server_named(&["localhost", "127.0.0.1"])
    }

    fn wss(port: u16) -> String {
        format!("wss://127.0.0.1:{port}/socket/websocket?vsn=2.0.0")
    }

    fn trusting(port: u16, cert: &[u8]) -> ConnectRequest {
        ConnectRequest {
            tls: Some(TlsConfig {
                extra_roots_der: vec![cert.to_vec()],
                only_extra_roots: true,
            }),
            ..request(wss(port))
        }
    }

    #[test]
    fn tls_echo_with_trusted_self_signed_cert() {
        let (port, cert) = tls_echo_server();
        let mut t = BUILTIN.open_with(trusting(port, &cert));
        t.send(Transmit::Text("over tls".into())).unwrap();
        t.flush();
        assert_eq!(
            next_event(&mut t, WAIT),
            TransportEvent::Text("over tls".into())
        );
        // The nonblocking rustls path under load: partial writes, large frames, order.
        interleaved_echo(&mut t, 10_000);
        // Steady state: the first idle polls may still shrink buffers grown by the burst.
        for _ in 0..100 {
            assert!(t.poll().is_none());
            t.flush();
        }
        let info = allocation_counter::measure(|| {
            for _ in 0..10_000 {
                assert!(t.poll().is_none());
                t.flush();
            }
        });
        assert_eq!(info.count_total, 0, "{info:?}");
    }

    /// A wss:// echo server whose self-signed certificate names exactly `names`.
    fn tls_server_named(names: &[&str]) -> (u16, Vec<u8>) {
        let key = rcgen::generate_simple_self_signed(
            names.iter().map(|n| n.to_string()).collect::<Vec<_>>(),
        )
        .unwrap();
        let cert_der = key.cert.der().to_vec();
        let private = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.key_pair.serialize_der()));
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![CertificateDer::from(cert_der.clone())], private)
        .unwrap();
        let config = Arc::new(config);
        let port = serve(move |tcp| {
            let conn = rustls::ServerConnection::new(config.clone()).unwrap();
            let stream = rustls::StreamOwned::new(conn, tcp);
            if let Ok(ws) = tungstenite::accept(stream) {
                echo_loop(ws);
            }
        });
        (port, cert_der)
    }

    /// Host names are verified: the same trusted certificate (it names `localhost`) is
    /// accepted at `wss://localhost` and refused at `wss://127.0.0.1`, a name it does not carry.
    #[test]
    fn tls_wrong_host_name_is_refused() {
        let (port, cert) = tls_server_named(&["localhost"]);
        let trust = Some(TlsConfig {
            extra_roots_der: vec![cert.clone()],
            only_extra_roots: true,
        });
        // Control: the right name connects and echoes.
        let mut ok = BUILTIN.open_with(ConnectRequest {
            tls: trust.clone(),
            ..request(format!("wss://localhost:{port}/socket/websocket?vsn=2.0.0"))
        });
        ok.send(Transmit::Text("right name".into())).unwrap();
        ok.flush();
        assert_eq!(
            next_event(&mut ok, WAIT),
            TransportEvent::Text("right name".into())
        );
        // The wrong name: a TLS error that says why, and no connection.
        let mut t = BUILTIN.connect(ConnectRequest {
            tls: trust,
            ..request(wss(port))
        });
        match next_event(&mut t, WAIT) {
            TransportEvent::Failed(TransportError::Tls(msg)) => assert!(
                msg.contains("NotValidForName") || msg.to_lowercase().contains("not valid for"),
                "{msg}"
            ),
            other => panic!("expected Failed(Tls), got {other:?}"),
        }
        assert_silent_forever(&mut t);
    }

    #[test]
    fn tls_untrusted_cert_fails_with_tls_error_within_the_timeout() {
        let (port, _cert) = tls_echo_server();
        let timeout = Duration::from_secs(3);
        let start = Instant::now();
        // Default trust (webpki roots) does not include the self-signed certificate.
        let mut t = BUILTIN.connect(ConnectRequest {
            connect_timeout: timeout,
            ..ConnectRequest::new(wss(port))
        });
        match next_event(&mut t, timeout + Duration::from_secs(1)) {
            TransportEvent::Failed(TransportError::Tls(msg)) => {
                assert!(msg.to_lowercase().contains("certificate"), "{msg}")
            }
            other => panic!("expected Failed(Tls), got {other:?}"),
        }
        assert!(start.elapsed() < timeout, "{:?}", start.elapsed());
        assert_silent_forever(&mut t);
    }

    #[test]
    fn tls_to_a_plain_server_fails_cleanly() {
        let port = echo_server();
        let mut t = BUILTIN.connect(ConnectRequest {
            connect_timeout: Duration::from_secs(3),
            ..ConnectRequest::new(wss(port))
        });
        match next_event(&mut t, Duration::from_secs(5)) {
            TransportEvent::Failed(TransportError::Tls(_) | TransportError::Connect(_)) => {}
            other => panic!("expected Failed(Tls|Connect), got {other:?}"),
        }
        assert_silent_forever(&mut t);
    }
}
