//! Issue 14, the daemon's side: nothing at start is fatal that can heal by
//! itself, several servers behind one name, and one daemon per status
//! socket. Our client resolves its server name through the system
//! resolver (getaddrinfo in its configuration reader, outside the chroot):
//! these tests give the client's namespace a hosts file of its own,
//! `/etc/netns/NS/hosts`, which `ip netns exec` (how the world starts
//! daemons) mounts over `/etc/hosts`, and which the test rewrites in place
//! to make the name resolve later. Its `resolv.conf` names 127.0.0.1, where
//! no DNS server listens: a name missing from the file fails at once.
//!
//! The other network changes (address, link, NAT reboot) are in
//! network_changes.rs.

use std::fs;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use teredo_lab::named::{client_conf, relay_conf, status_of, unique_iface};
use teredo_lab::steps::{self, mostly, ping};
use teredo_lab::{
    is_teredo, ping6, report, teredo_addr_of, teredo_parts, wait_for, wait_until, Impl, NatKind,
    World, SERVER_V4,
};

/// A second server pair on the server host.
const SERVER_B: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 3);
const SERVER_B2: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 4);

/// `/etc/netns/NS/`: the hosts and resolv.conf `ip netns exec NS` mounts
/// over /etc's; removed when dropped.
struct NetnsEtc {
    dir: PathBuf,
}

impl NetnsEtc {
    /// Made for namespace `ns` with `hosts` as its hosts file; must exist
    /// before the daemon is spawned.
    fn new(ns: &str, hosts: &str) -> NetnsEtc {
        let dir = PathBuf::from("/etc/netns").join(ns);
        fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        let etc = NetnsEtc { dir };
        etc.write("hosts", hosts);
        etc.write(
            "resolv.conf",
            "nameserver 127.0.0.1\noptions timeout:1 attempts:1\n",
        );
        etc
    }

    /// Rewrites a file in place (the same inode: the daemon's mount of it
    /// sees the new contents).
    fn write(&self, name: &str, contents: &str) {
        let p = self.dir.join(name);
        fs::write(&p, contents).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    }
}

impl Drop for NetnsEtc {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

fn field(status: &[(String, String)], key: &str) -> Option<String> {
    status
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.clone())
}

/// A name unique to the world (hosts files are per namespace, but a
/// failing test's leftovers must not answer for another).
fn server_name(w: &World) -> String {
    format!("teredo-{}.lab.test", w.prefix())
}

/// Two daemons whose interfaces have the same name in two namespaces: the
/// second refuses to start, naming the socket, and the first keeps
/// answering on it.
fn a_second_daemon_refuses_the_first_ones_status_socket() {
    let test = "a_second_daemon_refuses_the_first_ones_status_socket";
    let w = World::build(test, &[NatKind::PortRestricted]);
    let _srv = w.start_server(Impl::Ours);
    let iface = unique_iface(&w, "dup");
    let first = w.spawn_daemon(
        w.client(1),
        "client1-dup",
        &Impl::Ours.miredo(),
        &client_conf(&iface, ""),
        &[],
    );
    let addr = wait_for(steps::QUALIFY_TIMEOUT, || {
        teredo_addr_of(w.client(1), &iface)
    })
    .unwrap_or_else(|| panic!("the first client did not qualify:\n{}", w.log_of(&first)));
    // The second: a relay with the same interface name on the relay host.
    let t = Instant::now();
    let second = w.spawn_daemon(
        w.relay(),
        "relay-dup",
        &Impl::Ours.miredo(),
        &relay_conf("cone", &iface),
        &[],
    );
    let stopped = wait_until(Duration::from_secs(5), || !w.is_running(&second));
    let log = w.log_of(&second);
    assert!(stopped, "the second daemon runs:\n{log}");
    let status = w.stop(&second, Duration::from_secs(1));
    assert_eq!(status.and_then(|s| s.code()), Some(1), "{log}");
    let sock = format!("/run/miredo/{iface}.status");
    assert!(
        log.contains(&sock) && log.contains("another miredo answers on this status socket"),
        "the refusal does not name the socket and the other daemon:\n{log}"
    );
    assert!(
        !w.relay().has_iface(&iface),
        "the refused daemon left its interface"
    );
    // The first still answers, for itself.
    let st = status_of(&iface);
    assert_eq!(field(&st, "mode").as_deref(), Some("client"), "{st:?}");
    assert_eq!(field(&st, "address"), Some(addr.to_string()), "{st:?}");
    assert!(w.is_running(&first));
    report(
        test,
        &format!(
            "second daemon refused in {:?}: {}; the first still answers ({addr})",
            t.elapsed(),
            log.lines()
                .find(|l| l.contains("another miredo"))
                .unwrap_or_default()
                .trim()
        ),
    );
}

