//! The IPv6 header (RFC 8200) and its extension-header chain.

use super::{Error, Result};
use std::net::Ipv6Addr;

/// Length of the fixed IPv6 header.
pub const HEADER_LEN: usize = 40;

/// Next-header values this crate cares about.
pub mod next_header {
    pub const HOP_BY_HOP: u8 = 0;
    pub const TCP: u8 = 6;
    pub const UDP: u8 = 17;
    pub const ROUTING: u8 = 43;
    pub const FRAGMENT: u8 = 44;
    pub const ICMPV6: u8 = 58;
    pub const NO_NEXT_HEADER: u8 = 59;
    pub const DEST_OPTS: u8 = 60;
}

mod field {
    use std::ops::Range;
    pub const VER_TC_FLOW: Range<usize> = 0..4;
    pub const PAYLOAD_LEN: Range<usize> = 4..6;
    pub const NEXT_HEADER: usize = 6;
    pub const HOP_LIMIT: usize = 7;
    pub const SRC: Range<usize> = 8..24;
    pub const DST: Range<usize> = 24..40;
}

/// A view of an IPv6 packet. [`Ipv6Packet::new_checked`] guarantees the
/// version is 6 and the buffer holds the whole payload; bytes after the
/// payload (an RFC 6081 trailer) are allowed and exposed by
/// [`Ipv6Packet::trailer`].
#[derive(Clone, Copy, Debug)]
pub struct Ipv6Packet<T: AsRef<[u8]>> {
    buffer: T,
}

fn addr_at(b: &[u8], r: std::ops::Range<usize>) -> Ipv6Addr {
    let mut o = [0u8; 16];
    o.copy_from_slice(&b[r]);
    Ipv6Addr::from(o)
}

impl<T: AsRef<[u8]>> Ipv6Packet<T> {
    /// Wraps a buffer without checking it; accessors may panic on a short
    /// buffer. Use only on buffers this crate built.
    pub fn new_unchecked(buffer: T) -> Self {
        Ipv6Packet { buffer }
    }

