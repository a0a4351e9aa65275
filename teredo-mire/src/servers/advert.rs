//! What is wrong with a server's router advertisement, as a client would
//! judge it (RFC 4380 5.2.1: exactly one prefix, a /64 Teredo prefix of
//! the server; 5.2.2: the confirmation byte; the MTU option of RFC 4861
//! 4.6.4, Teredo's 1280 by default). Every problem is listed, not only the
//! first: a survey says all it saw.

use libteredo::addr::{is_global_unicast_v4, TEREDO_PREFIX};
use libteredo::wire::icmpv6::{RouterAdvert, MIN_MTU};
use std::net::{Ipv4Addr, Ipv6Addr};

/// Teredo's MTU (RFC 4380 5.2): what a client uses without an MTU option.
pub const TEREDO_MTU: u32 = 1280;
/// The largest MTU an IPv6 interface can take (and miredo-privproc
/// accepts).
pub const MAX_MTU: u32 = 65535;

/// The part of an answer the checks read.
#[derive(Clone, Copy, Debug)]
pub struct Answer<'a> {
    pub ra: &'a RouterAdvert,
    /// The IPv6 destination of the advertisement.
    pub dst: Ipv6Addr,
    /// The source of the solicitation it answers (our link-local address).
    pub solicited_from: Ipv6Addr,
    /// The confirmation byte of its authentication header.
    pub confirmation: u8,
    /// The server's primary address, which its prefix should name.
    pub server: Ipv4Addr,
}

/// The server address a Teredo prefix names (its bits 32 to 63).
pub fn prefix_server(prefix: &Ipv6Addr) -> Ipv4Addr {
    let o = prefix.octets();
    Ipv4Addr::new(o[4], o[5], o[6], o[7])
}

/// The first 32 bits of a prefix, shown as `2001::/32`.
fn prefix32(prefix: &Ipv6Addr) -> String {
    let top = u128::from(*prefix) & !(u128::MAX >> 32);
    format!("{}/32", Ipv6Addr::from(top))
}

