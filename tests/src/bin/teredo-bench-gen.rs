//! The load generator and receiver of `teredo-bench`, run by it inside the
//! lab's namespaces. Every mode prints one line of `key=value` results.
//!
//! ```text
//! teredo-bench-gen udp6 --dst V6 --port P --size N --rate R --secs S [--gso]
//!     UDP-in-IPv6 datagrams whose IPv6 payload (UDP header included) is N
//!     bytes, R per second (0: as fast as sendmmsg goes; with --gso, in
//!     messages of 32 the kernel cuts, UDP GSO), for S seconds.
//! teredo-bench-gen teredo --server V4 --relay V4:PORT --dst V6 --port P
//!                         --size N --rate R --secs S [--introduce] [--gso]
//!     Qualifies like a Teredo client (RS to the server, mapped address
//!     from the RA's origin indication), with --introduce makes the relay
//!     know it (see `introduce`), then sends Teredo datagrams from that
//!     Teredo address to the native V6 through the relay.
//! teredo-bench-gen recv --port P --secs S [--punch V4:PORT] [--idle-ms MS]
//!     Counts datagrams on [::]:P until S seconds pass or MS ms go by with
//!     nothing after the first one; with --punch, first (and every 200 ms)
//!     sends "PUNCH" there to open the NAT for the floor relay.
//! teredo-bench-gen rs --server V4 --net A.B --secs S
//!     Router solicitations from spoofed sources A.B.x.y and many ports
//!     (raw IPv4 socket), as fast as they go.
//! teredo-bench-gen peers --count N --rate R [--secs S] --server V4 --port P --size N
//!     One datagram to each of N distinct Teredo addresses (server V4,
//!     restricted, mapped 198.18.252.0/22 and ports 1024...), R per
//!     second (0: as fast as it goes), giving up after S seconds (60).
//! teredo-bench-gen trusted --count N --rate R [--secs S] --server V4
//!                          --relay V4:PORT --dst V6 --port P --native-port Q
//!                          --size N --net A [--lag-ms L]
//!     N Teredo clients that answer, as a relay sees them: for each, one
//!     UDP datagram from here (the native host) to its Teredo address
//!     (server V4, restricted, mapped A.0.0.0/12 + index: one IPv4 address
//!     each, port 1024 + index mod 64,000) on port Q, which makes the
//!     relay create the peer and queue the datagram; then, L ms later (250),
//!     that client's answer: a Teredo datagram with a spoofed IPv4/UDP
//!     source equal to its mapped endpoint (raw socket), carrying UDP from
//!     its Teredo address to V6 port P, which the relay takes as proof of
//!     the endpoint (RFC 4380 5.4.2) and forwards. R peers per second (0:
//!     as fast as it goes), giving up after S seconds (60).
//! ```

#[path = "teredo-bench/net.rs"]
mod net;

use std::collections::VecDeque;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6, UdpSocket};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use libteredo::addr::{TeredoAddr, ALL_ROUTERS, LINK_LOCAL_RESTRICTED, TEREDO_PORT};
use libteredo::wire::checksum;
use libteredo::wire::icmpv6::{self, Icmpv6Repr};
use libteredo::wire::ipv6::Ipv6Repr;
use libteredo::wire::teredo::{Auth, TeredoPacket};
use net::{big_buffers, paced, precise_sleeps, RawAddr, RecvBatch, SendBatch};
use nix::libc;

const BATCH: usize = 64;
const UDP: u8 = 17;

struct Args(Vec<String>);

impl Args {
    fn get(&self, key: &str) -> Option<&str> {
        let i = self.0.iter().position(|a| a == key)?;
        self.0.get(i + 1).map(String::as_str)
    }
    fn req<T: std::str::FromStr>(&self, key: &str) -> Result<T, String> {
        let v = self.get(key).ok_or_else(|| format!("missing {key}"))?;
        v.parse().map_err(|_| format!("{key} {v:?} is not valid"))
    }
    fn or<T: std::str::FromStr>(&self, key: &str, default: T) -> Result<T, String> {
        match self.get(key) {
            None => Ok(default),
            Some(_) => self.req(key),
        }
    }
}

