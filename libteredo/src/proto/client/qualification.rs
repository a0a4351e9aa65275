//! Qualification (RFC 4380 5.2.1, 5.2.2): router solicitations to the
//! server, each with a nonce of ours, repeated every 4 s up to 3 times;
//! the router advertisement that answers one, checked (our nonce, the
//! origin indication, one /64 Teredo prefix we may use, naming a global
//! server); our address made of it with random flags (RFC 5991); then the
//! NAT tests: the cone bit, then the secondary server address (RFC 4380
//! 5.2.1, with the finer classes of RFC 6081).

use super::{Client, ClientState, HuntSlot, NatProbe, Offer, Qualification, Solicit};
use super::{DEFAULT_MTU, MAX_SEQUENTIAL_STEP, MIN_BACKOFF, RS_TIMEOUT};
use super::{HUNT_GRACE, RS_ATTEMPTS};
use crate::addr::{self, TeredoAddr, LINK_LOCAL_CONE, LINK_LOCAL_RESTRICTED, TEREDO_PORT};
use crate::proto::forward::ClientIdentity;
use crate::proto::output::{Event, NatBehaviour, Output, Transmit};
use crate::proto::stats::DropReason;
use crate::wire::icmpv6::{self, Icmpv6Repr, RouterAdvert};
use crate::wire::ipv6::next_header;
use crate::wire::teredo::{Auth, TeredoPacket};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV4};
use std::time::Instant;

/// A router solicitation as a Teredo datagram (RFC 4380 5.2.1): the
/// authentication header with `nonce` (no client identifier), then the
/// solicitation from `source` (a link-local address, with or without the
/// cone bit) to all routers.
pub fn solicitation_datagram(nonce: [u8; 8], source: Ipv6Addr) -> Vec<u8> {
    let mut payload = Vec::with_capacity(13 + 48);
    Auth {
        client_id: &[],
        auth_value: &[],
        nonce,
        confirmation: 0,
    }
    .emit(&mut payload);
    payload.extend_from_slice(&icmpv6::build_packet(
        source,
        addr::ALL_ROUTERS,
        255,
        &Icmpv6Repr::RouterSolicit,
    ));
    payload
}

impl Client {
    fn nonce(&mut self) -> [u8; 8] {
        let mut n = [0u8; 8];
        self.rng.fill(&mut n);
        n
    }

    pub(super) fn new_solicit(&mut self, server: Ipv4Addr, cone: bool, now: Instant) -> Solicit {
        Solicit {
            nonce: self.nonce(),
            server,
            cone,
            attempts: 0,
            next: now,
            sent: now,
            refusal_logged: false,
        }
    }

    /// Sends (or resends) a router solicitation.
    pub(super) fn send_rs(s: &mut Solicit, now: Instant, out: &mut Vec<Output>) {
        let src = if s.cone {
            LINK_LOCAL_CONE
        } else {
            LINK_LOCAL_RESTRICTED
        };
        let payload = solicitation_datagram(s.nonce, src);
        out.push(Output::Udp(Transmit {
            from: None,
            to: SocketAddrV4::new(s.server, TEREDO_PORT),
            payload,
            ecn: 0,
            ttl: None,
        }));
        s.attempts += 1;
        s.sent = now;
        s.next = now + RS_TIMEOUT;
        crate::proto::debuglog::debug_line!(
            "router solicitation to {}{} (attempt {} of {})",
            s.server,
            if s.cone {
                ", cone flag set (NAT test)"
            } else {
                ""
            },
            s.attempts,
            if s.cone {
                super::CONE_PROBE_ATTEMPTS
            } else {
                RS_ATTEMPTS
            }
        );
    }

