//! The service manager's notification protocol (sd_notify, as systemd
//! speaks it), without libsystemd: datagrams of `KEY=value` lines sent to
//! the Unix socket `$NOTIFY_SOCKET` names (a path, or an abstract name
//! when it starts with `@`). Without that variable every call does
//! nothing, so a daemon started by hand or by another init behaves as
//! before.
//!
//! The socket is connected once, at start-up, before the daemon chroots
//! and drops its privileges: the datagrams then go out of the connected
//! socket, which needs neither the path nor any privilege. The variables
//! (`NOTIFY_SOCKET`, `WATCHDOG_USEC`, `WATCHDOG_PID`) are removed from the
//! environment as they are read, so that the processes the daemon starts
//! (miredo-privproc, hooks, the configuration reader) do not inherit them
//! and speak for it.
//!
//! The watchdog (`WatchdogSec=` in a unit): [`Heartbeat`]s that every
//! thread doing I/O bumps on each turn of its loop, and a thread that
//! sends `WATCHDOG=1` every half period while all of them are alive and
//! moving ([`spawn_watchdog`]); when one stops moving, the pets stop and
//! the service manager restarts the daemon.

use std::io;
use std::os::unix::net::UnixDatagram;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The service manager's socket, or nothing.
#[derive(Debug, Default)]
pub struct Notifier {
    sock: Option<UnixDatagram>,
    /// Where it goes (for the log).
    target: String,
    /// The pet period the manager asked for (`WATCHDOG_USEC`), if it is
    /// meant for us.
    watchdog: Option<Duration>,
    /// What went wrong reading the environment, said once logging is up.
    setup_error: Option<String>,
    /// A send failed and was logged: later failures are not.
    send_failed: AtomicBool,
    /// Our pid when the variables were read (the process the manager
    /// started).
    started_pid: u32,
}

/// The service manager's status line (`STATUS=`) is refreshed at most
/// this often while only its counts move (a change of state is sent at
/// once); a daemon's main loop wakes at least this often to do it.
pub const STATUS_EVERY: Duration = Duration::from_secs(5);

/// The last status line sent ([`Notifier::status`]), so that the next is
/// sent only when it says something new: a daemon's main loop offers one
/// at each turn.
#[derive(Debug, Default)]
pub struct StatusLine {
    /// Its state key, its text, when.
    last: Option<(String, String, Instant)>,
}

impl StatusLine {
    /// Sends `text` if it is the first, if `now`, if its state `key`
    /// changed, or if the text changed and the last one is
    /// [`STATUS_EVERY`] old.
    pub fn offer(&mut self, notify: &Notifier, now: bool, key: String, text: String) {
        let due = match &self.last {
            None => true,
            Some((k, t, when)) => {
                now || *k != key || (*t != text && when.elapsed() >= STATUS_EVERY)
            }
        };
        if due {
            notify.status(&text);
            self.last = Some((key, text, Instant::now()));
        }
    }
}

/// Reads (and removes) the protocol's variables from the environment.
/// Call it first thing in `main`, before any thread starts.
pub fn from_env() -> Notifier {
    let socket = std::env::var_os("NOTIFY_SOCKET");
    let usec = std::env::var("WATCHDOG_USEC").ok();
    let wpid = std::env::var("WATCHDOG_PID").ok();
    for v in ["NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"] {
        std::env::remove_var(v);
    }
    let mut n = Notifier {
        started_pid: std::process::id(),
        ..Notifier::default()
    };
    let Some(socket) = socket else {
        return n;
    };
    let target = socket.to_string_lossy().into_owned();
    match connect(&target) {
        Ok(s) => n.sock = Some(s),
        Err(e) => {
            n.setup_error = Some(format!(
                "NOTIFY_SOCKET {target}: {e}: the service manager will not hear from us"
            ));
            return n;
        }
    }
    n.target = target;
    match watchdog_period(usec.as_deref(), wpid.as_deref(), std::process::id()) {
        Ok(w) => n.watchdog = w,
        Err(e) => n.setup_error = Some(e.to_string()),
    }
    n
}

