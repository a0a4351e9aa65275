//! A deterministic simulated network for the sans-IO engines: a virtual
//! IPv4 Internet with NAT models, LANs with multicast, an IPv6 core with
//! native hosts, all on a virtual clock and reproducible from a seed.
//!
//! Nothing here is a Teredo implementation: the world only moves datagrams
//! between engines, translates them in NATs, and answers pings like a
//! kernel would.

#![allow(dead_code)]

use libteredo::proto::{
    Client, ClientConfig, Event, ForwarderConfig, Output, Random, Relay, SeededRandom, Server,
    ServerConfig,
};
use libteredo::wire::icmpv6::{self, Icmpv6Repr};
use libteredo::wire::ipv6::{next_header, Ipv6Packet};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV4};
use std::time::{Duration, Instant};

pub type NodeId = usize;
pub type NatId = usize;

/// How a NAT maps and filters (RFC 4787 vocabulary).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NatKind {
    /// Endpoint-independent mapping and filtering.
    FullCone,
    /// Endpoint-independent mapping, address-dependent filtering.
    AddressRestricted,
    /// Endpoint-independent mapping, address-and-port-dependent filtering.
    PortRestricted,
    /// Address-and-port-dependent mapping with random ports.
    Symmetric,
    /// Address-and-port-dependent mapping, each new mapping on the next
    /// port (RFC 6081 sequential port-symmetric NAT).
    Sequential,
    /// Linux nftables `masquerade`: a conntrack entry per 5-tuple; the
    /// source port is kept unless that tuple is taken, including by a
    /// conntrack entry that an unsolicited inbound packet created.
    Masquerade,
}

#[derive(Clone, Debug)]
struct Binding {
    internal: SocketAddrV4,
    /// The remote endpoint for per-destination mappings.
    remote: Option<SocketAddrV4>,
    external_port: u16,
    /// Remote endpoints (or addresses, port 0) we sent to, for filtering.
    permits: HashSet<SocketAddrV4>,
    last_used: Instant,
}

pub struct Nat {
    pub kind: NatKind,
    pub wan: Ipv4Addr,
    pub hairpin: bool,
    pub timeout: Duration,
    bindings: Vec<Binding>,
    /// Masquerade: (external port, remote) tuples held by conntrack entries
    /// of unsolicited inbound packets, until when.
    blocked: HashMap<(u16, SocketAddrV4), Instant>,
    next_port: u16,
    /// The last port a sequential NAT gave.
    seq: u16,
    pub lan: LanId,
    /// Port mappings a client asked for (PCP, NAT-PMP, UPnP IGD), as
    /// miniupnpd makes them: external port -> internal endpoint, for any
    /// remote (a DNAT rule; the flows it lets in are then tracked like
    /// outbound ones, so that the answers leave from the mapped port).
    pub port_mappings: HashMap<u16, SocketAddrV4>,
}

pub type LanId = usize;

impl Nat {
    fn expire(&mut self, now: Instant) {
        let t = self.timeout;
        self.bindings
            .retain(|b| now.duration_since(b.last_used) < t);
        self.blocked.retain(|_, until| *until > now);
    }

    fn port_taken(&self, port: u16, remote: SocketAddrV4) -> bool {
        self.blocked.contains_key(&(port, remote))
            || self
                .bindings
                .iter()
                .any(|b| b.external_port == port && b.remote.is_none_or(|r| r == remote))
    }

    fn fresh_port(&mut self, rng: &mut SeededRandom) -> u16 {
        loop {
            let p = 1024 + (rng.next_u32() % 60000) as u16;
            if !self.bindings.iter().any(|b| b.external_port == p) {
                return p;
            }
        }
    }

    /// A reboot: every mapping and conntrack entry is forgotten, and the
    /// NAT numbers ports differently from now on (or changes its WAN
    /// address).
    pub fn reboot(&mut self, new_wan: Option<Ipv4Addr>) {
        self.bindings.clear();
        self.blocked.clear();
        self.next_port = self.next_port.wrapping_add(1000);
        if let Some(w) = new_wan {
            self.wan = w;
        }
    }

