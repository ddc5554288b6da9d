//! A `Commands` extension: join and push from any system in one line.

use bevy::prelude::*;

use super::components::PhoenixChannel;
use super::messages::{LeaveChannel, PushHandle, PushMessage, SocketCommand};

/// Phoenix shortcuts on [`Commands`].
pub trait PhoenixCommandsExt {
    /// Joins `topic` on the default socket: spawns its channel entity and returns it (add
    /// components or observers to it).
    fn join_channel(&mut self, channel: PhoenixChannel) -> EntityCommands<'_>;

    /// Queues a push and returns the handle its [`PushReplied`](super::PushReplied) will carry.
    fn push(&mut self, push: PushMessage) -> PushHandle;

    /// Leaves a channel (entity or topic).
    fn leave_channel(&mut self, leave: LeaveChannel);

    /// Connects or disconnects a socket.
    fn socket_command(&mut self, command: SocketCommand);
}

impl PhoenixCommandsExt for Commands<'_, '_> {
    fn join_channel(&mut self, channel: PhoenixChannel) -> EntityCommands<'_> {
        self.spawn(channel)
    }

    fn push(&mut self, push: PushMessage) -> PushHandle {
        let handle = push.handle;
        self.write_message(push);
        handle
    }

    fn leave_channel(&mut self, leave: LeaveChannel) {
        self.write_message(leave);
    }

    fn socket_command(&mut self, command: SocketCommand) {
        self.write_message(command);
    }
}
