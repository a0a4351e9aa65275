//! The client hook: the administrator's script that configures the Teredo
//! interface, run with the environment the C miredo gives it.
//!
//! What a hook gets, and nothing more: privproc's user and group (never
//! root), CAP_NET_ADMIN in its effective, permitted and ambient sets (and
//! no other capability, nor a way to gain one: no_new_privs, a bounding set
//! of CAP_NET_ADMIN alone), an environment of `PATH` and the C tool's
//! variables, `/` as working directory, `/dev/null` as standard input, a
//! pipe to privproc as standard output and error (logged, see [`Output`]),
//! no other descriptor, the default disposition of every signal and none
//! blocked, its own process group, and [`HOOK_TIMEOUT`] to finish. That is
//! what running `ip` needs; a hook that needs more (writing root's files,
//! loading modules, restarting services through a root-only socket) cannot
//! do it: that is the bound.
//!
//! Nothing a hook starts outlives its run: when it exits, or at the limit,
//! its process group is killed, then every other descendant, which privproc
//! (a child subreaper) finds among its own children (see [`reap`]). A
//! process left running would keep CAP_NET_ADMIN beyond the request it was
//! started for, out of anyone's sight; the C tool's hooks (and Debian's)
//! run `ip` in the foreground and leave nothing, and a daemon belongs to
//! the service manager, not to a hook.

