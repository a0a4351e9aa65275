//! `teredo-mire portmap`: asks the home gateway for a UDP port mapping, in
//! PCP (RFC 6887) or NAT-PMP (RFC 6886), as miredo's client does for its
//! Teredo port: libteredo's sans-IO [`PortMapper`] driven by a blocking
//! loop over one UDP socket bound to the internal port. Results go to
//! standard output as `key: value` lines, progress to standard error.
//!
//! The mapping is held for `--keep` seconds (renewed when the mapper asks,
//! at half its lifetime), during which datagrams arriving through it are
//! shown, then deleted (a request with lifetime 0) unless `--no-delete`.
//! SIGINT, SIGTERM, SIGHUP or SIGQUIT end the wait early, the deletion
//! included; a second one abandons the deletion.

use libteredo::proto::portmap::{self, Config, Event, Mode, PortMapper, Request};
use libteredo::sys::signals;
use std::io::ErrorKind;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::time::{Duration, Instant};

/// The Teredo service port, mapped by default.
pub const DEFAULT_PORT: u16 = 3544;
/// The lifetime asked for by default (seconds): short, so that a mapping
/// this diagnostic leaves behind (`--no-delete`, or a kill) soon lapses.
pub const DEFAULT_LIFETIME: u32 = 120;
/// How long to wait for a mapping by default (seconds). The mapper gives
/// up by itself before: six requests 250 ms apart, doubling, take 15.75 s
/// in one protocol, 31.5 s in both (`auto`, where PCP's share, half of
/// this, is more than its 15.75 s).
pub const DEFAULT_TIMEOUT: f64 = 35.0;
/// The mapper's six tries at a deletion take 15.75 s.
const DELETE_LIMIT: Duration = Duration::from_secs(16);
/// How often the loop looks at its signals while it waits.
const TICK: Duration = Duration::from_millis(100);
/// Datagrams shown one by one through the mapping; the rest are counted.
const SHOWN: u64 = 20;

/// Which protocols to speak.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Protocol {
    /// PCP, then NAT-PMP when the gateway answers that it does not speak
    /// PCP, or stays silent.
    Auto,
    /// PCP only.
    Pcp,
    /// NAT-PMP only.
    Natpmp,
}

impl Protocol {
    fn mode(self) -> Mode {
        match self {
            Protocol::Auto => Mode::Auto,
            Protocol::Pcp => Mode::Pcp,
            Protocol::Natpmp => Mode::NatPmp,
        }
    }
}

pub struct Options {
    pub gateway: Option<Ipv4Addr>,
    pub protocol: Protocol,
    pub port: u16,
    pub lifetime: u32,
    pub keep: Duration,
    pub delete: bool,
    pub timeout: Duration,
}

/// The default gateway from `/proc/net/route`.
pub fn default_gateway() -> Result<Ipv4Addr, String> {
    let text = std::fs::read_to_string("/proc/net/route")
        .map_err(|e| format!("cannot read /proc/net/route: {e}; give --gateway"))?;
    parse_default_gateway(&text)
        .ok_or_else(|| "no default IPv4 route with a gateway: give --gateway".to_string())
}

/// The gateway of the default route with the lowest metric, in the format
/// of `/proc/net/route` (addresses as the kernel's 32-bit words, in the
/// machine's byte order).
fn parse_default_gateway(text: &str) -> Option<Ipv4Addr> {
    const RTF_UP: u32 = 0x1;
    const RTF_GATEWAY: u32 = 0x2;
    let mut best: Option<(u32, Ipv4Addr)> = None;
    for line in text.lines().skip(1) {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 8 {
            continue;
        }
        let hex = |s: &str| u32::from_str_radix(s, 16).ok();
        let (Some(dst), Some(gw), Some(flags), Some(mask)) =
            (hex(f[1]), hex(f[2]), hex(f[3]), hex(f[7]))
        else {
            continue;
        };
        let metric: u32 = f[6].parse().unwrap_or(u32::MAX);
        if dst != 0 || mask != 0 || flags & (RTF_UP | RTF_GATEWAY) != RTF_UP | RTF_GATEWAY {
            continue;
        }
        let gw = Ipv4Addr::from(gw.to_ne_bytes());
        if gw.is_unspecified() {
            continue;
        }
        if best.is_none_or(|(m, _)| metric < m) {
            best = Some((metric, gw));
        }
    }
    best.map(|(_, gw)| gw)
}

