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
    /// Start of the minute, UTC epoch milliseconds (a multiple of 60,000).
    pub timestamp_ms: i64,
    /// First trade price of the minute.
    pub open: f64,
    /// Highest trade price of the minute.
    pub high: f64,
    /// Lowest trade price of the minute.
    pub low: f64,
    /// Last trade price of the minute.
    pub close: f64,
    /// Shares traded in the minute.
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
    /// The wire name: `"bar"` or `"updated_bar"`.
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
    /// The live websocket stream.
    Stream,
    /// The sidecar's REST backfill of a gap after a (re)connect.
    Backfill,
    /// A recorded file played back (`--source replay`).
    Replay,
    /// Generated bars of the offline mode (`--source synthetic`).
    Synthetic,
}

impl Source {
    /// The source named by its wire name; `None` for a name this version does not know.
    pub fn parse(s: &str) -> Option<Source> {
        match s {
            "stream" => Some(Source::Stream),
            "backfill" => Some(Source::Backfill),
            "replay" => Some(Source::Replay),
            "synthetic" => Some(Source::Synthetic),
            _ => None,
        }
    }

    /// The wire name (`"stream"`, `"backfill"`, `"replay"`, `"synthetic"`).
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Stream => "stream",
            Source::Backfill => "backfill",
            Source::Replay => "replay",
            Source::Synthetic => "synthetic",
        }
    }
}
