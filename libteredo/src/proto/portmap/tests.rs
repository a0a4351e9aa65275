//! Tests of the port mapper, against answers made as gateways make them.

use super::messages::{PCP_MAP, PCP_RESPONSE, PCP_VERSION, UDP};
use super::*;

const GW: Ipv4Addr = Ipv4Addr::new(192, 168, 1, 1);
const ME: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(192, 168, 1, 2), 3545);
const EXT: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 7);
const NONCE: [u8; 12] = [9; 12];

fn mapper(mode: Mode, t0: Instant) -> PortMapper {
    PortMapper::new(
        Config {
            mode,
            gateway: GW,
            internal: ME,
            lifetime: 7200,
        },
        NONCE,
        t0,
    )
}

fn gw() -> SocketAddrV4 {
    SocketAddrV4::new(GW, PORT)
}

/// A PCP MAP answer to `req` (our request), as a gateway builds it.
fn pcp_answer(req: &[u8], result: u8, lifetime: u32, epoch: u32, port: u16) -> Vec<u8> {
    let mut v = vec![PCP_VERSION, PCP_RESPONSE | PCP_MAP, 0, result];
    v.extend_from_slice(&lifetime.to_be_bytes());
    v.extend_from_slice(&epoch.to_be_bytes());
    v.extend_from_slice(&[0; 12]);
    v.extend_from_slice(&req[24..24 + 12]); // nonce
    v.extend_from_slice(&[UDP, 0, 0, 0]);
    v.extend_from_slice(&req[24 + 16..24 + 18]); // internal port
    v.extend_from_slice(&port.to_be_bytes());
    v.extend_from_slice(&EXT.to_ipv6_mapped().octets());
    v
}

fn natpmp_external(epoch: u32) -> Vec<u8> {
    let mut v = vec![0, 128, 0, 0];
    v.extend_from_slice(&epoch.to_be_bytes());
    v.extend_from_slice(&EXT.octets());
    v
}

fn natpmp_map(result: u16, epoch: u32, port: u16, lifetime: u32) -> Vec<u8> {
    let mut v = vec![0, 129];
    v.extend_from_slice(&result.to_be_bytes());
    v.extend_from_slice(&epoch.to_be_bytes());
    v.extend_from_slice(&ME.port().to_be_bytes());
    v.extend_from_slice(&port.to_be_bytes());
    v.extend_from_slice(&lifetime.to_be_bytes());
    v
}

#[test]
fn pcp_request_layout() {
    let t0 = Instant::now();
    let mut m = mapper(Mode::Auto, t0);
    let (mut out, mut ev) = (Vec::new(), Vec::new());
    m.handle_timeout(t0, &mut out, &mut ev);
    assert_eq!(out.len(), 1);
    let r = &out[0];
    assert_eq!(r.to, gw());
    let p = &r.payload;
    assert_eq!(p.len(), 60);
    assert_eq!(&p[..4], &[2, 1, 0, 0]);
    assert_eq!(&p[4..8], &7200u32.to_be_bytes());
    assert_eq!(&p[8..24], &ME.ip().to_ipv6_mapped().octets());
    assert_eq!(&p[24..36], &NONCE);
    assert_eq!(p[36], 17);
    assert_eq!(&p[40..42], &3545u16.to_be_bytes());
    assert_eq!(&p[42..44], &3545u16.to_be_bytes());
    assert_eq!(&p[44..60], &Ipv4Addr::UNSPECIFIED.to_ipv6_mapped().octets());
}

