//! Our daemons in the lab, alone and against the C reference: qualification,
//! pings both ways, privileges of every process, clean shutdown.

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use teredo_lab::{
    leftover_namespaces, ping6_stats, report, teredo_addr_of, wait_until, Daemon, Impl, NatKind,
    World, NATIVE_V6, TEREDO_IFACE,
};

const QUALIFY_TIMEOUT: Duration = Duration::from_secs(15);
const PING_TIMEOUT: Duration = Duration::from_secs(8);

/// Pings both ways between client `n` and the native host; asserts every
/// echo came back; `who` names the combination for the failure message.
fn ping_both_ways(w: &World, n: usize, who: &str) {
    let addr = teredo_addr_of(w.client(n), TEREDO_IFACE).expect("client has no Teredo address");
    // The first echo may wait for the bubble exchange; allow for it.
    let (sent_in, got_in) = ping6_stats(w.v6h(), addr, 4, PING_TIMEOUT);
    let (sent_out, got_out) = ping6_stats(w.client(n), NATIVE_V6, 4, PING_TIMEOUT);
    report(
        w.test_name(),
        &format!(
            "{who}: native -> client {got_in}/{sent_in}, client -> native {got_out}/{sent_out}"
        ),
    );
    assert!(
        got_in >= sent_in - 1 && got_in > 0,
        "{who}: native -> client {got_in}/{sent_in}"
    );
    assert!(
        got_out >= sent_out - 1 && got_out > 0,
        "{who}: client -> native {got_out}/{sent_out}"
    );
}

/// A line of /proc/PID/status.
fn status_field(pid: u32, key: &str) -> Option<String> {
    let s = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines().find_map(|l| {
        l.strip_prefix(&format!("{key}:"))
            .map(|v| v.trim().to_string())
    })
}

/// The children of `pid`.
fn children(pid: u32) -> Vec<u32> {
    let mut v = Vec::new();
    if let Ok(rd) = fs::read_dir("/proc") {
        for e in rd.flatten() {
            if let Ok(p) = e.file_name().to_string_lossy().parse::<u32>() {
                if status_field(p, "PPid").and_then(|s| s.parse::<u32>().ok()) == Some(pid) {
                    v.push(p);
                }
            }
        }
    }
    v
}

