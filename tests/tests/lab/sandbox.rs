//! Security hardening of the privilege split (issue 24), against real
//! daemons and a real kernel.
//!
//! - Every long-lived process (miredo as client and as relay, miredo-server,
//!   their configuration readers, every miredo-privproc) runs under a
//!   seccomp filter once set up: `Seccomp: 2` in /proc/PID/status. Readers
//!   run as their daemon's user; miredo-privproc as another one.
//! - The attack the filter is there for: code running inside the daemon
//!   holds the TUN descriptor and could make the interface persistent
//!   (`TUNSETPERSIST`), so that it outlives the daemon and any local user
//!   could attach to it afterwards (a persistent TUN without an owner is
//!   open to everyone with /dev/net/tun). The tests do what such code could
//!   do, from outside the daemon's filter (a copy of its descriptors taken
//!   with `pidfd_getfd`, used by a process with the daemon's uid), and show
//!   that miredo-privproc deletes the interface on every exit path anyway:
//!   SIGTERM, SIGKILL, a malformed frame. Debian's C miredo, for
//!   comparison, leaves the interface behind.
//! - Under the daemon's own filter, that `ioctl` kills the process with
//!   SIGSYS.
//! - miredo refuses a helper that does not introduce itself (kills it and
//!   exits with status 1, naming it), and finds a helper named by a
//!   relative `--privproc` path, in the foreground and detached.
//!
//! The forked children of this file (the "attacker", the user nobody
//! trying a TUN, the sandboxed child) run in a multi-threaded test process:
//! between fork and `_exit` they only make system calls, on data prepared
//! before the fork.

use std::ffi::CString;
use std::fs;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{Duration, Instant};

use libteredo::sys::seccomp::{Role, Sandbox};
use nix::libc;
use teredo_lab::named::{client_conf, unique_iface, wait_addr};
use teredo_lab::procstat::{alive, children, comm, describe_tree, status_field, tree};
use teredo_lab::{report, wait_until, Daemon, Impl, NatKind, Netns, World};

/// `_IOW('T', 202, int)`: attach to (or, with CAP_NET_ADMIN, create) a TUN.
const TUNSETIFF: u64 = 0x4004_54ca;
/// `_IOW('T', 203, int)`: make the TUN outlive its descriptors (or not).
const TUNSETPERSIST: u64 = 0x4004_54cb;
const IFF_TUN: i16 = 0x0001;
const IFF_NO_PI: i16 = 0x1000;
const NOBODY: u32 = 65534;
/// How long an interface may take to go once its daemon is gone.
const TEARDOWN: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------
// Processes and descriptors, from /proc.
// ---------------------------------------------------------------------

/// The uids (real, effective, saved, file system) of `pid`.
fn uid_of(pid: u32) -> Vec<u32> {
    ids_of(pid, "Uid")
}

fn ids_of(pid: u32, key: &str) -> Vec<u32> {
    status_field(pid, key)
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|s| s.parse().ok())
        .collect()
}

/// The children of `pid` whose command name is `name`.
fn children_named(pid: u32, name: &str) -> Vec<u32> {
    children(pid)
        .into_iter()
        .filter(|&p| comm(p) == name)
        .collect()
}

/// Waits (at most 5 s) for exactly one child of `pid` named `name`.
fn one_child_named(pid: u32, name: &str) -> Option<u32> {
    let mut found = Vec::new();
    wait_until(Duration::from_secs(5), || {
        found = children_named(pid, name);
        found.len() == 1
    });
    (found.len() == 1).then(|| found[0])
}

/// The descriptor numbers of `pid`.
fn fd_numbers(pid: u32) -> Vec<RawFd> {
    let mut v: Vec<RawFd> = fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| e.file_name().to_string_lossy().parse().ok())
                .collect()
        })
        .unwrap_or_default();
    v.sort_unstable();
    v
}

/// The descriptor of `pid` attached to the TUN interface `iface`: its
/// fdinfo has a line `iff:\tIFACE`.
fn tun_fd_of(pid: u32, iface: &str) -> Option<RawFd> {
    fd_numbers(pid).into_iter().find(|fd| {
        fs::read_to_string(format!("/proc/{pid}/fdinfo/{fd}"))
            .unwrap_or_default()
            .lines()
            .any(|l| l.strip_prefix("iff:").map(str::trim) == Some(iface))
    })
}

/// The process of `root`'s tree that holds the TUN descriptor of `iface`,
/// and that descriptor's number.
fn tun_holder(root: u32, iface: &str) -> Option<(u32, RawFd)> {
    tree(root)
        .into_iter()
        .find_map(|p| tun_fd_of(p, iface).map(|fd| (p, fd)))
}

/// The inode of the socket `pid`'s descriptor `fd` leads to.
fn socket_inode(pid: u32, fd: RawFd) -> Option<u64> {
    let link = fs::read_link(format!("/proc/{pid}/fd/{fd}")).ok()?;
    let link = link.to_string_lossy().into_owned();
    link.strip_prefix("socket:[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}

/// The descriptor of `daemon` that is its end of the socketpair whose other
/// end is `privproc`'s fd 0. SO_PEERCRED cannot tell (both ends of a
/// socketpair carry the credentials of the process that made it, the
/// daemon), so the peer comes from `ss`: for an unnamed Unix socket it
/// prints `* INODE * PEER_INODE`.
fn privproc_socket_of(ns: &Netns, daemon: u32, privproc: u32) -> Result<RawFd, String> {
    let theirs = socket_inode(privproc, 0).ok_or("privproc's fd 0 is not a socket")?;
    let ss = ns.run(&["ss", "-x", "-n", "-H"])?;
    let ours = ss
        .lines()
        .find_map(|l| {
            let t: Vec<&str> = l.split_whitespace().collect();
            let n = t.len();
            (n >= 4 && t[n - 3].parse() == Ok(theirs))
                .then(|| t[n - 1].parse::<u64>().ok())
                .flatten()
        })
        .ok_or_else(|| format!("no peer of socket {theirs} in `ss -x`:\n{ss}"))?;
    fd_numbers(daemon)
        .into_iter()
        .find(|&fd| socket_inode(daemon, fd) == Some(ours))
        .ok_or_else(|| format!("the daemon has no descriptor of socket {ours}"))
}

/// Every process in network namespace `ns` (none of them is the test's,
/// except while it runs a command there).
fn procs_in(ns: &Netns) -> Vec<u32> {
    let Ok(m) = fs::metadata(format!("/run/netns/{}", ns.name())) else {
        return Vec::new();
    };
    let want = format!("net:[{}]", m.ino());
    fs::read_dir("/proc")
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| e.file_name().to_string_lossy().parse::<u32>().ok())
                .filter(|p| {
                    fs::read_link(format!("/proc/{p}/ns/net"))
                        .is_ok_and(|l| l.to_string_lossy() == want)
                })
                .filter(|&p| alive(p))
                .collect()
        })
        .unwrap_or_default()
}

