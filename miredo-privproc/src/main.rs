//! miredo-privproc: the only long-lived privileged process of the miredo
//! client. It serves one Teredo interface, named on its command line, and
//! reads requests from fd 0, the socketpair end miredo gave it.
//!
//! Every request is checked with `libteredo::privsep::Policy::check`, the
//! same rules miredo applies before asking. A request that breaks a rule,
//! or bytes that are not a well-formed frame, are logged and end the
//! connection: privproc exits without touching the interface. When miredo
//! closes its end (clean exit, crash or kill), privproc takes the interface
//! down and exits.
//!
//! Privileges: uid 0 with CAP_NET_ADMIN only, in every set, bounding set
//! included, and no_new_privs; a client hook inherits exactly that.

mod hook;
mod privs;

use std::io::Write;
use std::os::fd::{AsFd, FromRawFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use libteredo::privsep::{
    self, link_local, FrameError, Policy, Refusal, Reply, Request, TeredoPrefix,
};
use libteredo::sys::netlink;

use hook::{Hook, Settings, State};

/// The hook the C miredo runs, used when present and executable.
const DEFAULT_HOOK: &str = "/etc/miredo/client-hook";

#[derive(Parser, Debug)]
#[command(
    version,
    about = "Applies the Teredo interface settings that miredo asks for, after checking them",
    long_about = "Applies the Teredo interface settings that miredo asks for, after checking them.\n\
        Reads length-prefixed requests on fd 0 (a socketpair from miredo) and answers on it.\n\
        Keeps CAP_NET_ADMIN only. Not meant to be started by hand."
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
                log(&format!("{}: {e}", self.ifname));
                Reply::Failed(truncate(e, privsep::MAX_FRAME - 8))
            }
        }
    }

    /// miredo is gone: no address, no route, link down; the hook sees
    /// `down` then `destroy`, as with the C tool.
    fn shutdown(&mut self) {
        for next in [Settings::down(), Settings::destroy()] {
            if let Err(e) = self.apply(next) {
                log(&format!("{}: {e}", self.ifname));
            }
        }
    }
}

fn log(msg: &str) {
    // stderr is connected to syslog by miredo.
    let _ = writeln!(std::io::stderr(), "miredo-privproc: {msg}");
}

fn truncate(mut s: String, max: usize) -> String {
    while s.len() > max {
        s.pop();
    }
    s
}

/// Picks the backend: an explicit --hook must be usable, the default one is
/// used only if present and executable.
fn choose_hook(args: &Args) -> Result<Option<PathBuf>, String> {
    if args.no_hook {
        return Ok(None);
    }
    match &args.hook {
        Some(path) => hook::check_file(path).map(|()| Some(path.clone())),
        None => {
            // Like the C tool: a missing or non-executable default hook
            // means "no hook".
            let path = PathBuf::from(DEFAULT_HOOK);
            match std::fs::metadata(&path) {
                Ok(m) if m.permissions().mode() & 0o111 != 0 => {
                    hook::check_file(&path).map(|()| Some(path))
                }
                _ => Ok(None),
            }
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

    let ifindex = nix::net::if_::if_nametoindex(args.interface.as_str())
        .map_err(|e| format!("interface {}: {e}", args.interface))?;
    let policy = Policy {
        ifindex,
        prefix: args.prefix,
    };
    let backend = match choose_hook(&args)? {
        Some(path) => Backend::Hook(Hook::new(path, args.interface.clone(), ifindex)),
        None => {
            Backend::Netlink(netlink::Netlink::open().map_err(|e| format!("netlink socket: {e}"))?)
        }
    };
    privs::keep_net_admin_only()?;

    let mut pp = Privproc {
        ifname: args.interface,
        ifindex,
        backend,
        current: Settings::down(),
    };
    loop {
        let refusal = match privsep::read_frame::<_, Request>(&mut sock) {
            Ok(request) => match policy.check(&request) {
                Ok(()) => {
                    let reply = pp.handle(request);
                    if let Err(e) = privsep::write_frame(&mut sock, &reply) {
                        // miredo is gone; the next read sees the end.
                        log(&format!("reply: {e}"));
                    }
                    continue;
                }
                Err(refusal) => {
                    log(&format!("refused {request:?}: {refusal}"));
                    refusal
                }
            },
            Err(FrameError::Closed) => {
                pp.shutdown();
                return Ok(ExitCode::SUCCESS);
            }
            Err(e) => {
                log(&format!("refused: {e}"));
                Refusal::Malformed
            }
        };
        // A broken rule ends the connection; the interface keeps its state.
        let _ = privsep::write_frame(&mut sock, &Reply::Refused(refusal));
        return Ok(ExitCode::from(1));
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(args) {
        Ok(code) => code,
        Err(e) => {
            log(&e);
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
    }
}
