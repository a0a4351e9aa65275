//! The Teredo server engine (RFC 4380 5.3): stateless. Answers router
//! solicitations with router advertisements carrying an origin indication
//! (5.3.2), forwards bubbles and ICMPv6 echo to clients (with an origin
//! indication for the clients it serves) and to native IPv6, and drops the
//! rest after the checks of 5.3.1.

#[cfg(test)]
mod tests;

use super::output::{Output, Transmit};
use super::stats::{DropReason, Stats};
use crate::addr::{self, TeredoAddr, TEREDO_PORT, TEREDO_PREFIX};
use crate::wire::icmpv6::{self, Icmpv6Repr, PrefixInfo, RouterAdvert};
use crate::wire::ipv6::next_header;
use crate::wire::teredo::{Auth, Origin, TeredoPacket};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV4};
use std::time::Instant;

/// Server settings.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// ServerBindAddress: the primary address, embedded in the prefix.
    pub primary: Ipv4Addr,
    /// ServerBindAddress2: the secondary address (primary + 1 by default).
    pub secondary: Ipv4Addr,
    /// The first 32 bits of the Teredo prefix (2001:0000 by default).
    pub prefix: u32,
    /// The MTU advertised in RAs.
    pub mtu: u16,
}

impl ServerConfig {
    pub fn new(primary: Ipv4Addr) -> Self {
        ServerConfig {
            primary,
            secondary: Ipv4Addr::from(u32::from(primary).wrapping_add(1)),
            prefix: TEREDO_PREFIX,
            mtu: 1280,
        }
    }
}

/// What a server did, beyond the packet counters of [`Stats`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ServerCounters {
    /// Router solicitations received (well-formed, from a global address).
    pub rs_received: u64,
    /// Router advertisements sent (answers to them).
    pub ra_sent: u64,
    /// Bubbles and echo packets relayed to Teredo clients.
    pub relayed_to_clients: u64,
    /// Echo requests relayed to native IPv6 (clients' connectivity tests).
    pub relayed_to_native: u64,
}

impl ServerCounters {
    /// Adds `o`'s counts to ours (the workers' totals).
    pub fn add(&mut self, o: &ServerCounters) {
        self.rs_received += o.rs_received;
        self.ra_sent += o.ra_sent;
        self.relayed_to_clients += o.relayed_to_clients;
        self.relayed_to_native += o.relayed_to_native;
    }
}

/// The server engine. It keeps no per-client state.
pub struct Server {
    cfg: ServerConfig,
    link_local: Ipv6Addr,
    pub stats: Stats,
    pub counters: ServerCounters,
}

impl Server {
    pub fn new(cfg: ServerConfig) -> Self {
        let link_local = addr::server_link_local(cfg.primary);
        Server {
            cfg,
            link_local,
            stats: Stats::default(),
            counters: ServerCounters::default(),
        }
    }

    pub fn config(&self) -> &ServerConfig {
        &self.cfg
    }

