//! The floor of `teredo-bench`: the least a relay could do. It plays the
//! relay's role in the lab (same namespace, same 2001::/32 route) with no
//! Teredo at all: every IPv6 packet read from its TUN device goes out
//! unchanged in a UDP datagram to the client's endpoint, and every UDP
//! datagram received is written to the TUN device unchanged.
//!
//! ```text
//! teredo-bench-floor --tun NAME --bind V4:PORT --mode single|batch
//! ```
//!
//! The client's endpoint is where the last datagram starting with `PUNCH`
//! came from (the benchmark's receiver sends one to open its NAT).
//! `single`: one read and one send per packet, each way. `batch`: up to 64
//! packets read from the TUN device per wake-up and sent with one
//! `sendmmsg`; datagrams received with `recvmmsg`. Two threads, one per
//! direction. Prints `ready` once the TUN device exists.

#[path = "teredo-bench/net.rs"]
mod net;

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::os::fd::AsRawFd;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use net::{big_buffers, RawAddr, RecvBatch, SendBatch};
use nix::libc;

const BATCH: usize = 64;
const MTU: usize = 2048;

#[repr(C)]
struct IfReq {
    name: [u8; libc::IFNAMSIZ],
    flags: libc::c_short,
    _pad: [u8; 22],
}

fn open_tun(name: &str) -> Result<File, String> {
    if name.is_empty() || name.len() >= libc::IFNAMSIZ {
        return Err(format!("bad interface name {name:?}"));
    }
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/net/tun")
        .map_err(|e| format!("/dev/net/tun: {e}"))?;
    let mut req = IfReq {
        name: [0; libc::IFNAMSIZ],
        flags: (libc::IFF_TUN | libc::IFF_NO_PI) as libc::c_short,
        _pad: [0; 22],
    };
    req.name[..name.len()].copy_from_slice(name.as_bytes());
    // SAFETY: TUNSETIFF reads and writes an ifreq-sized struct.
    let r = unsafe { libc::ioctl(f.as_raw_fd(), libc::TUNSETIFF as _, &mut req as *mut IfReq) };
    if r < 0 {
        return Err(format!(
            "TUNSETIFF {name}: {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok(f)
}

/// The client's endpoint packed in a u64 (0: not known yet).
fn pack(a: SocketAddrV4) -> u64 {
    (u64::from(u32::from(*a.ip())) << 16) | u64::from(a.port())
}

fn unpack(v: u64) -> Option<SocketAddrV4> {
    (v != 0).then(|| SocketAddrV4::new(Ipv4Addr::from((v >> 16) as u32), v as u16))
}

fn tun_to_udp_single(mut tun: File, udp: UdpSocket, peer: Arc<AtomicU64>) {
    let mut buf = vec![0u8; MTU];
    loop {
        let Ok(n) = tun.read(&mut buf) else { continue };
        if let Some(to) = unpack(peer.load(Ordering::Relaxed)) {
            let _ = udp.send_to(&buf[..n], to);
        }
    }
}

fn tun_to_udp_batch(tun: File, udp: UdpSocket, peer: Arc<AtomicU64>) {
    let mut b = SendBatch::new(BATCH, MTU);
    let (tfd, ufd) = (tun.as_raw_fd(), udp.as_raw_fd());
    loop {
        let mut pfd = libc::pollfd {
            fd: tfd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one pollfd.
        unsafe { libc::poll(&mut pfd, 1, -1) };
        let mut n = 0;
        while n < BATCH {
            // SAFETY: reads into an owned buffer of MTU bytes; the
            // descriptor is non-blocking.
            let r = unsafe { libc::read(tfd, b.bufs[n].as_mut_ptr().cast(), MTU) };
            if r <= 0 {
                break;
            }
            b.lens[n] = r as usize;
            n += 1;
        }
        let Some(to) = unpack(peer.load(Ordering::Relaxed)) else {
            continue;
        };
        let to = RawAddr::new(SocketAddr::V4(to));
        for name in b.names[..n].iter_mut() {
            *name = to;
        }
        // sendmmsg may send fewer than asked: move the rest to the front
        // and send it too.
        let mut left = n;
        while left > 0 {
            match b.send(ufd, left, true) {
                Ok(k) if k > 0 && k < left => {
                    for i in k..left {
                        b.bufs.swap(i - k, i);
                        b.lens.swap(i - k, i);
                    }
                    left -= k;
                }
                _ => break,
            }
        }
    }
}

fn udp_to_tun_single(mut tun: File, udp: UdpSocket, peer: Arc<AtomicU64>) {
    let mut buf = vec![0u8; MTU];
    loop {
        let Ok((n, from)) = udp.recv_from(&mut buf) else {
            continue;
        };
        if buf[..n].starts_with(b"PUNCH") {
            if let SocketAddr::V4(v4) = from {
                peer.store(pack(v4), Ordering::Relaxed);
            }
            continue;
        }
        let _ = tun.write(&buf[..n]);
    }
}

fn udp_to_tun_batch(tun: File, udp: UdpSocket, peer: Arc<AtomicU64>) {
    let mut b = RecvBatch::new(BATCH, MTU);
    let (tfd, ufd) = (tun.as_raw_fd(), udp.as_raw_fd());
    loop {
        let Ok(n) = b.recv(ufd) else { continue };
        for i in 0..n {
            let len = b.len(i);
            let pkt = &b.bufs[i][..len];
            if pkt.starts_with(b"PUNCH") {
                if let Some(SocketAddr::V4(v4)) = b.names[i].get() {
                    peer.store(pack(v4), Ordering::Relaxed);
                }
                continue;
            }
            // SAFETY: writes `len` bytes of an owned buffer.
            unsafe { libc::write(tfd, pkt.as_ptr().cast(), len) };
        }
    }
}

fn run(args: &[String]) -> Result<(), String> {
    let get = |k: &str| {
        args.iter()
            .position(|a| a == k)
            .and_then(|i| args.get(i + 1))
            .ok_or_else(|| format!("missing {k}"))
    };
    let name = get("--tun")?;
    let bind: SocketAddrV4 = get("--bind")?
        .parse()
        .map_err(|_| "--bind wants V4:PORT".to_string())?;
    let batch = match get("--mode")?.as_str() {
        "single" => false,
        "batch" => true,
        m => return Err(format!("--mode {m:?}: single or batch")),
    };
    let tun = open_tun(name)?;
    if batch {
        // SAFETY: fcntl on our descriptor.
        unsafe {
            let fl = libc::fcntl(tun.as_raw_fd(), libc::F_GETFL);
            libc::fcntl(tun.as_raw_fd(), libc::F_SETFL, fl | libc::O_NONBLOCK);
        }
    }
    let udp = UdpSocket::bind(bind).map_err(|e| format!("bind {bind}: {e}"))?;
    big_buffers(udp.as_raw_fd());
    let peer = Arc::new(AtomicU64::new(0));
    let (tun2, udp2, peer2) = (
        tun.try_clone().map_err(|e| e.to_string())?,
        udp.try_clone().map_err(|e| e.to_string())?,
        peer.clone(),
    );
    println!("ready");
    let _ = std::io::stdout().flush();
    let t = std::thread::spawn(move || {
        if batch {
            udp_to_tun_batch(tun2, udp2, peer2)
        } else {
            udp_to_tun_single(tun2, udp2, peer2)
        }
    });
    if batch {
        tun_to_udp_batch(tun, udp, peer)
    } else {
        tun_to_udp_single(tun, udp, peer)
    }
    let _ = t.join();
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("teredo-bench-floor: {e}");
            ExitCode::FAILURE
        }
    }
}
