//! A thread's output buffers, kept between batches: the UDP datagrams
//! gathered for one sendmmsg (runs to one peer leave as UDP GSO messages,
//! libteredo::sys::batch), and the packets for the TUN device, which, when
//! the device has offloads, are written into buffers the GRO layer can
//! coalesce a run of one TCP or UDP flow into (one super-packet for the
//! host's stack). Packet buffers go back to the engine, so that its data
//! paths allocate nothing per packet.

use libteredo::sys::batch::SendBatch;

/// Packets for the TUN device written (coalesced) together at most: 64
/// full-sized TCP segments already make more than one 64 KiB super-packet.
pub const TUN_BATCH: usize = 64;
/// What a packet buffer holds for the TUN device with offloads: the GRO
/// layer coalesces a run of segments into the first one's buffer only as
/// far as that buffer has room (it never reallocates), so room for the
/// largest super-packet (IPv6 payload length is 16 bits) beside the
/// virtio-net header lets a run grow to the full size.
pub const GRO_ROOM: usize = 65_536 + 2 * tun_rs::VIRTIO_NET_HDR_LEN;

/// A thread's output buffers, kept between batches.
pub struct IoBufs {
    pub udp: SendBatch,
    pub tun: Vec<Vec<u8>>,
    /// With offloads: `GRO_ROOM` buffers, written and reused (no allocation
    /// per packet; the pages a buffer never needed are never touched).
    pub spare: Vec<Vec<u8>>,
    /// Made at the first packet for the TUN device: it preallocates about
    /// a megabyte, which a thread that starts up (before the client's first
    /// router advertisement can be read) should not wait for.
    pub gro: Option<tun_rs::GROTable>,
    /// Room for the virtio-net header in front of TUN packets.
    pub headroom: usize,
    /// Packets the engine handed out, copied or written: given back to it
    /// at the next batch (`EngineKind::recycle`).
    pub used: Vec<Vec<u8>>,
}

impl IoBufs {
    pub fn new(headroom: usize) -> Self {
        IoBufs {
            udp: SendBatch::new(),
            tun: Vec::with_capacity(TUN_BATCH),
            spare: Vec::new(),
            gro: None,
            headroom,
            used: Vec::new(),
        }
    }

    /// Queues a packet for the TUN device (with offloads) in a buffer the
    /// GRO layer can coalesce the packets that follow it into.
    pub fn push_gro(&mut self, p: &[u8]) {
        let mut b = self
            .spare
            .pop()
            .unwrap_or_else(|| Vec::with_capacity(GRO_ROOM));
        b.clear();
        b.resize(self.headroom, 0);
        b.extend_from_slice(p);
        self.tun.push(b);
    }

    /// Keeps a packet buffer of the engine's for it to take back, up to
    /// two batches' worth (a batch from the TUN device can end with a
    /// super-packet's segments; the main thread's buffers are given back
    /// with its timers, and need be no more).
    pub fn give_back(&mut self, b: Vec<u8>) {
        if self.used.len() < 2 * TUN_BATCH {
            self.used.push(b);
        }
    }

    /// Takes back the buffers of packets written, so that the next batch
    /// gets them in the same order: the first packet of a run (the one its
    /// run is coalesced into, up to 64 KiB) lands in the same buffer each
    /// time, and the others touch a page or two of theirs. Handed out in
    /// any order, every buffer would in turn grow its 64 KiB of resident
    /// memory.
    pub fn recycle(&mut self) {
        if self.headroom == 0 {
            // The engine's own buffers, written as they were.
            while let Some(b) = self.tun.pop() {
                self.give_back(b);
            }
            return;
        }
        let room = TUN_BATCH.saturating_sub(self.spare.len());
        let keep = self.tun.len().min(room);
        self.spare.extend(self.tun.drain(..keep).rev());
        self.tun.clear();
    }
}

#[cfg(test)]
mod tests {
    //! The TUN write path with offloads: packets of one TCP flow must leave
    //! coalesced (that is what `IoBufs::push_gro`'s buffers are for), and
    //! whatever a peer puts in its packets must neither panic the GRO
    //! layer nor make it reallocate.
    use super::*;
    use libteredo::wire::checksum;
    use proptest::prelude::*;
    use std::net::Ipv6Addr;

