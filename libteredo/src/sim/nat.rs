//! The NAT models of the simulated network, in RFC 4787's vocabulary
//! (endpoint-independent or address(-and-port)-dependent mapping and
//! filtering), the sequential port-symmetric NAT of RFC 6081, and Linux's
//! nftables `masquerade` with its conntrack entries. Each NAT also keeps
//! the port mappings a client asked for (PCP, NAT-PMP, UPnP IGD).

use super::LanId;
use crate::proto::{Random, SeededRandom};
use std::collections::{HashMap, HashSet};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::{Duration, Instant};

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

/// A NAT in front of one LAN (RFC 4787 behaviours, and Linux's
/// `masquerade`).
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

impl Nat {
    /// A NAT of `kind` with WAN address `wan` in front of `lan`, with no
    /// mapping yet; mappings expire after two minutes of silence.
    pub(super) fn new(kind: NatKind, wan: Ipv4Addr, hairpin: bool, lan: LanId) -> Nat {
        Nat {
            kind,
            wan,
            hairpin,
            timeout: Duration::from_secs(120),
            bindings: Vec::new(),
            blocked: HashMap::new(),
            next_port: 0,
            seq: 0,
            lan,
            port_mappings: HashMap::new(),
        }
    }

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
    pub(super) fn outbound(
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
    pub(super) fn inbound(
        &mut self,
        now: Instant,
        remote: SocketAddrV4,
        port: u16,
    ) -> Option<SocketAddrV4> {
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
