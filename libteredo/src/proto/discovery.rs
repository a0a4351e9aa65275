//! Local client discovery (RFC 4380 5.2.8): clients behind the same NAT
//! find each other with bubbles to the Teredo IPv4 discovery address
//! 224.0.0.253, and then talk directly, without hairpinning.

use super::client::Qualification;
use super::relay::Forwarder;
use super::stats::DropReason;
use super::{Output, Random, SeededRandom, Transmit};
use crate::addr::{TeredoAddr, ALL_NODES, DISCOVERY_ADDR, TEREDO_PORT};
use crate::wire::ipv6::{next_header, Ipv6Repr};
use crate::wire::teredo::TeredoPacket;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV4};
use std::time::{Duration, Instant};

/// RFC 4380 5.2.8: discovery bubbles every 200 to 300 s.
pub const MIN_INTERVAL: Duration = Duration::from_secs(200);
pub const MAX_INTERVAL: Duration = Duration::from_secs(300);

/// Discovery settings.
#[derive(Clone, Debug, Default)]
pub struct DiscoveryConfig {
    /// The local IPv4 subnets (address, prefix length) discovery bubbles
    /// must come from (RFC 4380 5.2.8: "MUST silently discard ... whose IPv4
    /// source address does not belong to the local IPv4 subnet").
    pub local_nets: Vec<(Ipv4Addr, u8)>,
    /// Accept any mapped address (LocalDiscovery forced); otherwise only
    /// peers behind the same NAT (same mapped IPv4) are accepted, the
    /// protection RFC 4380 5.2.8 allows and section 7.3.4 asks for.
    pub any_mapped: bool,
}

/// The discovery state of a client.
pub struct Discovery {
    cfg: DiscoveryConfig,
    next_send: Option<Instant>,
    rng: SeededRandom,
}

/// A local discovery bubble: from our Teredo address to all nodes, hop
/// limit 1, no payload.
pub fn build_discovery_bubble(src: Ipv6Addr) -> Vec<u8> {
    Ipv6Repr {
        src,
        dst: ALL_NODES,
        next_header: next_header::NO_NEXT_HEADER,
        payload_len: 0,
        hop_limit: 1,
        traffic_class: 0,
    }
    .build(&[])
}

fn in_net(a: Ipv4Addr, net: Ipv4Addr, len: u8) -> bool {
    let mask = if len == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(len.min(32)))
    };
    u32::from(a) & mask == u32::from(net) & mask
}

impl Discovery {
    pub fn new(cfg: DiscoveryConfig) -> Self {
        Discovery {
            cfg,
            next_send: None,
            rng: SeededRandom::new(0x5eed),
        }
    }

    /// Seeds the interval jitter (not security-relevant).
    pub fn seed(&mut self, rng: &mut dyn Random) {
        self.rng = SeededRandom::new(rng.next_u64());
    }

    /// Just qualified (or a new address): announce ourselves at once.
    pub fn qualified(&mut self, now: Instant) {
        self.next_send = Some(now);
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        self.next_send
    }

    /// Sends the periodic discovery bubble.
    pub fn handle_timeout(
        &mut self,
        fwd: &mut Forwarder,
        now: Instant,
        q: &Qualification,
        out: &mut Vec<Output>,
    ) {
        if let Some(at) = self.next_send {
            if at <= now {
                out.push(Output::Udp(Transmit {
                    from: None,
                    to: SocketAddrV4::new(DISCOVERY_ADDR, TEREDO_PORT),
                    payload: build_discovery_bubble(q.addr),
                    ecn: 0,
                    ttl: None,
                }));
                fwd.stats.bubbles_sent += 1;
                let span = (MAX_INTERVAL - MIN_INTERVAL).as_millis() as u64;
                let jitter = Duration::from_millis(self.rng.next_u64() % (span + 1));
                self.next_send = Some(now + MIN_INTERVAL + jitter);
            }
        }
    }

    /// A datagram that arrived on the discovery address.
    pub fn handle_bubble(
        &mut self,
        fwd: &mut Forwarder,
        now: Instant,
        q: &Qualification,
        from: SocketAddrV4,
        pkt: &TeredoPacket<'_>,
        out: &mut Vec<Output>,
    ) {
        let ip = &pkt.ipv6;
        let src = ip.src_addr();
        let Some(t) = TeredoAddr::parse_with_prefix(&src, fwd.prefix()) else {
            fwd.stats.drop(DropReason::Spoofed);
            return;
        };
        if !ip.is_bubble() || ip.dst_addr() != ALL_NODES || src == q.addr {
            fwd.stats.drop(DropReason::Unexpected);
            return;
        }
        let local = self.cfg.local_nets.is_empty()
            || self
                .cfg
                .local_nets
                .iter()
                .any(|(net, len)| in_net(*from.ip(), *net, *len));
        if !local || (!self.cfg.any_mapped && t.mapped_addr != *q.mapped.ip()) {
            fwd.stats.drop(DropReason::Spoofed);
            return;
        }
        fwd.stats.bubbles_received += 1;
        let s = fwd.stamp(now);
        let Some(p) = fwd.peers.insert_untrusted(src, from, now, false) else {
            fwd.stats.drop(DropReason::PeersFull);
            return;
        };
        if !p.trusted {
            p.local = true;
            p.endpoint = from;
            p.last_rx = s;
        }
        fwd.peers.touch(&src, now);
        // Answer with a unicast bubble (RFC 4380 5.2.3 case 4), at most one
        // per 2 s per peer.
        fwd.bubble_local(now, &src, from, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subnet_match() {
        let net = Ipv4Addr::new(192, 168, 1, 0);
        assert!(in_net(Ipv4Addr::new(192, 168, 1, 77), net, 24));
        assert!(!in_net(Ipv4Addr::new(192, 168, 2, 77), net, 24));
        assert!(in_net(Ipv4Addr::new(8, 8, 8, 8), net, 0));
    }

    #[test]
    fn discovery_bubble_shape() {
        let b = build_discovery_bubble("2001:0:c612:101::1".parse().unwrap());
        let ip = crate::wire::ipv6::Ipv6Packet::new_checked(&b[..]).unwrap();
        assert!(ip.is_bubble());
        assert_eq!(ip.hop_limit(), 1);
        assert_eq!(ip.dst_addr(), ALL_NODES);
    }
}
