//! The configuration reader: the only way a chrooted daemon gets its
//! configuration file again on SIGHUP.
//!
//! A daemon that kept a descriptor of a directory outside its chroot (the
//! configuration's, to reread it) could leave the chroot with
//! `openat(fd, "..")`. So it keeps none: before it drops its privileges,
//! root forks this small process, which becomes another unprivileged user
//! (never root, never the daemon's own when the caller gives another), keeps
//! no capability, cannot be traced (not dumpable), holds no descriptor but
//! its end of a socket pair, and does one thing: on each request it reads
//! the one file named when it was forked, at most [`MAX_CONFIG`] bytes, and
//! sends the bytes (or why it could not) back. It is not chrooted, since it
//! must see `/etc`; it never parses what it reads. It exits when the daemon
//! closes its end, or dies with it.
//!
//! The exchange: the daemon writes one byte `R`; the reader answers one
//! byte (0: the file follows; 1: an error message follows), a 4-byte
//! big-endian length, and that many bytes.

use super::privileges::Target;
use nix::libc;
use nix::unistd::{fork, ForkResult, Pid};
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The largest configuration file reread (a miredo.conf is a few hundred
/// bytes).
pub const MAX_CONFIG: usize = 64 * 1024;

/// The request byte.
const READ: u8 = b'R';

/// How long the daemon waits for an answer.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(5);

/// The daemon's side: a handle on the reader process.
#[derive(Debug)]
pub struct ConfigReader {
    sock: UnixStream,
    pid: Pid,
    path: PathBuf,
}

/// Whether this process runs a single thread (fork is only safe then: the
/// child may allocate).
fn single_threaded() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Threads:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u32>().ok())
        })
        == Some(1)
}

impl ConfigReader {
    /// Forks the reader of `path`, running as `user`. Must be called as
    /// root, before any thread is started.
    pub fn spawn(path: &Path, user: &Target) -> io::Result<ConfigReader> {
        if !single_threaded() {
            return Err(io::Error::other(
                "the configuration reader must be started before any thread",
            ));
        }
        let (ours, theirs) = UnixStream::pair()?;
        let path_c = std::ffi::CString::new(path.as_os_str().as_bytes())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in the path"))?;
        // SAFETY: single-threaded (checked above), so the child may run
        // ordinary code; it never returns from `child_main`.
        match unsafe { fork() }.map_err(io::Error::from)? {
            ForkResult::Child => {
                drop(ours);
                child_main(theirs.into_raw_fd(), &path_c, user)
            }
            ForkResult::Parent { child } => {
                drop(theirs);
                ours.set_read_timeout(Some(ANSWER_TIMEOUT))?;
                ours.set_write_timeout(Some(ANSWER_TIMEOUT))?;
                Ok(ConfigReader {
                    sock: ours,
                    pid: child,
                    path: path.to_path_buf(),
                })
            }
        }
    }

    /// The reader's process id.
    pub fn pid(&self) -> Pid {
        self.pid
    }

    /// The file it reads.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Asks for the file's current contents.
    pub fn read(&mut self) -> Result<String, String> {
        let what = |e: io::Error| format!("configuration reader: {e}");
        self.sock.write_all(&[READ]).map_err(what)?;
        let mut head = [0u8; 5];
        self.sock.read_exact(&mut head).map_err(what)?;
        let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
        if len > MAX_CONFIG + 256 {
            return Err(format!("configuration reader: answer of {len} bytes"));
        }
        let mut body = vec![0u8; len];
        self.sock.read_exact(&mut body).map_err(what)?;
        let text = String::from_utf8(body)
            .map_err(|_| format!("{}: not valid UTF-8", self.path.display()));
        match head[0] {
            0 => text,
            _ => Err(text.unwrap_or_else(|e| e)),
        }
    }
}

impl Drop for ConfigReader {
    fn drop(&mut self) {
        // Closing our end makes it exit; reap it if it already has.
        let _ = self.sock.shutdown(std::net::Shutdown::Both);
        let _ = nix::sys::wait::waitpid(self.pid, Some(nix::sys::wait::WaitPidFlag::WNOHANG));
    }
}

/// The reader's socket, once alone.
const SOCK_FD: i32 = 3;

fn child_main(sock: i32, path: &std::ffi::CStr, user: &Target) -> ! {
    let code = match child_setup(sock, user) {
        Ok(()) => {
            // SAFETY: SOCK_FD is ours alone now (everything else closed).
            let s = unsafe { UnixStream::from_raw_fd(SOCK_FD) };
            serve(s, path);
            0
        }
        Err(_) => 2,
    };
    // SAFETY: leaving without running the parent's exit handlers or
    // destructors of state copied from it.
    unsafe { libc::_exit(code) }
}

