//! The public [`ServerHandle`]: a cloneable handle on a running server's [`Shared`] state, given
//! out by `TestServer::handle` and `ChannelContext::server`.
//!
//! Depends on `shared` (and the plain types it holds), `serializer` and `locks`. It reaches
//! connections only through the registry's `Connection` trait, so the channel API can hand out
//! a handle without depending on the server or the socket process.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use crate::locks::lock;
use crate::serializer::Payload;
use crate::shared::{Connection, Shared};
use crate::state::PhoenixVersion;

/// A cloneable handle on a running server, for channel code and other threads.
#[derive(Clone)]
pub struct ServerHandle {
    pub(crate) shared: Arc<Shared>,
}

impl std::fmt::Debug for ServerHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerHandle")
            .field("addr", &self.shared.addr)
            .finish()
    }
}

impl ServerHandle {
    /// `Endpoint.broadcast(topic, event, payload)`.
    pub fn broadcast(&self, topic: &str, event: &str, payload: impl Into<Payload>) {
        self.shared
            .pubsub
            .broadcast(topic, event, &payload.into(), None);
    }

    /// `Endpoint.broadcast(socket_id, "disconnect", %{})`: closes those websockets (code 1000, or
    /// 1001 with [`PhoenixVersion::V1_8`]); no `phx_close`/`phx_error` is sent.
    pub fn disconnect(&self, socket_id: &str) {
        let code = match self.shared.config.version {
            PhoenixVersion::V1_7 => 1000,
            PhoenixVersion::V1_8 => 1001,
        };
        for c in lock(&self.shared.conns).values() {
            let peer = c.peer();
            if peer.socket_id == socket_id {
                peer.close(code, "");
            }
        }
    }

    /// `Presence.list(topic)`.
    pub fn presence_list(&self, topic: &str) -> Value {
        self.shared.presence.list(topic)
    }

    /// Number of channels subscribed to `topic` on this server.
    pub fn subscribers(&self, topic: &str) -> usize {
        self.shared.pubsub.count(topic)
    }

    /// Sends `msg` to `handle_info` of every channel joined to `topic` (asynchronously, so it is
    /// safe to call from a channel callback).
    pub fn send_info(&self, topic: &str, msg: Value) {
        let weak = Arc::downgrade(&self.shared);
        let topic = topic.to_string();
        self.shared.timers.schedule(Duration::ZERO, move || {
            let Some(shared) = weak.upgrade() else { return };
            let conns: Vec<Arc<dyn Connection>> = lock(&shared.conns).values().cloned().collect();
            for c in conns {
                c.deliver_info(&shared, &topic, None, msg.clone());
            }
        });
    }

    /// Runs `f` on the server's timer thread after `delay`.
    pub fn run_after(&self, delay: Duration, f: impl FnOnce() + Send + 'static) {
        self.shared.timers.schedule(delay, f);
    }
}
