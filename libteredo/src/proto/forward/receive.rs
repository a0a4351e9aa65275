//! Reception (RFC 4380 5.2.3 for a client, 5.4.2 for a relay): a Teredo
//! datagram from a peer, not from our server. A packet reaches the host
//! when its source is proven: a trusted entry's endpoint, the mapped
//! endpoint its Teredo address embeds, a local peer found by discovery,
//! or the answer to our connectivity test; anything else is dropped as
//! spoofed, or (a client, from a native source) delivered while a test
//! starts. Also: the checks every forwarded packet passes, and the ECN
//! field carried to the inner header (RFC 9601).

use super::{Forwarder, Received, Role, PEER_VALIDITY};
use crate::addr;
use crate::proto::ecn;
use crate::proto::output::Output;
use crate::proto::stats::DropReason;
use crate::wire::ipv6::{build_bubble, Ipv6Packet};
use crate::wire::teredo::TeredoPacket;
use std::net::SocketAddrV4;
use std::time::Instant;

impl Forwarder {
    /// Counts a datagram received on the Teredo port, whose outer IPv4
    /// header carried the ECN field `ecn` (RFC 9601), and parses it; a
    /// malformed one is counted as dropped.
    pub(crate) fn parse_datagram<'a>(
        &mut self,
        ecn: u8,
        bytes: &'a [u8],
    ) -> Option<TeredoPacket<'a>> {
        self.set_rx_ecn(ecn);
        self.stats.udp_rx_packets += 1;
        self.stats.udp_rx_bytes += bytes.len() as u64;
        let pkt = TeredoPacket::parse(bytes).ok();
        if pkt.is_none() {
            self.stats.drop(DropReason::Malformed);
        }
        pkt
    }

    /// Sets the ECN field of the outer header of the datagram being handled.
    fn set_rx_ecn(&mut self, ecn: u8) {
        self.rx_ecn = ecn & 0b11;
    }

    /// Handles a datagram from `from` that is not from our own server.
    /// `pkt` is already parsed. Returns what the embedding engine must do.
    pub(crate) fn handle_peer_packet(
        &mut self,
        now: Instant,
        from: SocketAddrV4,
        to_local: SocketAddrV4,
        pkt: &TeredoPacket<'_>,
        out: &mut Vec<Output>,
    ) -> Received {
        let ip = &pkt.ipv6;
        let (src, dst) = (ip.src_addr(), ip.dst_addr());
        if to_local.ip().is_multicast() {
            return Received::Discovery;
        }
        if !self.check_common(ip) {
            return Received::Done;
        }
        match self.role {
            Role::Client => {
                let Some(me) = self.me else {
                    self.stats.drop(DropReason::NotQualified);
                    return Received::Done;
                };
                if dst != me.addr {
                    self.stats.drop(DropReason::WrongDestination);
                    return Received::Done;
                }
            }
            Role::Relay => {
                // RFC 4380 5.4.2: forward only to what we serve: native
                // global IPv6. Bubbles (to our link-local) are fine too.
                let to_native = addr::is_global_v6(&dst) && self.teredo(&dst).is_none();
                if !to_native && !ip.is_bubble() {
                    self.stats.drop(DropReason::WrongDestination);
                    return Received::Done;
                }
            }
        }
        let s = self.peers.stamp(now);
        let src_teredo = self.teredo(&src);

        // Case 1: a trusted entry whose endpoint matches (or one a server
        // vouched for: a sequential NAT's predicted port, RFC 6081).
        let predicted =
            src_teredo.is_some_and(|t| *from.ip() == t.mapped_addr && from != t.mapped());
        if let Some(p) = self.peers.get_mut(&src) {
            if p.endpoint == from && (p.trusted || (predicted && !p.local)) {
                p.trusted = true;
                p.last_rx = s;
                p.bubbles = 0;
                // Known from the entry at hand: a packet from a peer with
                // nothing waiting costs no further lookup.
                let queued = p.has_queued();
                self.peers.touch(&src, now);
                if queued {
                    self.flush_queue(&src, now, out);
                }
                if ip.is_bubble() {
                    self.bubble_options(now, from, &src, ip, out);
                }
                self.deliver(ip, out);
                return Received::Done;
            }
        }

        // Case 2: the answer to our connectivity test, from the relay that
        // serves this native peer.
        if self.role == Role::Client && src_teredo.is_none() && self.peers.get(&src).is_some() {
            if let Some(true) = self.is_our_ping_reply(ip) {
                if let Some(p) = self.peers.get_mut(&src) {
                    p.trusted = true;
                    p.endpoint = from;
                    p.last_rx = s;
                    p.bubbles = 0;
                }
                self.peers.touch(&src, now);
                self.stats.ping_tests_ok += 1;
                self.flush_queue(&src, now, out);
                return Received::Done;
            }
        }

        if let Some(t) = src_teredo {
            if t.mapped() == from {
                // Case 3: the source address proves the endpoint.
                if !addr::is_global_unicast_v4(*from.ip()) {
                    // CVE-2006-6264: no peer behind a non-global address.
                    self.stats.drop(DropReason::NotGlobal);
                    return Received::Done;
                }
                if self.peers.get(&src).is_none()
                    && !self.new_peer_limit.take(now, &from.ip().octets())
                {
                    // One IPv4 source may not fill the table alone.
                    self.stats.drop(DropReason::RateLimited);
                    return Received::Done;
                }
                let p = self.peers.get_or_insert(src, from, now);
                let was_trusted = p.trusted;
                p.endpoint = from;
                p.trusted = true;
                p.local = false;
                p.last_rx = s;
                p.bubbles = 0;
                self.peers.touch(&src, now);
                self.flush_queue(&src, now, out);
                if ip.is_bubble() {
                    self.stats.bubbles_received += 1;
                    self.bubble_options(now, from, &src, ip, out);
                    if self.inbound_mapping && !was_trusted && self.bubble_reply_limit.take(now) {
                        // The peer came in through our mapping and waits
                        // for a direct packet of ours: this one leaves
                        // through the flow its bubble opened.
                        out.push(Self::udp(
                            from,
                            build_bubble(self.bubble_source(&src), src).to_vec(),
                            0,
                        ));
                        self.stats.bubbles_sent += 1;
                    }
                } else {
                    self.deliver(ip, out);
                }
                return Received::Done;
            }
            // Case 5: a local peer found by discovery.
            if let Some(p) = self.peers.get_mut(&src) {
                if p.local && p.endpoint == from {
                    p.trusted = true;
                    p.last_rx = s;
                    p.bubbles = 0;
                    self.peers.touch(&src, now);
                    self.flush_queue(&src, now, out);
                    if ip.is_bubble() {
                        self.stats.bubbles_received += 1;
                    } else {
                        self.deliver(ip, out);
                    }
                    return Received::Done;
                }
            }
            if ip.is_bubble() && self.learn_endpoint(now, from, &src, &t, ip, out) {
                return Received::Done;
            }
            if self.test_endpoint(now, from, &src, &t, ip, out) {
                return Received::Done;
            }
            // A Teredo source from the wrong endpoint: spoofed.
            self.stats.drop(DropReason::Spoofed);
            return Received::Done;
        }

        // Case 6: a native source through a relay we have not tested.
        match self.role {
            Role::Client if !ip.is_bubble() => {
                // RFC 4380 5.2.9: accept generously, send carefully: the
                // packet is delivered, but nothing is sent to `from` until a
                // connectivity test (started when we have something to send)
                // proves it serves `src`. If another relay served `src` so
                // far, it may be gone (restarted on another port): the
                // entry turns stale, so that our next packet both goes the
                // old way and tests the new one.
                if let Some(p) = self.peers.get_mut(&src) {
                    if p.trusted && p.endpoint != from {
                        p.last_rx = s.minus(PEER_VALIDITY);
                    }
                }
                self.deliver(ip, out);
            }
            _ => self.stats.drop(DropReason::UnknownPeer),
        }
        Received::Done
    }

    /// Checks every forwarded packet must pass: a well-formed extension
    /// chain and no routing header with segments left (CVE-2006-6263).
    fn check_common(&mut self, ip: &Ipv6Packet<&[u8]>) -> bool {
        match ip.upper_layer() {
            Err(_) => {
                self.stats.drop(DropReason::Malformed);
                false
            }
            Ok(u) if u.routing_segments_left => {
                self.stats.drop(DropReason::RoutingHeader);
                false
            }
            Ok(_) => true,
        }
    }

    /// Hands a packet to the TUN device (without any trailer).
    pub(super) fn deliver(&mut self, ip: &Ipv6Packet<&[u8]>, out: &mut Vec<Output>) {
        if ip.is_bubble() {
            self.stats.bubbles_received += 1;
            return;
        }
        let mut p = self.packet_buf(ip.packet());
        // RFC 9601 / RFC 6040: congestion marked on the outer header
        // reaches the inner one.
        if self.rx_ecn != ecn::NOT_ECT {
            let inner = ip.ecn();
            match ecn::decapsulate(inner, self.rx_ecn) {
                None => {
                    self.stats.drop(DropReason::EcnNotCapable);
                    return;
                }
                Some(e) if e != inner => {
                    let mut v = Ipv6Packet::new_unchecked(&mut p[..]);
                    let tc = v.traffic_class();
                    v.set_traffic_class((tc & !0b11) | e);
                }
                Some(_) => {}
            }
        }
        self.stats.tun_tx_packets += 1;
        self.stats.tun_tx_bytes += p.len() as u64;
        out.push(Output::Tun(p));
    }
}
