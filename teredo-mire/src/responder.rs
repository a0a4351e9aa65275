//! The stateless echo responder: the original job of teredo-mire.
//!
//! A datagram on UDP 3544 or 3545 that carries (after optional Teredo
//! authentication and origin indication headers, RFC 4380 5.1.1) an IPv6
//! ICMPv6 echo request gets one echo reply, with the IPv6 addresses
//! swapped and the same identifier, sequence number and data, sent back to
//! the datagram's source endpoint from the port it arrived on. Anything
//! else is dropped without a word.
//!
//! A UDP responder can be used to reflect traffic at a third party whose
//! address is forged as the source. The rules below keep the reflection
//! no worse than the request itself: one reply per request, never larger
//! than the request, nothing sent to a source that is not global unicast
//! IPv4 (unless allowed for a lab), nothing in answer to a reply or an
//! error, so two responders cannot ping-pong.

use libteredo::addr::is_global_unicast_v4;
use libteredo::wire::icmpv6::{build_packet, Icmpv6Repr};
use libteredo::wire::ipv6::next_header;
use libteredo::wire::teredo::TeredoPacket;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::thread;
use std::time::Duration;

/// The ports the C teredo-mire listens on: the Teredo service port and the
/// one after it (the mapped port of the responder's Teredo address).
pub const PORTS: [u16; 2] = [3544, 3545];

/// The hop limit of replies.
pub const REPLY_HOP_LIMIT: u8 = 64;

/// The largest UDP payload we read; anything longer is truncated by the
/// kernel and then refused by the IPv6 length check.
const RECV_BUFFER: usize = 65536;

/// The reply to one datagram received from `from`, or `None` to drop it.
pub fn answer(from: SocketAddrV4, datagram: &[u8], allow_private: bool) -> Option<Vec<u8>> {
    if from.port() == 0 || !(allow_private || is_global_unicast_v4(*from.ip())) {
        return None;
    }
    let pkt = TeredoPacket::parse(datagram).ok()?;
    let ip = &pkt.ipv6;
    let (src, dst) = (ip.src_addr(), ip.dst_addr());
    // The reply goes from the request's destination to its source: neither
    // may be multicast (RFC 4443 4.2 lets a node answer a multicast echo
    // from a unicast address of its own, which we do not know) nor
    // unspecified.
    if src.is_multicast() || src.is_unspecified() || dst.is_multicast() || dst.is_unspecified() {
        return None;
    }
    let upper = ip.upper_layer().ok()?;
    // A fragment is only part of a request, and a routing header with
    // segments left makes us an intermediate hop, not the destination
    // (RFC 5095; CVE-2006-6263).
    if upper.protocol != next_header::ICMPV6 || upper.fragment || upper.routing_segments_left {
        return None;
    }
    let msg = ip.payload().get(upper.offset..)?;
    let Icmpv6Repr::EchoRequest { ident, seq, data } = Icmpv6Repr::parse(&src, &dst, msg).ok()?
    else {
        return None;
    };
    let reply = build_packet(
        dst,
        src,
        REPLY_HOP_LIMIT,
        &Icmpv6Repr::EchoReply { ident, seq, data },
    );
    // The reply drops the Teredo headers, the extension headers and any
    // trailer, so it is never longer than the request; say so anyway.
    (reply.len() <= datagram.len()).then_some(reply)
}

/// Serves forever on `bind`:3544 and `bind`:3545; returns only on a bind
/// error.
pub fn run(bind: Ipv4Addr, allow_private: bool) -> Result<(), String> {
    let mut sockets = Vec::with_capacity(PORTS.len());
    for port in PORTS {
        let at = SocketAddrV4::new(bind, port);
        let s = UdpSocket::bind(at).map_err(|e| format!("cannot listen on {at}: {e}"))?;
        sockets.push(s);
    }
    eprintln!(
        "teredo-mire: answering ICMPv6 echo requests on {bind}:{} and {bind}:{}{}",
        PORTS[0],
        PORTS[1],
        if allow_private {
            ", private sources allowed"
        } else {
            ""
        }
    );
    let handles: Vec<_> = sockets
        .into_iter()
        .map(|s| thread::spawn(move || serve(&s, allow_private)))
        .collect();
    for h in handles {
        let _ = h.join();
    }
    Err("the responder stopped".to_string())
}

