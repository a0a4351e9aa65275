//! The nodes of the simulated network: a Teredo server, relay or client
//! engine with what the world records about it, and native IPv6 hosts.
//!
//! [`Engine`] is the one place that feeds an engine of any of the three
//! kinds (the sans-IO contract: `handle_*` in, outputs collected, time
//! passed in); the world and the fuzzers (`libteredo/fuzz/src/engine.rs`)
//! both drive engines through it.

use super::LanId;
use crate::proto::Client;
use crate::proto::Relay;
use crate::proto::Server;
use crate::proto::{Event, Output};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV4};
use std::time::{Duration, Instant};

/// A node's protocol engine.
pub enum Engine {
    Server(Box<Server>),
    Relay(Box<Relay>),
    Client(Box<Client>),
}

impl Engine {
    /// A datagram from `from` to the engine's `to`, whose outer IPv4
    /// header carried the ECN field `ecn` (RFC 9601; the server has no
    /// use for it).
    pub fn handle_udp(
        &mut self,
        now: Instant,
        from: SocketAddrV4,
        to: SocketAddrV4,
        ecn: u8,
        payload: &[u8],
        out: &mut Vec<Output>,
    ) {
        match self {
            Engine::Server(s) => s.handle_udp(now, from, to, payload, out),
            Engine::Relay(r) => r.handle_udp_ecn(now, from, to, ecn, payload, out),
            Engine::Client(c) => c.handle_udp_ecn(now, from, to, ecn, payload, out),
        }
    }

    /// An IPv6 packet from the engine's TUN interface: the client's host,
    /// or the IPv6 core for a relay. A server has no TUN: nothing happens.
    pub fn handle_tun(&mut self, now: Instant, packet: &[u8], out: &mut Vec<Output>) {
        match self {
            Engine::Server(_) => {}
            Engine::Relay(r) => r.handle_tun(now, packet, out),
            Engine::Client(c) => c.handle_tun(now, packet, out),
        }
    }

    /// The engine's timers, run at `now`.
    pub fn handle_timeout(&mut self, now: Instant, out: &mut Vec<Output>) {
        match self {
            Engine::Server(s) => s.handle_timeout(now, out),
            Engine::Relay(r) => r.handle_timeout(now, out),
            Engine::Client(c) => c.handle_timeout(now, out),
        }
    }

    /// When the engine's next timer is due, if it has one.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self {
            Engine::Server(s) => s.poll_timeout(),
            Engine::Relay(r) => r.poll_timeout(),
            Engine::Client(c) => c.poll_timeout(),
        }
    }

    /// The peers in the engine's table (a server keeps none).
    pub fn peer_count(&self) -> usize {
        match self {
            Engine::Server(_) => 0,
            Engine::Relay(r) => r.peers().len(),
            Engine::Client(c) => c.peer_count(),
        }
    }
}

/// An engine at its place in the network.
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

/// A host on the native IPv6 core: it records what it receives, and its
/// kernel answers echo requests.
pub struct NativeHost {
    pub addr: Ipv6Addr,
    pub rx: Vec<Vec<u8>>,
}
