//! Tests of the rtnetlink layer: announcements as the kernel sends them,
//! classified as the client's monitor reads them, and a route lookup.

use super::*;

/// One announcement as the kernel would send it.
fn datagram(msg: RouteNetlinkMessage) -> Vec<u8> {
    let mut packet = NetlinkMessage::new(NetlinkHeader::default(), NetlinkPayload::from(msg));
    packet.finalize();
    let mut buf = vec![0; packet.buffer_len()];
    packet.serialize(&mut buf);
    buf
}

fn link(index: u32, flags: LinkFlags) -> RouteNetlinkMessage {
    let mut l = LinkMessage::default();
    l.header.index = index;
    l.header.flags = flags;
    RouteNetlinkMessage::NewLink(l)
}

fn v4_address(index: u32) -> RouteNetlinkMessage {
    let mut a = AddressMessage::default();
    a.header.family = AddressFamily::Inet;
    a.header.index = index;
    a.header.prefix_len = 24;
    a.attributes
        .push(AddressAttribute::Local(IpAddr::V4(Ipv4Addr::new(
            192, 168, 1, 2,
        ))));
    RouteNetlinkMessage::NewAddress(a)
}

fn v4_default_route(oif: u32) -> RouteNetlinkMessage {
    let mut r = RouteMessage::default();
    r.header.address_family = AddressFamily::Inet;
    r.header.table = RouteHeader::RT_TABLE_MAIN;
    r.header.kind = RouteType::Unicast;
    r.attributes
        .push(RouteAttribute::Gateway(RouteAddress::Inet(Ipv4Addr::new(
            192, 168, 1, 1,
        ))));
    r.attributes.push(RouteAttribute::Oif(oif));
    RouteNetlinkMessage::NewRoute(r)
}

fn changes(msgs: Vec<RouteNetlinkMessage>, ignore: u32) -> Changes {
    let mut bytes = Vec::new();
    for m in msgs {
        bytes.extend(datagram(m));
    }
    let mut c = Changes::default();
    classify(&bytes, ignore, &mut c);
    c
}

#[test]
fn what_can_change_a_path_counts() {
    let c = changes(
        vec![
            link(2, LinkFlags::Up | LinkFlags::Running),
            link(3, LinkFlags::Up),
        ],
        9,
    );
    assert!(c.any);
    assert_eq!(c.links, vec![(2, true), (3, false)]);
    assert!(changes(vec![v4_address(2)], 9).any);
    assert!(changes(vec![v4_default_route(2)], 9).any);
}

#[test]
fn our_own_interface_and_ipv6_do_not() {
    // The tunnel's own link, addresses and routes.
    let c = changes(
        vec![
            link(9, LinkFlags::Up | LinkFlags::Running),
            v4_address(9),
            v4_default_route(9),
        ],
        9,
    );
    assert_eq!(c, Changes::default());
    // IPv6 addresses and routes, on any interface.
    let mut a = AddressMessage::default();
    a.header.family = AddressFamily::Inet6;
    a.header.index = 2;
    let mut r = RouteMessage::default();
    r.header.address_family = AddressFamily::Inet6;
    r.attributes.push(RouteAttribute::Oif(2));
    let c = changes(
        vec![
            RouteNetlinkMessage::NewAddress(a),
            RouteNetlinkMessage::NewRoute(r),
        ],
        9,
    );
    assert_eq!(c, Changes::default());
}

#[test]
fn garbage_neither_panics_nor_reads_past_the_end() {
    let good = datagram(v4_address(2));
    for cut in 0..good.len() {
        let mut c = Changes::default();
        classify(&good[..cut], 9, &mut c);
    }
    let mut state = 0x1234_5678u32;
    for _ in 0..2000 {
        let mut b = good.clone();
        for _ in 0..4 {
            state = state.wrapping_mul(1_103_515_245).wrapping_add(12345);
            let at = (state >> 8) as usize % b.len();
            b[at] ^= (state >> 24) as u8 | 1;
        }
        let mut c = Changes::default();
        classify(&b, 9, &mut c);
    }
    // A length field larger than the datagram: nothing read.
    let mut c = Changes::default();
    classify(
        &[0xff, 0xff, 0, 0, 16, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        9,
        &mut c,
    );
    assert_eq!(c, Changes::default());
}

#[test]
fn the_route_to_loopback_is_found_without_privilege() {
    // Every network namespace has lo; `ip route get 127.0.0.1` goes
    // through it (a local route: not a path to a server, so None is
    // as good an answer as a path on lo).
    let mut nl = Netlink::open_for_queries().expect("rtnetlink socket");
    let r = nl.route_to(Ipv4Addr::LOCALHOST);
    assert!(r.is_ok(), "{r:?}");
    assert!(nl.link_running(1).unwrap().is_some(), "lo is index 1");
    assert_eq!(nl.link_running(0x7fff_fff0).unwrap(), None);
    let (_, name) = nl.link_state(1).unwrap().unwrap();
    assert_eq!(&name[..3], b"lo\0", "index 1's name");
}
