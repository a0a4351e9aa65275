//! End-to-end scenarios with our daemons in every role: a bulk TCP
//! transfer, client to client across NATs, SIGHUP with a changed
//! configuration, SIGTERM cleanup, NAT reboots and a server that stops.
//! Each test reports its figures and its duration with `report()`.

use std::net::Ipv6Addr;
use std::path::Path;
use std::time::{Duration, Instant};

use teredo_lab::named::unique_iface;
use teredo_lab::steps::{
    self, mire_status_field, mostly, ping, qualify, sample_addrs, teredo_addrs,
};
use teredo_lab::{
    leftover_namespaces, report, teredo_addr_of, teredo_parts, wait_for, wait_until, Daemon, Impl,
    NatKind, NatReboot, World, NATIVE_V6, SERVER_V4, TEREDO_IFACE,
};

/// Our server and our cone relay in a world with `nats`.
fn our_world(test: &str, nats: &[NatKind]) -> (World, Daemon, Daemon) {
    let w = World::build(test, nats);
    let srv = w.start_server(Impl::Ours);
    let relay = w.start_relay(Impl::Ours, "cone");
    (w, srv, relay)
}

/// Reports how long the test took and passes the value through.
fn done(test: &str, start: Instant) {
    report(test, &format!("done in {:?}", start.elapsed()));
}

/// The `key=value` fields of the teredo-lab-tcp result line in `text`.
fn tcp_result(text: &str) -> Option<(u64, String, f64)> {
    let line = text.lines().find(|l| l.starts_with("bytes="))?;
    let mut bytes = None;
    let mut sha = None;
    let mut secs = None;
    for f in line.split_whitespace() {
        match f.split_once('=') {
            Some(("bytes", v)) => bytes = v.parse().ok(),
            Some(("sha256", v)) => sha = Some(v.to_string()),
            Some(("secs", v)) => secs = v.parse().ok(),
            _ => {}
        }
    }
    Some((bytes?, sha?, secs?))
}

const TCP_BYTES: u64 = 50 * 1024 * 1024;
const TCP_PORT: &str = "5001";
const TCP_TIMEOUT: Duration = Duration::from_secs(120);

/// 50 MiB over TCP from the native host to our client, through our relay
/// and our client; SHA-256 at both ends. The client writes the segments to
/// its TUN device coalesced (GRO) when the device has offloads.
fn tcp_50mb_native_host_to_our_client() {
    tcp_50mb("tcp_50mb_native_host_to_our_client", false);
}

/// 50 MiB the other way, our client to the native host: here our relay
/// coalesces the segments for its TUN device.
fn tcp_50mb_our_client_to_native_host() {
    tcp_50mb("tcp_50mb_our_client_to_native_host", true);
}

fn tcp_50mb(test: &str, to_native: bool) {
    let start = Instant::now();
    let (w, _srv, relay) = our_world(test, &[NatKind::PortRestricted]);
    let cli = w.start_client(1, Impl::Ours, "");
    let (addr, _) = qualify(&w, &cli, 1, "our client");
    // The first packets open the path (bubbles); the transfer then runs
    // on an established peer entry.
    assert!(mostly(ping(&w, "native -> client", w.v6h(), addr, 3)));

    let (rx_ns, tx_ns, to) = if to_native {
        (w.v6h(), w.client(1), NATIVE_V6)
    } else {
        (w.client(1), w.v6h(), addr)
    };
    let tool = env!("CARGO_BIN_EXE_teredo-lab-tcp");
    let secs = TCP_TIMEOUT.as_secs().to_string();
    let recv = w.spawn(rx_ns, "tcp-recv", &[tool, "recv", TCP_PORT, &secs]);
    assert!(
        wait_until(Duration::from_secs(5), || w
            .log_of(&recv)
            .contains("listening")),
        "the receiver does not listen: {}",
        w.log_of(&recv)
    );
    let sent = tx_ns.exec(
        &[
            tool,
            "send",
            &to.to_string(),
            TCP_PORT,
            &TCP_BYTES.to_string(),
            "4380",
            &secs,
        ],
        TCP_TIMEOUT + Duration::from_secs(10),
    );
    let finished = wait_until(Duration::from_secs(10), || !w.is_running(&recv));
    let recv_log = w.log_of(&recv);
    assert!(
        sent.success(),
        "the sender failed: {} {}\nreceiver: {recv_log}\nclient: {}\nrelay: {}",
        sent.stdout,
        sent.stderr,
        w.log_of(&cli),
        w.log_of(&relay)
    );
    assert!(finished, "the receiver did not finish: {recv_log}");
    let (sb, ssha, ssecs) = tcp_result(&sent.stdout).expect("the sender's result line");
    let (rb, rsha, rsecs) = tcp_result(&recv_log).expect("the receiver's result line");
    let mbit = rb as f64 * 8.0 / rsecs.max(0.001) / 1e6;
    report(
        test,
        &format!(
            "sent {sb} bytes in {ssecs:.2} s, sha256 {ssha}; received {rb} bytes in {rsecs:.2} s, \
             sha256 {rsha}; throughput {mbit:.0} Mbit/s ({:.1} MB/s)",
            rb as f64 / rsecs.max(0.001) / 1e6
        ),
    );
    assert_eq!(sb, TCP_BYTES);
    assert_eq!(rb, TCP_BYTES, "bytes received");
    assert_eq!(rsha, ssha, "SHA-256 at both ends");
    drop(w);
    done(test, start);
}

