//! One network namespace of a lab world, and what tests ask of it.

use std::net::{IpAddr, Ipv6Addr};
use std::time::Duration;

use crate::cmd::{self, CmdOutput, CMD_TIMEOUT};

/// A network namespace created by a [`crate::World`] (which deletes it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Netns {
    name: String,
}

impl Netns {
    pub(crate) fn new(name: String) -> Self {
        Netns { name }
    }

    /// The name given to `ip netns`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs `argv` inside the namespace, killed after `timeout`.
    pub fn exec<S: AsRef<str>>(&self, argv: &[S], timeout: Duration) -> CmdOutput {
        let mut full: Vec<String> = vec!["ip".into(), "netns".into(), "exec".into()];
        full.push(self.name.clone());
        full.extend(argv.iter().map(|s| s.as_ref().to_string()));
        cmd::run_with_timeout(&full, timeout)
    }

    /// Runs `argv` inside the namespace with the default bound;
    /// `Ok(stdout)` on success, else a one-line error.
    pub fn run<S: AsRef<str>>(&self, argv: &[S]) -> Result<String, String> {
        self.exec(argv, CMD_TIMEOUT).ok()
    }

    /// Runs `ip ARGS` inside the namespace (`ip -n NAME ARGS`).
    pub fn ip(&self, args: &str) -> Result<String, String> {
        let mut full = vec!["ip", "-n", &self.name];
        full.extend(args.split_whitespace());
        cmd::host(&full)
    }

    /// Sets sysctl `key=value` inside the namespace.
    pub fn sysctl(&self, key: &str, value: &str) -> Result<(), String> {
        self.run(&["sysctl", "-qw", &format!("{key}={value}")])
            .map(|_| ())
    }

    /// Applies an nftables script (commands separated by `;` or newlines).
    pub fn nft(&self, script: &str) -> Result<(), String> {
        self.run(&["nft", script]).map(|_| ())
    }

    /// The IPv6 addresses on `iface` (none when it does not exist).
    pub fn ipv6_addrs(&self, iface: &str) -> Vec<Ipv6Addr> {
        let Ok(out) = self.ip(&format!("-6 -o addr show dev {iface}")) else {
            return Vec::new();
        };
        parse_addrs(&out)
            .into_iter()
            .filter_map(|a| match a {
                IpAddr::V6(v6) => Some(v6),
                IpAddr::V4(_) => None,
            })
            .collect()
    }

    /// Whether the namespace has a network interface called `iface`.
    pub fn has_iface(&self, iface: &str) -> bool {
        self.ip(&format!("-o link show dev {iface}")).is_ok()
    }

    /// The routes of `ip -6 route show ARGS`, one a line.
    pub fn routes6(&self, args: &str) -> Vec<String> {
        self.ip(&format!("-6 route show {args}"))
            .map(|s| s.lines().map(str::to_string).collect())
            .unwrap_or_default()
    }

    /// Whether some socket in the namespace listens on UDP `port`.
    pub fn udp_listening(&self, port: u16) -> bool {
        let Ok(out) = self.run(&["ss", "-H", "-u", "-l", "-n"]) else {
            return false;
        };
        out.lines().any(|l| {
            l.split_whitespace()
                .filter_map(|f| f.rsplit_once(':'))
                .any(|(_, p)| p == port.to_string())
        })
    }
}

/// The `inet`/`inet6` addresses in `ip -o addr` output.
fn parse_addrs(out: &str) -> Vec<IpAddr> {
    let mut addrs = Vec::new();
    for line in out.lines() {
        let mut words = line.split_whitespace();
        while let Some(w) = words.next() {
            if w == "inet" || w == "inet6" {
                let a = words.next().unwrap_or("");
                let a = a.split('/').next().unwrap_or("");
                if let Ok(ip) = a.parse() {
                    addrs.push(ip);
                }
            }
        }
    }
    addrs
}

/// Whether `a` lies in the Teredo prefix 2001:0::/32 (RFC 4380 section 2.6).
pub fn is_teredo(a: &Ipv6Addr) -> bool {
    let s = a.segments();
    s[0] == 0x2001 && s[1] == 0
}

/// The Teredo address (2001:0::/32) on `iface` in `ns`, if it has one.
pub fn teredo_addr_of(ns: &Netns, iface: &str) -> Option<Ipv6Addr> {
    ns.ipv6_addrs(iface).into_iter().find(is_teredo)
}

/// Pings `addr` from `from` with `count` echoes 200 ms apart; true when
/// `count` replies arrive within `timeout` (lost echoes are sent again
/// until then, as `ping -c N -w T` does).
pub fn ping6(from: &Netns, addr: Ipv6Addr, count: u32, timeout: Duration) -> bool {
    ping6_stats(from, addr, count, timeout).1 >= count.max(1)
}

/// Like [`ping6`], but returns (echoes sent, replies received).
pub fn ping6_stats(from: &Netns, addr: Ipv6Addr, count: u32, timeout: Duration) -> (u32, u32) {
    let secs = timeout.as_secs().max(1).to_string();
    let out = from.exec(
        &[
            "ping",
            "-6",
            "-n",
            "-q",
            "-i",
            "0.2",
            "-c",
            &count.max(1).to_string(),
            "-w",
            &secs,
            &addr.to_string(),
        ],
        timeout + Duration::from_secs(3),
    );
    parse_ping_stats(&out.stdout)
}

/// Reads "N packets transmitted, M received" from ping's summary.
fn parse_ping_stats(out: &str) -> (u32, u32) {
    for line in out.lines() {
        if let Some((sent, rest)) = line.split_once(" packets transmitted, ") {
            let sent = sent.trim().parse().unwrap_or(0);
            let recv = rest
                .split_whitespace()
                .next()
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            return (sent, recv);
        }
    }
    (0, 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ip_addr_output() {
        let out = "4: teredo    inet6 2001:0:c612:101:202b:72a8:39ed:fcfe/32 scope global \\       valid_lft forever preferred_lft forever\n\
                   4: teredo    inet6 fe80::ffff:ffff:ffff/64 scope link \\       valid_lft forever preferred_lft forever\n";
        let addrs = parse_addrs(out);
        assert_eq!(addrs.len(), 2);
        let teredo: Vec<_> = addrs
            .iter()
            .filter_map(|a| match a {
                IpAddr::V6(v) if is_teredo(v) => Some(*v),
                _ => None,
            })
            .collect();
        assert_eq!(
            teredo,
            vec!["2001:0:c612:101:202b:72a8:39ed:fcfe"
                .parse::<Ipv6Addr>()
                .unwrap()]
        );
    }

    #[test]
    fn parses_ping_summary() {
        let out = "--- x ping statistics ---\n3 packets transmitted, 2 received, 33% packet loss, time 404ms\n";
        assert_eq!(parse_ping_stats(out), (3, 2));
        assert_eq!(parse_ping_stats(""), (0, 0));
    }
}
