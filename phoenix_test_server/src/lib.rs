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

// Modules, bottom to top; a module uses only modules listed before it (the graph has no cycles):
//   locks                  poison-tolerant lock helpers
//   serializer, ws         Phoenix message and websocket frame formats
//   http, static_files     the upgrade request and plain HTTP files
//   timer                  the timer queue (opaque closures)
//   state                  plain data: Config, PhoenixVersion, FaultState, Stats, ConnectInfo, ...
//   peer                   one client's identity and outgoing queue
//   pubsub, presence       topic subscribers (peers) and presence diffs
//   shared                 Shared: config, faults, connection registry, pubsub, presence, timers
//   handle                 the public ServerHandle, over Shared
//   channel, builtin       the public Channel API (ChannelContext, ...) and the built-in channels
//   conn                   the socket process: reader/writer threads, runs channel callbacks
//   server                 builder, TestServer, Faults, listener; starts the server's threads
// Below `conn`, a connection is reached through the `shared::Connection` trait, which `conn`
// implements; that is what keeps `shared`, `handle` and `channel` from depending on `conn`.
mod builtin;
mod channel;
mod conn;
mod handle;
mod http;
mod locks;
mod peer;
mod presence;
mod pubsub;
mod serializer;
mod server;
mod shared;
mod state;
mod static_files;
mod timer;
mod ws;

pub use builtin::{EchoChannel, PrivateChannel, RoomChannel};
pub use channel::{
    Channel, ChannelContext, HandleResult, JoinResult, ReplyHandle, Status, TerminateReason,
    unix_seconds,
};
pub use handle::ServerHandle;
pub use http::decode_query;
pub use serializer::Payload;
pub use server::{Faults, ServerBuilder, TestServer, default_connect_check, start};
pub use state::{ConnectInfo, PhoenixVersion, Refusal};
