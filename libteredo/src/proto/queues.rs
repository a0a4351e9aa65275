//! Where a peer table keeps the bytes of its queues: one block per queue,
//! referred to by a 4-byte [`QueueId`].
//!
//! A flooded relay holds a million one-packet queues. Given to the global
//! allocator one by one, each would cost its allocator header and rounding
//! (an 88-byte queue takes a 96-byte chunk) and a 16-byte fat pointer in
//! its peer's entry. Here a queue of up to [`LARGEST_SMALL`] bytes takes a
//! block of the smallest size class that holds it (classes are
//! [`GRAIN`] bytes apart), cut from pages of about [`PAGE`] bytes; a larger
//! one gets an exact-size box of its own. The bytes after a queue's end in
//! its block are [`PAD`], which no entry starts with.
//!
//! Freed blocks are chained through their first four bytes and reused
//! first. A class whose last block is freed gives back all its pages but
//! one (the memory a flood took returns when its queues go).

/// A queue's place in a [`QueueStore`]: its size class in the top bits,
/// its block number in the rest; [`QueueId::NONE`] for no queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct QueueId(u32);

impl QueueId {
    pub(crate) const NONE: QueueId = QueueId(u32::MAX);

    pub(crate) fn is_none(self) -> bool {
        self == QueueId::NONE
    }

    fn class(self) -> usize {
        (self.0 >> INDEX_BITS) as usize
    }

    fn index(self) -> u32 {
        self.0 & INDEX_MASK
    }

    fn new(class: usize, index: u32) -> QueueId {
        QueueId(((class as u32) << INDEX_BITS) | index)
    }
}

/// Size classes are this many bytes apart.
const GRAIN: usize = 8;
/// Small classes: blocks of 8, 16, ... `LARGEST_SMALL` bytes.
const SMALL_CLASSES: usize = 31;
/// The largest queue kept in a block.
const LARGEST_SMALL: usize = SMALL_CLASSES * GRAIN;
/// The class number of queues in boxes of their own.
const BIG: usize = SMALL_CLASSES;
const INDEX_BITS: u32 = 27;
const INDEX_MASK: u32 = (1 << INDEX_BITS) - 1;
/// Blocks per class at most (the last number is [`QueueId::NONE`]'s).
const MAX_INDEX: u32 = INDEX_MASK;
/// A page's size (rounded down to a whole number of its class's blocks).
const PAGE: usize = 8 * 1024;
/// What follows a queue's last entry in its block.
pub(super) const PAD: u8 = 0xFF;
/// The end of a free list.
const NO_BLOCK: u32 = u32::MAX;

/// The blocks of one size.
#[derive(Debug)]
struct Class {
    size: usize,
    per_page: u32,
    pages: Vec<Box<[u8]>>,
    /// Blocks cut from the pages so far: the next new block's number.
    fresh: u32,
    /// The first freed block, reused before a new one.
    free: u32,
    /// Blocks in use.
    live: u32,
}

impl Class {
    fn new(size: usize) -> Class {
        Class {
            size,
            per_page: (PAGE / size) as u32,
            pages: Vec::new(),
            fresh: 0,
            free: NO_BLOCK,
            live: 0,
        }
    }

    /// The page and byte range of block `i`.
    fn place(&self, i: u32) -> (usize, std::ops::Range<usize>) {
        let page = (i / self.per_page) as usize;
        let at = (i % self.per_page) as usize * self.size;
        (page, at..at + self.size)
    }

    fn block(&self, i: u32) -> &[u8] {
        let (page, r) = self.place(i);
        self.pages.get(page).and_then(|p| p.get(r)).unwrap_or(&[])
    }

    fn block_mut(&mut self, i: u32) -> &mut [u8] {
        let (page, r) = self.place(i);
        self.pages
            .get_mut(page)
            .and_then(|p| p.get_mut(r))
            .unwrap_or(&mut [])
    }

