//! The engines fed a sequence of events decoded from the fuzzer's bytes.
//!
//! Each event starts with one byte choosing its kind; what follows depends
//! on it (see [`Op`]). Besides raw datagrams and TUN packets, some events
//! build well-formed packets (answers to the engine's own solicitation and
//! connectivity test, bubbles, echo messages from chosen Teredo or native
//! sources) so that the fuzzer reaches the qualified and trusted states
//! quickly instead of guessing nonces and checksums.
//!
//! After every event the invariants hold:
//! - nothing is sent to a non-global IPv4 address unless that endpoint was
//!   introduced to the engine first: it sent us a datagram, or a datagram
//!   named it as an RFC 6081 alternate address; or it is the discovery
//!   group (RFC 4380 5.2.4, CVE-2006-6264);
//! - outputs per event are bounded (count and bytes), so no input
//!   amplifies without limit;
//! - the peer table stays within its capacity and queue caps;
//! - after a timeout is handled, the next one is in the future (no loop
//!   that spins the daemon);
//! - the server sends one datagram at most per datagram received, and
//!   never to a non-global address but the sender's.
//!
//! The engines are fed through the simulator's [`Engine`] (the one
//! dispatch over client, relay and server that `libteredo::sim` drives
//! too); what this file adds is the fuzzer's decoding and the checks.

use libteredo::addr::{self, TeredoAddr, DISCOVERY_ADDR, TEREDO_PORT};
use libteredo::proto::{
    advert, advert_datagram, Client, ClientConfig, DiscoveryConfig, ForwarderConfig, Output, Relay,
    SeededRandom, Server, ServerConfig,
};
use libteredo::sim::Engine;
use libteredo::wire::icmpv6::{self, Icmpv6Repr};
use libteredo::wire::ipv6::{Ipv6Packet, Ipv6Repr};
use libteredo::wire::teredo::{Auth, Origin, TeredoPacket};
use libteredo::wire::trailer::Trailer;
use std::collections::HashSet;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV4};
use std::time::{Duration, Instant};

pub const SERVER: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 1);
pub const SERVER2: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 2);
pub const RELAY: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(198, 18, 2, 1), TEREDO_PORT);
/// The client's own socket, behind its NAT.
pub const LOCAL: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(192, 168, 1, 2), 40000);
/// Our NAT's public side, as the fuzzer's RAs usually say.
pub const MAPPED: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(198, 18, 3, 1), 40000);
pub const NATIVE: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 9, 0, 0, 0, 0, 1);

/// Small caps, so that the fuzzer reaches them.
pub const CAPACITY: usize = 8;
pub const QUEUE_BYTES: usize = 2048;
pub const TOTAL_QUEUE_BYTES: usize = 6144;
/// Events per input: longer inputs are cut.
const MAX_EVENTS: usize = 256;
const MAX_DATAGRAM: usize = 1500;

/// The fuzzer's bytes, read front to back; reads past the end give zeros.
struct Input<'a> {
    b: &'a [u8],
}

impl<'a> Input<'a> {
    fn done(&self) -> bool {
        self.b.is_empty()
    }

    fn u8(&mut self) -> u8 {
        match self.b.split_first() {
            Some((x, rest)) => {
                self.b = rest;
                *x
            }
            None => 0,
        }
    }

    fn u16(&mut self) -> u16 {
        u16::from_be_bytes([self.u8(), self.u8()])
    }

    fn ipv4(&mut self) -> Ipv4Addr {
        Ipv4Addr::new(self.u8(), self.u8(), self.u8(), self.u8())
    }

    fn bytes(&mut self, n: usize) -> &'a [u8] {
        let n = n.min(self.b.len());
        let (x, rest) = self.b.split_at(n);
        self.b = rest;
        x
    }

    /// A length byte then that many bytes (up to 255).
    fn short(&mut self) -> &'a [u8] {
        let n = usize::from(self.u8());
        self.bytes(n)
    }

    /// A 16-bit length then that many bytes (up to `MAX_DATAGRAM`).
    fn long(&mut self) -> &'a [u8] {
        let n = usize::from(self.u16()) % (MAX_DATAGRAM + 1);
        self.bytes(n)
    }
}

