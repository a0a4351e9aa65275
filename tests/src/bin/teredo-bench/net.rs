//! Socket plumbing shared by the benchmark's helpers (the load generator
//! and the floor relay): socket addresses for libc, batched sends with
//! `sendmmsg`, and a pacing loop. Included with `#[path]` by each binary.

#![allow(dead_code)]

use std::io;
use std::mem;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::RawFd;
use std::time::{Duration, Instant};

use nix::libc;

/// A socket address as libc wants it.
#[derive(Clone, Copy)]
pub struct RawAddr {
    pub storage: libc::sockaddr_storage,
    pub len: libc::socklen_t,
}

impl RawAddr {
    pub fn new(a: SocketAddr) -> RawAddr {
        // SAFETY: sockaddr_storage is plain data; all zeroes is valid.
        let mut storage: libc::sockaddr_storage = unsafe { mem::zeroed() };
        let len = match a {
            SocketAddr::V4(v4) => {
                let sin = libc::sockaddr_in {
                    sin_family: libc::AF_INET as libc::sa_family_t,
                    sin_port: v4.port().to_be(),
                    sin_addr: libc::in_addr {
                        s_addr: u32::from_ne_bytes(v4.ip().octets()),
                    },
                    sin_zero: [0; 8],
                };
                // SAFETY: sockaddr_in fits in sockaddr_storage.
                unsafe { std::ptr::write(&mut storage as *mut _ as *mut libc::sockaddr_in, sin) };
                mem::size_of::<libc::sockaddr_in>()
            }
            SocketAddr::V6(v6) => {
                let sin6 = libc::sockaddr_in6 {
                    sin6_family: libc::AF_INET6 as libc::sa_family_t,
                    sin6_port: v6.port().to_be(),
                    sin6_flowinfo: 0,
                    sin6_addr: libc::in6_addr {
                        s6_addr: v6.ip().octets(),
                    },
                    sin6_scope_id: 0,
                };
                // SAFETY: sockaddr_in6 fits in sockaddr_storage.
                unsafe { std::ptr::write(&mut storage as *mut _ as *mut libc::sockaddr_in6, sin6) };
                mem::size_of::<libc::sockaddr_in6>()
            }
        };
        RawAddr {
            storage,
            len: len as libc::socklen_t,
        }
    }

    pub fn empty() -> RawAddr {
        RawAddr {
            // SAFETY: as above.
            storage: unsafe { mem::zeroed() },
            len: mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t,
        }
    }

    /// The address back, for IPv4 and IPv6 (v4-mapped IPv6 becomes IPv4).
    pub fn get(&self) -> Option<SocketAddr> {
        match i32::from(self.storage.ss_family) {
            libc::AF_INET => {
                // SAFETY: the family says it is a sockaddr_in.
                let sin = unsafe { &*(&self.storage as *const _ as *const libc::sockaddr_in) };
                let ip = Ipv4Addr::from(sin.sin_addr.s_addr.to_ne_bytes());
                Some(SocketAddr::V4(SocketAddrV4::new(
                    ip,
                    u16::from_be(sin.sin_port),
                )))
            }
            libc::AF_INET6 => {
                // SAFETY: the family says it is a sockaddr_in6.
                let sin6 = unsafe { &*(&self.storage as *const _ as *const libc::sockaddr_in6) };
                let ip = Ipv6Addr::from(sin6.sin6_addr.s6_addr);
                let port = u16::from_be(sin6.sin6_port);
                Some(match ip.to_ipv4_mapped() {
                    Some(v4) => SocketAddr::V4(SocketAddrV4::new(v4, port)),
                    None => SocketAddr::V6(SocketAddrV6::new(ip, port, 0, 0)),
                })
            }
            _ => None,
        }
    }
}

/// Up to `cap` datagrams to send with one `sendmmsg`, each with its own
/// buffer and (optionally) its own destination.
pub struct SendBatch {
    pub bufs: Vec<Vec<u8>>,
    pub lens: Vec<usize>,
    pub names: Vec<RawAddr>,
    iov: Vec<libc::iovec>,
    hdrs: Vec<libc::mmsghdr>,
}

impl SendBatch {
    pub fn new(cap: usize, buf_size: usize) -> SendBatch {
        let cap = cap.max(1);
        SendBatch {
            bufs: vec![vec![0u8; buf_size]; cap],
            lens: vec![0; cap],
            names: vec![RawAddr::empty(); cap],
            // SAFETY: iovec and mmsghdr are plain data; zeroes are valid.
            iov: vec![unsafe { mem::zeroed() }; cap],
            hdrs: vec![unsafe { mem::zeroed() }; cap],
        }
    }

    pub fn cap(&self) -> usize {
        self.bufs.len()
    }

