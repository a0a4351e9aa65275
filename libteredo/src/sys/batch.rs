//! Batched UDP I/O: `recvmmsg(2)` and `sendmmsg(2)`, so that one system
//! call moves many datagrams when the load is high, and costs nothing extra
//! when it is low (`MSG_WAITFORONE` returns as soon as one datagram is
//! there). The control messages of every message (ECN field, GSO segment
//! size, GRO stride) are built and read by [`super::cmsg`], as for single
//! datagrams ([`super::socket`]).

use super::cmsg::{self, Buf, RecvMeta, SendMeta};
use super::socket::{from_sockaddr, to_sockaddr};
use nix::libc;
use std::io;
use std::mem::{size_of, zeroed};
use std::net::SocketAddrV4;
use std::os::fd::{AsRawFd, BorrowedFd};

/// Buffers for receiving up to `n` datagrams in one call.
pub struct RecvBatch {
    size: usize,
    data: Vec<u8>,
    addrs: Vec<libc::sockaddr_in>,
    cmsgs: Vec<Buf>,
    lens: Vec<usize>,
    /// Per message: its TOS byte, and the size of the datagrams it holds
    /// (UDP GRO), or 0 for one datagram.
    metas: Vec<RecvMeta>,
    count: usize,
    // Scratch space of recv, kept between calls (no allocation per call).
    iovs: Vec<libc::iovec>,
    msgs: Vec<libc::mmsghdr>,
}

// SAFETY: the raw pointers in the scratch vectors are only set and used
// within one `recv` call, which has `&mut self`.
unsafe impl Send for RecvBatch {}

impl RecvBatch {
    /// `n` datagrams of at most `size` bytes each.
    pub fn new(n: usize, size: usize) -> Self {
        let n = n.max(1);
        RecvBatch {
            size,
            data: vec![0; n * size],
            // SAFETY: plain old data, zero is valid.
            addrs: vec![unsafe { zeroed() }; n],
            cmsgs: vec![Buf::default(); n],
            lens: vec![0; n],
            metas: vec![RecvMeta::default(); n],
            count: 0,
            iovs: Vec::with_capacity(n),
            // SAFETY: plain old data, zero is valid.
            msgs: vec![unsafe { zeroed() }; n],
        }
    }

    /// Receives at least one datagram (blocking if the socket blocks) and
    /// as many more as are already queued, up to the batch size. Returns
    /// how many.
    pub fn recv(&mut self, fd: BorrowedFd<'_>) -> io::Result<usize> {
        self.recv_up_to(fd, usize::MAX)
    }

    /// As [`RecvBatch::recv`], with at most `max` messages (at least one).
    /// With one, the kernel does not look for a second message once it
    /// has the first: a receiver that expects no more saves that attempt.
    pub fn recv_up_to(&mut self, fd: BorrowedFd<'_>, max: usize) -> io::Result<usize> {
        let n = self.lens.len().min(max.max(1));
        self.iovs.clear();
        let size = self.size;
        self.iovs
            .extend(self.data.chunks_mut(size).take(n).map(|c| libc::iovec {
                iov_base: c.as_mut_ptr().cast(),
                iov_len: c.len(),
            }));
        let msgs = &mut self.msgs;
        for (i, m) in msgs.iter_mut().enumerate().take(n) {
            m.msg_hdr.msg_name = (&mut self.addrs[i] as *mut libc::sockaddr_in).cast();
            m.msg_hdr.msg_namelen = size_of::<libc::sockaddr_in>() as libc::socklen_t;
            m.msg_hdr.msg_iov = &mut self.iovs[i];
            m.msg_hdr.msg_iovlen = 1;
            m.msg_hdr.msg_control = self.cmsgs[i].0.as_mut_ptr().cast();
            m.msg_hdr.msg_controllen = cmsg::SPACE as _;
            m.msg_hdr.msg_flags = 0;
            m.msg_len = 0;
        }
        // SAFETY: every pointer in `msgs` points into buffers owned by
        // `self` or `iovs`, which outlive the call; lengths match them.
        let r = unsafe {
            libc::recvmmsg(
                fd.as_raw_fd(),
                msgs.as_mut_ptr(),
                n as libc::c_uint,
                libc::MSG_WAITFORONE,
                std::ptr::null_mut(),
            )
        };
        if r < 0 {
            self.count = 0;
            return Err(io::Error::last_os_error());
        }
        let got = r as usize;
        for (i, m) in msgs.iter().enumerate().take(got) {
            self.lens[i] = (m.msg_len as usize).min(self.size);
            self.metas[i] = cmsg::decode(&m.msg_hdr);
        }
        self.count = got;
        Ok(got)
    }

