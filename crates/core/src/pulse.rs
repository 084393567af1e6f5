//! The server's recent activity by minute: reports stored and calls, connects and publishes
//! refused by each named limit, over the last hour. It answers "what is the fleet doing now" for
//! people (the console's overview, `GET /v1/admin/activity`), where `/metrics` answers the same
//! for a scraper that keeps its own history.
//!
//! Counted where the Prometheus counters are counted (the report writer and
//! [`crate::limits::api::count_refusal`]), so both always agree. Like the metrics recorder it is
//! one per process; minutes are wall-clock minutes of the core's [`Clock`] (the last core made
//! in the process: a server has one), so nodes' charts line up and a test's skipped wait moves
//! the pulse too.

use crate::clock::Clock;
use std::collections::BTreeMap;
use std::sync::Mutex;

/// How many minutes are kept (the current one included).
pub const MINUTES: usize = 60;

const MINUTE_MS: i64 = 60_000;

/// One minute's counts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Minute {
    /// Start of the minute, unix ms.
    pub start_ms: i64,
    /// Reports written to the store.
    pub reports: u64,
    /// Refusals by limit name.
    pub refusals: BTreeMap<&'static str, u64>,
}

/// A ring of [`MINUTES`] slots; a slot whose `start_ms` is not the minute asked about is empty.
pub struct Pulse {
    slots: Mutex<Vec<Minute>>,
    clock: Mutex<Option<Clock>>,
}

impl Pulse {
    pub const fn new() -> Pulse {
        Pulse {
            slots: Mutex::new(Vec::new()),
            clock: Mutex::new(None),
        }
    }

    /// Count by `clock` from now on (`Core::new` hands over its own).
    pub fn follow(&self, clock: &Clock) {
        *self.clock.lock().unwrap_or_else(|p| p.into_inner()) = Some(clock.clone());
    }

    /// Now, unix ms, by the clock followed (the system's before any core exists).
    pub fn now_ms(&self) -> i64 {
        self.clock
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .unwrap_or_default()
            .now_ms()
    }

    fn with_minute(&self, now_ms: i64, f: impl FnOnce(&mut Minute)) {
        let start = now_ms - now_ms.rem_euclid(MINUTE_MS);
        let idx = (start / MINUTE_MS).rem_euclid(MINUTES as i64) as usize;
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        if slots.len() < MINUTES {
            slots.resize(MINUTES, Minute::default());
        }
        let slot = &mut slots[idx];
        if slot.start_ms != start {
            *slot = Minute {
                start_ms: start,
                ..Minute::default()
            };
        }
        f(slot);
    }

    pub fn add_reports(&self, now_ms: i64, n: u64) {
        self.with_minute(now_ms, |m| m.reports += n);
    }

    pub fn add_refusal(&self, now_ms: i64, limit: &'static str) {
        self.with_minute(now_ms, |m| *m.refusals.entry(limit).or_default() += 1);
    }

    /// The last [`MINUTES`] minutes up to the one holding `now_ms`, oldest first; minutes with
    /// nothing counted are present with zeros, so a chart has no gaps.
    pub fn last_hour(&self, now_ms: i64) -> Vec<Minute> {
        let current = now_ms - now_ms.rem_euclid(MINUTE_MS);
        let slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        (0..MINUTES as i64)
            .rev()
            .map(|back| {
                let start = current - back * MINUTE_MS;
                let idx = (start / MINUTE_MS).rem_euclid(MINUTES as i64) as usize;
                match slots.get(idx) {
                    Some(m) if m.start_ms == start => m.clone(),
                    _ => Minute {
                        start_ms: start,
                        ..Minute::default()
                    },
                }
            })
            .collect()
    }
}

impl Default for Pulse {
    fn default() -> Pulse {
        Pulse::new()
    }
}

/// The process's pulse.
pub static PULSE: Pulse = Pulse::new();

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_765_000_000_000 - 1_765_000_000_000 % MINUTE_MS;

    #[test]
    fn counts_land_in_their_minute_and_the_hour_has_no_gaps() {
        let p = Pulse::new();
        p.add_reports(T0 + 5, 3);
        p.add_reports(T0 + 59_999, 2);
        p.add_refusal(T0 + 61_000, "http.ip");
        p.add_refusal(T0 + 62_000, "http.ip");
        p.add_refusal(T0 + 62_000, "mqtt.report_rate");
        let h = p.last_hour(T0 + 90_000);
        assert_eq!(h.len(), MINUTES);
        assert_eq!(h[MINUTES - 1].start_ms, T0 + MINUTE_MS);
        assert_eq!(h[MINUTES - 2].start_ms, T0);
        assert_eq!(h[MINUTES - 2].reports, 5);
        assert_eq!(h[MINUTES - 1].refusals["http.ip"], 2);
        assert_eq!(h[MINUTES - 1].refusals["mqtt.report_rate"], 1);
        assert!(h[..MINUTES - 2]
            .iter()
            .all(|m| m.reports == 0 && m.refusals.is_empty()));
        assert!(h
            .windows(2)
            .all(|w| w[1].start_ms - w[0].start_ms == MINUTE_MS));
    }

    /// A slot reused an hour later starts from zero, and minutes older than the hour are gone.
    #[test]
    fn an_hour_later_the_old_counts_are_gone() {
        let p = Pulse::new();
        p.add_reports(T0, 7);
        let later = T0 + MINUTES as i64 * MINUTE_MS;
        p.add_reports(later, 1);
        let h = p.last_hour(later);
        assert_eq!(h[MINUTES - 1].reports, 1);
        assert_eq!(h.iter().map(|m| m.reports).sum::<u64>(), 1);
        // Asked about a time past the hour with no counts since: all zeros.
        let h = p.last_hour(later + 2 * MINUTES as i64 * MINUTE_MS);
        assert_eq!(h.iter().map(|m| m.reports).sum::<u64>(), 0);
    }
}
