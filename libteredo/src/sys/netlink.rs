//! Interface settings over rtnetlink, with a blocking socket: what the
//! Debian client hook does with `ip`, without shelling out.
//!
//! Shared by miredo-privproc (client interface) and miredo (relay
//! interface, configured once before privileges are dropped).
//!
//! Up:   MTU and link up; every IPv6 address but the two below removed
//!       (never two Teredo addresses); `LLADDRESS/64` and `ADDRESS/32`;
//!       `::/0 dev IFACE metric 1029` (Teredo as the last resort).
//! Down: every IPv6 address and our default route removed; link down.
//! Relay: MTU, link up, the link-local address, and `PREFIX/32 dev IFACE`.
//!
//! And, for a client that follows its host's network (no privilege
//! needed): [`Netlink::route_to`], the path the kernel would use towards
//! an IPv4 address (outgoing interface, gateway, source address, and
//! whether that interface is up and running), and [`Monitor`], the
//! kernel's announcements of link, IPv4 address and IPv4 route changes.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::time::Duration;

use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP,
    NLM_F_REPLACE, NLM_F_REQUEST,
};
use netlink_packet_route::address::{
    AddressAttribute, AddressFlags, AddressHeaderFlags, AddressMessage, AddressScope,
};
use netlink_packet_route::link::{LinkAttribute, LinkFlags, LinkMessage};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteFlags, RouteHeader, RouteMessage, RouteProtocol, RouteScope,
    RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};

/// Metric of the default route: above the kernel's 1024, so that any other
/// default route wins (the value of Debian's hook).
pub const DEFAULT_ROUTE_METRIC: u32 = 1029;

/// Metric of a relay's prefix route (the kernel's default for static
/// routes).
pub const RELAY_ROUTE_METRIC: u32 = 1024;

const TEREDO_PREFIX_LEN: u8 = 32;
const LINK_LOCAL_PREFIX_LEN: u8 = 64;

/// Replies from the kernel are read into this; one dump datagram fits.
const RECV_BUF: usize = 64 * 1024;

/// How long a query waits for the kernel (it answers at once; this only
/// bounds a wait that should never happen).
const QUERY_TIMEOUT: Duration = Duration::from_secs(2);

/// Datagrams read per query at most before giving up on an answer.
const MAX_DATAGRAMS: usize = 4096;

/// Multicast groups of rtnetlink (the bits of `nl_groups`).
const RTMGRP_LINK: u32 = 0x1;
const RTMGRP_IPV4_IFADDR: u32 = 0x10;
const RTMGRP_IPV4_ROUTE: u32 = 0x40;

/// The path the kernel takes towards an address ([`Netlink::route_to`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Path {
    /// The outgoing interface's index.
    pub oif: u32,
    /// The next hop, when not on the link.
    pub gateway: Option<Ipv4Addr>,
    /// The source address the kernel picks (none: the host has no address
    /// to send from).
    pub src: Option<Ipv4Addr>,
    /// Whether the outgoing interface is up with a carrier.
    pub running: bool,
    /// The outgoing interface's name, NUL-padded (from rtnetlink: the
    /// unprivileged daemon has no other way to ask, see
    /// libteredo::sys::seccomp).
    pub name: [u8; IFNAMSIZ],
}

/// The longest interface name and its NUL (linux/if.h).
pub const IFNAMSIZ: usize = 16;

impl Path {
    /// The outgoing interface's name, or its index when it has none.
    pub fn ifname(&self) -> String {
        let end = self.name.iter().position(|&b| b == 0).unwrap_or(IFNAMSIZ);
        match std::str::from_utf8(&self.name[..end]) {
            Ok(n) if !n.is_empty() => n.to_string(),
            _ => format!("interface {}", self.oif),
        }
    }
}

/// What a batch of announcements ([`Monitor::drain`]) said.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Changes {
    /// Something that may change a path changed: a link, an IPv4 address
    /// or an IPv4 route, other than on the ignored interface (or
    /// announcements were lost).
    pub any: bool,
    /// The state of each link announced, in order: (index, up and
    /// running), `false` for a link removed.
    pub links: Vec<(u32, bool)>,
}

pub struct Netlink {
    socket: Socket,
    seq: u32,
}

