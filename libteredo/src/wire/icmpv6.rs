//! ICMPv6 (RFC 4443) and the neighbour-discovery messages Teredo uses
//! (RFC 4861): router solicitation and router advertisement with the
//! prefix-information and MTU options.

use super::checksum;
use super::ipv6::{next_header, Ipv6Repr, HEADER_LEN};
use super::{Error, Result};
use std::net::Ipv6Addr;

/// ICMPv6 message types.
pub mod msg_type {
    pub const DST_UNREACHABLE: u8 = 1;
    pub const PACKET_TOO_BIG: u8 = 2;
    pub const TIME_EXCEEDED: u8 = 3;
    pub const PARAM_PROBLEM: u8 = 4;
    pub const ECHO_REQUEST: u8 = 128;
    pub const ECHO_REPLY: u8 = 129;
    pub const ROUTER_SOLICIT: u8 = 133;
    pub const ROUTER_ADVERT: u8 = 134;
    pub const REDIRECT: u8 = 137;
}

/// Destination-unreachable codes (RFC 4443 3.1).
pub mod unreachable_code {
    pub const NO_ROUTE: u8 = 0;
    pub const ADMIN_PROHIBITED: u8 = 1;
    pub const BEYOND_SCOPE: u8 = 2;
    pub const ADDRESS: u8 = 3;
    pub const PORT: u8 = 4;
}

/// Neighbour-discovery option types (RFC 4861 4.6).
pub mod option_type {
    pub const SOURCE_LINK_ADDR: u8 = 1;
    pub const PREFIX_INFO: u8 = 3;
    pub const MTU: u8 = 5;
}

/// The minimum IPv6 MTU: an ICMPv6 error never makes a packet longer.
pub const MIN_MTU: usize = 1280;

const HDR: usize = 4;

/// A prefix-information option (RFC 4861 4.6.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PrefixInfo {
    pub prefix_len: u8,
    /// L and A flags, as on the wire.
    pub flags: u8,
    pub valid_lifetime: u32,
    pub preferred_lifetime: u32,
    pub prefix: Ipv6Addr,
}

/// A router advertisement (RFC 4861 4.2) with the options Teredo uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RouterAdvert {
    pub cur_hop_limit: u8,
    pub flags: u8,
    pub router_lifetime: u16,
    pub reachable_time: u32,
    pub retrans_timer: u32,
    /// The first prefix-information option, if any.
    pub prefix: Option<PrefixInfo>,
    /// How many prefix-information options were present (RFC 4380 5.2.1
    /// requires exactly one).
    pub prefix_count: usize,
    /// The MTU option, if any.
    pub mtu: Option<u32>,
}

/// The meaning of an ICMPv6 message. Data borrows the packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Icmpv6Repr<'a> {
    RouterSolicit,
    RouterAdvert(RouterAdvert),
    EchoRequest {
        ident: u16,
        seq: u16,
        data: &'a [u8],
    },
    EchoReply {
        ident: u16,
        seq: u16,
        data: &'a [u8],
    },
    DstUnreachable {
        code: u8,
        invoking: &'a [u8],
    },
    /// Any other message, kept as type and code.
    Other {
        msg_type: u8,
        code: u8,
    },
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

impl<'a> Icmpv6Repr<'a> {
    /// Parses an ICMPv6 message (the IPv6 payload) sent from `src` to `dst`,
    /// verifying its checksum.
    pub fn parse(src: &Ipv6Addr, dst: &Ipv6Addr, msg: &'a [u8]) -> Result<Self> {
        if msg.len() < HDR {
            return Err(Error::Truncated);
        }
        if checksum::upper_layer(src, dst, next_header::ICMPV6, msg) != 0 {
            return Err(Error::BadChecksum);
        }
        Self::parse_unchecked(msg)
    }