const CONE1: NatKind = NatKind::FullCone {
    client_port: 3545,
    mapped_port: 40000,
};

/// Our clients behind two full-cone NATs (static mappings) reach each
/// other directly, both ways (RFC 4380 5.2.4 to 5.2.6: the direct bubble
/// and the indirect bubble through the server).
fn our_clients_across_two_full_cone_nats_both_ways() {
    let test = "our_clients_across_two_full_cone_nats_both_ways";
    let start = Instant::now();
    let (w, _srv, _relay) = our_world(test, &[CONE1, CONE1]);
    let c1 = w.start_client(1, Impl::Ours, "");
    let c2 = w.start_client(2, Impl::Ours, "");
    let (a1, _) = qualify(&w, &c1, 1, "client 1 (full cone)");
    let (a2, _) = qualify(&w, &c2, 2, "client 2 (full cone)");
    let t = Instant::now();
    let results = steps::ping_pairs(&w, &[(1, 2, a2), (2, 1, a1)]);
    report(test, &format!("both directions in {:?}", t.elapsed()));
    for (what, r) in &results {
        assert!(
            mostly(*r),
            "{what}: {r:?}\n{}\n{}",
            w.log_of(&c1),
            w.log_of(&c2)
        );
    }
    drop(w);
    done(test, start);
}

/// Client to client where a masquerade ("port-restricted") NAT takes part:
/// full cone <-> masquerade and masquerade <-> masquerade, our clients and
/// C clients side by side in the same world. Ours must work wherever the
/// C clients do; where both fail it is reported, not asserted. (A
/// masquerade NAT that first sees the peer's direct bubble, unsolicited,
/// dropped but tracked, gives the client's answer to that peer another
/// port than its mapped one; a client that only accepts packets from the
/// mapping in the peer's address, RFC 4380 5.2.3, drops it.)
fn client_to_client_with_masquerade_nats_ours_vs_c() {
    let test = "client_to_client_with_masquerade_nats_ours_vs_c";
    let start = Instant::now();
    let pr = NatKind::PortRestricted;
    let (w, _srv, _relay) = our_world(test, &[CONE1, pr, pr, CONE1, pr, pr]);
    let mut daemons = Vec::new();
    for (n, imp) in [
        (1, Impl::Ours),
        (2, Impl::Ours),
        (3, Impl::Ours),
        (4, Impl::C),
        (5, Impl::C),
        (6, Impl::C),
    ] {
        daemons.push(w.start_client(n, imp, ""));
    }
    let mut a = vec![Ipv6Addr::UNSPECIFIED];
    for (i, d) in daemons.iter().enumerate() {
        let n = i + 1;
        a.push(qualify(&w, d, n, &format!("client {n} ({})", d.label)).0);
    }
    let pairs = [
        (1, 2, a[2]),
        (2, 1, a[1]),
        (2, 3, a[3]),
        (3, 2, a[2]),
        (4, 5, a[5]),
        (5, 4, a[4]),
        (5, 6, a[6]),
        (6, 5, a[5]),
    ];
    let results = steps::ping_pairs(&w, &pairs);
    let label = |n: usize| {
        let imp = if n <= 3 { "ours" } else { "C" };
        let nat = if n == 1 || n == 4 {
            "full cone"
        } else {
            "masquerade"
        };
        format!("{imp} client {n} ({nat})")
    };
    let mut table = String::from("\n| from | to | echoes |\n|---|---|---|\n");
    for ((from, to, _), (_, r)) in pairs.iter().zip(&results) {
        table += &format!("| {} | {} | {}/{} |\n", label(*from), label(*to), r.1, r.0);
    }
    let ok = |i: usize| mostly(results[i].1) && mostly(results[i + 1].1);
    report(test, &format!("client to client:{table}"));
    report(
        test,
        &format!(
            "full cone <-> masquerade: ours {}, C {}; masquerade <-> masquerade: ours {}, C {}",
            verdict(ok(0)),
            verdict(ok(4)),
            verdict(ok(2)),
            verdict(ok(6))
        ),
    );
    // Ours must do what C clients do over the same NATs.
    let mut bad = Vec::new();
    for (ours, c, what) in [
        (0, 4, "full cone <-> masquerade"),
        (2, 6, "masquerade <-> masquerade"),
    ] {
        if ok(c) && !ok(ours) {
            bad.push(what);
        } else if !ok(ours) {
            report(
                test,
                &format!("{what}: ours fail as C clients do (a known limitation of these NATs)"),
            );
        }
    }
    report(
        test,
        &format!("NAT 2 flows:\n{}", w.nat_flows(2).trim_end()),
    );
    assert!(
        bad.is_empty(),
        "C clients reach each other where ours do not: {bad:?}"
    );
    drop(w);
    done(test, start);
}