#[test]
fn pcp_maps_renews_at_half_and_deletes() {
    let t0 = Instant::now();
    let mut m = mapper(Mode::Auto, t0);
    let (mut out, mut ev) = (Vec::new(), Vec::new());
    m.handle_timeout(t0, &mut out, &mut ev);
    let req = out.pop().unwrap().payload;
    let t1 = t0 + Duration::from_millis(20);
    m.handle_udp(
        t1,
        gw(),
        &pcp_answer(&req, 0, 600, 1000, 40000),
        &mut out,
        &mut ev,
    );
    let ext = SocketAddrV4::new(EXT, 40000);
    assert_eq!(
        ev,
        vec![Event::Mapped {
            protocol: Protocol::Pcp,
            external: ext,
            lifetime: Duration::from_secs(600)
        }]
    );
    assert_eq!(m.poll_timeout(), Some(t1 + Duration::from_secs(300)));
    ev.clear();
    // The renewal suggests what we hold; the same answer is no event.
    let t2 = t1 + Duration::from_secs(300);
    m.handle_timeout(t2, &mut out, &mut ev);
    let renew = out.pop().unwrap().payload;
    assert_eq!(&renew[42..44], &40000u16.to_be_bytes());
    assert_eq!(&renew[44..60], &EXT.to_ipv6_mapped().octets());
    m.handle_udp(
        t2,
        gw(),
        &pcp_answer(&renew, 0, 600, 1300, 40000),
        &mut out,
        &mut ev,
    );
    assert!(ev.is_empty(), "{ev:?}");
    assert_eq!(m.mapping().unwrap().external, ext);
    // Shutdown: lifetime 0, and nothing after it.
    m.stop(t2, &mut out);
    let del = out.pop().unwrap().payload;
    assert_eq!(&del[4..8], &[0, 0, 0, 0]);
    assert_eq!(&del[42..44], &40000u16.to_be_bytes());
    assert_eq!(&del[44..60], &EXT.to_ipv6_mapped().octets());
    m.handle_udp(
        t2,
        gw(),
        &pcp_answer(&del, 0, 0, 1300, 40000),
        &mut out,
        &mut ev,
    );
    assert!(ev.is_empty());
    assert_eq!(m.poll_timeout(), None);
    assert!(m.mapping().is_none());
}

#[test]
fn auto_falls_back_to_natpmp_on_unsupported_version() {
    let t0 = Instant::now();
    let mut m = mapper(Mode::Auto, t0);
    let (mut out, mut ev) = (Vec::new(), Vec::new());
    m.handle_timeout(t0, &mut out, &mut ev);
    out.clear();
    // What a NAT-PMP gateway answers to version 2.
    let mut unsupported = vec![0, 128 + 1, 0, 1];
    unsupported.extend_from_slice(&5u32.to_be_bytes());
    m.handle_udp(t0, gw(), &unsupported, &mut out, &mut ev);
    assert_eq!(out.pop().unwrap().payload, vec![0, 0]);
    m.handle_udp(t0, gw(), &natpmp_external(5), &mut out, &mut ev);
    let map = out.pop().unwrap().payload;
    assert_eq!(map.len(), 12);
    assert_eq!(&map[..4], &[0, 1, 0, 0]);
    assert_eq!(&map[4..6], &3545u16.to_be_bytes());
    assert_eq!(&map[8..12], &7200u32.to_be_bytes());
    m.handle_udp(t0, gw(), &natpmp_map(0, 5, 41000, 3600), &mut out, &mut ev);
    assert_eq!(
        ev,
        vec![Event::Mapped {
            protocol: Protocol::NatPmp,
            external: SocketAddrV4::new(EXT, 41000),
            lifetime: Duration::from_secs(3600)
        }]
    );
    assert_eq!(m.protocol(), Some(Protocol::NatPmp));
}

