//! Hostile datagrams for flood tests: malformed, truncated, lying and
//! forged Teredo packets (RFC 4380 section 7 and the 2006 Teredo security
//! report), and the IPv4/UDP headers around them for a raw socket that
//! spoofs sources. Pure functions over a seeded generator, so that a flood
//! replays exactly; `teredo-flood` (src/bin) puts them on the wire.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV4};

use libteredo::addr::{TeredoAddr, LINK_LOCAL_RESTRICTED, TEREDO_PORT, TEREDO_PREFIX};
use libteredo::wire::icmpv6::{self, Icmpv6Repr, PrefixInfo, RouterAdvert};
use libteredo::wire::ipv6::{build_bubble, next_header, Ipv6Repr};
use libteredo::wire::teredo::{Auth, Origin};

/// A small, fast, seeded generator (xorshift64*): floods replay exactly.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub fn u32(&mut self) -> u32 {
        (self.next_u64() >> 32) as u32
    }

    pub fn u16(&mut self) -> u16 {
        (self.next_u64() >> 48) as u16
    }

    pub fn u8(&mut self) -> u8 {
        (self.next_u64() >> 56) as u8
    }

    /// Uniform in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            return 0;
        }
        (self.next_u64() % n as u64) as usize
    }

    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.u8()).collect()
    }

    pub fn chance(&mut self, percent: u8) -> bool {
        self.below(100) < usize::from(percent)
    }
}

/// Whether `a` is a global unicast IPv4 address for the purpose of
/// Teredo mapped addresses (RFC 4380 5.2.3 and CVE-2006-6264): not
/// private, loopback, link-local, shared, multicast, reserved or zero.
pub fn is_global_v4(a: Ipv4Addr) -> bool {
    let o = a.octets();
    !(o[0] == 0
        || o[0] == 10
        || o[0] == 127
        || (o[0] == 100 && (64..128).contains(&o[1]))
        || (o[0] == 169 && o[1] == 254)
        || (o[0] == 172 && (16..32).contains(&o[1]))
        || (o[0] == 192 && o[1] == 168)
        || o[0] >= 224)
}

/// A random IPv4 address that is not global (private, loopback,
/// link-local, multicast, zero).
pub fn non_global_v4(rng: &mut Rng) -> Ipv4Addr {
    let r = rng.u32().to_be_bytes();
    match rng.below(6) {
        0 => Ipv4Addr::new(10, r[1], r[2], r[3]),
        1 => Ipv4Addr::new(127, r[1], r[2], r[3]),
        2 => Ipv4Addr::new(192, 168, r[2], r[3]),
        3 => Ipv4Addr::new(172, 16 + (r[1] & 15), r[2], r[3]),
        4 => Ipv4Addr::new(169, 254, r[2], r[3]),
        _ => Ipv4Addr::new(224 + (r[0] & 15), r[1], r[2], r[3]),
    }
}

/// A random global IPv4 address outside the lab's 198.18.0.0/16 (so that
/// nothing in the lab answers it): in 198.19.0.0/16 when `lab_unroutable`,
/// else anywhere global.
pub fn global_v4(rng: &mut Rng, lab_unroutable: bool) -> Ipv4Addr {
    if lab_unroutable {
        let r = rng.u16().to_be_bytes();
        return Ipv4Addr::new(198, 19, r[0], r[1].max(1));
    }
    loop {
        let a = Ipv4Addr::from(rng.u32());
        if is_global_v4(a) && a.octets()[..2] != [198, 18] {
            return a;
        }
    }
}

/// A Teredo address of a client of `server` mapped to `mapped`, with
/// random RFC 5991 flag bits.
pub fn teredo_addr(rng: &mut Rng, server: Ipv4Addr, mapped: SocketAddrV4) -> Ipv6Addr {
    TeredoAddr {
        prefix: TEREDO_PREFIX,
        server,
        flags: rng.u16() & libteredo::addr::FLAGS_RANDOM_MASK,
        mapped_port: mapped.port(),
        mapped_addr: *mapped.ip(),
    }
    .to_ipv6()
}

/// A random Teredo address of a client of `server`, mapped to a global
/// address no lab host has (198.19.0.0/16), for floods towards random
/// Teredo peers (RFC 4380 7.3.3, peer table exhaustion).
pub fn random_peer(rng: &mut Rng, server: Ipv4Addr) -> Ipv6Addr {
    let mapped = SocketAddrV4::new(global_v4(rng, true), rng.u16().max(1024));
    teredo_addr(rng, server, mapped)
}

