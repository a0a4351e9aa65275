//! The forwarding rules shared by Teredo clients and relays: packet
//! reception (RFC 4380 5.2.3, 5.4.2), transmission with queueing and
//! bubbles (5.2.4, 5.2.6, 5.4.1), the direct IPv6 connectivity test (5.2.9),
//! and ICMPv6 errors for what cannot be delivered.
//!
//! [`Forwarder`] is the shared core; [`Relay`] wraps it into the relay
//! engine, and the client engine ([`super::client`]) embeds it.

use super::admission::Admission;
use super::ecn;
use super::peers::{
    Handle, PeerTable, Stamp, DEFAULT_CAPACITY, DEFAULT_QUEUE_BYTES, DEFAULT_TOTAL_QUEUE_BYTES,
};
use super::ratelimit::{SourceLimiter, TokenBucket};
use super::siphash::siphash24;
use super::stats::{DropReason, Stats};
use super::{Output, Random, Transmit};
use crate::addr::{self, TeredoAddr, TEREDO_PORT, TEREDO_PREFIX};
use crate::wire::icmpv6::{self, unreachable_code, Icmpv6Repr};
use crate::wire::ipv6::{build_bubble, next_header, Ipv6Packet};
use crate::wire::teredo::TeredoPacket;
use crate::wire::trailer::{self, Trailer};
use std::collections::VecDeque;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV4};
use std::time::{Duration, Instant};

/// RFC 4380 5.2.6: at most one bubble per 2 s to a peer.
pub const BUBBLE_INTERVAL: Duration = Duration::from_secs(2);
/// RFC 4380 5.2.6: at most 4 bubbles without an answer ...
pub const MAX_BUBBLES: u8 = 4;
/// ... in 300 s.
pub const BUBBLE_WINDOW: Duration = Duration::from_secs(300);
/// RFC 4380 5.2.4: a peer entry is valid while the last reception is less
/// than 30 s old.
pub const PEER_VALIDITY: Duration = Duration::from_secs(30);
/// See [`ForwarderConfig::low_ttl`].
pub const LOW_TTL: u8 = 2;
/// Echo tests of endpoints a peer was heard from other than its Teredo
/// address says, per peer entry (see `Forwarder::test_endpoint`).
pub const MAX_ENDPOINT_TESTS: u8 = 8;

/// A packet from a peer held in its queue while an endpoint is tested
/// starts with this byte (an IPv6 packet starts with 0x6_), then the
/// endpoint it came from (address, port).
const HELD_MARK: u8 = 0;
const HELD_HEADER: usize = 7;

/// The endpoint and packet of a held packet from a peer; `None` for a
/// packet of ours waiting to go to the peer.
fn held_inbound(blob: &[u8]) -> Option<(SocketAddrV4, &[u8])> {
    let (h, p) = blob.split_first_chunk::<HELD_HEADER>()?;
    (h[0] == HELD_MARK).then(|| {
        let ip = Ipv4Addr::new(h[1], h[2], h[3], h[4]);
        (SocketAddrV4::new(ip, u16::from_be_bytes([h[5], h[6]])), p)
    })
}

/// Settings of the forwarding core.
#[derive(Clone, Debug)]
pub struct ForwarderConfig {
    /// The first 32 bits of Teredo addresses (2001:0000 by default).
    pub prefix: u32,
    pub peer_capacity: usize,
    pub queue_bytes: usize,
    pub total_queue_bytes: usize,
    /// ICMPv6 errors per second (burst the same).
    pub icmp_per_second: u32,
    /// Direct connectivity tests started per second.
    pub ping_tests_per_second: u32,
    /// Bubbles sent in answer to bubbles received, per second.
    pub bubble_replies_per_second: u32,
    /// Whether to send direct bubbles to a peer's mapped endpoint besides
    /// the indirect one through its server (RFC 4380 5.2.4 case 5, 5.4.1
    /// case 3). Needed behind a NAT (clients, `RelayType restricted`); a
    /// relay on a public address (`RelayType cone`) sends none: an
    /// unsolicited packet would only create a connection-tracking entry in
    /// the client's NAT, which then maps the client's answer to another
    /// port.
    pub direct_bubbles: bool,
    /// RFC 6081 extensions (clients): trailers with nonces, alternate
    /// addresses and random ports in bubbles, learning a peer's port from a
    /// proven direct bubble, hairpinning, server load reduction.
    pub rfc6081: bool,
    /// The IPv4 time to live of a client's first two direct bubbles to a
    /// peer (0: the system's default). A direct bubble exists to open our
    /// own NAT; one that also reaches the peer's NAT makes a Linux NAT
    /// (connection tracking) there map the peer's answer to another port,
    /// and neither side hears the other. 2 crosses our NAT and dies at the
    /// next router. Later attempts use the default, for hosts further than
    /// one hop from their NAT.
    pub low_ttl: u8,
    /// New peers one source may have admitted per second, in each tier of
    /// [`Admission`] (0: no limit): an IPv6 /64 on the native side of a
    /// relay, an IPv4 address on the UDP side. RFC 4380 7.3.3 leaves the
    /// defence of the peer list open; the table's cap bounds the memory,
    /// this keeps one source from taking every other's bubbles.
    pub new_peers_per_source_per_second: u32,
    /// New peers admitted per second, all sources together, in each tier
    /// (0: no limit).
    pub new_peers_per_second: u32,
}

