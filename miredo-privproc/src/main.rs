//! miredo-privproc: the only long-lived privileged process of the miredo
//! client. It serves one Teredo interface, named on its command line, and
//! reads requests from fd 0, the socketpair end miredo gave it.
//!
//! Its first frame is a [`Hello`]: miredo stops a helper that does not
//! say it. Every request is then checked with
//! `libteredo::privsep::Policy::check`, the same rules miredo applies
//! before asking. When miredo closes its end (clean exit, crash or kill),
//! and when a request breaks a rule or bytes are not a well-formed frame
//! (logged, then the connection ends), privproc takes the interface down
//! (a hook sees `down` then `destroy`), deletes it (`RTM_DELLINK`: gone
//! even if someone holding miredo's TUN descriptor made it persistent),
//! and exits. With `--relay` it serves a relay: every request is refused,
//! and its job is that deletion when miredo ends.
//!
//! # Privileges
//!
//! miredo starts it as root. The first thing it does is close every
//! descriptor above 2 it may have inherited. As root it then opens what it
//! needs (the netlink socket, the syslog socket), reads the interface's
//! index and checks the hook (see [`hook::check`]); then it becomes
//! `--user` (default `miredo-privproc`; never uid or gid 0) with its
//! primary group alone, keeping CAP_NET_ADMIN, and only it, in its
//! effective, permitted and bounding sets, with no_new_privs set and not
//! dumpable. It reads all of that back from /proc/self/status and refuses
//! to go on otherwise. It owns no file of the system: what it can do is
//! network administration, of the network namespace it was started in.
//!
//! With a hook, CAP_NET_ADMIN is also in the inheritable and ambient sets,
//! so that the hook (a plain program or script: no set-user-ID bit, no file
//! capabilities, which no_new_privs would ignore anyway) runs as the same
//! user with CAP_NET_ADMIN in its effective set, and nothing else: that is
//! what a hook running `ip` needs, and all it gets. A hook that needs more,
//! such as writing files owned by root, cannot: that is the bound. Without
//! a hook, the inheritable and ambient sets stay empty. The hook's
//! environment, descriptors, signals, time limit and descendants: see
//! [`hook`] and [`reap`].
//!
//! # Signals and logging
//!
//! SIGTERM, SIGINT and SIGHUP are ignored: a service stop signals every
//! process of the service, and privproc must outlive miredo long enough to
//! run the hook's `down` and `destroy` and remove the address. It leaves
//! when its input ends, which happens when miredo exits or dies. Messages,
//! and every line a hook writes, go to syslog (`--syslog-facility`) and,
//! with `--foreground`, to standard error too.

mod hook;
mod privs;
mod reap;

use std::os::fd::{AsFd, FromRawFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use libteredo::privsep::{
    self, link_local, FrameError, Hello, Policy, Refusal, Reply, Request, TeredoPrefix,
};
use libteredo::sys::seccomp::{Role, Sandbox};
use libteredo::sys::{logging, netlink, privileges};

use hook::{Hook, Settings, State};

/// The hook the C miredo runs, used when present and executable.
const DEFAULT_HOOK: &str = "/etc/miredo/client-hook";

#[derive(Parser, Debug)]
#[command(
    version,
    about = "Applies the Teredo interface settings that miredo asks for, after checking them",
    long_about = "Applies the Teredo interface settings that miredo asks for, after checking them.\n\
        Reads length-prefixed requests on fd 0 (a socketpair from miredo) and answers on it.\n\
        Starts as root, then runs as --user with CAP_NET_ADMIN only. Not meant to be started by hand."
)]
struct Args {
    /// The Teredo interface served; requests for any other are refused.
    #[arg(short, long, value_name = "NAME")]
    interface: String,

    /// The Teredo prefix addresses must lie in (a /32).
    #[arg(long, value_name = "PREFIX/32", default_value = "2001::/32")]
    prefix: TeredoPrefix,

    /// The client hook to run instead of configuring the interface itself.
    /// Default: /etc/miredo/client-hook if it exists and is executable.
    #[arg(long, value_name = "PATH", conflicts_with = "no_hook")]
    hook: Option<PathBuf>,

