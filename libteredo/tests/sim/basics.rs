//! Simulator scenarios: the engines in a virtual Internet with NATs, on a
//! virtual clock, reproducible from a seed. Every test name contains `sim`.

use crate::{NAT2_WAN, NATIVE, NAT_WAN, RELAY, SECS, SERVER};
use libteredo::addr::{TeredoAddr, TEREDO_PORT, TEREDO_PREFIX};
use libteredo::proto::DiscoveryConfig;
use libteredo::proto::ForwarderConfig;
use libteredo::proto::{advert, advert_datagram, PeerClass as Class, DEFAULT_QUEUE_BYTES};
use libteredo::proto::{ClientConfig, ClientState};

use libteredo::proto::DropReason;
use libteredo::proto::{Event, NatBehaviour};
use libteredo::sim::*;
use libteredo::wire::icmpv6::Icmpv6Repr;
use libteredo::wire::ipv6::Ipv6Repr;
use libteredo::wire::teredo::Auth;
use std::net::{Ipv6Addr, SocketAddrV4};
use std::time::Duration;

struct Lab {
    w: World,
    server: NodeId,
    relay: NodeId,
    native: usize,
    nat: NatId,
    client: NodeId,
}

/// Server, relay, native host, and one client behind a NAT of `kind`.
fn lab(seed: u64, kind: NatKind) -> Lab {
    let mut w = World::new(seed);
    let server = w.add_server(ip(SERVER));
    let relay = w.add_relay(ip(RELAY), None);
    let native = w.add_native(ip6(NATIVE));
    let (nat, lan) = w.add_nat(kind, ip(NAT_WAN), false);
    let client = w.add_client(ip("192.168.1.2"), 40000, Some(lan), ip(SERVER));
    Lab {
        w,
        server,
        relay,
        native,
        nat,
        client,
    }
}

/// The NAT behaviour the client reported, waiting for the NAT tests.
fn reported_nat(w: &mut World, id: NodeId) -> NatBehaviour {
    let ok = w.run_until_cond(SECS(90), |w| {
        w.events(id)
            .iter()
            .any(|e| matches!(e, Event::NatObserved(_)))
    });
    assert!(ok, "no NAT report\n{}", w.trace.join("\n"));
    w.client(id).nat()
}

fn check_qualified_behind(kind: NatKind, expect: NatBehaviour, seed: u64) {
    let mut l = lab(seed, kind);
    let addr = l.w.qualify(l.client, SECS(10));
    let t = TeredoAddr::parse(&addr).unwrap();
    assert_eq!(t.server, ip(SERVER));
    assert_eq!(*t.mapped().ip(), ip(NAT_WAN));
    // RFC 5991: never the cone bit, R/U/G clear.
    assert!(!t.is_cone());
    assert!(t.flags_valid_rfc5991());
    assert_eq!(l.w.client(l.client).state(), ClientState::Qualified);
    assert_eq!(reported_nat(&mut l.w, l.client), expect, "{kind:?}");
}

#[test]
fn sim_qualify_no_nat_reports_no_nat() {
    let mut w = World::new(1);
    w.add_server(ip(SERVER));
    let c = w.add_client(ip("198.18.5.9"), 40000, None, ip(SERVER));
    let addr = w.qualify(c, SECS(5));
    let t = TeredoAddr::parse(&addr).unwrap();
    assert_eq!(t.mapped(), SocketAddrV4::new(ip("198.18.5.9"), 40000));
    // Not a cone NAT: no NAT at all (the C miredo says cone).
    assert_eq!(reported_nat(&mut w, c), NatBehaviour::None);
}

/// The server's counters (miredo-server's status socket): a solicitation
/// and its advertisement per qualification, and the indirect bubble one
/// client sends another through it.
#[test]
fn sim_server_counts_solicitations_and_relayed_bubbles() {
    let mut w = World::new(7);
    let srv = w.add_server(ip(SERVER));
    let (_, lan1) = w.add_nat(NatKind::PortRestricted, ip(NAT_WAN), false);
    let (_, lan2) = w.add_nat(NatKind::PortRestricted, ip(NAT2_WAN), false);
    let a = w.add_client(ip("192.168.1.2"), 40000, Some(lan1), ip(SERVER));
    let b = w.add_client(ip("192.168.2.2"), 40000, Some(lan2), ip(SERVER));
    let _ = w.qualify(a, SECS(10));
    let addr_b = w.qualify(b, SECS(10));
    let c = w.server_engine(srv).counters;
    assert!(c.rs_received >= 2, "{c:?}");
    assert_eq!(c.ra_sent, c.rs_received, "{c:?}");
    assert_eq!(c.relayed_to_clients, 0, "{c:?}");
    let addr_a = w.teredo_addr(a).unwrap();
    w.client_send(a, echo_request(addr_a, addr_b, 7, 1, 8));
    w.run_for(SECS(5));
    let c = w.server_engine(srv).counters;
    assert!(c.relayed_to_clients >= 1, "{c:?}");
    assert_eq!(c.relayed_to_native, 0, "{c:?}");
}

#[test]
fn sim_qualify_full_cone() {
    check_qualified_behind(NatKind::FullCone, NatBehaviour::Cone, 2);
}

#[test]
fn sim_qualify_address_restricted() {
    check_qualified_behind(NatKind::AddressRestricted, NatBehaviour::Restricted, 3);
}

#[test]
fn sim_qualify_port_restricted() {
    check_qualified_behind(NatKind::PortRestricted, NatBehaviour::Restricted, 4);
}

#[test]
fn sim_qualify_symmetric_is_qualified_and_reported() {
    check_qualified_behind(NatKind::Symmetric, NatBehaviour::RandomSymmetric, 5);
}

#[test]
fn sim_qualify_linux_masquerade_is_port_preserving_symmetric() {
    // The unanswered cone test leaves a conntrack entry for the secondary
    // address and our port: the secondary test then sees another port,
    // while the first mapping kept our local port: a port-preserving
    // symmetric NAT in RFC 6081 terms, which is what masquerade is.
    check_qualified_behind(
        NatKind::Masquerade,
        NatBehaviour::PortPreservingSymmetric,
        6,
    );
}

