//! What a relay does first with every datagram: parse the Teredo
//! encapsulation, read the IPv6 addresses and decode the source as a Teredo
//! address. Inputs are built with the crate's own wire builders.

use criterion::{criterion_group, criterion_main, Criterion};
use libteredo::addr::{self, TeredoAddr, TEREDO_PREFIX};
use libteredo::proto::{advert, advert_datagram};
use libteredo::wire::ipv6::{build_bubble, next_header, Ipv6Repr};
use libteredo::wire::teredo::{Auth, TeredoPacket};
use std::hint::black_box;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV4};

const SERVER: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);

fn client(mapped: Ipv4Addr, port: u16) -> Ipv6Addr {
    TeredoAddr {
        prefix: TEREDO_PREFIX,
        server: SERVER,
        flags: 0x0123,
        mapped_port: port,
        mapped_addr: mapped,
    }
    .to_ipv6()
}

/// A 1280-byte IPv6/UDP packet between two Teredo clients.
fn data_packet() -> Vec<u8> {
    let repr = Ipv6Repr {
        src: client(Ipv4Addr::new(198, 51, 100, 7), 40_000),
        dst: client(Ipv4Addr::new(203, 0, 113, 9), 50_000),
        next_header: next_header::UDP,
        payload_len: 0,
        hop_limit: 64,
        traffic_class: 0,
    };
    repr.build(&[0x5a; 1240])
}

fn bubble() -> Vec<u8> {
    build_bubble(
        client(Ipv4Addr::new(198, 51, 100, 7), 40_000),
        client(Ipv4Addr::new(203, 0, 113, 9), 50_000),
    )
    .to_vec()
}

/// A server's router advertisement to a qualifying client (RFC 4380 5.2.1):
/// authentication header with the client's nonce, origin indication, then
/// the RA with the Teredo prefix and an MTU option.
fn router_advert() -> Vec<u8> {
    let auth = Auth {
        client_id: b"",
        auth_value: b"",
        nonce: [0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88],
        confirmation: 0,
    };
    advert_datagram(
        Some(auth),
        SocketAddrV4::new(Ipv4Addr::new(198, 51, 100, 7), 40_000),
        addr::server_link_local(SERVER),
        addr::LINK_LOCAL_RESTRICTED,
        advert(TEREDO_PREFIX, SERVER, Some(1280)),
    )
}

/// Parse, read both addresses, decode the source: what deciding where a
/// datagram goes costs before any table lookup.
fn classify(datagram: &[u8]) -> Option<(Ipv6Addr, Option<TeredoAddr>)> {
    let p = TeredoPacket::parse(datagram).ok()?;
    let src = p.ipv6.src_addr();
    let dst = p.ipv6.dst_addr();
    Some((dst, TeredoAddr::parse(&src)))
}

fn bench(c: &mut Criterion) {
    let cases = [
        ("data_1280", data_packet()),
        ("bubble", bubble()),
        ("ra_auth_origin", router_advert()),
    ];
    let mut g = c.benchmark_group("classify");
    for (name, datagram) in &cases {
        // Each input must parse, or the figures mean nothing.
        let parsed = TeredoPacket::parse(datagram);
        assert!(parsed.is_ok(), "{name}: {parsed:?}");
        g.bench_function(*name, |b| b.iter(|| classify(black_box(datagram))));
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
