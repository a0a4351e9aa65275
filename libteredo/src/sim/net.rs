//! Moving packets in the simulated network: what an engine outputs goes
//! out on the IPv4 side (through the sender's NAT, if any, with loss,
//! latency, ECN marking and a time to live), on the IPv6 core (to the
//! relay that announces 2001::/32, or to a native host) or to a client's
//! own kernel; each arrives at its node in order of its due time.

use super::echo::echo_reply;
use super::node::Engine;
use super::{LanId, NodeId, World};
use crate::proto::{Output, Random};
use crate::wire::ipv6::Ipv6Packet;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Instant;

/// A datagram in flight on the IPv4 side.
#[derive(Clone, Debug)]
pub(super) struct Datagram {
    src: SocketAddrV4,
    dst: SocketAddrV4,
    payload: Vec<u8>,
    /// The ECN field of the outer IPv4 header.
    ecn: u8,
    /// A time to live other than the default.
    ttl: Option<u8>,
    /// The sender's LAN, for multicast and hairpinning.
    lan: Option<LanId>,
}

#[derive(Clone, Debug)]
pub(super) enum InFlight {
    V4(Datagram),
    /// An IPv6 packet on the native core.
    V6(Vec<u8>),
    /// A packet for a client's own TUN (kernel answers).
    ClientTun(NodeId, Vec<u8>),
}

impl World {
    pub(super) fn schedule(&mut self, at: Instant, what: InFlight) {
        self.seq += 1;
        self.queue.insert((at, self.seq), what);
    }

    fn lost(&mut self) -> bool {
        self.loss > 0.0 && (self.rng.next_u32() as f64 / u32::MAX as f64) < self.loss
    }

    /// A node's engine output.
    pub(super) fn apply(&mut self, id: NodeId, outs: Vec<Output>) {
        for o in outs {
            match o {
                Output::Udp(t) => {
                    let node = &self.nodes[id];
                    let src_ip = t.from.map_or(node.addrs[0], |f| *f.ip());
                    let src = SocketAddrV4::new(src_ip, node.port);
                    let lan = node.lan;
                    self.sent
                        .entry(id)
                        .or_default()
                        .push((t.to, t.payload.clone()));
                    self.sent_ecn.entry(id).or_default().push(t.ecn);
                    self.send_v4_full(src, t.to, t.payload, lan, t.ecn, t.ttl);
                }
                Output::Tun(p) => match self.nodes[id].engine {
                    Engine::Client(_) => {
                        let at = self.now;
                        self.schedule(at, InFlight::ClientTun(id, p));
                    }
                    _ => {
                        let at = self.now + self.latency;
                        self.schedule(at, InFlight::V6(p));
                    }
                },
                Output::Event(e) => {
                    let t = self.elapsed();
                    let name = self.nodes[id].name.clone();
                    self.log(format!("{name}: event {e:?}"));
                    self.nodes[id].events.push((t, e));
                }
            }
        }
    }

    /// Sends a datagram from `src` (a node's own address, private or
    /// public) through its NAT, if any.
    pub fn send_v4(
        &mut self,
        src: SocketAddrV4,
        dst: SocketAddrV4,
        payload: Vec<u8>,
        lan: Option<LanId>,
    ) {
        self.send_v4_full(src, dst, payload, lan, 0, None);
    }

    /// [`World::send_v4`] with an outer ECN field and a time to live.
    fn send_v4_full(
        &mut self,
        src: SocketAddrV4,
        dst: SocketAddrV4,
        payload: Vec<u8>,
        lan: Option<LanId>,
        ecn: u8,
        ttl: Option<u8>,
    ) {
        if self.lost() {
            self.log(format!("lost {src} -> {dst}"));
            return;
        }
        let at = self.now + self.latency;
        self.schedule(
            at,
            InFlight::V4(Datagram {
                src,
                dst,
                payload,
                lan,
                ecn,
                ttl,
            }),
        );
    }

    /// The node at `ip:port` on `lan` (None: the Internet).
    fn node_at(&self, ip: Ipv4Addr, port: u16, lan: Option<LanId>) -> Option<NodeId> {
        self.nodes
            .iter()
            .position(|n| n.lan == lan && n.port == port && n.addrs.contains(&ip))
    }