    pub(super) fn handle_server_packet(
        &mut self,
        now: Instant,
        from: SocketAddrV4,
        pkt: &TeredoPacket<'_>,
        out: &mut Vec<Output>,
    ) {
        let ip = &pkt.ipv6;
        if ip.next_header() == next_header::ICMPV6 {
            if let Ok(Icmpv6Repr::RouterAdvert(ra)) =
                Icmpv6Repr::parse(&ip.src_addr(), &ip.dst_addr(), ip.payload())
            {
                self.handle_ra(now, from, pkt, &ra, out);
                return;
            }
        }
        if self.current.is_none() {
            self.server_said(
                from,
                "answers with a Teredo packet that is not a router advertisement".into(),
            );
        }
        if *from.ip() != self.cfg.server {
            self.fwd.stats.drop(DropReason::Unexpected);
            return;
        }
        // RFC 4380 5.2.3: anything from the server proves the mapping.
        if self.current.is_some() {
            self.last_server_rx = now;
        }
        let Some(me) = self.current else {
            self.fwd.stats.drop(DropReason::NotQualified);
            return;
        };
        if ip.dst_addr() != me.addr {
            self.fwd.stats.drop(DropReason::WrongDestination);
            return;
        }
        match pkt.origin {
            Some(origin) if ip.is_bubble() => {
                // A peer (client or relay) bubbled us through our server:
                // a direct bubble to its origin opens our NAT for it.
                self.fwd.stats.bubbles_received += 1;
                let tr = crate::wire::trailer::Trailer::parse(ip.trailer());
                self.fwd
                    .answer_indirect(now, origin.0, ip.src_addr(), &tr, out);
            }
            _ => self.fwd.stats.drop(DropReason::Unexpected),
        }
    }

    /// Which outstanding solicitation an RA answers, by nonce: 0 the
    /// qualification or maintenance one, 1 the secondary address's, 2 the
    /// cone test's, 3 + i the search's to candidate i.
    fn match_solicit(&self, nonce: &[u8; 8]) -> Option<usize> {
        [self.primary, self.secondary, self.cone_probe]
            .iter()
            .position(|s| s.is_some_and(|s| s.nonce == *nonce))
            .or_else(|| {
                self.hunt
                    .iter()
                    .position(|h| h.solicit.is_some_and(|s| s.nonce == *nonce))
                    .map(|i| i + 3)
            })
    }

    /// The outstanding solicitation [`Client::match_solicit`] named.
    fn solicit_mut(&mut self, which: usize) -> Option<&mut Solicit> {
        match which {
            0 => self.primary.as_mut(),
            1 => self.secondary.as_mut(),
            2 => self.cone_probe.as_mut(),
            i => self.hunt.get_mut(i - 3).and_then(|h| h.solicit.as_mut()),
        }
    }

    /// The candidate a solicitation went to, when it is a server of the
    /// list (qualification, maintenance or the search).
    fn candidate_of(
        &mut self,
        which: usize,
        server: Ipv4Addr,
    ) -> Option<&mut super::ServerCandidate> {
        match which {
            0 => self.candidates.iter_mut().find(|c| c.server == server),
            1 | 2 => None,
            i => self.candidates.get_mut(i - 3),
        }
    }

    /// Starts looking for a server: a solicitation to every server of the
    /// list at once.
    pub(super) fn start_hunt(&mut self, now: Instant, out: &mut Vec<Output>) {
        self.hunt.clear();
        self.hunt_decide_at = None;
        self.primary = None;
        for i in 0..self.candidates.len() {
            let mut s = self.new_solicit(self.candidates[i].server, false, now);
            Self::send_rs(&mut s, now, out);
            self.hunt.push(HuntSlot {
                solicit: Some(s),
                offer: None,
            });
        }
    }

    /// The search's timers: solicitations repeated, given up after the
    /// RFC's attempts, and the choice once due.
    pub(super) fn hunt_timeout(&mut self, now: Instant, out: &mut Vec<Output>) {
        let mut gave_up = false;
        for i in 0..self.hunt.len() {
            let Some(mut s) = self.hunt[i].solicit else {
                continue;
            };
            if s.next > now {
                continue;
            }
            if s.attempts < RS_ATTEMPTS {
                Self::send_rs(&mut s, now, out);
                self.hunt[i].solicit = Some(s);
            } else {
                self.hunt[i].solicit = None;
                if let Some(c) = self.candidates.get_mut(i) {
                    c.answering = Some(false);
                }
                gave_up = true;
            }
        }
        let due = self.hunt_decide_at.is_some_and(|t| t <= now);
        if gave_up || due {
            self.hunt_choose(now, due, out);
        }
    }