/// Connects a datagram socket to `target`: a path, or an abstract name
/// after `@`.
fn connect(target: &str) -> io::Result<UnixDatagram> {
    let s = UnixDatagram::unbound()?;
    match target.strip_prefix('@') {
        Some(name) => {
            use std::os::linux::net::SocketAddrExt;
            let a = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())?;
            s.connect_addr(&a)?;
        }
        None if target.starts_with('/') => s.connect(target)?,
        None => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "neither an absolute path nor an abstract name (@...)",
            ))
        }
    }
    // A stalled manager must not stall the daemon.
    s.set_nonblocking(true)?;
    Ok(s)
}

/// The watchdog period `WATCHDOG_USEC` asks for, if `WATCHDOG_PID` (when
/// set) names us: `Ok(None)` when there is no watchdog for us.
pub fn watchdog_period(
    usec: Option<&str>,
    pid: Option<&str>,
    our_pid: u32,
) -> io::Result<Option<Duration>> {
    let Some(usec) = usec else { return Ok(None) };
    if let Some(p) = pid {
        match p.trim().parse::<u32>() {
            Ok(p) if p == our_pid => {}
            Ok(_) => return Ok(None),
            Err(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("WATCHDOG_PID {p:?} is not a process id"),
                ))
            }
        }
    }
    match usec.trim().parse::<u64>() {
        Ok(0) => Ok(None),
        Ok(us) => Ok(Some(Duration::from_micros(us))),
        Err(_) => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("WATCHDOG_USEC {usec:?} is not a number of microseconds: no watchdog"),
        )),
    }
}

impl Notifier {
    /// A notifier that says nothing (no service manager).
    pub fn disabled() -> Notifier {
        Notifier::default()
    }

    /// Whether a service manager listens.
    pub fn enabled(&self) -> bool {
        self.sock.is_some()
    }

    /// The watchdog period, when the manager asked for one.
    pub fn watchdog(&self) -> Option<Duration> {
        self.watchdog.filter(|_| self.enabled())
    }

    /// Logs what went wrong reading the environment, and what is in force:
    /// call it once logging is set up.
    pub fn log_setup(&self) {
        if let Some(e) = &self.setup_error {
            log::warn!("{e}");
        }
        if self.enabled() {
            match self.watchdog {
                Some(w) => log::info!(
                    "notifying the service manager on {}; watchdog every {} ms",
                    self.target,
                    w.as_millis() / 2
                ),
                None => log::info!("notifying the service manager on {}", self.target),
            }
        }
    }

    /// Sends `msg` (newline-separated `KEY=value` lines). A failure is
    /// logged once and never stops the daemon.
    pub fn send(&self, msg: &str) {
        let Some(s) = &self.sock else { return };
        if let Err(e) = s.send(msg.as_bytes()) {
            if !self.send_failed.swap(true, Ordering::Relaxed) {
                log::warn!(
                    "cannot notify the service manager on {} ({e}); further failures are not logged",
                    self.target
                );
            }
        }
    }

    /// Start-up is complete. A daemon that detached (without -f) is not
    /// the process the manager started: it says its pid (MAINPID), which
    /// the manager accepts only from a unit with `NotifyAccess=all`.
    pub fn ready(&self) {
        let pid = std::process::id();
        if self.started_pid != 0 && pid != self.started_pid {
            self.send(&format!("READY=1\nMAINPID={pid}"));
        } else {
            self.send("READY=1");
        }
    }

    /// Says in the log that a daemon about to detach speaks for a process
    /// the manager did not start.
    pub fn warn_detaching(&self) {
        if self.enabled() {
            log::warn!(
                "NOTIFY_SOCKET is set but we detach (no -f): the service manager accepts our messages only with NotifyAccess=all; run with -f under systemd"
            );
        }
    }

    /// A reload starts (SIGHUP); [`Notifier::ready`] says it ended.
    pub fn reloading(&self) {
        if !self.enabled() {
            return;
        }
        let mut t = nix::libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: clock_gettime writes the timespec it is given.
        let now = match unsafe { nix::libc::clock_gettime(nix::libc::CLOCK_MONOTONIC, &mut t) } {
            0 => t.tv_sec as u64 * 1_000_000 + t.tv_nsec as u64 / 1000,
            _ => 0,
        };
        self.send(&format!("RELOADING=1\nMONOTONIC_USEC={now}"));
    }

