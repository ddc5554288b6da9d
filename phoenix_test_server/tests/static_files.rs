//! `ServerBuilder::static_dir` (plain HTTP files, like Plug.Static) and `ServerBuilder::bind`,
//! over real loopback sockets with raw HTTP requests.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use common::*;
use phoenix_test_server::TestServer;
use serde_json::json;

/// A directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        static N: AtomicUsize = AtomicUsize::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let dir = std::env::temp_dir().join(format!(
            "pts-static-{}-{}-{nanos}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    /// Writes `rel` (creating parent directories) and returns its path.
    fn file(&self, rel: &str, bytes: &[u8]) -> PathBuf {
        let p = self.0.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, bytes).unwrap();
        p
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[derive(Debug)]
struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    /// Everything after the head, read until the server closed the connection.
    body: Vec<u8>,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Sends `METHOD target HTTP/1.1` and reads the whole answer (the server closes after it).
fn request(addr: SocketAddr, method: &str, target: &str) -> Resp {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    write!(s, "{method} {target} HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).unwrap();
    let end = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a response head")
        + 4;
    let head = String::from_utf8(buf[..end].to_vec()).unwrap();
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap().split(' ').nth(1).unwrap();
    let headers = lines
        .filter(|l| !l.is_empty())
        .map(|l| {
            let (k, v) = l.split_once(':').unwrap();
            (k.trim().to_ascii_lowercase(), v.trim().to_string())
        })
        .collect();
    Resp {
        status: status.parse().unwrap(),
        headers,
        body: buf[end..].to_vec(),
    }
}

fn get(addr: SocketAddr, target: &str) -> Resp {
    request(addr, "GET", target)
}

fn serve(dir: &Path) -> TestServer {
    TestServer::builder().static_dir(dir).start().unwrap()
}

const INDEX: &[u8] = b"<!doctype html><title>game</title><script src=\"game.js\"></script>";

#[test]
fn static_dir_serves_index_html_for_root_and_directories() {
    let tmp = TempDir::new();
    tmp.file("index.html", INDEX);
    tmp.file("docs/index.html", b"<p>docs</p>");
    let server = serve(tmp.path());
    for target in ["/", "/?v=3", "/index.html", "//"] {
        let r = get(server.addr(), target);
        assert_eq!(r.status, 200, "{target}");
        assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
        assert_eq!(r.header("content-length"), Some(&*INDEX.len().to_string()));
        assert_eq!(r.header("cache-control"), Some("no-cache"));
        assert_eq!(r.body, INDEX, "{target}");
    }
    for target in ["/docs", "/docs/"] {
        let r = get(server.addr(), target);
        assert_eq!((r.status, r.body.as_slice()), (200, &b"<p>docs</p>"[..]));
    }
}

#[test]
fn static_dir_streams_a_large_wasm_file_with_its_exact_bytes() {
    let tmp = TempDir::new();
    // ~3 MB of non-repeating bytes (xorshift), so a short, padded or shifted body shows.
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let wasm: Vec<u8> = (0..3 * 1024 * 1024 + 17)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    tmp.file("pkg/game_bg.wasm", &wasm);
    let server = serve(tmp.path());
    let r = get(server.addr(), "/pkg/game_bg.wasm");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/wasm"));
    assert_eq!(r.header("content-length"), Some(&*wasm.len().to_string()));
    assert_eq!(r.body.len(), wasm.len());
    assert!(r.body == wasm, "body differs from the file");
}

#[test]
fn static_dir_content_types_and_percent_decoding() {
    let tmp = TempDir::new();
    let cases = [
        ("game.js", "text/javascript; charset=utf-8"),
        ("mod.mjs", "text/javascript; charset=utf-8"),
        ("style.css", "text/css; charset=utf-8"),
        ("a.png", "image/png"),
        ("b.JPG", "image/jpeg"),
        ("c.svg", "image/svg+xml"),
        ("favicon.ico", "image/x-icon"),
        ("f.ttf", "font/ttf"),
        ("f.otf", "font/otf"),
        ("f.woff2", "font/woff2"),
        ("data.json", "application/json"),
        ("notes.txt", "text/plain; charset=utf-8"),
        ("blob.bin", "application/octet-stream"),
        ("LICENSE", "application/octet-stream"),
    ];
    for (name, _) in cases {
        tmp.file(&format!("assets/{name}"), name.as_bytes());
    }
    tmp.file("my game+1.js", b"spaced");
    let server = serve(tmp.path());
    for (name, ct) in cases {
        let r = get(server.addr(), &format!("/assets/{name}"));
        assert_eq!(r.status, 200, "{name}");
        assert_eq!(r.header("content-type"), Some(ct), "{name}");
        assert_eq!(r.body, name.as_bytes());
    }
    let r = get(server.addr(), "/my%20game+1.js");
    assert_eq!((r.status, r.body.as_slice()), (200, &b"spaced"[..]));
    let r = get(server.addr(), "/%61ssets/%6eotes.txt");
    assert_eq!((r.status, r.body.as_slice()), (200, &b"notes.txt"[..]));
}

#[test]
fn static_dir_missing_files_and_directories_without_index_are_404() {
    let tmp = TempDir::new();
    tmp.file("index.html", INDEX);
    tmp.file("empty/.keep", b"");
    let server = serve(tmp.path());
    for target in [
        "/nope.js",
        "/empty",
        "/empty/",
        "/index.html/x",
        "/socket/longpoll",
    ] {
        let r = get(server.addr(), target);
        assert_eq!(
            (r.status, r.body.as_slice()),
            (404, &b"not found"[..]),
            "{target}"
        );
    }
    // Only GET and HEAD read files; other methods get the usual answer.
    assert_eq!(request(server.addr(), "POST", "/index.html").status, 404);
    assert_eq!(request(server.addr(), "DELETE", "/index.html").status, 404);
}

#[test]
fn static_dir_without_index_keeps_the_plain_root_answer() {
    let tmp = TempDir::new();
    tmp.file("app.js", b"js");
    let server = serve(tmp.path());
    let r = get(server.addr(), "/");
    assert_eq!((r.status, r.body.as_slice()), (200, &b"ok"[..]));
    assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"));
}

#[test]
fn static_dir_refuses_path_traversal() {
    let base = TempDir::new();
    let secret = b"TOP-SECRET-OUTSIDE-THE-DIR";
    base.file("Cargo.toml", secret);
    base.file("secret", secret);
    base.file("www/index.html", INDEX);
    base.file("www/a/inside.txt", b"inside");
    #[cfg(unix)]
    {
        std::os::unix::fs::symlink(base.path().join("secret"), base.path().join("www/link"))
            .unwrap();
        std::os::unix::fs::symlink(base.path(), base.path().join("www/up")).unwrap();
    }
    let server = serve(&base.path().join("www"));
    let attacks = [
        "/../Cargo.toml",
        "/%2e%2e/secret",
        "/%2E%2E/secret",
        "/a/../../secret",
        "/a/../inside.txt/../../secret",
        "/..%2fsecret",
        "/a%2f..%2f..%2fsecret",
        "/..%5csecret",
        "/..\\secret",
        "/.%2e/secret",
        "/./../secret",
        "//../secret",
        "/%2F..%2Fsecret",
        "/secret%00.html",
        "/c:/secret",
        "/%zz",
        "/link",
        "/up/secret",
        "/up/Cargo.toml",
    ];
    for target in attacks {
        let r = get(server.addr(), target);
        assert!((400..500).contains(&r.status), "{target}: {}", r.status);
        assert!(
            !r.body.windows(secret.len()).any(|w| w == secret),
            "{target} leaked the file outside the dir"
        );
        let r = request(server.addr(), "HEAD", target);
        assert!(
            (400..500).contains(&r.status),
            "HEAD {target}: {}",
            r.status
        );
    }
    // A file outside is also unreachable through an absolute path.
    let abs = base.path().join("secret");
    let r = get(server.addr(), &abs.to_string_lossy().replace('\\', "/"));
    assert!((400..500).contains(&r.status), "{}", abs.display());
    // And the dir itself still serves.
    assert_eq!(get(server.addr(), "/a/inside.txt").body, b"inside");
}

#[test]
fn static_dir_head_sends_the_headers_without_a_body() {
    let tmp = TempDir::new();
    tmp.file("index.html", INDEX);
    tmp.file("game_bg.wasm", &[0u8; 70_000]);
    let server = serve(tmp.path());
    let r = request(server.addr(), "HEAD", "/game_bg.wasm");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/wasm"));
    assert_eq!(r.header("content-length"), Some("70000"));
    assert_eq!(r.header("cache-control"), Some("no-cache"));
    assert!(r.body.is_empty(), "{} body bytes", r.body.len());
    let r = request(server.addr(), "HEAD", "/");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-length"), Some(&*INDEX.len().to_string()));
    assert!(r.body.is_empty());
    let r = request(server.addr(), "HEAD", "/missing");
    assert_eq!(r.status, 404);
    assert!(r.body.is_empty());
}

#[test]
fn static_dir_keeps_the_websocket_endpoint() {
    let tmp = TempDir::new();
    tmp.file("index.html", INDEX);
    // Even a file at the endpoint's path does not shadow it.
    tmp.file("socket/websocket", b"shadow");
    let server = serve(tmp.path());
    let mut ws = connect(&server.url(), "vsn=2.0.0");
    send_json(&mut ws, json!(["1", "1", "echo:1", "phx_join", {}]));
    assert_eq!(recv_json(&mut ws)[4]["status"], "ok");
    send_json(&mut ws, json!(["1", "2", "echo:1", "echo", {"n": 7}]));
    assert_eq!(
        recv_json(&mut ws),
        json!(["1", "2", "echo:1", "phx_reply", {"status": "ok", "response": {"n": 7}}])
    );
    // A plain GET of the endpoint is still the 400 upgrade error, not the file.
    let r = get(server.addr(), "/socket/websocket?vsn=2.0.0");
    assert_eq!(r.status, 400);
    assert_ne!(r.body, b"shadow");
    assert_eq!(server.connections().len(), 1);
}

#[test]
fn static_dir_must_be_an_existing_directory() {
    let tmp = TempDir::new();
    let file = tmp.file("file.txt", b"x");
    assert!(TestServer::builder().static_dir(&file).start().is_err());
    assert!(
        TestServer::builder()
            .static_dir(tmp.path().join("missing"))
            .start()
            .is_err()
    );
}

#[test]
fn bind_unspecified_accepts_loopback_and_url_names_127_0_0_1() {
    let server = TestServer::builder()
        .bind(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
        .start()
        .unwrap();
    let port = server.addr().port();
    assert_eq!(server.addr().ip(), IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    assert_eq!(server.url(), format!("ws://127.0.0.1:{port}/socket"));
    let mut ws = connect(&server.url(), "vsn=2.0.0");
    send_json(&mut ws, json!(["1", "1", "echo:1", "phx_join", {}]));
    assert_eq!(recv_json(&mut ws)[4]["status"], "ok");
    let r = get(SocketAddr::from((Ipv4Addr::LOCALHOST, port)), "/");
    assert_eq!((r.status, r.body.as_slice()), (200, &b"ok"[..]));
    // Dropping a server bound to 0.0.0.0 wakes and joins its acceptor (this test would hang).
    drop(ws);
    drop(server);
}

#[test]
fn bind_ipv6_unspecified_url_names_the_ipv6_loopback() {
    // Skipped where the machine has no IPv6.
    let Ok(server) = TestServer::builder()
        .bind(IpAddr::V6(Ipv6Addr::UNSPECIFIED))
        .start()
    else {
        return;
    };
    let port = server.addr().port();
    assert_eq!(server.url(), format!("ws://[::1]:{port}/socket"));
    if TcpStream::connect((Ipv6Addr::LOCALHOST, port)).is_err() {
        return;
    }
    let mut ws = connect(&server.url(), "vsn=2.0.0");
    send_json(&mut ws, json!(["1", "1", "echo:1", "phx_join", {}]));
    assert_eq!(recv_json(&mut ws)[4]["status"], "ok");
}

#[test]
fn binary_takes_bind_and_static_dir() {
    let tmp = TempDir::new();
    tmp.file("index.html", INDEX);
    let exe = env!("CARGO_BIN_EXE_phoenix_test_server");
    let help = Command::new(exe).arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(
        help.contains("--bind") && help.contains("--static-dir"),
        "{help}"
    );
    assert!(
        !Command::new(exe)
            .args(["--bind", "localhost"])
            .output()
            .unwrap()
            .status
            .success()
    );
    /// Kills the server even when an assertion fails first.
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut child = Kill(
        Command::new(exe)
            .args(["--port", "0", "--bind", "0.0.0.0", "--static-dir"])
            .arg(tmp.path())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut line = String::new();
    BufReader::new(child.0.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line.trim().to_string();
    let port: u16 = url
        .strip_prefix("ws://127.0.0.1:")
        .and_then(|r| r.strip_suffix("/socket"))
        .unwrap_or_else(|| panic!("{url}"))
        .parse()
        .unwrap();
    let r = get(SocketAddr::from((Ipv4Addr::LOCALHOST, port)), "/");
    drop(child);
    assert_eq!((r.status, r.body.as_slice()), (200, INDEX));
}
