//! The console's logic as a Bevy plugin: lines of commands in, lines of output out, both over
//! channels, so `main.rs` wires them to stdin/stdout and `tests/console.rs` to a test.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use bevy::prelude::*;
use bevy_phoenix_channels::prelude::*;
use crossbeam_channel::{Receiver, Sender, TryRecvError};
use serde_json::Value;

/// Lines kept for `history`.
const HISTORY: usize = 1000;

/// One command line, parsed.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// `join <topic> [json]`
    Join { topic: String, payload: Value },
    /// `push <topic> <event> [json]`
    Push {
        topic: String,
        event: String,
        payload: Value,
    },
    /// `leave <topic>`
    Leave { topic: String },
    /// `presence <topic>`
    Presence { topic: String },
    /// `status`
    Status,
    /// `history [n]`
    History(usize),
    /// `wait <ms>`: read no command for that long (scripts: let broadcasts arrive).
    Wait(u64),
    /// `sync`: read no command until every join has its answer, every push its outcome and
    /// every leave its close (scripts: no guessing how long the server takes).
    Sync,
    /// `help`
    Help,
    /// `quit`
    Quit,
}

/// The help text.
pub const HELP: &str = "\
commands:
  join <topic> [json]          join a channel (payload default {})
  push <topic> <event> [json]  push an event (payload default {}); its reply is printed
  leave <topic>                leave a channel
  presence <topic>             print the channel's presence list
  status                       connection and channels
  history [n]                  print the last n output lines again (default 20)
  wait <ms>                    read no command for ms milliseconds (for scripts)
  sync                         read no command until every join, push and leave is answered
  help                         this text
  quit                         leave and exit (end of input too, once replies are in)";

/// Parses one line. Empty lines and `#` comments are `Ok(None)`.
pub fn parse(line: &str) -> Result<Option<Command>, String> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return Ok(None);
    }
    let (word, rest) = split(line);
    let json = |s: &str| -> Result<Value, String> {
        if s.is_empty() {
            return Ok(Value::Object(Default::default()));
        }
        serde_json::from_str(s).map_err(|e| format!("invalid JSON payload {s:?}: {e}"))
    };
    let need = |what: &str, s: &str| -> Result<String, String> {
        if s.is_empty() {
            Err(format!("{word}: missing {what} (try `help`)"))
        } else {
            Ok(s.to_owned())
        }
    };
    let cmd = match word {
        "join" | "j" => {
            let (topic, payload) = split(rest);
            Command::Join {
                topic: need("topic", topic)?,
                payload: json(payload)?,
            }
        }
        "push" | "p" => {
            let (topic, rest) = split(rest);
            let (event, payload) = split(rest);
            Command::Push {
                topic: need("topic", topic)?,
                event: need("event", event)?,
                payload: json(payload)?,
            }
        }
        "leave" | "l" => Command::Leave {
            topic: need("topic", rest)?,
        },
        "presence" => Command::Presence {
            topic: need("topic", rest)?,
        },
        "status" => Command::Status,
        "history" => Command::History(if rest.is_empty() {
            20
        } else {
            rest.parse()
                .map_err(|_| format!("history: not a number: {rest}"))?
        }),
        "wait" => Command::Wait(
            rest.parse()
                .map_err(|_| format!("wait: not a number of milliseconds: {rest}"))?,
        ),
        "sync" => Command::Sync,
        "help" | "?" => Command::Help,
        "quit" | "exit" => Command::Quit,
        other => return Err(format!("unknown command {other:?} (try `help`)")),
    };
    Ok(Some(cmd))
}

fn split(s: &str) -> (&str, &str) {
    let s = s.trim_start();
    match s.find(char::is_whitespace) {
        Some(i) => (&s[..i], s[i..].trim()),
        None => (s, ""),
    }
}

