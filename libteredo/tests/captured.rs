//! Packets captured from the C miredo 1.2.6 (see `vectors/README.md`):
//! each one parses, its fields mean what the capture says they mean, and our
//! builders produce the very same bytes from the same inputs.

use libteredo::addr::{
    self, server_link_local, server_prefix, TeredoAddr, ALL_ROUTERS, LINK_LOCAL_RESTRICTED,
    TEREDO_PORT, TEREDO_PREFIX,
};
use libteredo::wire::icmpv6::{self, Icmpv6Repr, PrefixInfo, RouterAdvert};
use libteredo::wire::ipv6::{build_bubble, next_header, Ipv6Packet};
use libteredo::wire::teredo::{Auth, Origin, TeredoPacket, AUTH_MIN_LEN, ORIGIN_LEN};
use libteredo::wire::Error;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV4};

/// One captured UDP payload and the IPv4 endpoints it travelled between.
struct Vector {
    name: &'static str,
    from: SocketAddrV4,
    to: SocketAddrV4,
    bytes: Vec<u8>,
}

/// Reads a vector file: a `# kind: who -> who, A:p -> B:q (...)` header line,
/// then hex.
fn vector(name: &'static str, text: &str) -> Vector {
    let mut lines = text.lines();
    let header = lines.next().expect("header line");
    assert!(header.starts_with("# "), "{name}: no header");
    let endpoints = header
        .split_once(", ")
        .and_then(|(_, rest)| rest.split_once(" ("))
        .map(|(e, _)| e)
        .expect("endpoints in header");
    let (from, to) = endpoints.split_once(" -> ").expect("A -> B");
    let hex: String = lines.flat_map(|l| l.split_whitespace()).collect();
    assert_eq!(hex.len() % 2, 0, "{name}: odd hex length");
    let bytes = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex"))
        .collect();
    Vector {
        name,
        from: from.parse().expect("source endpoint"),
        to: to.parse().expect("destination endpoint"),
        bytes,
    }
}

macro_rules! v {
    ($name:literal) => {
        vector($name, include_str!(concat!("vectors/", $name, ".hex")))
    };
}

fn all() -> Vec<Vector> {
    vec![
        v!("rs"),
        v!("ra"),
        v!("bubble-indirect-client-to-server"),
        v!("bubble-indirect-relay-to-server"),
        v!("bubble-forwarded-origin"),
        v!("bubble-direct-client-to-relay"),
        v!("bubble-direct-client-to-peer"),
        v!("connectivity-test-echo-request-client-to-server"),
        v!("connectivity-test-echo-reply-relay-to-client"),
        v!("echo-request-relay-to-client"),
        v!("echo-reply-client-to-relay"),
        v!("echo-request-client-to-relay"),
        v!("echo-reply-relay-to-client"),
    ]
}

const SERVER: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 1);
const RELAY: Ipv4Addr = Ipv4Addr::new(198, 18, 2, 1);
const NAT_WAN: Ipv4Addr = Ipv4Addr::new(198, 18, 3, 1);
const V6HOST: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 9, 0, 0, 0, 0, 1);

/// The client's public (mapped) endpoint, as the server saw the RS.
fn mapped() -> SocketAddrV4 {
    let rs = v!("rs");
    assert_eq!(*rs.from.ip(), NAT_WAN);
    assert_eq!(rs.to, SocketAddrV4::new(SERVER, TEREDO_PORT));
    rs.from
}

/// The relay's endpoint (its Teredo socket is bound to a random port).
fn relay() -> SocketAddrV4 {
    let b = v!("bubble-indirect-relay-to-server");
    assert_eq!(*b.from.ip(), RELAY);
    b.from
}

/// The client's Teredo address, as it sends it in its direct bubble.
fn client_addr() -> Ipv6Addr {
    let v = v!("bubble-direct-client-to-relay");
    let p = TeredoPacket::parse(&v.bytes).unwrap();
    p.ipv6.src_addr()
}

