//! The direct IPv6 connectivity test (RFC 4380 5.2.9): before a client
//! sends to a native peer through a relay, an echo request through our
//! server, whose reply proves which relay serves the peer. The same kind
//! of test proves an endpoint a Teredo peer was heard from other than its
//! address embeds (a Linux NAT in front of it picked another port). The
//! payloads are keyed hashes, checkable without state. Packets from such
//! an endpoint are held in the peer's queue, marked, until it is proven.

use super::{Forwarder, Role, MAX_ENDPOINT_TESTS, RELAY_BUBBLE_SOURCE};
use crate::addr::{self, TeredoAddr, TEREDO_PORT};
use crate::proto::output::Output;
use crate::proto::siphash::siphash24;
use crate::wire::icmpv6::{self, Icmpv6Repr};
use crate::wire::ipv6::{next_header, Ipv6Packet};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV4};
use std::time::Instant;

/// A packet from a peer held in its queue while an endpoint is tested
/// starts with this byte (an IPv6 packet starts with 0x6_), then the
/// endpoint it came from (address, port).
const HELD_MARK: u8 = 0;
const HELD_HEADER: usize = 7;

/// The endpoint and packet of a held packet from a peer; `None` for a
/// packet of ours waiting to go to the peer.
pub(super) fn held_inbound(blob: &[u8]) -> Option<(SocketAddrV4, &[u8])> {
    let (h, p) = blob.split_first_chunk::<HELD_HEADER>()?;
    (h[0] == HELD_MARK).then(|| {
        let ip = Ipv4Addr::new(h[1], h[2], h[3], h[4]);
        (SocketAddrV4::new(ip, u16::from_be_bytes([h[5], h[6]])), p)
    })
}

impl Forwarder {
    /// The payload of our echo test of `peer` at `endpoint` (see
    /// `test_endpoint`): a keyed hash of both, checkable without state.
    fn endpoint_payload(&self, peer: &Ipv6Addr, endpoint: SocketAddrV4) -> [u8; 8] {
        let mut data = [0u8; 23];
        data[0] = b'e';
        data[1..17].copy_from_slice(&peer.octets());
        data[17..21].copy_from_slice(&endpoint.ip().octets());
        data[21..].copy_from_slice(&endpoint.port().to_be_bytes());
        siphash24(&self.ping_key, &data).to_be_bytes()
    }

    /// The payload of our direct connectivity test to `peer`: a keyed hash,
    /// unguessable without the key, checkable without state.
    fn ping_payload(&self, peer: &Ipv6Addr) -> [u8; 8] {
        let mut data = [0u8; 32];
        data[..16].copy_from_slice(&peer.octets());
        data[16..].copy_from_slice(&self.me.map_or(RELAY_BUBBLE_SOURCE, |m| m.addr).octets());
        siphash24(&self.ping_key, &data).to_be_bytes()
    }

    /// The connectivity test echo request to the native peer `dst`, through
    /// our server (RFC 4380 5.2.9).
    pub(super) fn send_ping_test(&mut self, dst: &Ipv6Addr, out: &mut Vec<Output>) {
        let Some(me) = self.me else { return };
        let data = self.ping_payload(dst);
        let to = SocketAddrV4::new(me.server, TEREDO_PORT);
        self.send_test_echo(me.addr, *dst, to, 0, &data, out);
    }

    /// A test's echo request from our address `src` to `dst`, sent to the
    /// IPv4 endpoint `to`, carrying `data` (a keyed hash).
    fn send_test_echo(
        &mut self,
        src: Ipv6Addr,
        dst: Ipv6Addr,
        to: SocketAddrV4,
        seq: u16,
        data: &[u8],
        out: &mut Vec<Output>,
    ) {
        let p = icmpv6::build_packet(
            src,
            dst,
            64,
            &Icmpv6Repr::EchoRequest {
                ident: 0,
                seq,
                data,
            },
        );
        self.stats.ping_tests_sent += 1;
        crate::proto::debuglog::debug_line!(
            "connectivity test: echo request for {dst} sent to {to}"
        );
        out.push(Self::udp(to, p, 0));
    }

