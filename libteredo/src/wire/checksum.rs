//! The Internet checksum (RFC 1071) and the IPv6 pseudo-header (RFC 8200 8.1).

use std::net::Ipv6Addr;

/// Adds `data` to a running one's-complement sum (not yet folded).
pub fn sum(mut acc: u32, data: &[u8]) -> u32 {
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        acc = acc.wrapping_add(u32::from(u16::from_be_bytes([c[0], c[1]])));
    }
    if let [last] = chunks.remainder() {
        acc = acc.wrapping_add(u32::from(*last) << 8);
    }
    acc
}

/// Folds a running sum to 16 bits and complements it.
pub fn finish(mut acc: u32) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    !(acc as u16)
}

/// The sum of the IPv6 pseudo-header for an upper-layer packet.
pub fn pseudo_header(src: &Ipv6Addr, dst: &Ipv6Addr, next_header: u8, len: u32) -> u32 {
    let mut acc = sum(0, &src.octets());
    acc = sum(acc, &dst.octets());
    acc = acc.wrapping_add(len >> 16).wrapping_add(len & 0xffff);
    acc.wrapping_add(u32::from(next_header))
}

/// The checksum of an upper-layer message (checksum field zeroed or not:
/// a message carrying its correct checksum sums to zero).
pub fn upper_layer(src: &Ipv6Addr, dst: &Ipv6Addr, next_header: u8, data: &[u8]) -> u16 {
    let len = u32::try_from(data.len()).unwrap_or(u32::MAX);
    finish(sum(pseudo_header(src, dst, next_header, len), data))
}

/// Repairs the UDP checksum of a UDP/IPv6 packet (no extension headers)
/// whose checksum field is zero, which IPv6 forbids (RFC 8200 8.1: a
/// receiver drops such a datagram and counts a checksum error). Returns
/// whether the packet was changed.
///
/// A packet read from a TUN device opened with virtio-net headers can
/// carry one: the kernel leaves the checksum to the reader (checksum
/// offload), and tun-rs (2.8) completes it without turning a computed zero
/// into 0xffff as UDP requires, so one UDP datagram in 65,536 on average
/// left our daemons with a zero checksum and was dropped at its
/// destination. The checksum is computed afresh (not merely set to 0xffff),
/// so that a datagram sent without a checksum on purpose gets a correct
/// one too.
pub fn repair_zero_udp6(packet: &mut [u8]) -> bool {
    const HDR: usize = 40;
    if packet.len() < HDR + 8 || packet[0] >> 4 != 6 || packet[6] != 17 {
        return false;
    }
    let plen = usize::from(u16::from_be_bytes([packet[4], packet[5]]));
    if plen < 8 || HDR + plen > packet.len() || packet[HDR + 6..HDR + 8] != [0, 0] {
        return false;
    }
    let mut src = [0u8; 16];
    let mut dst = [0u8; 16];
    src.copy_from_slice(&packet[8..24]);
    dst.copy_from_slice(&packet[24..40]);
    let c = upper_layer(
        &Ipv6Addr::from(src),
        &Ipv6Addr::from(dst),
        17,
        &packet[HDR..HDR + plen],
    );
    let c = if c == 0 { 0xffff } else { c };
    packet[HDR + 6..HDR + 8].copy_from_slice(&c.to_be_bytes());
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A UDP/IPv6 packet from `payload`, checksum field zero.
    fn udp6(payload: &[u8]) -> Vec<u8> {
        let src: Ipv6Addr = "2001:db8:41::1".parse().unwrap();
        let dst: Ipv6Addr = "2001:0:c612:101:3b:14e9:39ed:fcfe".parse().unwrap();
        let ulen = 8 + payload.len();
        let mut p = vec![0x60, 0, 0, 0];
        p.extend_from_slice(&(ulen as u16).to_be_bytes());
        p.extend_from_slice(&[17, 64]);
        p.extend_from_slice(&src.octets());
        p.extend_from_slice(&dst.octets());
        p.extend_from_slice(&5200u16.to_be_bytes());
        p.extend_from_slice(&6200u16.to_be_bytes());
        p.extend_from_slice(&(ulen as u16).to_be_bytes());
        p.extend_from_slice(&[0, 0]);
        p.extend_from_slice(payload);
        p
    }

    /// The UDP checksum computed over `p` as it stands.
    fn computed(p: &[u8]) -> u16 {
        let src = Ipv6Addr::from(<[u8; 16]>::try_from(&p[8..24]).unwrap());
        let dst = Ipv6Addr::from(<[u8; 16]>::try_from(&p[24..40]).unwrap());
        upper_layer(&src, &dst, 17, &p[40..])
    }

    fn verifies(p: &[u8]) -> bool {
        p[46..48] != [0, 0] && computed(p) == 0
    }

    /// What a checksum-offload reader that does not map zero to 0xffff
    /// (tun-rs 2.8, `gso_none_checksum`) writes: the plain complement.
    fn offload_complete(p: &mut [u8]) {
        let c = computed(p);
        p[46..48].copy_from_slice(&c.to_be_bytes());
    }

    #[test]
    fn a_udp6_checksum_that_computes_to_zero_is_sent_as_ffff() {
        // Two payload bytes chosen so that the packet's checksum computes
        // to zero (its data then sums to 0xffff).
        let mut p = udp6(&[0x12, 0x34, 0x56, 0x78, 0, 0]);
        let n = p.len();
        let c = computed(&p);
        // Adding the checksum's value to the data makes it sum to 0xffff.
        p[n - 2..].copy_from_slice(&c.to_be_bytes());
        offload_complete(&mut p);
        assert_eq!(&p[46..48], &[0, 0], "the offload completion wrote zero");
        assert!(!verifies(&p), "a zero UDP/IPv6 checksum is invalid");
        assert!(repair_zero_udp6(&mut p));
        assert_eq!(&p[46..48], &[0xff, 0xff]);
        assert!(verifies(&p));
    }

    #[test]
    fn repair_leaves_other_packets_alone() {
        let mut p = udp6(b"hello");
        offload_complete(&mut p);
        assert!(verifies(&p));
        let before = p.clone();
        assert!(!repair_zero_udp6(&mut p));
        assert_eq!(p, before);
        // A datagram sent without a checksum gets a correct one.
        let mut z = udp6(b"hello");
        assert!(repair_zero_udp6(&mut z));
        assert!(verifies(&z));
        // Not UDP, too short, a length beyond the buffer: untouched.
        let mut t = udp6(b"hello");
        t[6] = 6;
        assert!(!repair_zero_udp6(&mut t));
        assert!(!repair_zero_udp6(&mut t[..47]));
        let mut l = udp6(b"hello");
        l[4..6].copy_from_slice(&1000u16.to_be_bytes());
        assert!(!repair_zero_udp6(&mut l));
    }

    #[test]
    fn rfc1071_example() {
        // RFC 1071 section 3 example: 00 01 f2 03 f4 f5 f6 f7 sums to ddf2.
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(finish(sum(0, &data)), !0xddf2);
    }

    #[test]
    fn odd_length() {
        assert_eq!(finish(sum(0, &[0x12])), !0x1200);
    }
}
