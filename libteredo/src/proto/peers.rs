//! The list of recent peers (RFC 4380 5.2, 5.4): a bounded table keyed by
//! IPv6 address, with expiry and a per-peer queue of packets waiting for a
//! bubble exchange or a direct connectivity test.
//!
//! The layout: a slab of nodes threaded on intrusive doubly linked lists
//! in touch order (least recently touched at the head), one per class of
//! peer (held on probation, admitted but unanswered, trusted: see
//! [`Class`]), and a hash index
//! that holds only slot numbers (4 bytes a bucket: the address it is
//! looked up by is the node's), keyed by std's randomly seeded SipHash. Lookups, insertions, touches and removals
//! are O(1); expiry pops from the heads, so it costs O(1) per removed entry.
//! When the table is full, or its queued bytes are, room is made by
//! evicting the least recently touched entry of the lowest class first:
//! held entries, then unanswered ones; a peer that answered is never
//! evicted for one that did not (see [`super::admission`]).
//! Times are 32-bit millisecond stamps since the table's epoch, and a
//! peer's queue is a 4-byte reference into the table's
//! [`QueueStore`](super::queues), which keeps a node at 64 bytes on 64-bit
//! targets. A packet queued for a peer is kept without its destination
//! address (the peer's), in a block of a size class 8 bytes apart: a
//! flooded relay holds a million one-packet queues.
//!
//! Here: the entries and the table's operations; [`queue`]: how a queue's
//! packets are stored; [`slab`]: the slab, its lists and the index.

mod queue;
mod slab;
#[cfg(test)]
mod tests;

use super::queues::{QueueId, QueueStore};
use hashbrown::HashTable;
use queue::{entries, push_entry, queue_bytes, sizes};
use std::hash::RandomState;
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

/// The most memory, in bytes, a peer table of `max_peers` entries with
/// `max_queued_bytes` of queued packets can take, whatever fills it (a
/// flood included): what `MaxPeers` and `MaxQueuedBytes` imply, and what a
/// relay's resident memory may grow by over its size when idle.
///
/// Per entry: its 64-byte node; its index slot (4 bytes and a control
/// byte, at a load factor of 7/8 at least, in a table that doubles: 12
/// bytes at worst); its place on the retry list (12 bytes, in a ring that
/// doubles: 24); and a per-source admission slot is not per entry (fixed,
/// see [`ADMISSION_SLOTS`](super::admission::ADMISSION_SLOTS)). Per queued byte: the
/// block a queue takes is rounded up to 8 bytes and cut from 8 KiB pages
/// that a size class keeps one of when empty; a freed block is reused, not
/// returned, until its class empties: 2 bytes per byte queued at worst.
pub fn memory_bound(max_peers: usize, max_queued_bytes: usize) -> usize {
    const PER_ENTRY: usize = 64 + 12 + 24;
    max_peers
        .saturating_mul(PER_ENTRY)
        .saturating_add(max_queued_bytes.saturating_mul(2))
}

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
    /// Learnt by local discovery or from an alternate address (RFC 6081
    /// hairpinning): the endpoint is on our side of the NAT.
    pub local: bool,
    /// The peer speaks RFC 6081 (it sent us a trailer).
    pub ext: bool,
    /// The nonce the peer sent in its last indirect bubble (RFC 6081): our
    /// direct bubbles echo it, which proves them to the peer.
    pub echo: Option<[u8; 4]>,
    /// The peer is on the engine's retry list.
    pub retry_pending: bool,
    /// Held on probation: the entry keeps what was sent to the peer, but no
    /// bubble went out for it (admission refused it; see
    /// [`super::admission`]). The engine clears it when it admits the
    /// peer, and touches the entry so that the table sees the change.
    pub held: bool,
    /// Packets seen for the peer while held (saturating).
    pub held_packets: u8,
    /// Bubbles (or connectivity-test echoes) sent without an answer.
    pub bubbles: u8,
    /// Echo tests sent to endpoints the peer was heard from other than its
    /// Teredo address says, since the entry was made or an endpoint was
    /// proven (bounds what packets from such endpoints make us send).
    pub endpoint_tests: u8,
    pub last_rx: Stamp,
    pub last_tx: Stamp,
    /// Packets waiting for this peer to become trusted, in the table's
    /// store. Private so that the table's byte total changes only through
    /// [`PeerTable::enqueue`], [`PeerTable::dequeue_all`], removal,
    /// eviction and expiry.
    queue: QueueId,
    /// The last touch (creation or [`PeerTable::touch`]): the entry expires
    /// `EXPIRY` after it.
    touched: Stamp,
    /// The slot's generation, bumped each time the slot is freed: a
    /// [`Handle`] taken before then no longer resolves.
    generation: u16,
    /// The list the entry is on ([`Class`] as a number).
    list: u8,
}

