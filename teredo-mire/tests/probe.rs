//! `teredo-mire probe` against the C reference server (Debian's
//! miredo-server) in a two-namespace world:
//!
//! ```text
//! client ns: 198.18.0.2 --veth-- server ns: 198.18.1.1, 198.18.1.2 (+ .3, silent)
//! ```
//!
//! 198.18.0.0/15 counts as global for Teredo, so there is no NAT: the
//! mapped address is the client's own and the NAT test reports a cone.

mod common;

use common::{run, unique, Netns, Proc, TempDir, BIN};
use std::path::Path;
use std::process::{Command, Output};
use std::thread;
use std::time::{Duration, Instant};

const C_SERVER: &str = "/usr/sbin/miredo-server";

struct World {
    // Dropped in this order: the server first, then the namespaces.
    _server: Proc,
    client: Netns,
    _srv: Netns,
    _dir: TempDir,
}

/// A need of `lab_main!`: Debian's C miredo-server installed.
fn c_server() -> Option<String> {
    if Path::new(C_SERVER).exists() {
        return None;
    }
    Some(format!(
        "{C_SERVER} is not installed (Debian package miredo-server)"
    ))
}

fn world() -> World {
    let srv = Netns::new("mires");
    let cli = Netns::new("mirec");
    let (a, b) = (unique("mva"), unique("mvb"));
    let ok = Command::new("ip")
        .args([
            "link", "add", &a, "netns", &srv.name, "type", "veth", "peer", "name", &b,
        ])
        .args(["netns", &cli.name])
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "cannot create the veth pair");
    srv.ip(&["link", "set", &a, "up"]);
    cli.ip(&["link", "set", &b, "up"]);
    for addr in ["198.18.1.1/24", "198.18.1.2/24", "198.18.1.3/24"] {
        srv.ip(&["addr", "add", addr, "dev", &a]);
    }
    cli.ip(&["addr", "add", "198.18.0.2/24", "dev", &b]);
    srv.ip(&["route", "add", "198.18.0.0/24", "dev", &a]);
    cli.ip(&["route", "add", "198.18.1.0/24", "dev", &b]);

    let dir = TempDir::new("mire");
    let conf = dir.0.join("miredo-server.conf");
    std::fs::write(&conf, "ServerBindAddress 198.18.1.1\n").unwrap();
    let pid = dir.0.join("miredo-server.pid");
    let server = Proc::spawn(srv.command(C_SERVER).args([
        "-f",
        "-c",
        conf.to_str().unwrap(),
        "-p",
        pid.to_str().unwrap(),
    ]));
    // Ready when both addresses are bound (bounded wait).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let out = run(srv.command("ss").args(["-uan"]), Duration::from_secs(5));
        let text = String::from_utf8_lossy(&out.stdout);
        if text.contains("198.18.1.1:3544") && text.contains("198.18.1.2:3544") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "miredo-server did not start: {text}"
        );
        thread::sleep(Duration::from_millis(50));
    }
    World {
        _server: server,
        client: cli,
        _srv: srv,
        _dir: dir,
    }
}

fn probe(w: &World, args: &[&str], limit: Duration) -> (Output, String, String) {
    let out = run(w.client.command(BIN).arg("probe").args(args), limit);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (out, stdout, stderr)
}

/// The value of a `key: value` line.
fn value<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(": "))
}

fn qualifies_with_the_c_server() {
    let w = world();
    let (out, stdout, stderr) = probe(
        &w,
        &["198.18.1.1", "--no-nat-test", "--timeout", "10"],
        Duration::from_secs(30),
    );
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert_eq!(value(&stdout, "server"), Some("198.18.1.1"));
    assert_eq!(value(&stdout, "secondary server"), Some("198.18.1.2"));
    assert_eq!(value(&stdout, "mapped address"), Some("198.18.0.2"));
    let local_port = value(&stdout, "local")
        .and_then(|l| l.rsplit(':').next())
        .unwrap_or_default();
    assert_eq!(value(&stdout, "mapped port"), Some(local_port));
    assert_eq!(value(&stdout, "mtu"), Some("1280"));
    assert!(value(&stdout, "nat").is_none(), "no NAT test was asked for");
    let addr = value(&stdout, "teredo address").expect("a Teredo address");
    // Decode it with our own decoder: server and mapped address agree.
    let d = run(
        Command::new(BIN).args(["decode", addr]),
        Duration::from_secs(10),
    );
    let d = String::from_utf8_lossy(&d.stdout);
    assert_eq!(value(&d, "server"), Some("198.18.1.1"), "{d}");
    assert_eq!(value(&d, "mapped address"), Some("198.18.0.2"), "{d}");
    assert_eq!(value(&d, "mapped port"), Some(local_port), "{d}");
    assert_eq!(
        value(&d, "cone"),
        Some("no"),
        "RFC 5991: never the cone bit"
    );
    assert_eq!(value(&d, "rfc5991"), Some("valid"));
    let rtt = value(&stdout, "rtt").expect("an rtt line");
    eprintln!("probe of the C miredo-server: rtt {rtt}, address {addr}");
    let ms: f64 = rtt.trim_end_matches(" ms").parse().expect("rtt in ms");
    assert!(
        ms < 1000.0,
        "the first solicitation should be answered: {rtt}"
    );
}

