//! A device session's report rate: a token bucket of 16 bytes per connection, refusal strikes
//! that close a connection only for sustained abuse, and the buckets of devices that just
//! disconnected, so reconnecting buys no extra burst.
//!
//! Pure arithmetic over monotonic milliseconds passed in ([`Clock::monotonic_ms`]); the gateway decides what a verdict does
//! on the wire (PUBACK 0x97, a dropped QoS 0 message, DISCONNECT 0x96).

#[cfg(doc)]
use crate::clock::Clock;

/// A token bucket per connection: `per_min` messages a minute, with a burst of two seconds' worth
/// (at least 5). On MQTT 5 an excess QoS > 0 message is answered with 0x97 (quota exceeded, the
/// PUBACK code for it; 0x96 exists only on DISCONNECT); otherwise dropped and counted. Refused messages are also counted as strikes, forgiven at the same rate: strikes grow
/// only while the device sends more than twice its rate, and past `abuse_secs` of the rate (at
/// least [`ABUSE_MIN`]) the connection is closed with 0x96. Only the two levels and the time of the
/// last refill are kept (16 bytes); the rate comes from the product each time. A device that
/// disconnects before its bucket refilled leaves it in [`CarriedBuckets`] for its next session.
#[derive(Debug, Clone, Copy)]
pub struct ReportBucket {
    tokens: f32,
    strikes: f32,
    /// [`Clock::monotonic_ms`] at the last refill.
    at_ms: u64,
}

/// The fewest strikes that close a connection for abuse.
const ABUSE_MIN: f32 = 20.0;

/// What the report rate says about one publish.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Allow,
    Refuse,
    /// Refused, and the refusals kept coming: close the connection.
    Abuse,
}

pub fn capacity(per_min: u32) -> f32 {
    (per_min as f32 / 30.0).max(5.0)
}

impl ReportBucket {
    /// A full bucket at `now_ms` ([`Clock::monotonic_ms`]).
    pub fn new(per_min: u32, now_ms: u64) -> ReportBucket {
        ReportBucket {
            tokens: capacity(per_min),
            strikes: 0.0,
            at_ms: now_ms,
        }
    }

    /// One publish at `now_ms` ([`Clock::monotonic_ms`]).
    pub fn check(&mut self, now_ms: u64, per_min: u32, abuse_secs: u32) -> Verdict {
        let ms = now_ms.saturating_sub(self.at_ms) as f32;
        self.at_ms = now_ms;
        let refill = ms * per_min as f32 / 60_000.0;
        self.tokens = (self.tokens + refill).min(capacity(per_min));
        self.strikes = (self.strikes - refill).max(0.0);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            return Verdict::Allow;
        }
        self.strikes += 1.0;
        let limit = (abuse_secs as f32 * per_min as f32 / 60.0).max(ABUSE_MIN);
        if abuse_secs > 0 && self.strikes > limit {
            Verdict::Abuse
        } else {
            Verdict::Refuse
        }
    }

    /// Milliseconds until the bucket is full again.
    pub fn full_in_ms(&self, per_min: u32) -> u64 {
        let missing = (capacity(per_min) - self.tokens).max(0.0);
        (missing * 60_000.0 / per_min.max(1) as f32).ceil() as u64
    }

    /// When ([`Clock::monotonic_ms`]) the bucket is full and every strike forgiven: from
    /// then on it is the same as a new one.
    fn settled_at_ms(&self, per_min: u32) -> u64 {
        let strikes_ms = (self.strikes * 60_000.0 / per_min.max(1) as f32).ceil() as u64;
        self.at_ms + self.full_in_ms(per_min).max(strikes_ms)
    }
}

/// Report buckets of devices that disconnected before theirs refilled: a reconnect takes its
/// bucket back instead of a full one, so reconnecting buys no extra burst. An entry lives only
/// until its bucket would have refilled (two seconds of the rate, or as long as its strikes take
/// to be forgiven), and is swept every 10 s.
#[derive(Default)]
pub struct CarriedBuckets(
    std::sync::Mutex<std::collections::HashMap<Box<str>, (ReportBucket, u64)>>,
);

