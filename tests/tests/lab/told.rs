//! Issue 27, what the daemon tells and leaves: a client's interface stays
//! down until it qualifies (as the C miredo's), a stop runs the client
//! hook's `down` while the interface still exists, a refused start leaves
//! no status socket behind and says what to do, every counter of the status
//! page agrees with the kernel's count of the same traffic (and the JSON
//! and Prometheus renderings with the page), `-v` says what the client does
//! and no `-v` stays quiet, and a relay without IPv6 forwarding says so.

use std::fs;
use std::path::Path;
use std::time::Duration;

use teredo_lab::named::{client_conf, relay_conf, start_client_with_hook, status_at, unique_iface};
use teredo_lab::steps::{self, mostly, ping, teredo_mire};
use teredo_lab::{report, wait_for, wait_until, Impl, NatKind, Netns, World};

/// The link's flags as `ip -o link show` prints them (`<...,UP,...>`).
fn link_flags(ns: &Netns, iface: &str) -> Option<String> {
    let out = ns.ip(&format!("-o link show dev {iface}")).ok()?;
    let start = out.find('<')?;
    let end = out[start..].find('>')?;
    Some(out[start + 1..start + end].to_string())
}

fn is_up(ns: &Netns, iface: &str) -> bool {
    link_flags(ns, iface).is_some_and(|f| f.split(',').any(|x| x == "UP"))
}

/// A counter of the interface, from sysfs in its namespace.
fn link_stat(ns: &Netns, iface: &str, what: &str) -> Option<u64> {
    ns.run(&[
        "cat".to_string(),
        format!("/sys/class/net/{iface}/statistics/{what}"),
    ])
    .ok()?
    .trim()
    .parse()
    .ok()
}

/// `Udp: ... InDatagrams ... OutDatagrams` of the namespace.
fn udp_snmp(ns: &Netns) -> Option<(u64, u64)> {
    let text = ns.run(&["cat", "/proc/net/snmp"]).ok()?;
    let mut udp = text.lines().filter(|l| l.starts_with("Udp:"));
    let names: Vec<&str> = udp.next()?.split_whitespace().collect();
    let values: Vec<&str> = udp.next()?.split_whitespace().collect();
    let get = |n: &str| {
        names
            .iter()
            .position(|x| *x == n)
            .and_then(|i| values.get(i)?.parse().ok())
    };
    Some((get("InDatagrams")?, get("OutDatagrams")?))
}

fn field(status: &[(String, String)], key: &str) -> Option<u64> {
    status
        .iter()
        .find(|(k, _)| k == key)
        .and_then(|(_, v)| v.parse().ok())
}

/// The client's interface before and after qualification: down, with no
/// address, while its server does not answer; up with its Teredo address
/// once qualified.
fn a_clients_interface_stays_down_until_it_qualifies() {
    let test = "a_clients_interface_stays_down_until_it_qualifies";
    let w = World::build(test, &[NatKind::PortRestricted]);
    let iface = unique_iface(&w, "dn");
    // No server yet: the client solicits 198.18.1.1, where nothing answers.
    let cli = w.spawn_daemon(
        w.client(1),
        "client1-down",
        &Impl::Ours.miredo(),
        &client_conf(&iface, "PortMapping off\n"),
        &[],
    );
    let exists = wait_until(Duration::from_secs(5), || w.client(1).has_iface(&iface));
    assert!(exists, "no interface {iface}:\n{}", w.log_of(&cli));
    // A while for the kernel to have configured an interface that is up.
    std::thread::sleep(Duration::from_secs(2));
    let flags = link_flags(w.client(1), &iface).unwrap_or_default();
    let addrs = w.client(1).ipv6_addrs(&iface);
    report(
        test,
        &format!("not qualified: {iface} <{flags}>, IPv6 addresses {addrs:?}"),
    );
    assert!(
        !is_up(w.client(1), &iface),
        "{iface} is up before qualification: <{flags}>"
    );
    assert!(addrs.is_empty(), "{iface} has addresses: {addrs:?}");
    // The server starts: qualified, up, with the address.
    let _srv = w.start_server(Impl::Ours);
    let addr = wait_for(Duration::from_secs(40), || {
        teredo_lab::teredo_addr_of(w.client(1), &iface)
    })
    .unwrap_or_else(|| panic!("not qualified:\n{}", w.log_of(&cli)));
    let flags = link_flags(w.client(1), &iface).unwrap_or_default();
    report(test, &format!("qualified as {addr}: {iface} <{flags}>"));
    assert!(is_up(w.client(1), &iface), "<{flags}>");
}