    /// A datagram received on `to_local` (the primary or secondary address,
    /// port 3544).
    pub fn handle_udp(
        &mut self,
        _now: Instant,
        from: SocketAddrV4,
        to_local: SocketAddrV4,
        bytes: &[u8],
        out: &mut Vec<Output>,
    ) {
        self.stats.udp_rx_packets += 1;
        self.stats.udp_rx_bytes += bytes.len() as u64;
        // 5.3.1 (1): a well-formed Teredo packet. Origin indications come
        // only from servers: a client sending one is lying.
        let Ok(pkt) = TeredoPacket::parse(bytes) else {
            self.stats.drop(DropReason::Malformed);
            return;
        };
        if pkt.origin.is_some() {
            self.stats.drop(DropReason::Malformed);
            return;
        }
        let ip = pkt.ipv6;
        // A bubble is forwarded with its RFC 6081 trailer (nonce, alternate
        // address, random port: the peers' business); anything else without
        // the bytes after the IPv6 packet.
        let packet = if ip.is_bubble() {
            bytes.get(pkt.ipv6_offset..).unwrap_or_default()
        } else {
            ip.packet()
        };
        // 5.3.1 (2): bubbles and ICMPv6 only.
        let upper = match ip.upper_layer() {
            Ok(u) => u,
            Err(_) => {
                self.stats.drop(DropReason::Malformed);
                return;
            }
        };
        if upper.routing_segments_left {
            self.stats.drop(DropReason::RoutingHeader);
            return;
        }
        let is_bubble = ip.is_bubble();
        let icmp = if upper.protocol == next_header::ICMPV6 && upper.offset == 0 && !upper.fragment
        {
            match Icmpv6Repr::parse(&ip.src_addr(), &ip.dst_addr(), ip.payload()) {
                Ok(r) => Some(r),
                Err(_) => {
                    self.stats.drop(DropReason::Malformed);
                    return;
                }
            }
        } else {
            None
        };
        if !is_bubble && icmp.is_none() {
            self.stats.drop(DropReason::Unexpected);
            return;
        }
        // 5.3.1 (3): the IPv4 source must be global.
        if !addr::is_global_unicast_v4(*from.ip()) {
            self.stats.drop(DropReason::NotGlobal);
            return;
        }
        let (src, dst) = (ip.src_addr(), ip.dst_addr());
        // 5.3.1 (4): router solicitations.
        if addr::is_link_local_v6(&src) && dst == addr::ALL_ROUTERS {
            if let Some(Icmpv6Repr::RouterSolicit) = icmp {
                self.counters.rs_received += 1;
                self.answer_rs(from, to_local, src, pkt.auth, out);
            } else {
                self.stats.drop(DropReason::Unexpected);
            }
            return;
        }
        let src_teredo = TeredoAddr::parse_with_prefix(&src, self.cfg.prefix);
        let dst_teredo = TeredoAddr::parse_with_prefix(&dst, self.cfg.prefix);
        let accepted = match src_teredo {
            // 5.3.1 (5): a Teredo source must match where it came from.
            Some(t) => t.mapped() == from,
            // 5.3.1 (6): a non-Teredo source may reach the clients of this
            // server (a relay's indirect bubble).
            None => dst_teredo.is_some_and(|t| t.server == self.cfg.primary),
        };
        if !accepted {
            self.stats.drop(DropReason::Spoofed);
            return;
        }
        if dst == self.link_local || dst == addr::ALL_ROUTERS {
            // Nothing else addressed to the server itself needs an answer.
            self.stats.drop(DropReason::Unexpected);
            return;
        }
        if !addr::is_global_v6(&dst) {
            self.stats.drop(DropReason::NotGlobal);
            return;
        }
        // Only bubbles, echo requests and echo replies are relayed (5.3).
        let relayable = is_bubble
            || matches!(
                icmp,
                Some(Icmpv6Repr::EchoRequest { .. }) | Some(Icmpv6Repr::EchoReply { .. })
            );
        if !relayable {
            self.stats.drop(DropReason::Unexpected);
            return;
        }
        match dst_teredo {
            Some(t) => {
                if !addr::is_global_unicast_v4(t.mapped_addr) {
                    self.stats.drop(DropReason::NotGlobal);
                    return;
                }
                let mut payload = Vec::with_capacity(8 + packet.len());
                if t.server == self.cfg.primary {
                    Origin(from).emit(&mut payload);
                }
                payload.extend_from_slice(packet);
                self.counters.relayed_to_clients += 1;
                self.stats.udp_tx_packets += 1;
                self.stats.udp_tx_bytes += payload.len() as u64;
                out.push(Output::Udp(Transmit {
                    from: Some(SocketAddrV4::new(self.cfg.primary, TEREDO_PORT)),
                    to: t.mapped(),
                    payload,
                    ecn: 0,
                    ttl: None,
                }));
            }
            None => {
                // To native IPv6 (a client's connectivity test): only from
                // a Teredo source, and never a bubble.
                if src_teredo.is_none() || is_bubble {
                    self.stats.drop(DropReason::Unexpected);
                    return;
                }
                self.counters.relayed_to_native += 1;
                self.stats.tun_tx_packets += 1;
                self.stats.tun_tx_bytes += packet.len() as u64;
                out.push(Output::Tun(packet.to_vec()));
            }
        }
    }

