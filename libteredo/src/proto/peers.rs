//! The list of recent peers (RFC 4380 5.2, 5.4): a bounded table keyed by
//! IPv6 address, with expiry and a per-peer queue of packets waiting for a
//! bubble exchange or a direct connectivity test.
//!
//! API CONTRACT (implementation pending: see the issue brief).

use std::net::{Ipv6Addr, SocketAddrV4};
use std::time::{Duration, Instant};

/// Default capacity: as many peers as the C miredo allows.
pub const DEFAULT_CAPACITY: usize = 1 << 20;
/// Default cap on the bytes queued for one peer.
pub const DEFAULT_QUEUE_BYTES: usize = 8 * 1024;
/// Default cap on the bytes queued for all peers together.
pub const DEFAULT_TOTAL_QUEUE_BYTES: usize = 64 * 1024 * 1024;
/// An entry not touched for this long is removed (RFC 4380 5.2.4: an entry
/// is valid while its last reception is less than 30 s old).
pub const EXPIRY: Duration = Duration::from_secs(30);

/// A point in time, in milliseconds since the table's epoch, wrapping.
/// Compare with [`Stamp::elapsed_since`], never with `<`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Stamp(pub u32);

impl Stamp {
    /// Milliseconds from `earlier` to `self` (wrapping arithmetic; correct
    /// for spans under 24 days).
    pub fn elapsed_since(self, earlier: Stamp) -> Duration {
        Duration::from_millis(u64::from(self.0.wrapping_sub(earlier.0)))
    }

    /// This stamp moved back by `d` (for "30 seconds before now").
    pub fn minus(self, d: Duration) -> Stamp {
        Stamp(self.0.wrapping_sub(d.as_millis() as u32))
    }
}

/// One peer.
#[derive(Debug)]
pub struct Peer {
    /// Where packets for this peer go: its mapped endpoint, or its local
    /// endpoint for a local peer (RFC 4380 5.2.8).
    pub endpoint: SocketAddrV4,
    /// Packets from the endpoint were seen (RFC 4380 5.2.3).
    pub trusted: bool,
    /// Learnt by local discovery.
    pub local: bool,
    /// Bubbles (or connectivity-test echoes) sent without an answer.
    pub bubbles: u8,
    pub last_rx: Stamp,
    pub last_tx: Stamp,
    /// Packets waiting for this peer to become trusted.
    pub queue: Pending,
}

/// A byte-capped FIFO of IPv6 packets. Empty costs one pointer.
#[derive(Debug, Default)]
pub struct Pending {
    // implementation detail
}

impl Pending {
    /// Bytes queued.
    pub fn bytes(&self) -> usize {
        todo!()
    }
    pub fn len(&self) -> usize {
        todo!()
    }
    pub fn is_empty(&self) -> bool {
        todo!()
    }
    /// Takes every queued packet, oldest first, leaving the queue empty.
    pub fn take(&mut self) -> Vec<Vec<u8>> {
        todo!()
    }
}

/// The table.
pub struct PeerTable {
    // implementation detail
}

impl PeerTable {
    /// `capacity` peers at most; `queue_bytes` per peer; `total_queue_bytes`
    /// over all peers.
    pub fn new(capacity: usize, queue_bytes: usize, total_queue_bytes: usize, epoch: Instant) -> Self {
        let _ = (capacity, queue_bytes, total_queue_bytes, epoch);
        todo!()
    }

    /// Converts an instant to a stamp of this table.
    pub fn stamp(&self, now: Instant) -> Stamp {
        let _ = now;
        todo!()
    }

    pub fn len(&self) -> usize {
        todo!()
    }

    pub fn is_empty(&self) -> bool {
        todo!()
    }

    pub fn capacity(&self) -> usize {
        todo!()
    }

    pub fn get(&self, addr: &Ipv6Addr) -> Option<&Peer> {
        let _ = addr;
        todo!()
    }

    pub fn get_mut(&mut self, addr: &Ipv6Addr) -> Option<&mut Peer> {
        let _ = addr;
        todo!()
    }

    /// The peer for `addr`, created if absent. A new peer has
    /// `endpoint`, is untrusted, not local, 0 bubbles, and both
    /// `last_rx` and `last_tx` 30 s before `now` (RFC 4380 5.2.3, 5.2.6).
    /// When the table is full, the least recently touched peer is evicted
    /// first (its queue dropped). Creating counts as a touch.
    pub fn get_or_insert(&mut self, addr: Ipv6Addr, endpoint: SocketAddrV4, now: Instant) -> &mut Peer {
        let _ = (addr, endpoint, now);
        todo!()
    }

    /// Marks activity: the peer will not expire before `now + EXPIRY`.
    pub fn touch(&mut self, addr: &Ipv6Addr, now: Instant) {
        let _ = (addr, now);
        todo!()
    }

    pub fn remove(&mut self, addr: &Ipv6Addr) -> Option<Peer> {
        let _ = addr;
        todo!()
    }

    /// Queues `packet` for `addr` (which must exist). Returns false, queuing
    /// nothing, if the peer's or the table's byte cap would be exceeded.
    pub fn enqueue(&mut self, addr: &Ipv6Addr, packet: &[u8]) -> bool {
        let _ = (addr, packet);
        todo!()
    }

    /// Takes the packets queued for `addr`, oldest first.
    pub fn dequeue_all(&mut self, addr: &Ipv6Addr) -> Vec<Vec<u8>> {
        let _ = addr;
        todo!()
    }

    /// Removes every peer not touched for `EXPIRY`; returns how many.
    pub fn expire(&mut self, now: Instant) -> usize {
        let _ = now;
        todo!()
    }

    /// When the next peer would expire, if any.
    pub fn next_expiry(&self) -> Option<Instant> {
        todo!()
    }
}
