//! Counters an engine keeps: packets and bytes each way, drops by reason.

/// Why a packet was dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DropReason {
    /// Not a well-formed Teredo or IPv6 packet.
    Malformed,
    /// A destination or mapped IPv4 address that is not global.
    NotGlobal,
    /// Not qualified yet (client).
    NotQualified,
    /// A source address that is not ours (client) or is Teredo (relay).
    WrongSource,
    /// A destination we do not serve.
    WrongDestination,
    /// A non-Teredo destination on a relay.
    NotTeredo,
    /// The peer's or the table's queue is full.
    QueueFull,
    /// A Teredo source address whose endpoint does not match.
    Spoofed,
    /// From a peer we have no reason to trust.
    UnknownPeer,
    /// A routing header with segments left (CVE-2006-6263).
    RoutingHeader,
    /// Over a rate limit.
    RateLimited,
    /// A message that has no business here (e.g. an unsolicited RA).
    Unexpected,
    /// Congestion marked on a packet whose transport is not ECN-capable
    /// (RFC 6040 4.2: dropped).
    EcnNotCapable,
    /// A router advertisement (answering our solicitation) whose Teredo
    /// prefix is not the one the client may take an address in.
    ForeignPrefix,
    /// A packet for a new peer when every entry of the peer list is of a
    /// peer that answered (none is evicted for an untrusted one).
    PeersFull,
}

impl DropReason {
    pub const ALL: [DropReason; 15] = [
        DropReason::Malformed,
        DropReason::NotGlobal,
        DropReason::NotQualified,
        DropReason::WrongSource,
        DropReason::WrongDestination,
        DropReason::NotTeredo,
        DropReason::QueueFull,
        DropReason::Spoofed,
        DropReason::UnknownPeer,
        DropReason::RoutingHeader,
        DropReason::RateLimited,
        DropReason::Unexpected,
        DropReason::EcnNotCapable,
        DropReason::ForeignPrefix,
        DropReason::PeersFull,
    ];

    pub fn name(self) -> &'static str {
        match self {
            DropReason::Malformed => "malformed",
            DropReason::NotGlobal => "not-global",
            DropReason::NotQualified => "not-qualified",
            DropReason::WrongSource => "wrong-source",
            DropReason::WrongDestination => "wrong-destination",
            DropReason::NotTeredo => "not-teredo",
            DropReason::QueueFull => "queue-full",
            DropReason::Spoofed => "spoofed",
            DropReason::UnknownPeer => "unknown-peer",
            DropReason::RoutingHeader => "routing-header",
            DropReason::RateLimited => "rate-limited",
            DropReason::Unexpected => "unexpected",
            DropReason::EcnNotCapable => "ecn-not-capable",
            DropReason::ForeignPrefix => "foreign-prefix",
            DropReason::PeersFull => "peers-full",
        }
    }
}

/// Counters. Plain integers: an engine lives on one thread.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub udp_rx_packets: u64,
    pub udp_rx_bytes: u64,
    pub udp_tx_packets: u64,
    pub udp_tx_bytes: u64,
    pub tun_rx_packets: u64,
    pub tun_rx_bytes: u64,
    pub tun_tx_packets: u64,
    pub tun_tx_bytes: u64,
    pub bubbles_sent: u64,
    pub bubbles_received: u64,
    pub ping_tests_sent: u64,
    pub ping_tests_ok: u64,
    pub icmp_errors: u64,
    pub drops_queue_expired: u64,
    /// Peer endpoints learnt from proven bubbles (RFC 6081).
    pub endpoints_learnt: u64,
    /// New peers held on probation (no bubble) by admission (see
    /// [`super::admission`]).
    pub peers_held: u64,
    /// Held peers admitted on a later packet.
    pub peers_admitted_late: u64,
    pub drops: [u64; DropReason::ALL.len()],
}

impl Stats {
    /// Adds `o`'s counts to ours (the totals of engines on several
    /// threads).
    pub fn add(&mut self, o: &Stats) {
        // Destructured: a counter added later cannot be forgotten here.
        let Stats {
            udp_rx_packets,
            udp_rx_bytes,
            udp_tx_packets,
            udp_tx_bytes,
            tun_rx_packets,
            tun_rx_bytes,
            tun_tx_packets,
            tun_tx_bytes,
            bubbles_sent,
            bubbles_received,
            ping_tests_sent,
            ping_tests_ok,
            icmp_errors,
            drops_queue_expired,
            endpoints_learnt,
            peers_held,
            peers_admitted_late,
            drops,
        } = o;
        self.udp_rx_packets += udp_rx_packets;
        self.udp_rx_bytes += udp_rx_bytes;
        self.udp_tx_packets += udp_tx_packets;
        self.udp_tx_bytes += udp_tx_bytes;
        self.tun_rx_packets += tun_rx_packets;
        self.tun_rx_bytes += tun_rx_bytes;
        self.tun_tx_packets += tun_tx_packets;
        self.tun_tx_bytes += tun_tx_bytes;
        self.bubbles_sent += bubbles_sent;
        self.bubbles_received += bubbles_received;
        self.ping_tests_sent += ping_tests_sent;
        self.ping_tests_ok += ping_tests_ok;
        self.icmp_errors += icmp_errors;
        self.drops_queue_expired += drops_queue_expired;
        self.endpoints_learnt += endpoints_learnt;
        self.peers_held += peers_held;
        self.peers_admitted_late += peers_admitted_late;
        for (a, b) in self.drops.iter_mut().zip(drops) {
            *a += b;
        }
    }

    pub fn drop(&mut self, why: DropReason) {
        if let Some(i) = DropReason::ALL.iter().position(|d| *d == why) {
            self.drops[i] += 1;
        }
        crate::proto::debuglog::debug_line!("dropped a packet: {}", why.name());
    }

    pub fn dropped(&self, why: DropReason) -> u64 {
        DropReason::ALL
            .iter()
            .position(|d| *d == why)
            .map_or(0, |i| self.drops[i])
    }

    pub fn total_drops(&self) -> u64 {
        self.drops.iter().sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn add_sums_every_counter() {
        let mut a = Stats {
            udp_rx_packets: 1,
            peers_admitted_late: 2,
            ..Stats::default()
        };
        a.drop(DropReason::Spoofed);
        let mut total = Stats::default();
        total.add(&a);
        total.add(&a);
        assert_eq!(total.udp_rx_packets, 2);
        assert_eq!(total.peers_admitted_late, 4);
        assert_eq!(total.dropped(DropReason::Spoofed), 2);
        assert_eq!(total.total_drops(), 2);
    }
}
