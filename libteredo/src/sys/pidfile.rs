//! The pid file: written at start, refused if another live process holds
//! it, removed at exit by whoever can (see the daemons).

use std::fs::{self, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// A written pid file. It keeps the file and its directory open so that it
/// can be released after chroot and the switch to an unprivileged user.
#[derive(Debug)]
pub struct PidFile {
    path: PathBuf,
    file: fs::File,
    dir: Option<std::os::fd::OwnedFd>,
}

fn alive(pid: i32) -> bool {
    pid > 0 && nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok()
}

impl PidFile {
    /// Writes our pid to `path`. A stale file (its process is gone) is
    /// replaced; a live one is an error.
    pub fn create(path: &Path) -> io::Result<PidFile> {
        if let Ok(mut f) = fs::File::open(path) {
            let mut s = String::new();
            let _ = f.read_to_string(&mut s);
            // An empty file was released by a daemon that could not remove
            // it: stale.
            if let Ok(pid) = s.trim().parse::<i32>() {
                if pid != std::process::id() as i32 && alive(pid) {
                    return Err(io::Error::new(
                        io::ErrorKind::AlreadyExists,
                        format!("{} names process {pid}, which is running", path.display()),
                    ));
                }
            }
            fs::remove_file(path)?;
        }
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(path)?;
        writeln!(f, "{}", std::process::id())?;
        let dir = path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let dir = fs::File::open(dir).ok().map(std::os::fd::OwnedFd::from);
        Ok(PidFile {
            path: path.to_path_buf(),
            file: f,
            dir,
        })
    }

    /// At exit, possibly without privileges and chrooted: removes the file
    /// if the directory lets us, else empties it (an empty pid file names no
    /// process, for us at the next start as for start-stop-daemon).
    pub fn release(&self) {
        let removed = match (&self.dir, self.path.file_name()) {
            (Some(d), Some(name)) => {
                nix::unistd::unlinkat(d, name, nix::unistd::UnlinkatFlags::NoRemoveDir).is_ok()
            }
            _ => false,
        };
        if !removed {
            let _ = self.file.set_len(0);
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Removes the file if it still names us.
    pub fn remove(&self) -> io::Result<()> {
        let s = fs::read_to_string(&self.path)?;
        if s.trim().parse::<u32>().ok() == Some(std::process::id()) {
            fs::remove_file(&self.path)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_stale_live_remove() {
        let dir = std::env::temp_dir().join(format!("pidfile-test-{}", std::process::id()));
        let _ = fs::create_dir_all(&dir);
        let p = dir.join("x.pid");
        // Stale: a pid that cannot exist.
        fs::write(&p, "2147483646\n").unwrap();
        let pf = PidFile::create(&p).unwrap();
        assert_eq!(
            fs::read_to_string(&p).unwrap().trim(),
            std::process::id().to_string()
        );
        // Live: pid 1 exists.
        fs::write(&p, "1\n").unwrap();
        assert!(PidFile::create(&p).is_err());
        fs::write(&p, format!("{}\n", std::process::id())).unwrap();
        pf.remove().unwrap();
        assert!(!p.exists());
        // Release removes the file when the directory allows it.
        let pf = PidFile::create(&p).unwrap();
        pf.release();
        assert!(!p.exists());
        // An empty file is stale.
        fs::write(&p, "").unwrap();
        let pf = PidFile::create(&p).unwrap();
        pf.release();
        let _ = fs::remove_dir_all(&dir);
    }
}