    const HEADROOM: usize = tun_rs::VIRTIO_NET_HDR_LEN;
    const SRC: Ipv6Addr = Ipv6Addr::new(0x2001, 0, 0x4136, 0xe378, 0x8000, 0x63bf, 0x3fff, 0xfdd2);
    const DST: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 9, 0, 0, 0, 0, 1);

    /// A TCP/IPv6 segment from `SRC` to `DST` with a correct checksum.
    fn segment(src_port: u16, seq: u32, flags: u8, payload: &[u8]) -> Vec<u8> {
        let mut tcp = Vec::with_capacity(20 + payload.len());
        tcp.extend_from_slice(&src_port.to_be_bytes());
        tcp.extend_from_slice(&5001u16.to_be_bytes());
        tcp.extend_from_slice(&seq.to_be_bytes());
        tcp.extend_from_slice(&1u32.to_be_bytes()); // ack
        tcp.extend_from_slice(&[5 << 4, flags]);
        tcp.extend_from_slice(&65535u16.to_be_bytes()); // window
        tcp.extend_from_slice(&[0, 0, 0, 0]); // checksum, urgent pointer
        tcp.extend_from_slice(payload);
        let c = checksum::upper_layer(&SRC, &DST, 6, &tcp);
        tcp[16..18].copy_from_slice(&c.to_be_bytes());
        let mut p = Vec::with_capacity(40 + tcp.len());
        p.extend_from_slice(&[0x60, 0, 0, 0]);
        p.extend_from_slice(&(tcp.len() as u16).to_be_bytes());
        p.extend_from_slice(&[6, 64]);
        p.extend_from_slice(&SRC.octets());
        p.extend_from_slice(&DST.octets());
        p.extend_from_slice(&tcp);
        p
    }

    const ACK: u8 = 0x10;

    #[test]
    fn a_tcp_run_leaves_as_one_super_packet() {
        let mut io = IoBufs::new(HEADROOM);
        let seg = 1220;
        let mut data = Vec::new();
        for i in 0..40u32 {
            let payload: Vec<u8> = (0..seg).map(|k| (i as usize * 7 + k) as u8).collect();
            io.push_gro(&segment(40000, 1000 + i * seg as u32, ACK, &payload));
            data.extend_from_slice(&payload);
        }
        let mut gro = tun_rs::GROTable::default();
        gro.apply_gro(&mut io.tun, HEADROOM, true).unwrap();
        let head = &io.tun[0];
        // The virtio-net header: a TCPv6 super-packet cut at `seg`.
        assert_eq!(head[1], 4, "gso_type: {:?}", &head[..HEADROOM]);
        assert_eq!(usize::from(u16::from_ne_bytes([head[4], head[5]])), seg);
        let pkt = &head[HEADROOM..];
        assert_eq!(pkt.len(), 40 + 20 + data.len());
        assert_eq!(
            usize::from(u16::from_be_bytes([pkt[4], pkt[5]])),
            20 + data.len()
        );
        assert_eq!(&pkt[60..], &data[..], "payload bytes in order");
    }

    #[test]
    fn a_tcp_run_in_tight_buffers_is_not_coalesced() {
        // The control: buffers with 16 bytes to spare, what the engine's
        // packets had before, are written one by one.
        let mut bufs: Vec<Vec<u8>> = (0..8u32)
            .map(|i| {
                let p = segment(40000, 1000 + i * 1220, ACK, &[i as u8; 1220]);
                let mut b = Vec::with_capacity(p.len() + 16);
                b.resize(HEADROOM, 0);
                b.extend_from_slice(&p);
                b
            })
            .collect();
        let mut gro = tun_rs::GROTable::default();
        gro.apply_gro(&mut bufs, HEADROOM, true).unwrap();
        assert_eq!(bufs[0].len(), HEADROOM + 40 + 20 + 1220);
        assert_eq!(bufs[0][1], 0, "no GSO type");
    }

    /// One packet of a generated batch: a segment of one of two flows,
    /// then damaged.
    #[derive(Debug, Clone)]
    struct Case {
        flow: bool,
        seq_step: u32,
        len: usize,
        flags: u8,
        cut: Option<usize>,
        flip: Option<(usize, u8)>,
    }

    fn case() -> impl Strategy<Value = Case> {
        (
            any::<bool>(),
            prop_oneof![Just(1220u32), Just(0u32), 0u32..3000],
            prop_oneof![Just(1220usize), 0usize..1400],
            prop_oneof![Just(ACK), Just(ACK | 0x08), any::<u8>()],
            proptest::option::weighted(0.2, 0usize..1500),
            proptest::option::weighted(0.3, (0usize..1500, any::<u8>())),
        )
            .prop_map(|(flow, seq_step, len, flags, cut, flip)| Case {
                flow,
                seq_step,
                len,
                flags,
                cut,
                flip,
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        #[test]
        fn damaged_runs_neither_panic_nor_reallocate(cases in proptest::collection::vec(case(), 1..TUN_BATCH)) {
            let mut io = IoBufs::new(HEADROOM);
            let mut seq = [7u32, 900_000u32];
            for c in &cases {
                let s = &mut seq[usize::from(c.flow)];
                let mut p = segment(if c.flow { 40001 } else { 40000 }, *s, c.flags, &vec![0x5a; c.len]);
                *s = s.wrapping_add(c.seq_step);
                if let Some((at, x)) = c.flip {
                    let at = at % p.len();
                    p[at] ^= x.max(1);
                }
                if let Some(n) = c.cut {
                    p.truncate(n.max(1));
                }
                io.push_gro(&p);
            }
            let caps: Vec<usize> = io.tun.iter().map(Vec::capacity).collect();
            let mut gro = tun_rs::GROTable::default();
            let _ = gro.apply_gro(&mut io.tun, HEADROOM, true);
            for (b, cap) in io.tun.iter().zip(caps) {
                prop_assert_eq!(b.capacity(), cap);
                prop_assert!(b.len() <= GRO_ROOM);
            }
        }
    }
}
