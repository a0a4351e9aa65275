//! The survey against libteredo's server engine through model NATs, on a
//! virtual clock: no socket, no sleep.

use super::*;
use libteredo::proto::{self as proto, SeededRandom, Server, ServerConfig};
use std::collections::{BTreeMap, HashSet};

const OURS: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(198, 18, 0, 2), 40000);
const WAN: Ipv4Addr = Ipv4Addr::new(198, 18, 3, 1);
const S1: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 1);
const S2: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 3);
const ONE_WAY: Duration = Duration::from_millis(5);

#[derive(Clone, Copy, PartialEq, Eq)]
enum NatModel {
    /// We are reachable as [`OURS`].
    None,
    /// Everything to [`WAN`]:50000 comes in.
    FullCone,
    /// [`WAN`]:50000, from endpoints we sent to only.
    PortRestricted,
    /// A new port for each destination, from endpoints we sent to only.
    Symmetric,
    /// Like Linux masquerade: [`WAN`]:50000 from endpoints we sent to only,
    /// but an endpoint whose unsolicited datagram was refused keeps a
    /// connection-tracking entry, so our first datagram to it gets
    /// another port.
    Linux,
}

/// A server of the model network, and what it gets wrong.
struct Host {
    engine: Server,
    /// Drops the first `n` solicitations it gets.
    lose_first: u32,
    /// Answers cone-bit solicitations from the address asked.
    cone_from_same: bool,
    /// Addresses of it that are silent.
    silent: Vec<Ipv4Addr>,
}

struct Net {
    nat: NatModel,
    hosts: Vec<Host>,
    /// Endpoints we sent to (the NAT's filter), mappings by destination.
    opened: HashSet<SocketAddrV4>,
    mappings: BTreeMap<SocketAddrV4, u16>,
    /// Endpoints whose unsolicited datagrams the NAT refused.
    refused: HashSet<SocketAddrV4>,
    /// Datagrams on their way: (arrival, from, to, payload).
    flight: Vec<(Instant, SocketAddrV4, SocketAddrV4, Vec<u8>)>,
    /// Extra datagrams a host sends us, as (from, payload), at the start.
    garbage: Vec<(SocketAddrV4, Vec<u8>)>,
    sent: Vec<(Instant, SocketAddrV4, Purpose)>,
    progress: Vec<String>,
}

fn host(primary: Ipv4Addr) -> Host {
    Host {
        engine: Server::new(ServerConfig::new(primary)),
        lose_first: 0,
        cone_from_same: false,
        silent: Vec::new(),
    }
}

fn target(primary: Ipv4Addr) -> Target {
    Target {
        primary,
        secondary: Ipv4Addr::from(u32::from(primary) + 1),
        local: Some(OURS),
    }
}

impl Net {
    fn new(nat: NatModel, hosts: Vec<Host>) -> Self {
        Net {
            nat,
            hosts,
            opened: HashSet::new(),
            mappings: BTreeMap::new(),
            refused: HashSet::new(),
            flight: Vec::new(),
            garbage: Vec::new(),
            sent: Vec::new(),
            progress: Vec::new(),
        }
    }

    /// Our endpoint as `to` sees it.
    fn mapped_for(&mut self, to: SocketAddrV4) -> SocketAddrV4 {
        match self.nat {
            NatModel::None => OURS,
            NatModel::FullCone | NatModel::PortRestricted => SocketAddrV4::new(WAN, 50000),
            NatModel::Symmetric => {
                let next = 50000 + self.mappings.len() as u16 * 7;
                SocketAddrV4::new(WAN, *self.mappings.entry(to).or_insert(next))
            }
            NatModel::Linux => {
                let port = if self.refused.contains(&to) {
                    51000 + self.mappings.len() as u16
                } else {
                    50000
                };
                SocketAddrV4::new(WAN, *self.mappings.entry(to).or_insert(port))
            }
        }
    }

    /// Whether the NAT lets `from` in to `to` (one of our mappings).
    fn lets_in(&mut self, from: SocketAddrV4, to: SocketAddrV4) -> bool {
        match self.nat {
            NatModel::None | NatModel::FullCone => true,
            NatModel::PortRestricted => self.opened.contains(&from),
            NatModel::Symmetric => self.mappings.get(&from) == Some(&to.port()),
            NatModel::Linux => {
                let ok = self.mappings.get(&from) == Some(&to.port());
                if !ok && !self.mappings.contains_key(&from) {
                    self.refused.insert(from);
                }
                ok
            }
        }
    }