    /// The `i`th datagram of the last call: bytes, source, IPv4 TOS byte.
    pub fn get(&self, i: usize) -> Option<(&[u8], Option<SocketAddrV4>, u8)> {
        if i >= self.count {
            return None;
        }
        let start = i * self.size;
        Some((
            &self.data[start..start + self.lens[i]],
            from_sockaddr(&self.addrs[i]),
            self.metas[i].tos,
        ))
    }

    /// Every datagram of the last call, in order: a message the kernel
    /// coalesced (UDP GRO) is cut back into its datagrams.
    pub fn datagrams(&self) -> impl Iterator<Item = (&[u8], Option<SocketAddrV4>, u8)> {
        (0..self.count).flat_map(move |i| {
            let start = i * self.size;
            let bytes = &self.data[start..start + self.lens[i]];
            let seg = match self.metas[i].stride {
                0 => bytes.len().max(1),
                s => s,
            };
            let from = from_sockaddr(&self.addrs[i]);
            let tos = self.metas[i].tos;
            bytes.chunks(seg).map(move |d| (d, from, tos))
        })
    }

    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }
}

/// Datagrams gathered to be sent in one call.
///
/// Consecutive datagrams to the same destination with the same ECN field
/// and the same size (the last may be shorter) leave as one message with
/// UDP generic segmentation offload (`UDP_SEGMENT`, Linux 4.18): the
/// kernel cuts it into datagrams at the last moment, so a burst to one
/// peer (a TCP flow through a relay) crosses the stack once.
pub struct SendBatch {
    data: Vec<u8>,
    items: Vec<(SocketAddrV4, usize, usize, u8)>,
    /// Whether to use UDP GSO (cleared for good when the kernel refuses).
    gso: bool,
    /// Messages the last flush handed to the kernel.
    messages: usize,
    // Scratch space of flush, kept between calls.
    addrs: Vec<libc::sockaddr_in>,
    iovs: Vec<libc::iovec>,
    cmsgs: Vec<Buf>,
    msgs: Vec<libc::mmsghdr>,
    /// Per message: (first item, item count, segment size).
    groups: Vec<(usize, usize, usize)>,
}

impl Default for SendBatch {
    fn default() -> Self {
        SendBatch {
            data: Vec::new(),
            items: Vec::new(),
            gso: true,
            messages: 0,
            addrs: Vec::new(),
            iovs: Vec::new(),
            cmsgs: Vec::new(),
            msgs: Vec::new(),
            groups: Vec::new(),
        }
    }
}

// SAFETY: the raw pointers in the scratch vectors (iovecs, message headers)
// are only set and used within one `flush` call, which has `&mut self`.
unsafe impl Send for SendBatch {}

/// Segments in one GSO message (the kernel's UDP_MAX_SEGMENTS is 64 or 128).
const GSO_MAX_SEGMENTS: usize = 64;
/// Bytes in one GSO message (a UDP datagram's payload limit, with room).
const GSO_MAX_BYTES: usize = 60_000;

impl SendBatch {
    pub fn new() -> Self {
        Self::default()
    }

    /// A batch that never uses UDP GSO (one message per datagram).
    pub fn without_gso() -> Self {
        SendBatch {
            gso: false,
            ..Self::default()
        }
    }

