//! The sidecar's bookkeeping between a source (the Alpaca stream, its REST backfill, a replay)
//! and its sink (the FIFO writer or an in-process consumer).
//!
//! One [`BarGate`] per sidecar remembers, per (symbol, minute), the values last sent and when
//! the stream last delivered that minute; it suppresses exact duplicates (a backfilled minute the
//! stream already delivered), keeps a backfill answer from replacing a newer stream version, tracks
//! the last minute seen per symbol (where the next backfill starts) and when the stream last
//! delivered a bar (the staleness clock). Everything happens under one short lock, and the bar is
//! handed to the sink inside it, so the sink sees bars in the order they were decided on.
//!
//! It also keeps each symbol's trading state ([`crate::trading`]): while every subscribed symbol
//! is halted, no bars is the truth, not a dead stream, and the staleness verdict stays quiet
//! (docs/ARCHITECTURE.md, "Trading statuses"; the socket's keepalive still watches the link).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rustc_hash::FxHashMap as HashMap;
use serde::Serialize;

use crate::bar::{Bar, BarKind, Source, Symbol};
use crate::trading::{Applied, TradingBook};
use crate::wire::trading::TradingStatus;
use crate::wire::{self, WireError};

/// Bars remembered for duplicate suppression by default: 50 minutes of a 10,000-symbol feed.
pub const DEFAULT_REMEMBER: usize = 500_000;

/// What [`BarGate::publish`] did with a bar.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// Handed to the sink.
    Sent,
    /// The very same values were already sent for this minute.
    Duplicate,
    /// A backfill bar for a minute the stream delivered after the request started.
    Superseded,
    /// The bar breaks the protocol's rules (or the sink refused it): not sent.
    Invalid(WireError),
}

/// The publisher's counters.
#[derive(Clone, Debug, Default, Serialize)]
pub struct PublishCounts {
    /// Bars handed to the sink.
    pub published: u64,
    /// Whole frames of stream bars decided in one go ([`BarGate::publish_stream_batch`]).
    pub frames: u64,
    /// Bars not published: the same values were sent for that minute already.
    pub duplicates_suppressed: u64,
    /// Backfill bars not published: the stream sent a newer version of that minute.
    pub backfill_superseded: u64,
    /// Bars refused by the wire protocol's rules.
    pub invalid: u64,
    /// Bars received from the live stream.
    pub received_stream: u64,
    /// Bars received from the REST backfill.
    pub received_backfill: u64,
    /// Bars received from a replayed file.
    pub received_replay: u64,
    /// Bars received from the synthetic source.
    pub received_synthetic: u64,
    /// Bars received without a known source.
    pub received_other: u64,
}

#[derive(Clone, Copy)]
struct Sent {
    bar: Bar,
    /// Generation of the last stream bar for this minute (0: never from the stream).
    stream_gen: u64,
}

#[derive(Default)]
struct State {
    /// minute → symbol → what was last sent. Oldest minutes are forgotten first.
    minutes: BTreeMap<i64, HashMap<Symbol, Sent>>,
    remembered: usize,
    generation: u64,
    /// Latest minute sent per symbol; also interns the symbol names.
    last_seen: HashMap<Symbol, i64>,
    counts: PublishCounts,
}

/// See the module documentation. Cheap to share: clone the `Arc`.
pub struct BarGate {
    state: Mutex<State>,
    remember: usize,
    epoch: Instant,
    /// Nanoseconds after `epoch` of the last stream bar (or of the last [`BarGate::reset_clock`]).
    last_stream_ns: AtomicU64,
    trading: TradingBook,
}

impl Default for BarGate {
    fn default() -> Self {
        BarGate::new(DEFAULT_REMEMBER)
    }
}