    fn deliver_out(&mut self, now: Instant, to: SocketAddrV4, payload: Vec<u8>) {
        self.opened.insert(to);
        let from = self.mapped_for(to);
        let Some(h) = self
            .hosts
            .iter_mut()
            .find(|h| [h.engine.config().primary, h.engine.config().secondary].contains(to.ip()))
        else {
            return; // Nobody there.
        };
        if h.silent.contains(to.ip()) {
            return;
        }
        if h.lose_first > 0 {
            h.lose_first -= 1;
            return;
        }
        let mut out = Vec::new();
        h.engine.handle_udp(now, from, to, &payload, &mut out);
        let (primary, cone_from_same) = (h.engine.config().primary, h.cone_from_same);
        for o in out {
            if let proto::Output::Udp(t) = o {
                let mut src = t.from.unwrap_or(SocketAddrV4::new(primary, TEREDO_PORT));
                if cone_from_same {
                    src = to;
                }
                self.flight.push((now + ONE_WAY, src, t.to, t.payload));
            }
        }
    }

    /// Runs the survey to its end; returns the outcomes and when it ended.
    fn run(&mut self, targets: &[Target], timeout: Duration) -> (Vec<Outcome>, Duration) {
        let start = Instant::now();
        let mut s = Survey::new(targets, start, timeout, Box::new(SeededRandom::new(7)));
        let mut out = Vec::new();
        let mut now = start;
        for (from, payload) in std::mem::take(&mut self.garbage) {
            self.flight.push((start + ONE_WAY, from, OURS, payload));
        }
        s.handle_timeout(now, &mut out);
        for _ in 0..10_000 {
            for o in out.drain(..) {
                match o {
                    Output::Send {
                        to,
                        payload,
                        purpose,
                        ..
                    } => {
                        self.sent.push((now, to, purpose));
                        self.flight.push((now + ONE_WAY, OURS, to, payload));
                    }
                    Output::Progress(line) => self.progress.push(line),
                }
            }
            if s.is_done(now) {
                return (s.outcomes(now), now - start);
            }
            let next_flight = self.flight.iter().map(|f| f.0).min();
            let next_timer = s.poll_timeout();
            now = match (next_flight, next_timer) {
                (Some(a), Some(b)) => a.min(b),
                (a, b) => a.or(b).expect("something to wait for"),
            };
            let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.flight)
                .into_iter()
                .partition(|f| f.0 <= now);
            self.flight = later;
            for (_, from, to, payload) in due {
                if from == OURS {
                    self.deliver_out(now, to, payload);
                } else if to == OURS || self.lets_in(from, to) {
                    // (Garbage goes straight to us.)
                    s.handle_udp(now, from, &payload, &mut out);
                }
            }
            if s.poll_timeout().is_some_and(|t| t <= now) {
                s.handle_timeout(now, &mut out);
            }
        }
        panic!("the survey did not end");
    }
}

const TIMEOUT: Duration = Duration::from_secs(12);

#[test]
fn no_nat_good_server() {
    let mut net = Net::new(NatModel::None, vec![host(S1)]);
    let (o, took) = net.run(&[target(S1)], TIMEOUT);
    let o = &o[0];
    assert!(o.answered, "{o:?}");
    assert_eq!(o.rtt, Some(2 * ONE_WAY));
    assert_eq!(o.mapped, Some(OURS));
    assert_eq!(o.secondary_answered, Some(true));
    assert_eq!(o.nat, Some(Nat::None));
    assert_eq!(o.mtu, Some(1280));
    assert_eq!(o.prefix.map(|p| p.1), Some(64));
    assert!(o.problems.is_empty(), "{:?}", o.problems);
    // The cone answer came at once; the secondary test right after it.
    assert!(took < Duration::from_millis(100), "{took:?}");
}

#[test]
fn full_cone_nat() {
    let mut net = Net::new(NatModel::FullCone, vec![host(S1)]);
    let (o, _) = net.run(&[target(S1)], TIMEOUT);
    assert_eq!(o[0].nat, Some(Nat::Cone));
    assert_eq!(o[0].mapped, Some(SocketAddrV4::new(WAN, 50000)));
}