    /// Takes the most preferred server that answered once every server
    /// before it has been given up, or (`force`) once the grace after the
    /// first answer is over; fails the round when none answered and none is
    /// left to wait for.
    fn hunt_choose(&mut self, now: Instant, force: bool, out: &mut Vec<Output>) {
        let Some(best) = self.hunt.iter().position(|h| h.offer.is_some()) else {
            if self.hunt.iter().all(|h| h.solicit.is_none()) {
                // No server answered: offline, a new search later.
                self.hunt.clear();
                self.hunt_decide_at = None;
                self.state = ClientState::Offline;
                self.retry_at = Some(now + self.backoff);
                self.backoff = (self.backoff * 2).min(super::MAX_BACKOFF);
            }
            return;
        };
        let before_given_up = self.hunt[..best].iter().all(|h| h.solicit.is_none());
        if !(force || before_given_up) {
            if self.hunt_decide_at.is_none() {
                self.hunt_decide_at = Some(now + HUNT_GRACE);
            }
            return;
        }
        let Some(offer) = self.hunt[best].offer else {
            return;
        };
        // Those still outstanding are not waited for: no answer yet.
        for (i, h) in self.hunt.iter().enumerate() {
            if h.solicit.is_some() {
                if let Some(c) = self.candidates.get_mut(i) {
                    c.answering.get_or_insert(false);
                }
            }
        }
        self.hunt.clear();
        self.hunt_decide_at = None;
        let chosen = &self.candidates[best];
        (self.cfg.server, self.cfg.server2) = (chosen.server, chosen.server2);
        let previous = self.last_used.replace(chosen.server);
        let from = match previous {
            Some(p) if p != chosen.server => Some(p),
            None if best > 0 => self.candidates.first().map(|c| c.server),
            _ => None,
        };
        if let Some(from) = from {
            out.push(Output::Event(crate::proto::output::Event::ServerChanged {
                from,
                to: chosen.server,
            }));
        }
        self.qualified(
            now,
            offer.prefix,
            offer.prefix_server,
            offer.mapped,
            offer.mtu,
            out,
        );
    }

