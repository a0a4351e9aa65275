//! How a peer's queue keeps its packets: one block of the table's
//! [`QueueStore`](crate::proto::queues::QueueStore), holding entries
//! oldest first, a packet addressed to the peer without its destination
//! address (16 bytes saved on each: a flooded relay holds a million
//! one-packet queues).

use std::net::Ipv6Addr;

/// The first nibble of an entry that is an IPv6 packet without its
/// destination address (IPv6's version nibble is 6).
const ELIDED: u8 = 0xE;
/// The first byte of an entry kept as it came, behind its length.
const RAW: u8 = 0;
/// An IPv6 header's bytes before the destination address.
const BEFORE_DST: usize = 24;
/// An IPv6 header's length.
const IPV6_HEADER: usize = 40;

/// One entry of a queue, as stored. A queue's bytes (one block of the
/// table's [`QueueStore`]) are its entries, oldest first, each either
/// - an IPv6 packet addressed to the peer, without its destination address
///   (the peer's own, 16 bytes of every packet queued for it): its first 24
///   bytes, the version nibble set to [`ELIDED`], then its payload, whose
///   length the header gives; or
/// - anything else, as [`RAW`], a 2-byte big-endian length, the bytes;
///
/// then padding ([`PAD`](super::queues::PAD), which starts no entry) to the block's end.
pub(super) enum Entry<'a> {
    /// An IPv6 packet addressed to the peer: its header up to the
    /// destination address (version nibble [`ELIDED`]), then its payload.
    Elided(&'a [u8], &'a [u8]),
    Raw(&'a [u8]),
}

impl Entry<'_> {
    /// The length of the packet this entry stands for.
    fn len(&self) -> usize {
        match self {
            Entry::Elided(head, payload) => head.len() + 16 + payload.len(),
            Entry::Raw(p) => p.len(),
        }
    }

    /// The packet, whole again; `dst` is the peer's address.
    pub(super) fn restore(&self, dst: &Ipv6Addr) -> Vec<u8> {
        let mut v = Vec::with_capacity(self.len());
        match self {
            Entry::Elided(head, payload) => {
                v.extend_from_slice(head);
                v[0] = 0x60 | (v[0] & 0x0F);
                v.extend_from_slice(&dst.octets());
                v.extend_from_slice(payload);
            }
            Entry::Raw(p) => v.extend_from_slice(p),
        }
        v
    }
}

/// The entries of a queue's bytes, oldest first.
pub(super) fn entries(mut b: &[u8]) -> impl Iterator<Item = Entry<'_>> {
    std::iter::from_fn(move || {
        let first = *b.first()?;
        if first >> 4 == ELIDED {
            let (head, rest) = b.split_at_checked(BEFORE_DST)?;
            let n = usize::from(u16::from_be_bytes([head[4], head[5]]));
            let (payload, rest) = rest.split_at_checked(n)?;
            b = rest;
            Some(Entry::Elided(head, payload))
        } else if first == RAW {
            let (h, rest) = b[1..].split_first_chunk::<2>()?;
            let n = usize::from(u16::from_be_bytes(*h));
            let (p, rest) = rest.split_at_checked(n)?;
            b = rest;
            Some(Entry::Raw(p))
        } else {
            // Padding: the end of the queue.
            None
        }
    })
}

/// The bytes of the packets a queue stands for, and the bytes its entries
/// take (without the padding), in one pass.
pub(super) fn sizes(b: &[u8]) -> (usize, usize) {
    entries(b).fold((0, 0), |(packets, stored), e| {
        let taken = match e {
            Entry::Elided(head, payload) => head.len() + payload.len(),
            Entry::Raw(p) => 3 + p.len(),
        };
        (packets + e.len(), stored + taken)
    })
}

/// The bytes of the packets a queue stands for.
pub(super) fn queue_bytes(b: &[u8]) -> usize {
    sizes(b).0
}

/// Appends the entry for `packet`, addressed to `dst` or not, to `v`.
pub(super) fn push_entry(v: &mut Vec<u8>, dst: &Ipv6Addr, packet: &[u8], n: u16) {
    let elide = packet.len() >= IPV6_HEADER
        && packet[0] >> 4 == 6
        && usize::from(u16::from_be_bytes([packet[4], packet[5]])) + IPV6_HEADER == packet.len()
        && packet[BEFORE_DST..IPV6_HEADER] == dst.octets();
    if elide {
        v.push((ELIDED << 4) | (packet[0] & 0x0F));
        v.extend_from_slice(&packet[1..BEFORE_DST]);
        v.extend_from_slice(&packet[IPV6_HEADER..]);
    } else {
        v.push(RAW);
        v.extend_from_slice(&n.to_be_bytes());
        v.extend_from_slice(packet);
    }
}
