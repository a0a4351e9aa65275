//! Port mapping (issue 16): `teredo-mire portmap` (libteredo's PCP and
//! NAT-PMP mapper) in a lab client, against Debian's miniupnpd in the NAT
//! namespace in front of it (`teredo_lab::miniupnpd`), and against
//! gateways that answer nothing or garbage. Also a survey, reported on
//! `LAB` lines and not asserted: the source endpoint the NAT gives the
//! client's own datagrams from its mapped port, by NAT kind, with and
//! without a mapping.
//!
//! `cargo build --release -p teredo-mire -p miredo -p miredo-server -p miredo-privproc && cargo test --release -p teredo-lab --test lab -- portmap::`

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use teredo_lab::miniupnpd::{self, udp_socket_in, Miniupnpd, Options};
use teredo_lab::steps::{teredo_mire, teredo_mire_built};
use teredo_lab::{report, wait_until, Daemon, NatKind, World};

/// The tool's own bound on asking (its default `--timeout`), and what a
/// test allows it on top to start and stop.
const TOOL_BOUND: Duration = Duration::from_secs(35);
const MARGIN: Duration = Duration::from_secs(3);
/// The short lifetime the tests ask for (miniupnpd's min_lifetime is 2 s
/// in `Options::all`).
const LIFETIME: u64 = 6;
/// The client's internal port (the Teredo port).
const PORT: u16 = 3544;

/// A need of `lab_tests!`: Debian's miniupnpd (nftables build) installed.
fn miniupnpd() -> Option<String> {
    miniupnpd::unavailable()
}

/// The value of the first `key: value` line of `text`.
fn field<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(": "))
        .map(str::trim)
}

fn external_of(log: &str) -> Option<SocketAddrV4> {
    field(log, "external")?.parse().ok()
}

/// Spawns `teredo-mire portmap ARGS` in client `n`'s namespace.
fn spawn_portmap(w: &World, n: usize, label: &str, args: &[&str]) -> Daemon {
    let mut argv = vec![teredo_mire().display().to_string(), "portmap".into()];
    argv.extend(args.iter().map(|s| s.to_string()));
    w.spawn(w.client(n), label, &argv)
}

/// Waits at most `timeout` for `d` to exit; its exit code (None: still
/// running, killed by a signal).
fn wait_exit(w: &World, d: &Daemon, timeout: Duration) -> Option<i32> {
    wait_until(timeout, || !w.is_running(d));
    w.stop(d, Duration::from_secs(1)).and_then(|s| s.code())
}

/// Sends `payload` from the inet router to `to` (from its own address on
/// the NAT's link).
fn send_from_inet(w: &World, to: SocketAddrV4, payload: &[u8]) {
    let s = udp_socket_in(w.inet(), SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0))
        .expect("a socket in inet");
    s.send_to(payload, to).expect("send from inet");
}

/// The whole life of a mapping: the tool maps UDP 3544 of client 1 in
/// `expect` (with `args`), miniupnpd's nftables rules and lease file show
/// it, a datagram from the inet router to the external endpoint reaches
/// the tool, the mapping is renewed across more than two lifetimes, and it
/// is gone once the tool ends (`sigterm`: stopped by SIGTERM; else at the
/// end of its --keep) and exits 0.
fn whole_life(test: &str, gateway: Options, args: &[&str], expect: &str, sigterm: bool) {
    let w = World::build(test, &[NatKind::PortRestricted]);
    let gw = Miniupnpd::start(&w, 1, &gateway);
    let internal = SocketAddrV4::new(w.client_v4(1), PORT);
    let lifetime = LIFETIME.to_string();
    let keep = if sigterm { "60" } else { "16" };
    let mut argv = vec!["--lifetime", &lifetime, "--keep", keep];
    argv.extend_from_slice(args);
    let t0 = Instant::now();
    let d = spawn_portmap(&w, 1, "portmap", &argv);
    let mapped = wait_until(TOOL_BOUND, || {
        external_of(&w.log_of(&d)).is_some() || !w.is_running(&d)
    });
    let log = w.log_of(&d);
    let external = external_of(&log)
        .unwrap_or_else(|| panic!("no mapping after {mapped}/{:?}:\n{log}", t0.elapsed()));
    let took = t0.elapsed();
    assert_eq!(field(&log, "protocol"), Some(expect), "{log}");
    assert_eq!(*external.ip(), gw.external(), "{log}");
    assert_eq!(
        field(&log, "internal"),
        Some(&*internal.to_string()),
        "{log}"
    );
    let given = field(&log, "lifetime").unwrap_or("").to_string();
    report(
        test,
        &format!("{expect} mapping {internal} -> {external} in {took:?}, lifetime {given}"),
    );

    // In miniupnpd's table and rules.
    assert!(
        gw.maps_udp(external.port(), internal),
        "no DNAT rule for {external} -> {internal}:\n{}",
        gw.ruleset()
    );
    let leases = gw.leases();
    assert!(
        leases.iter().any(|l| l.starts_with(&format!(
            "UDP:{}:{}:{PORT}:",
            external.port(),
            internal.ip()
        ))),
        "not in the lease file: {leases:?}"
    );

    // Reachable from outside through it.
    send_from_inet(&w, external, b"through the mapping");
    let reached = wait_until(Duration::from_secs(3), || {
        w.log_of(&d).contains("received: 19 bytes from ")
    });
    assert!(
        reached,
        "a datagram from inet to {external} did not reach {internal}:\n{}",
        w.log_of(&d)
    );

    // Renewed across more than two lifetimes: miniupnpd removes a mapping
    // that lapses, so the rule still there proves the renewals.
    let lifetime = Duration::from_secs(LIFETIME);
    let at = t0 + took + 2 * lifetime + Duration::from_secs(1);
    thread::sleep(at.saturating_duration_since(Instant::now()));
    let log = w.log_of(&d);
    let renewals = log.lines().filter(|l| l.starts_with("renewed: ")).count();
    assert!(
        renewals >= 2,
        "{renewals} renewals in {:?}:\n{log}",
        2 * lifetime
    );
    assert!(
        gw.maps_udp(external.port(), internal),
        "the mapping lapsed despite the renewals:\n{}\n{log}",
        gw.ruleset()
    );
    assert!(!log.contains("lost: "), "{log}");
    report(
        test,
        &format!(
            "{renewals} renewals in {:?}, the rule still there",
            t0.elapsed() - took
        ),
    );

    // Deleted at the end.
    if sigterm {
        w.signal(&d, "TERM");
    }
    let code = wait_exit(&w, &d, Duration::from_secs(20));
    let log = w.log_of(&d);
    assert_eq!(code, Some(0), "{log}");
    assert_eq!(field(&log, "deleted"), Some("yes"), "{log}");
    assert!(
        !gw.maps_udp(external.port(), internal),
        "the mapping outlived the tool:\n{}",
        gw.ruleset()
    );
    assert!(gw.leases().is_empty(), "{:?}", gw.leases());
    report(
        test,
        &format!(
            "deleted {} (exit 0), gone from miniupnpd's rules and lease file",
            if sigterm {
                "on SIGTERM"
            } else {
                "at the end of --keep"
            }
        ),
    );
}