    /// Never run a hook, even if /etc/miredo/client-hook exists.
    #[arg(long)]
    no_hook: bool,

    /// Serve a relay's interface: refuse every request (a relay's
    /// interface is configured as root at start) and only take the
    /// interface down when miredo ends. Implies --no-hook.
    #[arg(long, conflicts_with = "hook")]
    relay: bool,

    /// The user to run as once set up (name or numeric uid; not root),
    /// with CAP_NET_ADMIN only; the hook runs as this user too.
    #[arg(short, long, value_name = "USER", default_value = privileges::PRIVPROC_USER)]
    user: String,

    /// The syslog facility of its messages and of the hook's output.
    #[arg(long, value_name = "NAME", default_value = "daemon")]
    syslog_facility: String,

    /// Log to standard error as well as to syslog.
    #[arg(short, long)]
    foreground: bool,

    /// For tests only: kill the hook after this many milliseconds instead
    /// of 8 seconds (at most 8000).
    #[arg(long, value_name = "MS", value_parser = clap::value_parser!(u64).range(1..=8000))]
    hook_timeout_ms: Option<u64>,
}

/// How settings reach the kernel: netlink, or the administrator's hook.
enum Backend {
    Netlink(netlink::Netlink),
    Hook(Hook),
}

/// The served interface and what it currently carries.
struct Privproc {
    ifname: String,
    ifindex: u32,
    backend: Backend,
    current: Settings,
    /// Removes the interface at the end, whatever the backend.
    teardown: netlink::Netlink,
}

impl Privproc {
    fn apply(&mut self, next: Settings) -> Result<(), String> {
        let result = match &mut self.backend {
            Backend::Hook(hook) => hook.run(&next, &self.current),
            Backend::Netlink(nl) => match (next.state, next.address) {
                (State::Up, Some(address)) => nl
                    .up(
                        self.ifindex,
                        address,
                        link_local(&address),
                        next.mtu.unwrap_or(privsep::MIN_MTU),
                    )
                    .map_err(|e| format!("netlink: {e}")),
                (State::Destroy, _) => Ok(()),
                _ => nl.down(self.ifindex).map_err(|e| format!("netlink: {e}")),
            },
        };
        // Whatever happened, OLD_* describes what we last asked for.
        self.current = next;
        result
    }

    fn handle(&mut self, request: Request) -> Reply {
        let next = match request {
            Request::Up { address, mtu, .. } => Settings::up(address, mtu),
            Request::Down { .. } => Settings::down(),
        };
        match self.apply(next) {
            Ok(()) => Reply::Ok,
            Err(e) => {
                log::error!("{}: {e}", self.ifname);
                Reply::Failed(truncate(e, privsep::MAX_FRAME - 8))
            }
        }
    }

    /// miredo is gone, or broke a rule: no address, no route, link down
    /// (the hook sees `down` then `destroy`, as with the C tool), then the
    /// interface itself is deleted. miredo's TUN descriptor normally takes
    /// it away when miredo ends; but whoever held that descriptor could
    /// have made the device persistent and given it to another user, and
    /// only a deletion by index removes it then.
    fn shutdown(&mut self, relay: bool) {
        if !relay {
            // `down` once: not again when miredo already asked for it.
            let down = (self.current.state != State::Down).then(Settings::down);
            for next in down.into_iter().chain([Settings::destroy()]) {
                if let Err(e) = self.apply(next) {
                    log::error!("{}: {e}", self.ifname);
                }
            }
        }
        match self.teardown.delete_link(self.ifindex, &self.ifname) {
            Ok(true) => log::info!("{}: interface removed", self.ifname),
            Ok(false) => {}
            Err(e) => log::error!("{}: cannot remove the interface: {e}", self.ifname),
        }
    }
}

fn truncate(mut s: String, max: usize) -> String {
    while s.len() > max {
        s.pop();
    }
    s
}

