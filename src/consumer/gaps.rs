//! Gap report: which minutes of a regular session have no bar, per symbol.
//!
//! A missing minute is not always a loss (IEX often has minutes without trades), so the report
//! separates minutes *before the first bar* and *after the last bar* from *holes* between bars,
//! and compares against what the source had when both are known. A missing minute during a
//! trading halt of the symbol ([`crate::trading`]) is *halted*: no trades, so no bar, and nothing
//! lost; it is counted apart and in none of the other classes.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;

use crate::calendar::Session;
use crate::consumer::journal::{read_journal_with_minutes, JournalError, MinuteRecord};
use crate::trading::{Halt, TradingBook};

/// A halt as it touched one session: when, how many of its minutes have no bar, why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct HaltedSpan {
    /// When trading stopped (UTC epoch ms; may lie before the session's open).
    pub start_ms: i64,
    /// When it resumed; `None`: not (yet) by the end of what is counted.
    pub end_ms: Option<i64>,
    /// Session minutes without a bar that the halt covers.
    pub minutes: i64,
    /// The halt's reason code.
    pub code: String,
}

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
    /// Missing minutes between the first and the last bar (halted minutes excluded).
    pub holes: Vec<Hole>,
    /// Session minutes without a bar because the symbol was halted (in no other class).
    pub halted_minutes: i64,
    /// The halts that touched the session.
    pub halts: Vec<HaltedSpan>,
    /// Session minutes without a bar that REST confirmed quiet (no trade: the sidecar's quiet
    /// marks, [`crate::wire::minute`]); in no other class.
    #[serde(default)]
    pub quiet_minutes: i64,
}

impl SymbolGaps {
    /// Missing minutes between the first and the last bar, all holes together.
    pub fn hole_minutes(&self) -> i64 {
        self.holes.iter().map(|h| h.minutes).sum()
    }
}

/// [`session_gaps_halted`] knowing the minutes confirmed quiet too: a bar-less minute marked
/// quiet (and not halted) is quiet, in no other class: not a hole, not before the first bar or
/// after the last. `bars + before_first + after_last + hole minutes + halted_minutes +
/// quiet_minutes` is still the session's minutes up to `until_ms`.
pub fn session_gaps_quiet(symbol: &str, session: &Session, until_ms: i64, bar_minutes: Vec<i64>, halts: &[Halt], quiet: &[i64]) -> SymbolGaps {
    let end = until_ms.min(session.close_ms);
    let mut bars: Vec<i64> = bar_minutes.iter().filter(|t| **t >= session.open_ms && **t < end).map(|t| t - t.rem_euclid(60_000)).collect();
    bars.sort_unstable();
    bars.dedup();
    let mut g = session_gaps_halted(symbol, session, until_ms, bar_minutes, halts);
    let halted = |m: i64| halts.iter().any(|h| h.start_ms < m + 60_000 && h.end_ms.unwrap_or(end).min(end) > m);
    let mut quiet: Vec<i64> = quiet.iter().filter(|t| **t >= session.open_ms && **t < end).map(|t| t - t.rem_euclid(60_000)).collect();
    quiet.sort_unstable();
    quiet.dedup();
    for q in quiet {
        if bars.binary_search(&q).is_ok() || halted(q) {
            continue;
        }
        match (bars.first(), bars.last()) {
            (Some(&first), Some(&last)) if q > first && q < last => {
                let Some(i) = g.holes.iter().position(|h| h.start_ms <= q && q < h.start_ms + h.minutes * 60_000) else { continue };
                let h = g.holes.remove(i);
                let before = (q - h.start_ms) / 60_000;
                let after = h.minutes - before - 1;
                if after > 0 {
                    g.holes.insert(i, Hole { start_ms: q + 60_000, minutes: after });
                }
                if before > 0 {
                    g.holes.insert(i, Hole { start_ms: h.start_ms, minutes: before });
                }
            }
            (Some(&last), _) | (_, Some(&last)) if q > last => g.after_last -= 1,
            _ => g.before_first -= 1,
        }
        g.quiet_minutes += 1;
    }
    g
}

/// Compute the gaps of one symbol. `bar_minutes` are bar timestamps (any order, duplicates
/// allowed); only those inside `[session.open_ms, until_ms)` count. `until_ms` is the session
/// close for a finished session, or "now" for the running one.
pub fn session_gaps(symbol: &str, session: &Session, until_ms: i64, bar_minutes: impl IntoIterator<Item = i64>) -> SymbolGaps {
    session_gaps_halted(symbol, session, until_ms, bar_minutes, &[])
}