/// A UDP datagram payload of `size - 8` bytes, so that the IPv6 payload
/// (UDP header and data) is `size` bytes.
fn udp_data(size: usize) -> Result<usize, String> {
    if !(16..=1232).contains(&size) {
        return Err(format!(
            "--size {size}: choose 16..=1232 (IPv6 payload bytes)"
        ));
    }
    Ok(size - 8)
}

/// Datagrams per message at saturation: the generator asks the kernel to
/// cut its messages (UDP GSO), so that it offers more than a relay here
/// can carry; what reaches the relay depends on its own offloads (see
/// tests/BENCH.md).
const GSO_SEGS: usize = 32;

/// At saturation (`rate` 0) with `--gso`, switches the socket to UDP GSO with segments
/// of `len` bytes and returns a batch whose messages hold `GSO_SEGS`
/// copies of `dgram`; `None` when paced or if the kernel refuses (then the
/// caller sends datagram by datagram).
fn gso_batch(a: &Args, fd: std::os::fd::RawFd, rate: f64, dgram: &[u8]) -> Option<SendBatch> {
    if rate > 0.0 || !a.0.iter().any(|x| x == "--gso") {
        return None;
    }
    let seg = libc::c_int::try_from(dgram.len()).ok()?;
    // SAFETY: an int option of the right size on a valid descriptor.
    let r = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_UDP,
            libc::UDP_SEGMENT,
            (&seg as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r != 0 {
        return None;
    }
    let mut b = SendBatch::new(8, dgram.len() * GSO_SEGS);
    for (buf, len) in b.bufs.iter_mut().zip(b.lens.iter_mut()) {
        for chunk in buf.chunks_mut(dgram.len()) {
            chunk.copy_from_slice(dgram);
        }
        *len = dgram.len() * GSO_SEGS;
    }
    Some(b)
}

/// Sends for `secs` seconds: GSO messages at saturation, else datagram
/// batches at `rate`. Returns (datagrams sent, elapsed, errors, segments
/// per message).
fn blast(
    fd: std::os::fd::RawFd,
    rate: f64,
    secs: f64,
    gso: Option<SendBatch>,
    plain: SendBatch,
) -> (u64, Duration, u64, usize) {
    let (mut b, rate, per_call, segs) = match gso {
        Some(b) => {
            let cap = b.cap();
            (b, 0.0, cap, GSO_SEGS)
        }
        None => (plain, rate, BATCH, 1),
    };
    let mut errors = 0u64;
    let (sent, took) = paced(rate, secs, per_call, |n| match b.send(fd, n, false) {
        Ok(k) => Some(k * segs),
        Err(_) => {
            errors += 1;
            Some(0)
        }
    });
    (sent, took, errors, segs)
}

fn udp6(a: &Args) -> Result<String, String> {
    let dst: Ipv6Addr = a.req("--dst")?;
    let port: u16 = a.req("--port")?;
    let data = udp_data(a.req("--size")?)?;
    let (rate, secs): (f64, f64) = (a.req("--rate")?, a.req("--secs")?);
    let s = UdpSocket::bind("[::]:0").map_err(|e| format!("bind: {e}"))?;
    s.connect(SocketAddr::V6(SocketAddrV6::new(dst, port, 0, 0)))
        .map_err(|e| format!("connect [{dst}]:{port}: {e}"))?;
    big_buffers(s.as_raw_fd());
    let mut b = SendBatch::new(BATCH, data);
    for (i, buf) in b.bufs.iter_mut().enumerate() {
        buf[..8].copy_from_slice(&(i as u64).to_be_bytes());
    }
    b.lens.iter_mut().for_each(|l| *l = data);
    let fd = s.as_raw_fd();
    let gso = gso_batch(a, fd, rate, &b.bufs[0][..data]);
    let (sent, took, errors, segs) = blast(fd, rate, secs, gso, b);
    Ok(format!(
        "sent={sent} secs={:.4} errors={errors} gso={segs}",
        took.as_secs_f64()
    ))
}

/// The Auth header and router solicitation a Teredo client sends
/// (RFC 4380 5.2.1), restricted flavour.
fn rs_payload(nonce: [u8; 8]) -> Vec<u8> {
    let mut p = Vec::with_capacity(13 + 48);
    Auth {
        client_id: &[],
        auth_value: &[],
        nonce,
        confirmation: 0,
    }
    .emit(&mut p);
    p.extend_from_slice(&icmpv6::build_packet(
        LINK_LOCAL_RESTRICTED,
        ALL_ROUTERS,
        255,
        &Icmpv6Repr::RouterSolicit,
    ));
    p
}

/// Learns this socket's mapped address from the server's RA.
fn qualify(s: &UdpSocket, server: Ipv4Addr) -> Result<SocketAddrV4, String> {
    s.set_read_timeout(Some(Duration::from_millis(500)))
        .map_err(|e| e.to_string())?;
    let mut buf = [0u8; 1500];
    for attempt in 0..6u8 {
        let nonce = [attempt, 0x5e, 0xed, 1, 2, 3, 4, 5];
        s.send_to(&rs_payload(nonce), SocketAddrV4::new(server, TEREDO_PORT))
            .map_err(|e| format!("RS to {server}: {e}"))?;
        let deadline = Instant::now() + Duration::from_millis(500);
        while Instant::now() < deadline {
            let Ok((n, _)) = s.recv_from(&mut buf) else {
                break;
            };
            if let Ok(p) = TeredoPacket::parse(&buf[..n]) {
                if let (Some(auth), Some(origin)) = (p.auth, p.origin) {
                    if auth.nonce == nonce {
                        return Ok(origin.0);
                    }
                }
            }
        }
    }
    Err(format!("no router advertisement from {server}"))
}

/// A UDP-in-IPv6 packet whose IPv6 payload is `size` bytes.
fn ipv6_udp(src: Ipv6Addr, dst: Ipv6Addr, port: u16, size: usize) -> Vec<u8> {
    let mut udp = vec![0u8; size];
    udp[0..2].copy_from_slice(&40000u16.to_be_bytes());
    udp[2..4].copy_from_slice(&port.to_be_bytes());
    udp[4..6].copy_from_slice(&(size as u16).to_be_bytes());
    let c = match checksum::upper_layer(&src, &dst, UDP, &udp) {
        0 => 0xffff,
        c => c,
    };
    udp[6..8].copy_from_slice(&c.to_be_bytes());
    Ipv6Repr {
        src,
        dst,
        next_header: UDP,
        payload_len: size as u16,
        hop_limit: 64,
        traffic_class: 0,
    }
    .build(&udp)
}

/// Makes the relay know us, as a Teredo client talking to a native host
/// does (RFC 4380 5.2.4 case 2): an echo request to the native host
/// through the server; the echo reply reaches the relay, which queues it
/// and looks for us with bubbles; our bubble to the relay (which also
/// opens our NAT towards it) makes us a trusted peer, and the queued reply
/// comes to us. The C relay drops packets from a Teredo client it has not
/// heard of (its source says so), so it needs this. True when the reply
/// came within 3 s.
fn introduce(
    s: &UdpSocket,
    server: Ipv4Addr,
    relay: SocketAddrV4,
    me: Ipv6Addr,
    dst: Ipv6Addr,
) -> bool {
    let echo = icmpv6::build_packet(
        me,
        dst,
        64,
        &Icmpv6Repr::EchoRequest {
            ident: 0x7e7e,
            seq: 1,
            data: b"teredo-bench",
        },
    );
    let bubble = libteredo::wire::ipv6::build_bubble(me, dst);
    let _ = s.set_read_timeout(Some(Duration::from_millis(100)));
    let mut buf = [0u8; 2048];
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut next = Instant::now();
    while Instant::now() < deadline {
        if Instant::now() >= next {
            let _ = s.send_to(&echo, SocketAddrV4::new(server, TEREDO_PORT));
            let _ = s.send_to(&bubble, relay);
            next = Instant::now() + Duration::from_millis(300);
        }
        let Ok((n, from)) = s.recv_from(&mut buf) else {
            continue;
        };
        if from != SocketAddr::V4(relay) {
            continue;
        }
        if let Ok(p) = TeredoPacket::parse(&buf[..n]) {
            let ip = p.ipv6;
            let reply = ip.next_header() == 58
                && ip.payload().first() == Some(&icmpv6::msg_type::ECHO_REPLY);
            if reply {
                return true;
            }
            if ip.is_bubble() {
                // The relay's direct bubble: answer it at once.
                let _ = s.send_to(&bubble, relay);
            }
        }
    }
    false
}

fn teredo(a: &Args) -> Result<String, String> {
    let server: Ipv4Addr = a.req("--server")?;
    let relay: SocketAddrV4 = a.req("--relay")?;
    let dst: Ipv6Addr = a.req("--dst")?;
    let port: u16 = a.req("--port")?;
    let size: usize = a.req("--size")?;
    udp_data(size)?;
    let (rate, secs): (f64, f64) = (a.req("--rate")?, a.req("--secs")?);
    let s = UdpSocket::bind("0.0.0.0:0").map_err(|e| format!("bind: {e}"))?;
    let mapped = qualify(&s, server)?;
    let me = TeredoAddr {
        prefix: 0x2001_0000,
        server,
        flags: 0,
        mapped_port: mapped.port(),
        mapped_addr: *mapped.ip(),
    }
    .to_ipv6();
    let introduced = if a.0.iter().any(|x| x == "--introduce") {
        introduce(&s, server, relay, me, dst)
    } else {
        false
    };
    let pkt = ipv6_udp(me, dst, port, size);
    s.connect(relay)
        .map_err(|e| format!("connect {relay}: {e}"))?;
    big_buffers(s.as_raw_fd());
    let mut b = SendBatch::new(BATCH, pkt.len());
    for (buf, len) in b.bufs.iter_mut().zip(b.lens.iter_mut()) {
        buf.copy_from_slice(&pkt);
        *len = pkt.len();
    }
    let fd = s.as_raw_fd();
    let gso = gso_batch(a, fd, rate, &pkt);
    let (sent, took, errors, segs) = blast(fd, rate, secs, gso, b);
    Ok(format!(
        "sent={sent} secs={:.4} errors={errors} gso={segs} mapped={mapped} src={me} introduced={introduced}",
        took.as_secs_f64()
    ))
}

fn recv(a: &Args) -> Result<String, String> {
    let port: u16 = a.req("--port")?;
    let secs: f64 = a.req("--secs")?;
    let idle = Duration::from_millis(a.or("--idle-ms", 500u64)?);
    let punch: Option<SocketAddrV4> = match a.get("--punch") {
        Some(_) => Some(a.req("--punch")?),
        None => None,
    };
    let s = UdpSocket::bind(("::", port)).map_err(|e| format!("bind [::]:{port}: {e}"))?;
    big_buffers(s.as_raw_fd());
    s.set_read_timeout(Some(Duration::from_millis(50)))
        .map_err(|e| e.to_string())?;
    let punch_to =
        punch.map(|p| SocketAddr::V6(SocketAddrV6::new(p.ip().to_ipv6_mapped(), p.port(), 0, 0)));
    let send_punch = || {
        if let Some(to) = punch_to {
            let _ = s.send_to(b"PUNCH", to);
        }
    };
    send_punch();
    println!("ready");
    let start = Instant::now();
    let end = start + Duration::from_secs_f64(secs);
    let (mut count, mut bytes) = (0u64, 0u64);
    let mut last_rx: Option<Instant> = None;
    let mut last_punch = Instant::now();
    let mut b = RecvBatch::new(BATCH, 2048);
    let fd = s.as_raw_fd();
    loop {
        let now = Instant::now();
        if now >= end || last_rx.is_some_and(|t| now - t >= idle) {
            break;
        }
        if now - last_punch >= Duration::from_millis(200) {
            send_punch();
            last_punch = now;
        }
        match b.recv(fd) {
            Ok(n) => {
                count += n as u64;
                bytes += (0..n).map(|i| b.len(i) as u64).sum::<u64>();
                last_rx = Some(Instant::now());
            }
            Err(_) => continue,
        }
    }
    let span = last_rx.map(|t| t - start).unwrap_or_default();
    Ok(format!(
        "received={count} bytes={bytes} secs={:.4}",
        span.as_secs_f64()
    ))
}

fn raw_socket() -> Result<OwnedFd, String> {
    // SAFETY: plain socket(2); the descriptor is owned below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_RAW) };
    if fd < 0 {
        return Err(format!("raw socket: {}", std::io::Error::last_os_error()));
    }
    // SAFETY: fd is a fresh descriptor nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Writes a spoofed IPv4/UDP datagram from `src` to `dst` port 3544 (a
/// router solicitation, a client's Teredo packet) into `buf`, returns its
/// length.
fn spoofed_udp(buf: &mut [u8], src: SocketAddrV4, dst: Ipv4Addr, payload: &[u8]) -> usize {
    let udp_len = 8 + payload.len();
    let total = 20 + udp_len;
    let ip = &mut buf[..20];
    ip.copy_from_slice(&[
        0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, UDP, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    ]);
    ip[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    ip[12..16].copy_from_slice(&src.ip().octets());
    ip[16..20].copy_from_slice(&dst.octets());
    // The kernel fills the IPv4 identification and header checksum.
    let udp = &mut buf[20..total];
    udp[0..2].copy_from_slice(&src.port().to_be_bytes());
    udp[2..4].copy_from_slice(&TEREDO_PORT.to_be_bytes());
    udp[4..6].copy_from_slice(&(udp_len as u16).to_be_bytes());
    udp[6..8].copy_from_slice(&[0, 0]);
    udp[8..].copy_from_slice(payload);
    let mut acc = checksum::sum(0, &src.ip().octets());
    acc = checksum::sum(acc, &dst.octets());
    acc = acc
        .wrapping_add(u32::from(UDP))
        .wrapping_add(udp_len as u32);
    let c = match checksum::finish(checksum::sum(acc, udp)) {
        0 => 0xffff,
        c => c,
    };
    udp[6..8].copy_from_slice(&c.to_be_bytes());
    total
}

fn rs(a: &Args) -> Result<String, String> {
    let server: Ipv4Addr = a.req("--server")?;
    let net: String = a.req("--net")?;
    let secs: f64 = a.req("--secs")?;
    let (n0, n1) = net
        .split_once('.')
        .and_then(|(x, y)| Some((x.parse::<u8>().ok()?, y.parse::<u8>().ok()?)))
        .ok_or_else(|| format!("--net {net:?}: give the first two octets, e.g. 198.19"))?;
    let fd = raw_socket()?;
    big_buffers(fd.as_raw_fd());
    let mut b = SendBatch::new(BATCH, 128);
    let to = RawAddr::new(SocketAddr::V4(SocketAddrV4::new(server, TEREDO_PORT)));
    b.names.iter_mut().for_each(|n| *n = to);
    let mut i: u32 = 0;
    let mut errors = 0u64;
    let mut payload = rs_payload([0; 8]);
    let (sent, took) = paced(0.0, secs, BATCH, |n| {
        for k in 0..n {
            i = i.wrapping_add(1);
            // 65,536 sources times many ports: no two alike for long.
            let src = Ipv4Addr::new(n0, n1, (i >> 8) as u8, i as u8);
            let port = 1024 + ((i.wrapping_mul(7919)) % 64000) as u16;
            // The nonce follows the 4-byte Auth header (empty id and value).
            payload[4..8].copy_from_slice(&i.to_be_bytes());
            b.lens[k] = spoofed_udp(
                &mut b.bufs[k],
                SocketAddrV4::new(src, port),
                server,
                &payload,
            );
        }
        match b.send(fd.as_raw_fd(), n, true) {
            Ok(k) => Some(k),
            Err(_) => {
                errors += 1;
                Some(0)
            }
        }
    });
    Ok(format!(
        "sent={sent} secs={:.4} errors={errors}",
        took.as_secs_f64()
    ))
}

fn peers(a: &Args) -> Result<String, String> {
    let count: u64 = a.req("--count")?;
    let server: Ipv4Addr = a.req("--server")?;
    let port: u16 = a.req("--port")?;
    let data = udp_data(a.req("--size")?)?;
    let rate: f64 = a.req("--rate")?;
    let secs: f64 = a.or("--secs", 60.0)?;
    if count > 1 << 20 {
        return Err("--count: at most 1048576 distinct peers".into());
    }
    let s = UdpSocket::bind("[::]:0").map_err(|e| format!("bind: {e}"))?;
    big_buffers(s.as_raw_fd());
    let mut b = SendBatch::new(BATCH, data);
    b.lens.iter_mut().for_each(|l| *l = data);
    let fd = s.as_raw_fd();
    let mut i: u64 = 0;
    let mut errors = 0u64;
    // Stops at `count` datagrams or after `secs` seconds.
    let (sent, took) = paced(rate, secs, BATCH, |n| {
        let n = n.min((count - i.min(count)) as usize);
        if n == 0 {
            return None;
        }
        for k in 0..n {
            let j = (i + k as u64) as u32;
            let t = TeredoAddr {
                prefix: 0x2001_0000,
                server,
                flags: 0,
                mapped_port: 1024 + (j & 0x3ff) as u16,
                mapped_addr: Ipv4Addr::from(u32::from(Ipv4Addr::new(198, 18, 252, 0)) + (j >> 10)),
            };
            b.names[k] = RawAddr::new(SocketAddr::V6(SocketAddrV6::new(t.to_ipv6(), port, 0, 0)));
        }
        i += n as u64;
        match b.send(fd, n, true) {
            Ok(k) => Some(k),
            Err(_) => {
                errors += 1;
                Some(0)
            }
        }
    });
    Ok(format!(
        "sent={sent} secs={:.4} errors={errors}",
        took.as_secs_f64()
    ))
}

/// The Teredo address of peer `j` of the `trusted` mode: mapped to
/// `A.0.0.0/12 + j`, one IPv4 address each.
fn trusted_peer(server: Ipv4Addr, net: u8, j: u32) -> TeredoAddr {
    TeredoAddr {
        prefix: 0x2001_0000,
        server,
        flags: 0,
        mapped_port: 1024 + (j % 64_000) as u16,
        mapped_addr: Ipv4Addr::from((u32::from(net) << 24) + (j & 0xf_ffff)),
    }
}

fn trusted(a: &Args) -> Result<String, String> {
    let count: u64 = a.req("--count")?;
    let server: Ipv4Addr = a.req("--server")?;
    let relay: SocketAddrV4 = a.req("--relay")?;
    let dst: Ipv6Addr = a.req("--dst")?;
    let port: u16 = a.req("--port")?;
    let native_port: u16 = a.req("--native-port")?;
    let size: usize = a.req("--size")?;
    let data = udp_data(size)?;
    let net: u8 = a.req("--net")?;
    let rate: f64 = a.req("--rate")?;
    let secs: f64 = a.or("--secs", 60.0)?;
    let lag = Duration::from_millis(a.or("--lag-ms", 250u64)?);
    if count > 1 << 20 {
        return Err("--count: at most 1048576 distinct peers (a /12)".into());
    }
    // The native side: plain UDP to each Teredo address.
    let s = UdpSocket::bind("[::]:0").map_err(|e| format!("bind: {e}"))?;
    big_buffers(s.as_raw_fd());
    let mut out = SendBatch::new(BATCH, data);
    out.lens.iter_mut().for_each(|l| *l = data);
    // The clients' answers: spoofed IPv4/UDP from each mapped endpoint.
    let raw = raw_socket()?;
    big_buffers(raw.as_raw_fd());
    let mut ans = SendBatch::new(BATCH, 20 + 8 + 40 + size);
    let to = RawAddr::new(SocketAddr::V4(relay));
    ans.names.iter_mut().for_each(|n| *n = to);
    // Peers sent to, waiting for their answer: (when, first, end).
    let mut pending: VecDeque<(Instant, u64, u64)> = VecDeque::new();
    let (mut i, mut answered) = (0u64, 0u64);
    let (mut errors, mut ans_errors) = (0u64, 0u64);
    let mut answer = |now: Instant,
                      pending: &mut VecDeque<(Instant, u64, u64)>,
                      answered: &mut u64,
                      ans_errors: &mut u64| {
        while let Some(&(t, first, end)) = pending.front() {
            if t + lag > now {
                break;
            }
            pending.pop_front();
            for start in (first..end).step_by(BATCH) {
                let n = ((end - start) as usize).min(BATCH);
                for k in 0..n {
                    let t = trusted_peer(server, net, (start + k as u64) as u32);
                    let pkt = ipv6_udp(t.to_ipv6(), dst, port, size);
                    ans.lens[k] = spoofed_udp(&mut ans.bufs[k], t.mapped(), *relay.ip(), &pkt);
                }
                match ans.send(raw.as_raw_fd(), n, true) {
                    Ok(k) => *answered += k as u64,
                    Err(_) => *ans_errors += 1,
                }
            }
        }
    };
    let fd = s.as_raw_fd();
    // Stops at `count` peers or after `secs` seconds.
    let (sent, took) = paced(rate, secs, BATCH, |n| {
        let n = n.min((count - i.min(count)) as usize);
        if n == 0 {
            return None;
        }
        for k in 0..n {
            let t = trusted_peer(server, net, (i + k as u64) as u32);
            out.names[k] = RawAddr::new(SocketAddr::V6(SocketAddrV6::new(
                t.to_ipv6(),
                native_port,
                0,
                0,
            )));
        }
        let k = match out.send(fd, n, true) {
            Ok(k) => k,
            Err(_) => {
                errors += 1;
                0
            }
        };
        pending.push_back((Instant::now(), i, i + k as u64));
        i += k as u64;
        answer(Instant::now(), &mut pending, &mut answered, &mut ans_errors);
        Some(k)
    });
    // The last answers, each `lag` after its peer's datagram.
    let deadline = Instant::now() + lag + Duration::from_secs(1);
    while let Some(&(t, _, _)) = pending.front() {
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        std::thread::sleep((t + lag).saturating_duration_since(now));
        answer(Instant::now(), &mut pending, &mut answered, &mut ans_errors);
    }
    Ok(format!(
        "sent={sent} answered={answered} secs={:.4} errors={errors} answer_errors={ans_errors}",
        took.as_secs_f64()
    ))
}

fn main() -> ExitCode {
    precise_sleeps();
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let Some((mode, rest)) = argv.split_first() else {
        eprintln!(
            "usage: teredo-bench-gen udp6|teredo|recv|rs|peers|trusted OPTIONS (see the source's header)"
        );
        return ExitCode::from(2);
    };
    let a = Args(rest.to_vec());
    let r = match mode.as_str() {
        "udp6" => udp6(&a),
        "teredo" => teredo(&a),
        "recv" => recv(&a),
        "rs" => rs(&a),
        "peers" => peers(&a),
        "trusted" => trusted(&a),
        other => Err(format!("unknown mode {other:?}")),
    };
    match r {
        Ok(line) => {
            println!("{line}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("teredo-bench-gen {mode}: {e}");
            ExitCode::FAILURE
        }
    }
}
