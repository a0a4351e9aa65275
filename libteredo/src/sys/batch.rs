//! Batched UDP I/O: `recvmmsg(2)` and `sendmmsg(2)`, so that one system
//! call moves many datagrams when the load is high, and costs nothing extra
//! when it is low (`MSG_WAITFORONE` returns as soon as one datagram is
//! there).

use nix::libc;
use std::io;
use std::mem::{size_of, zeroed};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::{AsRawFd, BorrowedFd};

/// Space for one `IP_TOS` control message (an int, rounded up).
const CMSG_SPACE: usize = 64;

fn to_sockaddr(a: SocketAddrV4) -> libc::sockaddr_in {
    // SAFETY: sockaddr_in is plain old data; all-zero is a valid value.
    let mut s: libc::sockaddr_in = unsafe { zeroed() };
    s.sin_family = libc::AF_INET as libc::sa_family_t;
    s.sin_port = a.port().to_be();
    s.sin_addr = libc::in_addr {
        s_addr: u32::from_ne_bytes(a.ip().octets()),
    };
    s
}

fn from_sockaddr(s: &libc::sockaddr_in) -> Option<SocketAddrV4> {
    if s.sin_family != libc::AF_INET as libc::sa_family_t {
        return None;
    }
    Some(SocketAddrV4::new(
        Ipv4Addr::from(s.sin_addr.s_addr.to_ne_bytes()),
        u16::from_be(s.sin_port),
    ))
}

/// Buffers for receiving up to `n` datagrams in one call.
pub struct RecvBatch {
    size: usize,
    data: Vec<u8>,
    addrs: Vec<libc::sockaddr_in>,
    cmsgs: Vec<[u8; CMSG_SPACE]>,
    lens: Vec<usize>,
    tos: Vec<u8>,
    count: usize,
}

impl RecvBatch {
    /// `n` datagrams of at most `size` bytes each.
    pub fn new(n: usize, size: usize) -> Self {
        let n = n.max(1);
        RecvBatch {
            size,
            data: vec![0; n * size],
            // SAFETY: plain old data, zero is valid.
            addrs: vec![unsafe { zeroed() }; n],
            cmsgs: vec![[0; CMSG_SPACE]; n],
            lens: vec![0; n],
            tos: vec![0; n],
            count: 0,
        }
    }

    /// Receives at least one datagram (blocking if the socket blocks) and
    /// as many more as are already queued, up to the batch size. Returns
    /// how many.
    pub fn recv(&mut self, fd: BorrowedFd<'_>) -> io::Result<usize> {
        let n = self.lens.len();
        let mut iovs: Vec<libc::iovec> = self
            .data
            .chunks_mut(self.size)
            .map(|c| libc::iovec {
                iov_base: c.as_mut_ptr().cast(),
                iov_len: c.len(),
            })
            .collect();
        // SAFETY: mmsghdr is plain old data; zero is valid.
        let mut msgs: Vec<libc::mmsghdr> = vec![unsafe { zeroed() }; n];
        for (i, m) in msgs.iter_mut().enumerate() {
            m.msg_hdr.msg_name = (&mut self.addrs[i] as *mut libc::sockaddr_in).cast();
            m.msg_hdr.msg_namelen = size_of::<libc::sockaddr_in>() as libc::socklen_t;
            m.msg_hdr.msg_iov = &mut iovs[i];
            m.msg_hdr.msg_iovlen = 1;
            m.msg_hdr.msg_control = self.cmsgs[i].as_mut_ptr().cast();
            m.msg_hdr.msg_controllen = CMSG_SPACE as _;
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
            self.tos[i] = 0;
            // SAFETY: walking the control messages the kernel wrote into
            // our buffer, with the length it reported.
            unsafe {
                let mut c = libc::CMSG_FIRSTHDR(&m.msg_hdr);
                while !c.is_null() {
                    if (*c).cmsg_level == libc::IPPROTO_IP && (*c).cmsg_type == libc::IP_TOS {
                        self.tos[i] = *libc::CMSG_DATA(c);
                    }
                    c = libc::CMSG_NXTHDR(&m.msg_hdr, c);
                }
            }
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
            self.tos[i],
        ))
    }

    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }
}

