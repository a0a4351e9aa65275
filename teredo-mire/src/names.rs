//! Teredo server names to IPv4 addresses, for `probe` (the first address)
//! and `servers` (every address, a few per name). A server must be a
//! unicast address: solicitations to a group, to "any" or to the broadcast
//! address would reach nobody or everybody.

use libteredo::addr::TEREDO_PORT;
use std::net::{Ipv4Addr, SocketAddr, ToSocketAddrs};

/// `a` if it can be a server's address, else why not.
pub fn unicast(a: Ipv4Addr) -> Result<Ipv4Addr, String> {
    if a.is_unspecified() || a.is_broadcast() || a.is_multicast() {
        return Err(format!("{a} is not a unicast IPv4 address"));
    }
    Ok(a)
}

/// Every IPv4 address of a host name (or the address itself), in the
/// resolver's order, without repeats. Blocks on the system resolver.
pub fn resolve_all(host: &str) -> Result<Vec<Ipv4Addr>, String> {
    if let Ok(a) = host.parse::<Ipv4Addr>() {
        return Ok(vec![a]);
    }
    let mut v: Vec<Ipv4Addr> = Vec::new();
    let found = (host, TEREDO_PORT)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {host}: {e}"))?;
    for a in found {
        if let SocketAddr::V4(a) = a {
            if !v.contains(a.ip()) {
                v.push(*a.ip());
            }
        }
    }
    if v.is_empty() {
        return Err(format!("{host} has no IPv4 address"));
    }
    Ok(v)
}

/// The first IPv4 address of a host name (or the address itself), which
/// must be unicast.
pub fn resolve(host: &str) -> Result<Ipv4Addr, String> {
    let first = resolve_all(host)?
        .first()
        .copied()
        .ok_or_else(|| format!("{host} has no IPv4 address"))?;
    unicast(first)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn servers_must_be_unicast() {
        assert_eq!(resolve("198.18.1.1"), Ok(Ipv4Addr::new(198, 18, 1, 1)));
        for bad in ["0.0.0.0", "255.255.255.255", "224.0.0.253"] {
            assert!(resolve(bad).unwrap_err().contains("not a unicast"), "{bad}");
        }
        assert!(resolve("no-such-host.invalid")
            .unwrap_err()
            .contains("cannot resolve"));
    }

    #[test]
    fn literals_and_localhost() {
        assert_eq!(
            resolve_all("192.0.2.7"),
            Ok(vec![Ipv4Addr::new(192, 0, 2, 7)])
        );
        // /etc/hosts names localhost on every system the tests run on.
        let local = resolve_all("localhost").expect("localhost resolves");
        assert!(local.contains(&Ipv4Addr::LOCALHOST), "{local:?}");
        let mut sorted = local.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), local.len(), "no repeats: {local:?}");
    }
}
