//! The status page served on `/run/miredo/IFACE.status` (`key: value`
//! lines, read by `teredo-mire status` and the metrics listener) and the
//! one-line status for the service manager, both written from a
//! [`Snapshot`]: a plain struct the daemon fills under its engine lock.
//! Nothing here knows the daemon.

use crate::network::Waiting;
use crate::portmap::MapStatus;
use libteredo::metrics::lines::StatusLines;
use libteredo::privsep::TeredoPrefix;
use libteredo::proto::NatBehaviour;
use libteredo::proto::Stats;
use libteredo::proto::{ClientState, Qualification, ServerCandidate};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::{Duration, Instant, SystemTime};

/// The last move to another server: (from, to, when).
pub type ServerChange = (Ipv4Addr, Ipv4Addr, SystemTime);

/// What the daemon is and does at one moment.
pub struct Snapshot {
    pub interface: String,
    /// `RelayType`, as the configuration names it.
    pub mode: &'static str,
    pub uptime: Duration,
    /// The Teredo service port.
    pub local: SocketAddrV4,
    pub engine: EngineSnapshot,
    pub stats: Stats,
    /// The peer list (libteredo::proto::admission): by class now, and
    /// what left it since the start.
    pub peers_trusted: usize,
    pub peers_held: usize,
    pub peers_evicted: u64,
    pub queued_bytes: usize,
}

/// What only a client or only a relay has.
pub enum EngineSnapshot {
    Client(Box<ClientSnapshot>),
    Relay(RelaySnapshot),
}

pub struct ClientSnapshot {
    pub state: ClientState,
    /// Whether it has a server (none while its name does not resolve).
    pub has_server: bool,
    pub waiting: Option<Waiting>,
    pub server: Ipv4Addr,
    pub server2: Ipv4Addr,
    /// The name configured (ServerAddress), for a name that does not
    /// resolve.
    pub server_name: Option<String>,
    pub qualification: Option<Qualification>,
    pub nat: NatBehaviour,
    /// The port mapping with the home gateway, if the client runs one.
    pub port_mapping: Option<MapStatus>,
    pub port_mapping_in_use: bool,
    /// Every server of the list, in order of preference, with what the
    /// client knows of each.
    pub candidates: Vec<ServerCandidate>,
    /// Whether it is looking for a server (soliciting them all).
    pub hunting: bool,
    pub server_change: Option<ServerChange>,
    pub qualified_after: Option<Duration>,
    pub peers: usize,
}

pub struct RelaySnapshot {
    pub prefix: TeredoPrefix,
    pub mtu: u16,
    pub peers: usize,
}

/// The status page.
pub fn render(s: &Snapshot) -> String {
    let mut l = StatusLines::new();
    l.line("interface", &s.interface);
    l.line("mode", s.mode);
    l.line("uptime", format!("{}s", s.uptime.as_secs()));
    l.line("service-port", s.local);
    match &s.engine {
        EngineSnapshot::Client(c) => client(&mut l, c),
        EngineSnapshot::Relay(r) => {
            l.line("state", "relaying");
            l.line("prefix", r.prefix);
            l.line("mtu", r.mtu);
            l.line("peers", r.peers);
        }
    }
    let stats = &s.stats;
    l.udp(stats);
    l.tun(stats);
    // Admission (libteredo::proto::admission): what the peer list holds by
    // class now, and what happened to new peers since the start.
    l.line("peers-trusted", s.peers_trusted);
    l.line("peers-on-probation", s.peers_held);
    l.line("peers-held", stats.peers_held);
    l.line("peers-admitted-late", stats.peers_admitted_late);
    l.line("peers-evicted", s.peers_evicted);
    l.line("queued-bytes", s.queued_bytes);
    l.line("bubbles-sent", stats.bubbles_sent);
    l.line("bubbles-received", stats.bubbles_received);
    l.line("icmp-errors-sent", stats.icmp_errors);
    l.drops(stats);
    l.line("drop-queue-expired", stats.drops_queue_expired);
    l.finish()
}

