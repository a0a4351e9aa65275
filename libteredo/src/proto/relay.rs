//! The relay engine (RFC 4380 5.4): forwards between native IPv6 (the TUN
//! device, routing the Teredo prefix) and Teredo clients over UDP, on the
//! forwarding core ([`Forwarder`]) in its relay role. A relay behind a NAT
//! also answers the bubbles a server relays to it with an origin
//! indication (5.2.3, 5.4.1).

use super::forward::{Forwarder, ForwarderConfig};
use super::output::Output;
use super::peers::PeerTable;
use super::random::Random;
use super::stats::{DropReason, Stats};
use crate::addr::TEREDO_PORT;
use crate::wire::trailer::Trailer;
use std::net::SocketAddrV4;
use std::time::Instant;

/// A Teredo relay (RFC 4380 5.4): forwards between native IPv6 (the TUN
/// device, routing the Teredo prefix) and Teredo clients over UDP.
pub struct Relay {
    fwd: Forwarder,
}

impl Relay {
    pub fn new(cfg: &ForwarderConfig, rng: &mut dyn Random, now: Instant) -> Self {
        Relay {
            fwd: Forwarder::new_relay(cfg, rng, now),
        }
    }

    /// A datagram received on the relay's Teredo port.
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

    /// [`Relay::handle_udp`] for a datagram whose outer IPv4 header carried
    /// the ECN field `ecn` (RFC 9601).
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
        let f = &mut self.fwd;
        let Some(pkt) = f.parse_datagram(ecn, bytes) else {
            return;
        };
        if let Some(origin) = pkt.origin {
            // A server relayed a peer's bubble to us (a relay behind a NAT):
            // open the path.
            if pkt.ipv6.is_bubble() && from.port() == TEREDO_PORT {
                let peer = pkt.ipv6.src_addr();
                let tr = Trailer::parse(pkt.ipv6.trailer());
                f.answer_indirect(now, origin.0, peer, &tr, out);
                return;
            }
        }
        if pkt.auth.is_some() {
            // Only RAs carry authentication; a relay asked for none.
            f.stats.drop(DropReason::Unexpected);
            return;
        }
        let _ = f.handle_peer_packet(now, from, to_local, &pkt, out);
    }

    /// An IPv6 packet from the TUN device (routed to the Teredo prefix).
    pub fn handle_tun(&mut self, now: Instant, pkt: &[u8], out: &mut Vec<Output>) {
        let n0 = out.len();
        self.fwd.handle_tun(now, pkt, out);
        self.fwd.count_sent(&out[n0..]);
    }

    pub fn handle_timeout(&mut self, now: Instant, out: &mut Vec<Output>) {
        let n0 = out.len();
        self.fwd.handle_timeout(now, out);
        self.fwd.count_sent(&out[n0..]);
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        self.fwd.poll_timeout()
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

    pub fn peers(&self) -> &PeerTable {
        self.fwd.peers()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::addr::{TeredoAddr, TEREDO_PREFIX};
    use crate::proto::random::SeededRandom;
    use crate::wire::icmpv6::{self, Icmpv6Repr};
    use std::net::{Ipv4Addr, Ipv6Addr};

    const RELAY: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(198, 18, 2, 1), TEREDO_PORT);
    const MAPPED: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(198, 18, 3, 1), 40000);
    const NATIVE: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 9, 0, 0, 0, 0, 1);

    fn client() -> Ipv6Addr {
        TeredoAddr {
            prefix: TEREDO_PREFIX,
            server: Ipv4Addr::new(198, 18, 1, 1),
            flags: 0,
            mapped_port: MAPPED.port(),
            mapped_addr: *MAPPED.ip(),
        }
        .to_ipv6()
    }

    fn echo(src: Ipv6Addr, dst: Ipv6Addr, size: usize) -> Vec<u8> {
        let data = vec![5u8; size];
        let msg = Icmpv6Repr::EchoRequest {
            ident: 1,
            seq: 1,
            data: &data,
        };
        icmpv6::build_packet(src, dst, 64, &msg)
    }

    /// The payloads of what `out` holds for the TUN device and for UDP.
    fn split(out: &mut Vec<Output>) -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
        let (mut tun, mut udp) = (Vec::new(), Vec::new());
        for o in out.drain(..) {
            match o {
                Output::Tun(p) => tun.push(p),
                Output::Udp(t) => udp.push(t.payload),
                Output::Event(_) => {}
            }
        }
        (tun, udp)
    }

    #[test]
    fn data_packets_go_out_in_the_buffers_given_back() {
        let now = Instant::now();
        let cfg = ForwarderConfig {
            direct_bubbles: false,
            ..ForwarderConfig::default()
        };
        let mut r = Relay::new(&cfg, &mut SeededRandom::new(1), now);
        let mut out = Vec::new();
        // Client -> native: delivered (and the client is now trusted).
        let up = echo(client(), NATIVE, 56);
        r.handle_udp(now, MAPPED, RELAY, &up, &mut out);
        let (mut tun, _) = split(&mut out);
        assert_eq!(tun, vec![up.clone()]);
        let first = tun[0].as_ptr();
        // A buffer too small to take a packet of the Teredo MTU is not
        // kept; the engine's own is.
        let mut used = vec![vec![0u8; 10]];
        used.append(&mut tun);
        r.recycle(&mut used);
        assert!(used.is_empty());
        // Native -> client, a bigger packet: the same buffer, unmoved.
        let down = echo(NATIVE, client(), 1200);
        r.handle_tun(now, &down, &mut out);
        let (_, mut udp) = split(&mut out);
        assert_eq!(udp, vec![down.clone()]);
        assert_eq!(udp[0].as_ptr(), first);
        r.recycle(&mut udp);
        r.handle_udp(now, MAPPED, RELAY, &up, &mut out);
        let (tun, _) = split(&mut out);
        assert_eq!(tun, vec![up]);
        assert_eq!(tun[0].as_ptr(), first);
    }
}
