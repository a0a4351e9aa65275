//! The socket layer of Teredo's UDP over IPv4: one datagram at a time
//! here, many at a time in [`super::batch`], and the control messages of
//! both (ECN, TTL, GSO, GRO) built and read by [`super::cmsg`] alone.
//!
//! Also the socket options that make the kernel report what the receiving
//! side reads: the TOS byte (`IP_RECVTOS`, RFC 9601: congestion marked on
//! the way must reach the inner packet) and coalesced runs (`UDP_GRO`).

use super::cmsg::{self, Buf};
pub use super::cmsg::{RecvMeta, SendMeta};
use nix::libc;
use std::io;
use std::mem::{size_of, zeroed};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::{AsRawFd, BorrowedFd};

/// The slot size of a batch receiving with UDP GRO: the largest message.
pub const GRO_SLOT: usize = 65_536;

/// `a` as the kernel takes it.
pub(crate) fn to_sockaddr(a: SocketAddrV4) -> libc::sockaddr_in {
    // SAFETY: sockaddr_in is plain old data; all-zero is a valid value.
    let mut s: libc::sockaddr_in = unsafe { zeroed() };
    s.sin_family = libc::AF_INET as libc::sa_family_t;
    s.sin_port = a.port().to_be();
    s.sin_addr = libc::in_addr {
        s_addr: u32::from_ne_bytes(a.ip().octets()),
    };
    s
}

/// The source the kernel wrote, if it is an IPv4 one.
pub(crate) fn from_sockaddr(s: &libc::sockaddr_in) -> Option<SocketAddrV4> {
    if s.sin_family != libc::AF_INET as libc::sa_family_t {
        return None;
    }
    Some(SocketAddrV4::new(
        Ipv4Addr::from(s.sin_addr.s_addr.to_ne_bytes()),
        u16::from_be(s.sin_port),
    ))
}

/// Sends one datagram to `to` with what `meta` asks for (ECN field, time
/// to live, segment size), per datagram, without changing the socket.
pub fn send(
    fd: BorrowedFd<'_>,
    to: SocketAddrV4,
    payload: &[u8],
    meta: &SendMeta,
) -> io::Result<usize> {
    let mut addr = to_sockaddr(to);
    let mut iov = libc::iovec {
        // The kernel only reads through this pointer.
        iov_base: payload.as_ptr() as *mut libc::c_void,
        iov_len: payload.len(),
    };
    // SAFETY: plain old data; all-zero is valid.
    let mut hdr: libc::msghdr = unsafe { zeroed() };
    hdr.msg_name = (&mut addr as *mut libc::sockaddr_in).cast();
    hdr.msg_namelen = size_of::<libc::sockaddr_in>() as libc::socklen_t;
    hdr.msg_iov = &mut iov;
    hdr.msg_iovlen = 1;
    let mut buf = Buf::default();
    cmsg::encode(&mut hdr, &mut buf, meta);
    loop {
        // SAFETY: every pointer in `hdr` points to locals that outlive
        // the call, with the lengths given.
        let r = unsafe { libc::sendmsg(fd.as_raw_fd(), &hdr, 0) };
        if r >= 0 {
            return Ok(r as usize);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// Receives one datagram into `buf`: its length, its source, and what its
/// control messages said.
pub fn recv(
    fd: BorrowedFd<'_>,
    buf: &mut [u8],
) -> io::Result<(usize, Option<SocketAddrV4>, RecvMeta)> {
    // SAFETY: plain old data; all-zero is valid.
    let mut addr: libc::sockaddr_in = unsafe { zeroed() };
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    let mut control = Buf::default();
    // SAFETY: plain old data; all-zero is valid.
    let mut hdr: libc::msghdr = unsafe { zeroed() };
    hdr.msg_name = (&mut addr as *mut libc::sockaddr_in).cast();
    hdr.msg_namelen = size_of::<libc::sockaddr_in>() as libc::socklen_t;
    hdr.msg_iov = &mut iov;
    hdr.msg_iovlen = 1;
    hdr.msg_control = control.0.as_mut_ptr().cast();
    hdr.msg_controllen = cmsg::SPACE as _;
    // SAFETY: every pointer in `hdr` points to locals or `buf`, which
    // outlive the call, with their lengths.
    let r = unsafe { libc::recvmsg(fd.as_raw_fd(), &mut hdr, 0) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    let from = if hdr.msg_namelen as usize >= size_of::<libc::sockaddr_in>() {
        from_sockaddr(&addr)
    } else {
        None
    };
    Ok(((r as usize).min(buf.len()), from, cmsg::decode(&hdr)))
}

fn set_int(fd: BorrowedFd<'_>, level: libc::c_int, name: libc::c_int) -> io::Result<()> {
    let one: libc::c_int = 1;
    // SAFETY: a valid descriptor and a pointer to an int of the size given.
    let r = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (&one as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Asks the kernel for the TOS byte of every datagram received (the outer
/// ECN field, RFC 9601), read back as [`RecvMeta::tos`].
pub fn receive_tos(fd: BorrowedFd<'_>) -> io::Result<()> {
    set_int(fd, libc::IPPROTO_IP, libc::IP_RECVTOS)
}

/// Asks the kernel to hand over runs of datagrams from one sender as one
/// message (UDP GRO, Linux 5.0): a run a peer sent with UDP GSO, or that
/// the network card's GRO merged, then crosses the receiving stack once.
/// The receiving batch's slots must hold 64 KiB ([`GRO_SLOT`]) and its
/// reader use [`super::batch::RecvBatch::datagrams`].
pub fn enable_udp_gro(fd: BorrowedFd<'_>) -> io::Result<()> {
    set_int(fd, libc::SOL_UDP, libc::UDP_GRO)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;
    use std::os::fd::AsFd;

    fn v4(a: std::net::SocketAddr) -> SocketAddrV4 {
        match a {
            std::net::SocketAddr::V4(a) => a,
            std::net::SocketAddr::V6(_) => unreachable!(),
        }
    }

    #[test]
    fn one_datagram_with_its_ecn_field_and_ttl() {
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        receive_tos(rx.as_fd()).unwrap();
        rx.set_read_timeout(Some(std::time::Duration::from_secs(2)))
            .unwrap();
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let to = v4(rx.local_addr().unwrap());
        for (i, meta) in [
            SendMeta::default(),
            SendMeta {
                ecn: 0b01,
                ..SendMeta::default()
            },
            SendMeta {
                ecn: 0b11,
                ttl: Some(2),
                ..SendMeta::default()
            },
            SendMeta {
                ttl: Some(1),
                ..SendMeta::default()
            },
        ]
        .iter()
        .enumerate()
        {
            assert_eq!(send(tx.as_fd(), to, &[i as u8; 30], meta).unwrap(), 30);
            let mut buf = [0u8; 100];
            let (n, from, got) = recv(rx.as_fd(), &mut buf).unwrap();
            assert_eq!((n, buf[0]), (30, i as u8));
            assert_eq!(from, Some(v4(tx.local_addr().unwrap())));
            assert_eq!(got.tos & 0b11, meta.ecn, "datagram {i}");
            assert_eq!(got.stride, 0);
        }
    }
}
