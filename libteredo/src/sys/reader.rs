//! The configuration reader: the only way a chrooted daemon gets its
//! configuration file again on SIGHUP, and resolves host names with the
//! host's current resolver files.
//!
//! A daemon that kept a descriptor of a directory outside its chroot (the
//! configuration's, to reread it) could leave the chroot with
//! `openat(fd, "..")`. So it keeps none: before it drops its privileges,
//! root forks this small process, which becomes another unprivileged user
//! (never root, never the daemon's own when the caller gives another), keeps
//! no capability, cannot be traced (not dumpable), holds no descriptor but
//! its end of a socket pair, and does two things: on a file request it
//! reads the one file named when it was forked, at most [`MAX_CONFIG`]
//! bytes, and sends the bytes (or why it could not) back; on a name request
//! it asks the system resolver (`getaddrinfo`) for the name's IPv4
//! addresses and sends them back. It is not chrooted, since it must see
//! `/etc`: so a name resolves with the `/etc/hosts` and `/etc/resolv.conf`
//! of now, not with copies made at start (a host that boots before its
//! network gets its DNS configuration later). It never parses what it
//! reads; what the resolver answers is reduced to a list of addresses.
//! It exits when the daemon closes its end, or dies with it.
//!
//! Names are resolved on a thread of the reader's own, so that a resolver
//! waiting for a DNS server that does not answer never delays a file
//! request (SIGHUP).
//!
//! The exchange: the daemon writes one byte `R` (the file), or `N`, a
//! length byte and a host name (resolve it). Each answer is a kind byte, a
//! 4-byte big-endian length, and that many bytes:
//!
//! | kind | body |
//! |---|---|
//! | 0 | the file |
//! | 1 | why it could not be read |
//! | 2 | name length byte, the name, then 4 bytes per IPv4 address |
//! | 3 | name length byte, the name, then why it does not resolve |
//!
//! Answers to names come when they are ready, in any order with the
//! others: [`ConfigReader::read`] keeps those it meets for
//! [`ConfigReader::answers`].

use super::privileges::Target;
use nix::libc;
use nix::unistd::{fork, ForkResult, Pid};
use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::Ipv4Addr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, IntoRawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

/// The largest configuration file reread (a miredo.conf is a few hundred
/// bytes).
pub const MAX_CONFIG: usize = 64 * 1024;

/// The longest host name (RFC 1035: 253 characters in text form).
pub const MAX_NAME: usize = 253;

/// The most addresses kept from one name.
pub const MAX_ADDRESSES: usize = 16;

/// The file request byte.
const READ: u8 = b'R';
/// The name request byte.
const RESOLVE: u8 = b'N';

/// Answer kinds.
const FILE_OK: u8 = 0;
const FILE_ERR: u8 = 1;
const NAME_OK: u8 = 2;
const NAME_ERR: u8 = 3;

/// Names waiting for the resolver thread at most (more are answered as
/// failing at once: the daemon asks again later).
const NAME_QUEUE: usize = 4;

/// How long the daemon waits for an answer.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(5);

/// The largest answer the daemon accepts.
const MAX_ANSWER: usize = MAX_CONFIG + 512;

/// What the reader answered about a host name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resolved {
    pub name: String,
    /// Its IPv4 addresses in the resolver's order, without repeats (never
    /// empty), or why there are none.
    pub result: Result<Vec<Ipv4Addr>, String>,
}

/// The daemon's side: a handle on the reader process.
#[derive(Debug)]
pub struct ConfigReader {
    sock: UnixStream,
    pid: Pid,
    path: Option<PathBuf>,
    /// Answers to names met while waiting for a file.
    kept: VecDeque<Resolved>,
    /// Who it runs as, for a person: `NAME (uid N)`.
    user: String,
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

/// Whether `name` may be sent to the resolver: 1 to [`MAX_NAME`]
/// characters of a host name (letters, digits, `-`, `_`, `.`).
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

impl ConfigReader {
    /// Forks the reader of `path`, running as `user`. Must be called as
    /// root, before any thread is started.
    pub fn spawn(path: &Path, user: &Target) -> io::Result<ConfigReader> {
        Self::spawn_for(Some(path), user)
    }

