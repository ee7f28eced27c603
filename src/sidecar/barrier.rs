//! The sidecar's minute barrier (docs/ARCHITECTURE.md, "Minute barrier"): for each minute, one
//! `minute_closed` event saying which subscribed symbols have a bar, which are halted and which
//! have none yet, decided as soon as every subscribed, non-halted symbol has its bar, or at a
//! deadline after the minute's end ([`DEFAULT_DEADLINE_MS`]), whichever is first.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use crate::trading::TradingBook;
use crate::wire::minute::*;
use crate::wire::MINUTE_MS;

/// The sidecar's barrier: which subscribed symbols have a bar of each open minute, and when a
/// minute closes. Not thread-safe by itself: the extension's `Publisher` keeps it under a lock
/// held across a bar's hand-over to the sink and its note here, so a minute's `minute_closed`
/// always follows the bars it lists.
///
/// Its clock is the data's: a bar of minute M says the data clock is at least M's end; between
/// bars it runs with the wall clock. (On Alpaca both agree; a replay or the fake server's fast
/// clock are measured in their own time.)
#[derive(Debug)]
pub struct Barrier {
    deadline_ms: i64,
    every_minute: bool,
    subscribed: HashSet<String>,
    open: BTreeMap<i64, HashSet<String>>,
    /// The first minute not closed yet (None until the first live bar).
    next_minute: Option<i64>,
    /// (data time, when it was seen).
    data_clock: Option<(i64, Instant)>,
    closed: u64,
    /// Closed minutes with symbols still without a bar, for the REST confirmation to take.
    unconfirmed: VecDeque<(i64, Vec<String>)>,
    /// Closing paused until the start-up backfill's bars are handed over ([`Barrier::start_at`]),
    /// at the latest until then.
    held_until: Option<Instant>,
}

impl Barrier {
    /// A barrier over `symbols`, closing a minute `deadline_ms` after its end at the latest.
    /// `every_minute`: close every minute (crypto, `--market-hours always`); otherwise only
    /// minutes of the NYSE regular session and minutes with a bar.
    pub fn new<I: IntoIterator<Item = S>, S: Into<String>>(symbols: I, deadline_ms: i64, every_minute: bool) -> Barrier {
        Barrier {
            deadline_ms: deadline_ms.max(0),
            every_minute,
            subscribed: symbols.into_iter().map(Into::into).collect(),
            open: BTreeMap::new(),
            next_minute: None,
            data_clock: None,
            closed: 0,
            unconfirmed: VecDeque::new(),
            held_until: None,
        }
    }

    /// Start closing at the minutes of the sidecar's start-up backfill (from `minute_ms`, its
    /// start) instead of at the first live bar, so the minutes a previous sidecar left unclosed
    /// (it died) are closed too. Nothing closes until [`Barrier::backfilled`] (the backfill's
    /// bars noted) or `hold` has passed, whichever is first; then closing starts at the first
    /// minute with a bar (backfilled or live) at or after `minute_ms`: no empty minutes before
    /// the data (a start before the open, a server without that history). A minute another writer
    /// closed before is closed again: the consumer recognises it (the same symbols) and delivers
    /// it once.
    pub fn start_at(&mut self, minute_ms: i64, hold: Duration) {
        let minute = minute_ms.div_euclid(MINUTE_MS) * MINUTE_MS;
        if self.next_minute.is_none_or(|n| minute < n) {
            self.next_minute = Some(minute);
        }
        self.held_until = Some(Instant::now() + hold);
    }

    /// The start-up backfill's bars are handed over: closing resumes (see [`Barrier::start_at`]).
    pub fn backfilled(&mut self) {
        if self.held_until.take().is_none() {
            return;
        }
        // The first minute with a bar (every noted bar is at or after the start).
        self.next_minute = self.open.keys().next().copied();
        if self.data_clock.is_none() {
            // No live bar yet (a replay, a quiet stream): the data clock starts at the newest bar.
            if let Some((&m, _)) = self.open.last_key_value() {
                self.data_clock = Some((m + MINUTE_MS, Instant::now()));
            }
        }
    }

