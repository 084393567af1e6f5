//! The time the domain layer reads.
//!
//! Two readings: wall-clock milliseconds for everything stored or compared with a stored time
//! (timestamps, expiries, deadlines of tokens and commands), and a monotonic reading for the rate
//! limiters, which must not jump when the machine's clock is set. Both are the machine's own
//! plus a skip that only [`Clock::advance`] moves (built with the `test-clock` feature), so a
//! test can skip a wait — a token's expiry, a connect rate's refill — instead of sleeping
//! through it. In a server the skip is always zero.
//!
//! Every part of the process that decides by time reads the [`Core`](crate::Core)'s clock
//! (`Core::clock`); none reads the system clock itself, or a skipped wait would be seen by one
//! part and not by another.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// A clock shared by everything one [`Core`](crate::Core) runs; cheap to clone (the clones
/// share the skip).
#[derive(Clone, Debug, Default)]
pub struct Clock {
    /// Milliseconds skipped by [`Clock::advance`].
    skipped_ms: Arc<AtomicU64>,
}

/// The process's reference instant for monotonic readings.
fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

impl Clock {
    /// The machine's clock, nothing skipped.
    pub fn system() -> Clock {
        Clock::default()
    }

    fn skipped(&self) -> u64 {
        self.skipped_ms.load(Ordering::Relaxed)
    }

    /// Unix time in milliseconds.
    pub fn now_ms(&self) -> i64 {
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or_default();
        wall.saturating_add(self.skipped() as i64)
    }

    /// Monotonic time since a fixed instant of the process, never going back.
    pub fn monotonic(&self) -> Duration {
        epoch().elapsed() + Duration::from_millis(self.skipped())
    }

    /// [`Clock::monotonic`] in whole milliseconds.
    pub fn monotonic_ms(&self) -> u64 {
        self.monotonic().as_millis() as u64
    }

    /// Move this clock (and every clone of it) forward by `by`, as if that much time had passed.
    #[cfg(any(test, feature = "test-clock"))]
    pub fn advance(&self, by: Duration) {
        self.skipped_ms
            .fetch_add(by.as_millis() as u64, Ordering::Relaxed);
    }
}

/// The rate limiters (`governor`) read the same clock, so a skipped wait refills them too.
impl governor::clock::Clock for Clock {
    type Instant = governor::nanos::Nanos;

    fn now(&self) -> Self::Instant {
        governor::nanos::Nanos::from(self.monotonic())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advancing_moves_both_readings_of_every_clone() {
        let a = Clock::system();
        let b = a.clone();
        let (wall, mono) = (a.now_ms(), a.monotonic());
        b.advance(Duration::from_secs(3600));
        assert!(a.now_ms() - wall >= 3_600_000, "{} {}", a.now_ms(), wall);
        assert!(a.monotonic() - mono >= Duration::from_secs(3600));
        // A clock made apart from them is not moved.
        let c = Clock::system();
        assert!(c.now_ms() - wall < 3_600_000);
    }

    #[test]
    fn a_governor_limiter_refills_when_the_clock_is_advanced() {
        use governor::{Quota, RateLimiter};
        use std::num::NonZeroU32;
        let clock = Clock::system();
        let quota = Quota::per_hour(NonZeroU32::new(1).unwrap());
        let l = RateLimiter::direct_with_clock(quota, clock.clone());
        assert!(l.check().is_ok());
        assert!(l.check().is_err());
        clock.advance(Duration::from_secs(3601));
        assert!(l.check().is_ok());
    }
}