fn verdict(ok: bool) -> &'static str {
    if ok {
        "works both ways"
    } else {
        "fails"
    }
}

/// A second Teredo server, on the server host, for the SIGHUP test.
const SERVER_B: std::net::Ipv4Addr = std::net::Ipv4Addr::new(198, 18, 1, 3);
const SERVER_B2: std::net::Ipv4Addr = std::net::Ipv4Addr::new(198, 18, 1, 4);

/// A client config for our client with interface `iface` and servers.
fn client_conf(iface: &str, server: &str) -> String {
    format!("RelayType client\n{server}InterfaceName {iface}\n")
}

/// SIGHUP: a new ServerAddress is applied (log line, status, a new address
/// naming the new server); a new InterfaceName is refused with a "restart"
/// log line while the old interface keeps working; an invalid file leaves
/// the running configuration in place.
fn sighup_server_change_interface_refusal_invalid_file() {
    let test = "sighup_server_change_interface_refusal_invalid_file";
    let start = Instant::now();
    let (w, _srv, _relay) = our_world(test, &[NatKind::PortRestricted]);
    let iface = unique_iface(&w, "hup");
    let label = "client1-hup";
    let conf_name = format!("{label}.conf");
    let cli = w.spawn_daemon(
        w.client(1),
        label,
        &Impl::Ours.miredo(),
        &client_conf(&iface, &format!("ServerAddress {SERVER_V4}\n")),
        &[],
    );
    let ns = w.client(1).clone();
    let a1 = wait_for(steps::QUALIFY_TIMEOUT, || teredo_addr_of(&ns, &iface))
        .unwrap_or_else(|| panic!("our client did not qualify:\n{}", w.log_of(&cli)));
    report(test, &format!("qualified as {a1} on {iface}"));
    assert_eq!(
        mire_status_field(&iface, "server").as_deref(),
        Some("198.18.1.1")
    );

    // 1. ServerAddress moves to a second server (198.18.1.3 and .4 on the
    // server host): applied without a restart. (The first server's own
    // secondary would not do: the masquerade NAT still tracks the
    // secondary's unanswered NAT-test reply, so it maps the client's flow
    // to that address on another port, which the client rightly sees as a
    // symmetric NAT.)
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
        wait_until(Duration::from_secs(5), || w
            .log_of(&srv_b)
            .contains("serving on")),
        "the second server does not start:\n{}",
        w.log_of(&srv_b)
    );
    w.write_file(
        &conf_name,
        &client_conf(&iface, &format!("ServerAddress {SERVER_B}\n")),
    );
    let t = Instant::now();
    let ((), samples) = sample_addrs(&ns, &iface, || {
        w.signal(&cli, "HUP");
        let moved = wait_for(Duration::from_secs(20), || {
            teredo_addr_of(&ns, &iface)
                .filter(|a| teredo_parts(a).map(|p| p.server) == Some(SERVER_B))
        });
        assert!(
            moved.is_some(),
            "no address naming {SERVER_B} 20 s after SIGHUP:\n{}",
            w.log_of(&cli)
        );
    });
    let took = t.elapsed();
    let a2 = teredo_addr_of(&ns, &iface).expect("an address after the server change");
    let log = w.log_of(&cli);
    assert!(
        log.contains(&format!("SIGHUP: Teredo server now {SERVER_B}")),
        "no log line for the new server:\n{log}"
    );
    assert_eq!(
        mire_status_field(&iface, "server").as_deref(),
        Some("198.18.1.3"),
        "teredo-mire status after the change"
    );
    let most = samples.iter().map(|(_, a)| a.len()).max().unwrap_or(0);
    assert!(most <= 1, "two Teredo addresses at once: {samples:?}");
    report(
        test,
        &format!(
            "ServerAddress {SERVER_V4} -> {SERVER_B}: new address {a2} in {took:?} \
             (log line, status server {SERVER_B}; at most {most} Teredo address in {} samples)",
            samples.len()
        ),
    );
    assert!(mostly(ping(&w, "native -> new address", w.v6h(), a2, 3)));

    // 2. InterfaceName changes: needs privileges, refused; the old one runs.
    w.write_file(
        &conf_name,
        &client_conf(&format!("{iface}x"), &format!("ServerAddress {SERVER_B}\n")),
    );
    w.signal(&cli, "HUP");
    let refused = wait_until(Duration::from_secs(5), || {
        w.log_of(&cli).contains("InterfaceName changed")
    });
    let log = w.log_of(&cli);
    assert!(refused, "no refusal of the new InterfaceName:\n{log}");
    let line = log
        .lines()
        .find(|l| l.contains("InterfaceName changed"))
        .unwrap_or_default()
        .to_string();
    assert!(
        line.contains("restart"),
        "the refusal does not say restart: {line}"
    );
    assert!(w.is_running(&cli));
    assert!(
        !ns.has_iface(&format!("{iface}x")),
        "a new interface appeared"
    );
    assert_eq!(teredo_addr_of(&ns, &iface), Some(a2), "the address changed");
    assert_eq!(
        mire_status_field(&iface, "interface").as_deref(),
        Some(iface.as_str())
    );
    assert!(mostly(ping(
        &w,
        "native -> client after the refused change",
        w.v6h(),
        a2,
        3
    )));
    report(test, &format!("InterfaceName change refused: {line:?}"));

    // 3. An invalid file: the running configuration stays.
    w.write_file(
        &conf_name,
        "RelayType client\nServerAddress 198.18.1.1\nNoSuchDirective yes\nInterfaceMTU banana\n",
    );
    w.signal(&cli, "HUP");
    let kept = wait_until(Duration::from_secs(5), || {
        w.log_of(&cli).contains("keeping the running configuration")
    });
    let log = w.log_of(&cli);
    assert!(kept, "no log line about the invalid file:\n{log}");
    let errors: Vec<&str> = log.lines().filter(|l| l.contains("SIGHUP")).collect();
    assert!(w.is_running(&cli));
    assert_eq!(teredo_addr_of(&ns, &iface), Some(a2));
    assert_eq!(
        mire_status_field(&iface, "server").as_deref(),
        Some("198.18.1.3")
    );
    assert!(mostly(ping(
        &w,
        "native -> client after the invalid file",
        w.v6h(),
        a2,
        3
    )));
    report(
        test,
        &format!(
            "invalid file: old configuration kept; SIGHUP log lines:\n{}",
            errors.join("\n")
        ),
    );
    drop(w);
    done(test, start);
}

