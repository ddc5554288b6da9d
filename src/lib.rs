//! Phoenix Channels for Bevy.
pub mod plugin;
pub mod protocol;
pub mod transport;

/// Everything a game needs, in one import.
pub mod prelude {
    pub use crate::plugin::*;
    pub use crate::protocol::{
        Backoff, ChannelError, ChannelState, CloseReason, ConnectionState, DisconnectReason,
        DropReason, OutPayload, Payload, PresenceChange, PresenceEntry, PresenceEvent,
        PresenceMeta, PresenceState, PushOptions, PushOutcome, SocketConfig,
    };
}
