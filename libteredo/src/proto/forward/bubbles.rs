//! Bubbles (RFC 4380 5.2.6): the direct and indirect ones that open a
//! path to a Teredo peer within the limits of 5.2.6, the answer to a
//! peer's bubble relayed by a server with an origin indication (5.2.3,
//! 5.4.1) under admission, local ones to peers found by discovery (5.2.8),
//! and the RFC 6081 extensions: nonces, alternate addresses and predicted
//! ports in trailers, a peer's endpoint learnt from a proven bubble, and
//! server load reduction.

use super::{Forwarder, Role, BUBBLE_INTERVAL, BUBBLE_WINDOW, MAX_BUBBLES};
use crate::addr::{self, TeredoAddr, TEREDO_PORT};
use crate::proto::output::Output;
use crate::proto::siphash::siphash24;
use crate::proto::stats::DropReason;
use crate::wire::ipv6::{build_bubble, build_discovery_bubble, Ipv6Packet};
use crate::wire::trailer::{self, Trailer};
use std::net::{Ipv6Addr, SocketAddrV4};
use std::time::Instant;

impl Forwarder {
    /// The nonce of our indirect bubbles to `peer` (RFC 6081 4.2): a keyed
    /// hash, so nothing needs storing to check the echo.
    fn our_nonce(&self, peer: &Ipv6Addr) -> [u8; 4] {
        let mut data = [0u8; 17];
        data[0] = b'n';
        data[1..].copy_from_slice(&peer.octets());
        let h = siphash24(&self.ping_key, &data).to_be_bytes();
        [h[0], h[1], h[2], h[3]]
    }

    /// The trailer of a bubble to `peer`: `nonce`, and our alternate
    /// address when the peer is behind our NAT.
    pub(super) fn trailer_for(&self, t: Option<&TeredoAddr>, nonce: Option<[u8; 4]>) -> Trailer {
        let mut tr = Trailer {
            nonce,
            ..Trailer::default()
        };
        if let (Some(t), Some(l)) = (t, self.local) {
            if self.same_nat(t) {
                tr.alternates[0] = Some(l);
            }
        }
        tr
    }

    pub(super) fn bubble_with(src: Ipv6Addr, dst: Ipv6Addr, tr: &Trailer) -> Vec<u8> {
        let mut b = build_bubble(src, dst).to_vec();
        tr.emit(&mut b);
        b
    }

    /// The source of the bubbles we send to `peer`. A client's is its
    /// Teredo address. A relay's is a link-local address whose interface
    /// identifier is a keyed hash of the peer: the peer answers to it, which
    /// proves the answer came from whoever got our bubble, even from another
    /// port than its Teredo address says (a client behind a symmetric NAT).
    pub(super) fn bubble_source(&self, peer: &Ipv6Addr) -> Ipv6Addr {
        match self.me {
            Some(m) => m.addr,
            None => {
                let mut data = [0u8; 17];
                data[0] = b'r';
                data[1..].copy_from_slice(&peer.octets());
                let h = siphash24(&self.ping_key, &data).to_be_bytes();
                let mut o = [0u8; 16];
                o[0] = 0xfe;
                o[1] = 0x80;
                o[8..].copy_from_slice(&h);
                Ipv6Addr::from(o)
            }
        }
    }

    /// Whether the RFC 4380 5.2.6 limits let us send a bubble to `peer` now;
    /// if so, records it.
    pub(super) fn bubble_allowed(&mut self, peer: &Ipv6Addr, now: Instant) -> bool {
        let s = self.peers.stamp(now);
        let Some(p) = self.peers.get_mut(peer) else {
            return false;
        };
        let since = s.elapsed_since(p.last_tx);
        if since >= BUBBLE_WINDOW {
            p.bubbles = 0;
        }
        if p.bubbles > 0 && since < BUBBLE_INTERVAL {
            return false;
        }
        if p.bubbles >= MAX_BUBBLES {
            return false;
        }
        p.bubbles += 1;
        p.last_tx = s;
        true
    }

