//! The table's storage: a slab of nodes threaded on one intrusive doubly
//! linked list per class of peer, in touch order (least recently touched
//! at the head), a free list of slots, and a hash index of slot numbers.
//! Making room evicts from the head of the lowest class.

use super::queue::queue_bytes;
use super::{Class, Node, Peer, PeerTable, Stamp, NIL};
use std::hash::BuildHasher;
use std::net::{Ipv6Addr, SocketAddrV4};
use std::time::Instant;

impl PeerTable {
    pub(super) fn insert_new(
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
    pub(super) fn make_room(&mut self, top: Class) -> bool {
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
    pub(super) fn victim(&mut self, top: Class, spare: u32) -> Option<u32> {
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

    /// Advances the latest instant seen and returns its stamp.
    pub(super) fn clock(&mut self, now: Instant) -> Stamp {
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
    pub(super) fn find(&self, addr: &Ipv6Addr) -> Option<u32> {
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
    pub(super) fn index_remove(&mut self, addr: &Ipv6Addr) -> Option<u32> {
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
    pub(super) fn evict(&mut self, i: u32) {
        self.discard(i);
        self.evicted += 1;
    }

    /// Removes slot `i` (in use) and frees its queue.
    pub(super) fn discard(&mut self, i: u32) {
        let addr = self.slots[i as usize].addr;
        self.index_remove(&addr);
        let q = self.release(i).queue;
        self.queued = self.queued.saturating_sub(queue_bytes(self.store.get(q)));
        self.store.free(q);
    }

    /// Unlinks slot `i` and puts it on the free list; returns its peer, the
    /// queue still in the store and counted. The caller removed it from
    /// the index.
    pub(super) fn release(&mut self, i: u32) -> Peer {
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
    pub(super) fn unlink(&mut self, i: u32) {
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
    pub(super) fn link_tail(&mut self, i: u32) {
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
