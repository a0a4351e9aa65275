//! The unprivileged half of the privilege split: miredo's client of
//! miredo-privproc (OpenSSH's `monitor_wrap.c` beside privproc's
//! `monitor.c`). Root starts the helper over a socketpair and reads its
//! hello (who it is, which protocol version) before anything else; the
//! unprivileged daemon then asks it, one `libteredo::privsep::Request` at
//! a time, to bring the interface up with the address the client
//! qualified for, or down, and reads its answer. A request is checked
//! against the same rules privproc applies (`Policy`) before it leaves.

use crate::Cli;
use libteredo::conf::miredo::MiredoConfig;
use libteredo::privsep::{self, Policy, Reply, Request, TeredoPrefix};
use libteredo::sys::privileges;
use std::io::Read;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Where miredo-privproc is installed, fixed when miredo is built
/// (`MIREDO_PRIVPROC_PATH` at build time; --privproc overrides it, for
/// tests and uninstalled builds).
pub const PRIVPROC: &str = match option_env!("MIREDO_PRIVPROC_PATH") {
    Some(p) => p,
    None => "/usr/libexec/miredo/miredo-privproc",
};

/// How long a stopping daemon waits for miredo-privproc to take the
/// interface away and end (a hook's `down` and `destroy` included: each
/// has 8 s at most, but they are quick).
const GONE: Duration = Duration::from_secs(10);

/// The daemon's end of the socketpair to miredo-privproc, and the rules
/// its requests must keep.
pub struct PrivprocClient {
    sock: UnixStream,
    policy: Policy,
}

/// Checks the helper's executable before root starts it: a regular,
/// executable file. One that someone other than root could change is used
/// (it was named by root, with --privproc) but said loudly.
fn check_privproc(path: &Path) -> Result<(), String> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).map_err(|e| {
        format!(
            "cannot start {}: {e} (install it, see the README, or name it with --privproc)",
            path.display()
        )
    })?;
    if !m.is_file() || m.mode() & 0o111 == 0 {
        return Err(format!("{}: not an executable file", path.display()));
    }
    let mut weak = Vec::new();
    let mut at = Some(path);
    while let Some(p) = at {
        if let Ok(m) = std::fs::metadata(p) {
            if m.uid() != 0 || (m.mode() & 0o022 != 0 && m.mode() & 0o1000 == 0) {
                weak.push(p.display().to_string());
            }
        }
        at = p.parent().filter(|d| !d.as_os_str().is_empty());
    }
    if !weak.is_empty() {
        log::warn!(
            "{}: root starts it, yet someone other than root can change {}",
            path.display(),
            weak.join(", ")
        );
    }
    Ok(())
}

