//! Socket configuration: endpoint, connect params and auth token providers, timeouts,
//! backoff tables, buffer bounds. Defaults are phoenix.js 1.8.16's unless said.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// A delay table with a tail value: `steps[tries - 1]`, or `tail` past the end.
///
/// phoenix.js: reconnect `[10, 50, 100, 150, 200, 250, 500, 1000, 2000]` ms then 5 s;
/// rejoin `[1, 2, 5]` s then 10 s.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backoff {
    steps: Vec<Duration>,
    tail: Duration,
}

impl Backoff {
    /// A table of `steps` followed by `tail` for every later try.
    pub fn new(steps: impl Into<Vec<Duration>>, tail: Duration) -> Self {
        Backoff {
            steps: steps.into(),
            tail,
        }
    }

    /// The same delay for every try.
    pub fn constant(delay: Duration) -> Self {
        Backoff::new(Vec::new(), delay)
    }

    /// phoenix.js's reconnect table.
    pub fn reconnect_default() -> Self {
        let ms = [10, 50, 100, 150, 200, 250, 500, 1000, 2000];
        Backoff::new(
            ms.map(Duration::from_millis).to_vec(),
            Duration::from_millis(5000),
        )
    }

    /// phoenix.js's rejoin table.
    pub fn rejoin_default() -> Self {
        Backoff::new(
            [1, 2, 5].map(Duration::from_secs).to_vec(),
            Duration::from_secs(10),
        )
    }

    /// The delay before try number `tries` (1 = the first retry). `0` is treated as `1`.
    pub fn delay(&self, tries: u32) -> Duration {
        let i = usize::try_from(tries.max(1) - 1).unwrap_or(usize::MAX);
        self.steps.get(i).copied().unwrap_or(self.tail)
    }
}

/// Connect params: fixed, or a function called on every connect (so a game can refresh an
/// auth token that lives in the params).
#[derive(Clone)]
pub enum Params {
    /// The same params on every connect.
    Static(Vec<(String, String)>),
    /// Called on every connect attempt.
    Dynamic(Arc<dyn Fn() -> Vec<(String, String)> + Send + Sync>),
}

impl Params {
    pub(crate) fn get(&self) -> Vec<(String, String)> {
        match self {
            Params::Static(v) => v.clone(),
            Params::Dynamic(f) => f(),
        }
    }
}

impl fmt::Debug for Params {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Param values often hold tokens: never print them.
        match self {
            Params::Static(v) => {
                let keys: Vec<&str> = v.iter().map(|(k, _)| k.as_str()).collect();
                write!(f, "Params::Static(keys: {keys:?}, values redacted)")
            }
            Params::Dynamic(_) => f.write_str("Params::Dynamic(<fn>)"),
        }
    }
}

/// A function returning the auth token for the next connect (Phoenix 1.8 `auth_token: true`
/// sockets). `None` connects without a token.
pub type TokenProvider = Arc<dyn Fn() -> Option<String> + Send + Sync>;

