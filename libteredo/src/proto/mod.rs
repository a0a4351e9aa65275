//! Sans-IO protocol engines (the shape of quinn-proto and boringtun's
//! `Tunn`): the caller feeds datagrams, TUN packets and timeouts with the
//! current time, and collects what the engine wants sent in [`Output`]s.
//! No sockets, no clock, no threads, no randomness but the caller's.

pub mod admission;
pub mod client;
pub mod discovery;
pub mod ecn;
pub mod peers;
pub mod portmap;
mod queues;
pub mod ratelimit;
pub mod relay;
pub mod server;
pub mod siphash;
pub mod stats;
pub mod upnp;

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV4};

/// A UDP datagram the engine wants sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transmit {
    /// The local address to send from; `None` means the engine's one socket.
    /// The server sends from its primary or secondary address.
    pub from: Option<SocketAddrV4>,
    pub to: SocketAddrV4,
    pub payload: Vec<u8>,
    /// The ECN field for the outer IPv4 header (RFC 9601), 0 for Not-ECT.
    pub ecn: u8,
    /// An IPv4 time to live for this datagram, when not the system's
    /// default: a direct bubble that must open our own NAT without reaching
    /// the peer's (see `relay::LOW_TTL`).
    pub ttl: Option<u8>,
}

/// What the NAT in front of a client was seen to do (RFC 4380 5.2.1, with
/// the finer classes RFC 6081 adds reported when known).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NatBehaviour {
    /// Not behind a NAT, or behind a cone NAT (same mapping whoever sends).
    Cone,
    /// Restricted or port-restricted cone: same mapping for both server
    /// addresses, unsolicited packets refused.
    Restricted,
    /// The mapping changes with the destination, but keeps the local port
    /// when it can (RFC 6081; Linux `masquerade`).
    PortPreservingSymmetric,
    /// The mapping changes with the destination; new mappings take
    /// consecutive ports (RFC 6081).
    SequentialSymmetric,
    /// The mapping changes with the destination, to unpredictable ports.
    RandomSymmetric,
    /// Not (yet) known: the secondary server address did not answer.
    Unknown,
}

impl std::fmt::Display for NatBehaviour {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            NatBehaviour::Cone => "cone",
            NatBehaviour::Restricted => "restricted",
            NatBehaviour::PortPreservingSymmetric => "port-preserving symmetric",
            NatBehaviour::SequentialSymmetric => "sequential symmetric",
            NatBehaviour::RandomSymmetric => "random symmetric",
            NatBehaviour::Unknown => "unknown",
        })
    }
}

/// Something the caller should know or act on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// The client is qualified with this Teredo address (or a new one after
    /// the NAT remapped it: the caller removes `old` before adding `addr`).
    Qualified {
        addr: Ipv6Addr,
        old: Option<Ipv6Addr>,
        mapped: SocketAddrV4,
        mtu: u16,
        nat: NatBehaviour,
    },
    /// The server stopped answering: the address is no longer usable and the
    /// client is requalifying.
    ServerLost { old: Ipv6Addr },
    /// The NAT behaviour learnt from the secondary server address.
    NatObserved(NatBehaviour),
    /// The server `from` did not answer the RFC's retries: the client moved
    /// to `to`, the next server of its list, and qualifies with it.
    ServerChanged { from: Ipv4Addr, to: Ipv4Addr },
}

/// Everything an engine call produces.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    Udp(Transmit),
    /// An IPv6 packet for the TUN device.
    Tun(Vec<u8>),
    Event(Event),
}

/// The source of randomness the caller hands to an engine: the operating
/// system's generator in the daemons, a seeded generator in the simulator.
pub trait Random {
    fn fill(&mut self, buf: &mut [u8]);

    fn next_u32(&mut self) -> u32 {
        let mut b = [0u8; 4];
        self.fill(&mut b);
        u32::from_le_bytes(b)
    }

    fn next_u64(&mut self) -> u64 {
        let mut b = [0u8; 8];
        self.fill(&mut b);
        u64::from_le_bytes(b)
    }
}

/// A small deterministic generator (xoshiro256**) for simulations and
/// tests. Not for nonces in production: the daemons use the OS generator.
#[derive(Clone, Debug)]
pub struct SeededRandom {
    s: [u64; 4],
}

impl SeededRandom {
    pub fn new(seed: u64) -> Self {
        // splitmix64 expands the seed into the state.
        let mut x = seed;
        let mut next = || {
            x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = x;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        };
        SeededRandom {
            s: [next(), next(), next(), next()],
        }
    }

    fn step(&mut self) -> u64 {
        let r = self.s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = self.s[1] << 17;
        self.s[2] ^= self.s[0];
        self.s[3] ^= self.s[1];
        self.s[1] ^= self.s[2];
        self.s[0] ^= self.s[3];
        self.s[2] ^= t;
        self.s[3] = self.s[3].rotate_left(45);
        r
    }
}

impl Random for SeededRandom {
    fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let v = self.step().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
}