/// SIGTERM to each of our daemons leaves no process, interface, address or
/// route behind, and a status socket that answers nobody (the daemon keeps
/// no way to remove it: see miredo(8) SECURITY).
fn sigterm_leaves_nothing_behind() {
    let test = "sigterm_leaves_nothing_behind";
    let start = Instant::now();
    let (w, srv, relay) = our_world(test, &[NatKind::PortRestricted]);
    let prefix = w.prefix().to_string();
    let iface = unique_iface(&w, "term");
    let label = "client1-term";
    let cli = w.spawn_daemon(
        w.client(1),
        label,
        &Impl::Ours.miredo(),
        &client_conf(&iface, &format!("ServerAddress {SERVER_V4}\n")),
        &[],
    );
    let ns = w.client(1).clone();
    let addr = wait_for(steps::QUALIFY_TIMEOUT, || teredo_addr_of(&ns, &iface))
        .unwrap_or_else(|| panic!("our client did not qualify:\n{}", w.log_of(&cli)));
    assert!(mostly(ping(&w, "native -> client", w.v6h(), addr, 3)));
    let status_sock = Path::new("/run/miredo").join(format!("{iface}.status"));
    let pid_file = w.dir().join(format!("{label}.pid"));
    assert!(
        status_sock.exists(),
        "no status socket {}",
        status_sock.display()
    );
    assert!(pid_file.exists(), "no pid file {}", pid_file.display());
    let routes_before = ns.routes6(&format!("table all dev {iface}"));
    report(
        test,
        &format!("client routes before SIGTERM: {routes_before:?}"),
    );
    let kids: Vec<u32> =
        std::fs::read_to_string(format!("/proc/{}/task/{}/children", cli.pid, cli.pid))
            .unwrap_or_default()
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect();

    let t = Instant::now();
    w.signal(&cli, "TERM");
    let gone = wait_until(Duration::from_secs(3), || !w.is_running(&cli));
    let took = t.elapsed();
    assert!(
        gone,
        "the client runs 3 s after SIGTERM:\n{}",
        w.log_of(&cli)
    );
    let kids_gone = wait_until(Duration::from_secs(2), || {
        kids.iter()
            .all(|k| !Path::new(&format!("/proc/{k}")).exists())
    });
    assert!(kids_gone, "children {kids:?} outlived the client");
    assert!(!ns.has_iface(&iface), "{iface} is still there");
    let all = ns.ip("-6 -o addr show").unwrap_or_default();
    assert!(
        !all.lines()
            .any(|l| l.contains(" 2001:0:") || l.contains(" 2001::")),
        "a Teredo address is left: {all}"
    );
    let routes = ns.ip("-6 route show table all").unwrap_or_default();
    assert!(!routes.contains(&iface), "routes left: {routes}");
    let refused = std::os::unix::net::UnixStream::connect(&status_sock)
        .err()
        .map(|e| e.kind());
    assert!(
        matches!(
            refused,
            Some(std::io::ErrorKind::ConnectionRefused | std::io::ErrorKind::NotFound)
        ),
        "the status socket of the stopped client still answers: {refused:?}"
    );
    report(
        test,
        &format!(
            "client: exited in {took:?}; children {kids:?} gone; no interface, Teredo address, \
             route left; the status socket refuses connections; pid file still there: {} (see pid_files_after_sigterm_name_no_live_process)",
            pid_file.exists()
        ),
    );

    let t = Instant::now();
    w.signal(&relay, "TERM");
    assert!(wait_until(Duration::from_secs(3), || !w.is_running(&relay)));
    let took = t.elapsed();
    assert!(!w.relay().has_iface(TEREDO_IFACE));
    let routes = w.relay().ip("-6 route show table all").unwrap_or_default();
    assert!(!routes.contains("2001::/32"), "relay route left: {routes}");
    report(
        test,
        &format!("relay: exited in {took:?}; no interface, no 2001::/32 route"),
    );

    let t = Instant::now();
    w.signal(&srv, "TERM");
    assert!(wait_until(Duration::from_secs(3), || !w.is_running(&srv)));
    let took = t.elapsed();
    assert!(
        !w.srv().udp_listening(3544),
        "something still listens on 3544"
    );
    report(
        test,
        &format!("server: exited in {took:?}; UDP 3544 closed"),
    );
    drop(w);
    assert!(leftover_namespaces(&prefix).is_empty());
    done(test, start);
}