/// Everything the protocol core needs to know. Build with [`SocketConfig::new`] and the
/// setters; every field has phoenix.js's default unless said.
#[non_exhaustive]
#[derive(Clone)]
pub struct SocketConfig {
    /// The socket endpoint, e.g. `ws://127.0.0.1:4000/socket`. `/websocket?vsn=2.0.0` and the
    /// params are appended. `http(s)://` is accepted and turned into `ws(s)://`.
    pub endpoint: String,
    /// Connect params, re-read on every connect.
    pub params: Params,
    /// Auth token provider, re-read on every connect. Sent as the WebSocket subprotocol
    /// `base64url.bearer.phx.<standard base64, no padding>`, never in the URL or logs.
    pub auth_token: Option<TokenProvider>,
    /// Heartbeat period (30 s).
    pub heartbeat_interval: Duration,
    /// No heartbeat reply within this time closes the connection and reconnects (30 s).
    pub heartbeat_timeout: Duration,
    /// Delay before each reconnect attempt.
    pub reconnect_backoff: Backoff,
    /// Delay before each rejoin attempt of an errored channel.
    pub rejoin_backoff: Backoff,
    /// Random spread of every backoff delay: a delay `d` becomes uniform in
    /// `[d * (1 - jitter), d * (1 + jitter)]`. `0.0` is phoenix.js (no jitter); the default
    /// `0.2` keeps a thousand clients from reconnecting in the same millisecond.
    pub jitter: f64,
    /// Give up after this many failed connect attempts in a row (`None` = never, the default).
    pub max_reconnect_attempts: Option<u32>,
    /// Default push timeout (10 s). Per push: [`PushOptions::timeout`](super::PushOptions).
    pub push_timeout: Duration,
    /// Join timeout (10 s), counted from when the join is sent.
    pub join_timeout: Duration,
    /// Leave timeout (10 s): the channel is closed locally when it expires.
    pub leave_timeout: Duration,
    /// Pushes buffered per channel while it is not joined (1024). Past it, a push is dropped
    /// with [`DropReason::BufferFull`](super::DropReason::BufferFull).
    pub max_buffered_pushes: usize,
    /// Bytes the transport may hold unsent (4 MiB): frames handed to it that the network has
    /// not taken yet, because the server reads slowly or not at all. A push that would take
    /// the backlog past this ends at once as
    /// [`DropReason::SendQueueFull`](super::DropReason::SendQueueFull) instead of queueing
    /// without limit; a push is always accepted while nothing is waiting, so one push larger
    /// than the bound still goes out when the line is clear. Joins, leaves and heartbeats are
    /// never held back (they are small, and the heartbeat is what detects a dead server).
    /// The adapter reports the backlog with [`Socket::handle_send_backlog`](super::Socket::handle_send_backlog).
    /// The native transport holds at most 64 MiB whatever this says: a frame past that is
    /// refused, and the plugin then ends the connection (a lost frame would break the stream);
    /// everything in flight ends as dropped and the socket reconnects.
    pub max_send_backlog: usize,
    /// Seed for the jitter random numbers (`None` = seeded from the clock). Set it in tests.
    pub rng_seed: Option<u64>,
}

impl SocketConfig {
    /// A config for `endpoint` with every default.
    pub fn new(endpoint: impl Into<String>) -> Self {
        SocketConfig {
            endpoint: endpoint.into(),
            params: Params::Static(Vec::new()),
            auth_token: None,
            heartbeat_interval: Duration::from_secs(30),
            heartbeat_timeout: Duration::from_secs(30),
            reconnect_backoff: Backoff::reconnect_default(),
            rejoin_backoff: Backoff::rejoin_default(),
            jitter: 0.2,
            max_reconnect_attempts: None,
            push_timeout: Duration::from_secs(10),
            join_timeout: Duration::from_secs(10),
            leave_timeout: Duration::from_secs(10),
            max_buffered_pushes: 1024,
            max_send_backlog: 4 << 20,
            rng_seed: None,
        }
    }

    /// Fixed connect params.
    pub fn with_params<K: Into<String>, V: Into<String>>(
        mut self,
        params: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        self.params = Params::Static(
            params
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        );
        self
    }

    /// Connect params computed on every connect.
    pub fn with_params_fn(
        mut self,
        f: impl Fn() -> Vec<(String, String)> + Send + Sync + 'static,
    ) -> Self {
        self.params = Params::Dynamic(Arc::new(f));
        self
    }

    /// An auth token provider, called on every connect.
    pub fn with_auth_token_fn(
        mut self,
        f: impl Fn() -> Option<String> + Send + Sync + 'static,
    ) -> Self {
        self.auth_token = Some(Arc::new(f));
        self
    }

    /// A fixed auth token.
    pub fn with_auth_token(self, token: impl Into<String>) -> Self {
        let token = token.into();
        self.with_auth_token_fn(move || Some(token.clone()))
    }

