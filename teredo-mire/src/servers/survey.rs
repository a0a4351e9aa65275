//! The survey of Teredo servers, sans I/O: router solicitations to every
//! server address at once from one socket, the answers matched by nonce,
//! and for each address what a client would learn from it (RFC 4380
//! 5.2.1): whether it answers, the round trip, the mapped address, whether
//! its secondary address answers, the NAT's behaviour seen through it, and
//! what is wrong with its advertisements. Time and randomness come from
//! the caller, as for libteredo's engines.
//!
//! The pace is the RFC's (T = 4 s, N = 3), each address on its own:
//!
//! 1. At once, two solicitations to the primary address: a plain one
//!    (the qualification) and one whose source carries the cone bit (the
//!    cone test: the server answers it from its other address, which only
//!    a cone NAT lets in). Both are sent again every 4 s, at most 3 times,
//!    until the plain one is answered. Each attempt has a nonce of its
//!    own, so that the round trip is the answered attempt's.
//! 2. The server answers both of a round at once: a cone answer not
//!    there [`CONE_GRACE`] after the plain one will not come (unless it
//!    was lost: the verdict is then "restricted" for a cone NAT, and a
//!    second run tells).
//! 3. Only then a plain solicitation to the secondary address (every 4 s,
//!    at most 3 times): had it gone earlier, a restricted NAT would let
//!    the cone answer in. The same mapping seen from both addresses: a
//!    cone or restricted NAT; another one: a symmetric NAT, or a
//!    restricted NAT that tracks the refused cone answer (see
//!    [`classify`]: the other servers tell them apart).
//!
//! Everything stops at the overall deadline. When the secondary address
//! of one server is another address probed (an address given twice, a
//! name listing both), the cone test cannot be told apart from the other
//! probe's traffic through the NAT, so it is not run there.

use super::advert;
use libteredo::addr::{is_global_unicast_v4, LINK_LOCAL_CONE, LINK_LOCAL_RESTRICTED, TEREDO_PORT};
use libteredo::proto::{Random, RS_ATTEMPTS, RS_TIMEOUT};
use libteredo::wire::icmpv6::Icmpv6Repr;
use libteredo::wire::ipv6::next_header;
use libteredo::wire::teredo::TeredoPacket;
use std::collections::{HashMap, HashSet};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV4};
use std::time::{Duration, Instant};

/// How long after the answer to the plain solicitation the answer to the
/// cone-bit one of the same round may come (the server sends both at
/// once; a second is many round trips on any path a client would use).
pub const CONE_GRACE: Duration = Duration::from_secs(1);

/// One server address to probe.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Target {
    pub primary: Ipv4Addr,
    /// Its secondary address (the primary plus one by default).
    pub secondary: Ipv4Addr,
    /// Our endpoint as the server would see it with no NAT on the way
    /// (the address the route to it leaves from, our port): a mapped
    /// address equal to it means no NAT.
    pub local: Option<SocketAddrV4>,
}

/// The NAT's behaviour, as seen through one server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Nat {
    /// No NAT (the server sees our own address and port), and unsolicited
    /// packets come in (the cone test was answered).
    None,
    /// No NAT, but a filter refuses what we did not send to first.
    NoneFiltered,
    /// A cone NAT: the cone test was answered from the other address.
    Cone,
    /// A restricted (or port-restricted) cone NAT: the same mapping for
    /// both addresses, the cone test unanswered.
    Restricted,
    /// The mapping changes with the destination.
    Symmetric,
    /// The same mapping for both addresses, but the cone test could not be
    /// run or could not tell.
    ConeOrRestricted,
    /// The cone test unanswered, and another mapping for the secondary
    /// address: a symmetric NAT, or a restricted one whose connection
    /// tracking kept the cone test's reply (no other server to tell).
    RestrictedOrSymmetric,
    /// The secondary address did not answer, and the cone test either.
    Unknown,
}