impl Netlink {
    pub fn open() -> io::Result<Self> {
        let mut socket = Socket::new(NETLINK_ROUTE)?;
        socket.bind_auto()?;
        socket.connect(&SocketAddr::new(0, 0))?;
        Ok(Netlink { socket, seq: 0 })
    }

    pub fn up(
        &mut self,
        ifindex: u32,
        address: Ipv6Addr,
        lladdr: Ipv6Addr,
        mtu: u16,
    ) -> io::Result<()> {
        self.set_link(ifindex, true, Some(u32::from(mtu)))?;
        let keep = [
            (address, TEREDO_PREFIX_LEN),
            (lladdr, LINK_LOCAL_PREFIX_LEN),
        ];
        for found in self.addresses(ifindex)? {
            if !keep.contains(&found) {
                self.del_address(ifindex, found)?;
            }
        }
        self.add_address(ifindex, (lladdr, LINK_LOCAL_PREFIX_LEN))?;
        self.add_address(ifindex, (address, TEREDO_PREFIX_LEN))?;
        match self.ack(
            RouteNetlinkMessage::NewRoute(default_route(ifindex)),
            NLM_F_CREATE,
        ) {
            Err(e) if e.raw_os_error() == Some(libc_eexist()) => Ok(()),
            other => other,
        }
    }

    /// A relay's interface: MTU, up, the link-local address, and the Teredo
    /// prefix routed to it (`PREFIX::/32 dev IFACE`).
    pub fn relay_up(&mut self, ifindex: u32, prefix: u32, mtu: u16) -> io::Result<()> {
        self.set_link(ifindex, true, Some(u32::from(mtu)))?;
        self.add_address(
            ifindex,
            (crate::addr::LINK_LOCAL_RESTRICTED, LINK_LOCAL_PREFIX_LEN),
        )?;
        let dest = Ipv6Addr::from(u128::from(prefix) << 96);
        match self.ack(
            RouteNetlinkMessage::NewRoute(route(
                ifindex,
                dest,
                TEREDO_PREFIX_LEN,
                RELAY_ROUTE_METRIC,
            )),
            NLM_F_CREATE | NLM_F_REPLACE,
        ) {
            Err(e) if e.raw_os_error() == Some(libc_eexist()) => Ok(()),
            other => other,
        }
    }

    pub fn down(&mut self, ifindex: u32) -> io::Result<()> {
        for found in self.addresses(ifindex)? {
            self.del_address(ifindex, found)?;
        }
        match self.ack(RouteNetlinkMessage::DelRoute(default_route(ifindex)), 0) {
            Err(e) if e.raw_os_error() == Some(libc_esrch()) => {}
            other => other?,
        }
        self.set_link(ifindex, false, None)
    }

    /// A socket for queries ([`Netlink::route_to`]) that never waits long
    /// for the kernel. Opening and querying need no privilege.
    pub fn open_for_queries() -> io::Result<Self> {
        let nl = Self::open()?;
        set_timeout(nl.socket.as_raw_fd(), QUERY_TIMEOUT)?;
        Ok(nl)
    }

    /// The path the kernel takes towards `dst` (`ip route get DST`), with
    /// the outgoing interface's state; `None` when there is no route
    /// (unreachable network or host).
    pub fn route_to(&mut self, dst: Ipv4Addr) -> io::Result<Option<Path>> {
        let mut q = RouteMessage::default();
        q.header.address_family = AddressFamily::Inet;
        q.header.destination_prefix_length = 32;
        q.attributes
            .push(RouteAttribute::Destination(RouteAddress::Inet(dst)));
        let reply = match self.query(RouteNetlinkMessage::GetRoute(q)) {
            Ok(r) => r,
            Err(e)
                if matches!(
                    nix::errno::Errno::from_raw(e.raw_os_error().unwrap_or(0)),
                    nix::errno::Errno::ENETUNREACH
                        | nix::errno::Errno::EHOSTUNREACH
                        | nix::errno::Errno::EINVAL
                        | nix::errno::Errno::EACCES
                        | nix::errno::Errno::EPERM
                ) =>
            {
                // EINVAL: a local source that cannot reach it; EACCES and
                // EPERM: a prohibit or blackhole route. No way out either.
                return Ok(None);
            }
            Err(e) => return Err(e),
        };
        let Some(RouteNetlinkMessage::NewRoute(r)) = reply else {
            return Ok(None);
        };
        if r.header.kind != RouteType::Unicast {
            return Ok(None);
        }
        let mut path = Path {
            oif: 0,
            gateway: None,
            src: None,
            running: false,
            name: [0; IFNAMSIZ],
        };
        for a in &r.attributes {
            match a {
                RouteAttribute::Oif(i) => path.oif = *i,
                RouteAttribute::Gateway(RouteAddress::Inet(g)) => path.gateway = Some(*g),
                RouteAttribute::PrefSource(RouteAddress::Inet(s)) if !s.is_unspecified() => {
                    path.src = Some(*s)
                }
                _ => {}
            }
        }
        if path.oif == 0 {
            return Ok(None);
        }
        if let Some((up, name)) = self.link_state(path.oif)? {
            path.running = up;
            path.name = name;
        }
        Ok(Some(path))
    }

