//! A token bucket on the engine's clock: bounds ICMPv6 errors, connectivity
//! tests and bubble replies, whatever an attacker sends (RFC 4380 7,
//! CVE-2006-6266).

use std::time::{Duration, Instant};

#[derive(Clone, Debug)]
pub struct TokenBucket {
    per_second: u32,
    burst: u32,
    tokens: u32,
    last: Option<Instant>,
}

impl TokenBucket {
    /// `per_second` tokens per second, at most `burst` saved up.
    pub fn new(per_second: u32, burst: u32) -> Self {
        TokenBucket {
            per_second,
            burst,
            tokens: burst,
            last: None,
        }
    }

    /// Takes a token if one is left.
    pub fn take(&mut self, now: Instant) -> bool {
        match self.last {
            None => self.last = Some(now),
            Some(last) => {
                let elapsed = now.saturating_duration_since(last);
                if self.per_second > 0 {
                    let per = Duration::from_secs(1) / self.per_second;
                    let n = (elapsed.as_nanos() / per.as_nanos().max(1)).min(u128::from(self.burst))
                        as u32;
                    if n > 0 {
                        self.tokens = (self.tokens + n).min(self.burst);
                        self.last = Some(if self.tokens == self.burst {
                            now
                        } else {
                            last + per * n
                        });
                    }
                }
            }
        }
        if self.tokens > 0 {
            self.tokens -= 1;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refills_at_rate() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(10, 2);
        assert!(b.take(t0));
        assert!(b.take(t0));
        assert!(!b.take(t0));
        assert!(!b.take(t0 + Duration::from_millis(50)));
        assert!(b.take(t0 + Duration::from_millis(100)));
        assert!(!b.take(t0 + Duration::from_millis(150)));
        let mut n = 0;
        for i in 0..1000u64 {
            if b.take(t0 + Duration::from_secs(1) + Duration::from_millis(i)) {
                n += 1;
            }
        }
        // One second at 10/s, plus the burst saved up.
        assert!((10..=12).contains(&n), "{n}");
    }
}

/// Token buckets per source (an IPv4 address, or an IPv6 /64), in a fixed
/// direct-mapped table: bounded memory whatever the number of sources, and
/// sources that share a slot share a bucket (stricter, never looser). The
/// slot is chosen by a keyed hash, so an attacker cannot aim at a victim's.
pub struct SourceLimiter {
    key: [u8; 16],
    per_second: u32,
    burst: u32,
    slots: Vec<(u64, TokenBucket)>,
}

impl SourceLimiter {
    /// `slots` buckets of `per_second` tokens (0: no limit), `burst` saved.
    pub fn new(key: [u8; 16], slots: usize, per_second: u32, burst: u32) -> Self {
        SourceLimiter {
            key,
            per_second,
            burst,
            slots: Vec::with_capacity(if per_second == 0 { 0 } else { slots.max(1) }),
        }
    }

    /// Takes a token for `source` (any bytes naming it).
    pub fn take(&mut self, now: Instant, source: &[u8]) -> bool {
        if self.per_second == 0 {
            return true;
        }
        if self.slots.len() < self.slots.capacity() {
            // Grow lazily up to the capacity: idle daemons stay small.
            let n = self.slots.capacity();
            self.slots
                .resize(n, (u64::MAX, TokenBucket::new(self.per_second, self.burst)));
        }
        let h = super::siphash::siphash24(&self.key, source);
        let i = (h % self.slots.len() as u64) as usize;
        let slot = &mut self.slots[i];
        if slot.0 != h {
            // A new source in this slot starts with the bucket as it is,
            // unless the slot was never used.
            if slot.0 == u64::MAX {
                slot.1 = TokenBucket::new(self.per_second, self.burst);
            }
            slot.0 = h;
        }
        slot.1.take(now)
    }
}

#[cfg(test)]
mod source_tests {
    use super::*;

    #[test]
    fn limits_one_source_not_another() {
        let t0 = Instant::now();
        let mut l = SourceLimiter::new([7; 16], 1024, 10, 10);
        let a = [1u8, 2, 3, 4];
        let b = [9u8, 9, 9, 9];
        let got_a = (0..100).filter(|_| l.take(t0, &a)).count();
        assert_eq!(got_a, 10);
        assert!(l.take(t0, &b));
        // A second later, ten more for a.
        let got_a = (0..100)
            .filter(|_| l.take(t0 + Duration::from_secs(1), &a))
            .count();
        assert_eq!(got_a, 10);
    }

    #[test]
    fn zero_means_no_limit() {
        let mut l = SourceLimiter::new([0; 16], 16, 0, 0);
        assert!((0..10_000).all(|_| l.take(Instant::now(), b"x")));
    }
}