fn serve(sock: &UdpSocket, allow_private: bool) {
    let mut buf = vec![0u8; RECV_BUFFER];
    loop {
        match sock.recv_from(&mut buf) {
            Ok((n, SocketAddr::V4(from))) => {
                if let Some(reply) = buf.get(..n).and_then(|d| answer(from, d, allow_private)) {
                    // Stateless: a reply that cannot be sent is forgotten.
                    let _ = sock.send_to(&reply, from);
                }
            }
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => {
                // Transient errors (e.g. ENOMEM); do not spin on them.
                thread::sleep(Duration::from_millis(10));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use libteredo::wire::teredo::{Auth, Origin};
    use proptest::prelude::*;
    use std::net::Ipv6Addr;

    fn from() -> SocketAddrV4 {
        SocketAddrV4::new(Ipv4Addr::new(198, 18, 0, 2), 40000)
    }

    fn a(s: &str) -> Ipv6Addr {
        s.parse().unwrap()
    }

    fn request(src: &str, dst: &str, data: &[u8]) -> Vec<u8> {
        build_packet(
            a(src),
            a(dst),
            60,
            &Icmpv6Repr::EchoRequest {
                ident: 0x1234,
                seq: 7,
                data,
            },
        )
    }

    #[test]
    fn echo_is_answered() {
        let req = request("2001:db8::1", "2001:0:c612:101::1", b"abcdef");
        let reply = answer(from(), &req, false).unwrap();
        let want = build_packet(
            a("2001:0:c612:101::1"),
            a("2001:db8::1"),
            REPLY_HOP_LIMIT,
            &Icmpv6Repr::EchoReply {
                ident: 0x1234,
                seq: 7,
                data: b"abcdef",
            },
        );
        assert_eq!(reply, want);
    }

    #[test]
    fn teredo_headers_are_skipped() {
        let mut v = Vec::new();
        Auth {
            client_id: b"id",
            auth_value: b"",
            nonce: [9; 8],
            confirmation: 0,
        }
        .emit(&mut v);
        Origin(from()).emit(&mut v);
        let req = request("2001:db8::1", "2001::2", b"x");
        v.extend_from_slice(&req);
        let reply = answer(from(), &v, false).unwrap();
        assert_eq!(reply.len(), req.len());
    }

    #[test]
    fn refusals() {
        let req = request("2001:db8::1", "2001::2", b"x");
        let private = SocketAddrV4::new(Ipv4Addr::new(192, 168, 1, 2), 40000);
        assert!(answer(private, &req, false).is_none());
        assert!(answer(private, &req, true).is_some());
        let port0 = SocketAddrV4::new(Ipv4Addr::new(198, 18, 0, 2), 0);
        assert!(answer(port0, &req, true).is_none());
        // Multicast destination, multicast source.
        assert!(answer(from(), &request("2001:db8::1", "ff02::1", b"x"), false).is_none());
        assert!(answer(from(), &request("ff02::1", "2001::2", b"x"), false).is_none());
        // A reply is not answered.
        let rep = build_packet(
            a("2001:db8::1"),
            a("2001::2"),
            64,
            &Icmpv6Repr::EchoReply {
                ident: 1,
                seq: 1,
                data: b"",
            },
        );
        assert!(answer(from(), &rep, false).is_none());
        // A bad checksum.
        let mut bad = req.clone();
        if let Some(b) = bad.last_mut() {
            *b ^= 0xff;
        }
        assert!(answer(from(), &bad, false).is_none());
        // Truncations.
        for n in 0..req.len() {
            assert!(answer(from(), &req[..n], false).is_none(), "{n}");
        }
    }

    proptest! {
        #[test]
        fn never_panics_never_amplifies(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            if let Some(r) = answer(from(), &bytes, true) {
                prop_assert!(r.len() <= bytes.len());
            }
        }

        #[test]
        fn mutated_requests(flip in 0usize..56, bit in 0u8..8) {
            let mut req = request("2001:db8::1", "2001::2", b"abcdefgh");
            if let Some(b) = req.get_mut(flip) {
                *b ^= 1 << bit;
            }
            if let Some(r) = answer(from(), &req, true) {
                prop_assert!(r.len() <= req.len());
            }
        }
    }
}
