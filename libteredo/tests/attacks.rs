//! The attacks of RFC 4380 section 7 and of the 2006 Teredo security
//! report (CVE-2006-6263 to 6266), each run against the engines with the
//! defence shown by a figure. Every test prints one line
//! `ATTACK <name>: <figures>` straight to the process's stderr, past the
//! test harness's capture, so the figures show in every `cargo test` log:
//!
//!     cargo test -p libteredo --release --test attacks 2>&1 | grep ATTACK
//!
//! The engines are driven directly (sans-IO), with a virtual clock: the
//! attacker is whoever calls `handle_udp` / `handle_tun`.

use libteredo::addr::{self, TeredoAddr, DISCOVERY_ADDR, TEREDO_PORT};
use libteredo::proto::{
    advert, advert_datagram, Client, ClientConfig, DiscoveryConfig, DropReason, Event,
    ForwarderConfig, Output, Relay, SeededRandom, Transmit, DEFAULT_CAPACITY,
    DEFAULT_TOTAL_QUEUE_BYTES, MAX_BUBBLES, MAX_ENDPOINT_TESTS,
};
use libteredo::wire::icmpv6::{self, Icmpv6Repr};
use libteredo::wire::ipv6::{build_bubble, Ipv6Packet, Ipv6Repr};
use libteredo::wire::teredo::{Auth, Origin, TeredoPacket};
use std::io::Write;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV4};
use std::time::{Duration, Instant};

const SERVER: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 1);
const SERVER2: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 2);
const RELAY: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(198, 18, 2, 1), TEREDO_PORT);
const LOCAL: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(192, 168, 1, 2), 40000);
const MAPPED: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(198, 18, 3, 1), 40000);
const ATTACKER: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(198, 18, 66, 6), TEREDO_PORT);
const NATIVE: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 9, 0, 0, 0, 0, 1);

/// Writes one line past the test harness's capture (as the lab's
/// `skip::loud` does): `std::io::stderr()` itself is not captured, only the
/// `eprint!` family is.
fn loud(line: &str) {
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "{line}");
}

fn server_ep() -> SocketAddrV4 {
    SocketAddrV4::new(SERVER, TEREDO_PORT)
}

fn teredo(server: Ipv4Addr, flags: u16, mapped: SocketAddrV4) -> Ipv6Addr {
    TeredoAddr {
        prefix: addr::TEREDO_PREFIX,
        server,
        flags,
        mapped_port: mapped.port(),
        mapped_addr: *mapped.ip(),
    }
    .to_ipv6()
}

fn echo(src: Ipv6Addr, dst: Ipv6Addr, reply: bool, data: &[u8]) -> Vec<u8> {
    let msg = if reply {
        Icmpv6Repr::EchoReply {
            ident: 7,
            seq: 1,
            data,
        }
    } else {
        Icmpv6Repr::EchoRequest {
            ident: 7,
            seq: 1,
            data,
        }
    };
    icmpv6::build_packet(src, dst, 64, &msg)
}

fn udps(out: &[Output]) -> impl Iterator<Item = &Transmit> {
    out.iter().filter_map(|o| match o {
        Output::Udp(t) => Some(t),
        _ => None,
    })
}

fn tuns(out: &[Output]) -> usize {
    out.iter().filter(|o| matches!(o, Output::Tun(_))).count()
}

/// An RA answering a solicitation with `nonce` sent to `rs_src`.
fn ra(nonce: [u8; 8], rs_src: Ipv6Addr, mapped: SocketAddrV4) -> Vec<u8> {
    let auth = Auth {
        client_id: &[],
        auth_value: &[],
        nonce,
        confirmation: 0,
    };
    let ra = advert(addr::TEREDO_PREFIX, SERVER, None);
    advert_datagram(
        Some(auth),
        mapped,
        addr::server_link_local(SERVER),
        rs_src,
        ra,
    )
}

/// The nonce and source of the last solicitation in `out`.
fn last_rs(out: &[Output]) -> Option<([u8; 8], Ipv6Addr)> {
    udps(out)
        .filter_map(|t| {
            let p = TeredoPacket::parse(&t.payload).ok()?;
            Some((p.auth?.nonce, p.ipv6.src_addr()))
        })
        .last()
}

/// A client engine, qualified through `SERVER` with `MAPPED`.
struct Host {
    c: Client,
    now: Instant,
    addr: Ipv6Addr,
}

impl Host {
    fn new(mut cfg: ClientConfig) -> Host {
        let now = Instant::now();
        cfg.local = Some(LOCAL);
        let mut c = Client::new(cfg, Box::new(SeededRandom::new(42)), now);
        let mut out = Vec::new();
        c.handle_timeout(now, &mut out);
        let (nonce, src) = last_rs(&out).expect("a solicitation");
        let mut out = Vec::new();
        c.handle_udp(now, server_ep(), LOCAL, &ra(nonce, src, MAPPED), &mut out);
        let addr = c.qualification().expect("qualified").addr;
        Host { c, now, addr }
    }

