//! [`PhoenixHeadlessPlugin`] and [`PhoenixHeadlessPlugins`]: the measured best configuration for
//! a headless client (a bot, a load tester, a tool, a dedicated server talking to Phoenix).

use std::time::Duration;

use bevy::app::PluginGroupBuilder;
use bevy::ecs::schedule::{Schedules, SingleThreadedExecutor};
use bevy::prelude::*;

use super::{PhoenixChannelsPlugin, PhoenixSocketConfig, WaitForNetwork};

/// Puts every schedule on the single-threaded executor and inserts
/// [`WaitForNetwork::up_to`]`(max_wait)`: what BENCHMARKS.md measured best for headless apps.
///
/// - **Single-threaded executor.** On the 2-core benchmark machine an empty `MinimalPlugins`
///   frame costs 60–86 µs with Bevy's multi-threaded executor (it hands `Send` systems to
///   task-pool threads and waits for them) and 7–10 µs single-threaded; the plugin's round
///   trip is about a frame, so it dropped to 0.67× a raw blocking tungstenite client's.
/// - **[`WaitForNetwork`].** The loop sleeps at the end of each frame until a socket has
///   something, a timer is due, or `max_wait` passes, instead of spinning a core: in the
///   100k-message burst it cut CPU per message from 3.2–3.4× a raw client's to about 1.7×.
///
/// The executor is set in [`Plugin::finish`], on every schedule that exists then (all of
/// `Main`'s and the fixed-timestep ones); a schedule you create later keeps Bevy's default.
/// Native only in effect: on the web, [`WaitForNetwork`] does nothing and the browser paces
/// frames. Do not use it with a window (winit has its own reactive modes).
///
/// ```no_run
/// use bevy::prelude::*;
/// use bevy_phoenix_channels::prelude::*;
///
/// App::new()
///     .add_plugins((
///         MinimalPlugins,
///         PhoenixChannelsPlugin::new("ws://127.0.0.1:4000/socket"),
///         PhoenixHeadlessPlugin::default(),
///     ))
///     .run();
/// ```
#[derive(Debug, Clone)]
pub struct PhoenixHeadlessPlugin {
    /// The longest one frame sleeps waiting for the network (16 ms): the loop still runs at
    /// least this often for your own timers.
    pub max_wait: Duration,
}

impl Default for PhoenixHeadlessPlugin {
    fn default() -> Self {
        PhoenixHeadlessPlugin {
            max_wait: Duration::from_millis(16),
        }
    }
}

impl PhoenixHeadlessPlugin {
    /// Sleep up to `max_wait` per frame.
    pub fn up_to(max_wait: Duration) -> Self {
        PhoenixHeadlessPlugin { max_wait }
    }
}

impl Plugin for PhoenixHeadlessPlugin {
    fn build(&self, app: &mut App) {
        app.insert_resource(WaitForNetwork::up_to(self.max_wait));
    }

    fn finish(&self, app: &mut App) {
        let mut schedules = app.world_mut().resource_mut::<Schedules>();
        for (_, schedule) in schedules.iter_mut() {
            schedule.set_executor(SingleThreadedExecutor::new());
        }
    }
}

/// A headless Phoenix client in one line: [`MinimalPlugins`], [`PhoenixChannelsPlugin`] with a
/// default socket, and [`PhoenixHeadlessPlugin`].
///
/// ```no_run
/// use bevy::prelude::*;
/// use bevy_phoenix_channels::prelude::*;
///
/// App::new()
///     .add_plugins(PhoenixHeadlessPlugins::new("ws://127.0.0.1:4000/socket"))
///     .run();
/// ```
///
/// Without a default socket (spawn [`PhoenixSocket`](super::PhoenixSocket) entities yourself,
/// e.g. a swarm of bots): [`PhoenixHeadlessPlugins::without_socket`].
#[derive(Debug, Clone)]
pub struct PhoenixHeadlessPlugins {
    socket: Option<PhoenixSocketConfig>,
    headless: PhoenixHeadlessPlugin,
}

impl PhoenixHeadlessPlugins {
    /// With a default socket connecting to `endpoint`.
    pub fn new(endpoint: impl Into<String>) -> Self {
        Self::with_config(PhoenixSocketConfig::new(endpoint))
    }

    /// With a default socket using `config`.
    pub fn with_config(config: impl Into<PhoenixSocketConfig>) -> Self {
        PhoenixHeadlessPlugins {
            socket: Some(config.into()),
            headless: PhoenixHeadlessPlugin::default(),
        }
    }

    /// With no default socket.
    pub fn without_socket() -> Self {
        PhoenixHeadlessPlugins {
            socket: None,
            headless: PhoenixHeadlessPlugin::default(),
        }
    }

    /// Sleep up to `max_wait` per frame (default 16 ms).
    pub fn up_to(mut self, max_wait: Duration) -> Self {
        self.headless.max_wait = max_wait;
        self
    }
}

impl PluginGroup for PhoenixHeadlessPlugins {
    fn build(self) -> PluginGroupBuilder {
        PluginGroupBuilder::start::<Self>()
            .add_group(MinimalPlugins)
            .add(PhoenixChannelsPlugin {
                default_socket: self.socket,
            })
            .add(self.headless)
    }
}
