//! ICMPv6 echo (RFC 4443 4.1, 4.2) as the simulated hosts' kernels see
//! it: the requests tests send, the replies kernels give, and what each
//! node and native host received.

use super::{NodeId, World};
use crate::wire::icmpv6::{self, Icmpv6Repr};
use crate::wire::ipv6::{next_header, Ipv6Packet};
use std::net::Ipv6Addr;

impl World {
    /// Echo replies a client's TUN received for `ident`.
    pub fn client_echo_replies(&self, id: NodeId, ident: u16) -> Vec<u16> {
        echo_seqs(&self.nodes[id].tun_rx, false, ident)
    }

    /// Echo requests a client's TUN received for `ident`.
    pub fn client_echo_requests(&self, id: NodeId, ident: u16) -> Vec<u16> {
        echo_seqs(&self.nodes[id].tun_rx, true, ident)
    }

    /// Echo replies native host `h` received for `ident`.
    pub fn native_echo_replies(&self, h: usize, ident: u16) -> Vec<u16> {
        echo_seqs(&self.natives[h].rx, false, ident)
    }

    /// Echo requests native host `h` received for `ident`.
    pub fn native_echo_requests(&self, h: usize, ident: u16) -> Vec<u16> {
        echo_seqs(&self.natives[h].rx, true, ident)
    }
}

/// An echo request packet.
pub fn echo_request(src: Ipv6Addr, dst: Ipv6Addr, ident: u16, seq: u16, len: usize) -> Vec<u8> {
    let data: Vec<u8> = (0..len).map(|i| (i as u8) ^ (seq as u8)).collect();
    icmpv6::build_packet(
        src,
        dst,
        64,
        &Icmpv6Repr::EchoRequest {
            ident,
            seq,
            data: &data,
        },
    )
}

/// The kernel's answer to an echo request, if `p` is one.
pub fn echo_reply(p: &[u8]) -> Option<Vec<u8>> {
    let ip = Ipv6Packet::new_checked(p).ok()?;
    if ip.next_header() != next_header::ICMPV6 || ip.dst_addr().is_multicast() {
        return None;
    }
    match Icmpv6Repr::parse(&ip.src_addr(), &ip.dst_addr(), ip.payload()).ok()? {
        Icmpv6Repr::EchoRequest { ident, seq, data } => Some(icmpv6::build_packet(
            ip.dst_addr(),
            ip.src_addr(),
            64,
            &Icmpv6Repr::EchoReply { ident, seq, data },
        )),
        _ => None,
    }
}

/// The sequence numbers of the echo requests (or replies) with `want`
/// as identifier among `packets`.
fn echo_seqs(packets: &[Vec<u8>], requests: bool, want: u16) -> Vec<u16> {
    packets
        .iter()
        .filter_map(|p| {
            let ip = Ipv6Packet::new_checked(&p[..]).ok()?;
            if ip.next_header() != next_header::ICMPV6 {
                return None;
            }
            match Icmpv6Repr::parse(&ip.src_addr(), &ip.dst_addr(), ip.payload()).ok()? {
                Icmpv6Repr::EchoRequest { ident, seq, .. } if requests && ident == want => {
                    Some(seq)
                }
                Icmpv6Repr::EchoReply { ident, seq, .. } if !requests && ident == want => Some(seq),
                _ => None,
            }
        })
        .collect()
}
