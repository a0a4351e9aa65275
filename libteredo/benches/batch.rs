//! One datagram at a time on loopback, as at a low rate: what the UDP
//! batches cost when a batch holds a single datagram. Each iteration sends
//! a 1268-byte datagram and receives it in the same thread (no wake-up in
//! the figure), so two ways of doing one side compare directly:
//! - sending: `SendBatch` (a one-message sendmmsg) against sendto, which
//!   copies no message header in (tried as a fast path for a lone
//!   datagram: no difference that held);
//! - receiving: `RecvBatch::recv_up_to` with one message against sixteen
//!   (the kernel then looks for a second datagram that is not there).

use libteredo::sys::batch::{RecvBatch, SendBatch};
use std::net::{SocketAddr, SocketAddrV4, UdpSocket};
use std::os::fd::AsFd;
use std::time::Instant;

const SIZE: usize = 1268;

fn pair() -> (UdpSocket, UdpSocket, SocketAddrV4) {
    let rx = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let tx = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let to = match rx.local_addr().expect("address") {
        SocketAddr::V4(a) => a,
        SocketAddr::V6(_) => unreachable!("bound to 127.0.0.1"),
    };
    (rx, tx, to)
}

/// Nanoseconds per iteration of `f` over `n` iterations.
fn per_iter(n: u32, mut f: impl FnMut()) -> f64 {
    let t = Instant::now();
    for _ in 0..n {
        f();
    }
    t.elapsed().as_nanos() as f64 / f64::from(n)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    if v.len().is_multiple_of(2) {
        (v[m - 1] + v[m]) / 2.0
    } else {
        v[m]
    }
}

/// Runs variants 0 and 1 in turn, `ROUNDS` times each, the order alternating
/// (this machine drifts by more than the differences measured, so they
/// must share it), and prints both medians and how often variant 0 was faster.
fn compare(what: &str, names: [&str; 2], mut run: impl FnMut(usize) -> f64) {
    let (mut xs, mut ys, mut wins) = (Vec::new(), Vec::new(), 0);
    for r in 0..ROUNDS {
        let (x, y) = if r % 2 == 0 {
            let x = run(0);
            (x, run(1))
        } else {
            let y = run(1);
            (run(0), y)
        };
        wins += usize::from(x < y);
        xs.push(x);
        ys.push(y);
    }
    println!(
        "{what}: {} {:.0} ns, {} {:.0} ns (medians of {ROUNDS} runs of {N} iterations; the first faster in {wins} runs)",
        names[0],
        median(xs),
        names[1],
        median(ys)
    );
}

const ROUNDS: usize = 10;
const N: u32 = 100_000;

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` does not, and
    // then a few iterations of each variant check that the paths work.
    let quick = !std::env::args().any(|a| a == "--bench");
    let n = if quick { 100 } else { N };
    let buf = [7u8; SIZE];
    let (rx, tx, to) = pair();
    let mut rb = RecvBatch::new(16, 65536);
    let mut sb = SendBatch::new();
    let mut send = |variant: usize| {
        per_iter(n, || {
            if variant == 0 {
                sb.push(to, &buf, 0);
                sb.flush(tx.as_fd()).expect("send");
            } else {
                tx.send_to(&buf, to).expect("send");
            }
            assert_eq!(rb.recv_up_to(rx.as_fd(), 1).expect("recv"), 1);
        })
    };
    if quick {
        send(0);
        send(1);
    } else {
        compare(
            "one 1268-byte datagram sent and received, the send by",
            ["SendBatch (one-message sendmmsg)", "sendto"],
            send,
        );
    }
    let mut receive = |variant: usize| {
        per_iter(n, || {
            tx.send_to(&buf, to).expect("send");
            let max = if variant == 0 { 1 } else { 16 };
            assert_eq!(rb.recv_up_to(rx.as_fd(), max).expect("recv"), 1);
        })
    };
    if quick {
        receive(0);
        receive(1);
    } else {
        compare(
            "one 1268-byte datagram sent and received, the receive by",
            ["RecvBatch up to 1 message", "RecvBatch up to 16"],
            receive,
        );
    }
}
