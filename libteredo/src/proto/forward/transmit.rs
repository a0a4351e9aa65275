//! Transmission (RFC 4380 5.2.4 for a client, 5.4.1 for a relay): an IPv6
//! packet from the host goes straight to a trusted peer, or waits in the
//! peer's queue while bubbles (a Teredo peer) or a connectivity test (a
//! native peer, through its relay) make the path; what is queued leaves
//! once the peer answers.

use super::connectivity::held_inbound;
use super::{Forwarder, Role, PEER_VALIDITY};
use crate::addr::{self, TeredoAddr};
use crate::proto::ecn;
use crate::proto::output::Output;
use crate::proto::stats::DropReason;
use crate::wire::icmpv6::unreachable_code;
use crate::wire::ipv6::Ipv6Packet;
use crate::wire::trailer::{self, Trailer};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV4};
use std::time::Instant;

impl Forwarder {
    /// Handles an IPv6 packet the host wants sent over Teredo.
    pub(crate) fn handle_tun(&mut self, now: Instant, pkt: &[u8], out: &mut Vec<Output>) {
        self.stats.tun_rx_packets += 1;
        self.stats.tun_rx_bytes += pkt.len() as u64;
        let Ok(ip) = Ipv6Packet::new_checked(pkt) else {
            self.stats.drop(DropReason::Malformed);
            return;
        };
        if !ip.trailer().is_empty() {
            self.stats.drop(DropReason::Malformed);
            return;
        }
        let (src, dst) = (ip.src_addr(), ip.dst_addr());
        if dst.is_multicast() || !addr::is_global_v6(&dst) {
            // Neighbour discovery and other link traffic has nowhere to go.
            self.stats.drop(DropReason::NotGlobal);
            return;
        }
        match self.role {
            Role::Client => {
                let Some(me) = self.me else {
                    self.stats.drop(DropReason::NotQualified);
                    self.unreachable(now, unreachable_code::NO_ROUTE, pkt, out);
                    return;
                };
                if src != me.addr {
                    self.stats.drop(DropReason::WrongSource);
                    return;
                }
            }
            Role::Relay => {
                if self.teredo(&src).is_some() {
                    // Teredo to Teredo never goes through a relay.
                    self.stats.drop(DropReason::WrongSource);
                    return;
                }
            }
        }
        match self.teredo(&dst) {
            Some(t) => self.transmit_teredo(now, &src, &dst, &t, pkt, out),
            None if self.role == Role::Client => self.transmit_native(now, &dst, pkt, out),
            None => {
                self.stats.drop(DropReason::NotTeredo);
                self.unreachable(now, unreachable_code::NO_ROUTE, pkt, out);
            }
        }
    }

    /// RFC 4380 5.2.4 cases 1, 3 and 5; 5.4.1.
    fn transmit_teredo(
        &mut self,
        now: Instant,
        src: &Ipv6Addr,
        dst: &Ipv6Addr,
        t: &TeredoAddr,
        pkt: &[u8],
        out: &mut Vec<Output>,
    ) {
        let s = self.peers.stamp(now);
        if let Some(p) = self.peers.get_mut(dst).filter(|p| p.trusted) {
            let fresh = s.elapsed_since(p.last_rx) < PEER_VALIDITY;
            let endpoint = p.endpoint;
            let peer_ext = p.ext;
            let quiet = fresh || p.local;
            if quiet {
                p.last_tx = s;
            }
            self.peers.touch(dst, now);
            if !quiet {
                // Still send (nothing is lost), and renew the trust with
                // bubbles, before the data: the bubble limits count from
                // the last transmission.
                if self.bubble_allowed(dst, now) {
                    if peer_ext && self.ext() {
                        // RFC 6081 server load reduction: a direct
                        // solicitation, no indirect bubble.
                        let tr = Trailer {
                            neighbor_discovery: Some(trailer::discovery::SOLICITATION),
                            ..self.trailer_for(Some(t), None)
                        };
                        let b = Self::bubble_with(self.bubble_source(dst), *dst, &tr);
                        out.push(Self::udp(endpoint, b, 0));
                        self.stats.bubbles_sent += 1;
                    } else {
                        self.send_bubbles(dst, t, out);
                    }
                }
                if let Some(p) = self.peers.get_mut(dst) {
                    p.last_tx = s;
                }
            }
            self.emit_copy(endpoint, pkt, out);
            return;
        }
        // RFC 4380 5.2.4: never send to a non-global mapped IPv4 (nor to a
        // non-global server) unless the peer is trusted (local discovery).
        if !t.is_valid_peer() {
            self.stats.drop(DropReason::NotGlobal);
            return;
        }
        if self.role == Role::Relay {
            // A new destination, or one held so far: admission by tiers
            // (the source is the native /64).
            let packets = match self.peers.get(dst) {
                None => Some(1),
                Some(p) if p.held => Some(p.held_packets.saturating_add(1)),
                Some(_) => None,
            };
            if let Some(packets) = packets {
                let o = src.octets();
                let admitted = self.admission.admit(now, &o[..8], packets);
                let Some(p) = self
                    .peers
                    .insert_untrusted(*dst, t.mapped(), now, !admitted)
                else {
                    self.stats.drop(DropReason::PeersFull);
                    return;
                };
                p.held_packets = packets;
                if packets > 1 && admitted {
                    p.held = false;
                    self.stats.peers_admitted_late += 1;
                } else if packets == 1 && !admitted {
                    self.stats.peers_held += 1;
                }
                self.peers.touch(dst, now);
                if !self.peers.enqueue(dst, pkt) {
                    self.stats.drop(DropReason::QueueFull);
                }
                if !admitted {
                    // Held: the packet waits, no bubble goes out.
                    return;
                }
                if self.bubble_allowed(dst, now) {
                    self.send_bubbles(dst, t, out);
                }
                self.schedule_retry(*dst, now);
                return;
            }
        }
        let local = self.peers.get(dst).is_some_and(|p| p.local);
        if self
            .peers
            .insert_untrusted(*dst, t.mapped(), now, false)
            .is_none()
        {
            self.stats.drop(DropReason::PeersFull);
            return;
        }
        self.peers.touch(dst, now);
        if !self.peers.enqueue(dst, pkt) {
            self.stats.drop(DropReason::QueueFull);
        }
        if local {
            // RFC 4380 5.2.4 case 3: a unicast bubble to the local endpoint
            // and a discovery bubble.
            if let Some(endpoint) = self.peers.get(dst).map(|p| p.endpoint) {
                if self.bubble_local(now, dst, endpoint, out) {
                    self.send_discovery_bubble(out);
                }
            }
            return;
        }
        if self.bubble_allowed(dst, now) {
            self.send_bubbles(dst, t, out);
        }
        self.schedule_retry(*dst, now);
    }