#[test]
fn sim_qualify_sequential_symmetric() {
    check_qualified_behind(NatKind::Sequential, NatBehaviour::SequentialSymmetric, 27);
}

#[test]
fn sim_qualify_with_loss_retries() {
    let mut l = lab(7, NatKind::PortRestricted);
    l.w.loss = 0.3;
    l.w.qualify(l.client, SECS(60));
}

#[test]
fn sim_native_both_ways_through_relay_nothing_lost() {
    let mut l = lab(8, NatKind::PortRestricted);
    let addr = l.w.qualify(l.client, SECS(10));
    let native = ip6(NATIVE);

    // Native -> client first: the relay queues the first packet, bubbles
    // the client through its server, and delivers after the exchange.
    l.w.native_send(echo_request(native, addr, 1, 1, 56));
    l.w.run_for(SECS(3));
    assert_eq!(
        l.w.client_echo_requests(l.client, 1),
        vec![1],
        "{}",
        l.w.trace.join("\n")
    );
    // The client's kernel answered; the reply needs a connectivity test
    // towards the native host, then goes through the relay.
    l.w.run_for(SECS(3));
    assert_eq!(
        l.w.native_echo_replies(l.native, 1),
        vec![1],
        "{}",
        l.w.trace.join("\n")
    );
    for seq in 2..=10 {
        l.w.native_send(echo_request(native, addr, 1, seq, 56));
        l.w.run_for(Duration::from_millis(200));
    }
    l.w.run_for(SECS(1));
    assert_eq!(
        l.w.native_echo_replies(l.native, 1),
        (1..=10).collect::<Vec<_>>()
    );

    // Client -> native.
    for seq in 1..=5 {
        l.w.client_send(l.client, echo_request(addr, native, 2, seq, 100));
        l.w.run_for(Duration::from_millis(200));
    }
    l.w.run_for(SECS(1));
    assert_eq!(
        l.w.native_echo_requests(l.native, 2),
        (1..=5).collect::<Vec<_>>()
    );
    assert_eq!(
        l.w.client_echo_replies(l.client, 2),
        (1..=5).collect::<Vec<_>>()
    );
    assert_eq!(l.w.relay_engine(l.relay).stats().total_drops(), 0);
}

#[test]
fn sim_client_initiates_to_native_first_packet_queued() {
    let mut l = lab(9, NatKind::Masquerade);
    let addr = l.w.qualify(l.client, SECS(10));
    let native = ip6(NATIVE);
    // The first packet waits for the connectivity test; none is lost.
    l.w.client_send(l.client, echo_request(addr, native, 3, 1, 10));
    l.w.client_send(l.client, echo_request(addr, native, 3, 2, 10));
    l.w.run_for(SECS(3));
    assert_eq!(
        l.w.native_echo_requests(l.native, 3),
        vec![1, 2],
        "{}",
        l.w.trace.join("\n")
    );
    assert_eq!(l.w.client_echo_replies(l.client, 3), vec![1, 2]);
    assert!(l.w.client(l.client).stats().ping_tests_ok >= 1);
}

fn two_clients(seed: u64, k1: NatKind, k2: NatKind) -> (World, NodeId, NodeId) {
    let mut w = World::new(seed);
    w.add_server(ip(SERVER));
    let (_, lan1) = w.add_nat(k1, ip(NAT_WAN), false);
    let (_, lan2) = w.add_nat(k2, ip(NAT2_WAN), false);
    let a = w.add_client(ip("192.168.1.2"), 40000, Some(lan1), ip(SERVER));
    let b = w.add_client(ip("192.168.2.2"), 50000, Some(lan2), ip(SERVER));
    (w, a, b)
}

fn ping_both_ways(w: &mut World, a: NodeId, b: NodeId) {
    let aa = w.qualify(a, SECS(10));
    let ba = w.qualify(b, SECS(10));
    for seq in 1..=3 {
        w.client_send(a, echo_request(aa, ba, 10, seq, 32));
        w.run_for(Duration::from_millis(500));
    }
    w.run_for(SECS(5));
    assert_eq!(
        w.client_echo_requests(b, 10),
        vec![1, 2, 3],
        "{}",
        w.trace.join("\n")
    );
    assert_eq!(
        w.client_echo_replies(a, 10),
        vec![1, 2, 3],
        "{}",
        w.trace.join("\n")
    );
    for seq in 1..=3 {
        w.client_send(b, echo_request(ba, aa, 11, seq, 32));
        w.run_for(Duration::from_millis(500));
    }
    w.run_for(SECS(2));
    assert_eq!(w.client_echo_replies(b, 11), vec![1, 2, 3]);
}

#[test]
fn sim_client_to_client_two_port_restricted_nats() {
    let (mut w, a, b) = two_clients(10, NatKind::PortRestricted, NatKind::PortRestricted);
    ping_both_ways(&mut w, a, b);
}

#[test]
fn sim_client_to_client_full_cone_and_restricted() {
    let (mut w, a, b) = two_clients(11, NatKind::FullCone, NatKind::AddressRestricted);
    ping_both_ways(&mut w, a, b);
}

#[test]
fn sim_two_clients_one_nat_no_hairpin_local_discovery() {
    let mut w = World::new(12);
    w.add_server(ip(SERVER));
    let (_, lan) = w.add_nat(NatKind::PortRestricted, ip(NAT_WAN), false);
    let mut cfg = ClientConfig::new(ip(SERVER));
    cfg.discovery = Some(DiscoveryConfig {
        local_nets: vec![(ip("192.168.1.0"), 24)],
        any_mapped: false,
    });
    let a = w.add_client_with(ip("192.168.1.2"), 40000, Some(lan), cfg.clone());
    let b = w.add_client_with(ip("192.168.1.3"), 40001, Some(lan), cfg);
    ping_both_ways(&mut w, a, b);
    // The traffic went over the LAN: to b's local endpoint, never through
    // the NAT's (absent) hairpin.
    let to_b_local = w.sent[&a]
        .iter()
        .filter(|(to, _)| *to == SocketAddrV4::new(ip("192.168.1.3"), 40001))
        .count();
    assert!(to_b_local >= 3, "{to_b_local}");
}