    /// Parses without checking the checksum.
    pub fn parse_unchecked(msg: &'a [u8]) -> Result<Self> {
        if msg.len() < HDR {
            return Err(Error::Truncated);
        }
        let (t, code) = (msg[0], msg[1]);
        match t {
            msg_type::ECHO_REQUEST | msg_type::ECHO_REPLY => {
                let h = msg.get(..8).ok_or(Error::Truncated)?;
                let ident = u16::from_be_bytes([h[4], h[5]]);
                let seq = u16::from_be_bytes([h[6], h[7]]);
                let data = &msg[8..];
                if code != 0 {
                    return Err(Error::BadIcmp);
                }
                Ok(if t == msg_type::ECHO_REQUEST {
                    Icmpv6Repr::EchoRequest { ident, seq, data }
                } else {
                    Icmpv6Repr::EchoReply { ident, seq, data }
                })
            }
            msg_type::ROUTER_SOLICIT => {
                if msg.len() < 8 {
                    return Err(Error::Truncated);
                }
                if code != 0 {
                    return Err(Error::BadIcmp);
                }
                check_options(&msg[8..])?;
                Ok(Icmpv6Repr::RouterSolicit)
            }
            msg_type::ROUTER_ADVERT => {
                let h = msg.get(..16).ok_or(Error::Truncated)?;
                if code != 0 {
                    return Err(Error::BadIcmp);
                }
                let mut ra = RouterAdvert {
                    cur_hop_limit: h[4],
                    flags: h[5],
                    router_lifetime: u16::from_be_bytes([h[6], h[7]]),
                    reachable_time: be32(&h[8..12]),
                    retrans_timer: be32(&h[12..16]),
                    prefix: None,
                    prefix_count: 0,
                    mtu: None,
                };
                for opt in options(&msg[16..]) {
                    let (kind, body) = opt?;
                    match kind {
                        option_type::PREFIX_INFO => {
                            // Length 4 (32 bytes) exactly (RFC 4861 4.6.2).
                            if body.len() != 30 {
                                return Err(Error::BadIcmp);
                            }
                            ra.prefix_count += 1;
                            if ra.prefix.is_none() {
                                let mut p = [0u8; 16];
                                p.copy_from_slice(&body[14..30]);
                                ra.prefix = Some(PrefixInfo {
                                    prefix_len: body[0],
                                    flags: body[1],
                                    valid_lifetime: be32(&body[2..6]),
                                    preferred_lifetime: be32(&body[6..10]),
                                    prefix: Ipv6Addr::from(p),
                                });
                            }
                        }
                        option_type::MTU => {
                            if body.len() != 6 {
                                return Err(Error::BadIcmp);
                            }
                            ra.mtu = Some(be32(&body[2..6]));
                        }
                        _ => {}
                    }
                }
                Ok(Icmpv6Repr::RouterAdvert(ra))
            }
            msg_type::DST_UNREACHABLE => {
                let invoking = msg.get(8..).ok_or(Error::Truncated)?;
                Ok(Icmpv6Repr::DstUnreachable { code, invoking })
            }
            _ => Ok(Icmpv6Repr::Other { msg_type: t, code }),
        }
    }

    /// Whether this is an error message (type < 128, RFC 4443 2.1).
    pub fn is_error(&self) -> bool {
        match self {
            Icmpv6Repr::DstUnreachable { .. } => true,
            Icmpv6Repr::Other { msg_type, .. } => *msg_type < 128,
            _ => false,
        }
    }

    /// Length of the encoded message.
    pub fn buffer_len(&self) -> usize {
        match self {
            Icmpv6Repr::RouterSolicit => 8,
            Icmpv6Repr::RouterAdvert(ra) => {
                16 + if ra.prefix.is_some() { 32 } else { 0 } + if ra.mtu.is_some() { 8 } else { 0 }
            }
            Icmpv6Repr::EchoRequest { data, .. } | Icmpv6Repr::EchoReply { data, .. } => {
                8 + data.len()
            }
            Icmpv6Repr::DstUnreachable { invoking, .. } => 8 + invoking.len(),
            Icmpv6Repr::Other { .. } => 8,
        }
    }

