//! What the relay engine costs per forwarded packet, without the system
//! calls: a 1,240-byte IPv6 packet from the TUN device to a trusted Teredo
//! client (native -> client), and one from the client to a native host
//! (client -> native), the output buffers given back after each, as the
//! daemon does. With one peer in the table, and with 100,000 (the table's
//! lookups then leave the cache).

use criterion::{criterion_group, criterion_main, Criterion};
use libteredo::addr::{TeredoAddr, TEREDO_PREFIX};
use libteredo::proto::{ForwarderConfig, Output, Relay, SeededRandom};
use libteredo::wire::ipv6::{next_header, Ipv6Repr};
use std::hint::black_box;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV4};
use std::time::Instant;

const RELAY: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(198, 18, 2, 1), 3544);
const NATIVE: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 9, 0, 0, 0, 0, 1);

/// The mapped endpoint of client `n`: an IPv4 address of its own (the relay
/// admits a limited number of new peers per second from one address).
fn mapped(n: u32) -> SocketAddrV4 {
    SocketAddrV4::new(Ipv4Addr::from(0x2D00_0000 + n), 40_000)
}

fn client(n: u32) -> Ipv6Addr {
    let m = mapped(n);
    TeredoAddr {
        prefix: TEREDO_PREFIX,
        server: Ipv4Addr::new(198, 18, 1, 1),
        flags: 0,
        mapped_port: m.port(),
        mapped_addr: *m.ip(),
    }
    .to_ipv6()
}

/// An IPv6 UDP packet with `payload` bytes after the IPv6 header.
fn udp(src: Ipv6Addr, dst: Ipv6Addr, payload: usize) -> Vec<u8> {
    let repr = Ipv6Repr {
        src,
        dst,
        next_header: next_header::UDP,
        payload_len: 0,
        hop_limit: 64,
        traffic_class: 0,
    };
    let mut body = vec![0x5a; payload];
    body[..8].copy_from_slice(&[0x9c, 0x40, 0x13, 0x89, 0, 0, 0, 0]);
    let len = (payload as u16).to_be_bytes();
    body[4..6].copy_from_slice(&len);
    repr.build(&body)
}

/// A relay whose table holds `peers` trusted clients (each heard from at
/// its mapped endpoint); client 0 is the one the bench talks to.
fn relay(peers: u32, now: Instant) -> Relay {
    let cfg = ForwarderConfig {
        direct_bubbles: false,
        peer_capacity: 1 << 20,
        ..ForwarderConfig::default()
    };
    let mut r = Relay::new(&cfg, &mut SeededRandom::new(1), now);
    let mut out = Vec::new();
    for n in 0..peers {
        r.handle_udp(now, mapped(n), RELAY, &udp(client(n), NATIVE, 16), &mut out);
        out.clear();
    }
    let drops: Vec<_> = libteredo::proto::DropReason::ALL
        .iter()
        .map(|d| (d, r.stats().dropped(*d)))
        .filter(|x| x.1 > 0)
        .collect();
    assert_eq!(r.peers().len(), peers as usize, "{drops:?}");
    r
}

/// Runs `f` on the relay and gives back the buffers of what it output.
fn step(
    r: &mut Relay,
    out: &mut Vec<Output>,
    used: &mut Vec<Vec<u8>>,
    f: impl FnOnce(&mut Relay, &mut Vec<Output>),
) {
    f(r, out);
    for o in out.drain(..) {
        match o {
            Output::Tun(p) => used.push(p),
            Output::Udp(t) => used.push(t.payload),
            Output::Event(_) => {}
        }
    }
    r.recycle(used);
}

fn bench(c: &mut Criterion) {
    let now = Instant::now();
    let mut down = udp(NATIVE, client(0), 1200);
    let mut up = udp(client(0), NATIVE, 1200);
    let mut g = c.benchmark_group("relay_per_packet");
    for peers in [1u32, 100_000] {
        let mut r = relay(peers, now);
        let (mut out, mut used) = (Vec::new(), Vec::new());
        // Check once that both directions forward.
        r.handle_tun(now, &down, &mut out);
        assert!(matches!(out.as_slice(), [Output::Udp(t)] if t.to == mapped(0)));
        out.clear();
        r.handle_udp(now, mapped(0), RELAY, &up, &mut out);
        assert!(matches!(out.as_slice(), [Output::Tun(p)] if *p == up));
        out.clear();
        // Each packet for the next peer in turn (its address written into
        // the same packet: the engine does not check UDP checksums).
        let who: Vec<(Ipv6Addr, SocketAddrV4)> =
            (0..peers).map(|n| (client(n), mapped(n))).collect();
        let mut i = 0;
        g.bench_function(format!("native_to_client_1200/{peers}_peers"), |b| {
            b.iter(|| {
                i = (i + 1) % who.len();
                down[24..40].copy_from_slice(&who[i].0.octets());
                step(&mut r, &mut out, &mut used, |r, out| {
                    r.handle_tun(now, black_box(&down), out)
                })
            })
        });
        g.bench_function(format!("client_to_native_1200/{peers}_peers"), |b| {
            b.iter(|| {
                i = (i + 1) % who.len();
                up[8..24].copy_from_slice(&who[i].0.octets());
                let from = who[i].1;
                step(&mut r, &mut out, &mut used, |r, out| {
                    r.handle_udp(now, from, RELAY, black_box(&up), out)
                })
            })
        });
        assert_eq!(r.peers().len(), peers as usize);
        assert!(r.peers().queued_bytes() == 0);
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