fn check_gateway(g: Ipv4Addr) -> Result<Ipv4Addr, String> {
    if g.is_unspecified() || g.is_broadcast() || g.is_multicast() {
        return Err(format!("{g} is not a unicast IPv4 address"));
    }
    Ok(g)
}

/// Our address on the way to the gateway (what the gateway maps).
pub fn local_address_towards(gateway: Ipv4Addr) -> Result<Ipv4Addr, String> {
    let probe = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))
        .map_err(|e| format!("cannot open a UDP socket: {e}"))?;
    probe
        .connect((gateway, portmap::PORT))
        .map_err(|e| format!("no route to the gateway {gateway}: {e}"))?;
    match probe.local_addr() {
        Ok(SocketAddr::V4(a)) if !a.ip().is_unspecified() => Ok(*a.ip()),
        Ok(a) => Err(format!("unexpected local address {a} towards {gateway}")),
        Err(e) => Err(format!("cannot read the local address: {e}")),
    }
}

/// What a request is, for the progress lines.
fn describe(payload: &[u8]) -> String {
    let word = |r: std::ops::Range<usize>| {
        payload
            .get(r)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    };
    match (payload.first(), payload.get(1)) {
        (Some(2), _) => match word(4..8) {
            Some(0) => "a PCP MAP request with lifetime 0 (deletion)".into(),
            Some(l) => format!("a PCP MAP request (lifetime {l} s)"),
            None => "a PCP request".into(),
        },
        (Some(0), Some(0)) => "a NAT-PMP external address request".into(),
        (Some(0), Some(1)) => match word(8..12) {
            Some(0) => "a NAT-PMP UDP mapping request with lifetime 0 (deletion)".into(),
            Some(l) => format!("a NAT-PMP UDP mapping request (lifetime {l} s)"),
            None => "a NAT-PMP request".into(),
        },
        _ => "a request".into(),
    }
}

/// The socket, the mapper and what happened so far.
struct Driver {
    sock: UdpSocket,
    /// Counts the signals that arrived since the last call and ask us to
    /// stop (a closure over libteredo's signalfd).
    stop_signals: Box<dyn FnMut() -> u32>,
    mapper: PortMapper,
    gateway: Ipv4Addr,
    out: Vec<Request>,
    buf: Vec<u8>,
    /// The last request sent and how many times in a row.
    last_request: Option<(Vec<u8>, u32)>,
    last_error: Option<String>,
    /// Signals received that ask us to stop.
    interrupted: u32,
    /// Datagrams from elsewhere than the gateway (through the mapping).
    received: u64,
    /// The result code of the last answer the mapper took.
    last_result: Option<u16>,
}

/// The result code of an answer the mapper took (PCP's byte 3, NAT-PMP's
/// bytes 2 and 3), for the report of a deletion: the mapper says whether
/// an answer came, not what it said.
fn result_code(answer: &[u8]) -> Option<u16> {
    match answer.first()? {
        2 => answer.get(3).map(|&r| u16::from(r)),
        0 => answer.get(2..4).map(|r| u16::from_be_bytes([r[0], r[1]])),
        _ => None,
    }
}

impl Driver {
    fn send(&mut self) {
        for r in std::mem::take(&mut self.out) {
            let n = match &self.last_request {
                Some((p, n)) if *p == r.payload => n + 1,
                _ => 1,
            };
            eprintln!("sending {} to {} (attempt {n})", describe(&r.payload), r.to);
            if let Err(e) = self.sock.send_to(&r.payload, r.to) {
                eprintln!("cannot send to {}: {e}", r.to);
                self.last_error = Some(e.to_string());
            }
            self.last_request = Some((r.payload, n));
        }
    }

