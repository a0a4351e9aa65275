//! Dropping privileges for good: chroot, the unprivileged user's ids, no
//! capability in any set, and no_new_privs (OpenSSH's recipe).

use super::rundir::SafeDir;
use nix::unistd::{chroot, setgroups, setresgid, setresuid, Gid, Uid, User};
use std::io::{self, Read};
use std::path::Path;

/// Whom to become.
#[derive(Clone, Debug)]
pub struct Target {
    pub name: String,
    pub uid: Uid,
    pub gid: Gid,
}

/// Looks up a user by name (or a numeric uid).
pub fn lookup(user: &str) -> io::Result<Target> {
    let found = match user.parse::<u32>() {
        Ok(n) => User::from_uid(Uid::from_raw(n)),
        Err(_) => User::from_name(user),
    }
    .map_err(io::Error::from)?;
    let u = found
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("no such user: {user}")))?;
    Ok(Target {
        name: u.name,
        uid: u.uid,
        gid: u.gid,
    })
}

/// The user the daemons run as once set up, by default: a system user of
/// their own, which the packages create.
pub const DAEMON_USER: &str = "miredo";
/// The default user of miredo-server: another one, so that a server and a
/// relay on the same host cannot signal each other.
pub const SERVER_USER: &str = "miredo-server";
/// The default user of miredo-privproc and of the configuration reader:
/// neither root nor the daemon's user.
pub const PRIVPROC_USER: &str = "miredo-privproc";
/// Where a default user does not exist (a build run before installing):
/// with a warning.
pub const FALLBACK_USER: &str = "nobody";

/// Looks up `explicit` (which must exist and not be root) or, without it,
/// `default`, falling back to `nobody` with a warning when `default` does
/// not exist. Returns the user and the warning to log.
pub fn lookup_user(explicit: Option<&str>, default: &str) -> io::Result<(Target, Option<String>)> {
    if let Some(name) = explicit {
        return lookup_unprivileged(name).map(|t| (t, None));
    }
    match lookup(default) {
        Ok(t) if !t.uid.is_root() => Ok((t, None)),
        Ok(_) => Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!("user {default} is uid 0: refusing to run as root once set up"),
        )),
        Err(_) => {
            let t = lookup_unprivileged(FALLBACK_USER)?;
            Ok((
                t,
                Some(format!(
                    "user {default} does not exist: running as {FALLBACK_USER} instead \
                     (create the system user, e.g. adduser --system --group --no-create-home {default}; see miredo(8) SECURITY)"
                )),
            ))
        }
    }
}

/// The resolver's files, copied into a chroot so that host names still
/// resolve inside it.
const RESOLVER_FILES: [&str; 4] = [
    "/etc/resolv.conf",
    "/etc/hosts",
    "/etc/nsswitch.conf",
    "/etc/host.conf",
];

/// The largest resolver file copied (a resolv.conf is a few hundred bytes,
/// a hosts file rarely more than a few kilobytes).
const MAX_RESOLVER_FILE: u64 = 1 << 20;

/// Makes `run`'s entry `chroot` a directory of root's, mode 0555, holding
/// nothing but `etc/` with fresh copies of the resolver's files (mode
/// 0444), and loads the resolver's modules now (they cannot be loaded from
/// inside the chroot). Everything is made through directory descriptors
/// (see [`super::rundir`]): a link or a directory planted there by another
/// user is removed, never followed. Several daemons (one per network
/// namespace) may prepare it at once: each copy is written aside and
/// renamed into place, and one that is already current is left alone.
pub fn prepare_chroot(run: &SafeDir) -> io::Result<SafeDir> {
    // Writable by root while it is filled: root needs no CAP_DAC_OVERRIDE
    // (the units leave it out) to make entries in a directory of mode 0555.
    let root = run.subdir("chroot", 0o755)?;
    let etc = root.subdir("etc", 0o755)?;
    for f in RESOLVER_FILES {
        let name = f.trim_start_matches("/etc/");
        let bytes = match std::fs::File::open(f).and_then(|file| {
            let mut v = Vec::new();
            file.take(MAX_RESOLVER_FILE).read_to_end(&mut v).map(|_| v)
        }) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                // Gone from /etc: gone from the copy too.
                let _ = etc.remove(name);
                continue;
            }
            // Best effort: a file that cannot be copied only means no name
            // resolution after a reload.
            Err(_) => continue,
        };
        if let Err(e) = etc.put_file(name, &bytes, 0o444) {
            log::warn!("{e}: host names may not resolve after a reload");
        }
    }
    etc.set_mode(0o555)?;
    root.set_mode(0o555)?;
    use std::net::ToSocketAddrs;
    let _ = ("localhost", 0).to_socket_addrs();
    Ok(root)
}

