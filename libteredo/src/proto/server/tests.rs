//! Unit tests of the server engine (RFC 4380 5.3), driven through its
//! public calls: packets the C miredo sent in the lab
//! (`libteredo/tests/vectors/`) go in, and what comes out must be what the
//! C miredo-server sent byte for byte; then the refusals of 5.3.1.

use super::*;
use crate::addr::{server_link_local, ALL_ROUTERS, LINK_LOCAL_CONE, LINK_LOCAL_RESTRICTED};
use crate::wire::ipv6::{build_bubble, Ipv6Repr};

/// The bytes of a vector file (hex after a `# ...` header line).
fn hex(text: &str) -> Vec<u8> {
    let digits: String = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .flat_map(|l| l.split_whitespace())
        .collect();
    (0..digits.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&digits[i..i + 2], 16).expect("hex"))
        .collect()
}

macro_rules! vector {
    ($name:literal) => {
        hex(include_str!(concat!(
            "../../../tests/vectors/",
            $name,
            ".hex"
        )))
    };
}

/// The lab's endpoints, as the vectors' headers give them: the server's
/// primary address, the client's mapped endpoint, the relay's.
const SERVER: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 1);
const CLIENT: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(198, 18, 3, 1), 44939);
const RELAY: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(198, 18, 2, 1), 59223);
const NATIVE: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 9, 0, 0, 0, 0, 1);

fn primary() -> SocketAddrV4 {
    SocketAddrV4::new(SERVER, TEREDO_PORT)
}

fn secondary() -> SocketAddrV4 {
    SocketAddrV4::new(Ipv4Addr::new(198, 18, 1, 2), TEREDO_PORT)
}

fn handle(s: &mut Server, from: SocketAddrV4, to: SocketAddrV4, bytes: &[u8]) -> Vec<Output> {
    let mut out = Vec::new();
    s.handle_udp(Instant::now(), from, to, bytes, &mut out);
    out
}

/// A router solicitation with `nonce`, from the link-local `src`.
fn rs(nonce: [u8; 8], src: Ipv6Addr) -> Vec<u8> {
    let mut v = Vec::new();
    Auth {
        client_id: &[],
        auth_value: &[],
        nonce,
        confirmation: 0,
    }
    .emit(&mut v);
    v.extend(icmpv6::build_packet(
        src,
        addr::ALL_ROUTERS,
        255,
        &Icmpv6Repr::RouterSolicit,
    ));
    v
}

/// The one datagram in `out`.
fn only_udp(out: &[Output]) -> &Transmit {
    match out {
        [Output::Udp(t)] => t,
        other => panic!("not one datagram: {other:?}"),
    }
}

#[test]
fn a_solicitation_is_answered_as_the_c_server_answers_it() {
    let mut s = Server::new(ServerConfig::new(SERVER));
    let out = handle(&mut s, CLIENT, primary(), &vector!("rs"));
    assert_eq!(
        out,
        [Output::Udp(Transmit {
            from: Some(primary()),
            to: CLIENT,
            payload: vector!("ra"),
            ecn: 0,
            ttl: None,
        })]
    );
    assert_eq!((s.counters.rs_received, s.counters.ra_sent), (1, 1));
    assert_eq!((s.stats.udp_rx_packets, s.stats.udp_tx_packets), (1, 1));
}