    /// A client's answer to a Teredo peer heard from its mapped IPv4
    /// address but another port than its Teredo address says, which proves
    /// nothing by itself (no RFC 6081 nonce: the C miredo). A Linux NAT in
    /// front of the peer does that when an earlier unsolicited packet (a
    /// third client's direct bubble) left a connection-tracking entry on
    /// the port. We test the endpoint as RFC 4380 5.2.3 case 2 tests a
    /// peer: an echo request sent straight to it, with a keyed payload;
    /// the echo reply coming back from there, with that payload, makes it
    /// the peer's trusted endpoint. Packets from the endpoint before then
    /// wait in the peer's queue, and reach the host with the proof.
    ///
    /// Only for a peer with an entry (one we are sending to, or one our
    /// server vouched for by forwarding its indirect bubble from the same
    /// IPv4 address), at most `MAX_ENDPOINT_TESTS` echo requests per entry
    /// and within the global budget of tests: a spoofed source cannot turn
    /// us into a reflector. Returns whether the packet was taken (the
    /// proof, or held).
    pub(super) fn test_endpoint(
        &mut self,
        now: Instant,
        from: SocketAddrV4,
        src: &Ipv6Addr,
        t: &TeredoAddr,
        ip: &Ipv6Packet<&[u8]>,
        out: &mut Vec<Output>,
    ) -> bool {
        if self.role != Role::Client
            || *from.ip() != t.mapped_addr
            || !addr::is_global_unicast_v4(*from.ip())
        {
            return false;
        }
        let Some(me) = self.me else { return false };
        let Some(tests) = self.peers.get(src).map(|p| p.endpoint_tests) else {
            return false;
        };
        let payload = self.endpoint_payload(src, from);
        let proof = ip.next_header() == next_header::ICMPV6
            && matches!(
                Icmpv6Repr::parse(&ip.src_addr(), &ip.dst_addr(), ip.payload()),
                Ok(Icmpv6Repr::EchoReply { data, .. }) if data == payload
            );
        if proof {
            let s = self.peers.stamp(now);
            if let Some(p) = self.peers.get_mut(src) {
                p.endpoint = from;
                p.trusted = true;
                p.local = false;
                p.last_rx = s;
                p.bubbles = 0;
                p.endpoint_tests = 0;
            }
            self.peers.touch(src, now);
            self.stats.ping_tests_ok += 1;
            self.stats.endpoints_learnt += 1;
            self.flush_queue_proven(src, now, Some(from), out);
            return true;
        }
        let tested = tests < MAX_ENDPOINT_TESTS && self.ping_limit.take(now);
        // Held (within the queue's caps) until the endpoint is proven: a
        // peer sends what it queued for us before it answers our test.
        let held = (tested || tests > 0) && !ip.is_bubble() && {
            let mut blob = Vec::with_capacity(HELD_HEADER + ip.packet().len());
            blob.push(HELD_MARK);
            blob.extend_from_slice(&from.ip().octets());
            blob.extend_from_slice(&from.port().to_be_bytes());
            blob.extend_from_slice(ip.packet());
            self.peers.enqueue(src, &blob)
        };
        if tested {
            if let Some(p) = self.peers.get_mut(src) {
                p.endpoint_tests += 1;
            }
            self.send_test_echo(me.addr, *src, from, u16::from(tests), &payload, out);
        }
        held
    }

    /// Whether `ip` is an echo reply carrying our connectivity-test payload;
    /// `None` if it is no echo reply at all.
    pub(super) fn is_our_ping_reply(&self, ip: &Ipv6Packet<&[u8]>) -> Option<bool> {
        if ip.next_header() != next_header::ICMPV6 {
            return None;
        }
        match Icmpv6Repr::parse(&ip.src_addr(), &ip.dst_addr(), ip.payload()) {
            Ok(Icmpv6Repr::EchoReply { data, .. }) => {
                Some(data == self.ping_payload(&ip.src_addr()))
            }
            _ => None,
        }
    }
}