fn cmdline(pid: u32) -> String {
    fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
        .unwrap_or_default()
}

/// `ip -d link show IFACE` in `ns` (whether the TUN is persistent shows as
/// `persist on`), or why not.
fn link_details(ns: &Netns, iface: &str) -> String {
    match ns.ip(&format!("-d -o link show dev {iface}")) {
        Ok(s) => s.trim().to_string(),
        Err(e) => format!("(none: {})", e.trim()),
    }
}

// ---------------------------------------------------------------------
// Raw system calls and forked children.
// ---------------------------------------------------------------------

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// `pidfd_open(pid)` then `pidfd_getfd` of each of `fds`: copies of the
/// descriptors of another process, as code running inside it would have
/// them (needs ptrace rights over it: root).
fn copy_fds(pid: u32, fds: &[RawFd]) -> Vec<OwnedFd> {
    // SAFETY: plain system calls; each descriptor returned is new and ours.
    unsafe {
        let pidfd = libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0);
        assert!(
            pidfd >= 0,
            "pidfd_open({pid}): {}",
            std::io::Error::last_os_error()
        );
        let pidfd = OwnedFd::from_raw_fd(pidfd as RawFd);
        fds.iter()
            .map(|&fd| {
                let c = libc::syscall(libc::SYS_pidfd_getfd, pidfd.as_raw_fd(), fd, 0);
                assert!(
                    c >= 0,
                    "pidfd_getfd({pid}, {fd}): {}",
                    std::io::Error::last_os_error()
                );
                OwnedFd::from_raw_fd(c as RawFd)
            })
            .collect()
    }
}

/// How a forked child ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    Exited(i32),
    Signaled(i32),
    /// Still running after the bound: killed.
    TimedOut,
}

/// Ends a forked child whose body unwound (it must never return into the
/// test's code).
struct ExitOnUnwind;

impl Drop for ExitOnUnwind {
    fn drop(&mut self) {
        // SAFETY: _exit only ends this (forked) process.
        unsafe { libc::_exit(127) }
    }
}