/// Picks the backend: an explicit --hook must be usable, the default one is
/// used only if present and executable (then it must be safe as well).
/// Returns the hook's absolute path.
fn choose_hook(args: &Args, user: &privs::User) -> Result<Option<PathBuf>, String> {
    if args.no_hook || args.relay {
        return Ok(None);
    }
    match &args.hook {
        Some(path) => hook::check(path, user).map(Some),
        None => {
            // Like the C tool: a missing or non-executable default hook
            // means "no hook".
            let path = PathBuf::from(DEFAULT_HOOK);
            match std::fs::metadata(&path) {
                Ok(m) if m.permissions().mode() & 0o111 != 0 => hook::check(&path, user).map(Some),
                _ => Ok(None),
            }
        }
    }
}

/// Sets the signals up: whatever the parent ignored or blocked goes back
/// to default (an ignored SIGCHLD, for one, would reap hooks behind our
/// back), SIGPIPE stays ignored (the standard library's choice: a write to
/// a closed socket is an error, not a death), and the signals a service
/// stop or a terminal sends are ignored: privproc leaves when its input
/// ends, after taking the interface down.
fn set_up_signals() {
    use nix::libc;
    // SAFETY: sigprocmask and signal with constant arguments, before any
    // thread exists.
    unsafe {
        let mut empty: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut empty);
        libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
        let realtime = libc::SIGRTMIN()..=libc::SIGRTMAX();
        for sig in (1..32).chain(realtime) {
            if ![libc::SIGKILL, libc::SIGSTOP, libc::SIGPIPE].contains(&sig) {
                libc::signal(sig, libc::SIG_DFL);
            }
        }
        for sig in hook::IGNORED_SIGNALS {
            libc::signal(sig, libc::SIG_IGN);
        }
    }
}

fn run(args: Args) -> Result<ExitCode, String> {
    // fd 0 must be the socketpair end from miredo: read and write on it.
    let fd0 = std::io::stdin().as_fd().try_clone_to_owned();
    let fd0 = fd0.map_err(|e| format!("fd 0: {e}"))?;
    if !privs::is_unix_stream(&fd0) {
        return Err("fd 0 is not a Unix stream socket (the socketpair from miredo)".into());
    }
    drop(fd0);
    // SAFETY: fd 0 is open (checked above), a Unix stream socket, and
    // nothing else in this process uses it: stdin is never read.
    let mut sock = unsafe { UnixStream::from_raw_fd(0) };

    let user = privs::lookup(&args.user)?;
    let ifindex = nix::net::if_::if_nametoindex(args.interface.as_str())
        .map_err(|e| format!("interface {}: {e}", args.interface))?;
    let policy = Policy {
        ifindex,
        prefix: args.prefix,
    };
    let hook_path = choose_hook(&args, &user)?;
    std::env::set_current_dir("/").map_err(|e| format!("cannot enter /: {e}"))?;
    let timeout = args
        .hook_timeout_ms
        .map_or(hook::HOOK_TIMEOUT, Duration::from_millis);
    let backend = match &hook_path {
        Some(path) => {
            // A hook's descendants that leave it come back to us.
            reap::become_subreaper()?;
            Backend::Hook(Hook::new(
                path.clone(),
                args.interface.clone(),
                ifindex,
                user.clone(),
                timeout,
            ))
        }
        None => {
            Backend::Netlink(netlink::Netlink::open().map_err(|e| format!("netlink socket: {e}"))?)
        }
    };
    let teardown = netlink::Netlink::open().map_err(|e| format!("netlink socket: {e}"))?;
    let sandbox = Sandbox::new(Role::Privproc {
        hook: hook_path.is_some(),
    })
    .map_err(|e| format!("cannot build the system call filter: {e}"))?;
    privs::become_user(&user, hook_path.is_some())?;
    sandbox
        .enter()
        .map_err(|e| format!("cannot enter the system call filter: {e}"))?;
    let how = match &hook_path {
        _ if args.relay => "nothing (a relay's interface: removed when miredo ends)".into(),
        Some(p) => format!("hook {}", p.display()),
        None => "netlink".into(),
    };
    log::info!(
        "serving {} (index {ifindex}) through {how}, as {} (uid {}, gid {}) with CAP_NET_ADMIN only",
        args.interface,
        user.name,
        user.uid,
        user.gid
    );

    let relay = args.relay;
    let mut pp = Privproc {
        ifname: args.interface,
        ifindex,
        backend,
        current: Settings::down(),
        teardown,
    };
    // Who we are, before anything else: miredo stops a helper that does
    // not say it (one that is not ours). If miredo is gone already, so is
    // the interface.
    if let Err(e) = privsep::write_frame(&mut sock, &Hello::ours()) {
        pp.shutdown(relay);
        return Err(format!("hello: {e}"));
    }
    loop {
        let refusal = match privsep::read_frame::<_, Request>(&mut sock) {
            Ok(request) if relay => {
                log::error!("refused {request:?}: {}", Refusal::Relay);
                Refusal::Relay
            }
            Ok(request) => match policy.check(&request) {
                Ok(()) => {
                    let reply = pp.handle(request);
                    if let Err(e) = privsep::write_frame(&mut sock, &reply) {
                        // miredo is gone; the next read sees the end.
                        log::warn!("reply: {e}");
                    }
                    continue;
                }
                Err(refusal) => {
                    log::error!("refused {request:?}: {refusal}");
                    refusal
                }
            },
            Err(FrameError::Closed) => {
                pp.shutdown(relay);
                return Ok(ExitCode::SUCCESS);
            }
            Err(e) => {
                log::error!("refused: {e}");
                Refusal::Malformed
            }
        };
        // A broken rule ends the connection, and the interface with it: a
        // daemon that sends what no miredo of ours sends is not to be
        // trusted with it any more (miredo stops when we leave).
        let _ = privsep::write_frame(&mut sock, &Reply::Refused(refusal));
        pp.shutdown(relay);
        return Ok(ExitCode::from(1));
    }
}

