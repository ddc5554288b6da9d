//! A minimal raw websocket client (blocking tungstenite) for the integration tests.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::type_complexity,
    clippy::result_large_err
)]

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::Value;
use tungstenite::client::IntoClientRequest;
use tungstenite::protocol::{CloseFrame, Role, WebSocket, frame::coding::CloseCode};
use tungstenite::{Error, Message};

pub type Ws = WebSocket<TcpStream>;

/// How long a test waits for a frame that must come.
pub const WAIT: Duration = Duration::from_secs(5);

/// A refused handshake.
#[derive(Debug, Clone)]
pub struct HttpRefusal {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// Connects to `url` (ws://host:port/path?query) with extra request headers.
pub fn connect_with(
    url: &str,
    headers: &[(&str, &str)],
) -> Result<(Ws, Vec<(String, String)>), HttpRefusal> {
    let mut req = url.into_client_request().unwrap();
    for (k, v) in headers {
        req.headers_mut().append(
            tungstenite::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            v.parse().unwrap(),
        );
    }
    let host = req.uri().authority().unwrap().as_str().to_string();
    let stream = TcpStream::connect(host).unwrap();
    stream.set_nodelay(true).unwrap();
    match tungstenite::client::client(req, stream) {
        Ok((ws, resp)) => {
            let hs = resp
                .headers()
                .iter()
                .map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or("").to_string()))
                .collect();
            Ok((ws, hs))
        }
        Err(tungstenite::HandshakeError::Failure(Error::Http(resp))) => Err(HttpRefusal {
            status: resp.status().as_u16(),
            headers: resp
                .headers()
                .iter()
                .map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or("").to_string()))
                .collect(),
            body: resp.body().clone().unwrap_or_default(),
        }),
        Err(e) => panic!("handshake failed: {e}"),
    }
}

/// Connects to `{endpoint}/websocket?{query}`.
pub fn connect(endpoint: &str, query: &str) -> Ws {
    connect_with(&format!("{endpoint}/websocket?{query}"), &[])
        .map(|(ws, _)| ws)
        .unwrap()
}

/// Sends a raw HTTP request head and returns (status, lower-case headers, body bytes read with
/// content-length, leftover bytes after the head, stream).
pub fn raw_request(
    addr: &str,
    head: &str,
) -> (u16, Vec<(String, String)>, Vec<u8>, Vec<u8>, TcpStream) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    stream.write_all(head.as_bytes()).unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = stream.read(&mut chunk).unwrap();
        assert!(n > 0, "connection closed before the response head");
        buf.extend_from_slice(&chunk[..n]);
    };
    let text = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let mut lines = text.split("\r\n");
    let status: u16 = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers: Vec<(String, String)> = lines
        .filter(|l| !l.is_empty())
        .map(|l| {
            let (k, v) = l.split_once(':').unwrap();
            (k.trim().to_ascii_lowercase(), v.trim().to_string())
        })
        .collect();
    let mut rest = buf[head_end..].to_vec();
    let mut body = Vec::new();
    if status != 101 {
        let len: usize = headers
            .iter()
            .find(|(k, _)| k == "content-length")
            .map(|(_, v)| v.parse().unwrap())
            .unwrap_or(0);
        while rest.len() < len {
            let n = stream.read(&mut chunk).unwrap();
            if n == 0 {
                break;
            }
            rest.extend_from_slice(&chunk[..n]);
        }
        body = rest.drain(..len.min(rest.len())).collect();
    }
    (status, headers, body, rest, stream)
}

/// Wraps a stream that got a 101 into a client websocket.
pub fn ws_from_raw(stream: TcpStream, rest: Vec<u8>) -> Ws {
    WebSocket::from_partially_read(stream, rest, Role::Client, None)
}

/// The next message (data, or close) within `timeout`; None on timeout. `Err` when the
/// connection ended without a close frame (or after it).
pub fn recv_timeout(ws: &mut Ws, timeout: Duration) -> Result<Option<Message>, Error> {
    let deadline = Instant::now() + timeout;
    loop {
        let now = Instant::now();
        if now >= deadline {
            return Ok(None);
        }
        ws.get_ref().set_read_timeout(Some(deadline - now)).unwrap();
        match ws.read() {
            Ok(Message::Ping(_)) | Ok(Message::Pong(_)) | Ok(Message::Frame(_)) => continue,
            Ok(m) => return Ok(Some(m)),
            Err(Error::Io(e))
                if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) =>
            {
                return Ok(None);
            }
            Err(e) => return Err(e),
        }
    }
}

/// The next message; panics on timeout or a closed connection.
pub fn recv(ws: &mut Ws) -> Message {
    match recv_timeout(ws, WAIT) {
        Ok(Some(m)) => m,
        Ok(None) => panic!("timed out waiting for a frame"),
        Err(e) => panic!("connection ended while waiting for a frame: {e}"),
    }
}

/// The next frame as JSON (must be a text frame).
pub fn recv_json(ws: &mut Ws) -> Value {
    match recv(ws) {
        Message::Text(t) => serde_json::from_str(&t).unwrap(),
        other => panic!("expected a text frame, got {other:?}"),
    }
}

/// Asserts nothing arrives within `d`.
pub fn assert_silent(ws: &mut Ws, d: Duration) {
    match recv_timeout(ws, d) {
        Ok(None) => {}
        other => panic!("expected silence, got {other:?}"),
    }
}

pub fn send_json(ws: &mut Ws, v: Value) {
    ws.send(Message::Text(v.to_string())).unwrap();
}

pub fn send_text(ws: &mut Ws, t: &str) {
    ws.send(Message::Text(t.to_string())).unwrap();
}

pub fn send_binary(ws: &mut Ws, b: Vec<u8>) {
    ws.send(Message::Binary(b)).unwrap();
}

/// Client close with a code.
pub fn client_close(ws: &mut Ws, code: u16) {
    let _ = ws.close(Some(CloseFrame {
        code: CloseCode::from(code),
        reason: "".into(),
    }));
    let _ = ws.flush();
}

/// Reads until the connection ends: `Some(code)` for a close frame (no data frame may come
/// first unless `skip_data`), `None` if it ended without one (1006).
pub fn read_close(ws: &mut Ws, skip_data: bool) -> Option<u16> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        assert!(Instant::now() < deadline, "connection did not end");
        match recv_timeout(ws, deadline - Instant::now()) {
            Ok(Some(Message::Close(f))) => {
                // Send tungstenite's close reply now, so the server need not wait for it.
                let _ = ws.flush();
                return Some(f.map(|f| u16::from(f.code)).unwrap_or(1005));
            }
            Ok(Some(m)) => {
                assert!(skip_data, "unexpected frame before close: {m:?}");
            }
            Ok(None) => {}
            Err(_) => return None,
        }
    }
}

/// A V2 binary client push (kind 0).
pub fn binary_push(join_ref: &str, ref_: &str, topic: &str, event: &str, data: &[u8]) -> Vec<u8> {
    let mut f = vec![
        0,
        join_ref.len() as u8,
        ref_.len() as u8,
        topic.len() as u8,
        event.len() as u8,
    ];
    for part in [join_ref, ref_, topic, event] {
        f.extend_from_slice(part.as_bytes());
    }
    f.extend_from_slice(data);
    f
}

/// Polls `cond` every 2 ms until true or `timeout`.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    cond()
}
