//! Teredo addresses (RFC 4380 section 4, flags as updated by RFC 5991).
//!
//! ```text
//! | prefix (32) | server IPv4 (32) | flags (16) | port ^ 0xFFFF (16) | IPv4 ^ 0xFFFFFFFF (32) |
//! ```

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV4};

/// The Teredo service port (RFC 4380 section 2.9).
pub const TEREDO_PORT: u16 = 3544;

/// The Teredo IPv6 service prefix, 2001::/32, as its first 32 bits.
pub const TEREDO_PREFIX: u32 = 0x2001_0000;

/// Teredo IPv4 discovery address (RFC 4380 section 2.17).
pub const DISCOVERY_ADDR: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 253);

/// The cone flag (RFC 4380 section 4).
pub const FLAG_CONE: u16 = 0x8000;

/// The bits of the flags field that RFC 5991 section 3 makes random:
/// `C R A A A A U G A A A A A A A A`.
pub const FLAGS_RANDOM_MASK: u16 = 0x3CFF;

/// Link-local address used by a client that is not behind a cone NAT, and
/// by miredo for the interface (`fe80::ffff:ffff:ffff`).
pub const LINK_LOCAL_RESTRICTED: Ipv6Addr =
    Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0xffff, 0xffff, 0xffff);

/// Link-local address carrying the cone bit (`fe80::8000:ffff:ffff:ffff`).
pub const LINK_LOCAL_CONE: Ipv6Addr =
    Ipv6Addr::new(0xfe80, 0, 0, 0, 0x8000, 0xffff, 0xffff, 0xffff);

/// All-routers link-local multicast, ff02::2.
pub const ALL_ROUTERS: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 2);

/// All-nodes link-local multicast, ff02::1.
pub const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);

/// The decoded content of a Teredo address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TeredoAddr {
    /// First 32 bits (2001:0000 for the standard prefix).
    pub prefix: u32,
    /// The client's Teredo server.
    pub server: Ipv4Addr,
    /// The 16-bit flags field, as on the wire.
    pub flags: u16,
    /// The client's mapped (public) UDP port, not obfuscated.
    pub mapped_port: u16,
    /// The client's mapped (public) IPv4 address, not obfuscated.
    pub mapped_addr: Ipv4Addr,
}

impl TeredoAddr {
    /// Decodes any IPv6 address as a Teredo address, whatever its prefix.
    pub fn from_ipv6(addr: &Ipv6Addr) -> Self {
        let o = addr.octets();
        TeredoAddr {
            prefix: u32::from_be_bytes([o[0], o[1], o[2], o[3]]),
            server: Ipv4Addr::new(o[4], o[5], o[6], o[7]),
            flags: u16::from_be_bytes([o[8], o[9]]),
            mapped_port: !u16::from_be_bytes([o[10], o[11]]),
            mapped_addr: Ipv4Addr::new(!o[12], !o[13], !o[14], !o[15]),
        }
    }

    /// Decodes `addr` if it lies inside the given 32-bit prefix.
    pub fn parse_with_prefix(addr: &Ipv6Addr, prefix: u32) -> Option<Self> {
        let t = Self::from_ipv6(addr);
        (t.prefix == prefix).then_some(t)
    }

    /// Decodes `addr` if it lies inside 2001::/32.
    pub fn parse(addr: &Ipv6Addr) -> Option<Self> {
        Self::parse_with_prefix(addr, TEREDO_PREFIX)
    }

    /// Encodes (with the obfuscation of port and address).
    pub fn to_ipv6(&self) -> Ipv6Addr {
        let p = self.prefix.to_be_bytes();
        let s = self.server.octets();
        let f = self.flags.to_be_bytes();
        let port = (!self.mapped_port).to_be_bytes();
        let m = self.mapped_addr.octets();
        Ipv6Addr::from([
            p[0], p[1], p[2], p[3], s[0], s[1], s[2], s[3], f[0], f[1], port[0], port[1], !m[0],
            !m[1], !m[2], !m[3],
        ])
    }

    /// The client's mapped endpoint.
    pub fn mapped(&self) -> SocketAddrV4 {
        SocketAddrV4::new(self.mapped_addr, self.mapped_port)
    }

    /// Whether the cone flag is set.
    pub fn is_cone(&self) -> bool {
        self.flags & FLAG_CONE != 0
    }

    /// Whether the flags obey RFC 5991: R, U and G are zero.
    /// (The cone bit may be set by older peers; it is accepted.)
    pub fn flags_valid_rfc5991(&self) -> bool {
        self.flags & !(FLAGS_RANDOM_MASK | FLAG_CONE) == 0
    }

    /// Whether the address is valid for use as a peer under RFC 4380:
    /// both the server and the mapped IPv4 must be global unicast.
    pub fn is_valid_peer(&self) -> bool {
        is_global_unicast_v4(self.mapped_addr) && is_global_unicast_v4(self.server)
    }
}

/// Builds the flags of a new client address under RFC 5991: cone bit clear,
/// R, U and G clear, the twelve `A` bits taken from `random`.
pub fn random_flags(random: u16) -> u16 {
    random & FLAGS_RANDOM_MASK
}

/// The Teredo prefix of a server: `prefix(32) | server IPv4(32)`, as the
/// first 64 bits of an address.
pub fn server_prefix(prefix: u32, server: Ipv4Addr) -> [u8; 8] {
    let p = prefix.to_be_bytes();
    let s = server.octets();
    [p[0], p[1], p[2], p[3], s[0], s[1], s[2], s[3]]
}