#[test]
fn sim_two_clients_one_nat_without_discovery_fail_without_hairpin() {
    // The control experiment for the scenario above: RFC 4380 alone, no
    // discovery, no hairpin, no path (RFC 6081's alternate address is what
    // fixes it; see sim_rfc6081_hairpinning_alternate_address_without_discovery).
    let mut w = World::new(13);
    w.add_server(ip(SERVER));
    let (_, lan) = w.add_nat(NatKind::PortRestricted, ip(NAT_WAN), false);
    let mut cfg = ClientConfig::new(ip(SERVER));
    cfg.forwarder.rfc6081 = false;
    let a = w.add_client_with(ip("192.168.1.2"), 40000, Some(lan), cfg.clone());
    let b = w.add_client_with(ip("192.168.1.3"), 40001, Some(lan), cfg);
    let aa = w.qualify(a, SECS(10));
    let ba = w.qualify(b, SECS(10));
    w.client_send(a, echo_request(aa, ba, 12, 1, 8));
    w.run_for(SECS(15));
    assert!(w.client_echo_requests(b, 12).is_empty());
}

#[test]
fn sim_server_silent_loss_then_recovery() {
    let mut l = lab(14, NatKind::PortRestricted);
    let addr = l.w.qualify(l.client, SECS(10));
    l.w.nodes[l.server].up = false;
    let start = l.w.elapsed();
    let lost = l.w.run_until_cond(SECS(120), |w| {
        w.events(l.client)
            .iter()
            .any(|e| matches!(e, Event::ServerLost { .. }))
    });
    assert!(lost, "{}", l.w.trace.join("\n"));
    let lost_after = l.w.elapsed() - start;
    // RFC timers: refresh within 22.5..30 s, then 3 solicitations 4 s apart.
    assert!(
        lost_after >= SECS(22) && lost_after <= SECS(45),
        "{lost_after:?}"
    );
    assert!(l.w.teredo_addr(l.client).is_none());
    assert!(l
        .w
        .events(l.client)
        .contains(&Event::ServerLost { old: addr }));
    l.w.nodes[l.server].up = true;
    let again = l.w.qualify(l.client, SECS(120));
    // Same NAT mapping: the address is rebuilt on the same mapped endpoint.
    assert_eq!(
        TeredoAddr::parse(&again).unwrap().mapped(),
        TeredoAddr::parse(&addr).unwrap().mapped()
    );
}

#[test]
fn sim_nat_remap_new_address_old_withdrawn() {
    let mut l = lab(15, NatKind::PortRestricted);
    let old = l.w.qualify(l.client, SECS(10));
    l.w.nats[l.nat].reboot(Some(ip("198.18.3.77")));
    let moved = l.w.run_until_cond(SECS(60), |w| {
        w.teredo_addr(l.client).is_some_and(|a| a != old)
    });
    assert!(moved, "{}", l.w.trace.join("\n"));
    let new = l.w.teredo_addr(l.client).unwrap();
    assert_eq!(
        *TeredoAddr::parse(&new).unwrap().mapped().ip(),
        ip("198.18.3.77")
    );
    let ev = l.w.events(l.client);
    assert!(
        ev.iter().any(|e| matches!(e, Event::Qualified { addr, old: Some(o), .. } if *addr == new && *o == old)),
        "{ev:?}"
    );
    // The native host reaches the new address.
    l.w.native_send(echo_request(ip6(NATIVE), new, 20, 1, 8));
    l.w.run_for(SECS(5));
    assert_eq!(l.w.native_echo_replies(l.native, 20), vec![1]);
}

#[test]
fn sim_mapping_kept_alive_by_maintenance() {
    let mut l = lab(16, NatKind::PortRestricted);
    l.w.nats[l.nat].timeout = SECS(60);
    let addr = l.w.qualify(l.client, SECS(10));
    l.w.run_for(SECS(600));
    assert_eq!(l.w.teredo_addr(l.client), Some(addr));
    assert!(!l
        .w
        .events(l.client)
        .iter()
        .any(|e| matches!(e, Event::ServerLost { .. })));
}

#[test]
fn sim_peer_expiry_after_30s() {
    let mut l = lab(17, NatKind::PortRestricted);
    let addr = l.w.qualify(l.client, SECS(10));
    l.w.native_send(echo_request(ip6(NATIVE), addr, 30, 1, 8));
    l.w.run_for(SECS(5));
    assert_eq!(l.w.native_echo_replies(l.native, 30), vec![1]);
    assert!(l.w.relay_engine(l.relay).peers().get(&addr).is_some());
    l.w.run_for(SECS(31));
    assert!(l.w.relay_engine(l.relay).peers().get(&addr).is_none());
}

#[test]
fn sim_pending_queue_cap() {
    let mut l = lab(18, NatKind::PortRestricted);
    let addr = l.w.qualify(l.client, SECS(10));
    // The server is silenced so no bubble gets through: everything waits.
    l.w.nodes[l.server].up = false;
    let per = 1000;
    let n = DEFAULT_QUEUE_BYTES / (per + 48) + 5;
    for seq in 0..n as u16 {
        l.w.native_send(echo_request(ip6(NATIVE), addr, 31, seq, per));
    }
    l.w.run_for(Duration::from_millis(100));
    let relay = l.w.relay_engine(l.relay);
    let (packets, bytes) = relay.peers().queue_of(&addr).unwrap();
    assert!(bytes <= DEFAULT_QUEUE_BYTES);
    assert_eq!(packets, DEFAULT_QUEUE_BYTES / (per + 48));
    assert_eq!(relay.stats().dropped(DropReason::QueueFull), 5);
}