/// What one hostile datagram is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Random bytes, 0 to 1400 of them.
    RandomBytes,
    /// An IPv6 header cut short (1 to 39 bytes).
    TruncatedIpv6,
    /// A whole IPv6 packet whose payload length field lies.
    LyingLength,
    /// An authentication header whose lengths run past the datagram.
    BadAuth,
    /// An origin indication followed by nothing or garbage.
    BadOrigin,
    /// A router advertisement with an authentication header carrying a
    /// nonce nobody asked for, and an origin indication: a forged
    /// qualification answer (RFC 4380 5.2.1, 7.2).
    ForgedRa,
    /// A bubble from a Teredo address whose mapped IPv4 is not global
    /// (CVE-2006-6264), optionally behind an origin indication.
    NonGlobalBubble,
    /// A bubble relayed by "the server" (origin indication) naming a
    /// global mapped endpoint: the client answers it with a direct bubble,
    /// which is what the flood provokes at most.
    IndirectBubble,
    /// An IPv6 packet with a type 0 routing header (CVE-2006-6263).
    RoutingHeader,
    /// An echo request whose Teredo source does not match the UDP source.
    SpoofedTeredoSource,
    /// An echo request from a Teredo address consistent with the UDP
    /// source, to the flood's destination (a relay forwards these).
    Echo,
    /// A router solicitation (what a server answers).
    RouterSolicit,
    /// A bubble from a Teredo source consistent with the UDP source to a
    /// random Teredo client of the server (a server forwards these).
    ServerBubble,
}

impl Kind {
    pub const ALL: [Kind; 13] = [
        Kind::RandomBytes,
        Kind::TruncatedIpv6,
        Kind::LyingLength,
        Kind::BadAuth,
        Kind::BadOrigin,
        Kind::ForgedRa,
        Kind::NonGlobalBubble,
        Kind::IndirectBubble,
        Kind::RoutingHeader,
        Kind::SpoofedTeredoSource,
        Kind::Echo,
        Kind::RouterSolicit,
        Kind::ServerBubble,
    ];
}

/// Who a flood aims at, for the kinds that need addresses.
#[derive(Debug, Clone, Copy)]
pub struct Target {
    /// The Teredo server of the world (embedded in Teredo addresses).
    pub server: Ipv4Addr,
    /// Where IPv6 packets go: the victim client's Teredo address, or a
    /// native host behind a relay.
    pub ipv6_dst: Ipv6Addr,
}

/// An echo request (ICMPv6) from `src` to `dst`.
fn echo(src: Ipv6Addr, dst: Ipv6Addr, rng: &mut Rng) -> Vec<u8> {
    let data = rng.bytes(16);
    let msg = Icmpv6Repr::EchoRequest {
        ident: rng.u16(),
        seq: rng.u16(),
        data: &data,
    };
    icmpv6::build_packet(src, dst, 64, &msg)
}