    /// Heartbeat interval; the timeout follows it unless set after.
    pub fn with_heartbeat(mut self, interval: Duration) -> Self {
        self.heartbeat_interval = interval;
        self.heartbeat_timeout = interval;
        self
    }

    /// Heartbeat timeout.
    pub fn with_heartbeat_timeout(mut self, timeout: Duration) -> Self {
        self.heartbeat_timeout = timeout;
        self
    }

    /// Reconnect backoff table.
    pub fn with_reconnect_backoff(mut self, b: Backoff) -> Self {
        self.reconnect_backoff = b;
        self
    }

    /// Rejoin backoff table.
    pub fn with_rejoin_backoff(mut self, b: Backoff) -> Self {
        self.rejoin_backoff = b;
        self
    }

    /// Jitter fraction, clamped to `0.0..=1.0`.
    pub fn with_jitter(mut self, jitter: f64) -> Self {
        self.jitter = if jitter.is_finite() {
            jitter.clamp(0.0, 1.0)
        } else {
            0.0
        };
        self
    }

    /// Give up after `n` failed connects in a row.
    pub fn with_max_reconnect_attempts(mut self, n: Option<u32>) -> Self {
        self.max_reconnect_attempts = n;
        self
    }

    /// Default push timeout.
    pub fn with_push_timeout(mut self, t: Duration) -> Self {
        self.push_timeout = t;
        self
    }

    /// Join timeout.
    pub fn with_join_timeout(mut self, t: Duration) -> Self {
        self.join_timeout = t;
        self
    }

    /// Leave timeout.
    pub fn with_leave_timeout(mut self, t: Duration) -> Self {
        self.leave_timeout = t;
        self
    }

    /// Per-channel buffer bound.
    pub fn with_max_buffered_pushes(mut self, n: usize) -> Self {
        self.max_buffered_pushes = n;
        self
    }

    /// Bound on unsent bytes held by the transport; see [`SocketConfig::max_send_backlog`].
    pub fn with_max_send_backlog(mut self, bytes: usize) -> Self {
        self.max_send_backlog = bytes;
        self
    }

    /// Jitter RNG seed.
    pub fn with_rng_seed(mut self, seed: u64) -> Self {
        self.rng_seed = Some(seed);
        self
    }
}

impl fmt::Debug for SocketConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SocketConfig")
            .field("endpoint", &self.endpoint)
            .field("params", &self.params)
            .field(
                "auth_token",
                &self.auth_token.as_ref().map(|_| "<provider, redacted>"),
            )
            .field("heartbeat_interval", &self.heartbeat_interval)
            .field("heartbeat_timeout", &self.heartbeat_timeout)
            .field("reconnect_backoff", &self.reconnect_backoff)
            .field("rejoin_backoff", &self.rejoin_backoff)
            .field("jitter", &self.jitter)
            .field("max_reconnect_attempts", &self.max_reconnect_attempts)
            .field("push_timeout", &self.push_timeout)
            .field("join_timeout", &self.join_timeout)
            .field("leave_timeout", &self.leave_timeout)
            .field("max_buffered_pushes", &self.max_buffered_pushes)
            .field("max_send_backlog", &self.max_send_backlog)
            .finish_non_exhaustive()
    }
}

/// Percent-encodes a query component (RFC 3986 unreserved characters pass through).
pub(crate) fn push_query_component(out: &mut String, s: &str) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in s.as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0xf)]));
        }
    }
}

