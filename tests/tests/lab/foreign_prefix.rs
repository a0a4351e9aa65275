//! A Teredo server advertising a prefix our client may not take an address
//! in (our miredo-server with `Prefix 3ffe:831f::`, our miredo client with
//! the default 2001::/32): the client refuses its router advertisements,
//! stays up without an address, says why in its log and its status
//! (`drop-foreign-prefix`), and keeps soliciting; once the server's Prefix
//! is put back and the server reloaded (SIGHUP), the client qualifies.
//! Before the client engine refused them, the client took an address in
//! 3ffe:831f::/32 that miredo-privproc refuses: miredo stopped, and later
//! (once it no longer sent such requests) reported itself qualified with an
//! address it never configured, never soliciting again.

use std::net::Ipv6Addr;
use std::time::{Duration, Instant};

use teredo_lab::named::{client_conf, status_of, unique_iface};
use teredo_lab::{cmd, report, teredo_addr_of, wait_until, Impl, NatKind, SERVER2_V4, SERVER_V4};

/// How long the client faces the misconfigured server: three rounds of
/// solicitations would take 12 s, the first backoff 10 s more.
const FACING: Duration = Duration::from_secs(12);
/// The longest wait between rounds (60 s) and one round (12 s), with room.
const REQUALIFY: Duration = Duration::from_secs(80);

fn server_conf(prefix: &str) -> String {
    format!("ServerBindAddress {SERVER_V4}\nServerBindAddress2 {SERVER2_V4}\nPrefix {prefix}\n")
}

fn field<'a>(status: &'a [(String, String)], key: &str) -> Option<&'a str> {
    status
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// The addresses on `iface` other than link-local ones.
fn global_addrs(ns: &teredo_lab::Netns, iface: &str) -> Vec<Ipv6Addr> {
    ns.ipv6_addrs(iface)
        .into_iter()
        .filter(|a| (a.segments()[0] & 0xffc0) != 0xfe80)
        .collect()
}