#[test]
fn the_advertisement_carries_the_nonce_the_origin_and_the_configured_prefix() {
    let mut cfg = ServerConfig::new(Ipv4Addr::new(65, 54, 227, 120));
    cfg.prefix = 0x3ffe_831f;
    cfg.mtu = 1400;
    let mut s = Server::new(cfg);
    let mapped = SocketAddrV4::new(Ipv4Addr::new(192, 0, 2, 45), 40000);
    let to = SocketAddrV4::new(Ipv4Addr::new(65, 54, 227, 120), TEREDO_PORT);
    let nonce = [1, 2, 3, 4, 5, 6, 7, 8];
    let out = handle(&mut s, mapped, to, &rs(nonce, LINK_LOCAL_RESTRICTED));
    let t = only_udp(&out);
    assert_eq!((t.from, t.to), (Some(to), mapped));
    let p = TeredoPacket::parse(&t.payload).expect("a Teredo packet");
    // RFC 4380 5.3.2: the same nonce, confirmation 0; the origin
    // indication is where the solicitation came from.
    let auth = p.auth.expect("the authentication header");
    assert_eq!((auth.nonce, auth.confirmation), (nonce, 0));
    assert_eq!(p.origin, Some(Origin(mapped)));
    let ip = &p.ipv6;
    assert_eq!(ip.src_addr(), server_link_local(*to.ip()));
    assert_eq!(ip.dst_addr(), LINK_LOCAL_RESTRICTED);
    let Ok(Icmpv6Repr::RouterAdvert(ra)) =
        Icmpv6Repr::parse(&ip.src_addr(), &ip.dst_addr(), ip.payload())
    else {
        panic!("not a router advertisement");
    };
    // One /64: the Teredo prefix, then the server's primary address.
    assert_eq!(ra.prefix_count, 1);
    let prefix = ra.prefix.expect("a prefix");
    assert_eq!(prefix.prefix_len, 64);
    assert_eq!(
        prefix.prefix,
        "3ffe:831f:4136:e378::".parse::<Ipv6Addr>().unwrap()
    );
    assert_eq!(ra.mtu, Some(1400));
}

#[test]
fn a_cone_solicitation_is_answered_from_the_other_address() {
    let mut s = Server::new(ServerConfig::new(SERVER));
    let nonce = [9; 8];
    for (to, from) in [(primary(), secondary()), (secondary(), primary())] {
        let out = handle(&mut s, CLIENT, to, &rs(nonce, LINK_LOCAL_CONE));
        let t = only_udp(&out);
        assert_eq!(t.from, Some(from));
        let p = TeredoPacket::parse(&t.payload).unwrap();
        assert_eq!(p.ipv6.dst_addr(), LINK_LOCAL_CONE);
    }
    // Without the cone bit, from the address it came to.
    let out = handle(
        &mut s,
        CLIENT,
        secondary(),
        &rs(nonce, LINK_LOCAL_RESTRICTED),
    );
    assert_eq!(only_udp(&out).from, Some(secondary()));
}

#[test]
fn nothing_from_a_non_global_address_is_answered() {
    let mut s = Server::new(ServerConfig::new(SERVER));
    for from in ["10.1.2.3:3544", "192.168.1.5:40000", "127.0.0.1:3544"] {
        let out = handle(&mut s, from.parse().unwrap(), primary(), &vector!("rs"));
        assert!(out.is_empty(), "{from}: {out:?}");
    }
    assert_eq!(s.stats.dropped(DropReason::NotGlobal), 3);
    assert_eq!(s.counters.rs_received, 0);
}

#[test]
fn a_datagram_with_an_origin_indication_or_malformed_is_refused() {
    let mut s = Server::new(ServerConfig::new(SERVER));
    // Origin indications come from servers only: a client's is a lie,
    // even on a solicitation that is answered without it.
    let nonce = [5; 8];
    assert_eq!(
        handle(&mut s, CLIENT, primary(), &rs(nonce, LINK_LOCAL_RESTRICTED)).len(),
        1
    );
    let mut lying = Vec::new();
    Auth {
        client_id: &[],
        auth_value: &[],
        nonce,
        confirmation: 0,
    }
    .emit(&mut lying);
    Origin(RELAY).emit(&mut lying);
    lying.extend(icmpv6::build_packet(
        LINK_LOCAL_RESTRICTED,
        ALL_ROUTERS,
        255,
        &Icmpv6Repr::RouterSolicit,
    ));
    assert!(TeredoPacket::parse(&lying).is_ok_and(|p| p.origin == Some(Origin(RELAY))));
    assert!(handle(&mut s, CLIENT, primary(), &lying).is_empty());
    let mut cut = vector!("rs");
    cut.pop();
    assert!(handle(&mut s, CLIENT, primary(), &cut).is_empty());
    assert_eq!(s.stats.dropped(DropReason::Malformed), 2);
    assert_eq!(s.counters.ra_sent, 1);
}

