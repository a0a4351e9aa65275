//! The pid file: written by root at start, through its directory's
//! descriptor (a link planted at its name is removed, never followed, and
//! the file is created with `O_EXCL`), refused if a live process of the same
//! program holds it.
//!
//! Nothing of it is kept open by the daemon: the unprivileged daemon must
//! hold neither a directory outside its chroot (a way out of it) nor a file
//! root reads later (a way to make root signal another process). The file
//! is removed when the daemon ends by a process of its own, [`keep`]: it
//! keeps root's uid (the directory is root's: only its owner may remove a
//! name in it) and nothing else: no capability, chrooted in the pid file's
//! directory, under a filter that allows reading a pipe, the pid file, and
//! removing it, with no input but the end of the pipe the daemon holds. If
//! it cannot start, the file stays after the daemon stops, naming a dead
//! process, and the next start takes it over; `start-stop-daemon --exec`
//! and service managers check the process too.

use nix::errno::Errno;
use nix::fcntl::{openat, OFlag};
use nix::libc;
use nix::sys::stat::{fstat, Mode, SFlag};
use nix::unistd::{unlinkat, UnlinkatFlags};
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;

fn alive(pid: i32) -> bool {
    pid > 0 && nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok()
}

/// Whether process `pid` runs the same program as we do (its name, as
/// the kernel shows it); when that cannot be read, it is taken to.
fn same_program(pid: i32) -> bool {
    let comm = |p: &str| std::fs::read_to_string(format!("/proc/{p}/comm")).ok();
    match (comm(&pid.to_string()), comm("self")) {
        (Some(theirs), Some(ours)) => theirs == ours,
        _ => true,
    }
}

/// The pid file's directory, opened, and its name.
fn open_dir(path: &Path) -> io::Result<(OwnedFd, &std::ffi::OsStr)> {
    let (Some(dir), Some(name)) = (
        path.parent().map(|d| {
            if d.as_os_str().is_empty() {
                Path::new(".")
            } else {
                d
            }
        }),
        path.file_name(),
    ) else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{}: not a file name", path.display()),
        ));
    };
    let dir: OwnedFd = openat(
        nix::fcntl::AT_FDCWD,
        dir,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?;
    Ok((dir, name))
}

/// Writes our pid to `path`. A stale file (its process gone, or another
/// program's) is replaced; a live one of ours is an error.
pub fn write(path: &Path) -> io::Result<()> {
    let (dir, name) = open_dir(path)?;
    write_at(&dir, name, path)
}

/// [`write`] in the directory `dir` already open (`path` for messages).
fn write_at(dir: &OwnedFd, name: &std::ffi::OsStr, path: &Path) -> io::Result<()> {
    let dir = dir.as_fd();
    let st = fstat(dir)?;
    if st.st_mode & 0o002 != 0 && st.st_mode & 0o1000 == 0 {
        log::warn!(
            "{}: its directory is writable by everyone: anyone can replace it",
            path.display()
        );
    }
    match openat(
        dir,
        name,
        OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC,
        Mode::empty(),
    ) {
        Ok(fd) => {
            let is_file = fstat(&fd)
                .map(|s| SFlag::from_bits_truncate(s.st_mode) & SFlag::S_IFMT == SFlag::S_IFREG)
                .unwrap_or(false);
            let mut s = String::new();
            if is_file {
                let _ = std::fs::File::from(fd).take(64).read_to_string(&mut s);
            }
            // An empty file was released by a daemon: stale.
            if let Ok(pid) = s.trim().parse::<i32>() {
                if pid != std::process::id() as i32 && alive(pid) && same_program(pid) {
                    return Err(io::Error::new(
                        io::ErrorKind::AlreadyExists,
                        format!("{} names process {pid}, which is running", path.display()),
                    ));
                }
            }
        }
        Err(Errno::ENOENT) => {}
        // A link (ELOOP) or anything else there: removed below.
        Err(_) => {}
    }
    match unlinkat(dir, name, UnlinkatFlags::NoRemoveDir) {
        Ok(()) | Err(Errno::ENOENT) => {}
        Err(e) => return Err(io::Error::other(format!("{}: {e}", path.display()))),
    }
    let fd = openat(
        dir,
        name,
        OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::from_bits_truncate(0o644),
    )
    .map_err(|e| io::Error::other(format!("{}: {e}", path.display())))?;
    let mut f = std::fs::File::from(fd);
    writeln!(f, "{}", std::process::id())
}

/// [`write`], then [`keep`]: the pid file, and its keeper (`None` when
/// none could start: said, and the file then stays after we stop).
pub fn write_and_keep(path: &Path) -> io::Result<Option<Keeper>> {
    // One look-up of the directory: the file is written and its keeper
    // removes it in the same one.
    let (dir, name) = open_dir(path)?;
    write_at(&dir, name, path)?;
    match keep_at(dir, name, path) {
        Ok(k) => Ok(Some(k)),
        Err(e) => {
            log::warn!(
                "{}: no process to remove it when we stop ({e}): it will stay, naming a dead process",
                path.display()
            );
            Ok(None)
        }
    }
}

