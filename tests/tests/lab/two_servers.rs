//! Issue 26, item 5: two miredo-server instances on one host, each on its
//! own pair of addresses, each with its default status socket
//! (`/run/miredo/miredo-server-ADDR.sock`) and pid file
//! (`/run/miredo/miredo-server-ADDR.pid`), and `teredo-mire status --server`
//! finding each.
//!
//! `/run` is shared by every network namespace of the machine (and every
//! lab test running on it), so the addresses are unique to the world
//! (198.19.X.Y from its prefix, outside the worlds' 198.18.0.0/16), and
//! the files they name are removed at the end, whatever happens; the world
//! stops every daemon by its pid.

use std::hash::{Hash, Hasher};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use teredo_lab::cmd::run_with_timeout;
use teredo_lab::steps::{teredo_mire, teredo_mire_built};
use teredo_lab::{report, wait_until, CmdOutput, Daemon, Impl, Netns, World, SERVER_V4};

/// Three address pairs for the world: A and B configured on the server
/// host, C not (a server on it cannot start).
struct Pairs {
    a: (Ipv4Addr, Ipv4Addr),
    b: (Ipv4Addr, Ipv4Addr),
    c: (Ipv4Addr, Ipv4Addr),
}

/// 198.19.X.(8M+1 ... 8M+6), X and M from the world's prefix.
fn pairs_of(w: &World) -> Pairs {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    w.prefix().hash(&mut h);
    let v = h.finish();
    let x = (v & 0xff) as u8;
    let base = ((v >> 8) % 32) as u8 * 8;
    let ip = |n: u8| Ipv4Addr::new(198, 19, x, base + n);
    Pairs {
        a: (ip(1), ip(2)),
        b: (ip(3), ip(4)),
        c: (ip(5), ip(6)),
    }
}

fn socket_of(a: Ipv4Addr) -> PathBuf {
    PathBuf::from(format!("/run/miredo/miredo-server-{a}.sock"))
}

fn pidfile_of(a: Ipv4Addr) -> PathBuf {
    PathBuf::from(format!("/run/miredo/miredo-server-{a}.pid"))
}

/// The files in the machine's /run that the servers of this test make:
/// removed when dropped (after a failure too). Daemons never make them
/// again once started, so the order against the world's teardown does not
/// matter.
struct Leftovers(Vec<PathBuf>);

