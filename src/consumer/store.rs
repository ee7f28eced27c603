//! Per-symbol, time-ordered, bounded bar store. Knows nothing of FIFOs or wire formats.
//!
//! ```
//! use barbridge::{Bar, BarStore, InsertMode, Inserted};
//! let store = BarStore::new(10_000).unwrap();
//! let bar = Bar { timestamp_ms: 60_000, open: 1.0, high: 2.0, low: 0.5, close: 1.5,
//!                 volume: 10.0, vwap: Some(1.2), trade_count: Some(3) };
//! assert_eq!(store.insert("SPY", bar, InsertMode::FirstReport).1, Inserted::Appended);
//! assert_eq!(store.insert("SPY", bar, InsertMode::FirstReport).1, Inserted::Duplicate);
//! assert_eq!(store.latest("SPY"), Some(bar));
//! ```

use std::collections::VecDeque;
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex, RwLock};

use rustc_hash::FxHashMap;

use crate::bar::{Bar, Symbol};
use crate::capacity::CapacityError;
use crate::consumer::health::SymbolHealth;

/// Default bound on stored bars per symbol.
pub const DEFAULT_CAPACITY_PER_SYMBOL: usize = 10_000;

pub use crate::capacity::{DEFAULT_MAX_SYMBOLS, MAX_MAX_SYMBOLS};

/// The store's symbol bound, checked: 1 to [`MAX_MAX_SYMBOLS`].
pub(crate) fn check_max_symbols(n: usize) -> Result<NonZeroUsize, CapacityError> {
    crate::capacity::check("symbols kept in the store (max_symbols)", n, MAX_MAX_SYMBOLS)
}

/// The store's bound per symbol, checked: at least 1 (no upper bound: memory follows the bars
/// held, not the bound).
pub(crate) fn check_capacity_per_symbol(n: usize) -> Result<NonZeroUsize, CapacityError> {
    crate::capacity::check("bars kept per symbol", n, usize::MAX)
}

/// How an incoming bar relates to a stored bar of the same minute.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InsertMode {
    /// A first report (`bar` from the stream, replay): a stored bar of the same minute wins.
    FirstReport,
    /// An authoritative version (`updated_bar`, REST backfill): replaces a stored bar that differs.
    Correction,
}

/// What the store did with a bar.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Inserted {
    /// Newer than every stored bar: appended (the common case).
    Appended,
    /// Older than the newest stored bar: inserted in time order.
    InsertedOutOfOrder,
    /// Same minute as a stored bar with different values, and a correction: replaced it.
    Replaced,
    /// Same minute, same values: nothing changed.
    Duplicate,
    /// Same minute, different values, not a correction: the stored bar was kept.
    Conflict,
    /// Older than everything a full series holds: not stored.
    TooOld,
    /// A new symbol while the store already holds its bound of symbols ([`BarStore::max_symbols`]):
    /// not stored. The symbols it holds go on.
    SymbolBound,
}

impl Inserted {
    /// True when the store changed and subscribers should hear about it.
    pub fn is_delivered(self) -> bool {
        matches!(self, Inserted::Appended | Inserted::InsertedOutOfOrder | Inserted::Replaced)
    }
}

/// A bar as the store keeps it: 60 bytes instead of [`Bar`]'s 80 (the trade count and the
/// presence of the optional fields in 32 bits, and no padding), which is what a full-market store
/// spends most of its memory on.
#[derive(Clone, Copy, Debug)]
#[repr(C, packed(4))]
struct StoredBar {
    timestamp_ms: i64,
    /// open, high, low, close, volume, vwap (0.0 when absent).
    values: [f64; 6],
    /// Bit 31: [`VWAP_ABSENT`]. Bits 0-30: the trade count, or [`COUNT_ABSENT`], or
    /// [`COUNT_LARGE`] (the count is in [`Series::large_trade_counts`]).
    count_and_flags: u32,
}