fn pcp_whole_life_sigterm() {
    whole_life(
        "pcp_whole_life_sigterm",
        Options::pcp_only(),
        &[],
        "PCP",
        true,
    );
}

fn natpmp_whole_life() {
    whole_life(
        "natpmp_whole_life",
        Options::natpmp_only(),
        &["--protocol", "natpmp"],
        "NAT-PMP",
        false,
    );
}

/// A gateway that ignores PCP: auto falls back to NAT-PMP; with
/// --no-delete the mapping stays after the tool, until miniupnpd lets it
/// lapse.
fn auto_falls_back_to_natpmp_and_no_delete_lapses() {
    let test = "auto_falls_back_to_natpmp_and_no_delete_lapses";
    let w = World::build(test, &[NatKind::PortRestricted]);
    let gw = Miniupnpd::start(&w, 1, &Options::natpmp_only());
    let internal = SocketAddrV4::new(w.client_v4(1), PORT);
    let lifetime = LIFETIME.to_string();
    let t0 = Instant::now();
    let out = w.client(1).exec(
        &[
            teredo_mire().display().to_string().as_str(),
            "portmap",
            "--lifetime",
            &lifetime,
            "--no-delete",
        ],
        TOOL_BOUND + MARGIN,
    );
    let took = t0.elapsed();
    assert!(out.success(), "{out:?}");
    assert_eq!(field(&out.stdout, "protocol"), Some("NAT-PMP"), "{out:?}");
    assert!(
        out.stderr.contains("NAT-PMP external address request"),
        "{out:?}"
    );
    let external = external_of(&out.stdout).expect("external");
    assert!(field(&out.stdout, "deleted").is_some_and(|d| d.starts_with("no")));
    assert!(gw.maps_udp(external.port(), internal), "{}", gw.ruleset());
    report(
        test,
        &format!(
            "PCP unanswered, NAT-PMP mapping {external} after {took:?}; left in place by --no-delete"
        ),
    );
    let lapsed = wait_until(Duration::from_secs(LIFETIME + 10), || {
        !gw.maps_udp(external.port(), internal)
    });
    assert!(lapsed, "never lapsed:\n{}", gw.ruleset());
    report(
        test,
        &format!(
            "miniupnpd removed it {:?} after the tool",
            t0.elapsed() - took
        ),
    );
}

/// No miniupnpd: the NAT answers ICMP port unreachable; the tool tries
/// PCP then NAT-PMP and exits 1 within its bound.
fn silent_gateway_exits_1_within_bound() {
    let test = "silent_gateway_exits_1_within_bound";
    let w = World::build(test, &[NatKind::PortRestricted]);
    let t0 = Instant::now();
    let out = w.client(1).exec(
        &[teredo_mire().display().to_string().as_str(), "portmap"],
        TOOL_BOUND + MARGIN,
    );
    let took = t0.elapsed();
    assert_eq!(out.status.and_then(|s| s.code()), Some(1), "{out:?}");
    assert!(took <= TOOL_BOUND + Duration::from_secs(1), "{took:?}");
    assert!(out.stderr.contains("did not answer"), "{out:?}");
    assert!(field(&out.stdout, "external").is_none(), "{out:?}");
    let last = out.stderr.lines().last().unwrap_or("");
    report(test, &format!("exit 1 after {took:?}: {last}"));
}