/// The classes of peers, lowest first: a full table evicts from the
/// lowest class that has an entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Class {
    /// Held on probation: no bubble sent ([`Peer::held`]).
    Held = 0,
    /// Admitted (bubbles or tests sent, or nothing needed) but not trusted.
    Untrusted = 1,
    /// Packets from its endpoint were seen.
    Trusted = 2,
}

/// The number of classes (lists).
const CLASSES: usize = 3;

/// A peer's place in the table, 8 bytes where its address takes 16: valid
/// until the peer leaves the table (it then resolves to nothing, even when
/// the slot holds another peer).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Handle {
    slot: u32,
    generation: u16,
}

impl Peer {
    /// Whether packets wait for this peer (see [`PeerTable::dequeue_all`]).
    pub fn has_queued(&self) -> bool {
        !self.queue.is_none()
    }

    /// The last touch: the peer expires [`EXPIRY`] after it.
    pub fn last_touch(&self) -> Stamp {
        self.touched
    }

    /// The class the peer's state puts it in.
    pub fn class(&self) -> Class {
        if self.trusted {
            Class::Trusted
        } else if self.held {
            Class::Held
        } else {
            Class::Untrusted
        }
    }
}

/// The end of the list.
const NIL: u32 = u32::MAX;
/// Entries [`PeerTable::enqueue`] evicts at most to make room for one
/// packet (a packet is at most a few times the size of what one held
/// entry keeps).
pub const ROOM_EVICTIONS: usize = 16;

/// A slot of the slab. A free slot keeps a blank node (no queue, so no heap
/// memory) and is chained on the free list through `next`.
struct Node {
    addr: Ipv6Addr,
    /// Towards the head (less recently touched).
    prev: u32,
    /// Towards the tail (more recently touched), or the next free slot.
    next: u32,
    peer: Peer,
}

impl Peer {
    fn new(endpoint: SocketAddrV4, now: Stamp) -> Peer {
        let ago = now.minus(EXPIRY);
        Peer {
            endpoint,
            trusted: false,
            local: false,
            ext: false,
            echo: None,
            retry_pending: false,
            held: false,
            held_packets: 0,
            bubbles: 0,
            endpoint_tests: 0,
            last_rx: ago,
            last_tx: ago,
            queue: QueueId::NONE,
            touched: now,
            generation: 0,
            list: Class::Untrusted as u8,
        }
    }
}

/// The table.
///
/// Invariant: every slot number in `index`, on the touch-order list or on
/// the free list is below `slots.len()`; that is what makes the slab
/// indexing below infallible.
pub struct PeerTable {
    /// Slot numbers, hashed by their node's address with `hasher`.
    index: HashTable<u32>,
    hasher: RandomState,
    slots: Vec<Node>,
    /// First free slot, reused before the slab grows.
    free: u32,
    /// Least recently touched, per class.
    head: [u32; CLASSES],
    /// Most recently touched, per class.
    tail: [u32; CLASSES],
    /// Entries per class.
    count: [usize; CLASSES],
    /// Entries evicted to make room for others, since the start.
    evicted: u64,
    capacity: usize,
    queue_bytes: usize,
    total_queue_bytes: usize,
    /// Bytes queued over all peers.
    queued: usize,
    /// The bytes of the queues.
    store: QueueStore,
    /// Where a queue is rebuilt when a packet joins it.
    scratch: Vec<u8>,
    epoch: Instant,
    /// The latest instant seen: every touch is at or before it, so the
    /// touch order stays monotonic even if a caller's clock stutters.
    latest: Instant,
}