/// A client's own lines.
fn client(l: &mut StatusLines, c: &ClientSnapshot) {
    // No server yet (its name does not resolve): waiting.
    if c.has_server {
        l.line("state", c.state);
    } else {
        l.line("state", "waiting");
    }
    if let Some(w) = c.waiting {
        l.line("waiting-for", w.as_str());
    }
    if c.has_server {
        l.line("server", c.server);
        l.line("server2", c.server2);
    } else {
        l.line("server", "none");
        l.line("server2", "none");
    }
    match c.qualification {
        Some(q) => {
            l.line("address", q.addr);
            l.line("mapped-address", q.mapped.ip());
            l.line("mapped-port", q.mapped.port());
            l.line("mtu", q.mtu);
        }
        None => {
            l.line("address", "none");
            l.line("mtu", "1280");
        }
    }
    l.line("nat", c.nat);
    // The port mapping with the home gateway (miredo.8, PORT MAPPING).
    match &c.port_mapping {
        Some(m) => {
            l.line("port-mapping", m.state.as_str());
            if let Some(g) = m.gateway {
                l.line("port-mapping-gateway", g);
            }
            if let (Some(p), Some(e)) = (m.protocol, m.external) {
                l.line("port-mapping-protocol", p);
                l.line("port-mapping-external", e);
                let left = m
                    .expires
                    .map_or(0, |t| t.saturating_duration_since(Instant::now()).as_secs());
                l.line("port-mapping-lifetime-left", format!("{left}s"));
                let used = if c.port_mapping_in_use { "yes" } else { "no" };
                l.line("port-mapping-in-use", used);
            }
            if let Some(why) = &m.why {
                l.line("port-mapping-error", why.replace(char::is_control, " "));
            }
        }
        None => l.line("port-mapping", "off"),
    }
    // Every server of the list, in order of preference.
    l.line("server-candidates", c.candidates.len());
    let now = Instant::now();
    for (i, cand) in c.candidates.iter().enumerate() {
        let in_use = c.has_server && !c.hunting && cand.server == c.server;
        l.line(
            &format!("server-candidate-{}", i + 1),
            candidate_line(cand, in_use, now),
        );
    }
    if let Some((from, to, when)) = c.server_change {
        let ago = when.elapsed().map_or(0, |d| d.as_secs());
        l.line(
            "server-changed",
            format!("{ago}s ago, to {to} ({from}, before it, did not answer)"),
        );
    }
    if let Some(t) = c.qualified_after {
        l.line("qualified-after", format!("{}ms", t.as_millis()));
    }
    l.line("peers", c.peers);
}

/// One server of the list, for a person: its address, whether it is the
/// one in use, whether it answers, its round-trip and when it was last
/// heard, and what was wrong with its answer if it was refused.
pub fn candidate_line(c: &ServerCandidate, in_use: bool, now: Instant) -> String {
    let mut t = c.server.to_string();
    if in_use {
        t.push_str(" (in use)");
    }
    t.push_str(match c.answering {
        None => ": not asked yet",
        Some(true) => ": answering",
        Some(false) => ": not answering",
    });
    if let Some(rtt) = c.rtt {
        t.push_str(&format!(
            ", round-trip {:.1} ms",
            rtt.as_secs_f64() * 1000.0
        ));
    }
    if let Some(h) = c.last_heard {
        t.push_str(&format!(
            ", last heard {} s ago",
            now.saturating_duration_since(h).as_secs()
        ));
    }
    if let Some(p) = &c.problem {
        t.push_str(&format!(
            ", advertisement refused: {}",
            p.replace(char::is_control, " ")
        ));
    }
    t
}

