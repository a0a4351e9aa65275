//! teredo-flood: the lab's flood generator, paced and bounded in count and
//! time. Run inside a test's namespace only (`ip netns exec NS ...`).
//!
//! ```text
//! teredo-flood udp4 --dst IP:PORT [--src random|IP:PORT,...] --server IPv4
//!                   --ipv6-dst ADDR [--kinds all|k1,k2] --count N --rate PPS
//!                   --secs S [--seed N]
//!     hostile Teredo datagrams (see teredo_lab::flood::Kind) with spoofed
//!     IPv4 sources, through a raw socket (IP_HDRINCL)
//! teredo-flood teredo6 --server IPv4 --count N --rate PPS --secs S [--seed N]
//!     UDP/IPv6 datagrams to random Teredo addresses of clients of the server
//!     (a native host flooding a relay, RFC 4380 7.3.3)
//! ```
//!
//! Prints one line: `sent N datagrams in T ms (E send errors)`.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV4, SocketAddrV6, UdpSocket};
use std::os::fd::AsRawFd;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use nix::sys::socket::{
    sendto, socket, AddressFamily, MsgFlags, SockFlag, SockProtocol, SockType, SockaddrIn,
};
use teredo_lab::flood::{self, Kind, Rng, Sources, Target};

struct Opts {
    mode: String,
    dst: Option<SocketAddrV4>,
    src: Sources,
    server: Ipv4Addr,
    ipv6_dst: Ipv6Addr,
    kinds: Vec<Kind>,
    count: u64,
    rate: u64,
    secs: u64,
    seed: u64,
}

fn kind_named(name: &str) -> Option<Kind> {
    Kind::ALL
        .into_iter()
        .find(|k| format!("{k:?}").eq_ignore_ascii_case(name))
}

fn parse(args: &[String]) -> Result<Opts, String> {
    let mode = args.first().cloned().ok_or("missing mode (udp4|teredo6)")?;
    if mode != "udp4" && mode != "teredo6" {
        return Err(format!("unknown mode {mode}"));
    }
    let mut o = Opts {
        mode,
        dst: None,
        src: Sources::Random,
        server: Ipv4Addr::new(198, 18, 1, 1),
        ipv6_dst: Ipv6Addr::LOCALHOST,
        kinds: Kind::ALL.to_vec(),
        count: 1000,
        rate: 1000,
        secs: 10,
        seed: 1,
    };
    let mut it = args[1..].iter();
    while let Some(flag) = it.next() {
        let v = it
            .next()
            .ok_or_else(|| format!("{flag} needs a value"))?
            .as_str();
        let bad = |e: &dyn std::fmt::Display| format!("{flag} {v}: {e}");
        match flag.as_str() {
            "--dst" => o.dst = Some(v.parse().map_err(|e| bad(&e))?),
            "--src" if v == "random" => o.src = Sources::Random,
            "--src" => {
                let list: Result<Vec<SocketAddrV4>, _> = v.split(',').map(str::parse).collect();
                o.src = Sources::Fixed(list.map_err(|e| bad(&e))?);
            }
            "--server" => o.server = v.parse().map_err(|e| bad(&e))?,
            "--ipv6-dst" => o.ipv6_dst = v.parse().map_err(|e| bad(&e))?,
            "--kinds" if v == "all" => o.kinds = Kind::ALL.to_vec(),
            "--kinds" => {
                o.kinds = v
                    .split(',')
                    .map(|k| kind_named(k).ok_or_else(|| bad(&"unknown kind")))
                    .collect::<Result<_, _>>()?
            }
            "--count" => o.count = v.parse().map_err(|e| bad(&e))?,
            "--rate" => o.rate = v.parse().map_err(|e| bad(&e))?,
            "--secs" => o.secs = v.parse().map_err(|e| bad(&e))?,
            "--seed" => o.seed = v.parse().map_err(|e| bad(&e))?,
            _ => return Err(format!("unknown option {flag}")),
        }
    }
    // Hard bounds, whatever the command line says: this tool must never
    // become an unbounded load on a shared machine.
    o.count = o.count.min(2_000_000);
    o.rate = o.rate.clamp(1, 100_000);
    o.secs = o.secs.clamp(1, 60);
    if o.kinds.is_empty() {
        return Err("no kinds".into());
    }
    Ok(o)
}

/// Calls `send(i)` for i in 0..count, `rate` per second, for at most
/// `secs`; returns (sent, errors, elapsed).
fn paced(o: &Opts, mut send: impl FnMut(u64) -> bool) -> (u64, u64, Duration) {
    let start = Instant::now();
    let limit = Duration::from_secs(o.secs);
    let (mut sent, mut errors) = (0u64, 0u64);
    for i in 0..o.count {
        let due = Duration::from_secs_f64(i as f64 / o.rate as f64);
        let now = start.elapsed();
        if now >= limit {
            break;
        }
        if due > now + Duration::from_millis(1) {
            std::thread::sleep(due - now);
        }
        if send(i) {
            sent += 1;
        } else {
            errors += 1;
        }
    }
    (sent, errors, start.elapsed())
}

fn udp4(o: &Opts) -> Result<(u64, u64, Duration), String> {
    let dst = o.dst.ok_or("udp4 needs --dst")?;
    // IPPROTO_RAW: we write the IPv4 header ourselves (IP_HDRINCL).
    let fd = socket(
        AddressFamily::Inet,
        SockType::Raw,
        SockFlag::empty(),
        SockProtocol::Raw,
    )
    .map_err(|e| format!("raw socket: {e} (needs CAP_NET_RAW)"))?;
    let to = SockaddrIn::from(SocketAddrV4::new(*dst.ip(), 0));
    let target = Target {
        server: o.server,
        ipv6_dst: o.ipv6_dst,
    };
    let mut rng = Rng::new(o.seed);
    Ok(paced(o, |i| {
        let kind = o.kinds[(i as usize) % o.kinds.len()];
        let src = o.src.pick(&mut rng);
        let payload = flood::payload(kind, &mut rng, &target, src);
        let dgram = flood::ipv4_udp(src, dst, &payload, i as u16);
        sendto(fd.as_raw_fd(), &dgram, &to, MsgFlags::empty()).is_ok()
    }))
}

fn teredo6(o: &Opts) -> Result<(u64, u64, Duration), String> {
    let sock = UdpSocket::bind("[::]:0").map_err(|e| format!("UDP socket: {e}"))?;
    let mut rng = Rng::new(o.seed);
    let payload = [0x5au8; 64];
    Ok(paced(o, |_| {
        let to = flood::random_peer(&mut rng, o.server);
        let port = rng.u16().max(1);
        sock.send_to(&payload, SocketAddrV6::new(to, port, 0, 0))
            .is_ok()
    }))
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let o = match parse(&args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("teredo-flood: {e}");
            return ExitCode::from(2);
        }
    };
    let result = if o.mode == "udp4" {
        udp4(&o)
    } else {
        teredo6(&o)
    };
    match result {
        Ok((sent, errors, took)) => {
            println!(
                "sent {sent} datagrams in {} ms ({errors} send errors)",
                took.as_millis()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("teredo-flood: {e}");
            ExitCode::FAILURE
        }
    }
}