#[test]
fn sim_bubble_limits_exact() {
    // A relay trying to reach a client that never answers: one bubble pair
    // per 2 s at most, 4 in 300 s, then nothing until the window passes.
    let mut w = World::new(19);
    w.add_server(ip(SERVER));
    let relay = w.add_relay(ip(RELAY), None);
    w.add_native(ip6(NATIVE));
    let dead = TeredoAddr {
        prefix: 0x2001_0000,
        server: ip(SERVER),
        flags: 0,
        mapped_port: 4444,
        mapped_addr: ip("198.18.9.9"),
    }
    .to_ipv6();
    let mut times = Vec::new();
    for i in 0..320u64 {
        let before = w.sent.get(&relay).map_or(0, |v| v.len());
        w.native_send(echo_request(ip6(NATIVE), dead, 40, i as u16, 8));
        w.run_for(SECS(1));
        let after = w.sent.get(&relay).map_or(0, |v| v.len());
        for _ in before..after {
            times.push(i);
        }
    }
    let sent = &w.sent[&relay];
    // Each attempt is one indirect bubble (a public relay sends no direct
    // bubble), through the client's server.
    assert!(sent
        .iter()
        .all(|(to, p)| p.len() == 40 && *to == SocketAddrV4::new(ip(SERVER), TEREDO_PORT)));
    let attempts = times;
    // Four attempts, 2 s apart; then silence until 300 s after the last
    // one; then four more.
    assert_eq!(attempts, vec![0, 2, 4, 6, 306, 308, 310, 312]);
}

#[test]
fn sim_spoofed_teredo_source_from_wrong_endpoint_dropped() {
    let mut l = lab(20, NatKind::FullCone);
    let addr = l.w.qualify(l.client, SECS(10));
    // An attacker at 198.18.66.6 claims to be a Teredo peer whose mapped
    // endpoint is elsewhere.
    let victim = TeredoAddr {
        prefix: 0x2001_0000,
        server: ip(SERVER),
        flags: 0,
        mapped_port: 5555,
        mapped_addr: ip("198.18.7.7"),
    }
    .to_ipv6();
    let pkt = echo_request(victim, addr, 50, 1, 8);
    let dst = SocketAddrV4::new(
        ip(NAT_WAN),
        l.w.client(l.client).qualification().unwrap().mapped.port(),
    );
    l.w.send_v4(SocketAddrV4::new(ip("198.18.66.6"), 3544), dst, pkt, None);
    l.w.run_for(SECS(1));
    assert!(l.w.client_echo_requests(l.client, 50).is_empty());
    assert_eq!(l.w.client(l.client).stats().dropped(DropReason::Spoofed), 1);
    assert!(l.w.client(l.client).peer_count() == 0);
}

/// An RA such as a server would send, for a forged answer.
fn forged_ra(nonce: [u8; 8], origin: SocketAddrV4) -> Vec<u8> {
    let auth = Auth {
        client_id: &[],
        auth_value: &[],
        nonce,
        confirmation: 0,
    };
    let ra = advert(TEREDO_PREFIX, ip(SERVER), Some(1280));
    advert_datagram(
        Some(auth),
        origin,
        libteredo::addr::server_link_local(ip(SERVER)),
        libteredo::addr::LINK_LOCAL_RESTRICTED,
        ra,
    )
}

#[test]
fn sim_ra_with_wrong_nonce_dropped() {
    let mut w = World::new(21);
    w.add_server(ip(SERVER));
    let c = w.add_client(ip("198.18.5.9"), 40000, None, ip(SERVER));
    let real = w.qualify(c, SECS(5));
    // Forged RAs from the server's address, announcing another mapping,
    // with guessed nonces: never accepted.
    for i in 0..50u8 {
        let ra = forged_ra([i; 8], SocketAddrV4::new(ip("198.18.66.6"), 6666));
        w.send_v4(
            SocketAddrV4::new(ip(SERVER), TEREDO_PORT),
            SocketAddrV4::new(ip("198.18.5.9"), 40000),
            ra,
            None,
        );
    }
    w.run_for(SECS(120));
    assert_eq!(w.teredo_addr(c), Some(real));
    assert!(w.client(c).stats().dropped(DropReason::Spoofed) >= 50);
}

#[test]
fn sim_non_global_mapped_peer_refused_cve_2006_6264() {
    let mut l = lab(22, NatKind::FullCone);
    let addr = l.w.qualify(l.client, SECS(10));
    // A Teredo address whose mapped IPv4 is an intranet address: nothing
    // may be sent there, and no peer entry made.
    let intranet = TeredoAddr {
        prefix: 0x2001_0000,
        server: ip(SERVER),
        flags: 0,
        mapped_port: 80,
        mapped_addr: ip("192.168.1.1"),
    }
    .to_ipv6();
    let before = l.w.sent.get(&l.client).map_or(0, |v| v.len());
    l.w.client_send(l.client, echo_request(addr, intranet, 60, 1, 8));
    let after = l.w.sent.get(&l.client).map_or(0, |v| v.len());
    assert_eq!(before, after);
    assert_eq!(l.w.client(l.client).peer_count(), 0);
    // Same at the relay, from the native side.
    l.w.native_send(echo_request(ip6(NATIVE), intranet, 61, 1, 8));
    l.w.run_for(SECS(1));
    assert!(l.w.sent.get(&l.relay).is_none_or(|v| v.is_empty()));
    assert_eq!(
        l.w.relay_engine(l.relay)
            .stats()
            .dropped(DropReason::NotGlobal),
        1
    );
}

#[test]
fn sim_relay_never_forwards_routing_header_cve_2006_6263() {
    let mut l = lab(23, NatKind::FullCone);
    let addr = l.w.qualify(l.client, SECS(10));
    // Open the path first.
    l.w.native_send(echo_request(ip6(NATIVE), addr, 70, 1, 8));
    l.w.run_for(SECS(5));
    assert_eq!(l.w.native_echo_replies(l.native, 70), vec![1]);
    // The client sends a packet with a type 0 routing header, segments
    // left 1, bouncing through the relay towards a third party.
    let mut rh = vec![59u8, 2, 0, 1, 0, 0, 0, 0];
    rh.extend_from_slice(&ip6("2001:db8:66::6").octets());
    let pkt = Ipv6Repr {
        src: addr,
        dst: ip6(NATIVE),
        next_header: 43,
        payload_len: 0,
        hop_limit: 64,
        traffic_class: 0,
    }
    .build(&rh);
    let relay_tun_before = l.w.natives[l.native].rx.len();
    let mapped = l.w.client(l.client).qualification().unwrap().mapped;
    l.w.send_v4(mapped, SocketAddrV4::new(ip(RELAY), TEREDO_PORT), pkt, None);
    l.w.run_for(SECS(1));
    assert_eq!(l.w.natives[l.native].rx.len(), relay_tun_before);
    assert_eq!(
        l.w.relay_engine(l.relay)
            .stats()
            .dropped(DropReason::RoutingHeader),
        1
    );
}

