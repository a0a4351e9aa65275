//! Simulator scenarios: a server advertising a Teredo prefix the client
//! may not take an address in (its `Prefix` set to 3ffe:831f::, the
//! client allowed 2001::/32 only). The client refuses every such router
//! advertisement (logged once per round, counted as `foreign-prefix`) and
//! treats the server as failing: the retries of RFC 4380 5.2.1, then
//! rounds with backoff, never an address outside its prefix. Every test
//! name contains `sim`.

use crate::{NAT_WAN, SECS, SERVER};
use libteredo::addr::{TeredoAddr, LINK_LOCAL_RESTRICTED, TEREDO_PREFIX};
use libteredo::proto::DropReason;
use libteredo::proto::Event;
use libteredo::proto::ServerConfig;
use libteredo::proto::{ClientState, MAX_BACKOFF, MIN_BACKOFF, RS_ATTEMPTS, RS_TIMEOUT};
use libteredo::sim::*;
use libteredo::wire::icmpv6::msg_type;
use libteredo::wire::ipv6::next_header;
use libteredo::wire::teredo::TeredoPacket;
use std::cell::Cell;
use std::sync::{Mutex, Once};
use std::time::Duration;

/// The prefix of the misconfigured server (the first 32 bits of
/// 3ffe:831f::/32, the example prefix of the C miredo's documentation).
const FOREIGN: u32 = 0x3ffe_831f;

// ----------------------------------------------------------------------
// The engine's log lines, per test thread: only the threads that asked
// (`capture_logs`) are recorded, since the logger serves every test of
// the simulator binary.

struct Capture;

static LINES: Mutex<Vec<(String, String)>> = Mutex::new(Vec::new());

thread_local! {
    static CAPTURING: Cell<bool> = const { Cell::new(false) };
}

impl log::Log for Capture {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        CAPTURING.with(Cell::get)
    }

    fn log(&self, record: &log::Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let thread = std::thread::current().name().unwrap_or("").to_string();
        let line = format!("{} {}", record.level(), record.args());
        LINES
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((thread, line));
    }

    fn flush(&self) {}
}

/// Records the log lines of the calling thread from now on.
fn capture_logs() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        let _ = log::set_logger(&Capture);
        log::set_max_level(log::LevelFilter::Trace);
    });
    CAPTURING.with(|c| c.set(true));
}

/// The log lines this test's thread produced that contain `needle`.
fn my_lines(needle: &str) -> Vec<String> {
    let me = std::thread::current().name().unwrap_or("").to_string();
    LINES
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .filter(|(t, l)| *t == me && l.contains(needle))
        .map(|(_, l)| l.clone())
        .collect()
}

// ----------------------------------------------------------------------

/// A server whose RAs advertise `prefix`, and one client behind a
/// port-restricted NAT allowed the default 2001::/32.
fn world(seed: u64, prefix: u32) -> (World, NodeId, NodeId) {
    let mut w = World::new(seed);
    let mut cfg = ServerConfig::new(ip(SERVER));
    cfg.prefix = prefix;
    let server = w.add_server_with(cfg);
    let (_, lan) = w.add_nat(NatKind::PortRestricted, ip(NAT_WAN), false);
    let client = w.add_client(ip("192.168.1.2"), 40000, Some(lan), ip(SERVER));
    (w, server, client)
}

/// The nonces of the qualification and maintenance solicitations (no cone
/// bit, to the primary server address) the client sent so far, in order.
fn solicitations(w: &World, client: NodeId) -> Vec<[u8; 8]> {
    let Some(sent) = w.sent.get(&client) else {
        return Vec::new();
    };
    sent.iter()
        .filter(|(to, _)| *to.ip() == ip(SERVER))
        .filter_map(|(_, payload)| {
            let pkt = TeredoPacket::parse(payload).ok()?;
            let ip6 = &pkt.ipv6;
            let is_rs = ip6.next_header() == next_header::ICMPV6
                && ip6.payload().first() == Some(&msg_type::ROUTER_SOLICIT)
                && ip6.src_addr() == LINK_LOCAL_RESTRICTED;
            if is_rs {
                pkt.auth.map(|a| a.nonce)
            } else {
                None
            }
        })
        .collect()
}