fn icmp<'a>(p: &'a TeredoPacket<'a>) -> Icmpv6Repr<'a> {
    assert_eq!(p.ipv6.next_header(), next_header::ICMPV6);
    Icmpv6Repr::parse(&p.ipv6.src_addr(), &p.ipv6.dst_addr(), p.ipv6.payload())
        .expect("valid ICMPv6 with a correct checksum")
}

#[test]
fn every_vector_parses_and_checksums_verify() {
    for v in all() {
        let p = TeredoPacket::parse(&v.bytes).unwrap_or_else(|e| panic!("{}: {e}", v.name));
        assert!(p.ipv6.trailer().is_empty(), "{}: trailer", v.name);
        assert_eq!(
            p.ipv6_offset + p.ipv6.packet().len(),
            v.bytes.len(),
            "{}",
            v.name
        );
        let up = p.ipv6.upper_layer().unwrap();
        assert!(!up.routing_segments_left && !up.fragment, "{}", v.name);
        if p.ipv6.next_header() == next_header::ICMPV6 {
            icmp(&p);
        } else {
            assert!(p.ipv6.is_bubble(), "{}: neither ICMPv6 nor bubble", v.name);
        }
        // No IPv6 packet of the C tool carries an encapsulation header it
        // should not: authentication only on RS/RA, origin only from the
        // server.
        if p.auth.is_some() {
            assert!(v.name == "rs" || v.name == "ra", "{}", v.name);
        }
        if p.origin.is_some() {
            assert_eq!(v.from, SocketAddrV4::new(SERVER, TEREDO_PORT), "{}", v.name);
        }
    }
}

#[test]
fn router_solicitation() {
    let v = v!("rs");
    let p = TeredoPacket::parse(&v.bytes).unwrap();
    let auth = p.auth.expect("RS carries an authentication header");
    assert_eq!(auth.client_id, b"");
    assert_eq!(auth.auth_value, b"");
    assert_eq!(auth.confirmation, 0);
    assert_eq!(p.origin, None);
    assert_eq!(p.ipv6_offset, AUTH_MIN_LEN);
    // RFC 5991: the C client never sets the cone bit, so its RS comes from
    // fe80::ffff:ffff:ffff, to all-routers, hop limit 255 (RFC 4861 6.1.1).
    assert_eq!(p.ipv6.src_addr(), LINK_LOCAL_RESTRICTED);
    assert_eq!(p.ipv6.dst_addr(), ALL_ROUTERS);
    assert_eq!(p.ipv6.hop_limit(), 255);
    assert_eq!(p.ipv6.traffic_class(), 0);
    assert_eq!(p.ipv6.flow_label(), 0);
    assert_eq!(icmp(&p), Icmpv6Repr::RouterSolicit);

    let mut rebuilt = Vec::new();
    Auth {
        client_id: b"",
        auth_value: b"",
        nonce: auth.nonce,
        confirmation: 0,
    }
    .emit(&mut rebuilt);
    rebuilt.extend(icmpv6::build_packet(
        LINK_LOCAL_RESTRICTED,
        ALL_ROUTERS,
        255,
        &Icmpv6Repr::RouterSolicit,
    ));
    assert_eq!(rebuilt, v.bytes);
}

/// The RA the C miredo-server sends (values read from the capture).
fn expected_ra() -> RouterAdvert {
    let mut prefix = [0u8; 16];
    prefix[..8].copy_from_slice(&server_prefix(TEREDO_PREFIX, SERVER));
    RouterAdvert {
        cur_hop_limit: 0,
        flags: 0,
        router_lifetime: 0,
        reachable_time: 0,
        retrans_timer: 2000,
        prefix: Some(PrefixInfo {
            prefix_len: 64,
            // Autonomous (A) flag only.
            flags: 0x40,
            valid_lifetime: u32::MAX,
            preferred_lifetime: u32::MAX,
            prefix: Ipv6Addr::from(prefix),
        }),
        prefix_count: 1,
        mtu: Some(1280),
    }
}