    /// The daemon is stopping.
    pub fn stopping(&self) {
        self.send("STOPPING=1");
    }

    /// A one-line status for `systemctl status`.
    pub fn status(&self, text: &str) {
        if !self.enabled() {
            return;
        }
        let one_line: String = text
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        self.send(&format!("STATUS={one_line}"));
    }
}

/// A thread's sign of life: bumped at each turn of its loop, marked
/// waiting while it blocks for input (a thread with nothing to do is
/// alive), and gone when the thread ends.
#[derive(Debug, Default)]
pub struct Heartbeat {
    beats: AtomicU64,
    waiting: AtomicBool,
    gone: AtomicBool,
}

/// What the watchdog saw of a heartbeat.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Seen {
    pub beats: u64,
    pub waiting: bool,
    pub gone: bool,
}

impl Heartbeat {
    /// A turn of the loop (the thread has work, or just came back from a
    /// wait).
    pub fn beat(&self) {
        self.beats.fetch_add(1, Ordering::Relaxed);
        self.waiting.store(false, Ordering::Relaxed);
    }

    /// The thread is about to block waiting for input (a read, a poll);
    /// [`Heartbeat::beat`] when it comes back.
    pub fn wait(&self) {
        self.beats.fetch_add(1, Ordering::Relaxed);
        self.waiting.store(true, Ordering::Relaxed);
    }

    /// The thread ended.
    pub fn gone(&self) {
        self.gone.store(true, Ordering::Relaxed);
    }

    pub fn seen(&self) -> Seen {
        Seen {
            beats: self.beats.load(Ordering::Relaxed),
            waiting: self.waiting.load(Ordering::Relaxed),
            gone: self.gone.load(Ordering::Relaxed),
        }
    }
}

/// Marks a heartbeat gone when dropped: hold one in a thread for its
/// whole life, so that a return or a panic both count.
pub struct Alive(pub Arc<Heartbeat>);

impl Drop for Alive {
    fn drop(&mut self) {
        self.0.gone();
    }
}

/// The first thread (by index) that is not alive and moving: ended, or
/// neither beaten since `before` nor blocked waiting for input now. A
/// thread that was waiting at both looks and never beat in between waited
/// the whole time: idle, not stuck.
pub fn stuck(before: &[Seen], now: &[Seen]) -> Option<usize> {
    now.iter().zip(before).position(|(n, b)| {
        if n.gone {
            return true;
        }
        n.beats == b.beats && !n.waiting
    })
}

