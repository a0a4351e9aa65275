//! Becoming a daemon: fork, new session, fork again, standard streams to
//! /dev/null, working directory /. The process that was started waits,
//! through a pipe, until the daemon says whether its start-up succeeded,
//! and exits with that status (printing why it failed): an init script or
//! a shell sees a failed start as a failure, not as exit status 0.

use nix::unistd::{dup2_stderr, dup2_stdin, dup2_stdout, fork, setsid, ForkResult};
use std::fs::OpenOptions;
use std::io::{self, Read, Write};
use std::os::fd::OwnedFd;

/// The daemon's side of the start-up report. Dropped without a word (a
/// crash, an early exit), it tells the waiting process that start-up
/// failed.
#[derive(Debug, Default)]
pub struct Startup {
    pipe: Option<OwnedFd>,
}

/// What the report's first byte says.
const SUCCEEDED: u8 = 0;
const FAILED: u8 = 1;

impl Startup {
    /// A foreground start: nobody waits, nothing to report.
    pub fn foreground() -> Startup {
        Startup { pipe: None }
    }

    /// Start-up is done: the waiting process exits with status 0.
    pub fn succeeded(&mut self) {
        if let Some(p) = self.pipe.take() {
            let _ = std::fs::File::from(p).write_all(&[SUCCEEDED]);
        }
    }

    /// Start-up failed: the waiting process prints `why` on its standard
    /// error and exits with status 1.
    pub fn failed(&mut self, why: &str) {
        if let Some(p) = self.pipe.take() {
            let mut msg = vec![FAILED];
            msg.extend_from_slice(why.as_bytes());
            let _ = std::fs::File::from(p).write_all(&msg);
        }
    }
}

/// Detaches from the terminal. Returns in the daemon, with the report the
/// original process waits for; the original process exits with the status
/// the daemon reports (see [`Startup`]), never returning.
pub fn daemonize(program: &str) -> io::Result<Startup> {
    let (rx, tx) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(io::Error::from)?;
    // SAFETY: called before any thread is started; the child only continues
    // the single-threaded program.
    match unsafe { fork() }.map_err(io::Error::from)? {
        ForkResult::Parent { child } => {
            drop(tx);
            // The intermediate process exits at once; reap it.
            let _ = nix::sys::wait::waitpid(child, None);
            let mut report = Vec::new();
            let _ = std::fs::File::from(rx).take(4096).read_to_end(&mut report);
            let code = match report.split_first() {
                Some((&SUCCEEDED, _)) => 0,
                Some((_, why)) => {
                    eprintln!("{program}: {}", String::from_utf8_lossy(why));
                    1
                }
                None => {
                    eprintln!("{program}: the daemon exited during start-up (see the system log)");
                    1
                }
            };
            std::process::exit(code);
        }
        ForkResult::Child => {}
    }
    drop(rx);
    setsid().map_err(io::Error::from)?;
    // SAFETY: as above.
    match unsafe { fork() }.map_err(io::Error::from)? {
        // SAFETY: leaving the intermediate process without running exit
        // handlers (the report pipe stays with the daemon).
        ForkResult::Parent { .. } => unsafe { nix::libc::_exit(0) },
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
    Ok(Startup { pipe: Some(tx) })
}

/// Reaps child `pid`, which was told to end (its pipe or socket closed):
/// waits for it up to `within`, then kills it and reaps it, so that a
/// daemon that stops leaves no process behind for its service manager to
/// kill. A child already reaped (or not ours) is not waited for.
pub fn reap_child(pid: nix::unistd::Pid, within: std::time::Duration) {
    use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
    let step = std::time::Duration::from_millis(10);
    let tries = (within.as_millis() / step.as_millis()).max(1);
    for _ in 0..tries {
        match waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) => std::thread::sleep(step),
            _ => return,
        }
    }
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
    let _ = waitpid(pid, None);
}
