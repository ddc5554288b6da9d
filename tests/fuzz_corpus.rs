//! Replays the committed fuzz corpora on stable: every file of `fuzz/corpus/<target>/` and
//! `fuzz/regressions/<target>/` goes through the same checking function as the cargo-fuzz
//! target of that name (`fuzz/fuzz_targets/<target>.rs` are thin wrappers over
//! `support/fuzz_checks.rs` and `support/socket_model.rs`). So the invariants the fuzzer held
//! keep holding in `cargo test` without nightly, and a regression input stays a test.
//!
//! `write_seeds` (ignored; run it by name) writes the seed corpora from the Phoenix
//! transcripts in `tests/data/`: see README "Fuzzing".
#![allow(clippy::unwrap_used)]

#[path = "support/fuzz_checks.rs"]
mod fuzz_checks;
#[path = "support/socket_model.rs"]
mod socket_model;
#[path = "support/protocol.rs"]
mod support;

use std::collections::HashMap;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::path::{Path, PathBuf};

use socket_model::{Op, Session, encode_session};
use support::{Body, DecodeError, Dir, Transcript, all_transcripts, raw_elements};

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

/// Every file of `fuzz/<kind>/<target>/`, sorted (none when the directory is absent).
fn files(kind: &str, target: &str) -> Vec<PathBuf> {
    let Ok(dir) = std::fs::read_dir(fuzz_dir().join(kind).join(target)) else {
        return Vec::new();
    };
    let mut v: Vec<PathBuf> = dir
        .filter_map(|e| Some(e.ok()?.path()))
        .filter(|p| p.is_file())
        .collect();
    v.sort();
    v
}

/// Runs `check` on every corpus and regression file of `target`; a failure names the file.
fn replay(target: &str, check: fn(&[u8])) {
    let corpus = files("corpus", target);
    assert!(
        !corpus.is_empty(),
        "fuzz/corpus/{target}/ is empty (run write_seeds)"
    );
    for path in corpus.iter().chain(&files("regressions", target)) {
        let data = std::fs::read(path).unwrap();
        if let Err(e) = catch_unwind(AssertUnwindSafe(|| check(&data))) {
            eprintln!("{target}: {} fails", path.display());
            resume_unwind(e);
        }
    }
}

#[test]
fn text_decoder_corpus() {
    replay("text_decoder", fuzz_checks::text_decoder);
}

#[test]
fn binary_decoder_corpus() {
    replay("binary_decoder", fuzz_checks::binary_decoder);
}

#[test]
fn presence_corpus() {
    replay("presence", fuzz_checks::presence);
}

#[test]
fn socket_corpus() {
    replay("socket", socket_model::socket);
}

// ------------------------------------------------------------------------------- seeding

/// A transcript connection as a socket session: its joins, pushes and leaves as app ops, the
/// server's replies as answers to our own frames, every other server frame fed as it was
/// captured (text or binary), heartbeats as timer wake-ups, the server's close as a close.
fn session_of(t: &Transcript, conn: char) -> Session {
    let presence = t.frames.iter().any(|f| match &f.body {
        Body::Text(s) => s.contains("presence_state"),
        Body::Binary { .. } => false,
    });
    let mut topics: HashMap<String, u8> = HashMap::new();
    let mut sent_refs: Vec<Option<String>> = Vec::new();
    let mut ops = Vec::new();
    for f in t.conn(conn) {
        match (&f.body, f.dir) {
            (Body::Text(s), Dir::ToServer) => {
                let Ok(el) = serde_json::from_str::<Vec<serde_json::Value>>(s) else {
                    continue;
                };
                if el.len() < 5 {
                    continue;
                }
                let topic = el[2].as_str().unwrap_or("").to_owned();
                let event = el[3].as_str().unwrap_or("");
                sent_refs.push(el[1].as_str().map(str::to_owned));
                match event {
                    "phx_join" => {
                        let n = u8::try_from(topics.len() % 3).unwrap();
                        let idx = *topics.entry(topic).or_insert(n);
                        ops.push(Op::Join {
                            topic: idx,
                            presence,
                        });
                    }
                    "phx_leave" => ops.push(Op::Leave { chan: 0 }),
                    "heartbeat" => ops.push(Op::Wake),
                    _ => ops.push(Op::Push { chan: 0, kind: 0 }),
                }
            }
            (Body::Binary { .. }, Dir::ToServer) => {
                sent_refs.push(None);
                ops.push(Op::Push { chan: 0, kind: 2 });
            }
            (Body::Text(s), Dir::ToClient) => {
                let reply = serde_json::from_str::<Vec<serde_json::Value>>(s)
                    .ok()
                    .filter(|el| el.len() >= 5 && el[3] == "phx_reply");
                if let Some(el) = reply {
                    let r = el[1].as_str().map(str::to_owned);
                    let pos = sent_refs.iter().rposition(|x| *x == r && r.is_some());
                    let which = pos.map_or(0, |p| sent_refs.len() - 1 - p);
                    let status = match el[4]["status"].as_str() {
                        Some("ok") => 0,
                        Some("error") => 1,
                        _ => 2,
                    };
                    ops.push(Op::Answer {
                        which: u8::try_from(which.min(255)).unwrap(),
                        status,
                        response: if status == 0 { 4 } else { 0 },
                    });
                }
                ops.push(Op::Garbage(s.clone()));
            }
            (Body::Binary { bytes, .. }, Dir::ToClient) => {
                ops.push(Op::RandomBinary(bytes.clone()))
            }
        }
        ops.push(Op::Advance(u32::try_from(f.ms.min(500)).unwrap()));
    }
    if t.closes.iter().any(|(c, _)| *c == conn) {
        ops.push(Op::Close(1));
        ops.push(Op::Wake);
        ops.push(Op::Open);
    }
    ops.truncate(socket_model::MAX_OPS);
    Session {
        connect_first: true,
        variant: 0,
        ops,
    }
}

