//! Channels: the private `Channel` record and its slot table, join, leave and rejoin (with its
//! backoff), the join_ref bookkeeping that tells a channel's current join from a stale one, and
//! closing a channel for good.

use std::collections::VecDeque;
use std::sync::Arc;

use web_time::Instant;

use super::push::{Push, PushKind, PushState};
use super::{ChannelState, CloseReason, Conn, DropReason, Event, JoinOptions, Socket, min_opt};
use crate::protocol::Transmit;
use crate::protocol::payload::{ChannelId, OutPayload, Topic};
use crate::protocol::presence::PresenceTracker;
use crate::protocol::wire::{encode_text, names};

#[derive(Debug)]
pub(super) struct Channel {
    pub(super) id: ChannelId,
    /// Creation order: joins and rejoins go out in the order the app joined (as phoenix.js
    /// iterates its channel list), whatever slot a channel reuses.
    seq: u64,
    pub(super) topic: Topic,
    pub(super) state: ChannelState,
    pub(super) join_payload: OutPayload,
    pub(super) join_ref: Option<u64>,
    /// The join push in flight, if any (its ref = join_ref).
    pub(super) join_pending: bool,
    pub(super) ever_joined: bool,
    /// Why the channel is leaving (meaningful in [`ChannelState::Leaving`]): the close that
    /// ends the leave carries it, whether the leave reply or the server's `phx_close` comes first.
    pub(super) leave_reason: CloseReason,
    pub(super) rejoin_tries: u32,
    pub(super) rejoin_at: Option<Instant>,
    /// Buffered push ids in order. Entries whose push has ended are skipped lazily.
    pub(super) buffer: VecDeque<u64>,
    pub(super) buffered: usize,
    pub(super) presence: Option<PresenceTracker>,
}

#[derive(Debug)]
pub(super) enum Slot {
    Free { next_generation: u32 },
    Used(Box<Channel>),
}

impl Socket {
    /// Joins `topic` with `payload` (JSON). A live channel of the same topic is left first
    /// (closed as [`CloseReason::Replaced`]). The join is sent now if the socket is open,
    /// else when it opens.
    pub fn join(
        &mut self,
        now: Instant,
        topic: &str,
        payload: OutPayload,
        options: JoinOptions,
    ) -> ChannelId {
        if let Some(old) = self.topics.get(topic).copied() {
            self.leave_with(now, old, CloseReason::Replaced);
        }
        let topic: Topic = Arc::from(topic);
        let index = match self.free.pop() {
            Some(i) => i,
            None => {
                self.channels.push(Slot::Free { next_generation: 0 });
                u32::try_from(self.channels.len() - 1).unwrap_or(u32::MAX)
            }
        };
        let generation = match self.channels.get(index as usize) {
            Some(Slot::Free { next_generation }) => *next_generation,
            _ => 0,
        };
        let id = ChannelId { index, generation };
        self.next_channel_seq += 1;
        let channel = Channel {
            id,
            seq: self.next_channel_seq,
            topic: topic.clone(),
            state: ChannelState::Joining,
            join_payload: payload,
            join_ref: None,
            join_pending: false,
            ever_joined: false,
            leave_reason: CloseReason::Left,
            rejoin_tries: 0,
            rejoin_at: None,
            buffer: VecDeque::new(),
            buffered: 0,
            presence: options.presence.then(PresenceTracker::new),
        };
        if let Some(slot) = self.channels.get_mut(index as usize) {
            *slot = Slot::Used(Box::new(channel));
        }
        self.topics.insert(topic, id);
        if self.conn == Conn::Open {
            self.send_join(now, id);
        }
        id
    }

    /// Leaves a channel: `phx_leave`, then [`Event::ChannelClosed`] with
    /// [`CloseReason::Left`] on the reply or the leave timeout (at once if it cannot be sent).
    pub fn leave(&mut self, now: Instant, channel: ChannelId) {
        self.leave_with(now, channel, CloseReason::Left);
    }

    /// The channels for which `pick` holds, in the order they were joined.
    pub(super) fn channels_in_join_order(&self, pick: impl Fn(&Channel) -> bool) -> Vec<ChannelId> {
        let mut found: Vec<(u64, ChannelId)> = self
            .channels
            .iter()
            .filter_map(|s| match s {
                Slot::Used(c) if pick(c) => Some((c.seq, c.id)),
                _ => None,
            })
            .collect();
        found.sort_unstable_by_key(|(seq, _)| *seq);
        found.into_iter().map(|(_, id)| id).collect()
    }

    pub(super) fn chan(&self, id: ChannelId) -> Option<&Channel> {
        match self.channels.get(id.index as usize)? {
            Slot::Used(c) if c.id == id => Some(c),
            _ => None,
        }
    }