    /// Writes the message into `buf` (which must be `buffer_len()` long) and
    /// fills the checksum for the given IPv6 source and destination.
    pub fn emit(&self, src: &Ipv6Addr, dst: &Ipv6Addr, buf: &mut [u8]) -> Result<()> {
        let len = self.buffer_len();
        let b = buf.get_mut(..len).ok_or(Error::Truncated)?;
        b.fill(0);
        match self {
            Icmpv6Repr::RouterSolicit => b[0] = msg_type::ROUTER_SOLICIT,
            Icmpv6Repr::RouterAdvert(ra) => {
                b[0] = msg_type::ROUTER_ADVERT;
                b[4] = ra.cur_hop_limit;
                b[5] = ra.flags;
                b[6..8].copy_from_slice(&ra.router_lifetime.to_be_bytes());
                b[8..12].copy_from_slice(&ra.reachable_time.to_be_bytes());
                b[12..16].copy_from_slice(&ra.retrans_timer.to_be_bytes());
                let mut off = 16;
                if let Some(p) = ra.prefix {
                    let o = &mut b[off..off + 32];
                    o[0] = option_type::PREFIX_INFO;
                    o[1] = 4;
                    o[2] = p.prefix_len;
                    o[3] = p.flags;
                    o[4..8].copy_from_slice(&p.valid_lifetime.to_be_bytes());
                    o[8..12].copy_from_slice(&p.preferred_lifetime.to_be_bytes());
                    o[16..32].copy_from_slice(&p.prefix.octets());
                    off += 32;
                }
                if let Some(mtu) = ra.mtu {
                    let o = &mut b[off..off + 8];
                    o[0] = option_type::MTU;
                    o[1] = 1;
                    o[4..8].copy_from_slice(&mtu.to_be_bytes());
                }
            }
            Icmpv6Repr::EchoRequest { ident, seq, data }
            | Icmpv6Repr::EchoReply { ident, seq, data } => {
                b[0] = if matches!(self, Icmpv6Repr::EchoRequest { .. }) {
                    msg_type::ECHO_REQUEST
                } else {
                    msg_type::ECHO_REPLY
                };
                b[4..6].copy_from_slice(&ident.to_be_bytes());
                b[6..8].copy_from_slice(&seq.to_be_bytes());
                b[8..].copy_from_slice(data);
            }
            Icmpv6Repr::DstUnreachable { code, invoking } => {
                b[0] = msg_type::DST_UNREACHABLE;
                b[1] = *code;
                b[8..].copy_from_slice(invoking);
            }
            Icmpv6Repr::Other { msg_type, code } => {
                b[0] = *msg_type;
                b[1] = *code;
            }
        }
        let c = checksum::upper_layer(src, dst, next_header::ICMPV6, b);
        b[2..4].copy_from_slice(&c.to_be_bytes());
        Ok(())
    }
}

/// Builds a whole IPv6 packet carrying `msg`.
pub fn build_packet(src: Ipv6Addr, dst: Ipv6Addr, hop_limit: u8, msg: &Icmpv6Repr) -> Vec<u8> {
    let len = msg.buffer_len();
    let mut v = vec![0u8; HEADER_LEN + len];
    let ip = Ipv6Repr {
        src,
        dst,
        next_header: next_header::ICMPV6,
        payload_len: u16::try_from(len).unwrap_or(u16::MAX),
        hop_limit,
        traffic_class: 0,
    };
    // Buffers are sized above: neither emit can fail.
    let _ = ip.emit(&mut v);
    let _ = msg.emit(&src, &dst, &mut v[HEADER_LEN..]);
    v
}