/// SIGTERM with a hook in place: the hook's `down` runs while the
/// interface exists (the hook checks), then `destroy`; nothing in the log
/// says a device is missing.
fn a_stop_runs_the_hooks_down_while_the_interface_exists() {
    let test = "a_stop_runs_the_hooks_down_while_the_interface_exists";
    let w = World::build(test, &[NatKind::PortRestricted]);
    let _srv = w.start_server(Impl::Ours);
    let iface = unique_iface(&w, "hk");
    let hook_log = w.shared_log("hook.log");
    let hook = w.write_hook(
        "client-hook",
        &format!(
            "#!/bin/sh\n\
             if ip link show dev \"$IFACE\" >/dev/null 2>&1; then there=present; else there=absent; fi\n\
             echo \"$STATE $there\" >> {log}\n\
             case \"$STATE\" in\n\
             up)\n\
               ip link set dev \"$IFACE\" up mtu \"$MTU\"\n\
               ip -6 addr add \"$LLADDRESS/64\" dev \"$IFACE\" 2>/dev/null\n\
               ip -6 addr add \"$ADDRESS/32\" dev \"$IFACE\" ;;\n\
             down)\n\
               ip -6 addr flush dev \"$IFACE\"\n\
               ip link set dev \"$IFACE\" down ;;\n\
             esac\n\
             exit 0\n",
            log = hook_log.display()
        ),
    );
    let cli = start_client_with_hook(&w, 1, &iface, &hook, "client1-hook");
    let addr = wait_for(steps::QUALIFY_TIMEOUT, || {
        teredo_lab::teredo_addr_of(w.client(1), &iface)
    })
    .unwrap_or_else(|| panic!("not qualified:\n{}", w.log_of(&cli)));
    let pid_file = w.dir().join("client1-hook.pid");
    assert!(pid_file.exists(), "no pid file {}", pid_file.display());
    w.signal(&cli, "TERM");
    let status = w.stop(&cli, Duration::from_secs(15));
    // The pid file goes with the daemon (its keeper removes it).
    let removed = wait_until(Duration::from_secs(3), || !pid_file.exists());
    report(test, &format!("pid file removed at the stop: {removed}"));
    assert!(removed, "{} stays after the stop", pid_file.display());
    let calls = fs::read_to_string(&hook_log).unwrap_or_default();
    let log = w.log_of(&cli);
    report(
        test,
        &format!(
            "qualified as {addr}, then SIGTERM: exit {status:?}; hook calls: {}",
            calls.trim().replace('\n', " | ")
        ),
    );
    assert!(
        calls.lines().any(|l| l == "down present"),
        "the hook's down did not run while {iface} existed: {calls:?}\n{log}"
    );
    assert_eq!(
        calls.lines().filter(|l| l.starts_with("down")).count(),
        1,
        "down more than once: {calls:?}"
    );
    assert!(
        !calls.lines().any(|l| l == "down absent"),
        "the hook's down ran after {iface} was gone: {calls:?}\n{log}"
    );
    assert!(
        !log.contains("Cannot find device"),
        "a hook met a missing device:\n{log}"
    );
    assert_eq!(status.and_then(|s| s.code()), Some(0), "{log}");
}