/// `count_and_flags` bit: the bar carried no vwap.
const VWAP_ABSENT: u32 = 1 << 31;
/// Mask of the trade count in `count_and_flags`.
const COUNT_MASK: u32 = VWAP_ABSENT - 1;
/// Trade count value: the bar carried no trade count.
const COUNT_ABSENT: u32 = COUNT_MASK;
/// Trade count value: too large for 31 bits, kept in the series' side map.
const COUNT_LARGE: u32 = COUNT_MASK - 1;

/// Bytes of memory a stored bar takes in a full series (the store's own overhead is per symbol).
pub const STORED_BAR_BYTES: usize = std::mem::size_of::<StoredBar>();

impl StoredBar {
    fn new(bar: &Bar) -> StoredBar {
        let count = match bar.trade_count {
            None => COUNT_ABSENT,
            Some(n) if n < u64::from(COUNT_LARGE) => n as u32,
            Some(_) => COUNT_LARGE,
        };
        let vwap_flag = if bar.vwap.is_none() { VWAP_ABSENT } else { 0 };
        StoredBar {
            timestamp_ms: bar.timestamp_ms,
            values: [bar.open, bar.high, bar.low, bar.close, bar.volume, bar.vwap.unwrap_or(0.0)],
            count_and_flags: count | vwap_flag,
        }
    }

    fn count(&self) -> u32 {
        self.count_and_flags & COUNT_MASK
    }
}

#[derive(Debug)]
struct Series {
    bars: VecDeque<StoredBar>,
    /// Trade counts that do not fit in 31 bits, by bar timestamp (empty in any real feed: it would
    /// take two billion trades in one bar). Keeps the compact bars lossless.
    large_trade_counts: FxHashMap<i64, u64>,
    /// This symbol's liveness, kept with its bars so that a bar costs one lock.
    health: SymbolHealth,
}

/// Thread-safe store: one reader thread inserts while any number of threads query.
#[derive(Debug)]
pub struct BarStore {
    capacity: usize,
    max_symbols: usize,
    /// Symbols are our own sidecar's, so a fast non-DoS-resistant hash is fine.
    series: RwLock<FxHashMap<Symbol, Arc<Mutex<Series>>>>,
}

impl BarStore {
    /// A store holding at most `capacity_per_symbol` bars per symbol (oldest evicted first) and
    /// at most [`DEFAULT_MAX_SYMBOLS`] symbols.
    ///
    /// # Errors
    /// [`CapacityError::Zero`] for a capacity of 0. Memory grows with the bars actually held,
    /// never with the bound.
    pub fn new(capacity_per_symbol: usize) -> Result<BarStore, CapacityError> {
        BarStore::with_max_symbols(capacity_per_symbol, DEFAULT_MAX_SYMBOLS)
    }

    /// [`BarStore::new`] holding at most `max_symbols` symbols: a bar of a new symbol past it is
    /// [`Inserted::SymbolBound`].
    ///
    /// # Errors
    /// [`CapacityError`] for a capacity or a symbol bound of 0, or a symbol bound over
    /// [`MAX_MAX_SYMBOLS`].
    pub fn with_max_symbols(capacity_per_symbol: usize, max_symbols: usize) -> Result<BarStore, CapacityError> {
        Ok(BarStore::with_bounds(check_capacity_per_symbol(capacity_per_symbol)?, check_max_symbols(max_symbols)?))
    }

    pub(crate) fn with_bounds(capacity_per_symbol: NonZeroUsize, max_symbols: NonZeroUsize) -> BarStore {
        BarStore { capacity: capacity_per_symbol.get(), max_symbols: max_symbols.get(), series: RwLock::new(FxHashMap::default()) }
    }

    /// Bars kept per symbol before the oldest is evicted.
    pub fn capacity_per_symbol(&self) -> usize {
        self.capacity
    }

    /// Symbols the store holds at most; bars of further symbols are refused.
    pub fn max_symbols(&self) -> usize {
        self.max_symbols
    }

    /// Symbols the store holds now.
    pub fn symbol_count(&self) -> usize {
        self.series.read().unwrap_or_else(|e| e.into_inner()).len()
    }

    fn series(&self, symbol: &str) -> Option<(Symbol, Arc<Mutex<Series>>)> {
        let map = self.series.read().unwrap_or_else(|e| e.into_inner());
        map.get_key_value(symbol).map(|(k, v)| (k.clone(), v.clone()))
    }

