//! Connect, join, push → reply, against the test server (or PHOENIX_URL).
#![allow(clippy::unwrap_used)]

mod support;

use bevy_phoenix_channels::prelude::*;
use serde_json::json;
use support::*;

#[test]
fn connect_join_echo() {
    let server = Server::start();
    let mut app = app(config(&server.url));
    let topic = unique("echo:");
    let ch = join(&mut app, PhoenixChannel::new(&topic));
    wait_joined(&mut app, ch);
    let joined = &log(&app).joined[0];
    assert_eq!(joined.entity, ch);
    assert_eq!(
        joined.response.to_value().unwrap(),
        json!({ "joined": topic })
    );

    let h = push(
        &mut app,
        PushMessage::json(ch, "echo", &json!({"hello": "world"})).unwrap(),
    );
    let r = reply(&mut app, h);
    assert!(r.is_ok(), "{r:?}");
    assert_eq!(r.channel, ch);
    assert_eq!(
        r.decode_ok::<serde_json::Value>().unwrap().unwrap(),
        json!({"hello": "world"})
    );
}
