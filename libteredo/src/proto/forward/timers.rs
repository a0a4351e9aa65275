//! Timers: the retries of bubbles and connectivity tests for peers with
//! queued packets, every `BUBBLE_INTERVAL` until `MAX_BUBBLES` went
//! unanswered (RFC 4380 5.2.6; then the queue goes, the host hears why,
//! 5.4.1), and the expiry of the peer list.

use super::connectivity::held_inbound;
use super::{Forwarder, Retry, BUBBLE_INTERVAL, MAX_BUBBLES};
use crate::proto::output::Output;
use crate::wire::icmpv6::unreachable_code;
use std::net::Ipv6Addr;
use std::time::Instant;

impl Forwarder {
    /// Puts `peer` on the retry list once (the flag on the entry, not a
    /// search of the list: a flood of new peers must stay O(1) each).
    pub(super) fn schedule_retry(&mut self, peer: Ipv6Addr, now: Instant) {
        let Some(handle) = self.peers.handle(&peer) else {
            return;
        };
        let due = self.peers.stamp(now + BUBBLE_INTERVAL);
        if let Some(p) = self.peers.get_mut(&peer) {
            if !p.retry_pending {
                p.retry_pending = true;
                self.retries.push_back(Retry { handle, due });
            }
        }
    }

    pub(crate) fn handle_timeout(&mut self, now: Instant, out: &mut Vec<Output>) {
        while let Some(&Retry { handle, due }) = self.retries.front() {
            if !self.peers.is_due(due, now) {
                break;
            }
            self.retries.pop_front();
            // A peer evicted since is gone, whatever holds its slot now.
            let Some(peer) = self.peers.resolve(handle) else {
                continue;
            };
            let Some(p) = self.peers.get_mut(&peer) else {
                continue;
            };
            p.retry_pending = false;
            let p = &*p;
            if p.trusted || !p.has_queued() {
                continue;
            }
            if p.local {
                continue;
            }
            if p.bubbles < MAX_BUBBLES {
                if self.bubble_allowed(&peer, now) {
                    match self.teredo(&peer) {
                        Some(t) => self.send_bubbles(&peer, &t, out),
                        None => self.send_ping_test(&peer, out),
                    }
                }
                self.schedule_retry(peer, now);
            } else {
                // RFC 4380 5.4.1: give up; the queue goes, the sender hears
                // why. The entry stays (bubble count kept) until it expires,
                // so a flood cannot buy more bubbles.
                let dropped = self.peers.dequeue_all(&peer);
                self.stats.drops_queue_expired += dropped.len() as u64;
                if let Some(first) = dropped.iter().find(|p| held_inbound(p).is_none()) {
                    self.unreachable(now, unreachable_code::ADDRESS, first, out);
                }
            }
        }
        self.peers.expire(now);
    }

    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        let r = self.retries.front().map(|r| self.peers.instant_of(r.due));
        match (r, self.peers.next_expiry()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}