    fn handle_ra(
        &mut self,
        now: Instant,
        from: SocketAddrV4,
        pkt: &TeredoPacket<'_>,
        ra: &RouterAdvert,
        out: &mut Vec<Output>,
    ) {
        // RFC 4380 5.2.1, 5.2.2: the nonce must be ours, the origin
        // indication present, the destination our link-local, exactly one
        // prefix, and that prefix a Teredo prefix of our server, inside the
        // Teredo prefix we may use.
        let (Some(auth), Some(origin)) = (pkt.auth, pkt.origin) else {
            self.fwd.stats.drop(DropReason::Unexpected);
            return;
        };
        let Some(which) = self.match_solicit(&auth.nonce) else {
            self.fwd.stats.drop(DropReason::Spoofed);
            return;
        };
        let Some(solicit) = self.solicit_mut(which).map(|s| *s) else {
            return;
        };
        let rtt = now.saturating_duration_since(solicit.sent);
        let expect_dst = if solicit.cone {
            LINK_LOCAL_CONE
        } else {
            LINK_LOCAL_RESTRICTED
        };
        let prefix_server = ra.prefix.map(|p| {
            let o = p.prefix.octets();
            Ipv4Addr::new(o[4], o[5], o[6], o[7])
        });
        let prefix = ra.prefix.map(|p| {
            let o = p.prefix.octets();
            u32::from_be_bytes([o[0], o[1], o[2], o[3]])
        });
        let allowed = self.cfg.allowed_prefix;
        let refusal = if pkt.ipv6.dst_addr() != expect_dst {
            Some((
                DropReason::Unexpected,
                format!("addressed to {}, not to {expect_dst}", pkt.ipv6.dst_addr()),
            ))
        } else if ra.prefix_count != 1 {
            Some((
                DropReason::Unexpected,
                format!("{} prefixes, not exactly one", ra.prefix_count),
            ))
        } else if ra.prefix.is_some_and(|p| p.prefix_len != 64) {
            Some((
                DropReason::Unexpected,
                "a prefix that is not a /64".to_string(),
            ))
        } else if let Some(p) = prefix.filter(|p| *p != allowed) {
            // The address would lie outside the prefix the daemon may
            // configure (miredo-privproc refuses it): a server we cannot
            // use, as if it did not answer, so the retries and the next
            // rounds go on.
            Some((
                DropReason::ForeignPrefix,
                format!(
                    "it advertises the Teredo prefix {}, and this client may only \
                     take an address in {}",
                    prefix32(p),
                    prefix32(allowed)
                ),
            ))
        } else if !prefix_server.is_some_and(addr::is_global_unicast_v4) {
            // Peers will bubble us through the server the prefix names (the
            // C server names its primary address, whichever we solicited;
            // the RA is authenticated by our nonce): it must be global.
            Some((
                DropReason::Unexpected,
                format!(
                    "a prefix naming {}, not a global unicast server address",
                    prefix_server.map_or("nothing".to_string(), |a| a.to_string())
                ),
            ))
        } else if auth.confirmation != 0 {
            Some((
                DropReason::Unexpected,
                "a non-zero confirmation byte (secure qualification is not configured)".to_string(),
            ))
        } else {
            None
        };
        if let Some((reason, why)) = refusal {
            // Our nonce: the server's own answer, and unusable; say why,
            // once per solicitation round (each repetition is answered
            // alike). The solicitation stays outstanding: unanswered, it
            // fails like a silent server's.
            self.fwd.stats.drop(reason);
            if let Some(s) = self.solicit_mut(which).filter(|s| !s.refusal_logged) {
                s.refusal_logged = true;
                log::warn!("router advertisement from {from} refused: {why}");
            }
            if let Some(c) = self.candidate_of(which, solicit.server) {
                c.problem = Some(why);
            }
            return;
        }
        // A non-cone RS is answered from the address it went to.
        if !solicit.cone && *from.ip() != solicit.server {
            self.fwd.stats.drop(DropReason::Spoofed);
            return;
        }
        let mapped = origin.0;
        if !addr::is_global_unicast_v4(*mapped.ip()) {
            self.fwd.stats.drop(DropReason::NotGlobal);
            return;
        }
        crate::proto::debuglog::debug_line!(
            "router advertisement from {from}: mapped {mapped}, prefix {}, round-trip {:.1} ms",
            prefix.map_or("none".to_string(), prefix32),
            rtt.as_secs_f64() * 1000.0
        );
        if let Some(c) = self.candidate_of(which, solicit.server) {
            c.answering = Some(true);
            c.rtt = Some(rtt);
            c.last_heard = Some(now);
            c.problem = None;
        }
        let mtu = ra
            .mtu
            .and_then(|m| u16::try_from(m).ok())
            .filter(|m| *m >= 1280)
            .unwrap_or(DEFAULT_MTU);
        match which {
            0 => {
                let Some(prefix) = prefix else { return };
                self.primary = None;
                let server = prefix_server.unwrap_or(self.cfg.server);
                self.last_used = Some(self.cfg.server);
                self.qualified(now, prefix, server, mapped, mtu, out);
            }
            i if i >= 3 => {
                let Some(prefix) = prefix else { return };
                let Some(h) = self.hunt.get_mut(i - 3) else {
                    return;
                };
                h.solicit = None;
                h.offer = Some(Offer {
                    prefix,
                    prefix_server: prefix_server.unwrap_or(solicit.server),
                    mapped,
                    mtu,
                });
                self.hunt_choose(now, false, out);
            }
            1 => {
                self.secondary = None;
                self.nat_probe.secondary = Some(Some(mapped));
                self.decide_nat(out);
            }
            _ => {
                self.cone_probe = None;
                self.nat_probe.cone = Some(true);
                self.decide_nat(out);
            }
        }
    }

