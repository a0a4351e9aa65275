//! The directories and files root makes for the daemons (the run
//! directory, the chroots, the chroot's copies of the resolver's files,
//! the status sockets), made and checked through directory descriptors.
//!
//! OpenSSH's rule holds here: root never follows a path that a less
//! privileged user can write. Every directory root works in is opened
//! component by component from `/` with `O_NOFOLLOW`, and must be a real
//! directory owned by root and writable by nobody else; inside it, names
//! are looked up with `*at` calls on that descriptor, links are never
//! followed, files are written under a fresh name with `O_EXCL` and renamed
//! into place, and sockets get their mode from the umask at `bind`, so that
//! no name ever exists with a wider mode. Anything found in the way that
//! root did not make (a link, a file, a directory of another owner or
//! writable by others, such as the `/run/miredo` that earlier versions gave
//! to the unprivileged user) is moved aside and removed, never used.

use nix::errno::Errno;
use nix::fcntl::{openat, renameat, AtFlags, OFlag};
use nix::sys::stat::{fchmod, fstat, fstatat, mkdirat, FileStat, Mode, SFlag};
use nix::unistd::{unlinkat, UnlinkatFlags};
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

/// How long [`SafeDir::socket_is_served`] waits for a socket that accepts
/// connections without answering to refuse them (its process exiting).
pub const SERVED_PATIENCE: std::time::Duration = std::time::Duration::from_secs(2);

/// A directory root may work in: its descriptor, and the path it was
/// reached by (every component checked, see [`SafeDir::open_trusted`]).
#[derive(Debug)]
pub struct SafeDir {
    fd: OwnedFd,
    path: PathBuf,
}

fn dir_flags() -> OFlag {
    OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC
}

fn kind(st: &FileStat) -> SFlag {
    SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT
}

/// Whether `uid` may own what we trust: root, or ourselves (the same for a
/// daemon at start, which is root; a test run by another user works in a
/// directory of its own the same way).
fn trusted_owner(uid: u32) -> bool {
    uid == 0 || uid == nix::unistd::geteuid().as_raw()
}

/// Why a directory cannot be trusted, if it cannot.
fn distrust(st: &FileStat) -> Option<&'static str> {
    if kind(st) != SFlag::S_IFDIR {
        Some("not a directory")
    } else if !trusted_owner(st.st_uid) {
        Some("not owned by root")
    } else if st.st_mode & 0o022 != 0 {
        Some("writable by group or others")
    } else {
        None
    }
}

fn other(msg: String) -> io::Error {
    io::Error::other(msg)
}

/// A name inside a directory: one plain component, no `/`, not `.`/`..`.
fn check_name(name: &str) -> io::Result<&str> {
    if name.is_empty() || name == "." || name == ".." || name.contains('/') || name.contains('\0') {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("\"{name}\" is not a plain file name"),
        ));
    }
    Ok(name)
}

/// A name no one else will pick: for files written aside and for what is
/// moved out of the way.
fn fresh_name(base: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let mut r = [0u8; 8];
    let _ = getrandom::fill(&mut r);
    format!(
        ".{base}.{}.{}.{:016x}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed),
        u64::from_ne_bytes(r)
    )
}