/// Where lines come from and go to.
#[derive(Resource)]
pub struct ConsoleIo {
    /// Command lines (the sender dropping is the end of input).
    pub input: Receiver<String>,
    /// Output lines.
    pub output: Sender<String>,
}

/// The console's state.
#[derive(Resource, Default)]
struct Console {
    /// Pushes waiting for their outcome: handle to (number, topic, event).
    pending: HashMap<PushHandle, (u64, String, String)>,
    pushes: u64,
    /// Joins not answered yet (topic).
    joining: Vec<String>,
    /// Leaves whose channel has not closed yet (topic).
    leaving: Vec<String>,
    history: VecDeque<String>,
    paused_until: Option<Duration>,
    /// A `sync` waits for the joins and pushes in flight.
    syncing: bool,
    input_done: bool,
    quitting: bool,
}

impl Console {
    /// A join, push or leave is still waiting for the server's answer.
    fn waiting(&self) -> bool {
        !self.pending.is_empty() || !self.joining.is_empty() || !self.leaving.is_empty()
    }
}

/// The console plugin: needs `PhoenixChannelsPlugin` with a default socket, and a [`ConsoleIo`].
pub struct ConsolePlugin;

impl Plugin for ConsolePlugin {
    fn build(&self, app: &mut App) {
        app.init_resource::<Console>()
            .add_systems(Update, (read_commands, print_events).chain());
    }
}

fn say(console: &mut Console, io: &ConsoleIo, time: &Time<Real>, line: String) {
    let line = format!("[{:>8.3}] {line}", time.elapsed_secs_f64());
    let _ = io.output.send(line.clone());
    if console.history.len() == HISTORY {
        console.history.pop_front();
    }
    console.history.push_back(line);
}

fn compact(v: &Value) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

