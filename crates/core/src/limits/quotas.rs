//! Window quotas that survive a restart: counters in fixed windows aligned to the window length
//! (an hourly window starts on the hour, a daily one at 00:00 UTC), kept in memory and written to
//! the store by [`Quotas::flush`] (the binary calls it about once a second and at shutdown) and
//! read back by [`Quotas::load`] when the server starts.
//!
//! Bound on loss: a graceful stop flushes everything; a crash (SIGKILL, power loss) loses at most
//! the counts taken since the last flush, one flush interval's worth. A count in the store is never
//! lowered, so a late flush cannot give calls back.
//!
//! Never does I/O on the request path: [`Quotas::take`] is a map lookup under a mutex.

use crate::limits::api::{LimitState, Refusal};
use rampart_store::{QuotaCounterRow, Store};
use std::collections::HashMap;
use std::sync::Mutex;

/// One window quota to check: the counter's name (limit and subject), its size and window.
#[derive(Debug, Clone)]
pub struct Window {
    /// The limit's public name (`access_key.hourly`), as shown in refusals.
    pub limit_name: &'static str,
    /// Counter name: the limit and the subject, e.g. `ak:KEY_ID:3600`.
    pub counter: String,
    pub limit: u64,
    pub window_ms: i64,
}

#[derive(Debug, Clone, Copy)]
struct Count {
    window_start: i64,
    window_ms: i64,
    used: u64,
    dirty: bool,
}

/// The live counters.
#[derive(Debug, Default)]
pub struct Quotas {
    counts: Mutex<HashMap<String, Count>>,
}

/// Counters kept in memory before ended windows are swept.
const SWEEP_AT: usize = 50_000;

impl Quotas {
    /// Take one unit from every window at `now`, or none when any of them is used up (the first
    /// refusal names that window). On success, the state of each window after the call.
    pub fn take(&self, windows: &[Window], now: i64) -> Result<Vec<LimitState>, Refusal> {
        let mut map = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= SWEEP_AT {
            map.retain(|_, c| c.window_start + c.window_ms > now || c.dirty);
        }
        let mut states = Vec::with_capacity(windows.len());
        for w in windows {
            let start = now - now.rem_euclid(w.window_ms.max(1));
            let used = match map.get(&w.counter) {
                Some(c) if c.window_start == start => c.used,
                _ => 0,
            };
            let state = LimitState {
                name: w.limit_name,
                limit: w.limit,
                remaining: w.limit.saturating_sub(used),
                window_secs: (w.window_ms / 1000) as u64,
                reset_at_ms: start + w.window_ms,
            };
            if used >= w.limit {
                return Err(Refusal {
                    retry_after_ms: (state.reset_at_ms - now).max(0) as u64,
                    state,
                });
            }
            states.push(state);
        }
        for (w, state) in windows.iter().zip(states.iter_mut()) {
            let start = state.reset_at_ms - w.window_ms;
            let c = map.entry(w.counter.clone()).or_insert(Count {
                window_start: start,
                window_ms: w.window_ms,
                used: 0,
                dirty: false,
            });
            if c.window_start != start {
                *c = Count {
                    window_start: start,
                    window_ms: w.window_ms,
                    used: 0,
                    dirty: false,
                };
            }
            c.used += 1;
            c.dirty = true;
            state.remaining -= 1;
        }
        Ok(states)
    }

    /// Read the counters of windows still running at `now` from the store (at start).
    pub async fn load(&self, store: &Store, now: i64) -> Result<usize, rampart_store::StoreError> {
        let rows = store.load_quota_counters(now).await?;
        let n = rows.len();
        let mut map = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        for r in rows {
            let used = u64::try_from(r.used).unwrap_or(0);
            let c = map.entry(r.counter).or_insert(Count {
                window_start: r.window_start,
                window_ms: r.window_ms,
                used: 0,
                dirty: false,
            });
            if c.window_start == r.window_start {
                c.used = c.used.max(used);
            } else if c.window_start < r.window_start {
                *c = Count {
                    window_start: r.window_start,
                    window_ms: r.window_ms,
                    used,
                    dirty: false,
                };
            }
        }
        Ok(n)
    }