#[test]
fn silence_then_natpmp_then_unavailable_and_retry_later() {
    let t0 = Instant::now();
    let mut m = mapper(Mode::Auto, t0);
    let (mut out, mut ev) = (Vec::new(), Vec::new());
    let mut now = t0;
    for _ in 0..100 {
        m.handle_timeout(now, &mut out, &mut ev);
        match m.poll_timeout() {
            Some(t) if t - t0 < RETRY_LATER => now = t,
            _ => break,
        }
    }
    // PCP and NAT-PMP, MAX_TRIES each, 250 ms doubling.
    assert_eq!(out.len(), 2 * usize::from(MAX_TRIES));
    assert_eq!(out[0].payload.len(), 60);
    assert_eq!(out[usize::from(MAX_TRIES)].payload, vec![0, 0]);
    assert!(matches!(ev[..], [Event::Unavailable { .. }]), "{ev:?}");
    assert!(m.poll_timeout().unwrap() >= now + RETRY_LATER - Duration::from_secs(1));
    // 250 ms doubling: 0.25 + 0.5 + ... + 8 s for each protocol.
    assert!(now - t0 < Duration::from_secs(32), "{:?}", now - t0);
}

#[test]
fn falling_back_early_to_natpmp() {
    let t0 = Instant::now();
    let (mut out, mut ev) = (Vec::new(), Vec::new());
    // Auto, PCP unanswered: NAT-PMP at once, from its first request.
    let mut m = mapper(Mode::Auto, t0);
    m.handle_timeout(t0, &mut out, &mut ev);
    let t1 = t0 + Duration::from_secs(2);
    m.handle_timeout(t1, &mut out, &mut ev);
    out.clear();
    assert!(m.fall_back(t1, &mut out));
    assert_eq!(out.pop().map(|r| r.payload), Some(vec![0, 0]));
    assert_eq!(m.poll_timeout(), Some(t1 + FIRST_WAIT));
    // Only once: NAT-PMP is being asked now.
    assert!(!m.fall_back(t1, &mut out));
    assert!(out.is_empty());
    // Then the exchange goes on as ever.
    m.handle_udp(t1, gw(), &natpmp_external(5), &mut out, &mut ev);
    assert_eq!(out.pop().map(|r| r.payload.len()), Some(12));
    m.handle_udp(t1, gw(), &natpmp_map(0, 5, 41000, 3600), &mut out, &mut ev);
    assert_eq!(m.protocol(), Some(Protocol::NatPmp));
    assert!(!m.fall_back(t1, &mut out));
    assert!(matches!(ev[..], [Event::Mapped { .. }]), "{ev:?}");

    // Not in one protocol only, nor before the first request, nor once
    // the gateway answered in PCP.
    for mode in [Mode::Pcp, Mode::NatPmp, Mode::Off] {
        let mut m = mapper(mode, t0);
        m.handle_timeout(t0, &mut out, &mut ev);
        out.clear();
        assert!(!m.fall_back(t0, &mut out), "{mode:?}");
        assert!(out.is_empty());
    }
    let mut m = mapper(Mode::Auto, t0);
    assert!(!m.fall_back(t0, &mut out), "nothing asked yet");
    m.handle_timeout(t0, &mut out, &mut ev);
    let req = out.pop().unwrap().payload;
    m.handle_udp(
        t0,
        gw(),
        &pcp_answer(&req, 0, 7200, 1, 41000),
        &mut out,
        &mut ev,
    );
    assert_eq!(m.protocol(), Some(Protocol::Pcp));
    assert!(!m.fall_back(t0, &mut out));
}

#[test]
fn strict_about_what_it_takes() {
    let t0 = Instant::now();
    let mut m = mapper(Mode::Pcp, t0);
    let (mut out, mut ev) = (Vec::new(), Vec::new());
    m.handle_timeout(t0, &mut out, &mut ev);
    let req = out.pop().unwrap().payload;
    let good = pcp_answer(&req, 0, 600, 1, 40000);
    // Another host of the LAN, another port, another nonce, another
    // internal port, a request instead of an answer, a truncation, an
    // oversize datagram, garbage: all ignored.
    let other = SocketAddrV4::new(Ipv4Addr::new(192, 168, 1, 66), PORT);
    m.handle_udp(t0, other, &good, &mut out, &mut ev);
    m.handle_udp(t0, SocketAddrV4::new(GW, 5350), &good, &mut out, &mut ev);
    let mut bad = good.clone();
    bad[24] ^= 1;
    m.handle_udp(t0, gw(), &bad, &mut out, &mut ev);
    let mut bad = good.clone();
    bad[41] ^= 1;
    m.handle_udp(t0, gw(), &bad, &mut out, &mut ev);
    m.handle_udp(t0, gw(), &req, &mut out, &mut ev);
    m.handle_udp(t0, gw(), &good[..59], &mut out, &mut ev);
    m.handle_udp(t0, gw(), &[0u8; 2000], &mut out, &mut ev);
    m.handle_udp(t0, gw(), &[0xff; 7], &mut out, &mut ev);
    m.handle_udp(t0, gw(), &[], &mut out, &mut ev);
    assert!(ev.is_empty() && out.is_empty());
    assert_eq!(m.counters.ignored, 9);
    m.handle_udp(t0, gw(), &good, &mut out, &mut ev);
    assert_eq!(ev.len(), 1);
}