/// The one-line status for the service manager (`STATUS=`, shown by
/// `systemctl status`): what the daemon is doing and, apart, a key that
/// changes with its state only (a change of key is sent at once; counts
/// that move are sent at most every few seconds).
pub fn one_line(s: &Snapshot) -> (String, String) {
    match &s.engine {
        EngineSnapshot::Client(c) => {
            let server = c.server;
            if let Some(q) = c.qualification {
                let key = format!("qualified {} {}", q.addr, c.nat);
                let text = format!(
                    "Qualified: Teredo address {}, NAT {}, server {server}, MTU {}; {} peers",
                    q.addr, c.nat, q.mtu, c.peers
                );
                return (key, text);
            }
            let why = match c.waiting {
                Some(Waiting::NameUnresolved) => Some(Waiting::NameUnresolved),
                Some(w @ (Waiting::NoRoute | Waiting::NoAddress)) => Some(w),
                // No answer counts once a round of solicitations failed.
                Some(Waiting::NoAnswer) if c.state == ClientState::Offline => {
                    Some(Waiting::NoAnswer)
                }
                _ => None,
            };
            match why {
                Some(Waiting::NameUnresolved) => {
                    let name = c.server_name.clone().unwrap_or_default();
                    (
                        "waiting name".into(),
                        format!(
                            "Waiting for the Teredo server: {name}: {}",
                            Waiting::NameUnresolved.as_str()
                        ),
                    )
                }
                Some(w) => (
                    format!("waiting {}", w.as_str()),
                    format!("Waiting for the Teredo server {server}: {}", w.as_str()),
                ),
                None if c.hunting && c.candidates.len() > 1 => (
                    "qualifying".into(),
                    format!(
                        "Qualifying: soliciting {} Teredo servers, in order of preference from {server}",
                        c.candidates.len()
                    ),
                ),
                None => (
                    format!("qualifying {server}"),
                    format!("Qualifying with the Teredo server {server}"),
                ),
            }
        }
        EngineSnapshot::Relay(r) => {
            let stats = &s.stats;
            let text = format!(
                "Relaying for {}: {} peers; {} packets in and {} out over UDP, {} in and {} out over the tunnel, {} dropped",
                r.prefix,
                r.peers,
                stats.udp_rx_packets,
                stats.udp_tx_packets,
                stats.tun_rx_packets,
                stats.tun_tx_packets,
                stats.total_drops()
            );
            ("relaying".into(), text)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv6Addr;

    fn snapshot(engine: EngineSnapshot) -> Snapshot {
        Snapshot {
            interface: "teredo".into(),
            mode: "cone",
            uptime: Duration::from_secs(42),
            local: "192.0.2.1:3544".parse().unwrap(),
            engine,
            stats: Stats {
                udp_rx_packets: 3,
                tun_tx_packets: 2,
                ..Stats::default()
            },
            peers_trusted: 1,
            peers_held: 0,
            peers_evicted: 0,
            queued_bytes: 0,
        }
    }

    fn client(qualified: bool) -> ClientSnapshot {
        ClientSnapshot {
            state: ClientState::Probing,
            has_server: false,
            waiting: Some(Waiting::NameUnresolved),
            server: Ipv4Addr::UNSPECIFIED,
            server2: Ipv4Addr::UNSPECIFIED,
            server_name: Some("teredo.example".into()),
            qualification: qualified.then_some(Qualification {
                addr: Ipv6Addr::new(0x2001, 0, 0x4136, 0xe378, 0x8000, 0x63bf, 0x3fff, 0xfdd2),
                mapped: "192.0.2.45:40000".parse().unwrap(),
                mtu: 1280,
                prefix: 0x2001_0000,
                server: Ipv4Addr::new(65, 54, 227, 120),
            }),
            nat: NatBehaviour::Cone,
            port_mapping: None,
            port_mapping_in_use: false,
            candidates: vec![ServerCandidate {
                server: Ipv4Addr::new(192, 0, 2, 9),
                server2: Ipv4Addr::new(192, 0, 2, 10),
                answering: Some(false),
                rtt: None,
                last_heard: None,
                problem: None,
            }],
            hunting: false,
            server_change: None,
            qualified_after: None,
            peers: 4,
        }
    }

    #[test]
    fn a_relay_says_its_prefix() {
        let s = snapshot(EngineSnapshot::Relay(RelaySnapshot {
            prefix: TeredoPrefix(0x3ffe_831f),
            mtu: 1280,
            peers: 4,
        }));
        let page = render(&s);
        assert!(page.starts_with("interface: teredo\nmode: cone\nuptime: 42s\n"));
        assert!(page.contains("\nstate: relaying\nprefix: 3ffe:831f::/32\nmtu: 1280\npeers: 4\n"));
        assert!(page.contains("\nudp-rx-packets: 3\n") && page.contains("\ntun-tx-packets: 2\n"));
        assert!(page.ends_with("drop-queue-expired: 0\n"), "{page}");
        let (key, text) = one_line(&s);
        assert_eq!(key, "relaying");
        assert!(
            text.starts_with("Relaying for 3ffe:831f::/32: 4 peers; 3 packets in"),
            "{text}"
        );
    }

    #[test]
    fn a_client_waiting_for_its_name_then_qualified() {
        let s = snapshot(EngineSnapshot::Client(Box::new(client(false))));
        let page = render(&s);
        assert!(page.contains(
            "\nstate: waiting\nwaiting-for: server name does not resolve\nserver: none\n"
        ));
        assert!(page.contains("\naddress: none\nmtu: 1280\nnat: cone\nport-mapping: off\nserver-candidates: 1\nserver-candidate-1: 192.0.2.9: not answering\n"), "{page}");
        assert_eq!(
            one_line(&s),
            (
                "waiting name".into(),
                "Waiting for the Teredo server: teredo.example: server name does not resolve"
                    .into()
            )
        );
        let s = snapshot(EngineSnapshot::Client(Box::new(client(true))));
        let (key, text) = one_line(&s);
        assert_eq!(key, "qualified 2001:0:4136:e378:8000:63bf:3fff:fdd2 cone");
        assert!(text.ends_with("MTU 1280; 4 peers"), "{text}");
        assert!(render(&s).contains("\nmapped-address: 192.0.2.45\nmapped-port: 40000\n"));
    }
}
