//! miredo-privproc against a real kernel: a network namespace and a TUN
//! device per test, privproc started inside it over a socketpair, the
//! result read back with `ip`, and privproc and its hooks examined through
//! /proc. Needs root; without it the tests are reported ignored, with the
//! reason.
//!
//! privproc runs as `nobody` here ([`TEST_USER`]), which every system
//! has; hooks live in a fresh directory under /run ([`SafeDir`]), since
//! privproc refuses one under a world-writable directory such as /tmp.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::Shutdown;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use libteredo::privsep::{self, Refusal, Reply, Request};

const BIN: &str = env!("CARGO_BIN_EXE_miredo-privproc");
const IFACE: &str = "teredo";
const WAIT: Duration = Duration::from_secs(10);

/// The user privproc runs as in these tests (`--user`): one that exists
/// everywhere.
const TEST_USER: &str = "nobody";

/// CAP_NET_ADMIN alone, as /proc/PID/status shows a capability set.
const NET_ADMIN: &str = "0000000000001000";
const NO_CAPS: &str = "0000000000000000";

/// RFC 4380 section 4 example address (cone), and two restricted ones.
const ADDR_A: &str = "2001:0:4136:e378:3c00:63bf:3fff:fdd2";
const ADDR_B: &str = "2001:0:4136:e378:1234:f227:c6ff:fd55";

fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().expect("run command");
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A namespace with a TUN device, deleted on drop (panics included).
struct Netns {
    name: String,
}

impl Netns {
    fn new(tag: &str) -> Self {
        static COUNT: AtomicU32 = AtomicU32::new(0);
        let n = COUNT.fetch_add(1, Ordering::Relaxed);
        let name = format!("pp-{tag}-{}-{n}", std::process::id());
        run(Command::new("ip").args(["netns", "add", &name]));
        let ns = Netns { name };
        ns.ensure_tun();
        ns
    }