/// A server name that does not resolve when the client starts (the host
/// booted before its network): the client stays up, says what it waits
/// for, tries again without filling the log, and qualifies within seconds
/// once the name resolves.
fn a_name_that_resolves_later_is_waited_for() {
    let test = "a_name_that_resolves_later_is_waited_for";
    let w = World::build(test, &[NatKind::PortRestricted]);
    let _srv = w.start_server(Impl::Ours);
    let _relay = w.start_relay(Impl::Ours, "cone");
    let name = server_name(&w);
    let etc = NetnsEtc::new(w.client(1).name(), "127.0.0.1 localhost\n");
    let iface = unique_iface(&w, "late");
    let cli = w.spawn_daemon(
        w.client(1),
        "client1-late",
        &Impl::Ours.miredo(),
        &client_conf(&iface, "").replace(
            &format!("ServerAddress {SERVER_V4}"),
            &format!("ServerAddress {name}"),
        ),
        &[],
    );
    // Up, waiting, and saying why.
    let waiting = wait_until(Duration::from_secs(5), || {
        field(&status_of(&iface), "waiting-for").as_deref() == Some("server name does not resolve")
    });
    let st = status_of(&iface);
    assert!(waiting, "no waiting-for: {st:?}\n{}", w.log_of(&cli));
    assert_eq!(field(&st, "state").as_deref(), Some("waiting"), "{st:?}");
    assert_eq!(field(&st, "address").as_deref(), Some("none"), "{st:?}");
    // A few tries (after 1 and 2 s), one line in the log.
    std::thread::sleep(Duration::from_millis(3500));
    assert!(
        w.is_running(&cli),
        "the client stopped:\n{}",
        w.log_of(&cli)
    );
    let log = w.log_of(&cli);
    let said = log.matches("does not resolve").count();
    assert_eq!(said, 1, "the failure is not said exactly once:\n{log}");
    assert!(teredo_addr_of(w.client(1), &iface).is_none());

    // The name resolves now.
    etc.write(
        "hosts",
        &format!("127.0.0.1 localhost\n{SERVER_V4} {name}\n"),
    );
    let t = Instant::now();
    let addr = wait_for(Duration::from_secs(15), || {
        teredo_addr_of(w.client(1), &iface)
    })
    .unwrap_or_else(|| {
        panic!(
            "no address 15 s after the name resolves:\n{}",
            w.log_of(&cli)
        )
    });
    let took = t.elapsed();
    let log = w.log_of(&cli);
    assert!(
        log.contains(&format!("ServerAddress {name} resolves to {SERVER_V4}")),
        "the resolution is not logged:\n{log}"
    );
    let st = status_of(&iface);
    assert_eq!(field(&st, "state").as_deref(), Some("qualified"), "{st:?}");
    assert_eq!(field(&st, "waiting-for"), None, "{st:?}");
    assert_eq!(field(&st, "server"), Some(SERVER_V4.to_string()));
    assert!(mostly(ping(&w, "native -> client", w.v6h(), addr, 3)));
    report(
        test,
        &format!("waited (state waiting, one log line); qualified as {addr} {took:?} after the name started to resolve (retries 1, 2, 4 ... s apart)"),
    );
    assert!(took < Duration::from_secs(10), "took {took:?}");
}