    /// 5.3.2: the RA, from the address the RS came to, or from the other
    /// one when the RS carried the cone bit.
    fn answer_rs(
        &mut self,
        from: SocketAddrV4,
        to_local: SocketAddrV4,
        rs_src: Ipv6Addr,
        auth: Option<Auth<'_>>,
        out: &mut Vec<Output>,
    ) {
        let cone = TeredoAddr::from_ipv6(&rs_src).is_cone();
        let received_on = *to_local.ip();
        let reply_from = if cone {
            if received_on == self.cfg.primary {
                self.cfg.secondary
            } else {
                self.cfg.primary
            }
        } else {
            received_on
        };
        let ra = advert(
            self.cfg.prefix,
            self.cfg.primary,
            Some(u32::from(self.cfg.mtu)),
        );
        // 5.3.2: the same identifier and nonce; confirmation 0.
        let auth = auth.map(|a| Auth {
            client_id: a.client_id,
            auth_value: &[],
            nonce: a.nonce,
            confirmation: 0,
        });
        let payload = advert_datagram(auth, from, self.link_local, rs_src, ra);
        self.counters.ra_sent += 1;
        self.stats.udp_tx_packets += 1;
        self.stats.udp_tx_bytes += payload.len() as u64;
        out.push(Output::Udp(Transmit {
            from: Some(SocketAddrV4::new(reply_from, TEREDO_PORT)),
            to: from,
            payload,
            ecn: 0,
            ttl: None,
        }));
    }

    /// The server keeps no timers: the engine contract's timeout calls are
    /// here for uniformity and do nothing.
    pub fn handle_timeout(&mut self, _now: Instant, _out: &mut Vec<Output>) {}

    pub fn poll_timeout(&self) -> Option<Instant> {
        None
    }
}

/// The router advertisement of a Teredo server (RFC 4380 5.3.2): one
/// prefix-information option with the /64 made of the Teredo `prefix` and
/// the server's primary IPv4 address, and the MTU option when given.
pub fn advert(prefix: u32, server: Ipv4Addr, mtu: Option<u32>) -> RouterAdvert {
    let mut p = [0u8; 16];
    p[..8].copy_from_slice(&addr::server_prefix(prefix, server));
    RouterAdvert {
        cur_hop_limit: 0,
        flags: 0,
        router_lifetime: 0,
        reachable_time: 0,
        retrans_timer: 2000,
        prefix: Some(PrefixInfo {
            prefix_len: 64,
            flags: 0x40,
            valid_lifetime: 0xffff_ffff,
            preferred_lifetime: 0xffff_ffff,
            prefix: Ipv6Addr::from(p),
        }),
        prefix_count: 1,
        mtu,
    }
}

/// The UDP payload of a server's answer to a router solicitation: the
/// authentication header `auth` (when the solicitation had one), the
/// origin indication `origin` (the client's mapped endpoint), then `ra`
/// from `src` (the server's link-local address) to `dst`.
pub fn advert_datagram(
    auth: Option<Auth<'_>>,
    origin: SocketAddrV4,
    src: Ipv6Addr,
    dst: Ipv6Addr,
    ra: RouterAdvert,
) -> Vec<u8> {
    let mut payload = Vec::with_capacity(13 + 8 + 96);
    if let Some(a) = auth {
        a.emit(&mut payload);
    }
    Origin(origin).emit(&mut payload);
    payload.extend_from_slice(&icmpv6::build_packet(
        src,
        dst,
        255,
        &Icmpv6Repr::RouterAdvert(ra),
    ));
    payload
}