impl Default for ForwarderConfig {
    fn default() -> Self {
        ForwarderConfig {
            prefix: TEREDO_PREFIX,
            peer_capacity: DEFAULT_CAPACITY,
            queue_bytes: DEFAULT_QUEUE_BYTES,
            total_queue_bytes: DEFAULT_TOTAL_QUEUE_BYTES,
            icmp_per_second: 20,
            ping_tests_per_second: 50,
            bubble_replies_per_second: 1000,
            direct_bubbles: true,
            rfc6081: true,
            low_ttl: LOW_TTL,
            new_peers_per_source_per_second: 100,
            new_peers_per_second: DEFAULT_NEW_PEERS_PER_SECOND,
        }
    }
}

/// The default of [`ForwarderConfig::new_peers_per_second`]: with up to
/// four bubbles (or two in pairs) per admitted peer, at most 4 tiers
/// times 500 admissions times 4 bubbles, 8,000 bubbles a second to
/// servers, whatever the flood.
pub const DEFAULT_NEW_PEERS_PER_SECOND: u32 = 500;

/// The identity of a qualified client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientIdentity {
    /// Our Teredo address.
    pub addr: Ipv6Addr,
    /// Our Teredo server.
    pub server: Ipv4Addr,
    /// Our mapped endpoint, as the server saw it.
    pub mapped: SocketAddrV4,
}

/// Which side of the protocol the forwarder serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    Relay,
    Client,
}

/// What a received datagram turned out to be, for the embedding engine.
#[derive(Debug, PartialEq, Eq)]
pub enum Received {
    /// Handled (delivered, dropped, or answered).
    Done,
    /// A local discovery bubble: the client's discovery logic decides.
    Discovery,
}

/// The forwarding core.
pub struct Forwarder {
    cfg: ForwarderConfig,
    epoch: Instant,
    pub peers: PeerTable,
    prefix: u32,
    role: Role,
    /// Set while a client is qualified.
    me: Option<ClientIdentity>,
    ping_key: [u8; 16],
    /// Peers with queued packets, in order of their next retry (all retries
    /// are `BUBBLE_INTERVAL` apart, so pushing at the back keeps the order).
    retries: VecDeque<Retry>,
    icmp_limit: TokenBucket,
    ping_limit: TokenBucket,
    bubble_reply_limit: TokenBucket,
    /// The outer ECN field of the datagram being handled.
    rx_ecn: u8,
    new_peer_limit: SourceLimiter,
    /// Which new peers get bubbles (see [`Admission`]).
    admission: Admission,
    /// Our local endpoint (the alternate address of RFC 6081 hairpinning).
    local: Option<SocketAddrV4>,
    /// The external port our NAT will probably give the next new mapping
    /// (sequential port-symmetric NAT, RFC 6081), and the step.
    predicted: Option<(u16, u16)>,
    /// Our NAT is a cone (a client that observed it): no direct bubble of
    /// ours is needed to open it (RFC 4380 5.2.4 case 5 sends one only
    /// behind a non-cone NAT), and one would make a Linux NAT in front of
    /// the peer map the peer's answer to another port.
    behind_cone: bool,
    /// A gateway's port mapping lets anyone reach our address, but our NAT
    /// may send our own new flows from other ports (a client's mapping in
    /// use, `Client::set_port_mapping`). A datagram of ours to a peer that
    /// has not come in through the mapping yet would leave from another
    /// port, be refused as spoofed, and make a Linux NAT drop the peer's
    /// later datagrams through the mapping (their connection tracking
    /// entries clash). So a peer is first made to come in: an indirect
    /// bubble of a peer is answered through its server, not directly; the
    /// peer's direct bubble then comes in through the mapping, and is
    /// answered directly, from the mapped port.
    inbound_mapping: bool,
    /// Buffers of packets handed out before, given back by the caller
    /// ([`Forwarder::recycle`]): the data paths copy their packets into
    /// these, so that a caller that gives them back allocates nothing per
    /// packet.
    spare: Vec<Vec<u8>>,
    pub stats: Stats,
}