    pub(super) fn deliver_v4(&mut self, d: Datagram) {
        let Datagram {
            mut src,
            dst,
            payload,
            lan,
            mut ecn,
            ttl,
        } = d;
        if self.mark_ce && ecn != 0 {
            ecn = 0b11;
        }
        // Multicast stays on the sender's LAN.
        if dst.ip().is_multicast() {
            let targets: Vec<NodeId> = (0..self.nodes.len())
                .filter(|&i| {
                    // Clients listen on the discovery group with a socket
                    // of their own (port 3544), whatever their service port.
                    let n = &self.nodes[i];
                    n.lan == lan
                        && matches!(n.engine, Engine::Client(_))
                        && src != SocketAddrV4::new(n.addrs[0], n.port)
                })
                .collect();
            for i in targets {
                self.log(format!("multicast {src} -> {dst} to node {i}"));
                self.node_udp(i, src, dst, &payload, ecn);
            }
            return;
        }
        // Leaving a NATed LAN: translate, unless the destination is on the
        // same LAN.
        if let Some(l) = lan {
            if let Some(id) = self.node_at(*dst.ip(), dst.port(), Some(l)) {
                self.node_udp(id, src, dst, &payload, ecn);
                return;
            }
            if let Some(nat) = self.lan_nat[l] {
                let is_hairpin = *dst.ip() == self.nats[nat].wan;
                if is_hairpin && !self.nats[nat].hairpin {
                    self.log(format!("nat {nat}: no hairpin, dropped {src} -> {dst}"));
                    return;
                }
                let now = self.now;
                let port = self.nats[nat].outbound(now, src, dst, &mut self.rng);
                src = SocketAddrV4::new(self.nats[nat].wan, port);
                // The NAT forwarded it (one hop); the Internet's router is
                // the next: a time to live of 2 or less dies there.
                if !self.flat_internet && ttl.is_some_and(|t| t <= 2) {
                    self.log(format!("ttl expired after nat {nat}: {src} -> {dst}"));
                    return;
                }
            }
        }
        // On the Internet: a public node, or a NAT's WAN address.
        if let Some(id) = self.node_at(*dst.ip(), dst.port(), None) {
            self.node_udp(id, src, dst, &payload, ecn);
            return;
        }
        if let Some(nat) = self.nats.iter().position(|n| n.wan == *dst.ip()) {
            let now = self.now;
            match self.nats[nat].inbound(now, src, dst.port()) {
                Some(internal) => {
                    let lan = self.nats[nat].lan;
                    match self.node_at(*internal.ip(), internal.port(), Some(lan)) {
                        Some(id) => self.node_udp(id, src, internal, &payload, ecn),
                        None => self.log(format!("nat {nat}: nobody at {internal}")),
                    }
                }
                None => self.log(format!("nat {nat}: filtered {src} -> {dst}")),
            }
            return;
        }
        self.stray.push((src, dst, payload));
    }

    fn node_udp(
        &mut self,
        id: NodeId,
        from: SocketAddrV4,
        to: SocketAddrV4,
        payload: &[u8],
        ecn: u8,
    ) {
        if !self.nodes[id].up {
            return;
        }
        let now = self.now;
        let mut out = Vec::new();
        self.nodes[id]
            .engine
            .handle_udp(now, from, to, ecn, payload, &mut out);
        self.apply(id, out);
    }

    /// The IPv6 core: Teredo destinations go to the relay; native ones to
    /// their host, which answers pings.
    pub(super) fn deliver_v6(&mut self, p: Vec<u8>) {
        let Ok(ip) = Ipv6Packet::new_checked(&p[..]) else {
            return;
        };
        let dst = ip.dst_addr();
        if dst.segments()[0] == 0x2001 && dst.segments()[1] == 0 {
            if let Some(r) = self.relay {
                let now = self.now;
                let mut out = Vec::new();
                if let Engine::Relay(relay) = &mut self.nodes[r].engine {
                    relay.handle_tun(now, &p, &mut out);
                }
                self.apply(r, out);
            }
            return;
        }
        if let Some(h) = self.natives.iter().position(|h| h.addr == dst) {
            self.natives[h].rx.push(p.clone());
            if let Some(reply) = echo_reply(&p) {
                let at = self.now + self.latency;
                self.schedule(at, InFlight::V6(reply));
            }
        }
    }

    /// A client's kernel: records what its TUN received and answers pings.
    pub(super) fn deliver_client_tun(&mut self, id: NodeId, p: Vec<u8>) {
        self.nodes[id].tun_rx.push(p.clone());
        if self.nodes[id].answers_pings {
            if let Some(reply) = echo_reply(&p) {
                self.client_send(id, reply);
            }
        }
    }

    /// The client's host sends an IPv6 packet through its Teredo interface.
    pub fn client_send(&mut self, id: NodeId, p: Vec<u8>) {
        let now = self.now;
        let mut out = Vec::new();
        self.client_mut(id).handle_tun(now, &p, &mut out);
        self.apply(id, out);
    }

    /// A native host sends an IPv6 packet into the core.
    pub fn native_send(&mut self, p: Vec<u8>) {
        let at = self.now + self.latency;
        self.schedule(at, InFlight::V6(p));
    }
}
