//! Sans-IO protocol engines (the shape of quinn-proto and boringtun's
//! `Tunn`): the caller feeds datagrams, TUN packets and timeouts with the
//! current time, and collects what the engine wants sent in [`Output`]s.
//! No sockets, no clock, no threads, no randomness but the caller's.
//!
//! The engines: [`Client`] (RFC 4380 5.2), [`Relay`] (5.4), [`Server`]
//! (5.3), all three over the same outputs; the client and the relay over
//! one forwarding core (`forward`, private), the client with local
//! discovery (5.2.8). The modules are private and this one exports their
//! API, except two with names of their own (an `Event`, a `Config`, a
//! `PORT`) that callers use as namespaces: [`portmap`], the port mapper
//! (PCP, NAT-PMP), and [`upnp`], the UPnP IGD messages.
//!
//! Imports go one way (no module imports one that imports it back):
//! `client` -> `discovery`, `forward`; `relay` -> `forward`;
//! `discovery` -> `forward` (the client identity); `forward` -> `peers`,
//! `admission`, `ratelimit`, `siphash`, `ecn`; `peers` -> `queues`;
//! `admission` -> `ratelimit`; and every engine -> `output`, `random`,
//! `stats`, which import none of them.

mod admission;
mod client;
pub(crate) mod debuglog;
mod discovery;
mod ecn;
mod forward;
mod output;
mod peers;
pub mod portmap;
mod queues;
mod random;
mod ratelimit;
mod relay;
mod server;
mod siphash;
mod stats;
pub mod upnp;

pub use client::{
    solicitation_datagram, Client, ClientConfig, ClientState, Qualification, ServerCandidate,
    CONE_PROBE_ATTEMPTS, DEFAULT_MTU, HUNT_GRACE, MAX_BACKOFF, MAX_SEQUENTIAL_STEP, MIN_BACKOFF,
    REFRESH_INTERVAL, RS_ATTEMPTS, RS_TIMEOUT,
};
pub use discovery::DiscoveryConfig;
pub use ecn::{CE, ECT0, ECT1, NOT_ECT};
pub use forward::{
    ForwarderConfig, BUBBLE_INTERVAL, BUBBLE_WINDOW, DEFAULT_NEW_PEERS_PER_SECOND, LOW_TTL,
    MAX_BUBBLES, MAX_ENDPOINT_TESTS, PEER_VALIDITY,
};
pub use output::{Event, NatBehaviour, Output, Transmit};
pub use peers::{
    memory_bound, Class as PeerClass, Peer, PeerTable, Stamp, DEFAULT_CAPACITY,
    DEFAULT_QUEUE_BYTES, DEFAULT_TOTAL_QUEUE_BYTES,
};
pub use random::{Random, SeededRandom};
pub use relay::Relay;
pub use server::{advert, advert_datagram, Server, ServerConfig, ServerCounters};
pub use stats::{DropReason, Stats};