    /// Direct and indirect bubbles to the Teredo peer `dst` (RFC 4380 5.2.4
    /// case 5, 5.4.1 case 3: we ignore the cone bit, as RFC 5991 advises).
    pub(super) fn send_bubbles(&mut self, dst: &Ipv6Addr, t: &TeredoAddr, out: &mut Vec<Output>) {
        let src = self.bubble_source(dst);
        let server = SocketAddrV4::new(t.server, TEREDO_PORT);
        crate::proto::debuglog::debug_line!(
            "bubbles for {dst}: through its server {server}{}",
            if self.cfg.direct_bubbles && !self.behind_cone {
                format!(", and direct to {}", t.mapped())
            } else {
                String::new()
            }
        );
        let ext = self.ext();
        let (attempt, echo) = self
            .peers
            .get(dst)
            .map_or((1, None), |p| (p.bubbles, p.echo));
        if self.cfg.direct_bubbles && !self.behind_cone {
            let ttl = (ext && self.cfg.low_ttl > 0 && attempt <= 2).then_some(self.cfg.low_ttl);
            let b = if ext {
                Self::bubble_with(src, *dst, &self.trailer_for(Some(t), echo))
            } else {
                build_bubble(src, *dst).to_vec()
            };
            out.push(Self::udp_ttl(t.mapped(), b, 0, ttl));
            self.stats.bubbles_sent += 1;
        }
        if ext {
            // RFC 6081: our nonce (and alternate address, predicted port)
            // for a peer that speaks it, through a server that forwards
            // trailers; the plain one below is for every other server (the
            // C miredo-server drops a datagram with a trailer).
            let mut tr = self.trailer_for(Some(t), Some(self.our_nonce(dst)));
            tr.random_port = self.predicted.map(|(p, _)| p);
            out.push(Self::udp(server, Self::bubble_with(src, *dst, &tr), 0));
            self.stats.bubbles_sent += 1;
            if attempt == 1 {
                // A new peer: a sequential NAT will use the next port.
                if let Some((p, step)) = self.predicted {
                    self.predicted = Some((p.wrapping_add(step), step));
                }
            }
        }
        out.push(Self::udp(server, build_bubble(src, *dst).to_vec(), 0));
        self.stats.bubbles_sent += 1;
    }

    /// The options of a bubble from a trusted peer: a server-load-reduction
    /// solicitation is answered with an advertisement (RFC 6081).
    pub(super) fn bubble_options(
        &mut self,
        now: Instant,
        from: SocketAddrV4,
        src: &Ipv6Addr,
        ip: &Ipv6Packet<&[u8]>,
        out: &mut Vec<Output>,
    ) {
        if !self.ext() || ip.trailer().is_empty() {
            return;
        }
        let tr = Trailer::parse(ip.trailer());
        if tr.is_empty() {
            return;
        }
        if let Some(p) = self.peers.get_mut(src) {
            p.ext = true;
        }
        if tr.neighbor_discovery == Some(trailer::discovery::SOLICITATION)
            && self.bubble_reply_limit.take(now)
        {
            let t = self.teredo(src);
            let adv = Trailer {
                neighbor_discovery: Some(trailer::discovery::ADVERTISEMENT),
                ..self.trailer_for(t.as_ref(), None)
            };
            out.push(Self::udp(
                from,
                Self::bubble_with(self.bubble_source(src), *src, &adv),
                0,
            ));
            self.stats.bubbles_sent += 1;
        }
    }

    /// RFC 6081: a bubble from the peer's IPv4 address but another port than
    /// its Teredo address says (its NAT is symmetric, or a Linux NAT picked
    /// another port), or from a local address it advertised (hairpinning),
    /// is accepted when it proves itself: a client's by echoing the nonce of
    /// our indirect bubble, a relay's by being addressed to the link-local
    /// source of our bubble to that peer. The peer's endpoint becomes where
    /// it came from. Returns whether the bubble was taken.
    pub(super) fn learn_endpoint(
        &mut self,
        now: Instant,
        from: SocketAddrV4,
        src: &Ipv6Addr,
        t: &TeredoAddr,
        ip: &Ipv6Packet<&[u8]>,
        out: &mut Vec<Output>,
    ) -> bool {
        let tr = Trailer::parse(ip.trailer());
        let mut local = false;
        let proven = if *from.ip() == t.mapped_addr {
            addr::is_global_unicast_v4(*from.ip())
                && match self.role {
                    Role::Client => self.ext() && tr.nonce == Some(self.our_nonce(src)),
                    Role::Relay => ip.dst_addr() == self.bubble_source(src),
                }
        } else {
            // Hairpinning: behind our NAT, from an address it listed itself.
            local = true;
            self.ext() && self.same_nat(t) && tr.alternates().any(|a| a == from)
        };
        if !proven {
            return false;
        }
        let s = self.peers.stamp(now);
        let p = self.peers.get_or_insert(*src, from, now);
        p.endpoint = from;
        p.trusted = true;
        p.local = local;
        p.ext |= !tr.is_empty();
        p.last_rx = s;
        p.bubbles = 0;
        self.peers.touch(src, now);
        self.stats.bubbles_received += 1;
        self.stats.endpoints_learnt += 1;
        self.flush_queue(src, now, out);
        self.bubble_options(now, from, src, ip, out);
        // Tell the peer: it may be waiting for a packet from us at the
        // endpoint it was seen from.
        if self.role == Role::Client && self.bubble_reply_limit.take(now) {
            let echo = self.peers.get(src).and_then(|p| p.echo);
            let b = Self::bubble_with(
                self.bubble_source(src),
                *src,
                &self.trailer_for(Some(t), echo),
            );
            out.push(Self::udp(from, b, 0));
            self.stats.bubbles_sent += 1;
        }
        true
    }

