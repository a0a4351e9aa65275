//! The control messages of Teredo's UDP over IPv4, built and read in this
//! one place for every send and receive, single ([`super::socket`]) or
//! batched ([`super::batch`]); quinn-udp's `cmsg` module is the model.
//!
//! Out: the ECN field (`IP_TOS`, RFC 9601: the inner packet's ECN field
//! copied to the outer header), a time to live for one datagram (`IP_TTL`,
//! a direct bubble that must only open our own NAT, RFC 4380 5.2.6 and
//! RFC 6081), and the segment size of a run of datagrams the kernel cuts
//! at the last moment (`UDP_SEGMENT`, UDP GSO). In: the TOS byte of the
//! datagram's IPv4 header (`IP_TOS`, once `IP_RECVTOS` is set) and the size
//! of the datagrams a coalesced message holds (`UDP_GRO`).

use nix::libc;
use std::mem::size_of;

/// Room for every control message one message carries or brings: out, two
/// ints (`IP_TOS`, `IP_TTL`) and a u16 (`UDP_SEGMENT`); in, two ints.
pub const SPACE: usize = 64;

/// A control message buffer, aligned as `cmsghdr` wants (the kernel's and
/// libc's `CMSG_*` macros write and read headers through it).
#[derive(Clone, Copy)]
#[repr(C, align(8))]
pub struct Buf(pub [u8; SPACE]);

impl Default for Buf {
    fn default() -> Self {
        Buf([0; SPACE])
    }
}

/// What a datagram sent carries besides its bytes and destination
/// (quinn-udp's `Transmit`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SendMeta {
    /// The ECN field of the outer IPv4 header (RFC 9601); 0, Not-ECT,
    /// needs no control message.
    pub ecn: u8,
    /// A time to live for this datagram only, when not the socket's.
    pub ttl: Option<u8>,
    /// UDP GSO: the bytes are a run of datagrams of this size (the last
    /// may be shorter), cut by the kernel.
    pub segment_size: Option<u16>,
}

/// What a message received brings besides its bytes and source
/// (quinn-udp's `RecvMeta`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RecvMeta {
    /// The TOS byte of the IPv4 header (ECN in its low two bits); 0 when
    /// the socket does not ask for it (`IP_RECVTOS`).
    pub tos: u8,
    /// UDP GRO: the size of the datagrams the message holds, 0 for one
    /// datagram.
    pub stride: usize,
}

fn space(len: usize) -> usize {
    // SAFETY: CMSG_SPACE only computes.
    unsafe { libc::CMSG_SPACE(len as u32) as usize }
}

/// Writes the control messages `meta` asks for into `buf` and points
/// `hdr` at them; with none, `hdr` carries no control buffer at all. `buf`
/// must stay where it is until the system call that uses `hdr` returns.
pub fn encode(hdr: &mut libc::msghdr, buf: &mut Buf, meta: &SendMeta) {
    let ecn = meta.ecn & 0b11;
    let int = size_of::<libc::c_int>();
    let mut total = 0;
    if ecn != 0 {
        total += space(int);
    }
    if meta.ttl.is_some() {
        total += space(int);
    }
    if meta.segment_size.is_some() {
        total += space(size_of::<u16>());
    }
    if total == 0 {
        hdr.msg_control = std::ptr::null_mut();
        hdr.msg_controllen = 0;
        return;
    }
    buf.0 = [0; SPACE];
    hdr.msg_control = buf.0.as_mut_ptr().cast();
    hdr.msg_controllen = total as _;
    // SAFETY: `buf` is SPACE bytes, aligned for cmsghdr, and `total` (at
    // most two ints and a u16, each rounded up: 56 bytes) fits in it;
    // CMSG_FIRSTHDR and CMSG_NXTHDR stay within `msg_controllen`, and a
    // null header (no room) is never written.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(hdr);
        let mut put = |level: libc::c_int, kind: libc::c_int, data: &[u8]| {
            if c.is_null() {
                return;
            }
            (*c).cmsg_level = level;
            (*c).cmsg_type = kind;
            (*c).cmsg_len = libc::CMSG_LEN(data.len() as u32) as _;
            std::ptr::copy_nonoverlapping(data.as_ptr(), libc::CMSG_DATA(c), data.len());
            c = libc::CMSG_NXTHDR(hdr, c);
        };
        if ecn != 0 {
            put(
                libc::IPPROTO_IP,
                libc::IP_TOS,
                &libc::c_int::from(ecn).to_ne_bytes(),
            );
        }
        if let Some(ttl) = meta.ttl {
            put(
                libc::IPPROTO_IP,
                libc::IP_TTL,
                &libc::c_int::from(ttl).to_ne_bytes(),
            );
        }
        if let Some(seg) = meta.segment_size {
            put(libc::SOL_UDP, libc::UDP_SEGMENT, &seg.to_ne_bytes());
        }
    }
}