#[test]
fn sim_bubble_from_relay_opens_restricted_nat() {
    // The relay's indirect bubble reaches the client through the server
    // with an origin indication; the client answers with a direct bubble.
    let mut l = lab(24, NatKind::PortRestricted);
    let addr = l.w.qualify(l.client, SECS(10));
    l.w.native_send(echo_request(ip6(NATIVE), addr, 80, 1, 8));
    l.w.run_for(SECS(3));
    let direct = l.w.sent[&l.client]
        .iter()
        .filter(|(to, p)| *to == SocketAddrV4::new(ip(RELAY), TEREDO_PORT) && p.len() == 40)
        .count();
    assert_eq!(direct, 1);
    assert_eq!(l.w.client_echo_requests(l.client, 80), vec![1]);
}

#[test]
fn sim_same_seed_same_trace() {
    let run = |seed| {
        let mut l = lab(seed, NatKind::Masquerade);
        l.w.loss = 0.1;
        let addr = l.w.qualify(l.client, SECS(60));
        for s in 0..5 {
            l.w.native_send(echo_request(ip6(NATIVE), addr, 90, s, 20));
            l.w.run_for(SECS(1));
        }
        l.w.run_for(SECS(60));
        (
            addr,
            l.w.trace.clone(),
            l.w.native_echo_replies(l.native, 90),
        )
    };
    let a = run(99);
    let b = run(99);
    assert_eq!(a, b);
    let c = run(100);
    assert_ne!(a.0, c.0, "another seed, other random flags");
}

#[test]
fn sim_relay_icmp_unreachable_after_bubbles_fail() {
    let mut w = World::new(25);
    w.add_server(ip(SERVER));
    let relay = w.add_relay_with(ip(RELAY), None, ForwarderConfig::default());
    let h = w.add_native(ip6(NATIVE));
    let dead = TeredoAddr {
        prefix: 0x2001_0000,
        server: ip(SERVER),
        flags: 0,
        mapped_port: 4444,
        mapped_addr: ip("198.18.9.9"),
    }
    .to_ipv6();
    w.native_send(echo_request(ip6(NATIVE), dead, 41, 1, 8));
    w.run_for(SECS(12));
    let unreachables = w.natives[h]
        .rx
        .iter()
        .filter(|p| {
            let ip = libteredo::wire::ipv6::Ipv6Packet::new_checked(&p[..]).unwrap();
            matches!(
                Icmpv6Repr::parse(&ip.src_addr(), &ip.dst_addr(), ip.payload()),
                Ok(Icmpv6Repr::DstUnreachable { code: 3, .. })
            )
        })
        .count();
    assert_eq!(unreachables, 1);
    assert_eq!(w.relay_engine(relay).stats().icmp_errors, 1);
}

/// An echo request whose traffic class carries `ecn`.
fn echo_request_ecn(src: Ipv6Addr, dst: Ipv6Addr, ident: u16, seq: u16, ecn: u8) -> Vec<u8> {
    let mut p = echo_request(src, dst, ident, seq, 16);
    p[1] = (p[1] & 0x0f) | (ecn << 4);
    p
}

fn tun_ecn(p: &[u8]) -> u8 {
    libteredo::wire::ipv6::Ipv6Packet::new_checked(p)
        .unwrap()
        .ecn()
}

#[test]
fn sim_ecn_copied_out_and_ce_carried_in_rfc9601() {
    use libteredo::proto::{CE, ECT0, NOT_ECT};
    let mut l = lab(26, NatKind::PortRestricted);
    let addr = l.w.qualify(l.client, SECS(10));
    // Open the path.
    l.w.native_send(echo_request(ip6(NATIVE), addr, 95, 0, 8));
    l.w.run_for(SECS(5));
    assert_eq!(l.w.native_echo_replies(l.native, 95), vec![0]);

    // Encapsulation copies the inner ECN field to the outer header.
    let before = l.w.sent_ecn.get(&l.relay).map_or(0, |v| v.len());
    l.w.native_send(echo_request_ecn(ip6(NATIVE), addr, 95, 1, ECT0));
    l.w.run_for(SECS(1));
    assert_eq!(l.w.sent_ecn[&l.relay][before..], [ECT0]);
    let last = l.w.nodes[l.client].tun_rx.last().unwrap().clone();
    assert_eq!(tun_ecn(&last), ECT0);

    // A congested router marks CE on the outer header: the client's host
    // sees CE on the inner one.
    l.w.mark_ce = true;
    l.w.native_send(echo_request_ecn(ip6(NATIVE), addr, 95, 2, ECT0));
    l.w.run_for(SECS(1));
    assert_eq!(l.w.client_echo_requests(l.client, 95), vec![0, 1, 2]);
    let last = l.w.nodes[l.client].tun_rx.last().unwrap().clone();
    assert_eq!(tun_ecn(&last), CE);
    // Not-ECT packets are never marked, and arrive unchanged.
    l.w.native_send(echo_request_ecn(ip6(NATIVE), addr, 95, 3, NOT_ECT));
    l.w.run_for(SECS(1));
    let last = l.w.nodes[l.client].tun_rx.last().unwrap().clone();
    assert_eq!(tun_ecn(&last), NOT_ECT);
    assert_eq!(l.w.client_echo_requests(l.client, 95), vec![0, 1, 2, 3]);
}

// ----------------------------------------------------------------------
// RFC 6081 and the Linux NATs.

/// Two clients behind NATs of the given kinds; `ext` selects RFC 6081 (and
/// the low-TTL first bubbles) on both.
fn two_clients_cfg(seed: u64, k1: NatKind, k2: NatKind, ext: bool) -> (World, NodeId, NodeId) {
    let mut w = World::new(seed);
    w.add_server(ip(SERVER));
    let (_, lan1) = w.add_nat(k1, ip(NAT_WAN), false);
    let (_, lan2) = w.add_nat(k2, ip(NAT2_WAN), false);
    let mut cfg = ClientConfig::new(ip(SERVER));
    cfg.forwarder.rfc6081 = ext;
    cfg.forwarder.low_ttl = if ext { 2 } else { 0 };
    let a = w.add_client_with(ip("192.168.1.2"), 40000, Some(lan1), cfg.clone());
    let b = w.add_client_with(ip("192.168.2.2"), 50000, Some(lan2), cfg);
    (w, a, b)
}