impl Nat {
    pub fn as_str(self) -> &'static str {
        match self {
            Nat::None => "none",
            Nat::NoneFiltered => "none, filtered",
            Nat::Cone => "cone",
            Nat::Restricted => "restricted",
            Nat::Symmetric => "symmetric",
            Nat::ConeOrRestricted => "cone or restricted",
            Nat::RestrictedOrSymmetric => "restricted or symmetric",
            Nat::Unknown => "unknown",
        }
    }
}

/// What the survey learnt of one address.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Outcome {
    /// A valid advertisement answered our plain solicitation, from the
    /// address asked, with an origin indication.
    pub answered: bool,
    /// From the answered solicitation to its advertisement.
    pub rtt: Option<Duration>,
    /// Our address and port as the server sees them (origin indication).
    pub mapped: Option<SocketAddrV4>,
    /// The advertised prefix and its length.
    pub prefix: Option<(Ipv6Addr, u8)>,
    /// The advertised MTU, if the advertisement had the option.
    pub mtu: Option<u32>,
    /// Whether the secondary address answered; `None`: not tried (the
    /// primary did not answer) or not long enough.
    pub secondary_answered: Option<bool>,
    /// Our address and port as the secondary address sees them.
    pub secondary_mapped: Option<SocketAddrV4>,
    /// `None` when the primary did not answer.
    pub nat: Option<Nat>,
    /// What is wrong with the server's answers, one sentence each.
    pub problems: Vec<String>,
}

/// What a solicitation is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Purpose {
    Qualification,
    ConeTest,
    Secondary,
}

impl Purpose {
    pub fn describe(self) -> &'static str {
        match self {
            Purpose::Qualification => "qualification",
            Purpose::ConeTest => "cone bit set",
            Purpose::Secondary => "secondary address",
        }
    }
}

/// What the survey asks of the caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    /// Send this UDP payload from our socket.
    Send {
        to: SocketAddrV4,
        payload: Vec<u8>,
        purpose: Purpose,
        attempt: u8,
    },
    /// A line of progress for standard error.
    Progress(String),
}

/// A valid answer.
#[derive(Clone, Copy, Debug)]
struct Answered {
    at: Instant,
    rtt: Duration,
    mapped: SocketAddrV4,
}

/// The solicitations of one purpose to one address.
#[derive(Clone, Debug)]
struct Solicit {
    to: Ipv4Addr,
    cone: bool,
    /// When its first attempt is due.
    start: Instant,
    /// Each attempt's nonce and when it went.
    sent: Vec<([u8; 8], Instant)>,
    answer: Option<Answered>,
    /// No more attempts (answered, or its part of the survey is over).
    stopped: bool,
}

impl Solicit {
    fn new(to: Ipv4Addr, cone: bool, start: Instant) -> Self {
        Solicit {
            to,
            cone,
            start,
            sent: Vec::new(),
            answer: None,
            stopped: false,
        }
    }

    fn attempts(&self) -> u8 {
        u8::try_from(self.sent.len()).unwrap_or(u8::MAX)
    }

    fn last_sent(&self) -> Option<Instant> {
        self.sent.last().map(|(_, t)| *t)
    }

    /// When the next attempt is due, if one is.
    fn next_send(&self) -> Option<Instant> {
        if self.stopped || self.answer.is_some() || self.attempts() >= RS_ATTEMPTS {
            return None;
        }
        Some(self.last_sent().map_or(self.start, |t| t + RS_TIMEOUT))
    }

    /// When its last attempt has waited T unanswered (the RFC's give-up).
    fn gives_up_at(&self) -> Option<Instant> {
        if self.answer.is_some() || self.attempts() < RS_ATTEMPTS {
            return None;
        }
        self.last_sent().map(|t| t + RS_TIMEOUT)
    }

    fn given_up(&self, now: Instant) -> bool {
        self.gives_up_at().is_some_and(|t| now >= t)
    }

