//! How late each bar is, in three parts (README, "Every minute accounted for"): the minute's end →
//! the sidecar's receipt of its websocket frame (Alpaca's part), that receipt → the consumer's
//! store (ours: the sidecar, the pipe, the consumer), and the minute's end → its `minute_closed`
//! delivered. Fixed buckets, lock-free; `/metrics` shows them as histograms and the page their
//! p50/p99 for the session (since the consumer started).
//!
//! The receipt is the sidecar's clock, the store and the minute's close the consumer's: on one
//! host they agree; a NATS subscriber on another host measures with its own clock (they may
//! differ: a negative span is counted as 0).

use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

/// Upper bounds of the buckets, in milliseconds (the last bucket is everything above).
pub const BOUNDS_MS: [f64; 16] =
    [1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1_000.0, 2_000.0, 5_000.0, 10_000.0, 30_000.0, 60_000.0, 300_000.0];

/// A histogram of milliseconds.
#[derive(Debug, Default)]
pub struct Histogram {
    buckets: [AtomicU64; BOUNDS_MS.len() + 1],
    sum_ms: AtomicU64,
}

/// A copy of a [`Histogram`].
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct HistogramSnapshot {
    /// Observations per bucket (not cumulative), [`BOUNDS_MS`] then the overflow.
    pub buckets: Vec<u64>,
    /// Sum of the observations (ms).
    pub sum_ms: u64,
    /// Observations.
    pub count: u64,
    /// Median (ms, the bucket's upper bound; `None` without observations).
    pub p50_ms: Option<f64>,
    /// 99th percentile (ms, the bucket's upper bound).
    pub p99_ms: Option<f64>,
}

impl Histogram {
    /// Count one span of `ms` (a negative one, from clocks that differ, as 0).
    pub fn record(&self, ms: i64) {
        let ms = ms.max(0) as u64;
        let i = BOUNDS_MS.iter().position(|b| ms as f64 <= *b).unwrap_or(BOUNDS_MS.len());
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.sum_ms.fetch_add(ms, Ordering::Relaxed);
    }

    /// A copy, with p50 and p99.
    pub fn snapshot(&self) -> HistogramSnapshot {
        let buckets: Vec<u64> = self.buckets.iter().map(|b| b.load(Ordering::Relaxed)).collect();
        let count = buckets.iter().sum();
        let quantile = |q: f64| {
            if count == 0 {
                return None;
            }
            let rank = (q * count as f64).ceil().max(1.0) as u64;
            let mut seen = 0;
            for (i, n) in buckets.iter().enumerate() {
                seen += n;
                if seen >= rank {
                    return Some(BOUNDS_MS.get(i).copied().unwrap_or(f64::INFINITY));
                }
            }
            None
        };
        HistogramSnapshot { p50_ms: quantile(0.5), p99_ms: quantile(0.99), buckets, sum_ms: self.sum_ms.load(Ordering::Relaxed), count }
    }
}

/// The consumer's three latency histograms.
#[derive(Debug, Default)]
pub struct Latency {
    /// Minute end → the sidecar's receipt of the bar (Alpaca's part).
    pub alpaca: Histogram,
    /// The sidecar's receipt → stored here (ours).
    pub ours: Histogram,
    /// Minute end → its `minute_closed` delivered here.
    pub close: Histogram,
}

/// A copy of [`Latency`] (status file `latency`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LatencySnapshot {
    /// See [`Latency::alpaca`].
    pub minute_end_to_receipt: HistogramSnapshot,
    /// See [`Latency::ours`].
    pub receipt_to_store: HistogramSnapshot,
    /// See [`Latency::close`].
    pub minute_end_to_closed: HistogramSnapshot,
}

impl Latency {
    /// A first report of a minute's bar, received by the sidecar at `received_ms`, stored now.
    pub fn on_stored(&self, minute_ms: i64, received_ms: i64, now_ms: i64) {
        self.alpaca.record(received_ms - (minute_ms + crate::wire::MINUTE_MS));
        self.ours.record(now_ms - received_ms);
    }

    /// A copy of all three.
    pub fn snapshot(&self) -> LatencySnapshot {
        LatencySnapshot {
            minute_end_to_receipt: self.alpaca.snapshot(),
            receipt_to_store: self.ours.snapshot(),
            minute_end_to_closed: self.close.snapshot(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_are_bucket_bounds_and_negative_spans_count_as_zero() {
        let h = Histogram::default();
        assert_eq!(h.snapshot().p50_ms, None);
        for ms in [-5, 3, 3, 40, 40, 40, 40, 40, 40, 70_000] {
            h.record(ms);
        }
        let s = h.snapshot();
        assert_eq!((s.count, s.p50_ms, s.p99_ms), (10, Some(50.0), Some(300_000.0)));
        assert_eq!(s.buckets[0], 1, "the negative span is 0 ms");
        h.record(1_000_000);
        assert_eq!(h.snapshot().p99_ms, Some(f64::INFINITY));
    }
}