/// The pid file each of our daemons was given with `-p` stays after
/// SIGTERM, naming a process that is gone: the unprivileged daemon keeps
/// neither its directory (a way out of the chroot) nor the file (a way to
/// make root signal another process later); see miredo(8) SECURITY. The C
/// miredo, whose root parent outlives its worker, removes it. The next
/// start takes a stale file over.
fn pid_files_after_sigterm_name_no_live_process() {
    let test = "pid_files_after_sigterm_name_no_live_process";
    let start = Instant::now();
    let (w, srv, relay) = our_world(test, &[NatKind::PortRestricted]);
    let cli = w.start_client(1, Impl::Ours, "");
    qualify(&w, &cli, 1, "our client");
    let mut outcome = Vec::new();
    for d in [&cli, &relay, &srv] {
        let pid_file = w.dir().join(format!("{}.pid", d.label));
        let written = std::fs::read_to_string(&pid_file).unwrap_or_default();
        assert_eq!(
            written.trim(),
            d.pid.to_string(),
            "{} does not hold the pid",
            pid_file.display()
        );
        w.signal(d, "TERM");
        assert!(wait_until(Duration::from_secs(3), || !w.is_running(d)));
        // Nothing that could remove it is kept after start-up: it stays,
        // naming the process that is gone.
        let left = std::fs::read_to_string(&pid_file).unwrap_or_default();
        if let Ok(p) = left.trim().parse::<u32>() {
            assert!(
                !teredo_lab::procstat::alive(p),
                "{} names process {p}, still running",
                pid_file.display()
            );
        }
        outcome.push(format!("{}: {:?}", d.label, left.trim()));
    }
    // The next start takes the stale file over.
    let again = w.start_relay_labeled(Impl::Ours, "cone", &relay.label);
    let pid_file = w.dir().join(format!("{}.pid", relay.label));
    let written = std::fs::read_to_string(&pid_file).unwrap_or_default();
    assert_eq!(
        written.trim(),
        again.pid.to_string(),
        "the restarted relay did not take its stale pid file over:\n{}",
        w.log_of(&again)
    );
    report(
        test,
        &format!(
            "pid files after SIGTERM (root's, in a 0755 directory): {}; each names a dead process; \
             a restarted relay took its file over (pid {})",
            outcome.join(", "),
            again.pid
        ),
    );
    drop(w);
    done(test, start);
}

