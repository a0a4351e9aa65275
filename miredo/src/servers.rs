//! The Teredo servers of a client, from the `ServerAddress` lines (in
//! order of preference) and `ServerAddress2`: resolving the names through
//! the reader process (libteredo::sys::reader) until one resolves, with a
//! capped backoff, and the list of servers they give. No I/O here: the
//! daemon sends the names this asks for and hands back the answers.
//!
//! - The names that resolve make the list, in the configuration's order
//!   (each name's addresses in the resolver's order, at most
//!   [`MAX_ADDRESSES_PER_NAME`] each, [`MAX_CANDIDATES`] in all); a name
//!   that does not resolve is left out of this round. The client solicits
//!   them all and qualifies with the most preferred one that answers.
//!
//! - An IPv4 literal needs no resolver.
//! - A name that does not resolve (yet) is asked again after 1, 2, 4, 8,
//!   16, then every 30 seconds (one refresh interval: a client that waits
//!   for its name recovers as soon as one that waits for its server); at
//!   once when the network changes.
//! - Every address is a server, with the next address as its secondary
//!   (the default `ServerAddress2` rule). An explicit `ServerAddress2`
//!   pairs with the first name's first address only.

use libteredo::conf::next_ipv4;
use libteredo::sys::reader::Resolved;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

/// The first retry of a name that does not resolve.
pub const FIRST_RETRY: Duration = Duration::from_secs(1);
/// Retries of a name that does not resolve are never further apart: one
/// refresh interval (RFC 4380 2.15).
pub const MAX_RETRY: Duration = libteredo::proto::REFRESH_INTERVAL;
/// An answer the resolver has not given after this is taken as a failure
/// (the system resolver gives up on silent DNS servers well before).
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(45);

/// How long to wait before the next try after `failures` failed rounds in
/// a row: 1, 2, 4 ... seconds, at most [`MAX_RETRY`] (30 s).
pub fn retry_delay(failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(16);
    (FIRST_RETRY * (1u32 << doublings)).min(MAX_RETRY)
}

/// The servers to use: the current pair, then the others in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerList {
    pub server: Ipv4Addr,
    pub server2: Ipv4Addr,
    pub fallbacks: Vec<(Ipv4Addr, Ipv4Addr)>,
}

impl ServerList {
    /// The list from the addresses `ServerAddress` gave (in the resolver's
    /// order) and `ServerAddress2`'s, if set. An address without a next
    /// one (255.255.255.255) cannot be a server without an explicit
    /// secondary: left out, or an error if it is the only one.
    pub fn build(primary: &[Ipv4Addr], secondary: Option<Ipv4Addr>) -> Result<ServerList, String> {
        let mut pairs = Vec::with_capacity(primary.len());
        for (i, &a) in primary.iter().enumerate() {
            let s2 = match (i, secondary) {
                (0, Some(s)) => Some(s),
                _ => next_ipv4(a),
            };
            if let Some(s2) = s2 {
                if !pairs.iter().any(|&(p, _)| p == a) {
                    pairs.push((a, s2));
                }
            }
        }
        let mut it = pairs.into_iter();
        let Some((server, server2)) = it.next() else {
            return Err(match primary.first() {
                Some(a) => format!("{a} has no next address; set ServerAddress2"),
                None => "no address".into(),
            });
        };
        Ok(ServerList {
            server,
            server2,
            fallbacks: it.collect(),
        })
    }

    /// At most [`MAX_CANDIDATES`] servers.
    pub fn bounded(mut self) -> ServerList {
        self.fallbacks.truncate(MAX_CANDIDATES - 1);
        self
    }

    /// Every pair, the current one first.
    pub fn pairs(&self) -> Vec<(Ipv4Addr, Ipv4Addr)> {
        std::iter::once((self.server, self.server2))
            .chain(self.fallbacks.iter().copied())
            .collect()
    }
}

/// The most addresses one name gives the client (a name with more is cut:
/// the client solicits every candidate at once).
pub const MAX_ADDRESSES_PER_NAME: usize = 4;
/// The most servers (address pairs) the client solicits at once.
pub const MAX_CANDIDATES: usize = 16;