    /// Queues a datagram to `to` whose IPv4 header carries the ECN field
    /// `ecn`.
    pub fn push(&mut self, to: SocketAddrV4, payload: &[u8], ecn: u8) {
        let start = self.data.len();
        self.data.extend_from_slice(payload);
        self.items.push((to, start, payload.len(), ecn & 0b11));
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// How many messages (system-call entries) the last flush used: fewer
    /// than the datagrams when GSO merged some.
    pub fn last_messages(&self) -> usize {
        self.messages
    }

    /// Whether GSO is still in use (the kernel has not refused it).
    pub fn gso(&self) -> bool {
        self.gso
    }

    /// Splits the items into messages: runs for GSO, or one each.
    fn plan(&mut self) {
        self.groups.clear();
        let mut i = 0;
        while i < self.items.len() {
            let (to, _, seg, ecn) = self.items[i];
            let mut n = 1;
            let mut bytes = seg;
            if self.gso && seg > 0 {
                while let Some(&(t, _, len, e)) = self.items.get(i + n) {
                    if t != to
                        || e != ecn
                        || len > seg
                        || len == 0
                        || n >= GSO_MAX_SEGMENTS
                        || bytes + len > GSO_MAX_BYTES
                    {
                        break;
                    }
                    n += 1;
                    bytes += len;
                    if len < seg {
                        break; // A shorter one ends the run.
                    }
                }
            }
            self.groups.push((i, n, seg));
            i += n;
        }
    }

    /// Sends everything queued (in as few calls as the kernel allows) and
    /// empties the batch. Datagrams the kernel refuses are dropped, as a
    /// network would; the first error is returned.
    pub fn flush(&mut self, fd: BorrowedFd<'_>) -> io::Result<()> {
        if self.items.is_empty() {
            self.messages = 0;
            return Ok(());
        }
        self.plan();
        let r = match self.send_planned(fd) {
            Sent::Done(r) => r,
            Sent::GsoRefused(e) => {
                // This kernel or socket cannot segment: one message per
                // datagram from now on (what was not sent yet goes now).
                log::debug!("UDP GSO refused ({e}): sending datagrams one by one");
                self.gso = false;
                self.plan();
                match self.send_planned(fd) {
                    Sent::Done(r) => r,
                    Sent::GsoRefused(e) => Err(e),
                }
            }
        };
        self.data.clear();
        self.items.clear();
        r
    }

    fn refuses_gso(e: &io::Error) -> bool {
        matches!(
            e.raw_os_error(),
            Some(libc::EIO | libc::EINVAL | libc::EOPNOTSUPP | libc::ENOPROTOOPT)
        )
    }

    fn send_planned(&mut self, fd: BorrowedFd<'_>) -> Sent {
        let n = self.groups.len();
        self.messages = n;
        self.addrs.clear();
        self.iovs.clear();
        self.cmsgs.clear();
        self.cmsgs.resize(n, Buf::default());
        self.msgs.clear();
        for &(first, count, _) in &self.groups {
            let (to, start, _, _) = self.items[first];
            let (_, last_start, last_len, _) = self.items[first + count - 1];
            self.addrs.push(to_sockaddr(to));
            // The run's payloads are contiguous in `data`.
            let bytes = &self.data[start..last_start + last_len];
            self.iovs.push(libc::iovec {
                // The kernel only reads through this pointer.
                iov_base: bytes.as_ptr() as *mut libc::c_void,
                iov_len: bytes.len(),
            });
            // SAFETY: plain old data; zero is valid.
            self.msgs.push(unsafe { zeroed() });
        }
        for (i, m) in self.msgs.iter_mut().enumerate() {
            let (first, count, seg) = self.groups[i];
            let ecn = self.items[first].3;
            m.msg_hdr.msg_name = (&mut self.addrs[i] as *mut libc::sockaddr_in).cast();
            m.msg_hdr.msg_namelen = size_of::<libc::sockaddr_in>() as libc::socklen_t;
            m.msg_hdr.msg_iov = &mut self.iovs[i];
            m.msg_hdr.msg_iovlen = 1;
            let meta = SendMeta {
                ecn,
                ttl: None,
                // A run of one is a plain datagram: no segmentation asked.
                segment_size: (count > 1).then_some(seg as u16),
            };
            cmsg::encode(&mut m.msg_hdr, &mut self.cmsgs[i], &meta);
        }
        let mut sent = 0usize;
        let mut first_err = None;
        while sent < n {
            // SAFETY: the pointers in msgs[sent..] point into buffers that
            // live until the end of this function and are not moved.
            let r = unsafe {
                libc::sendmmsg(
                    fd.as_raw_fd(),
                    self.msgs[sent..].as_mut_ptr(),
                    (n - sent) as libc::c_uint,
                    0,
                )
            };
            if r < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                if self.gso && Self::refuses_gso(&e) && self.groups[sent].1 > 1 {
                    // Let flush retry the rest without GSO.
                    self.items.drain(..self.groups[sent].0);
                    let offset = self.items.first().map_or(0, |it| it.1);
                    for it in &mut self.items {
                        it.1 -= offset;
                    }
                    self.data.drain(..offset);
                    return Sent::GsoRefused(e);
                }
                // Skip the message that failed and go on with the rest.
                first_err.get_or_insert(e);
                sent += 1;
            } else if r == 0 {
                sent += 1;
            } else {
                sent += r as usize;
            }
        }
        Sent::Done(first_err.map_or(Ok(()), Err))
    }
}