#[test]
fn only_router_solicitations_to_all_routers_are_answered() {
    let mut s = Server::new(ServerConfig::new(SERVER));
    let echo = icmpv6::build_packet(
        LINK_LOCAL_RESTRICTED,
        ALL_ROUTERS,
        255,
        &Icmpv6Repr::EchoRequest {
            ident: 1,
            seq: 1,
            data: b"hi",
        },
    );
    assert!(handle(&mut s, CLIENT, primary(), &echo).is_empty());
    assert_eq!(s.stats.dropped(DropReason::Unexpected), 1);
    assert_eq!(s.counters.rs_received, 0);
}

#[test]
fn a_relays_bubble_reaches_its_client_with_the_origin_as_the_c_server_sends_it() {
    let mut s = Server::new(ServerConfig::new(SERVER));
    let out = handle(
        &mut s,
        RELAY,
        primary(),
        &vector!("bubble-indirect-relay-to-server"),
    );
    let t = only_udp(&out);
    assert_eq!((t.from, t.to), (Some(primary()), CLIENT));
    assert_eq!(t.payload, vector!("bubble-forwarded-origin"));
    assert_eq!(s.counters.relayed_to_clients, 1);
}

#[test]
fn a_native_source_reaches_only_the_clients_of_this_server() {
    let mut s = Server::new(ServerConfig::new(SERVER));
    let other = TeredoAddr {
        prefix: TEREDO_PREFIX,
        server: Ipv4Addr::new(198, 18, 9, 9),
        flags: 0,
        mapped_port: CLIENT.port(),
        mapped_addr: *CLIENT.ip(),
    };
    let src = Ipv6Addr::new(0xfe80, 0, 0, 0, 0x24b0, 0x72f8, 0x9e6c, 0x6e5e);
    let bubble = build_bubble(src, other.to_ipv6());
    assert!(handle(&mut s, RELAY, primary(), &bubble).is_empty());
    assert_eq!(s.stats.dropped(DropReason::Spoofed), 1);
    assert_eq!(s.counters.relayed_to_clients, 0);
}

#[test]
fn a_connectivity_test_goes_to_native_ipv6_only_from_its_clients_endpoint() {
    let mut s = Server::new(ServerConfig::new(SERVER));
    let echo = vector!("connectivity-test-echo-request-client-to-server");
    // RFC 4380 5.3.1 (5): a Teredo source must come from its endpoint.
    let elsewhere = SocketAddrV4::new(*CLIENT.ip(), CLIENT.port() + 1);
    assert!(handle(&mut s, elsewhere, primary(), &echo).is_empty());
    assert_eq!(s.stats.dropped(DropReason::Spoofed), 1);
    let out = handle(&mut s, CLIENT, primary(), &echo);
    assert_eq!(out, [Output::Tun(echo)]);
    assert_eq!(s.counters.relayed_to_native, 1);
}

#[test]
fn bubbles_to_native_ipv6_and_other_payloads_are_not_relayed() {
    let mut s = Server::new(ServerConfig::new(SERVER));
    let me = TeredoAddr {
        prefix: TEREDO_PREFIX,
        server: SERVER,
        flags: 0,
        mapped_port: CLIENT.port(),
        mapped_addr: *CLIENT.ip(),
    }
    .to_ipv6();
    // A bubble never goes to native IPv6.
    assert!(handle(&mut s, CLIENT, primary(), &build_bubble(me, NATIVE)).is_empty());
    // Nor anything but bubbles and ICMPv6 (5.3.1 (2)): here UDP.
    let udp = Ipv6Repr {
        src: me,
        dst: NATIVE,
        next_header: 17,
        payload_len: 8,
        hop_limit: 64,
        traffic_class: 0,
    }
    .build(&[0x10, 0x00, 0x00, 0x35, 0x00, 0x08, 0x00, 0x00]);
    assert!(handle(&mut s, CLIENT, primary(), &udp).is_empty());
    assert_eq!(s.stats.dropped(DropReason::Unexpected), 2);
    assert_eq!(s.counters.relayed_to_native, 0);
}