/// What the harness remembers across events.
struct State {
    base: Instant,
    now: Instant,
    /// Endpoints the engine may legitimately send to even when not global.
    introduced: HashSet<SocketAddrV4>,
    /// The last router solicitation the engine sent: (to, nonce, source).
    last_rs: Option<(SocketAddrV4, [u8; 8], Ipv6Addr)>,
    /// The last connectivity test: (native peer, our address, payload).
    last_ping: Option<(Ipv6Addr, Ipv6Addr, Vec<u8>)>,
    /// Our Teredo address (client), once qualified.
    me: Option<Ipv6Addr>,
}

impl State {
    fn new() -> Self {
        let base = Instant::now();
        let mut introduced = HashSet::new();
        introduced.insert(LOCAL);
        State {
            base,
            now: base,
            introduced,
            last_rs: None,
            last_ping: None,
            me: None,
        }
    }

    /// Remembers what an input datagram introduces.
    fn introduce(&mut self, from: SocketAddrV4, bytes: &[u8]) {
        self.introduced.insert(from);
        if let Ok(p) = TeredoPacket::parse(bytes) {
            let tr = Trailer::parse(p.ipv6.trailer());
            self.introduced.extend(tr.alternates());
            if let (Some(o), Some(port)) = (p.origin, tr.random_port) {
                self.introduced.insert(SocketAddrV4::new(*o.0.ip(), port));
            }
        }
    }

    /// Learns from the engine's outputs what the next events may answer.
    fn observe(&mut self, outs: &[Output]) {
        for o in outs {
            match o {
                Output::Udp(t) => {
                    let Ok(p) = TeredoPacket::parse(&t.payload) else {
                        continue;
                    };
                    let ip = &p.ipv6;
                    if let Some(a) = p.auth {
                        self.last_rs = Some((t.to, a.nonce, ip.src_addr()));
                        continue;
                    }
                    if ip.next_header() == 58 {
                        if let Ok(Icmpv6Repr::EchoRequest { data, .. }) =
                            Icmpv6Repr::parse(&ip.src_addr(), &ip.dst_addr(), ip.payload())
                        {
                            if TeredoAddr::parse(&ip.dst_addr()).is_none() {
                                self.last_ping =
                                    Some((ip.dst_addr(), ip.src_addr(), data.to_vec()));
                            }
                        }
                    }
                }
                Output::Event(libteredo::proto::Event::Qualified { addr, .. }) => {
                    self.me = Some(*addr);
                }
                _ => {}
            }
        }
    }
}

/// An endpoint chosen by one byte (and more for an arbitrary one).
fn endpoint(inp: &mut Input) -> SocketAddrV4 {
    match inp.u8() % 10 {
        0 => SocketAddrV4::new(SERVER, TEREDO_PORT),
        1 => SocketAddrV4::new(SERVER2, TEREDO_PORT),
        2 => RELAY,
        3 => MAPPED,
        4 => SocketAddrV4::new(Ipv4Addr::new(198, 18, 4, 1), 50000),
        5 => SocketAddrV4::new(Ipv4Addr::new(192, 168, 1, 3), 40001),
        6 => SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 1), TEREDO_PORT),
        7 => SocketAddrV4::new(Ipv4Addr::new(198, 18, 3, 1), inp.u16()),
        _ => SocketAddrV4::new(inp.ipv4(), inp.u16()),
    }
}

/// A Teredo address whose mapped endpoint is `mapped`.
fn teredo_of(server: Ipv4Addr, flags: u16, mapped: SocketAddrV4) -> Ipv6Addr {
    TeredoAddr {
        prefix: addr::TEREDO_PREFIX,
        server,
        flags,
        mapped_port: mapped.port(),
        mapped_addr: *mapped.ip(),
    }
    .to_ipv6()
}

/// An IPv6 address chosen by one byte: a Teredo address (of `from` or of
/// another endpoint), ours, a native one, a link-local one, or anything.
fn address(inp: &mut Input, st: &State, from: SocketAddrV4) -> Ipv6Addr {
    match inp.u8() % 8 {
        0 => teredo_of(SERVER, inp.u16(), from),
        1 => {
            let e = endpoint(inp);
            teredo_of(SERVER, inp.u16(), e)
        }
        2 => st.me.unwrap_or(NATIVE),
        3 => NATIVE,
        4 => Ipv6Addr::new(0x2001, 0xdb8, inp.u16(), 0, 0, 0, 0, inp.u16()),
        5 => addr::LINK_LOCAL_RESTRICTED,
        6 => addr::ALL_NODES,
        _ => {
            let mut o = [0u8; 16];
            o.copy_from_slice(&{
                let b = inp.bytes(16);
                let mut x = [0u8; 16];
                x[..b.len()].copy_from_slice(b);
                x
            });
            Ipv6Addr::from(o)
        }
    }
}