    /// The symbol's series, created if the store holds fewer than `max_symbols`; `None` past it.
    fn series_or_create(&self, symbol: &str) -> Option<(Symbol, Arc<Mutex<Series>>)> {
        if let Some(found) = self.series(symbol) {
            return Some(found);
        }
        let mut map = self.series.write().unwrap_or_else(|e| e.into_inner());
        if let Some((k, v)) = map.get_key_value(symbol) {
            return Some((k.clone(), v.clone())); // created by another thread meanwhile
        }
        if map.len() >= self.max_symbols {
            return None;
        }
        let name: Symbol = Arc::from(symbol);
        let health = SymbolHealth { bars: 0, last_bar_ts_ms: i64::MIN, last_received_ms: i64::MIN };
        let series = Arc::new(Mutex::new(Series { bars: VecDeque::new(), large_trade_counts: FxHashMap::default(), health }));
        map.insert(name.clone(), series.clone());
        Some((name, series))
    }

    /// Insert one bar; returns the shared symbol name and what happened.
    pub fn insert(&self, symbol: &str, bar: Bar, mode: InsertMode) -> (Symbol, Inserted) {
        self.insert_received(symbol, bar, mode, None)
    }

    /// [`BarStore::insert`], recording when the bar arrived (for [`BarStore::symbol_health`]).
    pub(crate) fn insert_received(&self, symbol: &str, bar: Bar, mode: InsertMode, received_ms: Option<i64>) -> (Symbol, Inserted) {
        {
            // The common case, a known symbol: one read lock and one series lock, no clones
            // but the name's.
            let map = self.series.read().unwrap_or_else(|e| e.into_inner());
            if let Some((name, series)) = map.get_key_value(symbol) {
                let mut s = series.lock().unwrap_or_else(|e| e.into_inner());
                return (name.clone(), s.insert(bar, mode, self.capacity, received_ms));
            }
        }
        let Some((name, series)) = self.series_or_create(symbol) else {
            return (Symbol::from(symbol), Inserted::SymbolBound);
        };
        let mut s = series.lock().unwrap_or_else(|e| e.into_inner());
        let outcome = s.insert(bar, mode, self.capacity, received_ms);
        (name, outcome)
    }

    /// Per-symbol liveness of every symbol that has accepted a bar.
    pub fn symbol_health(&self) -> std::collections::BTreeMap<String, SymbolHealth> {
        let map = self.series.read().unwrap_or_else(|e| e.into_inner());
        map.iter()
            .filter_map(|(name, series)| {
                let s = series.lock().unwrap_or_else(|e| e.into_inner());
                (s.health.bars > 0).then(|| (name.to_string(), s.health.clone()))
            })
            .collect()
    }

    /// [`BarStore::symbol_health`] of at most `max` symbols, those updated least recently (ties
    /// by name), and how many were left out. Allocates only for the symbols it returns, so a
    /// status file of a consumer with 200,000 symbols stays cheap.
    pub fn symbol_health_least_recent(&self, max: usize) -> (std::collections::BTreeMap<String, SymbolHealth>, usize) {
        let map = self.series.read().unwrap_or_else(|e| e.into_inner());
        let mut all: Vec<(i64, &str, &Arc<Mutex<Series>>)> = map
            .iter()
            .filter_map(|(name, series)| {
                let s = series.lock().unwrap_or_else(|e| e.into_inner());
                (s.health.bars > 0).then(|| (s.health.last_received_ms, &**name, series))
            })
            .collect();
        let omitted = all.len().saturating_sub(max);
        if omitted > 0 {
            all.select_nth_unstable_by(max, |a, b| (a.0, a.1).cmp(&(b.0, b.1)));
            all.truncate(max);
        }
        let picked =
            all.into_iter().map(|(_, name, series)| (name.to_owned(), series.lock().unwrap_or_else(|e| e.into_inner()).health.clone())).collect();
        (picked, omitted)
    }