    /// A block's number: a freed one, or a new one (a new page when the
    /// last is used up). None when the class has no numbers left.
    fn alloc(&mut self) -> Option<u32> {
        let i = if self.free != NO_BLOCK {
            let i = self.free;
            let b = self.block(i);
            self.free = b
                .first_chunk::<4>()
                .map_or(NO_BLOCK, |c| u32::from_ne_bytes(*c));
            i
        } else {
            if self.fresh >= MAX_INDEX {
                return None;
            }
            let i = self.fresh;
            if (i / self.per_page) as usize >= self.pages.len() {
                let len = self.per_page as usize * self.size;
                self.pages.push(vec![PAD; len].into_boxed_slice());
            }
            self.fresh += 1;
            i
        };
        self.live += 1;
        Some(i)
    }

    fn release(&mut self, i: u32) {
        if i >= self.fresh {
            return;
        }
        self.live = self.live.saturating_sub(1);
        if self.live == 0 {
            // Nothing in use: every page but the first goes.
            self.pages.truncate(1);
            self.pages.shrink_to_fit();
            self.fresh = 0;
            self.free = NO_BLOCK;
            return;
        }
        let next = self.free;
        if let Some(c) = self.block_mut(i).first_chunk_mut::<4>() {
            *c = next.to_ne_bytes();
        }
        self.free = i;
    }
}

/// The blocks and boxes of a table's queues.
#[derive(Debug)]
pub(crate) struct QueueStore {
    classes: Vec<Class>,
    /// Queues over [`LARGEST_SMALL`] bytes; a free slot holds an empty box.
    big: Vec<Box<[u8]>>,
    big_free: Vec<u32>,
}

impl Default for QueueStore {
    fn default() -> Self {
        QueueStore {
            classes: (GRAIN..=LARGEST_SMALL)
                .step_by(GRAIN)
                .map(Class::new)
                .collect(),
            big: Vec::new(),
            big_free: Vec::new(),
        }
    }
}

impl QueueStore {
    /// The bytes of queue `id`: what was put, then [`PAD`] bytes up to the
    /// block's end (none for a box); empty for [`QueueId::NONE`].
    pub(crate) fn get(&self, id: QueueId) -> &[u8] {
        if id.is_none() {
            return &[];
        }
        match self.classes.get(id.class()) {
            Some(c) => c.block(id.index()),
            None => self.big.get(id.index() as usize).map_or(&[], |b| b),
        }
    }

    /// Stores `bytes` (not empty) as a new queue. None when empty or when
    /// the store has no numbers left for its class.
    pub(crate) fn put(&mut self, bytes: &[u8]) -> Option<QueueId> {
        if bytes.is_empty() {
            return None;
        }
        let class = (bytes.len() - 1) / GRAIN;
        if let Some(c) = self.classes.get_mut(class) {
            let i = c.alloc()?;
            let block = c.block_mut(i);
            let (head, pad) = block.split_at_mut(bytes.len());
            head.copy_from_slice(bytes);
            pad.fill(PAD);
            return Some(QueueId::new(class, i));
        }
        let boxed: Box<[u8]> = bytes.into();
        match self.big_free.pop() {
            Some(i) => {
                if let Some(slot) = self.big.get_mut(i as usize) {
                    *slot = boxed;
                }
                Some(QueueId::new(BIG, i))
            }
            None => {
                let i = u32::try_from(self.big.len())
                    .ok()
                    .filter(|&i| i < MAX_INDEX)?;
                self.big.push(boxed);
                Some(QueueId::new(BIG, i))
            }
        }
    }

    /// Frees queue `id` (nothing for [`QueueId::NONE`]).
    pub(crate) fn free(&mut self, id: QueueId) {
        if id.is_none() {
            return;
        }
        match self.classes.get_mut(id.class()) {
            Some(c) => c.release(id.index()),
            None => {
                let i = id.index();
                if let Some(slot) = self.big.get_mut(i as usize) {
                    if !slot.is_empty() {
                        *slot = Box::default();
                        self.big_free.push(i);
                    }
                }
                if self.big_free.len() == self.big.len() {
                    self.big = Vec::new();
                    self.big_free = Vec::new();
                }
            }
        }
    }