/// What a round of resolution gave.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The servers, every address the names gave (in order), and each
    /// name's own answer (for the log).
    Resolved(
        ServerList,
        Vec<Ipv4Addr>,
        Vec<(String, Result<Vec<Ipv4Addr>, String>)>,
    ),
    /// Why not (no name resolved); the next try is due at [`Names::due`].
    Failed(String),
}

/// One name of the configuration and where its resolution stands.
#[derive(Clone, Debug)]
struct Name {
    text: String,
    /// Its addresses when it is an IPv4 literal.
    literal: Option<Ipv4Addr>,
    /// This round's answer.
    got: Option<Result<Vec<Ipv4Addr>, String>>,
    /// When it was sent to the resolver, while no answer came.
    asked: Option<Instant>,
}

impl Name {
    fn new(text: &str) -> Name {
        Name {
            text: text.to_string(),
            literal: text.parse().ok(),
            got: None,
            asked: None,
        }
    }
}

/// The resolution of the `ServerAddress` names and `ServerAddress2`.
#[derive(Clone, Debug)]
pub struct Names {
    primaries: Vec<Name>,
    secondary: Option<Name>,
    /// Rounds failed in a row.
    failures: u32,
    /// When the next round starts (none: nothing to do until asked).
    next: Option<Instant>,
    /// Whether a round is under way.
    round: bool,
    /// The last list resolved.
    last: Option<ServerList>,
}

impl Names {
    /// The names of `ServerAddress` (in order of preference) and, if set,
    /// `ServerAddress2`; the first round is due at once.
    pub fn new<S: AsRef<str>>(primaries: &[S], secondary: Option<&str>, now: Instant) -> Names {
        Names {
            primaries: primaries.iter().map(|p| Name::new(p.as_ref())).collect(),
            secondary: secondary.map(Name::new),
            failures: 0,
            next: Some(now),
            round: false,
            last: None,
        }
    }

    /// The `ServerAddress` names as configured, for a person.
    pub fn primary(&self) -> String {
        let v: Vec<&str> = self.primaries.iter().map(|n| n.text.as_str()).collect();
        v.join(", ")
    }

    /// Whether every name is an IPv4 literal (nothing to resolve).
    pub fn literal(&self) -> bool {
        self.names().all(|n| n.literal.is_some())
    }

    /// The list of a configuration of literals, at once (`None` when a name
    /// needs the resolver, or no literal has a next address).
    pub fn literal_list(&self) -> Option<ServerList> {
        let p: Vec<Ipv4Addr> = self
            .primaries
            .iter()
            .map(|n| n.literal)
            .collect::<Option<_>>()?;
        let s = match &self.secondary {
            Some(n) => Some(n.literal?),
            None => None,
        };
        ServerList::build(&p, s).ok().map(ServerList::bounded)
    }

    /// Whether the last round failed (and none succeeded since).
    pub fn failing(&self) -> bool {
        self.failures > 0
    }