/// A second client refused over its interface (the name in use) leaves
/// no status socket, and says another miredo may be running on it.
fn a_refused_start_leaves_no_status_socket() {
    let test = "a_refused_start_leaves_no_status_socket";
    let w = World::build(test, &[NatKind::PortRestricted]);
    let _srv = w.start_server(Impl::Ours);
    let iface = unique_iface(&w, "rf");
    let first = w.spawn_daemon(
        w.client(1),
        "client1-first",
        &Impl::Ours.miredo(),
        &client_conf(&iface, "PortMapping off\n"),
        &[],
    );
    wait_for(steps::QUALIFY_TIMEOUT, || {
        teredo_lab::teredo_addr_of(w.client(1), &iface)
    })
    .unwrap_or_else(|| panic!("the first did not qualify:\n{}", w.log_of(&first)));
    // The same interface name, its own status socket: refused at the TUN.
    let sock = w.trusted_dir().join("second.status");
    let second = w.spawn_daemon(
        w.client(1),
        "client1-second",
        &Impl::Ours.miredo(),
        &client_conf(&iface, "PortMapping off\n"),
        &["--status-socket", &sock.display().to_string()],
    );
    let ended = wait_until(Duration::from_secs(10), || !w.is_running(&second));
    let status = w.stop(&second, Duration::from_secs(1));
    let log = w.log_of(&second);
    report(
        test,
        &format!(
            "second client over {iface}: ended {ended}, exit {:?}; said: {}",
            status.and_then(|s| s.code()),
            log.lines()
                .filter(|l| l.contains("TUN"))
                .collect::<Vec<_>>()
                .join(" | ")
        ),
    );
    assert!(ended && status.and_then(|s| s.code()) == Some(1), "{log}");
    assert!(
        log.contains("another miredo may be running with it"),
        "the refusal does not say what to do:\n{log}"
    );
    assert!(
        !Path::new(&sock).exists(),
        "the refused start left its status socket {}",
        sock.display()
    );
    // The first one's still answers.
    assert!(!status_at(&Path::new("/run/miredo").join(format!("{iface}.status"))).is_empty());
}