#[test]
fn router_advertisement() {
    let rs = v!("rs");
    let rs_nonce = TeredoPacket::parse(&rs.bytes).unwrap().auth.unwrap().nonce;
    let v = v!("ra");
    assert_eq!(v.from, SocketAddrV4::new(SERVER, TEREDO_PORT));
    assert_eq!(v.to, mapped());
    let p = TeredoPacket::parse(&v.bytes).unwrap();
    let auth = p.auth.expect("RA carries the authentication header");
    // RFC 4380 5.2.1: the RA echoes the RS nonce.
    assert_eq!(auth.nonce, rs_nonce);
    assert_eq!(auth.client_id, b"");
    assert_eq!(auth.auth_value, b"");
    assert_eq!(auth.confirmation, 0);
    // RFC 4380 5.3.2: the origin indication is where the RS came from: the
    // NAT's WAN address and mapped port.
    assert_eq!(p.origin, Some(Origin(mapped())));
    assert_eq!(p.ipv6_offset, AUTH_MIN_LEN + ORIGIN_LEN);
    assert_eq!(p.ipv6.src_addr(), server_link_local(SERVER));
    assert_eq!(
        p.ipv6.src_addr(),
        "fe80::8000:f227:39ed:fefe".parse::<Ipv6Addr>().unwrap()
    );
    assert_eq!(p.ipv6.dst_addr(), LINK_LOCAL_RESTRICTED);
    assert_eq!(p.ipv6.hop_limit(), 255);
    let Icmpv6Repr::RouterAdvert(ra) = icmp(&p) else {
        panic!("not an RA");
    };
    assert_eq!(ra.prefix_count, 1, "exactly one prefix (RFC 4380 5.2.1)");
    let prefix = ra.prefix.unwrap();
    assert_eq!(
        prefix.prefix,
        "2001:0:c612:101::".parse::<Ipv6Addr>().unwrap()
    );
    assert_eq!(prefix.prefix_len, 64);
    assert_eq!(ra.mtu, Some(1280));
    assert_eq!(ra, expected_ra());

    let mut rebuilt = Vec::new();
    Auth {
        client_id: b"",
        auth_value: b"",
        nonce: rs_nonce,
        confirmation: 0,
    }
    .emit(&mut rebuilt);
    Origin(mapped()).emit(&mut rebuilt);
    rebuilt.extend(icmpv6::build_packet(
        server_link_local(SERVER),
        LINK_LOCAL_RESTRICTED,
        255,
        &Icmpv6Repr::RouterAdvert(expected_ra()),
    ));
    assert_eq!(rebuilt, v.bytes);
}

#[test]
fn client_address_from_the_capture() {
    let a = client_addr();
    let t = TeredoAddr::parse(&a).expect("a Teredo address");
    assert_eq!(t.server, SERVER);
    assert_eq!(t.mapped(), mapped());
    // RFC 5991 flags: no cone bit, R, U, G zero.
    assert!(!t.is_cone());
    assert!(t.flags_valid_rfc5991());
    assert!(t.is_valid_peer());
    assert_eq!(t.to_ipv6(), a);
    assert_eq!(&a.octets()[..8], &server_prefix(TEREDO_PREFIX, SERVER));
}

/// Checks that a vector is exactly a bubble from `src` to `dst`, after an
/// optional origin indication, as our builders make it.
fn check_bubble(v: &Vector, origin: Option<Origin>) -> (Ipv6Addr, Ipv6Addr) {
    let p = TeredoPacket::parse(&v.bytes).unwrap();
    assert!(p.ipv6.is_bubble(), "{}", v.name);
    assert_eq!(p.auth, None, "{}", v.name);
    assert_eq!(p.origin, origin, "{}", v.name);
    let (src, dst) = (p.ipv6.src_addr(), p.ipv6.dst_addr());
    let mut rebuilt = Vec::new();
    if let Some(o) = origin {
        o.emit(&mut rebuilt);
    }
    rebuilt.extend_from_slice(&build_bubble(src, dst));
    assert_eq!(rebuilt, v.bytes, "{}", v.name);
    (src, dst)
}

