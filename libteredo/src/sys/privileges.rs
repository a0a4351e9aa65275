//! Dropping privileges for good: chroot, the unprivileged user's ids, no
//! capability in any set, and no_new_privs (OpenSSH's recipe).

use nix::unistd::{chroot, setgroups, setresgid, setresuid, Gid, Uid, User};
use std::io;
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

/// Makes `dir` (and its parents) exist as a directory nobody but root can
/// write, for use as an empty chroot.
pub fn ensure_empty_dir(dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o555))?;
    Ok(())
}

/// The resolver's files, copied into a chroot so that host names still
/// resolve inside it.
const RESOLVER_FILES: [&str; 4] = [
    "/etc/resolv.conf",
    "/etc/hosts",
    "/etc/nsswitch.conf",
    "/etc/host.conf",
];

/// Makes `dir` a chroot nobody but root can write, holding nothing but
/// fresh copies of the resolver's files, and loads the resolver's modules
/// now (they cannot be loaded from inside the chroot).
pub fn prepare_chroot(dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let etc = dir.join("etc");
    std::fs::create_dir_all(&etc)?;
    // Several daemons (one per network namespace) may prepare the same
    // directory at once: each copy is written aside and renamed into place,
    // so nobody sees a half-written or vanished file. Best effort: a file
    // that cannot be copied only means no name resolution after reload.
    for f in RESOLVER_FILES {
        let to = etc.join(f.trim_start_matches("/etc/"));
        if up_to_date(Path::new(f), &to) {
            // Most starts: nothing to write (writing and renaming four
            // files took about 2 ms, before the first solicitation).
            continue;
        }
        let tmp = etc.join(format!(
            ".{}.{}",
            f.trim_start_matches("/etc/"),
            std::process::id()
        ));
        if std::fs::copy(f, &tmp).is_ok()
            && std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o444)).is_ok()
            && std::fs::rename(&tmp, &to).is_ok()
        {
            continue;
        }
        let _ = std::fs::remove_file(&tmp);
    }
    for d in [etc.as_path(), dir] {
        if std::fs::metadata(d)?.permissions().mode() & 0o7777 != 0o555 {
            std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o555))?;
        }
    }
    use std::net::ToSocketAddrs;
    let _ = ("localhost", 0).to_socket_addrs();
    Ok(())
}

/// Whether the chroot's copy `to` of `from` has the same bytes and is
/// read-only (mode 0444).
fn up_to_date(from: &Path, to: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    let Ok(meta) = std::fs::symlink_metadata(to) else {
        return false;
    };
    if !meta.is_file() || meta.permissions().mode() & 0o7777 != 0o444 {
        return false;
    }
    match (std::fs::read(from), std::fs::read(to)) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

/// Enters `root`, becomes `target`, and clears every capability set. After
/// this nothing can bring a privilege back.
pub fn drop_to(target: &Target, root: &Path) -> io::Result<()> {
    std::env::set_current_dir(root)?;
    chroot(".").map_err(io::Error::from)?;
    std::env::set_current_dir("/")?;
    setgroups(&[target.gid]).map_err(io::Error::from)?;
    setresgid(target.gid, target.gid, target.gid).map_err(io::Error::from)?;
    setresuid(target.uid, target.uid, target.uid).map_err(io::Error::from)?;
    clear_capabilities()?;
    nix::sys::prctl::set_no_new_privs().map_err(io::Error::from)?;
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
pub fn lookup_unprivileged(user: &str) -> Result<Target, String> {
    let target = lookup(user).map_err(|e| format!("user {user}: {e}"))?;
    if target.uid.is_root() {
        return Err(format!(
            "refusing to run as {} (uid 0) once set up: name an unprivileged user with -u",
            target.name
        ));
    }
    Ok(target)
}

/// The daemons' last step as root: chroot into `dir`, or into `default`
/// made ready by `prepare` when no directory was given; become `target`;
/// check that no capability is left. Returns the root directory used.
pub fn drop_for_good(
    target: &Target,
    dir: Option<&Path>,
    default: &Path,
    prepare: fn(&Path) -> io::Result<()>,
) -> Result<std::path::PathBuf, String> {
    let root = match dir {
        Some(d) => d.to_path_buf(),
        None => {
            prepare(default).map_err(|e| format!("{}: {e}", default.display()))?;
            default.to_path_buf()
        }
    };
    drop_to(target, &root).map_err(|e| {
        format!(
            "cannot drop privileges to {} in {}: {e}",
            target.name,
            root.display()
        )
    })?;
    if holds_any_capability() {
        return Err("capabilities are still held after dropping them: refusing to run".into());
    }
    Ok(root)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    #[test]
    fn chroot_copies_are_made_then_left_alone_until_they_differ() {
        let dir = std::env::temp_dir().join(format!("miredo-chroot-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        prepare_chroot(&dir).unwrap();
        let present: Vec<(&str, std::path::PathBuf)> = RESOLVER_FILES
            .iter()
            .filter(|f| std::fs::read(f).is_ok())
            .map(|f| (*f, dir.join("etc").join(f.trim_start_matches("/etc/"))))
            .collect();
        for (f, copy) in &present {
            assert_eq!(
                std::fs::read(f).unwrap(),
                std::fs::read(copy).unwrap(),
                "{f}"
            );
            let mode = std::fs::metadata(copy).unwrap().permissions().mode() & 0o7777;
            assert_eq!(mode, 0o444, "{f}");
        }
        let inodes: Vec<u64> = present
            .iter()
            .map(|(_, c)| std::fs::metadata(c).unwrap().ino())
            .collect();
        // A second start finds the copies current: none is rewritten.
        prepare_chroot(&dir).unwrap();
        for ((f, c), ino) in present.iter().zip(&inodes) {
            assert_eq!(std::fs::metadata(c).unwrap().ino(), *ino, "{f} rewritten");
        }
        // A copy that no longer matches (or lost its mode) is replaced.
        if let Some((f, c)) = present.first() {
            let etc = dir.join("etc");
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
            std::fs::set_permissions(&etc, std::fs::Permissions::from_mode(0o755)).unwrap();
            std::fs::set_permissions(c, std::fs::Permissions::from_mode(0o644)).unwrap();
            std::fs::write(c, b"stale").unwrap();
            prepare_chroot(&dir).unwrap();
            assert_eq!(std::fs::read(f).unwrap(), std::fs::read(c).unwrap(), "{f}");
            let mode = std::fs::metadata(c).unwrap().permissions().mode() & 0o7777;
            assert_eq!(mode, 0o444);
            let dmode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o7777;
            assert_eq!(dmode, 0o555);
        }
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(dir.join("etc"), std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