    fn udp(&mut self, from: SocketAddrV4, bytes: &[u8]) -> Vec<Output> {
        let mut out = Vec::new();
        self.c.handle_udp(self.now, from, LOCAL, bytes, &mut out);
        out
    }

    fn tun(&mut self, p: &[u8]) -> Vec<Output> {
        let mut out = Vec::new();
        self.c.handle_tun(self.now, p, &mut out);
        out
    }

    /// Advances the clock by `d`, running every timer due on the way.
    fn advance(&mut self, d: Duration) -> Vec<Output> {
        let end = self.now + d;
        let mut all = Vec::new();
        for _ in 0..100_000 {
            match self.c.poll_timeout() {
                Some(t) if t <= end => {
                    self.now = self.now.max(t);
                    let mut out = Vec::new();
                    self.c.handle_timeout(self.now, &mut out);
                    if out.is_empty() && self.c.poll_timeout() == Some(t) {
                        // A timer that stays due (see the fuzz regressions).
                        break;
                    }
                    all.extend(out);
                }
                _ => break,
            }
        }
        self.now = end;
        all
    }

    fn drops(&self, why: DropReason) -> u64 {
        self.c.stats().dropped(why)
    }
}

fn relay_config(cap: usize) -> ForwarderConfig {
    ForwarderConfig {
        peer_capacity: cap,
        // A relay on a public address (RelayType cone).
        direct_bubbles: false,
        ..ForwarderConfig::default()
    }
}

/// A relay engine on `RELAY`.
struct Rly {
    r: Relay,
    now: Instant,
}

impl Rly {
    fn new(cfg: ForwarderConfig) -> Rly {
        let now = Instant::now();
        Rly {
            r: Relay::new(&cfg, &mut SeededRandom::new(7), now),
            now,
        }
    }

    fn udp(&mut self, from: SocketAddrV4, bytes: &[u8]) -> Vec<Output> {
        let mut out = Vec::new();
        self.r.handle_udp(self.now, from, RELAY, bytes, &mut out);
        out
    }

    fn tun(&mut self, p: &[u8]) -> Vec<Output> {
        let mut out = Vec::new();
        self.r.handle_tun(self.now, p, &mut out);
        out
    }

    fn timers(&mut self) -> Vec<Output> {
        let mut out = Vec::new();
        if self.r.poll_timeout().is_some_and(|t| t <= self.now) {
            self.r.handle_timeout(self.now, &mut out);
        }
        out
    }
}

// ----------------------------------------------------------------------
// RFC 4380 7.2.1 / 7.3.2: server spoofing.

#[test]
fn attack_server_spoofing() {
    let mut h = Host::new(ClientConfig::new(SERVER));
    let before = h.addr;
    // Forged RAs from the server's very address, nonces guessed: the
    // maintenance solicitation is outstanding, so a right guess would count.
    let _ = h.advance(Duration::from_secs(31));
    let forged = 100_000u64;
    let mut rng = SeededRandom::new(9);
    let mut changes = 0;
    let mut sent = 0;
    for _ in 0..forged {
        let mut nonce = [0u8; 8];
        libteredo::proto::Random::fill(&mut rng, &mut nonce);
        let out = h.udp(
            server_ep(),
            &ra(nonce, addr::LINK_LOCAL_RESTRICTED, ATTACKER),
        );
        changes += out
            .iter()
            .filter(|o| matches!(o, Output::Event(Event::Qualified { .. })))
            .count();
        sent += udps(&out).count();
    }
    let spoofed = h.drops(DropReason::Spoofed);
    assert_eq!(changes, 0, "a forged RA changed the address");
    assert_eq!(h.c.qualification().map(|q| q.addr), Some(before));
    assert_eq!(spoofed, forged, "forged RAs not all counted as spoofed");
    assert_eq!(sent, 0);

    // Origin indications (a bubble "relayed by the server") from anywhere
    // but the server: dropped, and no bubble goes to the named origin.
    let victim = SocketAddrV4::new(Ipv4Addr::new(198, 18, 77, 7), 5555);
    let peer = teredo(SERVER, 0, victim);
    let mut forged_origin = 0u64;
    let mut to_victim = 0;
    let unexpected0 = h.drops(DropReason::Unexpected);
    for from in [ATTACKER, SocketAddrV4::new(SERVER, 3545), RELAY] {
        for _ in 0..1000 {
            let mut p = Vec::new();
            Origin(victim).emit(&mut p);
            p.extend_from_slice(&build_bubble(peer, h.addr));
            let out = h.udp(from, &p);
            to_victim += udps(&out).filter(|t| *t.to.ip() == *victim.ip()).count();
            forged_origin += 1;
        }
    }
    // The secondary server address may carry RAs only, never a forwarded
    // bubble.
    for _ in 0..1000 {
        let mut p = Vec::new();
        Origin(victim).emit(&mut p);
        p.extend_from_slice(&build_bubble(peer, h.addr));
        let out = h.udp(SocketAddrV4::new(SERVER2, TEREDO_PORT), &p);
        to_victim += udps(&out).filter(|t| *t.to.ip() == *victim.ip()).count();
        forged_origin += 1;
    }
    let refused = h.drops(DropReason::Unexpected) - unexpected0;
    assert_eq!(to_victim, 0, "a forged origin indication drew a bubble");
    assert_eq!(refused, forged_origin);
    loud(&format!(
        "ATTACK server_spoofing: {forged} forged RAs from the server's address with guessed nonces: \
         {changes} address changes, {spoofed} dropped as spoofed, {sent} datagrams sent; \
         {forged_origin} forged origin indications from non-server sources: {refused} dropped, \
         {to_victim} bubbles to the named origin"
    ));
}

