//! The per-token rate limit of `landlord api`: a token bucket per configured
//! token that holds a minute's worth of requests (`LANDLORD_API_RATE_PER_MINUTE`)
//! and refills continuously. A request that finds its bucket empty is
//! answered 429 `rate_limited` with `Retry-After` (whole seconds until one
//! request is allowed again); other tokens are unaffected.
//!
//! Buckets live in this process only (each `landlord api` process limits on
//! its own) and are keyed by the token's index among the configured tokens,
//! so there are never more buckets than tokens. Requests without a valid
//! token are refused before they reach a bucket.

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

/// One token's bucket.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    /// Requests allowed now (fractional while refilling).
    available: f64,
    /// When `available` was last brought up to date.
    at: Instant,
}

/// Token buckets for every configured token.
#[derive(Debug)]
pub struct RateLimiter {
    /// Requests per minute per token; 0 = no limit.
    per_minute: u32,
    buckets: Mutex<HashMap<usize, Bucket>>,
}

impl RateLimiter {
    pub fn new(per_minute: u32) -> Self {
        Self {
            per_minute,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one request from the bucket of token `key`: `Ok` if allowed,
    /// else how long until the next request would be.
    pub fn check(&self, key: usize) -> Result<(), Duration> {
        self.check_at(key, Instant::now())
    }

    fn check_at(&self, key: usize, now: Instant) -> Result<(), Duration> {
        if self.per_minute == 0 {
            return Ok(());
        }
        let capacity = f64::from(self.per_minute);
        let per_second = capacity / 60.0;
        // A poisoned lock only means another request panicked mid-update;
        // the buckets are still usable numbers.
        let mut buckets = self
            .buckets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let b = buckets.entry(key).or_insert(Bucket {
            available: capacity,
            at: now,
        });
        let elapsed = now.saturating_duration_since(b.at).as_secs_f64();
        b.available = (b.available + elapsed * per_second).min(capacity);
        b.at = now;
        if b.available >= 1.0 {
            b.available -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - b.available) / per_second))
        }
    }
}

/// `Retry-After` in whole seconds (rounded up, at least 1).
pub fn retry_after_secs(wait: Duration) -> u64 {
    let s = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    s.max(1)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_of_a_minutes_worth_then_one_per_refill() {
        let l = RateLimiter::new(60);
        let t0 = Instant::now();
        for i in 0..60 {
            assert!(l.check_at(0, t0).is_ok(), "request {i}");
        }
        let wait = l.check_at(0, t0).unwrap_err();
        assert!(
            wait <= Duration::from_secs(1) && wait > Duration::ZERO,
            "{wait:?}"
        );
        assert_eq!(retry_after_secs(wait), 1);
        // Another token has its own bucket.
        assert!(l.check_at(1, t0).is_ok());
        // A second later, one more request.
        let t1 = t0 + Duration::from_secs(1);
        assert!(l.check_at(0, t1).is_ok());
        assert!(l.check_at(0, t1).is_err());
        // Refilling stops at the capacity.
        let later = t1 + Duration::from_secs(3600);
        for _ in 0..60 {
            assert!(l.check_at(0, later).is_ok());
        }
        assert!(l.check_at(0, later).is_err());
    }

    #[test]
    fn zero_is_off_and_slow_rates_wait_longer() {
        let off = RateLimiter::new(0);
        let t0 = Instant::now();
        for _ in 0..10_000 {
            assert!(off.check_at(0, t0).is_ok());
        }
        let slow = RateLimiter::new(2);
        assert!(slow.check_at(0, t0).is_ok());
        assert!(slow.check_at(0, t0).is_ok());
        let wait = slow.check_at(0, t0).unwrap_err();
        assert_eq!(retry_after_secs(wait), 30);
        assert_eq!(retry_after_secs(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(2001)), 3);
    }
}