    /// A bubble relayed by a server with an origin indication: a peer is
    /// trying to reach us; a direct bubble to the origin opens our NAT for
    /// it (RFC 4380 5.2.3, 5.4.1). With RFC 6081 the bubble's trailer adds:
    /// a nonce our direct bubbles echo (so the peer may learn our port if
    /// our NAT changes it), a random port to bubble as well, alternate
    /// addresses behind our own NAT to try; and a peer that speaks it gets
    /// an indirect bubble of ours too, so that its direct bubbles, proven by
    /// our nonce, reach us from whatever port its NAT gives them.
    pub(crate) fn answer_indirect(
        &mut self,
        now: Instant,
        origin: SocketAddrV4,
        peer: Ipv6Addr,
        tr: &Trailer,
        out: &mut Vec<Output>,
    ) {
        if !addr::is_global_unicast_v4(*origin.ip()) {
            self.stats.drop(DropReason::NotGlobal);
            return;
        }
        let t = self.teredo(&peer);
        if !self.admit_indirect(now, origin, peer, t.as_ref()) || !self.bubble_reply_limit.take(now)
        {
            self.stats.drop(DropReason::RateLimited);
            return;
        }
        let ext = self.ext() && !tr.is_empty() && t.is_some_and(|t| t.is_valid_peer());
        let src = self.bubble_source(&peer);
        if self.inbound_mapping && !self.peers.get(&peer).is_some_and(|p| p.trusted) {
            // A peer behind our own NAT is reached on the LAN (RFC 6081
            // hairpinning, below), where no flow of the NAT's is made.
            if let Some(t) = t.filter(|t| t.is_valid_peer() && !self.same_nat(t)) {
                // Through the peer's server, so that its answer comes in
                // through our mapping (see `inbound_mapping`).
                if self
                    .peers
                    .insert_untrusted(peer, t.mapped(), now, false)
                    .is_none()
                {
                    self.stats.drop(DropReason::PeersFull);
                    return;
                }
                if ext {
                    if let Some(p) = self.peers.get_mut(&peer) {
                        p.ext = true;
                        if tr.nonce.is_some() {
                            p.echo = tr.nonce;
                        }
                    }
                }
                self.peers.touch(&peer, now);
                if self.bubble_allowed(&peer, now) {
                    self.send_bubbles(&peer, &t, out);
                }
                return;
            }
        }
        if !ext {
            // Our server vouches that the peer is at `origin`: an entry
            // (untrusted) lets its packets from another port of that
            // address be tested (`test_endpoint`).
            if let Some(t) = t.filter(|t| {
                self.role == Role::Client && t.is_valid_peer() && t.mapped_addr == *origin.ip()
            }) {
                if self
                    .peers
                    .insert_untrusted(peer, t.mapped(), now, false)
                    .is_some()
                {
                    self.peers.touch(&peer, now);
                }
            }
            self.stats.bubbles_sent += 1;
            out.push(Self::udp(origin, build_bubble(src, peer).to_vec(), 0));
            return;
        }
        let Some(t) = t else { return };
        {
            let Some(p) = self.peers.insert_untrusted(peer, t.mapped(), now, false) else {
                self.stats.drop(DropReason::PeersFull);
                return;
            };
            p.ext = true;
            if tr.nonce.is_some() {
                p.echo = tr.nonce;
            }
        }
        self.peers.touch(&peer, now);
        let reply = Self::bubble_with(src, peer, &self.trailer_for(Some(&t), tr.nonce));
        out.push(Self::udp(origin, reply.clone(), 0));
        self.stats.bubbles_sent += 1;
        let trusted = self.peers.get(&peer).is_some_and(|p| p.trusted);
        if let Some(r) = tr.random_port.filter(|r| *r != 0 && *r != origin.port()) {
            // A sequential NAT's predicted port (RFC 6081): bubble it, and
            // expect the peer's packets from it.
            let at = SocketAddrV4::new(*origin.ip(), r);
            out.push(Self::udp(at, reply.clone(), 0));
            self.stats.bubbles_sent += 1;
            if !trusted && *origin.ip() == t.mapped_addr {
                if let Some(p) = self.peers.get_mut(&peer) {
                    p.endpoint = at;
                }
            }
        }
        if self.same_nat(&t) {
            // Hairpinning (RFC 6081): the peer is behind our NAT; try its
            // local addresses, and take its packets from the first.
            for (i, a) in tr.alternates().take(2).enumerate() {
                out.push(Self::udp(a, reply.clone(), 0));
                self.stats.bubbles_sent += 1;
                if i == 0 && !trusted {
                    if let Some(p) = self.peers.get_mut(&peer) {
                        p.endpoint = a;
                        p.local = true;
                    }
                }
            }
        }
        if !trusted && self.bubble_allowed(&peer, now) {
            self.send_bubbles(&peer, &t, out);
        }
    }