/// How a planned batch went.
enum Sent {
    Done(io::Result<()>),
    /// A GSO message was refused; the items from it on are still queued.
    GsoRefused(io::Error),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::socket::{enable_udp_gro, receive_tos, GRO_SLOT};
    use std::net::UdpSocket;
    use std::os::fd::AsFd;

    #[test]
    fn recv_up_to_one_leaves_the_rest_queued() {
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        for i in 0..5u8 {
            tx.send_to(&[i; 50], rx.local_addr().unwrap()).unwrap();
        }
        let mut rb = RecvBatch::new(16, 2048);
        assert_eq!(rb.recv_up_to(rx.as_fd(), 1).unwrap(), 1);
        assert_eq!(rb.get(0).map(|(b, _, _)| b.to_vec()), Some(vec![0; 50]));
        assert!(rb.get(1).is_none());
        // Loopback queued all five before the first call: the rest come
        // in one call, in order.
        assert_eq!(rb.recv_up_to(rx.as_fd(), 0).unwrap(), 1);
        assert_eq!(rb.get(0).map(|(b, _, _)| b[0]), Some(1));
        assert_eq!(rb.recv(rx.as_fd()).unwrap(), 3);
        let rest: Vec<u8> = rb.datagrams().map(|(b, _, _)| b[0]).collect();
        assert_eq!(rest, vec![2, 3, 4]);
    }

    #[test]
    fn send_and_receive_a_batch_with_ecn() {
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        receive_tos(rx.as_fd()).unwrap();
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let to = match rx.local_addr().unwrap() {
            std::net::SocketAddr::V4(a) => a,
            _ => unreachable!(),
        };
        let from = match tx.local_addr().unwrap() {
            std::net::SocketAddr::V4(a) => a,
            _ => unreachable!(),
        };
        let mut sb = SendBatch::new();
        for i in 0..10u8 {
            sb.push(to, &[i; 100], i % 4);
        }
        sb.flush(tx.as_fd()).unwrap();
        assert!(sb.is_empty());
        let mut rb = RecvBatch::new(16, 2048);
        let mut seen = Vec::new();
        while seen.len() < 10 {
            let n = rb.recv(rx.as_fd()).unwrap();
            for i in 0..n {
                let (b, src, tos) = rb.get(i).unwrap();
                assert_eq!(src, Some(from));
                assert_eq!(b.len(), 100);
                assert_eq!(tos & 3, b[0] % 4);
                seen.push(b[0]);
            }
        }
        assert_eq!(seen, (0..10).collect::<Vec<u8>>());
    }

    fn v4(a: std::net::SocketAddr) -> SocketAddrV4 {
        match a {
            std::net::SocketAddr::V4(a) => a,
            std::net::SocketAddr::V6(_) => unreachable!(),
        }
    }

