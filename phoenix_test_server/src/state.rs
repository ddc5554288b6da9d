//! Plain data of one server that every part reads: the configuration ([`Config`],
//! [`PhoenixVersion`]), the fault switches the connection threads obey ([`FaultState`]) and the
//! listener's refusal state ([`AcceptCtl`], [`Refusal`]), the frame counters ([`Stats`]) and the
//! connect log entry ([`ConnectInfo`]).
//!
//! Depends only on `locks`: no connections, channels, pubsub or threads here. The `Shared` struct
//! that bundles these with the registry and pubsub lives in `shared`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::locks::lock;

/// Which Phoenix release to imitate where 1.7.24 and 1.8.12 differ on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PhoenixVersion {
    /// Phoenix 1.7.24: `phx_error` payload `{}`, pushes with a stale join_ref are delivered,
    /// server disconnect closes with 1000.
    #[default]
    V1_7,
    /// Phoenix 1.8.12: `phx_error` payload `{"reason":"channel_crash"}`, pushes (and leaves) whose
    /// join_ref is not null and not the channel's current one are dropped, server disconnect
    /// closes with 1001.
    V1_8,
}

/// How [`Faults::refuse_connections`] refuses.
///
/// [`Faults::refuse_connections`]: crate::Faults::refuse_connections
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Answer the upgrade request with HTTP 403 (what a refused connect/3 does).
    Http403,
    /// Stop listening on the port (connect fails with "connection refused"); the same port is
    /// bound again when connections are allowed.
    TcpRefused,
}

/// One connect attempt, as seen by the server.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConnectInfo {
    /// The decoded query parameters (`vsn`, `token`, ...).
    pub params: BTreeMap<String, String>,
    /// The decoded auth token from `Sec-WebSocket-Protocol`, if there was exactly one.
    pub auth_token: Option<String>,
    /// The connection was upgraded (HTTP 101).
    pub accepted: bool,
    /// The HTTP status answered (101, 403 or 500).
    pub status: u16,
}

pub(crate) type ConnectCheck =
    Arc<dyn Fn(&BTreeMap<String, String>, Option<&str>) -> bool + Send + Sync>;

/// The builder's settings (the channel routes are kept apart, in `channel::Routes`, because they
/// name the `Channel` trait).
pub(crate) struct Config {
    pub idle_timeout: Duration,
    pub send_timeout: Duration,
    pub auth_token: bool,
    pub max_channels: usize,
    pub version: PhoenixVersion,
    /// Answer undecodable frames with an error reply instead of closing (see the builder).
    pub tolerate_bad_frames: bool,
    /// Canonical directory served over plain HTTP (set by `start` from the builder's path).
    pub static_dir: Option<PathBuf>,
    pub connect_check: Option<ConnectCheck>,
}

/// The fault switches, read by the connection threads.
pub(crate) struct FaultState {
    pub answer_heartbeats: AtomicBool,
    pub stop_reading: AtomicBool,
    reading_mx: Mutex<()>,
    reading_cv: Condvar,
    pub delay_outgoing_ns: AtomicU64,
    pub drop_outgoing: AtomicBool,
    close_after_gen: AtomicU64,
    close_after_n: AtomicU64,
}

impl FaultState {
    pub(crate) fn new() -> Self {
        FaultState {
            answer_heartbeats: AtomicBool::new(true),
            stop_reading: AtomicBool::new(false),
            reading_mx: Mutex::new(()),
            reading_cv: Condvar::new(),
            delay_outgoing_ns: AtomicU64::new(0),
            drop_outgoing: AtomicBool::new(false),
            close_after_gen: AtomicU64::new(0),
            close_after_n: AtomicU64::new(u64::MAX),
        }
    }

    /// (generation, frames left before closing).
    pub(crate) fn close_after(&self) -> (u64, Option<u64>) {
        let g = self.close_after_gen.load(Ordering::Acquire);
        let n = self.close_after_n.load(Ordering::Acquire);
        (g, (n != u64::MAX).then_some(n))
    }

    /// Sets the close-after-frames budget (`None`: off) and starts a new generation of it; the
    /// writers pick it up when woken.
    pub(crate) fn set_close_after(&self, n: Option<u64>) {
        self.close_after_n
            .store(n.unwrap_or(u64::MAX), Ordering::Release);
        self.close_after_gen.fetch_add(1, Ordering::AcqRel);
    }

    /// Turns the slow-consumer switch on or off and wakes the readers parked by it.
    pub(crate) fn set_stop_reading(&self, yes: bool) {
        self.stop_reading.store(yes, Ordering::SeqCst);
        let _g = lock(&self.reading_mx);
        self.reading_cv.notify_all();
    }

    /// Blocks while `stop_reading` is on, unless `abort()` becomes true.
    pub(crate) fn wait_reading_allowed(&self, abort: impl Fn() -> bool) {
        let mut g = lock(&self.reading_mx);
        while self.stop_reading.load(Ordering::SeqCst) && !abort() {
            g = self
                .reading_cv
                .wait_timeout(g, Duration::from_millis(50))
                .map(|r| r.0)
                .unwrap_or_else(|e| e.into_inner().0);
        }
    }
}

#[derive(Default)]
pub(crate) struct Stats {
    pub frames_received: AtomicU64,
    pub frames_sent: AtomicU64,
}

/// The listener's refusal state (see `Faults::refuse_connections`).
#[derive(Default)]
pub(crate) struct AcceptCtl {
    pub refusal: Option<(Refusal, Option<Instant>)>,
    pub listening: bool,
    pub closed_gen: u64,
}

impl AcceptCtl {
    pub(crate) fn active(&self, how: Refusal) -> bool {
        match self.refusal {
            Some((r, deadline)) if r == how => deadline.is_none_or(|d| Instant::now() < d),
            _ => false,
        }
    }
}
