//! The sans-IO engine the daemon drives: a Teredo client (RFC 4380 5.2)
//! or a relay (RFC 4380 5.4), one enum so that the I/O threads and the
//! control loop feed either the same way (`handle_*` in, outputs out).

use libteredo::proto::Client;
use libteredo::proto::Output;
use libteredo::proto::Relay;
use libteredo::proto::Stats;
use std::net::SocketAddrV4;
use std::time::Instant;

/// The engine of this daemon, by mode.
pub enum EngineKind {
    Client(Box<Client>),
    Relay(Box<Relay>),
}

impl EngineKind {
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self {
            EngineKind::Client(c) => c.poll_timeout(),
            EngineKind::Relay(r) => r.poll_timeout(),
        }
    }

    pub fn stats(&self) -> &Stats {
        match self {
            EngineKind::Client(c) => c.stats(),
            EngineKind::Relay(r) => r.stats(),
        }
    }

    pub fn handle_udp(
        &mut self,
        now: Instant,
        from: SocketAddrV4,
        to: SocketAddrV4,
        ecn: u8,
        b: &[u8],
        out: &mut Vec<Output>,
    ) {
        match self {
            EngineKind::Client(c) => c.handle_udp_ecn(now, from, to, ecn, b, out),
            EngineKind::Relay(r) => r.handle_udp_ecn(now, from, to, ecn, b, out),
        }
    }

    pub fn handle_tun(&mut self, now: Instant, b: &[u8], out: &mut Vec<Output>) {
        match self {
            EngineKind::Client(c) => c.handle_tun(now, b, out),
            EngineKind::Relay(r) => r.handle_tun(now, b, out),
        }
    }

    pub fn handle_timeout(&mut self, now: Instant, out: &mut Vec<Output>) {
        match self {
            EngineKind::Client(c) => c.handle_timeout(now, out),
            EngineKind::Relay(r) => r.handle_timeout(now, out),
        }
    }

    /// Gives the engine back the buffers of packets it handed out: with
    /// them, its data paths allocate nothing per packet.
    pub fn recycle(&mut self, used: &mut Vec<Vec<u8>>) {
        match self {
            EngineKind::Client(c) => c.recycle(used),
            EngineKind::Relay(r) => r.recycle(used),
        }
    }
}
