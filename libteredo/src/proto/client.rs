//! The Teredo client engine: qualification (RFC 4380 5.2.1) with the
//! RFC 5991 changes (never the cone bit, random flags), NAT behaviour
//! observed through the secondary server address, maintenance (5.2.5),
//! server loss and requalification, and the forwarding rules shared with
//! relays (the forwarding core, in its client role) plus local discovery
//! (5.2.8).
//!
//! Here: the settings, the state and the calls of the engine contract;
//! [`qualification`]: router solicitations, advertisements and the NAT
//! tests; [`timers`]: retries, maintenance and server loss.

mod qualification;
pub use qualification::solicitation_datagram;
#[cfg(test)]
mod tests;
mod timers;

use super::discovery::{Discovery, DiscoveryConfig};
use super::forward::{Forwarder, ForwarderConfig, Received};
use super::output::{NatBehaviour, Output};
use super::peers::PeerTable;
use super::random::Random;
use super::stats::{DropReason, Stats};
use crate::addr::{self, TEREDO_PORT};
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
/// Looking for a server, the client solicits every server of its list at
/// once; once one answers, it waits this long at most for a more preferred
/// one that has not answered yet (nor been given up), then takes the best
/// answer it has. A dead first server costs this, not the RFC's 12 s.
pub const HUNT_GRACE: Duration = Duration::from_millis(500);

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
    /// The other servers of the list, after `server` in order of
    /// preference, each as (primary, secondary) address (several
    /// `ServerAddress` lines, names with several addresses). Looking for a
    /// server (at start, after losing one), the client solicits them all at
    /// once and qualifies with the most preferred that answers (see
    /// [`HUNT_GRACE`]). Empty: only `server`.
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

/// A server of the client's list and what the client knows of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerCandidate {
    /// Its primary address.
    pub server: Ipv4Addr,
    /// Its secondary address (the NAT test's).
    pub server2: Ipv4Addr,
    /// Whether it answered its last solicitations: `None` until asked.
    pub answering: Option<bool>,
    /// From the solicitation to its advertisement, the last time it
    /// answered.
    pub rtt: Option<Duration>,
    /// When it last answered (a valid advertisement).
    pub last_heard: Option<Instant>,
    /// Why its last advertisement was refused, if it was.
    pub problem: Option<String>,
}

impl ServerCandidate {
    fn new((server, server2): (Ipv4Addr, Ipv4Addr)) -> ServerCandidate {
        ServerCandidate {
            server,
            server2,
            answering: None,
            rtt: None,
            last_heard: None,
            problem: None,
        }
    }
}

/// What a server's advertisement offered while the client looked for a
/// server (qualification, once chosen).
#[derive(Clone, Copy, Debug)]
struct Offer {
    prefix: u32,
    prefix_server: Ipv4Addr,
    mapped: SocketAddrV4,
    mtu: u16,
}

/// One server's part of the search for a server: its solicitation while
/// it is outstanding, its offer once it answered.
#[derive(Clone, Copy, Debug)]
struct HuntSlot {
    solicit: Option<Solicit>,
    offer: Option<Offer>,
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
    /// When the last attempt went.
    sent: Instant,
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
    /// Every server of the list in order of preference (`cfg.server` and
    /// `cfg.fallbacks` as first given): `cfg.server` is the one in use.
    candidates: Vec<ServerCandidate>,
    /// Looking for a server: a slot per candidate (same order); empty
    /// otherwise.
    hunt: Vec<HuntSlot>,
    /// When the search takes the best answer it has (see [`HUNT_GRACE`]).
    hunt_decide_at: Option<Instant>,
    /// The server the client last qualified with, if any.
    last_used: Option<Ipv4Addr>,
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
        let candidates = if cfg.server.is_unspecified() {
            Vec::new()
        } else {
            std::iter::once((cfg.server, cfg.server2))
                .chain(cfg.fallbacks.iter().copied())
                .map(ServerCandidate::new)
                .collect()
        };
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
            candidates,
            hunt: Vec::new(),
            hunt_decide_at: None,
            last_used: None,
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

    /// Takes back the buffers of packets this engine handed out (in
    /// [`Output::Udp`] and [`Output::Tun`]) once the caller is done with
    /// them, leaving `used` empty: the data paths copy their packets into
    /// them, so a caller that gives them back allocates nothing per packet.
    pub fn recycle(&mut self, used: &mut Vec<Vec<u8>>) {
        self.fwd.recycle(used);
    }

    pub fn peer_count(&self) -> usize {
        self.fwd.peers().len()
    }

