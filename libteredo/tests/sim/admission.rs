//! Simulator scenarios of admission under flood (libteredo::proto::admission):
//! a one-shot flood against a flow that repeats, one noisy source against
//! many quiet ones, the flood and the newcomer from the same source, peers
//! that answered never evicted, and a client flooded with indirect bubbles
//! still answering a new peer. Every test name contains `sim`.

use crate::{MS, NAT2_WAN, NATIVE, NAT_WAN, RELAY, SECS, SERVER};
use libteredo::addr::{TeredoAddr, TEREDO_PORT};
use libteredo::proto::ForwarderConfig;
use libteredo::proto::PeerClass as Class;
use libteredo::sim::*;
use libteredo::wire::ipv6::build_bubble;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV4};
use std::time::Duration;

/// The flood's source: the native host's own /64 (a busy server, or hosts
/// behind one carrier-grade NAT).
const FLOODER: &str = "2001:db8:9::66";

/// A random Teredo address of a client of our server, whose mapped
/// endpoint is global (so that the relay would bubble it).
fn random_teredo(rng: &mut u64) -> Ipv6Addr {
    *rng ^= *rng << 13;
    *rng ^= *rng >> 7;
    *rng ^= *rng << 17;
    let r = *rng;
    TeredoAddr {
        prefix: 0x2001_0000,
        server: ip(SERVER),
        flags: 0,
        mapped_port: (r as u16).max(1),
        // 203.0.113.0/24 would be documentation; 100.64/10 is shared:
        // 45.x.y.z is plain global unicast.
        mapped_addr: Ipv4Addr::from(0x2d00_0000 | ((r >> 16) as u32 & 0x00ff_ffff)),
    }
    .to_ipv6()
}

/// Runs the world for `d` while `src` sends `per_second` packets a second
/// to random Teredo addresses, in 10 ms slices.
fn flood_for(w: &mut World, src: Ipv6Addr, per_second: u64, d: Duration, rng: &mut u64) {
    let slices = d.as_millis() as u64 / 10;
    for _ in 0..slices {
        for _ in 0..per_second / 100 {
            let dst = random_teredo(rng);
            w.native_send(echo_request(src, dst, 7, 0, 8));
        }
        w.run_for(MS(10));
    }
}

/// Qualifies `client` while `src` floods at `per_second`.
fn qualify_under_flood(
    w: &mut World,
    client: NodeId,
    src: Ipv6Addr,
    per_second: u64,
    rng: &mut u64,
) -> Ipv6Addr {
    for _ in 0..1000 {
        if let Some(a) = w.teredo_addr(client) {
            return a;
        }
        flood_for(w, src, per_second, MS(10), rng);
    }
    panic!("no qualification within 10 s of flood");
}

/// Server, relay, native host, and a client behind a NAT.
fn lab(seed: u64, cfg: Option<ForwarderConfig>) -> (World, NodeId, NodeId) {
    let mut w = World::new(seed);
    w.add_server(ip(SERVER));
    let relay = match cfg {
        Some(cfg) => w.add_relay_with(ip(RELAY), None, cfg),
        None => w.add_relay(ip(RELAY), None),
    };
    w.add_native(ip6(NATIVE));
    let (_, lan) = w.add_nat(NatKind::PortRestricted, ip(NAT_WAN), false);
    let client = w.add_client(ip("192.168.1.2"), 40000, Some(lan), ip(SERVER));
    (w, relay, client)
}

/// Pings `to` from the native host `count` times, 1 s apart, while
/// `flooder` floods at `rate`; returns for each echo the delay until its
/// reply (None: no reply within 2 s).
fn pings_under_flood(
    w: &mut World,
    to: Ipv6Addr,
    flooder: Ipv6Addr,
    rate: u64,
    count: u16,
    rng: &mut u64,
) -> Vec<Option<Duration>> {
    let mut sent_at = Vec::new();
    let mut answered: Vec<Option<Duration>> = vec![None; usize::from(count)];
    // One ping a second, 100 slices of 10 ms between them; then 2 s more.
    for slice in 0..(u64::from(count) * 100 + 200) {
        // The echo goes amid the slice's flood, not ahead of it (a token
        // refilled since the last slice would be its for nothing).
        let per_slice = rate / 100;
        for k in 0..per_slice {
            if k == per_slice / 2 && slice % 100 == 0 && slice / 100 < u64::from(count) {
                let seq = (slice / 100) as u16;
                w.native_send(echo_request(ip6(NATIVE), to, 99, seq, 8));
                sent_at.push(w.elapsed());
            }
            let dst = random_teredo(rng);
            w.native_send(echo_request(flooder, dst, 7, 0, 8));
        }
        w.run_for(MS(10));
        for seq in w.native_echo_replies(0, 99) {
            let i = usize::from(seq);
            if i < answered.len() && answered[i].is_none() {
                let took = w.elapsed() - sent_at[i];
                if took <= SECS(2) {
                    answered[i] = Some(took);
                }
            }
        }
    }
    answered
}