/// The pid file's keeper, from the daemon's side: dropped (at the very
/// end), it closes the pipe, and waits for the keeper to have removed the
/// file and ended (a second at most, then it is killed): a daemon that
/// stops leaves no process for its service manager to kill.
pub struct Keeper {
    pipe: Option<OwnedFd>,
    pid: nix::unistd::Pid,
}

impl Keeper {
    /// Its process id (the daemons' filters let them signal it).
    pub fn pid(&self) -> i32 {
        self.pid.as_raw()
    }
}

impl Drop for Keeper {
    fn drop(&mut self) {
        // The end of the pipe: the keeper removes the file and exits.
        drop(self.pipe.take());
        super::daemon::reap_child(self.pid, std::time::Duration::from_secs(1));
    }
}

/// What the keeper is called (`ps`, `/proc/PID/comm`).
pub const KEEPER_NAME: &str = "miredo-pidfile";

/// Starts the pid file's keeper for `path`, which [`write`] just wrote
/// with our pid: a child that waits until the pipe [`Keeper`] holds is
/// closed everywhere (the daemon ends, whatever way), then removes the file
/// if it still names us. The caller keeps the [`Keeper`] for its life and
/// must be single-threaded (a fork). An error leaves no process behind;
/// the file then stays after the daemon, as without a keeper.
pub fn keep(path: &Path) -> io::Result<Keeper> {
    let (dir, name) = open_dir(path)?;
    keep_at(dir, name, path)
}

/// [`keep`] for the file `name` in the directory `dirfd` already open
/// (`path` for messages).
fn keep_at(dirfd: OwnedFd, name: &std::ffi::OsStr, path: &Path) -> io::Result<Keeper> {
    use nix::unistd::{fork, ForkResult};
    use std::os::fd::{AsRawFd, FromRawFd};
    // Root's directory, writable by root alone: the keeper, root's uid,
    // works in nothing another user can change.
    let st = fstat(&dirfd)?;
    if st.st_uid != 0 || st.st_mode & 0o022 != 0 {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "{}: not in a directory of root's that only root may write",
                path.display()
            ),
        ));
    }
    let name = std::ffi::CString::new(name.as_encoded_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in the pid file's name"))?;
    let ours = std::process::id() as i32;
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: a new pipe; both ends are ours.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: pipe2 made them; nothing else owns them.
    let (rd, wr) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // SAFETY: the caller is single-threaded; the child only makes system
    // calls and exits.
    match unsafe { fork() }.map_err(io::Error::from)? {
        ForkResult::Parent { child } => {
            drop(rd);
            Ok(Keeper {
                pipe: Some(wr),
                pid: child,
            })
        }
        ForkResult::Child => {
            drop(wr);
            let code = keeper(rd.as_raw_fd(), dirfd.as_raw_fd(), &name, ours);
            // SAFETY: leaves without running the parent's exit handlers.
            unsafe { libc::_exit(code) }
        }
    }
}

/// The keeper's life, in the child. Returns its exit status.
fn keeper(pipe: libc::c_int, dir: libc::c_int, name: &std::ffi::CStr, daemon: i32) -> i32 {
    use crate::sys::seccomp::{Role, Sandbox};
    // SAFETY: system calls on our own descriptors and process.
    unsafe {
        let comm = b"miredo-pidfile\0";
        libc::prctl(libc::PR_SET_NAME, comm.as_ptr());
        // The pipe and the directory at 3 and 4, standard input and output
        // on /dev/null, nothing else open; standard error stays for the
        // line of a refused system call (the syslog socket is closed).
        if libc::dup3(pipe, 3, libc::O_CLOEXEC) < 0 || libc::dup3(dir, 4, libc::O_CLOEXEC) < 0 {
            return 10;
        }
        if crate::sys::fds::close_from(5).is_err() {
            return 11;
        }
        let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR | libc::O_CLOEXEC);
        if null < 0 || libc::dup2(null, 0) < 0 || libc::dup2(null, 1) < 0 {
            return 11;
        }
        libc::close(null);
        crate::sys::logging::forget_syslog();
        // A service manager stops the whole group: the keeper outlives the
        // daemon by the moment it takes to remove the file.
        for sig in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP, libc::SIGPIPE] {
            libc::signal(sig, libc::SIG_IGN);
        }
        // Its root: the pid file's directory.
        if libc::fchdir(4) != 0
            || libc::chroot(c".".as_ptr()) != 0
            || libc::chdir(c"/".as_ptr()) != 0
        {
            return 12;
        }
    }
    // Root's uid stays (the directory's owner may remove names in it);
    // root's groups go (nothing it reads needs them: the pid file is
    // world-readable), and every capability, the bounding set too.
    let nogroup = nix::unistd::Gid::from_raw(65534);
    if nix::unistd::setgroups(&[]).is_err()
        || nix::unistd::setresgid(nogroup, nogroup, nogroup).is_err()
        || caps::clear(None, caps::CapSet::Bounding).is_err()
        || crate::sys::privileges::clear_capabilities().is_err()
        || nix::sys::prctl::set_no_new_privs().is_err()
        || nix::sys::prctl::set_dumpable(false).is_err()
    {
        return 13;
    }
    // Compiled here, in the child (the parent was single-threaded: it may
    // allocate), so that the filter knows the keeper's own pid.
    let Ok(sandbox) = Sandbox::new(Role::PidKeeper) else {
        return 14;
    };
    if sandbox.enter().is_err() {
        return 15;
    }
    // SAFETY: reads into a buffer on the stack, on our own descriptors.
    unsafe {
        let mut buf = [0u8; 64];
        loop {
            let n = libc::read(3, buf.as_mut_ptr().cast(), buf.len());
            if n == 0 {
                break;
            }
            if n < 0 && *libc::__errno_location() != libc::EINTR {
                break;
            }
        }
        // The daemon is gone. The file, if it still names it, goes too.
        let fd = libc::openat(
            4,
            name.as_ptr(),
            libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC,
        );
        if fd < 0 {
            return 0;
        }
        let n = libc::read(fd, buf.as_mut_ptr().cast(), buf.len());
        libc::close(fd);
        let text = if n > 0 { &buf[..n as usize] } else { &[][..] };
        if parse_pid(text) == Some(daemon) {
            libc::unlinkat(4, name.as_ptr(), 0);
        }
    }
    0
}

