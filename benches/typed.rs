//! Typed messages against decoding by hand (criterion). Numbers go into BENCHMARKS.md.
//!
//! `cargo bench --bench typed`
//!
//! One frame of an app that received 1,000 `move` messages (no socket: the messages are
//! written straight into Bevy's queue, so only the delivery is timed), read by ONE system or by
//! THREE systems:
//! - `raw`: each reader filters `ChannelMessage` by event and decodes the payload itself;
//! - `typed`: `add_channel_message::<Move>("move")` decodes each once, readers read `Received<Move>`;
//! - `observed`: the same route with `.observed()`, one observer on the channel entity.
#![allow(missing_docs, clippy::unwrap_used)]

use std::hint::black_box;

use bevy::prelude::*;
use bevy_phoenix_channels::prelude::*;
use bevy_phoenix_channels::protocol::{EventName, Topic};
use criterion::{BatchSize, BenchmarkId, Criterion, criterion_group, criterion_main};

const N: usize = 1_000;
const PAYLOAD: &str = r#"{"id":"player-17","x":123.5,"y":-48.25,"vx":1.5,"vy":0.0,"seq":123456}"#;

#[derive(serde::Deserialize)]
#[allow(dead_code)]
struct Move {
    id: String,
    x: f32,
    y: f32,
    vx: f32,
    vy: f32,
    seq: u64,
}

#[derive(Resource, Default)]
struct Sum(f64);

fn raw_reader(mut r: MessageReader<ChannelMessage>, mut sum: ResMut<Sum>) {
    for m in r.read().filter(|m| m.is("move")) {
        if let Ok(mv) = m.decode::<Move>() {
            sum.0 += f64::from(mv.x);
        }
    }
}

fn typed_reader(mut r: MessageReader<Received<Move>>, mut sum: ResMut<Sum>) {
    for m in r.read() {
        sum.0 += f64::from(m.value.x);
    }
}

#[derive(Clone, Copy)]
enum Kind {
    Raw,
    Typed,
    Observed,
}

fn app(kind: Kind, readers: usize) -> (App, Entity) {
    let mut app = App::new();
    app.add_plugins((MinimalPlugins, PhoenixChannelsPlugin::default()))
        .init_resource::<Sum>();
    match kind {
        Kind::Raw => {
            for _ in 0..readers {
                app.add_systems(Update, raw_reader);
            }
        }
        Kind::Typed => {
            app.add_channel_message::<Move>("move");
            for _ in 0..readers {
                app.add_systems(Update, typed_reader);
            }
        }
        Kind::Observed => {
            app.add_channel_message::<Move>(ChannelRoute::event("move").observed());
        }
    }
    let channel = app.world_mut().spawn_empty().id();
    if let Kind::Observed = kind {
        app.world_mut()
            .entity_mut(channel)
            .observe(|e: On<ReceivedOn<Move>>, mut sum: ResMut<Sum>| sum.0 += f64::from(e.value.x));
    }
    app.update();
    (app, channel)
}

fn delivery(c: &mut Criterion) {
    let mut g = c.benchmark_group("typed_1000_moves");
    let topic: Topic = "room:lobby".into();
    let event: EventName = "move".into();
    for (name, kind, readers) in [
        ("raw", Kind::Raw, 1),
        ("typed", Kind::Typed, 1),
        ("observed", Kind::Observed, 1),
        ("raw", Kind::Raw, 3),
        ("typed", Kind::Typed, 3),
    ] {
        let (mut app, channel) = app(kind, readers);
        g.bench_function(BenchmarkId::new(name, format!("{readers}_readers")), |b| {
            b.iter_batched(
                || {
                    (0..N)
                        .map(|_| ChannelMessage {
                            socket: Entity::PLACEHOLDER,
                            channel,
                            topic: topic.clone(),
                            event: event.clone(),
                            payload: Payload::from_json(PAYLOAD),
                            broadcast: true,
                        })
                        .collect::<Vec<_>>()
                },
                |msgs| {
                    app.world_mut().write_message_batch(msgs);
                    app.update();
                    black_box(app.world().resource::<Sum>().0);
                },
                BatchSize::SmallInput,
            )
        });
    }
    g.finish();
}

criterion_group!(benches, delivery);
criterion_main!(benches);