impl Drop for Leftovers {
    fn drop(&mut self) {
        for p in &self.0 {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// Starts our miredo-server in `ns` on `pair`, with its default status
/// socket and pid file (no --status-socket, no -p).
fn start(w: &World, ns: &Netns, label: &str, pair: (Ipv4Addr, Ipv4Addr)) -> Daemon {
    let conf = w.write_file(
        &format!("{label}.conf"),
        &format!(
            "ServerBindAddress {}\nServerBindAddress2 {}\n",
            pair.0, pair.1
        ),
    );
    let exe = Impl::Ours.miredo_server();
    w.spawn(
        ns,
        label,
        &[
            exe.display().to_string(),
            "-f".into(),
            "-c".into(),
            conf.display().to_string(),
        ],
    )
}

/// Whether a socket in `ns` listens on UDP `addr`:3544.
fn listens(ns: &Netns, addr: Ipv4Addr) -> bool {
    ns.run(&["ss", "-H", "-u", "-l", "-n"])
        .is_ok_and(|out| out.contains(&format!("{addr}:3544 ")))
}

/// `teredo-mire ARGS` on the host (the status sockets are files in the
/// shared /run/miredo: no namespace needed).
fn mire(args: &[&str]) -> CmdOutput {
    let mut argv = vec![teredo_mire().display().to_string()];
    argv.extend(args.iter().map(|s| s.to_string()));
    run_with_timeout(&argv, Duration::from_secs(20))
}

/// A field of a status page.
fn field(text: &str, key: &str) -> Option<String> {
    text.lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim() == key)
        .map(|(_, v)| v.trim().to_string())
}

fn is_socket(p: &Path) -> bool {
    use std::os::unix::fs::FileTypeExt;
    std::fs::symlink_metadata(p).is_ok_and(|m| m.file_type().is_socket())
}

fn two_servers_in_one_namespace_each_with_its_status_socket() {
    let test = "two_servers_in_one_namespace_each_with_its_status_socket";
    let w = World::build(test, &[]);
    let p = pairs_of(&w);
    let _leftovers = Leftovers(
        [p.a.0, p.b.0, p.c.0]
            .into_iter()
            .flat_map(|a| [socket_of(a), pidfile_of(a)])
            .collect(),
    );
    for a in [p.a.0, p.b.0, p.c.0] {
        assert!(
            !socket_of(a).exists(),
            "{} exists before the test",
            socket_of(a).display()
        );
    }
    let s_i = w.ifname("s-i");
    for a in [p.a.0, p.a.1, p.b.0, p.b.1] {
        w.srv()
            .ip(&format!("addr add {a}/32 dev {s_i}"))
            .unwrap_or_else(|e| panic!("adding {a}: {e}"));
    }

    // Both servers in the server host's namespace.
    let srv_a = start(&w, w.srv(), "server-a", p.a);
    let srv_b = start(&w, w.srv(), "server-b", p.b);
    let (sock_a, sock_b) = (socket_of(p.a.0), socket_of(p.b.0));
    let up = wait_until(Duration::from_secs(5), || {
        listens(w.srv(), p.a.0)
            && listens(w.srv(), p.a.1)
            && listens(w.srv(), p.b.0)
            && listens(w.srv(), p.b.1)
            && mire(&["status", "--server", &p.a.0.to_string()]).success()
            && mire(&["status", "--server", &p.b.0.to_string()]).success()
    });
    assert!(
        up,
        "the two servers are not both up after 5 s:\n--- a ---\n{}\n--- b ---\n{}",
        w.log_of(&srv_a),
        w.log_of(&srv_b)
    );
    assert!(w.is_running(&srv_a) && w.is_running(&srv_b));
    assert!(is_socket(&sock_a) && is_socket(&sock_b));
    // Each its own pid file, named after its address.
    for (d, a) in [(&srv_a, p.a.0), (&srv_b, p.b.0)] {
        let pid = std::fs::read_to_string(pidfile_of(a)).unwrap_or_default();
        assert_eq!(pid.trim(), d.pid.to_string(), "{}", pidfile_of(a).display());
    }

    // teredo-mire finds each (and perhaps other servers of the machine:
    // /run/miredo is everyone's), each under its address.
    let all = mire(&["status", "--server"]);
    assert!(all.success(), "teredo-mire status --server: {}", all.stderr);
    for (a, sock) in [(p.a.0, &sock_a), (p.b.0, &sock_b)] {
        let header = format!("==> {a} ({}) <==", sock.display());
        assert!(all.stdout.contains(&header), "no {header}:\n{}", all.stdout);
    }
    let json = mire(&["status", "--server", "--format", "json"]);
    assert!(json.success() && json.stdout.starts_with('['), "{json:?}");
    for a in [p.a.0, p.b.0] {
        assert!(
            json.stdout
                .contains(&format!("\"server-address\": \"{a}\"")),
            "{}",
            json.stdout
        );
    }
    let prom = mire(&["status", "--server", "--format", "prometheus"]);
    for a in [p.a.0, p.b.0] {
        let series = format!("teredo_server_workers{{server_address=\"{a}\"}} ");
        assert!(
            prom.stdout.contains(&series),
            "no {series}: {}",
            prom.stdout
        );
    }

    // A client qualifies with A only (teredo-mire probe from the host's
    // own address): A's status counts its solicitations, B's none, and
    // --server picks each by its primary or secondary address.
    let probe = w.srv().exec(
        &[
            teredo_mire().display().to_string(),
            "probe".into(),
            p.a.0.to_string(),
            "--bind".into(),
            format!("{SERVER_V4}:0"),
            "--no-nat-test".into(),
            "--no-gateway".into(),
            "--timeout".into(),
            "10".into(),
        ],
        Duration::from_secs(20),
    );
    assert!(probe.success(), "probe of {}: {probe:?}", p.a.0);
    let of = |a: Ipv4Addr| {
        let out = mire(&["status", "--server", &a.to_string()]);
        assert!(out.success(), "status --server {a}: {}", out.stderr);
        out.stdout
    };
    let (st_a, st_b) = (of(p.a.1), of(p.b.0));
    assert_eq!(field(&st_a, "server-address"), Some(p.a.0.to_string()));
    assert_eq!(field(&st_a, "server-address2"), Some(p.a.1.to_string()));
    assert_eq!(field(&st_b, "server-address"), Some(p.b.0.to_string()));
    let rs = |t: &str| field(t, "rs-received").and_then(|v| v.parse::<u64>().ok());
    assert!(rs(&st_a).is_some_and(|n| n >= 1), "{st_a}");
    assert_eq!(rs(&st_b), Some(0), "{st_b}");

    // A third server whose addresses the host does not have: refused, and
    // it leaves no status socket (nor pid file) behind.
    let srv_c = start(&w, w.srv(), "server-c", p.c);
    let stopped = wait_until(Duration::from_secs(5), || !w.is_running(&srv_c));
    let log_c = w.log_of(&srv_c);
    assert!(stopped, "a server on absent addresses runs:\n{log_c}");
    assert_eq!(
        w.stop(&srv_c, Duration::from_secs(1))
            .and_then(|s| s.code()),
        Some(1),
        "{log_c}"
    );
    assert!(
        log_c.contains(&format!("cannot bind UDP {}:3544", p.c.0)),
        "{log_c}"
    );
    assert!(
        !socket_of(p.c.0).exists() && !pidfile_of(p.c.0).exists(),
        "the refused server left files in /run:\n{log_c}"
    );

    // A server on A's addresses in another namespace (its own, so the
    // addresses bind): refused at the status socket A serves, which stays
    // A's.
    let r_i = w.ifname("r-i");
    for a in [p.a.0, p.a.1] {
        w.relay()
            .ip(&format!("addr add {a}/32 dev {r_i}"))
            .unwrap_or_else(|e| panic!("adding {a}: {e}"));
    }
    let dup = start(&w, w.relay(), "server-a-again", p.a);
    let stopped = wait_until(Duration::from_secs(8), || !w.is_running(&dup));
    let log_dup = w.log_of(&dup);
    assert!(stopped, "a second server on A's socket runs:\n{log_dup}");
    assert!(
        log_dup.contains(&sock_a.display().to_string())
            && log_dup.contains("another miredo-server answers on this status socket"),
        "{log_dup}"
    );
    let again = of(p.a.0);
    assert_eq!(
        field(&again, "server-address"),
        Some(p.a.0.to_string()),
        "A no longer answers: {again}"
    );
    assert!(w.is_running(&srv_a), "{}", w.log_of(&srv_a));

    // The same in that namespace with a status socket of its own: it gets
    // as far as the pid file, which A holds, and the socket it had bound
    // goes again.
    let own = w.trusted_dir().join("server-a-again.sock");
    let conf = w.dir().join("server-a-again.conf");
    let late = w.spawn(
        w.relay(),
        "server-a-pidfile",
        &[
            Impl::Ours.miredo_server().display().to_string(),
            "-f".into(),
            "-c".into(),
            conf.display().to_string(),
            "--status-socket".into(),
            own.display().to_string(),
        ],
    );
    let stopped = wait_until(Duration::from_secs(8), || !w.is_running(&late));
    let log_late = w.log_of(&late);
    assert!(stopped, "a second server on A's pid file runs:\n{log_late}");
    assert!(
        log_late.contains(&format!(
            "pid file {}: {} names process {}, which is running",
            pidfile_of(p.a.0).display(),
            pidfile_of(p.a.0).display(),
            srv_a.pid
        )),
        "{log_late}"
    );
    assert!(
        !own.exists(),
        "the refused server left its status socket {}",
        own.display()
    );
    assert_eq!(
        std::fs::read_to_string(pidfile_of(p.a.0))
            .unwrap_or_default()
            .trim(),
        srv_a.pid.to_string()
    );

    // Stopped, each leaves a socket nobody answers on, and says so.
    for d in [&srv_a, &srv_b] {
        let status = w.stop(d, Duration::from_secs(5));
        assert!(
            status.is_some_and(|s| s.success()),
            "{} did not stop cleanly ({status:?}):\n{}",
            d.label,
            w.log_of(d)
        );
    }
    let gone = mire(&["status", "--server", &p.b.0.to_string()]);
    assert_eq!(gone.status.and_then(|s| s.code()), Some(1), "{gone:?}");
    assert!(
        gone.stderr
            .contains(&format!("{} (nobody answers", sock_b.display())),
        "{}",
        gone.stderr
    );
    report(
        test,
        &format!(
            "{} and {} served side by side in one namespace ({} and {}); teredo-mire status --server showed both, picked each; a refused start left nothing in /run",
            p.a.0,
            p.b.0,
            sock_a.display(),
            sock_b.display()
        ),
    );
}

teredo_lab::lab_tests! {
    needs(root, ours, teredo_mire_built): [
        two_servers_in_one_namespace_each_with_its_status_socket,
    ],
}