/// An IPv6 packet from `src` to `dst`: a bubble, an echo request or reply,
/// or an arbitrary payload behind an arbitrary next header.
fn ipv6_packet(inp: &mut Input, src: Ipv6Addr, dst: Ipv6Addr) -> Vec<u8> {
    let hop_limit = 64;
    match inp.u8() % 4 {
        0 => Ipv6Repr {
            src,
            dst,
            next_header: 59,
            hop_limit: 0,
            payload_len: 0,
            traffic_class: 0,
        }
        .build(&[]),
        1 | 2 => {
            let (ident, seq) = (inp.u16(), inp.u16());
            let data = inp.short();
            let msg = if inp.u8() & 1 == 0 {
                Icmpv6Repr::EchoRequest { ident, seq, data }
            } else {
                Icmpv6Repr::EchoReply { ident, seq, data }
            };
            icmpv6::build_packet(src, dst, hop_limit, &msg)
        }
        _ => {
            let nh = inp.u8();
            let payload = inp.long();
            Ipv6Repr {
                src,
                dst,
                next_header: nh,
                hop_limit,
                payload_len: payload.len() as u16,
                traffic_class: inp.u8(),
            }
            .build(payload)
        }
    }
}

/// The router advertisement answering the engine's last solicitation, the
/// mapped endpoint chosen by the input.
fn answer_rs(inp: &mut Input, st: &State) -> Option<(SocketAddrV4, Vec<u8>)> {
    let (to, nonce, rs_src) = st.last_rs?;
    let mapped = match inp.u8() % 4 {
        0 | 1 => MAPPED,
        2 => SocketAddrV4::new(*MAPPED.ip(), inp.u16()),
        _ => SocketAddrV4::new(inp.ipv4(), inp.u16()),
    };
    let mtu = match inp.u8() % 3 {
        0 => None,
        1 => Some(1280),
        _ => Some(u32::from(inp.u16())),
    };
    let auth = Auth {
        client_id: &[],
        auth_value: &[],
        nonce,
        confirmation: 0,
    };
    let ra = advert(addr::TEREDO_PREFIX, SERVER, mtu);
    let payload = advert_datagram(
        Some(auth),
        mapped,
        addr::server_link_local(SERVER),
        rs_src,
        ra,
    );
    // A cone probe is answered from the other address.
    let from = if rs_src == addr::LINK_LOCAL_CONE {
        SocketAddrV4::new(
            if *to.ip() == SERVER { SERVER2 } else { SERVER },
            TEREDO_PORT,
        )
    } else {
        to
    };
    Some((from, payload))
}

/// The echo reply answering the last connectivity test, from a relay.
fn answer_ping(inp: &mut Input, st: &State) -> Option<(SocketAddrV4, Vec<u8>)> {
    let (peer, me, data) = st.last_ping.as_ref()?;
    let from = endpoint(inp);
    let p = icmpv6::build_packet(
        *peer,
        *me,
        64,
        &Icmpv6Repr::EchoReply {
            ident: 0,
            seq: 0,
            data,
        },
    );
    Some((from, p))
}

/// What one event decoded to.
enum Op {
    Udp {
        from: SocketAddrV4,
        to_local: SocketAddrV4,
        bytes: Vec<u8>,
    },
    Tun(Vec<u8>),
    Advance(Duration),
    Timeout,
}