    /// Whether the interface exists.
    fn has_iface(&self) -> bool {
        self.ip(&["link", "show", "dev", IFACE])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    /// Creates the (persistent) TUN device unless it exists: privproc
    /// deletes it when it ends after setting up.
    fn ensure_tun(&self) {
        if !self.has_iface() {
            run(&mut self.ip(&["tuntap", "add", "dev", IFACE, "mode", "tun"]));
        }
    }

    /// Waits (bounded) for the interface to be gone; whether it is.
    fn iface_gone(&self) -> bool {
        let deadline = Instant::now() + WAIT;
        while self.has_iface() {
            if Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        true
    }

    fn ip(&self, args: &[&str]) -> Command {
        let mut c = Command::new("ip");
        c.args(["-n", &self.name]).args(args);
        c
    }

    fn text(&self, args: &[&str]) -> String {
        String::from_utf8_lossy(&run(&mut self.ip(args)).stdout).into_owned()
    }

    fn ifindex(&self) -> u32 {
        let line = self.text(&["-o", "link", "show", "dev", IFACE]);
        line.split(':').next().unwrap().trim().parse().unwrap()
    }

    /// Everything privproc may change: IPv6 addresses, routes, link flags
    /// and MTU.
    fn snapshot(&self) -> String {
        let link = self.text(&["-o", "link", "show", "dev", IFACE]);
        // Keep flags and MTU; drop the carrier state noise after "qdisc".
        let link = link.split(" qdisc").next().unwrap_or("").to_string();
        format!(
            "{link}\n{}{}",
            self.text(&["-6", "-o", "addr", "show", "dev", IFACE]),
            self.text(&["-6", "route", "show", "dev", IFACE])
        )
    }

    fn addrs(&self) -> Vec<String> {
        self.text(&["-6", "-o", "addr", "show", "dev", IFACE])
            .lines()
            .filter_map(|l| {
                let mut w = l.split_whitespace();
                w.position(|x| x == "inet6")?;
                w.next().map(str::to_string)
            })
            .collect()
    }

    fn routes(&self) -> String {
        self.text(&["-6", "route", "show", "dev", IFACE])
    }

    fn link(&self) -> String {
        self.text(&["link", "show", "dev", IFACE])
    }

    fn is_up(&self) -> bool {
        let link = self.link();
        let flags = link.split('<').nth(1).and_then(|s| s.split('>').next());
        flags.unwrap_or("").split(',').any(|f| f == "UP")
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// A running privproc and our end of its socketpair; killed on drop. Its
/// standard error (it runs with --foreground) is collected.
struct Privproc {
    child: Child,
    sock: UnixStream,
    /// Whether its hello was read.
    greeted: bool,
    stderr: Arc<Mutex<Vec<u8>>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Privproc {
    /// privproc with `extra` arguments, as [`TEST_USER`] unless `extra`
    /// names a user.
    fn start(ns: &Netns, extra: &[&str]) -> Self {
        Self::start_with(ns, extra, |_| {})
    }

    /// The same, with `setup` applied to the command first (environment,
    /// inherited descriptors).
    fn start_with(ns: &Netns, extra: &[&str], setup: impl FnOnce(&mut Command)) -> Self {
        ns.ensure_tun();
        let (ours, theirs) = UnixStream::pair().unwrap();
        let mut cmd = Command::new("ip");
        cmd.args([
            "netns",
            "exec",
            &ns.name,
            BIN,
            "--interface",
            IFACE,
            "--foreground",
        ]);
        if !extra.contains(&"--user") {
            cmd.args(["--user", TEST_USER]);
        }
        cmd.args(extra)
            .stdin(Stdio::from(OwnedFd::from(theirs)))
            .stderr(Stdio::piped());
        setup(&mut cmd);
        let mut child = cmd.spawn().unwrap();
        let mut err = child.stderr.take().unwrap();
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let sink = stderr.clone();
        let reader = std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = err.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        ours.set_read_timeout(Some(WAIT)).unwrap();
        ours.set_write_timeout(Some(WAIT)).unwrap();
        Privproc {
            child,
            sock: ours,
            greeted: false,
            stderr,
            reader: Some(reader),
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Reads its hello (once): the first frame, before any request.
    fn greet(&mut self) {
        if !self.greeted {
            assert_eq!(hello(&mut self.sock), privsep::Hello::ours());
            self.greeted = true;
        }
    }

    fn ask(&mut self, req: &Request) -> Reply {
        self.greet();
        privsep::write_frame(&mut self.sock, req).unwrap();
        privsep::read_frame(&mut self.sock).unwrap()
    }

    fn wait(&mut self) -> ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                return st;
            }
            assert!(start.elapsed() < WAIT, "privproc did not exit");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits for the exit, then returns the exit status and everything
    /// privproc wrote on standard error.
    fn wait_with_log(&mut self) -> (ExitStatus, String) {
        let st = self.wait();
        if let Some(r) = self.reader.take() {
            r.join().unwrap();
        }
        (st, self.log())
    }

    /// What privproc has written on standard error so far.
    fn log(&self) -> String {
        String::from_utf8_lossy(&self.stderr.lock().unwrap()).into_owned()
    }

    /// The log once it holds `needle` (privproc writes a line before it
    /// answers, but the thread that collects its standard error may not
    /// have read it yet), or as it is after 5 s.
    fn log_with(&self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let log = self.log();
            if log.contains(needle) || Instant::now() > deadline {
                return log;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn status_field(&self, name: &str) -> String {
        status_field(self.pid(), name)
    }
}

impl Drop for Privproc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A field of /proc/PID/status, e.g. `status_field(pid, "CapEff:")`.
fn status_field(pid: u32, name: &str) -> String {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(name))
        .map(|v| v.trim().to_string())
        .unwrap_or_default()
}

/// A user's uid and gid, from the user database.
fn ids_of(user: &str) -> (u32, u32) {
    let u = nix::unistd::User::from_name(user)
        .unwrap()
        .unwrap_or_else(|| panic!("no user {user}"));
    (u.uid.as_raw(), u.gid.as_raw())
}

/// Asserts that /proc/PID/status shows `user` in all four uid and gid
/// fields and as the only group.
fn assert_runs_as(pid: u32, user: &str) {
    let (uid, gid) = ids_of(user);
    assert_ne!(uid, 0);
    assert_ne!(gid, 0);
    let four = |n: u32| format!("{n}\t{n}\t{n}\t{n}");
    assert_eq!(
        status_field(pid, "Uid:"),
        four(uid),
        "real, effective, saved, fs uid"
    );
    assert_eq!(
        status_field(pid, "Gid:"),
        four(gid),
        "real, effective, saved, fs gid"
    );
    assert_eq!(
        status_field(pid, "Groups:"),
        gid.to_string(),
        "supplementary groups"
    );
}

/// The pids of `pid`'s children, zombies included (from every process's
/// parent pid in /proc).
fn children_of(pid: u32) -> Vec<u32> {
    let mut v = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(p) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/stat")) else {
            continue;
        };
        let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
            continue;
        };
        if rest.split_whitespace().nth(1) == Some(&pid.to_string()) {
            v.push(p);
        }
    }
    v
}

/// The processes whose command line contains `marker`.
fn processes_with(marker: &str) -> Vec<(u32, String)> {
    let mut v = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(p) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        if let Ok(cmdline) = std::fs::read(format!("/proc/{p}/cmdline")) {
            let text = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            if text.contains(marker) {
                v.push((p, text));
            }
        }
    }
    v
}

/// What a process's descriptors point to: (number, link target).
fn descriptors_of(pid: u32) -> Vec<(i32, String)> {
    let mut v: Vec<(i32, String)> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .flatten()
        .filter_map(|e| {
            let n = e.file_name().to_str()?.parse().ok()?;
            let target = std::fs::read_link(e.path()).ok()?;
            Some((n, target.display().to_string()))
        })
        .collect();
    v.sort();
    v
}

/// A unique word for a test's processes and files.
fn marker(tag: &str) -> String {
    static COUNT: AtomicU32 = AtomicU32::new(0);
    let n = COUNT.fetch_add(1, Ordering::Relaxed);
    format!("ppmark{tag}{}x{n}", std::process::id())
}

/// The hello privproc sends first.
fn hello(sock: &mut UnixStream) -> privsep::Hello {
    privsep::read_frame(sock).expect("miredo-privproc's hello")
}

fn up(ifindex: u32, addr: &str, mtu: u16) -> Request {
    Request::Up {
        ifindex,
        address: addr.parse().unwrap(),
        mtu,
    }
}

fn up_change_down_close() {
    let ns = Netns::new("up");
    let ifindex = ns.ifindex();
    let mut pp = Privproc::start(&ns, &["--no-hook"]);

    assert_eq!(pp.ask(&up(ifindex, ADDR_A, 1400)), Reply::Ok);
    // Only CAP_NET_ADMIN, everywhere, and no way to regain more.
    assert_eq!(pp.status_field("CapEff:"), "0000000000001000");
    assert_eq!(pp.status_field("CapPrm:"), "0000000000001000");
    assert_eq!(pp.status_field("CapBnd:"), "0000000000001000");
    assert_eq!(pp.status_field("CapInh:"), "0000000000000000");
    assert_eq!(pp.status_field("CapAmb:"), "0000000000000000");
    assert_eq!(pp.status_field("NoNewPrivs:"), "1");

    let mut addrs = ns.addrs();
    addrs.sort();
    assert_eq!(
        addrs,
        [format!("{ADDR_A}/32"), "fe80::ffff:ffff:ffff/64".into()]
    );
    let routes = ns.routes();
    assert!(
        routes
            .lines()
            .any(|l| l.starts_with("default") && l.contains("metric 1029")),
        "{routes}"
    );
    assert!(ns.link().contains("mtu 1400"), "{}", ns.link());
    assert!(ns.is_up());

    // A new address replaces the old one; never two.
    assert_eq!(pp.ask(&up(ifindex, ADDR_B, 1280)), Reply::Ok);
    let mut addrs = ns.addrs();
    addrs.sort();
    assert_eq!(
        addrs,
        [format!("{ADDR_B}/32"), "fe80::ffff:ffff:ffff/64".into()]
    );
    assert!(ns.link().contains("mtu 1280"));
    assert!(ns.routes().contains("metric 1029"));
    // The same request twice is harmless.
    assert_eq!(pp.ask(&up(ifindex, ADDR_B, 1280)), Reply::Ok);
    assert_eq!(ns.addrs().len(), 2);

    assert_eq!(pp.ask(&Request::Down { ifindex }), Reply::Ok);
    assert!(ns.addrs().is_empty(), "{:?}", ns.addrs());
    assert_eq!(ns.routes().trim(), "");
    assert!(!ns.is_up());

    // Up again, then miredo goes away: privproc takes the interface down
    // and deletes it (persistent as `ip tuntap add` made it).
    assert_eq!(pp.ask(&up(ifindex, ADDR_A, 1280)), Reply::Ok);
    assert!(ns.is_up());
    pp.sock.shutdown(Shutdown::Both).unwrap();
    let (st, log) = pp.wait_with_log();
    assert!(st.success(), "{log}");
    assert!(ns.iface_gone(), "the interface outlived privproc");
    assert!(log.contains("interface removed"), "{log}");
}

/// What a misbehaving miredo may send.
enum Bad {
    Request(Request),
    Bytes(Vec<u8>),
    /// Bytes, then the end of the stream.
    Truncated(Vec<u8>),
}

/// Whatever breaks a rule, privproc answers with the refusal, takes the
/// interface down and deletes it (a daemon that sends what no miredo of
/// ours sends is not trusted with it any more), and exits 1.
fn refuses_then_removes_the_interface() {
    let ns = Netns::new("refuse");
    let cases = |ifindex: u32| -> Vec<(&'static str, Bad, Option<Refusal>)> {
        let good = privsep::encode(&up(ifindex, ADDR_A, 1280)).unwrap();
        let mut trailing = privsep::encode(&Request::Down { ifindex }).unwrap();
        trailing.push(0);
        trailing[1] += 1;
        let mut oversized = vec![0x10, 0x00];
        oversized.resize(2 + 4096, 0);
        vec![
            (
                "wrong interface",
                Bad::Request(up(ifindex + 1, ADDR_B, 1280)),
                Some(Refusal::WrongInterface {
                    expected: ifindex,
                    got: ifindex + 1,
                }),
            ),
            (
                "down on another interface",
                Bad::Request(Request::Down { ifindex: 1 }),
                Some(Refusal::WrongInterface {
                    expected: ifindex,
                    got: 1,
                }),
            ),
            (
                "foreign prefix",
                Bad::Request(up(ifindex, "2002:c000:22d::1", 1280)),
                Some(Refusal::OutsidePrefix),
            ),
            (
                "no server",
                Bad::Request(up(ifindex, "2001::", 1280)),
                Some(Refusal::NoServer),
            ),
            (
                "MTU 1279",
                Bad::Request(up(ifindex, ADDR_B, 1279)),
                Some(Refusal::MtuTooSmall(1279)),
            ),
            (
                "garbage",
                Bad::Bytes(vec![0, 5, 9, 9, 9, 9, 9]),
                Some(Refusal::Malformed),
            ),
            (
                "trailing byte",
                Bad::Bytes(trailing),
                Some(Refusal::Malformed),
            ),
            (
                "truncated frame",
                Bad::Truncated(good[..good.len() - 3].to_vec()),
                Some(Refusal::Malformed),
            ),
            (
                "oversized frame",
                Bad::Bytes(oversized),
                Some(Refusal::Malformed),
            ),
        ]
    };
    let count = cases(0).len();
    for i in 0..count {
        // The interface up with address A, then the bad frame.
        let mut pp = Privproc::start(&ns, &["--no-hook"]);
        let ifindex = ns.ifindex();
        let Some((what, bad, expected)) = cases(ifindex).into_iter().nth(i) else {
            unreachable!()
        };
        assert_eq!(pp.ask(&up(ifindex, ADDR_A, 1400)), Reply::Ok, "{what}");
        assert!(ns.addrs().iter().any(|a| a.starts_with(ADDR_A)), "{what}");
        match bad {
            Bad::Request(r) => privsep::write_frame(&mut pp.sock, &r).unwrap(),
            // privproc may close before it has read everything.
            Bad::Bytes(b) => {
                let _ = pp.sock.write_all(&b);
            }
            Bad::Truncated(b) => {
                pp.sock.write_all(&b).unwrap();
                pp.sock.shutdown(Shutdown::Write).unwrap();
            }
        }
        let reply = privsep::read_frame::<_, Reply>(&mut pp.sock);
        let status = pp.wait();
        assert_eq!(status.code(), Some(1), "{what}: {status}");
        if let Some(expected) = expected {
            assert_eq!(reply.unwrap(), Reply::Refused(expected), "{what}");
        }
        assert!(
            ns.iface_gone(),
            "{what}: the interface outlived the refusal"
        );
    }
}

/// A relay's helper (`--relay`) takes no request: the first is refused and
/// the interface deleted; without any, it deletes the interface when its
/// input ends, and runs no hook even when one is named.
fn a_relay_helper_refuses_every_request_and_removes_the_interface() {
    let ns = Netns::new("relay");
    let mut pp = Privproc::start(&ns, &["--relay"]);
    let ifindex = ns.ifindex();
    pp.greet();
    privsep::write_frame(&mut pp.sock, &up(ifindex, ADDR_A, 1280)).unwrap();
    let reply = privsep::read_frame::<_, Reply>(&mut pp.sock).unwrap();
    assert_eq!(reply, Reply::Refused(Refusal::Relay));
    assert_eq!(pp.wait().code(), Some(1));
    assert!(
        ns.iface_gone(),
        "the relay's interface outlived the refusal"
    );

    let mut pp = Privproc::start(&ns, &["--relay"]);
    pp.greet();
    assert!(ns.has_iface());
    pp.sock.shutdown(Shutdown::Both).unwrap();
    let (st, log) = pp.wait_with_log();
    assert!(st.success(), "{log}");
    assert!(ns.iface_gone(), "the relay's interface outlived miredo");
    assert!(log.contains("a relay's interface"), "{log}");
    let e = Command::new(BIN)
        .args(["-i", IFACE, "--relay", "--hook", "/bin/true"])
        .output()
        .unwrap();
    assert!(!e.status.success());
}

fn read_hook_log(path: &Path) -> Vec<BTreeMap<String, String>> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.split("---\n")
        .filter(|s| !s.is_empty())
        .map(|run| {
            run.lines()
                .filter_map(|l| l.split_once('='))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        })
        .collect()
}

/// A fresh directory of root's, mode 0755, under /run (root's, 0755 on
/// every Linux system): a place privproc accepts hooks from. Removed on
/// drop.
struct SafeDir(PathBuf);

impl SafeDir {
    fn new(tag: &str) -> Self {
        static COUNT: AtomicU32 = AtomicU32::new(0);
        let n = COUNT.fetch_add(1, Ordering::Relaxed);
        for d in ["/", "/run"] {
            let m = std::fs::metadata(d).unwrap();
            assert!(
                m.uid() == 0 && m.mode() & 0o022 == 0,
                "{d} must be root's and writable by root alone for these tests"
            );
        }
        let dir = PathBuf::from(format!("/run/pp-test-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        SafeDir(dir)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    /// A hook script of root's, mode 0755.
    fn hook(&self, name: &str, body: &str) -> PathBuf {
        let p = self.path(name);
        std::fs::write(&p, format!("#!/bin/sh\n{body}")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        p
    }

    /// An empty file the hook (privproc's user) can write: its log.
    fn log(&self, name: &str) -> PathBuf {
        let p = self.path(name);
        std::fs::write(&p, "").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o666)).unwrap();
        p
    }
}

impl Drop for SafeDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A hook that appends to `log`, for each run, `---`, its environment as
/// the kernel gave it (`/proc/self/environ`, not what a shell adds), and
/// facts about itself as `@name=value` lines: ids, capability sets,
/// ignored and blocked signals, working directory, and where each
/// descriptor it was given points (`@fdN=target`).
fn recording_hook(dir: &SafeDir, log: &Path) -> PathBuf {
    dir.hook(
        "client-hook",
        &format!(
            r#"LOG={log}
# The signals as exec left them, read before anything runs (the shell
# blocks them all while it waits for a child).
sigs=
while read -r k v; do
    case $k in SigIgn:|SigBlk:) sigs="$sigs @${{k%:}}=$v" ;; esac
done < /proc/$$/status
# Our descriptors as we got them (the substitution's pipe adds one).
fds=$(ls -l /proc/$$/fd)
{{
echo ---
tr '\0' '\n' < /proc/$$/environ
for f in Uid Gid Groups CapInh CapPrm CapEff CapBnd CapAmb NoNewPrivs; do
    sed -n "s/^$f:[[:space:]]*/@$f=/p" /proc/$$/status
done
for s in $sigs; do echo "$s"; done
echo "@cwd=$(readlink /proc/$$/cwd)"
echo "$fds" | sed -n 's/.* \([0-9][0-9]*\) -> \(.*\)$/@fd\1=\2/p'
}} >> "$LOG"
"#,
            log = log.display()
        ),
    )
}

/// The environment part of a run of [`recording_hook`]'s log.
fn env_keys(run: &BTreeMap<String, String>) -> BTreeSet<String> {
    run.keys()
        .filter(|k| !k.starts_with('@'))
        .cloned()
        .collect()
}

fn keys(list: &[&str]) -> BTreeSet<String> {
    list.iter().map(|s| s.to_string()).collect()
}

fn hook_gets_the_c_environment() {
    let dir = SafeDir::new("env");
    let log = dir.log("log");
    let hook = recording_hook(&dir, &log);

    let ns = Netns::new("hook");
    let ifindex = ns.ifindex();
    let before = ns.snapshot();
    // A variable of privproc's own environment must not reach the hook,
    // nor a signal its parent ignored (an ignored SIGCHLD would even reap
    // the hook behind privproc's back).
    let mut pp = Privproc::start_with(&ns, &["--hook", hook.to_str().unwrap()], |c| {
        c.env("LEAK_CANARY", "1");
        // SAFETY: signal is async-signal-safe.
        unsafe {
            c.pre_exec(|| {
                nix::libc::signal(nix::libc::SIGUSR1, nix::libc::SIG_IGN);
                nix::libc::signal(nix::libc::SIGCHLD, nix::libc::SIG_IGN);
                Ok(())
            });
        }
    });
    assert_eq!(pp.ask(&up(ifindex, ADDR_A, 1280)), Reply::Ok);
    assert_eq!(pp.status_field("CapEff:"), NET_ADMIN);
    assert_eq!(pp.ask(&up(ifindex, ADDR_B, 1400)), Reply::Ok);
    assert_eq!(pp.ask(&Request::Down { ifindex }), Reply::Ok);
    // The hook did nothing to the interface, and neither did privproc.
    assert_eq!(ns.snapshot(), before);
    drop(pp.sock.shutdown(Shutdown::Both));
    assert!(pp.wait().success());
    // At the end, privproc deletes it.
    assert!(ns.iface_gone(), "the interface outlived privproc");

    let runs = read_hook_log(&log);
    let get = |i: usize, k: &str| runs[i].get(k).map(String::as_str);
    assert_eq!(runs.len(), 4, "{runs:#?}");
    let idx = ifindex.to_string();
    let (uid, gid) = ids_of(TEST_USER);
    let four = |n: u32| format!("{n}\t{n}\t{n}\t{n}");
    for (i, run) in runs.iter().enumerate() {
        assert_eq!(run.get("IFACE").map(String::as_str), Some(IFACE), "run {i}");
        assert_eq!(run.get("IFINDEX"), Some(&idx), "run {i}");
        assert_eq!(
            get(i, "PATH"),
            Some("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"),
            "run {i}"
        );
        // privproc's user, CAP_NET_ADMIN and nothing else, no way to more.
        assert_eq!(get(i, "@Uid"), Some(four(uid).as_str()), "run {i}");
        assert_eq!(get(i, "@Gid"), Some(four(gid).as_str()), "run {i}");
        assert_eq!(
            get(i, "@Groups").map(str::trim),
            Some(gid.to_string().as_str()),
            "run {i}"
        );
        for set in ["@CapEff", "@CapPrm", "@CapInh", "@CapAmb", "@CapBnd"] {
            assert_eq!(get(i, set), Some(NET_ADMIN), "run {i}: {set}");
        }
        assert_eq!(get(i, "@NoNewPrivs"), Some("1"), "run {i}");
        // No signal ignored (privproc ignores SIGTERM, SIGINT, SIGHUP and
        // SIGPIPE) nor blocked.
        for set in ["@SigIgn", "@SigBlk"] {
            assert_eq!(get(i, set), Some("0000000000000000"), "run {i}: {set}");
        }
        assert_eq!(get(i, "@cwd"), Some("/"), "run {i}");
        assert_eq!(get(i, "@fd0"), Some("/dev/null"), "run {i}");
        for fd in ["@fd1", "@fd2"] {
            assert!(
                get(i, fd).unwrap_or("").starts_with("pipe:"),
                "run {i}: {run:#?}"
            );
        }
        assert!(
            !run.iter()
                .any(|(k, v)| k.starts_with("@fd") && v.starts_with("socket:")),
            "run {i}: a socket reached the hook: {run:#?}"
        );
    }
    // Exactly the C tool's variables and PATH, unset when without value:
    // nothing from privproc's environment (LEAK_CANARY), nothing else.
    let up_keys = [
        "PATH",
        "STATE",
        "IFACE",
        "IFINDEX",
        "ADDRESS",
        "LLADDRESS",
        "MTU",
        "OLD_STATE",
    ];
    let old = ["OLD_ADDRESS", "OLD_LLADDRESS", "OLD_MTU"];
    let down_keys = ["PATH", "STATE", "IFACE", "IFINDEX", "OLD_STATE"];
    let expected = [
        keys(&up_keys),
        keys(&up_keys).union(&keys(&old)).cloned().collect(),
        keys(&down_keys).union(&keys(&old)).cloned().collect(),
        keys(&down_keys),
    ];
    for (i, want) in expected.iter().enumerate() {
        assert_eq!(
            &env_keys(&runs[i]),
            want,
            "run {i}: the hook's whole environment"
        );
    }
    let ll = "fe80::ffff:ffff:ffff";
    // First up.
    assert_eq!(get(0, "STATE"), Some("up"));
    assert_eq!(get(0, "ADDRESS"), Some(ADDR_A));
    assert_eq!(get(0, "LLADDRESS"), Some(ll));
    assert_eq!(get(0, "MTU"), Some("1280"));
    assert_eq!(get(0, "OLD_STATE"), Some("down"));
    // New address: the old values in OLD_*.
    assert_eq!(get(1, "STATE"), Some("up"));
    assert_eq!(get(1, "ADDRESS"), Some(ADDR_B));
    assert_eq!(get(1, "MTU"), Some("1400"));
    assert_eq!(get(1, "OLD_STATE"), Some("up"));
    assert_eq!(get(1, "OLD_ADDRESS"), Some(ADDR_A));
    assert_eq!(get(1, "OLD_LLADDRESS"), Some(ll));
    assert_eq!(get(1, "OLD_MTU"), Some("1280"));
    // Down: no address any more.
    assert_eq!(get(2, "STATE"), Some("down"));
    assert_eq!(get(2, "OLD_STATE"), Some("up"));
    assert_eq!(get(2, "OLD_ADDRESS"), Some(ADDR_B));
    // miredo gone: destroy (down already, not said twice).
    assert_eq!(get(3, "STATE"), Some("destroy"));
    assert_eq!(get(3, "OLD_STATE"), Some("down"));
}

/// privproc runs as its user (all four uids and gids, its group alone)
/// with CAP_NET_ADMIN alone in the effective, permitted and bounding sets,
/// no_new_privs, not dumpable (its /proc entries then belong to root); the
/// inheritable and ambient sets hold CAP_NET_ADMIN with a hook, nothing
/// without.
fn runs_as_the_user_with_net_admin_only() {
    let ns = Netns::new("ids");
    let dir = SafeDir::new("ids");
    let hook = dir.hook("hook", "exit 0\n");
    for (with_hook, passed_on) in [(false, NO_CAPS), (true, NET_ADMIN)] {
        let args: Vec<&str> = if with_hook {
            vec!["--hook", hook.to_str().unwrap()]
        } else {
            vec!["--no-hook"]
        };
        let mut pp = Privproc::start(&ns, &args);
        let ifindex = ns.ifindex();
        // Once it answers, it has dropped everything.
        assert_eq!(pp.ask(&up(ifindex, ADDR_A, 1280)), Reply::Ok);
        let what = if with_hook { "with a hook" } else { "without" };
        assert_runs_as(pp.pid(), TEST_USER);
        assert_eq!(pp.status_field("CapEff:"), NET_ADMIN, "{what}");
        assert_eq!(pp.status_field("CapPrm:"), NET_ADMIN, "{what}");
        assert_eq!(pp.status_field("CapBnd:"), NET_ADMIN, "{what}");
        assert_eq!(pp.status_field("CapInh:"), passed_on, "{what}");
        assert_eq!(pp.status_field("CapAmb:"), passed_on, "{what}");
        assert_eq!(pp.status_field("NoNewPrivs:"), "1", "{what}");
        // Not dumpable: its /proc entries belong to root, not to its user.
        for entry in ["fd", "environ", "mem"] {
            let m = std::fs::metadata(format!("/proc/{}/{entry}", pp.pid())).unwrap();
            assert_eq!(
                m.uid(),
                0,
                "{what}: /proc/PID/{entry} of a non-dumpable process"
            );
        }
        drop(pp.sock.shutdown(Shutdown::Both));
        let (st, log) = pp.wait_with_log();
        assert!(st.success(), "{what}: {log}");
        assert!(log.contains("CAP_NET_ADMIN only"), "{log}");
    }
}

/// A need of `lab_main!`: the default user of privproc exists (CI creates
/// it).
fn privproc_user() -> Option<String> {
    match nix::unistd::User::from_name("miredo-privproc") {
        Ok(Some(u)) if !u.uid.is_root() => None,
        _ => Some("no user miredo-privproc (useradd --system miredo-privproc)".into()),
    }
}

/// Without --user, privproc becomes miredo-privproc.
fn runs_as_miredo_privproc_by_default() {
    let ns = Netns::new("default");
    let ifindex = ns.ifindex();
    let (mut sock, theirs) = UnixStream::pair().unwrap();
    let mut child = Command::new("ip")
        .args(["netns", "exec", &ns.name, BIN, "-i", IFACE, "--no-hook"])
        .stdin(Stdio::from(OwnedFd::from(theirs)))
        .spawn()
        .unwrap();
    sock.set_read_timeout(Some(WAIT)).unwrap();
    assert_eq!(hello(&mut sock), privsep::Hello::ours());
    privsep::write_frame(&mut sock, &up(ifindex, ADDR_A, 1280)).unwrap();
    assert_eq!(
        privsep::read_frame::<_, Reply>(&mut sock).unwrap(),
        Reply::Ok
    );
    assert_runs_as(child.id(), "miredo-privproc");
    drop(sock);
    assert!(child.wait().unwrap().success());
}

/// Root, an unknown user and a user whose group is root's are refused
/// before anything is done (exit 2), with a message.
fn refuses_root_and_unknown_users() {
    let ns = Netns::new("users");
    for (user, why) in [
        ("root", "uid 0"),
        ("0", "uid 0"),
        ("no-such-user-pp", "no-such-user-pp"),
    ] {
        let mut pp = Privproc::start(&ns, &["--no-hook", "--user", user]);
        let (st, log) = pp.wait_with_log();
        assert_eq!(st.code(), Some(2), "--user {user}: {log}");
        assert!(log.contains(why), "--user {user}: {log}");
    }
}

/// A descriptor privproc inherits (open, without close-on-exec) is closed
/// at its start: neither privproc nor its hook has it.
fn no_inherited_descriptor_reaches_privproc_or_the_hook() {
    let dir = SafeDir::new("fds");
    let log = dir.log("log");
    let hook = recording_hook(&dir, &log);
    let canary = dir.path(&marker("fdcanary"));
    std::fs::write(&canary, "secret").unwrap();
    let file = std::fs::File::open(&canary).unwrap();
    let raw = file.as_raw_fd();
    let canary_name = canary.display().to_string();
    // Passed as fd 42 without close-on-exec (dup2 clears it), as a careless
    // parent would.
    let inherit = move |c: &mut Command| {
        // SAFETY: dup2 is async-signal-safe.
        unsafe {
            c.pre_exec(move || {
                if nix::libc::dup2(raw, 42) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    };
    // Control: the same setup does pass it to a program that keeps it.
    let mut ls = Command::new("ls");
    ls.args(["-l", "/proc/self/fd"]);
    inherit(&mut ls);
    let listed = String::from_utf8_lossy(&ls.output().unwrap().stdout).into_owned();
    assert!(listed.contains(&canary_name), "control: {listed}");

    let ns = Netns::new("fds");
    let ifindex = ns.ifindex();
    let mut pp = Privproc::start_with(&ns, &["--hook", hook.to_str().unwrap()], inherit);
    assert_eq!(pp.ask(&up(ifindex, ADDR_A, 1280)), Reply::Ok);
    let fds = descriptors_of(pp.pid());
    assert!(
        !fds.iter().any(|(_, t)| t.contains(&canary_name)),
        "privproc has the inherited descriptor: {fds:?}"
    );
    assert!(!fds.iter().any(|(n, _)| *n == 42), "{fds:?}");
    drop(pp.sock.shutdown(Shutdown::Both));
    assert!(pp.wait().success());
    drop(file);
    let runs = read_hook_log(&log);
    assert_eq!(runs.len(), 3, "{runs:#?}");
    for (i, run) in runs.iter().enumerate() {
        let fds: Vec<_> = run.iter().filter(|(k, _)| k.starts_with("@fd")).collect();
        assert!(fds.len() >= 3, "run {i}: {run:#?}");
        assert!(
            !fds.iter()
                .any(|(k, v)| v.contains(&canary_name) || *k == "@fd42"),
            "run {i}: the hook has the inherited descriptor: {fds:?}"
        );
    }
}

/// A hook that starts sleepers (one in its process group, one in a new
/// session, one in a new session through a double fork) and then hangs is killed with all
/// of them at the limit: none of their processes is left, privproc has no
/// child left (not even a zombie), and it answers in time.
fn a_hook_is_killed_whole_at_the_limit() {
    let dir = SafeDir::new("limit");
    let mark = marker("limit");
    let sleeper = dir.path(&format!("sleep-{mark}"));
    std::os::unix::fs::symlink("/bin/sleep", &sleeper).unwrap();
    let pids = dir.log("pids");
    let s = sleeper.display();
    let p = pids.display();
    let hook = dir.hook(
        "hook",
        &format!(
            "{s} 600 &\necho $! >> {p}\n\
             setsid {s} 600 &\necho $! >> {p}\n\
             ( setsid {s} 600 & echo $! >> {p} ) &\n\
             echo started\n\
             {s} 600\n"
        ),
    );
    let ns = Netns::new("limit");
    let ifindex = ns.ifindex();
    let mut pp = Privproc::start(
        &ns,
        &["--hook", hook.to_str().unwrap(), "--hook-timeout-ms", "700"],
    );
    let start = Instant::now();
    let reply = pp.ask(&up(ifindex, ADDR_A, 1280));
    let took = start.elapsed();
    match &reply {
        Reply::Failed(why) => assert!(why.contains("killed after"), "{why}"),
        other => panic!("expected a failure, got {other:?}"),
    }
    assert!(took < Duration::from_secs(4), "answered after {took:?}");
    let started = std::fs::read_to_string(&pids).unwrap();
    assert_eq!(
        started.lines().count(),
        3,
        "the sleepers did not start: {started:?}"
    );
    // Everything is gone by the time privproc answers.
    let left = processes_with(&mark);
    assert!(left.is_empty(), "left running: {left:?}\n{}", pp.log());
    let kids = children_of(pp.pid());
    assert!(kids.is_empty(), "privproc still has children: {kids:?}");
    for pid in started.lines() {
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists(),
            "sleeper {pid} still exists"
        );
    }
    drop(pp.sock.shutdown(Shutdown::Both));
    let (st, log) = pp.wait_with_log();
    // down and destroy hang too, and are killed too.
    assert!(st.success(), "{log}");
    assert!(log.contains("killed after"), "{log}");
    assert!(processes_with(&mark).is_empty());
}

/// A hook that exits leaving processes in the background (which hold its
/// output pipe) is answered at once, not after the limit, and what it left
/// is killed and reaped.
fn a_hook_leaves_nothing_running_and_does_not_hold_privproc() {
    let dir = SafeDir::new("bg");
    let mark = marker("bg");
    let sleeper = dir.path(&format!("sleep-{mark}"));
    std::os::unix::fs::symlink("/bin/sleep", &sleeper).unwrap();
    let s = sleeper.display();
    let hook = dir.hook("hook", &format!("{s} 600 &\nsetsid {s} 600 &\nexit 0\n"));
    let ns = Netns::new("bg");
    let ifindex = ns.ifindex();
    let mut pp = Privproc::start(&ns, &["--hook", hook.to_str().unwrap()]);
    let start = Instant::now();
    assert_eq!(pp.ask(&up(ifindex, ADDR_A, 1280)), Reply::Ok);
    let took = start.elapsed();
    // The limit is 8 s: the pipe the sleepers hold did not keep privproc.
    assert!(took < Duration::from_secs(3), "answered after {took:?}");
    let left = processes_with(&mark);
    assert!(left.is_empty(), "left running: {left:?}");
    assert!(children_of(pp.pid()).is_empty());
    let log = pp.log_with("left behind killed");
    assert!(log.contains("left behind killed"), "{log}");
    drop(pp.sock.shutdown(Shutdown::Both));
    assert!(pp.wait().success());
    assert!(processes_with(&mark).is_empty());
}

/// What a hook writes on its standard output and error is logged
/// (--foreground: on privproc's standard error), line by line, bounded per
/// line and per run.
fn the_hook_output_is_logged_and_bounded() {
    let dir = SafeDir::new("out");
    let mark = marker("out");
    let hook = dir.hook(
        "hook",
        &format!(
            "echo out-{mark}\necho err-{mark} >&2\n\
             test \"$STATE\" = up || {{ printf 'no newline-{mark}'; exit 0; }}\n\
             head -c 3000 /dev/zero | tr '\\0' L; echo\n\
             head -c 200000 /dev/zero | tr '\\0' x\nexit 0\n"
        ),
    );
    let ns = Netns::new("out");
    let ifindex = ns.ifindex();
    let mut pp = Privproc::start(&ns, &["--hook", hook.to_str().unwrap()]);
    assert_eq!(pp.ask(&up(ifindex, ADDR_A, 1280)), Reply::Ok);
    drop(pp.sock.shutdown(Shutdown::Both));
    let (st, log) = pp.wait_with_log();
    assert!(st.success(), "{log}");
    for line in [
        format!("(up): out-{mark}"),
        format!("(up): err-{mark}"),
        format!("(down): out-{mark}"),
        format!("(down): no newline-{mark}"),
        format!("(destroy): err-{mark}"),
    ] {
        assert!(
            log.contains(&line),
            "{line} not logged:\n{}",
            &log[..log.len().min(4000)]
        );
    }
    // The 3000-byte line is cut at 1000 bytes, with a note.
    let long = log
        .lines()
        .find(|l| l.contains("LLLL"))
        .expect("the long line");
    assert_eq!(long.matches('L').count(), 1000, "{long}");
    assert!(
        long.contains("2000 more bytes of this line dropped"),
        "{long}"
    );
    // At most 16 KiB logged per run, the rest counted.
    assert!(
        log.contains("more bytes of output dropped"),
        "{}",
        &log[log.len() - 500..]
    );
    assert!(log.len() < 40_000, "{} bytes logged", log.len());
}

/// A need of `lab_main!`: `unshare` (util-linux), for a private /dev.
fn unshare() -> Option<String> {
    match Command::new("unshare").arg("--version").output() {
        Ok(o) if o.status.success() => None,
        _ => Some("no unshare (apt-get install util-linux)".into()),
    }
}

/// Detached (no --foreground, standard error on /dev/null), privproc's
/// messages and its hook's output reach syslog, with the facility asked
/// for. privproc runs in a mount namespace whose /dev/log is our socket.
fn messages_and_hook_output_reach_syslog() {
    let dir = SafeDir::new("syslog");
    let mark = marker("syslog");
    let hook = dir.hook("hook", &format!("echo \"syslog-{mark} $STATE\"\n"));
    let sock_path = dir.path("log");
    let syslog = std::os::unix::net::UnixDatagram::bind(&sock_path).unwrap();
    std::fs::set_permissions(&sock_path, std::fs::Permissions::from_mode(0o666)).unwrap();
    syslog
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let ns = Netns::new("syslog");
    let ifindex = ns.ifindex();
    let script = format!(
        "mount --make-rprivate / && mount -t tmpfs -o mode=755 none /dev && \
         mknod -m 666 /dev/null c 1 3 && touch /dev/log && mount --bind {sock} /dev/log && \
         exec ip netns exec {ns} {BIN} -i {IFACE} --user {TEST_USER} --hook {hook} \
         --syslog-facility local3",
        sock = sock_path.display(),
        ns = ns.name,
        hook = hook.display(),
    );
    let (mut sock, theirs) = UnixStream::pair().unwrap();
    let mut child = Command::new("unshare")
        .args(["-m", "sh", "-c", &script])
        .stdin(Stdio::from(OwnedFd::from(theirs)))
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    sock.set_read_timeout(Some(WAIT)).unwrap();
    assert_eq!(hello(&mut sock), privsep::Hello::ours());
    privsep::write_frame(&mut sock, &up(ifindex, ADDR_A, 1280)).unwrap();
    assert_eq!(
        privsep::read_frame::<_, Reply>(&mut sock).unwrap(),
        Reply::Ok
    );
    // A refused request ends it, logged as an error.
    privsep::write_frame(&mut sock, &up(ifindex + 1, ADDR_A, 1280)).unwrap();
    let _ = privsep::read_frame::<_, Reply>(&mut sock);
    assert_eq!(child.wait().unwrap().code(), Some(1));
    let mut got = Vec::new();
    let mut buf = [0u8; 2048];
    while let Ok(n) = syslog.recv(&mut buf) {
        got.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
    // local3 is facility 19: info is <158>, err <155>.
    let has = |prio: &str, text: &str| {
        got.iter()
            .any(|m| m.starts_with(prio) && m.contains("miredo-privproc[") && m.contains(text))
    };
    assert!(has("<158>", "CAP_NET_ADMIN only"), "{got:#?}");
    assert!(has("<158>", &format!("(up): syslog-{mark} up")), "{got:#?}");
    assert!(has("<155>", "refused"), "{got:#?}");
}

/// A hook in a directory that someone else than root could change is
/// refused at start, naming the directory: writable by others (sticky or
/// not, as /tmp), owned by another user, or reached through a symbolic
/// link into such a place; and a hook made unsafe while privproc runs is
/// refused at its next run.
fn refuses_a_hook_in_an_unsafe_directory_naming_it() {
    let base = SafeDir::new("dirs");
    let ns = Netns::new("dirs");
    let make = |dir: &Path| {
        std::fs::create_dir_all(dir).unwrap();
        let hook = dir.join("hook");
        std::fs::write(&hook, "#!/bin/sh\nexit 0\n").unwrap();
        std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).unwrap();
        hook
    };
    let writable = base.path("open");
    let hook_w = make(&writable);
    std::fs::set_permissions(&writable, std::fs::Permissions::from_mode(0o777)).unwrap();
    let foreign = base.path("foreign");
    let hook_f = make(&foreign);
    let (uid, gid) = ids_of(TEST_USER);
    nix::unistd::chown(
        &foreign,
        Some(nix::unistd::Uid::from_raw(uid)),
        Some(nix::unistd::Gid::from_raw(gid)),
    )
    .unwrap();
    let tmp = PathBuf::from(format!("/tmp/{}", marker("tmp")));
    let _tmp_guard = SafeDir(tmp.clone());
    let hook_t = make(&tmp);
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755)).unwrap();
    let link = base.path("link");
    std::os::unix::fs::symlink(&tmp, &link).unwrap();
    let hook_l = link.join("hook");
    let cases = [
        (
            hook_w,
            format!(
                "directory {}: writable by group or others",
                writable.display()
            ),
        ),
        (
            hook_f,
            format!("directory {}: owned by uid {uid}", foreign.display()),
        ),
        (
            hook_t.clone(),
            "directory /tmp: writable by group or others, mode 1777".to_string(),
        ),
        (
            hook_l,
            "directory /tmp: writable by group or others".to_string(),
        ),
    ];
    for (hook, why) in cases {
        let mut pp = Privproc::start(&ns, &["--hook", hook.to_str().unwrap()]);
        let (st, log) = pp.wait_with_log();
        assert_eq!(st.code(), Some(2), "{}: {log}", hook.display());
        assert!(
            log.contains(&why),
            "{}: expected {why:?} in {log}",
            hook.display()
        );
    }

    // Safe at start, made unsafe later: refused at the next run.
    let good_dir = base.path("good");
    let good = make(&good_dir);
    let ifindex = ns.ifindex();
    let mut pp = Privproc::start(&ns, &["--hook", good.to_str().unwrap()]);
    assert_eq!(pp.ask(&up(ifindex, ADDR_A, 1280)), Reply::Ok);
    std::fs::set_permissions(&good_dir, std::fs::Permissions::from_mode(0o775)).unwrap();
    match pp.ask(&up(ifindex, ADDR_B, 1280)) {
        Reply::Failed(why) => assert!(
            why.contains(&format!("directory {}: writable", good_dir.display())),
            "{why}"
        ),
        other => panic!("expected a failure, got {other:?}"),
    }
    std::fs::set_permissions(&good_dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    assert_eq!(pp.ask(&up(ifindex, ADDR_B, 1280)), Reply::Ok);
}

/// SIGTERM, SIGINT and SIGHUP (a service stop, a terminal) leave privproc
/// running; when its input ends it runs the hook's down and destroy and
/// exits.
fn stop_signals_are_ignored_until_the_input_ends() {
    let dir = SafeDir::new("sig");
    let log = dir.log("log");
    let hook = recording_hook(&dir, &log);
    let ns = Netns::new("sig");
    let ifindex = ns.ifindex();
    let mut pp = Privproc::start(&ns, &["--hook", hook.to_str().unwrap()]);
    assert_eq!(pp.ask(&up(ifindex, ADDR_A, 1280)), Reply::Ok);
    let pid = nix::unistd::Pid::from_raw(pp.pid() as i32);
    for sig in [
        nix::sys::signal::Signal::SIGTERM,
        nix::sys::signal::Signal::SIGINT,
        nix::sys::signal::Signal::SIGHUP,
    ] {
        nix::sys::signal::kill(pid, sig).unwrap();
    }
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        pp.child.try_wait().unwrap().is_none(),
        "privproc died of a signal"
    );
    assert_eq!(pp.ask(&up(ifindex, ADDR_B, 1280)), Reply::Ok);
    drop(pp.sock.shutdown(Shutdown::Both));
    let (st, out) = pp.wait_with_log();
    assert!(st.success(), "{st}: {out}");
    let runs = read_hook_log(&log);
    let states: Vec<_> = runs
        .iter()
        .map(|r| r.get("STATE").cloned().unwrap_or_default())
        .collect();
    assert_eq!(states, ["up", "up", "down", "destroy"]);
}

fn refuses_to_start_with_an_unsafe_hook_or_a_non_socket_stdin() {
    let ns = Netns::new("start");
    let dir = SafeDir::new("bad");
    let hook = dir.hook("hook", "exit 0\n");
    std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o777)).unwrap();
    let mut pp = Privproc::start(&ns, &["--hook", hook.to_str().unwrap()]);
    let (st, log) = pp.wait_with_log();
    assert_eq!(st.code(), Some(2));
    assert!(
        log.contains("writable by group or others, mode 777"),
        "{log}"
    );
    // Not executable by privproc's user.
    std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o744)).unwrap();
    let mut pp = Privproc::start(&ns, &["--hook", hook.to_str().unwrap()]);
    let (st, log) = pp.wait_with_log();
    assert_eq!(st.code(), Some(2));
    assert!(
        log.contains(&format!("not executable by {TEST_USER}")),
        "{log}"
    );

    let mut pp = Privproc::start(&ns, &["--no-hook"]);
    pp.greet();
    drop(pp.sock.shutdown(Shutdown::Both));
    assert!(pp.wait().success());

    // stdin a pipe, not a socket.
    let st = Command::new("ip")
        .args([
            "netns",
            "exec",
            &ns.name,
            BIN,
            "--interface",
            IFACE,
            "--no-hook",
            "--user",
            TEST_USER,
        ])
        .stdin(Stdio::piped())
        .status()
        .unwrap();
    assert_eq!(st.code(), Some(2));
    // An interface that does not exist.
    let (_ours, theirs) = UnixStream::pair().unwrap();
    let st = Command::new("ip")
        .args([
            "netns",
            "exec",
            &ns.name,
            BIN,
            "--interface",
            "nosuch0",
            "--no-hook",
            "--user",
            TEST_USER,
        ])
        .stdin(Stdio::from(OwnedFd::from(theirs)))
        .status()
        .unwrap();
    assert_eq!(st.code(), Some(2));
}