#[test]
fn sim_admission_a_flow_that_repeats_wins_over_a_one_shot_flood_from_its_own_source() {
    let (mut w, relay, client) = lab(1501, None);
    let mut rng = 0x1234_5678_9abc_def0u64;
    // The flood starts first: 20,000 new destinations a second, from the
    // native host's own /64.
    flood_for(&mut w, ip6(FLOODER), 20_000, SECS(1), &mut rng);
    // A client qualifies during the flood, and the native host pings it.
    let addr = qualify_under_flood(&mut w, client, ip6(FLOODER), 20_000, &mut rng);
    let answered = pings_under_flood(&mut w, addr, ip6(FLOODER), 20_000, 10, &mut rng);
    let r = w.relay_engine(relay);
    let stats = r.stats().clone();
    assert!(
        answered.iter().all(Option::is_some),
        "answers within 2 s: {answered:?}; {stats:?}"
    );
    // The first echo waited for the second (held, then admitted with it):
    // answered late, but answered.
    assert!(answered[0].unwrap() >= MS(900), "{answered:?}");
    assert!(stats.peers_admitted_late >= 1, "{stats:?}");
    // Nearly all of the flood was held: no bubble for it.
    let flood = 20_000 * 11;
    assert!(stats.peers_held * 100 >= flood * 95, "{stats:?}");
    // Bubbles: the source's tier-1 admissions (burst 200, 100 a second)
    // and their repeats, not the flood's.
    assert!(stats.bubbles_sent <= 4 * (200 + 100 * 12), "{stats:?}");
}

#[test]
fn sim_admission_without_repeats_a_flow_from_the_flooding_source_waits() {
    // The control: the newcomer's first packet alone is held like the
    // flood's (this is what the second packet is for).
    let (mut w, relay, client) = lab(1502, None);
    let mut rng = 0x2222_3333_4444_5555u64;
    flood_for(&mut w, ip6(FLOODER), 20_000, SECS(1), &mut rng);
    let addr = qualify_under_flood(&mut w, client, ip6(FLOODER), 20_000, &mut rng);
    // The echo amid the flood's packets (see pings_under_flood).
    for _ in 0..100 {
        let dst = random_teredo(&mut rng);
        w.native_send(echo_request(ip6(FLOODER), dst, 7, 0, 8));
    }
    w.native_send(echo_request(ip6(NATIVE), addr, 98, 0, 8));
    flood_for(&mut w, ip6(FLOODER), 20_000, SECS(2), &mut rng);
    assert!(w.native_echo_replies(0, 98).is_empty());
    let p = w.relay_engine(relay).peers().get(&addr).map(|p| p.held);
    assert_eq!(p, Some(true));
}

#[test]
fn sim_admission_a_noisy_source_does_not_starve_quiet_ones() {
    let (mut w, relay, client) = lab(1503, None);
    let mut rng = 0x0bad_cafe_f00d_0001u64;
    let addr = w.qualify(client, SECS(10));
    flood_for(&mut w, ip6("2001:db8:66::1"), 20_000, SECS(2), &mut rng);
    // 300 quiet sources, each from its own /64, each with one packet to a
    // new destination: all admitted at once.
    let mut dsts = Vec::new();
    for i in 0..300u16 {
        let src = Ipv6Addr::new(0x2001, 0xdb8, 0x100 + i, 0, 0, 0, 0, 1);
        let dst = random_teredo(&mut rng);
        w.native_send(echo_request(src, dst, 5, 0, 8));
        dsts.push(dst);
    }
    w.run_for(MS(10));
    let peers = w.relay_engine(relay).peers();
    let held: Vec<_> = dsts
        .iter()
        .filter(|d| peers.get(d).is_none_or(|p| p.held))
        .collect();
    // Sources that share a slot with the noisy one (1 in 4096) may lose.
    assert!(held.len() <= 2, "{} quiet destinations held", held.len());
    // And the native host's first echo to the client is answered, with no
    // repeat needed.
    w.native_send(echo_request(ip6(NATIVE), addr, 97, 0, 8));
    flood_for(&mut w, ip6("2001:db8:66::1"), 20_000, SECS(1), &mut rng);
    assert_eq!(w.native_echo_replies(0, 97), vec![0]);
}