impl std::fmt::Debug for PeerTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerTable")
            .field("len", &self.len())
            .field("capacity", &self.capacity)
            .field("queued", &self.queued)
            .finish_non_exhaustive()
    }
}

impl PeerTable {
    /// `capacity` peers at most; `queue_bytes` per peer; `total_queue_bytes`
    /// over all peers. A capacity of 0 is taken as 1 (the table must hold
    /// the peer `get_or_insert` returns); slot numbers are 32-bit, so the
    /// capacity is also capped below `u32::MAX`. Memory grows with use, not
    /// with the capacity.
    pub fn new(
        capacity: usize,
        queue_bytes: usize,
        total_queue_bytes: usize,
        epoch: Instant,
    ) -> Self {
        PeerTable {
            index: HashTable::new(),
            hasher: RandomState::new(),
            slots: Vec::new(),
            free: NIL,
            head: [NIL; CLASSES],
            tail: [NIL; CLASSES],
            count: [0; CLASSES],
            evicted: 0,
            capacity: capacity.clamp(1, NIL as usize),
            queue_bytes,
            total_queue_bytes,
            queued: 0,
            store: QueueStore::default(),
            scratch: Vec::new(),
            epoch,
            latest: epoch,
        }
    }

    /// Converts an instant to a stamp of this table (milliseconds since the
    /// epoch, rounded down, wrapping; instants before the epoch give 0).
    pub fn stamp(&self, now: Instant) -> Stamp {
        Stamp(now.saturating_duration_since(self.epoch).as_millis() as u32)
    }