    /// Forks a reader of `path`, or, without one, a reader that only
    /// resolves names (a daemon running on built-in defaults). Must be
    /// called as root, before any thread is started.
    pub fn spawn_for(path: Option<&Path>, user: &Target) -> io::Result<ConfigReader> {
        if !single_threaded() {
            return Err(io::Error::other(
                "the configuration reader must be started before any thread",
            ));
        }
        let (ours, theirs) = UnixStream::pair()?;
        let path_c = match path {
            Some(p) => Some(
                std::ffi::CString::new(p.as_os_str().as_bytes())
                    .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in the path"))?,
            ),
            None => None,
        };
        // SAFETY: single-threaded (checked above), so the child may run
        // ordinary code; it never returns from `child_main`.
        match unsafe { fork() }.map_err(io::Error::from)? {
            ForkResult::Child => {
                drop(ours);
                child_main(theirs.into_raw_fd(), path_c.as_deref(), user)
            }
            ForkResult::Parent { child } => {
                drop(theirs);
                ours.set_read_timeout(Some(ANSWER_TIMEOUT))?;
                ours.set_write_timeout(Some(ANSWER_TIMEOUT))?;
                Ok(ConfigReader {
                    sock: ours,
                    pid: child,
                    path: path.map(Path::to_path_buf),
                    kept: VecDeque::new(),
                    user: format!("{} (uid {})", user.name, user.uid),
                })
            }
        }
    }

    /// The reader's process id.
    pub fn pid(&self) -> Pid {
        self.pid
    }

    /// The file it reads (none: it only resolves names).
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// The socket to the reader: readable when an answer to a name came.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.sock.as_fd()
    }

    /// Asks for the file's current contents (answers to names that come
    /// first are kept for [`ConfigReader::answers`]).
    /// An error says why in a sentence: the reader's own words when it
    /// could not read the file.
    /// The user it runs as, for a person: `NAME (uid N)`.
    pub fn user(&self) -> &str {
        &self.user
    }

    pub fn read(&mut self) -> io::Result<String> {
        let Some(path) = self.path.clone() else {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                "no configuration file",
            ));
        };
        let what = |e: io::Error| io::Error::new(e.kind(), format!("configuration reader: {e}"));
        self.sock.write_all(&[READ]).map_err(what)?;
        // Bounded: the reader answers each request once, and only as many
        // names as were asked for can come first.
        for _ in 0..64 {
            let (kind, body) = self.frame().map_err(what)?;
            match kind {
                FILE_OK | FILE_ERR => {
                    let text = String::from_utf8(body)
                        .map_err(|_| format!("{}: not valid UTF-8", path.display()));
                    return match (kind, text) {
                        (FILE_OK, Ok(t)) => Ok(t),
                        (FILE_OK, Err(e)) => Err(io::Error::new(io::ErrorKind::InvalidData, e)),
                        // Why the reader could not read it, in its words.
                        (_, t) => Err(io::Error::other(t.unwrap_or_else(|e| e))),
                    };
                }
                _ => {
                    if let Some(r) = decode_name(kind, &body) {
                        self.kept.push_back(r);
                    }
                }
            }
        }
        Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "configuration reader: no answer to the file request",
        ))
    }

    /// Asks for the IPv4 addresses of `name`; the answer comes later (the
    /// reader's socket becomes readable): see [`ConfigReader::answers`].
    pub fn resolve(&mut self, name: &str) -> io::Result<()> {
        if !valid_name(name) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{name:?} is not a host name"),
            ));
        }
        let mut msg = Vec::with_capacity(2 + name.len());
        msg.push(RESOLVE);
        msg.push(name.len() as u8);
        msg.extend_from_slice(name.as_bytes());
        self.sock.write_all(&msg)
    }

    /// The answers to names received so far: those kept by
    /// [`ConfigReader::read`], then, if `readable` (the socket polled
    /// readable), those waiting in the socket. An error means the reader is
    /// gone or broke the protocol.
    pub fn answers(&mut self, readable: bool) -> io::Result<Vec<Resolved>> {
        let mut v: Vec<Resolved> = self.kept.drain(..).collect();
        if !readable {
            return Ok(v);
        }
        // The first frame is there (the socket was readable); the reader
        // writes each frame whole, so what follows is read without waiting.
        let mut first = true;
        for _ in 0..64 {
            if !first && !self.pending()? {
                break;
            }
            first = false;
            let (kind, body) = self.frame()?;
            match decode_name(kind, &body) {
                Some(r) => v.push(r),
                // The file, late: a reload that gave up waiting for it.
                None if kind == FILE_OK || kind == FILE_ERR => {}
                None => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "configuration reader: an answer nobody asked for",
                    ))
                }
            }
        }
        Ok(v)
    }

    /// Whether bytes are waiting in the socket.
    fn pending(&self) -> io::Result<bool> {
        use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
        let mut fds = [PollFd::new(self.sock.as_fd(), PollFlags::POLLIN)];
        let n = poll(&mut fds, PollTimeout::ZERO).map_err(io::Error::from)?;
        Ok(n > 0)
    }

    /// Reads one answer: its kind and body.
    fn frame(&mut self) -> io::Result<(u8, Vec<u8>)> {
        let mut head = [0u8; 5];
        self.sock.read_exact(&mut head)?;
        let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
        if len > MAX_ANSWER {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("answer of {len} bytes"),
            ));
        }
        let mut body = vec![0u8; len];
        self.sock.read_exact(&mut body)?;
        Ok((head[0], body))
    }
}

