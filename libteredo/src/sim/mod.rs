//! A deterministic simulated network for the sans-IO engines (the shape
//! of quinn-proto's `Pair` and smoltcp's `tests/sim`): a virtual IPv4
//! Internet with NAT models, LANs with multicast, an IPv6 core with
//! native hosts, all on a virtual clock and reproducible from a seed.
//!
//! Nothing here is a Teredo implementation: the world only moves datagrams
//! between engines, translates them in NATs, and answers pings like a
//! kernel would. It is built with the `sim` feature, for the simulator
//! tests (`libteredo/tests/sim/`) and the fuzzers (`libteredo/fuzz/`);
//! the daemons never link it.
//!
//! - this file: the [`World`], how it is built and what it records;
//! - `nat`: the NAT models ([`Nat`], [`NatKind`]);
//! - `node`: the engines as the world (and the fuzzers) drive them
//!   ([`Engine`], [`Node`], [`NativeHost`]);
//! - `net`: moving packets: NAT translation, loss, latency, ECN marks,
//!   multicast on a LAN, the IPv6 core;
//! - `clock`: the virtual clock ([`World::run_until`] and friends);
//! - `echo`: ICMPv6 echo as the hosts' kernels answer and tests count it.

mod clock;
mod echo;
mod nat;
mod net;
mod node;

pub use crate::addr::TEREDO_PORT;
pub use echo::{echo_reply, echo_request};
pub use nat::{Nat, NatKind};
pub use node::{Engine, NativeHost, Node};

use crate::proto::{Client, ClientConfig};
use crate::proto::{Event, Random, SeededRandom};
use crate::proto::{ForwarderConfig, Relay};
use crate::proto::{Server, ServerConfig};
use net::InFlight;
use std::collections::{BTreeMap, HashMap};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV4};
use std::time::{Duration, Instant};

pub type NodeId = usize;
pub type NatId = usize;
pub type LanId = usize;

/// A trace line, for reproducibility checks and failure reports.
pub type Trace = Vec<String>;

/// The simulated network: its nodes, NATs and native hosts, the packets
/// in flight, the virtual clock, and what it recorded.
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

impl World {
    /// An empty world whose every random choice comes from `seed`; its
    /// clock starts now, 10 ms latency, no loss.
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

    /// Virtual time since the world began.
    pub fn elapsed(&self) -> Duration {
        self.now - self.base
    }

    /// A line of the trace, stamped with the virtual time.
    fn log(&mut self, s: String) {
        let t = self.elapsed();
        self.trace.push(format!("{:>9.3} {}", t.as_secs_f64(), s));
    }

    /// A random source of its own for a new engine, from the world's.
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
        self.nats.push(Nat::new(kind, wan, hairpin, lan));
        let id = self.nats.len() - 1;
        self.lan_nat[lan] = Some(id);
        (id, lan)
    }

    /// A server on `primary` and the next address, with the defaults.
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

    /// A relay at `ip` (on `lan`, or the Internet) with settings of its
    /// own; the first relay is the one the IPv6 core routes 2001::/32 to.
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

    /// A client at `ip:port` on `lan` with settings of its own.
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

    /// A native IPv6 host at `addr` on the core.
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

    /// Node `id`'s client engine (panics for another kind of node).
    pub fn client(&self, id: NodeId) -> &Client {
        match &self.nodes[id].engine {
            Engine::Client(c) => c,
            _ => panic!("node {id} is not a client"),
        }
    }

    /// Node `id`'s client engine, to call it as the daemon would.
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

    /// Node `id`'s relay engine (panics for another kind of node).
    pub fn relay_engine(&self, id: NodeId) -> &Relay {
        match &self.nodes[id].engine {
            Engine::Relay(r) => r,
            _ => panic!("node {id} is not a relay"),
        }
    }

    /// Node `id`'s server engine (panics for another kind of node).
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

    /// The daemon tells client `id` the port mapping it got (or lost).
    pub fn set_port_mapping(&mut self, id: NodeId, external: Option<SocketAddrV4>) {
        self.client_mut(id).set_port_mapping(external);
    }

    /// The events node `id` reported, in order.
    pub fn events(&self, id: NodeId) -> Vec<Event> {
        self.nodes[id]
            .events
            .iter()
            .map(|(_, e)| e.clone())
            .collect()
    }
}

/// An IPv4 address written in a test (panics on a typo).
pub fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

/// An IPv6 address written in a test (panics on a typo).
pub fn ip6(s: &str) -> Ipv6Addr {
    s.parse().unwrap()
}
