//! The wasm32 side of the browser bench (`node benches/web/run.mjs`; see the comment at the top
//! of that file and BENCHMARKS.md): a headless Bevy app (`MinimalPlugins` + the plugin, no
//! renderer, no window) exported to the page through wasm-bindgen as [`BenchApp`]. The page
//! drives it: one `update()` per `requestAnimationFrame` (what a browser game's runner does) or
//! one per event-loop turn in which a WebSocket event arrived (a bot), and reads the counters
//! between frames.
//!
//! Built as the library's example `web_bench` so that it shares the library's Cargo.lock and the
//! CI's `cargo check --examples --target wasm32-unknown-unknown`; natively it is an empty `main`.
#![allow(missing_docs)]

#[cfg(not(target_arch = "wasm32"))]
fn main() {
    eprintln!("web_bench runs in a browser: node benches/web/run.mjs");
}

#[cfg(target_arch = "wasm32")]
fn main() {}

#[cfg(target_arch = "wasm32")]
pub use web::BenchApp;

#[cfg(target_arch = "wasm32")]
mod web {
    use std::time::Duration;

    use bevy::prelude::*;
    use bevy_phoenix_channels::prelude::*;
    use bevy_phoenix_channels::transport::WebWorkerConnector;
    use wasm_bindgen::prelude::*;
    use web_time::Instant;

    /// The burst being counted.
    #[derive(Resource, Default)]
    struct Ticks {
        seen: u32,
    }

    fn count_ticks(mut inbox: MessageReader<ChannelMessage>, mut t: ResMut<Ticks>) {
        let mut k = 0;
        for m in inbox.read() {
            if &*m.event == "tick" {
                k += 1;
            }
        }
        t.seen += k;
    }

    /// The push payload, `{"i":N,"body":"hello"}` (as in benches/e2e_rtt.rs and phoenix.js's run).
    #[derive(serde::Serialize)]
    struct Echo {
        i: u32,
        body: &'static str,
    }

    /// Sequential echo round trips, one in flight: written in `Update`, its reply read in the
    /// `Update` of a later frame, which writes the next push at once (as benches/e2e_rtt.rs).
    #[derive(Resource, Default)]
    struct Rtt {
        channel: Option<Entity>,
        total: u32,
        warmup: u32,
        sent: u32,
        pending: Option<(PushHandle, Instant)>,
        /// Microseconds, timed round trips only.
        lat_us: Vec<f64>,
        failed: u32,
    }

    fn rtt_system(
        mut st: ResMut<Rtt>,
        mut replies: MessageReader<PushReplied>,
        mut out: MessageWriter<PushMessage>,
    ) {
        for r in replies.read() {
            if let Some((h, t0)) = st.pending
                && r.handle == h
            {
                if !r.is_ok() {
                    st.failed += 1;
                }
                let us = t0.elapsed().as_secs_f64() * 1e6;
                if st.sent > st.warmup {
                    st.lat_us.push(us);
                }
                st.pending = None;
            }
        }
        let Some(channel) = st.channel else { return };
        if st.pending.is_none() && st.sent < st.total {
            let i = st.sent;
            let Ok(msg) = PushMessage::json(channel, "echo", &Echo { i, body: "hello" }) else {
                st.failed += 1;
                return;
            };
            st.pending = Some((msg.handle, Instant::now()));
            st.sent += 1;
            out.write(msg);
        }
    }

    /// One headless app with one socket and one joined `echo:*` channel.
    #[wasm_bindgen]
    pub struct BenchApp {
        app: App,
        channel: Entity,
    }

    #[wasm_bindgen]
    impl BenchApp {
        /// An app whose socket connects to `url` (`ws://HOST:PORT/socket`) and joins `topic`;
        /// with `worker`, on the Web Worker transport (`WebWorkerConnector`).
        /// Nothing happens until the page calls [`BenchApp::update`].
        #[wasm_bindgen(constructor)]
        pub fn new(url: &str, topic: &str, worker: bool) -> BenchApp {
            let mut config = PhoenixSocketConfig::new(url)
                .with(|s| s.with_push_timeout(Duration::from_secs(600)));
            if worker {
                config = config.with_transport(WebWorkerConnector);
            }
            let mut app = App::new();
            // MinimalPlugins' schedule runner is never started (`app.run()` is not called):
            // the page calls `update()`.
            app.add_plugins(MinimalPlugins)
                .add_plugins(PhoenixChannelsPlugin::with_config(config))
                .init_resource::<Ticks>()
                .init_resource::<Rtt>()
                .add_systems(Update, (count_ticks, rtt_system));
            app.finish();
            app.cleanup();
            let channel = app.world_mut().spawn(PhoenixChannel::new(topic)).id();
            BenchApp { app, channel }
        }

        /// Runs one frame.
        pub fn update(&mut self) {
            self.app.update();
        }

        /// Whether the channel has joined.
        pub fn joined(&self) -> bool {
            self.app
                .world()
                .get::<ChannelStatus>(self.channel)
                .map(|s| s.0)
                == Some(ChannelState::Joined)
        }

        /// Resets the tick count and writes the `burst` push (it leaves in the next frame).
        pub fn start_burst(&mut self, n: u32, size: u32) -> bool {
            self.app.world_mut().resource_mut::<Ticks>().seen = 0;
            let payload = serde_json::json!({"n": n, "size": size});
            match PushMessage::json(self.channel, "burst", &payload) {
                Ok(m) => {
                    self.app.world_mut().write_message(m);
                    true
                }
                Err(_) => false,
            }
        }

        /// `tick` messages counted by the app's system since [`BenchApp::start_burst`].
        pub fn ticks(&self) -> u32 {
            self.app.world().resource::<Ticks>().seen
        }

        /// Starts `warmup + n` sequential echo round trips (the first in the next frame).
        pub fn start_rtt(&mut self, warmup: u32, n: u32) {
            let channel = self.channel;
            let mut st = self.app.world_mut().resource_mut::<Rtt>();
            *st = Rtt {
                channel: Some(channel),
                total: warmup + n,
                warmup,
                lat_us: Vec::with_capacity(n as usize),
                ..default()
            };
        }

        /// Timed round trips completed.
        pub fn rtt_done(&self) -> u32 {
            self.app.world().resource::<Rtt>().lat_us.len() as u32
        }

        /// Round trips whose reply was not `ok`.
        pub fn rtt_failed(&self) -> u32 {
            self.app.world().resource::<Rtt>().failed
        }

        /// The timed round trips' latencies in microseconds (from the push written in `Update`
        /// to its reply read in `Update`).
        pub fn rtt_latencies_us(&self) -> Vec<f64> {
            self.app.world().resource::<Rtt>().lat_us.clone()
        }
    }
}