    /// Whether one attempt at least has waited T unanswered by `now`.
    fn waited_once(&self, now: Instant) -> bool {
        self.sent
            .first()
            .is_some_and(|(_, t)| now >= *t + RS_TIMEOUT)
    }

    fn source(&self) -> Ipv6Addr {
        if self.cone {
            LINK_LOCAL_CONE
        } else {
            LINK_LOCAL_RESTRICTED
        }
    }
}

/// The cone test's verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Cone {
    /// Not run, or still under way.
    Pending,
    /// Answered from another address than the one asked.
    Answered,
    /// Not answered within [`CONE_GRACE`] of the plain answer.
    Unanswered,
    /// Not run (the secondary address is probed otherwise), or the server
    /// answered from the address asked, which tells nothing.
    CannotTell,
}

/// The survey of one address.
#[derive(Clone, Debug)]
struct Probe {
    target: Target,
    qualification: Solicit,
    cone_test: Option<Solicit>,
    cone: Cone,
    secondary: Option<Solicit>,
    prefix: Option<(Ipv6Addr, u8)>,
    mtu: Option<u32>,
    problems: Vec<String>,
    /// Datagrams from its addresses that were no valid answer of ours,
    /// and the first one's fault.
    invalid: u32,
    invalid_why: Option<String>,
    /// Whether the progress lines for silence were written.
    said_silent: bool,
    said_secondary_silent: bool,
}

impl Probe {
    fn note(&mut self, problem: String) {
        if !self.problems.contains(&problem) {
            self.problems.push(problem);
        }
    }

    fn invalid(&mut self, why: String) {
        self.invalid += 1;
        if self.invalid_why.is_none() {
            self.invalid_why = Some(why);
        }
    }

    /// Whether this address's part of the survey is over.
    fn done(&self, now: Instant) -> bool {
        if self.qualification.given_up(now) {
            return true;
        }
        if self.qualification.answer.is_none() || self.cone == Cone::Pending {
            return false;
        }
        self.secondary
            .as_ref()
            .is_some_and(|s| s.answer.is_some() || s.given_up(now))
    }

    fn outcome(&self, now: Instant, same_elsewhere: Option<bool>) -> Outcome {
        let q = self.qualification.answer;
        let mut problems = self.problems.clone();
        if self.invalid > 0 {
            problems.push(format!(
                "{} datagram{} from it that {} no valid answer of ours ({})",
                self.invalid,
                if self.invalid == 1 { "" } else { "s" },
                if self.invalid == 1 { "was" } else { "were" },
                self.invalid_why.as_deref().unwrap_or("unknown")
            ));
        }
        let secondary = self.secondary.as_ref();
        let secondary_answered = match secondary {
            Some(s) if s.answer.is_some() => Some(true),
            Some(s) if s.given_up(now) || s.waited_once(now) => Some(false),
            _ => None,
        };
        let nat = q.map(|q| {
            classify(
                q.mapped,
                self.cone,
                secondary.and_then(|s| s.answer).map(|a| a.mapped),
                self.target.local,
                same_elsewhere,
            )
        });
        Outcome {
            answered: q.is_some(),
            rtt: q.map(|q| q.rtt),
            mapped: q.map(|q| q.mapped),
            prefix: self.prefix,
            mtu: self.mtu,
            secondary_answered,
            secondary_mapped: secondary.and_then(|s| s.answer).map(|a| a.mapped),
            nat,
            problems,
        }
    }
}