    /// The subscription changed (`--subscribe` / `--unsubscribe`): minutes still open are
    /// decided against the new list.
    pub fn set_symbols<I: IntoIterator<Item = S>, S: Into<String>>(&mut self, symbols: I) {
        self.subscribed = symbols.into_iter().map(Into::into).collect();
        for have in self.open.values_mut() {
            have.retain(|s| self.subscribed.contains(s)); // an unsubscribed symbol counts no more
        }
    }

    /// The subscribed symbols.
    pub fn symbols(&self) -> &HashSet<String> {
        &self.subscribed
    }

    /// Minutes closed so far.
    pub fn closed(&self) -> u64 {
        self.closed
    }

    /// The closed minutes with symbols still without a bar (oldest first), taken: the sidecar's
    /// REST confirmation asks about them (bounded: the oldest beyond
    /// [`MAX_UNCONFIRMED_MINUTES`] stay unknown).
    pub fn take_unconfirmed(&mut self) -> Vec<(i64, Vec<String>)> {
        self.unconfirmed.drain(..).collect()
    }

    /// A bar of `symbol` for `minute_ms` went to the sink. `live`: from the stream (or a
    /// synthetic source): it moves the data clock. True when the data clock moved to a later
    /// minute (time to [`Barrier::poll`]: earlier minutes may be due).
    pub fn note(&mut self, symbol: &str, minute_ms: i64, live: bool) -> bool {
        let mut advanced = false;
        if live {
            let end = minute_ms + MINUTE_MS;
            if self.data_clock.is_none_or(|(t, _)| end > t) {
                advanced = self.data_clock.is_some();
                self.data_clock = Some((end, Instant::now()));
            }
            if self.next_minute.is_none() {
                self.next_minute = Some(minute_ms);
            }
        }
        let Some(next) = self.next_minute else { return advanced };
        if minute_ms >= next && self.subscribed.contains(symbol) {
            self.open.entry(minute_ms).or_default().insert(symbol.to_owned());
        } // else: closed already (a late bar), or not subscribed
        advanced
    }

    /// The data clock now (ms), if any live bar was seen.
    pub fn now_ms(&self) -> Option<i64> {
        self.data_clock.map(|(t, at)| t + i64::try_from(at.elapsed().as_millis()).unwrap_or(i64::MAX / 2))
    }