#[test]
fn indirect_bubbles() {
    // The relay's bubble to the server, for the client (RFC 4380 5.4.2).
    let v = v!("bubble-indirect-relay-to-server");
    assert_eq!(v.to, SocketAddrV4::new(SERVER, TEREDO_PORT));
    let (src, dst) = check_bubble(&v, None);
    assert_eq!(dst, client_addr());
    // The C relay sends it from a link-local address, not a Teredo one.
    assert!(addr::is_link_local_v6(&src));

    // The client's bubble to the server, for a Teredo peer it wants to
    // reach (RFC 4380 5.2.4, 5.2.6).
    let v = v!("bubble-indirect-client-to-server");
    assert_eq!(v.from, mapped());
    assert_eq!(v.to, SocketAddrV4::new(SERVER, TEREDO_PORT));
    let (src, dst) = check_bubble(&v, None);
    let peer = TeredoAddr::parse(&dst).unwrap();
    assert_eq!(peer.mapped(), SocketAddrV4::new(RELAY, 3545));
    assert!(addr::is_link_local_v6(&src));
}

#[test]
fn forwarded_bubble_carries_origin() {
    // RFC 4380 5.3.1: the server forwards the relay's bubble to the client
    // it serves with an origin indication of the relay's endpoint.
    let v = v!("bubble-forwarded-origin");
    assert_eq!(v.from, SocketAddrV4::new(SERVER, TEREDO_PORT));
    assert_eq!(v.to, mapped());
    let relay_bubble = v!("bubble-indirect-relay-to-server");
    let (src, dst) = check_bubble(&v, Some(Origin(relay())));
    assert_eq!(dst, client_addr());
    // Same inner packet as the one the relay sent.
    assert_eq!(&v.bytes[ORIGIN_LEN..], &relay_bubble.bytes[..]);
    let rb = TeredoPacket::parse(&relay_bubble.bytes).unwrap();
    assert_eq!(src, rb.ipv6.src_addr());
    // The origin bytes themselves.
    let o: [u8; ORIGIN_LEN] = v.bytes[..ORIGIN_LEN].try_into().unwrap();
    assert_eq!(Origin::from_bytes(&o), Some(Origin(relay())));
    assert_eq!(Origin(relay()).to_bytes(), o);
}

#[test]
fn direct_bubbles() {
    // The client answers the forwarded bubble straight to the relay's
    // endpoint found in the origin indication.
    let v = v!("bubble-direct-client-to-relay");
    assert_eq!(v.from, mapped());
    assert_eq!(v.to, relay());
    let (src, dst) = check_bubble(&v, None);
    assert_eq!(src, client_addr());
    let fwd = v!("bubble-forwarded-origin");
    let fwd = TeredoPacket::parse(&fwd.bytes).unwrap();
    assert_eq!(dst, fwd.ipv6.src_addr());

    // The client's bubble straight to a Teredo peer's mapped endpoint.
    let v = v!("bubble-direct-client-to-peer");
    assert_eq!(v.from, mapped());
    assert_eq!(v.to, SocketAddrV4::new(RELAY, 3545));
    let (_, dst) = check_bubble(&v, None);
    assert_eq!(TeredoAddr::parse(&dst).unwrap().mapped(), v.to);
    // Same packet as the indirect one sent through the server.
    assert_eq!(v.bytes, v!("bubble-indirect-client-to-server").bytes);
}

/// Rebuilds an encapsulated echo with our builder and the header fields
/// the sender chose (hop limit, traffic class, flow label).
fn check_echo(v: &Vector) -> (Ipv6Addr, Ipv6Addr, u16, u16, Vec<u8>) {
    let p = TeredoPacket::parse(&v.bytes).unwrap();
    assert_eq!(p.auth, None, "{}", v.name);
    assert_eq!(p.origin, None, "{}", v.name);
    let repr = icmp(&p);
    let (ident, seq, data) = match repr {
        Icmpv6Repr::EchoRequest { ident, seq, data }
        | Icmpv6Repr::EchoReply { ident, seq, data } => (ident, seq, data),
        other => panic!("{}: not an echo: {other:?}", v.name),
    };
    let mut rebuilt = icmpv6::build_packet(
        p.ipv6.src_addr(),
        p.ipv6.dst_addr(),
        p.ipv6.hop_limit(),
        &repr,
    );
    let mut ip = Ipv6Packet::new_checked(&mut rebuilt[..]).unwrap();
    ip.set_traffic_class(p.ipv6.traffic_class());
    ip.set_flow_label(p.ipv6.flow_label());
    assert_eq!(rebuilt, v.bytes, "{}", v.name);
    (
        p.ipv6.src_addr(),
        p.ipv6.dst_addr(),
        ident,
        seq,
        data.to_vec(),
    )
}