    /// Outbound translation: the external source port for `internal` ->
    /// `remote`.
    fn outbound(
        &mut self,
        now: Instant,
        internal: SocketAddrV4,
        remote: SocketAddrV4,
        rng: &mut SeededRandom,
    ) -> u16 {
        self.expire(now);
        let per_dest = matches!(
            self.kind,
            NatKind::Symmetric | NatKind::Masquerade | NatKind::Sequential
        );
        let idx = self
            .bindings
            .iter()
            .position(|b| b.internal == internal && (!per_dest || b.remote == Some(remote)));
        let idx = match idx {
            Some(i) => i,
            None => {
                let port = match self.kind {
                    NatKind::Symmetric => self.fresh_port(rng),
                    NatKind::Sequential => {
                        self.seq = self.seq.wrapping_add(1);
                        20000u16.wrapping_add(self.seq)
                    }
                    NatKind::Masquerade => {
                        if self.port_taken(internal.port(), remote) {
                            self.fresh_port(rng)
                        } else {
                            internal.port()
                        }
                    }
                    _ => {
                        // Port-preserving when free, as most NATs try.
                        if self
                            .bindings
                            .iter()
                            .any(|b| b.external_port == internal.port())
                        {
                            self.fresh_port(rng)
                        } else {
                            internal.port().wrapping_add(self.next_port)
                        }
                    }
                };
                self.bindings.push(Binding {
                    internal,
                    remote: per_dest.then_some(remote),
                    external_port: port,
                    permits: HashSet::new(),
                    last_used: now,
                });
                self.bindings.len() - 1
            }
        };
        let b = &mut self.bindings[idx];
        b.last_used = now;
        b.permits.insert(remote);
        b.permits.insert(SocketAddrV4::new(*remote.ip(), 0));
        b.external_port
    }

    /// Inbound translation: the internal endpoint for a packet from
    /// `remote` to the external `port`, if the NAT lets it in.
    fn inbound(&mut self, now: Instant, remote: SocketAddrV4, port: u16) -> Option<SocketAddrV4> {
        self.expire(now);
        let kind = self.kind;
        let found = self.bindings.iter_mut().find(|b| {
            b.external_port == port
                && match kind {
                    NatKind::FullCone => true,
                    NatKind::AddressRestricted => {
                        b.permits.contains(&SocketAddrV4::new(*remote.ip(), 0))
                    }
                    NatKind::PortRestricted => b.permits.contains(&remote),
                    NatKind::Symmetric | NatKind::Masquerade | NatKind::Sequential => {
                        b.remote == Some(remote)
                    }
                }
        });
        match found {
            Some(b) => {
                b.last_used = now;
                Some(b.internal)
            }
            None if self.port_mappings.contains_key(&port) => {
                let internal = self.port_mappings[&port];
                let per_dest = matches!(
                    kind,
                    NatKind::Symmetric | NatKind::Masquerade | NatKind::Sequential
                );
                let mut permits = HashSet::new();
                permits.insert(remote);
                permits.insert(SocketAddrV4::new(*remote.ip(), 0));
                self.bindings.push(Binding {
                    internal,
                    remote: per_dest.then_some(remote),
                    external_port: port,
                    permits,
                    last_used: now,
                });
                Some(internal)
            }
            None => {
                if kind == NatKind::Masquerade {
                    // The unsolicited packet leaves a conntrack entry
                    // behind (UDP unreplied timeout: 30 s).
                    self.blocked
                        .insert((port, remote), now + Duration::from_secs(30));
                }
                None
            }
        }
    }
}