/// The Teredo payload of one hostile datagram of `kind`, sent from
/// `udp_src`.
pub fn payload(kind: Kind, rng: &mut Rng, t: &Target, udp_src: SocketAddrV4) -> Vec<u8> {
    let consistent = teredo_addr(rng, t.server, udp_src);
    match kind {
        Kind::RandomBytes => {
            let n = rng.below(1401);
            rng.bytes(n)
        }
        Kind::TruncatedIpv6 => {
            let mut p = echo(consistent, t.ipv6_dst, rng);
            p.truncate(1 + rng.below(39));
            p
        }
        Kind::LyingLength => {
            let mut p = echo(consistent, t.ipv6_dst, rng);
            let lie = rng.u16();
            p[4..6].copy_from_slice(&lie.to_be_bytes());
            if rng.chance(50) {
                let keep = 40 + rng.below(p.len() - 40);
                p.truncate(keep);
            }
            p
        }
        Kind::BadAuth => {
            // Indicator 0x0001, then lengths that promise more than follows.
            let mut p = vec![0, 1, rng.u8().max(1), rng.u8().max(1)];
            let n = rng.below(24);
            p.extend(rng.bytes(n));
            p
        }
        Kind::BadOrigin => {
            let mut p = vec![0, 0];
            let n = rng.below(10);
            p.extend(rng.bytes(n));
            if rng.chance(50) {
                p.extend_from_slice(&build_bubble(consistent, t.ipv6_dst)[..rng.below(41)]);
            }
            p
        }
        Kind::ForgedRa => {
            let mut p = Vec::new();
            let mut nonce = [0u8; 8];
            nonce.copy_from_slice(&rng.bytes(8));
            Auth {
                client_id: &[],
                auth_value: &[],
                nonce,
                confirmation: 0,
            }
            .emit(&mut p);
            // The origin: a mapping the attacker would like the client to
            // believe in.
            let fake = SocketAddrV4::new(global_v4(rng, true), rng.u16());
            Origin(fake).emit(&mut p);
            // A prefix naming the real server (or another one).
            let server = if rng.chance(50) {
                t.server
            } else {
                global_v4(rng, true)
            };
            let mut prefix = [0u8; 16];
            prefix[..4].copy_from_slice(&TEREDO_PREFIX.to_be_bytes());
            prefix[4..8].copy_from_slice(&server.octets());
            let ra = RouterAdvert {
                cur_hop_limit: 64,
                flags: 0,
                router_lifetime: 0,
                reachable_time: 0,
                retrans_timer: 2000,
                prefix: Some(PrefixInfo {
                    prefix_len: 64,
                    flags: 0x40,
                    valid_lifetime: u32::MAX,
                    preferred_lifetime: u32::MAX,
                    prefix: Ipv6Addr::from(prefix),
                }),
                prefix_count: 1,
                mtu: Some(1280 + u32::from(rng.u16() & 0x3ff)),
            };
            let src = Ipv6Addr::new(0xfe80, 0, 0, 0, 0x8000, 0xf227, 0xbec0, 0x1ffe);
            p.extend(icmpv6::build_packet(
                src,
                LINK_LOCAL_RESTRICTED,
                255,
                &Icmpv6Repr::RouterAdvert(ra),
            ));
            p
        }
        Kind::NonGlobalBubble => {
            let mapped = SocketAddrV4::new(non_global_v4(rng), rng.u16());
            let src = teredo_addr(rng, t.server, mapped);
            let mut p = Vec::new();
            if rng.chance(50) {
                Origin(mapped).emit(&mut p);
            }
            p.extend_from_slice(&build_bubble(src, t.ipv6_dst));
            p
        }
        Kind::IndirectBubble => {
            let mapped = SocketAddrV4::new(global_v4(rng, true), rng.u16().max(1024));
            let src = teredo_addr(rng, t.server, mapped);
            let mut p = Vec::new();
            Origin(mapped).emit(&mut p);
            p.extend_from_slice(&build_bubble(src, t.ipv6_dst));
            p
        }
        Kind::RoutingHeader => {
            // Routing header type 0 (RFC 2460 4.4, deprecated by RFC 5095):
            // next header, length 2 (one address), type 0, segments left 1,
            // reserved, then the address to bounce to.
            let bounce = random_peer(rng, t.server);
            let inner = echo(consistent, bounce, rng);
            let mut rh = vec![next_header::ICMPV6, 2, 0, 1, 0, 0, 0, 0];
            rh.extend_from_slice(&bounce.octets());
            rh.extend_from_slice(&inner[40..]);
            Ipv6Repr {
                src: consistent,
                dst: t.ipv6_dst,
                next_header: 43,
                payload_len: 0,
                hop_limit: 64,
                traffic_class: 0,
            }
            .build(&rh)
        }
        Kind::SpoofedTeredoSource => {
            let other = random_peer(rng, t.server);
            echo(other, t.ipv6_dst, rng)
        }
        Kind::Echo => echo(consistent, t.ipv6_dst, rng),
        Kind::RouterSolicit => {
            let mut p = Vec::new();
            let mut nonce = [0u8; 8];
            nonce.copy_from_slice(&rng.bytes(8));
            Auth {
                client_id: &[],
                auth_value: &[],
                nonce,
                confirmation: 0,
            }
            .emit(&mut p);
            p.extend(icmpv6::build_packet(
                LINK_LOCAL_RESTRICTED,
                libteredo::addr::ALL_ROUTERS,
                255,
                &Icmpv6Repr::RouterSolicit,
            ));
            p
        }
        Kind::ServerBubble => {
            let to = random_peer(rng, t.server);
            build_bubble(consistent, to).to_vec()
        }
    }
}