/// An answer about a name, from its kind and body (`None`: not one).
fn decode_name(kind: u8, body: &[u8]) -> Option<Resolved> {
    if kind != NAME_OK && kind != NAME_ERR {
        return None;
    }
    let n = usize::from(*body.first()?);
    let name = std::str::from_utf8(body.get(1..1 + n)?).ok()?.to_string();
    let rest = body.get(1 + n..)?;
    let result = if kind == NAME_OK {
        if rest.is_empty() || rest.len() % 4 != 0 || rest.len() / 4 > MAX_ADDRESSES {
            return None;
        }
        Ok(rest
            .chunks_exact(4)
            .map(|c| Ipv4Addr::new(c[0], c[1], c[2], c[3]))
            .collect())
    } else {
        Err(String::from_utf8_lossy(rest).into_owned())
    };
    Some(Resolved { name, result })
}

/// The frame answering `name`.
fn encode_name(name: &str, result: &Result<Vec<Ipv4Addr>, String>) -> Vec<u8> {
    let mut body = Vec::with_capacity(1 + name.len() + 64);
    body.push(name.len() as u8);
    body.extend_from_slice(name.as_bytes());
    let kind = match result {
        Ok(addrs) => {
            for a in addrs.iter().take(MAX_ADDRESSES) {
                body.extend_from_slice(&a.octets());
            }
            NAME_OK
        }
        Err(why) => {
            body.extend_from_slice(why.as_bytes());
            NAME_ERR
        }
    };
    frame(kind, &body)
}

fn frame(kind: u8, body: &[u8]) -> Vec<u8> {
    let mut msg = Vec::with_capacity(5 + body.len());
    msg.push(kind);
    msg.extend_from_slice(&(body.len() as u32).to_be_bytes());
    msg.extend_from_slice(body);
    msg
}

impl Drop for ConfigReader {
    fn drop(&mut self) {
        // Closing our end makes it exit: reaped, with half a second to go.
        let _ = self.sock.shutdown(std::net::Shutdown::Both);
        super::daemon::reap_child(self.pid, std::time::Duration::from_millis(500));
    }
}

/// The reader's socket, once alone.
const SOCK_FD: i32 = 3;

fn child_main(sock: i32, path: Option<&std::ffi::CStr>, user: &Target) -> ! {
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
    // The logger's socket is closed (or its number now ours): a refusal of
    // the system call filter is said on (null) standard error only, and
    // the daemon sees the reader go.
    super::logging::forget_syslog();
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
    // Compiled while still free to open files (the check below reads
    // /proc), entered last.
    let sandbox = super::seccomp::Sandbox::new(super::seccomp::Role::Reader)?;
    super::privileges::become_user(user)?;
    if nix::unistd::geteuid().is_root() || super::privileges::holds_any_capability() {
        return Err(io::Error::other("still privileged"));
    }
    sandbox.enter()
}

/// Writes whole frames on the shared socket, one writer at a time.
struct Writer {
    sock: Arc<UnixStream>,
    lock: Mutex<()>,
}

impl Writer {
    fn send(&self, msg: &[u8]) -> io::Result<()> {
        let _held = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        (&*self.sock).write_all(msg)
    }
}

fn serve(s: UnixStream, path: Option<&std::ffi::CStr>) {
    let path = path.map(|p| Path::new(std::ffi::OsStr::from_bytes(p.to_bytes())));
    let sock = Arc::new(s);
    let writer = Arc::new(Writer {
        sock: Arc::clone(&sock),
        lock: Mutex::new(()),
    });
    // The resolver's thread: started at the first name.
    let mut names: Option<mpsc::SyncSender<String>> = None;
    let mut req = [0u8; 1];
    loop {
        match (&*sock).read(&mut req) {
            Ok(1) => {}
            // End of stream or an error.
            _ => return,
        }
        match req[0] {
            READ => {
                let (status, body) = match path {
                    None => (FILE_ERR, b"no configuration file".to_vec()),
                    Some(path) => match read_limited(path) {
                        Ok(b) => (FILE_OK, b),
                        Err(e) => (FILE_ERR, format!("{}: {e}", path.display()).into_bytes()),
                    },
                };
                if writer.send(&frame(status, &body)).is_err() {
                    return;
                }
            }
            RESOLVE => {
                let mut len = [0u8; 1];
                if (&*sock).read_exact(&mut len).is_err() {
                    return;
                }
                let mut name = vec![0u8; usize::from(len[0])];
                if (&*sock).read_exact(&mut name).is_err() {
                    return;
                }
                let Ok(name) = String::from_utf8(name) else {
                    return;
                };
                if !valid_name(&name) {
                    return;
                }
                if names.is_none() {
                    names = start_resolver(Arc::clone(&writer));
                }
                let queued = match &names {
                    Some(tx) => match tx.try_send(name) {
                        Ok(()) => Ok(()),
                        Err(mpsc::TrySendError::Full(n)) => Err((n, "too many names at once")),
                        Err(mpsc::TrySendError::Disconnected(n)) => Err((n, "resolver gone")),
                    },
                    None => Err((name, "cannot start the resolver")),
                };
                if let Err((name, why)) = queued {
                    if writer
                        .send(&encode_name(&name, &Err(why.to_string())))
                        .is_err()
                    {
                        return;
                    }
                }
            }
            // Anything but our requests.
            _ => return,
        }
    }
}