    pub fn len(&self) -> usize {
        self.index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Bytes queued over all peers.
    pub fn queued_bytes(&self) -> usize {
        self.queued
    }

    /// Entries of class `c`, as of their last touch.
    pub fn count(&self, c: Class) -> usize {
        self.count[c as usize]
    }

    /// Entries evicted to make room for others since the table was made
    /// (expired ones not counted).
    pub fn evicted(&self) -> u64 {
        self.evicted
    }

    pub fn get(&self, addr: &Ipv6Addr) -> Option<&Peer> {
        let i = self.find(addr)?;
        self.slots.get(i as usize).map(|n| &n.peer)
    }

    pub fn get_mut(&mut self, addr: &Ipv6Addr) -> Option<&mut Peer> {
        let i = self.find(addr)?;
        self.slots.get_mut(i as usize).map(|n| &mut n.peer)
    }

    /// The peer for `addr`, created if absent, for a peer about to be
    /// trusted (its packet proves its endpoint). A new peer has
    /// `endpoint`, is untrusted, not held, not local, 0 bubbles, and both
    /// `last_rx` and `last_tx` 30 s before `now` (RFC 4380 5.2.3, 5.2.6).
    /// When the table is full, the least recently touched peer of the
    /// lowest class is evicted first (its queue dropped). Creating counts
    /// as a touch.
    ///
    /// An existing peer is returned as it is: not touched, and its endpoint
    /// not replaced by `endpoint`.
    pub fn get_or_insert(
        &mut self,
        addr: Ipv6Addr,
        endpoint: SocketAddrV4,
        now: Instant,
    ) -> &mut Peer {
        let i = match self.find(&addr) {
            Some(i) => i,
            None => {
                self.make_room(Class::Trusted);
                self.insert_new(addr, endpoint, now, false)
            }
        };
        &mut self.slots[i as usize].peer
    }

    /// The peer for `addr`, created if absent as an untrusted peer (held
    /// if `held`), like [`PeerTable::get_or_insert`], except that a full
    /// table makes room only by evicting entries of a lower or the same
    /// class: None if every entry is of a higher one (a peer that answered
    /// is never evicted for one that did not, nor an admitted one for a
    /// held one).
    pub fn insert_untrusted(
        &mut self,
        addr: Ipv6Addr,
        endpoint: SocketAddrV4,
        now: Instant,
        held: bool,
    ) -> Option<&mut Peer> {
        let i = match self.find(&addr) {
            Some(i) => i,
            None => {
                let class = if held { Class::Held } else { Class::Untrusted };
                if !self.make_room(class) {
                    return None;
                }
                self.insert_new(addr, endpoint, now, held)
            }
        };
        Some(&mut self.slots[i as usize].peer)
    }

    /// The handle of `addr`'s entry.
    pub fn handle(&self, addr: &Ipv6Addr) -> Option<Handle> {
        let i = self.find(addr)?;
        let generation = self.slots.get(i as usize)?.peer.generation;
        Some(Handle {
            slot: i,
            generation,
        })
    }

    /// The address of the peer `h` was taken from, if it is still here.
    pub fn resolve(&self, h: Handle) -> Option<Ipv6Addr> {
        let n = self.slots.get(h.slot as usize)?;
        (n.peer.generation == h.generation && self.find(&n.addr) == Some(h.slot)).then_some(n.addr)
    }

    /// Whether the time `s` (a stamp of this table) has come at `now`
    /// (wrapping: for times within 24 days of `now`).
    pub fn is_due(&self, s: Stamp, now: Instant) -> bool {
        self.stamp(now).0.wrapping_sub(s.0) as i32 >= 0
    }

    /// The instant of the stamp `s` (within 24 days of the latest time
    /// seen), for timers.
    pub fn instant_of(&self, s: Stamp) -> Instant {
        let d = s.0.wrapping_sub(self.stamp(self.latest).0) as i32;
        let ms = Duration::from_millis(u64::from(d.unsigned_abs()));
        if d >= 0 {
            self.latest + ms
        } else {
            self.latest.checked_sub(ms).unwrap_or(self.epoch)
        }
    }

    /// Marks activity: the peer will not expire before `now + EXPIRY`.
    pub fn touch(&mut self, addr: &Ipv6Addr, now: Instant) {
        let Some(i) = self.find(addr) else {
            return;
        };
        let stamp = self.clock(now);
        let p = &self.slots[i as usize].peer;
        let class = p.class() as u8;
        // The most recently touched of its class stays where it is.
        if p.list != class || i != self.tail[usize::from(class)] {
            self.unlink(i);
            self.link_tail(i);
        }
        self.slots[i as usize].peer.touched = stamp;
    }

    /// Removes the peer; returns it with the packets that were queued for
    /// it, oldest first (their bytes released from the table's total).
    pub fn remove(&mut self, addr: &Ipv6Addr) -> Option<(Peer, Vec<Vec<u8>>)> {
        let i = self.index_remove(addr)?;
        let mut peer = self.release(i);
        let packets = self.take_queue(&mut peer.queue, addr);
        Some((peer, packets))
    }

    /// Queues `packet` for `addr` (which must exist). When the table's
    /// byte cap would be exceeded, entries of a lower or the same class as
    /// the peer's (untrusted at most) are evicted to make room, least
    /// recently touched first, [`ROOM_EVICTIONS`] at most. Returns false,
    /// queuing nothing, if the peer's or the table's byte cap would still
    /// be exceeded, and for an empty packet (it would take memory while
    /// counting no bytes).
    pub fn enqueue(&mut self, addr: &Ipv6Addr, packet: &[u8]) -> bool {
        let len = packet.len();
        if len == 0 || len > self.total_queue_bytes {
            return false;
        }
        let Ok(n) = u16::try_from(len) else {
            return false;
        };
        let Some(i) = self.find(addr) else {
            return false;
        };
        let (queued, _) = sizes(self.store.get(self.slots[i as usize].peer.queue));
        if queued.saturating_add(len) > self.queue_bytes {
            return false;
        }
        let top = self.slots[i as usize].peer.class().min(Class::Untrusted);
        let mut evictions = 0;
        while self.queued.saturating_add(len) > self.total_queue_bytes {
            if evictions == ROOM_EVICTIONS {
                return false;
            }
            match self.victim(top, i) {
                Some(v) => self.evict(v),
                None => return false,
            }
            evictions += 1;
        }
        let old = self.slots[i as usize].peer.queue;
        let stored = self.store.get(old);
        let (_, taken) = sizes(stored);
        // The queue is rebuilt with the new entry at its end, into a block
        // of the size that now fits.
        let mut v = std::mem::take(&mut self.scratch);
        v.clear();
        v.extend_from_slice(&stored[..taken]);
        push_entry(&mut v, addr, packet, n);
        let new = self.store.put(&v);
        self.scratch = v;
        let Some(new) = new else {
            return false;
        };
        self.store.free(old);
        self.slots[i as usize].peer.queue = new;
        self.queued += len;
        true
    }

    /// How many packets are queued for `addr`, and their bytes (as they
    /// came); None for a peer not in the table.
    pub fn queue_of(&self, addr: &Ipv6Addr) -> Option<(usize, usize)> {
        let q = self.get(addr)?.queue;
        let b = self.store.get(q);
        Some((entries(b).count(), queue_bytes(b)))
    }

    /// Takes the packets queued for `addr`, oldest first.
    pub fn dequeue_all(&mut self, addr: &Ipv6Addr) -> Vec<Vec<u8>> {
        let Some(i) = self.find(addr) else {
            return Vec::new();
        };
        let mut q = std::mem::replace(&mut self.slots[i as usize].peer.queue, QueueId::NONE);
        self.take_queue(&mut q, addr)
    }

    /// Frees queue `q` of the peer at `dst`, which the table no longer
    /// refers to, and returns its packets; their bytes leave the total.
    fn take_queue(&mut self, q: &mut QueueId, dst: &Ipv6Addr) -> Vec<Vec<u8>> {
        let q = std::mem::replace(q, QueueId::NONE);
        let stored = self.store.get(q);
        let packets: Vec<Vec<u8>> = entries(stored).map(|e| e.restore(dst)).collect();
        self.queued = self
            .queued
            .saturating_sub(packets.iter().map(Vec::len).sum());
        self.store.free(q);
        packets
    }

    /// Removes every peer not touched for `EXPIRY`; returns how many.
    ///
    /// Stamps wrap after 49 days, so the table relies on being expired more
    /// often than that (the engines expire at [`PeerTable::next_expiry`]).
    /// If no time was seen for `EXPIRY`, every entry is stale whatever its
    /// stamp says, and the table is emptied.
    pub fn expire(&mut self, now: Instant) -> usize {
        let all_stale = now.saturating_duration_since(self.latest) >= EXPIRY;
        let now = self.clock(now);
        let mut removed = 0;
        for c in 0..CLASSES {
            while let Some(head) = self.slots.get(self.head[c] as usize) {
                if !all_stale && now.elapsed_since(head.peer.touched) < EXPIRY {
                    break;
                }
                self.discard(self.head[c]);
                removed += 1;
            }
        }
        removed
    }

    /// When the next peer would expire, if any: [`PeerTable::expire`] at
    /// that instant removes it.
    pub fn next_expiry(&self) -> Option<Instant> {
        let latest = self.stamp(self.latest);
        // The oldest of the heads (a list's head is its oldest entry).
        let age = self
            .head
            .iter()
            .filter_map(|&h| self.slots.get(h as usize))
            .map(|n| latest.0.wrapping_sub(n.peer.touched.0))
            .max()?;
        // Rebuild the head's absolute touch time from the latest instant:
        // its stamp only holds the low 32 bits of the milliseconds.
        let latest_ms = self
            .latest
            .saturating_duration_since(self.epoch)
            .as_millis();
        let at_ms = latest_ms.saturating_sub(u128::from(age)) + EXPIRY.as_millis();
        let at = Duration::from_millis(u64::try_from(at_ms).unwrap_or(u64::MAX));
        Some(self.epoch.checked_add(at).unwrap_or(self.latest))
    }
}