/// A datagram in flight on the IPv4 side.
#[derive(Clone, Debug)]
struct Datagram {
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
enum InFlight {
    V4(Datagram),
    /// An IPv6 packet on the native core.
    V6(Vec<u8>),
    /// A packet for a client's own TUN (kernel answers).
    ClientTun(NodeId, Vec<u8>),
}

pub enum Engine {
    Server(Box<Server>),
    Relay(Box<Relay>),
    Client(Box<Client>),
}

pub struct Node {
    pub name: String,
    pub engine: Engine,
    /// Its IPv4 addresses (the server has two) and port.
    pub addrs: Vec<Ipv4Addr>,
    pub port: u16,
    /// Its LAN (behind a NAT) or None (on the Internet).
    pub lan: Option<LanId>,
    /// IPv6 packets its TUN received.
    pub tun_rx: Vec<Vec<u8>>,
    pub events: Vec<(Duration, Event)>,
    /// Whether its UDP socket is up (a server can be silenced).
    pub up: bool,
    /// Whether its kernel answers echo requests.
    pub answers_pings: bool,
}

pub struct NativeHost {
    pub addr: Ipv6Addr,
    pub rx: Vec<Vec<u8>>,
}

/// A trace line, for reproducibility checks and failure reports.
pub type Trace = Vec<String>;

pub struct World {
    pub base: Instant,
    pub now: Instant,
    pub rng: SeededRandom,
    pub nodes: Vec<Node>,
    pub nats: Vec<Nat>,
    pub natives: Vec<NativeHost>,
    /// LAN id -> NAT in front of it.
    lan_nat: Vec<Option<NatId>>,
    queue: BTreeMap<(Instant, u64), InFlight>,
    seq: u64,
    pub latency: Duration,
    /// Probability (0..=1) that an IPv4 datagram is lost.
    pub loss: f64,
    pub trace: Trace,
    /// The relay that the IPv6 core routes 2001::/32 to.
    pub relay: Option<NodeId>,
    /// Datagrams delivered to each IPv4 endpoint that no node owns (for
    /// checking what an attacker's target would receive).
    pub stray: Vec<(SocketAddrV4, SocketAddrV4, Vec<u8>)>,
    /// Count of datagrams each node sent.
    pub sent: HashMap<NodeId, Vec<(SocketAddrV4, Vec<u8>)>>,
    /// A congested router on the IPv4 Internet: ECN-capable datagrams are
    /// marked CE (RFC 3168).
    pub mark_ce: bool,
    /// The outer ECN field of every datagram each node sent.
    pub sent_ecn: HashMap<NodeId, Vec<u8>>,
    /// All NATs' WAN sides on one segment, no router between them (the
    /// namespace lab): a datagram with a time to live of 2 crosses its NAT
    /// and still reaches the other NAT.
    pub flat_internet: bool,
}

pub const TEREDO_PORT: u16 = 3544;

impl World {
    pub fn new(seed: u64) -> Self {
        let base = Instant::now();
        World {
            base,
            now: base,
            rng: SeededRandom::new(seed),
            nodes: Vec::new(),
            nats: Vec::new(),
            natives: Vec::new(),
            lan_nat: Vec::new(),
            queue: BTreeMap::new(),
            seq: 0,
            latency: Duration::from_millis(10),
            loss: 0.0,
            trace: Vec::new(),
            relay: None,
            stray: Vec::new(),
            sent: HashMap::new(),
            mark_ce: false,
            sent_ecn: HashMap::new(),
            flat_internet: false,
        }
    }

    pub fn elapsed(&self) -> Duration {
        self.now - self.base
    }

    fn log(&mut self, s: String) {
        let t = self.elapsed();
        self.trace.push(format!("{:>9.3} {}", t.as_secs_f64(), s));
    }

    fn seeded(&mut self) -> Box<SeededRandom> {
        Box::new(SeededRandom::new(self.rng.next_u64()))
    }

    // ------------------------------------------------------------------
    // Building.

    /// A LAN with no NAT (hosts on it have public addresses) or behind one.
    pub fn add_lan(&mut self) -> LanId {
        self.lan_nat.push(None);
        self.lan_nat.len() - 1
    }

    /// A NAT with WAN address `wan` in front of a new LAN.
    pub fn add_nat(&mut self, kind: NatKind, wan: Ipv4Addr, hairpin: bool) -> (NatId, LanId) {
        let lan = self.add_lan();
        self.nats.push(Nat {
            kind,
            wan,
            hairpin,
            timeout: Duration::from_secs(120),
            bindings: Vec::new(),
            blocked: HashMap::new(),
            next_port: 0,
            seq: 0,
            port_mappings: HashMap::new(),
            lan,
        });
        let id = self.nats.len() - 1;
        self.lan_nat[lan] = Some(id);
        (id, lan)
    }

    pub fn add_server(&mut self, primary: Ipv4Addr) -> NodeId {
        self.add_server_with(ServerConfig::new(primary))
    }