    /// The list of recent peers.
    pub fn peers(&self) -> &PeerTable {
        self.fwd.peers()
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
        if self.current.is_none() {
            // Not qualified: a new search of the whole list, now.
            self.state = ClientState::Probing;
            self.primary = None;
            self.hunt.clear();
            self.hunt_decide_at = None;
            self.retry_at = Some(now);
        } else {
            // A solicitation in flight may have gone the old way: a fresh
            // one, with all its retries.
            let s = self.new_solicit(self.cfg.server, false, now);
            self.primary = Some(Solicit { next: now, ..s });
            self.retry_at = None;
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
        matches!(self.nat, NatBehaviour::Cone | NatBehaviour::None) || self.port_mapping_in_use()
    }

    /// Whether the client has a server to solicit (see
    /// [`ClientConfig::server`]).
    pub fn has_server(&self) -> bool {
        !self.cfg.server.is_unspecified()
    }

    /// The servers of the list, in order of preference.
    pub fn servers(&self) -> impl Iterator<Item = (Ipv4Addr, Ipv4Addr)> + '_ {
        self.candidates.iter().map(|c| (c.server, c.server2))
    }

    /// The servers of the list in order of preference, with what the
    /// client knows of each (for the status page).
    pub fn candidates(&self) -> &[ServerCandidate] {
        &self.candidates
    }

    /// Whether the client is looking for a server (soliciting every server
    /// of its list).
    pub fn hunting(&self) -> bool {
        !self.hunt.is_empty()
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

    /// Changes the list of servers (`server` first, then `fallbacks`, in
    /// order of preference; see [`ClientConfig::fallbacks`]). A client
    /// qualified with a server that is still in the list keeps it; one
    /// whose server left the list looks for a server again; one looking
    /// for a server starts over with the new list.
    pub fn set_server_list(
        &mut self,
        now: Instant,
        server: Ipv4Addr,
        server2: Ipv4Addr,
        fallbacks: Vec<(Ipv4Addr, Ipv4Addr)>,
        out: &mut Vec<Output>,
    ) {
        let pairs: Vec<(Ipv4Addr, Ipv4Addr)> = std::iter::once((server, server2))
            .chain(fallbacks)
            .collect();
        let old = std::mem::take(&mut self.candidates);
        self.candidates = pairs
            .iter()
            .map(|&p| {
                // What the client knew of a server stays with it.
                old.iter()
                    .find(|c| (c.server, c.server2) == p)
                    .cloned()
                    .unwrap_or_else(|| ServerCandidate::new(p))
            })
            .collect();
        self.cfg.fallbacks = pairs[1..].to_vec();
        let kept = pairs
            .iter()
            .find(|p| p.0 == self.cfg.server && self.has_server())
            .copied();
        match kept {
            Some((_, s2)) if self.current.is_some() || self.primary.is_some() => {
                // In use: kept (its secondary may have changed).
                self.cfg.server2 = s2;
            }
            _ => {
                (self.cfg.server, self.cfg.server2) = (server, server2);
                self.lose(now, out);
                self.hunt.clear();
                self.hunt_decide_at = None;
                self.retry_at = Some(now);
            }
        }
    }

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
        let n0 = out.len();
        self.udp_in(now, from, to_local, ecn, bytes, out);
        self.fwd.count_sent(&out[n0..]);
    }

    fn udp_in(
        &mut self,
        now: Instant,
        from: SocketAddrV4,
        to_local: SocketAddrV4,
        ecn: u8,
        bytes: &[u8],
        out: &mut Vec<Output>,
    ) {
        let Some(pkt) = self.fwd.parse_datagram(ecn, bytes) else {
            // From a server we solicit, not qualified with it yet: what came
            // back is worth saying (not "no answer").
            if self.current.is_none() {
                self.server_said(
                    from,
                    format!(
                        "answers with a datagram that is not Teredo ({} bytes)",
                        bytes.len()
                    ),
                );
            }
            return;
        };
        let from_server = from.port() == TEREDO_PORT
            && (*from.ip() == self.cfg.server
                || *from.ip() == self.cfg.server2
                || (self.hunting() && self.candidates.iter().any(|c| c.server == *from.ip())));
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
            // Discovery runs while qualified: with our identity.
            match (&self.discovery, self.fwd.identity()) {
                (Some(d), Some(me)) => match d.accept(&me, self.fwd.prefix(), from, &pkt) {
                    Ok(peer) => self.fwd.discovered(now, peer, from, out),
                    Err(why) => self.fwd.stats.drop(why),
                },
                _ => self.fwd.stats.drop(DropReason::Unexpected),
            }
        }
    }

    /// Notes what a server of the list sent that is no usable answer (for
    /// the status page and the log), while the client has no address.
    pub(super) fn server_said(&mut self, from: SocketAddrV4, what: String) {
        if from.port() != TEREDO_PORT {
            return;
        }
        if let Some(c) = self.candidates.iter_mut().find(|c| c.server == *from.ip()) {
            c.problem = Some(what);
        }
    }

    /// An IPv6 packet from the TUN device.
    pub fn handle_tun(&mut self, now: Instant, pkt: &[u8], out: &mut Vec<Output>) {
        let n0 = out.len();
        self.fwd.handle_tun(now, pkt, out);
        self.fwd.count_sent(&out[n0..]);
    }
}
