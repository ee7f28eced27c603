//! The bar: one minute of trading for one symbol.

use std::sync::Arc;

/// A symbol name, shared cheaply between the store, health and subscribers.
pub type Symbol = Arc<str>;

/// One OHLCV minute bar. `timestamp_ms` is the start of the bar's minute, UTC epoch
/// milliseconds, taken from the data (never from a local clock).
///
/// `vwap` and `trade_count` are optional on the wire; a bar that did not carry them has `None`
/// here, and keeps it through the store, echo, journal and Python (never a made-up `0`).
///
/// The symbol is not part of the bar: the store keys bars by symbol.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Bar {
    pub timestamp_ms: i64,
    pub open: f64,
    pub high: f64,
    pub low: f64,
    pub close: f64,
    pub volume: f64,
    /// Volume-weighted average price of the minute, when the source gave one.
    pub vwap: Option<f64>,
    /// Number of trades in the minute, when the source gave one.
    pub trade_count: Option<u64>,
}

/// Whether a bar is the first report of its minute or a correction of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BarKind {
    /// `"type":"bar"` or no type: the first report of a minute.
    Bar,
    /// `"type":"updated_bar"`: a correction that replaces the stored bar of the same minute.
    UpdatedBar,
}

impl BarKind {
    pub fn as_str(self) -> &'static str {
        match self {
            BarKind::Bar => "bar",
            BarKind::UpdatedBar => "updated_bar",
        }
    }
}

/// Where a bar came from, as the sidecar labels it (`"source"` on the wire).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Source {
    Stream,
    Backfill,
    Replay,
    Synthetic,
}

impl Source {
    pub fn parse(s: &str) -> Option<Source> {
        match s {
            "stream" => Some(Source::Stream),
            "backfill" => Some(Source::Backfill),
            "replay" => Some(Source::Replay),
            "synthetic" => Some(Source::Synthetic),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Source::Stream => "stream",
            Source::Backfill => "backfill",
            Source::Replay => "replay",
            Source::Synthetic => "synthetic",
        }
    }
}