#[test]
fn port_restricted_nat_and_the_order_of_the_tests() {
    let mut net = Net::new(NatModel::PortRestricted, vec![host(S1)]);
    let (o, took) = net.run(&[target(S1)], TIMEOUT);
    assert_eq!(o[0].nat, Some(Nat::Restricted), "{:?}", net.progress);
    assert_eq!(o[0].secondary_answered, Some(true));
    // The cone test waits its grace before the secondary address is
    // solicited: nothing went to it earlier.
    let first_to_secondary = net
        .sent
        .iter()
        .find(|(_, to, _)| *to.ip() == target(S1).secondary)
        .map(|(t, _, p)| (*t, *p))
        .expect("the secondary address was solicited");
    assert_eq!(first_to_secondary.1, Purpose::Secondary);
    let first = net.sent[0].0;
    assert!(first_to_secondary.0 >= first + CONE_GRACE);
    assert!(took < CONE_GRACE + Duration::from_millis(100), "{took:?}");
}

#[test]
fn symmetric_nat_through_one_server() {
    // One server cannot tell it from a Linux NAT in bounded time (see
    // linux_nat_through_one_server_cannot_tell); two can (see
    // linux_nat_through_two_servers_is_restricted).
    let mut net = Net::new(NatModel::Symmetric, vec![host(S1)]);
    let (o, _) = net.run(&[target(S1)], TIMEOUT);
    assert_ne!(o[0].secondary_mapped, o[0].mapped);
    assert_eq!(o[0].nat, Some(Nat::RestrictedOrSymmetric));
}

#[test]
fn silent_address_at_the_rfcs_pace() {
    let mut net = Net::new(NatModel::None, vec![]);
    let (o, took) = net.run(&[target(S1)], TIMEOUT);
    let o = &o[0];
    assert!(!o.answered);
    assert_eq!(
        (o.rtt, o.mapped, o.nat, o.secondary_answered),
        (None, None, None, None)
    );
    let plain: Vec<Instant> = net
        .sent
        .iter()
        .filter(|(_, _, p)| *p == Purpose::Qualification)
        .map(|(t, _, _)| *t)
        .collect();
    assert_eq!(plain.len(), usize::from(RS_ATTEMPTS));
    assert_eq!(plain[1] - plain[0], RS_TIMEOUT);
    assert_eq!(plain[2] - plain[1], RS_TIMEOUT);
    // The cone test rides with each; nothing goes to the secondary.
    assert_eq!(net.sent.len(), 2 * usize::from(RS_ATTEMPTS));
    assert_eq!(took, RS_TIMEOUT * 3);
    assert!(net.progress.iter().any(|l| l.contains("no answer after 3")));
}

#[test]
fn shorter_timeout_ends_sooner() {
    let mut net = Net::new(NatModel::None, vec![]);
    let (o, took) = net.run(&[target(S1)], Duration::from_secs(5));
    assert!(!o[0].answered);
    assert_eq!(took, Duration::from_secs(5));
    assert_eq!(net.sent.len(), 4, "two rounds of two solicitations");
}

#[test]
fn rtt_is_the_answered_attempts() {
    let mut h = host(S1);
    h.lose_first = 2; // The first round's plain and cone solicitations.
    let mut net = Net::new(NatModel::None, vec![h]);
    let (o, _) = net.run(&[target(S1)], TIMEOUT);
    assert!(o[0].answered);
    assert_eq!(
        o[0].rtt,
        Some(2 * ONE_WAY),
        "not counted from the first attempt"
    );
}