impl BarGate {
    /// A publisher remembering up to `remember` (symbol, minute) entries (at least one minute).
    pub fn new(remember: usize) -> BarGate {
        BarGate { state: Mutex::default(), remember, epoch: Instant::now(), last_stream_ns: AtomicU64::new(0), trading: TradingBook::default() }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A point in the stream's history: take it before a REST request and pass it as
    /// `stream_since` with that request's bars.
    pub fn mark(&self) -> u64 {
        self.lock().generation
    }

    /// Decide on one bar and, when it is new, hand it to `send` (inside the lock).
    ///
    /// `stream_since` (backfill bars): when the stream delivered this minute after that
    /// [`BarGate::mark`], the REST answer may be older than the stream's version (a correction
    /// that arrived while the request was in flight), so the backfill bar is not sent.
    pub fn publish<F>(&self, symbol: &str, bar: Bar, kind: BarKind, source: Option<Source>, stream_since: Option<u64>, send: F) -> Outcome
    where
        F: FnOnce(&str, Bar, BarKind, Option<Source>) -> Result<(), WireError>,
    {
        let mut st = self.lock();
        self.decide(&mut st, symbol, bar, kind, source, stream_since, send)
    }

    /// [`BarGate::publish`] for many stream bars under one lock (a minute's burst); `on_outcome`
    /// hears about each.
    pub fn publish_stream_batch<'a, I, F, O>(&self, bars: I, mut send: F, mut on_outcome: O)
    where
        I: IntoIterator<Item = (&'a str, Bar, BarKind)>,
        F: FnMut(&str, Bar, BarKind, Option<Source>) -> Result<(), WireError>,
        O: FnMut(&str, &Outcome),
    {
        let mut st = self.lock();
        st.counts.frames += 1;
        for (symbol, bar, kind) in bars {
            let out = self.decide(&mut st, symbol, bar, kind, Some(Source::Stream), None, &mut send);
            on_outcome(symbol, &out);
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn decide<F>(&self, st: &mut State, symbol: &str, bar: Bar, kind: BarKind, source: Option<Source>, stream_since: Option<u64>, send: F) -> Outcome
    where
        F: FnOnce(&str, Bar, BarKind, Option<Source>) -> Result<(), WireError>,
    {
        let counts = &mut st.counts;
        match source {
            Some(Source::Stream) => counts.received_stream += 1,
            Some(Source::Backfill) => counts.received_backfill += 1,
            Some(Source::Replay) => counts.received_replay += 1,
            Some(Source::Synthetic) => counts.received_synthetic += 1,
            None => counts.received_other += 1,
        }
        if let Err(e) = wire::validate(symbol, &bar) {
            st.counts.invalid += 1;
            return Outcome::Invalid(e);
        }
        if source == Some(Source::Stream) {
            self.touch();
        }
        let prev = st.minutes.get(&bar.timestamp_ms).and_then(|m| m.get(symbol)).copied();
        let mut stream_gen = prev.map_or(0, |p| p.stream_gen);
        if source == Some(Source::Stream) {
            st.generation += 1;
            stream_gen = st.generation;
        }
        if prev.is_some_and(|p| p.bar == bar) {
            if let Some(entry) = st.minutes.get_mut(&bar.timestamp_ms).and_then(|m| m.get_mut(symbol)) {
                entry.stream_gen = stream_gen;
            }
            st.counts.duplicates_suppressed += 1;
            return Outcome::Duplicate;
        }
        if stream_since.is_some_and(|since| stream_gen > since) {
            st.counts.backfill_superseded += 1;
            return Outcome::Superseded;
        }
        if let Err(e) = send(symbol, bar, kind, source) {
            st.counts.invalid += 1;
            return Outcome::Invalid(e);
        }
        let name = match st.last_seen.get_key_value(symbol) {
            Some((name, last)) => {
                let name = name.clone();
                if bar.timestamp_ms > *last {
                    st.last_seen.insert(name.clone(), bar.timestamp_ms);
                }
                name
            }
            None => {
                let name: Symbol = Arc::from(symbol);
                st.last_seen.insert(name.clone(), bar.timestamp_ms);
                name
            }
        };
        // A new minute's map starts as large as the newest one (a burst fills it at once).
        let hint = st.minutes.last_key_value().map_or(0, |(_, m)| m.len());
        let minute = st.minutes.entry(bar.timestamp_ms).or_insert_with(|| HashMap::with_capacity_and_hasher(hint, Default::default()));
        if minute.insert(name, Sent { bar, stream_gen }).is_none() {
            st.remembered += 1;
        }
        while st.remembered > self.remember && st.minutes.len() > 1 {
            if let Some((_, gone)) = st.minutes.pop_first() {
                st.remembered -= gone.len();
            }
        }
        st.counts.published += 1;
        Outcome::Sent
    }

    /// A trading status from the stream: recorded, and handed to `send` when it is new (the
    /// same status again, e.g. after a re-subscription, is not sent twice). True when sent.
    ///
    /// # Errors
    /// The [`WireError`] of `send` (the status is then forgotten, so that it can come again).
    pub fn trading_status<F>(&self, status: TradingStatus, send: F) -> Result<bool, WireError>
    where
        F: FnOnce(TradingStatus) -> Result<(), WireError>,
    {
        status.validate()?;
        if self.trading.apply(&status) == Applied::Duplicate {
            return Ok(false);
        }
        send(status)?;
        Ok(true)
    }

    /// The trading states the stream reported.
    pub fn trading(&self) -> &TradingBook {
        &self.trading
    }

    /// The latest minute sent for `symbol` (where a backfill after a reconnect starts).
    pub fn last_seen(&self, symbol: &str) -> Option<i64> {
        self.lock().last_seen.get(symbol).copied()
    }

    /// [`BarGate::last_seen`] of every symbol sent so far.
    pub fn last_seen_all(&self) -> Vec<(Symbol, i64)> {
        self.lock().last_seen.iter().map(|(s, t)| (s.clone(), *t)).collect()
    }

    /// A copy of the counters.
    pub fn counts(&self) -> PublishCounts {
        self.lock().counts.clone()
    }

    /// Entries currently remembered for duplicate suppression.
    pub fn remembered(&self) -> usize {
        self.lock().remembered
    }

    fn touch(&self) {
        let ns = u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.last_stream_ns.store(ns, Ordering::Relaxed);
    }

    /// Restart the staleness clock (a new subscription, time outside the session).
    pub fn reset_clock(&self) {
        self.touch();
    }

    /// Time since the stream's last bar (or the last [`BarGate::reset_clock`]).
    pub fn silent_for(&self) -> Duration {
        let since = Duration::from_nanos(self.last_stream_ns.load(Ordering::Relaxed));
        self.epoch.elapsed().saturating_sub(since)
    }

    /// The staleness verdict, asked periodically by the sidecar's watchdog: true exactly when the
    /// stream turns stale - no stream bar for `stale_after` while `active` (subscribed) and
    /// `in_session`. Time inactive or out of session never counts (the clock restarts), and after
    /// a verdict the next one needs another full period. `stale_after` zero: never stale.
    pub fn check_stale(&self, active: bool, stale_after: Duration, in_session: bool) -> bool {
        self.stale_verdict(active, stale_after, in_session, self.silent_for())
    }

    /// [`BarGate::check_stale`] for a stream subscribed to `symbols`: while every one of them
    /// is halted, silence is expected and never stale (the clock restarts, so that a resumption
    /// gets a full period before silence counts again).
    pub fn check_stale_of<S: AsRef<str>>(&self, active: bool, stale_after: Duration, in_session: bool, symbols: &[S]) -> bool {
        self.stale_verdict_of(active, stale_after, in_session, symbols, self.silent_for())
    }

    fn stale_verdict_of<S: AsRef<str>>(&self, active: bool, stale_after: Duration, in_session: bool, symbols: &[S], silent: Duration) -> bool {
        let halted = active && in_session && !stale_after.is_zero() && self.trading.all_halted(symbols);
        self.stale_verdict(active && !halted, stale_after, in_session, silent)
    }

    fn stale_verdict(&self, active: bool, stale_after: Duration, in_session: bool, silent: Duration) -> bool {
        if !active || stale_after.is_zero() || !in_session {
            self.reset_clock();
            return false;
        }
        if silent >= stale_after {
            self.reset_clock();
            return true;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bar(ts: i64, close: f64) -> Bar {
        Bar { timestamp_ms: ts, open: 10.0, high: 11.0, low: 9.0, close, volume: 100.0, vwap: None, trade_count: Some(3) }
    }

    const T: i64 = 1_759_930_080_000;

    fn run(p: &BarGate, sent: &mut Vec<(String, Bar)>, b: Bar, src: Source, since: Option<u64>) -> Outcome {
        p.publish("SPY", b, BarKind::Bar, Some(src), since, |s, b, _, _| {
            sent.push((s.to_owned(), b));
            Ok(())
        })
    }

    #[test]
    fn duplicates_are_suppressed_and_changes_sent() {
        let p = BarGate::default();
        let mut sent = vec![];
        assert_eq!(run(&p, &mut sent, bar(T, 10.0), Source::Stream, None), Outcome::Sent);
        assert_eq!(run(&p, &mut sent, bar(T, 10.0), Source::Backfill, None), Outcome::Duplicate);
        assert_eq!(run(&p, &mut sent, bar(T, 10.5), Source::Stream, None), Outcome::Sent);
        assert_eq!(sent.len(), 2);
        assert_eq!(p.last_seen("SPY"), Some(T));
        assert_eq!(p.counts().duplicates_suppressed, 1);
    }

    #[test]
    fn a_backfill_answer_never_replaces_a_newer_stream_version() {
        let p = BarGate::default();
        let mut sent = vec![];
        let mark = p.mark();
        run(&p, &mut sent, bar(T, 10.5), Source::Stream, None);
        assert_eq!(run(&p, &mut sent, bar(T, 10.0), Source::Backfill, Some(mark)), Outcome::Superseded);
        // A minute the stream did not touch since the mark is filled.
        assert_eq!(run(&p, &mut sent, bar(T + 60_000, 10.0), Source::Backfill, Some(mark)), Outcome::Sent);
        assert_eq!(p.last_seen("SPY"), Some(T + 60_000));
    }

    #[test]
    fn invalid_bars_are_not_sent_or_remembered() {
        let p = BarGate::default();
        let mut sent = vec![];
        let out = run(&p, &mut sent, bar(T + 1, 10.0), Source::Stream, None);
        assert!(matches!(out, Outcome::Invalid(WireError::OffMinute { .. })), "{out:?}");
        assert!(sent.is_empty());
        assert_eq!(p.last_seen("SPY"), None);
    }

    #[test]
    fn stale_only_when_active_in_session_for_a_full_period() {
        let p = BarGate::default();
        let secs = Duration::from_secs;
        assert!(!p.stale_verdict(true, secs(5), true, secs(4)));
        assert!(p.stale_verdict(true, secs(5), true, secs(6)));
        assert!(p.silent_for() < secs(5), "a verdict restarts the clock");
        assert!(!p.stale_verdict(false, secs(5), true, secs(100)), "not subscribed");
        assert!(!p.stale_verdict(true, secs(5), false, secs(100)), "out of session");
        assert!(!p.stale_verdict(true, Duration::ZERO, true, secs(100)), "switched off");
    }

    #[test]
    fn every_symbol_halted_is_not_stale() {
        use crate::wire::trading::TradingState;
        let p = BarGate::default();
        let halt = |sym: &str, state| TradingStatus::new(sym, T, state, "MWC1", "");
        assert_eq!(p.trading_status(halt("SPY", TradingState::Halted), |_| Ok(())), Ok(true));
        assert_eq!(p.trading_status(halt("SPY", TradingState::Halted), |_| Ok(())), Ok(false), "sent once");
        let secs = Duration::from_secs;
        let both = ["SPY", "SH"];
        assert!(p.stale_verdict_of(true, secs(5), true, &both, secs(6)), "SH still trades: its silence counts");
        p.trading_status(halt("SH", TradingState::Halted), |_| Ok(())).unwrap();
        assert!(!p.stale_verdict_of(true, secs(5), true, &both, secs(600)), "every symbol halted");
        assert!(p.silent_for() < secs(5), "a quiet verdict restarts the clock: a resumption gets a full period");
        p.trading_status(TradingStatus::new("SH", T + 60_000, TradingState::Trading, "", ""), |_| Ok(())).unwrap();
        assert!(p.stale_verdict_of(true, secs(5), true, &both, secs(6)));
    }

    #[test]
    fn the_oldest_minutes_are_forgotten_first() {
        let p = BarGate::new(3);
        let mut sent = vec![];
        for m in 0..5 {
            run(&p, &mut sent, bar(T + m * 60_000, 10.0), Source::Stream, None);
        }
        assert_eq!(p.remembered(), 3);
        // The newest minute is still a duplicate; the oldest one is new again.
        assert_eq!(run(&p, &mut sent, bar(T + 4 * 60_000, 10.0), Source::Backfill, None), Outcome::Duplicate);
        assert_eq!(run(&p, &mut sent, bar(T, 10.0), Source::Backfill, None), Outcome::Sent);
    }
}