    /// When [`Names::poll`] has something to do.
    pub fn due(&self) -> Option<Instant> {
        let asked = self
            .names()
            .filter_map(|n| n.asked)
            .map(|t| t + ANSWER_TIMEOUT)
            .min();
        match (self.next.filter(|_| !self.round), asked) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn names(&self) -> impl Iterator<Item = &Name> {
        self.primaries.iter().chain(self.secondary.as_ref())
    }

    fn names_mut(&mut self) -> impl Iterator<Item = &mut Name> {
        self.primaries.iter_mut().chain(self.secondary.as_mut())
    }

    /// Starts a round when one is due, and gives up on answers that take
    /// too long. Returns the names to send to the resolver now, and the
    /// round's outcome if it ended (literals, or a resolver that never
    /// answered).
    pub fn poll(&mut self, now: Instant) -> (Vec<String>, Option<Outcome>) {
        let mut send = Vec::new();
        for n in self.names_mut() {
            if n.asked.is_some_and(|t| now >= t + ANSWER_TIMEOUT) {
                n.asked = None;
                n.got = Some(Err("no answer from the resolver".into()));
            }
        }
        if !self.round && self.next.is_some_and(|t| t <= now) {
            self.round = true;
            self.next = None;
            for n in self.names_mut() {
                n.got = None;
                if let Some(ip) = n.literal {
                    n.got = Some(Ok(vec![ip]));
                } else if n.asked.is_none() {
                    // One already in flight (from a round that gave up on
                    // it) answers this round too.
                    n.asked = Some(now);
                    if !send.contains(&n.text) {
                        send.push(n.text.clone());
                    }
                }
            }
        }
        let outcome = self.finish(now);
        (send, outcome)
    }

    /// An answer from the resolver; the round's outcome once every name
    /// has one. Answers for names this does not wait for are ignored.
    pub fn answer(&mut self, now: Instant, r: &Resolved) -> Option<Outcome> {
        let mut matched = false;
        let round = self.round;
        for n in self.names_mut() {
            if n.literal.is_none() && n.text == r.name && n.asked.is_some() {
                n.asked = None;
                if round {
                    n.got = Some(r.result.clone());
                }
                matched = true;
            }
        }
        if !matched {
            return None;
        }
        self.finish(now)
    }

    /// The outcome, if the round has every answer. The names that resolve
    /// make the list, in order; the round fails when none does, or when
    /// `ServerAddress2` does not.
    fn finish(&mut self, now: Instant) -> Option<Outcome> {
        if !self.round || self.names().any(|n| n.got.is_none()) {
            return None;
        }
        self.round = false;
        let each: Vec<(String, Result<Vec<Ipv4Addr>, String>)> = self
            .primaries
            .iter_mut()
            .map(|n| {
                let got = n.got.take().unwrap_or(Err("no answer".into()));
                (
                    n.text.clone(),
                    got.map(|mut v| {
                        v.truncate(MAX_ADDRESSES_PER_NAME);
                        v
                    }),
                )
            })
            .collect();
        let secondary = self.secondary.as_mut().and_then(|n| n.got.take());
        let failures: Vec<String> = each
            .iter()
            .filter_map(|(t, r)| r.as_ref().err().map(|e| format!("{t}: {e}")))
            .collect();
        let addrs: Vec<Ipv4Addr> = each
            .iter()
            .filter_map(|(_, r)| r.as_ref().ok())
            .flatten()
            .copied()
            .collect();
        let first_resolved = each.first().is_some_and(|(_, r)| r.is_ok());
        let result = match secondary {
            Some(Err(e)) => Err(format!(
                "{}: {e}",
                self.secondary.as_ref().map_or("", |n| n.text.as_str())
            )),
            _ if addrs.is_empty() => Err(failures.join("; ")),
            s => {
                // ServerAddress2 pairs with the first name's first address.
                let s2 = s
                    .and_then(|s| s.ok())
                    .and_then(|v| v.first().copied())
                    .filter(|_| first_resolved);
                ServerList::build(&addrs, s2)
                    .map(ServerList::bounded)
                    .map_err(|e| format!("{}: {e}", self.primary()))
            }
        };
        match result {
            Ok(list) => {
                self.failures = 0;
                self.last = Some(list.clone());
                Some(Outcome::Resolved(list, addrs, each))
            }
            Err(why) => {
                self.failures = self.failures.saturating_add(1);
                // Servers already known need no retry: they are used
                // until the next reason to ask again.
                if self.last.is_none() {
                    self.next = Some(now + retry_delay(self.failures));
                }
                Some(Outcome::Failed(why))
            }
        }
    }

    /// The network changed: a name that does not resolve is tried again at
    /// once, and then after 1, 2, 4 ... seconds again.
    pub fn network_changed(&mut self, now: Instant) {
        if self.failing() && self.last.is_none() {
            self.failures = 0;
            if !self.round {
                self.next = Some(now);
            }
        }
    }

    /// Resolve the names again (the servers may have changed): now, unless
    /// a round is under way.
    pub fn refresh(&mut self, now: Instant) {
        if !self.literal() && !self.round {
            self.next = Some(now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 1);
    const A2: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 2);
    const B: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 3);
    const B2: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 4);
    const C: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 9);

    fn ok(name: &str, a: &[Ipv4Addr]) -> Resolved {
        Resolved {
            name: name.into(),
            result: Ok(a.to_vec()),
        }
    }

    fn fail(name: &str) -> Resolved {
        Resolved {
            name: name.into(),
            result: Err("Name or service not known".into()),
        }
    }

    #[test]
    fn retries_double_up_to_a_refresh_interval() {
        let d: Vec<u64> = (1..=9).map(|f| retry_delay(f).as_secs()).collect();
        assert_eq!(d, [1, 2, 4, 8, 16, 30, 30, 30, 30]);
        assert_eq!(retry_delay(u32::MAX), MAX_RETRY);
    }

    #[test]
    fn several_addresses_make_fallbacks_with_the_next_address() {
        let l = ServerList::build(&[A, B, C], None).unwrap();
        assert_eq!((l.server, l.server2), (A, A2));
        assert_eq!(
            l.fallbacks,
            vec![(B, B2), (C, Ipv4Addr::new(198, 18, 1, 10))]
        );
        // An explicit ServerAddress2 pairs with the first only.
        let l = ServerList::build(&[A, B], Some(C)).unwrap();
        assert_eq!(l.pairs(), vec![(A, C), (B, B2)]);
        // Repeats and addresses without a next one are left out.
        let l = ServerList::build(&[A, A, Ipv4Addr::BROADCAST, B], None).unwrap();
        assert_eq!(l.pairs(), vec![(A, A2), (B, B2)]);
        assert!(ServerList::build(&[Ipv4Addr::BROADCAST], None)
            .unwrap_err()
            .contains("ServerAddress2"));
        assert!(ServerList::build(&[Ipv4Addr::BROADCAST], Some(A)).is_ok());
    }

    #[test]
    fn literals_need_no_resolver() {
        let t = Instant::now();
        let mut n = Names::new(&["198.18.1.1"], None, t);
        assert!(n.literal());
        assert_eq!(n.literal_list().unwrap().pairs(), vec![(A, A2)]);
        let (send, out) = n.poll(t);
        assert!(send.is_empty());
        assert!(matches!(out, Some(Outcome::Resolved(l, _, _)) if l.server == A));
        assert_eq!(n.due(), None);
        let n = Names::new(&["198.18.1.1"], Some("198.18.1.9"), t);
        assert_eq!(n.literal_list().unwrap().pairs(), vec![(A, C)]);
        let n = Names::new(&["198.18.1.1"], Some("s2.example"), t);
        assert!(!n.literal());
        assert_eq!(n.literal_list(), None);
    }

    #[test]
    fn a_name_that_does_not_resolve_is_retried_with_backoff_then_resolves() {
        let t0 = Instant::now();
        let mut n = Names::new(&["teredo.example"], None, t0);
        let mut t = t0;
        let mut gaps = Vec::new();
        for _ in 0..9 {
            let (send, out) = n.poll(t);
            assert_eq!(send, ["teredo.example"]);
            assert_eq!(out, None);
            // Nothing more until the answer.
            assert!(n.poll(t).0.is_empty());
            let out = n.answer(t, &fail("teredo.example"));
            assert!(matches!(out, Some(Outcome::Failed(ref w)) if w.contains("teredo.example")));
            assert!(n.failing());
            let next = n.due().unwrap();
            gaps.push((next - t).as_secs());
            // Not due before its time.
            assert!(n.poll(next - Duration::from_millis(1)).0.is_empty());
            t = next;
        }
        assert_eq!(gaps, [1, 2, 4, 8, 16, 30, 30, 30, 30]);
        let (send, _) = n.poll(t);
        assert_eq!(send.len(), 1);
        let out = n.answer(t, &ok("teredo.example", &[A, B]));
        let Some(Outcome::Resolved(l, addrs, _)) = out else {
            panic!("{out:?}")
        };
        assert_eq!(addrs, [A, B]);
        assert_eq!(l.pairs(), vec![(A, A2), (B, B2)]);
        assert!(!n.failing());
        assert_eq!(n.due(), None);
    }

    #[test]
    fn a_network_change_retries_at_once_and_restarts_the_backoff() {
        let t0 = Instant::now();
        let mut n = Names::new(&["teredo.example"], None, t0);
        let mut t = t0;
        for _ in 0..6 {
            n.poll(t);
            n.answer(t, &fail("teredo.example"));
            t = n.due().unwrap();
        }
        assert_eq!((n.due().unwrap() - t0).as_secs(), 61);
        let now = t0 + Duration::from_secs(40);
        n.network_changed(now);
        assert_eq!(n.due(), Some(now));
        assert_eq!(n.poll(now).0.len(), 1);
        n.answer(now, &fail("teredo.example"));
        assert_eq!(n.due(), Some(now + FIRST_RETRY));
    }

    #[test]
    fn a_silent_resolver_counts_as_a_failure() {
        let t0 = Instant::now();
        let mut n = Names::new(&["teredo.example"], None, t0);
        n.poll(t0);
        assert_eq!(n.due(), Some(t0 + ANSWER_TIMEOUT));
        let (send, out) = n.poll(t0 + ANSWER_TIMEOUT);
        assert!(send.is_empty());
        assert!(matches!(out, Some(Outcome::Failed(ref w)) if w.contains("no answer")));
        // A late answer is not taken for the next round's.
        assert_eq!(
            n.answer(t0 + ANSWER_TIMEOUT, &ok("teredo.example", &[A])),
            None
        );
    }

    #[test]
    fn both_names_must_resolve_and_strangers_are_ignored() {
        let t = Instant::now();
        let mut n = Names::new(&["s1.example"], Some("s2.example"), t);
        let (mut send, _) = n.poll(t);
        send.sort();
        assert_eq!(send, ["s1.example", "s2.example"]);
        assert_eq!(n.answer(t, &ok("other.example", &[A])), None);
        assert_eq!(n.answer(t, &ok("s1.example", &[A, B])), None);
        let out = n.answer(t, &ok("s2.example", &[C]));
        let Some(Outcome::Resolved(l, _, _)) = out else {
            panic!("{out:?}")
        };
        assert_eq!(l.pairs(), vec![(A, C), (B, B2)]);
        // The secondary fails: the round fails.
        n.refresh(t);
        n.poll(t);
        n.answer(t, &ok("s1.example", &[A]));
        let out = n.answer(t, &fail("s2.example"));
        assert!(matches!(out, Some(Outcome::Failed(ref w)) if w.starts_with("s2.example")));
        // Servers known already: no retry of their own.
        assert_eq!(n.due(), None);
    }

    #[test]
    fn several_names_in_order_and_a_dead_one_left_out() {
        let t = Instant::now();
        let mut n = Names::new(&["dead.example", "s1.example", "198.18.1.9"], None, t);
        assert!(!n.literal());
        let (send, out) = n.poll(t);
        assert_eq!(send, ["dead.example", "s1.example"]);
        assert_eq!(out, None);
        assert_eq!(n.answer(t, &ok("s1.example", &[A, B])), None);
        let out = n.answer(t, &fail("dead.example"));
        let Some(Outcome::Resolved(l, addrs, each)) = out else {
            panic!("{out:?}")
        };
        assert_eq!(addrs, [A, B, C]);
        assert_eq!(l.pairs().iter().map(|p| p.0).collect::<Vec<_>>(), [A, B, C]);
        assert!(each[0].1.is_err() && each[1].1.is_ok() && each[2].1.is_ok());
        assert!(!n.failing());
        // Every name dead: the round fails, naming each.
        let mut n = Names::new(&["d1.example", "d2.example"], None, t);
        n.poll(t);
        n.answer(t, &fail("d1.example"));
        let out = n.answer(t, &fail("d2.example"));
        assert!(
            matches!(out, Some(Outcome::Failed(ref w)) if w.contains("d1.example") && w.contains("d2.example")),
            "{out:?}"
        );
        assert!(n.failing());
        // Literals only: at once, in order; bounded.
        let many: Vec<String> = (1..=40).map(|i| format!("198.18.2.{i}")).collect();
        let n = Names::new(&many, None, t);
        let l = n.literal_list().unwrap();
        assert_eq!(l.pairs().len(), MAX_CANDIDATES);
        assert_eq!(l.server, Ipv4Addr::new(198, 18, 2, 1));
    }
}
