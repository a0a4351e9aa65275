//! Client to client across real Linux NATs (nftables masquerade, with and
//! without `fully-random`), ours against the C reference. Two C clients
//! behind two masquerade NATs cannot reach each other: the first direct
//! bubble creates a connection-tracking entry in the peer's NAT, which then
//! maps the peer's answer to another port. Ours open their own NAT with a
//! low-TTL first bubble and learn ports from proven bubbles (RFC 6081).
//! Every outcome is asserted, the C reference's failure included.

use std::time::Duration;

use teredo_lab::{
    ping6_stats, report, teredo_addr_of, wait_until, Impl, NatKind, World, TEREDO_IFACE,
};

const QUALIFY: Duration = Duration::from_secs(15);

/// Two clients of `imp` behind NATs `k1` and `k2`; pings 1 -> 2 and
/// 2 -> 1. Returns ((sent, got) one way, (sent, got) the other).
fn pair(test: &str, k1: NatKind, k2: NatKind, imp: Impl) -> (World, (u32, u32), (u32, u32)) {
    let w = World::build(test, &[k1, k2]);
    w.start_server(Impl::Ours);
    let c1 = w.start_client(1, imp, "");
    let c2 = w.start_client(2, imp, "");
    let (a1, _) = w
        .wait_qualified(&c1, 1, QUALIFY)
        .unwrap_or_else(|| panic!("client 1 did not qualify:\n{}", w.log_of(&c1)));
    let (a2, _) = w
        .wait_qualified(&c2, 2, QUALIFY)
        .unwrap_or_else(|| panic!("client 2 did not qualify:\n{}", w.log_of(&c2)));
    // 1 -> 2 first (2 -> 1 then finds the peers known or not, as it may).
    let one = ping6_stats(w.client(1), a2, 4, Duration::from_secs(8));
    let two = ping6_stats(w.client(2), a1, 4, Duration::from_secs(8));
    report(
        test,
        &format!(
            "{:?} clients behind {} and {}: 1 -> 2 {}/{}, 2 -> 1 {}/{}",
            imp,
            k1.name(),
            k2.name(),
            one.1,
            one.0,
            two.1,
            two.0
        ),
    );
    (w, one, two)
}

/// Ours reach each other across two masquerade NATs, both ways, where
/// two C clients in the same setting get no echo through either way (the
/// C tool's failure, which ours fix).
fn ours_across_two_masquerade_nats_both_ways_where_c_fails() {
    let (w, one, two) = pair(
        "x6081_ours_mm",
        NatKind::PortRestricted,
        NatKind::PortRestricted,
        Impl::Ours,
    );
    assert!(one.1 >= 3, "ours, masquerade x masquerade, 1 -> 2: {one:?}");
    assert!(two.1 >= 3, "ours, masquerade x masquerade, 2 -> 1: {two:?}");
    drop(w);
    let (w, one, two) = pair(
        "x6081_c_mm",
        NatKind::PortRestricted,
        NatKind::PortRestricted,
        Impl::C,
    );
    report(
        w.test_name(),
        &format!(
            "C miredo across two masquerade NATs: {} ({}/{} and {}/{})",
            if one.1 + two.1 == 0 {
                "fails both ways"
            } else {
                "some echoes came back"
            },
            one.1,
            one.0,
            two.1,
            two.0
        ),
    );
    // `pair` saw both C clients qualified: the comparison holds.
    assert_eq!(
        (one.1, two.1),
        (0, 0),
        "C clients reached each other across two masquerade NATs: the reference (or the lab's NAT) changed"
    );
}

/// Masquerade on one side, `fully-random` on the other: the random side's
/// port towards the peer cannot be known in advance and the masquerade
/// side only lets in the exact endpoint it sent to, so no bubble order
/// helps (the simulator's sim_rfc6081_random_symmetric_with_masquerade_
/// is_impossible shows the same). Both clients qualify, and no echo gets
/// through either way: one that did would mean the lab's NAT is not what
/// this test takes it for. (That each client reports its NAT right is
/// [`ours_report_the_nat_behaviour`].)
fn ours_masquerade_with_fully_random_symmetric_stay_apart() {
    let (w, one, two) = pair(
        "x6081_ours_ms",
        NatKind::PortRestricted,
        NatKind::Symmetric,
        Impl::Ours,
    );
    report(
        w.test_name(),
        &format!(
            "masquerade x fully-random: 1 -> 2 {}/{}, 2 -> 1 {}/{} (expected 0: random ports on one side, exact filtering on the other)",
            one.1, one.0, two.1, two.0
        ),
    );
    assert_eq!(
        (one.1, two.1),
        (0, 0),
        "echoes got through masquerade x fully-random"
    );
}