/// The pid a pid file's bytes hold (digits, then a newline), without
/// allocating.
fn parse_pid(text: &[u8]) -> Option<i32> {
    let digits = text.strip_suffix(b"\n").unwrap_or(text);
    if digits.is_empty() || digits.len() > 10 {
        return None;
    }
    let mut v: i64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        v = v * 10 + i64::from(d - b'0');
    }
    i32::try_from(v).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pids_are_read_without_allocating() {
        assert_eq!(parse_pid(b"1234\n"), Some(1234));
        assert_eq!(parse_pid(b"1234"), Some(1234));
        for bad in [
            &b""[..],
            b"\n",
            b"12a\n",
            b"-1\n",
            b"99999999999\n",
            b" 12\n",
        ] {
            assert_eq!(parse_pid(bad), None, "{bad:?}");
        }
    }
    use std::fs;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn create_stale_live_remove() {
        let dir = std::env::temp_dir().join(format!("pidfile-test-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let p = dir.join("x.pid");
        // Stale: a pid that cannot exist.
        fs::write(&p, "2147483646\n").unwrap();
        write(&p).unwrap();
        assert_eq!(
            fs::read_to_string(&p).unwrap().trim(),
            std::process::id().to_string()
        );
        // Live, but another program (pid 1 is init, not this test): stale.
        fs::write(&p, "1\n").unwrap();
        write(&p).unwrap();
        // Live and the same program (this test executable, running the
        // sleeper below): refused.
        let mut child = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "sys::pidfile::tests::sleeper", "--ignored"])
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        fs::write(&p, format!("{}\n", child.id())).unwrap();
        // Until its exec, the child bears the name of the thread that
        // forked it: wait for the program's.
        let ours = fs::read_to_string("/proc/self/comm").unwrap();
        for _ in 0..200 {
            if fs::read_to_string(format!("/proc/{}/comm", child.id())).ok() == Some(ours.clone()) {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let refused = write(&p);
        let _ = child.kill();
        let _ = child.wait();
        let e = refused.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AlreadyExists, "{e}");
        // Our own pid (a restart in the same process) is no obstacle.
        fs::write(&p, format!("{}\n", std::process::id())).unwrap();
        write(&p).unwrap();
        // An empty file is stale.
        fs::write(&p, "").unwrap();
        write(&p).unwrap();
        let _ = fs::remove_dir_all(&dir);
    }

    /// Run by `create_stale_live_remove` as a live process of this program.
    #[test]
    #[ignore = "a helper process for create_stale_live_remove, not a test"]
    fn sleeper() {
        std::thread::sleep(std::time::Duration::from_secs(5));
    }

    #[test]
    fn a_planted_link_is_replaced_not_followed() {
        let dir = std::env::temp_dir().join(format!("pidfile-link-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let victim = dir.join("victim");
        fs::write(&victim, "keep\n").unwrap();
        fs::set_permissions(&victim, fs::Permissions::from_mode(0o600)).unwrap();
        let p = dir.join("x.pid");
        std::os::unix::fs::symlink(&victim, &p).unwrap();
        write(&p).unwrap();
        assert!(!fs::symlink_metadata(&p).unwrap().file_type().is_symlink());
        assert_eq!(fs::read_to_string(&victim).unwrap(), "keep\n");
        assert_eq!(
            fs::metadata(&victim).unwrap().permissions().mode() & 0o7777,
            0o600
        );
        let _ = fs::remove_dir_all(&dir);
    }
}
