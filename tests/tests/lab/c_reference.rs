//! The C reference (Debian's miredo 1.2.x) in the lab: proves the harness,
//! and records how the reference behaves behind each kind of NAT so that
//! our daemons can be measured against it.

use std::time::Duration;

use teredo_lab::{
    leftover_namespaces, ping6_stats, report, teredo_parts, Impl, NatKind, World, NATIVE_V6,
};

const QUALIFY_TIMEOUT: Duration = Duration::from_secs(15);
const PING_TIMEOUT: Duration = Duration::from_secs(8);

/// What one C client did behind one NAT.
struct Outcome {
    qualified: Option<(std::net::Ipv6Addr, Duration)>,
    /// (sent, received) from the native host to the client.
    inbound: (u32, u32),
    /// (sent, received) from the client to the native host.
    outbound: (u32, u32),
}

/// Server, cone relay and one client, all C, behind one NAT of `kind`.
/// Checks on the way that the world's namespaces are gone afterwards.
fn run_c_world(test: &str, kind: NatKind, check: impl FnOnce(&World, &Outcome)) -> Outcome {
    let w = World::build(test, &[kind]);
    let prefix = w.prefix().to_string();
    w.start_server(Impl::C);
    w.start_relay(Impl::C, "cone");
    let cli = w.start_client(1, Impl::C, "");
    let qualified = w.wait_qualified(&cli, 1, QUALIFY_TIMEOUT);
    let mut outcome = Outcome {
        qualified,
        inbound: (0, 0),
        outbound: (0, 0),
    };
    match qualified {
        Some((addr, took)) => {
            let parts = teredo_parts(&addr);
            report(
                test,
                &format!(
                    "C client behind a {} NAT qualified in {took:?} as {addr} ({parts:?})",
                    kind.name()
                ),
            );
            outcome.inbound = ping6_stats(w.v6h(), addr, 3, PING_TIMEOUT);
            outcome.outbound = ping6_stats(w.client(1), NATIVE_V6, 3, PING_TIMEOUT);
            report(
                test,
                &format!(
                    "native host -> client: {}/{} echoes answered; client -> native host: {}/{}",
                    outcome.inbound.1, outcome.inbound.0, outcome.outbound.1, outcome.outbound.0
                ),
            );
        }
        None => report(
            test,
            &format!(
                "C client behind a {} NAT did not qualify within {QUALIFY_TIMEOUT:?}; its log:\n{}",
                kind.name(),
                w.log_of(&cli)
            ),
        ),
    }
    report(test, &format!("NAT flows:\n{}", w.nat_flows(1).trim_end()));
    assert!(
        w.is_running(&cli),
        "the C client exited:\n{}",
        w.log_of(&cli)
    );
    check(&w, &outcome);
    drop(w);
    let left = leftover_namespaces(&prefix);
    assert!(left.is_empty(), "teardown left namespaces behind: {left:?}");
    outcome
}

fn c_client_behind_port_restricted_nat() {
    let test = "c_client_behind_port_restricted_nat";
    run_c_world(test, NatKind::PortRestricted, |w, o| {
        let (addr, _) = o
            .qualified
            .expect("the C client qualifies behind a port-restricted NAT");
        let parts = teredo_parts(&addr).expect("a Teredo address");
        assert_eq!(parts.server, teredo_lab::SERVER_V4);
        assert_eq!(parts.mapped_v4, w.nat_wan_v4(1));
        assert_eq!(o.inbound.1, 3, "the native host reaches the client");
        assert_eq!(o.outbound.1, 3, "the client reaches the native host");
    });
}

fn c_client_behind_full_cone_nat() {
    let test = "c_client_behind_full_cone_nat";
    let kind = NatKind::FullCone {
        client_port: 3545,
        mapped_port: 40000,
    };
    run_c_world(test, kind, |w, o| {
        let (addr, _) = o
            .qualified
            .expect("the C client qualifies behind a full cone NAT");
        let parts = teredo_parts(&addr).expect("a Teredo address");
        // The harness's static mapping is what the server saw.
        assert_eq!(Some(parts.mapped_port), w.nat_mapped_port(1));
        assert_eq!(parts.mapped_v4, w.nat_wan_v4(1));
        assert_eq!(o.inbound.1, 3, "the native host reaches the client");
        assert_eq!(o.outbound.1, 3, "the client reaches the native host");
    });
}

/// Documents the reference: RFC 4380 clients cannot work behind a
/// symmetric NAT in general, and the C miredo implements none of RFC
/// 6081. Whatever it does is reported, not asserted.
fn c_client_behind_symmetric_nat() {
    let test = "c_client_behind_symmetric_nat";
    let o = run_c_world(test, NatKind::Symmetric, |_, _| {});
    let verdict = match o.qualified {
        None => "does not qualify".to_string(),
        Some(_) => format!(
            "qualifies; native host -> client {}/{}, client -> native host {}/{}",
            o.inbound.1, o.inbound.0, o.outbound.1, o.outbound.0
        ),
    };
    report(
        test,
        &format!("C reference behind a symmetric NAT: {verdict}"),
    );
}