/// A name with two server addresses, the first one's server not running:
/// the client solicits both at once and qualifies with the second without
/// waiting out the RFC's three solicitations of the first, and says so in
/// its status.
fn two_servers_behind_one_name_the_first_stopped() {
    let test = "two_servers_behind_one_name_the_first_stopped";
    let w = World::build(test, &[NatKind::PortRestricted]);
    let _relay = w.start_relay(Impl::Ours, "cone");
    // Only the second server runs, on 198.18.1.3 and .4.
    let s_i = format!("{}s-i", w.prefix());
    for a in [SERVER_B, SERVER_B2] {
        w.srv()
            .ip(&format!("addr add {a}/24 dev {s_i}"))
            .expect("second server addresses");
    }
    let srv_b = w.spawn_daemon(
        w.srv(),
        "server-b",
        &Impl::Ours.miredo_server(),
        &format!("ServerBindAddress {SERVER_B}\nServerBindAddress2 {SERVER_B2}\n"),
        &[],
    );
    assert!(
        wait_until(Duration::from_secs(5), || w.srv().udp_listening(3544)),
        "the second server does not start:\n{}",
        w.log_of(&srv_b)
    );
    let name = server_name(&w);
    let _etc = NetnsEtc::new(
        w.client(1).name(),
        &format!("127.0.0.1 localhost\n{SERVER_V4} {name}\n{SERVER_B} {name}\n"),
    );
    let iface = unique_iface(&w, "two");
    let t = Instant::now();
    let cli = w.spawn_daemon(
        w.client(1),
        "client1-two",
        &Impl::Ours.miredo(),
        &client_conf(&iface, "").replace(
            &format!("ServerAddress {SERVER_V4}"),
            &format!("ServerAddress {name}"),
        ),
        &[],
    );
    let resolved = wait_until(Duration::from_secs(5), || {
        w.log_of(&cli)
            .contains(&format!("resolves to {SERVER_V4}, {SERVER_B}"))
    });
    assert!(
        resolved,
        "the name's two addresses are not logged:\n{}",
        w.log_of(&cli)
    );
    let addr = wait_for(Duration::from_secs(5), || {
        teredo_addr_of(w.client(1), &iface)
    })
    .unwrap_or_else(|| panic!("no address within 5 s:\n{}", w.log_of(&cli)));
    let took = t.elapsed();
    assert_eq!(
        teredo_parts(&addr).map(|p| p.server),
        Some(SERVER_B),
        "{addr} does not name the second server"
    );
    let st = status_of(&iface);
    assert_eq!(field(&st, "server"), Some(SERVER_B.to_string()), "{st:?}");
    assert_eq!(field(&st, "server-candidates"), Some("2".into()), "{st:?}");
    let first = field(&st, "server-candidate-1").unwrap_or_default();
    let second = field(&st, "server-candidate-2").unwrap_or_default();
    assert!(
        first.starts_with(&format!("{SERVER_V4}: not answering")),
        "{first:?} ({st:?})"
    );
    assert!(
        second.starts_with(&format!("{SERVER_B} (in use): answering, round-trip")),
        "{second:?} ({st:?})"
    );
    let changed = field(&st, "server-changed").unwrap_or_default();
    assert!(
        changed.contains(&format!(
            "to {SERVER_B} ({SERVER_V4}, before it, did not answer)"
        )),
        "server-changed: {changed:?} ({st:?})"
    );
    let log = w.log_of(&cli);
    assert!(
        log.contains(&format!(
            "Teredo server {SERVER_B} in use: {SERVER_V4}, before it in the list, did not answer"
        )),
        "the choice is not logged:\n{log}"
    );
    assert!(mostly(ping(&w, "native -> client", w.v6h(), addr, 3)));
    report(
        test,
        &format!("qualified with the second server as {addr} {took:?} after start (the first solicited at the same time, not waited for); status server-changed: {changed}"),
    );
}

/// A dead address taking a name, our server answering on .1, the C
/// miredo-server on .5/.6 (so that its secondary is not ours).
const SERVER_C: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 5);
const SERVER_C2: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 6);
const DEAD: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 9);

