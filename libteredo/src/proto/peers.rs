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

use super::queues::{QueueId, QueueStore};
use hashbrown::HashTable;
use std::hash::{BuildHasher, RandomState};
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
enum Entry<'a> {
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
    fn restore(&self, dst: &Ipv6Addr) -> Vec<u8> {
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
fn entries(mut b: &[u8]) -> impl Iterator<Item = Entry<'_>> {
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
fn sizes(b: &[u8]) -> (usize, usize) {
    entries(b).fold((0, 0), |(packets, stored), e| {
        let taken = match e {
            Entry::Elided(head, payload) => head.len() + payload.len(),
            Entry::Raw(p) => 3 + p.len(),
        };
        (packets + e.len(), stored + taken)
    })
}

/// The bytes of the packets a queue stands for.
fn queue_bytes(b: &[u8]) -> usize {
    sizes(b).0
}

/// Appends the entry for `packet`, addressed to `dst` or not, to `v`.
fn push_entry(v: &mut Vec<u8>, dst: &Ipv6Addr, packet: &[u8], n: u16) {
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

    fn insert_new(
        &mut self,
        addr: Ipv6Addr,
        endpoint: SocketAddrV4,
        now: Instant,
        held: bool,
    ) -> u32 {
        let touched = self.clock(now);
        let mut peer = Peer::new(endpoint, touched);
        peer.held = held;
        let i = self.alloc(addr, peer);
        self.index_insert(i);
        self.link_tail(i);
        i
    }

    /// Evicts, while the table is full, the least recently touched entry
    /// of the lowest class up to `top`; false if it stays full.
    fn make_room(&mut self, top: Class) -> bool {
        while self.index.len() >= self.capacity {
            match self.victim(top, NIL) {
                Some(i) => self.evict(i),
                None => return false,
            }
        }
        true
    }

    /// The least recently touched entry of the lowest class up to `top`,
    /// other than slot `spare`. Entries whose class changed without a
    /// touch are moved to their list on the way.
    fn victim(&mut self, top: Class, spare: u32) -> Option<u32> {
        for c in 0..=top as usize {
            loop {
                let h = self.head[c];
                let Some(n) = self.slots.get(h as usize) else {
                    break;
                };
                if n.peer.class() as usize != c {
                    self.unlink(h);
                    self.link_tail(h);
                    continue;
                }
                if h != spare {
                    return Some(h);
                }
                // The spared entry heads its list: the next one, if it is
                // of this class (else none of this class is left).
                match self.slots.get(n.next as usize) {
                    Some(m) if m.peer.class() as usize == c => return Some(n.next),
                    _ => break,
                }
            }
        }
        None
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

    /// Advances the latest instant seen and returns its stamp.
    fn clock(&mut self, now: Instant) -> Stamp {
        if now > self.latest {
            self.latest = now;
        }
        self.stamp(self.latest)
    }

    /// Puts a node in a free slot, or a new one; returns the slot number.
    fn alloc(&mut self, addr: Ipv6Addr, peer: Peer) -> u32 {
        let node = Node {
            addr,
            prev: NIL,
            next: NIL,
            peer,
        };
        match self.slots.get_mut(self.free as usize) {
            Some(slot) => {
                let i = self.free;
                self.free = slot.next;
                let generation = slot.peer.generation;
                *slot = node;
                slot.peer.generation = generation;
                i
            }
            None => {
                self.slots.push(node);
                (self.slots.len() - 1) as u32
            }
        }
    }

    /// The slot of `addr`.
    fn find(&self, addr: &Ipv6Addr) -> Option<u32> {
        let slots = &self.slots;
        self.index
            .find(self.hasher.hash_one(addr), |&i| {
                slots.get(i as usize).is_some_and(|n| n.addr == *addr)
            })
            .copied()
    }

    /// Indexes slot `i` (allocated, its address not yet in the index).
    fn index_insert(&mut self, i: u32) {
        let (slots, hasher) = (&self.slots, &self.hasher);
        let h = hasher.hash_one(slots[i as usize].addr);
        self.index.insert_unique(h, i, |&j| {
            hasher.hash_one(
                slots
                    .get(j as usize)
                    .map_or(Ipv6Addr::UNSPECIFIED, |n| n.addr),
            )
        });
    }

    /// Takes `addr` out of the index; returns its slot.
    fn index_remove(&mut self, addr: &Ipv6Addr) -> Option<u32> {
        let slots = &self.slots;
        let h = self.hasher.hash_one(addr);
        match self.index.find_entry(h, |&i| {
            slots.get(i as usize).is_some_and(|n| n.addr == *addr)
        }) {
            Ok(e) => Some(e.remove().0),
            Err(_) => None,
        }
    }

    /// Evicts slot `i` to make room for another entry.
    fn evict(&mut self, i: u32) {
        self.discard(i);
        self.evicted += 1;
    }

    /// Removes slot `i` (in use) and frees its queue.
    fn discard(&mut self, i: u32) {
        let addr = self.slots[i as usize].addr;
        self.index_remove(&addr);
        let q = self.release(i).queue;
        self.queued = self.queued.saturating_sub(queue_bytes(self.store.get(q)));
        self.store.free(q);
    }

    /// Unlinks slot `i` and puts it on the free list; returns its peer, the
    /// queue still in the store and counted. The caller removed it from
    /// the index.
    fn release(&mut self, i: u32) -> Peer {
        self.unlink(i);
        let free = self.free;
        let slot = &mut self.slots[i as usize];
        slot.next = free;
        let mut blank = Peer::new(
            SocketAddrV4::new(std::net::Ipv4Addr::UNSPECIFIED, 0),
            Stamp(0),
        );
        blank.generation = slot.peer.generation.wrapping_add(1);
        let peer = std::mem::replace(&mut slot.peer, blank);
        self.free = i;
        peer
    }

    /// Takes slot `i` off the list it is on.
    fn unlink(&mut self, i: u32) {
        let Node {
            prev,
            next,
            ref peer,
            ..
        } = self.slots[i as usize];
        let c = usize::from(peer.list);
        match self.slots.get_mut(prev as usize) {
            Some(p) => p.next = next,
            None => self.head[c] = next,
        }
        match self.slots.get_mut(next as usize) {
            Some(n) => n.prev = prev,
            None => self.tail[c] = prev,
        }
        self.count[c] -= 1;
    }

    /// Links slot `i` (unlinked) after the tail of its class's list.
    fn link_tail(&mut self, i: u32) {
        let c = self.slots[i as usize].peer.class() as usize;
        let tail = self.tail[c];
        match self.slots.get_mut(tail as usize) {
            Some(t) => t.next = i,
            None => self.head[c] = i,
        }
        let node = &mut self.slots[i as usize];
        node.prev = tail;
        node.next = NIL;
        node.peer.list = c as u8;
        self.tail[c] = i;
        self.count[c] += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;
    use std::net::Ipv4Addr;

    const EP: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(192, 0, 2, 1), 3544);

    fn addr(n: u32) -> Ipv6Addr {
        Ipv6Addr::from(0x2001_0000_0000_0000_0000_0000_0000_0000u128 | u128::from(n))
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn table(capacity: usize) -> (PeerTable, Instant) {
        let t0 = Instant::now();
        (PeerTable::new(capacity, 1000, 2500, t0), t0)
    }

    impl PeerTable {
        /// Walks the list both ways and checks it against the index, the
        /// free list and the byte total.
        fn check(&self) {
            let mut order = Vec::new();
            for c in 0..CLASSES {
                let mut prev = NIL;
                let mut i = self.head[c];
                let mut n_c = 0;
                while i != NIL {
                    let n = &self.slots[i as usize];
                    assert_eq!(n.prev, prev);
                    assert_eq!(usize::from(n.peer.list), c);
                    assert_eq!(self.find(&n.addr), Some(i));
                    order.push(i);
                    prev = i;
                    i = n.next;
                    n_c += 1;
                }
                assert_eq!(self.tail[c], prev);
                assert_eq!(self.count[c], n_c);
            }
            assert_eq!(order.len(), self.index.len());
            let mut free = 0;
            let mut f = self.free;
            while f != NIL {
                assert!(self.slots[f as usize].peer.queue.is_none());
                free += 1;
                f = self.slots[f as usize].next;
            }
            assert_eq!(free + order.len(), self.slots.len());
            let bytes: usize = order
                .iter()
                .map(|&i| queue_bytes(self.store.get(self.slots[i as usize].peer.queue)))
                .sum();
            assert_eq!(bytes, self.queued);
            // Every queue in the store belongs to a peer, and none is empty.
            let queues = order
                .iter()
                .filter(|&&i| self.slots[i as usize].peer.has_queued())
                .count();
            assert_eq!(queues, self.store.live());
            for &i in &order {
                let q = self.slots[i as usize].peer.queue;
                assert_eq!(q.is_none(), entries(self.store.get(q)).next().is_none());
            }
            assert!(self.len() <= self.capacity);
        }

        /// Addresses from least to most recently touched.
        /// (held first, then untrusted, then trusted).
        fn order(&self) -> Vec<Ipv6Addr> {
            let mut v = Vec::new();
            for c in 0..CLASSES {
                let mut i = self.head[c];
                while i != NIL {
                    v.push(self.slots[i as usize].addr);
                    i = self.slots[i as usize].next;
                }
            }
            v
        }
    }

    #[test]
    fn entries_stay_compact() {
        // A queue is a 4-byte reference into the store; a node is 64
        // bytes, one cache line.
        assert_eq!(std::mem::size_of::<QueueId>(), 4);
        if std::mem::size_of::<usize>() == 8 {
            assert!(
                std::mem::size_of::<Peer>() <= 40,
                "{}",
                std::mem::size_of::<Peer>()
            );
            assert!(
                std::mem::size_of::<Node>() <= 64,
                "{}",
                std::mem::size_of::<Node>()
            );
        }
    }

    #[test]
    fn new_peer_defaults() {
        let (mut t, t0) = table(4);
        let now = t0 + ms(40_000);
        let p = t.get_or_insert(addr(1), EP, now);
        assert_eq!(p.endpoint, EP);
        assert!(!p.trusted && !p.local);
        assert_eq!(p.bubbles, 0);
        assert_eq!(p.last_rx, Stamp(10_000));
        assert_eq!(p.last_tx, Stamp(10_000));
        assert_eq!(p.last_touch(), Stamp(40_000));
        assert!(!p.has_queued());
        // An existing peer is returned unchanged.
        p.trusted = true;
        let other = SocketAddrV4::new(Ipv4Addr::new(198, 51, 100, 7), 1);
        let p = t.get_or_insert(addr(1), other, now + ms(5));
        assert!(p.trusted);
        assert_eq!(p.endpoint, EP);
        assert_eq!(p.last_touch(), Stamp(40_000));
        assert_eq!(t.len(), 1);
        assert!(t.get(&addr(2)).is_none());
        t.check();
    }

    #[test]
    fn expires_at_exactly_thirty_seconds() {
        let (mut t, t0) = table(4);
        t.get_or_insert(addr(1), EP, t0 + ms(1000));
        assert_eq!(t.next_expiry(), Some(t0 + ms(31_000)));
        assert_eq!(t.expire(t0 + ms(30_999)), 0);
        assert!(t.get(&addr(1)).is_some());
        assert_eq!(t.expire(t0 + ms(31_000)), 1);
        assert!(t.get(&addr(1)).is_none());
        assert!(t.is_empty());
        assert_eq!(t.next_expiry(), None);
        t.check();
    }

    #[test]
    fn touch_refreshes() {
        let (mut t, t0) = table(4);
        t.get_or_insert(addr(1), EP, t0);
        t.get_or_insert(addr(2), EP, t0 + ms(10));
        t.touch(&addr(1), t0 + ms(20_000));
        assert_eq!(t.order(), vec![addr(2), addr(1)]);
        assert_eq!(t.next_expiry(), Some(t0 + ms(30_010)));
        assert_eq!(t.expire(t0 + ms(30_010)), 1);
        assert!(t.get(&addr(2)).is_none());
        assert_eq!(t.next_expiry(), Some(t0 + ms(50_000)));
        assert_eq!(t.expire(t0 + ms(49_999)), 0);
        assert_eq!(t.expire(t0 + ms(50_000)), 1);
        // Touching an absent peer does nothing.
        t.touch(&addr(3), t0 + ms(50_001));
        assert!(t.is_empty());
        t.check();
    }

    #[test]
    fn long_silence_expires_everything() {
        let (mut t, t0) = table(8);
        for n in 0..5 {
            t.get_or_insert(addr(n), EP, t0 + ms(u64::from(n)));
        }
        // Exactly one wrap of the stamps later: a stamp comparison alone
        // would see the entries as fresh.
        let later = t0 + ms(u64::from(u32::MAX) + 1);
        assert_eq!(t.expire(later), 5);
        assert!(t.is_empty());
        t.check();
    }

    /// Fills a table of 6 with 2 held, 2 untrusted and 2 trusted peers
    /// (addresses 1-2, 3-4, 5-6), each pair touched in order.
    fn classes() -> (PeerTable, Instant) {
        let (mut t, t0) = table(6);
        for n in 1..=6u32 {
            let now = t0 + ms(u64::from(n));
            let p = t.insert_untrusted(addr(n), EP, now, n <= 2).unwrap();
            p.trusted = n >= 5;
            t.touch(&addr(n), now);
        }
        assert_eq!(t.count(Class::Held), 2);
        assert_eq!(t.count(Class::Untrusted), 2);
        assert_eq!(t.count(Class::Trusted), 2);
        (t, t0)
    }

    #[test]
    fn a_full_table_evicts_held_then_untrusted_never_trusted_for_them() {
        let (mut t, t0) = classes();
        let now = t0 + ms(100);
        // Touching a held entry does not save it from eviction before an
        // older untrusted one.
        t.touch(&addr(1), now);
        assert!(t.insert_untrusted(addr(7), EP, now, false).is_some());
        assert!(t.get(&addr(2)).is_none());
        assert!(t.insert_untrusted(addr(8), EP, now, false).is_some());
        assert!(t.get(&addr(1)).is_none());
        // No held entry is left: a new held one may not evict an admitted
        // one.
        assert!(t.insert_untrusted(addr(9), EP, now, true).is_none());
        // An untrusted one evicts the least recently touched untrusted.
        assert!(t.insert_untrusted(addr(10), EP, now, false).is_some());
        assert!(t.get(&addr(3)).is_none());
        for n in [4, 7, 8, 10] {
            t.get_mut(&addr(n)).unwrap().trusted = true;
            t.touch(&addr(n), now);
        }
        // All trusted: no untrusted entry gets in.
        assert!(t.insert_untrusted(addr(11), EP, now, false).is_none());
        assert_eq!(t.len(), 6);
        // A trusted one evicts the least recently touched trusted.
        t.get_or_insert(addr(12), EP, now);
        assert!(t.get(&addr(5)).is_none());
        assert_eq!(t.evicted(), 4);
        t.check();
    }

    #[test]
    fn a_class_changed_without_a_touch_is_found_at_eviction() {
        let (mut t, t0) = classes();
        // 1 answers, but the engine has not touched it yet.
        t.get_mut(&addr(1)).unwrap().trusted = true;
        assert!(t.insert_untrusted(addr(7), EP, t0 + ms(50), true).is_some());
        assert!(t.get(&addr(1)).is_some(), "a trusted peer was evicted");
        assert!(t.get(&addr(2)).is_none());
        t.check();
        assert_eq!(t.count(Class::Trusted), 3);
    }

    #[test]
    fn queued_bytes_make_room_from_lower_classes_only() {
        let t0 = Instant::now();
        let mut t = PeerTable::new(16, 1000, 1000, t0);
        for n in 1..=4u32 {
            t.insert_untrusted(addr(n), EP, t0 + ms(u64::from(n)), n <= 2)
                .unwrap();
            assert!(t.enqueue(&addr(n), &[n as u8; 250]));
        }
        // A held packet may only push out held ones (1, the oldest).
        t.insert_untrusted(addr(5), EP, t0 + ms(5), true).unwrap();
        assert!(t.enqueue(&addr(5), &[5; 250]));
        assert!(t.get(&addr(1)).is_none());
        // Then 2, and then no held one is left but itself.
        assert!(t.enqueue(&addr(5), &[5; 250]));
        assert!(t.get(&addr(2)).is_none());
        assert!(!t.enqueue(&addr(5), &[5; 250]));
        assert!(t.get(&addr(3)).is_some() && t.get(&addr(4)).is_some());
        // An admitted peer's packet pushes out held ones first.
        t.insert_untrusted(addr(6), EP, t0 + ms(6), false).unwrap();
        assert!(t.enqueue(&addr(6), &[6; 250]));
        assert!(t.get(&addr(5)).is_none());
        assert!(t.get(&addr(3)).is_some());
        assert_eq!(t.queued_bytes(), 750);
        t.check();
    }

    #[test]
    fn evicts_least_recently_touched_when_full() {
        let (mut t, t0) = table(3);
        for n in 1..=3 {
            t.get_or_insert(addr(n), EP, t0 + ms(u64::from(n)));
        }
        assert!(t.enqueue(&addr(2), &[0; 100]));
        t.touch(&addr(1), t0 + ms(10));
        // Order now 2, 3, 1: inserting 4 evicts 2 and its queue.
        t.get_or_insert(addr(4), EP, t0 + ms(11));
        assert_eq!(t.len(), 3);
        assert!(t.get(&addr(2)).is_none());
        assert_eq!(t.queued_bytes(), 0);
        assert_eq!(t.order(), vec![addr(3), addr(1), addr(4)]);
        t.get_or_insert(addr(5), EP, t0 + ms(12));
        assert_eq!(t.order(), vec![addr(1), addr(4), addr(5)]);
        // Looking up an existing peer neither evicts nor touches.
        t.get_or_insert(addr(1), EP, t0 + ms(13));
        assert_eq!(t.order(), vec![addr(1), addr(4), addr(5)]);
        t.check();
    }

    #[test]
    fn capacity_zero_holds_one() {
        let (mut t, t0) = {
            let t0 = Instant::now();
            (PeerTable::new(0, 10, 10, t0), t0)
        };
        assert_eq!(t.capacity(), 1);
        t.get_or_insert(addr(1), EP, t0);
        t.get_or_insert(addr(2), EP, t0);
        assert_eq!(t.order(), vec![addr(2)]);
        t.check();
    }

    #[test]
    fn per_peer_byte_cap() {
        let (mut t, t0) = table(4);
        t.get_or_insert(addr(1), EP, t0);
        assert!(t.enqueue(&addr(1), &[1; 600]));
        assert!(!t.enqueue(&addr(1), &[2; 401]));
        assert!(t.enqueue(&addr(1), &[3; 400]));
        assert!(!t.enqueue(&addr(1), &[4; 1]));
        assert_eq!(t.queue_of(&addr(1)), Some((2, 1000)));
        assert_eq!(t.queued_bytes(), 1000);
        // Absent peers and empty packets queue nothing.
        assert!(!t.enqueue(&addr(9), &[1; 10]));
        assert!(!t.enqueue(&addr(1), &[]));
        t.check();
    }

    #[test]
    fn total_byte_cap() {
        let (mut t, t0) = table(4);
        for n in 1..=3 {
            t.get_or_insert(addr(n), EP, t0);
        }
        assert!(t.enqueue(&addr(1), &[0; 1000]));
        assert!(t.enqueue(&addr(2), &[0; 1000]));
        assert!(t.enqueue(&addr(3), &[0; 500]));
        assert_eq!(t.queued_bytes(), 2500);
        // Trusted peers are never evicted to make room: with 1 and 2
        // trusted, 3 cannot queue more.
        for n in 1..=2 {
            t.get_mut(&addr(n)).unwrap().trusted = true;
            t.touch(&addr(n), t0);
        }
        assert!(!t.enqueue(&addr(3), &[0; 1]));
        assert_eq!(t.evicted(), 0);
        assert_eq!(t.queued_bytes(), 2500);
        for n in 1..=2 {
            t.get_mut(&addr(n)).unwrap().trusted = false;
            t.touch(&addr(n), t0);
        }
        // Dequeuing, removal and expiry give the bytes back.
        assert_eq!(t.dequeue_all(&addr(1)).len(), 1);
        assert_eq!(t.queued_bytes(), 1500);
        let removed = t.remove(&addr(2));
        assert_eq!(t.queued_bytes(), 500);
        let (peer, packets) = removed.expect("peer 2");
        assert_eq!(packets, vec![vec![0; 1000]]);
        assert!(!peer.has_queued());
        t.touch(&addr(1), t0 + ms(1));
        assert_eq!(t.expire(t0 + ms(30_000)), 1);
        assert!(t.get(&addr(3)).is_none());
        assert_eq!(t.queued_bytes(), 0);
        assert!(t.enqueue(&addr(1), &[0; 1000]));
        t.check();
    }

    #[test]
    fn dequeue_oldest_first() {
        let (mut t, t0) = table(4);
        t.get_or_insert(addr(1), EP, t0);
        for b in 1..=5u8 {
            assert!(t.enqueue(&addr(1), &[b; 3]));
        }
        let got = t.dequeue_all(&addr(1));
        let want: Vec<Vec<u8>> = (1..=5u8).map(|b| vec![b; 3]).collect();
        assert_eq!(got, want);
        assert!(t.dequeue_all(&addr(1)).is_empty());
        assert!(t.dequeue_all(&addr(2)).is_empty());
        assert_eq!(t.get(&addr(1)).map(Peer::has_queued), Some(false));
        assert_eq!(t.queued_bytes(), 0);
        t.check();
    }

    #[test]
    fn packets_for_the_peer_are_kept_without_its_address() {
        let (mut t, t0) = table(4);
        let to = addr(1);
        t.get_or_insert(to, EP, t0);
        let mine = packet_of(1, 7, to, 64);
        let other = packet_of(2, 7, to, 64);
        let liar = packet_of(3, 7, to, 64);
        let blob = packet_of(0, 7, to, 10);
        for p in [&mine, &other, &liar, &blob, &mine] {
            assert!(t.enqueue(&to, p));
        }
        let q = t.get(&to).map(|p| p.queue).expect("peer");
        // Stored: the two packets addressed to the peer 16 bytes short,
        // the other three whole behind a 3-byte tag and length.
        let stored = t.store.get(q);
        assert_eq!(sizes(stored).1, 2 * (104 - 16) + 3 * 3 + 104 + 104 + 10);
        // In a box of that size (more than a small block holds).
        assert_eq!(stored.len(), sizes(stored).1);
        // Counted as they came, and given back whole, in order.
        assert_eq!(t.queue_of(&to), Some((5, 4 * 104 + 10)));
        assert_eq!(t.queued_bytes(), 4 * 104 + 10);
        assert_eq!(
            t.dequeue_all(&to),
            vec![mine.clone(), other, liar, blob, mine]
        );
        assert_eq!(t.queued_bytes(), 0);
        t.check();
    }

    #[test]
    fn stamps_wrap() {
        let t0 = Instant::now();
        let mut t = PeerTable::new(4, 100, 100, t0);
        let base = u64::from(u32::MAX) - 10_000;
        let before_wrap = t0 + ms(base);
        t.get_or_insert(addr(1), EP, before_wrap);
        assert_eq!(
            t.get(&addr(1)).map(Peer::last_touch),
            Some(Stamp(u32::MAX - 10_000))
        );
        // 20 s later the stamps wrapped past zero.
        let after_wrap = before_wrap + ms(20_000);
        assert_eq!(t.stamp(after_wrap), Stamp(9_999));
        t.get_or_insert(addr(2), EP, after_wrap);
        assert_eq!(
            t.stamp(after_wrap).elapsed_since(Stamp(u32::MAX - 10_000)),
            ms(20_000)
        );
        assert_eq!(t.next_expiry(), Some(before_wrap + EXPIRY));
        assert_eq!(t.expire(before_wrap + ms(29_999)), 0);
        assert_eq!(t.expire(before_wrap + ms(30_000)), 1);
        assert_eq!(t.next_expiry(), Some(after_wrap + EXPIRY));
        assert_eq!(t.expire(after_wrap + ms(29_999)), 0);
        assert_eq!(t.expire(after_wrap + ms(30_000)), 1);
        t.check();
        // A new peer's last reception is 30 s back, across the wrap too.
        let mut t = PeerTable::new(4, 100, 100, t0);
        let p = t.get_or_insert(addr(3), EP, t0 + ms(5));
        let last_rx = p.last_rx;
        assert_eq!(last_rx, Stamp(5u32.wrapping_sub(30_000)));
        assert_eq!(t.stamp(t0 + ms(5)).elapsed_since(last_rx), EXPIRY);
    }

    #[test]
    fn stamp_arithmetic() {
        assert_eq!(Stamp(5).elapsed_since(Stamp(u32::MAX)), ms(6));
        assert_eq!(Stamp(5).minus(ms(6)), Stamp(u32::MAX));
        let t0 = Instant::now();
        let t = PeerTable::new(1, 1, 1, t0 + ms(100));
        assert_eq!(t.stamp(t0), Stamp(0));
        assert_eq!(t.stamp(t0 + ms(1100)), Stamp(1000));
    }

    #[test]
    fn clock_going_back_keeps_the_order() {
        let (mut t, t0) = table(4);
        t.get_or_insert(addr(1), EP, t0 + ms(5000));
        t.get_or_insert(addr(2), EP, t0 + ms(1000));
        assert_eq!(t.get(&addr(2)).map(Peer::last_touch), Some(Stamp(5000)));
        assert_eq!(t.expire(t0 + ms(34_999)), 0);
        assert_eq!(t.expire(t0 + ms(35_000)), 2);
    }

    #[test]
    fn handles_resolve_only_to_their_own_peer() {
        let (mut t, t0) = table(1);
        t.get_or_insert(addr(1), EP, t0);
        let h1 = t.handle(&addr(1)).unwrap();
        assert_eq!(t.resolve(h1), Some(addr(1)));
        // The table is full: addr(2) evicts addr(1) and takes its slot.
        t.get_or_insert(addr(2), EP, t0);
        let h2 = t.handle(&addr(2)).unwrap();
        assert_eq!(t.resolve(h1), None);
        assert_eq!(t.resolve(h2), Some(addr(2)));
        assert!(t.remove(&addr(2)).is_some());
        assert_eq!(t.resolve(h2), None);
        assert_eq!(t.handle(&addr(2)), None);
        t.check();
    }

    #[test]
    fn stamps_due_and_back_to_instants() {
        let (mut t, t0) = table(4);
        t.get_or_insert(addr(1), EP, t0 + ms(10_000));
        let due = t.stamp(t0 + ms(12_000));
        assert!(!t.is_due(due, t0 + ms(11_999)));
        assert!(t.is_due(due, t0 + ms(12_000)));
        assert!(t.is_due(due, t0 + ms(50_000)));
        assert_eq!(t.instant_of(due), t0 + ms(12_000));
        assert_eq!(t.instant_of(t.stamp(t0 + ms(4_000))), t0 + ms(4_000));
    }

    #[test]
    fn slots_are_reused() {
        let (mut t, t0) = table(3);
        for round in 0..10u32 {
            for n in 0..3 {
                t.get_or_insert(addr(round * 3 + n), EP, t0 + ms(u64::from(round)));
            }
            t.remove(&addr(round * 3 + 1));
        }
        assert!(t.slots.len() <= 3);
        t.check();
    }

    // A reference model: a map with a touch sequence number for the order.
    #[derive(Debug, Clone)]
    enum Op {
        Insert(u8),
        Get(u8),
        Touch(u8),
        Remove(u8),
        /// Peer, size, and what kind of packet (see `packet_of`).
        Enqueue(u8, u16, u8),
        Dequeue(u8),
        Expire,
        Advance(u32),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (0..12u8).prop_map(Op::Insert),
            2 => (0..12u8).prop_map(Op::Get),
            3 => (0..12u8).prop_map(Op::Touch),
            1 => (0..12u8).prop_map(Op::Remove),
            3 => (0..12u8, 0..400u16, 0..4u8).prop_map(|(a, n, k)| Op::Enqueue(a, n, k)),
            1 => (0..12u8).prop_map(Op::Dequeue),
            2 => Just(Op::Expire),
            3 => prop_oneof![0..100u32, 0..40_000u32, Just(30_000), Just(29_999)].prop_map(Op::Advance),
        ]
    }

    /// Kind 0: bytes that are no IPv6 packet; 1: an IPv6 packet to `to`
    /// with `n` bytes of payload (kept without its destination); 2: the
    /// same to another address; 3: to `to`, but its payload length says
    /// one byte more than it has (both kept whole).
    fn packet_of(kind: u8, a: u8, to: Ipv6Addr, n: u16) -> Vec<u8> {
        if kind == 0 {
            return vec![a; usize::from(n)];
        }
        let dst = if kind == 2 { Ipv6Addr::LOCALHOST } else { to };
        let said = if kind == 3 { n.saturating_add(1) } else { n };
        let mut p = vec![0x60 | (a & 0x0F), a, 0, a];
        p.extend_from_slice(&said.to_be_bytes());
        p.extend_from_slice(&[17, 64]);
        p.extend_from_slice(&Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, u16::from(a)).octets());
        p.extend_from_slice(&dst.octets());
        p.extend((0..n).map(|i| (i as u8) ^ a));
        p
    }

    struct ModelPeer {
        endpoint: SocketAddrV4,
        created_ms: u64,
        touched_ms: u64,
        seq: u64,
        queue: Vec<Vec<u8>>,
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]
        #[test]
        fn matches_reference_model(
            capacity in 1usize..8,
            per_peer in 0usize..1200,
            total in 0usize..2500,
            start_ms in prop_oneof![Just(0u64), Just(u64::from(u32::MAX) - 50_000)],
            ops in proptest::collection::vec(op(), 1..200),
        ) {
            let t0 = Instant::now();
            let mut t = PeerTable::new(capacity, per_peer, total, t0);
            let mut model: BTreeMap<Ipv6Addr, ModelPeer> = BTreeMap::new();
            let mut now_ms = start_ms;
            let mut seq = 0u64;
            for op in ops {
                let now = t0 + ms(now_ms);
                match op {
                    Op::Insert(a) => {
                        let a6 = addr(u32::from(a));
                        let ep = SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, a), u16::from(a));
                        if !model.contains_key(&a6) {
                            if model.len() >= capacity {
                                let lru = model.iter().min_by_key(|(_, p)| p.seq).map(|(k, _)| *k);
                                if let Some(k) = lru {
                                    model.remove(&k);
                                }
                            }
                            seq += 1;
                            model.insert(a6, ModelPeer { endpoint: ep, created_ms: now_ms, touched_ms: now_ms, seq, queue: Vec::new() });
                        }
                        let m = &model[&a6];
                        let p = t.get_or_insert(a6, ep, now);
                        prop_assert_eq!(p.endpoint, m.endpoint);
                        prop_assert_eq!(p.last_rx, Stamp((m.created_ms as u32).wrapping_sub(30_000)));
                    }
                    Op::Get(a) => {
                        let a6 = addr(u32::from(a));
                        let got = t.get(&a6).map(|p| (p.endpoint, p.last_touch(), t.queue_of(&a6).map_or(0, |q| q.0)));
                        let want = model.get(&a6).map(|m| (m.endpoint, Stamp(m.touched_ms as u32), m.queue.len()));
                        prop_assert_eq!(got, want);
                    }
                    Op::Touch(a) => {
                        let a6 = addr(u32::from(a));
                        if let Some(m) = model.get_mut(&a6) {
                            seq += 1;
                            m.seq = seq;
                            m.touched_ms = now_ms;
                        }
                        t.touch(&a6, now);
                    }
                    Op::Remove(a) => {
                        let a6 = addr(u32::from(a));
                        let want = model.remove(&a6).map(|m| m.queue);
                        let got = t.remove(&a6).map(|(_, q)| q);
                        prop_assert_eq!(got, want);
                    }
                    Op::Enqueue(a, n, kind) => {
                        let a6 = addr(u32::from(a));
                        let pkt = packet_of(kind, a, a6, n);
                        let want = match model.get(&a6) {
                            Some(m) => {
                                let mine: usize = m.queue.iter().map(Vec::len).sum();
                                let mut ok = !pkt.is_empty() && pkt.len() <= total && mine + pkt.len() <= per_peer;
                                // Room is made by evicting the least
                                // recently touched others, 16 at most.
                                let mut evictions = 0;
                                while ok && model.values().flat_map(|m| &m.queue).map(Vec::len).sum::<usize>() + pkt.len() > total {
                                    let lru = model.iter().filter(|(k, _)| **k != a6).min_by_key(|(_, p)| p.seq).map(|(k, _)| *k);
                                    match lru {
                                        Some(k) if evictions < ROOM_EVICTIONS => {
                                            model.remove(&k);
                                            evictions += 1;
                                        }
                                        _ => ok = false,
                                    }
                                }
                                if ok {
                                    if let Some(m) = model.get_mut(&a6) {
                                        m.queue.push(pkt.clone());
                                    }
                                }
                                ok
                            }
                            None => false,
                        };
                        prop_assert_eq!(t.enqueue(&a6, &pkt), want);
                    }
                    Op::Dequeue(a) => {
                        let a6 = addr(u32::from(a));
                        let want = model.get_mut(&a6).map(|m| std::mem::take(&mut m.queue)).unwrap_or_default();
                        prop_assert_eq!(t.dequeue_all(&a6), want);
                    }
                    Op::Expire => {
                        let before = model.len();
                        model.retain(|_, m| now_ms - m.touched_ms < 30_000);
                        prop_assert_eq!(t.expire(now), before - model.len());
                    }
                    Op::Advance(d) => now_ms += u64::from(d),
                }
                t.check();
                prop_assert_eq!(t.len(), model.len());
                let order: Vec<Ipv6Addr> = {
                    let mut v: Vec<_> = model.iter().map(|(k, m)| (m.seq, *k)).collect();
                    v.sort();
                    v.into_iter().map(|(_, k)| k).collect()
                };
                prop_assert_eq!(t.order(), order);
                let queued: usize = model.values().flat_map(|m| &m.queue).map(Vec::len).sum();
                prop_assert_eq!(t.queued_bytes(), queued);
                let next = model.values().map(|m| m.touched_ms).min().map(|m| t0 + ms(m + 30_000));
                prop_assert_eq!(t.next_expiry(), next);
            }
        }
    }
}