#[test]
fn sim_admission_peers_that_answered_are_never_evicted_by_a_flood() {
    let cfg = ForwarderConfig {
        direct_bubbles: false,
        peer_capacity: 2000,
        ..ForwarderConfig::default()
    };
    let (mut w, relay, client) = lab(1504, Some(cfg));
    let mut rng = 0x5555_aaaa_5555_aaaau64;
    let addr = w.qualify(client, SECS(10));
    w.native_send(echo_request(ip6(NATIVE), addr, 96, 0, 8));
    w.run_for(SECS(1));
    assert_eq!(w.native_echo_replies(0, 96), vec![0]);
    // A flood from many sources fills the table many times over.
    for i in 0..20u16 {
        let src = Ipv6Addr::new(0x2001, 0xdb8, 0x200 + i, 0, 0, 0, 0, 1);
        flood_for(&mut w, src, 5_000, MS(200), &mut rng);
        // The flow keeps going.
        w.native_send(echo_request(ip6(NATIVE), addr, 96, i + 1, 8));
    }
    w.run_for(SECS(1));
    let r = w.relay_engine(relay);
    // More than the table holds came and went.
    assert!(r.peers().evicted() >= 4_000, "{}", r.peers().evicted());
    assert!(r.peers().len() <= 2000);
    let p = r.peers().get(&addr).expect("the client's entry");
    assert_eq!(p.class(), Class::Trusted);
    assert_eq!(w.native_echo_replies(0, 96).len(), 21);
}

/// An indirect bubble from our server to the client behind `nat_wan`'s
/// mapping `port`: "peer `from` at `origin` wants to talk to `to`".
fn indirect_bubble(origin: SocketAddrV4, from: Ipv6Addr, to: Ipv6Addr) -> Vec<u8> {
    let mut v = vec![0, 0];
    v.extend_from_slice(&(origin.port() ^ 0xffff).to_be_bytes());
    v.extend_from_slice(&(u32::from(*origin.ip()) ^ 0xffff_ffff).to_be_bytes());
    v.extend_from_slice(&build_bubble(from, to));
    v
}

#[test]
fn sim_admission_a_client_flooded_with_indirect_bubbles_answers_a_new_peer() {
    let mut w = World::new(1505);
    w.add_server(ip(SERVER));
    let (_, lan1) = w.add_nat(NatKind::PortRestricted, ip(NAT_WAN), false);
    let (_, lan2) = w.add_nat(NatKind::PortRestricted, ip(NAT2_WAN), false);
    let a = w.add_client(ip("192.168.1.2"), 40000, Some(lan1), ip(SERVER));
    let b = w.add_client(ip("192.168.2.2"), 40000, Some(lan2), ip(SERVER));
    let addr_a = w.qualify(a, SECS(10));
    let addr_b = w.qualify(b, SECS(10));
    let mapped_a = TeredoAddr::parse(&addr_a).unwrap().mapped();
    let from_server = SocketAddrV4::new(ip(SERVER), TEREDO_PORT);
    let mut rng = 0x7777_1111_2222_3333u64;
    // 20,000 spoofed indirect bubbles a second, each from another origin
    // and another peer, through A's NAT mapping (they come "from the
    // server"); B, a new peer, pings A meanwhile.
    let flood_slice = |w: &mut World, rng: &mut u64| {
        for _ in 0..200 {
            let peer = random_teredo(rng);
            let t = TeredoAddr::parse(&peer).unwrap();
            let b = indirect_bubble(t.mapped(), peer, addr_a);
            w.send_v4(from_server, mapped_a, b, None);
        }
        w.run_for(MS(10));
    };
    for _ in 0..100 {
        flood_slice(&mut w, &mut rng);
    }
    let answered_before = w.client(a).stats().bubbles_sent;
    let mut replies_at = None;
    for slice in 0..800u64 {
        if slice % 100 == 0 {
            w.client_send(b, echo_request(addr_b, addr_a, 95, (slice / 100) as u16, 8));
        }
        flood_slice(&mut w, &mut rng);
        if replies_at.is_none() && !w.client_echo_replies(b, 95).is_empty() {
            replies_at = Some(slice * 10);
        }
    }
    let stats = w.client(a).stats().clone();
    let replies = w.client_echo_replies(b, 95);
    // B repeats its indirect bubble 2 s after the first (RFC 4380 5.2.6):
    // that one is admitted in tier 2, which the flood does not drain.
    assert!(
        replies_at.is_some_and(|ms| ms <= 4_500),
        "first reply after {replies_at:?} ms; replies {replies:?}; {stats:?}"
    );
    assert!(replies.len() >= 6, "{replies:?}");
    // What the flood made A send stays within the shared tier-1 budget
    // (500 a second, burst 1,000) for 9 s.
    let answered = stats.bubbles_sent - answered_before;
    assert!(answered <= 1_000 + 500 * 9 + 100, "{answered}; {stats:?}");
    assert!(stats.peers_held >= 100_000, "{stats:?}");
}
