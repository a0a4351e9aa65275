//! Unit tests of the client engine, driven through its public calls with a
//! fixed clock (instants counted from one `t0`) and seeded randomness: the
//! qualification of RFC 4380 5.2.1 (solicitations with a nonce, the RFC's
//! 4 s and 3 tries, the answer taken only with our nonce, the address made
//! of the origin indication as in section 4's example), maintenance
//! (5.2.5), server loss, and the NAT tests.

use super::*;
use crate::addr::{
    server_link_local, TeredoAddr, ALL_ROUTERS, LINK_LOCAL_CONE, LINK_LOCAL_RESTRICTED,
    TEREDO_PREFIX,
};
use crate::proto::output::{Event, Transmit};
use crate::proto::random::SeededRandom;
use crate::proto::server::{advert, advert_datagram};
use crate::wire::icmpv6::Icmpv6Repr;
use crate::wire::teredo::{Auth, TeredoPacket};

/// RFC 4380 section 4's example: the server 65.54.227.120 (its secondary
/// address the next one), a client whose NAT maps it to 192.0.2.45:40000.
const SERVER: Ipv4Addr = Ipv4Addr::new(65, 54, 227, 120);
const SERVER2: Ipv4Addr = Ipv4Addr::new(65, 54, 227, 121);
const MAPPED: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(192, 0, 2, 45), 40000);
/// Where the client's socket is bound.
const LOCAL: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(192, 168, 1, 2), 3544);

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// A router solicitation the client sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Rs {
    to: SocketAddrV4,
    nonce: [u8; 8],
    /// Its IPv6 source: the cone or the restricted link-local address.
    src: Ipv6Addr,
}

/// The solicitations in `out`, each checked for the shape RFC 4380 5.2.1
/// gives it: an authentication header with our nonce (no client
/// identifier, no authentication value, confirmation 0), then an ICMPv6
/// router solicitation to all-routers, hop limit 255.
fn solicitations(out: &[Output]) -> Vec<Rs> {
    out.iter()
        .filter_map(|o| match o {
            Output::Udp(t) => Some(t),
            _ => None,
        })
        .filter_map(|t| {
            let p = TeredoPacket::parse(&t.payload).ok()?;
            let auth = p.auth?;
            assert_eq!((auth.client_id, auth.auth_value), (&[][..], &[][..]));
            assert_eq!(auth.confirmation, 0);
            assert_eq!(p.origin, None);
            assert_eq!(t.from, None);
            let ip = &p.ipv6;
            assert_eq!(ip.dst_addr(), ALL_ROUTERS);
            assert_eq!(ip.hop_limit(), 255);
            let icmp = Icmpv6Repr::parse(&ip.src_addr(), &ip.dst_addr(), ip.payload());
            assert_eq!(icmp, Ok(Icmpv6Repr::RouterSolicit));
            Some(Rs {
                to: t.to,
                nonce: auth.nonce,
                src: ip.src_addr(),
            })
        })
        .collect()
}

fn events(out: &[Output]) -> Vec<Event> {
    out.iter()
        .filter_map(|o| match o {
            Output::Event(e) => Some(e.clone()),
            _ => None,
        })
        .collect()
}

/// A server's answer to the solicitation `rs`: an RA for the Teredo
/// `prefix` of `SERVER`, the origin indication `origin`.
fn ra(rs: &Rs, origin: SocketAddrV4, prefix: u32) -> Vec<u8> {
    let auth = Auth {
        client_id: &[],
        auth_value: &[],
        nonce: rs.nonce,
        confirmation: 0,
    };
    let ra = advert(prefix, SERVER, Some(1280));
    advert_datagram(Some(auth), origin, server_link_local(SERVER), rs.src, ra)
}

fn from(server: Ipv4Addr) -> SocketAddrV4 {
    SocketAddrV4::new(server, TEREDO_PORT)
}

/// A client engine, its clock, and everything it sent with the instant.
struct Harness {
    c: Client,
    t0: Instant,
    now: Instant,
}

impl Harness {
    fn new() -> Harness {
        Self::with(ClientConfig::new(SERVER))
    }

    fn with(cfg: ClientConfig) -> Harness {
        let t0 = Instant::now();
        Harness {
            c: Client::new(cfg, Box::new(SeededRandom::new(7)), t0),
            t0,
            now: t0,
        }
    }

