//! The headless preset: every schedule single-threaded (systems run on the thread that calls
//! `update`) and `WaitForNetwork` in place (an idle frame sleeps instead of spinning), and a
//! client built with it in one line connects, joins and gets replies.
#![allow(clippy::unwrap_used)]

mod support;

use std::thread::ThreadId;
use std::time::Duration;

use bevy::prelude::*;
use bevy_phoenix_channels::prelude::*;
use serde_json::json;
use support::*;

#[derive(Resource, Default)]
struct Threads(Vec<ThreadId>);

fn record(mut t: ResMut<Threads>) {
    t.0.push(std::thread::current().id());
}

/// Threads that ran `record` in `Update` and `PostUpdate` over a few frames.
fn threads_of(mut app: App) -> Vec<ThreadId> {
    app.init_resource::<Threads>()
        .add_systems(Update, record)
        .add_systems(PostUpdate, record);
    app.finish();
    app.cleanup();
    for _ in 0..20 {
        app.update();
    }
    app.world().resource::<Threads>().0.clone()
}

#[test]
fn the_preset_runs_every_system_on_the_calling_thread() {
    let me = std::thread::current().id();
    // Control: Bevy's default executor hands Send systems to its task pool.
    let mut default = App::new();
    default.add_plugins((MinimalPlugins, PhoenixChannelsPlugin::default()));
    let threads = threads_of(default);
    assert!(
        threads.iter().any(|t| *t != me),
        "the control ran on the main thread only"
    );

    let mut preset = App::new();
    preset.add_plugins(PhoenixHeadlessPlugins::without_socket());
    let threads = threads_of(preset);
    assert_eq!(threads.len(), 40);
    assert!(threads.iter().all(|t| *t == me), "{threads:?}");
    assert!(
        App::new()
            .add_plugins(PhoenixHeadlessPlugins::without_socket().up_to(Duration::from_millis(7)))
            .world()
            .get_resource::<WaitForNetwork>()
            .is_some_and(|w| w.max_wait == Duration::from_millis(7))
    );
}

#[test]
fn a_one_line_headless_client_joins_and_sleeps_while_idle() {
    let server = Server::start();
    let mut app = App::new();
    app.add_plugins(
        PhoenixHeadlessPlugins::with_config(config(&server.url)).up_to(Duration::from_millis(200)),
    )
    .init_resource::<Log>()
    .add_systems(Update, support::collect);
    app.finish();
    app.cleanup();
    let ch = join(&mut app, PhoenixChannel::new(unique("echo:headless-")));
    wait_joined(&mut app, ch);
    let h = push(
        &mut app,
        PushMessage::json(ch, "echo", &json!({"n": 1})).unwrap(),
    );
    assert!(matches!(reply(&mut app, h).outcome, PushOutcome::Ok(_)));
    // Idle: nothing arrives and no timer is due for 30 s, so each frame sleeps its 200 ms.
    // A loop that spun would run thousands of frames in this second.
    let frames = frames_in(&mut app, Duration::from_secs(1));
    assert!(
        frames <= 10,
        "{frames} idle frames in a second: the loop did not sleep"
    );
}

/// A future that wakes itself `left` times before it completes, counting its polls.
struct Yields {
    left: u32,
    polls: std::rc::Rc<std::cell::Cell<u32>>,
}

impl std::future::Future for Yields {
    type Output = ();
    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<()> {
        self.polls.set(self.polls.get() + 1);
        if self.left == 0 {
            return std::task::Poll::Ready(());
        }
        self.left -= 1;
        cx.waker().wake_by_ref();
        std::task::Poll::Pending
    }
}

/// The preset replaces Bevy's task-pool tick (300 `try_tick`s every frame) with one that stops
/// when nothing is queued: tasks spawned on the main thread still run, at the same pace (at most
/// 300 steps a frame), and Bevy's plugin with its tick is not in the app.
#[test]
fn the_preset_still_runs_main_thread_tasks_at_bevys_pace() {
    let mut app = App::new();
    app.add_plugins(PhoenixHeadlessPlugins::without_socket().up_to(Duration::from_millis(1)));
    app.finish();
    app.cleanup();
    app.update();
    let polls = std::rc::Rc::new(std::cell::Cell::new(0));
    bevy::tasks::ComputeTaskPool::get()
        .spawn_local(Yields {
            left: 450,
            polls: polls.clone(),
        })
        .detach();
    app.update();
    assert_eq!(polls.get(), 300, "one frame runs up to 300 steps");
    app.update();
    assert_eq!(polls.get(), 451, "the next frame finishes the task");
    app.update();
    assert_eq!(polls.get(), 451);

    // Bevy's plugin (and its 300-tick system) is not in the app; ours is.
    assert!(!app.is_plugin_added::<bevy::app::TaskPoolPlugin>());
    assert!(app.is_plugin_added::<HeadlessTaskPoolPlugin>());
}
