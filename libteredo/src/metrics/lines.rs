//! The status lines a daemon writes on its status socket: `key: value`,
//! one per line, read by `teredo-mire status`, by [`super::parse_status`]
//! for the metrics listener, and by people. miredo and miredo-server write
//! their own keys with [`StatusLines::line`] and the counters they share
//! (UDP, TUN, drops by reason) with the methods below, so that a counter
//! has one name whoever counts it.

use crate::proto::{DropReason, Stats};
use std::fmt::{Display, Write as _};

/// Status lines being written.
#[derive(Debug, Default)]
pub struct StatusLines(String);

impl StatusLines {
    pub fn new() -> Self {
        StatusLines(String::new())
    }

    /// `key: value`.
    pub fn line(&mut self, key: &str, value: impl Display) {
        let _ = writeln!(self.0, "{key}: {value}");
    }

    /// The datagrams and bytes received and sent over UDP.
    pub fn udp(&mut self, stats: &Stats) {
        self.line("udp-rx-packets", stats.udp_rx_packets);
        self.line("udp-rx-bytes", stats.udp_rx_bytes);
        self.line("udp-tx-packets", stats.udp_tx_packets);
        self.line("udp-tx-bytes", stats.udp_tx_bytes);
    }

    /// The packets and bytes read from and written to the tunnel.
    pub fn tun(&mut self, stats: &Stats) {
        self.line("tun-rx-packets", stats.tun_rx_packets);
        self.line("tun-rx-bytes", stats.tun_rx_bytes);
        self.line("tun-tx-packets", stats.tun_tx_packets);
        self.line("tun-tx-bytes", stats.tun_tx_bytes);
    }

    /// One `drop-REASON` line per reason, every reason (zero included).
    pub fn drops(&mut self, stats: &Stats) {
        for r in DropReason::ALL {
            self.line(&format!("drop-{}", r.name()), stats.dropped(r));
        }
    }

    /// The text written.
    pub fn finish(self) -> String {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_read_back_as_metrics() {
        let stats = Stats {
            udp_rx_packets: 7,
            tun_tx_bytes: 1280,
            ..Stats::default()
        };
        let mut l = StatusLines::new();
        l.line("mode", "server");
        l.udp(&stats);
        l.tun(&stats);
        l.drops(&stats);
        let text = l.finish();
        assert!(
            text.starts_with("mode: server\nudp-rx-packets: 7\n"),
            "{text}"
        );
        let parsed = super::super::parse_status(&text);
        assert!(parsed.contains(&("tun-tx-bytes".into(), "1280".into())));
        let drops = parsed
            .iter()
            .filter(|(k, _)| k.starts_with("drop-"))
            .count();
        assert_eq!(drops, DropReason::ALL.len());
        assert!(
            super::super::to_prometheus(&parsed).contains("teredo_udp_received_packets_total 7")
        );
    }
}
