//! `teredo-mire status` for a person: what miredo's status page says that
//! matters, in a dozen lines, in the order Windows' `netsh interface teredo
//! show state` tells it (state and why, server, address, mapped address,
//! NAT, port mapping), then the servers of the list, the traffic in one
//! line, and the peers. Every counter stays on the page itself (`--all`),
//! and in the JSON and Prometheus formats.

use std::fmt::Write as _;

fn get<'a>(s: &'a [(String, String)], key: &str) -> Option<&'a str> {
    s.iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
        .filter(|v| !v.is_empty())
}

fn num(s: &[(String, String)], key: &str) -> u64 {
    get(s, key).and_then(|v| v.parse().ok()).unwrap_or(0)
}

/// A duration in seconds as a person says it.
fn ago(secs: u64) -> String {
    match secs {
        0..=119 => format!("{secs} s"),
        120..=7199 => format!("{} min", secs / 60),
        _ => format!("{} h {} min", secs / 3600, secs / 60 % 60),
    }
}

/// The summary of a miredo status page (parsed `key: value` pairs).
pub fn summary(s: &[(String, String)]) -> String {
    let mut lines: Vec<(&str, String)> = Vec::new();
    let mode = get(s, "mode").unwrap_or("?");
    let iface = get(s, "interface").unwrap_or("?");
    let uptime = get(s, "uptime")
        .and_then(|u| u.trim_end_matches('s').parse::<u64>().ok())
        .map_or(String::new(), |u| format!(", up {}", ago(u)));
    let state = get(s, "state").unwrap_or("unknown");
    let client = state != "relaying";
    let state_line = match state {
        "qualified" => match get(s, "qualified-after") {
            Some(t) => format!("qualified (first qualification after {t})"),
            None => "qualified".to_string(),
        },
        "probing" => {
            let n = num(s, "server-candidates");
            if n > 1 {
                format!("qualifying: soliciting {n} servers")
            } else {
                "qualifying: soliciting the server".to_string()
            }
        }
        "offline" => format!(
            "offline: {}; trying again",
            get(s, "waiting-for").unwrap_or("no server answered")
        ),
        "waiting" => format!(
            "waiting: {}",
            get(s, "waiting-for").unwrap_or("no server yet")
        ),
        other => other.to_string(),
    };
    lines.push(("state", state_line));
    if client {
        match (get(s, "server"), get(s, "server2")) {
            (Some("none") | None, _) => lines.push(("server", "none yet".into())),
            (Some(a), Some(b)) => lines.push(("server", format!("{a} (secondary {b})"))),
            (Some(a), None) => lines.push(("server", a.to_string())),
        }
        lines.push(("address", get(s, "address").unwrap_or("none").to_string()));
        if let (Some(a), Some(p)) = (get(s, "mapped-address"), get(s, "mapped-port")) {
            lines.push(("mapped address", format!("{a}:{p}")));
        }
        let nat = match get(s, "nat") {
            Some("none") => "none (no NAT: the server sees this host's own address)".to_string(),
            Some("unknown") | None if state != "qualified" => "not known yet".to_string(),
            Some("unknown") => {
                "unknown (being tested, or the server's secondary address does not answer)"
                    .to_string()
            }
            Some(n) => n.to_string(),
            None => "unknown".to_string(),
        };
        lines.push(("NAT", nat));
        let pm = match get(s, "port-mapping") {
            None | Some("off") => "off".to_string(),
            Some("mapped") => {
                let ext = get(s, "port-mapping-external").unwrap_or("?");
                let proto = get(s, "port-mapping-protocol").unwrap_or("?");
                let used = match get(s, "port-mapping-in-use") {
                    Some("yes") => "in use",
                    _ => "not in use",
                };
                format!("{ext} by {proto}, {used}")
            }
            Some(other) => match get(s, "port-mapping-error") {
                Some(e) => format!("{other}: {e}"),
                None => other.to_string(),
            },
        };
        lines.push(("port mapping", pm));
        let n = num(s, "server-candidates");
        for i in 1..=n {
            if let Some(c) = get(s, &format!("server-candidate-{i}")) {
                lines.push((if i == 1 { "servers" } else { "" }, c.to_string()));
            }
        }
        if let Some(c) = get(s, "server-changed") {
            lines.push(("server changed", c.to_string()));
        }
    } else {
        lines.push(("prefix", get(s, "prefix").unwrap_or("?").to_string()));
        lines.push(("MTU", get(s, "mtu").unwrap_or("?").to_string()));
    }
    let drops: u64 = s
        .iter()
        .filter(|(k, _)| k.starts_with("drop-"))
        .filter_map(|(_, v)| v.parse::<u64>().ok())
        .sum();
    lines.push((
        "traffic",
        format!(
            "{} datagrams in, {} out; {} packets from the interface, {} to it; {drops} dropped",
            num(s, "udp-rx-packets"),
            num(s, "udp-tx-packets"),
            num(s, "tun-rx-packets"),
            num(s, "tun-tx-packets"),
        ),
    ));
    lines.push(("peers", num(s, "peers").to_string()));
    let width = lines.iter().map(|(k, _)| k.len()).max().unwrap_or(0) + 1;
    let mut out = format!("miredo on {iface} ({mode}){uptime}\n");
    for (k, v) in lines {
        let key = if k.is_empty() {
            String::new()
        } else {
            format!("{k}:")
        };
        let _ = writeln!(out, "  {key:<width$} {v}", width = width);
    }
    out.push_str("  (every counter: teredo-mire status --all)\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(text: &str) -> Vec<(String, String)> {
        libteredo::metrics::parse_status(text)
    }

    const QUALIFIED: &str = "interface: teredo\nmode: client\nuptime: 185s\nservice-port: 0.0.0.0:40000\n\
        state: qualified\nserver: 198.18.1.1\nserver2: 198.18.1.2\n\
        address: 2001:0:c612:101:0:f227:39ed:fefd\nmapped-address: 198.18.3.1\nmapped-port: 40000\n\
        mtu: 1280\nnat: restricted\nport-mapping: off\nserver-candidates: 2\n\
        server-candidate-1: 198.18.9.9: not answering\n\
        server-candidate-2: 198.18.1.1 (in use): answering, round-trip 0.2 ms, last heard 3 s ago\n\
        server-changed: 185s ago, to 198.18.1.1 (198.18.9.9, before it, did not answer)\n\
        qualified-after: 540ms\npeers: 4\nudp-rx-packets: 12\nudp-rx-bytes: 900\nudp-tx-packets: 14\n\
        tun-rx-packets: 3\ntun-tx-packets: 5\ndrop-malformed: 1\ndrop-spoofed: 2\n";

    #[test]
    fn a_qualified_client_in_a_dozen_lines() {
        let out = summary(&pairs(QUALIFIED));
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0], "miredo on teredo (client), up 3 min");
        assert!(lines.len() <= 14, "{out}");
        for want in [
            "state:          qualified (first qualification after 540ms)",
            "server:         198.18.1.1 (secondary 198.18.1.2)",
            "address:        2001:0:c612:101:0:f227:39ed:fefd",
            "mapped address: 198.18.3.1:40000",
            "NAT:            restricted",
            "port mapping:   off",
            "servers:        198.18.9.9: not answering",
            "                198.18.1.1 (in use): answering, round-trip 0.2 ms, last heard 3 s ago",
            "traffic:        12 datagrams in, 14 out; 3 packets from the interface, 5 to it; 3 dropped",
            "peers:          4",
        ] {
            assert!(out.contains(want), "{want:?} not in\n{out}");
        }
        // No counter at zero, no byte count.
        assert!(
            !out.contains("udp-rx-bytes") && !out.contains("drop-"),
            "{out}"
        );
    }

    #[test]
    fn a_waiting_client_and_a_relay() {
        let out = summary(&pairs(
            "interface: teredo\nmode: client\nuptime: 5s\nstate: waiting\n\
             waiting-for: server name does not resolve\nserver: none\nserver2: none\naddress: none\n\
             nat: unknown\nport-mapping: off\nserver-candidates: 0\npeers: 0\n",
        ));
        assert!(
            out.contains("state:        waiting: server name does not resolve"),
            "{out}"
        );
        assert!(out.contains("server:       none yet"), "{out}");
        assert!(out.contains("NAT:          not known yet"), "{out}");
        let out = summary(&pairs(
            "interface: teredo\nmode: cone\nuptime: 7300s\nstate: relaying\nprefix: 2001::/32\nmtu: 1280\npeers: 9\nudp-rx-packets: 1\n",
        ));
        assert!(
            out.starts_with("miredo on teredo (cone), up 2 h 1 min\n"),
            "{out}"
        );
        assert!(
            out.contains("state:   relaying\n") && out.contains("prefix:  2001::/32\n"),
            "{out}"
        );
        assert!(!out.contains("NAT"), "{out}");
    }
}