/// Builds an ICMPv6 destination unreachable from `src` about `invoking`
/// (an IPv6 packet), truncated so the whole error fits in 1280 bytes
/// (RFC 4443 2.4(c)). The destination is the invoking packet's source.
/// Returns `None` if the invoking packet must not trigger an error: too
/// short, from an unspecified or multicast source, or itself an ICMPv6
/// error (RFC 4443 2.4(e)).
pub fn build_unreachable(src: Ipv6Addr, code: u8, invoking: &[u8]) -> Option<Vec<u8>> {
    let ip = super::ipv6::Ipv6Packet::new_checked(invoking).ok()?;
    let dst = ip.src_addr();
    if dst.is_unspecified() || dst.is_multicast() || ip.dst_addr().is_multicast() {
        return None;
    }
    // RFC 4443 2.4(e.1, e.2): no error about an ICMPv6 error or a redirect,
    // wherever the ICMPv6 header sits in the extension-header chain. A
    // chain we cannot walk, or a truncated ICMPv6 header, gets no error
    // either: we cannot tell what it carries.
    let upper = ip.upper_layer().ok()?;
    if upper.protocol == next_header::ICMPV6 && !upper.later_fragment {
        match ip.payload().get(upper.offset) {
            Some(t) if *t < 128 || *t == msg_type::REDIRECT => return None,
            None => return None,
            _ => {}
        }
    }
    let max = MIN_MTU - HEADER_LEN - 8;
    let inv = &ip.packet()[..ip.packet().len().min(max)];
    Some(build_packet(
        src,
        dst,
        255,
        &Icmpv6Repr::DstUnreachable {
            code,
            invoking: inv,
        },
    ))
}

/// Walks neighbour-discovery options: each has a type, a length in units of
/// 8 bytes (never 0), and must fit (RFC 4861 4.6). Yields `(type, body)`
/// where the body follows the two-byte option header; a malformed option
/// yields one `Err` and ends the walk. Allocates nothing.
struct Options<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for Options<'a> {
    type Item = Result<(u8, &'a [u8])>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let opt = match self.rest.get(1).map(|l| usize::from(*l) * 8) {
            Some(len) if len > 0 => self.rest.get(..len),
            _ => None,
        };
        match opt.and_then(|o| Some((*o.first()?, o.get(2..)?))) {
            Some((kind, body)) => {
                self.rest = self.rest.get(body.len() + 2..).unwrap_or_default();
                Some(Ok((kind, body)))
            }
            None => {
                self.rest = &[];
                Some(Err(Error::BadIcmp))
            }
        }
    }
}

fn options(b: &[u8]) -> Options<'_> {
    Options { rest: b }
}

