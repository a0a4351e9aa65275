//! The client's timers: qualification rounds and their backoff, the
//! retries of each solicitation (RFC 4380 5.2.1), maintenance at the
//! randomized refresh interval (5.2.5), the server lost after the retries
//! and the move to the next server of the list, the NAT tests' retries,
//! and local discovery's announcements (5.2.8).

use super::{Client, ClientState, CONE_PROBE_ATTEMPTS, RS_ATTEMPTS};
use crate::proto::output::{Event, Output};
use std::time::Instant;

impl Client {
    pub fn handle_timeout(&mut self, now: Instant, out: &mut Vec<Output>) {
        let n0 = out.len();
        self.timeout_in(now, out);
        self.fwd.count_sent(&out[n0..]);
    }

    fn timeout_in(&mut self, now: Instant, out: &mut Vec<Output>) {
        // Qualification rounds.
        if let Some(at) = self.retry_at {
            if at <= now && self.primary.is_none() && !self.hunting() && self.has_server() {
                self.retry_at = None;
                if self.current.is_some() {
                    self.state = ClientState::Qualified;
                    let mut s = self.new_solicit(self.cfg.server, false, now);
                    Self::send_rs(&mut s, now, out);
                    self.primary = Some(s);
                } else {
                    // Looking for a server: every server of the list.
                    self.state = ClientState::Probing;
                    self.start_hunt(now, out);
                }
            }
        }
        if self.hunting() {
            self.hunt_timeout(now, out);
        }
        // Maintenance (RFC 4380 5.2.5).
        if let Some(at) = self.next_refresh {
            if at <= now && self.primary.is_none() {
                self.next_refresh = None;
                // Like the C miredo, solicit at every refresh: this keeps
                // the NAT's mapping towards the server alive and finds out
                // at once when the server is gone.
                if self.current.is_some() {
                    let mut s = self.new_solicit(self.cfg.server, false, now);
                    Self::send_rs(&mut s, now, out);
                    self.primary = Some(s);
                }
            }
        }
        if let Some(mut s) = self.primary {
            if s.next <= now {
                if s.attempts < RS_ATTEMPTS {
                    Self::send_rs(&mut s, now, out);
                    self.primary = Some(s);
                } else {
                    self.primary = None;
                    // No answer to three solicitations: the server is lost
                    // (maintenance, or a path change). Look for a server
                    // among the whole list at once: the next that answers.
                    let server = self.cfg.server;
                    if let Some(c) = self.candidates.iter_mut().find(|c| c.server == server) {
                        c.answering = Some(false);
                    }
                    self.lose(now, out);
                }
            }
        }
        if let Some(at) = self.secondary_at {
            if at <= now && self.current.is_some() {
                self.secondary_at = None;
                let mut s2 = self.new_solicit(self.cfg.server2, false, now);
                Self::send_rs(&mut s2, now, out);
                self.secondary = Some(s2);
            }
        }
        for which in 1..=2u8 {
            let slot = if which == 1 {
                &mut self.secondary
            } else {
                &mut self.cone_probe
            };
            if let Some(mut s) = *slot {
                if s.next <= now {
                    let max = if which == 1 {
                        RS_ATTEMPTS
                    } else {
                        CONE_PROBE_ATTEMPTS
                    };
                    if s.attempts < max {
                        Self::send_rs(&mut s, now, out);
                        *slot = Some(s);
                    } else {
                        *slot = None;
                        if which == 1 {
                            self.nat_probe.secondary = Some(None);
                        } else {
                            self.nat_probe.cone = Some(false);
                            // Now the secondary address. The unanswered test
                            // left a connection-tracking entry in a Linux NAT
                            // for that address and our mapped port: such a
                            // NAT (port-preserving, per destination) now shows
                            // another port, which is what tells it apart.
                            self.secondary_at = Some(now);
                        }
                        self.decide_nat(out);
                    }
                }
            }
        }
        if let (Some(d), Some(_)) = (&mut self.discovery, self.current) {
            if d.due(now) {
                self.fwd.send_discovery_bubble(out);
            }
        }
        self.fwd.handle_timeout(now, out);
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        let mut t = self.fwd.poll_timeout();
        let mut consider = |x: Option<Instant>| {
            if let Some(x) = x {
                t = Some(t.map_or(x, |t| t.min(x)));
            }
        };
        // Without a server, nothing is due (the round starts when one is
        // given).
        consider(self.retry_at.filter(|_| self.has_server()));
        consider(self.next_refresh);
        consider(self.primary.map(|s| s.next));
        for h in &self.hunt {
            consider(h.solicit.map(|s| s.next));
        }
        consider(self.hunt_decide_at);
        consider(self.secondary.map(|s| s.next));
        consider(self.cone_probe.map(|s| s.next));
        consider(self.secondary_at);
        // Discovery runs only while qualified: its timer then too (a stale
        // one would make the caller spin until requalification).
        consider(
            self.current
                .and(self.discovery.as_ref().and_then(|d| d.poll_timeout())),
        );
        t
    }

    pub(super) fn schedule_refresh(&mut self, now: Instant) {
        // RFC 4380 5.2: the randomized refresh interval is 75 % to 100 % of
        // the refresh interval.
        let base = self.cfg.refresh_interval;
        let jitter = u64::from(self.rng.next_u32() % 1000);
        let d = base.mul_f64(0.75) + base.mul_f64(0.25).mul_f64(jitter as f64 / 1000.0);
        self.next_refresh = Some(now + d);
    }

    /// Forgets the qualification (server lost or servers changed).
    pub(super) fn lose(&mut self, now: Instant, out: &mut Vec<Output>) {
        if let Some(q) = self.current.take() {
            out.push(Output::Event(Event::ServerLost { old: q.addr }));
        }
        self.fwd.set_identity(None);
        self.fwd.set_inbound_mapping(false);
        self.primary = None;
        self.secondary = None;
        self.cone_probe = None;
        self.secondary_at = None;
        self.next_refresh = None;
        self.state = ClientState::Probing;
        self.retry_at = Some(now);
    }
}
