//! The NAT routers of a lab world, as nftables rulesets.

use std::net::Ipv4Addr;

/// How a NAT router maps and filters its clients' UDP flows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NatKind {
    /// Linux masquerade: one mapping per inside endpoint (the port is kept
    /// when free), inbound packets accepted only from the remote address
    /// and port the flow was opened to (RFC 4380 "port-restricted cone").
    PortRestricted,
    /// Masquerade with `fully-random`: a new random port for every new
    /// remote endpoint, so servers and peers see different mappings.
    Symmetric,
    /// A static mapping: UDP from the client's `client_port` leaves as
    /// `WAN:mapped_port`, and anything reaching `WAN:mapped_port` from any
    /// host goes to the client's `client_port`. The client must bind
    /// `client_port` (`BindPort` in miredo.conf).
    FullCone { client_port: u16, mapped_port: u16 },
}

impl NatKind {
    /// A short name for reports.
    pub fn name(&self) -> &'static str {
        match self {
            NatKind::PortRestricted => "port-restricted",
            NatKind::Symmetric => "symmetric",
            NatKind::FullCone { .. } => "full-cone",
        }
    }
}

/// What a NAT "reboot" does to the mappings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NatReboot {
    /// Forget every flow (`conntrack -F`), keep the rules: masquerade
    /// usually picks the same port again.
    KeepMapping,
    /// Forget every flow and reinstall the rules so that new flows get
    /// another port (a masquerade port range, or the next mapped port of a
    /// full cone).
    NewPort,
    /// Forget every flow and move the WAN side to the next public IPv4
    /// address, as a NAT that gets a new lease from its ISP.
    NewAddress,
}

/// The ruleset of a NAT whose WAN interface is `wan_if` with address
/// `wan`, the client being `client`. `generation` counts the reboots that
/// asked for a new port (0 at first).
pub(crate) fn ruleset(
    kind: NatKind,
    wan_if: &str,
    wan: Ipv4Addr,
    client: Ipv4Addr,
    generation: u16,
) -> String {
    let mut s = String::from(
        "add table ip nat\n\
         add chain ip nat pre { type nat hook prerouting priority -100 ; }\n\
         add chain ip nat post { type nat hook postrouting priority 100 ; }\n",
    );
    // After a reboot asking for a new port, force new mappings into a
    // port range that the previous generation did not use.
    let range = if generation == 0 {
        String::new()
    } else {
        let lo = 20000 + 1000 * (generation % 40);
        format!(" to :{lo}-{}", lo + 999)
    };
    // nft accepts a port range only after a match on a protocol with ports;
    // ICMP then falls through to the plain masquerade below.
    let l4 = if generation == 0 {
        ""
    } else {
        "meta l4proto { tcp, udp } "
    };
    match kind {
        NatKind::PortRestricted => {
            s += &format!("add rule ip nat post oifname {wan_if} {l4}masquerade{range}\n");
            if generation != 0 {
                s += &format!("add rule ip nat post oifname {wan_if} masquerade\n");
            }
        }
        NatKind::Symmetric => {
            s += &format!(
                "add rule ip nat post oifname {wan_if} {l4}masquerade{range} fully-random\n"
            );
            if generation != 0 {
                s += &format!("add rule ip nat post oifname {wan_if} masquerade fully-random\n");
            }
        }
        NatKind::FullCone {
            client_port,
            mapped_port,
        } => {
            let mapped = mapped_port.wrapping_add(generation);
            s += &format!(
                "add rule ip nat pre iifname {wan_if} udp dport {mapped} dnat to {client}:{client_port}\n\
                 add rule ip nat post oifname {wan_if} ip saddr {client} udp sport {client_port} snat to {wan}:{mapped}\n\
                 add rule ip nat post oifname {wan_if} masquerade\n"
            );
        }
    }
    s
}

/// The mapped port a full cone NAT gives after `generation` new-port
/// reboots; `None` for the dynamic kinds.
pub(crate) fn static_mapped_port(kind: NatKind, generation: u16) -> Option<u16> {
    match kind {
        NatKind::FullCone { mapped_port, .. } => Some(mapped_port.wrapping_add(generation)),
        _ => None,
    }
}
