//! The echo responder on loopback inside a fresh network namespace (it
//! binds UDP 3544 and 3545, so each test gets a namespace of its own).

mod common;

use common::{echo, Netns, Proc, BIN};
use std::net::{Ipv6Addr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

const CLIENT: &str = "2001:db8:9::1";
const MIRE: &str = "2001:0:7f00:1:8000:f226:80ff:fffe";

fn a(s: &str) -> Ipv6Addr {
    s.parse().unwrap()
}

/// Starts the responder in `ns` on 127.0.0.1, waiting until it listens.
fn start(ns: &Netns, allow_private: bool) -> Proc {
    let mut cmd = ns.command(BIN);
    cmd.args(["--bind", "127.0.0.1"]);
    if allow_private {
        cmd.arg("--allow-private");
    }
    let p = Proc::spawn(&mut cmd);
    if let Err(e) = p.wait_for_line("answering", Duration::from_secs(10)) {
        panic!("the responder did not start: {e}");
    }
    p
}

/// Sends each datagram to 127.0.0.1:`port` and collects every reply that
/// arrives within `wait` after the last one.
fn exchange(port: u16, datagrams: Vec<Vec<u8>>, wait: Duration) -> Vec<Vec<u8>> {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    let to: SocketAddr = ([127, 0, 0, 1], port).into();
    for d in &datagrams {
        s.send_to(d, to).unwrap();
    }
    let mut replies = Vec::new();
    let deadline = Instant::now() + wait;
    let mut buf = [0u8; 70000];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return replies;
        }
        s.set_read_timeout(Some(left)).unwrap();
        match s.recv_from(&mut buf) {
            Ok((n, from)) => {
                assert_eq!(
                    from, to,
                    "a reply must come from the port the request went to"
                );
                replies.push(buf[..n].to_vec());
            }
            Err(_) => return replies,
        }
    }
}

fn answers_echo_requests_byte_for_byte() {
    let ns = Netns::new("mirer");
    let mut p = start(&ns, true);
    ns.run_in(|| {
        let data: Vec<u8> = (0..100u8).collect();
        let req = echo(128, a(CLIENT), a(MIRE), 61, 0xbeef, 42, &data);
        // The reply, built by hand: addresses swapped, hop limit 64, the
        // same identifier, sequence and data, a fresh checksum.
        let want = echo(129, a(MIRE), a(CLIENT), 64, 0xbeef, 42, &data);
        for port in [3544, 3545] {
            let r = exchange(port, vec![req.clone()], Duration::from_secs(2));
            assert_eq!(r, vec![want.clone()], "port {port}");
        }
        // With the Teredo authentication and origin indication headers in
        // front, the same reply.
        let mut wrapped = vec![0, 1, 2, 0, b'i', b'd', 1, 2, 3, 4, 5, 6, 7, 8, 0];
        wrapped.extend_from_slice(&[0, 0, 0xf2, 0x27, 0x39, 0xed, 0xfe, 0xfe]);
        wrapped.extend_from_slice(&req);
        let r = exchange(3545, vec![wrapped], Duration::from_secs(2));
        assert_eq!(r, vec![want.clone()]);
        // An empty echo request, and one per request.
        let empty = echo(128, a(CLIENT), a(MIRE), 1, 0, 0, &[]);
        let r = exchange(3544, vec![empty.clone(), empty], Duration::from_secs(2));
        assert_eq!(r.len(), 2);
        assert_eq!(r[0], echo(129, a(MIRE), a(CLIENT), 64, 0, 0, &[]));
    });
    assert!(p.is_alive());
}

fn drops_everything_else_and_survives() {
    let ns = Netns::new("mireg");
    let mut p = start(&ns, true);
    ns.run_in(|| {
        let req = echo(128, a(CLIENT), a(MIRE), 61, 7, 8, b"payload!");
        let mut bad: Vec<Vec<u8>> = Vec::new();
        // Every truncation of a valid request.
        for n in 0..req.len() {
            bad.push(req[..n].to_vec());
        }
        // A bad checksum, a reply, a wrong version, a length beyond the
        // datagram, a multicast destination, a truncated Teredo header.
        let mut c = req.clone();
        *c.last_mut().unwrap() ^= 1;
        bad.push(c);
        bad.push(echo(129, a(CLIENT), a(MIRE), 61, 7, 8, b"payload!"));
        let mut v = req.clone();
        v[0] = 0x45;
        bad.push(v);
        let mut l = req.clone();
        l[5] += 1;
        bad.push(l);
        bad.push(echo(128, a(CLIENT), a("ff02::1"), 61, 7, 8, b"x"));
        bad.push(vec![0, 1, 200, 200, 0]);
        bad.push(vec![0, 0, 1]);
        // Pseudo-random garbage (a fixed LCG, so failures replay).
        let mut x: u32 = 12345;
        for len in [1usize, 7, 39, 40, 41, 48, 100, 1280, 1500, 9000] {
            let g: Vec<u8> = (0..len)
                .map(|_| {
                    x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                    (x >> 16) as u8
                })
                .collect();
            bad.push(g);
        }
        let mut g6 = bad.last().unwrap().clone();
        g6[0] = 0x60;
        bad.push(g6);
        for port in [3544, 3545] {
            let r = exchange(port, bad.clone(), Duration::from_millis(500));
            assert!(r.is_empty(), "port {port}: {} replies to garbage", r.len());
        }
        // Still answering.
        let r = exchange(3544, vec![req], Duration::from_secs(2));
        assert_eq!(r.len(), 1);
    });
    assert!(p.is_alive(), "the responder died");
}

fn private_sources_are_refused_by_default() {
    let ns = Netns::new("mirep");
    let mut p = start(&ns, false);
    ns.run_in(|| {
        let req = echo(128, a(CLIENT), a(MIRE), 61, 1, 2, b"hi");
        let r = exchange(3544, vec![req], Duration::from_millis(700));
        assert!(
            r.is_empty(),
            "answered a loopback source without --allow-private"
        );
    });
    assert!(p.is_alive());
}

fn port_in_use_is_reported() {
    let ns = Netns::new("mireb");
    let _first = start(&ns, true);
    let out = common::run(
        ns.command(BIN).args(["--bind", "127.0.0.1"]),
        Duration::from_secs(10),
    );
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot listen on 127.0.0.1:3544"), "{err}");
}

teredo_lab::lab_main! {
    needs(netns): [
        answers_echo_requests_byte_for_byte,
        drops_everything_else_and_survives,
        private_sources_are_refused_by_default,
        port_in_use_is_reported,
    ],
}
