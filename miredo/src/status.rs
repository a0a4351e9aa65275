//! The status page served on `/run/miredo/IFACE.status`: `key: value`
//! lines, read by `teredo-mire status`.

use crate::daemon::{Daemon, EngineKind};
use libteredo::proto::{DropReason, PeerClass};
use std::fmt::Write;
use std::time::Instant;

pub fn render(d: &Daemon, engine: &EngineKind) -> String {
    let mut s = String::new();
    let conf = d.conf();
    let mut line = |k: &str, v: String| {
        let _ = writeln!(s, "{k}: {v}");
    };
    line("interface", conf.interface_name.clone());
    line("mode", conf.relay_type.as_str().to_string());
    line("uptime", format!("{}s", d.uptime().as_secs()));
    line("service-port", d.local().to_string());
    let stats = engine.stats().clone();
    match engine {
        EngineKind::Client(c) => {
            // No server yet (its name does not resolve): waiting.
            let state = if c.has_server() {
                c.state().to_string()
            } else {
                "waiting".into()
            };
            line("state", state);
            if let Some(w) = d.waiting_for(engine) {
                line("waiting-for", w.as_str().into());
            }
            let cfg = c.config();
            if c.has_server() {
                line("server", cfg.server.to_string());
                line("server2", cfg.server2.to_string());
            } else {
                line("server", "none".into());
                line("server2", "none".into());
            }
            match c.qualification() {
                Some(q) => {
                    line("address", q.addr.to_string());
                    line("mapped-address", q.mapped.ip().to_string());
                    line("mapped-port", q.mapped.port().to_string());
                    line("mtu", q.mtu.to_string());
                }
                None => {
                    line("address", "none".into());
                    line("mtu", "1280".into());
                }
            }
            line("nat", c.nat().to_string());
            // The port mapping with the home gateway (miredo.8, PORT
            // MAPPING).
            match d.mapper().map(|m| m.status()) {
                Some(m) => {
                    line("port-mapping", m.state.as_str().into());
                    if let Some(g) = m.gateway {
                        line("port-mapping-gateway", g.to_string());
                    }
                    if let (Some(p), Some(e)) = (m.protocol, m.external) {
                        line("port-mapping-protocol", p.into());
                        line("port-mapping-external", e.to_string());
                        let left = m
                            .expires
                            .map_or(0, |t| t.saturating_duration_since(Instant::now()).as_secs());
                        line("port-mapping-lifetime-left", format!("{left}s"));
                        let used = if c.port_mapping_in_use() { "yes" } else { "no" };
                        line("port-mapping-in-use", used.into());
                    }
                    if let Some(why) = m.why {
                        line("port-mapping-error", why.replace(char::is_control, " "));
                    }
                }
                None => line("port-mapping", "off".into()),
            }
            let others: Vec<String> = c.servers().skip(1).map(|(a, _)| a.to_string()).collect();
            if !others.is_empty() {
                line("fallback-servers", others.join(" "));
            }
            if let Some((from, to, when)) = d.server_change() {
                let ago = when.elapsed().map_or(0, |d| d.as_secs());
                line(
                    "server-changed",
                    format!("{ago}s ago, from {from} (no answer) to {to}"),
                );
            }
            if let Some(t) = d.qualified_after() {
                line("qualified-after", format!("{}ms", t.as_millis()));
            }
            line("peers", c.peer_count().to_string());
        }
        EngineKind::Relay(r) => {
            line("state", "relaying".into());
            line(
                "prefix",
                format!(
                    "{}/32",
                    std::net::Ipv6Addr::from(u128::from(conf.prefix) << 96)
                ),
            );
            line("mtu", conf.interface_mtu.to_string());
            line("peers", r.peers().len().to_string());
        }
    }
    line("udp-rx-packets", stats.udp_rx_packets.to_string());
    line("udp-rx-bytes", stats.udp_rx_bytes.to_string());
    line("udp-tx-packets", stats.udp_tx_packets.to_string());
    line("udp-tx-bytes", stats.udp_tx_bytes.to_string());
    line("tun-rx-packets", stats.tun_rx_packets.to_string());
    line("tun-rx-bytes", stats.tun_rx_bytes.to_string());
    line("tun-tx-packets", stats.tun_tx_packets.to_string());
    line("tun-tx-bytes", stats.tun_tx_bytes.to_string());
    // Admission (libteredo::proto::admission): what the peer list holds by
    // class now, and what happened to new peers since the start.
    let peers = match engine {
        EngineKind::Client(c) => c.peers(),
        EngineKind::Relay(r) => r.peers(),
    };
    line("peers-trusted", peers.count(PeerClass::Trusted).to_string());
    line(
        "peers-on-probation",
        peers.count(PeerClass::Held).to_string(),
    );
    line("peers-held", stats.peers_held.to_string());
    line("peers-admitted-late", stats.peers_admitted_late.to_string());
    line("peers-evicted", peers.evicted().to_string());
    line("queued-bytes", peers.queued_bytes().to_string());
    line("bubbles-sent", stats.bubbles_sent.to_string());
    line("bubbles-received", stats.bubbles_received.to_string());
    line("icmp-errors-sent", stats.icmp_errors.to_string());
    for r in DropReason::ALL {
        line(&format!("drop-{}", r.name()), stats.dropped(r).to_string());
    }
    line("drop-queue-expired", stats.drops_queue_expired.to_string());
    s
}

/// The one-line status for the service manager (`STATUS=`, shown by
/// `systemctl status`): what the daemon is doing and, apart, a key that
/// changes with its state only (a change of key is sent at once; counts
/// that move are sent at most every few seconds).
pub fn one_line(d: &Daemon, engine: &EngineKind) -> (String, String) {
    use crate::network::Waiting;
    use libteredo::proto::ClientState;
    let stats = engine.stats();
    match engine {
        EngineKind::Client(c) => {
            let server = c.config().server;
            if let Some(q) = c.qualification() {
                let key = format!("qualified {} {}", q.addr, c.nat());
                let text = format!(
                    "Qualified: Teredo address {}, NAT {}, server {server}, MTU {}; {} peers",
                    q.addr,
                    c.nat(),
                    q.mtu,
                    c.peer_count()
                );
                return (key, text);
            }
            let waiting = d.waiting_for(engine);
            let why = match waiting {
                Some(Waiting::NameUnresolved) => Some(Waiting::NameUnresolved),
                Some(w @ (Waiting::NoRoute | Waiting::NoAddress)) => Some(w),
                // No answer counts once a round of solicitations failed.
                Some(Waiting::NoAnswer) if c.state() == ClientState::Offline => {
                    Some(Waiting::NoAnswer)
                }
                _ => None,
            };
            match why {
                Some(Waiting::NameUnresolved) => {
                    let name = d.conf().server_address.clone().unwrap_or_default();
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
                None => (
                    format!("qualifying {server}"),
                    format!("Qualifying with the Teredo server {server}"),
                ),
            }
        }
        EngineKind::Relay(r) => {
            let conf = d.conf();
            let text = format!(
                "Relaying for {}/32: {} peers; {} packets in and {} out over UDP, {} in and {} out over the tunnel, {} dropped",
                std::net::Ipv6Addr::from(u128::from(conf.prefix) << 96),
                r.peers().len(),
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
