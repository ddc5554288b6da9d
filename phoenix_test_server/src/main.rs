//! `phoenix_test_server` binary: serves until killed and prints its socket URL when ready.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use phoenix_test_server::{PhoenixVersion, TestServer};

const HELP: &str = "\
phoenix_test_server: a Phoenix-faithful Channels (V2) server for tests

USAGE:
    phoenix_test_server [OPTIONS]

OPTIONS:
    --port <PORT>               TCP port (default 4000; 0 = any free port)
    --bind <IP>                 address to listen on (default 127.0.0.1; 0.0.0.0 = all IPv4)
    --static-dir <DIR>          serve the files of DIR over plain HTTP (`/` = DIR/index.html)
    --idle-timeout-ms <MS>      close a websocket with 1002 after MS without input (default 60000)
    --send-timeout-ms <MS>      drop a connection whose send blocks MS (default 30000)
    --auth-token                behave like a Phoenix 1.8 `auth_token: true` socket
    --max-channels <N>          channels per connection (default 100)
    --phoenix-version <V>       1.7 (default) or 1.8 wire differences
    -h, --help                  print this help

Prints `ws://127.0.0.1:PORT/socket` on stdout when ready (127.0.0.1 also when bound to
0.0.0.0); clients connect to `ws://HOST:PORT/socket/websocket?vsn=2.0.0`.";

fn parse() -> Result<Option<phoenix_test_server::ServerBuilder>, String> {
    let mut b = TestServer::builder().port(4000);
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or(format!("{name} needs a value"));
        let number = |name: &str, v: String| {
            v.parse::<u64>()
                .map_err(|_| format!("{name}: not a number: {v}"))
        };
        match arg.as_str() {
            "-h" | "--help" => return Ok(None),
            "--port" => {
                let v = value("--port")?;
                b = b.port(
                    u16::try_from(number("--port", v)?)
                        .map_err(|_| "--port: too large".to_string())?,
                );
            }
            "--bind" => {
                let v = value("--bind")?;
                b = b.bind(
                    v.parse()
                        .map_err(|_| format!("--bind: not an IP address: {v}"))?,
                );
            }
            "--static-dir" => b = b.static_dir(value("--static-dir")?),
            "--idle-timeout-ms" => {
                let v = value("--idle-timeout-ms")?;
                b = b.idle_timeout(Duration::from_millis(number("--idle-timeout-ms", v)?));
            }
            "--send-timeout-ms" => {
                let v = value("--send-timeout-ms")?;
                b = b.send_timeout(Duration::from_millis(number("--send-timeout-ms", v)?));
            }
            "--auth-token" => b = b.auth_token(true),
            "--max-channels" => {
                let v = value("--max-channels")?;
                b = b.max_channels(number("--max-channels", v)? as usize);
            }
            "--phoenix-version" => {
                b = match value("--phoenix-version")?.as_str() {
                    "1.7" => b.phoenix_version(PhoenixVersion::V1_7),
                    "1.8" => b.phoenix_version(PhoenixVersion::V1_8),
                    other => {
                        return Err(format!(
                            "--phoenix-version: expected 1.7 or 1.8, got {other}"
                        ));
                    }
                };
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(Some(b))
}

fn main() -> ExitCode {
    let builder = match parse() {
        Ok(Some(b)) => b,
        Ok(None) => {
            println!("{HELP}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("error: {e}\n\n{HELP}");
            return ExitCode::from(2);
        }
    };
    let server = match builder.start() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{}", server.url());
    let _ = out.flush();
    drop(out);
    loop {
        std::thread::park();
    }
}