#[allow(clippy::too_many_arguments)]
fn read_commands(
    mut console: ResMut<Console>,
    io: Res<ConsoleIo>,
    time: Res<Time<Real>>,
    mut commands: Commands,
    channels: Query<(
        Entity,
        &PhoenixChannel,
        &ChannelStatus,
        Option<&ChannelPresence>,
    )>,
    sockets: Query<(&PhoenixSocket, &SocketStatus)>,
    mut pushes: MessageWriter<PushMessage>,
    mut exit: MessageWriter<AppExit>,
    wait: Option<Res<WaitForNetwork>>,
) {
    let console = &mut *console;
    let now = time.elapsed();
    if console.paused_until.is_some_and(|t| now < t) {
        return;
    }
    console.paused_until = None;
    if console.syncing && console.waiting() {
        return;
    }
    console.syncing = false;
    // One command per frame, so each sees what the previous one did (a channel spawned by a
    // `join` exists for the `leave` on the next line); more lines waiting end the frame's wait.
    #[allow(clippy::never_loop)]
    loop {
        let line = match io.input.try_recv() {
            Ok(line) => line,
            Err(TryRecvError::Empty) => break,
            Err(TryRecvError::Disconnected) => {
                console.input_done = true;
                break;
            }
        };
        let cmd = match parse(&line) {
            Ok(Some(cmd)) => cmd,
            Ok(None) => continue,
            Err(e) => {
                say(console, &io, &time, format!("! {e}"));
                continue;
            }
        };
        match cmd {
            Command::Join { topic, payload } => {
                if channels.iter().any(|(_, c, _, _)| c.topic == topic) {
                    say(console, &io, &time, format!("! already joined {topic}"));
                    continue;
                }
                match PhoenixChannel::new(topic.clone()).with_payload(&payload) {
                    Ok(ch) => {
                        commands.spawn(ch);
                        say(
                            console,
                            &io,
                            &time,
                            format!("> join {topic} {}", compact(&payload)),
                        );
                        console.joining.push(topic);
                    }
                    Err(e) => say(console, &io, &time, format!("! join {topic}: {e}")),
                }
            }
            Command::Push {
                topic,
                event,
                payload,
            } => match PushMessage::json(topic.as_str(), event.as_str(), &payload) {
                Ok(p) => {
                    console.pushes += 1;
                    let n = console.pushes;
                    say(
                        console,
                        &io,
                        &time,
                        format!("> push #{n} {topic} {event} {}", compact(&payload)),
                    );
                    console.pending.insert(p.handle, (n, topic, event));
                    pushes.write(p);
                }
                Err(e) => say(console, &io, &time, format!("! push: {e}")),
            },
            Command::Leave { topic } => {
                match channels.iter().find(|(_, c, _, _)| c.topic == topic) {
                    Some((e, ..)) => {
                        commands.entity(e).despawn();
                        say(console, &io, &time, format!("> leave {topic}"));
                        console.leaving.push(topic);
                    }
                    None => say(console, &io, &time, format!("! not joined: {topic}")),
                }
            }
            Command::Presence { topic } => {
                match channels.iter().find(|(_, c, _, _)| c.topic == topic) {
                    Some((_, _, _, Some(p))) => {
                        let keys: Vec<String> = p
                            .state
                            .iter()
                            .map(|(k, e)| format!("{k} ({} meta)", e.metas.len()))
                            .collect();
                        say(
                            console,
                            &io,
                            &time,
                            format!("  presence {topic}: {} [{}]", keys.len(), keys.join(", ")),
                        );
                    }
                    Some(_) => say(console, &io, &time, format!("! no presence on {topic}")),
                    None => say(console, &io, &time, format!("! not joined: {topic}")),
                }
            }
            Command::Status => {
                for (sock, status) in &sockets {
                    let s = sock.stats();
                    say(
                        console,
                        &io,
                        &time,
                        format!(
                            "  socket {:?}, {} frames in, {} out, rtt {}",
                            status.0,
                            s.frames_in,
                            s.frames_out,
                            s.last_rtt.map_or("n/a".into(), |d| format!(
                                "{:.1} ms",
                                d.as_secs_f64() * 1e3
                            ))
                        ),
                    );
                }
                for (_, c, st, _) in &channels {
                    say(
                        console,
                        &io,
                        &time,
                        format!("  channel {} {:?}", c.topic, st.0),
                    );
                }
                let n = console.pending.len();
                say(
                    console,
                    &io,
                    &time,
                    format!("  {n} push(es) waiting for a reply"),
                );
            }
            Command::History(n) => {
                let lines: Vec<String> = console
                    .history
                    .iter()
                    .rev()
                    .take(n)
                    .rev()
                    .cloned()
                    .collect();
                for l in lines {
                    let _ = io.output.send(l);
                }
            }
            Command::Wait(ms) => {
                console.paused_until = Some(now + Duration::from_millis(ms));
            }
            Command::Sync => console.syncing = true,
            Command::Help => {
                for l in HELP.lines() {
                    let _ = io.output.send(l.to_owned());
                }
            }
            Command::Quit => {
                console.quitting = true;
                console.input_done = true;
                break;
            }
        }
        break;
    }
    if !io.input.is_empty()
        && let Some(w) = &wait
    {
        w.waker().wake();
    }
    // End of input (or quit): exit once every push has its outcome, every join its answer and
    // every leave its close, so `printf 'join ..\npush ..\n' | console URL` prints the replies first.
    if console.quitting || (console.input_done && !console.waiting()) {
        exit.write(AppExit::Success);
    }
}

/// What the server and the connection said, read by [`print_events`].
#[derive(bevy::ecs::system::SystemParam)]
struct Heard<'w, 's> {
    messages: MessageReader<'w, 's, ChannelMessage>,
    replies: MessageReader<'w, 's, PushReplied>,
    presence: MessageReader<'w, 's, PresenceChanged>,
    joined: MessageReader<'w, 's, ChannelJoined>,
    errored: MessageReader<'w, 's, ChannelErrored>,
    closed: MessageReader<'w, 's, ChannelClosed>,
    connected: MessageReader<'w, 's, SocketConnected>,
    disconnected: MessageReader<'w, 's, SocketDisconnected>,
    refused: MessageReader<'w, 's, SocketConnectRefused>,
    failed: MessageReader<'w, 's, SocketConnectFailed>,
    protocol: MessageReader<'w, 's, PhoenixProtocolError>,
}