/// Decodes the next event. `local` is the engine's unicast address.
fn next_op(inp: &mut Input, st: &State, local: SocketAddrV4, server: bool) -> Op {
    let multicast = SocketAddrV4::new(DISCOVERY_ADDR, TEREDO_PORT);
    let to = |inp: &mut Input| -> SocketAddrV4 {
        match inp.u8() % 4 {
            0 if !server => multicast,
            1 if server => SocketAddrV4::new(SERVER2, TEREDO_PORT),
            _ => local,
        }
    };
    match inp.u8() % 9 {
        // A raw datagram.
        0 => {
            let from = endpoint(inp);
            let to_local = to(inp);
            Op::Udp {
                from,
                to_local,
                bytes: inp.long().to_vec(),
            }
        }
        // A raw TUN packet.
        1 => Op::Tun(inp.long().to_vec()),
        2 => Op::Advance(Duration::from_millis(u64::from(inp.u16()) * 10)),
        3 => Op::Timeout,
        // The answer to our last solicitation.
        4 => match answer_rs(inp, st) {
            Some((from, bytes)) => Op::Udp {
                from,
                to_local: local,
                bytes,
            },
            None => Op::Timeout,
        },
        // A well-formed packet from a chosen source, maybe with an origin
        // indication and a trailer.
        5 | 6 => {
            let from = endpoint(inp);
            let to_local = to(inp);
            let src = address(inp, st, from);
            let dst = address(inp, st, from);
            let mut bytes = Vec::new();
            let flags = inp.u8();
            if flags & 1 != 0 {
                let origin = endpoint(inp);
                Origin(origin).emit(&mut bytes);
            }
            bytes.extend_from_slice(&ipv6_packet(inp, src, dst));
            if flags & 2 != 0 {
                bytes.extend_from_slice(inp.short());
            }
            Op::Udp {
                from,
                to_local,
                bytes,
            }
        }
        // A well-formed packet from the host.
        7 => {
            let src = address(inp, st, MAPPED);
            let dst = address(inp, st, MAPPED);
            Op::Tun(ipv6_packet(inp, src, dst))
        }
        // A relay answering our connectivity test.
        _ => match answer_ping(inp, st) {
            Some((from, bytes)) => Op::Udp {
                from,
                to_local: local,
                bytes,
            },
            None => Op::Timeout,
        },
    }
}

/// Checks what one event produced. `in_bytes` is what the event carried.
fn check_outputs(st: &State, outs: &[Output], in_bytes: usize, timer: bool, peers: usize) {
    // A datagram or TUN packet may flush one peer's queue; a timeout may
    // bubble every peer (three datagrams) and report it unreachable.
    let max_count = if timer {
        16 + 4 * peers.max(CAPACITY)
    } else {
        16 + QUEUE_BYTES / 40 + 1
    };
    assert!(
        outs.len() <= max_count,
        "{} outputs for one event (bound {max_count})",
        outs.len()
    );
    let mut out_bytes = 0usize;
    for o in outs {
        match o {
            Output::Udp(t) => {
                out_bytes += t.payload.len();
                let ip = *t.to.ip();
                let ok = addr::is_global_unicast_v4(ip)
                    || t.to == SocketAddrV4::new(DISCOVERY_ADDR, TEREDO_PORT)
                    || st.introduced.contains(&t.to);
                assert!(
                    ok,
                    "datagram to the non-global {} that nothing introduced",
                    t.to
                );
            }
            Output::Tun(p) => {
                out_bytes += p.len();
                assert!(
                    Ipv6Packet::new_checked(&p[..]).is_ok(),
                    "malformed TUN output"
                );
            }
            Output::Event(_) => {}
        }
    }
    let max_bytes = 2 * in_bytes + QUEUE_BYTES + 8192;
    assert!(
        out_bytes <= max_bytes,
        "{out_bytes} bytes out for {in_bytes} in (bound {max_bytes})"
    );
}

/// The engine's own address (where the fuzzer's datagrams go).
fn local(e: &Engine) -> SocketAddrV4 {
    match e {
        Engine::Client(_) => LOCAL,
        Engine::Relay(_) => RELAY,
        Engine::Server(_) => SocketAddrV4::new(SERVER, TEREDO_PORT),
    }
}

/// A datagram for the engine, and the invariants of the server's answer:
/// one datagram at most, never to a non-global address but the sender's.
fn udp(
    e: &mut Engine,
    now: Instant,
    from: SocketAddrV4,
    to: SocketAddrV4,
    b: &[u8],
) -> Vec<Output> {
    let mut out = Vec::new();
    e.handle_udp(now, from, to, 0, b, &mut out);
    if let Engine::Server(_) = e {
        assert!(out.len() <= 1, "{} outputs for one datagram", out.len());
        for o in &out {
            if let Output::Udp(t) = o {
                assert!(
                    t.to == from || addr::is_global_unicast_v4(*t.to.ip()),
                    "server sends to the non-global {}",
                    t.to
                );
            }
        }
    }
    out
}

