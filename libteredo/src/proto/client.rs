//! The Teredo client engine: qualification (RFC 4380 5.2.1) with the
//! RFC 5991 changes (never the cone bit, random flags), NAT behaviour
//! observed through the secondary server address, maintenance (5.2.5),
//! server loss and requalification, and the forwarding rules shared with
//! relays ([`super::relay::Forwarder`]) plus local discovery (5.2.8).

use super::discovery::{Discovery, DiscoveryConfig};
use super::relay::{ClientIdentity, Forwarder, ForwarderConfig, Received};
use super::stats::{DropReason, Stats};
use super::{Event, NatBehaviour, Output, Random, Transmit};
use crate::addr::{self, TeredoAddr, LINK_LOCAL_CONE, LINK_LOCAL_RESTRICTED, TEREDO_PORT};
use crate::wire::icmpv6::{self, Icmpv6Repr, RouterAdvert};
use crate::wire::ipv6::next_header;
use crate::wire::teredo::{Auth, TeredoPacket};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV4};
use std::time::{Duration, Instant};

/// RFC 4380 5.2.1: wait T = 4 s for an RA ...
pub const RS_TIMEOUT: Duration = Duration::from_secs(4);
/// ... and try N = 3 times.
pub const RS_ATTEMPTS: u8 = 3;
/// RFC 4380 2.15: the Teredo refresh interval.
pub const REFRESH_INTERVAL: Duration = Duration::from_secs(30);
/// The first wait before qualifying again after a failed round; it doubles
/// up to [`MAX_BACKOFF`].
pub const MIN_BACKOFF: Duration = Duration::from_secs(10);
/// At most one refresh interval: a server that comes back is used again
/// within one.
pub const MAX_BACKOFF: Duration = REFRESH_INTERVAL;
/// Solicitations with the cone bit (NAT test only).
pub const CONE_PROBE_ATTEMPTS: u8 = 2;
/// The largest step between two mappings a NAT is taken to allocate
/// sequentially (RFC 6081 sequential port-symmetric NAT).
pub const MAX_SEQUENTIAL_STEP: u16 = 16;
/// The MTU when the RA carries none (RFC 4380 5.1.2).
pub const DEFAULT_MTU: u16 = 1280;

/// Client settings.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// The primary server address (ServerAddress). The unspecified address
    /// (0.0.0.0) means no server yet (its name does not resolve yet): the
    /// client waits, sending nothing, until [`Client::set_server_list`]
    /// gives it one.
    pub server: Ipv4Addr,
    /// The secondary server address (ServerAddress2; primary + 1 by default).
    pub server2: Ipv4Addr,
    pub forwarder: ForwarderConfig,
    pub refresh_interval: Duration,
    /// Local client discovery (RFC 4380 5.2.8); `None` disables it.
    pub discovery: Option<DiscoveryConfig>,
    /// Our local endpoint (address and service port), when known: it tells
    /// a port-preserving NAT apart, and it is the alternate address peers
    /// behind the same NAT may reach us at (RFC 6081 hairpinning).
    pub local: Option<SocketAddrV4>,
    /// The Teredo prefix (its first 32 bits) the client may take an address
    /// in: the one miredo-privproc will let the daemon configure
    /// (2001::/32 by default). An RA naming another prefix is refused
    /// (counted as [`DropReason::ForeignPrefix`]): the server is treated as
    /// failing, never followed into an address the daemon cannot use.
    pub allowed_prefix: u32,
    /// Other servers to use, in order, each as (primary, secondary) address,
    /// when the current one stops answering (a `ServerAddress` name that
    /// resolves to several addresses): the client moves to the next after
    /// the RFC's retries, and around the list again. Empty: only `server`.
    pub fallbacks: Vec<(Ipv4Addr, Ipv4Addr)>,
}

impl ClientConfig {
    /// Defaults for a server: ServerAddress2 = ServerAddress + 1.
    pub fn new(server: Ipv4Addr) -> Self {
        ClientConfig {
            server,
            server2: Ipv4Addr::from(u32::from(server).wrapping_add(1)),
            forwarder: ForwarderConfig::default(),
            refresh_interval: REFRESH_INTERVAL,
            discovery: None,
            local: None,
            allowed_prefix: addr::TEREDO_PREFIX,
            fallbacks: Vec::new(),
        }
    }
}