/// The WebSocket URL for `endpoint` and `params`: `endpoint/websocket?params&vsn=2.0.0`.
pub fn websocket_url(endpoint: &str, params: &[(String, String)]) -> String {
    // An endpoint may carry its own query (`ws://h/socket?region=eu`): keep it, before ours.
    let (endpoint, own_query) = match endpoint.split_once('?') {
        Some((e, q)) => (e, q.trim_matches('&')),
        None => (endpoint, ""),
    };
    let endpoint = endpoint.trim_end_matches('/');
    let mut url = String::with_capacity(endpoint.len() + 64);
    if let Some(rest) = endpoint.strip_prefix("http://") {
        url.push_str("ws://");
        url.push_str(rest);
    } else if let Some(rest) = endpoint.strip_prefix("https://") {
        url.push_str("wss://");
        url.push_str(rest);
    } else {
        url.push_str(endpoint);
    }
    if !url.ends_with("/websocket") {
        url.push_str("/websocket");
    }
    url.push('?');
    if !own_query.is_empty() {
        url.push_str(own_query);
        url.push('&');
    }
    for (k, v) in params {
        if k == "vsn" {
            continue;
        }
        push_query_component(&mut url, k);
        url.push('=');
        push_query_component(&mut url, v);
        url.push('&');
    }
    url.push_str("vsn=");
    url.push_str(super::wire::names::VSN);
    url
}

/// The subprotocols to offer for `token` (Phoenix 1.8 `auth_token: true`):
/// `["phoenix", "base64url.bearer.phx." + standard base64 without padding]`.
///
/// Phoenix decodes the token with `Base.decode64!(t, padding: false)`: the standard alphabet,
/// despite the "base64url" label (see ../shared/phoenix-wire-1.8/SUMMARY.md).
pub fn auth_subprotocols(token: &str) -> Vec<String> {
    use base64::Engine as _;
    let enc = base64::engine::general_purpose::STANDARD_NO_PAD.encode(token.as_bytes());
    vec!["phoenix".to_owned(), format!("base64url.bearer.phx.{enc}")]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_building() {
        let p = vec![
            ("token".to_owned(), "a b&c=d/é".to_owned()),
            ("user_id".to_owned(), "x".to_owned()),
        ];
        assert_eq!(
            websocket_url("ws://h:4000/socket", &p),
            "ws://h:4000/socket/websocket?token=a%20b%26c%3Dd%2F%C3%A9&user_id=x&vsn=2.0.0"
        );
        assert_eq!(
            websocket_url("https://h/socket/", &[]),
            "wss://h/socket/websocket?vsn=2.0.0"
        );
        assert_eq!(
            websocket_url("ws://h/socket/websocket", &[("vsn".into(), "1".into())]),
            "ws://h/socket/websocket?vsn=2.0.0"
        );
        assert_eq!(
            websocket_url("ws://h/socket?region=eu", &[("a".into(), "b".into())]),
            "ws://h/socket/websocket?region=eu&a=b&vsn=2.0.0"
        );
    }

    #[test]
    fn token_header_matches_phoenix_1_8() {
        // ../shared/phoenix-wire-1.8/SUMMARY.md: good-token -> Z29vZC10b2tlbg
        assert_eq!(
            auth_subprotocols("good-token"),
            vec!["phoenix", "base64url.bearer.phx.Z29vZC10b2tlbg"]
        );
        // "??>" is Pz8+ in the standard alphabet (not the URL-safe Pz8-).
        assert_eq!(auth_subprotocols("??>")[1], "base64url.bearer.phx.Pz8+");
    }

    #[test]
    fn backoff_tables() {
        let r = Backoff::reconnect_default();
        let got: Vec<u64> = (1..=11).map(|t| r.delay(t).as_millis() as u64).collect();
        assert_eq!(
            got,
            vec![10, 50, 100, 150, 200, 250, 500, 1000, 2000, 5000, 5000]
        );
        let j = Backoff::rejoin_default();
        let got: Vec<u64> = (1..=5).map(|t| j.delay(t).as_secs()).collect();
        assert_eq!(got, vec![1, 2, 5, 10, 10]);
        assert_eq!(j.delay(0), Duration::from_secs(1));
        assert_eq!(j.delay(u32::MAX), Duration::from_secs(10));
    }
}
