//! The peer table at a million peers: lookups that hit and miss, insertions
//! that evict, touches, and the memory each entry takes, counted by a global
//! allocator (what the table asked for, not `size_of` arithmetic).

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use libteredo::addr::{TeredoAddr, TEREDO_PREFIX};
use libteredo::proto::{PeerTable, DEFAULT_QUEUE_BYTES, DEFAULT_TOTAL_QUEUE_BYTES};
use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV4};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Bytes currently allocated through the global allocator.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call forwards to `System` with the caller's arguments; the
// counter is bookkeeping only.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            LIVE.fetch_add(layout.size(), Ordering::Relaxed);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            LIVE.fetch_add(layout.size(), Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
            LIVE.fetch_add(new_size, Ordering::Relaxed);
        }
        p
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const PEERS: usize = 1_000_000;

/// xorshift64*: reproducible addresses without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A Teredo address of a client behind a random mapping, with RFC 5991
    /// random flag bits, as a relay sees them.
    fn teredo(&mut self) -> Ipv6Addr {
        let r = self.next();
        TeredoAddr {
            prefix: TEREDO_PREFIX,
            server: Ipv4Addr::new(192, 0, 2, 1),
            flags: (r >> 48) as u16 & 0x3cff,
            mapped_port: (r >> 32) as u16,
            mapped_addr: Ipv4Addr::from(r as u32),
        }
        .to_ipv6()
    }
}

fn endpoint(a: &Ipv6Addr) -> SocketAddrV4 {
    TeredoAddr::from_ipv6(a).mapped()
}

fn peers(c: &mut Criterion) {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let present: Vec<Ipv6Addr> = (0..PEERS).map(|_| rng.teredo()).collect();
    let absent: Vec<Ipv6Addr> = (0..PEERS).map(|_| rng.teredo()).collect();
    let epoch = Instant::now();
    let now = epoch + Duration::from_secs(1);

    let before = LIVE.load(Ordering::Relaxed);
    let mut table = PeerTable::new(PEERS, DEFAULT_QUEUE_BYTES, DEFAULT_TOTAL_QUEUE_BYTES, epoch);
    for a in &present {
        table.get_or_insert(*a, endpoint(a), now);
    }
    let after = LIVE.load(Ordering::Relaxed);
    let n = table.len();
    println!(
        "peers: {n} entries, {} bytes/entry",
        (after - before) as f64 / n as f64
    );

    // As in a flooded relay: one 104-byte packet (64 bytes of UDP payload)
    // queued for each peer, with the total cap raised so that every peer
    // holds one.
    {
        let before = LIVE.load(Ordering::Relaxed);
        let mut t = PeerTable::new(PEERS, DEFAULT_QUEUE_BYTES, 1 << 30, epoch);
        // A UDP packet from a native host to the peer, as the TUN device
        // gives it (the table keeps it without its destination address).
        let mut packet = [0u8; 104];
        packet[0] = 0x60;
        packet[4..6].copy_from_slice(&64u16.to_be_bytes());
        packet[6] = 17;
        packet[7] = 64;
        packet[8..24].copy_from_slice(&Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1).octets());
        for a in &present {
            t.get_or_insert(*a, endpoint(a), now);
            packet[24..40].copy_from_slice(&a.octets());
            t.enqueue(a, &packet);
        }
        let after = LIVE.load(Ordering::Relaxed);
        println!(
            "peers: {} entries with a 104-byte packet queued each, {} bytes/entry (allocations \
             as asked for, before the allocator's own overhead)",
            t.len(),
            (after - before) as f64 / t.len() as f64
        );
    }

    let mut g = c.benchmark_group("peers_1M");
    let mut i = 0usize;
    g.bench_function("get_hit", |b| {
        b.iter(|| {
            i = (i + 1) % PEERS;
            black_box(table.get(&present[i]).map(|p| p.endpoint))
        })
    });
    g.bench_function("get_miss", |b| {
        b.iter(|| {
            i = (i + 1) % PEERS;
            black_box(table.get(&absent[i]).map(|p| p.endpoint))
        })
    });
    g.bench_function("get_or_insert_existing", |b| {
        b.iter(|| {
            i = (i + 1) % PEERS;
            let a = present[i];
            black_box(table.get_or_insert(a, endpoint(&a), now).bubbles)
        })
    });
    g.bench_function("touch", |b| {
        b.iter(|| {
            i = (i + 1) % PEERS;
            table.touch(&present[i], now);
        })
    });
    // The table is full: each new peer evicts the least recently touched.
    g.bench_function("get_or_insert_new_evicting", |b| {
        b.iter_batched(
            || rng.teredo(),
            |a| black_box(table.get_or_insert(a, endpoint(&a), now).bubbles),
            BatchSize::SmallInput,
        )
    });
    g.finish();
    assert_eq!(table.len(), PEERS);
}

criterion_group!(benches, peers);
criterion_main!(benches);
