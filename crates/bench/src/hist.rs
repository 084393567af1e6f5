//! A small log-linear latency histogram (microseconds): exact below 512 µs, then 256 sub-buckets per
//! power of two (relative error under 0.2 %). Mergeable across workers and serialisable sparsely, so
//! worker processes can hand their histograms to the parent.

use serde::{Deserialize, Serialize};

/// Sub-buckets per power of two, as a power of two.
const SUB_BITS: u32 = 8;
const SUB: u64 = 1 << SUB_BITS;
/// Values below this are their own bucket.
const EXACT: u64 = 2 * SUB;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Histogram {
    counts: Vec<u64>,
    total: u64,
    max: u64,
    sum: u64,
}

/// Bucket index of a value.
fn bucket(v: u64) -> usize {
    if v < EXACT {
        return v as usize;
    }
    let log2 = 63 - u64::from(v.leading_zeros());
    let shift = log2 - u64::from(SUB_BITS);
    let mantissa = v >> shift; // in SUB..2*SUB
    (EXACT + (shift - 1) * SUB + (mantissa - SUB)) as usize
}

/// Lowest and highest value that fall in bucket `b`.
fn bucket_range(b: usize) -> (u64, u64) {
    let b = b as u64;
    if b < EXACT {
        return (b, b);
    }
    let shift = (b - EXACT) / SUB + 1;
    let mantissa = (b - EXACT) % SUB + SUB;
    let low = mantissa << shift;
    (low, low + (1 << shift) - 1)
}

impl Histogram {
    pub fn new() -> Histogram {
        Histogram::default()
    }

    /// Record one value (µs).
    pub fn record(&mut self, v: u64) {
        let b = bucket(v);
        if self.counts.len() <= b {
            self.counts.resize(b + 1, 0);
        }
        self.counts[b] += 1;
        self.total += 1;
        self.max = self.max.max(v);
        self.sum = self.sum.saturating_add(v);
    }

    pub fn count(&self) -> u64 {
        self.total
    }

    pub fn max(&self) -> u64 {
        self.max
    }

    pub fn mean(&self) -> Option<f64> {
        (self.total > 0).then(|| self.sum as f64 / self.total as f64)
    }

    pub fn merge(&mut self, other: &Histogram) {
        if self.counts.len() < other.counts.len() {
            self.counts.resize(other.counts.len(), 0);
        }
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        self.total += other.total;
        self.max = self.max.max(other.max);
        self.sum = self.sum.saturating_add(other.sum);
    }

    /// The nearest-rank percentile `p` (0-100]: the smallest recorded value such that at least `p` %
    /// of the values are at or below it. Exact below 512 µs; above, the middle of its bucket (never
    /// more than the maximum). `None` when empty.
    pub fn percentile(&self, p: f64) -> Option<u64> {
        if self.total == 0 {
            return None;
        }
        let rank = ((p / 100.0) * self.total as f64)
            .ceil()
            .clamp(1.0, self.total as f64) as u64;
        let mut seen = 0;
        for (b, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                let (lo, hi) = bucket_range(b);
                return Some((lo + (hi - lo) / 2).min(self.max));
            }
        }
        Some(self.max)
    }
}

/// Wire form: only the non-empty buckets.
#[derive(Serialize, Deserialize)]
struct Wire {
    total: u64,
    max: u64,
    sum: u64,
    buckets: Vec<(u32, u64)>,
}

impl Serialize for Histogram {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        Wire {
            total: self.total,
            max: self.max,
            sum: self.sum,
            buckets: self
                .counts
                .iter()
                .enumerate()
                .filter(|(_, &c)| c > 0)
                .map(|(b, &c)| (b as u32, c))
                .collect(),
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for Histogram {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let w = Wire::deserialize(d)?;
        let mut h = Histogram {
            counts: Vec::new(),
            total: w.total,
            max: w.max,
            sum: w.sum,
        };
        for (b, c) in w.buckets {
            let b = b as usize;
            if b > bucket(u64::MAX) {
                return Err(serde::de::Error::custom("histogram bucket out of range"));
            }
            if h.counts.len() <= b {
                h.counts.resize(b + 1, 0);
            }
            h.counts[b] += c;
        }
        Ok(h)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_cover_values() {
        for v in [
            0,
            1,
            511,
            512,
            513,
            1000,
            4095,
            4096,
            123_456,
            10_000_000,
            u64::MAX / 2,
        ] {
            let (lo, hi) = bucket_range(bucket(v));
            assert!(lo <= v && v <= hi, "{v} not in [{lo},{hi}]");
            if v >= EXACT {
                assert!((hi - lo) as f64 / lo as f64 <= 1.0 / SUB as f64);
            }
        }
        // Buckets are contiguous and increasing.
        for b in 0..5000 {
            assert_eq!(bucket_range(b).1 + 1, bucket_range(b + 1).0);
        }
    }

    #[test]
    fn nearest_rank_exact_range() {
        let mut h = Histogram::new();
        for v in (1..=100).rev() {
            h.record(v);
        }
        assert_eq!(h.percentile(50.0), Some(50));
        assert_eq!(h.percentile(90.0), Some(90));
        assert_eq!(h.percentile(99.0), Some(99));
        assert_eq!(h.percentile(100.0), Some(100));
        assert_eq!(h.percentile(0.0), Some(1));
        assert_eq!(h.max(), 100);
        assert_eq!(h.mean(), Some(50.5));
        assert_eq!(Histogram::new().percentile(50.0), None);
    }

    #[test]
    fn large_values_are_close_and_capped_by_max() {
        let mut h = Histogram::new();
        h.record(1_000_000);
        let p = h.percentile(50.0).unwrap();
        assert!((p as f64 - 1e6).abs() / 1e6 < 0.004, "{p}");
        assert!(p <= 1_000_000);
        let mut h = Histogram::new();
        for _ in 0..99 {
            h.record(10);
        }
        h.record(50_000);
        assert_eq!(h.percentile(99.0), Some(10));
        let top = h.percentile(99.5).unwrap();
        assert!(top <= 50_000 && top > 49_800, "{top}");
        assert_eq!(h.max(), 50_000);
    }

    #[test]
    fn merge_and_wire_round_trip() {
        let mut a = Histogram::new();
        let mut b = Histogram::new();
        for v in 0..1000 {
            a.record(v * 7);
            b.record(v * 13 + 5);
        }
        let mut m = a.clone();
        m.merge(&b);
        assert_eq!(m.count(), 2000);
        assert_eq!(m.max(), 999 * 13 + 5);
        let text = serde_json::to_string(&m).unwrap();
        let back: Histogram = serde_json::from_str(&text).unwrap();
        assert_eq!(back, m);
        assert_eq!(back.percentile(99.0), m.percentile(99.0));
    }
}