/// Two C clients, one behind a port-restricted NAT and one behind a
/// symmetric NAT, ping each other's Teredo addresses (direct
/// client-to-client, RFC 4380 5.2.4 to 5.2.6). Reported, not asserted,
/// beyond both qualifying.
fn c_clients_across_two_nats() {
    let test = "c_clients_across_two_nats";
    let w = World::build(test, &[NatKind::PortRestricted, NatKind::Symmetric]);
    let prefix = w.prefix().to_string();
    w.start_server(Impl::C);
    w.start_relay(Impl::C, "cone");
    let c1 = w.start_client(1, Impl::C, "");
    let c2 = w.start_client(2, Impl::C, "");
    let (a1, t1) = w
        .wait_qualified(&c1, 1, QUALIFY_TIMEOUT)
        .expect("client 1 qualifies behind a port-restricted NAT");
    let q2 = w.wait_qualified(&c2, 2, QUALIFY_TIMEOUT);
    report(
        test,
        &format!("client 1 (port-restricted) qualified in {t1:?}; client 2 (symmetric): {q2:?}"),
    );
    if let Some((a2, _)) = q2 {
        let one_to_two = ping6_stats(w.client(1), a2, 3, PING_TIMEOUT);
        let two_to_one = ping6_stats(w.client(2), a1, 3, PING_TIMEOUT);
        report(
            test,
            &format!(
                "C client to client: port-restricted -> symmetric {}/{}, symmetric -> port-restricted {}/{}",
                one_to_two.1, one_to_two.0, two_to_one.1, two_to_one.0
            ),
        );
    }
    report(
        test,
        &format!("NAT 2 flows:\n{}", w.nat_flows(2).trim_end()),
    );
    drop(w);
    assert!(leftover_namespaces(&prefix).is_empty());
}

/// The NAT of a qualified C client reboots and comes back with another
/// mapped port. Reports how long the client takes to notice, which
/// address(es) its interface carries then, and whether the native host
/// reaches it again. Asserts only that the client was qualified first.
fn c_client_after_nat_reboot() {
    let test = "c_client_after_nat_reboot";
    let w = World::build(test, &[NatKind::PortRestricted]);
    let prefix = w.prefix().to_string();
    w.start_server(Impl::C);
    w.start_relay(Impl::C, "cone");
    let cli = w.start_client(1, Impl::C, "");
    let (old, _) = w
        .wait_qualified(&cli, 1, QUALIFY_TIMEOUT)
        .expect("the C client qualifies behind a port-restricted NAT");
    w.nat_reboot(1, teredo_lab::NatReboot::NewPort)
        .expect("the NAT reboots");
    let rebooted = std::time::Instant::now();
    // RFC 4380 5.2.7: the client refreshes its mapping every 30 s, so it
    // sees the new mapping within one refresh interval and a few retries.
    let client = w.client(1).clone();
    let new = teredo_lab::wait_for(Duration::from_secs(45), || {
        let addrs: Vec<_> = client
            .ipv6_addrs(teredo_lab::TEREDO_IFACE)
            .into_iter()
            .filter(teredo_lab::is_teredo)
            .collect();
        addrs.iter().any(|a| *a != old).then_some(addrs)
    });
    match new {
        Some(addrs) => {
            let current = addrs.iter().copied().find(|a| *a != old);
            report(
                test,
                &format!(
                    "after the NAT reboot the C client moved from {old} to {current:?} in {:?}; \
                     Teredo addresses on its interface: {addrs:?} (old one kept: {})",
                    rebooted.elapsed(),
                    addrs.contains(&old)
                ),
            );
            if let Some(a) = current {
                let back = ping6_stats(w.v6h(), a, 3, PING_TIMEOUT);
                report(
                    test,
                    &format!("native host -> new address: {}/{}", back.1, back.0),
                );
            }
        }
        None => report(
            test,
            &format!(
                "45 s after the NAT reboot the C client still shows only {old}; its log:\n{}",
                w.log_of(&cli)
            ),
        ),
    }
    drop(w);
    assert!(leftover_namespaces(&prefix).is_empty());
}

teredo_lab::lab_tests! {
    needs(root, c_miredo): [
        c_client_behind_port_restricted_nat,
        c_client_behind_full_cone_nat,
        c_client_behind_symmetric_nat,
        c_clients_across_two_nats,
        c_client_after_nat_reboot,
    ],
}