    /// Queues stored (for the tests' invariant checks).
    #[cfg(test)]
    pub(crate) fn live(&self) -> usize {
        let small: usize = self.classes.iter().map(|c| c.live as usize).sum();
        small + self.big.len() - self.big_free.len()
    }

    /// Pages held by the small classes.
    #[cfg(test)]
    fn pages(&self) -> usize {
        self.classes.iter().map(|c| c.pages.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    /// What `get` gives back for `bytes`: them, then padding to the class.
    fn padded(bytes: &[u8]) -> Vec<u8> {
        let mut v = bytes.to_vec();
        if bytes.len() <= LARGEST_SMALL {
            v.resize(bytes.len().div_ceil(GRAIN) * GRAIN, PAD);
        }
        v
    }

    #[test]
    fn blocks_are_the_smallest_class_that_fits() {
        let mut s = QueueStore::default();
        for n in [1usize, 7, 8, 9, 88, 247, 248, 249, 1240] {
            let data: Vec<u8> = (0..n).map(|i| i as u8 & 0x7F).collect();
            let id = s.put(&data).expect("room");
            assert_eq!(s.get(id), padded(&data), "{n} bytes");
        }
        assert_eq!(s.get(QueueId::NONE), &[] as &[u8]);
        assert_eq!(s.put(&[]), None);
        assert_eq!(s.live(), 9);
    }

    #[test]
    fn freed_blocks_are_reused_and_pages_given_back() {
        let mut s = QueueStore::default();
        let per_page = PAGE / 88;
        let ids: Vec<QueueId> = (0..3 * per_page)
            .map(|i| s.put(&[i as u8; 88]).expect("room"))
            .collect();
        assert_eq!(s.pages(), 3);
        // A freed block is the next one used, with no new page.
        s.free(ids[5]);
        let again = s.put(&[0xAB; 85]).expect("room");
        assert_eq!(again, ids[5]);
        assert_eq!(s.get(again)[..85], [0xAB; 85]);
        assert_eq!(s.get(again)[85..], [PAD; 3]);
        // The others were not disturbed.
        for (i, id) in ids.iter().enumerate().filter(|&(i, _)| i != 5) {
            assert_eq!(s.get(*id), &[i as u8; 88][..]);
        }
        s.free(again);
        for id in ids.iter().filter(|&&id| id != again) {
            s.free(*id);
        }
        assert_eq!(s.live(), 0);
        // One page kept for the next flood's first queues.
        assert_eq!(s.pages(), 1);
        let id = s.put(&[1; 88]).expect("room");
        assert_eq!(id, QueueId::new(10, 0));
        // Freeing nothing, or a box twice, is harmless.
        s.free(QueueId::NONE);
        let big = s.put(&[2; 300]).expect("room");
        s.free(big);
        s.free(big);
        assert_eq!(s.live(), 1);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        /// Against a map of what each live queue holds: puts and frees in
        /// any order never disturb another queue.
        #[test]
        fn queues_keep_their_bytes(ops in proptest::collection::vec((0u8..3, 0usize..400, any::<u8>()), 1..300)) {
            let mut s = QueueStore::default();
            let mut model: BTreeMap<u32, Vec<u8>> = BTreeMap::new();
            let mut ids: Vec<QueueId> = Vec::new();
            for (op, n, b) in ops {
                match op {
                    0 | 1 => {
                        let data = vec![b & 0x7F; n];
                        match s.put(&data) {
                            Some(id) => {
                                prop_assert!(!data.is_empty());
                                prop_assert!(model.insert(id.0, data).is_none());
                                ids.push(id);
                            }
                            None => prop_assert!(data.is_empty()),
                        }
                    }
                    _ => {
                        if !ids.is_empty() {
                            let id = ids.swap_remove(n % ids.len());
                            model.remove(&id.0);
                            s.free(id);
                        }
                    }
                }
                prop_assert_eq!(s.live(), model.len());
                for (&id, data) in &model {
                    prop_assert_eq!(s.get(QueueId(id)), &padded(data)[..]);
                }
            }
        }
    }
}
