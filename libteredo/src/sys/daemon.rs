//! Becoming a daemon: fork, new session, fork again, standard streams to
//! /dev/null, working directory /.

use nix::unistd::{dup2_stderr, dup2_stdin, dup2_stdout, fork, setsid, ForkResult};
use std::fs::OpenOptions;
use std::io;

/// Detaches from the terminal. Returns in the daemon; the original process
/// exits with status 0 once the daemon exists.
pub fn daemonize() -> io::Result<()> {
    // SAFETY: called before any thread is started; the child only continues
    // the single-threaded program.
    match unsafe { fork() }.map_err(io::Error::from)? {
        ForkResult::Parent { .. } => std::process::exit(0),
        ForkResult::Child => {}
    }
    setsid().map_err(io::Error::from)?;
    // SAFETY: as above.
    match unsafe { fork() }.map_err(io::Error::from)? {
        ForkResult::Parent { .. } => std::process::exit(0),
        ForkResult::Child => {}
    }
    std::env::set_current_dir("/")?;
    let null = OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")?;
    dup2_stdin(&null).map_err(io::Error::from)?;
    dup2_stdout(&null).map_err(io::Error::from)?;
    dup2_stderr(&null).map_err(io::Error::from)?;
    Ok(())
}