/// Every problem of the answer, each one sentence; none for a good one.
pub fn problems(a: &Answer<'_>) -> Vec<String> {
    let mut v = Vec::new();
    let ra = a.ra;
    if a.dst != a.solicited_from {
        v.push(format!(
            "advertisement addressed to {}, not to the solicitation's source {}",
            a.dst, a.solicited_from
        ));
    }
    match ra.prefix_count {
        0 => v.push("no prefix information option".to_string()),
        1 => {}
        n => v.push(format!("{n} prefix information options, not exactly one")),
    }
    if let Some(p) = ra.prefix {
        if p.prefix_len != 64 {
            v.push(format!("prefix length /{}, not /64", p.prefix_len));
        }
        let top = u32::from_be_bytes([
            p.prefix.octets()[0],
            p.prefix.octets()[1],
            p.prefix.octets()[2],
            p.prefix.octets()[3],
        ]);
        if top != TEREDO_PREFIX {
            v.push(format!(
                "prefix in {}, not the Teredo prefix 2001::/32",
                prefix32(&p.prefix)
            ));
        }
        let named = prefix_server(&p.prefix);
        if !is_global_unicast_v4(named) {
            v.push(format!(
                "prefix names {named}, not a global unicast server address"
            ));
        } else if named != a.server {
            v.push(format!(
                "prefix names {named}, not the server's address {}",
                a.server
            ));
        }
    }
    match ra.mtu {
        Some(m) if !(MIN_MTU as u32..=MAX_MTU).contains(&m) => {
            v.push(format!("MTU {m}, outside {MIN_MTU}..{MAX_MTU}"))
        }
        Some(m) if m != TEREDO_MTU => v.push(format!("MTU {m}, not Teredo's {TEREDO_MTU}")),
        _ => {}
    }
    if a.confirmation != 0 {
        v.push(format!(
            "confirmation byte {}, not 0 (no secure qualification was asked)",
            a.confirmation
        ));
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use libteredo::addr::{LINK_LOCAL_CONE, LINK_LOCAL_RESTRICTED};
    use libteredo::proto::advert;

    const SERVER: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 1);

    fn check(ra: &RouterAdvert, confirmation: u8) -> Vec<String> {
        problems(&Answer {
            ra,
            dst: LINK_LOCAL_RESTRICTED,
            solicited_from: LINK_LOCAL_RESTRICTED,
            confirmation,
            server: SERVER,
        })
    }

    #[test]
    fn a_good_advertisement_has_no_problem() {
        // What our server sends, with and without the MTU option.
        assert!(check(&advert(TEREDO_PREFIX, SERVER, Some(1280)), 0).is_empty());
        assert!(check(&advert(TEREDO_PREFIX, SERVER, None), 0).is_empty());
    }

    #[test]
    fn prefix_count_and_length() {
        let mut ra = advert(TEREDO_PREFIX, SERVER, None);
        ra.prefix_count = 2;
        assert_eq!(
            check(&ra, 0),
            ["2 prefix information options, not exactly one"]
        );
        ra.prefix_count = 0;
        ra.prefix = None;
        assert_eq!(check(&ra, 0), ["no prefix information option"]);
        let mut ra = advert(TEREDO_PREFIX, SERVER, None);
        if let Some(p) = ra.prefix.as_mut() {
            p.prefix_len = 48;
        }
        assert_eq!(check(&ra, 0), ["prefix length /48, not /64"]);
    }

    #[test]
    fn foreign_prefix_is_named() {
        let ra = advert(0x3ffe_831f, SERVER, None);
        assert_eq!(
            check(&ra, 0),
            ["prefix in 3ffe:831f::/32, not the Teredo prefix 2001::/32"]
        );
    }

    #[test]
    fn prefix_must_name_the_global_server() {
        let ra = advert(TEREDO_PREFIX, Ipv4Addr::new(10, 0, 0, 1), None);
        assert_eq!(
            check(&ra, 0),
            ["prefix names 10.0.0.1, not a global unicast server address"]
        );
        let ra = advert(TEREDO_PREFIX, Ipv4Addr::new(198, 18, 7, 7), None);
        assert_eq!(
            check(&ra, 0),
            ["prefix names 198.18.7.7, not the server's address 198.18.1.1"]
        );
    }

    #[test]
    fn mtu_range_and_value() {
        for (mtu, want) in [
            (1279, "MTU 1279, outside 1280..65535"),
            (65536, "MTU 65536, outside 1280..65535"),
            (0, "MTU 0, outside 1280..65535"),
            (1400, "MTU 1400, not Teredo's 1280"),
            (65535, "MTU 65535, not Teredo's 1280"),
        ] {
            let ra = advert(TEREDO_PREFIX, SERVER, Some(mtu));
            assert_eq!(check(&ra, 0), [want], "{mtu}");
        }
    }

    #[test]
    fn confirmation_and_destination() {
        let ra = advert(TEREDO_PREFIX, SERVER, None);
        assert_eq!(
            check(&ra, 7),
            ["confirmation byte 7, not 0 (no secure qualification was asked)"]
        );
        let p = problems(&Answer {
            ra: &ra,
            dst: LINK_LOCAL_RESTRICTED,
            solicited_from: LINK_LOCAL_CONE,
            confirmation: 0,
            server: SERVER,
        });
        assert_eq!(
            p,
            [
                "advertisement addressed to fe80::ffff:ffff:ffff, not to the solicitation's \
              source fe80::8000:ffff:ffff:ffff"
            ]
        );
    }

    #[test]
    fn every_problem_is_listed() {
        let mut ra = advert(0x2002_0000, Ipv4Addr::new(192, 168, 1, 1), Some(9000));
        ra.prefix_count = 3;
        if let Some(p) = ra.prefix.as_mut() {
            p.prefix_len = 32;
        }
        let p = check(&ra, 1);
        assert_eq!(p.len(), 6, "{p:?}");
    }
}
