//! The HTTP side of a connect: parse the upgrade request, decide like Phoenix's websocket transport
//! (auth token subprotocol, serializer negotiation through `vsn`, connect/3, upgrade validation)
//! and write the response head. The decision is a pure function of the request and the config.

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;

use crate::serializer::Serializer;

/// The prefix phoenix.js 1.8 puts before the base64 token in `Sec-WebSocket-Protocol`.
pub(crate) const AUTH_TOKEN_PREFIX: &str = "base64url.bearer.phx.";

const MAX_HEAD: usize = 16 * 1024;

/// A parsed HTTP request head, plus the bytes that followed it.
#[derive(Debug, Clone)]
pub(crate) struct Request {
    pub method: String,
    pub path: String,
    pub query: String,
    /// Header (lower-case name, value) pairs in the order received.
    pub headers: Vec<(String, String)>,
    pub rest: Vec<u8>,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
    fn header_values(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

/// Reads one request head. `Ok(None)` if the peer closed before sending a full head.
pub(crate) fn read_request(stream: &mut impl Read) -> io::Result<Option<Request>> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 2048];
    loop {
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk[..n]);
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut req = httparse::Request::new(&mut headers);
        match req.parse(&buf) {
            Ok(httparse::Status::Complete(len)) => {
                let target = req.path.unwrap_or("/");
                let (path, query) = match target.split_once('?') {
                    Some((p, q)) => (p.to_string(), q.to_string()),
                    None => (target.to_string(), String::new()),
                };
                let headers = req
                    .headers
                    .iter()
                    .map(|h| {
                        (
                            h.name.to_ascii_lowercase(),
                            String::from_utf8_lossy(h.value).into_owned(),
                        )
                    })
                    .collect();
                return Ok(Some(Request {
                    method: req.method.unwrap_or("GET").to_string(),
                    path,
                    query,
                    headers,
                    rest: buf[len..].to_vec(),
                }));
            }
            Ok(httparse::Status::Partial) if buf.len() < MAX_HEAD => continue,
            _ => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "bad HTTP request",
                ));
            }
        }
    }
}

/// Decodes a query string the way Plug does for flat keys: `+` is a space, `%XX` escapes, the last
/// duplicate wins.
pub fn decode_query(query: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        out.insert(percent_decode(k), percent_decode(v));
    }
    out
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(b) => {
                        out.push(b);
                        i += 3;
                        continue;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The current time as an HTTP date (`Thu, 26 Nov 2026 10:03:31 GMT`).
pub(crate) fn http_date() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (h, m, s) = (rem / 3600, (rem % 3600) / 60, rem % 60);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let weekday = (days + 4).rem_euclid(7) as usize; // 1970-01-01 was a Thursday
    const WD: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
    const MON: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    format!(
        "{}, {:02} {} {} {:02}:{:02}:{:02} GMT",
        WD[weekday],
        d,
        MON[(month - 1) as usize],
        year,
        h,
        m,
        s
    )
}

/// A complete HTTP response (never an upgrade).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Response {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
}

fn reason_phrase(status: u16) -> &'static str {
    match status {
        101 => "Switching Protocols",
        200 => "OK",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        500 => "Internal Server Error",
        _ => "Unknown",
    }
}

const CACHE_CONTROL: &str = "max-age=0, private, must-revalidate";

impl Response {
    pub(crate) fn new(status: u16, content_type: Option<&str>, body: &[u8]) -> Self {
        let mut headers = vec![("content-length", body.len().to_string())];
        headers.push(("vary", "accept-encoding".to_string()));
        if let Some(ct) = content_type {
            headers.push(("content-type", ct.to_string()));
        }
        headers.push(("cache-control", CACHE_CONTROL.to_string()));
        Response {
            status,
            headers,
            body: body.to_vec(),
        }
    }

    pub(crate) fn write_to(&self, out: &mut impl Write) -> io::Result<()> {
        let mut head = format!(
            "HTTP/1.1 {} {}\r\ndate: {}\r\n",
            self.status,
            reason_phrase(self.status),
            http_date()
        );
        for (k, v) in &self.headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        out.write_all(head.as_bytes())?;
        out.write_all(&self.body)?;
        out.flush()
    }
}