fn ours_report_the_nat_behaviour() {
    let w = World::build(
        "x6081_natkind",
        &[NatKind::PortRestricted, NatKind::Symmetric],
    );
    w.start_server(Impl::Ours);
    let c1 = w.start_client(1, Impl::Ours, "");
    let c2 = w.start_client(2, Impl::Ours, "");
    let seen = |d: &teredo_lab::Daemon, what: &str| {
        wait_until(Duration::from_secs(30), || {
            w.log_of(d)
                .contains(&format!("NAT behaviour observed: {what}"))
        })
    };
    assert!(
        seen(&c1, "port-preserving symmetric"),
        "masquerade:\n{}",
        w.log_of(&c1)
    );
    assert!(
        seen(&c2, "random symmetric"),
        "fully-random:\n{}",
        w.log_of(&c2)
    );
    report(
        w.test_name(),
        "masquerade: port-preserving symmetric; masquerade fully-random: random symmetric",
    );
}

/// Two of our clients behind one masquerade NAT, which cannot hairpin
/// (masquerade keeps no reverse mapping for a flow from inside to its own
/// public address): they reach each other over the LAN, through the
/// alternate address of RFC 6081 hairpinning, or through local discovery.
/// (A NAT that hairpins is covered by the simulator,
/// sim_rfc6081_two_clients_one_nat_with_hairpinning: nftables has no
/// hairpinning of dynamic masquerade mappings to build it here.)
fn one_nat_two_clients(test: &str, extra: &str) {
    let mut w = World::build(test, &[NatKind::PortRestricted]);
    let second = w.add_lan_client(1).expect("second client on the LAN");
    w.start_server(Impl::Ours);
    let conf = format!(
        "RelayType client\nServerAddress 198.18.1.1\nInterfaceName {TEREDO_IFACE}\n{extra}"
    );
    let c1 = w.spawn_daemon(w.client(1), "client1-rs", &Impl::Ours.miredo(), &conf, &[]);
    let c2 = w.spawn_daemon(&second, "client1b-rs", &Impl::Ours.miredo(), &conf, &[]);
    let (a1, _) = w
        .wait_qualified(&c1, 1, QUALIFY)
        .unwrap_or_else(|| panic!("client 1 did not qualify:\n{}", w.log_of(&c1)));
    let a2 = teredo_lab::wait_for(QUALIFY, || teredo_addr_of(&second, TEREDO_IFACE))
        .unwrap_or_else(|| panic!("client 1b did not qualify:\n{}", w.log_of(&c2)));
    let one = ping6_stats(w.client(1), a2, 4, Duration::from_secs(8));
    let two = ping6_stats(&second, a1, 4, Duration::from_secs(8));
    report(
        test,
        &format!(
            "two clients behind one masquerade NAT ({}): 1 -> 1b {}/{}, 1b -> 1 {}/{}",
            if extra.is_empty() {
                "alternate address"
            } else {
                extra.trim()
            },
            one.1,
            one.0,
            two.1,
            two.0
        ),
    );
    assert!(one.1 >= 3, "1 -> 1b: {one:?}");
    assert!(two.1 >= 3, "1b -> 1: {two:?}");
}

fn ours_two_clients_behind_one_nat_without_hairpinning() {
    one_nat_two_clients("x6081_hairpin_alt", "");
}

fn ours_two_clients_behind_one_nat_with_local_discovery() {
    one_nat_two_clients("x6081_hairpin_disc", "LocalDiscovery enabled\n");
}

teredo_lab::lab_tests! {
    needs(root, ours, c_miredo): [ours_across_two_masquerade_nats_both_ways_where_c_fails],
    needs(root, ours): [
        ours_masquerade_with_fully_random_symmetric_stay_apart,
        ours_report_the_nat_behaviour,
        ours_two_clients_behind_one_nat_without_hairpinning,
        ours_two_clients_behind_one_nat_with_local_discovery,
    ],
}