    /// A valid answer to the qualification or maintenance solicitation.
    fn qualified(
        &mut self,
        now: Instant,
        prefix: u32,
        prefix_server: Ipv4Addr,
        mapped: SocketAddrV4,
        mtu: u16,
        out: &mut Vec<Output>,
    ) {
        self.last_server_rx = now;
        self.state = ClientState::Qualified;
        self.retry_at = None;
        self.backoff = MIN_BACKOFF;
        self.schedule_refresh(now);
        if let Some(q) = self.current {
            if q.mapped == mapped && q.prefix == prefix && q.mtu == mtu && q.server == prefix_server
            {
                return; // Maintenance: nothing changed.
            }
        }
        // A new mapping: a new address, with new random flags (RFC 5991),
        // never the cone bit.
        let flags = addr::random_flags(self.rng.next_u32() as u16);
        let addr = TeredoAddr {
            prefix,
            server: prefix_server,
            flags,
            mapped_port: mapped.port(),
            mapped_addr: *mapped.ip(),
        }
        .to_ipv6();
        let old = self.current.map(|q| q.addr);
        if let Some(q) = self.current {
            if q.mapped == mapped && q.prefix == prefix && q.server == prefix_server {
                // Only the MTU changed: keep the address.
                self.current = Some(Qualification { mtu, ..q });
                out.push(Output::Event(Event::Qualified {
                    addr: q.addr,
                    old: None,
                    mapped,
                    mtu,
                    nat: self.nat,
                }));
                return;
            }
        }
        let q = Qualification {
            addr,
            mapped,
            mtu,
            prefix,
            server: prefix_server,
        };
        self.current = Some(q);
        self.fwd.set_identity(Some(ClientIdentity {
            addr,
            server: self.cfg.server,
            mapped,
        }));
        self.fwd.set_prefix(prefix);
        self.fwd.set_behind_cone(self.behaves_as_cone());
        self.fwd.set_inbound_mapping(self.port_mapping_in_use());
        out.push(Output::Event(Event::Qualified {
            addr,
            old,
            mapped,
            mtu,
            nat: self.nat,
        }));
        // Learn the NAT's behaviour (reported, never fatal). First the cone
        // test: an RS with the cone bit, answered from the other server
        // address. Only then the secondary address: had we sent to it
        // first, a restricted NAT would let its answer to the cone test in.
        self.nat_probe = NatProbe::default();
        self.secondary = None;
        self.secondary_at = None;
        let mut c = self.new_solicit(self.cfg.server, true, now);
        Self::send_rs(&mut c, now, out);
        self.cone_probe = Some(c);
        if let Some(d) = &mut self.discovery {
            d.qualified(now);
        }
    }

    /// The NAT's behaviour from the tests (RFC 4380 5.2.1, with the finer
    /// classes of RFC 6081): the cone test answered: cone; the secondary
    /// address sees the same mapping: restricted; another port: symmetric,
    /// port-preserving when the first mapping kept our local port,
    /// sequential when the second port follows the first closely, random
    /// otherwise.
    pub(super) fn decide_nat(&mut self, out: &mut Vec<Output>) {
        let Some(current) = self.current.map(|q| q.mapped) else {
            return;
        };
        let nat = match (self.nat_probe.cone, self.nat_probe.secondary) {
            // The server sees our own endpoint: there is no NAT.
            (Some(true), _) if self.cfg.local == Some(current) => NatBehaviour::None,
            (Some(true), _) => NatBehaviour::Cone,
            (Some(false), Some(Some(m))) if m == current => NatBehaviour::Restricted,
            (Some(false), Some(Some(m))) => {
                let step = m.port().wrapping_sub(current.port());
                if self.cfg.local.is_some_and(|l| l.port() == current.port()) {
                    NatBehaviour::PortPreservingSymmetric
                } else if m.ip() == current.ip() && step > 0 && step <= MAX_SEQUENTIAL_STEP {
                    NatBehaviour::SequentialSymmetric
                } else {
                    NatBehaviour::RandomSymmetric
                }
            }
            (Some(false), Some(None)) => NatBehaviour::Unknown,
            _ => return, // Not decided yet.
        };
        // A sequential NAT gives the next new mapping (our first direct
        // bubble to a new peer) the port after the secondary's.
        let prediction = match (nat, self.nat_probe.secondary) {
            (NatBehaviour::SequentialSymmetric, Some(Some(m))) => {
                let step = m.port().wrapping_sub(current.port());
                Some((m.port().wrapping_add(step), step))
            }
            _ => None,
        };
        self.fwd.set_port_prediction(prediction);
        self.nat = nat;
        self.fwd.set_behind_cone(self.behaves_as_cone());
        self.fwd.set_inbound_mapping(self.port_mapping_in_use());
        out.push(Output::Event(Event::NatObserved(nat)));
    }
}

/// A Teredo prefix given by its first 32 bits, as `2001::/32`.
fn prefix32(prefix: u32) -> String {
    format!("{}/32", Ipv6Addr::from(u128::from(prefix) << 96))
}
