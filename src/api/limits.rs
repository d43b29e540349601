//! The per-token rate limit of `landlord api`: a minute's worth of requests
//! per configured token (`LANDLORD_API_RATE_PER_MINUTE`) that refills
//! continuously (`governor`'s keyed limiter). A request over the limit is
//! answered 429 `rate_limited` with `Retry-After` (whole seconds until one
//! request is allowed again); other tokens are unaffected.
//!
//! The limits live in this process only (each `landlord api` process limits
//! on its own) and are keyed by the token's index among the configured
//! tokens, so there are never more keys than tokens. Requests without a
//! valid token are refused before they reach the limiter.

use std::{num::NonZeroU32, time::Duration};

use governor::{
    Quota,
    clock::{Clock, DefaultClock},
    middleware::NoOpMiddleware,
    state::keyed::HashMapStateStore,
};

/// The keyed limiter of every configured token.
type Keyed<C> = governor::RateLimiter<
    usize,
    HashMapStateStore<usize>,
    C,
    NoOpMiddleware<<C as Clock>::Instant>,
>;

/// Per-token rate limits; `None` inside when the limit is off.
pub struct RateLimiter<C: Clock + Clone = DefaultClock> {
    limits: Option<(Keyed<C>, C)>,
}

impl std::fmt::Debug for RateLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimiter")
            .field("on", &self.limits.is_some())
            .finish()
    }
}

impl RateLimiter {
    /// `per_minute` requests per minute per token; 0 = no limit.
    pub fn new(per_minute: u32) -> Self {
        Self::with_clock(per_minute, DefaultClock::default())
    }
}

impl<C: Clock + Clone> RateLimiter<C> {
    fn with_clock(per_minute: u32, clock: C) -> Self {
        let limits = NonZeroU32::new(per_minute).map(|n| {
            (
                Keyed::hashmap_with_clock(Quota::per_minute(n), clock.clone()),
                clock,
            )
        });
        Self { limits }
    }

    /// Takes one request of token `key`: `Ok` if allowed, else how long
    /// until the next request would be.
    pub fn check(&self, key: usize) -> Result<(), Duration> {
        let Some((limiter, clock)) = &self.limits else {
            return Ok(());
        };
        limiter
            .check_key(&key)
            .map_err(|not_until| not_until.wait_time_from(clock.now()))
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
    use governor::clock::FakeRelativeClock;

    use super::*;

    #[test]
    fn a_burst_of_a_minutes_worth_then_one_per_refill() {
        let clock = FakeRelativeClock::default();
        let l = RateLimiter::with_clock(60, clock.clone());
        for i in 0..60 {
            assert!(l.check(0).is_ok(), "request {i}");
        }
        let wait = l.check(0).unwrap_err();
        assert!(
            wait <= Duration::from_secs(1) && wait > Duration::ZERO,
            "{wait:?}"
        );
        assert_eq!(retry_after_secs(wait), 1);
        // Another token has its own bucket.
        assert!(l.check(1).is_ok());
        // A second later, one more request.
        clock.advance(Duration::from_secs(1));
        assert!(l.check(0).is_ok());
        assert!(l.check(0).is_err());
        // Refilling stops at the capacity.
        clock.advance(Duration::from_secs(3600));
        for _ in 0..60 {
            assert!(l.check(0).is_ok());
        }
        assert!(l.check(0).is_err());
    }

    #[test]
    fn zero_is_off_and_slow_rates_wait_longer() {
        let off = RateLimiter::with_clock(0, FakeRelativeClock::default());
        for _ in 0..10_000 {
            assert!(off.check(0).is_ok());
        }
        let slow = RateLimiter::with_clock(2, FakeRelativeClock::default());
        assert!(slow.check(0).is_ok());
        assert!(slow.check(0).is_ok());
        let wait = slow.check(0).unwrap_err();
        assert_eq!(retry_after_secs(wait), 30);
        assert_eq!(retry_after_secs(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(2001)), 3);
    }
}
