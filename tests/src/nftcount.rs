//! Packet counters in a namespace, with nftables: what a daemon sent or
//! received during a flood, counted by the kernel rather than by the
//! daemon itself (so the C and our daemons are measured alike).

use crate::ns::Netns;

/// The table every counter set lives in (one per namespace).
const TABLE: &str = "labcount";

/// A set of named counters in one namespace. Each counter is a rule
/// `<match> counter name <name>` in one of the table's chains.
pub struct Counters {
    ns: Netns,
    names: Vec<String>,
}

/// Where a counting rule sits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hook {
    /// Locally generated packets (what the daemon sends).
    Output,
    /// Packets arriving from an interface, before routing.
    Prerouting,
    /// Packets routed through the namespace (a relay's TUN to its veth).
    Forward,
}

impl Hook {
    fn chain(self) -> &'static str {
        match self {
            Hook::Output => "c_out",
            Hook::Prerouting => "c_pre",
            Hook::Forward => "c_fwd",
        }
    }
}

impl Counters {
    /// Installs `(name, hook, match)` counters in `ns` (replacing any set
    /// installed there before). `match` is nftables syntax, such as
    /// `ip daddr 198.18.1.1 udp dport 3544`.
    pub fn install(ns: &Netns, rules: &[(&str, Hook, &str)]) -> Result<Counters, String> {
        let _ = ns.nft(&format!("delete table inet {TABLE}"));
        ns.nft(&format!(
            "add table inet {TABLE}\n\
             add chain inet {TABLE} c_out {{ type filter hook output priority -300 ; }}\n\
             add chain inet {TABLE} c_pre {{ type filter hook prerouting priority -300 ; }}\n\
             add chain inet {TABLE} c_fwd {{ type filter hook forward priority -300 ; }}\n"
        ))?;
        let mut c = Counters {
            ns: ns.clone(),
            names: Vec::new(),
        };
        c.add(rules)?;
        Ok(c)
    }

    /// Adds `(name, hook, match)` counters to this set, those installed
    /// before counting on (for a match known only later, such as an
    /// address a daemon gets).
    pub fn add(&mut self, rules: &[(&str, Hook, &str)]) -> Result<(), String> {
        let mut script = String::new();
        for (name, hook, m) in rules {
            script += &format!("add counter inet {TABLE} {name}\n");
            script += &format!(
                "add rule inet {TABLE} {} {m} counter name {name}\n",
                hook.chain()
            );
        }
        self.ns.nft(&script)?;
        self.names
            .extend(rules.iter().map(|(n, _, _)| n.to_string()));
        Ok(())
    }

    /// The packet count of counter `name` now (0 when it cannot be read).
    pub fn packets(&self, name: &str) -> u64 {
        let Ok(out) = self
            .ns
            .run(&["nft", "list", "counter", "inet", TABLE, name])
        else {
            return 0;
        };
        parse_packets(&out)
    }

    /// Every counter's packet count, in the order they were installed.
    pub fn all(&self) -> Vec<(String, u64)> {
        self.names
            .iter()
            .map(|n| (n.clone(), self.packets(n)))
            .collect()
    }

    /// Sets every counter back to zero.
    pub fn reset(&self) {
        let _ = self
            .ns
            .run(&["nft", "reset", "counters", "table", "inet", TABLE]);
    }
}

/// Reads `packets N` from `nft list counter` output.
fn parse_packets(out: &str) -> u64 {
    let mut words = out.split_whitespace();
    while let Some(w) = words.next() {
        if w == "packets" {
            return words.next().and_then(|n| n.parse().ok()).unwrap_or(0);
        }
    }
    0
}

/// Rules with owned matches, as the rule sets below build them.
pub type Rules = Vec<(&'static str, Hook, String)>;

/// `rules` as [`Counters::install`] and [`Counters::add`] take them.
pub fn refs(rules: &Rules) -> Vec<(&str, Hook, &str)> {
    rules.iter().map(|(n, h, m)| (*n, *h, m.as_str())).collect()
}

/// A relay (in the world of `prefix`) flooded from the native side:
/// `inbound`, the datagrams for Teredo addresses that reach the relay host;
/// `bubbles_to_server`, what goes to the server at `server`.
pub fn relay_flood_rules(prefix: &str, server: std::net::Ipv4Addr) -> Rules {
    vec![
        (
            "inbound",
            Hook::Prerouting,
            format!("iifname {prefix}r-i ip6 daddr 2001::/32"),
        ),
        (
            "bubbles_to_server",
            Hook::Output,
            format!("ip daddr {server} udp dport 3544"),
        ),
    ]
}

/// The legitimate flow between the native host and the client `addr`
/// behind the NAT at `nat_wan`, hop by hop through the relay host: echo
/// requests in (`legit_in`), datagrams to the client's NAT
/// (`legit_to_nat`), datagrams back (`legit_from_nat`), echo replies out
/// (`legit_out`).
pub fn legit_flow_rules(
    prefix: &str,
    addr: std::net::Ipv6Addr,
    nat_wan: std::net::Ipv4Addr,
) -> Rules {
    vec![
        (
            "legit_in",
            Hook::Prerouting,
            format!("iifname {prefix}r-i ip6 daddr {addr}"),
        ),
        ("legit_to_nat", Hook::Output, format!("ip daddr {nat_wan}")),
        (
            "legit_from_nat",
            Hook::Prerouting,
            format!("ip saddr {nat_wan}"),
        ),
        (
            "legit_out",
            Hook::Forward,
            format!("oifname {prefix}r-i ip6 saddr {addr}"),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_counter_listing() {
        let out =
            "table inet labcount {\n\tcounter udp_out {\n\t\tpackets 1234 bytes 99999\n\t}\n}\n";
        assert_eq!(parse_packets(out), 1234);
        assert_eq!(parse_packets(""), 0);
    }
}