/// Reads the control messages the kernel wrote for one message received
/// (`hdr` as `recvmsg` or `recvmmsg` left it).
pub fn decode(hdr: &libc::msghdr) -> RecvMeta {
    let mut meta = RecvMeta::default();
    if hdr.msg_control.is_null() {
        return meta;
    }
    // SAFETY: walking the control messages the kernel wrote into our
    // buffer, within the length it reported; each is read only as far as
    // its own length says it goes.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(hdr);
        while !c.is_null() {
            let len = (*c).cmsg_len as usize;
            let data = libc::CMSG_DATA(c);
            let has = |n: usize| len >= libc::CMSG_LEN(n as u32) as usize;
            match ((*c).cmsg_level, (*c).cmsg_type) {
                // One byte (an int would be read the same on little-endian,
                // but the kernel sends a byte).
                (libc::IPPROTO_IP, libc::IP_TOS) if has(1) => meta.tos = *data,
                (libc::SOL_UDP, libc::UDP_GRO) if has(size_of::<libc::c_int>()) => {
                    let seg = std::ptr::read_unaligned(data.cast::<libc::c_int>());
                    meta.stride = usize::try_from(seg).unwrap_or(0);
                }
                _ => {}
            }
            c = libc::CMSG_NXTHDR(hdr, c);
        }
    }
    meta
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `encode` wrote: (level, type, data) of each message.
    fn written(hdr: &libc::msghdr) -> Vec<(i32, i32, Vec<u8>)> {
        let mut v = Vec::new();
        // SAFETY: the headers `encode` wrote, within the length it set.
        unsafe {
            let mut c = libc::CMSG_FIRSTHDR(hdr);
            while !c.is_null() {
                let n = (*c).cmsg_len as usize - libc::CMSG_LEN(0) as usize;
                let data = std::slice::from_raw_parts(libc::CMSG_DATA(c), n).to_vec();
                v.push(((*c).cmsg_level, (*c).cmsg_type, data));
                c = libc::CMSG_NXTHDR(hdr, c);
            }
        }
        v
    }

    fn hdr() -> libc::msghdr {
        // SAFETY: plain old data; all-zero is valid.
        unsafe { std::mem::zeroed() }
    }

    #[test]
    fn nothing_to_say_means_no_control_buffer() {
        let (mut h, mut b) = (hdr(), Buf::default());
        encode(&mut h, &mut b, &SendMeta::default());
        assert!(h.msg_control.is_null());
        assert_eq!(h.msg_controllen, 0);
        // ECN bits only: a TOS of 4 is not ours to send.
        encode(
            &mut h,
            &mut b,
            &SendMeta {
                ecn: 4,
                ..SendMeta::default()
            },
        );
        assert!(h.msg_control.is_null());
    }

    #[test]
    fn every_message_in_order() {
        let (mut h, mut b) = (hdr(), Buf::default());
        let meta = SendMeta {
            ecn: 0b10,
            ttl: Some(4),
            segment_size: Some(1268),
        };
        encode(&mut h, &mut b, &meta);
        let int = |v: i32| v.to_ne_bytes().to_vec();
        assert_eq!(
            written(&h),
            vec![
                (libc::IPPROTO_IP, libc::IP_TOS, int(2)),
                (libc::IPPROTO_IP, libc::IP_TTL, int(4)),
                (
                    libc::SOL_UDP,
                    libc::UDP_SEGMENT,
                    1268u16.to_ne_bytes().to_vec()
                ),
            ]
        );
        let ttl_only = SendMeta {
            ttl: Some(1),
            ..SendMeta::default()
        };
        encode(&mut h, &mut b, &ttl_only);
        assert_eq!(written(&h), vec![(libc::IPPROTO_IP, libc::IP_TTL, int(1))]);
    }
}