/// Starts the thread that resolves names, one after the other.
fn start_resolver(writer: Arc<Writer>) -> Option<mpsc::SyncSender<String>> {
    let (tx, rx) = mpsc::sync_channel::<String>(NAME_QUEUE);
    std::thread::Builder::new()
        .name("resolver".into())
        .spawn(move || {
            while let Ok(name) = rx.recv() {
                // Why not, in words: the answer crosses to the daemon.
                let result = resolve_v4(&name).map_err(|e| e.to_string());
                if writer.send(&encode_name(&name, &result)).is_err() {
                    return;
                }
            }
        })
        .ok()?;
    Some(tx)
}

/// The IPv4 addresses of `name` from the system resolver, in its order,
/// without repeats.
pub fn resolve_v4(name: &str) -> io::Result<Vec<Ipv4Addr>> {
    use std::net::ToSocketAddrs;
    if let Ok(ip) = name.parse::<Ipv4Addr>() {
        return Ok(vec![ip]);
    }
    let found = (name, 0u16).to_socket_addrs()?;
    let mut v: Vec<Ipv4Addr> = Vec::new();
    for a in found {
        if let std::net::SocketAddr::V4(a) = a {
            if !v.contains(a.ip()) && v.len() < MAX_ADDRESSES {
                v.push(*a.ip());
            }
        }
    }
    if v.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("{name} has no IPv4 address"),
        ));
    }
    Ok(v)
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
    // (tests/tests/lab/security.rs), and here only what needs no fork.
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

    #[test]
    fn name_answers_round_trip_and_bad_ones_are_refused() {
        let ok: Result<Vec<Ipv4Addr>, String> = Ok(vec![
            Ipv4Addr::new(192, 0, 2, 1),
            Ipv4Addr::new(192, 0, 2, 7),
        ]);
        let f = encode_name("teredo.example", &ok);
        let len = u32::from_be_bytes([f[1], f[2], f[3], f[4]]) as usize;
        assert_eq!(len, f.len() - 5);
        let r = decode_name(f[0], &f[5..]).unwrap();
        assert_eq!(r.name, "teredo.example");
        assert_eq!(r.result, ok);
        let err: Result<Vec<Ipv4Addr>, String> = Err("Name or service not known".into());
        let f = encode_name("x.invalid", &err);
        assert_eq!(decode_name(f[0], &f[5..]).unwrap().result, err);
        // Not a name answer, truncated, an address cut short, none at all.
        assert!(decode_name(FILE_OK, b"\x01a").is_none());
        assert!(decode_name(NAME_OK, b"\x05ab").is_none());
        assert!(decode_name(NAME_OK, b"\x01a\x01\x02\x03").is_none());
        assert!(decode_name(NAME_OK, b"\x01a").is_none());
        assert!(decode_name(NAME_OK, &[]).is_none());
    }

    #[test]
    fn only_host_names_go_to_the_resolver() {
        assert!(valid_name("teredo.remlab.net"));
        assert!(valid_name("198.18.1.1"));
        assert!(valid_name("a_b-c"));
        assert!(!valid_name(""));
        assert!(!valid_name("a b"));
        assert!(!valid_name("a\0b"));
        assert!(!valid_name("é.example"));
        assert!(!valid_name(&"a".repeat(MAX_NAME + 1)));
    }

    #[test]
    fn literals_and_localhost_resolve() {
        assert_eq!(
            resolve_v4("192.0.2.9").unwrap(),
            vec![Ipv4Addr::new(192, 0, 2, 9)]
        );
        assert!(resolve_v4("localhost")
            .unwrap()
            .iter()
            .all(|a| a.is_loopback()));
        assert!(resolve_v4("no-such-host.invalid").is_err());
    }
}