/// The client's connectivity status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientState {
    /// Soliciting the server.
    Probing,
    Qualified,
    /// The last round failed; the next starts later.
    Offline,
}

impl std::fmt::Display for ClientState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ClientState::Probing => "probing",
            ClientState::Qualified => "qualified",
            ClientState::Offline => "offline",
        })
    }
}

/// What we are qualified with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Qualification {
    pub addr: Ipv6Addr,
    pub mapped: SocketAddrV4,
    pub mtu: u16,
    pub prefix: u32,
    /// The server's address as its prefix names it (in our address).
    pub server: Ipv4Addr,
}

/// An outstanding router solicitation.
#[derive(Clone, Copy, Debug)]
struct Solicit {
    nonce: [u8; 8],
    /// Where it went.
    server: Ipv4Addr,
    /// Whether its source carried the cone bit (a NAT probe only).
    cone: bool,
    attempts: u8,
    next: Instant,
    /// Whether a refused answer to this solicitation was logged already:
    /// the server answers each repetition alike, so one line per round.
    refusal_logged: bool,
}

/// The NAT determination after qualification.
#[derive(Clone, Copy, Debug, Default)]
struct NatProbe {
    /// Mapped endpoint seen by the secondary address: Some(None) = no answer.
    secondary: Option<Option<SocketAddrV4>>,
    /// Whether the RS with the cone bit was answered: Some(false) = no.
    cone: Option<bool>,
}

/// The client engine.
pub struct Client {
    cfg: ClientConfig,
    rng: Box<dyn Random + Send>,
    fwd: Forwarder,
    discovery: Option<Discovery>,
    state: ClientState,
    current: Option<Qualification>,
    /// The qualification or maintenance solicitation.
    primary: Option<Solicit>,
    secondary: Option<Solicit>,
    cone_probe: Option<Solicit>,
    /// When to solicit the secondary address.
    secondary_at: Option<Instant>,
    nat: NatBehaviour,
    nat_probe: NatProbe,
    last_server_rx: Instant,
    /// When the next maintenance check is due (qualified).
    next_refresh: Option<Instant>,
    /// When to start a new qualification round (offline).
    retry_at: Option<Instant>,
    backoff: Duration,
    /// Servers moved to since one last answered (bounds a round of the
    /// fallback list before backing off).
    servers_tried: usize,
    /// The external endpoint of the port mapping the daemon holds on the
    /// home gateway for our service port (PCP, NAT-PMP or UPnP IGD).
    port_mapping: Option<SocketAddrV4>,
}

impl Client {
    pub fn new(cfg: ClientConfig, mut rng: Box<dyn Random + Send>, now: Instant) -> Self {
        let mut fwd = Forwarder::new_client(&cfg.forwarder, rng.as_mut(), now);
        fwd.set_local(cfg.local);
        let discovery = cfg.discovery.clone().map(|c| {
            let mut d = Discovery::new(c);
            d.seed(rng.as_mut());
            d
        });
        Client {
            cfg,
            rng,
            fwd,
            discovery,
            state: ClientState::Probing,
            current: None,
            primary: None,
            secondary: None,
            cone_probe: None,
            secondary_at: None,
            nat: NatBehaviour::Unknown,
            nat_probe: NatProbe::default(),
            last_server_rx: now,
            next_refresh: None,
            // Start at once.
            retry_at: Some(now),
            backoff: MIN_BACKOFF,
            servers_tried: 0,
            port_mapping: None,
        }
    }

    pub fn state(&self) -> ClientState {
        self.state
    }

    pub fn qualification(&self) -> Option<Qualification> {
        self.current
    }

    pub fn nat(&self) -> NatBehaviour {
        self.nat
    }

    pub fn stats(&self) -> &Stats {
        &self.fwd.stats
    }

    /// Gives back the buffers of packets this engine handed out (see
    /// [`Forwarder::recycle`]).
    pub fn recycle(&mut self, used: &mut Vec<Vec<u8>>) {
        self.fwd.recycle(used);
    }