#[test]
fn refusal_and_gateway_restart() {
    let t0 = Instant::now();
    let mut m = mapper(Mode::NatPmp, t0);
    let (mut out, mut ev) = (Vec::new(), Vec::new());
    m.handle_timeout(t0, &mut out, &mut ev);
    m.handle_udp(t0, gw(), &natpmp_external(100), &mut out, &mut ev);
    m.handle_udp(t0, gw(), &natpmp_map(0, 100, 41000, 600), &mut out, &mut ev);
    assert_eq!(ev.len(), 1);
    ev.clear();
    // At the renewal, the gateway's epoch is back near 0: it restarted
    // and lost the mapping; it maps again (another port).
    let t1 = t0 + Duration::from_secs(300);
    m.handle_timeout(t1, &mut out, &mut ev);
    m.handle_udp(t1, gw(), &natpmp_map(0, 3, 42000, 600), &mut out, &mut ev);
    assert!(matches!(ev[0], Event::Lost { .. }), "{ev:?}");
    assert!(matches!(ev[1], Event::Mapped { external, .. } if external.port() == 42000));
    ev.clear();
    // Then it refuses: the mapping is lost, the gateway unavailable.
    let t2 = t1 + Duration::from_secs(300);
    m.handle_timeout(t2, &mut out, &mut ev);
    m.handle_udp(t2, gw(), &natpmp_map(2, 303, 0, 0), &mut out, &mut ev);
    assert!(
        matches!(ev[..], [Event::Lost { .. }, Event::Unavailable { .. }]),
        "{ev:?}"
    );
    assert!(m.mapping().is_none());
}

/// The gateway answers `req` (a PCP MAP request of `m`'s) with
/// `lifetime` and `port`, epoch 7.
fn pcp_reply(
    m: &mut PortMapper,
    t: Instant,
    req: &[u8],
    lifetime: u32,
    port: u16,
) -> (Vec<Request>, Vec<Event>) {
    let (mut out, mut ev) = (Vec::new(), Vec::new());
    m.handle_udp(
        t,
        gw(),
        &pcp_answer(req, 0, lifetime, 7, port),
        &mut out,
        &mut ev,
    );
    (out, ev)
}

/// PCP: a mapping on port 40000, then the client wants 50000 (the port
/// its server sees): deleted, asked for again with 50000 suggested.
fn pcp_mapped_then_wanting(t0: Instant, wanted: u16) -> (PortMapper, Vec<Request>) {
    let mut m = mapper(Mode::Pcp, t0);
    let (mut out, mut ev) = (Vec::new(), Vec::new());
    m.handle_timeout(t0, &mut out, &mut ev);
    let req = out.pop().unwrap().payload;
    pcp_reply(&mut m, t0, &req, 600, 40000);
    assert_eq!(m.mapping().unwrap().external.port(), 40000);
    m.want(Some(SocketAddrV4::new(EXT, wanted)), t0, &mut out);
    (m, out)
}

