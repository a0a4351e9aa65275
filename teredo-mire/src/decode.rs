//! `teredo-mire decode ADDRESS`: what a Teredo address says (RFC 4380
//! section 4, flags as updated by RFC 5991 section 3), one `key: value`
//! line each.

use libteredo::addr::{is_global_unicast_v4, TeredoAddr, FLAGS_RANDOM_MASK, FLAG_CONE};
use std::net::Ipv6Addr;

/// RFC 5991 names the bits of the flags field `C R A A A A U G A A A A A A A A`.
const FLAG_R: u16 = 0x4000;
const FLAG_U: u16 = 0x0200;
const FLAG_G: u16 = 0x0100;

pub fn run(text: &str) -> Result<(), String> {
    print!("{}", describe(text)?);
    Ok(())
}

/// The address of `text`, which may carry a prefix length as `ip addr`
/// prints it (`2001:0:...:fdd2/32`): a length from 0 to 128 is accepted
/// and ignored, since the address alone says what it says.
fn address(text: &str) -> Result<Ipv6Addr, String> {
    let text = text.trim();
    let (addr, length) = match text.split_once('/') {
        Some((addr, length)) => (addr, Some(length)),
        None => (text, None),
    };
    let addr: Ipv6Addr = addr
        .parse()
        .map_err(|_| format!("{text:?} is not an IPv6 address"))?;
    if let Some(length) = length {
        // Digits only: u8's parser would take "+32".
        let valid = !length.is_empty()
            && length.len() <= 3
            && length.bytes().all(|b| b.is_ascii_digit())
            && length.parse::<u8>().is_ok_and(|n| n <= 128);
        if !valid {
            return Err(format!(
                "{text:?}: invalid prefix length {length:?} (an IPv6 prefix length is a number from 0 to 128)"
            ));
        }
    }
    Ok(addr)
}

/// The report for an address, or why there is none.
pub fn describe(text: &str) -> Result<String, String> {
    let addr = address(text)?;
    let t = TeredoAddr::parse(&addr)
        .ok_or_else(|| format!("{addr} is not a Teredo address: it is outside 2001::/32"))?;

    let mut names = Vec::new();
    if t.flags & FLAG_CONE != 0 {
        names.push("cone");
    }
    for (bit, name) in [(FLAG_R, "R"), (FLAG_U, "U"), (FLAG_G, "G")] {
        if t.flags & bit != 0 {
            names.push(name);
        }
    }
    if t.flags & FLAGS_RANDOM_MASK != 0 {
        names.push("random");
    }
    let flag_names = if names.is_empty() {
        "none".to_string()
    } else {
        names.join(", ")
    };

    let mut rfc4380 = Vec::new();
    if !is_global_unicast_v4(t.server) {
        rfc4380.push(format!("server {} is not global unicast", t.server));
    }
    if !is_global_unicast_v4(t.mapped_addr) {
        rfc4380.push(format!(
            "mapped address {} is not global unicast",
            t.mapped_addr
        ));
    }
    let rfc5991: Vec<String> = [(FLAG_R, "R"), (FLAG_U, "U"), (FLAG_G, "G")]
        .iter()
        .filter(|(bit, _)| t.flags & bit != 0)
        .map(|(_, name)| format!("the {name} bit is set"))
        .collect();
    let verdict = |problems: &[String]| {
        if problems.is_empty() {
            "valid".to_string()
        } else {
            format!("invalid ({})", problems.join(", "))
        }
    };

    let yes_no = |b: bool| if b { "yes" } else { "no" };
    Ok(format!(
        "address: {addr}\n\
         server: {server}\n\
         flags: {flags:#06x} ({flag_names})\n\
         cone: {cone}\n\
         random bits: {random:#06x}\n\
         reserved bits: R={r} U={u} G={g}\n\
         mapped port: {port}\n\
         mapped address: {mapped}\n\
         rfc4380: {v4380}\n\
         rfc5991: {v5991}\n",
        server = t.server,
        flags = t.flags,
        cone = yes_no(t.is_cone()),
        random = t.flags & FLAGS_RANDOM_MASK,
        r = u8::from(t.flags & FLAG_R != 0),
        u = u8::from(t.flags & FLAG_U != 0),
        g = u8::from(t.flags & FLAG_G != 0),
        port = t.mapped_port,
        mapped = t.mapped_addr,
        v4380 = verdict(&rfc4380),
        v5991 = verdict(&rfc5991),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc4380_example() {
        let d = describe("2001:0:4136:e378:8000:63bf:3fff:fdd2").unwrap();
        assert_eq!(
            d,
            "address: 2001:0:4136:e378:8000:63bf:3fff:fdd2\n\
             server: 65.54.227.120\n\
             flags: 0x8000 (cone)\n\
             cone: yes\n\
             random bits: 0x0000\n\
             reserved bits: R=0 U=0 G=0\n\
             mapped port: 40000\n\
             mapped address: 192.0.2.45\n\
             rfc4380: valid\n\
             rfc5991: valid\n"
        );
    }

    #[test]
    fn flags_and_validity() {
        // Server 10.0.0.1, flags R|U|G|random, mapped 127.0.0.1:1.
        let t = TeredoAddr {
            prefix: 0x2001_0000,
            server: "10.0.0.1".parse().unwrap(),
            flags: 0x4301,
            mapped_port: 1,
            mapped_addr: "127.0.0.1".parse().unwrap(),
        };
        let d = describe(&t.to_ipv6().to_string()).unwrap();
        assert!(d.contains("flags: 0x4301 (R, U, G, random)\n"), "{d}");
        assert!(d.contains("reserved bits: R=1 U=1 G=1\n"), "{d}");
        assert!(d.contains("random bits: 0x0001\n"), "{d}");
        assert!(d.contains(
            "rfc4380: invalid (server 10.0.0.1 is not global unicast, \
             mapped address 127.0.0.1 is not global unicast)\n"
        ));
        assert!(
            d.contains("rfc5991: invalid (the R bit is set, the U bit is set, the G bit is set)\n")
        );
    }

    #[test]
    fn prefix_lengths_as_ip_addr_prints_them() {
        let bare = describe("2001:0:4136:e378:8000:63bf:3fff:fdd2").unwrap();
        for length in ["0", "32", "64", "128", "032"] {
            assert_eq!(
                describe(&format!("2001:0:4136:e378:8000:63bf:3fff:fdd2/{length}")),
                Ok(bare.clone()),
                "/{length}"
            );
        }
        for (length, shown) in [
            ("129", "\"129\""),
            ("", "\"\""),
            ("-1", "\"-1\""),
            ("+32", "\"+32\""),
            ("32/64", "\"32/64\""),
            ("0128", "\"0128\""),
            ("abc", "\"abc\""),
            ("99999999999999999999", "\"99999999999999999999\""),
        ] {
            let text = format!("2001:0:4136:e378:8000:63bf:3fff:fdd2/{length}");
            assert_eq!(
                describe(&text),
                Err(format!(
                    "{text:?}: invalid prefix length {shown} (an IPv6 prefix length is a number from 0 to 128)"
                ))
            );
        }
        // The address is still checked first.
        assert!(describe("2001:0:4136:e378:8000:63bf:3fff:zzzz/32")
            .unwrap_err()
            .contains("not an IPv6 address"));
        assert!(describe("/32").unwrap_err().contains("not an IPv6 address"));
    }

    #[test]
    fn refusals() {
        assert!(describe("2001:db8::1")
            .unwrap_err()
            .contains("not a Teredo"));
        assert!(describe("nonsense").unwrap_err().contains("not an IPv6"));
        assert!(describe("").is_err());
    }
}