    /// The newest bar of `symbol`.
    pub fn latest(&self, symbol: &str) -> Option<Bar> {
        let (_, series) = self.series(symbol)?;
        let s = series.lock().unwrap_or_else(|e| e.into_inner());
        s.bars.back().map(|b| s.unpack(b))
    }

    /// The newest `n` bars of `symbol`, oldest first.
    pub fn last_n(&self, symbol: &str, n: usize) -> Vec<Bar> {
        let Some((_, series)) = self.series(symbol) else { return Vec::new() };
        let s = series.lock().unwrap_or_else(|e| e.into_inner());
        let skip = s.bars.len().saturating_sub(n);
        s.bars.range(skip..).map(|b| s.unpack(b)).collect()
    }

    /// Bars of `symbol` with `from_ms <= timestamp_ms < to_ms`, oldest first.
    pub fn range(&self, symbol: &str, from_ms: i64, to_ms: i64) -> Vec<Bar> {
        self.collect_between(symbol, from_ms, to_ms, Series::unpack)
    }

    /// Timestamps of the bars of `symbol` with `from_ms <= timestamp_ms < to_ms`, oldest first:
    /// [`BarStore::range`] at an eighth of the copying (the status file's session holes).
    pub fn timestamps(&self, symbol: &str, from_ms: i64, to_ms: i64) -> Vec<i64> {
        self.collect_between(symbol, from_ms, to_ms, |_, b| b.timestamp_ms)
    }

    /// `pick` of each bar of `symbol` with `from_ms <= timestamp_ms < to_ms`, oldest first.
    fn collect_between<T>(&self, symbol: &str, from_ms: i64, to_ms: i64, pick: impl Fn(&Series, &StoredBar) -> T) -> Vec<T> {
        let Some((_, series)) = self.series(symbol) else { return Vec::new() };
        let s = series.lock().unwrap_or_else(|e| e.into_inner());
        let start = s.bars.partition_point(|b| b.timestamp_ms < from_ms);
        let end = s.bars.partition_point(|b| b.timestamp_ms < to_ms).max(start);
        s.bars.range(start..end).map(|b| pick(&s, b)).collect()
    }

    /// Number of bars stored for `symbol`.
    pub fn len(&self, symbol: &str) -> usize {
        self.series(symbol).map_or(0, |(_, s)| s.lock().unwrap_or_else(|e| e.into_inner()).bars.len())
    }

    /// Total bars stored over all symbols.
    pub fn total_len(&self) -> usize {
        let map = self.series.read().unwrap_or_else(|e| e.into_inner());
        map.values().map(|s| s.lock().unwrap_or_else(|e| e.into_inner()).bars.len()).sum()
    }

    /// Every symbol that has bars, sorted.
    pub fn symbols(&self) -> Vec<Symbol> {
        let map = self.series.read().unwrap_or_else(|e| e.into_inner());
        let mut names: Vec<Symbol> = map.keys().cloned().collect();
        names.sort();
        names
    }
}

impl Series {
    #[inline]
    fn unpack(&self, b: &StoredBar) -> Bar {
        let [open, high, low, close, volume, vwap] = b.values;
        let vwap = (b.count_and_flags & VWAP_ABSENT == 0).then_some(vwap);
        let trade_count = match b.count() {
            COUNT_ABSENT => None,
            COUNT_LARGE => Some(self.large_trade_count(b.timestamp_ms)),
            n => Some(u64::from(n)),
        };
        Bar { timestamp_ms: b.timestamp_ms, open, high, low, close, volume, vwap, trade_count }
    }

    #[cold]
    fn large_trade_count(&self, timestamp_ms: i64) -> u64 {
        self.large_trade_counts.get(&timestamp_ms).copied().unwrap_or(u64::MAX)
    }

    /// Keep `bar` at a position of the series: its compact form, and its trade count aside if large.
    fn stored(&mut self, bar: &Bar) -> StoredBar {
        let stored = StoredBar::new(bar);
        if let (COUNT_LARGE, Some(n)) = (stored.count(), bar.trade_count) {
            self.large_trade_counts.insert(bar.timestamp_ms, n);
        }
        stored
    }