#[test]
fn a_mapping_on_another_port_than_wanted_is_remapped() {
    let t0 = Instant::now();
    let (mut m, mut out) = pcp_mapped_then_wanting(t0, 50000);
    assert_eq!(out.len(), 1, "{out:?}");
    let del = out.pop().unwrap().payload;
    assert_eq!(&del[4..8], &[0, 0, 0, 0], "a deletion first");
    assert_eq!(&del[42..44], &40000u16.to_be_bytes());
    assert!(m.mapping().is_none());
    let (out, _) = pcp_reply(&mut m, t0, &del, 0, 40000);
    assert_eq!(out.len(), 1, "then the request for the wanted port");
    let map = out[0].payload.clone();
    assert_eq!(&map[4..8], &7200u32.to_be_bytes());
    assert_eq!(&map[42..44], &50000u16.to_be_bytes());
    assert_eq!(&map[44..60], &EXT.to_ipv6_mapped().octets());
    // A repeated answer to the deletion is not taken for this one.
    let (out, ev) = pcp_reply(&mut m, t0, &del, 0, 40000);
    assert!(ev.is_empty() && out.is_empty(), "{ev:?}");
    assert_eq!(m.counters.ignored, 1);
    let (out, mut ev) = pcp_reply(&mut m, t0, &map, 600, 50000);
    assert_eq!(
        ev,
        vec![Event::Mapped {
            protocol: Protocol::Pcp,
            external: SocketAddrV4::new(EXT, 50000),
            lifetime: Duration::from_secs(600)
        }]
    );
    assert!(out.is_empty());
    // The renewal suggests the port held.
    let t1 = t0 + Duration::from_secs(300);
    let mut out = Vec::new();
    m.handle_timeout(t1, &mut out, &mut ev);
    assert_eq!(&out.pop().unwrap().payload[42..44], &50000u16.to_be_bytes());
}

#[test]
fn a_wanted_port_the_gateway_does_not_give_is_not_asked_again() {
    let t0 = Instant::now();
    let (mut m, out) = pcp_mapped_then_wanting(t0, 50000);
    let (out, _) = pcp_reply(&mut m, t0, &out[0].payload, 0, 40000);
    // Port 50000 is taken: the gateway gives 40001.
    let (mut out, ev) = pcp_reply(&mut m, t0, &out[0].payload, 600, 40001);
    assert!(matches!(ev[..], [Event::Mapped { external, .. }] if external.port() == 40001));
    assert!(out.is_empty(), "no loop: {out:?}");
    m.want(None, t0, &mut out);
    m.want(Some(SocketAddrV4::new(EXT, 50000)), t0, &mut out);
    assert!(out.is_empty(), "50000 was refused: {out:?}");
    // Another wanted port is tried.
    m.want(Some(SocketAddrV4::new(EXT, 50002)), t0, &mut out);
    assert_eq!(out.len(), 1);
    assert_eq!(&out[0].payload[4..8], &[0, 0, 0, 0]);
}

#[test]
fn no_remapping_for_another_external_address_or_the_same_port() {
    let t0 = Instant::now();
    let (mut m, mut out) = pcp_mapped_then_wanting(t0, 40000);
    assert!(out.is_empty(), "the mapping is the wanted endpoint");
    // The server sees another address: the gateway is not the
    // outermost NAT, its ports are not the server's.
    m.want(
        Some(SocketAddrV4::new(Ipv4Addr::new(198, 51, 100, 1), 50000)),
        t0,
        &mut out,
    );
    assert!(out.is_empty(), "{out:?}");
    assert_eq!(m.mapping().unwrap().external.port(), 40000);
}