    /// Admission (see [`Admission`]) of a peer that reaches us through our
    /// server: the source is the origin's IPv4 address, and a peer refused
    /// is held, so that its next indirect bubble (RFC 4380 5.2.6: it
    /// repeats them) is a request of a higher tier. A peer with no Teredo
    /// address (a relay, whose bubbles come from a link-local address
    /// relays share) is held under a link-local address made of the origin.
    /// Returns whether to answer.
    fn admit_indirect(
        &mut self,
        now: Instant,
        origin: SocketAddrV4,
        peer: Ipv6Addr,
        t: Option<&TeredoAddr>,
    ) -> bool {
        let key = match t {
            Some(_) => peer,
            None => {
                let [a, b, c, d] = origin.ip().octets();
                let o = u16::from_be_bytes;
                Ipv6Addr::new(0xfe80, 0, 0, 0, 0xffff, o([a, b]), o([c, d]), origin.port())
            }
        };
        let packets = match self.peers.get(&key) {
            None => 1,
            Some(p) if p.held => p.held_packets.saturating_add(1),
            // Known: admitted before.
            Some(_) => return true,
        };
        if self.admission.admit(now, &origin.ip().octets(), packets) {
            if packets > 1 {
                self.stats.peers_admitted_late += 1;
                // The held entry goes: what follows makes the entry the
                // peer needs, if any.
                self.peers.remove(&key);
            }
            return true;
        }
        let endpoint = t.map_or(origin, |t| t.mapped());
        if let Some(p) = self.peers.insert_untrusted(key, endpoint, now, true) {
            p.held_packets = packets;
            if packets == 1 {
                self.stats.peers_held += 1;
            }
            self.peers.touch(&key, now);
        }
        false
    }

    /// A unicast bubble to a local peer (RFC 4380 5.2.8), within the
    /// bubble limits of 5.2.6. Returns whether it was sent.
    pub(super) fn bubble_local(
        &mut self,
        now: Instant,
        peer: &Ipv6Addr,
        to: SocketAddrV4,
        out: &mut Vec<Output>,
    ) -> bool {
        if !self.bubble_allowed(peer, now) {
            return false;
        }
        let bubble = build_bubble(self.bubble_source(peer), *peer);
        self.stats.bubbles_sent += 1;
        out.push(Self::udp(to, bubble.to_vec(), 0));
        true
    }

    /// A local discovery bubble (RFC 4380 5.2.8) from our Teredo address,
    /// to the discovery address; nothing before qualification.
    pub(crate) fn send_discovery_bubble(&mut self, out: &mut Vec<Output>) {
        if let Some(me) = self.me {
            out.push(Self::udp(
                SocketAddrV4::new(addr::DISCOVERY_ADDR, TEREDO_PORT),
                build_discovery_bubble(me.addr).to_vec(),
                0,
            ));
            self.stats.bubbles_sent += 1;
        }
    }

    /// A local peer that local discovery accepted (RFC 4380 5.2.8), heard
    /// at `from`: an entry whose endpoint is on our side of the NAT, and a
    /// unicast bubble in answer (5.2.3 case 4), at most one per 2 s.
    pub(crate) fn discovered(
        &mut self,
        now: Instant,
        peer: Ipv6Addr,
        from: SocketAddrV4,
        out: &mut Vec<Output>,
    ) {
        self.stats.bubbles_received += 1;
        let s = self.peers.stamp(now);
        let Some(p) = self.peers.insert_untrusted(peer, from, now, false) else {
            self.stats.drop(DropReason::PeersFull);
            return;
        };
        if !p.trusted {
            p.local = true;
            p.endpoint = from;
            p.last_rx = s;
        }
        self.peers.touch(&peer, now);
        self.bubble_local(now, &peer, from, out);
    }
}
