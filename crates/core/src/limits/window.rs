//! In-memory sliding-window rate limits keyed by a string (a user id, a recipient), with the
//! clock passed in so the arithmetic is testable without waiting.
//!
//! Single-node state: a multi-node deployment would move these counters to the shared bus.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

/// At most `max` events per `window_ms` per key.
#[derive(Debug)]
pub struct SlidingWindow {
    max: usize,
    window_ms: i64,
    hits: Mutex<HashMap<String, VecDeque<i64>>>,
}

/// Keys kept before stale ones are swept.
const SWEEP_AT: usize = 10_000;

impl SlidingWindow {
    pub fn new(max: usize, window_ms: i64) -> SlidingWindow {
        SlidingWindow {
            max,
            window_ms,
            hits: Mutex::default(),
        }
    }

    /// Count an event for `key` at `now`; false (and not counted) when over the limit.
    pub fn check(&self, key: &str, now: i64) -> bool {
        let mut map = self.hits.lock().unwrap_or_else(|p| p.into_inner());
        let since = now - self.window_ms;
        if map.len() >= SWEEP_AT {
            map.retain(|_, q| q.back().is_some_and(|t| *t > since));
        }
        let q = map.entry(key.to_owned()).or_default();
        while q.front().is_some_and(|t| *t <= since) {
            q.pop_front();
        }
        if q.len() >= self.max {
            return false;
        }
        q.push_back(now);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sliding_window() {
        let l = SlidingWindow::new(2, 1000);
        assert!(l.check("a", 0));
        assert!(l.check("a", 10));
        assert!(!l.check("a", 999));
        assert!(l.check("b", 999));
        // the first hit leaves the window at 1000
        assert!(l.check("a", 1000));
        assert!(!l.check("a", 1009));
        assert!(l.check("a", 1011));
    }

    #[test]
    fn one_per_minute() {
        let l = SlidingWindow::new(1, 60_000);
        assert!(l.check("x@y.z", 5));
        assert!(!l.check("x@y.z", 60_004));
        assert!(l.check("x@y.z", 60_005));
    }
}