/// One solicitation round as observed: its nonce, when its first
/// solicitation left, how many left.
#[derive(Debug)]
struct Round {
    nonce: [u8; 8],
    start: Duration,
    sent: usize,
}

/// Runs the world for `d`, noting in `rounds` when each solicitation
/// leaves; whether the client was seen offline.
fn watch_rounds(w: &mut World, client: NodeId, d: Duration, rounds: &mut Vec<Round>) -> bool {
    let mut seen: usize = rounds.iter().map(|r| r.sent).sum();
    let mut offline = false;
    w.run_until_cond(d, |w| {
        let all = solicitations(w, client);
        for nonce in all.iter().skip(seen) {
            match rounds.iter_mut().find(|r| r.nonce == *nonce) {
                Some(r) => r.sent += 1,
                None => rounds.push(Round {
                    nonce: *nonce,
                    start: w.elapsed(),
                    sent: 1,
                }),
            }
        }
        seen = all.len();
        offline |= w.client(client).state() == ClientState::Offline;
        false
    });
    offline
}

fn qualified_events(w: &World, client: NodeId) -> usize {
    w.events(client)
        .iter()
        .filter(|e| matches!(e, Event::Qualified { .. }))
        .count()
}

/// (a) A server that only ever advertises a foreign prefix: the client
/// never qualifies, counts every refused RA, and keeps soliciting, round
/// after round with a growing wait between rounds.
#[test]
fn sim_foreign_prefix_server_never_qualifies_and_rounds_go_on() {
    capture_logs();
    let (mut w, _server, c) = world(61, FOREIGN);
    let mut rounds = Vec::new();
    let offline = watch_rounds(&mut w, c, SECS(30), &mut rounds);
    let drops_30 = w.client(c).stats().dropped(DropReason::ForeignPrefix);
    assert!(
        drops_30 > 0,
        "no RA refused in 30 s\n{}",
        w.trace.join("\n")
    );
    let offline2 = watch_rounds(&mut w, c, SECS(200), &mut rounds);
    let drops = w.client(c).stats().dropped(DropReason::ForeignPrefix);

    assert_eq!(qualified_events(&w, c), 0, "{:?}", w.events(c));
    assert_eq!(w.teredo_addr(c), None);
    assert!(w.client(c).qualification().is_none());
    assert_ne!(w.client(c).state(), ClientState::Qualified);
    assert!(offline || offline2, "never offline between rounds");
    assert!(drops > drops_30, "the counter stopped at {drops_30}");

    // RFC 4380 5.2.1: each round repeats its solicitation N = 3 times,
    // T = 4 s apart; the server answered each (and each was refused).
    let done = &rounds[..rounds.len() - 1];
    assert!(
        rounds.len() >= 5,
        "{} rounds in 230 s: {rounds:?}",
        rounds.len()
    );
    for r in done {
        assert_eq!(r.sent, usize::from(RS_ATTEMPTS), "{rounds:?}");
    }
    let total: usize = rounds.iter().map(|r| r.sent).sum();
    assert!(
        drops as usize >= total - 1 && drops as usize <= total,
        "{drops} refused for {total} solicitations"
    );
    // Between rounds the backoff: at least 10 s after the round's last
    // solicitation timed out, doubling up to 60 s (observed to within the
    // 50 ms steps of the watch).
    let gaps: Vec<Duration> = rounds.windows(2).map(|p| p[1].start - p[0].start).collect();
    let round_time = RS_TIMEOUT * u32::from(RS_ATTEMPTS);
    let step = Duration::from_millis(100);
    for g in &gaps {
        assert!(
            *g + step >= round_time + MIN_BACKOFF && *g <= round_time + MAX_BACKOFF + step,
            "{gaps:?}"
        );
    }
    assert!(gaps.windows(2).all(|p| p[1] >= p[0]), "{gaps:?}");
    assert!(gaps.last() > gaps.first(), "no backoff: {gaps:?}");

    // One log line per round at most, saying which prefix was advertised
    // and which one is allowed.
    let lines = my_lines("refused");
    assert!(!lines.is_empty(), "the refusal is not logged");
    assert!(
        lines.len() <= rounds.len(),
        "{} lines for {} rounds",
        lines.len(),
        rounds.len()
    );
    for l in &lines {
        assert!(
            l.contains("3ffe:831f::/32") && l.contains("2001::/32"),
            "{l}"
        );
    }
}