/// Our client (RFC 6081 and all) behind a `k1` NAT and a plain RFC 4380
/// client (as the C miredo: no RFC 6081, no low-TTL bubbles) behind a `k2`
/// NAT; `flat`: the NATs share a segment (see `World::flat_internet`).
fn ours_and_plain(seed: u64, k1: NatKind, k2: NatKind, flat: bool) -> (World, NodeId, NodeId) {
    let mut w = World::new(seed);
    w.flat_internet = flat;
    w.add_server(ip(SERVER));
    let (_, lan1) = w.add_nat(k1, ip(NAT_WAN), false);
    let (_, lan2) = w.add_nat(k2, ip(NAT2_WAN), false);
    let ours = ClientConfig::new(ip(SERVER));
    let mut plain = ours.clone();
    plain.forwarder.rfc6081 = false;
    plain.forwarder.low_ttl = 0;
    let a = w.add_client_with(ip("192.168.1.2"), 40000, Some(lan1), ours);
    let b = w.add_client_with(ip("192.168.2.2"), 50000, Some(lan2), plain);
    (w, a, b)
}

/// Pings from `a` to `b` (3 echoes); returns how many replies came back.
fn ping_count(w: &mut World, a: NodeId, b: NodeId, ident: u16) -> usize {
    let aa = w.qualify(a, SECS(10));
    let ba = w.qualify(b, SECS(10));
    for seq in 1..=3 {
        w.client_send(a, echo_request(aa, ba, ident, seq, 32));
        w.run_for(Duration::from_millis(500));
    }
    w.run_for(SECS(8));
    w.client_echo_replies(a, ident).len()
}

#[test]
fn sim_rfc6081_two_masquerade_nats_both_ways() {
    let (mut w, a, b) = two_clients_cfg(30, NatKind::Masquerade, NatKind::Masquerade, true);
    ping_both_ways(&mut w, a, b);
}

#[test]
fn sim_rfc4380_alone_fails_across_two_masquerade_nats() {
    // The control: without RFC 6081 and the low-TTL first bubble, the first
    // direct bubble makes the peer's NAT remap its answer, as with the C
    // miredo in the lab.
    let (mut w, a, b) = two_clients_cfg(31, NatKind::Masquerade, NatKind::Masquerade, false);
    assert_eq!(ping_count(&mut w, a, b, 12), 0, "{}", w.trace.join("\n"));
}

/// A client behind a cone NAT and a plain RFC 4380 client (the C miredo)
/// behind a masquerading Linux NAT, on an Internet where the NATs share a
/// segment (a low time to live reaches the other NAT, as in the namespace
/// lab). The cone client sends no direct bubble of its own (RFC 4380 5.2.4
/// case 5): one reaching the masquerading NAT before its client has sent
/// anything would make that NAT map the client's answers to another port,
/// and without RFC 6081 on that side to learn it, the two would never hear
/// each other.
#[test]
fn sim_cone_client_reaches_plain_client_behind_masquerade_on_a_flat_internet() {
    for seed in 40..44 {
        let (mut w, a, b) = ours_and_plain(seed, NatKind::FullCone, NatKind::Masquerade, true);
        let aa = w.qualify(a, SECS(10));
        let ba = w.qualify(b, SECS(10));
        w.run_for(SECS(1)); // The NAT tests finish.
        assert_eq!(w.client(a).nat(), NatBehaviour::Cone);
        // The cone side speaks first, then the other.
        for seq in 1..=3 {
            w.client_send(a, echo_request(aa, ba, 20, seq, 32));
            w.run_for(Duration::from_millis(500));
        }
        for seq in 1..=3 {
            w.client_send(b, echo_request(ba, aa, 21, seq, 32));
            w.run_for(Duration::from_millis(500));
        }
        w.run_for(SECS(5));
        let trace = w.trace.join("\n");
        assert_eq!(
            w.client_echo_replies(a, 20),
            vec![1, 2, 3],
            "seed {seed}\n{trace}"
        );
        assert_eq!(
            w.client_echo_replies(b, 21),
            vec![1, 2, 3],
            "seed {seed}\n{trace}"
        );
    }
}

/// A plain RFC 4380 client (the C miredo) behind a masquerading Linux NAT
/// whose connection tracking holds an entry left by an earlier unsolicited
/// datagram from our client's endpoint: the NAT maps the peer's packets to
/// us to another port than its Teredo address says. Without RFC 6081 on
/// the peer's side, nothing it sends proves that port; our client tests it
/// with an echo request (RFC 4380 5.2.3 case 2) and talks to it once the
/// reply comes back; the peer's packets that came before the proof are
/// held, not lost. Each direction is started alone, in its own world.
#[test]
fn sim_plain_peer_remapped_by_its_nat_is_proven_by_an_echo_test() {
    for (seed, ours_first) in [(50, true), (51, false), (52, true), (53, false)] {
        let (mut w, a, b) = ours_and_plain(seed, NatKind::FullCone, NatKind::Masquerade, false);
        let aa = w.qualify(a, SECS(10));
        let ba = w.qualify(b, SECS(10));
        w.run_for(SECS(1));
        let a_mapped = w.client(a).qualification().unwrap().mapped;
        let b_mapped = w.client(b).qualification().unwrap().mapped;
        // The stray datagram: from our endpoint to the peer's, unsolicited.
        w.send_v4(a_mapped, b_mapped, vec![0; 8], None);
        w.run_for(Duration::from_millis(100));
        let (from, fa, ta, ident) = if ours_first {
            (a, aa, ba, 60)
        } else {
            (b, ba, aa, 61)
        };
        for seq in 1..=4 {
            w.client_send(from, echo_request(fa, ta, ident, seq, 32));
            w.run_for(Duration::from_millis(500));
        }
        w.run_for(SECS(3));
        let trace = w.trace.join("\n");
        let replies = w.client_echo_replies(from, ident);
        // Nothing lost: what the peer sent before the proof was held.
        assert_eq!(replies, vec![1, 2, 3, 4], "seed {seed}\n{trace}");
        assert!(w.client(a).stats().ping_tests_ok >= 1, "seed {seed}");
        assert_eq!(w.client(a).stats().endpoints_learnt, 1, "seed {seed}");
    }
}

