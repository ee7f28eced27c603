//! Gap report: which minutes of a regular session have no bar, per symbol.
//!
//! A missing minute is not always a loss (IEX often has minutes without trades), so the report
//! separates minutes *before the first bar* and *after the last bar* from *holes* between bars,
//! and compares against what the source had when both are known.

use serde::Serialize;

use crate::calendar::Session;

/// A run of consecutive missing minutes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Hole {
    /// Start of the first missing minute, UTC epoch ms.
    pub start_ms: i64,
    /// How many consecutive minutes are missing.
    pub minutes: i64,
}

/// Missing minutes of one symbol in one session.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SymbolGaps {
    /// The symbol.
    pub symbol: String,
    /// Session minutes (up to `until`) that have a bar.
    pub bars: i64,
    /// Session minutes before the first bar.
    pub before_first: i64,
    /// Session minutes after the last bar (up to `until`).
    pub after_last: i64,
    /// Missing minutes between the first and the last bar.
    pub holes: Vec<Hole>,
}

impl SymbolGaps {
    /// Missing minutes between the first and the last bar, all holes together.
    pub fn hole_minutes(&self) -> i64 {
        self.holes.iter().map(|h| h.minutes).sum()
    }
}

/// Compute the gaps of one symbol. `bar_minutes` are bar timestamps (any order, duplicates
/// allowed); only those inside `[session.open_ms, until_ms)` count. `until_ms` is the session
/// close for a finished session, or "now" for the running one.
pub fn session_gaps(symbol: &str, session: &Session, until_ms: i64, bar_minutes: impl IntoIterator<Item = i64>) -> SymbolGaps {
    let end = until_ms.min(session.close_ms);
    let mut minutes: Vec<i64> = bar_minutes.into_iter().filter(|t| *t >= session.open_ms && *t < end).map(|t| t - t.rem_euclid(60_000)).collect();
    minutes.sort_unstable();
    minutes.dedup();
    let total = ((end - session.open_ms).max(0) + 59_999) / 60_000;
    let Some((&first, &last)) = minutes.first().zip(minutes.last()) else {
        return SymbolGaps { symbol: symbol.to_owned(), bars: 0, before_first: total, after_last: 0, holes: Vec::new() };
    };
    let holes =
        minutes.windows(2).filter(|w| w[1] - w[0] > 60_000).map(|w| Hole { start_ms: w[0] + 60_000, minutes: (w[1] - w[0]) / 60_000 - 1 }).collect();
    SymbolGaps {
        symbol: symbol.to_owned(),
        bars: minutes.len() as i64,
        before_first: (first - session.open_ms) / 60_000,
        after_last: (total - (last - session.open_ms) / 60_000 - 1).max(0),
        holes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::NaiveDate;

    fn session() -> Session {
        Session { date: NaiveDate::from_ymd_opt(2025, 10, 8).unwrap(), open_ms: 1_759_930_200_000, close_ms: 1_759_953_600_000 }
    }

    #[test]
    fn classifies_before_after_and_holes() {
        let s = session();
        let m = |i: i64| s.open_ms + i * 60_000;
        let g = session_gaps("SPY", &s, s.close_ms, [m(2), m(3), m(3), m(7), m(8), m(10), m(100) - 1, m(-5), m(390)]);
        assert_eq!(g.bars, 6);
        assert_eq!(g.before_first, 2);
        assert_eq!(g.holes, vec![Hole { start_ms: m(4), minutes: 3 }, Hole { start_ms: m(9), minutes: 1 }, Hole { start_ms: m(11), minutes: 88 }]);
        assert_eq!(g.after_last, 390 - 100);
        assert_eq!(g.bars + g.before_first + g.after_last + g.hole_minutes(), 390);
    }

    #[test]
    fn running_session_counts_only_up_to_now() {
        let s = session();
        let g = session_gaps("SPY", &s, s.open_ms + 10 * 60_000, (0..10).map(|i| s.open_ms + i * 60_000));
        assert_eq!((g.bars, g.before_first, g.after_last, g.hole_minutes()), (10, 0, 0, 0));
        let g = session_gaps("SPY", &s, s.open_ms + 10 * 60_000, []);
        assert_eq!(g.before_first, 10);
    }
}