/// The 101 response head.
pub(crate) fn upgrade_response(key: &str, subprotocol: Option<&str>) -> String {
    let accept = tungstenite::handshake::derive_accept_key(key.trim().as_bytes());
    let mut head = format!(
        "HTTP/1.1 101 Switching Protocols\r\ndate: {}\r\nupgrade: websocket\r\nconnection: Upgrade\r\n\
         sec-websocket-accept: {accept}\r\ncache-control: {CACHE_CONTROL}\r\n",
        http_date()
    );
    if let Some(p) = subprotocol {
        head.push_str(&format!("sec-websocket-protocol: {p}\r\n"));
    }
    head.push_str("\r\n");
    head
}

/// What the transport extracted from `Sec-WebSocket-Protocol`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Subprotocols {
    /// The decoded token (lossy UTF-8), or None without exactly one bearer entry.
    pub token: Option<String>,
    /// `"phoenix"` if it was offered (after removing the bearer entry).
    pub phoenix: bool,
    /// A `Sec-WebSocket-Protocol` header is left after removing the bearer entry.
    pub any_left: bool,
}

fn split_list(s: &str) -> Vec<&str> {
    s.split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .collect()
}

/// Phoenix 1.8's `maybe_auth_token_from_header` + the subprotocol list it leaves behind.
/// Only the first `Sec-WebSocket-Protocol` line is read; a bearer is taken only when it is the
/// only bearer entry there. `Err` = the token is not valid standard base64 (HTTP 500).
pub(crate) fn parse_subprotocols(lines: &[&str]) -> Result<Subprotocols, ()> {
    let mut lines: Vec<String> = lines.iter().map(|s| (*s).to_string()).collect();
    let mut token = None;
    if let Some(first) = lines.first().cloned() {
        let entries = split_list(&first);
        let (bearers, rest): (Vec<&str>, Vec<&str>) = entries
            .iter()
            .partition(|e| e.starts_with(AUTH_TOKEN_PREFIX));
        if let [bearer] = bearers.as_slice() {
            let encoded = &bearer[AUTH_TOKEN_PREFIX.len()..];
            // Base.decode64!(t, padding: false): unpadded, or with exactly the right padding.
            let engine = if encoded.contains('=') {
                &base64::engine::general_purpose::STANDARD
            } else {
                &base64::engine::general_purpose::STANDARD_NO_PAD
            };
            let bytes = engine.decode(encoded).map_err(|_| ())?;
            token = Some(String::from_utf8_lossy(&bytes).into_owned());
            lines.remove(0);
            if !rest.is_empty() {
                // Plug's put_req_header: replace the first remaining line, or append.
                let joined = rest.join(", ");
                match lines.first_mut() {
                    Some(l) => *l = joined,
                    None => lines.push(joined),
                }
            }
        }
    }
    let phoenix = lines
        .first()
        .map(|l| split_list(l).contains(&"phoenix"))
        .unwrap_or(false);
    Ok(Subprotocols {
        token,
        phoenix,
        any_left: !lines.is_empty(),
    })
}

/// Serializer negotiation: `~> 1.0.0` (and a missing vsn) is V1, `~> 2.0.0` is V2, else refused.
pub(crate) fn negotiate(vsn: Option<&str>) -> Option<Serializer> {
    let vsn = vsn.unwrap_or("1.0.0");
    let parts: Vec<&str> = vsn.split('.').collect();
    if parts.len() != 3
        || parts
            .iter()
            .any(|p| p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()))
    {
        return None;
    }
    match (parts[0], parts[1]) {
        ("1", "0") => Some(Serializer::V1),
        ("2", "0") => Some(Serializer::V2),
        _ => None,
    }
}

/// Bandit's upgrade validation; `Err` is the 400 body.
pub(crate) fn validate_upgrade(req: &Request) -> Result<String, String> {
    let list = |name: &str| -> Vec<String> {
        req.header_values(name)
            .iter()
            .flat_map(|v| split_list(v))
            .map(str::to_string)
            .collect()
    };
    let got = |v: Vec<String>| {
        let quoted: Vec<String> = v.iter().map(|s| format!("\"{s}\"")).collect();
        format!("[{}]", quoted.join(", "))
    };
    if req.method != "GET" {
        return Err(format!("HTTP method {} unsupported", req.method));
    }
    let connection = list("connection");
    if !connection.iter().any(|c| c.eq_ignore_ascii_case("upgrade")) {
        return Err(format!(
            "'connection' header must contain 'upgrade', got {}",
            got(connection)
        ));
    }
    let upgrade = list("upgrade");
    if !upgrade.iter().any(|c| c.eq_ignore_ascii_case("websocket")) {
        return Err(format!(
            "'upgrade' header must contain 'websocket', got {}",
            got(upgrade)
        ));
    }
    let version = list("sec-websocket-version");
    if version != ["13"] {
        return Err(format!(
            "'sec-websocket-version' header must equal '13', got {}",
            got(version)
        ));
    }
    match req.header("sec-websocket-key") {
        Some(k) if !k.trim().is_empty() => Ok(k.trim().to_string()),
        _ => Err("'sec-websocket-key' header is absent".to_string()),
    }
}