fn comm(pid: u32) -> String {
    fs::read_to_string(format!("/proc/{pid}/comm"))
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// Asserts a process of ours runs unprivileged: uid not 0, every
/// capability set empty, no_new_privs.
fn assert_unprivileged(pid: u32, what: &str) {
    let uid = status_field(pid, "Uid").unwrap_or_default();
    assert!(
        !uid.split_whitespace().any(|u| u == "0"),
        "{what} (pid {pid}) has uid 0: {uid}"
    );
    for set in ["CapEff", "CapPrm", "CapInh", "CapAmb"] {
        let v = status_field(pid, set).unwrap_or_default();
        assert_eq!(
            u64::from_str_radix(&v, 16).ok(),
            Some(0),
            "{what} (pid {pid}) {set} = {v}"
        );
    }
    assert_eq!(
        status_field(pid, "NoNewPrivs").as_deref(),
        Some("1"),
        "{what} (pid {pid})"
    );
}

fn qualify(w: &World, d: &Daemon, n: usize, who: &str) -> Duration {
    match w.wait_qualified(d, n, QUALIFY_TIMEOUT) {
        Some((addr, took)) => {
            report(
                w.test_name(),
                &format!("{who} qualified in {took:?} as {addr}"),
            );
            took
        }
        None => panic!(
            "{who} did not qualify in {QUALIFY_TIMEOUT:?}:\n{}",
            w.log_of(d)
        ),
    }
}

fn ours_client_c_server_c_relay_port_restricted() {
    let w = World::build(
        "ours_client_c_srv",
        &[NatKind::PortRestricted, NatKind::PortRestricted],
    );
    w.start_server(Impl::C);
    w.start_relay(Impl::C, "cone");
    // Ours and the C client side by side, each behind its own NAT: the
    // qualification times compare like for like.
    let ours = w.start_client(1, Impl::Ours, "");
    let theirs = w.start_client(2, Impl::C, "");
    let t_ours = qualify(&w, &ours, 1, "our client");
    let t_c = qualify(&w, &theirs, 2, "C client");
    report(
        w.test_name(),
        &format!(
            "qualification from process start: ours {t_ours:?}, C {t_c:?} (same lab, same run)"
        ),
    );
    ping_both_ways(&w, 1, "our client, C server, C relay");
    ping_both_ways(&w, 2, "C client, C server, C relay");
}

fn ours_relay_serves_c_client_both_ways() {
    let w = World::build("ours_relay_c_cli", &[NatKind::PortRestricted]);
    w.start_server(Impl::C);
    w.start_relay(Impl::Ours, "cone");
    let c = w.start_client(1, Impl::C, "");
    qualify(&w, &c, 1, "C client");
    ping_both_ways(&w, 1, "C client, C server, our relay");
}

fn c_client_against_our_server_and_c_relay() {
    let w = World::build("c_cli_ours_srv", &[NatKind::PortRestricted]);
    w.start_server(Impl::Ours);
    w.start_relay(Impl::C, "cone");
    let c = w.start_client(1, Impl::C, "");
    qualify(&w, &c, 1, "C client");
    ping_both_ways(&w, 1, "C client, our server, C relay");
}

fn ours_everywhere_privileges_and_clean_stop() {
    let w = World::build("ours_all", &[NatKind::PortRestricted]);
    let prefix = w.prefix().to_string();
    let srv = w.start_server(Impl::Ours);
    let relay = w.start_relay(Impl::Ours, "cone");
    let cli = w.start_client(1, Impl::Ours, "");
    qualify(&w, &cli, 1, "our client");
    ping_both_ways(&w, 1, "our client, our server, our relay");

    // Every long-lived process of ours but miredo-privproc runs as the
    // unprivileged user with no capability; privproc keeps CAP_NET_ADMIN
    // and nothing else.
    for (d, what) in [
        (&srv, "miredo-server"),
        (&relay, "miredo relay"),
        (&cli, "miredo client"),
    ] {
        assert_unprivileged(d.pid, what);
    }
    let kids = children(cli.pid);
    let privproc: Vec<u32> = kids
        .iter()
        .copied()
        .filter(|p| comm(*p) == "miredo-privproc")
        .collect();
    assert_eq!(privproc.len(), 1, "client's children: {kids:?}");
    let pp = privproc[0];
    assert_eq!(
        status_field(pp, "CapEff").as_deref(),
        Some("0000000000001000"),
        "privproc CapEff"
    );
    assert_eq!(
        status_field(pp, "CapPrm").as_deref(),
        Some("0000000000001000"),
        "privproc CapPrm"
    );
    // The relay's helpers: its configuration reader, unprivileged (the
    // `security` module looks closer), and its miredo-privproc (`--relay`,
    // which deletes the interface when miredo ends), with CAP_NET_ADMIN
    // alone, as the client's (docs/ARCHITECTURE.md).
    let mut helpers: Vec<(String, u32)> = children(relay.pid)
        .into_iter()
        .map(|p| (comm(p), p))
        .collect();
    helpers.sort();
    let names: Vec<&str> = helpers.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        ["miredo-pidfile", "miredo-privproc", "miredo-reader"],
        "the relay's helpers"
    );
    for (name, p) in &helpers {
        if name == "miredo-reader" {
            assert_unprivileged(*p, "the relay's configuration reader");
        } else if name == "miredo-pidfile" {
            // Root's uid (the pid file's directory is root's) and nothing
            // else: no capability at all, its filter, its chroot.
            for set in ["CapEff", "CapPrm", "CapInh", "CapAmb", "CapBnd"] {
                assert_eq!(
                    status_field(*p, set).as_deref(),
                    Some("0000000000000000"),
                    "the pid file's keeper {set}"
                );
            }
            assert_eq!(status_field(*p, "NoNewPrivs").as_deref(), Some("1"));
            assert_eq!(status_field(*p, "Seccomp").as_deref(), Some("2"));
            let root = fs::read_link(format!("/proc/{p}/root")).unwrap_or_default();
            assert_eq!(root, w.dir(), "the pid file's keeper's root");
            // No group of root's; descriptors: /dev/null twice, standard
            // error, the pipe and the directory, nothing else.
            assert_eq!(
                status_field(*p, "Gid").as_deref(),
                Some("65534\t65534\t65534\t65534")
            );
            assert_eq!(status_field(*p, "Groups").as_deref(), Some(""));
            let fds: Vec<String> = fs::read_dir(format!("/proc/{p}/fd"))
                .map(|d| {
                    d.flatten()
                        .map(|e| e.file_name().to_string_lossy().into_owned())
                        .collect()
                })
                .unwrap_or_default();
            let mut fds: Vec<u32> = fds.iter().filter_map(|f| f.parse().ok()).collect();
            fds.sort_unstable();
            assert_eq!(fds, [0, 1, 2, 3, 4], "the pid file's keeper's descriptors");
            for fd in [0, 1] {
                assert_eq!(
                    fs::read_link(format!("/proc/{p}/fd/{fd}")).unwrap_or_default(),
                    Path::new("/dev/null")
                );
            }
        } else {
            for set in ["CapEff", "CapPrm"] {
                assert_eq!(
                    status_field(*p, set).as_deref(),
                    Some("0000000000001000"),
                    "the relay's privproc {set}"
                );
            }
        }
    }
    report(
        w.test_name(),
        &format!("privileges: miredo uid != 0 and CapEff 0; privproc (pid {pp}) CapEff 0x1000"),
    );

    // SIGTERM: within a second, no process, interface, address or route.
    let t0 = Instant::now();
    w.signal(&cli, "TERM");
    let gone = wait_until(Duration::from_secs(2), || !w.is_running(&cli));
    assert!(
        gone,
        "the client still runs 2 s after SIGTERM:\n{}",
        w.log_of(&cli)
    );
    let took = t0.elapsed();
    let pp_gone = wait_until(Duration::from_secs(2), || {
        !std::path::Path::new(&format!("/proc/{pp}")).exists()
    });
    assert!(pp_gone, "miredo-privproc outlived miredo");
    assert!(
        !w.client(1).has_iface(TEREDO_IFACE),
        "the Teredo interface is still there"
    );
    assert!(teredo_addr_of(w.client(1), TEREDO_IFACE).is_none());
    let routes = w.client(1).routes6("default");
    assert!(
        routes.iter().all(|r| !r.contains(TEREDO_IFACE)),
        "routes left: {routes:?}"
    );
    report(
        w.test_name(),
        &format!("SIGTERM: client and privproc gone in {took:?}, interface and routes gone"),
    );
    let log = w.log_of(&cli);
    assert!(log.contains("stopped"), "{log}");

    w.signal(&relay, "TERM");
    assert!(wait_until(Duration::from_secs(2), || !w.is_running(&relay)));
    assert!(
        !w.relay().has_iface(TEREDO_IFACE),
        "the relay's interface is still there"
    );
    drop(w);
    assert!(leftover_namespaces(&prefix).is_empty());
}

