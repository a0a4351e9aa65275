//! The C reference (Debian's miredo 1.2.x) in the lab: proves the harness,
//! and holds how the reference behaves behind each kind of NAT, asserted,
//! so that our daemons are measured against what it does (and a change of
//! the reference, or of the lab's NATs, shows here first).

use std::time::Duration;

use teredo_lab::{
    leftover_namespaces, ping6_stats, report, teredo_parts, Impl, NatKind, TeredoParts, World,
    NATIVE_V6,
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

/// Asserts that the C client behind `nat` qualified with an address that
/// embeds the NAT's public IPv4 address, and that the native host and the
/// client reached each other (3 of 3 echoes each way); the address's
/// fields, for what else the caller checks.
fn reaches_native_both_ways(w: &World, o: &Outcome, nat: &str) -> TeredoParts {
    let (addr, _) = o
        .qualified
        .unwrap_or_else(|| panic!("the C client does not qualify behind a {nat} NAT"));
    let parts = teredo_parts(&addr).expect("a Teredo address");
    assert_eq!(parts.mapped_v4, w.nat_wan_v4(1));
    assert_eq!(o.inbound.1, 3, "the native host reaches the client");
    assert_eq!(o.outbound.1, 3, "the client reaches the native host");
    parts
}

fn c_client_behind_port_restricted_nat() {
    let test = "c_client_behind_port_restricted_nat";
    run_c_world(test, NatKind::PortRestricted, |w, o| {
        let parts = reaches_native_both_ways(w, o, "port-restricted");
        assert_eq!(parts.server, teredo_lab::SERVER_V4);
    });
}

fn c_client_behind_full_cone_nat() {
    let test = "c_client_behind_full_cone_nat";
    let kind = NatKind::FullCone {
        client_port: 3545,
        mapped_port: 40000,
    };
    run_c_world(test, kind, |w, o| {
        let parts = reaches_native_both_ways(w, o, "full cone");
        // The harness's static mapping is what the server saw.
        assert_eq!(Some(parts.mapped_port), w.nat_mapped_port(1));
    });
}

/// Behind the lab's symmetric NAT (masquerade `fully-random`: a new port
/// for every destination), the C client qualifies and reaches the native
/// host both ways: the relay answers the endpoint its packets come from
/// (RFC 4380 5.4.2), whatever the server saw. What it cannot do is reach
/// another client directly ([`c_clients_across_two_nats`]); the C miredo
/// implements none of RFC 6081.
fn c_client_behind_symmetric_nat() {
    let test = "c_client_behind_symmetric_nat";
    run_c_world(test, NatKind::Symmetric, |w, o| {
        reaches_native_both_ways(w, o, "symmetric");
    });
}

/// Two C clients, one behind a port-restricted NAT and one behind a
/// symmetric NAT, ping each other's Teredo addresses (direct
/// client-to-client, RFC 4380 5.2.4 to 5.2.6): both qualify, and no echo
/// gets through either way. The symmetric side's port towards its peer is
/// not the one its address embeds, and the port-restricted side lets in
/// only the endpoint it sent to; this is what RFC 6081 (and our client,
/// `rfc6081` module) is measured against.
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
    let (a2, t2) = w
        .wait_qualified(&c2, 2, QUALIFY_TIMEOUT)
        .expect("client 2 qualifies behind a symmetric NAT");
    report(
        test,
        &format!("client 1 (port-restricted) qualified in {t1:?}; client 2 (symmetric) in {t2:?}"),
    );
    let one_to_two = ping6_stats(w.client(1), a2, 3, PING_TIMEOUT);
    let two_to_one = ping6_stats(w.client(2), a1, 3, PING_TIMEOUT);
    report(
        test,
        &format!(
            "C client to client: port-restricted -> symmetric {}/{}, symmetric -> port-restricted {}/{}",
            one_to_two.1, one_to_two.0, two_to_one.1, two_to_one.0
        ),
    );
    report(
        test,
        &format!("NAT 2 flows:\n{}", w.nat_flows(2).trim_end()),
    );
    assert_eq!(
        (one_to_two.1, two_to_one.1),
        (0, 0),
        "C clients reached each other across a symmetric NAT: the reference (or the lab's NAT) changed"
    );
    drop(w);
    assert!(leftover_namespaces(&prefix).is_empty());
}

/// The NAT of a qualified C client reboots and comes back with another
/// mapped port. The client notices within one refresh interval and a few
/// retries (RFC 4380 5.2.7: it refreshes its mapping every 30 s; 45 s
/// allowed), moves to an address that embeds the new mapped port, keeps
/// no other Teredo address, and the native host reaches it there. How long
/// it took is printed.
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
    let client = w.client(1).clone();
    let new = teredo_lab::wait_for(Duration::from_secs(45), || {
        let addrs: Vec<_> = client
            .ipv6_addrs(teredo_lab::TEREDO_IFACE)
            .into_iter()
            .filter(teredo_lab::is_teredo)
            .collect();
        addrs.iter().any(|a| *a != old).then_some(addrs)
    })
    .unwrap_or_else(|| {
        panic!(
            "45 s after the NAT reboot the C client still shows only {old}; its log:\n{}",
            w.log_of(&cli)
        )
    });
    let current = new.iter().copied().find(|a| *a != old);
    report(
        test,
        &format!(
            "after the NAT reboot the C client moved from {old} to {current:?} in {:?}; \
             Teredo addresses on its interface: {new:?} (old one kept: {})",
            rebooted.elapsed(),
            new.contains(&old)
        ),
    );
    assert_eq!(new.len(), 1, "more than one Teredo address: {new:?}");
    let addr = new[0];
    let parts = teredo_parts(&addr).expect("a Teredo address");
    let was = teredo_parts(&old).expect("a Teredo address");
    assert_ne!(
        parts.mapped_port, was.mapped_port,
        "the new address embeds the old mapped port"
    );
    assert_eq!(parts.mapped_v4, w.nat_wan_v4(1));
    let back = ping6_stats(w.v6h(), addr, 3, PING_TIMEOUT);
    report(
        test,
        &format!("native host -> new address: {}/{}", back.1, back.0),
    );
    assert_eq!(back.1, 3, "the native host does not reach the new address");
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