/// The NAT's behaviour from the plain answer's mapping, the cone test, the
/// secondary address's mapping (RFC 4380 5.2.1), and what the other
/// servers saw (`same_elsewhere`: whether another server, reached the same
/// way at the same moment, saw the same mapping; `None`: no other server
/// answered).
///
/// The other servers tell what one server cannot in bounded time: a
/// restricted NAT's connection tracking (Linux's, for one) keeps an entry
/// for the cone test's unanswered reply from the secondary address (30 s
/// for UDP), so the NAT must pick another port when we solicit that
/// address: to one server it looks symmetric. If other servers saw our
/// mapping unchanged, the NAT maps whatever the destination, and the new
/// port is that entry's doing.
fn classify(
    mapped: SocketAddrV4,
    cone: Cone,
    secondary: Option<SocketAddrV4>,
    local: Option<SocketAddrV4>,
    same_elsewhere: Option<bool>,
) -> Nat {
    if secondary.is_some_and(|m| m != mapped) {
        return match (cone, same_elsewhere) {
            (Cone::Unanswered, Some(true)) => Nat::Restricted,
            (Cone::Unanswered, None) => Nat::RestrictedOrSymmetric,
            _ => Nat::Symmetric,
        };
    }
    if local == Some(mapped) {
        return match cone {
            Cone::Unanswered => Nat::NoneFiltered,
            _ => Nat::None,
        };
    }
    match (cone, secondary.is_some(), same_elsewhere) {
        (Cone::Answered, _, _) => Nat::Cone,
        (_, false, Some(false)) => Nat::Symmetric,
        (Cone::Unanswered, true, _) | (Cone::Unanswered, false, Some(true)) => Nat::Restricted,
        (Cone::CannotTell | Cone::Pending, true, _)
        | (Cone::CannotTell | Cone::Pending, false, Some(true)) => Nat::ConeOrRestricted,
        (_, false, None) => Nat::Unknown,
    }
}

/// The UDP payload of a router solicitation with our nonce in an
/// authentication header (RFC 4380 5.2.1, 5.1.1), from the link-local
/// address with or without the cone bit, to all routers.
pub fn solicitation(nonce: [u8; 8], source: Ipv6Addr) -> Vec<u8> {
    libteredo::proto::solicitation_datagram(nonce, source)
}

/// The survey of every target, from one socket.
pub struct Survey {
    probes: Vec<Probe>,
    /// Every nonce sent: whose, what for, when.
    nonces: HashMap<[u8; 8], (usize, Purpose, Instant)>,
    /// Every address we sent to: a NAT lets their datagrams in, so a cone
    /// answer from one of them proves nothing.
    solicited: HashSet<Ipv4Addr>,
    deadline: Instant,
    rng: Box<dyn Random>,
    finished: bool,
}