/// Subprotocol lines of the request.
pub(crate) fn subprotocol_lines(req: &Request) -> Vec<&str> {
    req.header_values("sec-websocket-protocol")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn query_decoding() {
        let q = decode_query("vsn=2.0.0&token=a+b%21&x=%zz&token=c&flag");
        assert_eq!(q["vsn"], "2.0.0");
        assert_eq!(q["token"], "c");
        assert_eq!(q["x"], "%zz");
        assert_eq!(q["flag"], "");
        assert_eq!(decode_query("a=a+b%21")["a"], "a b!");
        assert_eq!(decode_query("a=%4")["a"], "%4");
    }

    #[test]
    fn date_format() {
        let d = http_date();
        assert!(d.ends_with(" GMT") && d.len() == 29, "{d}");
    }

    #[test]
    fn negotiation() {
        assert_eq!(negotiate(Some("2.0.0")), Some(Serializer::V2));
        assert_eq!(negotiate(None), Some(Serializer::V1));
        assert_eq!(negotiate(Some("3.0.0")), None);
        assert_eq!(negotiate(Some("abc")), None);
    }

    #[test]
    fn auth_token_rules_from_phoenix_1_8() {
        let p = |lines: &[&str]| parse_subprotocols(lines);
        let ok = p(&["phoenix, base64url.bearer.phx.Z29vZC10b2tlbg"]).unwrap();
        assert_eq!(ok.token.as_deref(), Some("good-token"));
        assert!(ok.phoenix);
        assert_eq!(
            p(&["base64url.bearer.phx.Z29vZC10b2tlbg, phoenix"]).unwrap(),
            ok
        );
        assert_eq!(
            p(&["phoenix, base64url.bearer.phx.Z29vZC10b2tlbg=="]).unwrap(),
            ok
        );
        let only = p(&["base64url.bearer.phx.Z29vZC10b2tlbg"]).unwrap();
        assert_eq!(
            (only.token.as_deref(), only.phoenix, only.any_left),
            (Some("good-token"), false, false)
        );
        assert_eq!(
            p(&["phoenix, base64url.bearer.phx."])
                .unwrap()
                .token
                .as_deref(),
            Some("")
        );
        let two = p(&["phoenix, base64url.bearer.phx.Z29vZC10b2tlbg, base64url.bearer.phx.YmFk"])
            .unwrap();
        assert_eq!((two.token, two.phoenix), (None, true));
        let sep = p(&["phoenix", "base64url.bearer.phx.Z29vZC10b2tlbg"]).unwrap();
        assert_eq!((sep.token, sep.phoenix), (None, true));
        let rev = p(&["base64url.bearer.phx.Z29vZC10b2tlbg", "phoenix"]).unwrap();
        assert_eq!(
            (rev.token.as_deref(), rev.phoenix),
            (Some("good-token"), true)
        );
        let case = p(&["phoenix, Base64url.Bearer.Phx.Z29vZC10b2tlbg"]).unwrap();
        assert_eq!((case.token, case.phoenix), (None, true));
        assert_eq!(
            p(&["phoenix, base64url.bearer.phx.Pz8+"])
                .unwrap()
                .token
                .as_deref(),
            Some("??>")
        );
        assert_eq!(
            p(&["phoenix, base64url.bearer.phx.Pz8/"])
                .unwrap()
                .token
                .as_deref(),
            Some("???")
        );
        for bad in ["Pz8-", "Pz8_", "-_8", "Z29vZC10b2tlb", "Z29vZC10b2tlbg="] {
            assert!(
                p(&[&format!("phoenix, base64url.bearer.phx.{bad}")]).is_err(),
                "{bad}"
            );
        }
        let none = p(&[]).unwrap();
        assert_eq!(
            (none.token, none.phoenix, none.any_left),
            (None, false, false)
        );
        let foo = p(&["foo"]).unwrap();
        assert_eq!((foo.phoenix, foo.any_left), (false, true));
    }
}