    /// The time since `t0`.
    fn at(&self) -> Duration {
        self.now - self.t0
    }

    /// Runs the next timer; returns when it ran (since `t0`) and what it
    /// produced.
    fn step(&mut self) -> (Duration, Vec<Output>) {
        let t = self.c.poll_timeout().expect("a timer");
        assert!(t >= self.now, "a timer in the past");
        self.now = t;
        let mut out = Vec::new();
        self.c.handle_timeout(t, &mut out);
        (self.at(), out)
    }

    /// Runs every timer due up to `t0 + until`, in order; returns what each
    /// call produced, with the time it ran at.
    fn run_until(&mut self, until: Duration) -> Vec<(Duration, Vec<Output>)> {
        let mut all = Vec::new();
        while self.c.poll_timeout().is_some_and(|t| t <= self.t0 + until) {
            all.push(self.step());
        }
        self.now = self.t0 + until;
        all
    }

    /// Runs the timers until one sends a solicitation to `to` from `src`
    /// (within a minute): when, and which.
    fn until_solicited(&mut self, to: Ipv4Addr, src: Ipv6Addr) -> (Duration, Rs) {
        let limit = self.at() + secs(60);
        while self.at() < limit {
            let (t, out) = self.step();
            if let Some(rs) = sent(&[(t, out)], to, src).pop() {
                return rs;
            }
        }
        panic!("no solicitation to {to} from {src} within a minute");
    }

    fn udp(&mut self, from: SocketAddrV4, bytes: &[u8]) -> Vec<Output> {
        let mut out = Vec::new();
        self.c.handle_udp(self.now, from, LOCAL, bytes, &mut out);
        out
    }

    /// The first solicitation, answered: qualified at `t0` with `MAPPED`.
    fn qualified() -> (Harness, Ipv6Addr, Vec<Output>) {
        let mut h = Harness::new();
        let first = h.run_until(Duration::ZERO);
        let rs = solicitations(&first[0].1)[0];
        let out = h.udp(from(SERVER), &ra(&rs, MAPPED, TEREDO_PREFIX));
        let addr = h.c.qualification().expect("qualified").addr;
        (h, addr, out)
    }
}

/// The solicitations of `trace` to `to` from `src`, with their times.
fn sent(trace: &[(Duration, Vec<Output>)], to: Ipv4Addr, src: Ipv6Addr) -> Vec<(Duration, Rs)> {
    trace
        .iter()
        .flat_map(|(t, out)| solicitations(out).into_iter().map(move |rs| (*t, rs)))
        .filter(|(_, rs)| rs.to == from(to) && rs.src == src)
        .collect()
}

#[test]
fn the_first_solicitation_goes_at_once_with_a_nonce() {
    let mut h = Harness::new();
    assert_eq!(h.c.state(), ClientState::Probing);
    let trace = h.run_until(Duration::ZERO);
    assert_eq!(trace.len(), 1);
    let rs = solicitations(&trace[0].1);
    // RFC 5991: never the cone bit, so the restricted link-local source.
    assert_eq!(rs.len(), 1);
    assert_eq!(rs[0].to, from(SERVER));
    assert_eq!(rs[0].src, LINK_LOCAL_RESTRICTED);
    assert_ne!(rs[0].nonce, [0; 8]);
    // Another seed, another nonce: it comes from the caller's randomness.
    let mut other = Client::new(
        ClientConfig::new(SERVER),
        Box::new(SeededRandom::new(8)),
        h.t0,
    );
    let mut out = Vec::new();
    other.handle_timeout(h.t0, &mut out);
    assert_ne!(solicitations(&out)[0].nonce, rs[0].nonce);
    assert!(h.c.qualification().is_none());
}

#[test]
fn an_advertisement_with_another_nonce_is_refused() {
    let mut h = Harness::new();
    let rs = solicitations(&h.run_until(Duration::ZERO)[0].1)[0];
    let mut wrong = rs;
    wrong.nonce[7] ^= 1;
    let out = h.udp(from(SERVER), &ra(&wrong, MAPPED, TEREDO_PREFIX));
    assert!(out.is_empty(), "{out:?}");
    assert_eq!(h.c.stats().dropped(DropReason::Spoofed), 1);
    assert_eq!(h.c.state(), ClientState::Probing);
    assert!(h.c.qualification().is_none());
    // The right one still qualifies: the wrong one changed nothing.
    let out = h.udp(from(SERVER), &ra(&rs, MAPPED, TEREDO_PREFIX));
    assert!(matches!(events(&out)[..], [Event::Qualified { .. }]));
}