#[test]
fn natpmp_wanted_before_the_first_answer_then_remapped() {
    let t0 = Instant::now();
    let mut m = mapper(Mode::NatPmp, t0);
    let (mut out, mut ev) = (Vec::new(), Vec::new());
    m.handle_timeout(t0, &mut out, &mut ev);
    m.handle_udp(t0, gw(), &natpmp_external(100), &mut out, &mut ev);
    let first = out.pop().unwrap().payload;
    assert_eq!(&first[6..8], &3545u16.to_be_bytes());
    out.clear();
    // Wanted while that request is in flight: nothing sent yet.
    m.want(Some(SocketAddrV4::new(EXT, 50000)), t0, &mut out);
    assert!(out.is_empty());
    m.handle_udp(t0, gw(), &natpmp_map(0, 100, 3545, 600), &mut out, &mut ev);
    assert_eq!(ev.len(), 1);
    let del = out.pop().unwrap().payload;
    assert_eq!(&del[6..12], &[0, 0, 0, 0, 0, 0], "port 0, lifetime 0");
    // The deletion's answer (NAT-PMP gives port 0), then the request.
    m.handle_udp(t0, gw(), &natpmp_map(0, 100, 0, 0), &mut out, &mut ev);
    let map = out.pop().unwrap().payload;
    assert_eq!(&map[6..8], &50000u16.to_be_bytes());
    m.handle_udp(t0, gw(), &natpmp_map(0, 100, 50000, 600), &mut out, &mut ev);
    assert!(matches!(ev[..], [_, Event::Mapped { external, .. }] if external.port() == 50000));
    // Shutdown deletes the new one.
    m.stop(t0, &mut out);
    assert_eq!(out.len(), 1);
}

#[test]
fn an_unanswered_deletion_still_leads_to_the_request() {
    let t0 = Instant::now();
    let (mut m, mut out) = pcp_mapped_then_wanting(t0, 50000);
    let mut ev = Vec::new();
    out.clear();
    let mut now = t0;
    for _ in 0..20 {
        let Some(t) = m.poll_timeout() else { break };
        now = t;
        m.handle_timeout(now, &mut out, &mut ev);
        if out.last().is_some_and(|r| r.payload[4..8] != [0, 0, 0, 0]) {
            break;
        }
    }
    let last = out.last().unwrap().payload.clone();
    assert_eq!(&last[42..44], &50000u16.to_be_bytes(), "{out:?}");
    assert!(now - t0 < Duration::from_secs(20));
}

#[test]
fn off_sends_nothing() {
    let t0 = Instant::now();
    let mut m = mapper(Mode::Off, t0);
    assert_eq!(m.poll_timeout(), None);
    let (mut out, mut ev) = (Vec::new(), Vec::new());
    m.handle_timeout(t0 + Duration::from_secs(5), &mut out, &mut ev);
    assert!(out.is_empty() && ev.is_empty());
}

#[test]
fn offers_are_read_strictly() {
    let a = pcp_announce(Ipv4Addr::new(192, 168, 1, 2));
    assert_eq!(a.len(), 24);
    assert_eq!(&a[..4], &[2, 0, 0, 0]);
    assert_eq!(natpmp_external_request(), vec![0, 0]);
    let mut pcp = vec![2, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0];
    pcp.resize(24, 0);
    assert_eq!(parse_offer(&pcp), Some(Offer::Pcp { epoch: 256 }));
    pcp[3] = 1;
    assert!(matches!(parse_offer(&pcp), Some(Offer::NotPcp(_))));
    pcp.push(0);
    assert_eq!(parse_offer(&pcp), None, "not a multiple of 4");
    let nat = [0, 128, 0, 0, 0, 0, 0, 9, 11, 0, 1, 1];
    assert_eq!(
        parse_offer(&nat),
        Some(Offer::NatPmp {
            external: Ipv4Addr::new(11, 0, 1, 1),
            epoch: 9
        })
    );
    assert_eq!(parse_offer(&nat[..10]), None, "truncated");
    let unsupported = [0, 128, 0, 1, 0, 0, 0, 9];
    assert!(matches!(parse_offer(&unsupported), Some(Offer::NotPcp(_))));
    assert_eq!(parse_offer(&[0, 0]), None, "a request");
    assert_eq!(parse_offer(&[0xff; 2000]), None);
    assert_eq!(parse_offer(b"hello"), None);
}