    /// Write the counters changed since the last flush; on failure they stay marked for the next.
    pub async fn flush(&self, store: &Store, now: i64) -> Result<usize, rampart_store::StoreError> {
        let rows: Vec<QuotaCounterRow> = {
            let mut map = self.counts.lock().unwrap_or_else(|p| p.into_inner());
            map.retain(|_, c| c.window_start + c.window_ms > now || c.dirty);
            map.iter_mut()
                .filter(|(_, c)| c.dirty)
                .map(|(k, c)| {
                    c.dirty = false;
                    QuotaCounterRow {
                        counter: k.clone(),
                        window_start: c.window_start,
                        window_ms: c.window_ms,
                        used: i64::try_from(c.used).unwrap_or(i64::MAX),
                    }
                })
                .collect()
        };
        if rows.is_empty() {
            // Nothing changed: no write (ended rows are purged by the next write).
            return Ok(0);
        }
        if let Err(e) = store.save_quota_counters(&rows, now).await {
            let mut map = self.counts.lock().unwrap_or_else(|p| p.into_inner());
            for r in &rows {
                if let Some(c) = map.get_mut(&r.counter) {
                    if c.window_start == r.window_start {
                        c.dirty = true;
                    }
                }
            }
            return Err(e);
        }
        Ok(rows.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(counter: &str, limit: u64, window_ms: i64) -> Window {
        Window {
            limit_name: "test",
            counter: counter.into(),
            limit,
            window_ms,
        }
    }

    #[test]
    fn fixed_windows_take_from_all_or_none() {
        let q = Quotas::default();
        let ws = [w("a:min", 1, 60_000), w("a:hour", 5, 3_600_000)];
        let s = q.take(&ws, 1_000).unwrap();
        assert_eq!((s[0].remaining, s[1].remaining), (0, 4));
        assert_eq!((s[0].reset_at_ms, s[1].reset_at_ms), (60_000, 3_600_000));
        let r = q.take(&ws, 59_999).unwrap_err();
        assert_eq!((r.state.limit, r.retry_after_ms), (1, 1));
        // the refused call took nothing from the hourly window
        let s = q.take(&ws, 60_000).unwrap();
        assert_eq!(s[1].remaining, 3);
        for t in [120_000, 180_000, 240_000] {
            let _ = q.take(&ws, t);
        }
        let r = q.take(&ws, 300_000).unwrap_err();
        assert_eq!(r.state.window_secs, 3600);
        assert_eq!(r.state.reset_at_ms, 3_600_000);
        assert!(q.take(&ws, 3_600_000).is_ok(), "a new hour");
    }

    #[tokio::test]
    async fn counts_survive_a_flush_and_a_new_process() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_sqlite(&dir.path().join("q.db")).await.unwrap();
        let ws = [w("ak:k:h", 3, 3_600_000)];
        let q = Quotas::default();
        q.take(&ws, 10).unwrap();
        q.take(&ws, 20).unwrap();
        assert_eq!(q.flush(&store, 30).await.unwrap(), 1);
        assert_eq!(q.flush(&store, 31).await.unwrap(), 0, "nothing changed");
        // A new process on the same store: the window goes on where it was.
        let q2 = Quotas::default();
        assert_eq!(q2.load(&store, 40).await.unwrap(), 1);
        assert_eq!(q2.take(&ws, 50).unwrap()[0].remaining, 0);
        assert!(q2.take(&ws, 60).is_err());
        // After the window, nothing is loaded.
        let q3 = Quotas::default();
        assert_eq!(q3.load(&store, 3_600_000).await.unwrap(), 0);
    }
}
