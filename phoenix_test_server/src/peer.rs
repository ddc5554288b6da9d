//! One connected client as the rest of the server reaches it: its identity (socket id, connect
//! params, auth token, serializer) and its outgoing side (the writer thread's queue, and the TCP
//! socket to drop). Pubsub, `ReplyHandle` and the connection registry hold a [`Peer`]; the
//! socket process that owns the channels (`conn`) holds one too.
//!
//! Depends on `serializer` (encoded frames), `state` (the outgoing faults) and `locks`; it knows
//! nothing of channels, so everything that sends to a client can sit below the channel API.

use std::collections::BTreeMap;
use std::net::{Shutdown, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Sender;
use std::time::{Duration, Instant};

use crate::serializer::{Encoded, Serializer, Unencodable};
use crate::state::FaultState;

/// Outgoing frame bytes, owned (push, reply) or shared between subscribers (broadcast).
pub(crate) enum Data {
    Owned(Vec<u8>),
    Shared(Arc<Encoded>),
}

/// An item of the writer's queue.
pub(crate) enum Out {
    Frame {
        binary: bool,
        data: Data,
        not_before: Option<Instant>,
    },
    Pong(Vec<u8>),
    /// Send a close frame, then end the connection.
    Close(u16, String),
    /// Re-read the close-after-frames fault.
    Check,
    /// Stop writing (the reader has finished).
    Shutdown,
}

/// A connected websocket, as seen from outside its socket process.
pub(crate) struct Peer {
    pub id: u64,
    pub ser: Serializer,
    pub socket_id: String,
    pub params: BTreeMap<String, String>,
    pub auth_token: Option<String>,
    /// The writer thread's queue.
    pub out: Sender<Out>,
    /// A close frame was sent (or the TCP connection is being dropped): ignore further input.
    pub closing: AtomicBool,
    pub tcp: TcpStream,
    pub faults: Arc<FaultState>,
}

impl std::fmt::Debug for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Peer")
            .field("id", &self.id)
            .field("socket_id", &self.socket_id)
            .finish()
    }
}

impl Peer {
    fn not_before(&self) -> Option<Instant> {
        let d = self.faults.delay_outgoing_ns.load(Ordering::Relaxed);
        (d > 0).then(|| Instant::now() + Duration::from_nanos(d))
    }

    /// Queues an encoded frame; an unencodable one takes the socket down like in Phoenix (1011).
    pub(crate) fn send_encoded(&self, enc: Result<Encoded, Unencodable>) {
        match enc {
            Ok(e) => {
                let _ = self.out.send(Out::Frame {
                    binary: e.binary,
                    data: Data::Owned(e.data),
                    not_before: self.not_before(),
                });
            }
            Err(_) => self.close(1011, ""),
        }
    }

    pub(crate) fn send_shared(&self, enc: &Arc<Encoded>) {
        let _ = self.out.send(Out::Frame {
            binary: enc.binary,
            data: Data::Shared(enc.clone()),
            not_before: self.not_before(),
        });
    }

    /// Sends a close frame with `code` and ends the connection.
    pub(crate) fn close(&self, code: u16, reason: &str) {
        let _ = self.out.send(Out::Close(code, reason.to_string()));
    }

    /// Drops the TCP connection without a close frame (the client sees 1006).
    pub(crate) fn kill(&self) {
        self.closing.store(true, Ordering::SeqCst);
        let _ = self.tcp.shutdown(Shutdown::Both);
    }

    pub(crate) fn wake_writer(&self) {
        let _ = self.out.send(Out::Check);
    }
}
