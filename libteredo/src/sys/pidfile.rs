//! The pid file: written at start, refused if another live process holds
//! it, removed at exit by whoever can (see the daemons).

use std::fs::{self, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// A written pid file.
#[derive(Debug)]
pub struct PidFile {
    path: PathBuf,
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
        Ok(PidFile {
            path: path.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Removes the file if it still names us.
    pub fn remove(&self) -> io::Result<()> {
        remove_if_ours(&self.path, std::process::id())
    }
}

/// Removes `path` if it names `pid` (used by a helper process that outlives
/// the daemon's privileges).
pub fn remove_if_ours(path: &Path, pid: u32) -> io::Result<()> {
    let s = fs::read_to_string(path)?;
    if s.trim().parse::<u32>().ok() == Some(pid) {
        fs::remove_file(path)?;
    }
    Ok(())
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
        let _ = fs::remove_dir_all(&dir);
    }
}
