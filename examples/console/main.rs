//! A terminal client for any Phoenix socket: connect (params, auth token, headers), `join`,
//! `push` JSON, `leave`, and see replies, broadcasts and presence as they arrive. Commands come
//! from stdin, one per line, so it also serves in shell scripts and tests.
//!
//! ```text
//! cargo run --example console -- ws://127.0.0.1:4000/socket --param token=abc
//! > join room:lobby {"user_id":"ana"}
//! [   0.004] > join room:lobby {"user_id":"ana"}
//! [   0.006] * connected
//! [   0.009] < joined room:lobby {}
//! [   0.010] < presence room:lobby +ana
//! > push room:lobby shout {"body":"hi"}
//! [   2.151] > push #1 room:lobby shout {"body":"hi"}
//! [   2.153] < room:lobby shout {"body":"hi"} (broadcast)
//! [   2.153] < reply #1 room:lobby shout: ok {}
//!
//! printf 'join echo:1\npush echo:1 echo {"n":1}\n' | cargo run --example console -- ws://127.0.0.1:4000/socket
//! ```
//!
//! Options: `--param key=value` (connect params, repeatable), `--token TOKEN` (Phoenix 1.8
//! `auth_token`, sent as a subprotocol, never printed), `--header 'Name: value'` (repeatable).
//! Without a URL (or with `--embedded`) it starts the embedded test server and connects to it.
//! `help` lists the commands; the end of input exits once every reply is in. For line editing,
//! run it under `rlwrap`.

#[cfg(not(target_arch = "wasm32"))]
mod console;

#[cfg(not(target_arch = "wasm32"))]
fn main() {
    use bevy::prelude::*;
    use bevy_phoenix_channels::prelude::*;
    use std::io::BufRead;

    let mut url = None;
    let mut params = Vec::new();
    let mut token = None;
    let mut headers = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = |name: &str| {
            args.next().unwrap_or_else(|| {
                eprintln!("console: {name} needs a value");
                std::process::exit(2)
            })
        };
        match a.as_str() {
            "--param" => {
                let kv = value("--param");
                let (k, v) = kv.split_once('=').unwrap_or((kv.as_str(), ""));
                params.push((k.to_owned(), v.to_owned()));
            }
            "--token" => token = Some(value("--token")),
            "--header" => {
                let h = value("--header");
                let (n, v) = h.split_once(':').unwrap_or((h.as_str(), ""));
                headers.push((n.trim().to_owned(), v.trim().to_owned()));
            }
            "--embedded" => url = None,
            "-h" | "--help" => {
                println!(
                    "usage: console [URL] [--param k=v]... [--token T] [--header 'N: v']...\n\n{}",
                    console::HELP
                );
                return;
            }
            other if !other.starts_with('-') => url = Some(other.to_owned()),
            other => {
                eprintln!("console: unknown option {other}");
                std::process::exit(2);
            }
        }
    }
    let (_server, url) = match url {
        Some(u) => (None, u),
        None => {
            let s = phoenix_test_server::start().expect("start the embedded test server");
            let u = s.url();
            eprintln!("console: embedded test server at {u} (echo:*, room:*, private:*)");
            (Some(s), u)
        }
    };

    let mut config = PhoenixSocketConfig::new(url).with(|s| {
        let s = s.with_params(params);
        match token {
            Some(t) => s.with_auth_token(t),
            None => s,
        }
    });
    for (n, v) in headers {
        config = config.with_header(n, v);
    }

    let (in_tx, in_rx) = crossbeam_channel::unbounded();
    let (out_tx, out_rx) = crossbeam_channel::unbounded::<String>();
    let mut app = App::new();
    app.add_plugins(PhoenixHeadlessPlugins::with_config(config))
        .insert_resource(console::ConsoleIo {
            input: in_rx,
            output: out_tx,
        })
        .add_plugins(console::ConsolePlugin);
    // Lines from stdin wake the frame loop (WaitForNetwork only knows the sockets).
    let waker = app.world().resource::<WaitForNetwork>().waker();
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            if in_tx.send(line).is_err() {
                break;
            }
            waker.wake();
        }
        drop(in_tx);
        waker.wake();
    });
    let printer = std::thread::spawn(move || {
        for line in out_rx {
            println!("{line}");
        }
    });
    let exit = app.run();
    drop(app);
    let _ = printer.join();
    if exit != AppExit::Success {
        std::process::exit(1);
    }
}

#[cfg(target_arch = "wasm32")]
fn main() {
    panic!("the console runs natively");
}