/// [`session_gaps`] knowing the symbol's halts: a minute without a bar that overlaps a halt is
/// halted, not missing (an open halt lasts up to `until_ms`). `bars + before_first + after_last
/// + hole minutes + halted_minutes` is the session's minutes up to `until_ms`.
pub fn session_gaps_halted(symbol: &str, session: &Session, until_ms: i64, bar_minutes: impl IntoIterator<Item = i64>, halts: &[Halt]) -> SymbolGaps {
    let mut g = plain_gaps(symbol, session, until_ms, bar_minutes);
    let end = until_ms.min(session.close_ms);
    let spans: Vec<(i64, i64, &Halt)> =
        halts.iter().map(|h| (h.start_ms, h.end_ms.unwrap_or(end).min(end), h)).filter(|(s, e, _)| *e > session.open_ms && *s < end).collect();
    if spans.is_empty() {
        return g;
    }
    let covered = |m: i64| spans.iter().position(|(s, e, _)| *s < m + 60_000 && *e > m);
    let mut per_halt = vec![0i64; spans.len()];
    let mut count = |m: i64| match covered(m) {
        Some(i) => {
            per_halt[i] += 1;
            true
        }
        None => false,
    };
    let minute = |i: i64| session.open_ms + i * 60_000;
    let total = ((end - session.open_ms).max(0) + 59_999) / 60_000;
    let first = g.before_first;
    let last = total - g.after_last; // first minute after the last bar (or `total`)
    let before_halted = (0..first).filter(|i| count(minute(*i))).count() as i64;
    let after_halted = if g.bars > 0 { (last..total).filter(|i| count(minute(*i))).count() as i64 } else { 0 };
    let mut holes = Vec::new();
    let mut hole_halted = 0;
    for h in &g.holes {
        let mut run: Option<Hole> = None;
        for k in 0..h.minutes {
            let m = h.start_ms + k * 60_000;
            if count(m) {
                hole_halted += 1;
                holes.extend(run.take());
            } else {
                run.get_or_insert(Hole { start_ms: m, minutes: 0 }).minutes += 1;
            }
        }
        holes.extend(run);
    }
    g.before_first -= before_halted;
    g.after_last -= after_halted;
    g.holes = holes;
    g.halted_minutes = before_halted + after_halted + hole_halted;
    g.halts = spans
        .iter()
        .zip(per_halt)
        .map(|((s, _, h), minutes)| HaltedSpan { start_ms: *s, end_ms: h.end_ms.filter(|e| *e <= end), minutes, code: h.code.clone() })
        .collect();
    g
}

/// The session view of the symbols of one journal day file, as the running consumer computes it
/// ([`crate::Consumer::session_gaps`]): its bars and trading statuses read back, a bar-less minute
/// during a halt halted, never a hole. `symbols`: these (each listed even without a bar), or every
/// symbol of the file when empty. `gaps` renders this for stocks and crypto pairs alike.
///
/// # Errors
/// [`JournalError::Read`] when the file cannot be read.
pub fn journal_session_gaps(path: &Path, session: &Session, until_ms: i64, symbols: &[String]) -> Result<Vec<SymbolGaps>, JournalError> {
    let mut minutes: BTreeMap<String, Vec<i64>> = symbols.iter().map(|s| (s.clone(), Vec::new())).collect();
    let wanted = |symbol: &str| symbols.is_empty() || symbols.iter().any(|s| s == symbol);
    let trading = TradingBook::default();
    let mut quiet: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    read_journal_with_minutes(
        path,
        |symbol, bar, _| {
            if wanted(symbol) {
                minutes.entry(symbol.to_owned()).or_default().push(bar.timestamp_ms);
            }
        },
        |status| {
            if wanted(&status.symbol) {
                trading.apply(&status);
            }
        },
        |record| {
            // Quiet marks were checked against their minute's close when journaled.
            if let MinuteRecord::Quiet(_, minute, symbols) = record {
                for s in symbols.into_iter().filter(|s| wanted(s)) {
                    quiet.entry(s).or_default().push(minute);
                }
            }
        },
    )?;
    for symbol in trading.all_halts().into_keys().chain(quiet.keys().cloned()) {
        minutes.entry(symbol).or_default(); // a symbol halted or quiet all day has no bar
    }
    Ok(minutes
        .into_iter()
        .map(|(sym, ts)| {
            let q = quiet.get(&sym).map_or(&[][..], |v| &v[..]);
            session_gaps_quiet(&sym, session, until_ms, ts, &trading.halts(&sym), q)
        })
        .collect())
}

