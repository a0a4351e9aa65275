//! Which new peers get bubbles when more want them than a relay should
//! send: admission that tells a flow from a flood (RFC 4380 7.3.3 leaves
//! the defence of the peer list open).
//!
//! A new peer costs bubbles (one, then up to three repeats, RFC 4380
//! 5.4.1), an entry and a queued packet. Anyone on the IPv6 Internet can
//! make a relay create peers by sending one packet to each of many random
//! Teredo addresses; a legitimate flow is different in one way that costs
//! a flood dearly to imitate: it sends its destination a second packet (a
//! retransmitted SYN, the next echo request, the next datagram), and a
//! third. Admission is therefore by *tiers*, one per packet seen for a
//! destination that is not admitted yet (1, 2, 3, 4 or more):
//!
//! - A destination's first packet is admitted (its bubbles sent at once)
//!   if its source has a token in tier 1. A source is an IPv6 /64 on the
//!   native side of a relay, an IPv4 address on the Teredo side.
//! - Otherwise the destination is *held*: it gets an entry on probation
//!   with the packet queued, and no bubble. Its next packet is a request
//!   in tier 2, the next in tier 3, then tier 4, each with buckets of its
//!   own, which one-packet-per-destination floods never drain. Once
//!   admitted, the held packets go with the bubbles, so the first packet
//!   of a flow is not lost for having come during a flood.
//! - Each tier has per-source buckets ([`ADMISSION_SLOTS`] of them, in a
//!   direct-mapped table keyed by a secret hash, so that memory is fixed
//!   whatever the number of sources and an attacker cannot aim at a
//!   victim's slot) and one bucket for all sources together: a noisy
//!   source drains only its own slot's tokens, so quiet sources keep
//!   theirs; a flood from many sources drains the shared tier 1 but not
//!   the tiers above it.
//!
//! The peer table supplies the rest (see [`PeerTable`](super::peers::PeerTable)):
//! held entries are evicted first, then admitted ones that never answered,
//! least recently used first; peers that answered (trusted) are never
//! evicted for untrusted ones. A held entry lives as long as the table's
//! capacity divided by the rate of new destinations: with the default
//! million entries, ten seconds under a flood of 100,000 destinations a
//! second, which is time for several packets of any flow.
//!
//! A flood that sends every destination k times drains tiers 1 to k of
//! its own source, and makes k times fewer destinations for the same
//! packets; a flow that sends more than k packets still gets in, at tier
//! k + 1 (or at the last tier, shared with the flood, for k of 4 or more).
//! Each request costs one keyed hash and two bucket updates: constant.

use std::time::Instant;

use super::ratelimit::{SourceLimiter, TokenBucket};

/// Packets seen for a held destination that make a tier of their own; the
/// last tier takes every packet from this many on.
pub const TIERS: usize = 4;
/// Per-source buckets in each tier (a fixed table: sources that share a
/// slot share its tokens).
pub const ADMISSION_SLOTS: usize = 4096;

/// The tiers' buckets.
pub struct Admission {
    per_source: Vec<SourceLimiter>,
    global: Vec<Option<TokenBucket>>,
}

impl std::fmt::Debug for Admission {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Admission").finish_non_exhaustive()
    }
}

impl Admission {
    /// Tiers of `per_source` admissions a second per source and
    /// `all_sources` a second in all (0: no such limit), each with a
    /// burst of twice its rate; `key` keys the slots' hash.
    pub fn new(key: [u8; 16], per_source: u32, all_sources: u32) -> Self {
        let per_source = (0..TIERS)
            .map(|tier| {
                // Each tier's slots are placed by another key: sources that
                // collide in one tier do not collide in the next.
                let mut k = key;
                k[0] ^= tier as u8;
                SourceLimiter::new(k, ADMISSION_SLOTS, per_source, per_source.saturating_mul(2))
            })
            .collect();
        let global = (0..TIERS)
            .map(|_| {
                (all_sources > 0)
                    .then(|| TokenBucket::new(all_sources, all_sources.saturating_mul(2)))
            })
            .collect();
        Admission { per_source, global }
    }

    /// The tier of a destination that has seen `packets` packets (the
    /// first is 1) without being admitted.
    pub fn tier(packets: u8) -> usize {
        usize::from(packets.clamp(1, TIERS as u8)) - 1
    }

    /// Whether `source` may have a destination admitted that has seen
    /// `packets` packets; takes the tokens if so. The source's token is
    /// taken first: a source that has none spends nothing of the tier's
    /// shared bucket.
    pub fn admit(&mut self, now: Instant, source: &[u8], packets: u8) -> bool {
        let tier = Self::tier(packets);
        self.per_source[tier].take(now, source)
            && self.global[tier].as_mut().is_none_or(|b| b.take(now))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_flood_of_first_packets_leaves_the_second_tier_whole() {
        let t0 = Instant::now();
        let mut a = Admission::new([3; 16], 100, 1000);
        let src = [1u8; 8];
        let first = (0..10_000).filter(|_| a.admit(t0, &src, 1)).count();
        // The source's burst, no more.
        assert_eq!(first, 200);
        // A repeat from the same source is admitted in its own tier.
        assert!(a.admit(t0, &src, 2));
        assert!(a.admit(t0, &src, 3));
        assert!(a.admit(t0, &src, 9));
    }

    #[test]
    fn a_noisy_source_leaves_quiet_ones_their_tokens() {
        let t0 = Instant::now();
        let mut a = Admission::new([5; 16], 10, 0);
        let noisy = [9u8; 8];
        assert!((0..1000).filter(|_| a.admit(t0, &noisy, 1)).count() <= 20);
        let quiet_admitted = (0..200u32)
            .filter(|i| a.admit(t0, &i.to_be_bytes(), 1))
            .count();
        // Sources that share the noisy one's slot (one in 4096) lose.
        assert!(quiet_admitted >= 198, "{quiet_admitted}");
    }

    #[test]
    fn many_sources_drain_the_shared_bucket_of_their_tier_only() {
        let t0 = Instant::now();
        let mut a = Admission::new([7; 16], 100, 50);
        let got = (0..5000u32)
            .filter(|i| a.admit(t0, &i.to_be_bytes(), 1))
            .count();
        assert_eq!(got, 100);
        assert!(a.admit(t0, &[0xAA; 8], 2));
        // A second later, the shared bucket has refilled 50.
        let t1 = t0 + Duration::from_secs(1);
        let got = (5000..10000u32)
            .filter(|i| a.admit(t1, &i.to_be_bytes(), 1))
            .count();
        assert_eq!(got, 50);
    }

    #[test]
    fn zero_means_no_limit() {
        let mut a = Admission::new([0; 16], 0, 0);
        assert!((0..10_000).all(|_| a.admit(Instant::now(), b"x", 1)));
    }
}