/// A transcript as presence lines: `j` for each join's join_ref, `s`/`d` for each
/// presence_state / presence_diff payload.
fn presence_lines(t: &Transcript) -> Option<String> {
    let mut out = String::new();
    for f in &t.frames {
        let Body::Text(s) = &f.body else { continue };
        let Ok(el) = serde_json::from_str::<Vec<serde_json::Value>>(s) else {
            continue;
        };
        if el.len() < 5 {
            continue;
        }
        let raw = || raw_elements(s).swap_remove(4);
        match (el[3].as_str(), f.dir) {
            (Some("phx_join"), Dir::ToServer) => {
                out.push_str(&format!("j{}\n", el[0].as_str().unwrap_or("")));
            }
            (Some("presence_state"), Dir::ToClient) => out.push_str(&format!("s{}\n", raw())),
            (Some("presence_diff"), Dir::ToClient) => out.push_str(&format!("d{}\n", raw())),
            _ => {}
        }
    }
    out.contains(['s', 'd']).then_some(out)
}

fn write(target: &str, name: &str, data: &[u8]) {
    let dir = fuzz_dir().join("corpus").join(target);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(name), data).unwrap();
}

/// Writes the seed corpora from tests/data: every text frame (text_decoder), every binary
/// frame (binary_decoder), each transcript's presence payloads in order (presence), each
/// transcript connection as a session (socket). Run:
/// `cargo test --test fuzz_corpus -- --ignored write_seeds`, then `cargo fuzz cmin`.
#[test]
#[ignore = "writes fuzz/corpus; run by hand to (re)seed"]
fn write_seeds() {
    for t in all_transcripts() {
        let stem = t
            .name
            .replace(['/', '.'], "_")
            .trim_end_matches("_txt")
            .to_owned();
        for (i, f) in t.frames.iter().enumerate() {
            match &f.body {
                Body::Text(s) => write("text_decoder", &format!("seed_{stem}_{i}"), s.as_bytes()),
                Body::Binary { bytes, .. } => {
                    write("binary_decoder", &format!("seed_{stem}_{i}"), bytes);
                }
            }
        }
        if let Some(lines) = presence_lines(&t) {
            write("presence", &format!("seed_{stem}"), lines.as_bytes());
        }
        let mut conns: Vec<char> = t.frames.iter().map(|f| f.conn).collect();
        conns.dedup();
        conns.sort_unstable();
        conns.dedup();
        for c in conns {
            let s = session_of(&t, c);
            write("socket", &format!("seed_{stem}_{c}"), &encode_session(&s));
        }
    }
}

// --------------------------------------------------------------------- fuzzing's findings

/// text_decoder finding 1 (fuzz/regressions/text_decoder/reply_payload_array): `decode_reply`
/// took a JSON array as a reply (serde's derived struct visitor reads `["ok", {..}]` as
/// status and response), so a malformed `phx_reply` resolved a push as Ok. A reply payload
/// must be an object: the frame is a protocol error and the push keeps waiting.
#[test]
fn regression_reply_payload_must_be_an_object() {
    use bevy_phoenix_channels::protocol::wire::{decode_reply, decode_text};
    let f = decode_text(r#"["1","2","t","phx_reply",["ok",{"a":1}]]"#).unwrap();
    assert!(matches!(
        decode_reply(f.payload),
        Err(DecodeError::BadReply(_))
    ));
    let f = decode_text(r#"["1","2","t","phx_reply", {"status":"ok"}]"#).unwrap();
    assert_eq!(decode_reply(f.payload).unwrap().status, "ok");

    let mut h = support::H::new(support::cfg());
    h.open();
    let (ch, jr) = h.join_ok("room:1");
    let push = h.push(ch, "ev");
    let (_, r) = support::refs_of(&h.one_text());
    let r = r.unwrap();
    h.text(format!(
        r#"["{jr}","{r}","room:1","phx_reply",["ok",{{"a":1}}]]"#
    ));
    let ev = h.events();
    assert!(support::has_protocol_error(&ev), "{ev:?}");
    support::no_outcome(&ev, push);
    h.text(support::ok(jr, r, "room:1", r#"{"a":2}"#));
    assert_eq!(
        support::ok_value(&h.events(), push),
        support::val(r#"{"a":2}"#)
    );
}