fn our_client_refuses_a_foreign_prefix_then_qualifies() {
    let test = "our_client_refuses_a_foreign_prefix_then_qualifies";
    let w = teredo_lab::World::build(test, &[NatKind::PortRestricted]);
    let srv_label = "server-rs";
    let srv = w.spawn_daemon(
        w.srv(),
        srv_label,
        &Impl::Ours.miredo_server(),
        &server_conf("3ffe:831f::"),
        &[],
    );
    // It says what it serves once its sockets are open.
    assert!(
        wait_until(Duration::from_secs(5), || w
            .log_of(&srv)
            .contains("serving on")),
        "our miredo-server does not start:\n{}",
        w.log_of(&srv)
    );
    assert!(
        w.log_of(&srv).contains("prefix 3ffe:831f::/32"),
        "the server does not serve 3ffe:831f::/32:\n{}",
        w.log_of(&srv)
    );

    // The status socket is shared by every namespace: a name of its own.
    let iface = unique_iface(&w, "tfp");
    let ns = w.client(1).clone();
    let cli = w.spawn_daemon(
        &ns,
        "client1-rs",
        &Impl::Ours.miredo(),
        &client_conf(&iface, ""),
        &[],
    );
    let start = Instant::now();
    let mut seen = Vec::new();
    while start.elapsed() < FACING {
        assert!(
            w.is_running(&cli),
            "miredo stopped {:?} after its start:\n{}",
            start.elapsed(),
            w.log_of(&cli)
        );
        for a in global_addrs(&ns, &iface) {
            if !seen.contains(&a) {
                seen.push(a);
            }
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    assert!(w.is_running(&cli), "miredo stopped:\n{}", w.log_of(&cli));
    assert!(
        seen.is_empty(),
        "addresses on {iface} while the server advertised 3ffe:831f::/32: {seen:?}"
    );
    assert!(
        ns.has_iface(&iface),
        "no interface {iface}:\n{}",
        w.log_of(&cli)
    );

    let status = status_of(&iface);
    let refused: u64 = field(&status, "drop-foreign-prefix")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no drop-foreign-prefix in the status: {status:?}"));
    assert!(refused > 0, "no RA counted as foreign-prefix: {status:?}");
    let state = field(&status, "state").unwrap_or_default().to_string();
    assert!(
        state == "probing" || state == "offline",
        "state {state:?}: {status:?}"
    );
    assert_eq!(field(&status, "address"), Some("none"), "{status:?}");

    let log = w.log_of(&cli);
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("router advertisement") && l.contains("refused"))
        .collect();
    assert!(
        !lines.is_empty(),
        "the log does not say why no address:\n{log}"
    );
    assert!(
        lines
            .iter()
            .all(|l| l.contains("3ffe:831f::/32") && l.contains("2001::/32")),
        "the log does not name both prefixes: {lines:?}"
    );
    // One line per solicitation round at most: in 12 s, at most two.
    assert!(lines.len() <= 2, "the refusal repeats: {lines:?}");
    report(
        test,
        &format!(
            "after {FACING:?} facing Prefix 3ffe:831f::: running, no address, state {state}, \
             drop-foreign-prefix {refused}; log: {}",
            lines[0].trim()
        ),
    );

    // The server put right: Prefix 2001:0:: and SIGHUP.
    w.write_file(&format!("{srv_label}.conf"), &server_conf("2001:0::"));
    w.signal(&srv, "HUP");
    assert!(
        wait_until(Duration::from_secs(5), || w
            .log_of(&srv)
            .contains("configuration")
            && w.log_of(&srv).contains("reloaded")),
        "the server did not reload:\n{}",
        w.log_of(&srv)
    );
    let fixed = Instant::now();
    let addr = cmd::wait_for(REQUALIFY, || teredo_addr_of(&ns, &iface)).unwrap_or_else(|| {
        panic!(
            "no address {REQUALIFY:?} after the server's fix:\n{}",
            w.log_of(&cli)
        )
    });
    let took = fixed.elapsed();
    assert!(w.is_running(&cli));
    let status = status_of(&iface);
    assert_eq!(field(&status, "state"), Some("qualified"), "{status:?}");
    let others: Vec<Ipv6Addr> = global_addrs(&ns, &iface)
        .into_iter()
        .filter(|a| *a != addr)
        .collect();
    assert!(others.is_empty(), "other addresses: {others:?}");
    report(
        test,
        &format!("Prefix 2001:0:: and SIGHUP: qualified as {addr} {took:?} later"),
    );
}

/// The C reference against the same kind of server, for the comparison
/// (reported, not judged): Debian's C client stays up in both cases; with
/// the obsolete experimental prefix 3ffe:831f::/32 it takes an address in
/// 2001::/32 (it reads that prefix as 2001::/32 on purpose, for old
/// servers), with any other foreign prefix an address in that prefix.
fn c_client_against_a_foreign_prefix() {
    let test = "c_client_against_a_foreign_prefix";
    let w = teredo_lab::World::build(test, &[NatKind::PortRestricted]);
    let ns = w.client(1).clone();
    for prefix in ["3ffe:831f::", "3ffe:1::"] {
        let tag = prefix.replace(':', "");
        let srv = w.spawn_daemon(
            w.srv(),
            &format!("server-rs-{tag}"),
            &Impl::Ours.miredo_server(),
            &server_conf(prefix),
            &[],
        );
        assert!(
            wait_until(Duration::from_secs(5), || w.srv().udp_listening(3544)),
            "our miredo-server does not start:\n{}",
            w.log_of(&srv)
        );
        let cli = w.start_client_labeled(1, Impl::C, "", &format!("client1-c-{tag}"));
        let addr = cmd::wait_for(Duration::from_secs(12), || {
            teredo_lab::teredo_addr_of(&ns, teredo_lab::TEREDO_IFACE)
                .or_else(|| global_addrs(&ns, teredo_lab::TEREDO_IFACE).first().copied())
        });
        assert!(
            w.is_running(&cli),
            "the C client stopped facing Prefix {prefix}:\n{}",
            w.log_of(&cli)
        );
        report(
            test,
            &format!(
                "C client facing our server with Prefix {prefix}: running, address {}",
                addr.map_or("none".to_string(), |a| a.to_string())
            ),
        );
        w.stop(&cli, Duration::from_secs(3));
        w.stop(&srv, Duration::from_secs(3));
        assert!(
            wait_until(Duration::from_secs(5), || !ns
                .has_iface(teredo_lab::TEREDO_IFACE)),
            "the C client's interface outlived it"
        );
    }
}

teredo_lab::lab_tests! {
    needs(root, ours): [our_client_refuses_a_foreign_prefix_then_qualifies],
    needs(root, ours, c_miredo): [c_client_against_a_foreign_prefix],
}