impl Survey {
    /// A survey of `targets` (distinct), starting at `now` and ending at
    /// `now + timeout` at the latest.
    pub fn new(targets: &[Target], now: Instant, timeout: Duration, rng: Box<dyn Random>) -> Self {
        let probes = targets
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let others_use_it = targets.iter().enumerate().any(|(j, o)| {
                    j != i && (o.primary == t.secondary || o.secondary == t.secondary)
                });
                let can_tell = !others_use_it && t.secondary != t.primary;
                Probe {
                    target: *t,
                    qualification: Solicit::new(t.primary, false, now),
                    cone_test: can_tell.then(|| Solicit::new(t.primary, true, now)),
                    cone: if can_tell {
                        Cone::Pending
                    } else {
                        Cone::CannotTell
                    },
                    secondary: None,
                    prefix: None,
                    mtu: None,
                    problems: Vec::new(),
                    invalid: 0,
                    invalid_why: None,
                    said_silent: false,
                    said_secondary_silent: false,
                }
            })
            .collect();
        Survey {
            probes,
            nonces: HashMap::new(),
            solicited: HashSet::new(),
            deadline: now + timeout,
            rng,
            finished: false,
        }
    }

    /// Whether every address's part is over, or the deadline passed (as
    /// [`Survey::handle_timeout`] saw it).
    pub fn is_done(&self, now: Instant) -> bool {
        self.finished || self.probes.iter().all(|p| p.done(now))
    }

    /// What was learnt of each target, in the order given.
    pub fn outcomes(&self, now: Instant) -> Vec<Outcome> {
        let now = now.min(self.deadline);
        let mapped = |p: &Probe| p.qualification.answer.map(|a| a.mapped);
        self.probes
            .iter()
            .enumerate()
            .map(|(i, p)| {
                // The other servers (other destinations) reached from the
                // same local address (a host with several routes may have
                // several NATs).
                let others: Vec<SocketAddrV4> = self
                    .probes
                    .iter()
                    .enumerate()
                    .filter(|(j, o)| {
                        *j != i
                            && o.target.primary != p.target.primary
                            && o.target.local == p.target.local
                    })
                    .filter_map(|(_, o)| mapped(o))
                    .collect();
                let same_elsewhere = match mapped(p) {
                    Some(m) if !others.is_empty() => Some(others.contains(&m)),
                    _ => None,
                };
                p.outcome(now, same_elsewhere)
            })
            .collect()
    }

    /// When [`Survey::handle_timeout`] has something to do.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.finished {
            return None;
        }
        let mut t = self.deadline;
        for p in &self.probes {
            let solicits = [Some(&p.qualification), p.secondary.as_ref()];
            for s in solicits.into_iter().flatten() {
                for x in [s.next_send(), s.gives_up_at()].into_iter().flatten() {
                    t = t.min(x);
                }
            }
            if p.cone == Cone::Pending {
                if let Some(a) = p.qualification.answer {
                    t = t.min(a.at + CONE_GRACE);
                }
            }
        }
        Some(t)
    }

    fn nonce(&mut self) -> [u8; 8] {
        let mut n = [0u8; 8];
        // A nonce we already used (for another attempt) would make the
        // round trip ambiguous: draw again (2^-64 per draw; a few times at
        // most, whatever the generator).
        for _ in 0..8 {
            self.rng.fill(&mut n);
            if !self.nonces.contains_key(&n) {
                break;
            }
        }
        n
    }

    fn send(&mut self, i: usize, purpose: Purpose, now: Instant, out: &mut Vec<Output>) {
        let nonce = self.nonce();
        let Some(p) = self.probes.get_mut(i) else {
            return;
        };
        let s = match purpose {
            Purpose::Qualification => Some(&mut p.qualification),
            Purpose::ConeTest => p.cone_test.as_mut(),
            Purpose::Secondary => p.secondary.as_mut(),
        };
        let Some(s) = s else { return };
        s.sent.push((nonce, now));
        let attempt = s.attempts();
        let (to, source) = (s.to, s.source());
        self.nonces.insert(nonce, (i, purpose, now));
        self.solicited.insert(to);
        out.push(Output::Send {
            to: SocketAddrV4::new(to, TEREDO_PORT),
            payload: solicitation(nonce, source),
            purpose,
            attempt,
        });
    }

    /// Sends what is due, decides what time decides.
    pub fn handle_timeout(&mut self, now: Instant, out: &mut Vec<Output>) {
        if self.finished {
            return;
        }
        for i in 0..self.probes.len() {
            self.step(i, now, out);
        }
        if now >= self.deadline {
            self.finish(now, out);
        } else if self.probes.iter().all(|p| p.done(now)) {
            self.finished = true;
        }
    }

    fn step(&mut self, i: usize, now: Instant, out: &mut Vec<Output>) {
        // Nothing goes out at the deadline: it could not be answered in time.
        let may_send = now < self.deadline;
        let Some(p) = self.probes.get(i) else { return };
        let primary = p.target.primary;
        // 1. The plain solicitation and, with it, the cone test.
        if may_send && p.qualification.next_send().is_some_and(|t| t <= now) {
            self.send(i, Purpose::Qualification, now, out);
            if self.probes.get(i).is_some_and(|p| p.cone == Cone::Pending) {
                self.send(i, Purpose::ConeTest, now, out);
            }
        }
        let Some(p) = self.probes.get_mut(i) else {
            return;
        };
        if p.qualification.answer.is_none() {
            if p.qualification.given_up(now) && !p.said_silent {
                p.said_silent = true;
                if let Some(c) = p.cone_test.as_mut() {
                    c.stopped = true;
                }
                out.push(Output::Progress(format!(
                    "{primary}: no answer after {RS_ATTEMPTS} solicitations, {} s apart",
                    RS_TIMEOUT.as_secs()
                )));
            }
            return;
        }
        // 2. The cone test's verdict.
        if p.cone == Cone::Pending {
            let answered_at = p.qualification.answer.map(|a| a.at);
            if answered_at.is_some_and(|t| now >= t + CONE_GRACE) {
                p.cone = Cone::Unanswered;
                out.push(Output::Progress(format!(
                    "{primary}: the cone test was not answered (not a cone NAT)"
                )));
            }
        }
        if p.cone != Cone::Pending {
            if let Some(c) = p.cone_test.as_mut() {
                c.stopped = true;
            }
        }
        // 3. The secondary address, once the cone test is over.
        if p.cone == Cone::Pending {
            return;
        }
        if p.secondary.is_none() {
            p.secondary = Some(Solicit::new(p.target.secondary, false, now));
        }
        let due = p
            .secondary
            .as_ref()
            .and_then(Solicit::next_send)
            .is_some_and(|t| t <= now);
        if may_send && due {
            self.send(i, Purpose::Secondary, now, out);
        }
        let Some(p) = self.probes.get_mut(i) else {
            return;
        };
        if p.secondary.as_ref().is_some_and(|s| s.given_up(now)) && !p.said_secondary_silent {
            p.said_secondary_silent = true;
            out.push(Output::Progress(format!(
                "{primary}: its secondary address {} did not answer",
                p.target.secondary
            )));
        }
    }

    fn finish(&mut self, now: Instant, out: &mut Vec<Output>) {
        self.finished = true;
        for p in &self.probes {
            if !p.done(now) {
                out.push(Output::Progress(format!(
                    "{}: the time is up before its tests ended",
                    p.target.primary
                )));
            }
        }
    }

    /// A datagram received on our socket from `from`.
    pub fn handle_udp(
        &mut self,
        now: Instant,
        from: SocketAddrV4,
        bytes: &[u8],
        out: &mut Vec<Output>,
    ) {
        // Whose address it came from, if anyone's: a datagram that is not
        // an answer of ours is put down to that server.
        let by_address = self
            .probes
            .iter()
            .position(|p| *from.ip() == p.target.primary || *from.ip() == p.target.secondary);
        let pkt = match TeredoPacket::parse(bytes) {
            Ok(p) => p,
            Err(e) => {
                if let Some(p) = by_address.and_then(|i| self.probes.get_mut(i)) {
                    p.invalid(format!("not a Teredo packet: {e:?}"));
                }
                return;
            }
        };
        let found = pkt
            .auth
            .and_then(|a| self.nonces.get(&a.nonce).copied().map(|n| (a, n)));
        let Some((auth, (i, purpose, sent_at))) = found else {
            if let Some(p) = by_address.and_then(|i| self.probes.get_mut(i)) {
                p.invalid(match pkt.auth {
                    None => "no authentication header with our nonce".to_string(),
                    Some(_) => "a nonce that is not ours".to_string(),
                });
            }
            return;
        };
        if self.finished {
            return;
        }
        let opened = self.solicited.contains(from.ip());
        let Some(p) = self.probes.get_mut(i) else {
            return;
        };
        let Some(origin) = pkt.origin else {
            p.invalid("an answer without origin indication".to_string());
            return;
        };
        let ip = &pkt.ipv6;
        let ra = if ip.next_header() == next_header::ICMPV6 {
            match Icmpv6Repr::parse(&ip.src_addr(), &ip.dst_addr(), ip.payload()) {
                Ok(Icmpv6Repr::RouterAdvert(ra)) => ra,
                Ok(other) => {
                    p.invalid(format!(
                        "an answer that is not a router advertisement: {other:?}"
                    ));
                    return;
                }
                Err(e) => {
                    p.invalid(format!("an ICMPv6 message that does not parse: {e:?}"));
                    return;
                }
            }
        } else {
            p.invalid(format!(
                "an answer that is not ICMPv6 (next header {})",
                ip.next_header()
            ));
            return;
        };
        let primary = p.target.primary;
        let solicit = match purpose {
            Purpose::Qualification => &p.qualification,
            Purpose::ConeTest => match &p.cone_test {
                Some(c) => c,
                None => return,
            },
            Purpose::Secondary => match &p.secondary {
                Some(s) => s,
                None => return,
            },
        };
        let (asked, solicited_from) = (solicit.to, solicit.source());
        for problem in advert::problems(&advert::Answer {
            ra: &ra,
            dst: ip.dst_addr(),
            solicited_from,
            confirmation: auth.confirmation,
            server: primary,
        }) {
            p.note(problem);
        }
        let mapped = origin.0;
        if !is_global_unicast_v4(*mapped.ip()) {
            p.note(format!(
                "origin indication {mapped} is not a global address: clients refuse the answer"
            ));
        }
        let answer = Answered {
            at: now,
            rtt: now.saturating_duration_since(sent_at),
            mapped,
        };
        let expected = SocketAddrV4::new(asked, TEREDO_PORT);
        match purpose {
            Purpose::Qualification | Purpose::Secondary => {
                // RFC 4380 5.3.2: a plain solicitation is answered from the
                // address it went to; clients drop anything else.
                if from != expected {
                    p.note(format!(
                        "answers from {from}, not from {expected}: clients drop such answers"
                    ));
                    return;
                }
                let s = if purpose == Purpose::Qualification {
                    &mut p.qualification
                } else {
                    match p.secondary.as_mut() {
                        Some(s) => s,
                        None => return,
                    }
                };
                if s.answer.is_some() {
                    return; // An answer to another attempt.
                }
                s.answer = Some(answer);
                s.stopped = true;
                let rtt_ms = answer.rtt.as_secs_f64() * 1000.0;
                if purpose == Purpose::Qualification {
                    p.prefix = ra.prefix.map(|x| (x.prefix, x.prefix_len));
                    p.mtu = ra.mtu;
                    out.push(Output::Progress(format!(
                        "{primary}: answered in {rtt_ms:.1} ms, mapped {mapped}"
                    )));
                } else {
                    out.push(Output::Progress(format!(
                        "{primary}: its secondary address {asked} answered in {rtt_ms:.1} ms, \
                         mapped {mapped}"
                    )));
                }
            }
            Purpose::ConeTest => {
                if p.cone != Cone::Pending {
                    // Late: the secondary address may have been solicited
                    // since, which opens a restricted NAT to it.
                    return;
                }
                if *from.ip() == asked {
                    p.note(format!(
                        "answers the cone-bit solicitation from {asked}, the address asked, \
                         not from another (RFC 4380 5.3.2): the cone test cannot tell"
                    ));
                    p.cone = Cone::CannotTell;
                } else if opened {
                    p.cone = Cone::CannotTell;
                    out.push(Output::Progress(format!(
                        "{primary}: the cone test was answered from {from}, which this survey \
                         solicited too: a NAT lets that in, so it cannot tell"
                    )));
                } else {
                    p.cone = Cone::Answered;
                    out.push(Output::Progress(format!(
                        "{primary}: the cone test was answered from {from}"
                    )));
                }
                if let Some(c) = p.cone_test.as_mut() {
                    c.answer = Some(answer);
                    c.stopped = true;
                }
            }
        }
        // What the answer made due (the secondary address) goes at once.
        self.step(i, now, out);
    }
}

#[cfg(test)]
mod tests;