    /// A server with settings of its own (another Teredo prefix, MTU).
    pub fn add_server_with(&mut self, cfg: ServerConfig) -> NodeId {
        let primary = cfg.primary;
        let secondary = cfg.secondary;
        self.push_node(Node {
            name: format!("server {primary}"),
            engine: Engine::Server(Box::new(Server::new(cfg))),
            addrs: vec![primary, secondary],
            port: TEREDO_PORT,
            lan: None,
            tun_rx: Vec::new(),
            events: Vec::new(),
            up: true,
            answers_pings: false,
        })
    }

    /// A relay on a public address (`RelayType cone`: no direct bubbles).
    pub fn add_relay(&mut self, ip: Ipv4Addr, lan: Option<LanId>) -> NodeId {
        let cfg = ForwarderConfig {
            direct_bubbles: false,
            ..ForwarderConfig::default()
        };
        self.add_relay_with(ip, lan, cfg)
    }

    pub fn add_relay_with(
        &mut self,
        ip: Ipv4Addr,
        lan: Option<LanId>,
        cfg: ForwarderConfig,
    ) -> NodeId {
        let mut rng = self.seeded();
        let relay = Relay::new(&cfg, rng.as_mut(), self.now);
        let id = self.push_node(Node {
            name: format!("relay {ip}"),
            engine: Engine::Relay(Box::new(relay)),
            addrs: vec![ip],
            port: TEREDO_PORT,
            lan,
            tun_rx: Vec::new(),
            events: Vec::new(),
            up: true,
            answers_pings: false,
        });
        if self.relay.is_none() {
            self.relay = Some(id);
        }
        id
    }

    /// A client at `ip:port` on `lan` using the server at `server`.
    pub fn add_client(
        &mut self,
        ip: Ipv4Addr,
        port: u16,
        lan: Option<LanId>,
        server: Ipv4Addr,
    ) -> NodeId {
        self.add_client_with(ip, port, lan, ClientConfig::new(server))
    }

    pub fn add_client_with(
        &mut self,
        ip: Ipv4Addr,
        port: u16,
        lan: Option<LanId>,
        mut cfg: ClientConfig,
    ) -> NodeId {
        // The daemon knows its local endpoint; so does the simulated one.
        cfg.local.get_or_insert(SocketAddrV4::new(ip, port));
        let rng = self.seeded();
        let client = Client::new(cfg, rng, self.now);
        self.push_node(Node {
            name: format!("client {ip}:{port}"),
            engine: Engine::Client(Box::new(client)),
            addrs: vec![ip],
            port,
            lan,
            tun_rx: Vec::new(),
            events: Vec::new(),
            up: true,
            answers_pings: true,
        })
    }

    pub fn add_native(&mut self, addr: Ipv6Addr) -> usize {
        self.natives.push(NativeHost {
            addr,
            rx: Vec::new(),
        });
        self.natives.len() - 1
    }

    fn push_node(&mut self, n: Node) -> NodeId {
        self.nodes.push(n);
        self.nodes.len() - 1
    }

    pub fn client(&self, id: NodeId) -> &Client {
        match &self.nodes[id].engine {
            Engine::Client(c) => c,
            _ => panic!("node {id} is not a client"),
        }
    }

    pub fn client_mut(&mut self, id: NodeId) -> &mut Client {
        match &mut self.nodes[id].engine {
            Engine::Client(c) => c,
            _ => panic!("node {id} is not a client"),
        }
    }

    /// Gives server `id` another Teredo prefix, as a reload of its
    /// configuration would (the server keeps no per-client state).
    pub fn set_server_prefix(&mut self, id: NodeId, prefix: u32) {
        match &mut self.nodes[id].engine {
            Engine::Server(s) => {
                let mut cfg = s.config().clone();
                cfg.prefix = prefix;
                **s = Server::new(cfg);
            }
            _ => panic!("node {id} is not a server"),
        }
    }

    pub fn relay_engine(&self, id: NodeId) -> &Relay {
        match &self.nodes[id].engine {
            Engine::Relay(r) => r,
            _ => panic!("node {id} is not a relay"),
        }
    }

    pub fn server_engine(&self, id: NodeId) -> &Server {
        match &self.nodes[id].engine {
            Engine::Server(s) => s,
            _ => panic!("node {id} is not a server"),
        }
    }

    /// The client's current Teredo address.
    pub fn teredo_addr(&self, id: NodeId) -> Option<Ipv6Addr> {
        self.client(id).qualification().map(|q| q.addr)
    }

    // ------------------------------------------------------------------
    // Moving packets.