    /// Wraps and validates: at least 40 bytes, version 6, payload length
    /// within the buffer.
    pub fn new_checked(buffer: T) -> Result<Self> {
        let b = buffer.as_ref();
        if b.len() < HEADER_LEN {
            return Err(Error::Truncated);
        }
        if b[0] >> 4 != 6 {
            return Err(Error::BadVersion);
        }
        let plen = usize::from(u16::from_be_bytes([b[4], b[5]]));
        if HEADER_LEN + plen > b.len() {
            return Err(Error::BadLength);
        }
        Ok(Ipv6Packet { buffer })
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    pub fn traffic_class(&self) -> u8 {
        let b = &self.buffer.as_ref()[field::VER_TC_FLOW];
        (b[0] << 4) | (b[1] >> 4)
    }

    /// The ECN bits of the traffic class (RFC 3168).
    pub fn ecn(&self) -> u8 {
        self.traffic_class() & 0x03
    }

    pub fn flow_label(&self) -> u32 {
        let b = &self.buffer.as_ref()[field::VER_TC_FLOW];
        u32::from_be_bytes([0, b[1] & 0x0f, b[2], b[3]])
    }

    pub fn payload_len(&self) -> u16 {
        let b = &self.buffer.as_ref()[field::PAYLOAD_LEN];
        u16::from_be_bytes([b[0], b[1]])
    }

    pub fn next_header(&self) -> u8 {
        self.buffer.as_ref()[field::NEXT_HEADER]
    }

    pub fn hop_limit(&self) -> u8 {
        self.buffer.as_ref()[field::HOP_LIMIT]
    }

    pub fn src_addr(&self) -> Ipv6Addr {
        addr_at(self.buffer.as_ref(), field::SRC)
    }

    pub fn dst_addr(&self) -> Ipv6Addr {
        addr_at(self.buffer.as_ref(), field::DST)
    }

    /// The payload, exactly `payload_len` bytes.
    pub fn payload(&self) -> &[u8] {
        let end = HEADER_LEN + usize::from(self.payload_len());
        &self.buffer.as_ref()[HEADER_LEN..end]
    }

    /// The header and payload, without any trailer.
    pub fn packet(&self) -> &[u8] {
        let end = HEADER_LEN + usize::from(self.payload_len());
        &self.buffer.as_ref()[..end]
    }

    /// Bytes after the payload (RFC 6081 trailer), usually empty.
    pub fn trailer(&self) -> &[u8] {
        let end = HEADER_LEN + usize::from(self.payload_len());
        &self.buffer.as_ref()[end..]
    }

    /// Whether this is a Teredo bubble: no next header and an empty payload
    /// (RFC 4380 section 2.8).
    pub fn is_bubble(&self) -> bool {
        self.next_header() == next_header::NO_NEXT_HEADER && self.payload_len() == 0
    }

    /// Walks the extension-header chain and returns the upper-layer protocol
    /// and its offset in the payload, together with whether a routing header
    /// with segments left is present (CVE-2006-6263: never forward on its
    /// behalf).
    pub fn upper_layer(&self) -> Result<UpperLayer> {
        let payload = self.payload();
        let mut nh = self.next_header();
        let mut off = 0usize;
        let mut routing_segments_left = false;
        let mut fragment = false;
        let mut later_fragment = false;
        // A chain can't be longer than the payload in 8-byte units; the
        // bound also stops any loop.
        for _ in 0..=payload.len() / 8 {
            match nh {
                next_header::HOP_BY_HOP | next_header::ROUTING | next_header::DEST_OPTS => {
                    let h = payload.get(off..off + 2).ok_or(Error::BadExtensionHeader)?;
                    let len = (usize::from(h[1]) + 1) * 8;
                    let ext = payload
                        .get(off..off + len)
                        .ok_or(Error::BadExtensionHeader)?;
                    if nh == next_header::ROUTING && ext.get(3).is_some_and(|s| *s != 0) {
                        routing_segments_left = true;
                    }
                    if nh == next_header::HOP_BY_HOP && off != 0 {
                        return Err(Error::BadExtensionHeader);
                    }
                    nh = h[0];
                    off += len;
                }
                next_header::FRAGMENT => {
                    let h = payload.get(off..off + 8).ok_or(Error::BadExtensionHeader)?;
                    fragment = true;
                    nh = h[0];
                    off += 8;
                    // Only the first fragment carries the upper layer; stop.
                    let frag_off = u16::from_be_bytes([h[2], h[3]]) >> 3;
                    if frag_off != 0 {
                        later_fragment = true;
                        break;
                    }
                }
                _ => break,
            }
        }
        Ok(UpperLayer {
            protocol: nh,
            offset: off,
            routing_segments_left,
            fragment,
            later_fragment,
        })
    }
}

/// What lies after the extension headers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UpperLayer {
    /// The upper-layer protocol (next header of the last extension header).
    pub protocol: u8,
    /// Its offset within the IPv6 payload.
    pub offset: usize,
    /// A routing header with segments left > 0 is in the chain.
    pub routing_segments_left: bool,
    /// A fragment header is in the chain.
    pub fragment: bool,
    /// The fragment has a non-zero offset: the bytes at `offset` are the
    /// middle of the upper-layer message, not its header.
    pub later_fragment: bool,
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv6Packet<T> {
    pub fn set_traffic_class(&mut self, tc: u8) {
        let b = &mut self.buffer.as_mut()[field::VER_TC_FLOW];
        b[0] = (b[0] & 0xf0) | (tc >> 4);
        b[1] = (b[1] & 0x0f) | (tc << 4);
    }

    /// Sets the 20-bit flow label (higher bits of `label` are ignored).
    pub fn set_flow_label(&mut self, label: u32) {
        let l = label.to_be_bytes();
        let b = &mut self.buffer.as_mut()[field::VER_TC_FLOW];
        b[1] = (b[1] & 0xf0) | (l[1] & 0x0f);
        b[2] = l[2];
        b[3] = l[3];
    }

    pub fn set_hop_limit(&mut self, h: u8) {
        self.buffer.as_mut()[field::HOP_LIMIT] = h;
    }

    pub fn payload_mut(&mut self) -> &mut [u8] {
        let end = HEADER_LEN + usize::from(self.payload_len());
        &mut self.buffer.as_mut()[HEADER_LEN..end]
    }
}

/// The meaning of an IPv6 header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ipv6Repr {
    pub src: Ipv6Addr,
    pub dst: Ipv6Addr,
    pub next_header: u8,
    pub payload_len: u16,
    pub hop_limit: u8,
    pub traffic_class: u8,
}

impl Ipv6Repr {
    pub fn parse<T: AsRef<[u8]>>(p: &Ipv6Packet<T>) -> Self {
        Ipv6Repr {
            src: p.src_addr(),
            dst: p.dst_addr(),
            next_header: p.next_header(),
            payload_len: p.payload_len(),
            hop_limit: p.hop_limit(),
            traffic_class: p.traffic_class(),
        }
    }