/// Datagrams gathered to be sent in one call.
#[derive(Default)]
pub struct SendBatch {
    data: Vec<u8>,
    items: Vec<(SocketAddrV4, usize, usize, u8)>,
}

impl SendBatch {
    pub fn new() -> Self {
        Self::default()
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

    /// Sends everything queued (in as few calls as the kernel allows) and
    /// empties the batch. Datagrams the kernel refuses are dropped, as a
    /// network would; the first error is returned.
    pub fn flush(&mut self, fd: BorrowedFd<'_>) -> io::Result<()> {
        let n = self.items.len();
        if n == 0 {
            return Ok(());
        }
        let mut addrs: Vec<libc::sockaddr_in> =
            self.items.iter().map(|it| to_sockaddr(it.0)).collect();
        let mut iovs: Vec<libc::iovec> = self
            .items
            .iter()
            .map(|&(_, start, len, _)| libc::iovec {
                // The kernel only reads through this pointer.
                iov_base: self.data[start..start + len].as_ptr() as *mut libc::c_void,
                iov_len: len,
            })
            .collect();
        let mut cmsgs: Vec<[u8; CMSG_SPACE]> = vec![[0; CMSG_SPACE]; n];
        // SAFETY: plain old data; zero is valid.
        let mut msgs: Vec<libc::mmsghdr> = vec![unsafe { zeroed() }; n];
        for (i, m) in msgs.iter_mut().enumerate() {
            m.msg_hdr.msg_name = (&mut addrs[i] as *mut libc::sockaddr_in).cast();
            m.msg_hdr.msg_namelen = size_of::<libc::sockaddr_in>() as libc::socklen_t;
            m.msg_hdr.msg_iov = &mut iovs[i];
            m.msg_hdr.msg_iovlen = 1;
            let ecn = self.items[i].3;
            if ecn != 0 {
                // SAFETY: the control buffer is CMSG_SPACE bytes, enough
                // for one int-sized message; the macros stay inside it.
                unsafe {
                    m.msg_hdr.msg_control = cmsgs[i].as_mut_ptr().cast();
                    m.msg_hdr.msg_controllen =
                        libc::CMSG_SPACE(size_of::<libc::c_int>() as u32) as _;
                    let c = libc::CMSG_FIRSTHDR(&m.msg_hdr);
                    (*c).cmsg_level = libc::IPPROTO_IP;
                    (*c).cmsg_type = libc::IP_TOS;
                    (*c).cmsg_len = libc::CMSG_LEN(size_of::<libc::c_int>() as u32) as _;
                    std::ptr::write_unaligned(
                        libc::CMSG_DATA(c).cast::<libc::c_int>(),
                        libc::c_int::from(ecn),
                    );
                }
            }
        }
        let mut sent = 0usize;
        let mut first_err = None;
        while sent < n {
            // SAFETY: the pointers in msgs[sent..] point into buffers that
            // live until the end of this function.
            let r = unsafe {
                libc::sendmmsg(
                    fd.as_raw_fd(),
                    msgs[sent..].as_mut_ptr(),
                    (n - sent) as libc::c_uint,
                    0,
                )
            };
            if r < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                // Skip the datagram that failed and go on with the rest.
                first_err.get_or_insert(e);
                sent += 1;
            } else if r == 0 {
                sent += 1;
            } else {
                sent += r as usize;
            }
        }
        self.data.clear();
        self.items.clear();
        first_err.map_or(Ok(()), Err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;
    use std::os::fd::AsFd;

    #[test]
    fn send_and_receive_a_batch_with_ecn() {
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        nix::sys::socket::setsockopt(&rx, nix::sys::socket::sockopt::IpRecvTos, &true).unwrap();
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
}
