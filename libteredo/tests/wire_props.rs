//! Property tests of `libteredo::wire` and `libteredo::addr`: no input makes
//! a parser panic, and what a builder writes the parser reads back.

use libteredo::addr::TeredoAddr;
use libteredo::wire::icmpv6::{self, msg_type, Icmpv6Repr, PrefixInfo, RouterAdvert};
use libteredo::wire::ipv6::{self, next_header, Ipv6Packet, Ipv6Repr, HEADER_LEN};
use libteredo::wire::teredo::{Auth, Origin, TeredoPacket, ORIGIN_LEN};
use libteredo::wire::Error;
use proptest::prelude::*;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV4};

fn v6() -> impl Strategy<Value = Ipv6Addr> {
    any::<[u8; 16]>().prop_map(Ipv6Addr::from)
}

fn v4() -> impl Strategy<Value = Ipv4Addr> {
    any::<[u8; 4]>().prop_map(Ipv4Addr::from)
}

fn endpoint() -> impl Strategy<Value = SocketAddrV4> {
    (v4(), any::<u16>()).prop_map(|(a, p)| SocketAddrV4::new(a, p))
}

/// Reads everything a view offers; any panic fails the property.
fn touch_ipv6(p: &Ipv6Packet<&[u8]>) {
    let _ = (
        p.traffic_class(),
        p.ecn(),
        p.flow_label(),
        p.payload_len(),
        p.next_header(),
        p.hop_limit(),
        p.src_addr(),
        p.dst_addr(),
        p.is_bubble(),
    );
    assert_eq!(p.packet().len(), HEADER_LEN + p.payload().len());
    assert_eq!(p.payload().len(), usize::from(p.payload_len()));
    let _ = p.trailer();
    let _ = Ipv6Repr::parse(p);
    if let Ok(up) = p.upper_layer() {
        assert!(up.offset <= p.payload().len());
        assert!(!up.later_fragment || up.fragment);
    }
    let _ = Icmpv6Repr::parse(&p.src_addr(), &p.dst_addr(), p.payload());
    let _ = Icmpv6Repr::parse_unchecked(p.payload());
}

/// Bytes that look like an IPv6 packet more often than uniform noise does:
/// version 6, a payload length near the real one, a next header from the
/// extension-header chain, so the deep paths get exercised.
fn ipv6ish() -> impl Strategy<Value = Vec<u8>> {
    (
        proptest::collection::vec(any::<u8>(), 40..300),
        prop::sample::select(vec![0u8, 43, 44, 58, 59, 60, 6, 17]),
        any::<bool>(),
    )
        .prop_map(|(mut b, nh, exact)| {
            b[0] = 0x60 | (b[0] & 0x0f);
            if exact {
                let plen = (b.len() - HEADER_LEN) as u16;
                b[4..6].copy_from_slice(&plen.to_be_bytes());
            }
            b[6] = nh;
            b
        })
}