#[test]
fn sim_rfc6081_symmetric_with_full_cone_both_ways() {
    let (mut w, a, b) = two_clients_cfg(32, NatKind::FullCone, NatKind::Symmetric, true);
    ping_both_ways(&mut w, a, b);
    assert!(w.client(a).stats().endpoints_learnt >= 1);
}

/// Without RFC 6081 on either side, the symmetric side's packets come from
/// another port than its address says; the cone side proves that port
/// with an echo test (RFC 4380 5.2.3 case 2) and answers there, whichever
/// side starts.
#[test]
fn sim_rfc4380_symmetric_with_full_cone_by_endpoint_test() {
    let (mut w, a, b) = two_clients_cfg(33, NatKind::FullCone, NatKind::Symmetric, false);
    assert_eq!(ping_count(&mut w, b, a, 13), 3, "{}", w.trace.join("\n"));
    let (mut w, a, b) = two_clients_cfg(34, NatKind::FullCone, NatKind::Symmetric, false);
    assert_eq!(ping_count(&mut w, a, b, 14), 3, "{}", w.trace.join("\n"));
    assert_eq!(w.client(a).stats().endpoints_learnt, 1);
    assert_eq!(w.client(b).stats().endpoints_learnt, 0);
}

#[test]
fn sim_rfc6081_symmetric_with_address_restricted_both_ways() {
    let (mut w, a, b) = two_clients_cfg(34, NatKind::AddressRestricted, NatKind::Symmetric, true);
    ping_both_ways(&mut w, a, b);
}

#[test]
fn sim_rfc6081_sequential_with_port_restricted_both_ways() {
    let (mut w, a, b) = two_clients_cfg(35, NatKind::PortRestricted, NatKind::Sequential, true);
    // Let the NAT tests finish: the prediction comes from them.
    w.qualify(a, SECS(10));
    let ok = w.run_until_cond(SECS(30), |w| {
        w.client(b).nat() == NatBehaviour::SequentialSymmetric
    });
    assert!(ok, "{:?}", w.client(b).nat());
    ping_both_ways(&mut w, b, a);
}

#[test]
fn sim_rfc6081_random_symmetric_with_masquerade_is_impossible() {
    // Documented limitation: the symmetric side's port towards the peer is
    // random and the masquerade side only lets in the exact endpoint it
    // sent to; nobody can learn that port in advance. Only a relay or a
    // NAT configured otherwise helps.
    let (mut w, a, b) = two_clients_cfg(36, NatKind::Masquerade, NatKind::Symmetric, true);
    assert_eq!(ping_count(&mut w, a, b, 14), 0);
    let (mut w, a, b) = two_clients_cfg(37, NatKind::Masquerade, NatKind::Symmetric, true);
    assert_eq!(ping_count(&mut w, b, a, 15), 0);
}

#[test]
fn sim_rfc6081_peer_without_extensions_still_works() {
    // One side without RFC 6081 (as the C miredo): port-restricted NATs.
    let (mut w, a, b) = ours_and_plain(38, NatKind::PortRestricted, NatKind::PortRestricted, false);
    ping_both_ways(&mut w, a, b);
}

#[test]
fn sim_rfc6081_hairpinning_alternate_address_without_discovery() {
    // Two clients behind one NAT that does not hairpin, local discovery off:
    // the alternate address in the bubbles finds the way over the LAN.
    let mut w = World::new(39);
    w.add_server(ip(SERVER));
    let (_, lan) = w.add_nat(NatKind::PortRestricted, ip(NAT_WAN), false);
    let a = w.add_client(ip("192.168.1.2"), 40000, Some(lan), ip(SERVER));
    let b = w.add_client(ip("192.168.1.3"), 40001, Some(lan), ip(SERVER));
    ping_both_ways(&mut w, a, b);
    let over_lan = w.sent[&a]
        .iter()
        .filter(|(to, _)| *to == SocketAddrV4::new(ip("192.168.1.3"), 40001))
        .count();
    assert!(over_lan >= 3, "{over_lan}");
}

#[test]
fn sim_rfc6081_two_clients_one_nat_with_hairpinning() {
    let mut w = World::new(40);
    w.add_server(ip(SERVER));
    let (_, lan) = w.add_nat(NatKind::PortRestricted, ip(NAT_WAN), true);
    let a = w.add_client(ip("192.168.1.2"), 40000, Some(lan), ip(SERVER));
    let b = w.add_client(ip("192.168.1.3"), 40001, Some(lan), ip(SERVER));
    ping_both_ways(&mut w, a, b);
}

#[test]
fn sim_rfc6081_server_load_reduction() {
    // A one-way flow (the receiver's host never answers) keeps going past
    // the 30 s validity: the trust is renewed with a direct solicitation,
    // not with bubbles through the server.
    let run = |ext: bool| {
        let (mut w, a, b) =
            two_clients_cfg(41, NatKind::PortRestricted, NatKind::PortRestricted, ext);
        w.nodes[b].answers_pings = false;
        let aa = w.qualify(a, SECS(10));
        let ba = w.qualify(b, SECS(10));
        w.run_for(SECS(60)); // NAT tests done
        let to_server = |w: &World| {
            w.sent[&a]
                .iter()
                .filter(|(to, p)| {
                    *to == SocketAddrV4::new(ip(SERVER), TEREDO_PORT) && p.len() >= 40 && p[6] == 59
                })
                .count()
        };
        for seq in 0..3 {
            w.client_send(a, echo_request(aa, ba, 16, seq, 8));
            w.run_for(SECS(1));
        }
        let before = to_server(&w);
        for seq in 3..20 {
            w.client_send(a, echo_request(aa, ba, 16, seq, 8));
            w.run_for(SECS(5));
        }
        (to_server(&w) - before, w.client_echo_requests(b, 16).len())
    };
    let (indirect_ext, got_ext) = run(true);
    let (indirect_plain, got_plain) = run(false);
    assert_eq!(got_ext, 20);
    assert_eq!(got_plain, 20);
    assert_eq!(indirect_ext, 0, "RFC 6081: no bubble through the server");
    assert!(indirect_plain >= 1, "RFC 4380: bubbles through the server");
}