/// The IPv4 header checksum (RFC 791).
fn ipv4_checksum(h: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    for c in h.chunks(2) {
        let w = u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]);
        sum += u32::from(w);
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// A whole IPv4/UDP datagram from `src` to `dst` (UDP checksum 0: none,
/// which IPv4 allows), for a raw socket with IP_HDRINCL.
pub fn ipv4_udp(src: SocketAddrV4, dst: SocketAddrV4, payload: &[u8], ident: u16) -> Vec<u8> {
    let udp_len = 8 + payload.len();
    let total = 20 + udp_len;
    let mut p = Vec::with_capacity(total);
    p.extend_from_slice(&[0x45, 0]);
    p.extend_from_slice(&(total as u16).to_be_bytes());
    p.extend_from_slice(&ident.to_be_bytes());
    p.extend_from_slice(&[0x40, 0, 64, 17, 0, 0]);
    p.extend_from_slice(&src.ip().octets());
    p.extend_from_slice(&dst.ip().octets());
    let c = ipv4_checksum(&p[..20]);
    p[10..12].copy_from_slice(&c.to_be_bytes());
    p.extend_from_slice(&src.port().to_be_bytes());
    p.extend_from_slice(&dst.port().to_be_bytes());
    p.extend_from_slice(&(udp_len as u16).to_be_bytes());
    p.extend_from_slice(&[0, 0]);
    p.extend_from_slice(payload);
    p
}

/// Where the spoofed datagrams of a flood come from.
#[derive(Debug, Clone)]
pub enum Sources {
    /// A new random endpoint for each datagram: mostly global addresses
    /// outside the lab (198.19.0.0/16), one in eight not global.
    Random,
    /// One of these endpoints, at random (e.g. the server and the relay,
    /// the only sources a client's NAT lets in).
    Fixed(Vec<SocketAddrV4>),
}

impl Sources {
    pub fn pick(&self, rng: &mut Rng) -> SocketAddrV4 {
        match self {
            Sources::Random => {
                let a = if rng.chance(12) {
                    non_global_v4(rng)
                } else {
                    global_v4(rng, true)
                };
                let port = if rng.chance(25) {
                    TEREDO_PORT
                } else {
                    rng.u16().max(1)
                };
                SocketAddrV4::new(a, port)
            }
            Sources::Fixed(v) => v
                .get(rng.below(v.len()))
                .copied()
                .unwrap_or(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use libteredo::wire::teredo::TeredoPacket;

    fn target() -> Target {
        Target {
            server: Ipv4Addr::new(198, 18, 1, 1),
            ipv6_dst: "2001:db8:9::1".parse().unwrap(),
        }
    }

    #[test]
    fn every_kind_builds_and_replays() {
        let src = SocketAddrV4::new(Ipv4Addr::new(198, 19, 1, 2), 4000);
        for kind in Kind::ALL {
            let (mut a, mut b) = (Rng::new(7), Rng::new(7));
            for _ in 0..50 {
                let pa = payload(kind, &mut a, &target(), src);
                let pb = payload(kind, &mut b, &target(), src);
                assert_eq!(pa, pb, "{kind:?}");
                assert!(pa.len() <= 1500, "{kind:?}");
            }
        }
    }

    #[test]
    fn forged_ra_and_bubbles_parse_as_teredo() {
        let src = SocketAddrV4::new(Ipv4Addr::new(198, 19, 1, 2), 4000);
        let mut rng = Rng::new(3);
        let ra = payload(Kind::ForgedRa, &mut rng, &target(), src);
        let p = TeredoPacket::parse(&ra).expect("forged RA parses");
        assert!(p.auth.is_some() && p.origin.is_some());
        let bub = payload(Kind::IndirectBubble, &mut rng, &target(), src);
        let p = TeredoPacket::parse(&bub).expect("bubble parses");
        assert!(p.ipv6.is_bubble());
        let ng = payload(Kind::NonGlobalBubble, &mut rng, &target(), src);
        let p = TeredoPacket::parse(&ng).expect("bubble parses");
        let mapped = TeredoAddr::from_ipv6(&p.ipv6.src_addr()).mapped_addr;
        assert!(!is_global_v4(mapped), "{mapped}");
    }

    #[test]
    fn udp_header_and_checksum() {
        let p = ipv4_udp(
            SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 1), 1),
            SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 2), 3544),
            b"abc",
            7,
        );
        assert_eq!(p.len(), 31);
        assert_eq!(ipv4_checksum(&p[..20]), 0);
        assert_eq!(&p[22..24], &3544u16.to_be_bytes());
    }

    #[test]
    fn address_classes() {
        let mut rng = Rng::new(9);
        for _ in 0..1000 {
            assert!(!is_global_v4(non_global_v4(&mut rng)));
            assert!(is_global_v4(global_v4(&mut rng, false)));
            let t = TeredoAddr::parse(&random_peer(&mut rng, Ipv4Addr::new(198, 18, 1, 1)))
                .expect("Teredo");
            assert_eq!(t.mapped_addr.octets()[..2], [198, 19]);
        }
    }
}