/// An ICMPv6 message body that is plausible: known type, code 0 often,
/// options with sensible lengths sometimes.
fn icmpish() -> impl Strategy<Value = Vec<u8>> {
    (
        prop::sample::select(vec![1u8, 2, 3, 4, 128, 129, 133, 134, 137, 200]),
        prop::sample::select(vec![0u8, 0, 0, 1, 255]),
        proptest::collection::vec(any::<u8>(), 0..120),
        proptest::collection::vec((prop::sample::select(vec![1u8, 3, 5, 9]), 0u8..6), 0..5),
    )
        .prop_map(|(t, code, mut body, opts)| {
            let mut m = vec![t, code, 0, 0];
            m.append(&mut body);
            if matches!(t, 133 | 134) {
                let fixed = if t == 133 { 8 } else { 16 };
                m.resize(fixed, 0);
                for (kind, len) in opts {
                    let start = m.len();
                    m.resize(start + usize::from(len) * 8 + 2, 0xa5);
                    m[start] = kind;
                    m[start + 1] = len;
                }
            }
            m
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn ipv6_never_panics(b in proptest::collection::vec(any::<u8>(), 0..200)) {
        if let Ok(p) = Ipv6Packet::new_checked(&b[..]) {
            touch_ipv6(&p);
        }
    }

    #[test]
    fn ipv6ish_never_panics(b in ipv6ish()) {
        if let Ok(p) = Ipv6Packet::new_checked(&b[..]) {
            touch_ipv6(&p);
        }
        let _ = icmpv6::build_unreachable(Ipv6Addr::LOCALHOST, 3, &b);
    }

    #[test]
    fn teredo_never_panics(b in proptest::collection::vec(any::<u8>(), 0..200)) {
        if let Ok(p) = TeredoPacket::parse(&b) {
            touch_ipv6(&p.ipv6);
            let hdr = p.auth.map_or(0, |a| a.len()) + p.origin.map_or(0, |_| ORIGIN_LEN);
            prop_assert_eq!(p.ipv6_offset, hdr);
        }
    }

    #[test]
    fn teredo_headers_then_noise_never_panic(
        auth in any::<bool>(),
        origin in any::<bool>(),
        idl in 0u8..4,
        aul in 0u8..4,
        rest in prop_oneof![ipv6ish(), proptest::collection::vec(any::<u8>(), 0..60)],
    ) {
        let mut b = Vec::new();
        if auth {
            b.extend_from_slice(&[0, 1, idl, aul]);
            b.extend(std::iter::repeat_n(7u8, usize::from(idl) + usize::from(aul) + 9));
        }
        if origin {
            b.extend_from_slice(&[0, 0, 1, 2, 3, 4, 5, 6]);
        }
        b.extend_from_slice(&rest);
        let rest_is_ipv6 = rest.first().is_some_and(|v| v >> 4 == 6);
        for n in 0..=b.len() {
            if let Ok(p) = TeredoPacket::parse(&b[..n]) {
                touch_ipv6(&p.ipv6);
                if rest_is_ipv6 {
                    prop_assert_eq!(p.auth.is_some(), auth);
                    prop_assert_eq!(p.origin.is_some(), origin);
                }
            }
        }
    }

    #[test]
    fn icmpv6_never_panics(
        src in v6(),
        dst in v6(),
        m in prop_oneof![icmpish(), proptest::collection::vec(any::<u8>(), 0..100)],
    ) {
        let _ = Icmpv6Repr::parse(&src, &dst, &m);
        if let Ok(r) = Icmpv6Repr::parse_unchecked(&m) {
            let _ = (r.is_error(), r.buffer_len());
            // Whatever parses can be written again.
            let mut out = vec![0u8; r.buffer_len()];
            prop_assert!(r.emit(&src, &dst, &mut out).is_ok());
            // And the copy parses, checksum included.
            let again = Icmpv6Repr::parse(&src, &dst, &out);
            prop_assert!(again.is_ok(), "{:?} -> {:?}", r, again);
        }
    }

    #[test]
    fn build_unreachable_never_panics(
        src in v6(),
        code in any::<u8>(),
        b in prop_oneof![ipv6ish(), proptest::collection::vec(any::<u8>(), 0..200)],
    ) {
        if let Some(e) = icmpv6::build_unreachable(src, code, &b) {
            prop_assert!(e.len() <= icmpv6::MIN_MTU);
            let ip = Ipv6Packet::new_checked(&e[..]).unwrap();
            let r = Icmpv6Repr::parse(&ip.src_addr(), &ip.dst_addr(), ip.payload()).unwrap();
            prop_assert!(r.is_error());
            let inv = Ipv6Packet::new_checked(&b[..]).unwrap();
            prop_assert_eq!(ip.dst_addr(), inv.src_addr());
            // Never an error about an error.
            prop_assert!(icmpv6::build_unreachable(src, code, &e).is_none());
        }
    }

    #[test]
    fn unreachable_is_truncated_to_min_mtu(
        data in proptest::collection::vec(any::<u8>(), 0..2000),
        src in v6(),
    ) {
        let inv = icmpv6::build_packet(
            "2001:db8::1".parse().unwrap(),
            "2001::2".parse().unwrap(),
            64,
            &Icmpv6Repr::EchoRequest { ident: 1, seq: 2, data: &data },
        );
        let e = icmpv6::build_unreachable(src, 3, &inv).unwrap();
        prop_assert_eq!(e.len(), (HEADER_LEN + 8 + inv.len()).min(icmpv6::MIN_MTU));
        let ip = Ipv6Packet::new_checked(&e[..]).unwrap();
        let r = Icmpv6Repr::parse(&ip.src_addr(), &ip.dst_addr(), ip.payload()).unwrap();
        let Icmpv6Repr::DstUnreachable { code, invoking } = r else {
            panic!("not an unreachable: {r:?}");
        };
        prop_assert_eq!(code, 3);
        prop_assert_eq!(invoking, &inv[..invoking.len()]);
    }

    #[test]
    fn ipv6_repr_roundtrip(
        src in v6(),
        dst in v6(),
        nh in any::<u8>(),
        hop_limit in any::<u8>(),
        traffic_class in any::<u8>(),
        flow in any::<u32>(),
        payload in proptest::collection::vec(any::<u8>(), 0..100),
    ) {
        let repr = Ipv6Repr {
            src,
            dst,
            next_header: nh,
            payload_len: payload.len() as u16,
            hop_limit,
            traffic_class,
        };
        let mut b = repr.build(&payload);
        let mut p = Ipv6Packet::new_checked(&mut b[..]).unwrap();
        p.set_flow_label(flow);
        prop_assert_eq!(p.flow_label(), flow & 0x000f_ffff);
        prop_assert_eq!(p.traffic_class(), traffic_class);
        prop_assert_eq!(p.ecn(), traffic_class & 3);
        let p = Ipv6Packet::new_checked(&b[..]).unwrap();
        prop_assert_eq!(Ipv6Repr::parse(&p), repr);
        prop_assert_eq!(p.payload(), &payload[..]);
        prop_assert!(p.trailer().is_empty());
        prop_assert_eq!(p.is_bubble(), nh == next_header::NO_NEXT_HEADER && payload.is_empty());
    }

    #[test]
    fn bubble_roundtrip(src in v6(), dst in v6(), hop_limit in any::<u8>()) {
        let b = ipv6::build_bubble(src, dst);
        let p = Ipv6Packet::new_checked(&b[..]).unwrap();
        prop_assert!(p.is_bubble());
        prop_assert_eq!((p.src_addr(), p.dst_addr()), (src, dst));
        prop_assert_eq!(p.hop_limit(), ipv6::BUBBLE_HOP_LIMIT);
        let b = ipv6::build_bubble_with_hop_limit(src, dst, hop_limit);
        prop_assert_eq!(Ipv6Packet::new_checked(&b[..]).unwrap().hop_limit(), hop_limit);
    }

    #[test]
    fn echo_roundtrip(
        src in v6(),
        dst in v6(),
        hop in any::<u8>(),
        ident in any::<u16>(),
        seq in any::<u16>(),
        data in proptest::collection::vec(any::<u8>(), 0..1500),
        reply in any::<bool>(),
    ) {
        let repr = if reply {
            Icmpv6Repr::EchoReply { ident, seq, data: &data }
        } else {
            Icmpv6Repr::EchoRequest { ident, seq, data: &data }
        };
        check_roundtrip(src, dst, hop, &repr)?;
    }

    #[test]
    fn ra_roundtrip(
        src in v6(),
        dst in v6(),
        head in (any::<u8>(), any::<u8>(), any::<u16>(), any::<u32>(), any::<u32>()),
        prefix in proptest::option::of((any::<u8>(), any::<u8>(), any::<u32>(), any::<u32>(), v6())),
        mtu in proptest::option::of(any::<u32>()),
    ) {
        let ra = RouterAdvert {
            cur_hop_limit: head.0,
            flags: head.1,
            router_lifetime: head.2,
            reachable_time: head.3,
            retrans_timer: head.4,
            prefix: prefix.map(|(prefix_len, flags, valid_lifetime, preferred_lifetime, prefix)| PrefixInfo {
                prefix_len,
                flags,
                valid_lifetime,
                preferred_lifetime,
                prefix,
            }),
            prefix_count: usize::from(prefix.is_some()),
            mtu,
        };
        check_roundtrip(src, dst, 255, &Icmpv6Repr::RouterAdvert(ra))?;
    }

    #[test]
    fn rs_and_unreachable_roundtrip(
        src in v6(),
        dst in v6(),
        code in any::<u8>(),
        invoking in proptest::collection::vec(any::<u8>(), 0..200),
    ) {
        check_roundtrip(src, dst, 255, &Icmpv6Repr::RouterSolicit)?;
        check_roundtrip(src, dst, 64, &Icmpv6Repr::DstUnreachable { code, invoking: &invoking })?;
    }

    #[test]
    fn auth_origin_roundtrip(
        client_id in proptest::collection::vec(any::<u8>(), 0..256),
        auth_value in proptest::collection::vec(any::<u8>(), 0..256),
        nonce in any::<[u8; 8]>(),
        confirmation in any::<u8>(),
        with_auth in any::<bool>(),
        origin in proptest::option::of(endpoint()),
        src in v6(),
        dst in v6(),
    ) {
        let auth = Auth { client_id: &client_id, auth_value: &auth_value, nonce, confirmation };
        let mut b = Vec::new();
        if with_auth {
            auth.emit(&mut b);
            prop_assert_eq!(b.len(), auth.len());
        }
        if let Some(o) = origin {
            Origin(o).emit(&mut b);
            let bytes = Origin(o).to_bytes();
            prop_assert_eq!(Origin::from_bytes(&bytes), Some(Origin(o)));
        }
        let hdr = b.len();
        b.extend_from_slice(&icmpv6::build_packet(src, dst, 255, &Icmpv6Repr::RouterSolicit));
        let p = TeredoPacket::parse(&b).unwrap();
        prop_assert_eq!(p.auth, with_auth.then_some(auth));
        prop_assert_eq!(p.origin, origin.map(Origin));
        prop_assert_eq!(p.ipv6_offset, hdr);
        prop_assert_eq!(
            Icmpv6Repr::parse(&p.ipv6.src_addr(), &p.ipv6.dst_addr(), p.ipv6.payload()),
            Ok(Icmpv6Repr::RouterSolicit)
        );
    }

    #[test]
    fn teredo_addr_roundtrip(
        prefix in any::<u32>(),
        server in v4(),
        flags in any::<u16>(),
        mapped in endpoint(),
        raw in v6(),
    ) {
        let t = TeredoAddr {
            prefix,
            server,
            flags,
            mapped_port: mapped.port(),
            mapped_addr: *mapped.ip(),
        };
        let a = t.to_ipv6();
        prop_assert_eq!(TeredoAddr::from_ipv6(&a), t);
        prop_assert_eq!(TeredoAddr::parse_with_prefix(&a, prefix), Some(t));
        prop_assert_eq!(t.mapped(), mapped);
        // Every address decodes and encodes back to itself.
        prop_assert_eq!(TeredoAddr::from_ipv6(&raw).to_ipv6(), raw);
    }
}

/// Builds `repr` into an IPv6 packet, parses it back (checksum verified)
/// and expects the same meaning.
fn check_roundtrip(
    src: Ipv6Addr,
    dst: Ipv6Addr,
    hop: u8,
    repr: &Icmpv6Repr,
) -> Result<(), TestCaseError> {
    let b = icmpv6::build_packet(src, dst, hop, repr);
    let p = Ipv6Packet::new_checked(&b[..]).unwrap();
    prop_assert_eq!(p.next_header(), next_header::ICMPV6);
    prop_assert_eq!(p.hop_limit(), hop);
    prop_assert_eq!(p.payload().len(), repr.buffer_len());
    let back = Icmpv6Repr::parse(&p.src_addr(), &p.dst_addr(), p.payload());
    prop_assert_eq!(back, Ok(*repr));
    Ok(())
}

/// A few messages of each kind the engines build.
fn sample_messages() -> Vec<(Vec<u8>, &'static str)> {
    let s: Ipv6Addr = "fe80::8000:f227:39ed:fefe".parse().unwrap();
    let d: Ipv6Addr = "fe80::ffff:ffff:ffff".parse().unwrap();
    let t: Ipv6Addr = "2001:0:c612:101:189a:388c:39ed:fcfe".parse().unwrap();
    let h: Ipv6Addr = "2001:db8:9::1".parse().unwrap();
    let ra = libteredo::proto::advert(
        libteredo::addr::TEREDO_PREFIX,
        Ipv4Addr::new(198, 18, 1, 1),
        Some(1280),
    );
    let echo = icmpv6::build_packet(
        h,
        t,
        64,
        &Icmpv6Repr::EchoRequest {
            ident: 0x1234,
            seq: 7,
            data: b"0123456789abcdefghij",
        },
    );
    vec![
        (
            icmpv6::build_packet(
                d,
                "ff02::2".parse().unwrap(),
                255,
                &Icmpv6Repr::RouterSolicit,
            ),
            "rs",
        ),
        (
            icmpv6::build_packet(s, d, 255, &Icmpv6Repr::RouterAdvert(ra)),
            "ra",
        ),
        (
            icmpv6::build_packet(
                s,
                d,
                255,
                &Icmpv6Repr::RouterAdvert(RouterAdvert {
                    prefix: None,
                    prefix_count: 0,
                    mtu: None,
                    ..ra
                }),
            ),
            "bare ra",
        ),
        (
            icmpv6::build_packet(
                t,
                h,
                64,
                &Icmpv6Repr::EchoReply {
                    ident: 0x1234,
                    seq: 7,
                    data: b"0123456789abcdefghij",
                },
            ),
            "echo reply",
        ),
        (
            icmpv6::build_unreachable(t, 3, &echo).unwrap(),
            "unreachable",
        ),
        (echo, "echo request"),
    ]
}

#[test]
fn every_single_bit_flip_is_caught() {
    for (pkt, what) in sample_messages() {
        let ip = Ipv6Packet::new_checked(&pkt[..]).unwrap();
        let (src, dst) = (ip.src_addr(), ip.dst_addr());
        let msg = ip.payload().to_vec();
        assert!(Icmpv6Repr::parse(&src, &dst, &msg).is_ok(), "{what}");
        for bit in 0..msg.len() * 8 {
            let mut m = msg.clone();
            m[bit / 8] ^= 1 << (bit % 8);
            let r = Icmpv6Repr::parse(&src, &dst, &m);
            assert!(
                matches!(r, Err(Error::BadChecksum | Error::BadIcmp)),
                "{what}: bit {bit} flipped, parsed as {r:?}"
            );
        }
        // Flips in the IPv6 header's addresses break the pseudo-header sum.
        for bit in 0..256 {
            let mut p = pkt.clone();
            p[8 + bit / 8] ^= 1 << (bit % 8);
            let ip = Ipv6Packet::new_checked(&p[..]).unwrap();
            assert_eq!(
                Icmpv6Repr::parse(&ip.src_addr(), &ip.dst_addr(), ip.payload()),
                Err(Error::BadChecksum),
                "{what}: address bit {bit}"
            );
        }
    }
}

#[test]
fn known_types_survive_a_type_change_only_as_errors() {
    // A message whose type byte is replaced by another known type must not
    // parse as that type with a good checksum (the checksum covers it).
    let pkt = icmpv6::build_packet(
        "2001::1".parse().unwrap(),
        "2001::2".parse().unwrap(),
        64,
        &Icmpv6Repr::EchoRequest {
            ident: 1,
            seq: 1,
            data: &[],
        },
    );
    let mut m = pkt[HEADER_LEN..].to_vec();
    m[0] = msg_type::ECHO_REPLY;
    assert_eq!(
        Icmpv6Repr::parse(&"2001::1".parse().unwrap(), &"2001::2".parse().unwrap(), &m),
        Err(Error::BadChecksum)
    );
}