fn plain_gaps(symbol: &str, session: &Session, until_ms: i64, bar_minutes: impl IntoIterator<Item = i64>) -> SymbolGaps {
    let end = until_ms.min(session.close_ms);
    let mut minutes: Vec<i64> = bar_minutes.into_iter().filter(|t| *t >= session.open_ms && *t < end).map(|t| t - t.rem_euclid(60_000)).collect();
    minutes.sort_unstable();
    minutes.dedup();
    let total = ((end - session.open_ms).max(0) + 59_999) / 60_000;
    let Some((&first, &last)) = minutes.first().zip(minutes.last()) else {
        return SymbolGaps {
            symbol: symbol.to_owned(),
            bars: 0,
            before_first: total,
            after_last: 0,
            holes: Vec::new(),
            halted_minutes: 0,
            halts: Vec::new(),
            quiet_minutes: 0,
        };
    };
    let holes =
        minutes.windows(2).filter(|w| w[1] - w[0] > 60_000).map(|w| Hole { start_ms: w[0] + 60_000, minutes: (w[1] - w[0]) / 60_000 - 1 }).collect();
    SymbolGaps {
        symbol: symbol.to_owned(),
        bars: minutes.len() as i64,
        before_first: (first - session.open_ms) / 60_000,
        after_last: (total - (last - session.open_ms) / 60_000 - 1).max(0),
        holes,
        halted_minutes: 0,
        halts: Vec::new(),
        quiet_minutes: 0,
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
    fn quiet_minutes_are_no_holes_and_halts_win() {
        let s = session();
        let m = |i: i64| s.open_ms + i * 60_000;
        // Bars at 0, 5, 9; quiet at 2, 3 (in the hole 1..=4), 7, 12 (after the last), 5 (has a
        // bar: not quiet) and 8 (halted 8..9: halted wins).
        let halts = [Halt { start_ms: m(8), end_ms: Some(m(9)), code: "T1".into(), reason: String::new() }];
        let g = session_gaps_quiet("SPY", &s, m(14), vec![m(0), m(5), m(9)], &halts, &[m(2), m(3), m(5), m(7), m(8), m(12)]);
        assert_eq!(g.quiet_minutes, 4, "{g:?}");
        assert_eq!(g.holes, vec![Hole { start_ms: m(1), minutes: 1 }, Hole { start_ms: m(4), minutes: 1 }, Hole { start_ms: m(6), minutes: 1 }]);
        assert_eq!((g.halted_minutes, g.after_last), (1, 3));
        assert_eq!(g.bars + g.before_first + g.after_last + g.hole_minutes() + g.halted_minutes + g.quiet_minutes, 14);
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
    fn halted_minutes_are_neither_holes_nor_missing() {
        let s = session();
        let m = |i: i64| s.open_ms + i * 60_000;
        let halt = |a: i64, b: Option<i64>, code: &str| Halt { start_ms: a, end_ms: b, code: code.into(), reason: String::new() };
        // Bars 0..10 and 25..380; halted 10:00+10 min 20 s .. +25 (T1), and from 380 to the close.
        let bars = (0..10).chain(25..380).map(m);
        let halts = [halt(m(10) + 20_000, Some(m(25)), "T1"), halt(m(380), None, "MWC1")];
        let g = session_gaps_halted("SPY", &s, s.close_ms, bars, &halts);
        assert_eq!((g.holes.len(), g.after_last, g.halted_minutes), (0, 0, 25));
        assert_eq!(g.halts[0], HaltedSpan { start_ms: m(10) + 20_000, end_ms: Some(m(25)), minutes: 15, code: "T1".into() });
        assert_eq!((g.halts[1].minutes, g.halts[1].end_ms), (10, None));
        // A halt covering part of a hole leaves the rest a hole.
        let g = session_gaps_halted("SPY", &s, s.close_ms, [m(0), m(10)], &[halt(m(3), Some(m(5)), "T12")]);
        assert_eq!(g.holes, vec![Hole { start_ms: m(1), minutes: 2 }, Hole { start_ms: m(5), minutes: 5 }]);
        assert_eq!(g.bars + g.before_first + g.after_last + g.hole_minutes() + g.halted_minutes, 390);
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