/// Starts miredo-privproc with one end of a socketpair as its standard
/// input; returns our end. The helper gets a clean environment, no
/// descriptor but that socket and the standard streams, and its own
/// process group (a terminal's ^C must not stop it before it has taken the
/// interface down: it leaves when its input closes).
pub fn spawn(
    cli: &Cli,
    path: &Path,
    conf: &MiredoConfig,
    user: &privileges::Target,
    ifindex: u32,
) -> Result<PrivprocClient, String> {
    let (ours, theirs) = UnixStream::pair().map_err(|e| format!("socketpair: {e}"))?;
    let theirs: OwnedFd = theirs.into();
    let prefix = TeredoPrefix(conf.prefix);
    check_privproc(path)?;
    let mut cmd = Command::new(path);
    if !conf.relay_type.is_client() {
        cmd.arg("--relay");
    }
    cmd.env_clear()
        .arg("--interface")
        .arg(&conf.interface_name)
        .arg("--prefix")
        .arg(prefix.to_string())
        .arg("--user")
        .arg(&user.name)
        .arg("--syslog-facility")
        .arg(conf.syslog_facility.as_str())
        .stdin(Stdio::from(theirs))
        .stdout(Stdio::null())
        .current_dir("/");
    if cli.foreground {
        cmd.arg("--foreground");
        // Its standard error is ours: when that is the journal, it logs to
        // syslog only, as we do (libteredo::sys::logging).
        if let Some(j) = std::env::var_os("JOURNAL_STREAM") {
            cmd.env("JOURNAL_STREAM", j);
        }
    }
    cmd.process_group(0);
    // SAFETY: cloexec_from only makes system calls (async-signal-safe).
    unsafe {
        cmd.pre_exec(|| libteredo::sys::fds::cloexec_from(3));
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", path.display()))?;
    match hello(&ours) {
        Ok(()) => Ok(PrivprocClient {
            sock: ours,
            policy: Policy { ifindex, prefix },
        }),
        Err(why) => {
            // Not ours, or broken: stopped before it is asked anything.
            let _ = child.kill();
            let status = child
                .wait()
                .map_or_else(|_| String::new(), |s| format!("; {s}"));
            Err(format!(
                "{} is not the miredo-privproc of this miredo ({why}{status}): it was stopped. \
                 Install the miredo-privproc built with this miredo (see the README), or name it with --privproc PATH",
                path.display()
            ))
        }
    }
}

/// How long the helper has to say who it is: it looks up its user and
/// interface and drops its privileges first, a few milliseconds.
const HELLO_TIMEOUT: Duration = Duration::from_secs(5);

/// Reads the helper's hello (see `libteredo::privsep::Hello`).
fn hello(sock: &UnixStream) -> Result<(), String> {
    use libteredo::privsep::{read_frame, FrameError, Hello, HELLO_MAGIC, PROTOCOL_VERSION};
    sock.set_read_timeout(Some(HELLO_TIMEOUT))
        .map_err(|e| e.to_string())?;
    let got = read_frame::<_, Hello>(&mut &*sock);
    sock.set_read_timeout(None).map_err(|e| e.to_string())?;
    match got {
        Ok(h) if h.magic == HELLO_MAGIC && h.version == PROTOCOL_VERSION => Ok(()),
        Ok(h) if h.magic == HELLO_MAGIC => Err(format!(
            "it speaks version {} of the protocol, this miredo {PROTOCOL_VERSION}",
            h.version
        )),
        Ok(_) => Err("it introduced itself as something else".into()),
        Err(FrameError::Closed) => Err("it exited without introducing itself".into()),
        Err(FrameError::Io(e))
            if matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) =>
        {
            Err(format!(
                "it did not introduce itself within {} s",
                HELLO_TIMEOUT.as_secs()
            ))
        }
        Err(e) => Err(format!("what it said first is not a hello: {e}")),
    }
}

impl PrivprocClient {
    /// Sends a request to miredo-privproc and waits for its answer. The
    /// request is first checked against the same rules privproc applies:
    /// one that breaks them is not sent (the engine refuses what the
    /// network could make it ask, so only a bug gets here), and nothing the
    /// helper answers stops the daemon by itself (if privproc itself goes,
    /// the main loop sees it).
    pub fn ask(&mut self, req: Request) {
        let p = &mut self.sock;
        if let Err(why) = self.policy.check(&req) {
            log::error!("not asking miredo-privproc for {req:?}: {why}");
            return;
        }
        let _ = p.set_read_timeout(Some(Duration::from_secs(10)));
        if let Err(e) = privsep::write_frame(p, &req) {
            log::error!("miredo-privproc: {e}");
            return;
        }
        match privsep::read_frame::<_, Reply>(p) {
            Ok(Reply::Ok) => {}
            Ok(Reply::Refused(why)) => log::error!("miredo-privproc refused {req:?}: {why}"),
            Ok(Reply::Failed(why)) => {
                log::warn!("miredo-privproc could not apply {req:?}: {why}")
            }
            Err(e) => log::error!("miredo-privproc: {e}"),
        }
    }

    /// Closes our end and waits (at most [`GONE`]) for the helper to end:
    /// it takes the interface down and deletes it first. Leaving before it
    /// would let a service manager kill it half way (systemd kills what is
    /// left of a unit once its main process is gone).
    pub fn release(self) {
        let p = self.sock;
        let _ = p.shutdown(std::net::Shutdown::Write);
        let deadline = Instant::now() + GONE;
        let mut buf = [0u8; 256];
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            if p.set_read_timeout(Some(left.max(Duration::from_millis(1))))
                .is_err()
            {
                break;
            }
            match (&p).read(&mut buf) {
                // Its end closed: it has exited.
                Ok(0) => return,
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        log::warn!(
            "miredo-privproc did not end within {} s of our stop",
            GONE.as_secs()
        );
    }

    /// The socket: readable only when privproc is gone (it speaks only
    /// when asked).
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.sock.as_fd()
    }
}
