//! Simulator scenarios of a client whose home gateway maps its service
//! port (issue 16: PCP, NAT-PMP or UPnP IGD, which the daemon speaks and
//! reports to the engine through `Client::set_port_mapping`). The NAT keeps
//! its own behaviour for the flows we start; the mapping lets any remote
//! in on the mapped port, like miniupnpd's DNAT rule. Every test name
//! contains `sim`.

use crate::{NATIVE, NAT_WAN, RELAY, SECS, SERVER};
use libteredo::addr::TeredoAddr;
use libteredo::proto::{Event, NatBehaviour};
use libteredo::sim::*;
use std::net::SocketAddrV4;
use std::time::Duration;

const LOCAL_PORT: u16 = 40000;
const OTHER_PORT: u16 = 50123;

struct Lab {
    w: World,
    nat: NatId,
    client: NodeId,
}

fn lab(seed: u64, kind: NatKind) -> Lab {
    let mut w = World::new(seed);
    w.add_server(ip(SERVER));
    w.add_relay(ip(RELAY), None);
    w.add_native(ip6(NATIVE));
    let (nat, lan) = w.add_nat(kind, ip(NAT_WAN), false);
    let client = w.add_client(ip("192.168.1.2"), LOCAL_PORT, Some(lan), ip(SERVER));
    Lab { w, nat, client }
}

/// The gateway maps its external `port` to the client's service port, and
/// the daemon says so.
fn map(l: &mut Lab, port: u16) -> SocketAddrV4 {
    let internal = SocketAddrV4::new(ip("192.168.1.2"), LOCAL_PORT);
    l.w.nats[l.nat].port_mappings.insert(port, internal);
    let external = SocketAddrV4::new(ip(NAT_WAN), port);
    l.w.set_port_mapping(l.client, Some(external));
    external
}

fn nat_report(l: &mut Lab) -> NatBehaviour {
    let c = l.client;
    let ok = l.w.run_until_cond(SECS(60), |w| {
        w.events(c)
            .iter()
            .any(|e| matches!(e, Event::NatObserved(_)))
    });
    assert!(ok, "no NAT report");
    l.w.client(c).nat()
}

/// Pings from the native host, then to it: the sequence numbers answered
/// each way.
fn pings(l: &mut Lab, addr: std::net::Ipv6Addr) -> (Vec<u16>, Vec<u16>) {
    let native = ip6(NATIVE);
    for seq in 1..=5 {
        l.w.native_send(echo_request(native, addr, 1, seq, 56));
        l.w.run_for(Duration::from_millis(500));
    }
    l.w.run_for(SECS(3));
    let inbound = l.w.native_echo_replies(0, 1);
    for seq in 1..=5 {
        l.w.client_send(l.client, echo_request(addr, native, 2, seq, 56));
        l.w.run_for(Duration::from_millis(500));
    }
    l.w.run_for(SECS(3));
    (inbound, l.w.client_echo_replies(l.client, 2))
}

/// Four echo requests from client `from` (address `src`) to `dst`, half a
/// second apart: the sequence numbers answered.
fn echoes(
    l: &mut Lab,
    from: NodeId,
    src: std::net::Ipv6Addr,
    dst: std::net::Ipv6Addr,
    ident: u16,
) -> Vec<u16> {
    for seq in 1..=4 {
        l.w.client_send(from, echo_request(src, dst, ident, seq, 56));
        l.w.run_for(Duration::from_millis(500));
    }
    l.w.run_for(SECS(3));
    l.w.client_echo_replies(from, ident)
}

/// Echoes from client `peer` to ours (ident `ident`), then from ours to
/// it (`ident + 1`): every one answered (the trace shown otherwise).
fn peer_echoes_both_ways(
    l: &mut Lab,
    peer: NodeId,
    peer_addr: std::net::Ipv6Addr,
    addr: std::net::Ipv6Addr,
    ident: u16,
) {
    let all = vec![1, 2, 3, 4];
    let peer_in = echoes(l, peer, peer_addr, addr, ident);
    assert_eq!(peer_in, all, "peer -> ours\n{}", l.w.trace.join("\n"));
    let ours = l.client;
    let ours_out = echoes(l, ours, addr, peer_addr, ident + 1);
    assert_eq!(ours_out, all, "ours -> peer\n{}", l.w.trace.join("\n"));
}

/// [`pings`] both ways, every echo answered (the trace shown otherwise).
fn all_echoes_answered(l: &mut Lab, addr: std::net::Ipv6Addr) {
    let (inbound, outbound) = pings(l, addr);
    let all: Vec<u16> = (1..=5).collect();
    assert_eq!(inbound, all, "native -> client\n{}", l.w.trace.join("\n"));
    assert_eq!(outbound, all, "client -> native\n{}", l.w.trace.join("\n"));
}

#[test]
fn sim_portmap_port_preserving_nat_mapping_the_same_port_is_used_and_a_cone() {
    // nftables masquerade with miniupnpd mapping our own port: the server
    // sees the mapping itself, and the cone test comes in through it.
    let mut l = lab(1601, NatKind::Masquerade);
    let ext = map(&mut l, LOCAL_PORT);
    let addr = l.w.qualify(l.client, SECS(10));
    assert_eq!(TeredoAddr::parse(&addr).unwrap().mapped(), ext);
    assert!(l.w.client(l.client).port_mapping_in_use());
    assert_eq!(nat_report(&mut l), NatBehaviour::Cone);
    all_echoes_answered(&mut l, addr);
}