    /// A bar leaves the series (evicted or replaced).
    fn forget(&mut self, old: StoredBar) {
        if old.count() == COUNT_LARGE {
            self.large_trade_counts.remove(&{ old.timestamp_ms });
        }
    }

    fn evict_oldest(&mut self) {
        if let Some(old) = self.bars.pop_front() {
            self.forget(old);
        }
    }

    /// Grow by doubling but never past `capacity`: a full series holds exactly `capacity` bars
    /// of memory (60 bytes each), not the next power of two.
    fn make_room(&mut self, capacity: usize) {
        let (len, cap) = (self.bars.len(), self.bars.capacity());
        if len == cap && cap < capacity {
            let target = (cap * 2).max(16).min(capacity);
            self.bars.reserve_exact(target - len);
        }
    }

    fn insert(&mut self, bar: Bar, mode: InsertMode, capacity: usize, received_ms: Option<i64>) -> Inserted {
        let outcome = self.place(bar, mode, capacity);
        if outcome.is_delivered() {
            let h = &mut self.health;
            h.bars += 1;
            h.last_bar_ts_ms = h.last_bar_ts_ms.max(bar.timestamp_ms);
            if let Some(ms) = received_ms {
                h.last_received_ms = ms;
            }
        }
        outcome
    }

    fn place(&mut self, bar: Bar, mode: InsertMode, capacity: usize) -> Inserted {
        let ts = bar.timestamp_ms;
        self.make_room(capacity);
        if self.bars.back().is_none_or(|last| last.timestamp_ms < ts) {
            if self.bars.len() >= capacity {
                self.evict_oldest();
            }
            let stored = self.stored(&bar);
            self.bars.push_back(stored);
            return Inserted::Appended;
        }
        match self.bars.binary_search_by_key(&ts, |b| b.timestamp_ms) {
            Ok(i) => {
                if self.unpack(&self.bars[i]) == bar {
                    Inserted::Duplicate
                } else if mode == InsertMode::Correction {
                    let old = self.bars[i];
                    self.forget(old);
                    self.bars[i] = self.stored(&bar);
                    Inserted::Replaced
                } else {
                    Inserted::Conflict
                }
            }
            Err(0) if self.bars.len() >= capacity => Inserted::TooOld,
            Err(i) => {
                // Full: the oldest goes first, so the buffer never grows past `capacity`.
                let i = if self.bars.len() >= capacity {
                    self.evict_oldest();
                    i - 1
                } else {
                    i
                };
                let stored = self.stored(&bar);
                self.bars.insert(i, stored);
                Inserted::InsertedOutOfOrder
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bar(ts: i64, close: f64) -> Bar {
        Bar { timestamp_ms: ts, open: close, high: close, low: close, close, volume: 1.0, vwap: Some(close), trade_count: Some(1) }
    }

    #[test]
    fn out_of_order_bars_are_inserted_in_place() {
        let store = BarStore::new(100).unwrap();
        for ts in [3, 1, 5, 2, 4] {
            store.insert("SPY", bar(ts * 60_000, 1.0), InsertMode::FirstReport);
        }
        let ts: Vec<i64> = store.last_n("SPY", 10).iter().map(|b| b.timestamp_ms / 60_000).collect();
        assert_eq!(ts, vec![1, 2, 3, 4, 5]);
    }

    #[test]
    fn duplicates_conflicts_and_corrections() {
        let store = BarStore::new(100).unwrap();
        assert_eq!(store.insert("A", bar(60_000, 1.0), InsertMode::FirstReport).1, Inserted::Appended);
        assert_eq!(store.insert("A", bar(120_000, 1.0), InsertMode::FirstReport).1, Inserted::Appended);
        assert_eq!(store.insert("A", bar(60_000, 1.0), InsertMode::FirstReport).1, Inserted::Duplicate);
        assert_eq!(store.insert("A", bar(60_000, 2.0), InsertMode::FirstReport).1, Inserted::Conflict);
        assert_eq!(store.latest("A").unwrap().close, 1.0);
        assert_eq!(store.range("A", 60_000, 120_000)[0].close, 1.0);
        assert_eq!(store.insert("A", bar(60_000, 2.0), InsertMode::Correction).1, Inserted::Replaced);
        assert_eq!(store.range("A", 60_000, 120_000), vec![bar(60_000, 2.0)]);
        assert_eq!(store.timestamps("A", 0, i64::MAX), vec![60_000, 120_000]);
        assert_eq!(store.timestamps("A", 60_001, 120_001), vec![120_000]);
        assert!(store.timestamps("A", 0, 60_000).is_empty());
        assert_eq!(store.insert("A", bar(60_000, 2.0), InsertMode::Correction).1, Inserted::Duplicate);
        assert_eq!(store.len("A"), 2);
    }

    #[test]
    fn bounded_per_symbol_evicts_oldest() {
        let store = BarStore::new(3).unwrap();
        for ts in 1..=5 {
            store.insert("A", bar(ts, 1.0), InsertMode::FirstReport);
        }
        let ts: Vec<i64> = store.last_n("A", 10).iter().map(|b| b.timestamp_ms).collect();
        assert_eq!(ts, vec![3, 4, 5]);
        assert_eq!(store.insert("A", bar(1, 1.0), InsertMode::FirstReport).1, Inserted::TooOld);
        assert_eq!(store.insert("A", bar(4, 1.0), InsertMode::FirstReport).1, Inserted::Duplicate);
        // In place, then the oldest goes.
        store.insert("A", bar(3, 9.0), InsertMode::Correction);
        assert_eq!(store.latest("A").unwrap().timestamp_ms, 5);
        assert_eq!(store.len("A"), 3);
    }

    #[test]
    fn a_full_series_uses_exactly_its_capacity() {
        let store = BarStore::new(10_000).unwrap();
        for ts in 0..20_000 {
            store.insert("A", bar(ts, 1.0), InsertMode::FirstReport);
        }
        let (_, series) = store.series("A").unwrap();
        assert_eq!(series.lock().unwrap().bars.capacity(), 10_000);
        assert_eq!(STORED_BAR_BYTES, 60);
    }

    #[test]
    fn trade_counts_beyond_31_bits_survive_storage_eviction_and_correction() {
        let store = BarStore::new(3).unwrap();
        let big = |ts, n| Bar { trade_count: Some(n), ..bar(ts, 1.0) };
        let huge = u64::MAX - 5;
        store.insert("A", big(1, u64::from(COUNT_LARGE)), InsertMode::FirstReport);
        store.insert("A", big(2, huge), InsertMode::FirstReport);
        store.insert("A", big(3, 7), InsertMode::FirstReport);
        let counts = |store: &BarStore| store.last_n("A", 10).iter().map(|b| b.trade_count.unwrap()).collect::<Vec<_>>();
        assert_eq!(counts(&store), vec![u64::from(COUNT_LARGE), huge, 7]);
        assert_eq!(store.insert("A", big(2, huge), InsertMode::FirstReport).1, Inserted::Duplicate);
        assert_eq!(store.insert("A", big(2, huge - 1), InsertMode::FirstReport).1, Inserted::Conflict);
        assert_eq!(store.insert("A", big(2, 9), InsertMode::Correction).1, Inserted::Replaced);
        assert_eq!(store.insert("A", big(3, huge), InsertMode::Correction).1, Inserted::Replaced);
        assert_eq!(counts(&store), vec![u64::from(COUNT_LARGE), 9, huge]);
        store.insert("A", big(4, 1), InsertMode::FirstReport); // evicts ts 1
        store.insert("A", big(5, 1), InsertMode::FirstReport); // evicts ts 2
        assert_eq!(store.range("A", 0, 10).iter().map(|b| b.trade_count.unwrap()).collect::<Vec<_>>(), vec![huge, 1, 1]);
        let (_, series) = store.series("A").unwrap();
        let kept: Vec<i64> = series.lock().unwrap().large_trade_counts.keys().copied().collect();
        assert_eq!(kept, vec![3], "evicted and replaced bars leave nothing behind");
    }

    #[test]
    fn symbol_health_counts_what_changed_the_store() {
        let store = BarStore::new(100).unwrap();
        store.insert_received("A", bar(120_000, 1.0), InsertMode::FirstReport, Some(5));
        store.insert_received("A", bar(60_000, 1.0), InsertMode::FirstReport, Some(6)); // late, in place
        store.insert_received("A", bar(60_000, 1.0), InsertMode::FirstReport, Some(7)); // duplicate
        store.insert_received("A", bar(60_000, 2.0), InsertMode::FirstReport, Some(8)); // conflict
        store.insert_received("A", bar(60_000, 2.0), InsertMode::Correction, Some(9));
        let h = &store.symbol_health()["A"];
        assert_eq!((h.bars, h.last_bar_ts_ms, h.last_received_ms), (3, 120_000, 9));
        store.insert("B", bar(60_000, 1.0), InsertMode::FirstReport);
        assert_eq!(store.symbol_health()["B"].bars, 1);
    }

    #[test]
    fn absent_vwap_and_trade_count_stay_absent_and_differ_from_zero() {
        let store = BarStore::new(10).unwrap();
        let bare = Bar { vwap: None, trade_count: None, ..bar(60_000, 1.0) };
        let zeros = Bar { vwap: Some(0.0), trade_count: Some(0), ..bare };
        let only_count = Bar { trade_count: Some(u64::from(COUNT_ABSENT)), ..bare };
        store.insert("A", bare, InsertMode::FirstReport);
        store.insert("A", only_count, InsertMode::FirstReport);
        assert_eq!(store.insert("A", zeros, InsertMode::FirstReport).1, Inserted::Conflict);
        assert_eq!(store.latest("A"), Some(bare));
        let bars: Vec<Bar> = [120_000, 180_000].iter().map(|&ts| Bar { timestamp_ms: ts, ..only_count }).collect();
        for b in &bars {
            store.insert("B", *b, InsertMode::FirstReport);
        }
        assert_eq!(store.last_n("B", 5), bars, "a count equal to the absent marker is kept aside");
        assert_eq!(STORED_BAR_BYTES, 60);
    }

    #[test]
    fn a_capacity_of_zero_is_an_error() {
        assert_eq!(BarStore::new(0).unwrap_err(), CapacityError::Zero { what: "bars kept per symbol" });
        assert_eq!(BarStore::new(1).unwrap().capacity_per_symbol(), 1);
    }

    #[test]
    fn a_new_symbol_past_the_bound_is_refused_and_known_ones_go_on() {
        let store = BarStore::with_max_symbols(100, 2).unwrap();
        assert_eq!(store.insert("A", bar(60_000, 1.0), InsertMode::FirstReport).1, Inserted::Appended);
        assert_eq!(store.insert("B", bar(60_000, 1.0), InsertMode::FirstReport).1, Inserted::Appended);
        assert_eq!(store.insert("C", bar(60_000, 1.0), InsertMode::FirstReport).1, Inserted::SymbolBound);
        assert_eq!(store.insert("A", bar(120_000, 1.0), InsertMode::FirstReport).1, Inserted::Appended);
        assert_eq!(store.insert("B", bar(60_000, 2.0), InsertMode::Correction).1, Inserted::Replaced);
        assert!(!Inserted::SymbolBound.is_delivered());
        assert_eq!((store.symbol_count(), store.len("A"), store.len("C")), (2, 2, 0));
        assert_eq!(store.symbols().len(), 2);
        assert_eq!(BarStore::new(1).unwrap().max_symbols(), DEFAULT_MAX_SYMBOLS);
        assert_eq!(BarStore::with_max_symbols(1, 0).unwrap_err(), CapacityError::Zero { what: "symbols kept in the store (max_symbols)" });
        assert!(matches!(BarStore::with_max_symbols(1, MAX_MAX_SYMBOLS + 1), Err(CapacityError::TooLarge { .. })));
    }

    #[test]
    fn queries_on_unknown_symbols_are_empty() {
        let store = BarStore::new(3).unwrap();
        assert_eq!(store.latest("NOPE"), None);
        assert!(store.last_n("NOPE", 5).is_empty());
        assert!(store.range("NOPE", 0, i64::MAX).is_empty());
        assert!(store.symbols().is_empty());
    }
}