    /// Writes the 40-byte header into `buf[..40]`. Flow label is zero.
    /// Returns `Error::Truncated` if `buf` is shorter than 40 bytes.
    pub fn emit(&self, buf: &mut [u8]) -> Result<()> {
        let h = buf.get_mut(..HEADER_LEN).ok_or(Error::Truncated)?;
        h[0] = 0x60 | (self.traffic_class >> 4);
        h[1] = self.traffic_class << 4;
        h[2] = 0;
        h[3] = 0;
        h[field::PAYLOAD_LEN].copy_from_slice(&self.payload_len.to_be_bytes());
        h[field::NEXT_HEADER] = self.next_header;
        h[field::HOP_LIMIT] = self.hop_limit;
        h[field::SRC].copy_from_slice(&self.src.octets());
        h[field::DST].copy_from_slice(&self.dst.octets());
        Ok(())
    }

    /// Builds header plus payload into a new vector; `payload_len` is set
    /// from the payload. A payload longer than 65535 bytes (a jumbogram,
    /// which Teredo cannot carry) is cut to 65535 so that the length field
    /// always tells the truth.
    pub fn build(&self, payload: &[u8]) -> Vec<u8> {
        let payload = payload.get(..usize::from(u16::MAX)).unwrap_or(payload);
        let mut v = Vec::with_capacity(HEADER_LEN + payload.len());
        v.resize(HEADER_LEN, 0);
        let mut repr = *self;
        repr.payload_len = u16::try_from(payload.len()).unwrap_or(u16::MAX);
        // The buffer is 40 bytes long: emit cannot fail.
        let _ = repr.emit(&mut v);
        v.extend_from_slice(payload);
        v
    }
}

/// The hop limit of the bubbles the C miredo sends (and so do we): zero.
/// RFC 4380 2.8 leaves it open; a bubble is never forwarded as IPv6, and a
/// zero hop limit guarantees that even a leaked one goes no further.
pub const BUBBLE_HOP_LIMIT: u8 = 0;

/// Builds a bubble: an IPv6 header with no next header and no payload
/// (RFC 4380 section 2.8), hop limit [`BUBBLE_HOP_LIMIT`], byte for byte
/// what the C miredo sends.
pub fn build_bubble(src: Ipv6Addr, dst: Ipv6Addr) -> [u8; HEADER_LEN] {
    build_bubble_with_hop_limit(src, dst, BUBBLE_HOP_LIMIT)
}

/// Builds a bubble with the given hop limit (a local discovery bubble has
/// hop limit 1, RFC 4380 5.2.8).
pub fn build_bubble_with_hop_limit(
    src: Ipv6Addr,
    dst: Ipv6Addr,
    hop_limit: u8,
) -> [u8; HEADER_LEN] {
    let mut b = [0u8; HEADER_LEN];
    let repr = Ipv6Repr {
        src,
        dst,
        next_header: next_header::NO_NEXT_HEADER,
        payload_len: 0,
        hop_limit,
        traffic_class: 0,
    };
    // The buffer is exactly 40 bytes: emit cannot fail.
    let _ = repr.emit(&mut b);
    b
}

/// The all-nodes link-local multicast address (RFC 4291 2.7.1), where a
/// local discovery bubble goes.
pub const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
/// The hop limit of a local discovery bubble (RFC 4380 5.2.8): it stays on
/// the link.
pub const DISCOVERY_HOP_LIMIT: u8 = 1;