/// Buffers [`Forwarder::recycle`] keeps at most.
const SPARE_BUFFERS: usize = 128;
/// A packet buffer's first capacity: a Teredo packet (the MTU is 1280)
/// with room to spare, so that a recycled buffer fits the next one.
const PACKET_ROOM: usize = 1500;

/// A peer's next retry: 12 bytes on the list (a flooded relay holds one
/// per new peer), its address being in the table.
#[derive(Clone, Copy, Debug)]
struct Retry {
    handle: Handle,
    due: Stamp,
}

/// The source of our bubbles when we have no Teredo address (a relay).
const RELAY_BUBBLE_SOURCE: Ipv6Addr = addr::LINK_LOCAL_RESTRICTED;

impl Forwarder {
    fn new(cfg: &ForwarderConfig, role: Role, rng: &mut dyn Random, now: Instant) -> Self {
        let mut ping_key = [0u8; 16];
        rng.fill(&mut ping_key);
        Forwarder {
            cfg: cfg.clone(),
            epoch: now,
            peers: PeerTable::new(
                cfg.peer_capacity,
                cfg.queue_bytes,
                cfg.total_queue_bytes,
                now,
            ),
            prefix: cfg.prefix,
            role,
            me: None,
            ping_key,
            retries: VecDeque::new(),
            icmp_limit: TokenBucket::new(cfg.icmp_per_second, cfg.icmp_per_second.max(1)),
            ping_limit: TokenBucket::new(
                cfg.ping_tests_per_second,
                cfg.ping_tests_per_second.max(1),
            ),
            bubble_reply_limit: TokenBucket::new(
                cfg.bubble_replies_per_second,
                cfg.bubble_replies_per_second.max(1),
            ),
            rx_ecn: 0,
            new_peer_limit: SourceLimiter::new(
                {
                    let mut k = [0u8; 16];
                    rng.fill(&mut k);
                    k
                },
                4096,
                cfg.new_peers_per_source_per_second,
                cfg.new_peers_per_source_per_second.saturating_mul(2),
            ),
            admission: Admission::new(
                {
                    let mut k = [0u8; 16];
                    rng.fill(&mut k);
                    k
                },
                cfg.new_peers_per_source_per_second,
                cfg.new_peers_per_second,
            ),
            local: None,
            predicted: None,
            behind_cone: false,
            inbound_mapping: false,
            spare: Vec::new(),
            stats: Stats::default(),
        }
    }

    /// Takes back the buffers of packets this forwarder handed out (in
    /// [`Output::Udp`] and [`Output::Tun`]) once the caller is done with
    /// them, leaving `used` empty; up to [`SPARE_BUFFERS`] are kept, of a
    /// size a packet of the Teredo MTU fits without growing them, and no
    /// larger than a few packets.
    pub fn recycle(&mut self, used: &mut Vec<Vec<u8>>) {
        for v in used.drain(..) {
            if self.spare.len() < SPARE_BUFFERS
                && (PACKET_ROOM..=4 * PACKET_ROOM).contains(&v.capacity())
            {
                self.spare.push(v);
            }
        }
    }

    /// A copy of `b` in a recycled buffer, or a new one with room for a
    /// Teredo packet.
    fn packet_buf(&mut self, b: &[u8]) -> Vec<u8> {
        let mut v = self
            .spare
            .pop()
            .unwrap_or_else(|| Vec::with_capacity(b.len().max(PACKET_ROOM)));
        v.clear();
        v.extend_from_slice(b);
        v
    }

    /// A forwarder for a client (not yet qualified).
    pub fn new_client(cfg: &ForwarderConfig, rng: &mut dyn Random, now: Instant) -> Self {
        Self::new(cfg, Role::Client, rng, now)
    }

    /// A forwarder for a relay.
    pub fn new_relay(cfg: &ForwarderConfig, rng: &mut dyn Random, now: Instant) -> Self {
        Self::new(cfg, Role::Relay, rng, now)
    }

    pub fn identity(&self) -> Option<ClientIdentity> {
        self.me
    }