// ----------------------------------------------------------------------
// RFC 4380 7.2.2 / 5.2.9: a rogue relay.

#[test]
fn attack_rogue_relay() {
    let mut h = Host::new(ClientConfig::new(SERVER));
    let me = h.addr;
    // The host talks to a native peer: the client queues and starts the
    // connectivity test through its server.
    let out = h.tun(&echo(me, NATIVE, false, b"hello"));
    let test = udps(&out)
        .find_map(|t| {
            let p = TeredoPacket::parse(&t.payload).ok()?;
            match Icmpv6Repr::parse(&p.ipv6.src_addr(), &p.ipv6.dst_addr(), p.ipv6.payload()) {
                Ok(Icmpv6Repr::EchoRequest { data, .. }) if t.to == server_ep() => {
                    Some(data.to_vec())
                }
                _ => None,
            }
        })
        .expect("a connectivity test through the server");
    // The rogue relay answers first, guessing the payload, and injects data
    // from the native peer.
    let mut rng = SeededRandom::new(3);
    let mut to_rogue = 0;
    let mut delivered = 0;
    let injected = 10_000;
    for i in 0..injected {
        let mut guess = [0u8; 8];
        libteredo::proto::Random::fill(&mut rng, &mut guess);
        let p = if i % 2 == 0 {
            echo(NATIVE, me, true, &guess)
        } else {
            echo(NATIVE, me, false, b"from the rogue")
        };
        let out = h.udp(ATTACKER, &p);
        delivered += tuns(&out);
        to_rogue += udps(&out).filter(|t| t.to == ATTACKER).count();
        // The host answers what it got: still nothing to the rogue.
        let out = h.tun(&echo(me, NATIVE, false, b"more"));
        to_rogue += udps(&out).filter(|t| t.to == ATTACKER).count();
    }
    let _ = h.advance(Duration::from_secs(1));
    assert_eq!(to_rogue, 0, "the client sent to the untested relay");
    assert_eq!(h.c.stats().ping_tests_ok, 0);
    // The real relay answers with the right payload: trusted, and the
    // queue goes to it.
    let out = h.udp(RELAY, &echo(NATIVE, me, true, &test));
    let flushed = udps(&out).filter(|t| t.to == RELAY).count();
    assert_eq!(h.c.stats().ping_tests_ok, 1);
    assert!(flushed >= 1, "the queue did not go to the tested relay");
    // The rogue keeps injecting: the host's next packet still goes to the
    // tested relay.
    let _ = h.udp(ATTACKER, &echo(NATIVE, me, false, b"again"));
    let out = h.tun(&echo(me, NATIVE, false, b"after"));
    assert!(udps(&out).all(|t| t.to != ATTACKER), "sent to the rogue");
    assert!(
        udps(&out).any(|t| t.to == RELAY),
        "not sent to the tested relay"
    );
    loud(&format!(
        "ATTACK rogue_relay: {injected} packets from an untested relay for a native peer \
         ({} guessed test replies): {delivered} delivered (RFC 4380 5.2.9: accept, never send), \
         0 trusted, {to_rogue} datagrams sent to it; the tested relay trusted after 1 reply, \
         {flushed} queued packets sent to it",
        injected / 2
    ));
}

// ----------------------------------------------------------------------
// RFC 4380 7.3.3 / 7.3.5: peer table exhaustion of a relay.

