//! Routing of incoming frames, in two steps: `route_*` decides what a decoded frame means
//! (a reply to which push, a message for which channel, a crash, a close, presence) while the
//! frame is borrowed, then `deliver` acts on that [`Route`] once the frame is owned, so payloads
//! point into it without a copy.

use std::ops::Range;

use web_time::Instant;

use super::push::{Push, PushKind, PushState};
use super::{
    ChannelError, ChannelState, CloseReason, DropReason, Event, EventName, InboundMessage,
    PushOutcome, Socket,
};
use crate::protocol::payload::{ChannelId, FrameText, Payload, Topic};
use crate::protocol::wire::{BinaryFrame, DecodeError, TextFrame, WireRef, decode_reply, names};

impl Socket {
    pub(super) fn route_text(
        &mut self,
        now: Instant,
        base: &str,
        f: &TextFrame<'_>,
    ) -> Result<Option<Route>, DecodeError> {
        let base = base.as_bytes();
        if f.event == names::REPLY {
            let reply = decode_reply(f.payload)?;
            let ok = reply.status == "ok";
            let span = span_in(base, reply.response.get().as_bytes());
            return Ok(self.route_reply(now, f.msg_ref.as_ref(), &f.topic, ok, span));
        }
        let span = span_in(base, f.payload.get().as_bytes());
        Ok(self.route_message(f.join_ref.as_ref(), &f.topic, &f.event, span))
    }

    pub(super) fn route_binary(
        &mut self,
        now: Instant,
        base: &[u8],
        f: &BinaryFrame<'_>,
    ) -> Option<Route> {
        let span = span_in(base, f.payload());
        match *f {
            BinaryFrame::Reply {
                msg_ref,
                topic,
                status,
                ..
            } => {
                let r = WireRef::Str(msg_ref.into());
                self.route_reply(now, Some(&r), topic, status == "ok", span)
            }
            BinaryFrame::Push {
                join_ref,
                topic,
                event,
                ..
            } => {
                let jr = (!join_ref.is_empty()).then(|| WireRef::Str(join_ref.into()));
                self.route_message(jr.as_ref(), topic, event, span)
            }
            BinaryFrame::Broadcast { topic, event, .. } => {
                self.route_message(None, topic, event, span)
            }
        }
    }

    fn route_reply(
        &mut self,
        now: Instant,
        msg_ref: Option<&WireRef<'_>>,
        topic: &str,
        ok: bool,
        span: Range<usize>,
    ) -> Option<Route> {
        let Some(r) = msg_ref.and_then(WireRef::as_ours) else {
            self.stats.unroutable_dropped += 1;
            return None;
        };
        if topic == names::PHOENIX_TOPIC
            && let Some((hr, sent)) = self.heartbeat_pending
            && hr == r
        {
            self.heartbeat_pending = None;
            self.stats.last_rtt = Some(now.saturating_duration_since(sent));
            return None;
        }
        // Anything else, on "phoenix" too (a channel may join that topic, as in phoenix.js,
        // and Phoenix refuses it with "unmatched topic"), is looked up by its ref.
        let Some(&Push { channel, state, .. }) = self.pushes.get(&r) else {
            // A ref we made: a reply to a push that expected none (fire-and-forget) or that
            // has already ended (timeout, drop, a replaced channel's leave). Not an anomaly.
            if r <= self.next_ref {
                self.stats.ignored_replies += 1;
            } else {
                self.stats.unroutable_dropped += 1;
            }
            return None;
        };
        if state != PushState::InFlight {
            self.stats.unroutable_dropped += 1;
            return None;
        }
        // The reply must name the push's topic (phoenix.js `isMember`): one that does not is
        // dropped, and the push keeps waiting for its own reply (or its timeout). Its join_ref
        // is not checked: a ref names exactly one push, and pushes in flight never outlive
        // their join (they end as dropped when the channel errors or the socket drops).
        if self.chan(channel).is_some_and(|c| *c.topic != *topic) {
            self.stats.unroutable_dropped += 1;
            return None;
        }
        let p = self.pushes.remove(&r)?;
        self.prune_deadlines();
        match p.kind {
            PushKind::User { event, tag, .. } => Some(Route::Reply {
                push: r,
                channel: p.channel,
                event,
                tag,
                ok,
                span,
            }),
            PushKind::Join => {
                let c = self.chan_mut(p.channel)?;
                if c.join_ref != Some(r) {
                    self.stats.stale_dropped += 1;
                    return None;
                }
                c.join_pending = false;
                if ok {
                    c.state = ChannelState::Joined;
                    c.rejoin_tries = 0;
                    let rejoin = c.ever_joined;
                    c.ever_joined = true;
                    Some(Route::JoinOk {
                        channel: p.channel,
                        rejoin,
                        span,
                    })
                } else {
                    c.state = ChannelState::Errored;
                    Some(Route::JoinError {
                        channel: p.channel,
                        span,
                    })
                }
            }
            PushKind::Leave { reason } => {
                self.close_channel(p.channel, reason);
                None
            }
        }
    }

