//! Local client discovery (RFC 4380 5.2.8): clients behind the same NAT
//! find each other with bubbles to the Teredo IPv4 discovery address
//! 224.0.0.253, and then talk directly, without hairpinning.
//!
//! Here: when to announce ourselves, and which bubbles to take, for the
//! client identity given; the client engine has the forwarding core send
//! the bubbles and record the peers.

use super::forward::ClientIdentity;
use super::random::{Random, SeededRandom};
use super::stats::DropReason;
use crate::addr::{TeredoAddr, ALL_NODES};
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

    /// Whether the periodic discovery bubble is due at `now`; if so, the
    /// next one is scheduled 200 to 300 s later.
    pub fn due(&mut self, now: Instant) -> bool {
        match self.next_send {
            Some(at) if at <= now => {
                let span = (MAX_INTERVAL - MIN_INTERVAL).as_millis() as u64;
                let jitter = Duration::from_millis(self.rng.next_u64() % (span + 1));
                self.next_send = Some(now + MIN_INTERVAL + jitter);
                true
            }
            _ => false,
        }
    }

    /// Whether a datagram that arrived on the discovery address is a
    /// discovery bubble of a local peer that `me` (with the Teredo
    /// `prefix`) may talk to directly: its address, or why it is dropped.
    pub fn accept(
        &self,
        me: &ClientIdentity,
        prefix: u32,
        from: SocketAddrV4,
        pkt: &TeredoPacket<'_>,
    ) -> Result<Ipv6Addr, DropReason> {
        let ip = &pkt.ipv6;
        let src = ip.src_addr();
        let t = TeredoAddr::parse_with_prefix(&src, prefix).ok_or(DropReason::Spoofed)?;
        if !ip.is_bubble() || ip.dst_addr() != ALL_NODES || src == me.addr {
            return Err(DropReason::Unexpected);
        }
        let local = self.cfg.local_nets.is_empty()
            || self
                .cfg
                .local_nets
                .iter()
                .any(|(net, len)| in_net(*from.ip(), *net, *len));
        if !local || (!self.cfg.any_mapped && t.mapped_addr != *me.mapped.ip()) {
            return Err(DropReason::Spoofed);
        }
        Ok(src)
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
}