/// The empty directory miredo-server chroots into: `run`'s entry `empty`,
/// a directory of root's with mode 0555.
pub fn prepare_empty(run: &SafeDir) -> io::Result<SafeDir> {
    run.subdir("empty", 0o555)
}

/// Opens a chroot directory named on the command line (-t): it must be a
/// directory of root's that nobody else can write, reached through such
/// directories only (the daemon must not be able to change its own prison,
/// nor anyone else to swap it).
pub fn open_chroot(dir: &Path) -> io::Result<SafeDir> {
    let abs = std::path::absolute(dir)
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", dir.display())))?;
    SafeDir::open_trusted(&abs).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!(
                "chroot directory {}: {e}: name a directory of root's that nobody else can write",
                dir.display()
            ),
        )
    })
}

/// Enters `root`, becomes `target`, and clears every capability set. After
/// this nothing can bring a privilege back.
pub fn drop_to(target: &Target, root: std::os::fd::BorrowedFd<'_>) -> io::Result<()> {
    nix::unistd::fchdir(root).map_err(io::Error::from)?;
    chroot(".").map_err(io::Error::from)?;
    std::env::set_current_dir("/")?;
    become_user(target)
}

/// Becomes `target` (its primary group alone) with every capability set
/// empty, no_new_privs, and not dumpable: not even a process of the same
/// user may trace it or read its memory. What the daemons do after their
/// chroot, and the configuration reader without one.
pub fn become_user(target: &Target) -> io::Result<()> {
    setgroups(&[target.gid]).map_err(io::Error::from)?;
    setresgid(target.gid, target.gid, target.gid).map_err(io::Error::from)?;
    setresuid(target.uid, target.uid, target.uid).map_err(io::Error::from)?;
    clear_capabilities()?;
    nix::sys::prctl::set_no_new_privs().map_err(io::Error::from)?;
    nix::sys::prctl::set_dumpable(false).map_err(io::Error::from)?;
    Ok(())
}

/// Empties the effective, permitted, inheritable and ambient sets.
pub fn clear_capabilities() -> io::Result<()> {
    use caps::CapSet;
    let err = |e: caps::errors::CapsError| io::Error::other(e.to_string());
    caps::clear(None, CapSet::Ambient).map_err(err)?;
    caps::clear(None, CapSet::Inheritable).map_err(err)?;
    caps::clear(None, CapSet::Effective).map_err(err)?;
    caps::clear(None, CapSet::Permitted).map_err(err)?;
    Ok(())
}

/// Whether the process holds any capability in any set.
pub fn holds_any_capability() -> bool {
    use caps::CapSet;
    [
        CapSet::Effective,
        CapSet::Permitted,
        CapSet::Inheritable,
        CapSet::Ambient,
    ]
    .into_iter()
    .any(|s| caps::read(None, s).map_or(true, |c| !c.is_empty()))
}

/// Looks up the user a daemon runs as once set up, refusing uid 0.
pub fn lookup_unprivileged(user: &str) -> io::Result<Target> {
    let target = lookup(user).map_err(|e| io::Error::new(e.kind(), format!("user {user}: {e}")))?;
    if target.uid.is_root() {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "refusing to run as {} (uid 0) once set up: name an unprivileged user with -u",
                target.name
            ),
        ));
    }
    Ok(target)
}

/// The daemons' last step as root: chroot into `root` (its descriptor is
/// closed once inside), become `target`, check that no capability is
/// left. Returns the root directory's path, for the logs.
pub fn drop_for_good(target: &Target, root: SafeDir) -> io::Result<std::path::PathBuf> {
    let path = root.path().to_path_buf();
    let fd = root.into_fd();
    drop_to(target, std::os::fd::AsFd::as_fd(&fd)).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!(
                "cannot drop privileges to {} in {}: {e}",
                target.name,
                path.display()
            ),
        )
    })?;
    drop(fd);
    if holds_any_capability() {
        return Err(io::Error::other(
            "capabilities are still held after dropping them: refusing to run",
        ));
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    // prepare_chroot is tested as root in libteredo/tests/chroot.rs.

    #[test]
    fn a_chroot_named_on_the_command_line_must_be_roots() {
        assert!(open_chroot(Path::new("/")).is_ok());
        let e = open_chroot(Path::new("/tmp")).unwrap_err().to_string();
        assert!(e.contains("writable by group or others"), "{e}");
    }
}