    pub fn peer_count(&self) -> usize {
        self.fwd.peers.len()
    }

    /// The list of recent peers.
    pub fn peers(&self) -> &crate::proto::peers::PeerTable {
        &self.fwd.peers
    }

    pub fn config(&self) -> &ClientConfig {
        &self.cfg
    }

    /// The host's own path to the server changed (an IPv4 address added or
    /// removed, the default route changed, the outgoing interface went down
    /// or up), or the host slept (its NAT's mapping is most likely gone):
    /// solicit the server at once instead of at the next refresh. While
    /// qualified this is a maintenance solicitation: the address stays
    /// until an answer brings another ([`Event::Qualified`] with `old`), or
    /// until the retries fail. Offline, a new round starts now with the
    /// backoff reset.
    pub fn path_changed(&mut self, now: Instant) {
        self.backoff = MIN_BACKOFF;
        if !self.has_server() {
            return;
        }
        self.next_refresh = None;
        // A solicitation in flight may have gone the old way: a fresh one,
        // with all its retries.
        let s = self.new_solicit(self.cfg.server, false, now);
        self.primary = Some(Solicit { next: now, ..s });
        self.retry_at = None;
        if self.current.is_none() {
            self.state = ClientState::Probing;
        }
        // The NAT may be another: observe it again once qualified.
        self.secondary = None;
        self.cone_probe = None;
        self.secondary_at = None;
    }

    /// Our local endpoint changed (the host's address towards the server,
    /// after a path change): the alternate address peers behind our NAT
    /// reach us at (RFC 6081), and what tells a port-preserving NAT apart.
    pub fn set_local(&mut self, local: Option<SocketAddrV4>) {
        self.cfg.local = local;
        self.fwd.set_local(local);
    }

    /// The gateway maps `external` to our service port for any remote (a
    /// PCP, NAT-PMP or UPnP IGD mapping), or no longer does (`None`).
    ///
    /// The address stays the one the server sees (its origin indication):
    /// everything we send through a server must come from the endpoint our
    /// address embeds (RFC 4380 5.3.1), and our packets leave from the
    /// mapped port only when the NAT translates them onto it. When the
    /// mapping is that endpoint, anyone can reach it and the client behaves
    /// as one behind a cone NAT (RFC 6081's UPnP-enabled NAT): no direct
    /// bubble of ours is needed before a peer can answer, and one would
    /// even do harm, the conntrack entry it makes clashing with the one the
    /// peer's answer through the mapping needs. A mapping of another
    /// endpoint is reported, not used: the daemon's mapper moves a mapping
    /// on another port of the same address to the endpoint the address
    /// embeds (`portmap::PortMapper::want`), and one on another address
    /// (the gateway is not the outermost NAT) means nothing to peers.
    pub fn set_port_mapping(&mut self, external: Option<SocketAddrV4>) {
        self.port_mapping = external;
        self.fwd.set_behind_cone(self.behaves_as_cone());
        self.fwd.set_inbound_mapping(self.port_mapping_in_use());
    }

    /// The port mapping the daemon reported (see
    /// [`Client::set_port_mapping`]).
    pub fn port_mapping(&self) -> Option<SocketAddrV4> {
        self.port_mapping
    }

    /// Whether the port mapping is the endpoint our address embeds (and so
    /// in use).
    pub fn port_mapping_in_use(&self) -> bool {
        self.current
            .is_some_and(|q| self.port_mapping == Some(q.mapped))
    }

    /// Whether no direct bubble of ours is needed to let a peer in: the NAT
    /// is a cone, or a port mapping lets anyone reach our address.
    fn behaves_as_cone(&self) -> bool {
        self.nat == NatBehaviour::Cone || self.port_mapping_in_use()
    }

    /// Whether the client has a server to solicit (see
    /// [`ClientConfig::server`]).
    pub fn has_server(&self) -> bool {
        !self.cfg.server.is_unspecified()
    }

