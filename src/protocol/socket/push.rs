//! The push table: every push in flight or buffered, keyed by its ref in a cheap-hash map, with
//! its deadline in a heap. `push()`, buffering while a channel cannot send and the flush when it
//! joins, timeouts (pushes, joins, leaves), dropping pushes that can never be answered, and the
//! one reply event each push ends with.

use std::cmp::Reverse;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

use web_time::Instant;

use super::channel::Slot;
use super::{
    ChannelError, ChannelState, CloseReason, Conn, DropReason, Event, EventName, PushOptions,
    PushOutcome, PushReply, Socket,
};
use crate::protocol::Transmit;
use crate::protocol::payload::{ChannelId, OutPayload, PushId};
use crate::protocol::wire::{EncodeError, encode_binary_push, encode_text, names};

/// Hasher for our u64 refs: a multiply-shift, no SipHash rounds.
#[derive(Default, Clone, Copy)]
pub(super) struct RefHasher(u64);

impl Hasher for RefHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(5) ^ u64::from(b)).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n.wrapping_mul(0x9e37_79b9_7f4a_7c15).rotate_left(32);
    }
}

pub(super) type RefMap<V> = HashMap<u64, V, BuildHasherDefault<RefHasher>>;

#[derive(Debug)]
pub(super) enum PushKind {
    User {
        event: EventName,
        /// Kept while buffered; `None` once sent.
        payload: Option<OutPayload>,
        fire_and_forget: bool,
        tag: u64,
    },
    Join,
    Leave {
        reason: CloseReason,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum PushState {
    /// Waiting in the channel buffer. `stale_for` is the join_ref it belongs to when it was
    /// buffered while the socket was down on an already-joined channel.
    Buffered { stale_for: Option<u64> },
    /// Sent; waiting for the reply.
    InFlight,
}

#[derive(Debug)]
pub(super) struct Push {
    pub(super) channel: ChannelId,
    pub(super) kind: PushKind,
    pub(super) deadline: Option<Instant>,
    pub(super) state: PushState,
}

impl Socket {
    /// Pushes `event` with `payload` on a channel. The outcome arrives as an
    /// [`Event::Reply`] with the returned id, always exactly once.
    pub fn push(
        &mut self,
        now: Instant,
        channel: ChannelId,
        event: &str,
        payload: OutPayload,
        options: PushOptions,
    ) -> PushId {
        let id = self.make_ref();
        let name = self.intern(event);
        let Some(c) = self.chan(channel) else {
            self.events.push_back(Event::Reply(PushReply {
                push: PushId(id),
                channel,
                topic: Arc::from(""),
                event: name,
                tag: options.tag,
                outcome: PushOutcome::Dropped(DropReason::ChannelClosed),
            }));
            return PushId(id);
        };
        let topic = c.topic.clone();
        let state = c.state;
        let ever_joined = c.ever_joined;
        let join_ref = c.join_ref;
        let buffered = c.buffered;
        // Fire-and-forget pushes sent at once need no timer (and get none: they are not kept);
        // buffered ones do, or they could wait forever for a join that never comes.
        let deadline = Some(now + options.timeout.unwrap_or(self.config.push_timeout));
        let reply = |outcome| {
            Event::Reply(PushReply {
                push: PushId(id),
                channel,
                topic: topic.clone(),
                event: name.clone(),
                tag: options.tag,
                outcome,
            })
        };
        match state {
            ChannelState::Closed | ChannelState::Leaving => {
                self.events
                    .push_back(reply(PushOutcome::Dropped(DropReason::ChannelClosed)));
            }
            ChannelState::Joined if self.conn == Conn::Open => {
                let frame = encode_push(join_ref, id, &topic, event, &payload);
                match frame {
                    Err(e) => self
                        .events
                        .push_back(reply(PushOutcome::Dropped(DropReason::Encode(e)))),
                    Ok(t) if !self.backlog_allows(t.len()) => self
                        .events
                        .push_back(reply(PushOutcome::Dropped(DropReason::SendQueueFull))),
                    Ok(t) => {
                        self.transmit(t);
                        if options.fire_and_forget {
                            self.events.push_back(reply(PushOutcome::Sent));
                        } else {
                            self.insert_push(
                                id,
                                Push {
                                    channel,
                                    kind: PushKind::User {
                                        event: name.clone(),
                                        tag: options.tag,
                                        payload: None,
                                        fire_and_forget: false,
                                    },
                                    deadline,
                                    state: PushState::InFlight,
                                },
                            );
                        }
                    }
                }
            }
            _ => {
                if buffered >= self.config.max_buffered_pushes {
                    self.events
                        .push_back(reply(PushOutcome::Dropped(DropReason::BufferFull)));
                    return PushId(id);
                }
                let stale_for = if self.conn != Conn::Open && ever_joined {
                    join_ref
                } else {
                    None
                };
                self.insert_push(
                    id,
                    Push {
                        channel,
                        kind: PushKind::User {
                            event: name.clone(),
                            tag: options.tag,
                            payload: Some(payload),
                            fire_and_forget: options.fire_and_forget,
                        },
                        deadline,
                        state: PushState::Buffered { stale_for },
                    },
                );
                let pushes = &self.pushes;
                if let Some(Slot::Used(c)) = self.channels.get_mut(channel.index as usize) {
                    c.buffer.push_back(id);
                    c.buffered += 1;
                    // Ids of pushes that timed out while buffered are skipped lazily; compact
                    // now and then so a channel that never joins does not grow without bound.
                    if c.buffer.len() > 2 * c.buffered + 64 {
                        c.buffer.retain(|r| pushes.contains_key(r));
                    }
                }
            }
        }
        PushId(id)
    }

    pub(super) fn insert_push(&mut self, r: u64, push: Push) {
        if let Some(d) = push.deadline {
            // Answered pushes leave their deadline behind (removed lazily when it passes).
            // When those outnumber the live ones, drop them all at once: amortized O(1), and
            // the heap stays proportional to what is really in flight.
            if self.deadlines.len() > 2 * self.pushes.len() + 1024 {
                let pushes = &self.pushes;
                self.deadlines.retain(|Reverse((d, r))| {
                    pushes.get(r).is_some_and(|p| p.deadline == Some(*d))
                });
            }
            self.deadlines.push(Reverse((d, r)));
        }
        self.pushes.insert(r, push);
    }

    /// Drops the deadlines of ended pushes from the top of the heap, so that an answered
    /// push's deadline does not stay the socket's next timer (a spare wake-up when it passes).
    /// Replies mostly come in push order, so this usually pops the one entry just answered.
    pub(super) fn prune_deadlines(&mut self) {
        while let Some(&Reverse((d, r))) = self.deadlines.peek() {
            if self.pushes.get(&r).is_some_and(|p| p.deadline == Some(d)) {
                break;
            }
            self.deadlines.pop();
        }
    }

    /// Ends every buffered push of a channel with `reason`.
    pub(super) fn drop_buffered(&mut self, id: ChannelId, reason: DropReason) {
        let Some(c) = self.chan_mut(id) else { return };
        let ids: Vec<u64> = c.buffer.drain(..).collect();
        c.buffered = 0;
        for r in ids {
            if let Some(p) = self.pushes.remove(&r)
                && let PushKind::User { event, tag, .. } = p.kind
            {
                self.reply_event(r, id, event, tag, PushOutcome::Dropped(reason.clone()));
            }
        }
    }

    /// Ends every in-flight user push of a channel with `reason`.
    pub(super) fn drop_in_flight(&mut self, id: ChannelId, reason: DropReason) {
        let rs: Vec<u64> = self
            .pushes
            .iter()
            .filter(|(_, p)| {
                p.channel == id
                    && p.state == PushState::InFlight
                    && matches!(p.kind, PushKind::User { .. })
            })
            .map(|(r, _)| *r)
            .collect();
        for r in rs {
            if let Some(p) = self.pushes.remove(&r)
                && let PushKind::User { event, tag, .. } = p.kind
            {
                self.reply_event(r, id, event, tag, PushOutcome::Dropped(reason.clone()));
            }
        }
    }

    pub(super) fn reply_event(
        &mut self,
        r: u64,
        channel: ChannelId,
        event: EventName,
        tag: u64,
        outcome: PushOutcome,
    ) {
        let topic = self
            .chan(channel)
            .map(|c| c.topic.clone())
            .unwrap_or_else(|| Arc::from(""));
        self.events.push_back(Event::Reply(PushReply {
            push: PushId(r),
            channel,
            topic,
            event,
            tag,
            outcome,
        }));
    }

    pub(super) fn expire_push(&mut self, now: Instant, r: u64) {
        let Some(p) = self.pushes.remove(&r) else {
            return;
        };
        match p.kind {
            PushKind::User { event, tag, .. } => {
                if let PushState::Buffered { .. } = p.state
                    && let Some(c) = self.chan_mut(p.channel)
                {
                    c.buffered = c.buffered.saturating_sub(1);
                }
                self.reply_event(r, p.channel, event, tag, PushOutcome::Timeout);
            }
            PushKind::Join => {
                let Some(c) = self.chan_mut(p.channel) else {
                    return;
                };
                if c.join_ref != Some(r) || c.state != ChannelState::Joining {
                    return;
                }
                c.join_pending = false;
                c.state = ChannelState::Errored;
                let topic = c.topic.clone();
                // phoenix.js sends phx_leave so the server drops a join it may still finish.
                if self.conn == Conn::Open {
                    let lr = self.make_ref();
                    self.transmit(Transmit::Text(encode_text(
                        Some(r),
                        Some(lr),
                        &topic,
                        names::LEAVE,
                        "{}",
                    )));
                }
                self.events.push_back(Event::ChannelErrored {
                    channel: p.channel,
                    topic,
                    reason: ChannelError::JoinTimeout,
                });
                if self.conn == Conn::Open {
                    self.schedule_rejoin(now, p.channel);
                }
            }
            PushKind::Leave { reason } => self.close_channel(p.channel, reason),
        }
    }

    /// Sends (or drops as outdated) every buffered push of a channel that just joined.
    pub(super) fn flush_buffer(&mut self, id: ChannelId) {
        let Some(c) = self.chan_mut(id) else { return };
        let ids: Vec<u64> = c.buffer.drain(..).collect();
        c.buffered = 0;
        let join_ref = c.join_ref;
        let topic = c.topic.clone();
        for r in ids {
            let Some(p) = self.pushes.get_mut(&r) else {
                continue;
            };
            let PushState::Buffered { stale_for } = p.state else {
                continue;
            };
            if stale_for.is_some() && stale_for != join_ref {
                self.end_push(r, id, PushOutcome::Dropped(DropReason::Outdated));
                continue;
            }
            let PushKind::User {
                event,
                payload,
                fire_and_forget,
                ..
            } = &mut p.kind
            else {
                continue;
            };
            let Some(payload) = payload.take() else {
                continue;
            };
            let frame = encode_push(join_ref, r, &topic, event, &payload);
            let faf = *fire_and_forget;
            match frame {
                Err(e) => self.end_push(r, id, PushOutcome::Dropped(DropReason::Encode(e))),
                Ok(t) if !self.backlog_allows(t.len()) => {
                    self.end_push(r, id, PushOutcome::Dropped(DropReason::SendQueueFull));
                }
                Ok(t) => {
                    self.transmit(t);
                    if faf {
                        self.end_push(r, id, PushOutcome::Sent);
                    } else if let Some(p) = self.pushes.get_mut(&r) {
                        p.state = PushState::InFlight;
                    }
                }
            }
        }
    }

    /// Removes user push `r` of channel `id` and reports its one `outcome`.
    fn end_push(&mut self, r: u64, id: ChannelId, outcome: PushOutcome) {
        if let Some(p) = self.pushes.remove(&r)
            && let PushKind::User { event, tag, .. } = p.kind
        {
            self.reply_event(r, id, event, tag, outcome);
        }
    }
}

fn encode_push(
    join_ref: Option<u64>,
    r: u64,
    topic: &str,
    event: &str,
    payload: &OutPayload,
) -> Result<Transmit, EncodeError> {
    match payload {
        OutPayload::Json(j) => Ok(Transmit::Text(encode_text(
            join_ref,
            Some(r),
            topic,
            event,
            j.get(),
        ))),
        OutPayload::Binary(b) => {
            let jr = join_ref.map(|j| j.to_string()).unwrap_or_default();
            encode_binary_push(&jr, &r.to_string(), topic, event, b).map(Transmit::Binary)
        }
    }
}