    /// Sets (or clears) the client's identity. A new identity forgets every
    /// peer: what they trusted was our old address.
    pub fn set_identity(&mut self, me: Option<ClientIdentity>) {
        if self.me != me {
            self.me = me;
            self.retries.clear();
            let c = &self.cfg;
            self.peers = PeerTable::new(
                c.peer_capacity,
                c.queue_bytes,
                c.total_queue_bytes,
                self.epoch,
            );
        }
    }

    pub fn prefix(&self) -> u32 {
        self.prefix
    }

    /// The Teredo prefix a client learnt from its server's RA.
    pub fn set_prefix(&mut self, prefix: u32) {
        self.prefix = prefix;
    }

    fn teredo(&self, a: &Ipv6Addr) -> Option<TeredoAddr> {
        TeredoAddr::parse_with_prefix(a, self.prefix)
    }

    /// Our local endpoint, advertised to peers behind the same NAT.
    pub fn set_local(&mut self, local: Option<SocketAddrV4>) {
        self.local = local;
    }

    /// A sequential NAT's next port and step (`None`: not sequential).
    pub fn set_port_prediction(&mut self, p: Option<(u16, u16)>) {
        self.predicted = p;
    }

    /// Whether our NAT was observed to be a cone (see `behind_cone`).
    pub fn set_behind_cone(&mut self, cone: bool) {
        self.behind_cone = cone;
    }

    /// Whether a gateway's port mapping of our address is in use (see
    /// `inbound_mapping`).
    pub fn set_inbound_mapping(&mut self, mapped: bool) {
        self.inbound_mapping = mapped;
    }

    fn ext(&self) -> bool {
        self.cfg.rfc6081 && self.role == Role::Client && self.me.is_some()
    }

    /// The nonce of our indirect bubbles to `peer` (RFC 6081 4.2): a keyed
    /// hash, so nothing needs storing to check the echo.
    fn our_nonce(&self, peer: &Ipv6Addr) -> [u8; 4] {
        let mut data = [0u8; 17];
        data[0] = b'n';
        data[1..].copy_from_slice(&peer.octets());
        let h = siphash24(&self.ping_key, &data).to_be_bytes();
        [h[0], h[1], h[2], h[3]]
    }

    /// Whether `peer` is behind our own NAT (same mapped IPv4 address).
    fn same_nat(&self, t: &TeredoAddr) -> bool {
        self.me.is_some_and(|m| *m.mapped.ip() == t.mapped_addr)
    }