impl SafeDir {
    /// Opens the existing directory `path` (absolute) for root's use: `/`
    /// and every component after it must be a directory (not a link),
    /// owned by root, not writable by group or others. Fails naming the
    /// first component that is not.
    pub fn open_trusted(path: &Path) -> io::Result<SafeDir> {
        if !path.is_absolute() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{}: not an absolute path", path.display()),
            ));
        }
        let mut fd: OwnedFd = openat(nix::fcntl::AT_FDCWD, "/", dir_flags(), Mode::empty())?;
        let mut at = PathBuf::from("/");
        let check = |fd: &OwnedFd, at: &Path| -> io::Result<()> {
            let st = fstat(fd)?;
            match distrust(&st) {
                None => Ok(()),
                Some(why) => Err(other(format!("{}: {why}", at.display()))),
            }
        };
        check(&fd, &at)?;
        for c in path.components() {
            let name = match c {
                Component::RootDir => continue,
                Component::Normal(n) => n,
                _ => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidInput,
                        format!("{}: . or .. in the path", path.display()),
                    ))
                }
            };
            at.push(name);
            fd = match openat(&fd, name, dir_flags(), Mode::empty()) {
                Ok(f) => f,
                Err(Errno::ELOOP) | Err(Errno::ENOTDIR) => {
                    let link = fstatat(&fd, name, AtFlags::AT_SYMLINK_NOFOLLOW)
                        .is_ok_and(|st| kind(&st) == SFlag::S_IFLNK);
                    return Err(other(format!(
                        "{}: {}",
                        at.display(),
                        if link {
                            "a symbolic link, not a directory"
                        } else {
                            "not a directory"
                        }
                    )));
                }
                Err(e) => return Err(other(format!("{}: {e}", at.display()))),
            };
            check(&fd, &at)?;
        }
        Ok(SafeDir { fd, path: at })
    }

    /// Makes `path` (absolute) a root-owned directory of `mode` under a
    /// trusted parent (see [`SafeDir::subdir`]).
    pub fn ensure(path: &Path, mode: u32) -> io::Result<SafeDir> {
        let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{}: no parent directory", path.display()),
            ));
        };
        let name = name
            .to_str()
            .ok_or_else(|| other(format!("{}: not UTF-8", path.display())))?;
        SafeDir::open_trusted(parent)?.subdir(name, mode)
    }

    /// The path this directory was reached by.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Takes the directory's descriptor (the caller chroots into it).
    pub fn into_fd(self) -> OwnedFd {
        self.fd
    }

    /// Sets the directory's mode (through its descriptor).
    pub fn set_mode(&self, mode: u32) -> io::Result<()> {
        fchmod(&self.fd, Mode::from_bits_truncate(mode))
            .map_err(|e| other(format!("{}: {e}", self.path.display())))
    }

    /// The entry `name` as a root-owned directory of exactly `mode`, made
    /// if absent. A directory of root's that only has another mode gets
    /// this one; anything else under that name is moved aside and removed
    /// first (see [`SafeDir::discard`]).
    pub fn subdir(&self, name: &str, mode: u32) -> io::Result<SafeDir> {
        let name = check_name(name)?;
        let at = self.path.join(name);
        let ctx = |e: Errno| other(format!("{}: {e}", at.display()));
        for _attempt in 0..4 {
            match mkdirat(&self.fd, name, Mode::from_bits_truncate(mode)) {
                Ok(()) | Err(Errno::EEXIST) => {}
                Err(e) => return Err(ctx(e)),
            }
            let fd = match openat(&self.fd, name, dir_flags(), Mode::empty()) {
                Ok(fd) => fd,
                // A link or a file: not ours to use.
                Err(Errno::ELOOP) | Err(Errno::ENOTDIR) => {
                    self.discard(name)?;
                    continue;
                }
                // Removed by another instance between our two calls.
                Err(Errno::ENOENT) => continue,
                Err(e) => return Err(ctx(e)),
            };
            let st = fstat(&fd).map_err(ctx)?;
            if let Some(why) = distrust(&st) {
                drop(fd);
                log::warn!(
                    "{}: {why}, not made by root as it should be: removed and made again",
                    at.display()
                );
                self.discard(name)?;
                continue;
            }
            if st.st_mode & 0o7777 != mode {
                fchmod(&fd, Mode::from_bits_truncate(mode)).map_err(ctx)?;
            }
            return Ok(SafeDir { fd, path: at });
        }
        Err(other(format!(
            "{}: cannot make it a directory of root's (something keeps replacing it)",
            at.display()
        )))
    }

    /// Moves the entry `name` out of the way and removes it (a whole tree
    /// for a directory: the standard library's removal opens each level
    /// with `O_NOFOLLOW` relative to the last, so a link swapped in during
    /// the removal is removed, not followed). Nothing is done through the
    /// old name after the move.
    pub fn discard(&self, name: &str) -> io::Result<()> {
        let name = check_name(name)?;
        let st = match fstatat(&self.fd, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            Err(Errno::ENOENT) => return Ok(()),
            Err(e) => return Err(other(format!("{}: {e}", self.path.join(name).display()))),
        };
        if kind(&st) != SFlag::S_IFDIR {
            return match unlinkat(&self.fd, name, UnlinkatFlags::NoRemoveDir) {
                Ok(()) | Err(Errno::ENOENT) => Ok(()),
                Err(e) => Err(other(format!("{}: {e}", self.path.join(name).display()))),
            };
        }
        let aside = fresh_name("discarded");
        match renameat(&self.fd, name, &self.fd, aside.as_str()) {
            Ok(()) => {}
            Err(Errno::ENOENT) => return Ok(()),
            Err(e) => return Err(other(format!("{}: {e}", self.path.join(name).display()))),
        }
        // Its owner loses the right to change it (what it holds below may
        // still be theirs), then it goes. This directory and every one above
        // it are root's: the path to what was moved aside can no longer
        // change under us. A removal that fails (its owner keeps filling a
        // subdirectory) leaves it aside, harmless, under a name nobody uses.
        if let Ok(fd) = openat(&self.fd, aside.as_str(), dir_flags(), Mode::empty()) {
            let _ = nix::unistd::fchown(
                &fd,
                Some(nix::unistd::Uid::from_raw(0)),
                Some(nix::unistd::Gid::from_raw(0)),
            );
            let _ = fchmod(&fd, Mode::from_bits_truncate(0o700));
        }
        if let Err(e) = std::fs::remove_dir_all(self.path.join(&aside)) {
            log::warn!(
                "{}: {e}; left aside as {}",
                self.path.join(name).display(),
                self.path.join(&aside).display()
            );
        }
        Ok(())
    }

    /// Whether the entry `name` is a regular file of root's with exactly
    /// `mode` holding `bytes`.
    pub fn holds(&self, name: &str, bytes: &[u8], mode: u32) -> bool {
        let Ok(name) = check_name(name) else {
            return false;
        };
        let Ok(fd) = openat(
            &self.fd,
            name,
            OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC,
            Mode::empty(),
        ) else {
            return false;
        };
        let Ok(st) = fstat(&fd) else { return false };
        if kind(&st) != SFlag::S_IFREG
            || !trusted_owner(st.st_uid)
            || st.st_mode & 0o7777 != mode
            || u64::try_from(st.st_size).ok() != u64::try_from(bytes.len()).ok()
        {
            return false;
        }
        let mut have = Vec::with_capacity(bytes.len());
        let mut f = std::fs::File::from(fd);
        Read::by_ref(&mut f)
            .take(bytes.len() as u64 + 1)
            .read_to_end(&mut have)
            .is_ok()
            && have == bytes
    }

    /// Puts `bytes` in the regular file `name` with `mode`, unless it
    /// already holds them: written under a fresh name (`O_CREAT|O_EXCL|
    /// O_NOFOLLOW`), given its mode through the descriptor, then renamed
    /// over `name`, so that nobody ever sees a half-written file and
    /// nothing that was at `name` is followed. Returns whether it wrote.
    pub fn put_file(&self, name: &str, bytes: &[u8], mode: u32) -> io::Result<bool> {
        let name = check_name(name)?;
        if self.holds(name, bytes, mode) {
            return Ok(false);
        }
        let tmp = fresh_name(name);
        let at = self.path.join(name);
        let ctx = |e: &dyn std::fmt::Display| other(format!("{}: {e}", at.display()));
        let fd = openat(
            &self.fd,
            tmp.as_str(),
            OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(mode & 0o600),
        )
        .map_err(|e| ctx(&e))?;
        let written = (|| -> io::Result<()> {
            let mut f = std::fs::File::from(fd);
            f.write_all(bytes)?;
            fchmod(&f, Mode::from_bits_truncate(mode))?;
            renameat(&self.fd, tmp.as_str(), &self.fd, name)?;
            Ok(())
        })();
        if let Err(e) = written {
            let _ = unlinkat(&self.fd, tmp.as_str(), UnlinkatFlags::NoRemoveDir);
            return Err(ctx(&e));
        }
        Ok(true)
    }

    /// Whether a live process serves the socket `name`: it accepts a
    /// connection and answers (a status socket's daemon writes its status
    /// at once), or still accepts connections after a while without one. A
    /// stale socket, left by a process that is gone, refuses connections;
    /// one whose process is exiting (its listener not closed yet, nobody
    /// answering) soon does: it is asked again for up to
    /// [`SERVED_PATIENCE`].
    pub fn socket_is_served(&self, name: &str) -> io::Result<bool> {
        use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
        use nix::sys::socket::{connect, socket, AddressFamily, SockFlag, SockType, UnixAddr};
        let name = check_name(name)?;
        let step = std::time::Duration::from_millis(100);
        let tries = (SERVED_PATIENCE.as_millis() / step.as_millis()).max(1);
        for _ in 0..tries {
            match fstatat(&self.fd, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
                Ok(st) if kind(&st) == SFlag::S_IFSOCK => {}
                // Nothing there, or not a socket (removed by bind_socket).
                _ => return Ok(false),
            }
            let s = socket(
                AddressFamily::Unix,
                SockType::Stream,
                SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
                None,
            )?;
            // The path goes through directories of root's only (checked
            // when this one was opened), and its last component is a
            // socket.
            let addr = UnixAddr::new(&self.path.join(name))?;
            match connect(std::os::fd::AsRawFd::as_raw_fd(&s), &addr) {
                Ok(()) => {
                    let mut fds = [PollFd::new(s.as_fd(), PollFlags::POLLIN)];
                    let ms = step.as_millis() as u16;
                    if poll(&mut fds, PollTimeout::from(ms)).unwrap_or(0) > 0 {
                        let mut b = [0u8; 1];
                        if nix::unistd::read(&s, &mut b).unwrap_or(0) > 0 {
                            return Ok(true);
                        }
                    }
                    // Accepted but no answer (yet): exiting, or busy.
                }
                // A full backlog: busy, or exiting.
                Err(Errno::EAGAIN) | Err(Errno::EINPROGRESS) => std::thread::sleep(step),
                Err(_) => return Ok(false),
            }
        }
        Ok(true)
    }

    /// Binds a listening Unix stream socket at `name` with `mode` (a stale
    /// socket, or anything else found there, is removed first). A socket
    /// another live process serves is left alone: the error's kind is
    /// [`io::ErrorKind::AddrInUse`] then. The mode comes from the umask in
    /// force during `bind`, so the name never exists with another; the
    /// umask is process-wide, so this must run before the daemon starts
    /// threads.
    pub fn bind_socket(&self, name: &str, mode: u32) -> io::Result<UnixListener> {
        let name = check_name(name)?;
        let at = self.path.join(name);
        if self.socket_is_served(name)? {
            return Err(io::Error::new(
                io::ErrorKind::AddrInUse,
                format!("{}: another process answers on it", at.display()),
            ));
        }
        let mut attempt = 0;
        loop {
            match unlinkat(&self.fd, name, UnlinkatFlags::NoRemoveDir) {
                Ok(()) | Err(Errno::ENOENT) => {}
                Err(Errno::EISDIR) => self.discard(name)?,
                Err(e) => return Err(other(format!("{}: {e}", at.display()))),
            }
            let old = nix::sys::stat::umask(Mode::from_bits_truncate(!mode & 0o777));
            // `at` goes through directories of root's only (checked when
            // this one was opened): the path cannot be redirected.
            let bound = UnixListener::bind(&at);
            nix::sys::stat::umask(old);
            match bound {
                Ok(l) => return Ok(l),
                // Another instance (another network namespace: /run is
                // shared) bound the same name between our two calls.
                Err(e) if e.kind() == io::ErrorKind::AddrInUse && attempt < 20 => {
                    attempt += 1;
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
                Err(e) => return Err(other(format!("{}: {e}", at.display()))),
            }
        }
    }

    /// The same directory, through a descriptor of its own.
    pub fn try_clone(&self) -> io::Result<SafeDir> {
        Ok(SafeDir {
            fd: self.fd.try_clone()?,
            path: self.path.clone(),
        })
    }

    /// Whether this directory holds an entry `name` that is not a socket
    /// (looked at through the directory's descriptor, not followed).
    pub fn holds_non_socket(&self, name: &str) -> io::Result<bool> {
        let name = check_name(name)?;
        match fstatat(&self.fd, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(st) => Ok(kind(&st) != SFlag::S_IFSOCK),
            Err(Errno::ENOENT) => Ok(false),
            Err(e) => Err(other(format!("{}: {e}", self.path.join(name).display()))),
        }
    }

    /// Removes the entry `name` if it is not a directory (root's own files
    /// at start, before they are made again).
    pub fn remove(&self, name: &str) -> io::Result<()> {
        let name = check_name(name)?;
        match unlinkat(&self.fd, name, UnlinkatFlags::NoRemoveDir) {
            Ok(()) | Err(Errno::ENOENT) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

/// The status socket bound at start-up, and where it is while start-up
/// may still fail: dropped before [`StatusSocket::keep`], it removes its
/// name again (through its directory's descriptor, never by path), so
/// that a daemon that does not start leaves no socket behind.
pub struct StatusSocket {
    listener: Option<UnixListener>,
    /// The socket's directory and name; `None` once kept.
    place: Option<(SafeDir, String)>,
}

impl StatusSocket {
    /// Binds the status socket: `explicit` (`--status-socket`), or
    /// `default_name` in the run directory, non-blocking. Refuses (with
    /// `in_use` in the message) when another live process answers on it
    /// (an explicit one must be in a directory of root's only).
    pub fn bind(
        run_dir: &SafeDir,
        explicit: Option<&Path>,
        default_name: &str,
        in_use: &str,
    ) -> Result<StatusSocket, String> {
        let (listener, dir, name) = bind_status_socket(run_dir, explicit, default_name, in_use)
            .map_err(|e| e.to_string())?;
        listener.set_nonblocking(true).map_err(|e| e.to_string())?;
        Ok(StatusSocket {
            listener: Some(listener),
            place: Some((dir, name)),
        })
    }

    /// Start-up succeeded as far as the socket is concerned: the listener,
    /// whose name stays.
    pub fn keep(mut self) -> Result<UnixListener, String> {
        self.place = None;
        self.listener
            .take()
            .ok_or_else(|| "the status socket is gone".to_string())
    }
}

impl Drop for StatusSocket {
    fn drop(&mut self) {
        let Some((dir, name)) = self.place.take() else {
            return;
        };
        // No other daemon takes over a name while we listen on it: it
        // still names our socket. Closed, then removed if it is a socket.
        drop(self.listener.take());
        if matches!(dir.holds_non_socket(&name), Ok(false)) {
            if let Err(e) = dir.remove(&name) {
                log::warn!(
                    "cannot remove the status socket {}: {e}",
                    dir.path().join(&name).display()
                );
            }
        }
    }
}

/// Binds a daemon's status socket (mode 0666: anyone may read the
/// status): `default_name` in `run_dir` unless `explicit` names another,
/// whose directory must be root's and writable by nobody else. Refuses
/// (with `in_use` in the message, what to do about it) when another live
/// process answers on it: daemons in different network namespaces share
/// the run directory, and one must not take another's socket. An explicit
/// name that exists and is not a socket is refused too: a name given by
/// mistake must not cost root's directory one of its files.
/// Returns the listener, its directory and its name.
fn bind_status_socket(
    run_dir: &SafeDir,
    explicit: Option<&Path>,
    default_name: &str,
    in_use: &str,
) -> io::Result<(UnixListener, SafeDir, String)> {
    // Each error says which socket, and why, in a sentence.
    let said = |kind: io::ErrorKind, what: String| io::Error::new(kind, what);
    let (dir, name, shown) = match explicit {
        None => (
            None,
            default_name.to_string(),
            run_dir.path().join(default_name).display().to_string(),
        ),
        Some(p) => {
            let abs = std::path::absolute(p)
                .map_err(|e| said(e.kind(), format!("{}: {e}", p.display())))?;
            let (Some(parent), Some(name)) =
                (abs.parent(), abs.file_name().and_then(|n| n.to_str()))
            else {
                return Err(said(
                    io::ErrorKind::InvalidInput,
                    format!("status socket {}: not a file name", p.display()),
                ));
            };
            let d = SafeDir::open_trusted(parent).map_err(|e| {
                said(e.kind(), format!("status socket {}: {e}: name one in a directory of root's that nobody else can write", p.display()))
            })?;
            // Looked at through the trusted directory's descriptor, as it
            // is bound.
            if d.holds_non_socket(name)
                .map_err(|e| said(e.kind(), format!("status socket: {e}")))?
            {
                return Err(said(
                    io::ErrorKind::AlreadyExists,
                    format!(
                        "status socket {}: exists and is not a socket",
                        abs.display()
                    ),
                ));
            }
            (Some(d), name.to_string(), abs.display().to_string())
        }
    };
    let dir = match dir {
        Some(d) => d,
        None => run_dir.try_clone()?,
    };
    match dir.bind_socket(&name, 0o666) {
        Ok(l) => Ok((l, dir, name)),
        Err(e) if e.kind() == io::ErrorKind::AddrInUse => {
            Err(said(e.kind(), format!("{shown}: {in_use}")))
        }
        Err(e) => Err(said(e.kind(), format!("status socket: {e}"))),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    /// A scratch directory reached through directories that only root or
    /// the user running the tests can write (the workspace's target
    /// directory), so that these tests run the same as root (CI) and as
    /// another user.
    pub(crate) fn scratch(tag: &str) -> PathBuf {
        let target = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../target")
            .canonicalize()
            .expect("the workspace's target directory");
        let p = target.join(format!("rundir-test-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        p
    }

    #[test]
    fn open_trusted_refuses_links_and_open_directories() {
        assert!(SafeDir::open_trusted(Path::new("relative")).is_err());
        let e = SafeDir::open_trusted(Path::new("/tmp")).unwrap_err();
        assert!(e.to_string().contains("writable by group or others"), "{e}");
        let base = scratch("open");
        let d = SafeDir::ensure(&base, 0o755).unwrap();
        assert_eq!(d.path(), base);
        let open = base.join("open");
        std::fs::create_dir(&open).unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
        let e = SafeDir::open_trusted(&open.join("x")).unwrap_err();
        assert!(e.to_string().contains("writable by group or others"), "{e}");
        std::os::unix::fs::symlink("/etc", base.join("link")).unwrap();
        let e = SafeDir::open_trusted(&base.join("link")).unwrap_err();
        assert!(e.to_string().contains("symbolic link"), "{e}");
        std::fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn subdir_replaces_what_its_owner_did_not_make() {
        let base = scratch("subdir");
        let d = SafeDir::ensure(&base, 0o755).unwrap();
        // A victim file that a planted link points at.
        let victim = base.join("victim");
        std::fs::write(&victim, b"secret").unwrap();
        std::fs::set_permissions(&victim, std::fs::Permissions::from_mode(0o600)).unwrap();
        // A link where the chroot should be, and a directory anyone can
        // write (as root: another user's too) holding a link where a copy
        // will go.
        std::os::unix::fs::symlink(&victim, base.join("chroot")).unwrap();
        let foreign = base.join("etc");
        std::fs::create_dir(&foreign).unwrap();
        std::os::unix::fs::symlink(&victim, foreign.join("resolv.conf")).unwrap();
        std::fs::set_permissions(&foreign, std::fs::Permissions::from_mode(0o777)).unwrap();
        if nix::unistd::geteuid().is_root() {
            nix::unistd::chown(&foreign, Some(nix::unistd::Uid::from_raw(65534)), None).unwrap();
        }

        let chroot = d.subdir("chroot", 0o555).unwrap();
        let m = std::fs::symlink_metadata(base.join("chroot")).unwrap();
        assert!(m.is_dir() && trusted_owner(m.uid()) && m.mode() & 0o7777 == 0o555);
        let etc = d.subdir("etc", 0o755).unwrap();
        let m = std::fs::symlink_metadata(&foreign).unwrap();
        assert!(
            m.is_dir() && trusted_owner(m.uid()) && m.mode() & 0o7777 == 0o755,
            "the foreign directory was replaced"
        );
        assert!(etc
            .put_file("resolv.conf", b"nameserver 192.0.2.1\n", 0o444)
            .unwrap());
        assert!(!etc
            .put_file("resolv.conf", b"nameserver 192.0.2.1\n", 0o444)
            .unwrap());
        assert!(etc
            .put_file("resolv.conf", b"nameserver 192.0.2.2\n", 0o444)
            .unwrap());
        let copy = foreign.join("resolv.conf");
        assert_eq!(std::fs::read(&copy).unwrap(), b"nameserver 192.0.2.2\n");
        assert_eq!(std::fs::metadata(&copy).unwrap().mode() & 0o7777, 0o444);
        // The victim is untouched: bytes and mode.
        assert_eq!(std::fs::read(&victim).unwrap(), b"secret");
        assert_eq!(std::fs::metadata(&victim).unwrap().mode() & 0o7777, 0o600);
        // Nothing left aside.
        let names: Vec<_> = std::fs::read_dir(&base)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(names.iter().all(|n| !n.starts_with('.')), "{names:?}");
        drop((chroot, etc));
        std::fs::set_permissions(base.join("chroot"), std::fs::Permissions::from_mode(0o755))
            .unwrap();
        std::fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn sockets_are_born_with_their_mode_and_replace_links() {
        let base = scratch("sock");
        let d = SafeDir::ensure(&base, 0o755).unwrap();
        let victim = base.join("victim");
        std::fs::write(&victim, b"x").unwrap();
        std::fs::set_permissions(&victim, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::os::unix::fs::symlink(&victim, base.join("teredo.status")).unwrap();
        let l = d.bind_socket("teredo.status", 0o666).unwrap();
        let m = std::fs::symlink_metadata(base.join("teredo.status")).unwrap();
        use std::os::unix::fs::FileTypeExt;
        assert!(m.file_type().is_socket());
        assert_eq!(m.mode() & 0o7777, 0o666);
        assert_eq!(std::fs::metadata(&victim).unwrap().mode() & 0o7777, 0o600);
        // Served: left alone.
        assert!(d.socket_is_served("teredo.status").unwrap());
        let e = d.bind_socket("teredo.status", 0o666).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AddrInUse, "{e}");
        assert!(std::os::unix::net::UnixStream::connect(base.join("teredo.status")).is_ok());
        drop(l);
        // Again over the stale socket.
        assert!(!d.socket_is_served("teredo.status").unwrap());
        let _l = d.bind_socket("teredo.status", 0o666).unwrap();
        assert!(d.bind_socket("../x", 0o666).is_err());
        assert!(!d.socket_is_served("absent").unwrap());
        std::fs::remove_dir_all(&base).unwrap();
    }
}