#[test]
fn the_right_nonce_qualifies_with_the_address_of_the_origin_indication() {
    let (h, addr, out) = Harness::qualified();
    // RFC 4380 section 4: 2001:0000:4136:e378:8000:63bf:3fff:fdd2, but for
    // the flags, which RFC 5991 makes random without the cone bit.
    let s = addr.segments();
    assert_eq!(s[..4], [0x2001, 0x0000, 0x4136, 0xe378]);
    assert_eq!(s[5..], [0x63bf, 0x3fff, 0xfdd2]);
    let t = TeredoAddr::parse(&addr).expect("a Teredo address");
    assert_eq!((t.server, t.mapped()), (SERVER, MAPPED));
    assert!(!t.is_cone() && t.flags_valid_rfc5991(), "{:#06x}", t.flags);
    assert_eq!(
        events(&out),
        [Event::Qualified {
            addr,
            old: None,
            mapped: MAPPED,
            mtu: 1280,
            nat: NatBehaviour::Unknown,
        }]
    );
    assert_eq!(h.c.state(), ClientState::Qualified);
    let q = h.c.qualification().expect("qualified");
    assert_eq!(
        (q.mapped, q.prefix, q.server),
        (MAPPED, TEREDO_PREFIX, SERVER)
    );
    // The NAT test follows at once: a solicitation with the cone bit.
    let rs = solicitations(&out);
    assert_eq!(rs.len(), 1);
    assert_eq!((rs[0].to, rs[0].src), (from(SERVER), LINK_LOCAL_CONE));
}

#[test]
fn solicitations_every_4_s_3_times_then_rounds_back_off_to_30_s() {
    let mut h = Harness::new();
    let trace = h.run_until(secs(149));
    let rs = sent(&trace, SERVER, LINK_LOCAL_RESTRICTED);
    let times: Vec<u64> = rs.iter().map(|(t, _)| t.as_secs()).collect();
    // A round: 0, 4, 8 s, given up at 12; the next after 10 s, then 20,
    // then 30 (the refresh interval) at most.
    assert_eq!(
        times,
        [0, 4, 8, 22, 26, 30, 54, 58, 62, 96, 100, 104, 138, 142, 146]
    );
    for round in rs.chunks(3) {
        // One nonce a round, repeated by its tries; a new one each round.
        assert!(round.iter().all(|(_, r)| r.nonce == round[0].1.nonce));
    }
    assert_ne!(rs[0].1.nonce, rs[3].1.nonce);
    // Nothing else went out, and no event: never qualified, never lost.
    let all: usize = trace.iter().map(|(_, o)| o.len()).sum();
    assert_eq!(all, rs.len());
    assert_eq!(h.c.state(), ClientState::Probing);
    h.run_until(secs(151));
    assert_eq!(h.c.state(), ClientState::Offline);
}

#[test]
fn an_advertisement_of_a_foreign_prefix_is_refused() {
    let mut h = Harness::new();
    let rs = solicitations(&h.run_until(Duration::ZERO)[0].1)[0];
    let out = h.udp(from(SERVER), &ra(&rs, MAPPED, 0x3ffe_831f));
    assert!(out.is_empty(), "{out:?}");
    assert_eq!(h.c.stats().dropped(DropReason::ForeignPrefix), 1);
    assert!(h.c.qualification().is_none());
    // Refused as if unanswered: the tries go on.
    let trace = h.run_until(secs(4));
    assert_eq!(sent(&trace, SERVER, LINK_LOCAL_RESTRICTED).len(), 1);
}

#[test]
fn an_advertisement_from_another_address_than_the_servers_is_dropped() {
    let mut h = Harness::new();
    let rs = solicitations(&h.run_until(Duration::ZERO)[0].1)[0];
    let spoofer = SocketAddrV4::new(Ipv4Addr::new(203, 0, 113, 9), TEREDO_PORT);
    let out = h.udp(spoofer, &ra(&rs, MAPPED, TEREDO_PREFIX));
    assert!(out.is_empty(), "{out:?}");
    assert_eq!(h.c.stats().dropped(DropReason::Unexpected), 1);
    assert!(h.c.qualification().is_none());
}