/// Builds a local discovery bubble (RFC 4380 5.2.8): from our Teredo
/// address `src` to [`ALL_NODES`], hop limit [`DISCOVERY_HOP_LIMIT`], no
/// payload.
pub fn build_discovery_bubble(src: Ipv6Addr) -> [u8; HEADER_LEN] {
    build_bubble_with_hop_limit(src, ALL_NODES, DISCOVERY_HOP_LIMIT)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The direct bubble the C miredo client sent to the C relay in the
    /// lab (`tests/vectors/bubble-direct-client-to-relay.hex`).
    const C_BUBBLE: [u8; 40] = [
        0x60, 0, 0, 0, 0, 0, 0x3b, 0, 0x20, 0x01, 0, 0, 0xc6, 0x12, 0x01, 0x01, 0x18, 0xc0, 0x50,
        0x74, 0x39, 0xed, 0xfc, 0xfe, 0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0x24, 0xb0, 0x72, 0xf8, 0x9e,
        0x6c, 0x6e, 0x5e,
    ];

    #[test]
    fn bubble_matches_c_miredo() {
        let p = Ipv6Packet::new_checked(&C_BUBBLE[..]).unwrap();
        assert!(p.is_bubble());
        assert_eq!(build_bubble(p.src_addr(), p.dst_addr()), C_BUBBLE);
    }

    fn with_chain(chain: &[u8], first: u8) -> Vec<u8> {
        let repr = Ipv6Repr {
            src: Ipv6Addr::LOCALHOST,
            dst: Ipv6Addr::LOCALHOST,
            next_header: first,
            payload_len: 0,
            hop_limit: 64,
            traffic_class: 0,
        };
        repr.build(chain)
    }

    #[test]
    fn extension_chain() {
        // Hop-by-hop (8 bytes) -> routing (segments left 1) -> ICMPv6.
        let mut chain = vec![next_header::ROUTING, 0, 0, 0, 0, 0, 0, 0];
        chain.extend_from_slice(&[next_header::ICMPV6, 0, 0, 1, 0, 0, 0, 0]);
        chain.extend_from_slice(&[128, 0, 0, 0]);
        let b = with_chain(&chain, next_header::HOP_BY_HOP);
        let up = Ipv6Packet::new_checked(&b[..])
            .unwrap()
            .upper_layer()
            .unwrap();
        assert_eq!(up.protocol, next_header::ICMPV6);
        assert_eq!(up.offset, 16);
        assert!(up.routing_segments_left);
        assert!(!up.fragment && !up.later_fragment);

        // Hop-by-hop anywhere but first is refused (RFC 8200 4.3).
        let chain = [
            next_header::HOP_BY_HOP,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
            59,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
        ];
        let b = with_chain(&chain, next_header::DEST_OPTS);
        let p = Ipv6Packet::new_checked(&b[..]).unwrap();
        assert_eq!(p.upper_layer(), Err(Error::BadExtensionHeader));

        // A header running past the payload is refused.
        let b = with_chain(
            &[next_header::ICMPV6, 1, 0, 0, 0, 0, 0, 0],
            next_header::DEST_OPTS,
        );
        let p = Ipv6Packet::new_checked(&b[..]).unwrap();
        assert_eq!(p.upper_layer(), Err(Error::BadExtensionHeader));
    }

    #[test]
    fn fragments() {
        // First fragment: the upper layer follows.
        let b = with_chain(&[58, 0, 0, 1, 0, 0, 0, 9, 128, 0], next_header::FRAGMENT);
        let up = Ipv6Packet::new_checked(&b[..])
            .unwrap()
            .upper_layer()
            .unwrap();
        assert_eq!((up.protocol, up.offset), (58, 8));
        assert!(up.fragment && !up.later_fragment);
        // Offset 8: the bytes after the header are the middle of a message.
        let b = with_chain(&[58, 0, 0, 8, 0, 0, 0, 9, 1, 0], next_header::FRAGMENT);
        let up = Ipv6Packet::new_checked(&b[..])
            .unwrap()
            .upper_layer()
            .unwrap();
        assert!(up.fragment && up.later_fragment);
    }

    #[test]
    fn header_checks() {
        assert_eq!(
            Ipv6Packet::new_checked(&C_BUBBLE[..39]).unwrap_err(),
            Error::Truncated
        );
        let mut b = C_BUBBLE;
        b[0] = 0x45;
        assert_eq!(
            Ipv6Packet::new_checked(&b[..]).unwrap_err(),
            Error::BadVersion
        );
        let mut b = C_BUBBLE;
        b[5] = 1;
        assert_eq!(
            Ipv6Packet::new_checked(&b[..]).unwrap_err(),
            Error::BadLength
        );
        // A trailer (RFC 6081) is kept apart from the packet.
        let mut v = C_BUBBLE.to_vec();
        v.extend_from_slice(&[1, 2]);
        let p = Ipv6Packet::new_checked(&v[..]).unwrap();
        assert_eq!(p.trailer(), &[1, 2]);
        assert_eq!(p.packet(), &C_BUBBLE[..]);
    }

    #[test]
    fn discovery_bubble_shape() {
        let src = Ipv6Addr::new(0x2001, 0, 0xc612, 0x101, 0, 0, 0, 1);
        let b = build_discovery_bubble(src);
        let ip = Ipv6Packet::new_checked(&b[..]).unwrap();
        assert!(ip.is_bubble());
        assert_eq!(ip.hop_limit(), 1);
        assert_eq!(ip.src_addr(), src);
        assert_eq!(ip.dst_addr(), crate::addr::ALL_NODES);
    }
}
