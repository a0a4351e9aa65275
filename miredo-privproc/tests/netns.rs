//! miredo-privproc against a real kernel: a network namespace and a TUN
//! device per test, privproc started inside it over a socketpair, the
//! result read back with `ip`. Needs root; without it the tests are
//! reported ignored, with the reason.

use std::collections::BTreeMap;
use std::io::Write;
use std::net::Shutdown;
use std::os::fd::OwnedFd;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use libteredo::privsep::{self, Refusal, Reply, Request};

const BIN: &str = env!("CARGO_BIN_EXE_miredo-privproc");
const IFACE: &str = "teredo";
const WAIT: Duration = Duration::from_secs(10);

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
        run(&mut ns.ip(&["tuntap", "add", "dev", IFACE, "mode", "tun"]));
        ns
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

/// A running privproc and our end of its socketpair; killed on drop.
struct Privproc {
    child: Child,
    sock: UnixStream,
}

impl Privproc {
    fn start(ns: &Netns, extra: &[&str]) -> Self {
        let (ours, theirs) = UnixStream::pair().unwrap();
        let child = Command::new("ip")
            .args(["netns", "exec", &ns.name, BIN, "--interface", IFACE])
            .args(extra)
            .stdin(Stdio::from(OwnedFd::from(theirs)))
            .spawn()
            .unwrap();
        ours.set_read_timeout(Some(WAIT)).unwrap();
        ours.set_write_timeout(Some(WAIT)).unwrap();
        Privproc { child, sock: ours }
    }