/// A flood of packets from the native side to `n` distinct Teredo
/// addresses at `pps`, while a legitimate native host and a Teredo client
/// talk every `legit_every` flood packets. Returns (peak peers, peak queued
/// bytes, legit packets sent, legit packets that reached the client).
fn flood_relay(cap: usize, n: u32, pps: u64, legit_every: u32) -> (usize, usize, u32, u32) {
    let mut r = Rly::new(relay_config(cap));
    let legit_native = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 1);
    let client = teredo(SERVER, 0, MAPPED);
    // The legitimate flow: the native host's first packet, the client's
    // answering bubble from its mapped endpoint (trusted at once).
    let _ = r.tun(&echo(legit_native, client, false, b"legit"));
    let _ = r.udp(MAPPED, &build_bubble(client, legit_native));
    let step = Duration::from_nanos(1_000_000_000 / pps);
    let (mut peak_peers, mut peak_queued) = (0, 0);
    let (mut legit_sent, mut legit_ok) = (0, 0);
    for i in 0..n {
        r.now += step;
        // 198.19.0.0/16 and up: global, distinct per packet.
        let victim = SocketAddrV4::new(
            Ipv4Addr::from(0xc613_0000u32 + i),
            1024 + (i % 50000) as u16,
        );
        // Spoofed native sources, each in its own /64: the per-source
        // limit on new entries (PeerRateLimit) does not apply.
        let src = Ipv6Addr::new(0x2001, 0xdb8, (i >> 16) as u16, i as u16, 0, 0, 0, 1);
        let _ = r.tun(&echo(src, teredo(SERVER, 0, victim), false, b"flood"));
        if i % legit_every == 0 {
            legit_sent += 1;
            let out = r.tun(&echo(legit_native, client, false, b"legit"));
            if udps(&out).any(|t| t.to == MAPPED) {
                legit_ok += 1;
            }
            // The client answers, which keeps the entry fresh.
            let _ = r.udp(MAPPED, &echo(client, legit_native, true, b"legit"));
        }
        if i % 1000 == 0 {
            let _ = r.timers();
            peak_peers = peak_peers.max(r.r.peers().len());
            peak_queued = peak_queued.max(r.r.peers().queued_bytes());
        }
    }
    peak_peers = peak_peers.max(r.r.peers().len());
    peak_queued = peak_queued.max(r.r.peers().queued_bytes());
    (peak_peers, peak_queued, legit_sent, legit_ok)
}

#[test]
fn attack_peer_table_exhaustion_small_cap() {
    let cap = 10_000;
    let n = 1_000_000;
    let (peers, queued, sent, ok) = flood_relay(cap, n, 10_000, 1000);
    assert!(peers <= cap, "{peers} peers for a cap of {cap}");
    assert_eq!(ok, sent, "the legitimate flow lost {} of {sent}", sent - ok);
    // Each entry queues one flood packet at most (8 KiB per peer cap).
    assert!(queued <= cap * 120, "{queued} bytes queued");
    loud(&format!(
        "ATTACK peer_table_exhaustion (cap {cap}): {n} packets to distinct Teredo addresses \
         at 10,000/s: peak {peers} peers, peak {queued} bytes queued; a legitimate flow \
         (one exchange every 0.1 s): {ok}/{sent} packets sent straight to the client"
    ));
}

#[test]
fn attack_peer_table_exhaustion_default_cap() {
    let n = 1_000_000;
    let (peers, queued, sent, ok) = flood_relay(DEFAULT_CAPACITY, n, 100_000, 1000);
    assert!(peers <= DEFAULT_CAPACITY);
    assert!(queued <= DEFAULT_TOTAL_QUEUE_BYTES);
    assert_eq!(ok, sent);
    loud(&format!(
        "ATTACK peer_table_exhaustion (default cap {DEFAULT_CAPACITY}, total queue cap \
         {DEFAULT_TOTAL_QUEUE_BYTES} B): {n} packets at 100,000/s: peak {peers} peers, \
         peak {queued} bytes queued (entries expire 30 s after their last use); \
         legitimate flow {ok}/{sent}"
    ));
}

/// One native source may not create every new entry (RFC 4380 7.3.5:
/// "limiting the amount of state used for new peers"): with the table
/// full, the least recently used peer would go, so without the per-source
/// limit a legitimate peer idle for longer than cap / flood rate (here 1 s)
/// would be evicted by a single source.
#[test]
fn attack_peer_table_single_source_rate_limited() {
    let cap = 10_000;
    let mut r = Rly::new(relay_config(cap));
    let legit_native = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 1);
    let client = teredo(SERVER, 0, MAPPED);
    let _ = r.tun(&echo(legit_native, client, false, b"legit"));
    let _ = r.udp(MAPPED, &build_bubble(client, legit_native));
    assert!(r.r.peers().get(&client).is_some_and(|p| p.trusted));
    // One source, 20,000 new destinations in 2 s.
    for i in 0..20_000u32 {
        r.now += Duration::from_micros(100);
        let victim = SocketAddrV4::new(Ipv4Addr::from(0xc613_0000u32 + i), 2000);
        let _ = r.tun(&echo(NATIVE, teredo(SERVER, 0, victim), false, b"flood"));
    }
    let kept = r.r.peers().get(&client).is_some_and(|p| p.trusted);
    let limited = r.r.stats().dropped(DropReason::RateLimited);
    let peers = r.r.peers().len();
    loud(&format!(
        "ATTACK peer_table_single_source: 20,000 new destinations from one native /64 in 2 s, \
         cap {cap}: {limited} refused by the per-source limit, {peers} entries, legitimate \
         peer idle 2 s kept = {kept}"
    ));
    assert!(kept, "one native source evicted an idle trusted peer");
}