#[test]
fn silent_secondary() {
    let mut h = host(S1);
    h.silent.push(target(S1).secondary);
    let mut net = Net::new(NatModel::PortRestricted, vec![h]);
    let (o, took) = net.run(&[target(S1)], Duration::from_secs(30));
    assert!(o[0].answered);
    assert_eq!(o[0].secondary_answered, Some(false));
    assert_eq!(o[0].nat, Some(Nat::Unknown));
    assert_eq!(took, CONE_GRACE + 2 * ONE_WAY + RS_TIMEOUT * 3);
    // Cut short by the deadline after one full wait: still "no".
    let mut h = host(S1);
    h.silent.push(target(S1).secondary);
    let mut net = Net::new(NatModel::PortRestricted, vec![h]);
    let (o, _) = net.run(&[target(S1)], Duration::from_secs(6));
    assert_eq!(o[0].secondary_answered, Some(false));
    // Before a full wait: not known.
    let mut h = host(S1);
    h.silent.push(target(S1).secondary);
    let mut net = Net::new(NatModel::PortRestricted, vec![h]);
    let (o, _) = net.run(&[target(S1)], Duration::from_secs(3));
    assert_eq!(o[0].secondary_answered, None);
}

#[test]
fn two_servers_and_a_silent_address_at_once() {
    let silent = Ipv4Addr::new(198, 18, 1, 9);
    let mut net = Net::new(NatModel::PortRestricted, vec![host(S1), host(S2)]);
    let targets = [target(S1), target(S2), target(silent)];
    let (o, took) = net.run(&targets, TIMEOUT);
    assert!(o[0].answered && o[1].answered && !o[2].answered);
    assert_eq!(o[0].nat, Some(Nat::Restricted));
    assert_eq!(o[1].nat, Some(Nat::Restricted));
    assert_eq!(took, TIMEOUT, "the silent one keeps it to the end");
}

#[test]
fn a_secondary_probed_as_a_primary_spoils_the_cone_test() {
    // 198.18.1.2 is both S1's secondary and a target of its own.
    let mut net = Net::new(NatModel::PortRestricted, vec![host(S1)]);
    let targets = [target(S1), target(Ipv4Addr::new(198, 18, 1, 2))];
    let (o, _) = net.run(&targets, TIMEOUT);
    assert_eq!(o[0].nat, Some(Nat::ConeOrRestricted));
    assert!(!net
        .sent
        .iter()
        .any(|(_, to, p)| *p == Purpose::ConeTest && *to.ip() == S1));
}

#[test]
fn cone_answer_from_the_address_asked() {
    let mut h = host(S1);
    h.cone_from_same = true;
    let mut net = Net::new(NatModel::FullCone, vec![h]);
    let (o, _) = net.run(&[target(S1)], TIMEOUT);
    // Its plain answers come from the right address; the cone one tells
    // nothing.
    assert!(o[0].answered);
    assert_eq!(o[0].nat, Some(Nat::ConeOrRestricted));
    assert!(
        o[0].problems
            .iter()
            .any(|p| p.contains("cone-bit solicitation from 198.18.1.1")),
        "{:?}",
        o[0].problems
    );
}

#[test]
fn problems_of_the_advertisement() {
    let mut h = host(S1);
    h.engine = Server::new(ServerConfig {
        prefix: 0x3ffe_831f,
        mtu: 1400,
        ..ServerConfig::new(S1)
    });
    let mut net = Net::new(NatModel::None, vec![h]);
    let (o, _) = net.run(&[target(S1)], TIMEOUT);
    assert!(o[0].answered, "a client of another prefix would use it");
    assert_eq!(
        o[0].problems,
        [
            "prefix in 3ffe:831f::/32, not the Teredo prefix 2001::/32",
            "MTU 1400, not Teredo's 1280"
        ]
    );
}

#[test]
fn garbage_from_a_server_is_counted() {
    let mut net = Net::new(NatModel::None, vec![host(S1)]);
    let from = SocketAddrV4::new(S1, TEREDO_PORT);
    net.garbage.push((from, b"hello".to_vec()));
    net.garbage
        .push((from, solicitation([9; 8], LINK_LOCAL_RESTRICTED)));
    let (o, _) = net.run(&[target(S1)], TIMEOUT);
    assert!(o[0].answered);
    assert_eq!(o[0].problems.len(), 1, "{:?}", o[0].problems);
    assert!(
        o[0].problems[0].starts_with("2 datagrams from it that were no valid answer of ours"),
        "{:?}",
        o[0].problems
    );
}

#[test]
fn linux_nat_through_one_server_cannot_tell() {
    let mut net = Net::new(NatModel::Linux, vec![host(S1)]);
    let (o, _) = net.run(&[target(S1)], TIMEOUT);
    assert_eq!(o[0].mapped, Some(SocketAddrV4::new(WAN, 50000)));
    assert_eq!(o[0].secondary_answered, Some(true));
    assert_ne!(o[0].secondary_mapped, o[0].mapped);
    assert_eq!(o[0].nat, Some(Nat::RestrictedOrSymmetric));
}