/// The Teredo link-local server address of RFC 4380 section 5.3.2 (cone bit
/// set, mapped port and address of the server itself, obfuscated).
pub fn server_link_local(server: Ipv4Addr) -> Ipv6Addr {
    let port = (!TEREDO_PORT).to_be_bytes();
    let s = server.octets();
    Ipv6Addr::from([
        0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0x80, 0, port[0], port[1], !s[0], !s[1], !s[2], !s[3],
    ])
}

/// Whether `addr` is a global unicast IPv4 address in the sense of RFC 4380
/// section 5.2.4. 198.18.0.0/15 (benchmarking) counts as global, as it does
/// for the C miredo.
pub fn is_global_unicast_v4(addr: Ipv4Addr) -> bool {
    let o = addr.octets();
    !(o[0] == 0
        || o[0] == 10
        || o[0] == 127
        || (o[0] == 169 && o[1] == 254)
        || (o[0] == 172 && (o[1] & 0xf0) == 16)
        || (o[0] == 192 && o[1] == 168)
        || (o[0] == 192 && o[1] == 88 && o[2] == 99)
        || o[0] >= 224)
}

/// Whether an IPv6 address is link-local unicast (fe80::/10).
pub fn is_link_local_v6(addr: &Ipv6Addr) -> bool {
    addr.segments()[0] & 0xffc0 == 0xfe80
}

/// Whether an IPv6 address has global scope: not unspecified, loopback,
/// link-local, site-local, unique-local, multicast or IPv4-mapped.
pub fn is_global_v6(addr: &Ipv6Addr) -> bool {
    let s = addr.segments();
    !(addr.is_unspecified()
        || addr.is_loopback()
        || addr.is_multicast()
        || s[0] & 0xffc0 == 0xfe80
        || s[0] & 0xffc0 == 0xfec0
        || s[0] & 0xfe00 == 0xfc00
        || (s[0..5] == [0, 0, 0, 0, 0] && s[5] == 0xffff))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc4380_example() {
        // RFC 4380 section 4: server 65.54.227.120, cone, port 40000,
        // client 192.0.2.45.
        let a: Ipv6Addr = "2001:0:4136:e378:8000:63bf:3fff:fdd2".parse().unwrap();
        let t = TeredoAddr::parse(&a).unwrap();
        assert_eq!(t.server, Ipv4Addr::new(65, 54, 227, 120));
        assert!(t.is_cone());
        assert_eq!(t.mapped_port, 40000);
        assert_eq!(t.mapped_addr, Ipv4Addr::new(192, 0, 2, 45));
        assert_eq!(t.to_ipv6(), a);
    }

    #[test]
    fn origin_example_obfuscation() {
        // RFC 4380 5.1.1: port 337 and 1.2.3.4 give FEAE FEFDFCFB.
        let t = TeredoAddr {
            prefix: TEREDO_PREFIX,
            server: Ipv4Addr::new(1, 1, 1, 1),
            flags: 0,
            mapped_port: 337,
            mapped_addr: Ipv4Addr::new(1, 2, 3, 4),
        };
        let o = t.to_ipv6().octets();
        assert_eq!(&o[10..16], &[0xfe, 0xae, 0xfe, 0xfd, 0xfc, 0xfb]);
    }

    #[test]
    fn not_teredo() {
        let a: Ipv6Addr = "2001:db8::1".parse().unwrap();
        assert!(TeredoAddr::parse(&a).is_none());
        assert!(TeredoAddr::parse_with_prefix(&a, 0x2001_0db8).is_some());
    }

    #[test]
    fn global_rule() {
        for bad in [
            "0.1.2.3",
            "10.0.0.1",
            "127.0.0.1",
            "169.254.1.1",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.2",
            "192.88.99.1",
            "224.0.0.253",
            "239.1.1.1",
            "255.255.255.255",
            "240.0.0.1",
        ] {
            assert!(!is_global_unicast_v4(bad.parse().unwrap()), "{bad}");
        }
        for good in [
            "1.2.3.4",
            "172.15.0.1",
            "172.32.0.1",
            "192.88.98.1",
            "198.18.1.1",
            "198.19.0.1",
            "65.54.227.120",
            "223.255.255.254",
        ] {
            assert!(is_global_unicast_v4(good.parse().unwrap()), "{good}");
        }
    }

    #[test]
    fn rfc5991_flags() {
        assert_eq!(random_flags(0xffff), 0x3cff);
        assert_eq!(random_flags(0xffff) & FLAG_CONE, 0);
        let t = TeredoAddr::from_ipv6(&"2001:0:102:304:3cff::".parse().unwrap());
        assert!(t.flags_valid_rfc5991());
        let t = TeredoAddr::from_ipv6(&"2001:0:102:304:4000::".parse().unwrap());
        assert!(!t.flags_valid_rfc5991());
    }

    #[test]
    fn server_link_local_has_cone_bit() {
        let ll = server_link_local(Ipv4Addr::new(198, 18, 1, 1));
        assert!(is_link_local_v6(&ll));
        let t = TeredoAddr::from_ipv6(&ll);
        assert!(t.is_cone());
        assert_eq!(t.mapped_port, TEREDO_PORT);
        assert_eq!(t.mapped_addr, Ipv4Addr::new(198, 18, 1, 1));
    }

    #[test]
    fn scope_v6() {
        assert!(is_global_v6(&"2001:db8:9::1".parse().unwrap()));
        assert!(!is_global_v6(&"fe80::1".parse().unwrap()));
        assert!(!is_global_v6(&"ff02::1".parse().unwrap()));
        assert!(!is_global_v6(&"::1".parse().unwrap()));
        assert!(!is_global_v6(&"fd00::1".parse().unwrap()));
    }
}