/// Runs `body` in a forked child, its return value the exit status, and
/// waits at most 10 s for it (then kills it). `body` must make system
/// calls only: no allocation, no lock (the test process has threads).
fn in_child(body: impl FnOnce() -> i32) -> End {
    // SAFETY: the child only runs `body` (system calls on data prepared
    // before the fork) and _exits; the parent waits for its own pid only.
    unsafe {
        let pid = libc::fork();
        assert!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
        if pid == 0 {
            let _guard = ExitOnUnwind;
            let code = body();
            libc::_exit(code);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let mut status = 0;
            let r = libc::waitpid(pid, &mut status, libc::WNOHANG);
            if r == pid {
                if libc::WIFEXITED(status) {
                    return End::Exited(libc::WEXITSTATUS(status));
                }
                if libc::WIFSIGNALED(status) {
                    return End::Signaled(libc::WTERMSIG(status));
                }
            }
            assert!(r >= 0, "waitpid: {}", std::io::Error::last_os_error());
            if Instant::now() >= deadline {
                libc::kill(pid, libc::SIGKILL);
                libc::waitpid(pid, &mut status, 0);
                return End::TimedOut;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

/// Becomes `uid`/`gid` with no supplementary group, for this thread (in a
/// forked child: the process) only: raw system calls, not glibc's
/// all-threads wrappers. 0 on success, else a code saying which step
/// failed.
///
/// # Safety
/// Only system calls.
unsafe fn become_user(uid: u32, gid: u32) -> i32 {
    if libc::syscall(libc::SYS_setgroups, 0, std::ptr::null::<libc::gid_t>()) != 0 {
        return 11;
    }
    if libc::syscall(libc::SYS_setresgid, gid, gid, gid) != 0 {
        return 12;
    }
    if libc::syscall(libc::SYS_setresuid, uid, uid, uid) != 0 {
        return 13;
    }
    if libc::geteuid() != uid {
        return 14;
    }
    0
}

/// A `struct ifreq` with a name and flags (40 bytes on Linux).
#[repr(C)]
struct IfReq {
    name: [u8; 16],
    flags: i16,
    _pad: [u8; 22],
}

impl IfReq {
    fn tun(name: &str) -> IfReq {
        assert!(name.len() < 16, "{name}: too long for an interface name");
        let mut r = IfReq {
            name: [0; 16],
            flags: IFF_TUN | IFF_NO_PI,
            _pad: [0; 22],
        };
        r.name[..name.len()].copy_from_slice(name.as_bytes());
        r
    }
}

/// The network namespace `ns`, opened for setns (closed on drop).
fn open_netns(name: &str) -> OwnedFd {
    fs::File::open(format!("/run/netns/{name}"))
        .unwrap_or_else(|e| panic!("/run/netns/{name}: {e}"))
        .into()
}

/// A process of user nobody in `ns` opens /dev/net/tun and asks for the
/// TUN `iface` (TUNSETIFF): `Ok(())` when it got it (a persistent device
/// was there for anyone to take), `Err(errno)` when refused (no device,
/// and creating one needs CAP_NET_ADMIN).
fn nobody_attaches(ns: &Netns, iface: &str) -> Result<(), String> {
    let nsfd = open_netns(ns.name());
    let dev = CString::new("/dev/net/tun").unwrap();
    let mut ifr = IfReq::tun(iface);
    let end = in_child(|| unsafe {
        if libc::setns(nsfd.as_raw_fd(), libc::CLONE_NEWNET) != 0 {
            return 20;
        }
        let step = become_user(NOBODY, NOBODY);
        if step != 0 {
            return step;
        }
        let fd = libc::open(dev.as_ptr(), libc::O_RDWR);
        if fd < 0 {
            return 30;
        }
        if libc::ioctl(fd, TUNSETIFF as _, &mut ifr as *mut IfReq) != 0 {
            return 100 + errno().min(150);
        }
        0
    });
    match end {
        End::Exited(0) => Ok(()),
        End::Exited(n) if n >= 100 => Err(format!(
            "TUNSETIFF refused: {}",
            std::io::Error::from_raw_os_error(n - 100)
        )),
        other => panic!("the nobody child failed before TUNSETIFF: {other:?}"),
    }
}

// ---------------------------------------------------------------------
// The attack.
// ---------------------------------------------------------------------

/// What the attacker does besides making the TUN persistent, and how the
/// daemon ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ending {
    /// The daemon gets SIGTERM.
    Term,
    /// The daemon gets SIGKILL.
    Kill,
    /// The attacker writes a malformed frame to miredo-privproc, which
    /// refuses it (and the daemon, its helper gone, stops by itself).
    MalformedFrame,
}

/// What [`attack`] did, for reports.
struct Attacked {
    holder: u32,
    uid: u32,
    persistent: String,
}

/// Code running inside the daemon `d` (holding `iface`'s TUN in `ns`):
/// its TUN descriptor copied with pidfd_getfd, a process with the
/// holder's uid and gid makes the interface persistent (the ioctl must
/// succeed: outside the daemon's filter nothing stops it) and, for
/// [`Ending::MalformedFrame`], writes bytes that are no frame on the
/// daemon's socket to miredo-privproc. Every copy is closed before this
/// returns: a descriptor left here would keep the TUN (or privproc's
/// input) open.
fn attack(ns: &Netns, d: &Daemon, iface: &str, ending: Ending) -> Attacked {
    let (holder, tun_fd) = tun_holder(d.pid, iface).unwrap_or_else(|| {
        panic!(
            "no process holds the TUN of {iface}: {}",
            describe_tree(d.pid)
        )
    });
    let uid = ids_of(holder, "Uid").first().copied().expect("holder uid");
    let gid = ids_of(holder, "Gid").first().copied().expect("holder gid");
    let mut wanted = vec![tun_fd];
    if ending == Ending::MalformedFrame {
        let pp = one_child_named(d.pid, "miredo-privproc").unwrap_or_else(|| {
            panic!(
                "no miredo-privproc child of {}: {}",
                d.pid,
                describe_tree(d.pid)
            )
        });
        wanted.push(privproc_socket_of(ns, holder, pp).unwrap_or_else(|e| panic!("{e}")));
    }
    let copies = copy_fds(holder, &wanted);
    let tun = copies[0].as_raw_fd();
    let sock = copies.get(1).map_or(-1, |f| f.as_raw_fd());
    // A length of 0xffff (more than a frame may have), then garbage.
    let frame: [u8; 10] = [0xff, 0xff, b'n', b'o', b't', b'a', b'f', b'r', b'a', b'm'];
    let end = in_child(|| unsafe {
        let step = become_user(uid, gid);
        if step != 0 {
            return step;
        }
        if libc::ioctl(tun, TUNSETPERSIST as _, 1 as libc::c_ulong) != 0 {
            return 100 + errno().min(150);
        }
        if sock >= 0
            && libc::write(sock, frame.as_ptr().cast(), frame.len()) != frame.len() as isize
        {
            return 40;
        }
        0
    });
    drop(copies);
    assert_eq!(
        end,
        End::Exited(0),
        "the attacker (uid {uid}, a copy of fd {tun_fd} of pid {holder}) could not make {iface} persistent (100+errno: ioctl, 1x: becoming the user, 40: write)"
    );
    Attacked {
        holder,
        uid,
        persistent: link_details(ns, iface),
    }
}

/// Ends `d` as `ending` says; returns whether it ended by itself (within
/// 10 s of the signal, or of the malformed frame). Whatever happened, it
/// is stopped (by its pid) when this returns.
fn end_daemon(w: &World, d: &Daemon, ending: Ending) -> bool {
    match ending {
        Ending::Term => w.signal(d, "TERM"),
        Ending::Kill => w.signal(d, "KILL"),
        Ending::MalformedFrame => {}
    }
    let ended = wait_until(Duration::from_secs(10), || !w.is_running(d));
    w.stop(d, Duration::from_secs(3));
    ended
}

/// After the attack and the daemon's end: the interface goes within
/// [`TEARDOWN`], user nobody cannot take a TUN of its name, and no process
/// is left in the namespace (the daemon's reader and miredo-privproc end
/// with it).
fn assert_nothing_left(w: &World, ns: &Netns, d: &Daemon, iface: &str, what: &str) {
    let gone = wait_until(TEARDOWN, || !ns.has_iface(iface));
    let nobody = nobody_attaches(ns, iface);
    let mut left = procs_in(ns);
    wait_until(Duration::from_secs(5), || {
        left = procs_in(ns);
        left.is_empty()
    });
    let left: Vec<String> = left.iter().map(|&p| format!("{p} {}", comm(p))).collect();
    report(
        w.test_name(),
        &format!(
            "{what}: interface {iface} gone within {TEARDOWN:?}: {gone}; user nobody attaching a TUN {iface}: {}; processes left: {left:?}",
            match &nobody {
                Ok(()) => "ATTACHED".to_string(),
                Err(e) => e.clone(),
            }
        ),
    );
    assert!(
        gone,
        "{what}: {iface} is still there {TEARDOWN:?} after the daemon ended: {}\n{}",
        link_details(ns, iface),
        w.log_of(d)
    );
    assert!(
        nobody.is_err(),
        "{what}: user nobody attached a TUN called {iface}"
    );
    assert!(left.is_empty(), "{what}: processes left: {left:?}");
}

/// The attack on our client: started with an interface of its own, the
/// attack once it has its address, then the daemon's end.
fn client_attack(test: &str, ending: Ending) {
    let w = World::build(test, &[NatKind::PortRestricted]);
    w.start_server(Impl::Ours);
    let iface = unique_iface(&w, "ca");
    let (cli, addr) = teredo_lab::named::start_client(
        &w,
        1,
        Impl::Ours,
        &iface,
        "client-attacked",
        Duration::from_secs(15),
    );
    assert!(
        addr.is_some(),
        "our client did not qualify:\n{}",
        w.log_of(&cli)
    );
    let ns = w.client(1).clone();
    let a = attack(&ns, &cli, &iface, ending);
    report(
        w.test_name(),
        &format!(
            "{ending:?}: TUNSETPERSIST from a copy of pid {}'s TUN descriptor, as uid {}: done; {}",
            a.holder, a.uid, a.persistent
        ),
    );
    let by_itself = end_daemon(&w, &cli, ending);
    if ending == Ending::MalformedFrame {
        let log = w.log_of(&cli);
        let said: Vec<&str> = log.lines().filter(|l| l.contains("refused")).collect();
        report(
            w.test_name(),
            &format!("stopped by itself: {by_itself}; the refusal: {said:?}"),
        );
        assert!(
            by_itself,
            "the client did not stop by itself within 10 s of its helper's refusal:\n{log}"
        );
        // With -f, miredo-privproc logs to the daemon's standard error too.
        assert!(
            !said.is_empty(),
            "miredo-privproc did not say it refused the frame:\n{log}"
        );
    }
    assert_nothing_left(&w, &ns, &cli, &iface, &format!("client, {ending:?}"));
}

/// The attack on our relay: started with an interface of its own, the
/// attack once its route is up, then the daemon's end. A relay has a
/// miredo-privproc too, whose only job is this teardown.
fn relay_attack(test: &str, ending: Ending) {
    let w = World::build(test, &[]);
    let iface = unique_iface(&w, "ra");
    let relay = teredo_lab::named::start_relay(&w, Impl::Ours, &iface, "relay-attacked")
        .expect("our relay's 2001::/32 route");
    let ns = w.relay().clone();
    let a = attack(&ns, &relay, &iface, ending);
    report(
        w.test_name(),
        &format!(
            "{ending:?}: TUNSETPERSIST from a copy of pid {}'s TUN descriptor, as uid {}: done; {}",
            a.holder, a.uid, a.persistent
        ),
    );
    end_daemon(&w, &relay, ending);
    assert_nothing_left(&w, &ns, &relay, &iface, &format!("relay, {ending:?}"));
    let routes: Vec<String> = ns
        .routes6("2001::/32")
        .into_iter()
        .filter(|r| r.split_whitespace().any(|t| t == iface))
        .collect();
    assert!(
        routes.is_empty(),
        "2001::/32 routes via {iface} left: {routes:?}"
    );
}

// ---------------------------------------------------------------------
// The tests.
// ---------------------------------------------------------------------

/// A whole world of ours (server, relay, qualified client): every daemon,
/// every configuration reader and every miredo-privproc runs under a
/// seccomp filter (`Seccomp: 2`). Each reader runs as its daemon's user,
/// not as miredo-privproc's (issue 24: a reader of the helper's user would
/// share a uid with a privileged process); each miredo-privproc as another
/// user than its daemon's.
fn every_process_runs_under_its_filter() {
    let w = World::build("sb_filters", &[NatKind::PortRestricted]);
    let srv = w.start_server(Impl::Ours);
    let relay = w.start_relay(Impl::Ours, "cone");
    let cli = w.start_client(1, Impl::Ours, "");
    let q = w.wait_qualified(&cli, 1, Duration::from_secs(15));
    assert!(
        q.is_some(),
        "our client did not qualify:\n{}",
        w.log_of(&cli)
    );
    let mut procs: Vec<(String, u32)> = Vec::new();
    for (d, what, helper) in [
        (&srv, "miredo-server", false),
        (&relay, "miredo relay", true),
        (&cli, "miredo client", true),
    ] {
        procs.push((what.to_string(), d.pid));
        let duid = uid_of(d.pid);
        assert!(duid.iter().all(|&u| u != 0), "{what} uid {duid:?}");
        let reader = one_child_named(d.pid, "miredo-reader").unwrap_or_else(|| {
            panic!(
                "{what} has not one miredo-reader child: {}",
                describe_tree(d.pid)
            )
        });
        assert_eq!(
            uid_of(reader),
            duid,
            "{what}'s reader runs as another user than the daemon"
        );
        procs.push((format!("{what}'s reader"), reader));
        if helper {
            let pp = one_child_named(d.pid, "miredo-privproc").unwrap_or_else(|| {
                panic!(
                    "{what} has not one miredo-privproc child: {}",
                    describe_tree(d.pid)
                )
            });
            let ppuid = uid_of(pp);
            assert!(ppuid.iter().all(|&u| u != 0), "{what}'s privproc {ppuid:?}");
            assert_ne!(ppuid, duid, "{what}'s privproc runs as the daemon's user");
            procs.push((format!("{what}'s miredo-privproc"), pp));
        }
    }
    let mut unfiltered = Vec::new();
    for (what, pid) in &procs {
        let mode = status_field(*pid, "Seccomp").unwrap_or_default();
        let filters = status_field(*pid, "Seccomp_filters").unwrap_or_default();
        report(
            w.test_name(),
            &format!(
                "{what}: pid {pid}, uid {:?}, Seccomp {mode}, Seccomp_filters {filters}",
                uid_of(*pid)
            ),
        );
        if mode != "2" {
            unfiltered.push(format!("{what} (pid {pid}): Seccomp {mode:?}"));
        }
    }
    assert!(
        unfiltered.is_empty(),
        "not under a seccomp filter: {unfiltered:?}"
    );
}

/// The attack on our client, then SIGTERM: no interface is left.
fn an_attacker_in_the_client_leaves_no_interface_after_sigterm() {
    client_attack("sb_cli_term", Ending::Term);
}

/// The attack on our client, then SIGKILL (no clean-up by the daemon at
/// all): miredo-privproc sees its input end and deletes the interface.
fn an_attacker_in_the_client_leaves_no_interface_after_sigkill() {
    client_attack("sb_cli_kill", Ending::Kill);
}

/// The attack on our client, with a malformed frame to miredo-privproc:
/// privproc refuses it and deletes the interface before it leaves; the
/// daemon, its helper gone, stops by itself.
fn an_attacker_in_the_client_leaves_no_interface_after_a_malformed_frame() {
    client_attack("sb_cli_frame", Ending::MalformedFrame);
}

/// The attack on our relay, then SIGTERM: no interface, no 2001::/32 route
/// via it.
fn an_attacker_in_the_relay_leaves_no_interface_after_sigterm() {
    relay_attack("sb_rel_term", Ending::Term);
}

/// The attack on our relay, then SIGKILL: the relay's miredo-privproc
/// deletes the interface.
fn an_attacker_in_the_relay_leaves_no_interface_after_sigkill() {
    relay_attack("sb_rel_kill", Ending::Kill);
}

/// For comparison: the same attack against Debian's C miredo client, then
/// SIGTERM. Nothing in the C tool deletes the interface: made persistent,
/// it stays after the daemon is gone, and user nobody attaches to it (a
/// persistent TUN without an owner is anyone's). The test asserts that (it
/// documents the difference), then deletes the leftover itself. (The C
/// daemon's TUN is held by its unprivileged worker, a child of the process
/// started; the attack copies it from there.)
fn the_c_daemon_keeps_its_tun_descriptor_too() {
    let w = World::build("sb_c_client", &[NatKind::PortRestricted]);
    w.start_server(Impl::Ours);
    let iface = unique_iface(&w, "cc");
    let (cli, addr) = teredo_lab::named::start_client(
        &w,
        1,
        Impl::C,
        &iface,
        "client-c-attacked",
        Duration::from_secs(15),
    );
    assert!(
        addr.is_some(),
        "the C client did not qualify:\n{}",
        w.log_of(&cli)
    );
    let ns = w.client(1).clone();
    let tree_before = describe_tree(cli.pid);
    let a = attack(&ns, &cli, &iface, Ending::Term);
    end_daemon(&w, &cli, Ending::Term);
    // Whatever of the C tool might clean up has its chance.
    std::thread::sleep(Duration::from_secs(2));
    let remains = ns.has_iface(&iface);
    let nobody = if remains {
        nobody_attaches(&ns, &iface)
    } else {
        Err("no interface".into())
    };
    report(
        w.test_name(),
        &format!(
            "C client ({tree_before}): TUNSETPERSIST from pid {}'s descriptor as uid {}: {}; after SIGTERM the interface remains: {}; user nobody attaches it: {}",
            a.holder,
            a.uid,
            a.persistent,
            if remains { "yes" } else { "no" },
            if nobody.is_ok() { "yes" } else { "no" }
        ),
    );
    let _ = ns.ip(&format!("link del dev {iface}"));
    assert!(
        !ns.has_iface(&iface),
        "the leftover {iface} could not be deleted"
    );
    assert!(
        remains,
        "the C client deleted its persistent interface (expected it to remain)"
    );
    assert!(
        nobody.is_ok(),
        "user nobody could not attach the C client's leftover {iface}: {nobody:?}"
    );
}

/// Kills, by pid, the processes of a stand-in helper still running in the
/// test's namespace when the test ends, however it ends (the world kills
/// its daemons' process groups only, and miredo starts its helper in a
/// group of its own).
struct KillLeftovers<'a> {
    ns: &'a Netns,
    marks: Vec<String>,
}

impl KillLeftovers<'_> {
    fn leftovers(&self) -> Vec<u32> {
        procs_in(self.ns)
            .into_iter()
            .filter(|&p| {
                let c = cmdline(p);
                self.marks.iter().any(|m| c.contains(m.as_str()))
            })
            .collect()
    }
}

impl Drop for KillLeftovers<'_> {
    fn drop(&mut self) {
        for p in self.leftovers() {
            let _ = teredo_lab::cmd::host(&["kill", "-KILL", &p.to_string()]);
        }
    }
}