/// Starts the thread that pets the service manager's watchdog every half
/// `period` while every one of `hearts` (named for the log) is alive and
/// moving. Once one is not, it logs which and stops petting for good: the
/// manager restarts the daemon when the period runs out.
pub fn spawn_watchdog(
    notifier: Arc<Notifier>,
    period: Duration,
    hearts: Vec<(String, Arc<Heartbeat>)>,
) -> io::Result<()> {
    let every = (period / 2).max(Duration::from_millis(10));
    std::thread::Builder::new()
        .name("watchdog".into())
        .spawn(move || {
            let look = || hearts.iter().map(|(_, h)| h.seen()).collect::<Vec<_>>();
            let mut before = look();
            notifier.send("WATCHDOG=1");
            loop {
                std::thread::sleep(every);
                let now = look();
                if let Some(i) = stuck(&before, &now) {
                    let (name, _) = &hearts[i];
                    let what = if now[i].gone {
                        "ended"
                    } else {
                        "made no progress"
                    };
                    log::error!(
                        "watchdog: the {name} thread {what} in the last {} ms: no longer telling the service manager we are alive (it restarts us when WatchdogSec runs out)",
                        every.as_millis()
                    );
                    return;
                }
                notifier.send("WATCHDOG=1");
                before = now;
            }
        })
        .map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(beats: u64, waiting: bool) -> Seen {
        Seen {
            beats,
            waiting,
            gone: false,
        }
    }

    #[test]
    fn moving_threads_are_alive() {
        assert_eq!(stuck(&[seen(1, false)], &[seen(5, false)]), None);
        // Came back from a wait and is working again.
        assert_eq!(stuck(&[seen(1, true)], &[seen(2, false)]), None);
    }

    #[test]
    fn an_idle_thread_is_alive() {
        // Blocked in a read the whole time (no traffic).
        assert_eq!(stuck(&[seen(4, true)], &[seen(4, true)]), None);
        // Got to its read since the last look.
        assert_eq!(stuck(&[seen(4, false)], &[seen(5, true)]), None);
    }

    #[test]
    fn a_busy_thread_that_does_not_move_is_stuck() {
        // Between two reads the whole time: a deadlock or a loop.
        assert_eq!(
            stuck(
                &[seen(1, false), seen(7, false)],
                &[seen(9, true), seen(7, false)]
            ),
            Some(1)
        );
    }

    #[test]
    fn an_ended_thread_is_stuck() {
        let gone = Seen {
            beats: 3,
            waiting: false,
            gone: true,
        };
        assert_eq!(stuck(&[seen(1, false)], &[gone]), Some(0));
    }

    #[test]
    fn heartbeats_as_a_loop_uses_them() {
        let h = Arc::new(Heartbeat::default());
        let a = h.seen();
        h.wait();
        let b = h.seen();
        assert!(b.waiting && b.beats > a.beats);
        assert_eq!(stuck(&[a], &[b]), None);
        h.beat();
        let c = h.seen();
        assert!(!c.waiting);
        // Working since, and never back to a wait: stuck at the next look.
        assert_eq!(stuck(&[c], &[h.seen()]), Some(0));
        drop(Alive(Arc::clone(&h)));
        assert!(h.seen().gone);
    }

    #[test]
    fn watchdog_variables() {
        let ok = |u, p| watchdog_period(u, p, 10).ok();
        assert_eq!(ok(None, None), Some(None));
        assert_eq!(
            ok(Some("2000000"), None),
            Some(Some(Duration::from_secs(2)))
        );
        assert_eq!(
            ok(Some("2000000"), Some("10")),
            Some(Some(Duration::from_secs(2)))
        );
        // Meant for another process (one we were forked from).
        assert_eq!(ok(Some("2000000"), Some("11")), Some(None));
        assert_eq!(ok(Some("0"), None), Some(None));
        assert!(watchdog_period(Some("soon"), None, 10).is_err());
        assert!(watchdog_period(Some("1"), Some("me"), 10).is_err());
    }

    #[test]
    fn messages_reach_a_socket() {
        let dir = std::env::temp_dir().join(format!("notify-test-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let path = dir.join("notify");
        let _ = std::fs::remove_file(&path);
        let server = UnixDatagram::bind(&path).unwrap();
        let n = Notifier {
            sock: Some(connect(path.to_str().unwrap()).unwrap()),
            target: path.display().to_string(),
            ..Notifier::default()
        };
        n.ready();
        n.status("qualified\nnot a second line");
        n.reloading();
        let mut buf = [0u8; 256];
        let mut got = Vec::new();
        for _ in 0..3 {
            let k = server.recv(&mut buf).unwrap();
            got.push(String::from_utf8_lossy(&buf[..k]).into_owned());
        }
        assert_eq!(got[0], "READY=1");
        assert_eq!(got[1], "STATUS=qualified not a second line");
        assert!(
            got[2].starts_with("RELOADING=1\nMONOTONIC_USEC="),
            "{}",
            got[2]
        );
        // Abstract names work too.
        let name = format!("notify-test-{}", std::process::id());
        use std::os::linux::net::SocketAddrExt;
        let a = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let abs = UnixDatagram::bind_addr(&a).unwrap();
        connect(&format!("@{name}")).unwrap().send(b"X=1").unwrap();
        let k = abs.recv(&mut buf).unwrap();
        assert_eq!(&buf[..k], b"X=1");
        assert!(connect("relative").is_err());
        let _ = std::fs::remove_dir_all(&dir);
        // Disabled: nothing, no error.
        Notifier::disabled().ready();
    }
}