    fn schedule(&mut self, at: Instant, what: InFlight) {
        self.seq += 1;
        self.queue.insert((at, self.seq), what);
    }

    fn lost(&mut self) -> bool {
        self.loss > 0.0 && (self.rng.next_u32() as f64 / u32::MAX as f64) < self.loss
    }

    /// The daemon tells client `id` the port mapping it got (or lost).
    #[allow(dead_code)]
    pub fn set_port_mapping(&mut self, id: NodeId, external: Option<SocketAddrV4>) {
        self.client_mut(id).set_port_mapping(external);
    }

    /// A node's engine output.
    fn apply(&mut self, id: NodeId, outs: Vec<Output>) {
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
        self.send_v4_ecn(src, dst, payload, lan, 0);
    }

    fn send_v4_ecn(
        &mut self,
        src: SocketAddrV4,
        dst: SocketAddrV4,
        payload: Vec<u8>,
        lan: Option<LanId>,
        ecn: u8,
    ) {
        self.send_v4_full(src, dst, payload, lan, ecn, None);
    }

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

    fn node_at(&self, ip: Ipv4Addr, port: u16, lan: Option<LanId>) -> Option<NodeId> {
        self.nodes
            .iter()
            .position(|n| n.lan == lan && n.port == port && n.addrs.contains(&ip))
    }