/// Issue 26: a list of three names, the first dead (its address answers
/// nothing), then our server, then the C miredo-server. Our client
/// qualifies with ours within 5 s; the C client, with the same file, takes
/// one server only (or refuses the file) and does not qualify in the same
/// time. Then our server stops: the time until the native host's pings
/// reach our client again, through the C server.
fn a_dead_name_then_ours_then_the_c_server() {
    let test = "a_dead_name_then_ours_then_the_c_server";
    let w = World::build(
        test,
        &[
            NatKind::PortRestricted,
            NatKind::PortRestricted,
            NatKind::PortRestricted,
        ],
    );
    let _relay = w.start_relay(Impl::Ours, "cone");
    let ours = w.start_server(Impl::Ours);
    let s_i = format!("{}s-i", w.prefix());
    for a in [SERVER_C, SERVER_C2] {
        w.srv()
            .ip(&format!("addr add {a}/24 dev {s_i}"))
            .expect("the C server's addresses");
    }
    let c_srv = w.spawn_daemon(
        w.srv(),
        "server-c-b",
        &Impl::C.miredo_server(),
        &format!("ServerBindAddress {SERVER_C}\nServerBindAddress2 {SERVER_C2}\n"),
        &[],
    );
    let c_listens = wait_until(Duration::from_secs(5), || {
        w.srv()
            .run(&["ss", "-Hnlu", &format!("src {SERVER_C}:3544")])
            .is_ok_and(|o| o.contains(&SERVER_C.to_string()))
    });
    assert!(
        c_listens,
        "the C server does not listen:\n{}",
        w.log_of(&c_srv)
    );
    let p = w.prefix();
    let (dead, ours_name, c_name) = (
        format!("dead-{p}.lab.test"),
        format!("ours-{p}.lab.test"),
        format!("c-{p}.lab.test"),
    );
    let hosts = format!(
        "127.0.0.1 localhost\n{DEAD} {dead}\n{SERVER_V4} {ours_name}\n{SERVER_C} {c_name}\n"
    );
    let _etc1 = NetnsEtc::new(w.client(1).name(), &hosts);
    let _etc2 = NetnsEtc::new(w.client(2).name(), &hosts);
    let _etc3 = NetnsEtc::new(w.client(3).name(), &hosts);
    let list = format!("ServerAddress {dead}\nServerAddress {ours_name}\nServerAddress {c_name}\n");
    let conf = |iface: &str| {
        client_conf(iface, "").replace(&format!("ServerAddress {SERVER_V4}\n"), &list)
    };
    let (iface, c_iface) = (unique_iface(&w, "lst"), unique_iface(&w, "lsc"));
    let t0 = Instant::now();
    let cli = w.spawn_daemon(
        w.client(1),
        "client1-list",
        &Impl::Ours.miredo(),
        &conf(&iface),
        &[],
    );
    let c_cli = w.spawn_daemon(
        w.client(2),
        "client2-list-c",
        &Impl::C.miredo(),
        &conf(&c_iface),
        &[],
    );
    // The C client at its best: one live server, ours (it takes one only).
    let c1_iface = unique_iface(&w, "lc1");
    let c_one = w.spawn_daemon(
        w.client(3),
        "client3-one-c",
        &Impl::C.miredo(),
        &client_conf(&c1_iface, "").replace(
            &format!("ServerAddress {SERVER_V4}\n"),
            &format!("ServerAddress {ours_name}\n"),
        ),
        &[],
    );
    let addr = wait_for(Duration::from_secs(5), || {
        teredo_addr_of(w.client(1), &iface)
    })
    .unwrap_or_else(|| panic!("ours: no address within 5 s:\n{}", w.log_of(&cli)));
    let ours_took = t0.elapsed();
    assert_eq!(
        teredo_parts(&addr).map(|p| p.server),
        Some(SERVER_V4),
        "{addr}: not our server, the first live one of the list"
    );
    // The C client: the same file, watched as long again and more.
    let c_addr = wait_for(Duration::from_secs(15).saturating_sub(t0.elapsed()), || {
        teredo_addr_of(w.client(2), &c_iface)
    });
    let c_running = w.is_running(&c_cli);
    let c_log = w.log_of(&c_cli);
    let c_said = c_log.lines().rev().take(3).collect::<Vec<_>>().join(" | ");
    report(
        test,
        &format!(
            "first server dead: ours qualified in {:.2} s (with {SERVER_V4}); C client: {} after {:.0} s (running: {c_running}; its last lines: {c_said})",
            ours_took.as_secs_f64(),
            c_addr.map_or("no address".to_string(), |a| format!("address {a}")),
            t0.elapsed().as_secs_f64()
        ),
    );
    assert_eq!(
        c_addr, None,
        "the C client qualified with a list whose first server is dead: this test's premise is wrong"
    );
    let st = status_of(&iface);
    assert_eq!(field(&st, "server-candidates"), Some("3".into()), "{st:?}");
    assert!(mostly(ping(
        &w,
        "native -> client (our server)",
        w.v6h(),
        addr,
        3
    )));
    let c_one_addr = wait_for(Duration::from_secs(15), || {
        teredo_addr_of(w.client(3), &c1_iface)
    })
    .unwrap_or_else(|| {
        panic!(
            "the C client with our server alone did not qualify:\n{}",
            w.log_of(&c_one)
        )
    });
    assert!(mostly(ping(
        &w,
        "native -> C client (our server)",
        w.v6h(),
        c_one_addr,
        3
    )));

    // The server in use stops. Every quarter of a second, for 75 s at
    // most: is each client's address there, and does the native host
    // reach it? Ours loses its address when its maintenance solicitations
    // go unanswered, then qualifies through the C server; the C client
    // keeps its address until it notices, and has no other server.
    let stopped_at = Instant::now();
    w.stop(&ours, Duration::from_secs(5));
    let secs = |t: Option<Duration>| {
        t.map_or("never".to_string(), |t| format!("{:.1} s", t.as_secs_f64()))
    };
    let (mut ours_lost, mut ours_back, mut new) = (None, None, None);
    let (mut c_lost, mut c_back) = (None, None);
    while stopped_at.elapsed() < Duration::from_secs(75) {
        let t = stopped_at.elapsed();
        match teredo_addr_of(w.client(1), &iface) {
            Some(a) if a == addr => {}
            Some(a) => {
                ours_lost.get_or_insert(t);
                if ours_back.is_none()
                    && teredo_parts(&a).map(|p| p.server) == Some(SERVER_C)
                    && ping6(w.v6h(), a, 1, Duration::from_secs(1))
                {
                    ours_back = Some(stopped_at.elapsed());
                    new = Some(a);
                }
            }
            None => {
                ours_lost.get_or_insert(t);
            }
        }
        match teredo_addr_of(w.client(3), &c1_iface) {
            Some(a) if a == c_one_addr => {}
            Some(a) => {
                c_lost.get_or_insert(t);
                if c_back.is_none() && ping6(w.v6h(), a, 1, Duration::from_secs(1)) {
                    c_back = Some(stopped_at.elapsed());
                }
            }
            None => {
                c_lost.get_or_insert(t);
            }
        }
        // Done once ours is back and the C client has been seen without
        // its address for 20 s (or came back).
        if ours_back.is_some()
            && (c_back.is_some() || c_lost.is_some_and(|l| t > l + Duration::from_secs(20)))
        {
            break;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    let new = new.unwrap_or_else(|| {
        panic!(
            "no working address through the C server 75 s after ours stopped:\n{}",
            w.log_of(&cli)
        )
    });
    let (ours_back_t, ours_lost_t) = (ours_back.unwrap_or_default(), ours_lost.unwrap_or_default());
    report(
        test,
        &format!(
            "our server stopped: ours withdrew its address after {}, pings work again after {} through the C server as {new} (outage {:.1} s); the C client (our server alone, as it takes one): address withdrawn after {}, working again: {}",
            secs(ours_lost),
            secs(ours_back),
            ours_back_t.saturating_sub(ours_lost_t).as_secs_f64(),
            secs(c_lost),
            secs(c_back),
        ),
    );
    let st = status_of(&iface);
    let lines: Vec<String> = (1..=3)
        .filter_map(|i| field(&st, &format!("server-candidate-{i}")))
        .collect();
    report(test, &format!("status: {}", lines.join(" / ")));
    assert!(
        lines
            .get(2)
            .is_some_and(|l| l.starts_with(&format!("{SERVER_C} (in use): answering"))),
        "{lines:?}"
    );
    assert!(
        lines
            .get(1)
            .is_some_and(|l| l.starts_with(&format!("{SERVER_V4}: not answering"))),
        "{lines:?}"
    );
    // Never two Teredo addresses on the interface.
    let teredo: Vec<_> = w
        .client(1)
        .ipv6_addrs(&iface)
        .into_iter()
        .filter(is_teredo)
        .collect();
    assert_eq!(teredo.len(), 1, "{teredo:?}");
}

teredo_lab::lab_tests! {
    needs(root, ours): [
        a_second_daemon_refuses_the_first_ones_status_socket,
        a_name_that_resolves_later_is_waited_for,
        two_servers_behind_one_name_the_first_stopped,
    ],
    needs(root, ours, c_miredo): [
        a_dead_name_then_ours_then_the_c_server,
    ],
}