    /// RFC 4380 5.2.4 case 2: a native IPv6 destination from a client.
    fn transmit_native(&mut self, now: Instant, dst: &Ipv6Addr, pkt: &[u8], out: &mut Vec<Output>) {
        let s = self.peers.stamp(now);
        if let Some(p) = self
            .peers
            .get_mut(dst)
            .filter(|p| p.trusted && s.elapsed_since(p.last_rx) < PEER_VALIDITY)
        {
            let endpoint = p.endpoint;
            p.last_tx = s;
            self.peers.touch(dst, now);
            self.emit_copy(endpoint, pkt, out);
            return;
        }
        let unspecified = SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0);
        let trusted_stale = self.peers.get(dst).is_some_and(|p| p.trusted);
        let Some(p) = self.peers.insert_untrusted(*dst, unspecified, now, false) else {
            self.stats.drop(DropReason::PeersFull);
            return;
        };
        if trusted_stale {
            // A relay that served us but went quiet: test again, and keep
            // sending through it meanwhile. What we send it does not count
            // as a transmission for the test's limits (2 s apart, 4
            // unanswered in 300 s): under steady traffic a lost test would
            // otherwise never be repeated, and a relay that died (one of an
            // anycast farm) would keep taking our packets for good.
            let endpoint = p.endpoint;
            if self.bubble_allowed(dst, now) && self.ping_limit.take(now) {
                self.send_ping_test(dst, out);
            }
            self.peers.touch(dst, now);
            self.emit_copy(endpoint, pkt, out);
            return;
        }
        self.peers.touch(dst, now);
        if !self.peers.enqueue(dst, pkt) {
            self.stats.drop(DropReason::QueueFull);
        }
        if self.ping_limit.take(now) && self.bubble_allowed(dst, now) {
            self.send_ping_test(dst, out);
        }
        self.schedule_retry(*dst, now);
    }

    /// Sends what is queued for `peer` to its endpoint.
    pub(super) fn flush_queue(&mut self, peer: &Ipv6Addr, now: Instant, out: &mut Vec<Output>) {
        self.flush_queue_proven(peer, now, None, out);
    }

    /// Sends what is queued for `peer` to its endpoint. Packets from the
    /// peer held while `proven` was being tested (`test_endpoint`) reach
    /// the host when they came from `proven`; other held ones are dropped.
    pub(super) fn flush_queue_proven(
        &mut self,
        peer: &Ipv6Addr,
        now: Instant,
        proven: Option<SocketAddrV4>,
        out: &mut Vec<Output>,
    ) {
        // One lookup when nothing waits (the usual case), two otherwise.
        let queued = self.peers.dequeue_all(peer);
        if queued.is_empty() {
            return;
        }
        let s = self.peers.stamp(now);
        let Some(p) = self.peers.get_mut(peer) else {
            return;
        };
        p.last_tx = s;
        let endpoint = p.endpoint;
        for pkt in queued {
            match held_inbound(&pkt) {
                None => self.emit_data(endpoint, pkt, out),
                Some((from, p)) if Some(from) == proven => {
                    // The outer ECN field of the held datagram is gone.
                    let ecn = std::mem::replace(&mut self.rx_ecn, ecn::NOT_ECT);
                    if let Ok(ip) = Ipv6Packet::new_checked(p) {
                        self.deliver(&ip, out);
                    }
                    self.rx_ecn = ecn;
                }
                Some(_) => self.stats.drop(DropReason::Spoofed),
            }
        }
    }

    /// `emit_data` of a copy of `pkt` in a recycled buffer.
    fn emit_copy(&mut self, to: SocketAddrV4, pkt: &[u8], out: &mut Vec<Output>) {
        let b = self.packet_buf(pkt);
        self.emit_data(to, b, out);
    }

    fn emit_data(&mut self, to: SocketAddrV4, pkt: Vec<u8>, out: &mut Vec<Output>) {
        // RFC 9601 / RFC 6040 normal mode: the inner ECN field goes to the
        // outer header.
        let ecn = Ipv6Packet::new_checked(&pkt[..]).map_or(0, |p| ecn::encapsulate(p.ecn()));
        out.push(Self::udp(to, pkt, ecn));
    }
}