/// The NAT of our qualified client reboots as `how` says: the client moves
/// to its new address, never carries two Teredo addresses, and the native
/// host reaches the new one.
fn nat_reboot(test: &str, how: NatReboot) {
    let start = Instant::now();
    let (w, _srv, _relay) = our_world(test, &[NatKind::PortRestricted]);
    let cli = w.start_client(1, Impl::Ours, "");
    let (old, _) = qualify(&w, &cli, 1, "our client");
    assert!(mostly(ping(&w, "native -> client before", w.v6h(), old, 2)));
    let ns = w.client(1).clone();
    let mut rebooted = None;
    let t0 = Instant::now();
    // RFC 4380 5.2.5: the client refreshes every 30 s; it sees the new
    // mapping at the next refresh, plus retries.
    let (new, samples) = sample_addrs(&ns, TEREDO_IFACE, || {
        // Let the sampler see the old address first.
        std::thread::sleep(Duration::from_millis(300));
        w.nat_reboot(1, how).expect("the NAT reboots");
        rebooted = Some(Instant::now());
        let new = wait_for(Duration::from_secs(50), || {
            teredo_addr_of(&ns, TEREDO_IFACE).filter(|a| *a != old)
        });
        // Let the sampler see the new state too.
        std::thread::sleep(Duration::from_millis(300));
        new
    });
    let rebooted_at = rebooted.map(|r| r.duration_since(t0));
    let took = rebooted.map(|r| r.elapsed()).unwrap_or_default();
    let most = samples.iter().map(|(_, a)| a.len()).max().unwrap_or(0);
    let old_gone_at = samples
        .iter()
        .find(|(_, a)| !a.contains(&old))
        .map(|(t, _)| *t);
    let new_at = samples
        .iter()
        .find(|(_, a)| a.iter().any(|x| *x != old))
        .map(|(t, _)| *t);
    let Some(new) = new else {
        panic!(
            "50 s after the NAT reboot ({how:?}) the client still has {:?}:\n{}",
            teredo_addrs(&ns, TEREDO_IFACE),
            w.log_of(&cli)
        );
    };
    let parts = teredo_parts(&new).expect("a Teredo address");
    report(
        test,
        &format!(
            "{how:?}: {old} -> {new} ({parts:?}); the new address after {took:?}; \
             old gone at {old_gone_at:?}, new seen at {new_at:?} (since sampling began; reboot at {rebooted_at:?}); \
             {} samples, at most {most} Teredo address at once",
            samples.len()
        ),
    );
    assert!(most <= 1, "two Teredo addresses at once: {samples:?}");
    assert!(
        !teredo_addrs(&ns, TEREDO_IFACE).contains(&old),
        "the old address is still there"
    );
    assert_eq!(parts.mapped_v4, w.nat_wan_v4(1), "the new mapped address");
    let log = w.log_of(&cli);
    assert!(
        log.contains("new Teredo address"),
        "no log line for the move:\n{log}"
    );
    assert!(mostly(ping(&w, "native -> new address", w.v6h(), new, 3)));
    assert!(mostly(ping(
        &w,
        "client -> native after",
        w.client(1),
        NATIVE_V6,
        3
    )));
    drop(w);
    done(test, start);
}