impl CarriedBuckets {
    fn lock(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::HashMap<Box<str>, (ReportBucket, u64)>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Keep a closing session's bucket, unless it is as good as new at `now_ms`
    /// ([`Clock::monotonic_ms`], as every time here).
    pub fn put(&self, did: &str, limiter: ReportBucket, per_min: u32, now_ms: u64) {
        let until = limiter.settled_at_ms(per_min);
        if until > now_ms {
            self.lock().insert(did.into(), (limiter, until));
        }
    }

    /// The bucket a device left, if it has not refilled since.
    pub fn take(&self, did: &str, now_ms: u64) -> Option<ReportBucket> {
        let (limiter, until) = self.lock().remove(did)?;
        (until > now_ms).then_some(limiter)
    }

    /// Drop the buckets that have refilled.
    pub fn sweep(&self, now_ms: u64) {
        self.lock().retain(|_, (_, until)| *until > now_ms);
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A device that used up its burst and reconnects gets its spent bucket back, not a new one;
    /// a bucket that has refilled is not kept at all.
    #[test]
    fn a_reconnect_takes_back_the_spent_report_bucket() {
        let per_min = 600; // burst 20
        let carried = CarriedBuckets::default();
        let now = 5_000;
        let mut l = ReportBucket::new(per_min, now);
        for _ in 0..20 {
            assert_eq!(l.check(now, per_min, 10), Verdict::Allow);
        }
        assert_eq!(l.check(now, per_min, 10), Verdict::Refuse);
        carried.put("d1", l, per_min, now);
        assert!(carried.take("d2", now).is_none());
        let mut back = carried.take("d1", now).expect("the spent bucket is kept");
        assert_eq!(back.check(now, per_min, 10), Verdict::Refuse);
        assert!(carried.take("d1", now).is_none(), "taken once");
        // A full bucket is as good as new: nothing is kept.
        carried.put("d3", ReportBucket::new(per_min, now), per_min, now);
        assert_eq!(carried.len(), 0);
        // An entry past its refill time is neither handed out nor kept by a sweep.
        let past = now - 1;
        carried.lock().insert("d4".into(), (l, past));
        assert!(carried.take("d4", now).is_none());
        carried.lock().insert("d4".into(), (l, past));
        carried.sweep(now);
        assert_eq!(carried.len(), 0);
    }

    /// Publishing at 1.5 times the rate is refused in part but never closed; at 3 times the rate
    /// the refusals pile up until the connection is closed. Time is passed in, not waited for.
    #[test]
    fn report_rate_refuses_then_closes_only_sustained_abuse() {
        let per_min = 600; // 10 a second, burst 20
        let run = |per_sec: u64, secs: u64| {
            let start = 1_000;
            let mut l = ReportBucket::new(per_min, start);
            let (mut allowed, mut refused) = (0u64, 0u64);
            for i in 0..per_sec * secs {
                let now = start + i * 1_000 / per_sec;
                match l.check(now, per_min, 10) {
                    Verdict::Allow => allowed += 1,
                    Verdict::Refuse => refused += 1,
                    Verdict::Abuse => return (allowed, refused, Some(i)),
                }
            }
            (allowed, refused, None)
        };
        let (allowed, refused, closed) = run(15, 60);
        assert_eq!(closed, None);
        // 20 of burst and 10 a second (give or take one for rounding)
        assert!((619..=621).contains(&allowed), "{allowed}");
        assert_eq!(allowed + refused, 900);
        let (_, refused, closed) = run(30, 60);
        let at = closed.expect("closed for abuse");
        // 100 strikes (10 s of the rate), forgiven at 10 a second while 20 a second are refused
        assert!(
            refused > 100 && at < 30 * 15,
            "{refused} refused, closed at {at}"
        );
        // with the rule off, never
        let now = 1_000;
        let mut l = ReportBucket::new(per_min, now);
        assert!((0..10_000).all(|_| l.check(now, per_min, 0) != Verdict::Abuse));
    }
}