#[test]
fn maintenance_solicits_within_the_refresh_interval_and_keeps_the_address() {
    let (mut h, addr, _) = Harness::qualified();
    // RFC 4380 5.2.5 with 5.2's randomized interval: 75 % to 100 % of
    // the 30 s refresh interval.
    let (at, rs) = h.until_solicited(SERVER, LINK_LOCAL_RESTRICTED);
    assert!(
        at >= Duration::from_millis(22_500) && at < secs(30),
        "{at:?}"
    );
    h.now += Duration::from_millis(300);
    let out = h.udp(from(SERVER), &ra(&rs, MAPPED, TEREDO_PREFIX));
    // Nothing changed: no event, the same address.
    assert!(events(&out).is_empty(), "{out:?}");
    assert_eq!(h.c.qualification().map(|q| q.addr), Some(addr));
    assert_eq!(h.c.state(), ClientState::Qualified);
    // The next maintenance counts from the answer, with a new nonce.
    let answered = h.at();
    let (next, rs2) = h.until_solicited(SERVER, LINK_LOCAL_RESTRICTED);
    let since = next - answered;
    assert!(since >= Duration::from_millis(22_500) && since < secs(30));
    assert_ne!(rs2.nonce, rs.nonce);
}

#[test]
fn a_new_mapping_at_maintenance_brings_a_new_address_naming_the_old() {
    let (mut h, addr, _) = Harness::qualified();
    let (_, rs) = h.until_solicited(SERVER, LINK_LOCAL_RESTRICTED);
    let remapped = SocketAddrV4::new(*MAPPED.ip(), 40001);
    let out = h.udp(from(SERVER), &ra(&rs, remapped, TEREDO_PREFIX));
    let Some(Event::Qualified {
        addr: new,
        old,
        mapped,
        ..
    }) = events(&out).into_iter().next()
    else {
        panic!("no new qualification: {out:?}");
    };
    assert_eq!((old, mapped), (Some(addr), remapped));
    assert_ne!(new, addr);
    assert_eq!(TeredoAddr::parse(&new).map(|t| t.mapped()), Some(remapped));
}

#[test]
fn the_server_is_lost_after_3_unanswered_maintenance_solicitations() {
    let (mut h, addr, _) = Harness::qualified();
    let trace = h.run_until(secs(80));
    let refresh = sent(&trace, SERVER, LINK_LOCAL_RESTRICTED);
    let first = refresh[0].0;
    let lost: Vec<Duration> = trace
        .iter()
        .filter(|(_, out)| events(out).contains(&Event::ServerLost { old: addr }))
        .map(|(t, _)| *t)
        .collect();
    // The maintenance solicitation and its 2 repetitions 4 s apart, the
    // loss 4 s after the last: 12 s after the first.
    assert_eq!(lost, [first + secs(12)]);
    let times: Vec<Duration> = refresh.iter().map(|(t, _)| *t).collect();
    assert_eq!(times[..3], [first, first + secs(4), first + secs(8)]);
    assert!(refresh[..3]
        .iter()
        .all(|(_, r)| r.nonce == refresh[0].1.nonce));
    // Then, the address gone, a search of the list (here one server) at
    // once: its own round of 3, then the backoff.
    assert_eq!(
        times[3..6],
        [first + secs(12), first + secs(16), first + secs(20)]
    );
    assert_ne!(refresh[3].1.nonce, refresh[0].1.nonce);
    assert_eq!(times[6], first + secs(24 + 10));
    assert!(h.c.qualification().is_none());
    assert_ne!(h.c.state(), ClientState::Qualified);
}

#[test]
fn an_answered_cone_test_reports_a_cone_nat() {
    let (mut h, _, out) = Harness::qualified();
    let cone = solicitations(&out)[0];
    assert_eq!(cone.src, LINK_LOCAL_CONE);
    // A cone NAT lets in the answer from the other address (RFC 4380
    // 5.2.1: the server answers a cone solicitation from there).
    let out = h.udp(from(SERVER2), &ra(&cone, MAPPED, TEREDO_PREFIX));
    assert_eq!(events(&out), [Event::NatObserved(NatBehaviour::Cone)]);
    assert_eq!(h.c.nat(), NatBehaviour::Cone);
}