    /// The servers to use: the current pair first, then `fallbacks`.
    pub fn servers(&self) -> impl Iterator<Item = (Ipv4Addr, Ipv4Addr)> + '_ {
        std::iter::once((self.cfg.server, self.cfg.server2))
            .chain(self.cfg.fallbacks.iter().copied())
    }

    /// Changes the servers (a reload). A different primary server starts a
    /// new qualification.
    pub fn set_servers(
        &mut self,
        now: Instant,
        server: Ipv4Addr,
        server2: Ipv4Addr,
        out: &mut Vec<Output>,
    ) {
        self.set_server_list(now, server, server2, Vec::new(), out);
    }

    /// Changes the servers, with fallbacks (see [`ClientConfig::fallbacks`]).
    /// A different primary server starts a new qualification.
    pub fn set_server_list(
        &mut self,
        now: Instant,
        server: Ipv4Addr,
        server2: Ipv4Addr,
        fallbacks: Vec<(Ipv4Addr, Ipv4Addr)>,
        out: &mut Vec<Output>,
    ) {
        let changed = server != self.cfg.server;
        self.cfg.server = server;
        self.cfg.server2 = server2;
        self.cfg.fallbacks = fallbacks;
        self.servers_tried = 0;
        if changed {
            self.lose(now, out);
            self.retry_at = Some(now);
        }
    }

    fn nonce(&mut self) -> [u8; 8] {
        let mut n = [0u8; 8];
        self.rng.fill(&mut n);
        n
    }

    /// Sends (or resends) a router solicitation.
    fn send_rs(s: &mut Solicit, now: Instant, out: &mut Vec<Output>) {
        let src = if s.cone {
            LINK_LOCAL_CONE
        } else {
            LINK_LOCAL_RESTRICTED
        };
        let mut payload = Vec::with_capacity(13 + 48);
        Auth {
            client_id: &[],
            auth_value: &[],
            nonce: s.nonce,
            confirmation: 0,
        }
        .emit(&mut payload);
        payload.extend_from_slice(&icmpv6::build_packet(
            src,
            addr::ALL_ROUTERS,
            255,
            &Icmpv6Repr::RouterSolicit,
        ));
        out.push(Output::Udp(Transmit {
            from: None,
            to: SocketAddrV4::new(s.server, TEREDO_PORT),
            payload,
            ecn: 0,
            ttl: None,
        }));
        s.attempts += 1;
        s.next = now + RS_TIMEOUT;
    }

    fn new_solicit(&mut self, server: Ipv4Addr, cone: bool, now: Instant) -> Solicit {
        Solicit {
            nonce: self.nonce(),
            server,
            cone,
            attempts: 0,
            next: now,
            refusal_logged: false,
        }
    }

    /// Forgets the qualification (server lost or servers changed).
    fn lose(&mut self, now: Instant, out: &mut Vec<Output>) {
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

    // ------------------------------------------------------------------

    /// A datagram received on the Teredo service port (or, with
    /// `to_local` the discovery address, on the discovery socket).
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

    /// [`Client::handle_udp`] for a datagram whose outer IPv4 header
    /// carried the ECN field `ecn` (RFC 9601).
    pub fn handle_udp_ecn(
        &mut self,
        now: Instant,
        from: SocketAddrV4,
        to_local: SocketAddrV4,
        ecn: u8,
        bytes: &[u8],
        out: &mut Vec<Output>,
    ) {
        self.fwd.set_rx_ecn(ecn);
        self.fwd.stats.udp_rx_packets += 1;
        self.fwd.stats.udp_rx_bytes += bytes.len() as u64;
        let Ok(pkt) = TeredoPacket::parse(bytes) else {
            self.fwd.stats.drop(DropReason::Malformed);
            return;
        };
        let from_server = from.port() == TEREDO_PORT
            && (*from.ip() == self.cfg.server || *from.ip() == self.cfg.server2);
        if from_server && !to_local.ip().is_multicast() {
            self.handle_server_packet(now, from, &pkt, out);
            return;
        }
        if pkt.auth.is_some() || pkt.origin.is_some() {
            // Only our server may send these.
            self.fwd.stats.drop(DropReason::Unexpected);
            return;
        }
        if self.fwd.handle_peer_packet(now, from, to_local, &pkt, out) == Received::Discovery {
            match (&mut self.discovery, self.current) {
                (Some(d), Some(q)) => d.handle_bubble(&mut self.fwd, now, &q, from, &pkt, out),
                _ => self.fwd.stats.drop(DropReason::Unexpected),
            }
        }
    }

    fn handle_server_packet(
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

    /// Which outstanding solicitation an RA answers, by nonce.
    fn match_solicit(&self, nonce: &[u8; 8]) -> Option<u8> {
        [self.primary, self.secondary, self.cone_probe]
            .iter()
            .position(|s| s.is_some_and(|s| s.nonce == *nonce))
            .map(|i| i as u8)
    }

    /// The outstanding solicitation [`Client::match_solicit`] named.
    fn solicit_mut(&mut self, which: u8) -> Option<&mut Solicit> {
        match which {
            0 => self.primary.as_mut(),
            1 => self.secondary.as_mut(),
            _ => self.cone_probe.as_mut(),
        }
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
        match which {
            0 => {
                let Some(prefix) = prefix else { return };
                let mtu = ra
                    .mtu
                    .and_then(|m| u16::try_from(m).ok())
                    .filter(|m| *m >= 1280)
                    .unwrap_or(DEFAULT_MTU);
                self.primary = None;
                let server = prefix_server.unwrap_or(self.cfg.server);
                self.qualified(now, prefix, server, mapped, mtu, out);
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
        self.servers_tried = 0;
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
    fn decide_nat(&mut self, out: &mut Vec<Output>) {
        let Some(current) = self.current.map(|q| q.mapped) else {
            return;
        };
        let nat = match (self.nat_probe.cone, self.nat_probe.secondary) {
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

    fn schedule_refresh(&mut self, now: Instant) {
        // RFC 4380 5.2: the randomized refresh interval is 75 % to 100 % of
        // the refresh interval.
        let base = self.cfg.refresh_interval;
        let jitter = u64::from(self.rng.next_u32() % 1000);
        let d = base.mul_f64(0.75) + base.mul_f64(0.25).mul_f64(jitter as f64 / 1000.0);
        self.next_refresh = Some(now + d);
    }

    // ------------------------------------------------------------------

    /// An IPv6 packet from the TUN device.
    pub fn handle_tun(&mut self, now: Instant, pkt: &[u8], out: &mut Vec<Output>) {
        self.fwd.handle_tun(now, pkt, out);
    }

    pub fn handle_timeout(&mut self, now: Instant, out: &mut Vec<Output>) {
        // Qualification rounds.
        if let Some(at) = self.retry_at {
            if at <= now && self.primary.is_none() && self.has_server() {
                self.retry_at = None;
                self.state = if self.current.is_some() {
                    ClientState::Qualified
                } else {
                    ClientState::Probing
                };
                let mut s = self.new_solicit(self.cfg.server, false, now);
                Self::send_rs(&mut s, now, out);
                self.primary = Some(s);
            }
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
                    // (maintenance) or unreachable (qualification).
                    self.lose(now, out);
                    self.state = ClientState::Offline;
                    if !self.cfg.fallbacks.is_empty()
                        && self.servers_tried < self.cfg.fallbacks.len()
                    {
                        // Another server of the list, at once.
                        let from = self.cfg.server;
                        let next = self.cfg.fallbacks.remove(0);
                        self.cfg.fallbacks.push((self.cfg.server, self.cfg.server2));
                        (self.cfg.server, self.cfg.server2) = next;
                        self.servers_tried += 1;
                        self.retry_at = Some(now);
                        out.push(Output::Event(Event::ServerChanged { from, to: next.0 }));
                    } else {
                        self.servers_tried = 0;
                        self.retry_at = Some(now + self.backoff);
                        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
                    }
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
        if let (Some(d), Some(q)) = (&mut self.discovery, self.current) {
            d.handle_timeout(&mut self.fwd, now, &q, out);
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
}

/// A Teredo prefix given by its first 32 bits, as `2001::/32`.
fn prefix32(prefix: u32) -> String {
    format!("{}/32", Ipv6Addr::from(u128::from(prefix) << 96))
}