#[test]
fn linux_nat_through_two_servers_is_restricted() {
    let mut net = Net::new(NatModel::Linux, vec![host(S1), host(S2)]);
    let (o, _) = net.run(&[target(S1), target(S2)], TIMEOUT);
    for o in &o {
        assert_ne!(
            o.secondary_mapped, o.mapped,
            "the refused cone answer moved it"
        );
        assert_eq!(o.nat, Some(Nat::Restricted), "{o:?}");
    }
    // A real symmetric NAT stays symmetric with two servers.
    let mut net = Net::new(NatModel::Symmetric, vec![host(S1), host(S2)]);
    let (o, _) = net.run(&[target(S1), target(S2)], TIMEOUT);
    assert!(o.iter().all(|o| o.nat == Some(Nat::Symmetric)), "{o:?}");
}

#[test]
fn other_servers_stand_in_for_a_silent_secondary() {
    for (model, want) in [
        (NatModel::Symmetric, Nat::Symmetric),
        (NatModel::PortRestricted, Nat::Restricted),
    ] {
        let mut hosts = vec![host(S1), host(S2)];
        for h in &mut hosts {
            let s = h.engine.config().secondary;
            h.silent.push(s);
        }
        let mut net = Net::new(model, hosts);
        let (o, _) = net.run(&[target(S1), target(S2)], TIMEOUT);
        for o in &o {
            assert_eq!(o.secondary_answered, Some(false));
            assert_eq!(o.nat, Some(want), "{o:?}");
        }
    }
}

#[test]
fn nat_verdicts() {
    let m = SocketAddrV4::new(WAN, 1);
    let other = SocketAddrV4::new(WAN, 2);
    let cases = [
        // (mapped, cone, secondary's mapping, local, same elsewhere)
        (m, Cone::Answered, Some(other), None, None, Nat::Symmetric),
        (
            m,
            Cone::Unanswered,
            Some(other),
            None,
            Some(false),
            Nat::Symmetric,
        ),
        (
            m,
            Cone::Unanswered,
            Some(other),
            None,
            Some(true),
            Nat::Restricted,
        ),
        (
            m,
            Cone::Unanswered,
            Some(other),
            None,
            None,
            Nat::RestrictedOrSymmetric,
        ),
        (
            m,
            Cone::CannotTell,
            Some(other),
            None,
            Some(true),
            Nat::Symmetric,
        ),
        (
            OURS,
            Cone::Answered,
            Some(OURS),
            Some(OURS),
            None,
            Nat::None,
        ),
        (
            OURS,
            Cone::Unanswered,
            Some(OURS),
            Some(OURS),
            None,
            Nat::NoneFiltered,
        ),
        (
            OURS,
            Cone::Unanswered,
            None,
            Some(OURS),
            None,
            Nat::NoneFiltered,
        ),
        (m, Cone::Answered, None, Some(OURS), None, Nat::Cone),
        (
            m,
            Cone::Unanswered,
            Some(m),
            Some(OURS),
            None,
            Nat::Restricted,
        ),
        (m, Cone::Unanswered, None, Some(OURS), None, Nat::Unknown),
        (
            m,
            Cone::Unanswered,
            None,
            Some(OURS),
            Some(true),
            Nat::Restricted,
        ),
        (
            m,
            Cone::Unanswered,
            None,
            Some(OURS),
            Some(false),
            Nat::Symmetric,
        ),
        (
            m,
            Cone::CannotTell,
            Some(m),
            None,
            None,
            Nat::ConeOrRestricted,
        ),
        (
            m,
            Cone::CannotTell,
            None,
            None,
            Some(true),
            Nat::ConeOrRestricted,
        ),
        (m, Cone::CannotTell, None, None, None, Nat::Unknown),
    ];
    for (mapped, cone, secondary, local, elsewhere, want) in cases {
        assert_eq!(
            classify(mapped, cone, secondary, local, elsewhere),
            want,
            "{mapped} {cone:?} {secondary:?} {local:?} {elsewhere:?}"
        );
    }
}
