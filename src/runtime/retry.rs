//! Retry policy as plain data: exponential backoff with jitter, via `backon`.

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};

#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    pub base: Duration,
    pub max: Duration,
}

impl RetryPolicy {
    /// Delay before attempt `attempt + 1`, after `attempt` (1-based) failed.
    pub fn delay_after(&self, attempt: u32) -> Duration {
        let n = attempt.saturating_sub(1) as usize;
        ExponentialBuilder::new()
            .with_min_delay(self.base)
            .with_max_delay(self.max)
            .with_factor(2.0)
            .with_jitter()
            .without_max_times()
            .build()
            .nth(n)
            .unwrap_or(self.max)
            .min(self.max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_and_is_bounded() {
        let p = RetryPolicy {
            base: Duration::from_millis(100),
            max: Duration::from_secs(2),
        };
        // With jitter each delay lies in [d, 2d) for d = base * 2^(n-1), capped.
        let d1 = p.delay_after(1);
        assert!(d1 >= Duration::from_millis(100) && d1 < Duration::from_millis(200));
        let d3 = p.delay_after(3);
        assert!(d3 >= Duration::from_millis(400) && d3 < Duration::from_millis(800));
        assert!(p.delay_after(30) <= Duration::from_secs(2));
    }
}
