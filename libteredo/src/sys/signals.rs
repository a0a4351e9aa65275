//! Signals as a file descriptor (signalfd), so the event loop sees them
//! like any other input.

use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use std::io;

/// The signals the daemons act on: SIGHUP (reload), SIGINT and SIGTERM
/// (stop). SIGPIPE is ignored so a vanished peer is an error, not a death.
pub fn block_and_watch() -> io::Result<SignalFd> {
    let mut set = SigSet::empty();
    for s in [Signal::SIGHUP, Signal::SIGINT, Signal::SIGTERM] {
        set.add(s);
    }
    set.thread_block().map_err(io::Error::from)?;
    // SAFETY: setting SIG_IGN installs no handler code.
    unsafe { nix::sys::signal::signal(Signal::SIGPIPE, nix::sys::signal::SigHandler::SigIgn) }
        .map_err(io::Error::from)?;
    SignalFd::with_flags(&set, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
        .map_err(io::Error::from)
}

/// Reads every pending signal.
pub fn drain(fd: &SignalFd) -> Vec<Signal> {
    let mut v = Vec::new();
    while let Ok(Some(info)) = fd.read_signal() {
        if let Ok(s) = Signal::try_from(info.ssi_signo as i32) {
            v.push(s);
        }
    }
    v
}
