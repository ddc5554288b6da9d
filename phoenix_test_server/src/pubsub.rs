//! Topic subscriptions and broadcasts (Phoenix.PubSub, local only), shared by all connections of
//! one server.
//!
//! Owns the subscriber table ([`PubSub`]). Depends only on `peer` (a subscriber is a client's
//! outgoing side), `serializer` and `locks`; never on the socket process, the channel API or the
//! server.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use crate::locks::{read, write};
use crate::peer::Peer;
use crate::serializer::{self, Encoded, Payload, Serializer, Unencodable};

/// Subscribers of one topic: (channel id, connection).
type Subscribers = Vec<(u64, Arc<Peer>)>;

/// Subscribers per topic.
#[derive(Default)]
pub(crate) struct PubSub {
    topics: RwLock<HashMap<String, Subscribers>>,
}

impl PubSub {
    pub(crate) fn subscribe(&self, topic: &str, chan_id: u64, conn: Arc<Peer>) {
        write(&self.topics)
            .entry(topic.to_string())
            .or_default()
            .push((chan_id, conn));
    }

    pub(crate) fn unsubscribe(&self, topic: &str, chan_id: u64) {
        let mut topics = write(&self.topics);
        if let Some(subs) = topics.get_mut(topic) {
            subs.retain(|(id, _)| *id != chan_id);
            if subs.is_empty() {
                topics.remove(topic);
            }
        }
    }

    /// Sends `[null, null, topic, event, payload]` (or a kind-2 frame) to every subscriber except
    /// the channel `except`. Encoded once per serializer ("fastlane").
    pub(crate) fn broadcast(
        &self,
        topic: &str,
        event: &str,
        payload: &Payload,
        except: Option<u64>,
    ) {
        let topics = read(&self.topics);
        let Some(subs) = topics.get(topic) else {
            return;
        };
        let mut v2: Option<Result<Arc<Encoded>, Unencodable>> = None;
        let mut v1: Option<Result<Arc<Encoded>, Unencodable>> = None;
        for (id, conn) in subs {
            if Some(*id) == except {
                continue;
            }
            let slot = match conn.ser {
                Serializer::V2 => &mut v2,
                Serializer::V1 => &mut v1,
            };
            let enc = slot.get_or_insert_with(|| {
                serializer::broadcast(conn.ser, topic, event, payload).map(Arc::new)
            });
            match enc {
                Ok(e) => conn.send_shared(e),
                Err(_) => conn.close(1011, ""),
            }
        }
    }

    /// Number of subscribers of a topic.
    pub(crate) fn count(&self, topic: &str) -> usize {
        read(&self.topics).get(topic).map_or(0, Vec::len)
    }
}
