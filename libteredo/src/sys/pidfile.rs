//! The pid file: written by root at start, through its directory's
//! descriptor (a link planted at its name is removed, never followed, and
//! the file is created with `O_EXCL`), refused if a live process of the same
//! program holds it.
//!
//! Nothing of it is kept open: the unprivileged daemon must hold neither a
//! directory outside its chroot (a way out of it) nor a file root reads
//! later (a way to make root signal another process). So the file stays
//! after the daemon stops, naming a dead process, and the next start takes
//! it over; `start-stop-daemon --exec` and service managers check the
//! process too. Under systemd (`Type=notify`) no pid file is needed.

use nix::errno::Errno;
use nix::fcntl::{openat, OFlag};
use nix::sys::stat::{fstat, Mode, SFlag};
use nix::unistd::{unlinkat, UnlinkatFlags};
use std::io::{self, Read, Write};
use std::os::fd::OwnedFd;
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

/// Writes our pid to `path`. A stale file (its process gone, or another
/// program's) is replaced; a live one of ours is an error.
pub fn write(path: &Path) -> io::Result<()> {
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
    let st = fstat(&dir)?;
    if st.st_mode & 0o002 != 0 && st.st_mode & 0o1000 == 0 {
        log::warn!(
            "{}: its directory is writable by everyone: anyone can replace it",
            path.display()
        );
    }
    match openat(
        &dir,
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
    match unlinkat(&dir, name, UnlinkatFlags::NoRemoveDir) {
        Ok(()) | Err(Errno::ENOENT) => {}
        Err(e) => return Err(io::Error::other(format!("{}: {e}", path.display()))),
    }
    let fd = openat(
        &dir,
        name,
        OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::from_bits_truncate(0o644),
    )
    .map_err(|e| io::Error::other(format!("{}: {e}", path.display())))?;
    let mut f = std::fs::File::from(fd);
    writeln!(f, "{}", std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;
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