fn nat_test_sees_no_nat_as_cone() {
    let w = world();
    let (out, stdout, stderr) = probe(
        &w,
        &["198.18.1.1", "--timeout", "10"],
        Duration::from_secs(120),
    );
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert_eq!(value(&stdout, "nat"), Some("cone"), "{stdout}\n{stderr}");
    assert!(stderr.contains("NAT test: cone bit set"), "{stderr}");
}

fn silent_server_fails() {
    let w = world();
    let start = Instant::now();
    let (out, stdout, stderr) = probe(
        &w,
        &["198.18.1.3", "--no-nat-test", "--timeout", "3"],
        Duration::from_secs(30),
    );
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(start.elapsed() < Duration::from_secs(20));
    assert!(value(&stdout, "teredo address").is_none());
    assert!(
        stderr.contains("no answer from 198.18.1.3:3544 within 3 s"),
        "{stderr}"
    );
}

fn unresolvable_server_fails() {
    // No namespace needed: the name is refused before anything is sent,
    // at once (not after --timeout), and the gateway is not asked either.
    // A name under .invalid never resolves (RFC 6761).
    for args in [
        &["probe", "no-such-host.invalid"][..],
        &["probe", "no-such-host.invalid", "--timeout", "30"],
        &["probe", "198.18.1.1", "--server2", "other.invalid"],
    ] {
        let start = Instant::now();
        let out = run(Command::new(BIN).args(args), Duration::from_secs(30));
        let took = start.elapsed();
        let err = String::from_utf8_lossy(&out.stderr);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        let name = args.iter().find(|a| a.ends_with(".invalid")).unwrap();
        assert_eq!(
            err,
            format!(
                "teredo-mire: cannot resolve {name}: \
                 a name under .invalid never resolves (RFC 6761)\n"
            ),
            "{args:?}"
        );
        assert_eq!(stdout, "", "{args:?}: nothing is probed or asked");
        assert!(
            took < Duration::from_secs(2),
            "{args:?}: took {took:?}, not at once"
        );
    }
}

fn wrong_answers_are_counted() {
    use libteredo::wire::teredo::Auth;
    use std::net::{SocketAddrV4, UdpSocket};

    let ns = Netns::new("mirew");
    let cmd = {
        let mut c = ns.command(BIN);
        c.args(["probe", "127.0.0.1", "--no-nat-test", "--timeout", "2"]);
        c
    };
    let out = ns.run_in(move || {
        let mut cmd = cmd;
        // A fake server: every solicitation gets garbage and a router
        // advertisement with a nonce that is not the client's.
        let fake = UdpSocket::bind("127.0.0.1:3544").unwrap();
        fake.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        thread::spawn(move || {
            let _ = tx.send(run(&mut cmd, Duration::from_secs(30)));
        });
        let ra = libteredo::proto::advert_datagram(
            Some(Auth {
                client_id: b"",
                auth_value: b"",
                nonce: [0xee; 8],
                confirmation: 0,
            }),
            SocketAddrV4::new("198.18.0.2".parse().unwrap(), 4096),
            "fe80::8000:f227:80ff:fffe".parse().unwrap(),
            "fe80::ffff:ffff:ffff".parse().unwrap(),
            libteredo::proto::advert(0x2001_0000, "127.0.0.1".parse().unwrap(), None),
        );
        let mut buf = [0u8; 2000];
        loop {
            if let Ok(out) = rx.try_recv() {
                return out;
            }
            if let Ok((_, from)) = fake.recv_from(&mut buf) {
                let _ = fake.send_to(b"garbage", from);
                let _ = fake.send_to(&ra, from);
            }
        }
    });
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("no valid router advertisement from 127.0.0.1:3544 within 2 s"),
        "{stderr}"
    );
    assert!(stderr.contains("malformed: 1, spoofed: 1"), "{stderr}");
}

teredo_lab::lab_main! {
    needs(netns, c_server): [
        qualifies_with_the_c_server,
        nat_test_sees_no_nat_as_cone,
        silent_server_fails,
    ],
    needs(netns): [wrong_answers_are_counted],
    plain: [unresolvable_server_fails],
}
