//! Teredo trailers (RFC 6081 section 4): options after the IPv6 packet in
//! the UDP payload of a bubble. Each is `type (1) | length (1) | value`,
//! the length counting the value only. Peers that know only RFC 4380 stop
//! at the end of the IPv6 packet and never see them.

use std::net::{Ipv4Addr, SocketAddrV4};

/// Option types.
pub mod option {
    pub const NONCE: u8 = 0x01;
    pub const ALTERNATE_ADDRESS: u8 = 0x03;
    pub const NEIGHBOR_DISCOVERY: u8 = 0x04;
    pub const RANDOM_PORT: u8 = 0x05;
}

/// Neighbour-discovery option values (server load reduction).
pub mod discovery {
    pub const SOLICITATION: u8 = 0x00;
    pub const ADVERTISEMENT: u8 = 0x01;
}

/// At most this many alternate addresses are read or written.
pub const MAX_ALTERNATES: usize = 4;

/// The options of a trailer this implementation understands. Unknown
/// options are skipped; a malformed trailer (an option running past the
/// end, a bad length for a known type) is ignored as a whole.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Trailer {
    pub nonce: Option<[u8; 4]>,
    /// Alternate addresses (hairpinning), `alternates_len` of them valid.
    pub alternates: [Option<SocketAddrV4>; MAX_ALTERNATES],
    pub neighbor_discovery: Option<u8>,
    pub random_port: Option<u16>,
}

impl Trailer {
    /// Parses the bytes after an IPv6 packet. Never fails: what cannot be
    /// understood is left out (RFC 6081: unknown options are skipped).
    pub fn parse(mut b: &[u8]) -> Trailer {
        let mut t = Trailer::default();
        while let [kind, len, rest @ ..] = b {
            let len = usize::from(*len);
            let Some(value) = rest.get(..len) else {
                return Trailer::default();
            };
            match *kind {
                option::NONCE if len == 4 && t.nonce.is_none() => {
                    t.nonce = Some([value[0], value[1], value[2], value[3]]);
                }
                option::ALTERNATE_ADDRESS if len >= 8 && (len - 2) % 6 == 0 => {
                    let entries = value[2..].chunks_exact(6);
                    let mut n = t.alternates.iter().filter(|a| a.is_some()).count();
                    for e in entries {
                        let port = u16::from_be_bytes([e[4], e[5]]);
                        let ip = Ipv4Addr::new(e[0], e[1], e[2], e[3]);
                        if port != 0
                            && n < MAX_ALTERNATES
                            && !ip.is_unspecified()
                            && !ip.is_broadcast()
                            && !ip.is_multicast()
                        {
                            t.alternates[n] = Some(SocketAddrV4::new(ip, port));
                            n += 1;
                        }
                    }
                }
                option::NEIGHBOR_DISCOVERY if len == 4 && t.neighbor_discovery.is_none() => {
                    t.neighbor_discovery = Some(value[0]);
                }
                option::RANDOM_PORT if len == 2 && t.random_port.is_none() => {
                    t.random_port = Some(u16::from_be_bytes([value[0], value[1]]));
                }
                _ => {}
            }
            b = &rest[len..];
        }
        if !b.is_empty() {
            // A single stray byte: not a trailer.
            return Trailer::default();
        }
        t
    }

    /// Whether any option was present.
    pub fn is_empty(&self) -> bool {
        *self == Trailer::default()
    }

    /// The alternate addresses present.
    pub fn alternates(&self) -> impl Iterator<Item = SocketAddrV4> + '_ {
        self.alternates.iter().flatten().copied()
    }

    /// Appends the encoding to `out`.
    pub fn emit(&self, out: &mut Vec<u8>) {
        if let Some(n) = self.nonce {
            out.extend_from_slice(&[option::NONCE, 4]);
            out.extend_from_slice(&n);
        }
        let alts: Vec<SocketAddrV4> = self.alternates().collect();
        if !alts.is_empty() {
            out.extend_from_slice(&[option::ALTERNATE_ADDRESS, (2 + 6 * alts.len()) as u8, 0, 0]);
            for a in alts {
                out.extend_from_slice(&a.ip().octets());
                out.extend_from_slice(&a.port().to_be_bytes());
            }
        }
        if let Some(d) = self.neighbor_discovery {
            out.extend_from_slice(&[option::NEIGHBOR_DISCOVERY, 4, d, 0, 0, 0]);
        }
        if let Some(p) = self.random_port {
            out.extend_from_slice(&[option::RANDOM_PORT, 2]);
            out.extend_from_slice(&p.to_be_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_every_option() {
        let mut t = Trailer {
            nonce: Some([1, 2, 3, 4]),
            neighbor_discovery: Some(discovery::SOLICITATION),
            random_port: Some(40001),
            ..Trailer::default()
        };
        t.alternates[0] = Some(SocketAddrV4::new(Ipv4Addr::new(192, 168, 1, 2), 3544));
        t.alternates[1] = Some(SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 9), 5000));
        let mut b = Vec::new();
        t.emit(&mut b);
        assert_eq!(&b[..6], &[1, 4, 1, 2, 3, 4]);
        assert_eq!(&b[6..10], &[3, 14, 0, 0]);
        assert_eq!(Trailer::parse(&b), t);
    }

    #[test]
    fn unknown_skipped_malformed_ignored() {
        // Unknown type 0x02 with 3 bytes, then a nonce.
        let b = [2, 3, 9, 9, 9, 1, 4, 5, 6, 7, 8];
        assert_eq!(Trailer::parse(&b).nonce, Some([5, 6, 7, 8]));
        // An option running past the end: nothing.
        assert!(Trailer::parse(&[1, 4, 5, 6]).is_empty());
        // A stray byte: nothing.
        assert!(Trailer::parse(&[1, 4, 5, 6, 7, 8, 0]).is_empty());
        // Bad lengths for known types are skipped.
        assert!(Trailer::parse(&[1, 3, 5, 6, 7]).is_empty());
        assert!(Trailer::parse(&[3, 7, 0, 0, 1, 2, 3, 4, 5]).is_empty());
        // Port 0 and multicast alternates are dropped.
        let b = [3, 14, 0, 0, 1, 2, 3, 4, 0, 0, 224, 0, 0, 1, 1, 1];
        assert_eq!(Trailer::parse(&b).alternates().count(), 0);
    }

    #[test]
    fn empty_is_empty() {
        assert!(Trailer::parse(&[]).is_empty());
        let mut b = Vec::new();
        Trailer::default().emit(&mut b);
        assert!(b.is_empty());
    }
}