fn print_events(
    mut console: ResMut<Console>,
    io: Res<ConsoleIo>,
    time: Res<Time<Real>>,
    heard: Heard,
) {
    let Heard {
        mut messages,
        mut replies,
        mut presence,
        mut joined,
        mut errored,
        mut closed,
        mut connected,
        mut disconnected,
        mut refused,
        mut failed,
        mut protocol,
    } = heard;
    let console = &mut *console;
    for c in connected.read() {
        let _ = c;
        say(console, &io, &time, "* connected".into());
    }
    for d in disconnected.read() {
        say(
            console,
            &io,
            &time,
            format!("* disconnected: {:?}", d.reason),
        );
    }
    for r in refused.read() {
        say(
            console,
            &io,
            &time,
            format!("* connect refused: HTTP {}", r.status),
        );
    }
    for f in failed.read() {
        say(
            console,
            &io,
            &time,
            format!("* connect failed: {}", f.error),
        );
    }
    for j in joined.read() {
        console.joining.retain(|t| t != &*j.topic);
        let again = if j.rejoin { " (rejoin)" } else { "" };
        say(
            console,
            &io,
            &time,
            format!(
                "< joined {}{again} {}",
                j.topic,
                j.response.json().unwrap_or("<binary>")
            ),
        );
    }
    for e in errored.read() {
        // A refused join is an answer: do not wait for it at the end of input.
        if matches!(e.reason, ChannelError::JoinRefused(_)) {
            console.joining.retain(|t| t != &*e.topic);
        }
        say(
            console,
            &io,
            &time,
            format!("< channel {} errored: {:?}", e.topic, e.reason),
        );
    }
    for c in closed.read() {
        console.joining.retain(|t| t != &*c.topic);
        console.leaving.retain(|t| t != &*c.topic);
        say(
            console,
            &io,
            &time,
            format!("< channel {} closed: {:?}", c.topic, c.reason),
        );
    }
    for m in messages.read() {
        let kind = if m.broadcast { "broadcast" } else { "push" };
        let payload = match m.payload.json() {
            Some(j) => j.to_owned(),
            None => format!("<{} binary bytes>", m.payload.raw().len()),
        };
        say(
            console,
            &io,
            &time,
            format!("< {} {} {payload} ({kind})", m.topic, m.event),
        );
    }
    for r in replies.read() {
        let Some((n, topic, event)) = console.pending.remove(&r.handle) else {
            continue;
        };
        let outcome = match &r.outcome {
            PushOutcome::Ok(p) => format!("ok {}", p.json().unwrap_or("<binary>")),
            PushOutcome::Error(p) => format!("error {}", p.json().unwrap_or("<binary>")),
            PushOutcome::Timeout => "timeout".into(),
            PushOutcome::Sent => "sent".into(),
            PushOutcome::Dropped(why) => format!("dropped: {why:?}"),
        };
        say(
            console,
            &io,
            &time,
            format!("< reply #{n} {topic} {event}: {outcome}"),
        );
    }
    for p in presence.read() {
        if let PresenceEvent::Change(c) = &p.event {
            let sign = match c {
                PresenceChange::Join { .. } => '+',
                PresenceChange::Leave { remaining, .. } if remaining.is_empty() => '-',
                PresenceChange::Leave { .. } => '~',
            };
            say(
                console,
                &io,
                &time,
                format!("< presence {} {sign}{}", p.topic, c.key()),
            );
        }
    }
    for e in protocol.read() {
        say(
            console,
            &io,
            &time,
            format!("! malformed frame from the server: {}", e.error),
        );
    }
}