/// The README's first command, `teredo-demo`: a whole world pinging
/// through, and the client's status, read from the socket the lab gave it
/// (it used to read the default socket and print nothing).
fn the_demo_pings_through_and_shows_the_clients_status() {
    let demo = Impl::Ours.path("teredo-demo");
    let out =
        teredo_lab::cmd::run_with_timeout(&[demo.display().to_string()], Duration::from_secs(120));
    assert!(out.success(), "teredo-demo: {}\n{}", out.stdout, out.stderr);
    let status = out
        .stdout
        .split("$ teredo-mire status --socket ")
        .nth(1)
        .and_then(|s| s.split("Tearing down").next())
        .unwrap_or("");
    // The summary a person reads: state, address, the servers of the list.
    for line in [
        "miredo on teredo (client)",
        "state:",
        "address:        2001:0:",
        "servers:        198.18.1.1 (in use): answering, round-trip",
    ] {
        assert!(
            status
                .lines()
                .any(|l| l.trim_start().starts_with(line.trim_start())),
            "the demo's status lacks {line:?}:\n{}",
            out.stdout
        );
    }
    report(
        "the_demo_pings_through_and_shows_the_clients_status",
        &format!("{} status lines shown", status.lines().count()),
    );
}

teredo_lab::lab_tests! {
    needs(root, c_miredo, ours): [
        ours_client_c_server_c_relay_port_restricted,
        ours_relay_serves_c_client_both_ways,
        c_client_against_our_server_and_c_relay,
    ],
    needs(root, ours): [
        ours_everywhere_privileges_and_clean_stop,
        the_demo_pings_through_and_shows_the_clients_status,
    ],
}
