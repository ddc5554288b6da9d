//! [`PhoenixHeadlessPlugin`] and [`PhoenixHeadlessPlugins`]: the measured best configuration for
//! a headless client (a bot, a load tester, a tool, a dedicated server talking to Phoenix), and
//! [`HeadlessTaskPoolPlugin`], the group's cheaper stand-in for Bevy's `TaskPoolPlugin`.

use std::time::Duration;

use bevy::app::{PluginGroupBuilder, TaskPoolOptions, TaskPoolPlugin};
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

/// Bevy's `TaskPoolPlugin` with a cheaper per-frame tick, for headless apps; part of
/// [`PhoenixHeadlessPlugins`] in its place.
///
/// It creates the same global task pools from the same [`TaskPoolOptions`]. Bevy's plugin also
/// adds a system to `Last` that runs tasks spawned on the main thread's local executor
/// (`TaskPool::spawn_local`): it calls `try_tick` on that executor 300 times every frame (100 per
/// pool, and the three pools share the one executor), whether or not anything is queued: on the
/// benchmark machine about half of an idle headless frame (the swarm's idle frame went from 4.1 to
/// 1.9 µs; BENCHMARKS.md, "The headless preset's frame"). This plugin's system ticks the same
/// executor until it has nothing to run, at most 300 times, so tasks progress as before and an
/// idle frame pays one `try_tick`. On the web (where Bevy adds no such system) it adds none either.
///
/// With your own `MinimalPlugins` (and [`PhoenixHeadlessPlugin`]), swap it in yourself:
///
/// ```no_run
/// use bevy::app::TaskPoolPlugin;
/// use bevy::prelude::*;
/// use bevy_phoenix_channels::prelude::*;
///
/// App::new()
///     .add_plugins((
///         MinimalPlugins
///             .build()
///             .add_before::<TaskPoolPlugin>(HeadlessTaskPoolPlugin::default())
///             .disable::<TaskPoolPlugin>(),
///         PhoenixChannelsPlugin::new("ws://127.0.0.1:4000/socket"),
///         PhoenixHeadlessPlugin::default(),
///     ))
///     .run();
/// ```
#[derive(Default)]
pub struct HeadlessTaskPoolPlugin {
    /// The pools' sizes, as in Bevy's `TaskPoolPlugin`.
    pub task_pool_options: TaskPoolOptions,
}

impl Plugin for HeadlessTaskPoolPlugin {
    fn build(&self, app: &mut App) {
        self.task_pool_options.create_default_pools();
        #[cfg(not(target_arch = "wasm32"))]
        app.add_systems(Last, tick_main_thread_tasks);
        #[cfg(target_arch = "wasm32")]
        let _ = app;
    }
}

/// Runs what the main thread's local executor has queued, up to the 300 steps per frame Bevy's own
/// system allows, and stops at the first empty tick.
#[cfg(not(target_arch = "wasm32"))]
fn tick_main_thread_tasks(_main_thread: bevy::ecs::system::NonSendMarker) {
    // Every pool hands out the same thread-local executor, so one is enough.
    bevy::tasks::ComputeTaskPool::get().with_local_executor(|executor| {
        for _ in 0..300 {
            if !executor.try_tick() {
                break;
            }
        }
    });
}

/// A headless Phoenix client in one line: [`MinimalPlugins`] (with [`HeadlessTaskPoolPlugin`] in
/// place of Bevy's `TaskPoolPlugin`: configure the task pools with
/// `.set(HeadlessTaskPoolPlugin { .. })`), [`PhoenixChannelsPlugin`] with a default socket, and
/// [`PhoenixHeadlessPlugin`].
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
            .add_before::<TaskPoolPlugin>(HeadlessTaskPoolPlugin::default())
            .disable::<TaskPoolPlugin>()
            .add(PhoenixChannelsPlugin {
                default_socket: self.socket,
            })
            .add(self.headless)
    }
}
