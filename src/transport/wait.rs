//! Native only: sleeping until the network has something for the frame loop.
//!
//! One `poll(2)` (`WSAPoll` on Windows, through rustix's safe wrapper) over every open socket
//! plus a waker: a loopback UDP socket connected to itself, which any thread can make readable
//! with one `send`. The handshake threads use it to end a wait when a connection opens, and the
//! app can use it for its own wake-ups. UDP rather than a pipe because `WSAPoll` only takes
//! sockets, so one mechanism serves every platform.

use std::io;
use std::net::{Ipv4Addr, UdpSocket};
use std::time::Duration;

use rustix::event::{PollFd, PollFlags, Timespec};

use super::WaitHint;

/// The receiving end of [`NetworkWaker`](super::NetworkWaker).
#[derive(Debug)]
pub(crate) struct Waker {
    sock: UdpSocket,
}

impl Waker {
    pub(crate) fn new() -> io::Result<Self> {
        let sock = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))?;
        sock.connect(sock.local_addr()?)?;
        sock.set_nonblocking(true)?;
        Ok(Waker { sock })
    }

    /// Makes the socket readable; a full buffer means a wake-up is already pending.
    pub(crate) fn wake(&self) {
        let _ = self.sock.send(&[1]);
    }

    /// Consumes pending wake-ups so the next wait sleeps again.
    fn drain(&self) {
        let mut buf = [0u8; 64];
        while self.sock.recv(&mut buf).is_ok() {}
    }
}

/// See [`super::wait_for_network`]: one hint per transport.
pub(crate) fn wait<'a>(
    hints: impl Iterator<Item = WaitHint<'a>>,
    waker: Option<&Waker>,
    timeout: Duration,
) -> io::Result<bool> {
    // One small allocation per wait that gets this far: the thread is about to block anyway,
    // and `PollFd` borrows the sockets, so the list cannot outlive this call.
    let mut fds = Vec::new();
    if let Some(w) = waker {
        fds.push(PollFd::new(&w.sock, PollFlags::IN));
    }
    for hint in hints {
        match hint {
            WaitHint::Ready => return Ok(false),
            WaitHint::Idle => {}
            // Only this wait's waker can end the sleep.
            WaitHint::Waker => {
                if waker.is_none() {
                    return Ok(false);
                }
            }
            WaitHint::Socket { tcp, write } => {
                let flags = if write {
                    PollFlags::IN | PollFlags::OUT
                } else {
                    PollFlags::IN
                };
                fds.push(PollFd::new(tcp, flags));
            }
        }
    }
    let timeout = Timespec {
        tv_sec: timeout.as_secs().min(i32::MAX as u64) as _,
        tv_nsec: timeout.subsec_nanos() as _,
    };
    match rustix::event::poll(&mut fds, Some(&timeout)) {
        Ok(_) | Err(rustix::io::Errno::INTR) => {}
        Err(e) => return Err(e.into()),
    }
    drop(fds);
    if let Some(w) = waker {
        w.drain();
    }
    Ok(true)
}