    /// Sends the first `n` datagrams (`bufs[i][..lens[i]]`), to `names[i]`
    /// when `named`, else on the connected socket. Returns how many went.
    pub fn send(&mut self, fd: RawFd, n: usize, named: bool) -> io::Result<usize> {
        let n = n.min(self.cap());
        for i in 0..n {
            self.iov[i] = libc::iovec {
                iov_base: self.bufs[i].as_mut_ptr().cast(),
                iov_len: self.lens[i],
            };
            let h = &mut self.hdrs[i].msg_hdr;
            h.msg_iov = &mut self.iov[i];
            h.msg_iovlen = 1;
            if named {
                h.msg_name = (&mut self.names[i].storage as *mut libc::sockaddr_storage).cast();
                h.msg_namelen = self.names[i].len;
            } else {
                h.msg_name = std::ptr::null_mut();
                h.msg_namelen = 0;
            }
            h.msg_control = std::ptr::null_mut();
            h.msg_controllen = 0;
            h.msg_flags = 0;
            self.hdrs[i].msg_len = 0;
        }
        // SAFETY: hdrs[..n] point at live buffers and names owned by self.
        let r = unsafe { libc::sendmmsg(fd, self.hdrs.as_mut_ptr(), n as libc::c_uint, 0) };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(r as usize)
    }
}

/// Up to `cap` datagrams received with one `recvmmsg`.
pub struct RecvBatch {
    pub bufs: Vec<Vec<u8>>,
    pub names: Vec<RawAddr>,
    iov: Vec<libc::iovec>,
    hdrs: Vec<libc::mmsghdr>,
}

impl RecvBatch {
    pub fn new(cap: usize, buf_size: usize) -> RecvBatch {
        let cap = cap.max(1);
        RecvBatch {
            bufs: vec![vec![0u8; buf_size]; cap],
            names: vec![RawAddr::empty(); cap],
            // SAFETY: plain data.
            iov: vec![unsafe { mem::zeroed() }; cap],
            hdrs: vec![unsafe { mem::zeroed() }; cap],
        }
    }

    /// Receives at least one datagram (blocking, or until the socket's
    /// receive timeout); returns how many, and each one's length in
    /// `len(i)`.
    pub fn recv(&mut self, fd: RawFd) -> io::Result<usize> {
        let cap = self.bufs.len();
        for i in 0..cap {
            self.iov[i] = libc::iovec {
                iov_base: self.bufs[i].as_mut_ptr().cast(),
                iov_len: self.bufs[i].len(),
            };
            self.names[i] = RawAddr::empty();
            let h = &mut self.hdrs[i].msg_hdr;
            h.msg_iov = &mut self.iov[i];
            h.msg_iovlen = 1;
            h.msg_name = (&mut self.names[i].storage as *mut libc::sockaddr_storage).cast();
            h.msg_namelen = self.names[i].len;
            h.msg_control = std::ptr::null_mut();
            h.msg_controllen = 0;
            h.msg_flags = 0;
            self.hdrs[i].msg_len = 0;
        }
        // SAFETY: hdrs point at buffers owned by self.
        let r = unsafe {
            libc::recvmmsg(
                fd,
                self.hdrs.as_mut_ptr(),
                cap as libc::c_uint,
                libc::MSG_WAITFORONE,
                std::ptr::null_mut(),
            )
        };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        for i in 0..r as usize {
            self.names[i].len = self.hdrs[i].msg_hdr.msg_namelen;
        }
        Ok(r as usize)
    }

    pub fn len(&self, i: usize) -> usize {
        self.hdrs[i].msg_len as usize
    }
}

/// Sets an integer socket option, ignoring failure (a bigger buffer is a
/// wish, not a need).
pub fn setsockopt_int(fd: RawFd, level: libc::c_int, name: libc::c_int, value: libc::c_int) {
    // SAFETY: a c_int option value of the right size.
    unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (&value as *const libc::c_int).cast(),
            mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}

/// Big socket buffers (root may exceed the sysctl maxima with *FORCE).
pub fn big_buffers(fd: RawFd) {
    setsockopt_int(fd, libc::SOL_SOCKET, libc::SO_SNDBUFFORCE, 4 << 20);
    setsockopt_int(fd, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, 4 << 20);
}

/// Makes sleeps precise to the microsecond (default slack is 50 us, the
/// whole interval between two packets at 20,000 packets/s).
pub fn precise_sleeps() {
    // SAFETY: prctl with an integer argument.
    unsafe {
        libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong, 0, 0, 0);
    }
}

/// Calls `send(n)` for `secs` seconds, `n` being how many datagrams are due
/// (at most `batch`); `rate` 0 means as fast as possible. `send` returns
/// how many it sent, or `None` to stop early. Returns (sent, elapsed).
pub fn paced(
    rate: f64,
    secs: f64,
    batch: usize,
    mut send: impl FnMut(usize) -> Option<usize>,
) -> (u64, Duration) {
    let start = Instant::now();
    let end = start + Duration::from_secs_f64(secs);
    let mut sent: u64 = 0;
    let mut attempts: u64 = 0;
    loop {
        let now = Instant::now();
        if now >= end {
            break;
        }
        if rate <= 0.0 {
            match send(batch) {
                Some(k) => sent += k as u64,
                None => break,
            }
            continue;
        }
        // Due by now; a datagram that failed to go is not sent again, so
        // the schedule counts attempts, not successes.
        let due = ((now - start).as_secs_f64() * rate) as u64;
        if due <= attempts {
            let next = start + Duration::from_secs_f64((attempts + 1) as f64 / rate);
            let wait = next.saturating_duration_since(Instant::now());
            std::thread::sleep(wait.min(end.saturating_duration_since(Instant::now())));
            continue;
        }
        let n = ((due - attempts) as usize).min(batch);
        attempts += n as u64;
        match send(n) {
            Some(k) => sent += k as u64,
            None => break,
        }
    }
    (sent, start.elapsed())
}