/// A responder on the gateway's port 5351 that answers every request
/// with junk: wrong nonce, truncated, oversized, not a protocol at all.
/// The tool takes none of it and exits 1 within its bound.
fn garbage_gateway_exits_1_within_bound() {
    let test = "garbage_gateway_exits_1_within_bound";
    let w = World::build(test, &[NatKind::PortRestricted]);
    let gw_addr = SocketAddrV4::new(Ipv4Addr::new(192, 168, 1, 1), miniupnpd::PCP_PORT);
    let sock = udp_socket_in(w.nat(1), gw_addr).expect("bind 5351 in the NAT");
    sock.set_read_timeout(Some(Duration::from_millis(100)))
        .expect("timeout");
    let stop = Arc::new(AtomicBool::new(false));
    let stop2 = stop.clone();
    let junk: Vec<Vec<u8>> = {
        // A PCP MAP answer with a nonce that is not the tool's.
        let mut pcp = vec![2, 0x81, 0, 0, 0, 0, 0, 60, 0, 0, 0, 1];
        pcp.resize(24, 0);
        pcp.extend_from_slice(&[0xaa; 12]);
        pcp.extend_from_slice(&[17, 0, 0, 0, 0x0d, 0xd8, 0x0d, 0xd8]);
        pcp.extend_from_slice(&Ipv4Addr::new(11, 0, 1, 1).to_ipv6_mapped().octets());
        vec![
            b"hello, this is not a gateway".to_vec(),
            pcp,
            vec![0, 128, 0],
            vec![0xff; 2000],
            vec![
                0, 129, 0, 0, 0, 0, 0, 1, 0x0d, 0xd9, 0x0d, 0xd8, 0, 0, 0, 60,
            ],
        ]
    };
    let responder = thread::spawn(move || {
        let deadline = Instant::now() + TOOL_BOUND + 2 * MARGIN;
        let (mut got, mut i) = (0u32, 0usize);
        let mut buf = [0u8; 2048];
        while !stop2.load(Ordering::Relaxed) && Instant::now() < deadline {
            if let Ok((_, SocketAddr::V4(from))) = sock.recv_from(&mut buf) {
                got += 1;
                let _ = sock.send_to(&junk[i % junk.len()], from);
                i += 1;
            }
        }
        got
    });
    let t0 = Instant::now();
    let out = w.client(1).exec(
        &[teredo_mire().display().to_string().as_str(), "portmap"],
        TOOL_BOUND + MARGIN,
    );
    let took = t0.elapsed();
    stop.store(true, Ordering::Relaxed);
    let requests = responder.join().expect("responder");
    assert_eq!(out.status.and_then(|s| s.code()), Some(1), "{out:?}");
    assert!(took <= TOOL_BOUND + Duration::from_secs(1), "{took:?}");
    assert!(requests >= 2, "the responder saw {requests} requests");
    assert!(
        out.stderr
            .contains(&format!("{requests} datagrams ignored")),
        "{requests} junk answers not all ignored: {out:?}"
    );
    let last = out.stderr.lines().last().unwrap_or("");
    report(test, &format!("exit 1 after {took:?}: {last}"));
}

/// Where the listeners of the survey live: the inet router, ports 7001+.
const LISTEN: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 254);

/// Sends one datagram from `from` to each of `ports` at [`LISTEN`] and
/// returns the source each listener saw (`None`: nothing came).
fn sources_seen(
    from: &UdpSocket,
    listeners: &[(u16, UdpSocket)],
    ports: &[u16],
) -> Vec<(u16, Option<SocketAddr>)> {
    ports
        .iter()
        .map(|p| {
            let (_, l) = listeners.iter().find(|(q, _)| q == p).expect("listener");
            from.send_to(b"which source?", SocketAddrV4::new(LISTEN, *p))
                .expect("send");
            let mut buf = [0u8; 64];
            (*p, l.recv_from(&mut buf).ok().map(|(_, src)| src))
        })
        .collect()
}