    /// Receives `n` datagrams (bounded wait); returns their bytes.
    fn receive(rx: &UdpSocket, n: usize) -> Vec<Vec<u8>> {
        rx.set_read_timeout(Some(std::time::Duration::from_secs(2)))
            .unwrap();
        let mut rb = RecvBatch::new(64, 2048);
        let mut got = Vec::new();
        while got.len() < n {
            let Ok(k) = rb.recv(rx.as_fd()) else { break };
            for i in 0..k {
                got.push(rb.get(i).unwrap().0.to_vec());
            }
        }
        got
    }

    #[test]
    fn runs_to_one_destination_leave_as_one_gso_message() {
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let rx2 = UdpSocket::bind("127.0.0.1:0").unwrap();
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let (to, to2) = (v4(rx.local_addr().unwrap()), v4(rx2.local_addr().unwrap()));
        let mut sb = SendBatch::new();
        // 70 of 1268 bytes (more than one message holds), a short one, then
        // two to another socket.
        let mut sent = Vec::new();
        for i in 0..70u8 {
            let p = vec![i; 1268];
            sb.push(to, &p, 0);
            sent.push(p);
        }
        sb.push(to, &[200; 100], 0);
        sent.push(vec![200; 100]);
        sb.push(to2, &[201; 1268], 0);
        sb.push(to2, &[202; 1268], 0);
        sb.flush(tx.as_fd()).unwrap();
        // What this test is for: a kernel that refuses UDP GSO (before
        // Linux 4.18) fails it rather than passing it unchecked.
        assert!(sb.gso(), "this kernel refuses UDP GSO on loopback");
        // 47 fit in 60,000 bytes, then the other 23 and the short one,
        // then the pair to the other socket.
        assert_eq!(sb.last_messages(), 3);
        assert_eq!(receive(&rx, sent.len()), sent);
        assert_eq!(receive(&rx2, 2), vec![vec![201; 1268], vec![202; 1268]]);
        // One datagram: one message, no segmentation asked.
        sb.push(to2, &[7; 10], 0);
        sb.flush(tx.as_fd()).unwrap();
        assert_eq!(sb.last_messages(), 1);
        assert_eq!(receive(&rx2, 1), vec![vec![7; 10]]);
    }

    #[test]
    fn gro_messages_are_cut_back_into_datagrams() {
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        // Checked, not assumed: without UDP GRO (before Linux 5.0) the
        // test fails rather than passing unchecked.
        enable_udp_gro(rx.as_fd()).expect("UDP GRO on this kernel");
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let to = v4(rx.local_addr().unwrap());
        let mut sb = SendBatch::new();
        let mut sent = Vec::new();
        for i in 0..30u8 {
            let p = vec![i; 1000];
            sb.push(to, &p, 0);
            sent.push(p);
        }
        sb.push(to, &[99; 10], 0);
        sent.push(vec![99; 10]);
        sb.flush(tx.as_fd()).unwrap();
        rx.set_read_timeout(Some(std::time::Duration::from_secs(2)))
            .unwrap();
        let mut rb = RecvBatch::new(4, GRO_SLOT);
        let mut got = Vec::new();
        let mut messages = 0;
        while got.len() < sent.len() {
            let Ok(k) = rb.recv(rx.as_fd()) else { break };
            messages += k;
            got.extend(rb.datagrams().map(|(d, from, _)| {
                assert_eq!(from, Some(v4(tx.local_addr().unwrap())));
                d.to_vec()
            }));
        }
        assert_eq!(got, sent);
        assert!(sb.gso(), "this kernel refuses UDP GSO on loopback");
        // The GSO message stayed whole up to the socket.
        assert!(messages < sent.len(), "{messages} messages");
    }

    #[test]
    fn without_gso_one_message_each() {
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let to = v4(rx.local_addr().unwrap());
        let mut sb = SendBatch::without_gso();
        for i in 0..5u8 {
            sb.push(to, &[i; 500], 0);
        }
        sb.flush(tx.as_fd()).unwrap();
        assert_eq!(sb.last_messages(), 5);
        assert_eq!(receive(&rx, 5).len(), 5);
    }
}
