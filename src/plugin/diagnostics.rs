//! Optional diagnostics: RTT, messages and bytes per second, reconnects, pending pushes, as
//! `bevy_diagnostic` paths (summed over every socket).

use bevy::diagnostic::{Diagnostic, DiagnosticPath, Diagnostics, RegisterDiagnostic};
use bevy::prelude::*;

use super::PhoenixSystems;
use super::components::PhoenixSocket;

/// Registers the Phoenix diagnostics. Add it after [`PhoenixChannelsPlugin`](super::PhoenixChannelsPlugin).
#[derive(Default)]
pub struct PhoenixDiagnosticsPlugin;

impl PhoenixDiagnosticsPlugin {
    /// Round trip of the last heartbeat, in milliseconds.
    pub const RTT: DiagnosticPath = DiagnosticPath::const_new("phoenix/rtt_ms");
    /// Frames received per second.
    pub const MESSAGES_IN: DiagnosticPath = DiagnosticPath::const_new("phoenix/messages_in_per_s");
    /// Frames sent per second.
    pub const MESSAGES_OUT: DiagnosticPath =
        DiagnosticPath::const_new("phoenix/messages_out_per_s");
    /// Bytes received per second.
    pub const BYTES_IN: DiagnosticPath = DiagnosticPath::const_new("phoenix/bytes_in_per_s");
    /// Bytes sent per second.
    pub const BYTES_OUT: DiagnosticPath = DiagnosticPath::const_new("phoenix/bytes_out_per_s");
    /// Reconnects since start.
    pub const RECONNECTS: DiagnosticPath = DiagnosticPath::const_new("phoenix/reconnects");
    /// Pushes waiting for a reply or in a buffer.
    pub const PENDING_PUSHES: DiagnosticPath = DiagnosticPath::const_new("phoenix/pending_pushes");
}

impl Plugin for PhoenixDiagnosticsPlugin {
    fn build(&self, app: &mut App) {
        for path in [
            Self::RTT,
            Self::MESSAGES_IN,
            Self::MESSAGES_OUT,
            Self::BYTES_IN,
            Self::BYTES_OUT,
            Self::RECONNECTS,
            Self::PENDING_PUSHES,
        ] {
            app.register_diagnostic(Diagnostic::new(path));
        }
        app.add_systems(PostUpdate, measure.after(PhoenixSystems::Send));
    }
}

#[derive(Default)]
struct Last {
    at: Option<std::time::Duration>,
    frames_in: u64,
    frames_out: u64,
    bytes_in: u64,
    bytes_out: u64,
}

fn measure(
    time: Res<Time<Real>>,
    sockets: Query<&PhoenixSocket>,
    mut diagnostics: Diagnostics,
    mut last: Local<Last>,
) {
    let (mut fi, mut fo, mut bi, mut bo, mut rc, mut pending) = (0, 0, 0, 0, 0, 0);
    let mut rtt: Option<f64> = None;
    for s in &sockets {
        let st = s.stats();
        fi += st.frames_in;
        fo += st.frames_out;
        bi += st.bytes_in;
        bo += st.bytes_out;
        rc += st.reconnects;
        pending += s.core().pending_pushes();
        if let Some(r) = st.last_rtt {
            let ms = r.as_secs_f64() * 1000.0;
            rtt = Some(rtt.map_or(ms, |m: f64| m.max(ms)));
        }
    }
    let now = time.elapsed();
    if let Some(at) = last.at {
        let dt = (now - at).as_secs_f64();
        if dt > 0.0 {
            let rate = |a: u64, b: u64| a.saturating_sub(b) as f64 / dt;
            let (lfi, lfo, lbi, lbo) = (
                last.frames_in,
                last.frames_out,
                last.bytes_in,
                last.bytes_out,
            );
            diagnostics.add_measurement(&PhoenixDiagnosticsPlugin::MESSAGES_IN, || rate(fi, lfi));
            diagnostics.add_measurement(&PhoenixDiagnosticsPlugin::MESSAGES_OUT, || rate(fo, lfo));
            diagnostics.add_measurement(&PhoenixDiagnosticsPlugin::BYTES_IN, || rate(bi, lbi));
            diagnostics.add_measurement(&PhoenixDiagnosticsPlugin::BYTES_OUT, || rate(bo, lbo));
        }
    }
    if let Some(ms) = rtt {
        diagnostics.add_measurement(&PhoenixDiagnosticsPlugin::RTT, || ms);
    }
    diagnostics.add_measurement(&PhoenixDiagnosticsPlugin::RECONNECTS, || rc as f64);
    diagnostics.add_measurement(&PhoenixDiagnosticsPlugin::PENDING_PUSHES, || pending as f64);
    *last = Last {
        at: Some(now),
        frames_in: fi,
        frames_out: fo,
        bytes_in: bi,
        bytes_out: bo,
    };
}
