//! The wire parsers.

use libteredo::wire::icmpv6::{self, Icmpv6Repr};
use libteredo::wire::ipv6::Ipv6Packet;
use libteredo::wire::teredo::TeredoPacket;
use libteredo::wire::trailer::Trailer;
use std::net::Ipv6Addr;

/// Reads every field of a validated IPv6 packet, walks its extension
/// headers, and parses its ICMPv6 message and trailer.
fn check_ipv6(ip: &Ipv6Packet<&[u8]>) {
    let _ = (
        ip.traffic_class(),
        ip.ecn(),
        ip.flow_label(),
        ip.next_header(),
        ip.hop_limit(),
        ip.is_bubble(),
    );
    let (src, dst) = (ip.src_addr(), ip.dst_addr());
    let payload = ip.payload();
    assert_eq!(payload.len(), usize::from(ip.payload_len()));
    assert_eq!(ip.packet().len(), 40 + payload.len());
    if let Ok(u) = ip.upper_layer() {
        assert!(u.offset <= payload.len(), "upper layer past the payload");
        if u.protocol == 58 && !u.fragment {
            if let Some(msg) = payload.get(u.offset..) {
                let _ = Icmpv6Repr::parse_unchecked(msg);
            }
        }
    }
    if ip.next_header() == 58 {
        if let Ok(repr) = Icmpv6Repr::parse(&src, &dst, payload) {
            check_icmp_roundtrip(&src, &dst, &repr);
        }
    }
    check_trailer(ip.trailer());
    if let Some(e) = icmpv6::build_unreachable(Ipv6Addr::LOCALHOST, 3, ip.packet()) {
        assert!(e.len() <= 1280, "ICMPv6 error of {} bytes", e.len());
    }
}

/// Echo messages and unreachables keep every byte: emit(parse(x)) parses
/// back to the same meaning.
fn check_icmp_roundtrip(src: &Ipv6Addr, dst: &Ipv6Addr, repr: &Icmpv6Repr) {
    let _ = repr.is_error();
    if !matches!(
        repr,
        Icmpv6Repr::EchoRequest { .. } | Icmpv6Repr::EchoReply { .. } | Icmpv6Repr::RouterSolicit
    ) {
        return;
    }
    let mut buf = vec![0u8; repr.buffer_len()];
    repr.emit(src, dst, &mut buf)
        .expect("emit into buffer_len bytes");
    let again = Icmpv6Repr::parse(src, dst, &buf).expect("an emitted message parses");
    assert_eq!(&again, repr);
}

/// A trailer parses to what it emits.
fn check_trailer(b: &[u8]) {
    let t = Trailer::parse(b);
    let _ = t.alternates().count();
    let mut again = Vec::new();
    t.emit(&mut again);
    assert_eq!(Trailer::parse(&again), t, "trailer round trip");
}

/// The whole datagram, then each parser on the raw bytes.
pub fn check_packet(data: &[u8]) {
    if let Ok(pkt) = TeredoPacket::parse(data) {
        if let Some(a) = pkt.auth {
            let mut again = Vec::new();
            a.emit(&mut again);
            assert_eq!(again.len(), a.len());
            assert_eq!(data.get(..a.len()), Some(&again[..]), "auth round trip");
        }
        if let Some(o) = pkt.origin {
            let _ = o.to_bytes();
        }
        assert!(pkt.ipv6_offset <= data.len());
        check_ipv6(&pkt.ipv6);
    }
    if let Ok(ip) = Ipv6Packet::new_checked(data) {
        check_ipv6(&ip);
    }
    let _ = Icmpv6Repr::parse_unchecked(data);
    check_trailer(data);
}