    pub(super) fn chan_mut(&mut self, id: ChannelId) -> Option<&mut Channel> {
        match self.channels.get_mut(id.index as usize)? {
            Slot::Used(c) if c.id == id => Some(c),
            _ => None,
        }
    }

    pub(super) fn send_join(&mut self, now: Instant, id: ChannelId) {
        let r = self.make_ref();
        let timeout = self.config.join_timeout;
        let Some(c) = self.chan_mut(id) else { return };
        // A join still pending (e.g. a rejoin racing a timeout) is superseded.
        let old = c.join_ref.filter(|_| c.join_pending);
        let previous = c.join_ref.replace(r);
        c.join_pending = true;
        c.state = ChannelState::Joining;
        c.rejoin_at = None;
        if let Some(p) = c.presence.as_mut() {
            p.set_join_ref(&r.to_string());
        }
        let frame = match &c.join_payload {
            OutPayload::Json(j) => encode_text(Some(r), Some(r), &c.topic, names::JOIN, j.get()),
            OutPayload::Binary(_) => encode_text(Some(r), Some(r), &c.topic, names::JOIN, "{}"),
        };
        if let Some(old) = old {
            self.pushes.remove(&old);
        }
        if let Some(p) = previous {
            self.join_refs.remove(&p);
        }
        self.join_refs.insert(r, id);
        self.transmit(Transmit::Text(frame));
        self.insert_push(
            r,
            Push {
                channel: id,
                kind: PushKind::Join,
                deadline: Some(now + timeout),
                state: PushState::InFlight,
            },
        );
    }

    pub(super) fn schedule_rejoin(&mut self, now: Instant, id: ChannelId) {
        let Some(c) = self.chan_mut(id) else { return };
        c.rejoin_tries += 1;
        let tries = c.rejoin_tries;
        let base = self.config.rejoin_backoff.delay(tries);
        let delay = self.jittered(base);
        let Some(c) = self.chan_mut(id) else { return };
        c.rejoin_at = Some(now + delay);
        let topic = c.topic.clone();
        self.rejoin_due = min_opt(self.rejoin_due, Some(now + delay));
        self.events.push_back(Event::RejoinScheduled {
            channel: id,
            topic,
            delay,
        });
    }

    fn leave_with(&mut self, now: Instant, id: ChannelId, reason: CloseReason) {
        let Some(c) = self.chan_mut(id) else { return };
        let state = c.state;
        let topic = c.topic.clone();
        let join_ref = c.join_ref;
        if self.topics.get(&topic) == Some(&id) {
            self.topics.remove(&topic);
        }
        self.drop_buffered(id, DropReason::ChannelClosed);
        let can_send = self.conn == Conn::Open
            && matches!(state, ChannelState::Joined | ChannelState::Joining)
            && join_ref.is_some();
        if state == ChannelState::Leaving {
            return;
        }
        if !can_send {
            self.close_channel(id, reason);
            return;
        }
        // The pending join, if any, is superseded by the leave.
        if let Some(c) = self.chan_mut(id)
            && c.join_pending
            && let Some(j) = c.join_ref
        {
            c.join_pending = false;
            self.pushes.remove(&j);
        }
        let r = self.make_ref();
        let timeout = self.config.leave_timeout;
        if let Some(c) = self.chan_mut(id) {
            c.state = ChannelState::Leaving;
            c.leave_reason = reason.clone();
            c.rejoin_at = None;
        }
        self.transmit(Transmit::Text(encode_text(
            join_ref,
            Some(r),
            &topic,
            names::LEAVE,
            "{}",
        )));
        self.insert_push(
            r,
            Push {
                channel: id,
                kind: PushKind::Leave { reason },
                deadline: Some(now + timeout),
                state: PushState::InFlight,
            },
        );
    }

    pub(super) fn close_channel(&mut self, id: ChannelId, reason: CloseReason) {
        self.drop_buffered(id, DropReason::ChannelClosed);
        self.drop_in_flight(id, DropReason::ChannelClosed);
        // Any join or leave of this channel still in the table is now meaningless.
        self.pushes.retain(|_, p| p.channel != id);
        let Some(slot) = self.channels.get_mut(id.index as usize) else {
            return;
        };
        let Slot::Used(c) = slot else { return };
        if c.id != id {
            return;
        }
        let topic = c.topic.clone();
        if let Some(jr) = c.join_ref
            && self.join_refs.get(&jr) == Some(&id)
        {
            self.join_refs.remove(&jr);
        }
        *slot = Slot::Free {
            next_generation: id.generation.wrapping_add(1),
        };
        self.free.push(id.index);
        if self.topics.get(&topic) == Some(&id) {
            self.topics.remove(&topic);
        }
        self.events.push_back(Event::ChannelClosed {
            channel: id,
            topic,
            reason,
        });
    }
}
