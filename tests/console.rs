//! The console example (`examples/console/console.rs`, shared through `#[path]`) driven as a
//! script: joins, pushes, presence, errors in the input, leave, and the exit at the end of input
//! once every reply is in. Against the test server or `PHOENIX_URL`.
#![allow(clippy::unwrap_used)]

#[allow(dead_code)]
#[path = "../examples/console/console.rs"]
mod console;

mod support;

use bevy::prelude::*;
use bevy_phoenix_channels::prelude::*;
use support::*;

/// Runs the console over `script` until it exits; returns its output lines.
fn run(url: &str, script: &[&str]) -> Vec<String> {
    let (in_tx, in_rx) = crossbeam_channel::unbounded();
    let (out_tx, out_rx) = crossbeam_channel::unbounded();
    for line in script {
        in_tx.send((*line).to_owned()).unwrap();
    }
    drop(in_tx);
    let mut app = App::new();
    app.add_plugins((
        MinimalPlugins,
        PhoenixChannelsPlugin::with_config(config(url)),
    ))
    .insert_resource(console::ConsoleIo {
        input: in_rx,
        output: out_tx,
    })
    .add_plugins(console::ConsolePlugin);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        app.update();
        if app.should_exit().is_some() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the console did not exit"
        );
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    out_rx.try_iter().collect()
}

fn has(lines: &[String], needle: &str) -> bool {
    lines.iter().any(|l| l.contains(needle))
}

#[test]
fn a_scripted_session_prints_replies_broadcasts_presence_and_errors() {
    let server = Server::start();
    scripted_session(&server.url);
}

/// The same script against a server that holds every frame it sends for 300 ms: `sync`, not
/// the server's speed, decides when the script goes on.
#[test]
fn a_script_with_sync_does_not_depend_on_the_servers_speed() {
    let server = Server::local(phoenix_test_server::start().unwrap());
    let Some(slow) = server.faulty("a_script_with_sync_does_not_depend_on_the_servers_speed")
    else {
        return;
    };
    slow.faults()
        .delay_outgoing(std::time::Duration::from_millis(300));
    scripted_session(&server.url);
}

/// Runs a script of joins, pushes (one buffered before its join, one with bad JSON), an unknown
/// command, `sync`, `presence`, a leave and a push after it, and checks what it printed.
fn scripted_session(url: &str) {
    let room = unique("room:console-");
    let echo = unique("echo:console-");
    let out = run(
        url,
        &[
            &format!(r#"join {room} {{"user_id":"ana"}}"#),
            &format!("join {echo}"),
            "# a comment, then a blank line",
            "",
            &format!(r#"push {echo} echo {{"n":1}}"#),
            &format!(r#"push {room} shout {{"body":"hi"}}"#),
            &format!("push {echo} echo {{broken"),
            "frobnicate",
            // Both joins and both pushes answered; the room's presence_state came before the
            // reply to `shout` (the channel pushes it on its `after_join`, which it handles
            // before any push that reached it after the join).
            "sync",
            &format!("presence {room}"),
            &format!("leave {echo}"),
            &format!(r#"push {echo} echo {{"n":2}}"#),
        ],
    );
    let all = out.join("\n");
    assert!(has(&out, &format!("< joined {room}")), "{all}");
    assert!(has(&out, &format!("< joined {echo}")), "{all}");
    assert!(has(&out, &format!("< presence {room} +ana")), "{all}");
    assert!(
        has(&out, &format!(r#"< reply #1 {echo} echo: ok {{"n":1}}"#)),
        "{all}"
    );
    assert!(
        has(
            &out,
            &format!(r#"< {room} shout {{"body":"hi"}} (broadcast)"#)
        ),
        "{all}"
    );
    assert!(has(&out, &format!("< reply #2 {room} shout: ok")), "{all}");
    assert!(has(&out, "! invalid JSON payload"), "{all}");
    assert!(has(&out, r#"! unknown command "frobnicate""#), "{all}");
    assert!(
        has(&out, &format!("  presence {room}: 1 [ana (1 meta)]")),
        "{all}"
    );
    assert!(
        has(&out, &format!("< channel {echo} closed: Left")),
        "{all}"
    );
    // A push after the leave ends at once, and the console then exits (end of input).
    assert!(
        has(
            &out,
            &format!("< reply #3 {echo} echo: dropped: ChannelClosed")
        ),
        "{all}"
    );
    // Every line but help is stamped.
    assert!(out.iter().all(|l| l.starts_with('[')), "{all}");
}

#[test]
fn a_refused_join_is_an_answer_and_quit_exits_at_once() {
    let server = Server::start();
    let out = run(
        &server.url,
        &[
            "join private:nope",
            "sync",
            "status",
            "quit",
            "join echo:never",
        ],
    );
    let all = out.join("\n");
    assert!(
        has(&out, "< channel private:nope errored: JoinRefused"),
        "{all}"
    );
    assert!(has(&out, "  socket Open"), "{all}");
    assert!(!has(&out, "echo:never"), "{all}");
}

#[test]
fn the_parser_takes_what_the_help_says() {
    use console::{Command, parse};
    use serde_json::json;
    assert_eq!(parse("  ").unwrap(), None);
    assert_eq!(
        parse(r#"push room:1 move {"x": 1}"#).unwrap(),
        Some(Command::Push {
            topic: "room:1".into(),
            event: "move".into(),
            payload: json!({"x": 1})
        })
    );
    assert_eq!(
        parse("j room:1").unwrap(),
        Some(Command::Join {
            topic: "room:1".into(),
            payload: json!({})
        })
    );
    assert!(parse("push room:1").unwrap_err().contains("missing event"));
    assert!(parse("wait soon").is_err());
    assert_eq!(parse("sync").unwrap(), Some(Command::Sync));
    assert_eq!(parse("history").unwrap(), Some(Command::History(20)));
}

#[test]
fn the_end_of_input_waits_for_every_reply() {
    let server = Server::start();
    let echo = unique("echo:console-slow-");
    // The input ends at once; the reply comes 300 ms later and must still be printed.
    let out = run(
        &server.url,
        &[
            &format!("join {echo}"),
            &format!(r#"push {echo} slow {{"ms":300}}"#),
        ],
    );
    let all = out.join("\n");
    assert!(has(&out, &format!("< reply #1 {echo} slow: ok")), "{all}");
}