// ----------------------------------------------------------------------
// RFC 4380 7.3.4: local discovery.

#[test]
fn attack_local_discovery() {
    let mut cfg = ClientConfig::new(SERVER);
    cfg.forwarder.peer_capacity = 1000;
    cfg.discovery = Some(DiscoveryConfig {
        local_nets: vec![(Ipv4Addr::new(192, 168, 1, 0), 24)],
        any_mapped: false,
    });
    let mut h = Host::new(cfg);
    let group = SocketAddrV4::new(DISCOVERY_ADDR, TEREDO_PORT);
    let discovery = |h: &mut Host, from: SocketAddrV4, src: Ipv6Addr, to: SocketAddrV4| {
        let mut b = build_bubble(src, addr::ALL_NODES);
        b[7] = 1; // hop limit 1, as discovery bubbles have
        let mut out = Vec::new();
        h.c.handle_udp(h.now, from, to, &b, &mut out);
        out
    };
    // Same NAT, but from off-link.
    let neighbour = teredo(SERVER, 0, SocketAddrV4::new(*MAPPED.ip(), 41000));
    let mut refused_out = 0;
    for i in 0..1000u16 {
        let off_link = SocketAddrV4::new(Ipv4Addr::new(198, 18, 66, 6), 1000 + i);
        refused_out += udps(&discovery(&mut h, off_link, neighbour, group)).count();
        // On the link, but another NAT's mapped address.
        let foreign = teredo(
            SERVER,
            0,
            SocketAddrV4::new(Ipv4Addr::new(198, 18, 9, 9), 1000 + i),
        );
        let lan = SocketAddrV4::new(Ipv4Addr::new(192, 168, 1, 3), 1000 + i);
        refused_out += udps(&discovery(&mut h, lan, foreign, group)).count();
        // Unicast, pretending to be a discovery bubble.
        refused_out += udps(&discovery(&mut h, lan, neighbour, LOCAL)).count();
    }
    assert_eq!(refused_out, 0, "a refused discovery bubble was answered");
    assert_eq!(
        h.c.peer_count(),
        0,
        "a refused discovery bubble made an entry"
    );
    let spoofed = h.drops(DropReason::Spoofed);
    assert!(spoofed >= 2000, "{spoofed} counted as spoofed");
    // A flood of valid-looking ones from the LAN: state stays capped, and
    // each is answered by one unicast bubble at most, on the LAN only.
    let n = 100_000u32;
    let (mut answers, mut answer_bytes, mut in_bytes) = (0, 0, 0);
    for i in 0..n {
        let lan = SocketAddrV4::new(
            Ipv4Addr::new(192, 168, 1, 3 + (i % 250) as u8),
            1024 + (i / 250) as u16,
        );
        let src = teredo(
            SERVER,
            (i % 4096) as u16,
            SocketAddrV4::new(*MAPPED.ip(), 1024 + (i % 60000) as u16),
        );
        in_bytes += 40;
        let out = discovery(&mut h, lan, src, group);
        for t in udps(&out) {
            assert!(t.to == lan || t.to == group, "answer to {}", t.to);
            answers += 1;
            answer_bytes += t.payload.len();
        }
        assert!(h.c.peer_count() <= 1000);
    }
    let peers = h.c.peer_count();
    loud(&format!(
        "ATTACK local_discovery: 3,000 forged discovery bubbles (off-link, foreign mapped \
         address, unicast): 0 answered, 0 entries, {spoofed} counted spoofed; flood of {n} \
         on-link ones: {peers} entries (cap 1000), {answers} unicast answers to their LAN \
         senders, {answer_bytes} bytes out for {in_bytes} in"
    ));
}

// ----------------------------------------------------------------------
// RFC 4380 7.4: laundering DoS at third parties.

