//! The reference app's channels (`/work/shared/reference-app/*.ex`), written against the public
//! [`Channel`] API: `echo:*` (EchoChannel), `room:*` (RoomChannel with Presence) and `private:*`
//! (PrivateChannel).
//!
//! Depends only on the channel API (`channel`) and `serializer`, like a user's channels.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde_json::{Value, json};

use crate::channel::{
    Channel, ChannelContext, HandleResult, JoinResult, Routes, Status, unix_seconds,
};
use crate::serializer::Payload;

pub(crate) fn register(routes: &mut Routes) {
    routes.push(("echo:*".into(), Arc::new(|| Box::new(EchoChannel))));
    routes.push((
        "room:*".into(),
        Arc::new(|| Box::new(RoomChannel::default())),
    ));
    routes.push(("private:*".into(), Arc::new(|| Box::new(PrivateChannel))));
}

/// Elixir truthiness: everything but nil and false.
fn truthy(v: Option<&Value>) -> bool {
    !matches!(v, None | Some(Value::Null) | Some(Value::Bool(false)))
}

fn no_clause(event: &str) -> HandleResult {
    HandleResult::Crash(format!("no handle_in/3 clause matches {event:?}"))
}

/// `PhxAppWeb.EchoChannel`.
pub struct EchoChannel;

impl Channel for EchoChannel {
    fn join(&mut self, topic: &str, _payload: Payload, _ctx: &mut ChannelContext) -> JoinResult {
        JoinResult::Ok(json!({ "joined": topic }).into())
    }

    fn handle_in(
        &mut self,
        event: &str,
        payload: Payload,
        ctx: &mut ChannelContext,
    ) -> HandleResult {
        match (event, payload) {
            ("echo", p) => HandleResult::Reply(Status::Ok, p),
            ("error_reply", _) => HandleResult::error(json!({"reason": "requested"})),
            ("noreply", _) => HandleResult::NoReply,
            ("crash", _) => HandleResult::Crash("crash requested by client".into()),
            ("binary", p @ Payload::Binary(_)) => HandleResult::Reply(Status::Ok, p),
            ("push_me", Payload::Json(Value::Object(m))) => {
                match (m.get("event"), m.get("payload")) {
                    (Some(Value::String(e)), Some(p)) => {
                        ctx.push(e, p.clone());
                        if truthy(m.get("noreply")) {
                            HandleResult::NoReply
                        } else {
                            HandleResult::ok(json!({}))
                        }
                    }
                    _ => no_clause(event),
                }
            }
            ("push_binary", p @ Payload::Binary(_)) => {
                ctx.push("binary_push", p);
                HandleResult::ok(json!({}))
            }
            ("burst", Payload::Json(Value::Object(m))) => {
                let n = m.get("n").and_then(Value::as_i64);
                let size = m.get("size").and_then(Value::as_u64);
                let (Some(n), Some(size)) = (n, size) else {
                    return no_clause(event);
                };
                let pad = Value::String("x".repeat(size as usize));
                for i in 1..=n {
                    let mut tick = serde_json::Map::with_capacity(2);
                    tick.insert("i".into(), Value::from(i));
                    tick.insert("pad".into(), pad.clone());
                    ctx.push("tick", Value::Object(tick));
                }
                HandleResult::ok(json!({ "sent": n }))
            }
            ("stop", _) => HandleResult::Stop,
            ("stop_reply", _) => {
                HandleResult::StopWithReply(Status::Ok, json!({"bye": true}).into())
            }
            ("disconnect_me", _) => {
                let id = ctx.socket_id().to_string();
                ctx.server().disconnect(&id);
                HandleResult::NoReply
            }
            ("slow", Payload::Json(Value::Object(m))) => {
                let Some(ms) = m.get("ms").and_then(Value::as_u64) else {
                    return no_clause(event);
                };
                // Phoenix sleeps in the channel process; here the reply is scheduled instead, so
                // the connection keeps serving other channels and heartbeats meanwhile.
                let reply = ctx.reply_handle();
                let payload = Value::Object(m);
                ctx.server().run_after(Duration::from_millis(ms), move || {
                    reply.reply(Status::Ok, payload)
                });
                HandleResult::NoReply
            }
            // The Phoenix 1.8 reference app's echo channel: the auth token connect/3 got.
            ("whoami", _) => HandleResult::ok(json!({ "auth_token": ctx.auth_token() })),
            _ => no_clause(event),
        }
    }
}

static ANON: AtomicU64 = AtomicU64::new(0);

/// `PhxAppWeb.RoomChannel`: presence tracked after join, shout/move broadcasts.
#[derive(Default)]
pub struct RoomChannel {
    user_id: String,
}

impl Channel for RoomChannel {
    fn join(&mut self, _topic: &str, payload: Payload, ctx: &mut ChannelContext) -> JoinResult {
        let id = match payload.as_json().and_then(|p| p.get("user_id")) {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            Some(Value::Bool(b)) => b.to_string(),
            Some(Value::Null) | None => {
                format!("anon-{}", ANON.fetch_add(1, Ordering::Relaxed) + 1)
            }
            // to_string/1 of a map raises: the join crashes.
            Some(_) => return JoinResult::Error(json!({"reason": "join crashed"}).into()),
        };
        self.user_id = id;
        ctx.send_self(json!("after_join"));
        JoinResult::ok()
    }

    fn handle_info(&mut self, msg: Value, ctx: &mut ChannelContext) -> HandleResult {
        if msg == "after_join" {
            let user_id = self.user_id.clone();
            ctx.track(&user_id, json!({ "online_at": unix_seconds() }));
            let state = ctx.presence_list();
            ctx.push("presence_state", state);
        }
        HandleResult::NoReply
    }

    fn handle_in(
        &mut self,
        event: &str,
        payload: Payload,
        ctx: &mut ChannelContext,
    ) -> HandleResult {
        match (event, payload) {
            ("shout", p) => {
                ctx.broadcast("shout", p);
                HandleResult::ok(json!({}))
            }
            ("move", p) => {
                ctx.broadcast_from("move", p);
                HandleResult::ok(json!({}))
            }
            ("shout_binary", p @ Payload::Binary(_)) => {
                ctx.broadcast("shout_binary", p);
                HandleResult::ok(json!({}))
            }
            _ => no_clause(event),
        }
    }
}

/// `PhxAppWeb.PrivateChannel`: join needs `{"password": "secret"}`.
pub struct PrivateChannel;

impl Channel for PrivateChannel {
    fn join(&mut self, topic: &str, payload: Payload, _ctx: &mut ChannelContext) -> JoinResult {
        match payload.as_json().and_then(|p| p.get("password")) {
            Some(Value::String(p)) if p == "secret" => {
                JoinResult::Ok(json!({ "joined": topic }).into())
            }
            _ => JoinResult::Error(json!({"reason": "unauthorized"}).into()),
        }
    }

    fn handle_in(
        &mut self,
        event: &str,
        payload: Payload,
        _ctx: &mut ChannelContext,
    ) -> HandleResult {
        match event {
            "echo" => HandleResult::Reply(Status::Ok, payload),
            _ => no_clause(event),
        }
    }
}