    /// Waits at most until `until` (and at most one tick) for a datagram
    /// or the mapper's next timer, and returns what the mapper says.
    fn step(&mut self, until: Instant) -> Vec<Event> {
        let mut events = Vec::new();
        self.send();
        let now = Instant::now();
        let wake = self
            .mapper
            .poll_timeout()
            .map_or(until, |t| t.min(until))
            .min(now + TICK);
        // A zero timeout would mean "block forever".
        let wait = wake
            .saturating_duration_since(now)
            .max(Duration::from_millis(1));
        if let Err(e) = self.sock.set_read_timeout(Some(wait)) {
            self.last_error = Some(format!("cannot set the socket timeout: {e}"));
            std::thread::sleep(wait);
        }
        match self.sock.recv_from(&mut self.buf) {
            Ok((n, SocketAddr::V4(from))) => {
                let data = &self.buf[..n.min(self.buf.len())];
                if *from.ip() == self.gateway {
                    // Anything from the gateway goes to the mapper, which
                    // takes only valid answers and counts the rest.
                    let taken = self.mapper.counters.answers;
                    self.mapper
                        .handle_udp(Instant::now(), from, data, &mut self.out, &mut events);
                    if self.mapper.counters.answers > taken {
                        self.last_result = result_code(data);
                    }
                } else {
                    self.received += 1;
                    if self.received <= SHOWN {
                        println!("received: {n} bytes from {from}");
                    } else if self.received == SHOWN + 1 {
                        println!("received: more datagrams, counted but not shown");
                    }
                }
            }
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                ) => {}
            Err(e) => self.last_error = Some(e.to_string()),
        }
        self.interrupted += (self.stop_signals)();
        let now = Instant::now();
        if self.mapper.poll_timeout().is_some_and(|t| t <= now) {
            self.mapper.handle_timeout(now, &mut self.out, &mut events);
        }
        self.send();
        events
    }

    /// Why there is no mapping, with what was sent and received.
    fn failure(&self, why: &str) -> String {
        let c = &self.mapper.counters;
        let err = self
            .last_error
            .as_ref()
            .map(|e| format!("; last socket error: {e}"))
            .unwrap_or_default();
        let junk = if c.answers == 0 && c.ignored > 0 {
            "; all it sent back was invalid"
        } else {
            ""
        };
        format!(
            "no mapping from the gateway {}: {why}{junk} ({} requests sent, {} answers taken, \
             {} datagrams ignored as not valid answers from {}:{}){err}",
            self.gateway,
            c.requests,
            c.answers,
            c.ignored,
            self.gateway,
            portmap::PORT
        )
    }
}

