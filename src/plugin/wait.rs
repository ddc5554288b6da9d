//! [`WaitForNetwork`]: a headless frame loop that sleeps until the server sends something.

#[cfg(not(target_arch = "wasm32"))]
use std::cmp::Reverse;
use std::time::Duration;

use bevy::prelude::*;

#[cfg(not(target_arch = "wasm32"))]
use super::{PhoenixClock, PhoenixTransports};
use crate::transport::NetworkWaker;

/// Lets a headless app sleep at the end of each frame until the network has something for it.
///
/// An uncapped headless loop (`MinimalPlugins`, a bot, a load-test client, a dedicated server)
/// spins a core at 100 % while it waits for the server; a fixed frame cap (for example
/// `ScheduleRunnerPlugin::run_loop(1/60 s)`) saves the CPU but adds up to a frame of latency to
/// everything the server sends. With this resource, the plugin's [`PhoenixSystems::Wait`]
/// system (in [`Last`]) blocks until the first of:
///
/// - a socket has data to read (or can take writes a full send buffer held back),
/// - a socket finishes connecting, or a closing socket hears from its peer,
/// - the socket's next timer (heartbeat, reconnect, rejoin, push timeout) is due,
/// - [`waker`](Self::waker) is woken from another thread,
/// - the frame's [`wake_by`](Self::wake_by) deadline: the app's own timers (a bot's next move, a
///   server tick),
/// - `max_wait` has passed: the loop still runs at least every `max_wait`.
///
/// The wait runs in [`Last`], in [`PhoenixSystems::Wait`]: order other `Last` systems
/// `.before(PhoenixSystems::Wait)` if their work must not wait. A frame that slept has a long
/// delta: `Time<Virtual>` clamps a delta to its `max_delta` (250 ms by default), so keep
/// `max_wait` below that if game time must not fall behind wall time.
///
/// It does not sleep while some socket still has frames or events waiting (a burst larger than
/// [`PhoenixSocketConfig::max_frames_per_update`](super::PhoenixSocketConfig) goes on at full
/// speed). The wait only knows about this plugin's sockets: wake it yourself for other sources
/// of work ([`waker`](Self::waker) from other threads, [`wake_by`](Self::wake_by) for your own
/// systems' timers), and do not use it with a window (winit has its own reactive modes). On the
/// web it does nothing: the browser drives the frames.
///
/// ```no_run
/// use std::time::Duration;
/// use bevy::prelude::*;
/// use bevy_phoenix_channels::prelude::*;
///
/// App::new()
///     .add_plugins((MinimalPlugins, PhoenixChannelsPlugin::new("ws://127.0.0.1:4000/socket")))
///     // Run when the server speaks, and at least 20 times a second otherwise.
///     .insert_resource(WaitForNetwork::up_to(Duration::from_millis(50)))
///     .run();
/// ```
///
/// [`PhoenixSystems::Wait`]: super::PhoenixSystems::Wait
#[derive(Resource, Debug, Clone)]
pub struct WaitForNetwork {
    /// The longest one frame sleeps.
    pub max_wait: Duration,
    waker: NetworkWaker,
    /// This frame's [`wake_by`](Self::wake_by) deadline; the wait takes it.
    deadline: Option<web_time::Instant>,
}

impl WaitForNetwork {
    /// Sleep up to `max_wait` per frame.
    ///
    /// If the waker cannot be made (the process is out of file descriptors), the warning is
    /// logged and the wait still watches the sockets, but a connecting socket then keeps the
    /// loop running until it opens.
    pub fn up_to(max_wait: Duration) -> Self {
        let waker = NetworkWaker::new().unwrap_or_else(|e| {
            warn!("phoenix: WaitForNetwork cannot make its waker ({e}); connects will not wake it");
            NetworkWaker::none()
        });
        WaitForNetwork {
            max_wait,
            waker,
            deadline: None,
        }
    }

    /// Ends this frame's wait by `at` at the latest: for work the app has scheduled itself (a
    /// bot's next move, a fixed server tick), which the plugin cannot see. It holds for the
    /// frame it is called in (the wait at that frame's end takes it), so call it each frame the
    /// deadline still matters; of several calls the earliest wins. A deadline already past
    /// skips the sleep. (`web_time::Instant` is `std::time::Instant` natively, where the wait
    /// runs.)
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    /// use bevy::prelude::*;
    /// use bevy_phoenix_channels::prelude::*;
    ///
    /// #[derive(Resource)]
    /// struct NextMove(Instant);
    ///
    /// /// Moves go out on time: the frame's wait ends when the next one is due.
    /// fn schedule_moves(next: Res<NextMove>, mut wait: ResMut<WaitForNetwork>) {
    ///     wait.wake_by(next.0);
    /// }
    /// # let mut app = App::new();
    /// # app.insert_resource(WaitForNetwork::up_to(Duration::from_millis(50)))
    /// #     .insert_resource(NextMove(Instant::now()))
    /// #     .add_systems(Update, schedule_moves);
    /// # app.update();
    /// ```
    pub fn wake_by(&mut self, at: web_time::Instant) {
        self.deadline = Some(self.deadline.map_or(at, |d| d.min(at)));
    }

    /// A handle that ends the current (or next) wait from any thread.
    pub fn waker(&self) -> NetworkWaker {
        self.waker.clone()
    }
}

/// [`Last`]: sleeps as [`WaitForNetwork`] says.
#[cfg(not(target_arch = "wasm32"))]
pub(super) fn wait_system(
    mut wait: ResMut<WaitForNetwork>,
    clock: Res<PhoenixClock>,
    time: Res<Time<Real>>,
    transports: NonSend<PhoenixTransports>,
    activity: Res<super::Activity>,
    mut warned: Local<bool>,
) {
    // The app's deadline holds for this frame only (taking it is not a change to report).
    let deadline = wait.bypass_change_detection().deadline.take();
    let now = clock.now(&time);
    // The clock was read when the frame began; the frame has run since.
    let spent = time.last_update().map(|t| t.elapsed()).unwrap_or_default();
    let mut timeout = wait.max_wait;
    let mut until = |at: web_time::Instant| {
        timeout = timeout.min(at.saturating_duration_since(now).saturating_sub(spent));
    };
    // Events not handed out yet, or a socket inserted since the send pass (the next one starts
    // it): no sleep. Otherwise every socket's next timer is in the plugin's heap (the receive
    // and send passes put it there); no socket is read.
    if !activity.emit.is_empty() || !activity.inserted.is_empty() {
        return;
    }
    if let Some(Reverse((at, _))) = transports.timers.peek() {
        until(*at);
    }
    if let Some(at) = deadline {
        timeout = timeout.min(at.saturating_duration_since(web_time::Instant::now()));
    }
    if timeout.is_zero() {
        return;
    }
    if let Err(e) = crate::transport::wait_for_hints(
        transports.wait_hints(),
        &wait.waker,
        transports.readiness.as_ref(),
        timeout,
    ) && !*warned
    {
        *warned = true;
        warn!("phoenix: waiting for the network failed, frames go on without it: {e}");
    }
}