/// Kills a detached daemon by its pid when the test ends, however it ends.
struct Detached(Option<u32>);

impl Drop for Detached {
    fn drop(&mut self) {
        if let Some(p) = self.0 {
            let _ = teredo_lab::cmd::host(&["kill", "-KILL", &p.to_string()]);
        }
    }
}

/// Starts `miredo -f --privproc HELPER` in the client namespace and checks
/// the refusal: exit status 1 within 10 s, a message naming the helper and
/// `--privproc`, and no process of the helper left.
fn refuses_helper(w: &World, helper: &Path, label: &str, stem: &str, marks: &[String]) {
    let ns = w.client(1);
    let guard = KillLeftovers {
        ns,
        marks: marks.to_vec(),
    };
    let iface = unique_iface(w, stem);
    let conf = w.write_file(&format!("{label}.conf"), &client_conf(&iface, ""));
    let d = w.spawn(
        ns,
        label,
        &[
            Impl::Ours.miredo().display().to_string(),
            "-f".into(),
            "--privproc".into(),
            helper.display().to_string(),
            "-c".into(),
            conf.display().to_string(),
            "-p".into(),
            w.dir().join(format!("{label}.pid")).display().to_string(),
        ],
    );
    let exited = wait_until(Duration::from_secs(10), || !w.is_running(&d));
    let took = d.started.elapsed();
    let status = w.stop(&d, Duration::from_secs(3));
    let log = w.log_of(&d);
    let left = {
        let mut left = guard.leftovers();
        wait_until(Duration::from_secs(2), || {
            left = guard.leftovers();
            left.is_empty()
        });
        left
    };
    report(
        w.test_name(),
        &format!(
            "helper {}: exited by itself {exited} after {took:?} with {status:?}; left: {left:?}; log: {}",
            helper.display(),
            log.trim().replace('\n', " | ")
        ),
    );
    assert!(
        exited,
        "miredo still runs 10 s after starting {} (which says no hello):\n{log}",
        helper.display()
    );
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(1),
        "miredo's exit status:\n{log}"
    );
    let path = helper.display().to_string();
    assert!(
        log.contains(&path) && log.contains("--privproc"),
        "the message names neither the helper ({path}) nor --privproc:\n{log}"
    );
    let left: Vec<String> = left
        .iter()
        .map(|&p| format!("{p} {}", cmdline(p)))
        .collect();
    assert!(left.is_empty(), "helper processes left: {left:?}");
    assert!(!ns.has_iface(&iface), "{iface} left after the refusal");
}