fn check_options(b: &[u8]) -> Result<()> {
    options(b).try_for_each(|o| o.map(|_| ()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::ipv6::Ipv6Packet;

    fn a(s: &str) -> Ipv6Addr {
        s.parse().unwrap()
    }

    #[test]
    fn echo_roundtrip() {
        let p = build_packet(
            a("2001::1"),
            a("2001:db8::2"),
            64,
            &Icmpv6Repr::EchoRequest {
                ident: 7,
                seq: 9,
                data: b"hello",
            },
        );
        let ip = Ipv6Packet::new_checked(&p[..]).unwrap();
        let r = Icmpv6Repr::parse(&ip.src_addr(), &ip.dst_addr(), ip.payload()).unwrap();
        assert_eq!(
            r,
            Icmpv6Repr::EchoRequest {
                ident: 7,
                seq: 9,
                data: b"hello"
            }
        );
        // A flipped bit breaks the checksum.
        let mut q = p.clone();
        q[HEADER_LEN + 9] ^= 1;
        let ip = Ipv6Packet::new_checked(&q[..]).unwrap();
        assert_eq!(
            Icmpv6Repr::parse(&ip.src_addr(), &ip.dst_addr(), ip.payload()),
            Err(Error::BadChecksum)
        );
    }

    #[test]
    fn ra_roundtrip() {
        let ra = RouterAdvert {
            cur_hop_limit: 0,
            flags: 0,
            router_lifetime: 0,
            reachable_time: 0,
            retrans_timer: 2000,
            prefix: Some(PrefixInfo {
                prefix_len: 64,
                flags: 0x40,
                valid_lifetime: 0xffff_ffff,
                preferred_lifetime: 0xffff_ffff,
                prefix: a("2001:0:c612:101::"),
            }),
            prefix_count: 1,
            mtu: Some(1280),
        };
        let p = build_packet(
            a("fe80::8000:f227:39ed:fefe"),
            a("fe80::ffff:ffff:ffff"),
            255,
            &Icmpv6Repr::RouterAdvert(ra),
        );
        let ip = Ipv6Packet::new_checked(&p[..]).unwrap();
        let r = Icmpv6Repr::parse(&ip.src_addr(), &ip.dst_addr(), ip.payload()).unwrap();
        assert_eq!(r, Icmpv6Repr::RouterAdvert(ra));
    }

    #[test]
    fn unreachable_rules() {
        let big = build_packet(
            a("2001:db8::1"),
            a("2001::2"),
            64,
            &Icmpv6Repr::EchoRequest {
                ident: 1,
                seq: 1,
                data: &[0u8; 1400],
            },
        );
        let e = build_unreachable(a("2001::1"), unreachable_code::ADDRESS, &big).unwrap();
        assert_eq!(e.len(), MIN_MTU);
        let ip = Ipv6Packet::new_checked(&e[..]).unwrap();
        assert_eq!(ip.dst_addr(), a("2001:db8::1"));
        let r = Icmpv6Repr::parse(&ip.src_addr(), &ip.dst_addr(), ip.payload()).unwrap();
        assert!(r.is_error());
        // No error about an error.
        assert!(build_unreachable(a("2001::1"), 0, &e).is_none());
    }

    #[test]
    fn no_error_about_an_error_behind_extension_headers() {
        // RFC 4443 2.4(e): an unreachable inside a destination-options
        // header is still an ICMPv6 error; so is a redirect.
        let inner = build_packet(
            a("2001::1"),
            a("2001:db8::1"),
            64,
            &Icmpv6Repr::DstUnreachable {
                code: 3,
                invoking: &[0; 8],
            },
        );
        let mut payload = vec![next_header::ICMPV6, 0, 1, 4, 0, 0, 0, 0];
        payload.extend_from_slice(&inner[HEADER_LEN..]);
        let ip = Ipv6Repr {
            src: a("2001::1"),
            dst: a("2001:db8::1"),
            next_header: next_header::DEST_OPTS,
            payload_len: 0,
            hop_limit: 64,
            traffic_class: 0,
        };
        let pkt = ip.build(&payload);
        assert!(build_unreachable(a("2001::2"), 0, &pkt).is_none());
        let redirect = build_packet(
            a("fe80::1"),
            a("2001:db8::1"),
            255,
            &Icmpv6Repr::Other {
                msg_type: msg_type::REDIRECT,
                code: 0,
            },
        );
        assert!(build_unreachable(a("2001::2"), 0, &redirect).is_none());
        // An echo behind the same header does get one.
        payload.truncate(8);
        payload.extend_from_slice(&[128, 0, 0, 0, 0, 0, 0, 0]);
        assert!(build_unreachable(a("2001::2"), 0, &ip.build(&payload)).is_some());
    }

    /// The RA the C miredo-server 1.2.6 sent in the lab (without its
    /// Teredo headers; `tests/vectors/ra.hex`).
    #[test]
    fn ra_matches_c_miredo_server() {
        let c: [u8; 56] = [
            0x86, 0x00, 0x95, 0x4c, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x07, 0xd0, 0x03, 0x04, 0x40,
            0x40, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0x20, 0x01, 0, 0,
            0xc6, 0x12, 0x01, 0x01, 0, 0, 0, 0, 0, 0, 0, 0, 0x05, 0x01, 0, 0, 0, 0, 0x05, 0x00,
        ];
        let (s, d) = (a("fe80::8000:f227:39ed:fefe"), a("fe80::ffff:ffff:ffff"));
        let r = Icmpv6Repr::parse(&s, &d, &c).unwrap();
        let mut out = [0u8; 56];
        r.emit(&s, &d, &mut out).unwrap();
        assert_eq!(out, c);
    }

    #[test]
    fn zero_length_option_refused() {
        let mut m = vec![msg_type::ROUTER_SOLICIT, 0, 0, 0, 0, 0, 0, 0, 1, 0];
        m.extend_from_slice(&[0; 6]);
        assert_eq!(Icmpv6Repr::parse_unchecked(&m), Err(Error::BadIcmp));
    }
}
