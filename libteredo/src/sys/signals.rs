//! Signals as a file descriptor (signalfd), so the event loop sees them
//! like any other input.

use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use std::io;

/// The signals the daemons act on: SIGHUP (reload), SIGINT, SIGTERM and
/// SIGQUIT (stop cleanly); SIGUSR1 and SIGUSR2 are taken and ignored, as
/// the C miredo does. SIGPIPE is ignored so a vanished peer is an error,
/// not a death.
pub fn block_and_watch() -> io::Result<SignalFd> {
    let mut set = SigSet::empty();
    for s in [
        Signal::SIGHUP,
        Signal::SIGINT,
        Signal::SIGTERM,
        Signal::SIGQUIT,
        Signal::SIGUSR1,
        Signal::SIGUSR2,
    ] {
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
