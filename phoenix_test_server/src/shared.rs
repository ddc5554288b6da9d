//! [`Shared`]: everything the threads of one server share, in one place: the configuration and
//! fault switches (`state`), the connection registry, pubsub, presence, the timer queue, the
//! counters, the connect log and the listener's bookkeeping.
//!
//! Depends on `state`, `peer`, `pubsub`, `presence`, `timer` and `locks`, never on the socket
//! process (`conn`), the channel API or the server: the registry holds connections through the
//! [`Connection`] trait, which the socket process implements.

use std::collections::HashMap;
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

use serde_json::Value;

use crate::peer::Peer;
use crate::presence::Presence;
use crate::pubsub::PubSub;
use crate::state::{AcceptCtl, Config, ConnectInfo, FaultState, Stats};
use crate::timer::Timers;

/// A registered websocket, as code outside its socket process reaches it (the registry,
/// `ServerHandle`, `ChannelContext`). Implemented by the socket process, `conn::Conn`, which owns
/// the joined channels; going through this trait keeps this module and the channel API free of
/// channel storage, so they sit below `conn`.
pub(crate) trait Connection: Send + Sync {
    /// The client's identity and outgoing side.
    fn peer(&self) -> &Arc<Peer>;

    /// Delivers `msg` to `handle_info` of the channel on `topic` (only if it is still join
    /// `chan_id`), on the calling thread.
    fn deliver_info(
        self: Arc<Self>,
        shared: &Arc<Shared>,
        topic: &str,
        chan_id: Option<u64>,
        msg: Value,
    );
}

/// Everything the threads of one server share.
pub(crate) struct Shared {
    pub config: Config,
    pub fault_state: Arc<FaultState>,
    pub addr: SocketAddr,
    /// The connection registry: open websockets by connection id.
    pub conns: Mutex<HashMap<u64, Arc<dyn Connection>>>,
    pub sockets: Mutex<HashMap<u64, TcpStream>>,
    pub threads: Mutex<Vec<JoinHandle<()>>>,
    pub pubsub: PubSub,
    pub presence: Presence,
    pub timers: Timers,
    pub stats: Stats,
    pub log: Mutex<Vec<ConnectInfo>>,
    ids: AtomicU64,
    pub accept: Mutex<AcceptCtl>,
    pub accept_cv: Condvar,
    pub shutdown: AtomicBool,
}

impl Shared {
    /// The state of a server listening on `addr` (listening, no connections, no faults).
    pub(crate) fn new(config: Config, addr: SocketAddr) -> Self {
        Shared {
            config,
            fault_state: Arc::new(FaultState::new()),
            addr,
            conns: Mutex::new(HashMap::new()),
            sockets: Mutex::new(HashMap::new()),
            threads: Mutex::new(Vec::new()),
            pubsub: PubSub::default(),
            presence: Presence::default(),
            timers: Timers::default(),
            stats: Stats::default(),
            log: Mutex::new(Vec::new()),
            ids: AtomicU64::new(0),
            accept: Mutex::new(AcceptCtl {
                listening: true,
                ..AcceptCtl::default()
            }),
            accept_cv: Condvar::new(),
            shutdown: AtomicBool::new(false),
        }
    }

    pub(crate) fn next_id(&self) -> u64 {
        self.ids.fetch_add(1, Ordering::Relaxed) + 1
    }
}