#[test]
fn sim_portmap_a_mapping_given_after_the_nat_tests_is_used_at_once() {
    let mut l = lab(1602, NatKind::Masquerade);
    let addr = l.w.qualify(l.client, SECS(10));
    assert_eq!(nat_report(&mut l), NatBehaviour::PortPreservingSymmetric);
    assert!(!l.w.client(l.client).port_mapping_in_use());
    map(&mut l, LOCAL_PORT);
    assert!(l.w.client(l.client).port_mapping_in_use());
    // The address stays.
    assert_eq!(l.w.teredo_addr(l.client), Some(addr));
    all_echoes_answered(&mut l, addr);
    // Gone: no longer in use.
    l.w.set_port_mapping(l.client, None);
    assert!(!l.w.client(l.client).port_mapping_in_use());
}

#[test]
fn sim_portmap_a_symmetric_nat_sending_from_other_ports_keeps_the_servers_view() {
    // The gateway maps another port than the one our packets leave from:
    // advertising it would make the server drop what we send through it
    // (RFC 4380 5.3.1), so the address stays what the server sees.
    let mut l = lab(1603, NatKind::Symmetric);
    let ext = map(&mut l, OTHER_PORT);
    let addr = l.w.qualify(l.client, SECS(10));
    let t = TeredoAddr::parse(&addr).unwrap();
    assert_ne!(t.mapped(), ext);
    assert_eq!(*t.mapped().ip(), ip(NAT_WAN));
    assert!(!l.w.client(l.client).port_mapping_in_use());
    assert_eq!(l.w.client(l.client).port_mapping(), Some(ext));
    all_echoes_answered(&mut l, addr);
}

#[test]
fn sim_portmap_a_mapping_on_another_address_is_not_used() {
    // The gateway is not the outermost NAT: its external address is not
    // the one the server sees.
    let mut l = lab(1604, NatKind::PortRestricted);
    let inner = SocketAddrV4::new(ip("100.64.0.7"), LOCAL_PORT);
    l.w.set_port_mapping(l.client, Some(inner));
    let addr = l.w.qualify(l.client, SECS(10));
    assert_eq!(
        *TeredoAddr::parse(&addr).unwrap().mapped().ip(),
        ip(NAT_WAN)
    );
    assert!(!l.w.client(l.client).port_mapping_in_use());
    assert_eq!(nat_report(&mut l), NatBehaviour::Restricted);
}

#[test]
fn sim_portmap_a_symmetric_nat_mapping_moved_to_the_servers_port_is_used_by_peers() {
    // What the daemon's mapper does behind a NAT with random ports: the
    // mapping is moved to the port the server sees (PortMapper::want).
    // Then a peer behind a port-restricted NAT, which could not reach a
    // client behind a symmetric NAT, reaches ours through the mapping, and
    // ours answers from that port; the native host too, both ways.
    let mut l = lab(1605, NatKind::Symmetric);
    let (_, lan2) =
        l.w.add_nat(NatKind::PortRestricted, ip("198.18.4.1"), false);
    let peer =
        l.w.add_client(ip("192.168.2.2"), LOCAL_PORT, Some(lan2), ip(SERVER));
    let addr = l.w.qualify(l.client, SECS(10));
    let peer_addr = l.w.qualify(peer, SECS(10));
    assert_eq!(
        nat_report(&mut l),
        NatBehaviour::RandomSymmetric,
        "{}",
        l.w.trace.join("\n")
    );
    let seen = TeredoAddr::parse(&addr).unwrap().mapped();
    map(&mut l, OTHER_PORT);
    assert!(!l.w.client(l.client).port_mapping_in_use());
    map(&mut l, seen.port());
    assert!(l.w.client(l.client).port_mapping_in_use());
    assert_eq!(l.w.teredo_addr(l.client), Some(addr));
    // The peer first, then ours.
    peer_echoes_both_ways(&mut l, peer, peer_addr, addr, 3);
    all_echoes_answered(&mut l, addr);
}

#[test]
fn sim_portmap_mapped_clients_behind_one_nat_reach_each_other() {
    // Two clients behind one random-port NAT that does not hairpin (no
    // local discovery), both with a mapping moved to what the server sees:
    // each reaches the other on the LAN (RFC 6081 alternate addresses),
    // both ways, as without the mappings; answering each other only
    // through the server would leave them there.
    let mut l = lab(1606, NatKind::Symmetric);
    let lan = l.w.nats[l.nat].lan;
    let peer =
        l.w.add_client(ip("192.168.1.3"), LOCAL_PORT + 1, Some(lan), ip(SERVER));
    let addr = l.w.qualify(l.client, SECS(10));
    let peer_addr = l.w.qualify(peer, SECS(10));
    nat_report(&mut l);
    let seen = TeredoAddr::parse(&addr).unwrap().mapped();
    map(&mut l, seen.port());
    assert!(l.w.client(l.client).port_mapping_in_use());
    let peer_seen = TeredoAddr::parse(&peer_addr).unwrap().mapped();
    let internal = SocketAddrV4::new(ip("192.168.1.3"), LOCAL_PORT + 1);
    l.w.nats[l.nat]
        .port_mappings
        .insert(peer_seen.port(), internal);
    l.w.set_port_mapping(peer, Some(peer_seen));
    assert!(l.w.client(peer).port_mapping_in_use());
    peer_echoes_both_ways(&mut l, peer, peer_addr, addr, 5);
}