    /// Whether interface `ifindex` is up with a carrier (`None`: no such
    /// interface).
    pub fn link_running(&mut self, ifindex: u32) -> io::Result<Option<bool>> {
        Ok(self.link_state(ifindex)?.map(|(up, _)| up))
    }

    /// Whether interface `ifindex` is up with a carrier, and its name
    /// (`None`: no such interface).
    fn link_state(&mut self, ifindex: u32) -> io::Result<Option<(bool, [u8; IFNAMSIZ])>> {
        let mut q = LinkMessage::default();
        q.header.index = ifindex;
        match self.query(RouteNetlinkMessage::GetLink(q)) {
            Ok(Some(RouteNetlinkMessage::NewLink(l))) => {
                let mut name = [0u8; IFNAMSIZ];
                for a in &l.attributes {
                    if let LinkAttribute::IfName(n) = a {
                        let b = n.as_bytes();
                        let len = b.len().min(IFNAMSIZ - 1);
                        name[..len].copy_from_slice(&b[..len]);
                    }
                }
                Ok(Some((running(l.header.flags), name)))
            }
            Ok(_) => Ok(None),
            Err(e) if e.raw_os_error() == Some(nix::errno::Errno::ENODEV as i32) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Removes interface `ifindex` if it still has the name `name` (a TUN
    /// device goes with it even if it was made persistent). `Ok(false)`:
    /// no such interface any more (its device was closed, or it was never
    /// persistent), or the index now names another one, left alone.
    pub fn delete_link(&mut self, ifindex: u32, name: &str) -> io::Result<bool> {
        let mut q = LinkMessage::default();
        q.header.index = ifindex;
        let found = match self.query(RouteNetlinkMessage::GetLink(q)) {
            Ok(Some(RouteNetlinkMessage::NewLink(l))) => l,
            Ok(_) => return Ok(false),
            Err(e) if e.raw_os_error() == Some(nix::errno::Errno::ENODEV as i32) => {
                return Ok(false)
            }
            Err(e) => return Err(e),
        };
        let same = found
            .attributes
            .iter()
            .any(|a| matches!(a, LinkAttribute::IfName(n) if n == name));
        if !same {
            return Ok(false);
        }
        let mut msg = LinkMessage::default();
        msg.header.index = ifindex;
        match self.ack(RouteNetlinkMessage::DelLink(msg), 0) {
            Ok(()) => Ok(true),
            Err(e) if e.raw_os_error() == Some(nix::errno::Errno::ENODEV as i32) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Whether any interface but the loopback and `ignore` has an IPv4
    /// address.
    pub fn has_ipv4_address(&mut self, ignore: u32) -> io::Result<bool> {
        let mut q = AddressMessage::default();
        q.header.family = AddressFamily::Inet;
        for msg in self.dump(RouteNetlinkMessage::GetAddress(q))? {
            let RouteNetlinkMessage::NewAddress(a) = msg else {
                continue;
            };
            if a.header.family != AddressFamily::Inet || a.header.index == ignore {
                continue;
            }
            let found = a.attributes.iter().any(|attr| {
                matches!(attr, AddressAttribute::Local(IpAddr::V4(ip))
                    | AddressAttribute::Address(IpAddr::V4(ip)) if !ip.is_loopback())
            });
            if found {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Sends a request (not a dump) and returns the kernel's answer: a
    /// message, or `None` for a bare acknowledgement.
    fn query(&mut self, msg: RouteNetlinkMessage) -> io::Result<Option<RouteNetlinkMessage>> {
        let seq = self.send(msg, 0)?;
        for _ in 0..MAX_DATAGRAMS {
            for reply in self.receive(seq)? {
                match reply.payload {
                    NetlinkPayload::InnerMessage(m) => return Ok(Some(m)),
                    NetlinkPayload::Error(e) => {
                        return match e.code {
                            None => Ok(None),
                            Some(code) => Err(io::Error::from_raw_os_error(-code.get())),
                        }
                    }
                    _ => {}
                }
            }
        }
        Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "no answer from the kernel",
        ))
    }

    fn set_link(&mut self, ifindex: u32, up: bool, mtu: Option<u32>) -> io::Result<()> {
        let mut msg = LinkMessage::default();
        msg.header.index = ifindex;
        msg.header.flags = if up {
            LinkFlags::Up
        } else {
            LinkFlags::empty()
        };
        msg.header.change_mask = LinkFlags::Up;
        msg.attributes.extend(mtu.map(LinkAttribute::Mtu));
        self.ack(RouteNetlinkMessage::SetLink(msg), 0)
    }

    /// The IPv6 addresses on `ifindex`, with their prefix lengths.
    fn addresses(&mut self, ifindex: u32) -> io::Result<Vec<(Ipv6Addr, u8)>> {
        let mut query = AddressMessage::default();
        query.header.family = AddressFamily::Inet6;
        query.header.index = ifindex;
        let mut found = Vec::new();
        for msg in self.dump(RouteNetlinkMessage::GetAddress(query))? {
            let RouteNetlinkMessage::NewAddress(a) = msg else {
                continue;
            };
            // Older kernels ignore the index in a dump request: filter here.
            if a.header.index != ifindex || a.header.family != AddressFamily::Inet6 {
                continue;
            }
            for attr in &a.attributes {
                if let AddressAttribute::Address(IpAddr::V6(ip)) = attr {
                    found.push((*ip, a.header.prefix_len));
                }
            }
        }
        Ok(found)
    }

    fn add_address(&mut self, ifindex: u32, addr: (Ipv6Addr, u8)) -> io::Result<()> {
        let mut msg = address_message(ifindex, addr);
        // A Teredo address is unique by construction; the link has no
        // neighbours to run duplicate address detection with.
        msg.header.flags = AddressHeaderFlags::Nodad;
        msg.attributes
            .push(AddressAttribute::Flags(AddressFlags::Nodad));
        self.ack(
            RouteNetlinkMessage::NewAddress(msg),
            NLM_F_CREATE | NLM_F_REPLACE,
        )
    }

    fn del_address(&mut self, ifindex: u32, addr: (Ipv6Addr, u8)) -> io::Result<()> {
        let msg = address_message(ifindex, addr);
        match self.ack(RouteNetlinkMessage::DelAddress(msg), 0) {
            // Gone already (e.g. with its link-local parent): fine.
            Err(e) if e.raw_os_error() == Some(libc_eaddrnotavail()) => Ok(()),
            other => other,
        }
    }

    fn send(&mut self, msg: RouteNetlinkMessage, flags: u16) -> io::Result<u32> {
        self.seq = self.seq.wrapping_add(1);
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | flags;
        header.sequence_number = self.seq;
        let mut packet = NetlinkMessage::new(header, NetlinkPayload::from(msg));
        packet.finalize();
        let mut buf = vec![0; packet.buffer_len()];
        packet.serialize(&mut buf);
        self.socket.send(&buf, 0)?;
        Ok(self.seq)
    }

    /// Receives one datagram and decodes the messages that answer `seq`.
    fn receive(&mut self, seq: u32) -> io::Result<Vec<NetlinkMessage<RouteNetlinkMessage>>> {
        let mut buf = vec![0u8; RECV_BUF];
        let size = self.socket.recv(&mut &mut buf[..], 0)?;
        let mut data = buf.get(..size).unwrap_or_default();
        let mut out = Vec::new();
        while !data.is_empty() {
            let msg = NetlinkMessage::<RouteNetlinkMessage>::deserialize(data)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
            let len = usize::try_from(msg.header.length).unwrap_or(usize::MAX);
            // Netlink messages are 4-byte aligned within a datagram.
            let step = len.checked_add(3).map(|l| l & !3).unwrap_or(usize::MAX);
            if len == 0 {
                break;
            }
            if msg.header.sequence_number == seq {
                out.push(msg);
            }
            data = data.get(step..).unwrap_or_default();
        }
        Ok(out)
    }

    /// Sends a request with NLM_F_ACK and waits for the kernel's verdict.
    fn ack(&mut self, msg: RouteNetlinkMessage, flags: u16) -> io::Result<()> {
        let seq = self.send(msg, NLM_F_ACK | flags)?;
        loop {
            for reply in self.receive(seq)? {
                if let NetlinkPayload::Error(e) = reply.payload {
                    return match e.code {
                        None => Ok(()),
                        Some(code) => Err(io::Error::from_raw_os_error(-code.get())),
                    };
                }
            }
        }
    }

    /// Sends a dump request and collects the answers up to NLMSG_DONE.
    fn dump(&mut self, msg: RouteNetlinkMessage) -> io::Result<Vec<RouteNetlinkMessage>> {
        let seq = self.send(msg, NLM_F_DUMP)?;
        let mut out = Vec::new();
        loop {
            for reply in self.receive(seq)? {
                match reply.payload {
                    NetlinkPayload::InnerMessage(m) => out.push(m),
                    NetlinkPayload::Done(_) => return Ok(out),
                    NetlinkPayload::Error(e) => {
                        let code = e.code.map_or(0, |c| -c.get());
                        return Err(io::Error::from_raw_os_error(code));
                    }
                    _ => {}
                }
            }
        }
    }
}

/// Whether link flags say up with a carrier.
fn running(flags: LinkFlags) -> bool {
    flags.contains(LinkFlags::Up) && flags.contains(LinkFlags::Running)
}

/// A receive timeout on a socket.
fn set_timeout(fd: i32, d: Duration) -> io::Result<()> {
    let tv = nix::sys::time::TimeVal::new(
        d.as_secs() as nix::libc::time_t,
        d.subsec_micros() as nix::libc::suseconds_t,
    );
    // SAFETY: a valid descriptor and a timeval that lives through the call.
    let r = unsafe {
        nix::libc::setsockopt(
            fd,
            nix::libc::SOL_SOCKET,
            nix::libc::SO_RCVTIMEO,
            (&tv as *const nix::sys::time::TimeVal).cast(),
            std::mem::size_of::<nix::sys::time::TimeVal>() as nix::libc::socklen_t,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The kernel's announcements of link, IPv4 address and IPv4 route
/// changes (rtnetlink multicast groups, which any user may join). The
/// socket never blocks; [`Monitor::drain`] reads what is there.
pub struct Monitor {
    socket: Socket,
    buf: Vec<u8>,
}

impl Monitor {
    pub fn open() -> io::Result<Self> {
        let mut socket = Socket::new(NETLINK_ROUTE)?;
        socket.bind(&SocketAddr::new(
            0,
            RTMGRP_LINK | RTMGRP_IPV4_IFADDR | RTMGRP_IPV4_ROUTE,
        ))?;
        socket.set_non_blocking(true)?;
        // Room for a burst (a link going down takes its routes with it);
        // the kernel caps what an unprivileged process may ask.
        let _ = socket.set_rx_buf_sz(1usize << 20);
        Ok(Monitor {
            socket,
            buf: vec![0u8; RECV_BUF],
        })
    }

    /// Reads every announcement waiting (at most a few hundred datagrams)
    /// and sums up what they said, leaving out what concerns interface
    /// `ignore` (our own tunnel). Announcements lost to a full socket
    /// buffer count as a change. An error means the socket is no use any
    /// more (what was read before it is lost).
    pub fn drain(&mut self, ignore: u32) -> io::Result<Changes> {
        let mut c = Changes::default();
        for _ in 0..512 {
            match self.socket.recv_from(&mut &mut self.buf[..], 0) {
                Ok((n, from)) => {
                    // Only the kernel speaks on these groups; anything
                    // else (another process's unicast) is not believed.
                    if from.port_number() != 0 {
                        continue;
                    }
                    classify(self.buf.get(..n).unwrap_or_default(), ignore, &mut c);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.raw_os_error() == Some(nix::errno::Errno::ENOBUFS as i32) => {
                    // Overrun: some were lost, so assume the worst.
                    c.any = true;
                }
                Err(e) => return Err(e),
            }
        }
        Ok(c)
    }
}

impl AsFd for Monitor {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.socket.as_fd()
    }
}

/// Sums up the announcements of one datagram into `c` (see
/// [`Monitor::drain`]). Whatever the bytes, it neither panics nor reads
/// past them.
pub fn classify(mut data: &[u8], ignore: u32, c: &mut Changes) {
    while data.len() >= 16 {
        let len = u32::from_ne_bytes([data[0], data[1], data[2], data[3]]) as usize;
        if len < 16 || len > data.len() {
            return;
        }
        let one = &data[..len];
        match NetlinkMessage::<RouteNetlinkMessage>::deserialize(one) {
            Ok(msg) => {
                if let NetlinkPayload::InnerMessage(m) = msg.payload {
                    note(&m, ignore, c);
                }
            }
            // A message this library cannot read: it may matter.
            Err(_) => c.any = true,
        }
        let step = (len + 3) & !3;
        data = data.get(step..).unwrap_or_default();
    }
}

fn note(m: &RouteNetlinkMessage, ignore: u32, c: &mut Changes) {
    match m {
        RouteNetlinkMessage::NewLink(l) | RouteNetlinkMessage::DelLink(l) => {
            if l.header.index == ignore {
                return;
            }
            let up = matches!(m, RouteNetlinkMessage::NewLink(_)) && running(l.header.flags);
            c.links.push((l.header.index, up));
            c.any = true;
        }
        RouteNetlinkMessage::NewAddress(a) | RouteNetlinkMessage::DelAddress(a) => {
            if a.header.index == ignore || a.header.family != AddressFamily::Inet {
                return;
            }
            c.any = true;
        }
        RouteNetlinkMessage::NewRoute(r) | RouteNetlinkMessage::DelRoute(r) => {
            if r.header.address_family != AddressFamily::Inet
                || r.header.flags.contains(RouteFlags::Cloned)
            {
                return;
            }
            let oif = r.attributes.iter().find_map(|a| match a {
                RouteAttribute::Oif(i) => Some(*i),
                _ => None,
            });
            if oif.is_some() && oif == Some(ignore) {
                return;
            }
            c.any = true;
        }
        _ => {}
    }
}

fn address_message(ifindex: u32, (ip, prefix_len): (Ipv6Addr, u8)) -> AddressMessage {
    let mut msg = AddressMessage::default();
    msg.header.family = AddressFamily::Inet6;
    msg.header.prefix_len = prefix_len;
    msg.header.index = ifindex;
    msg.header.scope = if ip.segments()[0] & 0xffc0 == 0xfe80 {
        AddressScope::Link
    } else {
        AddressScope::Universe
    };
    msg.attributes.push(AddressAttribute::Local(IpAddr::V6(ip)));
    msg.attributes
        .push(AddressAttribute::Address(IpAddr::V6(ip)));
    msg
}

/// `::/0 dev IFINDEX metric 1029` in the main table.
fn default_route(ifindex: u32) -> RouteMessage {
    route(ifindex, Ipv6Addr::UNSPECIFIED, 0, DEFAULT_ROUTE_METRIC)
}

/// `DEST/LEN dev IFINDEX metric METRIC` in the main table.
fn route(ifindex: u32, dest: Ipv6Addr, len: u8, metric: u32) -> RouteMessage {
    let mut msg = RouteMessage::default();
    msg.header.address_family = AddressFamily::Inet6;
    msg.header.destination_prefix_length = len;
    msg.header.table = RouteHeader::RT_TABLE_MAIN;
    msg.header.protocol = RouteProtocol::Static;
    msg.header.scope = RouteScope::Universe;
    msg.header.kind = RouteType::Unicast;
    msg.attributes = vec![
        RouteAttribute::Destination(RouteAddress::Inet6(dest)),
        RouteAttribute::Oif(ifindex),
        RouteAttribute::Priority(metric),
    ];
    msg
}

fn libc_eexist() -> i32 {
    nix::errno::Errno::EEXIST as i32
}

fn libc_esrch() -> i32 {
    nix::errno::Errno::ESRCH as i32
}

fn libc_eaddrnotavail() -> i32 {
    nix::errno::Errno::EADDRNOTAVAIL as i32
}

#[cfg(test)]
mod tests;