/// [`sources_seen`] for a `LAB` line.
fn seen_line(seen: &[(u16, Option<SocketAddr>)]) -> String {
    seen.iter()
        .map(|(p, src)| match src {
            Some(src) => format!("{LISTEN}:{p} saw {src}"),
            None => format!("{LISTEN}:{p} saw nothing"),
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// `teredo-mire portmap --protocol pcp --no-delete` run in `ns`: the
/// mapping of port 3544 it got, left in place.
fn pcp_map_and_keep(ns: &teredo_lab::Netns) -> SocketAddrV4 {
    let out = ns.exec(
        &[
            teredo_mire().display().to_string().as_str(),
            "portmap",
            "--protocol",
            "pcp",
            "--no-delete",
        ],
        TOOL_BOUND + MARGIN,
    );
    assert!(out.success(), "{out:?}");
    external_of(&out.stdout).expect("external")
}

/// What the survey found at one NAT.
struct Survey {
    /// The PCP mapping of the client's port 3544.
    external: SocketAddrV4,
    /// The sources of new flows from the client's port, mapping in place.
    new_flows: Vec<Option<SocketAddr>>,
    /// The source of the client's answer to a datagram that came in
    /// through the mapping.
    answer: Option<SocketAddr>,
}

/// The survey for NAT `n` of `w` (miniupnpd running on it): the sources
/// inet listeners see for datagrams from the client's port 3544, before
/// any mapping, then (after `between`) with a PCP mapping of it, then as
/// the answer to a datagram that came in through the mapping.
fn survey_site(w: &World, n: usize, test: &str, between: &dyn Fn()) -> Survey {
    let kind = w.nat_kind(n).name();
    let client = w.client(n);
    let internal = SocketAddrV4::new(w.client_v4(n), PORT);
    let base = 7000 + 10 * n as u16;
    let listeners: Vec<(u16, UdpSocket)> = (1..=5)
        .map(|i| {
            let s = udp_socket_in(w.inet(), SocketAddrV4::new(LISTEN, base + i)).expect("listener");
            s.set_read_timeout(Some(Duration::from_secs(2)))
                .expect("timeout");
            (base + i, s)
        })
        .collect();

    // Without a mapping.
    let sock = udp_socket_in(client, internal).expect("bind the client's port");
    let before = sources_seen(&sock, &listeners, &[base + 1, base + 2]);
    drop(sock);
    report(
        test,
        &format!(
            "{kind}, no mapping, from {internal}: {}",
            seen_line(&before)
        ),
    );
    between();

    // With one.
    let external = pcp_map_and_keep(client);
    let _ = w.nat(n).run(&["conntrack", "-F"]);
    let sock = udp_socket_in(client, internal).expect("bind the client's port");
    sock.set_read_timeout(Some(Duration::from_secs(2)))
        .expect("timeout");
    let with = sources_seen(&sock, &listeners, &[base + 3, base + 4]);
    report(
        test,
        &format!(
            "{kind}, mapping {internal} -> {external}, new flows from {internal}: {}",
            seen_line(&with)
        ),
    );

    // An answer to a datagram that came in through the mapping.
    let (_, l5) = &listeners[4];
    l5.send_to(b"in", external).expect("send in");
    let mut buf = [0u8; 64];
    let (answered, answer) = match sock.recv_from(&mut buf) {
        Ok((_, peer)) => {
            sock.send_to(b"answer", peer).expect("answer");
            match l5.recv_from(&mut buf) {
                Ok((_, src)) => (
                    format!("{peer} sent in, its answer came from {src}"),
                    Some(src),
                ),
                Err(e) => (format!("{peer} sent in, no answer came back ({e})"), None),
            }
        }
        Err(e) => (format!("nothing came in through {external} ({e})"), None),
    };
    report(test, &format!("{kind}, through the mapping: {answered}"));
    Survey {
        external,
        new_flows: with.into_iter().map(|(_, src)| src).collect(),
        answer,
    }
}

/// Research for the design (issue 16), kept as a test of what miredo(8)'s
/// port mapping section rests on: on a Linux router, miniupnpd's mapping
/// is a destination translation only, and leaves the client's own
/// datagrams to the NAT's usual policy. With a mapping in place, the
/// client's new flows from its internal port leave from the mapped
/// endpoint behind masquerade (it keeps the port), from other ports
/// behind a fully random NAT, and from other than the mapping behind
/// masquerade when a second LAN host mapped the same internal port first
/// (the client's mapping then gets another external port); an answer to
/// a datagram that came in through the mapping leaves from the mapping,
/// everywhere. Each case asserted, each source printed.
fn survey_source_ports() {
    let test = "survey_source_ports";
    let kinds = [
        NatKind::PortRestricted,
        NatKind::Symmetric,
        NatKind::PortRestricted,
    ];
    let mut w = World::build(test, &kinds);
    let second = w.add_lan_client(3).expect("a second LAN host");
    let gws: Vec<Miniupnpd> = (1..=kinds.len())
        .map(|n| Miniupnpd::start(&w, n, &Options::all()))
        .collect();
    let masquerade = survey_site(&w, 1, test, &|| {});
    let random = survey_site(&w, 2, test, &|| {});
    let theirs = std::cell::Cell::new(None);
    let second_host = survey_site(&w, 3, test, &|| {
        let mapped = pcp_map_and_keep(&second);
        theirs.set(Some(mapped));
        report(
            test,
            &format!("port-restricted, two hosts: 192.168.3.3:{PORT} mapped first, to {mapped}"),
        );
    });
    report(
        test,
        &format!(
            "port-restricted, two hosts: 192.168.3.2:{PORT} got {}; miniupnpd's rules:\n{}",
            second_host.external,
            gws[2].rules()
        ),
    );
    for (site, survey) in [
        ("masquerade", &masquerade),
        ("fully random", &random),
        ("masquerade, two hosts", &second_host),
    ] {
        assert_eq!(
            survey.answer,
            Some(SocketAddr::V4(survey.external)),
            "{site}: the answer through the mapping did not leave from it"
        );
        assert!(
            survey.new_flows.iter().all(Option::is_some),
            "{site}: a new flow from the client's port did not arrive: {:?}",
            survey.new_flows
        );
    }
    let from = |s: &Survey| {
        s.new_flows
            .iter()
            .filter(|src| **src == Some(SocketAddr::V4(s.external)))
            .count()
    };
    assert_eq!(
        masquerade.external.port(),
        PORT,
        "masquerade: the mapping did not keep the port"
    );
    assert_eq!(
        from(&masquerade),
        masquerade.new_flows.len(),
        "masquerade: new flows did not leave from the mapping {}: {:?}",
        masquerade.external,
        masquerade.new_flows
    );
    assert_eq!(
        from(&random),
        0,
        "fully random: a new flow left from the mapping {} (a mapping that translates outgoing datagrams?): {:?}",
        random.external,
        random.new_flows
    );
    assert_ne!(
        theirs.get(),
        Some(second_host.external),
        "two hosts: both got the same mapping"
    );
    assert_eq!(
        from(&second_host),
        0,
        "two hosts: a new flow left from the client's mapping {}: {:?}",
        second_host.external,
        second_host.new_flows
    );
}

// ---------------------------------------------------------------------
// The miredo client's own port mapping (miredo/src/portmap.rs).

/// Our miredo client's status, read from the socket the world gives it.
fn client_status(w: &World, label: &str) -> String {
    let sock = w.trusted_dir().join(format!("{label}.status"));
    let out = teredo_lab::cmd::run_with_timeout(
        &[
            teredo_mire().display().to_string(),
            "status".into(),
            "--all".into(),
            "--socket".into(),
            sock.display().to_string(),
        ],
        Duration::from_secs(5),
    );
    out.stdout
}

/// Waits at most `timeout` for the client's status to say `key: value`;
/// the last status read.
fn wait_status(
    w: &World,
    label: &str,
    key: &str,
    value: &str,
    timeout: Duration,
) -> (bool, String) {
    let mut last = String::new();
    let ok = wait_until(timeout, || {
        last = client_status(w, label);
        field(&last, key) == Some(value)
    });
    (ok, last)
}

/// Our client behind the masquerade NAT, with miniupnpd offering one
/// protocol: the client maps its service port in it (status and
/// miniupnpd's rules agree), renews it across more than two lifetimes of
/// `LIFETIME` s, and deletes it on SIGTERM.
fn client_whole_life(test: &str, gateway: Options, expect: &str, config: &str) {
    let w = World::build(test, &[NatKind::PortRestricted]);
    let gw = Miniupnpd::start(&w, 1, &gateway);
    w.start_server(teredo_lab::Impl::Ours);
    let label = "client1-rs";
    let d = w.start_client(
        1,
        teredo_lab::Impl::Ours,
        &format!("PortMappingLifetime {LIFETIME}\n{config}"),
    );
    let t0 = Instant::now();
    let (addr, _) = w
        .wait_qualified(&d, 1, Duration::from_secs(15))
        .unwrap_or_else(|| panic!("not qualified:\n{}", w.log_of(&d)));
    // PCP's silence costs 15.75 s before NAT-PMP, both 31.5 s before UPnP
    // IGD in auto.
    let (mapped, st) = wait_status(&w, label, "port-mapping", "mapped", Duration::from_secs(40));
    assert!(mapped, "no mapping in the status:\n{st}\n{}", w.log_of(&d));
    let took = t0.elapsed();
    assert_eq!(field(&st, "port-mapping-protocol"), Some(expect), "{st}");
    let external: SocketAddrV4 = field(&st, "port-mapping-external")
        .and_then(|e| e.parse().ok())
        .unwrap_or_else(|| panic!("no external endpoint:\n{st}"));
    assert_eq!(*external.ip(), gw.external(), "{st}");
    let service: std::net::SocketAddr = field(&st, "service-port")
        .and_then(|e| e.parse().ok())
        .unwrap_or_else(|| panic!("no service port:\n{st}"));
    let internal = SocketAddrV4::new(w.client_v4(1), service.port());
    assert!(
        gw.maps_udp(external.port(), internal),
        "no DNAT rule for {external} -> {internal}:\n{}",
        gw.ruleset()
    );
    // The masquerade keeps the port: the server sees the mapping itself
    // (the engine takes the mapping from the mapper thread on the main
    // loop's next turn: within a few seconds).
    let (in_use, st) = wait_status(
        &w,
        label,
        "port-mapping-in-use",
        "yes",
        Duration::from_secs(5),
    );
    assert!(in_use, "the mapping is not in use:\n{st}");
    report(
        test,
        &format!(
            "{expect}: {internal} -> {external} within {took:?} of start, in use by {addr}; lifetime left {}",
            field(&st, "port-mapping-lifetime-left").unwrap_or("?")
        ),
    );
    // Renewed across more than two lifetimes (miniupnpd removes what
    // lapses).
    thread::sleep(Duration::from_secs(2 * LIFETIME + 1));
    let st = client_status(&w, label);
    assert_eq!(field(&st, "port-mapping"), Some("mapped"), "{st}");
    assert_eq!(
        field(&st, "port-mapping-external"),
        Some(&*external.to_string()),
        "{st}"
    );
    assert!(
        gw.maps_udp(external.port(), internal),
        "the mapping lapsed:\n{}\n{}",
        gw.ruleset(),
        w.log_of(&d)
    );
    report(
        test,
        &format!(
            "still mapped {:?} later ({} lifetimes of {LIFETIME} s)",
            t0.elapsed() - took,
            (t0.elapsed() - took).as_secs() / LIFETIME
        ),
    );
    // SIGTERM: deleted before the daemon exits.
    let t1 = Instant::now();
    let status = w.stop(&d, Duration::from_secs(10));
    let log = w.log_of(&d);
    assert!(status.is_some(), "did not exit on SIGTERM:\n{log}");
    assert!(
        !gw.maps_udp(external.port(), internal),
        "the mapping outlived the client:\n{}\n{log}",
        gw.ruleset()
    );
    assert!(gw.leases().is_empty(), "{:?}", gw.leases());
    assert!(log.contains("port mapping: deleted on"), "{log}");
    let lines: Vec<&str> = log.lines().filter(|l| l.contains("port mapping")).collect();
    report(test, &format!("log: {lines:?}"));
    report(
        test,
        &format!(
            "SIGTERM: exited in {:?}, the mapping gone from miniupnpd's rules and lease file",
            t1.elapsed()
        ),
    );
}

fn client_pcp_mapping_renewed_and_deleted() {
    client_whole_life(
        "client_pcp_mapping_renewed_and_deleted",
        Options::pcp_only(),
        "PCP",
        "",
    );
}

fn client_natpmp_mapping_renewed_and_deleted() {
    client_whole_life(
        "client_natpmp_mapping_renewed_and_deleted",
        Options::natpmp_only(),
        "NAT-PMP",
        "",
    );
}

fn client_upnp_mapping_renewed_and_deleted() {
    client_whole_life(
        "client_upnp_mapping_renewed_and_deleted",
        Options::upnp_only(),
        "UPnP IGD",
        "PortMapping upnp\n",
    );
}

fn client_auto_falls_back_to_upnp() {
    client_whole_life(
        "client_auto_falls_back_to_upnp",
        Options::upnp_only(),
        "UPnP IGD",
        "",
    );
}

/// Gateways that offer no mapping: NAT 1 answers every request with junk,
/// NAT 2 answers nothing. Both clients qualify as without a gateway, say
/// `unavailable` once both protocols were tried (PCP then NAT-PMP: 31.5 s
/// of tries), and log at most one line about it.
fn client_garbage_and_silent_gateways_cost_a_log_line() {
    let test = "client_garbage_and_silent_gateways_cost_a_log_line";
    let w = World::build(test, &[NatKind::PortRestricted, NatKind::PortRestricted]);
    let gw_addr = SocketAddrV4::new(Ipv4Addr::new(192, 168, 1, 1), miniupnpd::PCP_PORT);
    let sock = udp_socket_in(w.nat(1), gw_addr).expect("bind 5351 in NAT 1");
    sock.set_read_timeout(Some(Duration::from_millis(100)))
        .expect("timeout");
    let stop = Arc::new(AtomicBool::new(false));
    let stop2 = stop.clone();
    let responder = thread::spawn(move || {
        let junk: [&[u8]; 4] = [
            b"not a gateway",
            &[2, 0x81, 0, 0],
            &[0, 128, 0],
            &[0xff; 1500],
        ];
        let deadline = Instant::now() + Duration::from_secs(90);
        let (mut got, mut i) = (0u32, 0usize);
        let mut buf = [0u8; 2048];
        while !stop2.load(Ordering::Relaxed) && Instant::now() < deadline {
            if let Ok((_, SocketAddr::V4(from))) = sock.recv_from(&mut buf) {
                got += 1;
                let _ = sock.send_to(junk[i % junk.len()], from);
                i += 1;
            }
        }
        got
    });
    w.start_server(teredo_lab::Impl::Ours);
    let d1 = w.start_client(1, teredo_lab::Impl::Ours, "");
    let d2 = w.start_client(2, teredo_lab::Impl::Ours, "");
    let q1 = w.wait_qualified(&d1, 1, Duration::from_secs(15));
    let q2 = w.wait_qualified(&d2, 2, Duration::from_secs(15));
    assert!(
        q1.is_some(),
        "client 1 (garbage gateway) did not qualify:\n{}",
        w.log_of(&d1)
    );
    assert!(
        q2.is_some(),
        "client 2 (silent gateway) did not qualify:\n{}",
        w.log_of(&d2)
    );
    let bound = Duration::from_secs(40);
    let (u1, st1) = wait_status(&w, "client1-rs", "port-mapping", "unavailable", bound);
    let (u2, st2) = wait_status(&w, "client2-rs", "port-mapping", "unavailable", bound);
    stop.store(true, Ordering::Relaxed);
    let answered = responder.join().unwrap_or(0);
    assert!(u1, "garbage gateway: {st1}");
    assert!(u2, "silent gateway: {st2}");
    for (n, d) in [(1, &d1), (2, &d2)] {
        let log = w.log_of(d);
        let lines: Vec<&str> = log.lines().filter(|l| l.contains("port mapping")).collect();
        assert!(lines.len() <= 1, "client {n}: {lines:?}");
        report(
            test,
            &format!(
                "client {n} ({}): qualified, port-mapping unavailable ({}); log: {lines:?}",
                if n == 1 { "garbage" } else { "silent" },
                field(if n == 1 { &st1 } else { &st2 }, "port-mapping-error").unwrap_or("")
            ),
        );
    }
    assert!(answered > 0, "the junk responder heard nothing");
    report(
        test,
        &format!("the junk responder answered {answered} requests"),
    );
}

/// One row of the interop table: echoes answered (sent, got) each way.
struct Row {
    nat: &'static str,
    gateway: bool,
    client: teredo_lab::Impl,
    /// Our client's `PortMapping` setting.
    setting: &'static str,
    mapping: String,
    native_in: (u32, u32),
    c_in: (u32, u32),
    ours_in: (u32, u32),
    native_out: (u32, u32),
    c_out: (u32, u32),
    ours_out: (u32, u32),
    /// Our client with miniupnpd: miniupnpd's DNAT rules to it while it
    /// ran (1: the mapping moved, not duplicated), and after its SIGTERM.
    rules: Option<(usize, usize)>,
}

/// The client at site 1 (ours or C), behind `kind`, with or without
/// miniupnpd in its NAT; a C client behind the masquerade NAT at site 2, one
/// of ours (without port mapping) behind another at site 3;
/// the native host; our server and relay. Our client runs with
/// `PortMapping setting`. Pings towards the site-1 client first (from the
/// native host and the C client at once: first contact comes from them),
/// then from it.
fn interop_row(
    test: &str,
    kind: NatKind,
    gateway: bool,
    client: teredo_lab::Impl,
    setting: &'static str,
) -> Row {
    use teredo_lab::Impl;
    let w = World::build(
        test,
        &[kind, NatKind::PortRestricted, NatKind::PortRestricted],
    );
    let gw = gateway.then(|| Miniupnpd::start(&w, 1, &Options::all()));
    w.start_server(Impl::Ours);
    w.start_relay(Impl::Ours, "cone");
    let config = if client == Impl::Ours {
        format!("PortMapping {setting}\n")
    } else {
        String::new()
    };
    let a = w.start_client(1, client, &config);
    let b = w.start_client(2, Impl::C, "");
    let c = w.start_client(3, Impl::Ours, "PortMapping off\n");
    let timeout = Duration::from_secs(15);
    let (addr_a, _) = w
        .wait_qualified(&a, 1, timeout)
        .unwrap_or_else(|| panic!("client 1 did not qualify:\n{}", w.log_of(&a)));
    let (addr_b, _) = w
        .wait_qualified(&b, 2, timeout)
        .unwrap_or_else(|| panic!("the C client did not qualify:\n{}", w.log_of(&b)));
    let (addr_c, _) = w
        .wait_qualified(&c, 3, timeout)
        .unwrap_or_else(|| panic!("our client 3 did not qualify:\n{}", w.log_of(&c)));
    let mapping = if client == Impl::Ours {
        // Mapped, then (behind a NAT with random ports) moved to the
        // port the server sees: in use. UPnP IGD in auto comes after
        // PCP's and NAT-PMP's silence (31.5 s); here they answer.
        let (mapped, st) = if gateway {
            wait_status(
                &w,
                "client1-rs",
                "port-mapping-in-use",
                "yes",
                Duration::from_secs(20),
            )
        } else {
            (false, client_status(&w, "client1-rs"))
        };
        match (
            field(&st, "port-mapping-external"),
            field(&st, "port-mapping-protocol"),
        ) {
            (Some(e), Some(p)) => format!(
                "{p} {e} (in use: {})",
                field(&st, "port-mapping-in-use").unwrap_or("?")
            ),
            _ if mapped => "?".into(),
            _ => field(&st, "port-mapping").unwrap_or("?").to_string(),
        }
    } else {
        "none (the C client asks for none)".into()
    };
    let ping = teredo_lab::ping6_stats;
    let t = Duration::from_secs(8);
    let (native_in, c_in, ours_in) = thread::scope(|s| {
        let x = s.spawn(|| ping(w.v6h(), addr_a, 4, t));
        let y = s.spawn(|| ping(w.client(2), addr_a, 4, t));
        let z = s.spawn(|| ping(w.client(3), addr_a, 4, t));
        (
            x.join().unwrap_or((0, 0)),
            y.join().unwrap_or((0, 0)),
            z.join().unwrap_or((0, 0)),
        )
    });
    let (native_out, c_out, ours_out) = thread::scope(|s| {
        let x = s.spawn(|| ping(w.client(1), teredo_lab::NATIVE_V6, 4, t));
        let y = s.spawn(|| ping(w.client(1), addr_b, 4, t));
        let z = s.spawn(|| ping(w.client(1), addr_c, 4, t));
        (
            x.join().unwrap_or((0, 0)),
            y.join().unwrap_or((0, 0)),
            z.join().unwrap_or((0, 0)),
        )
    });
    let rules = match (&gw, client) {
        (Some(g), Impl::Ours) => {
            let to_client = format!("dnat ip to {}:", w.client_v4(1));
            let count = || {
                g.rules()
                    .lines()
                    .filter(|l| l.contains("@nh,72,8 0x11") && l.contains(&to_client))
                    .count()
            };
            let held = count();
            let _ = w.stop(&a, Duration::from_secs(10));
            Some((held, count()))
        }
        _ => None,
    };
    drop(gw);
    Row {
        nat: kind.name(),
        gateway,
        client,
        setting,
        mapping,
        native_in,
        c_in,
        ours_in,
        native_out,
        c_out,
        ours_out,
        rules,
    }
}

/// The interop table of issue 16: NAT kind (masquerade, fully random) x
/// miniupnpd (without, with) x the client behind it (ours with `PortMapping
/// auto`, C), pinged by and pinging the native host and a C client behind
/// another NAT; and ours behind the fully random NAT with miniupnpd asked
/// in NAT-PMP and in UPnP IGD alone. Echoes are answered/sent: `ping -c 4
/// -w 8` sends until 4 answers or 8 s. Asserted: behind either NAT with
/// miniupnpd, in each protocol, our client holds a mapping in use and
/// passes all four; the rest is reported as it is.
fn client_interop_table_with_and_without_miniupnpd() {
    use teredo_lab::Impl;
    let test = "client_interop_table_with_and_without_miniupnpd";
    let fmt = |r: (u32, u32)| format!("{}/{}", r.1, r.0);
    let mut rows = Vec::new();
    for kind in [NatKind::PortRestricted, NatKind::Symmetric] {
        for gateway in [false, true] {
            for client in [Impl::Ours, Impl::C] {
                rows.push(interop_row(test, kind, gateway, client, "auto"));
            }
        }
    }
    for setting in ["natpmp", "upnp"] {
        rows.push(interop_row(
            test,
            NatKind::Symmetric,
            true,
            Impl::Ours,
            setting,
        ));
    }
    let mut table = String::from(
        "| NAT | miniupnpd | client | mapping | native -> client | C client -> client | our client -> client | client -> native | client -> C client | client -> our client |\n|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for r in &rows {
        table += &format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
            r.nat,
            if r.gateway { "yes" } else { "no" },
            if r.client == Impl::Ours {
                format!("ours ({})", r.setting)
            } else {
                "C".into()
            },
            match r.rules {
                Some((held, after)) => format!(
                    "{} ({held} rule{}, {after} after SIGTERM)",
                    r.mapping,
                    if held == 1 { "" } else { "s" }
                ),
                None => r.mapping.clone(),
            },
            fmt(r.native_in),
            fmt(r.c_in),
            fmt(r.ours_in),
            fmt(r.native_out),
            fmt(r.c_out),
            fmt(r.ours_out)
        );
    }
    report(test, &format!("echoes answered/sent:\n{table}"));
    let keys: Vec<&Row> = rows
        .iter()
        .filter(|r| r.gateway && r.client == Impl::Ours)
        .collect();
    assert_eq!(keys.len(), 4, "{table}");
    for key in keys {
        let row = format!("{} NAT with miniupnpd, ours ({})", key.nat, key.setting);
        assert!(key.mapping.contains("in use: yes"), "{row}:\n{table}");
        assert_eq!(key.rules, Some((1, 0)), "{row}: miniupnpd's rules\n{table}");
        for (what, r) in [
            ("native -> ours", key.native_in),
            ("C -> ours", key.c_in),
            ("another of ours -> ours", key.ours_in),
            ("ours -> native", key.native_out),
            ("ours -> C", key.c_out),
            ("ours -> another of ours", key.ours_out),
        ] {
            assert!(r.1 > 0 && r.1 + 1 >= r.0, "{row}, {what}: {r:?}\n{table}");
        }
    }
}

/// Behind the fully random NAT with miniupnpd: the mapping follows the
/// server's view. Once the mapping is in use, the NAT forgets its flows
/// (`conntrack -F`), so the client's next solicitation leaves from another
/// random port: the client takes the new address, the mapper moves the
/// mapping to the new port (one DNAT rule to the client, on it), and the
/// C client reaches the new address both ways.
fn client_mapping_follows_the_servers_view() {
    use teredo_lab::Impl;
    let test = "client_mapping_follows_the_servers_view";
    let w = World::build(test, &[NatKind::Symmetric, NatKind::PortRestricted]);
    let gw = Miniupnpd::start(&w, 1, &Options::all());
    w.start_server(Impl::Ours);
    w.start_relay(Impl::Ours, "cone");
    let a = w.start_client(1, Impl::Ours, "PortMapping pcp\n");
    let b = w.start_client(2, Impl::C, "");
    let timeout = Duration::from_secs(15);
    w.wait_qualified(&a, 1, timeout)
        .unwrap_or_else(|| panic!("not qualified:\n{}", w.log_of(&a)));
    let (addr_b, _) = w
        .wait_qualified(&b, 2, timeout)
        .unwrap_or_else(|| panic!("the C client did not qualify:\n{}", w.log_of(&b)));
    let label = "client1-rs";
    let (used, st) = wait_status(&w, label, "port-mapping-in-use", "yes", timeout);
    assert!(used, "{st}\n{}", w.log_of(&a));
    let first = field(&st, "port-mapping-external")
        .unwrap_or("?")
        .to_string();
    let addr1 = field(&st, "address").unwrap_or("?").to_string();
    let _ = w.nat(1).run(&["conntrack", "-F"]);
    let t0 = Instant::now();
    // The next maintenance solicitation comes within the refresh interval
    // (30 s).
    let mut st = String::new();
    let moved = wait_until(Duration::from_secs(45), || {
        st = client_status(&w, label);
        field(&st, "address").is_some_and(|x| x != addr1)
            && field(&st, "port-mapping-in-use") == Some("yes")
    });
    assert!(moved, "{st}\n{}", w.log_of(&a));
    let took = t0.elapsed();
    let second = field(&st, "port-mapping-external")
        .unwrap_or("?")
        .to_string();
    let addr2: std::net::Ipv6Addr = field(&st, "address")
        .and_then(|x| x.parse().ok())
        .unwrap_or_else(|| panic!("{st}"));
    assert_ne!(first, second, "{st}");
    assert_eq!(
        field(&st, "mapped-port"),
        second.rsplit(':').next(),
        "the mapping is on the port the server sees: {st}"
    );
    let to_client = format!("dnat ip to {}:", w.client_v4(1));
    let rules: Vec<String> = gw
        .rules()
        .lines()
        .filter(|l| l.contains("@nh,72,8 0x11") && l.contains(&to_client))
        .map(str::to_string)
        .collect();
    assert_eq!(rules.len(), 1, "{rules:?}");
    let t = Duration::from_secs(8);
    let c_in = teredo_lab::ping6_stats(w.client(2), addr2, 4, t);
    let c_out = teredo_lab::ping6_stats(w.client(1), addr_b, 4, t);
    let log = w.log_of(&a);
    let lines: Vec<&str> = log.lines().filter(|l| l.contains("port mapping")).collect();
    report(
        test,
        &format!(
            "{addr1} mapped {first}; after the NAT forgot its flows, {addr2} mapped {second} \
             within {took:?}; C client -> client {}/{}, client -> C client {}/{}; log: {lines:?}",
            c_in.1, c_in.0, c_out.1, c_out.0
        ),
    );
    assert!(c_in.1 > 0 && c_in.1 + 1 >= c_in.0, "C -> ours {c_in:?}");
    assert!(c_out.1 > 0 && c_out.1 + 1 >= c_out.0, "ours -> C {c_out:?}");
}

/// `teredo-mire probe` reports what the gateway offers: behind NAT 1,
/// miniupnpd answers PCP, NAT-PMP and UPnP IGD (with the external address
/// the server sees); behind NAT 2, nothing answers.
fn probe_reports_what_the_gateway_offers() {
    let test = "probe_reports_what_the_gateway_offers";
    let w = World::build(test, &[NatKind::PortRestricted, NatKind::PortRestricted]);
    let gw = Miniupnpd::start(&w, 1, &Options::all());
    w.start_server(teredo_lab::Impl::Ours);
    let argv = [
        teredo_mire().display().to_string(),
        "probe".into(),
        teredo_lab::SERVER_V4.to_string(),
        "--no-nat-test".into(),
    ];
    let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
    let with = w.client(1).exec(&argv, Duration::from_secs(30));
    let without = w.client(2).exec(&argv, Duration::from_secs(30));
    let out = &with.stdout;
    assert_eq!(with.status.and_then(|s| s.code()), Some(0), "{with:?}");
    assert_eq!(field(out, "gateway"), Some("192.168.1.1"), "{out}");
    assert!(
        field(out, "gateway pcp").is_some_and(|v| v.starts_with("yes")),
        "{out}"
    );
    let external = format!("external address {}", gw.external());
    assert!(
        field(out, "gateway nat-pmp")
            .is_some_and(|v| v.starts_with("yes") && v.contains(&external)),
        "{out}"
    );
    assert_eq!(
        field(out, "mapped address"),
        Some(&*gw.external().to_string()),
        "{out}"
    );
    let out2 = &without.stdout;
    assert_eq!(
        without.status.and_then(|s| s.code()),
        Some(0),
        "{without:?}"
    );
    assert!(
        field(out2, "gateway pcp").is_some_and(|v| v.starts_with("no answer")),
        "{out2}"
    );
    assert!(
        field(out2, "gateway nat-pmp").is_some_and(|v| v.starts_with("no answer")),
        "{out2}"
    );
    for (n, o) in [(1, out), (2, out2)] {
        let lines: Vec<&str> = o.lines().filter(|l| l.starts_with("gateway")).collect();
        report(test, &format!("client {n}: {lines:?}"));
    }
    // UPnP IGD: behind miniupnpd, its WANIPConnection service, its control
    // URL on the gateway, and the same external address; behind the bare
    // NAT, no IGD answered the SSDP search.
    let upnp = field(out, "gateway upnp").unwrap_or_default();
    assert!(
        upnp.starts_with("yes (WANIPConnection")
            && upnp.contains("control http://192.168.1.1:")
            && upnp.contains(&external),
        "gateway upnp: {out}"
    );
    assert!(
        field(out2, "gateway upnp").is_some_and(|v| v.starts_with("no (")),
        "gateway upnp: {out2}"
    );
}

teredo_lab::lab_tests! {
    needs(root, ours, c_miredo, miniupnpd, teredo_mire_built): [
        client_interop_table_with_and_without_miniupnpd,
        client_mapping_follows_the_servers_view,
    ],
    needs(root, ours, miniupnpd, teredo_mire_built): [
        probe_reports_what_the_gateway_offers,
        client_pcp_mapping_renewed_and_deleted,
        client_natpmp_mapping_renewed_and_deleted,
        client_upnp_mapping_renewed_and_deleted,
        client_auto_falls_back_to_upnp,
    ],
    needs(root, ours, teredo_mire_built): [
        client_garbage_and_silent_gateways_cost_a_log_line,
    ],
    needs(root, miniupnpd, teredo_mire_built): [
        pcp_whole_life_sigterm,
        natpmp_whole_life,
        auto_falls_back_to_natpmp_and_no_delete_lapses,
        survey_source_ports,
    ],
    needs(root, teredo_mire_built): [
        silent_gateway_exits_1_within_bound,
        garbage_gateway_exits_1_within_bound,
    ],
}
