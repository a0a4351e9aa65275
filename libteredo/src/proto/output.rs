//! What an engine call produces ([`Output`]): datagrams to send
//! ([`Transmit`]), IPv6 packets for the TUN device, and [`Event`]s for the
//! caller, among them the NAT behaviour a client observed (RFC 4380 5.2.1,
//! RFC 6081).

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
    /// the peer's (see `ForwarderConfig::low_ttl`).
    pub ttl: Option<u8>,
}

/// What the NAT in front of a client was seen to do (RFC 4380 5.2.1, with
/// the finer classes RFC 6081 adds reported when known).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NatBehaviour {
    /// Behind a cone NAT (same mapping whoever sends).
    Cone,
    /// No NAT at all: the server sees our own address and port, and the
    /// cone test was answered (nothing filters either).
    None,
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
            NatBehaviour::None => "none",
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