/// The counters against the kernel's count of the same traffic: the
/// client's namespace has no other UDP user (port mapping off, a literal
/// server), so its UDP datagrams in and out are the daemon's; the packets
/// the interface sent are those the daemon read from it, and those it
/// received those the daemon wrote. Each kernel reading is bracketed by two
/// status pages (timers may send between). The JSON and Prometheus
/// renderings carry every counter of the page, with the same values.
fn every_counter_against_the_traffic() {
    let test = "every_counter_against_the_traffic";
    let w = World::build(test, &[NatKind::PortRestricted]);
    let _srv = w.start_server(Impl::Ours);
    let _relay = w.start_relay(Impl::Ours, "cone");
    let iface = unique_iface(&w, "ct");
    let before = udp_snmp(w.client(1)).expect("/proc/net/snmp in the client's namespace");
    let cli = w.spawn_daemon(
        w.client(1),
        "client1-count",
        &Impl::Ours.miredo(),
        &client_conf(&iface, "PortMapping off\n"),
        &[],
    );
    let addr = wait_for(steps::QUALIFY_TIMEOUT, || {
        teredo_lab::teredo_addr_of(w.client(1), &iface)
    })
    .unwrap_or_else(|| panic!("not qualified:\n{}", w.log_of(&cli)));
    assert!(mostly(ping(&w, "native -> client", w.v6h(), addr, 5)));
    std::thread::sleep(Duration::from_secs(1));
    let sock = Path::new("/run/miredo").join(format!("{iface}.status"));
    let mut agreed = None;
    for _ in 0..10 {
        let a = status_at(&sock);
        let udp = udp_snmp(w.client(1));
        let rx = link_stat(w.client(1), &iface, "rx_packets");
        let tx = link_stat(w.client(1), &iface, "tx_packets");
        let b = status_at(&sock);
        let (Some((uin, uout)), Some(rx), Some(tx)) = (udp, rx, tx) else {
            continue;
        };
        let (uin, uout) = (uin - before.0, uout - before.1);
        let within = |key: &str, kernel: u64| {
            let (x, y) = (field(&a, key), field(&b, key));
            x.zip(y).is_some_and(|(x, y)| x <= kernel && kernel <= y)
        };
        let line = format!(
            "kernel: UDP in {uin}, out {uout}; {iface} sent {tx}, received {rx}; status: udp-rx {:?}..{:?}, udp-tx {:?}..{:?}, tun-rx {:?}..{:?}, tun-tx {:?}..{:?}",
            field(&a, "udp-rx-packets"),
            field(&b, "udp-rx-packets"),
            field(&a, "udp-tx-packets"),
            field(&b, "udp-tx-packets"),
            field(&a, "tun-rx-packets"),
            field(&b, "tun-rx-packets"),
            field(&a, "tun-tx-packets"),
            field(&b, "tun-tx-packets"),
        );
        let ok = within("udp-rx-packets", uin)
            && within("udp-tx-packets", uout)
            && within("tun-rx-packets", tx)
            && within("tun-tx-packets", rx);
        agreed = Some((ok, line, b));
        if ok {
            break;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    let (ok, line, page) = agreed.expect("no reading of the counters");
    report(test, &line);
    assert!(ok, "the status page and the kernel disagree: {line}");
    assert!(field(&page, "udp-tx-packets").unwrap_or(0) > 0, "{page:?}");
    // Bytes: at least an IPv6 header a packet, at most an MTU and the
    // Teredo headers.
    for (p, b) in [
        ("udp-rx-packets", "udp-rx-bytes"),
        ("udp-tx-packets", "udp-tx-bytes"),
        ("tun-rx-packets", "tun-rx-bytes"),
        ("tun-tx-packets", "tun-tx-bytes"),
    ] {
        let (n, bytes) = (field(&page, p).unwrap_or(0), field(&page, b).unwrap_or(0));
        assert!(
            bytes >= 40 * n && bytes <= 1500 * n,
            "{b} {bytes} for {p} {n}"
        );
    }
    let drops: u64 = page
        .iter()
        .filter(|(k, _)| k.starts_with("drop-"))
        .filter_map(|(_, v)| v.parse::<u64>().ok())
        .sum();
    // The other renderings: every numeric line, the same value.
    let run = |format: &str| {
        teredo_lab::cmd::run_with_timeout(
            &[
                teredo_mire().display().to_string(),
                "status".into(),
                "--socket".into(),
                sock.display().to_string(),
                "--format".into(),
                format.into(),
            ],
            Duration::from_secs(5),
        )
        .stdout
    };
    let (json, prom) = (run("json"), run("prometheus"));
    let page = status_at(&sock);
    // Counters move between readings: their values were compared with the
    // kernel's above; here every numeric key of the page must be in the
    // JSON, and the traffic and drop counters be at least eight.
    let mut checked = 0;
    for (k, v) in &page {
        if v.parse::<u64>().is_err() {
            continue;
        }
        assert!(json.contains(&format!("\"{k}\": ")), "{k} not in the JSON");
        if k.starts_with("drop-") || k.starts_with("udp-") || k.starts_with("tun-") {
            checked += 1;
        }
    }
    assert!(checked >= 8, "{page:?}");
    assert!(
        prom.contains("teredo_udp_sent_packets_total ")
            && prom.contains("teredo_tunnel_received_packets_total ")
            && prom.contains("teredo_dropped_packets_total{reason="),
        "{prom}"
    );
    report(
        test,
        &format!("{checked} traffic counters in the JSON and the exposition; {drops} drops in all"),
    );
}

/// `-v`: the client says each solicitation and advertisement; without it,
/// none of those lines.
fn verbose_says_what_the_client_does() {
    let test = "verbose_says_what_the_client_does";
    let w = World::build(test, &[NatKind::PortRestricted]);
    let _srv = w.start_server(Impl::Ours);
    let mut said = Vec::new();
    for (verbose, label) in [(true, "client1-v"), (false, "client1-quiet")] {
        let iface = unique_iface(&w, if verbose { "vb" } else { "qt" });
        let extra: &[&str] = if verbose { &["-v"] } else { &[] };
        let cli = w.spawn_daemon(
            w.client(1),
            label,
            &Impl::Ours.miredo(),
            &client_conf(&iface, "PortMapping off\n"),
            extra,
        );
        wait_for(steps::QUALIFY_TIMEOUT, || {
            teredo_lab::teredo_addr_of(w.client(1), &iface)
        })
        .unwrap_or_else(|| panic!("not qualified:\n{}", w.log_of(&cli)));
        // The NAT tests.
        std::thread::sleep(Duration::from_secs(3));
        w.stop(&cli, Duration::from_secs(10));
        let log = w.log_of(&cli);
        let rs = log.contains("router solicitation to 198.18.1.1");
        let ra =
            log.contains("router advertisement from 198.18.1.1:3544") && log.contains("round-trip");
        said.push(format!(
            "-v {verbose}: solicitation lines {rs}, advertisement lines {ra}"
        ));
        assert_eq!((rs, ra), (verbose, verbose), "-v {verbose}:\n{log}");
    }
    report(test, &said.join("; "));
}

/// A relay in a namespace with IPv6 forwarding off warns, and says how to
/// turn it on.
fn a_relay_with_ipv6_forwarding_off_warns() {
    let test = "a_relay_with_ipv6_forwarding_off_warns";
    let w = World::build(test, &[]);
    w.relay()
        .sysctl("net.ipv6.conf.all.forwarding", "0")
        .expect("sysctl");
    let iface = unique_iface(&w, "fw");
    let relay = w.spawn_daemon(
        w.relay(),
        "relay-nofwd",
        &Impl::Ours.miredo(),
        &relay_conf("cone", &iface),
        &[],
    );
    let warned = wait_until(Duration::from_secs(5), || {
        w.log_of(&relay).contains("IPv6 forwarding is off")
    });
    let log = w.log_of(&relay);
    report(
        test,
        &format!(
            "said: {}",
            log.lines()
                .find(|l| l.contains("forwarding"))
                .unwrap_or("nothing")
        ),
    );
    assert!(
        warned && log.contains("sysctl -w net.ipv6.conf.all.forwarding=1"),
        "{log}"
    );
    w.stop(&relay, Duration::from_secs(10));
}

/// An interface of the name that is not a TUN device: refused, and said
/// so (the kernel's word alone is "Invalid argument").
fn an_interface_that_is_not_a_tun_is_named() {
    let test = "an_interface_that_is_not_a_tun_is_named";
    let w = World::build(test, &[NatKind::PortRestricted]);
    let iface = unique_iface(&w, "dm");
    w.client(1)
        .ip(&format!("link add {iface} type veth peer name {iface}p"))
        .expect("a veth interface");
    let cli = w.spawn_daemon(
        w.client(1),
        "client1-dummy",
        &Impl::Ours.miredo(),
        &client_conf(&iface, "PortMapping off\n"),
        &[],
    );
    let ended = wait_until(Duration::from_secs(10), || !w.is_running(&cli));
    let status = w.stop(&cli, Duration::from_secs(1));
    let log = w.log_of(&cli);
    report(
        test,
        &format!(
            "said: {}",
            log.lines().find(|l| l.contains("TUN")).unwrap_or("nothing")
        ),
    );
    assert!(ended && status.and_then(|s| s.code()) == Some(1), "{log}");
    assert!(log.contains("exists and is not a TUN device"), "{log}");
    assert!(
        w.client(1).has_iface(&iface),
        "the veth interface was touched"
    );
}

/// A reload says what changed, and what a checker would warn about: our
/// miredo-server given InterfaceMTU 1400, then a miredo client whose file
/// its user cannot read.
fn reloads_say_what_changed_and_who_cannot_read() {
    let test = "reloads_say_what_changed_and_who_cannot_read";
    let w = World::build(test, &[NatKind::PortRestricted]);
    let srv = w.start_server(Impl::Ours);
    w.write_file(
        &format!("{}.conf", srv.label),
        &format!(
            "ServerBindAddress {}\nServerBindAddress2 {}\nInterfaceMTU 1400\n",
            teredo_lab::SERVER_V4,
            teredo_lab::SERVER2_V4
        ),
    );
    w.signal(&srv, "HUP");
    let said = wait_until(Duration::from_secs(5), || {
        w.log_of(&srv).contains("InterfaceMTU 1280 -> 1400")
    });
    let log = w.log_of(&srv);
    let lines: Vec<&str> = log.lines().filter(|l| l.contains("SIGHUP")).collect();
    report(test, &format!("miredo-server: {}", lines.join(" | ")));
    assert!(said, "the reload does not say what changed:\n{log}");
    assert!(
        log.contains("an MTU other than 1280"),
        "no warning about the MTU:\n{log}"
    );

    // The client's file, made unreadable for its user (root's, mode 0600).
    let iface = unique_iface(&w, "rl");
    let cli = w.spawn_daemon(
        w.client(1),
        "client1-reload",
        &Impl::Ours.miredo(),
        &client_conf(&iface, "PortMapping off\n"),
        &[],
    );
    wait_for(steps::QUALIFY_TIMEOUT, || {
        teredo_lab::teredo_addr_of(w.client(1), &iface)
    })
    .unwrap_or_else(|| panic!("not qualified:\n{}", w.log_of(&cli)));
    let path = w.dir().join("client1-reload.conf");
    // Another server by reload: not "stopped answering".
    let text = fs::read_to_string(&path).expect("the client's file");
    fs::write(
        &path,
        text.replace(
            &format!("ServerAddress {}", teredo_lab::SERVER_V4),
            "ServerAddress 198.18.1.9",
        ),
    )
    .expect("rewrite");
    w.signal(&cli, "HUP");
    let moved = wait_until(Duration::from_secs(5), || {
        w.log_of(&cli).contains("is no longer in the configuration")
    });
    let log = w.log_of(&cli);
    report(
        test,
        &format!(
            "miredo, another server by SIGHUP: {}",
            log.lines()
                .find(|l| l.contains("no longer in the configuration"))
                .unwrap_or("nothing")
        ),
    );
    assert!(moved, "the change of server is not said:\n{log}");
    assert!(!log.contains("stopped answering"), "{log}");
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).expect("chmod");
    w.signal(&cli, "HUP");
    let said = wait_until(Duration::from_secs(5), || {
        w.log_of(&cli).contains("the configuration is reread as")
    });
    let log = w.log_of(&cli);
    report(
        test,
        &format!(
            "miredo: {}",
            log.lines()
                .find(|l| l.contains("SIGHUP"))
                .unwrap_or("nothing")
        ),
    );
    assert!(
        said && log.contains("(uid ") && log.contains("keeping the running configuration"),
        "the refusal does not name the user:\n{log}"
    );
}

teredo_lab::lab_tests! {
    needs(root, ours): [
        a_clients_interface_stays_down_until_it_qualifies,
        a_stop_runs_the_hooks_down_while_the_interface_exists,
        a_refused_start_leaves_no_status_socket,
        every_counter_against_the_traffic,
        verbose_says_what_the_client_does,
        a_relay_with_ipv6_forwarding_off_warns,
        reloads_say_what_changed_and_who_cannot_read,
        an_interface_that_is_not_a_tun_is_named,
    ],
}
