//! Unit and property tests of the peer table.

use super::queue::{entries, queue_bytes, sizes};
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
