//! Trading statuses: is a symbol trading, halted, paused? (docs/ARCHITECTURE.md, "Trading
//! statuses").
//!
//! Alpaca's stream says when a symbol stops trading (`"T":"s"`: `sc` H halt, P volatility pause,
//! Q quote resumption, T trading resumption; `rc` the reason code, e.g. `T1`, `LUDP`, `MWC1` for a
//! market-wide circuit breaker). The sidecar turns each into a [`TradingStatus`] and sends it as a
//! `trading_status` control line; the consumer keeps a [`TradingBook`] per symbol, journals the
//! statuses beside the bars, and reports halted minutes as halted, not as lost bars.
//!
//! ```
//! use barbridge::trading::TradingBook;
//! use barbridge::wire::trading::{TradingState, TradingStatus};
//! let book = TradingBook::default();
//! let at = |min: i64| 1_759_930_200_000 + min * 60_000;
//! book.apply(&TradingStatus::new("SPY", at(1), TradingState::Halted, "T1", "Halt News Pending"));
//! assert!(book.is_halted("SPY"));
//! book.apply(&TradingStatus::new("SPY", at(15), TradingState::Trading, "T1", ""));
//! let halts = book.halts("SPY");
//! assert_eq!((halts[0].start_ms, halts[0].end_ms, halts[0].code.as_str()), (at(1), Some(at(15)), "T1"));
//! ```

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::wire::trading::{TradingState, TradingStatus};

/// Halted intervals remembered per symbol (the oldest are forgotten first).
const MAX_HALTS_PER_SYMBOL: usize = 64;

/// Statuses remembered per symbol to recognise one sent twice (a re-subscription, a restart).
const MAX_SEEN_PER_SYMBOL: usize = 64;

/// A time without trading of one symbol.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Halt {
    /// When trading stopped (UTC epoch ms).
    pub start_ms: i64,
    /// When trading resumed; `None` while it has not.
    pub end_ms: Option<i64>,
    /// The reason code of the status that started it.
    pub code: String,
    /// The reason in words.
    pub reason: String,
}

/// A symbol's trading state now.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SymbolTrading {
    /// The state.
    pub state: TradingState,
    /// Since when (the status's time, UTC epoch ms).
    pub since_ms: i64,
    /// The reason code of the last status.
    pub code: String,
    /// The reason in words.
    pub reason: String,
}

#[derive(Debug, Default)]
struct Entry {
    now: Option<SymbolTrading>,
    halts: VecDeque<Halt>,
    seen: VecDeque<(i64, TradingState, String)>,
}

/// What [`TradingBook::apply`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Applied {
    /// New: the symbol's state or its history changed.
    New,
    /// The same status (time, state, code) was applied before: nothing changed.
    Duplicate,
    /// A new symbol while the book already holds its bound of symbols: not kept.
    SymbolBound,
}

/// Each symbol's trading state and its recent halted intervals, for at most
/// [`crate::capacity::DEFAULT_MAX_SYMBOLS`] symbols unless told otherwise. Thread-safe.
#[derive(Debug)]
pub struct TradingBook {
    inner: Mutex<HashMap<String, Entry>>,
    max_symbols: usize,
}

impl Default for TradingBook {
    fn default() -> Self {
        TradingBook::with_max_symbols(crate::capacity::DEFAULT_MAX_SYMBOLS)
    }
}