#[test]
fn attack_laundering_through_relay() {
    // 7.4.3: packets to Teredo addresses naming a victim as the server and
    // as the mapped address, each a new peer (flags vary).
    let mut r = Rly::new(relay_config(100_000));
    let victim = Ipv4Addr::new(198, 18, 77, 7);
    let n = 10_000u32;
    let mut in_bytes = 0usize;
    let mut out_bytes = 0usize;
    let mut out_dgrams = 0usize;
    for i in 0..n {
        r.now += Duration::from_millis(1);
        let dst = teredo(
            victim,
            (i % 4096) as u16,
            SocketAddrV4::new(victim, 1024 + (i / 4096) as u16),
        );
        let p = Ipv6Repr {
            src: NATIVE,
            dst,
            next_header: 59,
            payload_len: 0,
            hop_limit: 64,
            traffic_class: 0,
        }
        .build(&[]);
        in_bytes += p.len();
        let mut out = r.tun(&p);
        out.extend(r.timers());
        for t in udps(&out) {
            assert_eq!(*t.to.ip(), victim);
            out_bytes += t.payload.len();
            out_dgrams += 1;
        }
    }
    // Let every retry run out.
    for _ in 0..400 {
        r.now += Duration::from_secs(1);
        for t in udps(&r.timers()) {
            out_bytes += t.payload.len();
            out_dgrams += 1;
        }
    }
    let per_packet = out_dgrams as f64 / f64::from(n);
    let ratio = out_bytes as f64 / in_bytes as f64;
    // RFC 4380 5.2.6 / 5.4.1: at most MAX_BUBBLES bubbles per peer, and a
    // relay on a public address sends only the indirect one, never data.
    assert!(
        per_packet <= f64::from(MAX_BUBBLES),
        "{per_packet} datagrams per packet"
    );
    assert!(
        ratio <= f64::from(MAX_BUBBLES),
        "{ratio} bytes out per byte in"
    );
    loud(&format!(
        "ATTACK laundering_relay: {n} minimal packets ({in_bytes} B) to Teredo addresses naming \
         a victim IPv4: {out_dgrams} bubbles ({out_bytes} B) to it, {per_packet:.2} datagrams and \
         {ratio:.2} bytes per inbound byte (bound: {MAX_BUBBLES} bubbles of 40 B per new peer, \
         no data)"
    ));
}

#[test]
fn attack_laundering_through_client() {
    let mut h = Host::new(ClientConfig::new(SERVER));
    let me = h.addr;
    let victim = SocketAddrV4::new(Ipv4Addr::new(198, 18, 77, 7), 5555);
    let n = 10_000u32;
    let (mut in_bytes, mut out_bytes, mut to_third) = (0usize, 0usize, 0usize);
    for i in 0..n {
        h.now += Duration::from_millis(1);
        // A Teredo source naming the victim, from the attacker: spoofed.
        let src = teredo(SERVER, (i % 4096) as u16, victim);
        let p = echo(src, me, false, b"reflect me");
        in_bytes += p.len();
        let out = h.udp(ATTACKER, &p);
        // A bubble naming the victim from the attacker, no nonce: not
        // learnt (RFC 6081 needs our nonce echoed).
        let b = build_bubble(src, me);
        in_bytes += b.len();
        let mut out2 = h.udp(SocketAddrV4::new(*victim.ip(), 6000 + (i % 100) as u16), &b);
        out2.extend(out);
        for t in udps(&out2) {
            out_bytes += t.payload.len();
            if *t.to.ip() == *victim.ip() {
                to_third += 1;
            }
        }
    }
    let spoofed = h.drops(DropReason::Spoofed);
    assert_eq!(to_third, 0, "the client sent to the spoofed victim");
    assert_eq!(out_bytes, 0);
    loud(&format!(
        "ATTACK laundering_client: {} spoofed packets and bubbles ({in_bytes} B) naming a \
         victim: {spoofed} dropped as spoofed, {to_third} datagrams ({out_bytes} B) emitted",
        2 * n
    ));
}

// ----------------------------------------------------------------------
// CVE-2006-6263: routing headers.

/// An echo request behind a type-0 routing header with `left` segments
/// left, pointing at `via`.
fn with_rh0(src: Ipv6Addr, dst: Ipv6Addr, via: Ipv6Addr, left: u8) -> Vec<u8> {
    let icmp = echo(src, dst, false, b"bounce");
    let mut payload = vec![58, 2, 0, left, 0, 0, 0, 0];
    payload.extend_from_slice(&via.octets());
    payload.extend_from_slice(&icmp[40..]);
    Ipv6Repr {
        src,
        dst,
        next_header: 43,
        payload_len: 0,
        hop_limit: 64,
        traffic_class: 0,
    }
    .build(&payload)
}

