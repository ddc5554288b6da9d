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

/// Which of many idle sockets have something, without a read attempt on each: the plugin
/// registers every open, drained transport's TCP socket here (level-triggered, keyed by its
/// socket entity) and each frame asks once which are ready, so a frame with a thousand idle
/// connections costs one `epoll_wait`, not a thousand `recv`s. A network wait then watches this
/// one descriptor instead of every socket. Linux and Android (epoll); elsewhere [`Readiness::new`]
/// fails and the plugin polls every transport each frame, as before.
pub(crate) struct Readiness {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    epoll: std::os::fd::OwnedFd,
    #[cfg(any(target_os = "linux", target_os = "android"))]
    events: Vec<rustix::event::epoll::Event>,
}

/// How a socket is registered in a [`Readiness`] set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum Watch {
    /// Not registered.
    #[default]
    No,
    /// Registered for reading.
    Read,
    /// Registered for reading and writing (a flush was held back).
    ReadWrite,
}

#[cfg(any(target_os = "linux", target_os = "android"))]
impl Readiness {
    pub(crate) fn new() -> io::Result<Self> {
        use rustix::event::epoll;
        Ok(Readiness {
            epoll: epoll::create(epoll::CreateFlags::CLOEXEC)?,
            events: Vec::new(),
        })
    }

    /// Registers `tcp` under `key` (or changes its interest), from `now` to `want`.
    pub(crate) fn watch(
        &self,
        tcp: &std::net::TcpStream,
        key: u64,
        now: Watch,
        want: Watch,
    ) -> io::Result<()> {
        use rustix::event::epoll::{self, EventData, EventFlags};
        let flags = match want {
            Watch::No => return Ok(()),
            Watch::Read => EventFlags::IN | EventFlags::RDHUP,
            Watch::ReadWrite => EventFlags::IN | EventFlags::RDHUP | EventFlags::OUT,
        };
        let data = EventData::new_u64(key);
        match now {
            // Still registered from before it was last polled every frame: change it.
            Watch::No => match epoll::add(&self.epoll, tcp, data, flags) {
                Err(rustix::io::Errno::EXIST) => epoll::modify(&self.epoll, tcp, data, flags)?,
                other => other?,
            },
            _ if now == want => {}
            _ => epoll::modify(&self.epoll, tcp, data, flags)?,
        }
        Ok(())
    }

    /// Calls `ready` with the key of every registered socket that can be read (or written, or
    /// has hung up) now, up to `registered` (how many sockets may be registered: one call takes
    /// them all, since a level-triggered set reports the same sockets again until they are
    /// read). Never blocks. A socket closed since it was registered is gone from the set (the
    /// kernel drops it with its last descriptor).
    pub(crate) fn ready(
        &mut self,
        registered: usize,
        mut ready: impl FnMut(u64),
    ) -> io::Result<()> {
        use rustix::event::epoll;
        let zero = Timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        self.events.clear();
        self.events.reserve(registered.max(1));
        match epoll::wait(
            &self.epoll,
            rustix::buffer::spare_capacity(&mut self.events),
            Some(&zero),
        ) {
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => return Ok(()),
            Err(e) => return Err(e.into()),
        }
        for e in &self.events {
            ready(e.data.u64());
        }
        Ok(())
    }

    /// The set itself, readable while any registered socket is ready (for a network wait).
    fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        use std::os::fd::AsFd;
        self.epoll.as_fd()
    }
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
impl Readiness {
    pub(crate) fn new() -> io::Result<Self> {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "no epoll on this platform: every transport is polled each frame",
        ))
    }

    pub(crate) fn watch(
        &self,
        _tcp: &std::net::TcpStream,
        _key: u64,
        _now: Watch,
        _want: Watch,
    ) -> io::Result<()> {
        // Never made (`new` fails here); were it, nothing may count as watched.
        Err(io::ErrorKind::Unsupported.into())
    }

    pub(crate) fn ready(&mut self, _registered: usize, _ready: impl FnMut(u64)) -> io::Result<()> {
        Err(io::ErrorKind::Unsupported.into())
    }
}

/// See [`super::wait_for_network`]: one hint per transport. With `set`, the sockets registered
/// there are watched through it (one descriptor), and `hints` need only cover the others.
pub(crate) fn wait<'a>(
    hints: impl Iterator<Item = WaitHint<'a>>,
    waker: Option<&Waker>,
    set: Option<&Readiness>,
    timeout: Duration,
) -> io::Result<bool> {
    // One small allocation per wait that gets this far: the thread is about to block anyway,
    // and `PollFd` borrows the sockets, so the list cannot outlive this call.
    let mut fds = Vec::new();
    if let Some(w) = waker {
        fds.push(PollFd::new(&w.sock, PollFlags::IN));
    }
    #[cfg(any(target_os = "linux", target_os = "android"))]
    if let Some(set) = set {
        fds.push(PollFd::from_borrowed_fd(set.fd(), PollFlags::IN));
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    let _ = set;
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
    // Drain the waker only when it was what woke us (it is first in the list): a wake-up by the
    // network then costs no extra `recv`.
    let woken = waker.is_some() && !fds[0].revents().is_empty();
    drop(fds);
    if let (Some(w), true) = (waker, woken) {
        w.drain();
    }
    Ok(true)
}