fn nat_reboot_new_port_moves_the_address() {
    nat_reboot("nat_reboot_new_port_moves_the_address", NatReboot::NewPort);
}

fn nat_reboot_new_address_moves_the_address() {
    nat_reboot(
        "nat_reboot_new_address_moves_the_address",
        NatReboot::NewAddress,
    );
}

/// The server stops answering (SIGSTOP): the client says so in its log and
/// withdraws its address; once the server is back (SIGCONT) the client
/// qualifies again.
fn server_stop_withdraws_and_requalifies() {
    let test = "server_stop_withdraws_and_requalifies";
    let start = Instant::now();
    let (w, srv, _relay) = our_world(test, &[NatKind::PortRestricted]);
    let cli = w.start_client(1, Impl::Ours, "");
    let (old, _) = qualify(&w, &cli, 1, "our client");
    let ns = w.client(1).clone();

    w.signal(&srv, "STOP");
    let stopped = Instant::now();
    // Loss shows after the next refresh (30 s) and its retries (3 x 4 s).
    let lost = wait_until(Duration::from_secs(60), || {
        w.log_of(&cli).contains("stopped answering") && teredo_addr_of(&ns, TEREDO_IFACE).is_none()
    });
    let loss_took = stopped.elapsed();
    let log = w.log_of(&cli);
    w.signal(&srv, "CONT");
    assert!(
        lost,
        "60 s after SIGSTOP of the server: address {:?}, log:\n{log}",
        teredo_addr_of(&ns, TEREDO_IFACE)
    );
    let line = log
        .lines()
        .find(|l| l.contains("stopped answering"))
        .unwrap_or_default()
        .to_string();
    report(
        test,
        &format!("server stopped: loss reported and {old} withdrawn after {loss_took:?}: {line:?}"),
    );

    let resumed = Instant::now();
    // Qualification is retried with a back-off of 10 s, then 20 s, 40 s.
    let back = wait_for(Duration::from_secs(45), || {
        teredo_addr_of(&ns, TEREDO_IFACE)
    });
    let back_took = resumed.elapsed();
    let Some(addr) = back else {
        panic!(
            "45 s after SIGCONT of the server the client has not qualified again:\n{}",
            w.log_of(&cli)
        );
    };
    report(
        test,
        &format!(
            "server back: requalified as {addr} after {back_took:?} (same address: {})",
            addr == old
        ),
    );
    assert!(mostly(ping(
        &w,
        "native -> client after requalifying",
        w.v6h(),
        addr,
        3
    )));
    drop(w);
    done(test, start);
}

teredo_lab::lab_tests! {
    // 50 MB as fast as the tunnel goes fills the CPU: alone.
    needs(root, ours) alone: [
        tcp_50mb_native_host_to_our_client,
        tcp_50mb_our_client_to_native_host,
    ],
    needs(root, ours): [
        our_clients_across_two_full_cone_nats_both_ways,
        sighup_server_change_interface_refusal_invalid_file,
        sigterm_leaves_nothing_behind,
        pid_files_after_sigterm_name_no_live_process,
        nat_reboot_new_port_moves_the_address,
        nat_reboot_new_address_moves_the_address,
        server_stop_withdraws_and_requalifies,
    ],
    needs(root, ours, c_miredo): [
        client_to_client_with_masquerade_nats_ours_vs_c,
    ],
}