/// A helper that does not write its hello frame first (a shell script that
/// sleeps; Debian's C miredo-privproc, when installed) is killed at once,
/// and miredo exits with status 1 saying which helper and `--privproc`. A
/// relative `--privproc` path is found, in the foreground and when miredo
/// detaches (the helper used to be started after the working directory
/// became /).
fn a_helper_that_does_not_introduce_itself_is_refused() {
    let w = World::build("sb_hello", &[NatKind::PortRestricted]);
    w.start_server(Impl::Ours);
    let standin = w.write_hook("standin-privproc", "#!/bin/sh\nexec sleep 30\n");
    refuses_helper(
        &w,
        &standin,
        "standin",
        "hs",
        &[standin.display().to_string(), "sleep 30".into()],
    );
    let c_helper = Path::new("/usr/libexec/miredo/miredo-privproc");
    if c_helper.is_file() {
        refuses_helper(
            &w,
            c_helper,
            "c-helper",
            "hc",
            &[c_helper.display().to_string()],
        );
    } else {
        report(
            w.test_name(),
            &format!("{} is not installed: not tried", c_helper.display()),
        );
    }

    // A relative path, from the directory of our miredo-privproc.
    let bin = Impl::Ours.path("miredo-privproc");
    let dir = bin.parent().expect("a directory").display().to_string();
    let miredo = Impl::Ours.miredo().display().to_string();
    let ns = w.client(1);

    let iface = unique_iface(&w, "rf");
    let conf = w.write_file("relative-fg.conf", &client_conf(&iface, ""));
    let pidfile = w.dir().join("relative-fg.pid");
    let fg = w.spawn(
        ns,
        "relative-fg",
        &[
            "sh".to_string(),
            "-c".into(),
            format!(
                "cd {dir} && exec {miredo} -f --privproc ./miredo-privproc -c {} -p {}",
                conf.display(),
                pidfile.display()
            ),
        ],
    );
    let addr = wait_addr(ns, &iface, Duration::from_secs(15));
    let pp = one_child_named(fg.pid, "miredo-privproc");
    report(
        w.test_name(),
        &format!(
            "--privproc ./miredo-privproc from {dir}, foreground: address {addr:?}, privproc {pp:?}"
        ),
    );
    assert!(
        addr.is_some() && pp.is_some(),
        "the client with a relative --privproc did not start: {}\n{}",
        describe_tree(fg.pid),
        w.log_of(&fg)
    );
    w.stop(&fg, Duration::from_secs(5));

    let iface = unique_iface(&w, "rd");
    let conf = w.write_file("relative-bg.conf", &client_conf(&iface, ""));
    let pidfile = w.dir().join("relative-bg.pid");
    let out = ns.exec(
        &[
            "sh".to_string(),
            "-c".into(),
            format!(
                "cd {dir} && exec {miredo} --privproc ./miredo-privproc -c {} -p {}",
                conf.display(),
                pidfile.display()
            ),
        ],
        Duration::from_secs(15),
    );
    let pid = fs::read_to_string(&pidfile)
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok());
    let guard = Detached(pid);
    assert!(
        out.success(),
        "detached with a relative --privproc: {out:?}"
    );
    let pid = pid.expect("a pid in the pid file");
    let addr = wait_addr(ns, &iface, Duration::from_secs(15));
    let pp = one_child_named(pid, "miredo-privproc");
    report(
        w.test_name(),
        &format!("--privproc ./miredo-privproc, detached: daemon {pid}, address {addr:?}, privproc {pp:?}"),
    );
    assert!(
        alive(pid) && addr.is_some() && pp.is_some(),
        "the detached client with a relative --privproc: {}",
        describe_tree(pid)
    );
    let _ = teredo_lab::cmd::host(&["kill", "-TERM", &pid.to_string()]);
    assert!(wait_until(Duration::from_secs(5), || !alive(pid)));
    drop(guard);
}