/// A need of `lab_main!`: Debian's client hook, and the `/sbin/ip` it runs.
fn debian_hook() -> Option<String> {
    if Path::new("/etc/miredo/client-hook").exists() && Path::new("/sbin/ip").exists() {
        return None;
    }
    Some("no /etc/miredo/client-hook (or no /sbin/ip)".into())
}

/// The hook of Debian's miredo package, when installed, works as
/// privproc's user with CAP_NET_ADMIN alone (the privilege trade-off of
/// the man page).
fn debian_hook_works_with_net_admin_only() {
    let ns = Netns::new("debhook");
    let ifindex = ns.ifindex();
    let mut pp = Privproc::start(&ns, &["--hook", "/etc/miredo/client-hook"]);
    assert_eq!(pp.ask(&up(ifindex, ADDR_A, 1280)), Reply::Ok);
    assert_runs_as(pp.pid(), TEST_USER);
    assert_eq!(pp.status_field("CapEff:"), NET_ADMIN);
    assert_eq!(pp.status_field("CapBnd:"), NET_ADMIN);
    assert_eq!(pp.status_field("CapAmb:"), NET_ADMIN);
    let mut addrs = ns.addrs();
    addrs.sort();
    assert_eq!(
        addrs,
        [format!("{ADDR_A}/32"), "fe80::ffff:ffff:ffff/64".into()]
    );
    assert!(ns.routes().contains("metric 1029"), "{}", ns.routes());
    assert!(ns.is_up());
    assert_eq!(pp.ask(&up(ifindex, ADDR_B, 1280)), Reply::Ok);
    let mut addrs = ns.addrs();
    addrs.sort();
    assert_eq!(
        addrs,
        [format!("{ADDR_B}/32"), "fe80::ffff:ffff:ffff/64".into()]
    );
    drop(pp.sock.shutdown(Shutdown::Both));
    let (st, log) = pp.wait_with_log();
    assert!(st.success(), "{log}");
    assert!(ns.iface_gone(), "the interface outlived privproc");
}

teredo_lab::lab_main! {
    needs(netns): [
        up_change_down_close,
        refuses_then_removes_the_interface,
        a_relay_helper_refuses_every_request_and_removes_the_interface,
        hook_gets_the_c_environment,
        runs_as_the_user_with_net_admin_only,
        refuses_root_and_unknown_users,
        no_inherited_descriptor_reaches_privproc_or_the_hook,
        a_hook_is_killed_whole_at_the_limit,
        a_hook_leaves_nothing_running_and_does_not_hold_privproc,
        the_hook_output_is_logged_and_bounded,
        refuses_a_hook_in_an_unsafe_directory_naming_it,
        stop_signals_are_ignored_until_the_input_ends,
        refuses_to_start_with_an_unsafe_hook_or_a_non_socket_stdin,
    ],
    needs(netns, privproc_user): [runs_as_miredo_privproc_by_default],
    needs(netns, unshare): [messages_and_hook_output_reach_syslog],
    needs(netns, debian_hook): [debian_hook_works_with_net_admin_only],
}
