//! Logging through the `log` facade to syslog (with the configured
//! facility) and, in the foreground, to standard error as well.

use log::{Level, LevelFilter, Log, Metadata, Record};
use std::io::Write;
use std::sync::Mutex;

type Syslog = syslog::Logger<syslog::LoggerBackend, syslog::Formatter3164>;

static FACILITY: Mutex<Option<syslog::Facility>> = Mutex::new(None);

/// Changes the syslog facility of the installed logger (SIGHUP).
pub fn set_facility(facility: &str) {
    if let (Ok(f), Ok(mut g)) = (facility.parse::<syslog::Facility>(), FACILITY.lock()) {
        *g = Some(f);
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

/// Installs the logger. `facility` is a syslog facility name (`daemon`,
/// `local0`, ...); an unknown name falls back to `daemon`. Without a
/// reachable syslog daemon, only standard error (if asked) is used.
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