#[test]
fn echo_data_packets_both_ways() {
    let me = client_addr();
    // wv6h pings the client: request relay -> client, reply client -> relay.
    let req = v!("echo-request-relay-to-client");
    let rep = v!("echo-reply-client-to-relay");
    // wv6h's pings in the opposite direction.
    let req2 = v!("echo-request-client-to-relay");
    let rep2 = v!("echo-reply-relay-to-client");
    for v in [&req, &rep2] {
        assert_eq!((v.from, v.to), (relay(), mapped()), "{}", v.name);
    }
    for v in [&rep, &req2] {
        assert_eq!((v.from, v.to), (mapped(), relay()), "{}", v.name);
    }
    let (s, d, i, q, data) = check_echo(&req);
    assert_eq!((s, d), (V6HOST, me));
    assert_eq!(check_echo(&rep), (me, V6HOST, i, q, data));
    let (s, d, i, q, data) = check_echo(&req2);
    assert_eq!((s, d), (me, V6HOST));
    assert_eq!(check_echo(&rep2), (V6HOST, me, i, q, data));
}

#[test]
fn direct_connectivity_test() {
    // RFC 4380 5.2.9: the client sends an echo to the native host through
    // its server; the answer comes back through the relay, which the
    // client then uses for that host.
    let req = v!("connectivity-test-echo-request-client-to-server");
    assert_eq!(req.from, mapped());
    assert_eq!(req.to, SocketAddrV4::new(SERVER, TEREDO_PORT));
    let rep = v!("connectivity-test-echo-reply-relay-to-client");
    assert_eq!((rep.from, rep.to), (relay(), mapped()));
    let (s, d, i, q, data) = check_echo(&req);
    assert_eq!((s, d), (client_addr(), V6HOST));
    assert_eq!(check_echo(&rep), (V6HOST, client_addr(), i, q, data));
}

#[test]
fn flipped_bits_in_captured_icmpv6_are_caught() {
    for v in all() {
        let p = TeredoPacket::parse(&v.bytes).unwrap();
        if p.ipv6.next_header() != next_header::ICMPV6 {
            continue;
        }
        let (src, dst) = (p.ipv6.src_addr(), p.ipv6.dst_addr());
        let msg = p.ipv6.payload().to_vec();
        for bit in 0..msg.len() * 8 {
            let mut m = msg.clone();
            m[bit / 8] ^= 1 << (bit % 8);
            let r = Icmpv6Repr::parse(&src, &dst, &m);
            assert!(
                matches!(r, Err(Error::BadChecksum | Error::BadIcmp)),
                "{}: bit {bit} not caught: {r:?}",
                v.name
            );
        }
        // And in the pseudo-header's addresses.
        let mut s = src.octets();
        s[15] ^= 1;
        assert_eq!(
            Icmpv6Repr::parse(&Ipv6Addr::from(s), &dst, &msg),
            Err(Error::BadChecksum)
        );
    }
}

#[test]
fn truncations_of_captured_packets_never_panic_nor_pass() {
    for v in all() {
        for n in 0..v.bytes.len() {
            let cut = &v.bytes[..n];
            if let Ok(p) = TeredoPacket::parse(cut) {
                // Only a cut inside nothing: impossible, the IPv6 length
                // field covers the whole packet.
                panic!("{}: {n} bytes accepted: {p:?}", v.name);
            }
        }
    }
}
