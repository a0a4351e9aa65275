//! The simulated network's virtual clock: the world runs from one due
//! thing to the next (a packet's arrival or an engine's timer), so that
//! minutes of protocol time take milliseconds and every run of a seed is
//! the same.

use super::net::InFlight;
use super::{NodeId, World};
use std::net::Ipv6Addr;
use std::time::{Duration, Instant};

impl World {
    /// The earliest timer of any engine, and whose.
    fn next_timer(&self) -> Option<(Instant, NodeId)> {
        self.nodes
            .iter()
            .enumerate()
            .filter_map(|(i, n)| n.engine.poll_timeout().map(|t| (t, i)))
            .min()
    }

    /// Runs the world until `deadline` (virtual), in bounded steps.
    pub fn run_until(&mut self, deadline: Instant) {
        for _ in 0..5_000_000 {
            let next_packet = self.queue.keys().next().map(|k| k.0);
            let next_timer = self.next_timer();
            let t = match (next_packet, next_timer) {
                (Some(p), Some((t, _))) => p.min(t),
                (Some(p), None) => p,
                (None, Some((t, _))) => t,
                (None, None) => {
                    // Nothing in flight and nothing due: idle until then.
                    self.now = self.now.max(deadline);
                    return;
                }
            };
            if t > deadline {
                self.now = deadline;
                return;
            }
            self.now = self.now.max(t);
            if next_packet == Some(t) {
                let Some((_, what)) = self.queue.pop_first() else {
                    continue;
                };
                match what {
                    InFlight::V4(d) => self.deliver_v4(d),
                    InFlight::V6(p) => self.deliver_v6(p),
                    InFlight::ClientTun(id, p) => self.deliver_client_tun(id, p),
                }
            } else if let Some((_, id)) = next_timer {
                let now = self.now;
                let mut out = Vec::new();
                self.nodes[id].engine.handle_timeout(now, &mut out);
                self.apply(id, out);
            }
        }
        panic!("simulation did not settle (event storm?)");
    }

    /// Runs the world for `d` of virtual time.
    pub fn run_for(&mut self, d: Duration) {
        let deadline = self.now + d;
        self.run_until(deadline);
    }

    /// Runs until `cond` holds, checking after every step, for at most `d`.
    pub fn run_until_cond(&mut self, d: Duration, mut cond: impl FnMut(&World) -> bool) -> bool {
        let deadline = self.now + d;
        let step = Duration::from_millis(50);
        while self.now < deadline {
            if cond(self) {
                return true;
            }
            let next = (self.now + step).min(deadline);
            self.run_until(next);
        }
        cond(self)
    }

    /// Runs until the client is qualified, for at most `d`.
    pub fn qualify(&mut self, id: NodeId, d: Duration) -> Ipv6Addr {
        self.run_until_cond(d, |w| w.teredo_addr(id).is_some());
        match self.teredo_addr(id) {
            Some(addr) => addr,
            None => panic!(
                "client {id} did not qualify in {d:?}\n{}",
                self.trace.join("\n")
            ),
        }
    }
}