#[test]
fn sim_relay_learns_a_symmetric_clients_port_from_its_bubble() {
    // A client behind a random symmetric NAT: its answer to the relay's
    // bubble comes from another port than its address says; addressed to
    // the relay's keyed link-local source, it proves itself.
    let mut l = lab(42, NatKind::Symmetric);
    let addr = l.w.qualify(l.client, SECS(10));
    l.w.native_send(echo_request(ip6(NATIVE), addr, 43, 1, 8));
    l.w.run_for(SECS(5));
    assert_eq!(
        l.w.native_echo_replies(l.native, 43),
        vec![1],
        "{}",
        l.w.trace.join("\n")
    );
    assert!(l.w.relay_engine(l.relay).stats().endpoints_learnt >= 1);
}

#[test]
fn sim_relay_limits_new_peers_per_native_source() {
    // One native source (a /64) sends to 10,000 distinct Teredo addresses in
    // one second: it gets at most its burst and rate of new peer entries,
    // and another source still gets its own.
    let mut l = lab(43, NatKind::PortRestricted);
    let addr = l.w.qualify(l.client, SECS(10));
    let attacker = ip6("2001:db8:66::1");
    for i in 0..10_000u32 {
        let dst = TeredoAddr {
            prefix: 0x2001_0000,
            server: ip(SERVER),
            flags: 0,
            mapped_port: 1000 + (i % 60000) as u16,
            mapped_addr: std::net::Ipv4Addr::from(0xc612_0a00 + i),
        }
        .to_ipv6();
        l.w.native_send(echo_request(attacker, dst, 44, 0, 8));
    }
    l.w.run_for(SECS(1));
    let relay = l.w.relay_engine(l.relay);
    let held = relay.peers().count(Class::Held);
    let admitted = relay.peers().len() - held;
    // Default: 100 new peers per second per source, burst 200: the rest
    // is held, without bubbles.
    assert!(admitted <= 200 + 100 + 1, "{admitted}");
    assert!(relay.stats().peers_held >= 9_000, "{:?}", relay.stats());
    assert!(held >= 9_000, "{held}");
    assert!(
        relay.stats().bubbles_sent <= 2 * 301,
        "{}",
        relay.stats().bubbles_sent
    );
    // The legitimate native host still reaches the client.
    l.w.native_send(echo_request(ip6(NATIVE), addr, 45, 1, 8));
    l.w.run_for(SECS(5));
    assert_eq!(l.w.native_echo_replies(l.native, 45), vec![1]);
}

#[test]
fn sim_client_soliciting_the_servers_secondary_address() {
    // ServerAddress names the server's secondary address (or the two are
    // swapped): the RA's prefix names the primary, and the address must
    // carry what the server advertises.
    let mut w = World::new(44);
    w.add_server(ip(SERVER));
    let (_, lan) = w.add_nat(NatKind::PortRestricted, ip(NAT_WAN), false);
    let mut cfg = ClientConfig::new(ip("198.18.1.2"));
    cfg.server2 = ip(SERVER);
    let c = w.add_client_with(ip("192.168.1.2"), 40000, Some(lan), cfg);
    let addr = w.qualify(c, SECS(10));
    assert_eq!(TeredoAddr::parse(&addr).unwrap().server, ip(SERVER));
}

/// A relay farm's failover (issue 17): the client's relay for a native
/// host dies while traffic flows both ways, and the native host's packets
/// now come through another relay of the farm. The client tests that relay
/// through its server; when the first test is lost (here the server is
/// unreachable for a moment), it tests again 2 s later although it keeps
/// sending all along (to the dead relay, as RFC 4380 5.2.9 allows while
/// the test runs), and its packets then take the live relay.
#[test]
fn sim_client_retests_when_its_relay_dies_under_steady_traffic() {
    let mut w = World::new(17);
    let server = w.add_server(ip(SERVER));
    let a = w.add_relay(ip(RELAY), None);
    let b = w.add_relay(ip("198.18.2.2"), None);
    let native = w.add_native(ip6(NATIVE));
    let (_, lan) = w.add_nat(NatKind::Masquerade, ip(NAT_WAN), false);
    let client = w.add_client(ip("192.168.1.2"), 40000, Some(lan), ip(SERVER));
    let addr = w.qualify(client, SECS(10));
    let nat6 = ip6(NATIVE);
    let mut seq = 0u16;
    let mut ping_for = |w: &mut World, d: Duration| {
        let end = w.elapsed() + d;
        while w.elapsed() < end {
            seq += 1;
            w.native_send(echo_request(nat6, addr, 7, seq, 32));
            w.run_for(Duration::from_millis(20));
        }
        seq
    };
    // Both relays learn the client: first B serves the native host, then A.
    w.relay = Some(b);
    ping_for(&mut w, SECS(3));
    w.relay = Some(a);
    let last = ping_for(&mut w, SECS(3));
    let replies = w.native_echo_replies(native, 7);
    assert!(
        replies.contains(&(last - 10)),
        "{replies:?}\n{}",
        w.trace.join("\n")
    );
    // A dies; the core sends to B, which trusts the client already; the
    // client's first test of B is lost with the server gone for 200 ms.
    w.nodes[a].up = false;
    w.nodes[server].up = false;
    w.relay = Some(b);
    let first = last + 1;
    ping_for(&mut w, Duration::from_millis(200));
    w.nodes[server].up = true;
    let last = ping_for(&mut w, SECS(5));
    let replies = w.native_echo_replies(native, 7);
    let after: Vec<u16> = replies.iter().copied().filter(|&s| s >= first).collect();
    // Within 2 s of the lost test, and a round trip, every echo comes back.
    let recovered = last - 100;
    assert!(
        (recovered..=last.saturating_sub(5)).all(|s| after.contains(&s)),
        "echoes after the failover: {after:?}"
    );
    assert!(w.client(client).stats().ping_tests_ok >= 2);
}
