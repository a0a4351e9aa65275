//! ECN through the tunnel (RFC 9601, RFC 6040 normal mode) on real
//! kernels: the relay copies the inner ECN field to the outer IPv4 header,
//! a congested router in the middle marks CE on the outer header (nftables
//! `ip ecn set ce`), and the client's host sees CE on the inner packet.

use std::time::Duration;

use teredo_lab::{
    ping6_stats, report, teredo_addr_of, wait_until, Impl, NatKind, World, TEREDO_IFACE,
};

/// Lines of a tcpdump log.
fn lines(w: &World, d: &teredo_lab::Daemon) -> Vec<String> {
    w.log_of(d).lines().map(str::to_string).collect()
}

fn ecn_ect_copied_out_and_ce_reaches_the_inner_header() {
    let w = World::build("ecn_ce", &[NatKind::PortRestricted]);
    w.start_server(Impl::Ours);
    w.start_relay(Impl::Ours, "cone");
    let cli = w.start_client(1, Impl::Ours, "");
    let (addr, _) = w
        .wait_qualified(&cli, 1, Duration::from_secs(15))
        .unwrap_or_else(|| panic!("client did not qualify:\n{}", w.log_of(&cli)));
    // Open the path first (bubbles, connectivity test).
    let (_, got) = ping6_stats(w.v6h(), addr, 2, Duration::from_secs(8));
    assert!(got > 0, "no path to the client");

    // Watch the relay's outer headers and the client's inner ones (each
    // capture running before the first probe goes out).
    let outer = w.spawn_tcpdump(
        w.relay(),
        "tcpdump-outer",
        &["-l", "-n", "-vv", "-i", "any", "udp"],
    );
    let inner = w.spawn_tcpdump(
        w.client(1),
        "tcpdump-inner",
        &["-l", "-n", "-vv", "-i", TEREDO_IFACE, "icmp6"],
    );
    // ECT(0) from the native host, not yet marked anywhere.
    let (sent, got) = ping6_stats_tclass(&w, addr, 2);
    assert!(got > 0, "ECT(0) pings lost: {got}/{sent}");
    // Now a congested router in the middle marks every ECN-capable UDP
    // datagram it forwards.
    w.inet()
        .nft("add table ip mangle; add chain ip mangle ecnmark { type filter hook forward priority -150 ; }; add rule ip mangle ecnmark ip protocol udp ip ecn { ect0, ect1 } ip ecn set ce")
        .expect("nft ecn rule");
    let (sent, got) = ping6_stats_tclass(&w, addr, 3);
    assert!(got > 0, "CE-marked pings lost: {got}/{sent}");
    // tcpdump prints a packet some time after reading it: wait until the
    // counts asserted below are there (at most 3 s; the assertions then
    // say what is missing).
    let counts = || {
        let (outer, inner) = (lines(&w, &outer), lines(&w, &inner));
        (
            ect_outer(&outer),
            inner_class(&inner, addr, "0x02"),
            inner_class(&inner, addr, "0x03"),
        )
    };
    wait_until(Duration::from_secs(3), || {
        let (ect_out, inner_ect, inner_ce) = counts();
        ect_out >= 2 && inner_ect >= 1 && inner_ce >= 1
    });
    w.stop(&outer, Duration::from_secs(2));
    w.stop(&inner, Duration::from_secs(2));
    let (ect_out, inner_ect, inner_ce) = counts();
    let (outer, inner) = (lines(&w, &outer), lines(&w, &inner));
    report(
        w.test_name(),
        &format!(
            "outer datagrams with ECT(0) leaving the relay: {ect_out}; echo requests reaching the client with ECT(0): {inner_ect}, with CE: {inner_ce}"
        ),
    );
    assert!(
        ect_out >= 2,
        "the relay did not copy ECT(0) to the outer header:\n{}",
        outer.join("\n")
    );
    assert!(
        inner_ect >= 1,
        "ECT(0) did not arrive unmarked before marking:\n{}",
        inner.join("\n")
    );
    assert!(
        inner_ce >= 1,
        "CE on the outer header did not reach the inner one:\n{}",
        inner.join("\n")
    );
    assert!(teredo_addr_of(w.client(1), TEREDO_IFACE).is_some());
}

/// Outer datagrams with ECT(0) in a tcpdump log: `tcpdump -v` prints the
/// IPv4 TOS as "tos 0x2,ECT(0)".
fn ect_outer(lines: &[String]) -> usize {
    lines.iter().filter(|l| l.contains("ECT(0)")).count()
}

/// Packets to `addr` with IPv6 traffic class `class` in a tcpdump log
/// ("class 0x02" is ECT(0), "class 0x03" CE).
fn inner_class(lines: &[String], addr: std::net::Ipv6Addr, class: &str) -> usize {
    let (addr, class) = (addr.to_string(), format!("class {class}"));
    lines
        .iter()
        .filter(|l| l.contains(&class) && l.contains(&addr))
        .count()
}

/// Pings the client from the native host with traffic class ECT(0).
fn ping6_stats_tclass(w: &World, addr: std::net::Ipv6Addr, count: u32) -> (u32, u32) {
    let out = w.v6h().exec(
        &[
            "ping",
            "-6",
            "-n",
            "-Q",
            "2",
            "-c",
            &count.to_string(),
            "-i",
            "0.3",
            "-W",
            "3",
            &addr.to_string(),
        ],
        Duration::from_secs(15),
    );
    let text = out.stdout.clone();
    let got = text
        .lines()
        .find_map(|l| {
            let i = l.find(" received")?;
            l[..i].rsplit(", ").next()?.trim().parse::<u32>().ok()
        })
        .unwrap_or(0);
    (count, got)
}

teredo_lab::lab_tests! {
    needs(root, ours): [
        ecn_ect_copied_out_and_ce_reaches_the_inner_header,
    ],
}
