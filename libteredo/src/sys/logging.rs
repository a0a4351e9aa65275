//! Logging through the `log` facade to syslog (with the configured
//! facility) and, in the foreground, to standard error as well.

use log::{Level, LevelFilter, Log, Metadata, Record};
use std::io::Write;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Mutex;

type Syslog = syslog::Logger<syslog::LoggerBackend, syslog::Formatter3164>;

static FACILITY: Mutex<Option<syslog::Facility>> = Mutex::new(None);

/// The syslog socket's descriptor (-1: none) and the facility's number,
/// for [`emergency`], which cannot take a lock.
static SYSLOG_FD: AtomicI32 = AtomicI32::new(-1);
/// Whether the logger writes to standard error (see [`to_stderr`]).
static STDERR: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
static FACILITY_NUMBER: AtomicI32 = AtomicI32::new(syslog::Facility::LOG_DAEMON as i32);

/// Changes the syslog facility of the installed logger (SIGHUP).
pub fn set_facility(facility: &str) {
    if let (Ok(f), Ok(mut g)) = (facility.parse::<syslog::Facility>(), FACILITY.lock()) {
        *g = Some(f);
        FACILITY_NUMBER.store(f as i32, Ordering::Relaxed);
    }
}

/// Forgets the syslog socket's descriptor for [`emergency`]: a forked
/// child that closed it (the configuration reader, the pid file's
/// keeper) must not have that number, reused for another descriptor,
/// written to.
pub fn forget_syslog() {
    SYSLOG_FD.store(-1, Ordering::Relaxed);
}

/// Sends `line` (one line, ending with a newline or not) to syslog as an
/// error, from a signal handler: no lock, no allocation, only `sendto`
/// on the socket the logger connected at start (the seccomp SIGSYS
/// handler's way to say why the process ends).
pub fn emergency(line: &[u8]) {
    let fd = SYSLOG_FD.load(Ordering::Relaxed);
    if fd < 0 {
        return;
    }
    let mut buf = [0u8; 400];
    let pri = FACILITY_NUMBER.load(Ordering::Relaxed) | 3; // LOG_ERR
                                                           // "<PRI>" then the line, which starts with "ident[pid]: ".
    let mut n = 0;
    let mut put = |b: u8| {
        if n < buf.len() {
            buf[n] = b;
            n += 1;
        }
    };
    put(b'<');
    let digits = [pri / 100, (pri / 10) % 10, pri % 10];
    let first = digits.iter().position(|&d| d != 0).unwrap_or(2);
    for d in &digits[first..] {
        put(b'0' + *d as u8);
    }
    put(b'>');
    for &b in line.iter().filter(|&&b| b != b'\n') {
        put(b);
    }
    // SAFETY: sendto on a descriptor number with a buffer of ours.
    unsafe {
        nix::libc::send(
            fd,
            buf.as_ptr().cast(),
            n,
            nix::libc::MSG_DONTWAIT | nix::libc::MSG_NOSIGNAL,
        );
    }
}

struct Logger {
    syslog: Mutex<Option<Syslog>>,
    stderr: bool,
    ident: &'static str,
}

impl Log for Logger {
    fn enabled(&self, m: &Metadata) -> bool {
        m.level() <= log::max_level()
    }

    fn log(&self, r: &Record) {
        if !self.enabled(r.metadata()) {
            return;
        }
        let msg = r.args().to_string();
        if let Ok(mut guard) = self.syslog.lock() {
            if let Some(s) = guard.as_mut() {
                if let Ok(Some(f)) = FACILITY.lock().map(|g| *g) {
                    s.formatter.facility = f;
                }
                // The pid of the process that logs (the daemon after it
                // detached, not the one that started it).
                s.formatter.pid = std::process::id();
                let _ = match r.level() {
                    Level::Error => s.err(&msg),
                    Level::Warn => s.warning(&msg),
                    Level::Info => s.info(&msg),
                    Level::Debug | Level::Trace => s.debug(&msg),
                };
            }
        }
        if self.stderr {
            let _ = writeln!(
                std::io::stderr(),
                "{}[{}]: {}",
                self.ident,
                std::process::id(),
                msg
            );
        }
    }

    fn flush(&self) {}
}

/// Whether standard error is the journal's stream (systemd sets
/// `JOURNAL_STREAM` to its device and inode for the services it starts):
/// the journal then reads syslog too, and a line written to both would be
/// there twice.
fn stderr_is_journal() -> bool {
    let Some(v) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let Some((dev, ino)) = v.to_str().and_then(|v| v.split_once(':')) else {
        return false;
    };
    let (Ok(dev), Ok(ino)) = (
        dev.parse::<nix::libc::dev_t>(),
        ino.parse::<nix::libc::ino_t>(),
    ) else {
        return false;
    };
    nix::sys::stat::fstat(std::io::stderr()).is_ok_and(|st| st.st_dev == dev && st.st_ino == ino)
}

/// Whether the logger installed by [`init`] writes its lines to standard
/// error: a program that prints a fatal error there itself would print it
/// twice.
pub fn to_stderr() -> bool {
    STDERR.load(Ordering::Relaxed)
}

/// Installs the logger. `facility` is a syslog facility name (`daemon`,
/// `local0`, ...); an unknown name falls back to `daemon`. Without a
/// reachable syslog daemon, only standard error (if asked) is used; when
/// standard error is the journal and syslog is reachable, only syslog.
pub fn init(ident: &'static str, facility: &str, stderr: bool, verbose: bool) {
    let facility = facility
        .parse::<syslog::Facility>()
        .unwrap_or(syslog::Facility::LOG_DAEMON);
    let fmt = syslog::Formatter3164 {
        facility,
        hostname: None,
        process: ident.into(),
        pid: std::process::id(),
    };
    let syslog = syslog::unix(fmt).ok();
    FACILITY_NUMBER.store(facility as i32, Ordering::Relaxed);
    if let Some(s) = &syslog {
        let fd = match &s.backend {
            syslog::LoggerBackend::Unix(d) => d.as_raw_fd(),
            syslog::LoggerBackend::UnixStream(w) => w.get_ref().as_raw_fd(),
            _ => -1,
        };
        SYSLOG_FD.store(fd, Ordering::Relaxed);
    }
    let stderr = stderr && !(syslog.is_some() && stderr_is_journal());
    STDERR.store(stderr, Ordering::Relaxed);
    let logger = Logger {
        syslog: Mutex::new(syslog),
        stderr,
        ident,
    };
    if log::set_boxed_logger(Box::new(logger)).is_ok() {
        log::set_max_level(if verbose {
            LevelFilter::Debug
        } else {
            LevelFilter::Info
        });
    }
}