pub fn run(o: &Options) -> Result<(), String> {
    let gateway = match o.gateway {
        Some(g) => check_gateway(g)?,
        None => default_gateway()?,
    };
    let local = local_address_towards(gateway)?;
    let internal = SocketAddrV4::new(local, o.port);
    let sock = UdpSocket::bind(internal).map_err(|e| match e.kind() {
        ErrorKind::AddrInUse => format!(
            "cannot bind {internal}: {e} (a running miredo holds its port and maps it \
             itself; give another --port)"
        ),
        _ => format!("cannot bind {internal}: {e}"),
    })?;
    let sigfd = signals::block_and_watch().map_err(|e| format!("cannot watch for signals: {e}"))?;
    let stop_signals = Box::new(move || {
        signals::drain(&sigfd)
            .iter()
            .filter(|s| matches!(s.as_str(), "SIGINT" | "SIGTERM" | "SIGHUP" | "SIGQUIT"))
            .count() as u32
    });
    let mut nonce = [0u8; 12];
    getrandom::fill(&mut nonce)
        .map_err(|e| format!("the operating system's random generator failed: {e}"))?;
    let start = Instant::now();
    let mapper = PortMapper::new(
        Config {
            mode: o.protocol.mode(),
            gateway,
            internal,
            lifetime: o.lifetime,
        },
        nonce,
        start,
    );
    let mut d = Driver {
        sock,
        stop_signals,
        mapper,
        gateway,
        out: Vec::new(),
        buf: vec![0u8; 2048],
        last_request: None,
        last_error: None,
        interrupted: 0,
        received: 0,
        last_result: None,
    };
    println!("gateway: {gateway}");
    println!("internal: {internal}");

    // Asking. The timeout bounds the whole: in auto mode PCP has its first
    // half at most, then NAT-PMP the rest (at once if the gateway refuses
    // PCP).
    let deadline = start + o.timeout;
    let mut pcp_until = (o.protocol == Protocol::Auto).then(|| start + pcp_share(o.timeout));
    let mut events = Vec::new();
    d.mapper.handle_timeout(start, &mut d.out, &mut events);
    let mapped = loop {
        for e in events.drain(..) {
            match e {
                Event::Mapped { .. } => {}
                Event::Unavailable { why } => return Err(d.failure(&why)),
                Event::Lost { why } => eprintln!("lost: {why}"),
            }
        }
        if let Some(m) = d.mapper.mapping() {
            break m;
        }
        if d.interrupted > 0 {
            return Err(d.failure("interrupted by a signal before the gateway answered"));
        }
        let now = Instant::now();
        if now >= deadline {
            let why = match o.protocol {
                Protocol::Auto => format!(
                    "no answer within {} s, in PCP then NAT-PMP",
                    o.timeout.as_secs_f64()
                ),
                _ => format!("no answer within {} s", o.timeout.as_secs_f64()),
            };
            return Err(d.failure(&why));
        }
        if let Some(until) = pcp_until.filter(|t| now >= *t) {
            pcp_until = None;
            if d.mapper.fall_back(now, &mut d.out) {
                eprintln!(
                    "no answer in PCP within {} s, half the timeout: asking in NAT-PMP",
                    (until - start).as_secs_f64()
                );
            }
        }
        events = d.step(pcp_until.map_or(deadline, |t| t.min(deadline)));
    };
    println!("protocol: {}", mapped.protocol);
    println!("external: {}", mapped.external);
    let given = mapped.lifetime.as_secs();
    if given == u64::from(o.lifetime) {
        println!("lifetime: {given} s");
    } else {
        println!("lifetime: {given} s (asked for {} s)", o.lifetime);
    }

    // Holding.
    let mut result = Ok(());
    if !o.keep.is_zero() {
        eprintln!(
            "holding the mapping for {} s, renewed at half its lifetime; datagrams \
             arriving through it are shown (a signal ends the wait)",
            o.keep.as_secs_f64()
        );
        let end = Instant::now() + o.keep;
        let mut held = d.mapper.mapping();
        while d.interrupted == 0 && Instant::now() < end {
            let mut changed = false;
            for e in d.step(end) {
                match e {
                    Event::Mapped {
                        external, lifetime, ..
                    } => {
                        changed = true;
                        println!(
                            "changed: external {external}, lifetime {} s",
                            lifetime.as_secs()
                        );
                    }
                    Event::Lost { why } => println!("lost: {why}"),
                    Event::Unavailable { why } => println!("unavailable: {why}"),
                }
            }
            let now_held = d.mapper.mapping();
            if let (Some(before), Some(now)) = (held, now_held) {
                if !changed && now.expires > before.expires {
                    println!(
                        "renewed: external {}, lifetime {} s",
                        now.external,
                        now.lifetime.as_secs()
                    );
                }
            }
            held = now_held;
        }
        if d.mapper.mapping().is_none() {
            result = Err(d.failure("the mapping was lost while it was held"));
        }
    }

    // Deleting.
    if d.mapper.mapping().is_none() {
        return result;
    }
    if !o.delete {
        let left = d.mapper.mapping().map_or(0, |m| {
            m.expires
                .saturating_duration_since(Instant::now())
                .as_secs()
        });
        println!("deleted: no (the mapping lapses in {left} s)");
        return result;
    }
    let answers = d.mapper.counters.answers;
    let interrupted = d.interrupted;
    d.mapper.stop(Instant::now(), &mut d.out);
    let end = Instant::now() + DELETE_LIMIT;
    while d.mapper.poll_timeout().is_some() && Instant::now() < end && d.interrupted == interrupted
    {
        for e in d.step(end) {
            if let Event::Lost { why } | Event::Unavailable { why } = e {
                eprintln!("{why}");
            }
        }
    }
    d.send();
    if d.mapper.counters.answers > answers {
        match d.last_result {
            Some(0) | None => println!("deleted: yes"),
            Some(code) => {
                println!("deleted: refused (result code {code}; the mapping lapses by itself)")
            }
        }
    } else {
        println!("deleted: unconfirmed (the gateway did not answer; the mapping lapses by itself)");
    }
    result
}