fn tun(e: &mut Engine, now: Instant, p: &[u8]) -> Vec<Output> {
    let mut out = Vec::new();
    e.handle_tun(now, p, &mut out);
    out
}

fn timeout(e: &mut Engine, now: Instant) -> Vec<Output> {
    let mut out = Vec::new();
    e.handle_timeout(now, &mut out);
    out
}

/// The engine's own caps: a relay's queues stay within their total.
fn check(e: &Engine) {
    if let Engine::Relay(r) = e {
        let q = r.peers().queued_bytes();
        assert!(q <= TOTAL_QUEUE_BYTES, "{q} bytes queued");
    }
}

fn forwarder_config() -> ForwarderConfig {
    ForwarderConfig {
        peer_capacity: CAPACITY,
        queue_bytes: QUEUE_BYTES,
        total_queue_bytes: TOTAL_QUEUE_BYTES,
        ..ForwarderConfig::default()
    }
}

/// Runs the events of `data` against `e`.
fn drive(e: &mut Engine, st: &mut State, data: &[u8]) {
    let mut inp = Input { b: data };
    let local = local(e);
    let server = matches!(e, Engine::Server(_));
    for _ in 0..MAX_EVENTS {
        if inp.done() {
            break;
        }
        let op = next_op(&mut inp, st, local, server);
        let (outs, in_bytes, timer) = match op {
            Op::Udp {
                from,
                to_local,
                bytes,
            } => {
                st.introduce(from, &bytes);
                (udp(e, st.now, from, to_local, &bytes), bytes.len(), false)
            }
            Op::Tun(p) => (tun(e, st.now, &p), p.len(), false),
            Op::Advance(d) => {
                st.now += d;
                (Vec::new(), 0, true)
            }
            Op::Timeout => {
                if let Some(t) = e.poll_timeout() {
                    st.now = st.now.max(t);
                }
                (Vec::new(), 0, true)
            }
        };
        check_outputs(st, &outs, in_bytes, timer, e.peer_count());
        st.observe(&outs);
        // Whatever is due now runs, as the daemon's loop would; after at
        // most a few rounds nothing may be due any more.
        let mut rounds = 0;
        while let Some(t) = e.poll_timeout() {
            if t > st.now {
                break;
            }
            rounds += 1;
            assert!(
                rounds <= 4,
                "timer at {:?} still due after {rounds} rounds at {:?}",
                t - st.base,
                st.now - st.base
            );
            let outs = timeout(e, st.now);
            check_outputs(st, &outs, 0, true, e.peer_count());
            st.observe(&outs);
        }
        assert!(e.peer_count() <= CAPACITY, "{} peers", e.peer_count());
        check(e);
    }
}

/// The client (with local discovery), from its first solicitation on.
pub fn run_client(data: &[u8]) {
    let mut st = State::new();
    let mut cfg = ClientConfig::new(SERVER);
    cfg.forwarder = forwarder_config();
    cfg.local = Some(LOCAL);
    cfg.discovery = Some(DiscoveryConfig {
        local_nets: vec![(Ipv4Addr::new(192, 168, 1, 0), 24)],
        any_mapped: false,
    });
    let mut c = Engine::Client(Box::new(Client::new(
        cfg,
        Box::new(SeededRandom::new(1)),
        st.now,
    )));
    let first = timeout(&mut c, st.now);
    st.observe(&first);
    drive(&mut c, &mut st, data);
}

/// A relay on a public address.
pub fn run_relay(data: &[u8]) {
    let mut st = State::new();
    let mut cfg = forwarder_config();
    cfg.direct_bubbles = false;
    let mut r = Engine::Relay(Box::new(Relay::new(
        &cfg,
        &mut SeededRandom::new(1),
        st.now,
    )));
    drive(&mut r, &mut st, data);
}

/// The server on SERVER and SERVER2.
pub fn run_server(data: &[u8]) {
    let mut st = State::new();
    let mut s = Engine::Server(Box::new(Server::new(ServerConfig::new(SERVER))));
    drive(&mut s, &mut st, data);
}