    fn route_message(
        &mut self,
        join_ref: Option<&WireRef<'_>>,
        topic: &str,
        event: &str,
        span: Range<usize>,
    ) -> Option<Route> {
        let id = match join_ref {
            // A join_ref names one join: the channel that owns it, if it has this topic.
            Some(jr) => {
                let owner = jr
                    .as_ours()
                    .and_then(|r| self.join_refs.get(&r).copied())
                    .filter(|id| self.chan(*id).is_some_and(|c| &*c.topic == topic));
                match owner {
                    Some(id) => id,
                    None if self.topics.contains_key(topic) => {
                        self.stats.stale_dropped += 1;
                        return None;
                    }
                    None => {
                        self.stats.unroutable_dropped += 1;
                        return None;
                    }
                }
            }
            // Broadcasts name a topic only: the channel that has it now.
            None => match self.topics.get(topic) {
                Some(&id) => id,
                None => {
                    self.stats.unroutable_dropped += 1;
                    return None;
                }
            },
        };
        let c = self.chan(id)?;
        // A leaving channel only hears how it ends; what else its old join sends is stale
        // (the app has let go of it).
        if c.state == ChannelState::Leaving && !matches!(event, names::ERROR | names::CLOSE) {
            self.stats.stale_dropped += 1;
            return None;
        }
        let has_presence = c.presence.is_some();
        match event {
            // phx_error / phx_close always carry the join_ref (ref = join_ref): without one we
            // cannot tell which join they end, so they are not trusted.
            names::ERROR | names::CLOSE if join_ref.is_none() => {
                self.stats.stale_dropped += 1;
                None
            }
            names::ERROR => Some(Route::Crashed { channel: id, span }),
            names::CLOSE => Some(Route::Closed { channel: id }),
            names::PRESENCE_STATE | names::PRESENCE_DIFF if has_presence => Some(Route::Presence {
                channel: id,
                state: event == names::PRESENCE_STATE,
                span,
            }),
            _ => {
                let topic = c.topic.clone();
                Some(Route::Message {
                    channel: id,
                    topic,
                    event: self.intern(event),
                    broadcast: join_ref.is_none(),
                    span,
                })
            }
        }
    }