/// (b) The server's prefix put right later: the client qualifies with an
/// address in 2001::/32 at its next round.
#[test]
fn sim_foreign_prefix_server_fixed_later_client_qualifies() {
    let (mut w, server, c) = world(62, FOREIGN);
    w.run_for(SECS(90));
    assert_eq!(w.teredo_addr(c), None);
    assert!(w.client(c).stats().dropped(DropReason::ForeignPrefix) > 0);
    w.set_server_prefix(server, TEREDO_PREFIX);
    // The next round starts within the longest backoff.
    let addr = w.qualify(c, MAX_BACKOFF + SECS(15));
    let t = TeredoAddr::parse(&addr).expect("an address in 2001::/32");
    assert_eq!(t.prefix, TEREDO_PREFIX);
    assert_eq!(t.server, ip(SERVER));
    assert_eq!(w.client(c).state(), ClientState::Qualified);
    assert_eq!(qualified_events(&w, c), 1);
}

/// (c) A qualified client whose server turns to a foreign prefix: the
/// maintenance RAs are refused, the address stays until the server is
/// lost (like a silent server's), never changes to one in the foreign
/// prefix; once the server is right again, the client qualifies again.
#[test]
fn sim_foreign_prefix_on_qualified_client_server_lost_then_back() {
    let (mut w, server, c) = world(63, TEREDO_PREFIX);
    let addr = w.qualify(c, SECS(10));
    // Past the NAT tests.
    w.run_for(SECS(5));
    let qualified_before = qualified_events(&w, c);
    w.set_server_prefix(server, FOREIGN);
    let switched = w.elapsed();
    let mut other_addr = None;
    let lost = w.run_until_cond(SECS(120), |w| {
        if let Some(a) = w.teredo_addr(c).filter(|a| *a != addr) {
            other_addr.get_or_insert(a);
        }
        w.events(c)
            .iter()
            .any(|e| matches!(e, Event::ServerLost { .. }))
    });
    assert!(lost, "no ServerLost\n{}", w.trace.join("\n"));
    assert_eq!(other_addr, None, "the address changed");
    assert_eq!(
        qualified_events(&w, c),
        qualified_before,
        "{:?}",
        w.events(c)
    );
    assert!(w.events(c).contains(&Event::ServerLost { old: addr }));
    // Lost after a refresh (22.5 to 30 s) and three unanswered
    // (refused) solicitations 4 s apart.
    let lost_after = w.elapsed() - switched;
    assert!(
        lost_after >= SECS(22) && lost_after <= SECS(45),
        "{lost_after:?}"
    );
    assert!(w.client(c).stats().dropped(DropReason::ForeignPrefix) >= u64::from(RS_ATTEMPTS));
    assert_eq!(w.teredo_addr(c), None);
    // Looking for a server again (the list: this one), which refuses too.
    assert_eq!(w.client(c).state(), ClientState::Probing);
    assert!(w.client(c).hunting());
    w.run_for(RS_TIMEOUT * u32::from(RS_ATTEMPTS) + SECS(1));
    assert_eq!(w.client(c).state(), ClientState::Offline);
    let problem = w.client(c).candidates()[0].problem.clone();
    assert!(
        problem
            .as_deref()
            .is_some_and(|p| p.contains("Teredo prefix")),
        "{problem:?}"
    );

    // Still foreign: no address for another few rounds.
    w.run_for(SECS(60));
    assert_eq!(w.teredo_addr(c), None);
    assert_eq!(qualified_events(&w, c), qualified_before);

    w.set_server_prefix(server, TEREDO_PREFIX);
    let again = w.qualify(c, MAX_BACKOFF + SECS(15));
    let t = TeredoAddr::parse(&again).expect("an address in 2001::/32");
    assert_eq!(t.prefix, TEREDO_PREFIX);
    // The same NAT mapping: the address is rebuilt on it.
    assert_eq!(t.mapped(), TeredoAddr::parse(&addr).unwrap().mapped());
}
