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