fn main() -> ExitCode {
    // Nothing inherited beyond the socketpair and the standard streams
    // reaches our privileged steps or a hook.
    let _ = libteredo::sys::fds::close_from(3);
    set_up_signals();
    let args = Args::parse();
    logging::init(
        "miredo-privproc",
        &args.syslog_facility,
        args.foreground,
        false,
    );
    let foreground = args.foreground;
    match run(args) {
        Ok(code) => code,
        Err(e) => {
            log::error!("{e}");
            // Whoever started it by hand sees why, syslog or not.
            if !foreground {
                eprintln!("miredo-privproc: {e}");
            }
            ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncates_on_char_boundaries() {
        assert_eq!(truncate("héllo".into(), 2), "h");
        assert_eq!(truncate("abc".into(), 10), "abc");
    }

    #[test]
    fn parses_the_command_line() {
        let a = Args::try_parse_from(["p", "--interface", "teredo"]).unwrap();
        assert_eq!(a.prefix, TeredoPrefix::default());
        assert!(a.hook.is_none() && !a.no_hook);
        let a = Args::try_parse_from(["p", "-i", "t", "--prefix", "3ffe:831f::/32"]).unwrap();
        assert_eq!(a.prefix, TeredoPrefix(0x3ffe_831f));
        assert!(Args::try_parse_from(["p", "-i", "t", "--prefix", "2001::/48"]).is_err());
        assert!(Args::try_parse_from(["p", "--prefix", "2001::/32"]).is_err());
        assert!(Args::try_parse_from(["p", "-i", "t", "--hook", "/x", "--no-hook"]).is_err());
        assert_eq!(a.user, "miredo-privproc");
        assert_eq!(a.syslog_facility, "daemon");
        assert!(!a.foreground && a.hook_timeout_ms.is_none());
        let a = Args::try_parse_from([
            "p",
            "-i",
            "t",
            "--user",
            "nobody",
            "--syslog-facility",
            "local3",
            "--foreground",
            "--hook-timeout-ms",
            "500",
        ])
        .unwrap();
        assert_eq!(a.user, "nobody");
        assert_eq!(a.syslog_facility, "local3");
        assert!(a.foreground);
        assert_eq!(a.hook_timeout_ms, Some(500));
        // The limit can only be shortened.
        assert!(Args::try_parse_from(["p", "-i", "t", "--hook-timeout-ms", "8001"]).is_err());
        assert!(Args::try_parse_from(["p", "-i", "t", "--hook-timeout-ms", "0"]).is_err());
    }
}