    /// Acts on a routed frame; owns the frame so payloads can point into it.
    pub(super) fn deliver(&mut self, now: Instant, route: Route, frame: Frame) {
        match route {
            Route::Reply {
                push,
                channel,
                event,
                tag,
                ok,
                span,
            } => {
                let payload = frame.into_payload(span);
                let outcome = if ok {
                    PushOutcome::Ok(payload)
                } else {
                    PushOutcome::Error(payload)
                };
                self.reply_event(push, channel, event, tag, outcome);
            }
            Route::Message {
                channel,
                topic,
                event,
                broadcast,
                span,
            } => {
                self.events.push_back(Event::Message(InboundMessage {
                    channel,
                    topic,
                    event,
                    payload: frame.into_payload(span),
                    broadcast,
                }));
            }
            Route::JoinOk {
                channel,
                rejoin,
                span,
            } => {
                let Some(c) = self.chan(channel) else { return };
                let topic = c.topic.clone();
                self.events.push_back(Event::Joined {
                    channel,
                    topic,
                    response: frame.into_payload(span),
                    rejoin,
                });
                self.flush_buffer(channel);
            }
            Route::JoinError { channel, span } => {
                let Some(c) = self.chan(channel) else { return };
                let topic = c.topic.clone();
                self.events.push_back(Event::ChannelErrored {
                    channel,
                    topic,
                    reason: ChannelError::JoinRefused(frame.into_payload(span)),
                });
                self.schedule_rejoin(now, channel);
            }
            Route::Crashed { channel, span } => {
                let Some(c) = self.chan_mut(channel) else {
                    return;
                };
                match c.state {
                    ChannelState::Leaving => {
                        let reason = c.leave_reason.clone();
                        self.close_channel(channel, reason);
                        return;
                    }
                    ChannelState::Closed | ChannelState::Errored => return,
                    ChannelState::Joined | ChannelState::Joining => {}
                }
                c.state = ChannelState::Errored;
                let pending_join = c.join_ref.filter(|_| c.join_pending);
                c.join_pending = false;
                let topic = c.topic.clone();
                if let Some(j) = pending_join {
                    self.pushes.remove(&j);
                }
                self.drop_in_flight(channel, DropReason::ChannelCrashed);
                self.events.push_back(Event::ChannelErrored {
                    channel,
                    topic,
                    reason: ChannelError::Crashed(frame.into_payload(span)),
                });
                self.schedule_rejoin(now, channel);
            }
            Route::Closed { channel } => {
                let reason = match self.chan(channel) {
                    Some(c) if c.state == ChannelState::Leaving => c.leave_reason.clone(),
                    _ => CloseReason::ServerClosed,
                };
                self.close_channel(channel, reason);
            }
            Route::Presence {
                channel,
                state,
                span,
            } => {
                let Frame::Text(text) = &frame else {
                    // Presence is JSON: a binary presence frame is malformed, and said so.
                    self.protocol_error(DecodeError::Presence(
                        "presence payload in a binary frame".into(),
                    ));
                    return;
                };
                let json = text.get(span).unwrap_or("null");
                let mut out = Vec::new();
                let result = match self.chan_mut(channel).and_then(|c| c.presence.as_mut()) {
                    Some(t) if state => t.handle_state(json, &mut out),
                    Some(t) => t.handle_diff(json, &mut out),
                    None => Ok(()),
                };
                if let Err(e) = result {
                    self.protocol_error(DecodeError::Presence(e.to_string()));
                }
                if let Some(topic) = self.chan(channel).map(|c| c.topic.clone()) {
                    for ev in out.drain(..) {
                        self.events.push_back(Event::Presence {
                            channel,
                            topic: topic.clone(),
                            event: ev,
                        });
                    }
                }
                // `out` is dropped, not kept for the next frame: presence frames are few next
                // to messages, and a room's presence_state is an event per key.
            }
        }
    }
}

/// A received frame, owned, so payloads can point into it without a copy.
pub(super) enum Frame {
    Text(FrameText),
    Binary(Vec<u8>),
}

impl Frame {
    fn into_payload(self, span: Range<usize>) -> Payload {
        match self {
            // A JSON value is never empty: an empty span is a payload that was not in the
            // frame (a reply whose response is null or missing).
            Frame::Text(_) if span.is_empty() => Payload::null(),
            Frame::Text(s) => Payload::in_text(s, span),
            Frame::Binary(b) => Payload::in_binary(b, span),
        }
    }
}

/// What a frame means, decided while it is borrowed; acted on once it is owned.
pub(super) enum Route {
    Reply {
        push: u64,
        channel: ChannelId,
        event: EventName,
        tag: u64,
        ok: bool,
        span: Range<usize>,
    },
    Message {
        channel: ChannelId,
        topic: Topic,
        event: EventName,
        broadcast: bool,
        span: Range<usize>,
    },
    JoinOk {
        channel: ChannelId,
        rejoin: bool,
        span: Range<usize>,
    },
    JoinError {
        channel: ChannelId,
        span: Range<usize>,
    },
    Crashed {
        channel: ChannelId,
        span: Range<usize>,
    },
    Closed {
        channel: ChannelId,
    },
    Presence {
        channel: ChannelId,
        state: bool,
        span: Range<usize>,
    },
}

/// The byte range of `part` inside `whole` (`part` must be a sub-slice of `whole`).
fn span_in(whole: &[u8], part: &[u8]) -> Range<usize> {
    let start = (part.as_ptr() as usize).wrapping_sub(whole.as_ptr() as usize);
    if start <= whole.len() && part.len() <= whole.len() - start {
        start..start + part.len()
    } else {
        0..0
    }
}