    /// Close every minute that is complete or past its deadline, oldest first; `wall_ms` stamps
    /// `closed_ms`. Halts come from `trading` (the sidecar's own book of the stream's statuses).
    pub fn poll(&mut self, trading: &TradingBook, wall_ms: i64) -> Vec<MinuteClosed> {
        let mut out = Vec::new();
        if let Some(until) = self.held_until {
            if Instant::now() < until {
                return out; // the start-up backfill's bars are still coming
            }
            log::warn!("minute barrier: the start-up backfill did not finish in time; closing minutes without waiting for it");
            self.backfilled();
        }
        let (Some(now), Some(mut next)) = (self.now_ms(), self.next_minute) else { return out };
        // After a long silence (a night, a dead stream), do not walk every minute since.
        if now - next > 24 * 3_600_000 {
            next = (now - 24 * 3_600_000) / MINUTE_MS * MINUTE_MS;
            self.open.retain(|m, _| *m >= next);
        }
        if next + MINUTE_MS > now {
            return out; // nothing can be due yet (the common case: no lock taken below)
        }
        let halted_now = trading.halted_now();
        loop {
            let end = next + MINUTE_MS;
            if end > now {
                break; // the data has not reached the minute's end
            }
            let have = self.open.get(&next);
            let with_bar = have.map_or(0, HashSet::len);
            let missing_halted = halted_now.keys().filter(|s| self.subscribed.contains(*s) && have.is_none_or(|h| !h.contains(*s))).count();
            let complete = with_bar + missing_halted >= self.subscribed.len() && !self.subscribed.is_empty();
            let due = now >= end + self.deadline_ms;
            if !complete && !due {
                break;
            }
            let have = self.open.remove(&next).unwrap_or_default();
            if have.is_empty() && !self.every_minute && !crate::calendar::in_session(next) {
                next += MINUTE_MS; // outside the session with no bar: nothing to close
                continue;
            }
            let mut bars: Vec<String> = have.iter().cloned().collect();
            let mut halted = Vec::new();
            let mut none = Vec::new();
            for s in self.subscribed.iter().filter(|s| !have.contains(*s)) {
                let was_halted = halted_now.contains_key(s) || trading.halts(s).iter().any(|h| h.start_ms < end && h.end_ms.is_none_or(|e| e > next));
                if was_halted { &mut halted } else { &mut none }.push(s.clone());
            }
            bars.sort_unstable();
            halted.sort_unstable();
            none.sort_unstable();
            if !none.is_empty() {
                if self.unconfirmed.len() >= MAX_UNCONFIRMED_MINUTES {
                    self.unconfirmed.pop_front();
                }
                self.unconfirmed.push_back((next, none.clone()));
            }
            out.push(MinuteClosed { minute_ms: next, closed_ms: wall_ms, complete: none.is_empty(), bars, halted, none, writer: None });
            self.closed += 1;
            next += MINUTE_MS;
        }
        self.next_minute = Some(next);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const M: i64 = 1_759_930_080_000;

    #[test]
    fn the_barrier_closes_when_complete_or_at_the_deadline_and_names_halts() {
        let trading = TradingBook::default();
        let mut b = Barrier::new(["SPY", "SH", "SDS"], 1_000, true);
        b.note("SPY", M, true);
        b.note("SH", M, true);
        assert!(b.poll(&trading, 0).is_empty(), "SDS may still come");
        b.note("SDS", M, true);
        let got = b.poll(&trading, 7);
        assert_eq!(got.len(), 1);
        assert!(got[0].complete && got[0].none.is_empty() && got[0].bars == ["SDS", "SH", "SPY"]);
        // Minute 2: SDS halted, SH never comes; SPY's bar closes nothing until the deadline.
        trading.apply(&crate::wire::trading::TradingStatus::new("SDS", M + 61_000, crate::wire::trading::TradingState::Halted, "T1", ""));
        b.note("SPY", M + 60_000, true);
        assert!(b.poll(&trading, 0).is_empty());
        std::thread::sleep(std::time::Duration::from_millis(1_100));
        let got = b.poll(&trading, 0);
        assert_eq!(got.len(), 1);
        assert_eq!(
            (got[0].bars.clone(), got[0].halted.clone(), got[0].none.clone()),
            (vec!["SPY".to_string()], vec!["SDS".to_string()], vec!["SH".to_string()])
        );
        assert!(!got[0].complete);
        // A late bar of a closed minute changes nothing.
        b.note("SH", M + 60_000, false);
        assert_eq!(b.closed(), 2);
    }

    #[test]
    fn a_restarted_barrier_closes_from_its_backfill_start_once_the_backfill_is_in() {
        let trading = TradingBook::default();
        let mut b = Barrier::new(["SPY", "SH"], 1_000, true);
        b.start_at(M - 600_000 + 5, Duration::from_secs(60)); // 10 minutes before the first bar
        b.note("SPY", M + 180_000, true); // the first live bar: minute 3
        b.note("SPY", M + 240_000, true); // minute 4: the data clock moves, minutes 0-2 are due
        assert!(b.poll(&trading, 0).is_empty(), "held until the backfill is in");
        for m in 0..3 {
            b.note("SPY", M + m * 60_000, false);
            b.note("SH", M + m * 60_000, false);
        }
        b.backfilled();
        let got = b.poll(&trading, 0);
        let minutes: Vec<i64> = got.iter().map(|m| (m.minute_ms - M) / 60_000).collect();
        assert_eq!(minutes[..3], [0, 1, 2], "from the first bar, no empty minute before: {got:?}");
        assert!(got[..3].iter().all(|m| m.complete && m.bars == ["SH", "SPY"]), "{got:?}");
        // A backfill that never ends holds nothing for ever.
        let mut b = Barrier::new(["SPY"], 0, true);
        b.start_at(M, Duration::from_millis(50));
        b.note("SPY", M + 60_000, true);
        b.note("SPY", M + 120_000, true);
        assert!(b.poll(&trading, 0).is_empty());
        std::thread::sleep(Duration::from_millis(80));
        assert_eq!(b.poll(&trading, 0).first().map(|m| m.minute_ms), Some(M + 60_000));
    }
}
