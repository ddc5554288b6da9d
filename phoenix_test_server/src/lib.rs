//! A Phoenix Channels server in Rust that answers frame for frame like Phoenix 1.7.24 on Bandit
//! (and, with [`PhoenixVersion::V1_8`], like 1.8.12), for client tests, examples and benchmarks.
//!
//! It serves `ws://127.0.0.1:PORT/socket/websocket?vsn=2.0.0` with the reference app's channels
//! built in (`echo:*`, `room:*` with Presence, `private:*`), accepts the Phoenix 1.8 auth token
//! subprotocol, and has fault injection ([`Faults`]) for reconnect, timeout and slow-consumer
//! tests. Its tests replay the captured Phoenix transcripts in `tests/transcripts/` frame for
//! frame. Your own channels implement [`Channel`].
//!
//! ```
//! use std::time::Duration;
//! use phoenix_test_server::{Refusal, TestServer};
//!
//! let server = phoenix_test_server::start().unwrap();
//! let endpoint = server.url(); // "ws://127.0.0.1:PORT/socket"
//! # let _ = endpoint;
//! // ... connect a client to `{endpoint}/websocket?vsn=2.0.0` ...
//! server.faults().refuse_connections(Refusal::TcpRefused, Some(Duration::from_millis(200)));
//! server.faults().drop_all_connections(false);
//! assert!(server.wait_for_open_connections(0, Duration::from_secs(5)));
//!
//! // A configured server with a channel of your own (see `Channel`):
//! let server = TestServer::builder()
//!     .idle_timeout(Duration::from_millis(500))
//!     .connect_check(|params, token| params.get("user").is_some() || token.is_some())
//!     .start()
//!     .unwrap();
//! # drop(server);
//! ```
//!
//! For a game's embedded server, [`ServerBuilder::bind`] listens on another address (`0.0.0.0`
//! for the local network; [`TestServer::url`] still names `127.0.0.1`) and
//! [`ServerBuilder::static_dir`] serves a directory over plain HTTP like Phoenix's `Plug.Static`
//! (`/` is its `index.html`, `.wasm` is `application/wasm`), next to the websocket endpoint:
//!
//! ```no_run
//! use std::net::Ipv4Addr;
//! let server = phoenix_test_server::TestServer::builder()
//!     .bind(Ipv4Addr::UNSPECIFIED.into())
//!     .port(4000)
//!     .static_dir("dist")
//!     .start()?;
//! // http://<this machine>:4000/ serves dist/index.html; the game connects to ws://...:4000/socket.
//! # drop(server);
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! Threads: one listener, one timer, and per connection a reader (the "socket process": it
//! decodes frames and runs channel callbacks in order) and a writer (buffered, flushed when its
//! queue is empty). Everything stops when the [`TestServer`] is dropped.

mod builtin;
mod channel;
mod conn;
mod http;
mod pubsub;
mod serializer;
mod server;
mod static_files;
mod timer;
mod ws;

pub use builtin::{EchoChannel, PrivateChannel, RoomChannel};
pub use channel::{
    Channel, ChannelContext, HandleResult, JoinResult, ReplyHandle, Status, TerminateReason,
    unix_seconds,
};
pub use http::decode_query;
pub use serializer::Payload;
pub use server::{
    ConnectInfo, Faults, PhoenixVersion, Refusal, ServerBuilder, ServerHandle, TestServer,
    default_connect_check, start,
};
