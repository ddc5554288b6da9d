//! Phoenix Channels client for Bevy.
pub mod protocol;
pub mod transport;
