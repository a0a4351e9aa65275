//! The client hook: the administrator's script that configures the Teredo
//! interface, run with the environment the C miredo gives it.

use std::io;
use std::net::Ipv6Addr;
use std::os::fd::{AsFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::libc;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use libteredo::privsep::link_local;

/// A hook that has not returned by then is killed: privproc must answer
/// before miredo stops waiting (10 s).
const HOOK_TIMEOUT: Duration = Duration::from_secs(8);

/// The value of `STATE` / `OLD_STATE`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    Up,
    Down,
    /// Sent once, after the last `down`, when miredo is gone.
    Destroy,
}

impl State {
    fn as_str(self) -> &'static str {
        match self {
            State::Up => "up",
            State::Down => "down",
            State::Destroy => "destroy",
        }
    }
}

/// What the interface carries (or is about to).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Settings {
    pub state: State,
    pub address: Option<Ipv6Addr>,
    pub mtu: Option<u16>,
}

impl Settings {
    pub fn up(address: Ipv6Addr, mtu: u16) -> Self {
        Settings {
            state: State::Up,
            address: Some(address),
            mtu: Some(mtu),
        }
    }

    pub fn down() -> Self {
        Settings {
            state: State::Down,
            address: None,
            mtu: None,
        }
    }

    pub fn destroy() -> Self {
        Settings {
            state: State::Destroy,
            ..Settings::down()
        }
    }
}

/// Refuses a hook that is not a regular, executable file owned by root and
/// writable by root alone: privproc runs it with CAP_NET_ADMIN.
pub fn check_file(path: &Path) -> Result<(), String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("hook {}: {e}", path.display()))?;
    let mode = meta.permissions().mode();
    let why = if !meta.is_file() {
        "not a regular file"
    } else if mode & 0o111 == 0 {
        "not executable"
    } else if meta.uid() != 0 {
        "not owned by root"
    } else if mode & 0o022 != 0 {
        "writable by group or others"
    } else {
        return Ok(());
    };
    Err(format!("hook {}: {why}", path.display()))
}

/// The hook of one interface.
pub struct Hook {
    path: PathBuf,
    ifname: String,
    ifindex: u32,
}

impl Hook {
    pub fn new(path: PathBuf, ifname: String, ifindex: u32) -> Self {
        Hook {
            path,
            ifname,
            ifindex,
        }
    }

    /// Runs the hook for the move from `old` to `next`: `STATE`, `IFACE`,
    /// `IFINDEX`, `ADDRESS`, `LLADDRESS`, `MTU` describe `next`, the `OLD_`
    /// variables `old`. A variable without value is left unset.
    pub fn run(&self, next: &Settings, old: &Settings) -> Result<(), String> {
        let mut cmd = Command::new(&self.path);
        cmd.env_clear()
            .env(
                "PATH",
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            )
            .env("IFACE", &self.ifname)
            .env("IFINDEX", self.ifindex.to_string())
            .current_dir("/")
            .stdin(Stdio::null());
        for (prefix, s) in [("", next), ("OLD_", old)] {
            cmd.env(format!("{prefix}STATE"), s.state.as_str());
            if let Some(a) = s.address {
                cmd.env(format!("{prefix}ADDRESS"), a.to_string());
                cmd.env(format!("{prefix}LLADDRESS"), link_local(&a).to_string());
            }
            if let Some(mtu) = s.mtu {
                cmd.env(format!("{prefix}MTU"), mtu.to_string());
            }
        }
        // The hook's output joins ours on stderr (syslog); never fd 0.
        if let Ok(err) = std::io::stderr().as_fd().try_clone_to_owned() {
            cmd.stdout(Stdio::from(err));
        } else {
            cmd.stdout(Stdio::null());
        }
        let name = self.path.display();
        let mut child = cmd.spawn().map_err(|e| format!("hook {name}: {e}"))?;
        let status = match wait_at_most(&mut child, HOOK_TIMEOUT) {
            Ok(Some(status)) => status,
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("hook {name}: killed after {HOOK_TIMEOUT:?}"));
            }
            Err(e) => return Err(format!("hook {name}: {e}")),
        };
        if status.success() {
            Ok(())
        } else {
            Err(format!("hook {name} ({}): {status}", next.state.as_str()))
        }
    }
}

/// How often a hook is checked for where the kernel has no pidfd.
const FALLBACK_CHECK: Duration = Duration::from_millis(20);

/// Waits for `child` to exit, at most `limit`; None when the time is up
/// (the child still running, not reaped). Woken by the exit itself through
/// a pidfd, so the answer follows the hook at once; a kernel without
/// `pidfd_open` (before 5.3) gets a check every [`FALLBACK_CHECK`].
fn wait_at_most(child: &mut Child, limit: Duration) -> io::Result<Option<ExitStatus>> {
    let start = Instant::now();
    let pid = libc::pid_t::try_from(child.id()).map_err(|_| io::Error::from(Errno::ESRCH))?;
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor
    // or -1. The child is ours and not reaped, so the pid is still its own.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if let Ok(fd) = RawFd::try_from(fd) {
        if fd >= 0 {
            // SAFETY: a descriptor the kernel just returned to us alone.
            let pidfd = unsafe { OwnedFd::from_raw_fd(fd) };
            loop {
                let left = limit.saturating_sub(start.elapsed());
                let timeout = PollTimeout::try_from(left).unwrap_or(PollTimeout::MAX);
                let mut fds = [PollFd::new(pidfd.as_fd(), PollFlags::POLLIN)];
                match poll(&mut fds, timeout) {
                    // Readable: the child has exited.
                    Ok(n) if n > 0 => return child.wait().map(Some),
                    Ok(_) if start.elapsed() >= limit => return Ok(None),
                    Ok(_) | Err(Errno::EINTR) => continue,
                    Err(e) => return Err(e.into()),
                }
            }
        }
    }
    loop {
        match child.try_wait()? {
            Some(status) => return Ok(Some(status)),
            None if start.elapsed() < limit => std::thread::sleep(FALLBACK_CHECK),
            None => return Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> Child {
        Command::new("/bin/sh")
            .args(["-c", script])
            .spawn()
            .expect("/bin/sh")
    }

    #[test]
    fn waits_for_the_exit_and_gives_its_status() {
        let mut c = sh("sleep 0.05; exit 3");
        let status = wait_at_most(&mut c, Duration::from_secs(10)).expect("wait");
        assert_eq!(status.and_then(|s| s.code()), Some(3));
    }

    #[test]
    fn gives_up_at_the_limit_and_leaves_the_child_to_the_caller() {
        let mut c = sh("sleep 5");
        let status = wait_at_most(&mut c, Duration::from_millis(100)).expect("wait");
        assert!(status.is_none());
        // Not reaped: the caller can still kill and reap it.
        assert!(c.try_wait().expect("try_wait").is_none());
        c.kill().expect("kill");
        assert!(!c.wait().expect("wait").success());
    }
}