#[test]
fn attack_cve_2006_6263_routing_header() {
    let via = Ipv6Addr::new(0x2001, 0xdb8, 0x66, 0, 0, 0, 0, 6);
    // Through a relay: a Teredo client's packet to a native host, bouncing.
    let mut r = Rly::new(relay_config(1000));
    let client = teredo(SERVER, 0, MAPPED);
    let n = 1000;
    let mut forwarded = 0;
    for _ in 0..n {
        let out = r.udp(MAPPED, &with_rh0(client, NATIVE, via, 1));
        forwarded += tuns(&out) + udps(&out).count();
    }
    let relay_dropped = r.r.stats().dropped(DropReason::RoutingHeader);
    assert_eq!(forwarded, 0);
    assert_eq!(relay_dropped, n);
    // With no segments left the header is inert (RFC 5095): delivered.
    let out = r.udp(MAPPED, &with_rh0(client, NATIVE, via, 0));
    assert_eq!(tuns(&out), 1);
    // Through a client: from a trusted peer.
    let mut h = Host::new(ClientConfig::new(SERVER));
    let peer_ep = SocketAddrV4::new(Ipv4Addr::new(198, 18, 4, 1), 50000);
    let peer = teredo(SERVER, 0, peer_ep);
    let _ = h.udp(peer_ep, &build_bubble(peer, h.addr));
    let mut delivered = 0;
    for _ in 0..n {
        let out = h.udp(peer_ep, &with_rh0(peer, h.addr, via, 1));
        delivered += tuns(&out) + udps(&out).count();
    }
    let client_dropped = h.drops(DropReason::RoutingHeader);
    assert_eq!(delivered, 0);
    assert_eq!(client_dropped, n);
    loud(&format!(
        "ATTACK cve_2006_6263: {n} packets with a type-0 routing header (segments left 1) \
         through a relay: {relay_dropped} dropped, {forwarded} forwarded; through a client from \
         a trusted peer: {client_dropped} dropped, {delivered} delivered; segments left 0: \
         delivered (RFC 5095)"
    ));
}

// ----------------------------------------------------------------------
// CVE-2006-6264: non-global mapped addresses.

const NOT_GLOBAL: [Ipv4Addr; 9] = [
    Ipv4Addr::new(10, 1, 2, 3),
    Ipv4Addr::new(172, 16, 0, 1),
    Ipv4Addr::new(192, 168, 0, 1),
    Ipv4Addr::new(127, 0, 0, 1),
    Ipv4Addr::new(169, 254, 1, 1),
    Ipv4Addr::new(0, 0, 0, 0),
    Ipv4Addr::new(224, 0, 0, 253),
    Ipv4Addr::new(255, 255, 255, 255),
    Ipv4Addr::new(192, 88, 99, 1),
];

/// Datagrams to a non-global IPv4 address.
fn non_global(out: &[Output]) -> usize {
    udps(out)
        .filter(|t| !addr::is_global_unicast_v4(*t.to.ip()))
        .count()
}

#[test]
fn attack_cve_2006_6264_non_global_mapped() {
    let mut r = Rly::new(relay_config(1000));
    let mut h = Host::new(ClientConfig::new(SERVER));
    let me = h.addr;
    let mut sent = 0;
    let mut tried = 0;
    for (i, ip) in NOT_GLOBAL.iter().enumerate() {
        for port in [3544u16, 40000] {
            let ep = SocketAddrV4::new(*ip, port);
            // As the mapped address, and as the server.
            for dst in [teredo(SERVER, 0, ep), teredo(*ip, 0, MAPPED)] {
                tried += 1;
                let mut out = r.tun(&echo(NATIVE, dst, false, b"x"));
                out.extend(h.tun(&echo(me, dst, false, b"x")));
                sent += non_global(&out);
            }
            // A packet from such an address, matching its Teredo source.
            let src = teredo(SERVER, i as u16, ep);
            let mut out = r.udp(ep, &echo(src, NATIVE, false, b"y"));
            out.extend(h.udp(ep, &echo(src, me, false, b"y")));
            out.extend(h.udp(ep, &build_bubble(src, me)));
            sent += non_global(&out);
        }
        r.now += Duration::from_secs(3);
        sent += non_global(&r.timers());
        sent += non_global(&h.advance(Duration::from_secs(3)));
    }
    let relay_peers = r.r.peers().len();
    let client_peers = h.c.peer_count();
    let not_global = r.r.stats().dropped(DropReason::NotGlobal) + h.drops(DropReason::NotGlobal);
    assert_eq!(sent, 0, "a datagram went to a non-global address");
    assert_eq!(relay_peers, 0);
    assert_eq!(client_peers, 0);
    loud(&format!(
        "ATTACK cve_2006_6264: {tried} destinations (x2 engines) and {} sources with a \
         non-global mapped or server IPv4 ({} ranges): {relay_peers} relay entries, \
         {client_peers} client entries, {sent} datagrams sent, {not_global} counted not-global",
        NOT_GLOBAL.len() * 2,
        NOT_GLOBAL.len()
    ));
}

// ----------------------------------------------------------------------
// CVE-2006-6265: what a bubble opens.