/// A need: the filters refuse (this is not a build made for measuring the
/// lists, with `MIREDO_SECCOMP_AUDIT` set: see libteredo::sys::seccomp).
fn filters_enforce() -> Option<String> {
    libteredo::sys::seccomp::AUDIT_ONLY.then(|| {
        "built with MIREDO_SECCOMP_AUDIT: the seccomp filters only log what they would refuse"
            .to_string()
    })
}

/// A network namespace of the test's own, deleted on drop.
struct OwnNetns(String);

impl OwnNetns {
    fn new(stem: &str) -> OwnNetns {
        let name = format!("{stem}{}", std::process::id());
        teredo_lab::cmd::host(&["ip", "netns", "add", &name]).expect("ip netns add");
        OwnNetns(name)
    }
}

impl Drop for OwnNetns {
    fn drop(&mut self) {
        let _ = teredo_lab::cmd::host(&["ip", "netns", "del", &self.0]);
    }
}

/// What the sandboxed child does after making its TUN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Then {
    /// No filter: TUNSETPERSIST on, then off (nothing stays).
    PersistUnfiltered,
    /// The daemon's filter, then TUNSETPERSIST.
    PersistFiltered,
    /// The daemon's filter, then getpid and a write: allowed.
    Harmless,
    /// The daemon's filter, then opening the file glibc's allocator reads
    /// when a thread's heap shrinks: answered EACCES, not fatal.
    OpenAnswered,
}