#[test]
fn the_servers_view_of_our_own_endpoint_is_no_nat() {
    // A host with a public address: the server sees our own endpoint, and
    // the cone test is answered. That is no NAT, not a cone NAT.
    let mut cfg = ClientConfig::new(SERVER);
    cfg.local = Some(MAPPED);
    let mut h = Harness::with(cfg);
    let first = h.run_until(Duration::ZERO);
    let rs = solicitations(&first[0].1)[0];
    let out = h.udp(from(SERVER), &ra(&rs, MAPPED, TEREDO_PREFIX));
    let cone = solicitations(&out)[0];
    let out = h.udp(from(SERVER2), &ra(&cone, MAPPED, TEREDO_PREFIX));
    assert_eq!(events(&out), [Event::NatObserved(NatBehaviour::None)]);
    assert_eq!(NatBehaviour::None.to_string(), "none");
}

#[test]
fn an_unanswered_cone_test_then_the_same_mapping_seen_by_the_secondary_is_restricted() {
    let (mut h, _, _) = Harness::qualified();
    let trace = h.run_until(secs(8));
    // The cone test twice, 4 s apart, then the secondary address.
    let cone: Vec<Duration> = sent(&trace, SERVER, LINK_LOCAL_CONE)
        .iter()
        .map(|(t, _)| *t)
        .collect();
    assert_eq!(cone, [secs(4)]);
    let secondary = sent(&trace, SERVER2, LINK_LOCAL_RESTRICTED);
    assert_eq!(secondary.len(), 1, "{trace:?}");
    assert_eq!(secondary[0].0, secs(8));
    assert_eq!(h.c.nat(), NatBehaviour::Unknown);
    // A non-cone solicitation is answered from the address it went to.
    let rs = secondary[0].1;
    let out = h.udp(from(SERVER), &ra(&rs, MAPPED, TEREDO_PREFIX));
    assert!(events(&out).is_empty());
    assert_eq!(h.c.stats().dropped(DropReason::Spoofed), 1);
    let out = h.udp(from(SERVER2), &ra(&rs, MAPPED, TEREDO_PREFIX));
    assert_eq!(events(&out), [Event::NatObserved(NatBehaviour::Restricted)]);
    assert_eq!(h.c.nat(), NatBehaviour::Restricted);
}

#[test]
fn every_datagram_sent_is_counted() {
    // Solicitations (qualification, then the NAT tests) are UDP sent: the
    // status page counted only data packets, and a qualified client showed
    // udp-tx-packets: 0.
    let mut h = Harness::new();
    let mut sent = Vec::new();
    let first = h.run_until(Duration::ZERO);
    sent.extend(first.iter().flat_map(|(_, o)| o.iter().cloned()));
    let rs = solicitations(&first[0].1)[0];
    let out = h.udp(from(SERVER), &ra(&rs, MAPPED, TEREDO_PREFIX));
    sent.extend(out);
    sent.extend(
        h.run_until(secs(40))
            .into_iter()
            .flat_map(|(_, o)| o.into_iter()),
    );
    let udp: Vec<&Transmit> = sent
        .iter()
        .filter_map(|o| match o {
            Output::Udp(t) => Some(t),
            _ => None,
        })
        .collect();
    assert!(udp.len() >= 3, "{udp:?}");
    let st = h.c.stats();
    assert_eq!(st.udp_tx_packets, udp.len() as u64);
    assert_eq!(
        st.udp_tx_bytes,
        udp.iter().map(|t| t.payload.len() as u64).sum::<u64>()
    );
    assert_eq!(st.udp_rx_packets, 1);
}

#[test]
fn a_server_that_answers_with_something_else_is_said_to() {
    // Not "no answer": what came back is kept for the status page and the
    // log (a UDP service on 3544 that is not Teredo, say).
    let mut h = Harness::new();
    h.run_until(Duration::ZERO);
    h.udp(from(SERVER), b"HTTP/1.1 400 Bad Request\r\n\r\n");
    let c = &h.c.candidates()[0];
    assert!(
        c.problem
            .as_deref()
            .is_some_and(|p| p.contains("not Teredo")),
        "{c:?}"
    );
    assert_eq!(c.answering, None);
}