    fn ask(&mut self, req: &Request) -> Reply {
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

    fn status_field(&self, name: &str) -> String {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.trim().to_string())
            .unwrap_or_default()
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

    // Up again, then miredo goes away: privproc takes the interface down.
    assert_eq!(pp.ask(&up(ifindex, ADDR_A, 1280)), Reply::Ok);
    assert!(ns.is_up());
    pp.sock.shutdown(Shutdown::Both).unwrap();
    assert!(pp.wait().success());
    assert!(ns.addrs().is_empty(), "{:?}", ns.addrs());
    assert_eq!(ns.routes().trim(), "");
    assert!(!ns.is_up());
}

/// What a misbehaving miredo may send.
enum Bad {
    Request(Request),
    Bytes(Vec<u8>),
    /// Bytes, then the end of the stream.
    Truncated(Vec<u8>),
}

fn refuses_and_exits_without_touching_the_interface() {
    let ns = Netns::new("refuse");
    let ifindex = ns.ifindex();
    let good = privsep::encode(&up(ifindex, ADDR_A, 1280)).unwrap();
    let mut trailing = privsep::encode(&Request::Down { ifindex }).unwrap();
    trailing.push(0);
    trailing[1] += 1;
    let mut oversized = vec![0x10, 0x00];
    oversized.resize(2 + 4096, 0);
    let cases: Vec<(&str, Bad, Option<Refusal>)> = vec![
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
    ];

    // Something to keep: the interface is up with address A.
    let mut pp = Privproc::start(&ns, &["--no-hook"]);
    assert_eq!(pp.ask(&up(ifindex, ADDR_A, 1400)), Reply::Ok);
    drop(pp);
    let before = ns.snapshot();
    assert!(before.contains(ADDR_A), "{before}");

    for (what, bad, expected) in cases {
        let mut pp = Privproc::start(&ns, &["--no-hook"]);
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
        assert_eq!(ns.snapshot(), before, "{what} changed the interface");
    }
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

struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn hook_gets_the_c_environment() {
    let dir = TempDir(std::env::temp_dir().join(format!("pp-hook-{}", std::process::id())));
    std::fs::create_dir_all(&dir.0).unwrap();
    std::fs::set_permissions(&dir.0, std::fs::Permissions::from_mode(0o755)).unwrap();
    let log = dir.0.join("log");
    let hook = dir.0.join("client-hook");
    std::fs::write(
        &hook,
        format!(
            "#!/bin/sh\n{{ echo ---; env | grep -E '^(OLD_)?(STATE|IFACE|IFINDEX|ADDRESS|LLADDRESS|MTU)=' ; \
             sed -n 's/^CapEff:[[:space:]]*/HOOK_CAPEFF=/p' /proc/$$/status; }} >> {}\n",
            log.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).unwrap();

    let ns = Netns::new("hook");
    let ifindex = ns.ifindex();
    let before = ns.snapshot();
    let mut pp = Privproc::start(&ns, &["--hook", hook.to_str().unwrap()]);
    assert_eq!(pp.ask(&up(ifindex, ADDR_A, 1280)), Reply::Ok);
    assert_eq!(pp.status_field("CapEff:"), "0000000000001000");
    assert_eq!(pp.ask(&up(ifindex, ADDR_B, 1400)), Reply::Ok);
    assert_eq!(pp.ask(&Request::Down { ifindex }), Reply::Ok);
    drop(pp.sock.shutdown(Shutdown::Both));
    assert!(pp.wait().success());
    // The hook did nothing to the interface, and neither did privproc.
    assert_eq!(ns.snapshot(), before);

    let runs = read_hook_log(&log);
    let get = |i: usize, k: &str| runs[i].get(k).map(String::as_str);
    assert_eq!(runs.len(), 5, "{runs:#?}");
    let idx = ifindex.to_string();
    for (i, run) in runs.iter().enumerate() {
        assert_eq!(run.get("IFACE").map(String::as_str), Some(IFACE), "run {i}");
        assert_eq!(run.get("IFINDEX"), Some(&idx), "run {i}");
        // The hook runs with CAP_NET_ADMIN and nothing else.
        assert_eq!(get(i, "HOOK_CAPEFF"), Some("0000000000001000"), "run {i}");
    }
    let ll = "fe80::ffff:ffff:ffff";
    // First up.
    assert_eq!(get(0, "STATE"), Some("up"));
    assert_eq!(get(0, "ADDRESS"), Some(ADDR_A));
    assert_eq!(get(0, "LLADDRESS"), Some(ll));
    assert_eq!(get(0, "MTU"), Some("1280"));
    assert_eq!(get(0, "OLD_STATE"), Some("down"));
    assert_eq!(get(0, "OLD_ADDRESS"), None);
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
    assert_eq!(get(2, "ADDRESS"), None);
    assert_eq!(get(2, "MTU"), None);
    assert_eq!(get(2, "OLD_STATE"), Some("up"));
    assert_eq!(get(2, "OLD_ADDRESS"), Some(ADDR_B));
    // miredo gone: down, then destroy.
    assert_eq!(get(3, "STATE"), Some("down"));
    assert_eq!(get(3, "OLD_STATE"), Some("down"));
    assert_eq!(get(4, "STATE"), Some("destroy"));
    assert_eq!(get(4, "OLD_STATE"), Some("down"));
    assert_eq!(get(4, "ADDRESS"), None);
}

fn refuses_to_start_with_an_unsafe_hook_or_a_non_socket_stdin() {
    let ns = Netns::new("start");
    let dir = TempDir(std::env::temp_dir().join(format!("pp-bad-{}", std::process::id())));
    std::fs::create_dir_all(&dir.0).unwrap();
    let hook = dir.0.join("hook");
    std::fs::write(&hook, "#!/bin/sh\nexit 0\n").unwrap();
    std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o777)).unwrap();
    let mut pp = Privproc::start(&ns, &["--hook", hook.to_str().unwrap()]);
    assert_eq!(pp.wait().code(), Some(2));

    let mut pp = Privproc::start(&ns, &["--no-hook"]);
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

/// The hook of Debian's miredo package, when installed, works with
/// CAP_NET_ADMIN alone (the privilege trade-off of the man page).
fn debian_hook_works_with_net_admin_only() {
    let ns = Netns::new("debhook");
    let ifindex = ns.ifindex();
    let mut pp = Privproc::start(&ns, &["--hook", "/etc/miredo/client-hook"]);
    assert_eq!(pp.ask(&up(ifindex, ADDR_A, 1280)), Reply::Ok);
    assert_eq!(pp.status_field("CapEff:"), "0000000000001000");
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
    assert!(pp.wait().success());
    assert!(ns.addrs().is_empty(), "{:?}", ns.addrs());
    assert!(!ns.is_up());
}

teredo_lab::lab_main! {
    needs(netns): [
        up_change_down_close,
        refuses_and_exits_without_touching_the_interface,
        hook_gets_the_c_environment,
        refuses_to_start_with_an_unsafe_hook_or_a_non_socket_stdin,
    ],
    needs(netns, debian_hook): [debian_hook_works_with_net_admin_only],
}