/// Makes TUN `name` in network namespace `ns` in a forked child, then does
/// what `then` says; the child's standard error goes to a pipe, returned
/// with how the child ended.
fn sandboxed_child(sandbox: &Sandbox, ns: &OwnNetns, name: &str, then: Then) -> (End, String) {
    let nsfd = open_netns(&ns.0);
    let dev = CString::new("/dev/net/tun").unwrap();
    let mut ifr = IfReq::tun(name);
    let mut p = [0 as RawFd; 2];
    // SAFETY: a new pipe; both ends are ours.
    let rc = unsafe { libc::pipe2(p.as_mut_ptr(), libc::O_CLOEXEC) };
    assert_eq!(rc, 0, "pipe2: {}", std::io::Error::last_os_error());
    // SAFETY: pipe2 made them; nothing else owns them.
    let (rd, wr) = unsafe { (OwnedFd::from_raw_fd(p[0]), OwnedFd::from_raw_fd(p[1])) };
    let (wr_fd, msg) = (wr.as_raw_fd(), b"getpid and write: allowed\n");
    let overcommit = CString::new("/proc/sys/vm/overcommit_memory").unwrap();
    let end = in_child(|| unsafe {
        if libc::dup2(wr_fd, 2) != 2 {
            return 19;
        }
        if libc::setns(nsfd.as_raw_fd(), libc::CLONE_NEWNET) != 0 {
            return 20;
        }
        let fd = libc::open(dev.as_ptr(), libc::O_RDWR);
        if fd < 0 {
            return 21;
        }
        if libc::ioctl(fd, TUNSETIFF as _, &mut ifr as *mut IfReq) != 0 {
            return 22;
        }
        match then {
            Then::PersistUnfiltered => {
                if libc::ioctl(fd, TUNSETPERSIST as _, 1 as libc::c_ulong) != 0 {
                    return 100 + errno().min(150);
                }
                if libc::ioctl(fd, TUNSETPERSIST as _, 0 as libc::c_ulong) != 0 {
                    return 23;
                }
                0
            }
            Then::PersistFiltered => {
                if sandbox.enter().is_err() {
                    return 24;
                }
                if libc::ioctl(fd, TUNSETPERSIST as _, 1 as libc::c_ulong) != 0 {
                    return 100 + errno().min(150);
                }
                // Not killed: undo, so that nothing stays.
                libc::ioctl(fd, TUNSETPERSIST as _, 0 as libc::c_ulong);
                0
            }
            Then::Harmless => {
                if sandbox.enter().is_err() {
                    return 24;
                }
                if libc::getpid() <= 0 {
                    return 25;
                }
                if libc::write(2, msg.as_ptr().cast(), msg.len()) != msg.len() as isize {
                    return 26;
                }
                0
            }
            Then::OpenAnswered => {
                if sandbox.enter().is_err() {
                    return 24;
                }
                let fd = libc::open(overcommit.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC);
                if fd >= 0 {
                    return 27;
                }
                // 100 + errno: EACCES (13) expected.
                100 + errno().min(150)
            }
        }
    });
    drop(wr);
    let mut text = Vec::new();
    let _ = std::io::Read::read_to_end(&mut fs::File::from(rd), &mut text);
    (end, String::from_utf8_lossy(&text).into_owned())
}

