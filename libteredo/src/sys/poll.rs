//! The main thread's wait, shared by the daemons' control loops (miredo's
//! and miredo-server's): the descriptors it watches for input (signals,
//! the status socket, the metrics listener, and whatever else the daemon
//! has), one `poll(2)` with a time limit, the watchdog's heartbeat paused
//! around it (a thread that waits is not stuck), and which descriptors are
//! readable afterwards.

use super::notify::Heartbeat;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use std::io;
use std::os::fd::BorrowedFd;
use std::time::Duration;

/// Where a descriptor sits in a [`PollSet`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Slot(usize);

/// The descriptors one turn of a control loop waits on.
#[derive(Default)]
pub struct PollSet<'a> {
    fds: Vec<PollFd<'a>>,
}

impl<'a> PollSet<'a> {
    pub fn new() -> Self {
        PollSet { fds: Vec::new() }
    }

    /// Watches `fd` for input.
    pub fn add(&mut self, fd: BorrowedFd<'a>) -> Slot {
        self.fds.push(PollFd::new(fd, PollFlags::POLLIN));
        Slot(self.fds.len() - 1)
    }

    /// Watches `fd` for input, if there is one.
    pub fn add_some(&mut self, fd: Option<BorrowedFd<'a>>) -> Option<Slot> {
        fd.map(|fd| self.add(fd))
    }

    /// Waits until a descriptor is readable or `timeout` passes (`None`:
    /// no limit; whole milliseconds, at most 65,535), with `beat` paused
    /// meanwhile. `Ok(false)`: a signal interrupted the wait, nothing is
    /// known to be readable.
    pub fn wait(&mut self, timeout: Option<Duration>, beat: &Heartbeat) -> io::Result<bool> {
        let timeout = match timeout {
            Some(d) => PollTimeout::from(d.as_millis().min(u128::from(u16::MAX)) as u16),
            None => PollTimeout::NONE,
        };
        beat.wait();
        let polled = poll(&mut self.fds, timeout);
        beat.beat();
        match polled {
            Ok(_) => Ok(true),
            Err(nix::errno::Errno::EINTR) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Whether the descriptor in `slot` was readable (or hung up, or in
    /// error: whatever makes a read return at once) after the last wait.
    pub fn ready(&self, slot: Slot) -> bool {
        self.fds
            .get(slot.0)
            .and_then(PollFd::revents)
            .is_some_and(|r| !r.is_empty())
    }

    /// As [`PollSet::ready`], for a descriptor that may not be there.
    pub fn ready_some(&self, slot: Option<Slot>) -> bool {
        slot.is_some_and(|s| self.ready(s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::fd::AsFd;
    use std::os::unix::net::UnixStream;

    #[test]
    fn says_which_descriptor_is_readable() {
        let (mut a, b) = UnixStream::pair().unwrap();
        let (_c, d) = UnixStream::pair().unwrap();
        let beat = Heartbeat::default();
        let mut set = PollSet::new();
        let quiet = set.add(d.as_fd());
        let absent = set.add_some(None);
        let talking = set.add_some(Some(b.as_fd()));
        assert!(set.wait(Some(Duration::from_millis(10)), &beat).unwrap());
        assert!(!set.ready(quiet) && !set.ready_some(talking));
        a.write_all(b"x").unwrap();
        assert!(set.wait(None, &beat).unwrap());
        assert!(set.ready_some(talking));
        assert!(!set.ready(quiet) && !set.ready_some(absent));
    }
}