use std::io;
use std::net::Ipv6Addr;
use std::os::fd::{AsFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::libc;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

use libteredo::privsep::link_local;

use crate::privs::User;
use crate::reap;

/// A hook that has not returned by then is killed, with everything it
/// started: privproc must answer before miredo stops waiting (10 s).
pub const HOOK_TIMEOUT: Duration = Duration::from_secs(8);

/// The longest line of a hook's output logged; the rest of the line is
/// counted and dropped.
const MAX_LINE: usize = 1000;

/// The most bytes of a hook's output logged per run; the rest is read,
/// counted and dropped.
const MAX_OUTPUT: usize = 16 * 1024;

/// The most bytes read from a hook's output at once: more than a pipe
/// can hold (1 MiB at most for a user), so that what the hook and its
/// killed processes wrote is read whole at the end.
const MAX_DRAIN: usize = 4 << 20;

/// The `PATH` a hook gets (the C tool's choice leaves it to the caller's;
/// ours is fixed).
const HOOK_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The signals privproc ignores (so that a service stop outlives it only
/// through its input closing), set back to their default in a hook.
pub const IGNORED_SIGNALS: [libc::c_int; 3] = [libc::SIGTERM, libc::SIGINT, libc::SIGHUP];

/// Sets the disposition of every signal (1 to 64, real-time ones and the C
/// library's internal ones included) to its default, except SIGKILL and
/// SIGSTOP which cannot change: an ignored signal stays ignored across
/// exec, and a hook must start as any program expects to, whatever
/// privproc ignores or inherited. Meant for `pre_exec`: the raw system
/// call only (the C library refuses its own signals), async-signal-safe.
fn default_signals() {
    // A zeroed `struct sigaction` of the kernel is SIG_DFL, no flags, no
    // mask, whatever the architecture's layout; 64 bytes cover them all.
    let act = [0u64; 8];
    for sig in 1..=64 {
        if sig == libc::SIGKILL || sig == libc::SIGSTOP {
            continue;
        }
        // SAFETY: rt_sigaction reads `act`, which outlives the call, and
        // writes nothing (no old action asked for). The size is the
        // kernel's signal set (8 bytes; 16 on MIPS, retried).
        unsafe {
            let null = std::ptr::null_mut::<u8>();
            if libc::syscall(libc::SYS_rt_sigaction, sig, act.as_ptr(), null, 8usize) != 0 {
                libc::syscall(libc::SYS_rt_sigaction, sig, act.as_ptr(), null, 16usize);
            }
        }
    }
}

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

/// The permission bits of `mode` that apply to `user` (never the owner's:
/// everything checked here is root's, and `user` is not root).
fn bits_for(meta: &std::fs::Metadata, user: &User) -> u32 {
    if meta.uid() == user.uid.as_raw() {
        (meta.mode() >> 6) & 7
    } else if meta.gid() == user.gid.as_raw() {
        (meta.mode() >> 3) & 7
    } else {
        meta.mode() & 7
    }
}

/// Why a directory on the hook's path is unsafe, if it is: it must be a
/// directory of root's that neither its group nor others can write (the
/// sticky bit does not help: others could still add a name), and that
/// `user` can search.
fn unsafe_dir(meta: &std::fs::Metadata, user: &User) -> Option<String> {
    let mode = meta.mode();
    if !meta.is_dir() {
        Some("not a directory".into())
    } else if meta.uid() != 0 {
        Some(format!("owned by uid {}, not root", meta.uid()))
    } else if mode & 0o022 != 0 {
        let sticky = if mode & 0o1000 != 0 {
            " (the sticky bit does not make it safe)"
        } else {
            ""
        };
        Some(format!(
            "writable by group or others, mode {:o}{sticky}",
            mode & 0o7777
        ))
    } else if bits_for(meta, user) & 1 == 0 {
        Some(format!("not searchable by {}", user.name))
    } else {
        None
    }
}

/// Checks every directory from `/` down to `path`'s own, each taken as the
/// kernel takes it (through symbolic links).
fn check_dirs(path: &Path, user: &User) -> Result<(), String> {
    let mut dirs: Vec<&Path> = path.ancestors().skip(1).collect();
    dirs.reverse();
    for dir in dirs {
        let meta =
            std::fs::metadata(dir).map_err(|e| format!("directory {}: {e}", dir.display()))?;
        if let Some(why) = unsafe_dir(&meta, user) {
            return Err(format!("directory {}: {why}", dir.display()));
        }
    }
    Ok(())
}

/// Refuses a hook that anyone but root could change or replace, or that
/// privproc's user cannot run: every directory on its path from `/` down,
/// and on its canonical path when that one goes through symbolic links,
/// must be root's and writable by root alone, and the file a regular file
/// of root's, writable by root alone, executable by `user`. Returns the
/// absolute path to run. privproc runs it with CAP_NET_ADMIN: whoever can
/// change it holds that capability.
pub fn check(path: &Path, user: &User) -> Result<PathBuf, String> {
    let name = path.display();
    let abs = std::path::absolute(path).map_err(|e| format!("hook {name}: {e}"))?;
    check_dirs(&abs, user).map_err(|e| format!("hook {name}: {e}"))?;
    let canonical = std::fs::canonicalize(&abs).map_err(|e| format!("hook {name}: {e}"))?;
    if canonical != abs {
        check_dirs(&canonical, user)
            .map_err(|e| format!("hook {name} (really {}): {e}", canonical.display()))?;
    }
    let meta = std::fs::metadata(&canonical).map_err(|e| format!("hook {name}: {e}"))?;
    let mode = meta.permissions().mode();
    let why = if !meta.is_file() {
        "not a regular file".to_string()
    } else if meta.uid() != 0 {
        format!("owned by uid {}, not root", meta.uid())
    } else if mode & 0o022 != 0 {
        format!("writable by group or others, mode {:o}", mode & 0o7777)
    } else if bits_for(&meta, user) & 1 == 0 {
        format!("not executable by {}", user.name)
    } else {
        return Ok(abs);
    };
    Err(format!("hook {name}: {why}"))
}

/// The hook of one interface.
pub struct Hook {
    path: PathBuf,
    ifname: String,
    ifindex: u32,
    user: User,
    timeout: Duration,
}

/// How a run ended.
enum End {
    Exited,
    TimedOut,
}

impl Hook {
    /// A hook at `path`, already [`check`]ed, run as `user` once privproc
    /// has become it.
    pub fn new(path: PathBuf, ifname: String, ifindex: u32, user: User, timeout: Duration) -> Self {
        Hook {
            path,
            ifname,
            ifindex,
            user,
            timeout,
        }
    }

    /// The environment for the move from `old` to `next`: `PATH`, then
    /// `STATE`, `IFACE`, `IFINDEX`, `ADDRESS`, `LLADDRESS`, `MTU`
    /// describing `next` and the `OLD_` ones `old`. A variable without
    /// value is left unset. Nothing else: not privproc's own environment.
    fn environment(&self, next: &Settings, old: &Settings) -> Vec<(String, String)> {
        let mut env = vec![
            ("PATH".to_string(), HOOK_PATH.to_string()),
            ("IFACE".to_string(), self.ifname.clone()),
            ("IFINDEX".to_string(), self.ifindex.to_string()),
        ];
        for (prefix, s) in [("", next), ("OLD_", old)] {
            env.push((format!("{prefix}STATE"), s.state.as_str().into()));
            if let Some(a) = s.address {
                env.push((format!("{prefix}ADDRESS"), a.to_string()));
                env.push((format!("{prefix}LLADDRESS"), link_local(&a).to_string()));
            }
            if let Some(mtu) = s.mtu {
                env.push((format!("{prefix}MTU"), mtu.to_string()));
            }
        }
        env
    }

    /// Runs the hook for the move from `old` to `next`, after checking it
    /// again (an administrator may have changed it since). Its output is
    /// logged line by line. When it exits, or at the time limit, its
    /// process group is killed and then every other descendant left (see
    /// [`reap`]): a hook must not leave anything running, since anything it
    /// started holds CAP_NET_ADMIN.
    pub fn run(&self, next: &Settings, old: &Settings) -> Result<(), String> {
        let exe = check(&self.path, &self.user)?;
        let name = exe.display().to_string();
        let (rd, wr) =
            nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| format!("hook {name}: pipe: {e}"))?;
        nix::fcntl::fcntl(&rd, nix::fcntl::FcntlArg::F_SETFL(OFlag::O_NONBLOCK))
            .map_err(|e| format!("hook {name}: pipe: {e}"))?;
        let wr2 = wr
            .try_clone()
            .map_err(|e| format!("hook {name}: pipe: {e}"))?;
        let mut cmd = Command::new(&exe);
        cmd.env_clear()
            .envs(self.environment(next, old))
            .current_dir("/")
            .stdin(Stdio::null())
            .stdout(Stdio::from(wr))
            .stderr(Stdio::from(wr2))
            .process_group(0);
        // SAFETY: between fork and exec, only async-signal-safe system
        // calls: close_range (or fcntl) and rt_sigaction. (The standard
        // library has already emptied the signal mask.)
        unsafe {
            cmd.pre_exec(|| {
                libteredo::sys::fds::cloexec_from(3)?;
                default_signals();
                Ok(())
            });
        }
        let spawned = cmd.spawn();
        // Our copies of the pipe's write end go with the command, so that
        // the pipe ends when the hook (and whatever it started) closes it.
        drop(cmd);
        let mut child = spawned.map_err(|e| format!("hook {name}: {e}"))?;
        let mut out = Output::new(&name, next.state.as_str());
        let end = supervise(&mut child, &rd, self.timeout, &mut out);
        // The hook has exited (not reaped: its pid still names its group)
        // or is still running: its group goes, then the rest.
        if let Ok(pid) = i32::try_from(child.id()) {
            let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
        }
        let status = match end {
            Ok(End::Exited) => child.wait().map_err(|e| format!("hook {name}: {e}")),
            Ok(End::TimedOut) => {
                let _ = child.kill();
                let _ = child.wait();
                Err(format!(
                    "hook {name} ({}): killed after {:?}",
                    next.state.as_str(),
                    self.timeout
                ))
            }
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                Err(format!("hook {name}: {e}"))
            }
        };
        let (left, alive) = reap::kill_descendants();
        // What the killed ones had written.
        out.drain(&rd);
        out.finish();
        if left > 0 {
            log::warn!(
                "hook {name} ({}): {left} process(es) it left behind killed",
                next.state.as_str()
            );
        }
        if alive > 0 {
            log::error!("hook {name}: {alive} process(es) it left could not be killed");
        }
        let status: ExitStatus = status?;
        if status.success() {
            Ok(())
        } else {
            Err(format!("hook {name} ({}): {status}", next.state.as_str()))
        }
    }
}