/// The daemon's filter itself (libteredo's `Sandbox`, `Role::Daemon`),
/// without a daemon: a child that made a TUN, entered the filter and asks
/// TUNSETPERSIST is killed by SIGSYS; without the filter the same ioctl
/// succeeds (the control: the request is valid); under the filter, getpid
/// and write still work. All of it in a network namespace of the test's
/// own, so that no device ever appears on the host.
fn tunsetpersist_is_refused_under_the_daemons_filter() {
    let test = "tunsetpersist_is_refused_under_the_daemons_filter";
    let sandbox = Sandbox::new(Role::Daemon).expect("the daemon's filter compiles");
    let ns = OwnNetns::new("tlsbx");
    let name = format!("scT{}", std::process::id() % 1_000_000);
    let check_gone = |when: &str| {
        assert!(
            teredo_lab::cmd::host(&["ip", "-n", &ns.0, "link", "show", "dev", &name]).is_err(),
            "{name} left in {} {when}",
            ns.0
        );
    };

    let (end, _) = sandboxed_child(&sandbox, &ns, &name, Then::PersistUnfiltered);
    report(test, &format!("no filter, TUNSETPERSIST: {end:?}"));
    assert_eq!(
        end,
        End::Exited(0),
        "without the filter TUNSETPERSIST fails (100+errno) or the TUN could not be made"
    );
    check_gone("after the control");

    let (end, said) = sandboxed_child(&sandbox, &ns, &name, Then::PersistFiltered);
    report(
        test,
        &format!(
            "Role::Daemon filter, TUNSETPERSIST: {end:?}; the child said: {}",
            said.trim()
        ),
    );
    assert_eq!(
        end,
        End::Signaled(libc::SIGSYS),
        "TUNSETPERSIST under the daemon's filter (100+errno: refused with an error instead; 0: allowed); stderr: {said}"
    );
    assert!(
        said.contains("seccomp") && said.contains("ioctl"),
        "the refusal's line (on standard error) names neither seccomp nor ioctl: {said:?}"
    );
    check_gone("after the filtered child");

    let (end, said) = sandboxed_child(&sandbox, &ns, &name, Then::Harmless);
    report(
        test,
        &format!(
            "Role::Daemon filter, getpid and write: {end:?}; {}",
            said.trim()
        ),
    );
    assert_eq!(end, End::Exited(0), "getpid/write under the filter: {said}");

    // glibc's allocator opens /proc/sys/vm/overcommit_memory the first
    // time a thread's heap shrinks (a daemon died of it under a flood):
    // the filter answers EACCES, and the process goes on.
    let (end, said) = sandboxed_child(&sandbox, &ns, &name, Then::OpenAnswered);
    report(
        test,
        &format!(
            "Role::Daemon filter, open(/proc/sys/vm/overcommit_memory): {end:?} (100+errno); {}",
            said.trim()
        ),
    );
    assert_eq!(
        end,
        End::Exited(100 + libc::EACCES),
        "open under the daemon's filter: not answered EACCES (27: it opened; SIGSYS: fatal); stderr: {said}"
    );
    check_gone("at the end");
}

/// A need: `systemd-analyze`, which expands the units' system call sets.
fn systemd_analyze() -> Option<String> {
    match std::process::Command::new("systemd-analyze")
        .arg("--version")
        .output()
    {
        Ok(o) if o.status.success() => None,
        _ => Some("no systemd-analyze (package systemd) to expand the units' filters".into()),
    }
}

/// The system calls of `set` (`@group` or a name) as systemd knows them,
/// groups expanded.
fn systemd_set(set: &str, out: &mut std::collections::BTreeSet<String>, depth: u32) {
    if !set.starts_with('@') {
        out.insert(set.to_string());
        return;
    }
    assert!(depth < 8, "systemd's groups nest too deep at {set}");
    let o = std::process::Command::new("systemd-analyze")
        .args(["syscall-filter", set])
        .output()
        .expect("systemd-analyze");
    assert!(o.status.success(), "systemd-analyze syscall-filter {set}");
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    for line in text.lines().skip(1).map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        systemd_set(line, out, depth + 1);
    }
}

/// The packaged units' `SystemCallFilter=` covers a process's whole life
/// (root's start-up included), so it is wider than our lists; but it must
/// allow every call of the lists of the processes the unit starts, or the
/// unit would refuse (EPERM) what our filter lets through.
fn the_units_allow_every_call_of_the_lists() {
    use libteredo::sys::seccomp::allow_list;
    let units = Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging/systemd");
    for (unit, roles) in [
        (
            "miredo.service",
            vec![
                Role::Daemon,
                Role::Reader,
                Role::Privproc { hook: false },
                Role::Privproc { hook: true },
                Role::PidKeeper,
            ],
        ),
        (
            "miredo-server.service",
            vec![Role::Server, Role::Reader, Role::PidKeeper],
        ),
    ] {
        let text = fs::read_to_string(units.join(unit)).expect("the unit");
        let mut allowed = std::collections::BTreeSet::new();
        let mut lines = 0;
        for line in text.lines() {
            let Some(sets) = line.strip_prefix("SystemCallFilter=") else {
                continue;
            };
            lines += 1;
            assert!(!sets.starts_with('~'), "{unit}: a deny-list: {line}");
            for set in sets.split_whitespace() {
                systemd_set(set, &mut allowed, 0);
            }
        }
        assert!(lines > 0, "{unit} has no SystemCallFilter=");
        // Entering a filter is a system call too (seccomp(2)).
        assert!(
            allowed.contains("seccomp"),
            "{unit}'s SystemCallFilter= refuses seccomp: no process could enter its own list"
        );
        for role in roles {
            let list = allow_list(role);
            let missing: Vec<&str> = list
                .iter()
                .map(|e| e.name)
                .filter(|n| !allowed.contains(*n))
                .collect();
            assert!(
                missing.is_empty(),
                "{unit}'s SystemCallFilter= refuses what {role:?}'s list allows: {missing:?}"
            );
            report(
                "the_units_allow_every_call_of_the_lists",
                &format!(
                    "{unit}: {} calls allowed by the unit; {role:?}'s {} entries all among them",
                    allowed.len(),
                    list.len()
                ),
            );
        }
    }
}

teredo_lab::lab_tests! {
    needs(systemd_analyze): [the_units_allow_every_call_of_the_lists],
    needs(root, ours): [
        every_process_runs_under_its_filter,
        an_attacker_in_the_client_leaves_no_interface_after_sigterm,
        an_attacker_in_the_client_leaves_no_interface_after_sigkill,
        an_attacker_in_the_client_leaves_no_interface_after_a_malformed_frame,
        an_attacker_in_the_relay_leaves_no_interface_after_sigterm,
        an_attacker_in_the_relay_leaves_no_interface_after_sigkill,
        a_helper_that_does_not_introduce_itself_is_refused,
    ],
    needs(root, ours, c_miredo): [the_c_daemon_keeps_its_tun_descriptor_too],
    needs(netns, filters_enforce): [tunsetpersist_is_refused_under_the_daemons_filter],
}