    /// The trailer of a bubble to `peer`: `nonce`, and our alternate
    /// address when the peer is behind our NAT.
    fn trailer_for(&self, t: Option<&TeredoAddr>, nonce: Option<[u8; 4]>) -> Trailer {
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

    fn bubble_with(src: Ipv6Addr, dst: Ipv6Addr, tr: &Trailer) -> Vec<u8> {
        let mut b = build_bubble(src, dst).to_vec();
        tr.emit(&mut b);
        b
    }

    /// The source of the bubbles we send to `peer`. A client's is its
    /// Teredo address. A relay's is a link-local address whose interface
    /// identifier is a keyed hash of the peer: the peer answers to it, which
    /// proves the answer came from whoever got our bubble, even from another
    /// port than its Teredo address says (a client behind a symmetric NAT).
    fn bubble_source(&self, peer: &Ipv6Addr) -> Ipv6Addr {
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

    /// The payload of our echo test of `peer` at `endpoint` (see
    /// `test_endpoint`): a keyed hash of both, checkable without state.
    fn endpoint_payload(&self, peer: &Ipv6Addr, endpoint: SocketAddrV4) -> [u8; 8] {
        let mut data = [0u8; 23];
        data[0] = b'e';
        data[1..17].copy_from_slice(&peer.octets());
        data[17..21].copy_from_slice(&endpoint.ip().octets());
        data[21..].copy_from_slice(&endpoint.port().to_be_bytes());
        siphash24(&self.ping_key, &data).to_be_bytes()
    }

    /// The payload of our direct connectivity test to `peer`: a keyed hash,
    /// unguessable without the key, checkable without state.
    fn ping_payload(&self, peer: &Ipv6Addr) -> [u8; 8] {
        let mut data = [0u8; 32];
        data[..16].copy_from_slice(&peer.octets());
        data[16..].copy_from_slice(&self.me.map_or(RELAY_BUBBLE_SOURCE, |m| m.addr).octets());
        siphash24(&self.ping_key, &data).to_be_bytes()
    }

    fn udp(to: SocketAddrV4, payload: Vec<u8>, ecn: u8) -> Output {
        Self::udp_ttl(to, payload, ecn, None)
    }

    fn udp_ttl(to: SocketAddrV4, payload: Vec<u8>, ecn: u8, ttl: Option<u8>) -> Output {
        Output::Udp(Transmit {
            from: None,
            to,
            payload,
            ecn,
            ttl,
        })
    }

    /// Sends an ICMPv6 destination unreachable about `invoking`, if the
    /// rate limit allows.
    fn unreachable(&mut self, now: Instant, code: u8, invoking: &[u8], out: &mut Vec<Output>) {
        if !self.icmp_limit.take(now) {
            return;
        }
        let src = self.me.map_or(RELAY_BUBBLE_SOURCE, |m| m.addr);
        if let Some(p) = icmpv6::build_unreachable(src, code, invoking) {
            self.stats.icmp_errors += 1;
            out.push(Output::Tun(p));
        }
    }

    /// Whether the RFC 4380 5.2.6 limits let us send a bubble to `peer` now;
    /// if so, records it.
    fn bubble_allowed(&mut self, peer: &Ipv6Addr, now: Instant) -> bool {
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
    fn send_bubbles(&mut self, dst: &Ipv6Addr, t: &TeredoAddr, out: &mut Vec<Output>) {
        let src = self.bubble_source(dst);
        let server = SocketAddrV4::new(t.server, TEREDO_PORT);
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

    /// The connectivity test echo request to the native peer `dst`, through
    /// our server (RFC 4380 5.2.9).
    fn send_ping_test(&mut self, dst: &Ipv6Addr, out: &mut Vec<Output>) {
        let Some(me) = self.me else { return };
        let data = self.ping_payload(dst);
        let to = SocketAddrV4::new(me.server, TEREDO_PORT);
        self.send_test_echo(me.addr, *dst, to, 0, &data, out);
    }

    /// A test's echo request from our address `src` to `dst`, sent to the
    /// IPv4 endpoint `to`, carrying `data` (a keyed hash).
    fn send_test_echo(
        &mut self,
        src: Ipv6Addr,
        dst: Ipv6Addr,
        to: SocketAddrV4,
        seq: u16,
        data: &[u8],
        out: &mut Vec<Output>,
    ) {
        let p = icmpv6::build_packet(
            src,
            dst,
            64,
            &Icmpv6Repr::EchoRequest {
                ident: 0,
                seq,
                data,
            },
        );
        self.stats.ping_tests_sent += 1;
        out.push(Self::udp(to, p, 0));
    }

    /// Puts `peer` on the retry list once (the flag on the entry, not a
    /// search of the list: a flood of new peers must stay O(1) each).
    fn schedule_retry(&mut self, peer: Ipv6Addr, now: Instant) {
        let Some(handle) = self.peers.handle(&peer) else {
            return;
        };
        let due = self.peers.stamp(now + BUBBLE_INTERVAL);
        if let Some(p) = self.peers.get_mut(&peer) {
            if !p.retry_pending {
                p.retry_pending = true;
                self.retries.push_back(Retry { handle, due });
            }
        }
    }

    /// Sends what is queued for `peer` to its endpoint.
    fn flush_queue(&mut self, peer: &Ipv6Addr, now: Instant, out: &mut Vec<Output>) {
        self.flush_queue_proven(peer, now, None, out);
    }

    /// Sends what is queued for `peer` to its endpoint. Packets from the
    /// peer held while `proven` was being tested (`test_endpoint`) reach
    /// the host when they came from `proven`; other held ones are dropped.
    fn flush_queue_proven(
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
        self.stats.udp_tx_packets += 1;
        self.stats.udp_tx_bytes += pkt.len() as u64;
        out.push(Self::udp(to, pkt, ecn));
    }

    // ------------------------------------------------------------------
    // Transmission: an IPv6 packet from the TUN device.

    /// Handles an IPv6 packet the host wants sent over Teredo.
    pub fn handle_tun(&mut self, now: Instant, pkt: &[u8], out: &mut Vec<Output>) {
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
                    if let Some(me) = self.me {
                        out.push(Self::udp(
                            SocketAddrV4::new(addr::DISCOVERY_ADDR, TEREDO_PORT),
                            super::discovery::build_discovery_bubble(me.addr),
                            0,
                        ));
                        self.stats.bubbles_sent += 1;
                    }
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

    // ------------------------------------------------------------------
    // Reception: a Teredo datagram from a peer (not from our server).

    /// Handles a datagram from `from` that is not from our own server.
    /// `pkt` is already parsed. Returns what the embedding engine must do.
    pub fn handle_peer_packet(
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

    /// RFC 6081: a bubble from the peer's IPv4 address but another port than
    /// its Teredo address says (its NAT is symmetric, or a Linux NAT picked
    /// another port), or from a local address it advertised (hairpinning),
    /// is accepted when it proves itself: a client's by echoing the nonce of
    /// our indirect bubble, a relay's by being addressed to the link-local
    /// source of our bubble to that peer. The peer's endpoint becomes where
    /// it came from. Returns whether the bubble was taken.
    fn learn_endpoint(
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

    /// A client's answer to a Teredo peer heard from its mapped IPv4
    /// address but another port than its Teredo address says, which proves
    /// nothing by itself (no RFC 6081 nonce: the C miredo). A Linux NAT in
    /// front of the peer does that when an earlier unsolicited packet (a
    /// third client's direct bubble) left a connection-tracking entry on
    /// the port. We test the endpoint as RFC 4380 5.2.3 case 2 tests a
    /// peer: an echo request sent straight to it, with a keyed payload;
    /// the echo reply coming back from there, with that payload, makes it
    /// the peer's trusted endpoint. Packets from the endpoint before then
    /// wait in the peer's queue, and reach the host with the proof.
    ///
    /// Only for a peer with an entry (one we are sending to, or one our
    /// server vouched for by forwarding its indirect bubble from the same
    /// IPv4 address), at most `MAX_ENDPOINT_TESTS` echo requests per entry
    /// and within the global budget of tests: a spoofed source cannot turn
    /// us into a reflector. Returns whether the packet was taken (the
    /// proof, or held).
    fn test_endpoint(
        &mut self,
        now: Instant,
        from: SocketAddrV4,
        src: &Ipv6Addr,
        t: &TeredoAddr,
        ip: &Ipv6Packet<&[u8]>,
        out: &mut Vec<Output>,
    ) -> bool {
        if self.role != Role::Client
            || *from.ip() != t.mapped_addr
            || !addr::is_global_unicast_v4(*from.ip())
        {
            return false;
        }
        let Some(me) = self.me else { return false };
        let Some(tests) = self.peers.get(src).map(|p| p.endpoint_tests) else {
            return false;
        };
        let payload = self.endpoint_payload(src, from);
        let proof = ip.next_header() == next_header::ICMPV6
            && matches!(
                Icmpv6Repr::parse(&ip.src_addr(), &ip.dst_addr(), ip.payload()),
                Ok(Icmpv6Repr::EchoReply { data, .. }) if data == payload
            );
        if proof {
            let s = self.peers.stamp(now);
            if let Some(p) = self.peers.get_mut(src) {
                p.endpoint = from;
                p.trusted = true;
                p.local = false;
                p.last_rx = s;
                p.bubbles = 0;
                p.endpoint_tests = 0;
            }
            self.peers.touch(src, now);
            self.stats.ping_tests_ok += 1;
            self.stats.endpoints_learnt += 1;
            self.flush_queue_proven(src, now, Some(from), out);
            return true;
        }
        let tested = tests < MAX_ENDPOINT_TESTS && self.ping_limit.take(now);
        // Held (within the queue's caps) until the endpoint is proven: a
        // peer sends what it queued for us before it answers our test.
        let held = (tested || tests > 0) && !ip.is_bubble() && {
            let mut blob = Vec::with_capacity(HELD_HEADER + ip.packet().len());
            blob.push(HELD_MARK);
            blob.extend_from_slice(&from.ip().octets());
            blob.extend_from_slice(&from.port().to_be_bytes());
            blob.extend_from_slice(ip.packet());
            self.peers.enqueue(src, &blob)
        };
        if tested {
            if let Some(p) = self.peers.get_mut(src) {
                p.endpoint_tests += 1;
            }
            self.send_test_echo(me.addr, *src, from, u16::from(tests), &payload, out);
        }
        held
    }

    /// The options of a bubble from a trusted peer: a server-load-reduction
    /// solicitation is answered with an advertisement (RFC 6081).
    fn bubble_options(
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

    /// Checks every forwarded packet must pass: a well-formed extension
    /// chain and no routing header with segments left (CVE-2006-6263).
    pub(crate) fn check_common(&mut self, ip: &Ipv6Packet<&[u8]>) -> bool {
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

    /// Whether `ip` is an echo reply carrying our connectivity-test payload;
    /// `None` if it is no echo reply at all.
    fn is_our_ping_reply(&self, ip: &Ipv6Packet<&[u8]>) -> Option<bool> {
        if ip.next_header() != next_header::ICMPV6 {
            return None;
        }
        match Icmpv6Repr::parse(&ip.src_addr(), &ip.dst_addr(), ip.payload()) {
            Ok(Icmpv6Repr::EchoReply { data, .. }) => {
                Some(data == self.ping_payload(&ip.src_addr()))
            }
            _ => None,
        }
    }

    /// Hands a packet to the TUN device (without any trailer).
    pub(crate) fn deliver(&mut self, ip: &Ipv6Packet<&[u8]>, out: &mut Vec<Output>) {
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

    /// Sets the ECN field of the outer header of the datagram being handled.
    pub fn set_rx_ecn(&mut self, ecn: u8) {
        self.rx_ecn = ecn & 0b11;
    }

    /// A bubble relayed by a server with an origin indication: a peer is
    /// trying to reach us; a direct bubble to the origin opens our NAT for
    /// it (RFC 4380 5.2.3, 5.4.1). With RFC 6081 the bubble's trailer adds:
    /// a nonce our direct bubbles echo (so the peer may learn our port if
    /// our NAT changes it), a random port to bubble as well, alternate
    /// addresses behind our own NAT to try; and a peer that speaks it gets
    /// an indirect bubble of ours too, so that its direct bubbles, proven by
    /// our nonce, reach us from whatever port its NAT gives them.
    pub fn answer_indirect(
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
    pub(crate) fn bubble_local(
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

    // ------------------------------------------------------------------
    // Timers.

    pub fn handle_timeout(&mut self, now: Instant, out: &mut Vec<Output>) {
        while let Some(&Retry { handle, due }) = self.retries.front() {
            if !self.peers.is_due(due, now) {
                break;
            }
            self.retries.pop_front();
            // A peer evicted since is gone, whatever holds its slot now.
            let Some(peer) = self.peers.resolve(handle) else {
                continue;
            };
            let Some(p) = self.peers.get_mut(&peer) else {
                continue;
            };
            p.retry_pending = false;
            let p = &*p;
            if p.trusted || !p.has_queued() {
                continue;
            }
            if p.local {
                continue;
            }
            if p.bubbles < MAX_BUBBLES {
                if self.bubble_allowed(&peer, now) {
                    match self.teredo(&peer) {
                        Some(t) => self.send_bubbles(&peer, &t, out),
                        None => self.send_ping_test(&peer, out),
                    }
                }
                self.schedule_retry(peer, now);
            } else {
                // RFC 4380 5.4.1: give up; the queue goes, the sender hears
                // why. The entry stays (bubble count kept) until it expires,
                // so a flood cannot buy more bubbles.
                let dropped = self.peers.dequeue_all(&peer);
                self.stats.drops_queue_expired += dropped.len() as u64;
                if let Some(first) = dropped.iter().find(|p| held_inbound(p).is_none()) {
                    self.unreachable(now, unreachable_code::ADDRESS, first, out);
                }
            }
        }
        self.peers.expire(now);
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        let r = self.retries.front().map(|r| self.peers.instant_of(r.due));
        match (r, self.peers.next_expiry()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// A stamp of the peer table (for the embedding engines).
    pub fn stamp(&self, now: Instant) -> Stamp {
        self.peers.stamp(now)
    }
}

// ----------------------------------------------------------------------
// The relay engine.

/// A Teredo relay (RFC 4380 5.4): forwards between native IPv6 (the TUN
/// device, routing the Teredo prefix) and Teredo clients over UDP.
pub struct Relay {
    fwd: Forwarder,
}

impl Relay {
    pub fn new(cfg: &ForwarderConfig, rng: &mut dyn Random, now: Instant) -> Self {
        Relay {
            fwd: Forwarder::new_relay(cfg, rng, now),
        }
    }

    /// A datagram received on the relay's Teredo port.
    pub fn handle_udp(
        &mut self,
        now: Instant,
        from: SocketAddrV4,
        to_local: SocketAddrV4,
        bytes: &[u8],
        out: &mut Vec<Output>,
    ) {
        self.handle_udp_ecn(now, from, to_local, 0, bytes, out);
    }

    /// [`Relay::handle_udp`] for a datagram whose outer IPv4 header carried
    /// the ECN field `ecn` (RFC 9601).
    pub fn handle_udp_ecn(
        &mut self,
        now: Instant,
        from: SocketAddrV4,
        to_local: SocketAddrV4,
        ecn: u8,
        bytes: &[u8],
        out: &mut Vec<Output>,
    ) {
        let f = &mut self.fwd;
        f.set_rx_ecn(ecn);
        f.stats.udp_rx_packets += 1;
        f.stats.udp_rx_bytes += bytes.len() as u64;
        let Ok(pkt) = TeredoPacket::parse(bytes) else {
            f.stats.drop(DropReason::Malformed);
            return;
        };
        if let Some(origin) = pkt.origin {
            // A server relayed a peer's bubble to us (a relay behind a NAT):
            // open the path.
            if pkt.ipv6.is_bubble() && from.port() == TEREDO_PORT {
                let peer = pkt.ipv6.src_addr();
                let tr = Trailer::parse(pkt.ipv6.trailer());
                f.answer_indirect(now, origin.0, peer, &tr, out);
                return;
            }
        }
        if pkt.auth.is_some() {
            // Only RAs carry authentication; a relay asked for none.
            f.stats.drop(DropReason::Unexpected);
            return;
        }
        let _ = f.handle_peer_packet(now, from, to_local, &pkt, out);
    }

    /// An IPv6 packet from the TUN device (routed to the Teredo prefix).
    pub fn handle_tun(&mut self, now: Instant, pkt: &[u8], out: &mut Vec<Output>) {
        self.fwd.handle_tun(now, pkt, out);
    }

    pub fn handle_timeout(&mut self, now: Instant, out: &mut Vec<Output>) {
        self.fwd.handle_timeout(now, out);
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        self.fwd.poll_timeout()
    }

    pub fn stats(&self) -> &Stats {
        &self.fwd.stats
    }

    /// Gives back the buffers of packets this engine handed out (see
    /// [`Forwarder::recycle`]).
    pub fn recycle(&mut self, used: &mut Vec<Vec<u8>>) {
        self.fwd.recycle(used);
    }

    pub fn peers(&self) -> &PeerTable {
        &self.fwd.peers
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::SeededRandom;

    const RELAY: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(198, 18, 2, 1), TEREDO_PORT);
    const MAPPED: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(198, 18, 3, 1), 40000);
    const NATIVE: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 9, 0, 0, 0, 0, 1);

    fn client() -> Ipv6Addr {
        TeredoAddr {
            prefix: TEREDO_PREFIX,
            server: Ipv4Addr::new(198, 18, 1, 1),
            flags: 0,
            mapped_port: MAPPED.port(),
            mapped_addr: *MAPPED.ip(),
        }
        .to_ipv6()
    }

    fn echo(src: Ipv6Addr, dst: Ipv6Addr, size: usize) -> Vec<u8> {
        let data = vec![5u8; size];
        let msg = Icmpv6Repr::EchoRequest {
            ident: 1,
            seq: 1,
            data: &data,
        };
        icmpv6::build_packet(src, dst, 64, &msg)
    }

    /// The payloads of what `out` holds for the TUN device and for UDP.
    fn split(out: &mut Vec<Output>) -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
        let (mut tun, mut udp) = (Vec::new(), Vec::new());
        for o in out.drain(..) {
            match o {
                Output::Tun(p) => tun.push(p),
                Output::Udp(t) => udp.push(t.payload),
                Output::Event(_) => {}
            }
        }
        (tun, udp)
    }

    #[test]
    fn data_packets_go_out_in_the_buffers_given_back() {
        let now = Instant::now();
        let cfg = ForwarderConfig {
            direct_bubbles: false,
            ..ForwarderConfig::default()
        };
        let mut r = Relay::new(&cfg, &mut SeededRandom::new(1), now);
        let mut out = Vec::new();
        // Client -> native: delivered (and the client is now trusted).
        let up = echo(client(), NATIVE, 56);
        r.handle_udp(now, MAPPED, RELAY, &up, &mut out);
        let (mut tun, _) = split(&mut out);
        assert_eq!(tun, vec![up.clone()]);
        let first = tun[0].as_ptr();
        // A buffer too small to take a packet of the Teredo MTU is not
        // kept; the engine's own is.
        let mut used = vec![vec![0u8; 10]];
        used.append(&mut tun);
        r.recycle(&mut used);
        assert!(used.is_empty());
        // Native -> client, a bigger packet: the same buffer, unmoved.
        let down = echo(NATIVE, client(), 1200);
        r.handle_tun(now, &down, &mut out);
        let (_, mut udp) = split(&mut out);
        assert_eq!(udp, vec![down.clone()]);
        assert_eq!(udp[0].as_ptr(), first);
        r.recycle(&mut udp);
        r.handle_udp(now, MAPPED, RELAY, &up, &mut out);
        let (tun, _) = split(&mut out);
        assert_eq!(tun, vec![up]);
        assert_eq!(tun[0].as_ptr(), first);
    }
}