fn child_setup(sock: i32, user: &Target) -> io::Result<()> {
    use nix::sys::signal::{sigprocmask, SigSet, SigmaskHow};
    // Die with the daemon (the thread that forked us is its main thread),
    // and be told apart from it in `ps`.
    // SAFETY: prctl with integer arguments, and a NUL-terminated name.
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
        libc::prctl(libc::PR_SET_NAME, c"miredo-reader".as_ptr());
    }
    // Our socket at a fixed number, then nothing else above stderr.
    if sock != SOCK_FD {
        // SAFETY: dup2 on descriptors we own; SOCK_FD may be replaced.
        if unsafe { libc::dup2(sock, SOCK_FD) } < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    super::fds::close_from(SOCK_FD + 1)?;
    // Standard streams on /dev/null: nothing to say, nothing to read.
    if let Ok(null) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
    {
        for fd in 0..3 {
            // SAFETY: dup2 onto the standard descriptors.
            unsafe { libc::dup2(null.as_raw_fd(), fd) };
        }
    }
    // Signals at their defaults, none blocked: a unit stop may end us.
    for sig in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP, libc::SIGPIPE] {
        // SAFETY: restoring a default disposition.
        unsafe { libc::signal(sig, libc::SIG_DFL) };
    }
    let _ = sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None);
    std::env::set_current_dir("/")?;
    super::privileges::become_user(user)?;
    if nix::unistd::geteuid().is_root() || super::privileges::holds_any_capability() {
        return Err(io::Error::other("still privileged"));
    }
    Ok(())
}

fn serve(mut s: UnixStream, path: &std::ffi::CStr) {
    let path = Path::new(std::ffi::OsStr::from_bytes(path.to_bytes()));
    let mut req = [0u8; 1];
    loop {
        match s.read(&mut req) {
            Ok(1) if req[0] == READ => {}
            // End of stream, an error, or anything but our one request.
            _ => return,
        }
        let (status, body) = match read_limited(path) {
            Ok(b) => (0u8, b),
            Err(e) => (1u8, format!("{}: {e}", path.display()).into_bytes()),
        };
        let mut msg = Vec::with_capacity(5 + body.len());
        msg.push(status);
        msg.extend_from_slice(&(body.len() as u32).to_be_bytes());
        msg.extend_from_slice(&body);
        if s.write_all(&msg).is_err() {
            return;
        }
    }
}

fn read_limited(path: &Path) -> io::Result<Vec<u8>> {
    let f = std::fs::File::open(path)?;
    if !f.metadata()?.is_file() {
        return Err(io::Error::other("not a regular file"));
    }
    let mut v = Vec::new();
    f.take(MAX_CONFIG as u64 + 1).read_to_end(&mut v)?;
    if v.len() > MAX_CONFIG {
        return Err(io::Error::other(format!(
            "larger than {} KiB: not reread",
            MAX_CONFIG / 1024
        )));
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    // The reader forks, which the multi-threaded test harness forbids
    // (checked by `spawn`): it is tested through the daemons, in the lab
    // (tests/tests/security.rs), and here only what needs no fork.
    use super::*;

    #[test]
    fn refuses_to_fork_a_threaded_process() {
        let t = std::thread::spawn(|| std::thread::sleep(Duration::from_millis(200)));
        let user = Target {
            name: "nobody".into(),
            uid: nix::unistd::Uid::from_raw(65534),
            gid: nix::unistd::Gid::from_raw(65534),
        };
        let e = ConfigReader::spawn(Path::new("/etc/hostname"), &user).unwrap_err();
        assert!(e.to_string().contains("before any thread"), "{e}");
        let _ = t.join();
    }

    #[test]
    fn reads_at_most_the_limit() {
        let dir = std::env::temp_dir().join(format!("reader-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let small = dir.join("small.conf");
        std::fs::write(&small, b"RelayType cone\n").unwrap();
        assert_eq!(read_limited(&small).unwrap(), b"RelayType cone\n");
        let big = dir.join("big.conf");
        std::fs::write(&big, vec![b'#'; MAX_CONFIG + 1]).unwrap();
        assert!(read_limited(&big).unwrap_err().to_string().contains("KiB"));
        assert!(read_limited(&dir).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