/// PCP's share of the timeout in auto mode: half, so that NAT-PMP, tried
/// next, gets as long.
fn pcp_share(timeout: Duration) -> Duration {
    timeout / 2
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pcp_has_half_the_timeout() {
        assert_eq!(pcp_share(Duration::from_secs(8)), Duration::from_secs(4));
        assert_eq!(
            pcp_share(Duration::from_millis(1)),
            Duration::from_micros(500)
        );
        // The default leaves PCP its six requests (15.75 s).
        assert!(
            pcp_share(Duration::from_secs_f64(DEFAULT_TIMEOUT)) > Duration::from_millis(15_750)
        );
    }

    #[test]
    #[cfg(target_endian = "little")]
    fn reads_the_default_gateway() {
        let t =
            "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
                 eth0\t0000A8C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n\
                 eth1\t00000000\t0101A8C0\t0003\t0\t0\t200\t00000000\t0\t0\t0\n\
                 eth2\t00000000\t0102A8C0\t0003\t0\t0\t100\t00000000\t0\t0\t0\n\
                 eth3\t00000000\t0103A8C0\t0001\t0\t0\t0\t00000000\t0\t0\t0\n";
        assert_eq!(
            parse_default_gateway(t),
            Some(Ipv4Addr::new(192, 168, 2, 1))
        );
        let none = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\n\
                    eth0\t0000A8C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\n";
        assert_eq!(parse_default_gateway(none), None);
        assert_eq!(parse_default_gateway(""), None);
    }

    #[test]
    fn describes_requests() {
        let mut pcp = vec![2, 1, 0, 0];
        pcp.extend_from_slice(&120u32.to_be_bytes());
        pcp.resize(60, 0);
        assert_eq!(describe(&pcp), "a PCP MAP request (lifetime 120 s)");
        pcp[4..8].copy_from_slice(&[0; 4]);
        assert!(describe(&pcp).contains("deletion"));
        assert_eq!(describe(&[0, 0]), "a NAT-PMP external address request");
        let mut map = vec![0, 1, 0, 0, 0x0d, 0xd8, 0x0d, 0xd8];
        map.extend_from_slice(&7u32.to_be_bytes());
        assert_eq!(
            describe(&map),
            "a NAT-PMP UDP mapping request (lifetime 7 s)"
        );
        assert_eq!(describe(&[9]), "a request");
    }

    #[test]
    fn reads_result_codes() {
        assert_eq!(result_code(&[2, 0x81, 0, 2]), Some(2));
        assert_eq!(result_code(&[0, 129, 0, 3, 0, 0, 0, 1]), Some(3));
        assert_eq!(result_code(&[0, 129, 0]), None);
        assert_eq!(result_code(&[7, 0, 0, 0]), None);
        assert_eq!(result_code(&[]), None);
    }

    #[test]
    fn gateways_must_be_unicast() {
        for bad in ["0.0.0.0", "255.255.255.255", "224.0.0.1"] {
            assert!(check_gateway(bad.parse().unwrap()).is_err(), "{bad}");
        }
        assert!(check_gateway(Ipv4Addr::new(192, 168, 1, 1)).is_ok());
    }
}