/// How often a hook is checked for where the kernel has no pidfd.
const FALLBACK_CHECK: Duration = Duration::from_millis(20);

/// A descriptor that becomes readable when `pid` exits (Linux 5.3).
fn pidfd_open(pid: libc::pid_t) -> Option<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor
    // or -1. The child is ours and not reaped, so the pid is still its own.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    let fd = RawFd::try_from(fd).ok().filter(|&fd| fd >= 0)?;
    // SAFETY: a descriptor the kernel just returned to us alone.
    Some(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Whether our child `pid` has exited, leaving it unreaped (its pid, and
/// so its process group's id, stays taken until we reap it).
fn has_exited(pid: libc::pid_t) -> io::Result<bool> {
    // SAFETY: a zeroed siginfo_t is a valid value for waitid to fill.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    // SAFETY: waitid writes into `info`, which we own.
    let r = unsafe {
        libc::waitid(
            libc::P_PID,
            pid as libc::id_t,
            &mut info,
            libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: waitid succeeded; si_pid is 0 when nothing has exited.
    Ok(unsafe { info.si_pid() } != 0)
}

/// Waits for the hook to exit, at most `limit`, logging its output
/// meanwhile. Woken by the exit itself through a pidfd, so the answer
/// follows the hook at once; a kernel without `pidfd_open` (before 5.3)
/// gets a check every [`FALLBACK_CHECK`]. Once the hook has exited, what
/// is in the pipe is read and no more is waited for: a background process
/// that still holds the pipe does not keep privproc. The child is left
/// unreaped either way.
fn supervise(
    child: &mut Child,
    pipe: &OwnedFd,
    limit: Duration,
    out: &mut Output,
) -> io::Result<End> {
    let start = Instant::now();
    let pid = libc::pid_t::try_from(child.id()).map_err(|_| io::Error::from(Errno::ESRCH))?;
    let pidfd = pidfd_open(pid);
    let mut pipe_open = true;
    loop {
        if has_exited(pid)? {
            out.drain(pipe);
            return Ok(End::Exited);
        }
        let left = limit.saturating_sub(start.elapsed());
        if left.is_zero() {
            out.drain(pipe);
            return Ok(End::TimedOut);
        }
        let wait = match pidfd {
            Some(_) => left,
            None => left.min(FALLBACK_CHECK),
        };
        let timeout = PollTimeout::try_from(wait).unwrap_or(PollTimeout::MAX);
        let mut fds = Vec::with_capacity(2);
        if pipe_open {
            fds.push(PollFd::new(pipe.as_fd(), PollFlags::POLLIN));
        }
        if let Some(p) = &pidfd {
            fds.push(PollFd::new(p.as_fd(), PollFlags::POLLIN));
        }
        match poll(&mut fds, timeout) {
            Ok(_) | Err(Errno::EINTR) => {}
            Err(e) => return Err(e.into()),
        }
        let pipe_ready = pipe_open && fds[0].revents().is_some_and(|r| !r.is_empty());
        drop(fds);
        if pipe_ready && out.drain(pipe) {
            pipe_open = false;
        }
    }
}

/// A hook's output on its way to the log: split into lines, each cut at
/// [`MAX_LINE`] bytes, at most [`MAX_OUTPUT`] bytes per run, the rest
/// counted and dropped with a note.
struct Output<'a> {
    hook: &'a str,
    state: &'static str,
    line: Vec<u8>,
    line_cut: usize,
    left: usize,
    dropped: usize,
}

impl<'a> Output<'a> {
    fn new(hook: &'a str, state: &'static str) -> Self {
        Output {
            hook,
            state,
            line: Vec::new(),
            line_cut: 0,
            left: MAX_OUTPUT,
            dropped: 0,
        }
    }

    /// Reads what `pipe` (non-blocking) holds now, at most
    /// [`MAX_DRAIN`] bytes (so that a hook writing without pause cannot
    /// keep us from its time limit); true at its end.
    fn drain(&mut self, pipe: &OwnedFd) -> bool {
        let mut buf = [0u8; 4096];
        let mut read = 0;
        while read < MAX_DRAIN {
            match nix::unistd::read(pipe, &mut buf) {
                Ok(0) => return true,
                Ok(n) => {
                    read += n;
                    self.feed(&buf[..n]);
                }
                Err(Errno::EINTR) => {}
                Err(_) => return false, // EAGAIN: nothing more for now
            }
        }
        false
    }

    fn feed(&mut self, data: &[u8]) {
        let take = data.len().min(self.left);
        self.left -= take;
        self.dropped += data.len() - take;
        for piece in data[..take].split_inclusive(|&b| b == b'\n') {
            let (text, ends) = match piece.strip_suffix(b"\n") {
                Some(t) => (t, true),
                None => (piece, false),
            };
            let room = MAX_LINE.saturating_sub(self.line.len());
            self.line.extend_from_slice(&text[..text.len().min(room)]);
            self.line_cut += text.len().saturating_sub(room);
            if ends {
                self.emit();
            }
        }
    }

    fn emit(&mut self) {
        let text = printable(&self.line);
        let cut = match self.line_cut {
            0 => String::new(),
            n => format!(" [{n} more bytes of this line dropped]"),
        };
        log::info!("hook {} ({}): {text}{cut}", self.hook, self.state);
        self.line.clear();
        self.line_cut = 0;
    }

    /// Logs the last line if it had no newline, and what was dropped.
    fn finish(&mut self) {
        if !self.line.is_empty() || self.line_cut > 0 {
            self.emit();
        }
        if self.dropped > 0 {
            log::warn!(
                "hook {} ({}): {} more bytes of output dropped (at most {MAX_OUTPUT} are logged per run)",
                self.hook,
                self.state,
                self.dropped
            );
            self.dropped = 0;
        }
    }
}

/// A line as text for the log: invalid UTF-8 replaced, control characters
/// (a terminal's escapes) shown escaped.
fn printable(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len());
    for c in String::from_utf8_lossy(bytes).chars() {
        if c.is_control() && c != '\t' {
            s.extend(c.escape_default());
        } else {
            s.push(c);
        }
    }
    s
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

    fn pipe() -> (OwnedFd, OwnedFd) {
        let (rd, wr) = nix::unistd::pipe2(OFlag::O_CLOEXEC).unwrap();
        nix::fcntl::fcntl(&rd, nix::fcntl::FcntlArg::F_SETFL(OFlag::O_NONBLOCK)).unwrap();
        (rd, wr)
    }

    #[test]
    fn waits_for_the_exit_and_leaves_the_child_unreaped() {
        let (rd, _wr) = pipe();
        let mut c = sh("sleep 0.05; exit 3");
        let mut out = Output::new("t", "up");
        let end = supervise(&mut c, &rd, Duration::from_secs(10), &mut out).expect("wait");
        assert!(matches!(end, End::Exited));
        assert_eq!(c.wait().unwrap().code(), Some(3));
    }

    #[test]
    fn gives_up_at_the_limit_and_leaves_the_child_to_the_caller() {
        let (rd, _wr) = pipe();
        let mut c = sh("sleep 5");
        let mut out = Output::new("t", "up");
        let end = supervise(&mut c, &rd, Duration::from_millis(100), &mut out).expect("wait");
        assert!(matches!(end, End::TimedOut));
        // Not reaped: the caller can still kill and reap it.
        assert!(c.try_wait().expect("try_wait").is_none());
        c.kill().expect("kill");
        assert!(!c.wait().expect("wait").success());
    }

    #[test]
    fn a_pipe_held_by_a_background_process_does_not_keep_us_waiting() {
        let (rd, wr) = pipe();
        // The writer's copy of the pipe stays open in `wr` (as in a hook's
        // background child): the exit alone must end the wait.
        let mut c = Command::new("/bin/sh")
            .args(["-c", "echo hi; exit 0"])
            .stdout(Stdio::from(wr.try_clone().unwrap()))
            .spawn()
            .unwrap();
        let start = Instant::now();
        let mut out = Output::new("t", "up");
        let end = supervise(&mut c, &rd, Duration::from_secs(5), &mut out).expect("wait");
        assert!(matches!(end, End::Exited));
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "{:?}",
            start.elapsed()
        );
        c.wait().unwrap();
        assert_eq!(out.left, MAX_OUTPUT - 3);
        drop(wr);
    }

    #[test]
    fn output_is_cut_per_line_and_per_run() {
        let mut out = Output::new("t", "up");
        out.feed(b"short\n");
        assert_eq!(out.left, MAX_OUTPUT - 6);
        let long = vec![b'x'; MAX_LINE + 10];
        out.feed(&long);
        assert_eq!(out.line.len(), MAX_LINE);
        assert_eq!(out.line_cut, 10);
        out.feed(b"\n");
        assert!(out.line.is_empty() && out.line_cut == 0);
        let flood = vec![b'y'; MAX_OUTPUT];
        out.feed(&flood);
        assert_eq!(out.left, 0);
        assert_eq!(out.dropped, 6 + MAX_LINE + 10 + 1);
        out.feed(b"more\n");
        assert_eq!(out.dropped, 6 + MAX_LINE + 10 + 1 + 5);
        out.finish();
        assert_eq!(out.dropped, 0);
        assert!(out.line.is_empty());
    }

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(printable(b"a\x1b[31mb\tc"), "a\\u{1b}[31mb\tc");
        assert_eq!(printable(b"\xff"), "\u{fffd}");
    }

    fn nobody() -> User {
        User {
            name: "nobody".into(),
            uid: nix::unistd::Uid::from_raw(65534),
            gid: nix::unistd::Gid::from_raw(65534),
        }
    }

    #[test]
    fn a_hook_under_tmp_is_refused_naming_it() {
        let e = check(Path::new("/tmp/x/hook"), &nobody()).unwrap_err();
        assert!(e.contains("directory /tmp:"), "{e}");
        assert!(e.contains("sticky"), "{e}");
    }

    #[test]
    fn a_root_file_in_root_directories_passes() {
        // /bin/sh: root's, in root's directories, executable by all.
        let p = check(Path::new("/bin/sh"), &nobody()).unwrap();
        assert_eq!(p, Path::new("/bin/sh"));
        let e = check(Path::new("/etc/shadow"), &nobody()).unwrap_err();
        assert!(e.contains("not executable by nobody"), "{e}");
        let e = check(Path::new("/etc"), &nobody()).unwrap_err();
        assert!(e.contains("not a regular file"), "{e}");
    }
}