#[test]
fn attack_cve_2006_6265_bubble_to_open() {
    let mut h = Host::new(ClientConfig::new(SERVER));
    let me = h.addr;
    let peer_ep = SocketAddrV4::new(Ipv4Addr::new(198, 18, 4, 1), 50000);
    let peer = teredo(SERVER, 0, peer_ep);
    // An unknown peer bubbles us through our server: we answer with a
    // bubble to the origin the server saw, and to nothing else.
    let mut p = Vec::new();
    Origin(peer_ep).emit(&mut p);
    p.extend_from_slice(&build_bubble(peer, me));
    let out = h.udp(server_ep(), &p);
    let opened: Vec<SocketAddrV4> = udps(&out)
        .map(|t| t.to)
        .filter(|t| *t != server_ep())
        .collect();
    assert!(opened.iter().all(|t| *t == peer_ep), "opened {opened:?}");
    // Its packets from any other endpoint, or before it proves its
    // endpoint, are not delivered. From another port of the address the
    // server vouched for (a Linux NAT may have mapped the peer there), a
    // few echo tests go back, each an echo request whose reply would prove
    // the endpoint, and nothing more; from anywhere else, nothing.
    let mut delivered = 0;
    let mut tests = 0;
    let mut answered_elsewhere = 0;
    let same_ip = SocketAddrV4::new(*peer_ep.ip(), 50001);
    let others = [
        same_ip,
        SocketAddrV4::new(Ipv4Addr::new(198, 18, 4, 2), 50000),
        ATTACKER,
    ];
    for ep in others {
        for _ in 0..100 {
            let mut out = h.udp(ep, &echo(peer, me, false, b"in"));
            out.extend(h.udp(ep, &build_bubble(peer, me)));
            delivered += tuns(&out);
            for t in udps(&out).filter(|t| t.to != server_ep()) {
                let is_test = t.to == same_ip
                    && Ipv6Packet::new_checked(&t.payload[..]).is_ok_and(|ip| {
                        matches!(
                            Icmpv6Repr::parse(&me, &peer, ip.payload()),
                            Ok(Icmpv6Repr::EchoRequest { data, .. }) if data.len() == 8
                        )
                    });
                if is_test {
                    tests += 1;
                } else {
                    answered_elsewhere += 1;
                }
            }
        }
    }
    assert_eq!(delivered, 0);
    assert_eq!(answered_elsewhere, 0);
    assert!(
        (1..=usize::from(MAX_ENDPOINT_TESTS)).contains(&tests),
        "{tests} echo tests"
    );
    // From the endpoint its address names: delivered (RFC 4380 5.2.3).
    let out = h.udp(peer_ep, &echo(peer, me, false, b"in"));
    assert_eq!(tuns(&out), 1);
    loud(&format!(
        "ATTACK cve_2006_6265: a bubble from an unknown peer through our server opens our NAT \
         to {} endpoint(s), all the origin the server vouched for ({peer_ep}); 600 packets and \
         bubbles from 3 other endpoints: {delivered} delivered, {tests} echo tests (bound \
         {MAX_ENDPOINT_TESTS}) to another port of the vouched address, {answered_elsewhere} \
         other datagrams; from the origin: delivered (RFC 4380 5.2.3)",
        opened.len()
    ));
}

// ----------------------------------------------------------------------
// CVE-2006-6266: ping tests triggered by spoofed native sources.

#[test]
fn attack_cve_2006_6266_ping_tests() {
    let mut cfg = ClientConfig::new(SERVER);
    cfg.forwarder.peer_capacity = 10_000;
    let per_second = cfg.forwarder.ping_tests_per_second;
    let mut h = Host::new(cfg);
    let me = h.addr;
    let secs = 10u64;
    let per_sec = 10_000u64;
    let n = secs * per_sec;
    let mut tests = 0u64;
    let mut elsewhere = 0u64;
    let start = h.c.stats().ping_tests_sent;
    for i in 0..n {
        h.now += Duration::from_micros(1_000_000 / per_sec);
        // A packet from a spoofed native source, through the attacker; the
        // host answers it, which asks for a connectivity test.
        let src = Ipv6Addr::new(0x2001, 0xdb8, 0x77, (i >> 16) as u16, 0, 0, 0, i as u16);
        let mut out = h.udp(ATTACKER, &echo(src, me, false, b"ping"));
        out.extend(h.tun(&echo(me, src, true, b"ping")));
        if i % 100 == 0 {
            out.extend(h.advance(Duration::ZERO));
        }
        for t in udps(&out) {
            if t.to == server_ep() || t.to == SocketAddrV4::new(SERVER2, TEREDO_PORT) {
                tests += 1;
            } else {
                elsewhere += 1;
            }
        }
    }
    let counted = h.c.stats().ping_tests_sent - start;
    let bound = u64::from(per_second) * (secs + 1);
    assert_eq!(elsewhere, 0, "a datagram went elsewhere than our servers");
    assert!(counted <= bound, "{counted} ping tests in {secs} s");
    assert!(h.c.peer_count() <= 10_000);
    loud(&format!(
        "ATTACK cve_2006_6266: {n} packets from spoofed native sources answered by the host, \
         over {secs} s: {counted} connectivity tests ({:.0}/s, limit {per_second}/s), all to our \
         own server ({tests} datagrams), {elsewhere} elsewhere, {} entries (cap 10000)",
        counted as f64 / secs as f64,
        h.c.peer_count()
    ));
}
