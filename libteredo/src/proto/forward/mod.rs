//! The forwarding core shared by Teredo clients and relays (RFC 4380 5.2,
//! 5.4): the peer list, what the host sends and what peers send, bubbles,
//! the direct IPv6 connectivity test, and ICMPv6 errors for what cannot be
//! delivered. Private to the crate: the engines build on it, and it knows
//! neither of them, only which side of the protocol it serves ([`Role`]).
//!
//! [`Forwarder`] is one struct; its `impl` blocks are split by concern, the
//! way smoltcp splits `Interface` and boringtun splits `Tunn`:
//! - here: the settings, the state, the identity of a qualified client;
//! - [`transmit`]: an IPv6 packet from the host (5.2.4, 5.4.1);
//! - [`receive`]: a Teredo datagram from a peer (5.2.3, 5.4.2);
//! - [`bubbles`]: bubbles sent, answered and learnt from (5.2.6, 5.2.8,
//!   RFC 6081);
//! - [`connectivity`]: the direct IPv6 connectivity test (5.2.9) and the
//!   test of an endpoint a peer was heard from;
//! - [`timers`]: retries and expiry.

mod bubbles;
mod connectivity;
mod receive;
mod timers;
mod transmit;

use super::admission::Admission;
use super::output::{Output, Transmit};
use super::peers::{
    Handle, PeerTable, Stamp, DEFAULT_CAPACITY, DEFAULT_QUEUE_BYTES, DEFAULT_TOTAL_QUEUE_BYTES,
};
use super::random::Random;
use super::ratelimit::{SourceLimiter, TokenBucket};
use super::stats::Stats;
use crate::addr::{self, TeredoAddr, TEREDO_PREFIX};
use crate::wire::icmpv6;
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
pub(crate) struct Forwarder {
    cfg: ForwarderConfig,
    epoch: Instant,
    peers: PeerTable,
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
    /// may send our own new flows from other ports (a client's port mapping
    /// in use, as the client engine reports it). A datagram of ours to a peer that
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
    pub(super) stats: Stats,
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

    /// A forwarder for a client (not yet qualified).
    pub(crate) fn new_client(cfg: &ForwarderConfig, rng: &mut dyn Random, now: Instant) -> Self {
        Self::new(cfg, Role::Client, rng, now)
    }

    /// A forwarder for a relay.
    pub(crate) fn new_relay(cfg: &ForwarderConfig, rng: &mut dyn Random, now: Instant) -> Self {
        Self::new(cfg, Role::Relay, rng, now)
    }

    /// Takes back the buffers of packets this forwarder handed out (in
    /// [`Output::Udp`] and [`Output::Tun`]) once the caller is done with
    /// them, leaving `used` empty; up to [`SPARE_BUFFERS`] are kept, of a
    /// size a packet of the Teredo MTU fits without growing them, and no
    /// larger than a few packets.
    pub(crate) fn recycle(&mut self, used: &mut Vec<Vec<u8>>) {
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

    pub(crate) fn identity(&self) -> Option<ClientIdentity> {
        self.me
    }

    /// Sets (or clears) the client's identity. A new identity forgets every
    /// peer: what they trusted was our old address.
    pub(crate) fn set_identity(&mut self, me: Option<ClientIdentity>) {
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

    pub(crate) fn prefix(&self) -> u32 {
        self.prefix
    }

    /// The Teredo prefix a client learnt from its server's RA.
    pub(crate) fn set_prefix(&mut self, prefix: u32) {
        self.prefix = prefix;
    }

    fn teredo(&self, a: &Ipv6Addr) -> Option<TeredoAddr> {
        TeredoAddr::parse_with_prefix(a, self.prefix)
    }

    /// Our local endpoint, advertised to peers behind the same NAT.
    pub(crate) fn set_local(&mut self, local: Option<SocketAddrV4>) {
        self.local = local;
    }

    /// A sequential NAT's next port and step (`None`: not sequential).
    pub(crate) fn set_port_prediction(&mut self, p: Option<(u16, u16)>) {
        self.predicted = p;
    }

    /// Whether our NAT was observed to be a cone (see `behind_cone`).
    pub(crate) fn set_behind_cone(&mut self, cone: bool) {
        self.behind_cone = cone;
    }

    /// Whether a gateway's port mapping of our address is in use (see
    /// `inbound_mapping`).
    pub(crate) fn set_inbound_mapping(&mut self, mapped: bool) {
        self.inbound_mapping = mapped;
    }

    fn ext(&self) -> bool {
        self.cfg.rfc6081 && self.role == Role::Client && self.me.is_some()
    }

    /// Whether `peer` is behind our own NAT (same mapped IPv4 address).
    fn same_nat(&self, t: &TeredoAddr) -> bool {
        self.me.is_some_and(|m| *m.mapped.ip() == t.mapped_addr)
    }

    /// Counts what an engine call handed out for UDP (data, bubbles,
    /// solicitations, ICMPv6 errors: everything, once): the engines call it
    /// on the outputs of each of their entry points.
    pub(crate) fn count_sent(&mut self, out: &[Output]) {
        for o in out {
            if let Output::Udp(t) = o {
                self.stats.udp_tx_packets += 1;
                self.stats.udp_tx_bytes += t.payload.len() as u64;
            }
        }
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

    /// The list of recent peers.
    pub(crate) fn peers(&self) -> &PeerTable {
        &self.peers
    }
}