    fn deliver_v4(&mut self, d: Datagram) {
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
        let mut from_lan = lan;
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
                from_lan = None;
                // The NAT forwarded it (one hop); the Internet's router is
                // the next: a time to live of 2 or less dies there.
                if !self.flat_internet && ttl.is_some_and(|t| t <= 2) {
                    self.log(format!("ttl expired after nat {nat}: {src} -> {dst}"));
                    return;
                }
            }
        }
        let _ = from_lan;
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
        match &mut self.nodes[id].engine {
            Engine::Server(s) => s.handle_udp(now, from, to, payload, &mut out),
            Engine::Relay(r) => r.handle_udp_ecn(now, from, to, ecn, payload, &mut out),
            Engine::Client(c) => c.handle_udp_ecn(now, from, to, ecn, payload, &mut out),
        }
        self.apply(id, out);
    }

    /// The IPv6 core: Teredo destinations go to the relay; native ones to
    /// their host, which answers pings.
    fn deliver_v6(&mut self, p: Vec<u8>) {
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
    fn deliver_client_tun(&mut self, id: NodeId, p: Vec<u8>) {
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

    // ------------------------------------------------------------------
    // Time.

    fn next_timer(&self) -> Option<(Instant, NodeId)> {
        self.nodes
            .iter()
            .enumerate()
            .filter_map(|(i, n)| {
                let t = match &n.engine {
                    Engine::Server(s) => s.poll_timeout(),
                    Engine::Relay(r) => r.poll_timeout(),
                    Engine::Client(c) => c.poll_timeout(),
                };
                t.map(|t| (t, i))
            })
            .min()
    }

    /// Runs the world until `deadline` (virtual), in bounded steps.
    pub fn run_until(&mut self, deadline: Instant) {
        for _ in 0..5_000_000 {
            let next_packet = self.queue.keys().next().map(|k| k.0);
            let next_timer = self.next_timer();
            let t = match (next_packet, next_timer) {
                (Some(p), Some((t, _))) => p.min(t),
                (Some(p), None) => p,
                (None, Some((t, _))) => t,
                (None, None) => {
                    // Nothing in flight and nothing due: idle until then.
                    self.now = self.now.max(deadline);
                    return;
                }
            };
            if t > deadline {
                self.now = deadline;
                return;
            }
            self.now = self.now.max(t);
            if next_packet == Some(t) {
                let Some((_, what)) = self.queue.pop_first() else {
                    continue;
                };
                match what {
                    InFlight::V4(d) => self.deliver_v4(d),
                    InFlight::V6(p) => self.deliver_v6(p),
                    InFlight::ClientTun(id, p) => self.deliver_client_tun(id, p),
                }
            } else if let Some((_, id)) = next_timer {
                let now = self.now;
                let mut out = Vec::new();
                match &mut self.nodes[id].engine {
                    Engine::Server(s) => s.handle_timeout(now, &mut out),
                    Engine::Relay(r) => r.handle_timeout(now, &mut out),
                    Engine::Client(c) => c.handle_timeout(now, &mut out),
                }
                self.apply(id, out);
            }
        }
        panic!("simulation did not settle (event storm?)");
    }

    pub fn run_for(&mut self, d: Duration) {
        let deadline = self.now + d;
        self.run_until(deadline);
    }

    /// Runs until `cond` holds, checking after every step, for at most `d`.
    pub fn run_until_cond(&mut self, d: Duration, mut cond: impl FnMut(&World) -> bool) -> bool {
        let deadline = self.now + d;
        let step = Duration::from_millis(50);
        while self.now < deadline {
            if cond(self) {
                return true;
            }
            let next = (self.now + step).min(deadline);
            self.run_until(next);
        }
        cond(self)
    }

    /// Runs until the client is qualified, for at most `d`.
    pub fn qualify(&mut self, id: NodeId, d: Duration) -> Ipv6Addr {
        let ok = self.run_until_cond(d, |w| w.teredo_addr(id).is_some());
        assert!(
            ok,
            "client {id} did not qualify in {d:?}\n{}",
            self.trace.join("\n")
        );
        self.teredo_addr(id).unwrap()
    }

    // ------------------------------------------------------------------
    // Observations.

    /// Echo replies a client's TUN received for `ident`.
    pub fn client_echo_replies(&self, id: NodeId, ident: u16) -> Vec<u16> {
        echo_seqs(&self.nodes[id].tun_rx, false, ident)
    }

    /// Echo requests a client's TUN received for `ident`.
    pub fn client_echo_requests(&self, id: NodeId, ident: u16) -> Vec<u16> {
        echo_seqs(&self.nodes[id].tun_rx, true, ident)
    }

    pub fn native_echo_replies(&self, h: usize, ident: u16) -> Vec<u16> {
        // What came back to the native host: replies addressed to it.
        echo_seqs(&self.natives[h].rx, false, ident)
    }

    pub fn native_echo_requests(&self, h: usize, ident: u16) -> Vec<u16> {
        echo_seqs(&self.natives[h].rx, true, ident)
    }

    pub fn events(&self, id: NodeId) -> Vec<Event> {
        self.nodes[id]
            .events
            .iter()
            .map(|(_, e)| e.clone())
            .collect()
    }
}

/// An echo request packet.
pub fn echo_request(src: Ipv6Addr, dst: Ipv6Addr, ident: u16, seq: u16, len: usize) -> Vec<u8> {
    let data: Vec<u8> = (0..len).map(|i| (i as u8) ^ (seq as u8)).collect();
    icmpv6::build_packet(
        src,
        dst,
        64,
        &Icmpv6Repr::EchoRequest {
            ident,
            seq,
            data: &data,
        },
    )
}

/// The kernel's answer to an echo request, if `p` is one.
pub fn echo_reply(p: &[u8]) -> Option<Vec<u8>> {
    let ip = Ipv6Packet::new_checked(p).ok()?;
    if ip.next_header() != next_header::ICMPV6 || ip.dst_addr().is_multicast() {
        return None;
    }
    match Icmpv6Repr::parse(&ip.src_addr(), &ip.dst_addr(), ip.payload()).ok()? {
        Icmpv6Repr::EchoRequest { ident, seq, data } => Some(icmpv6::build_packet(
            ip.dst_addr(),
            ip.src_addr(),
            64,
            &Icmpv6Repr::EchoReply { ident, seq, data },
        )),
        _ => None,
    }
}

fn echo_seqs(packets: &[Vec<u8>], requests: bool, want: u16) -> Vec<u16> {
    packets
        .iter()
        .filter_map(|p| {
            let ip = Ipv6Packet::new_checked(&p[..]).ok()?;
            if ip.next_header() != next_header::ICMPV6 {
                return None;
            }
            match Icmpv6Repr::parse(&ip.src_addr(), &ip.dst_addr(), ip.payload()).ok()? {
                Icmpv6Repr::EchoRequest { ident, seq, .. } if requests && ident == want => {
                    Some(seq)
                }
                Icmpv6Repr::EchoReply { ident, seq, .. } if !requests && ident == want => Some(seq),
                _ => None,
            }
        })
        .collect()
}

pub fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

pub fn ip6(s: &str) -> Ipv6Addr {
    s.parse().unwrap()
}
