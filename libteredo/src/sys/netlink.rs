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

use std::io;
use std::net::{IpAddr, Ipv6Addr};

use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP,
    NLM_F_REPLACE, NLM_F_REQUEST,
};
use netlink_packet_route::address::{
    AddressAttribute, AddressFlags, AddressHeaderFlags, AddressMessage, AddressScope,
};
use netlink_packet_route::link::{LinkAttribute, LinkFlags, LinkMessage};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType,
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