impl TradingBook {
    /// A book of at most `max_symbols` symbols (a status of a further one is [`Applied::SymbolBound`]).
    pub fn with_max_symbols(max_symbols: usize) -> TradingBook {
        TradingBook { inner: Mutex::default(), max_symbols }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Record a status. A status older than the symbol's current one only adds to the history
    /// when it closes or opens nothing out of order: it is taken as it comes (statuses of one
    /// symbol arrive in order from one stream; a journal replays them in order).
    pub fn apply(&self, s: &TradingStatus) -> Applied {
        let mut map = self.lock();
        if map.len() >= self.max_symbols && !map.contains_key(&s.symbol) {
            return Applied::SymbolBound;
        }
        let e = map.entry(s.symbol.clone()).or_default();
        let key = (s.ts_ms, s.state, s.code.clone());
        if e.seen.contains(&key) {
            return Applied::Duplicate;
        }
        if e.seen.len() == MAX_SEEN_PER_SYMBOL {
            e.seen.pop_front();
        }
        e.seen.push_back(key);
        let was_halted = e.now.as_ref().is_some_and(|n| n.state.is_halted());
        match (was_halted, s.state.is_halted()) {
            (false, true) => {
                if e.halts.len() == MAX_HALTS_PER_SYMBOL {
                    e.halts.pop_front();
                }
                e.halts.push_back(Halt { start_ms: s.ts_ms, end_ms: None, code: s.code.clone(), reason: s.reason.clone() });
            }
            (true, false) => {
                if let Some(h) = e.halts.back_mut().filter(|h| h.end_ms.is_none()) {
                    h.end_ms = Some(s.ts_ms.max(h.start_ms));
                }
            }
            _ => {}
        }
        let since_ms = match &e.now {
            // Halted → paused → quoting is one time without trading: it started with the first.
            Some(n) if n.state.is_halted() == s.state.is_halted() && n.state.is_halted() => n.since_ms,
            _ => s.ts_ms,
        };
        e.now = Some(SymbolTrading { state: s.state, since_ms, code: s.code.clone(), reason: s.reason.clone() });
        Applied::New
    }

    /// True when the symbol's last status says it does not trade.
    pub fn is_halted(&self, symbol: &str) -> bool {
        self.lock().get(symbol).and_then(|e| e.now.as_ref()).is_some_and(|n| n.state.is_halted())
    }

    /// True when `symbols` is not empty and every one of them is halted.
    pub fn all_halted<S: AsRef<str>>(&self, symbols: &[S]) -> bool {
        let map = self.lock();
        !symbols.is_empty() && symbols.iter().all(|s| map.get(s.as_ref()).and_then(|e| e.now.as_ref()).is_some_and(|n| n.state.is_halted()))
    }

    /// Symbols halted now.
    pub fn halted_count(&self) -> usize {
        self.lock().values().filter(|e| e.now.as_ref().is_some_and(|n| n.state.is_halted())).count()
    }

    /// The current state of every symbol that is not trading.
    pub fn halted_now(&self) -> BTreeMap<String, SymbolTrading> {
        self.lock().iter().filter_map(|(s, e)| e.now.clone().filter(|n| n.state.is_halted()).map(|n| (s.clone(), n))).collect()
    }

    /// The symbol's remembered halted intervals, oldest first (the last may be open).
    pub fn halts(&self, symbol: &str) -> Vec<Halt> {
        self.lock().get(symbol).map(|e| e.halts.iter().cloned().collect()).unwrap_or_default()
    }

    /// Every symbol's remembered halted intervals.
    pub fn all_halts(&self) -> BTreeMap<String, Vec<Halt>> {
        self.lock().iter().filter(|(_, e)| !e.halts.is_empty()).map(|(s, e)| (s.clone(), e.halts.iter().cloned().collect())).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::WireError;

    const T: i64 = 1_759_930_200_000;

    fn st(sym: &str, min: i64, state: TradingState, code: &str) -> TradingStatus {
        TradingStatus::new(sym, T + min * 60_000, state, code, "")
    }

    #[test]
    fn a_new_symbol_past_the_bound_is_refused() {
        let book = TradingBook::with_max_symbols(1);
        assert_eq!(book.apply(&st("A", 1, TradingState::Halted, "T1")), Applied::New);
        assert_eq!(book.apply(&st("B", 1, TradingState::Halted, "T1")), Applied::SymbolBound);
        assert_eq!(book.apply(&st("A", 2, TradingState::Trading, "")), Applied::New);
        assert!(!book.is_halted("B"));
    }

    #[test]
    fn halts_open_and_close_and_repeats_are_duplicates() {
        let book = TradingBook::default();
        assert_eq!(book.apply(&st("A", 1, TradingState::Halted, "T1")), Applied::New);
        assert_eq!(book.apply(&st("A", 1, TradingState::Halted, "T1")), Applied::Duplicate);
        book.apply(&st("A", 10, TradingState::Quoting, "T1"));
        assert_eq!(book.halted_now()["A"].since_ms, T + 60_000, "halt then quote-only is one halt");
        book.apply(&st("A", 14, TradingState::Trading, "T1"));
        assert!(!book.is_halted("A"));
        assert_eq!(book.halts("A"), vec![Halt { start_ms: T + 60_000, end_ms: Some(T + 14 * 60_000), code: "T1".into(), reason: String::new() }]);
        book.apply(&st("A", 20, TradingState::Paused, "LUDP"));
        assert_eq!(book.halts("A").len(), 2);
        assert_eq!(book.halts("A")[1].end_ms, None);
    }

    #[test]
    fn all_halted_needs_every_symbol() {
        let book = TradingBook::default();
        assert!(!book.all_halted::<&str>(&[]));
        book.apply(&st("A", 1, TradingState::Halted, "MWC1"));
        assert!(!book.all_halted(&["A", "B"]));
        book.apply(&st("B", 1, TradingState::Halted, "MWC1"));
        assert!(book.all_halted(&["A", "B"]));
        assert_eq!(book.halted_count(), 2);
        book.apply(&st("B", 16, TradingState::Trading, "MWC1"));
        assert!(!book.all_halted(&["A", "B"]));
    }

    #[test]
    fn alpaca_codes_map_and_unknown_ones_are_refused() {
        let s = TradingStatus::from_alpaca("SPY", T, "H", "MWC1", "Market Wide Circuit Breaker Halt - Level 1").unwrap();
        assert_eq!(s.state, TradingState::Halted);
        assert!(TradingStatus::from_alpaca("SPY", T, "X", "", "").is_err());
        assert!(matches!(TradingStatus::from_alpaca("spy", T, "H", "", ""), Err(WireError::InvalidSymbol { .. })));
        assert!(matches!(TradingStatus::from_alpaca("SPY", T / 1000, "H", "", ""), Err(WireError::InvalidTimestamp { .. })));
        let long = TradingStatus::new("SPY", T, TradingState::Halted, &"C".repeat(100), &"é\n".repeat(3000));
        let mut line = Vec::new();
        crate::wire::write_trading_status_line(&mut line, &long, Some(u64::MAX), Some(&"w".repeat(64)));
        assert!(line.len() < 1024, "{} bytes", line.len());
    }
}
