//! The consumer's side of the minute barrier (docs/ARCHITECTURE.md, "Minute barrier"): the
//! [`MinuteBook`] assembles the parts of a minute, journals each part (a replay and a restarted
//! consumer rebuild the same minutes), and delivers the whole minute once to its minute
//! subscribers ([`crate::Consumer::subscribe_minutes`], [`crate::Consumer::on_minute_closed`])
//! after the bars of the same read batch.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use crossbeam_channel::{Receiver, Sender, TrySendError};

use crate::asset::AssetClass;
use crate::consumer::health::Counters;
use crate::consumer::Ingested;
use crate::wire::minute::*;
use crate::wire::WireError;

/// Closed (writer, minute) pairs remembered to recognise a minute closed twice.
const CLOSED_REMEMBERED: usize = 4096;

/// Writers whose latest subscribed universe is kept (the oldest latest minute forgotten first).
const UNIVERSE_WRITERS: usize = 64;

/// A writer's universe counts while its latest closed minute is at most this far behind the
/// newest closed by a writer of the same asset class: two sidecars closing the same minute a
/// little apart agree; a sidecar that was restarted (a new writer id) stops counting once its
/// successor closed a minute this much later.
const UNIVERSE_SLACK_MS: i64 = crate::wire::MINUTE_MS;

struct Pending {
    parts: u32,
    got: Vec<bool>,
    acc: MinuteClosed,
}

#[derive(Default)]
struct BookState {
    pending: HashMap<(String, i64), Pending>,
    closed: HashSet<(String, i64)>,
    closed_order: VecDeque<(String, i64)>,
    held: Vec<Arc<MinuteClosed>>,
    last_minute_ms: i64,
    /// minute → writer → symbols without a bar when it closed (bar or quiet mark removes one).
    none: BTreeMap<i64, HashMap<String, HashSet<String>>>,
    /// symbol → minutes confirmed quiet.
    quiet: HashMap<String, std::collections::BTreeSet<i64>>,
    /// writer → its latest closed minute and the subscribed universe it listed (bars ∪ halted ∪ none).
    universe: HashMap<String, Universe>,
    /// minute → the delivered closes' symbol sets (fingerprints) and writers: a restarted
    /// sidecar (a new writer id) closing a minute again over the same symbols is a duplicate.
    delivered: BTreeMap<i64, Vec<(u64, String)>>,
}

/// One writer's subscribed symbols as of its latest closed minute.
struct Universe {
    minute_ms: i64,
    symbols: HashSet<String>,
    stock: bool,
    crypto: bool,
}

impl BookState {
    /// Keep `writer`'s universe of the minute `m` just closed, if it is its latest.
    fn note_universe(&mut self, writer: &str, m: &MinuteClosed) {
        if self.universe.get(writer).is_some_and(|u| u.minute_ms > m.minute_ms) {
            return;
        }
        let symbols: HashSet<String> = m.bars.iter().chain(&m.halted).chain(&m.none).cloned().collect();
        if symbols.is_empty() {
            return; // says nothing of which class the writer streams
        }
        let crypto = symbols.iter().any(|s| AssetClass::of(s) == AssetClass::Crypto);
        let stock = symbols.iter().any(|s| AssetClass::of(s) == AssetClass::Stock);
        if !self.universe.contains_key(writer) && self.universe.len() >= UNIVERSE_WRITERS {
            if let Some(oldest) = self.universe.iter().min_by_key(|(_, u)| u.minute_ms).map(|(w, _)| w.clone()) {
                self.universe.remove(&oldest);
            }
        }
        self.universe.insert(writer.to_owned(), Universe { minute_ms: m.minute_ms, symbols, stock, crypto });
    }
}

/// A fingerprint of the symbols a closed minute names (bars, halted, none: the subscription when
/// it closed), whatever their order and class.
fn symbols_fingerprint(m: &MinuteClosed) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut all: Vec<&str> = m.bars.iter().chain(&m.halted).chain(&m.none).map(String::as_str).collect();
    all.sort_unstable();
    let mut h = std::hash::DefaultHasher::new();
    all.hash(&mut h);
    h.finish()
}

/// The receiving end of [`crate::Consumer::subscribe_minutes`]. Dropping it unsubscribes.
#[derive(Debug)]
pub struct MinuteReceiver {
    rx: Receiver<Arc<MinuteClosed>>,
    alive: Arc<AtomicBool>,
}

impl std::ops::Deref for MinuteReceiver {
    type Target = Receiver<Arc<MinuteClosed>>;
    fn deref(&self) -> &Receiver<Arc<MinuteClosed>> {
        &self.rx
    }
}

impl Drop for MinuteReceiver {
    fn drop(&mut self) {
        self.alive.store(false, Ordering::Relaxed);
    }
}

type MinuteCallback = Box<dyn Fn(&MinuteClosed) + Send + Sync>;

struct MinuteChannel {
    tx: Sender<Arc<MinuteClosed>>,
    rx: Receiver<Arc<MinuteClosed>>,
    alive: Arc<AtomicBool>,
}

/// The consumer's minutes: parts assembled per (writer, minute), each minute delivered once.
#[derive(Default)]
pub struct MinuteBook {
    state: Mutex<BookState>,
    /// The newest minute with symbols left without a bar (a bar of a later minute cannot be late:
    /// no lock taken for it).
    newest_none: std::sync::atomic::AtomicI64,
    channels: RwLock<Vec<MinuteChannel>>,
    callbacks: RwLock<Vec<MinuteCallback>>,
}

impl std::fmt::Debug for MinuteBook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MinuteBook").field("last_minute_ms", &self.lock().last_minute_ms).finish_non_exhaustive()
    }
}

/// What [`MinuteBook::add_part`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PartOutcome {
    /// Kept; the minute waits for more parts.
    Waiting,
    /// The minute's last part: the minute, whole.
    Closed(Arc<MinuteClosed>),
    /// This part (or the minute) was seen before.
    Duplicate,
    /// The minute's last part, but another writer closed the minute over the same symbols before
    /// (a restarted sidecar closes the minutes of its backfill again): kept (journaled), not
    /// delivered.
    Reclosed,
    /// Contradicts the earlier parts of its minute.
    Rejected(String),
}

impl MinuteBook {
    fn lock(&self) -> std::sync::MutexGuard<'_, BookState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Take one part of `writer`'s minute. Counts what happened in `c` (the consumer's table).
    pub fn add_part(&self, c: &Counters, writer: &str, p: &MinuteClosedPart) -> PartOutcome {
        let key = (writer.to_owned(), p.minute_ms);
        let mut st = self.lock();
        if st.closed.contains(&key) {
            c.minute_duplicates.fetch_add(1, Ordering::Relaxed);
            return PartOutcome::Duplicate;
        }
        if !st.pending.contains_key(&key) && st.pending.len() >= MAX_PENDING_MINUTES {
            if let Some(oldest) = st.pending.keys().min_by_key(|(_, m)| *m).cloned() {
                st.pending.remove(&oldest);
                c.minute_parts_evicted.fetch_add(1, Ordering::Relaxed);
                log::warn!("minute {} of writer {:?} never got all its minute_closed parts: dropped", crate::calendar::fmt_ny(oldest.1), oldest.0);
            }
        }
        let entry = st.pending.entry(key.clone()).or_insert_with(|| Pending {
            parts: p.parts,
            got: vec![false; p.parts as usize],
            acc: MinuteClosed {
                minute_ms: p.minute_ms,
                closed_ms: p.closed_ms,
                complete: p.complete,
                bars: Vec::new(),
                halted: Vec::new(),
                none: Vec::new(),
                writer: (!writer.is_empty()).then(|| writer.to_owned()),
            },
        });
        if entry.parts != p.parts {
            c.minute_rejected.fetch_add(1, Ordering::Relaxed);
            return PartOutcome::Rejected(format!("part {} says {} parts, an earlier part said {}", p.part, p.parts, entry.parts));
        }
        let i = p.part as usize - 1;
        if entry.got[i] {
            c.minute_duplicates.fetch_add(1, Ordering::Relaxed);
            return PartOutcome::Duplicate;
        }
        entry.got[i] = true;
        entry.acc.bars.extend(p.bars.iter().cloned());
        entry.acc.halted.extend(p.halted.iter().cloned());
        entry.acc.none.extend(p.none.iter().cloned());
        c.minute_parts.fetch_add(1, Ordering::Relaxed);
        if !entry.got.iter().all(|g| *g) {
            return PartOutcome::Waiting;
        }
        let done = st.pending.remove(&key).expect("present").acc;
        if st.closed_order.len() >= CLOSED_REMEMBERED {
            if let Some(old) = st.closed_order.pop_front() {
                st.closed.remove(&old);
            }
        }
        st.closed.insert(key.clone());
        st.closed_order.push_back(key);
        let fingerprint = symbols_fingerprint(&done);
        let before = st.delivered.get(&done.minute_ms).is_some_and(|d| d.iter().any(|(f, w)| *f == fingerprint && w != writer));
        if before {
            // Its quiet marks name its own `none`: what the earlier closes still miss.
            let mine: HashSet<&String> = done.none.iter().collect();
            let still: HashSet<String> =
                st.none.get(&done.minute_ms).map(|w| w.values().flatten().filter(|s| mine.contains(s)).cloned().collect()).unwrap_or_default();
            if !still.is_empty() {
                st.none.entry(done.minute_ms).or_default().insert(writer.to_owned(), still);
            }
            c.minute_duplicates.fetch_add(1, Ordering::Relaxed);
            return PartOutcome::Reclosed;
        }
        st.delivered.entry(done.minute_ms).or_default().push((fingerprint, writer.to_owned()));
        while st.delivered.len() > CLOSED_REMEMBERED {
            st.delivered.pop_first();
        }
        st.last_minute_ms = st.last_minute_ms.max(done.minute_ms);
        st.note_universe(writer, &done);
        c.last_minute_ms.fetch_max(u64::try_from(done.minute_ms).unwrap_or(0), Ordering::Relaxed);
        if !done.none.is_empty() {
            st.none.entry(done.minute_ms).or_default().insert(writer.to_owned(), done.none.iter().cloned().collect());
            while st.none.len() > NONE_REMEMBERED_MINUTES {
                st.none.pop_first();
            }
            self.newest_none.fetch_max(done.minute_ms, Ordering::Relaxed);
        }
        c.minutes_closed.fetch_add(1, Ordering::Relaxed);
        if !done.none.is_empty() {
            c.minutes_incomplete.fetch_add(1, Ordering::Relaxed);
        }
        PartOutcome::Closed(Arc::new(done))
    }

    /// A bar of `symbol` for `minute_ms` was stored as a first report: if its minute closed
    /// without it, it is late (counted in `late_bars`). True when late.
    pub fn on_bar(&self, c: &Counters, symbol: &str, minute_ms: i64) -> bool {
        if minute_ms > self.newest_none.load(Ordering::Relaxed) {
            return false;
        }
        let mut st = self.lock();
        let Some(writers) = st.none.get_mut(&minute_ms) else { return false };
        let mut late = false;
        for none in writers.values_mut() {
            late |= none.remove(symbol); // from every writer's close that listed it
        }
        if late {
            c.late_bars.fetch_add(1, Ordering::Relaxed);
        }
        late
    }

    /// Quiet marks of `writer` for `minute_ms`: each symbol must be one the minute closed without
    /// (else refused, counted). Returns the symbols taken (to journal), or why none was.
    ///
    /// # Errors
    /// A sentence naming the first refused symbol (the others may have been taken).
    pub fn mark_quiet(&self, c: &Counters, writer: &str, minute_ms: i64, symbols: &[String]) -> (Vec<String>, Option<String>) {
        let mut st = self.lock();
        let mut taken = Vec::new();
        let mut refused = None;
        for s in symbols {
            let ok = st.none.get_mut(&minute_ms).and_then(|w| w.get_mut(writer)).is_some_and(|none| none.remove(s));
            if ok {
                let minutes = st.quiet.entry(s.clone()).or_default();
                minutes.insert(minute_ms);
                while minutes.len() > MAX_QUIET_PER_SYMBOL {
                    minutes.pop_first();
                }
                taken.push(s.clone());
            } else {
                c.quiet_rejected.fetch_add(1, Ordering::Relaxed);
                refused.get_or_insert_with(|| format!("{s:?} was not without a bar in that minute's close by writer {writer:?}"));
            }
        }
        c.quiet_marks.fetch_add(taken.len() as u64, Ordering::Relaxed);
        (taken, refused)
    }

    /// Whether `symbol` is in a writer's subscribed universe as of the latest closed minute of its
    /// asset class (per writer: bars ∪ halted ∪ none of its latest closed minute; writers more
    /// than a minute behind the newest of the class no longer count). `None` when no writer of
    /// the symbol's asset class closed a minute yet (no barrier: an old sidecar,
    /// `--minute-deadline 0`): unknown.
    pub fn subscribed(&self, symbol: &str) -> Option<bool> {
        let st = self.lock();
        let crypto = AssetClass::of(symbol) == AssetClass::Crypto;
        let of_class = || st.universe.values().filter(move |u| if crypto { u.crypto } else { u.stock });
        let newest = of_class().map(|u| u.minute_ms).max()?;
        Some(of_class().any(|u| u.minute_ms >= newest - UNIVERSE_SLACK_MS && u.symbols.contains(symbol)))
    }

    /// The minutes marked quiet for `symbol` in `[from_ms, to_ms)`.
    pub fn quiet_minutes(&self, symbol: &str, from_ms: i64, to_ms: i64) -> Vec<i64> {
        self.lock().quiet.get(symbol).map(|m| m.range(from_ms..to_ms).copied().collect()).unwrap_or_default()
    }

    /// Deliver a closed minute: callbacks now; channels now, or (`hold`) at
    /// [`MinuteBook::release`] after the read batch's bars.
    pub fn deliver(&self, c: &Counters, m: Arc<MinuteClosed>, hold: bool) {
        for f in self.callbacks.read().unwrap_or_else(|e| e.into_inner()).iter() {
            f(&m);
        }
        if hold {
            self.lock().held.push(m);
        } else {
            self.send(c, std::slice::from_ref(&m));
        }
    }

    /// Send the held minutes to the channels (the FIFO reader calls it after the batch's bars).
    pub fn release(&self, c: &Counters) {
        let held = std::mem::take(&mut self.lock().held);
        if !held.is_empty() {
            self.send(c, &held);
        }
    }

    fn send(&self, c: &Counters, events: &[Arc<MinuteClosed>]) {
        let mut any_gone = false;
        for ch in self.channels.read().unwrap_or_else(|e| e.into_inner()).iter() {
            if !ch.alive.load(Ordering::Relaxed) {
                any_gone = true;
                continue;
            }
            for m in events {
                if let Err(TrySendError::Full(m)) = ch.tx.try_send(m.clone()) {
                    let _ = ch.rx.try_recv();
                    let _ = ch.tx.try_send(m);
                    c.minute_delivery_drops.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        if any_gone {
            self.channels.write().unwrap_or_else(|e| e.into_inner()).retain(|c| c.alive.load(Ordering::Relaxed));
        }
    }

    /// A bounded channel of closed minutes (full: the oldest dropped, counted).
    pub fn subscribe(&self, capacity: usize) -> MinuteReceiver {
        let (tx, rx) = crossbeam_channel::bounded(capacity.max(1));
        let alive = Arc::new(AtomicBool::new(true));
        self.channels.write().unwrap_or_else(|e| e.into_inner()).push(MinuteChannel { tx, rx: rx.clone(), alive: alive.clone() });
        MinuteReceiver { rx, alive }
    }

    /// Call `f` on the ingesting thread for each closed minute.
    pub fn on_closed(&self, f: impl Fn(&MinuteClosed) + Send + Sync + 'static) {
        self.callbacks.write().unwrap_or_else(|e| e.into_inner()).push(Box::new(f));
    }
}

/// The wire line(s) of a closed minute, without envelope except `writer` (the journal's and
/// `--echo`'s form).
pub fn lines_of(m: &MinuteClosed) -> Vec<u8> {
    let mut out = Vec::new();
    for p in split(m) {
        write_part_line(&mut out, &p, None, m.writer.as_deref());
    }
    out
}

// ------------------------------------------------------------------------------ the consumer's API

impl crate::Consumer {
    /// Closed minutes over a bounded channel of `capacity` (full: the oldest dropped, counted in
    /// `minute_delivery_drops`). A minute arrives after the bars it covers are in the store and
    /// in the bar channels of the same consumer: on one, drain your bar channel, then act.
    pub fn subscribe_minutes(&self, capacity: usize) -> MinuteReceiver {
        self.minutes.subscribe(capacity)
    }

    /// Call `f` on the ingesting thread for each closed minute (after its bars' callbacks).
    pub fn on_minute_closed(&self, f: impl Fn(&MinuteClosed) + Send + Sync + 'static) {
        self.minutes.on_closed(f);
    }

    /// The latency histograms (minute end → receipt → store; minute end → minute_closed).
    pub fn latency(&self) -> super::latency::LatencySnapshot {
        self.latency.snapshot()
    }

    /// Ingest one part of a closed minute (the one-process mode's path; a wire line goes
    /// through [`Consumer::ingest_line`]). `writer` keys the minute (a sidecar closes each
    /// minute once).
    ///
    /// # Errors
    /// [`WireError::FutureBar`] for a minute too far ahead of this consumer's clock (counted, logged).
    pub fn ingest_minute_part(&self, writer: &str, part: MinuteClosedPart) -> Result<Ingested, WireError> {
        self.admit(self.check_not_ahead(part.minute_ms), writer.as_bytes())?;
        Ok(self.accept_minute_part(writer, part, false))
    }

    /// Journal a new part of a closed minute (into the day file of its minute, before the
    /// minute is delivered), and deliver the minute when it is whole. With `--symbols`, the
    /// minute lists only those (as its bars are filtered).
    pub(super) fn accept_minute_part(&self, writer: &str, mut part: MinuteClosedPart, hold: bool) -> Ingested {
        let book = &self.minutes;
        if let Some(filter) = &self.symbols {
            for list in [&mut part.bars, &mut part.halted, &mut part.none] {
                list.retain(|s| filter.contains(s));
            }
        }
        let asset = part.bars.iter().chain(&part.halted).chain(&part.none).next().map_or(AssetClass::Stock, |s| AssetClass::of(s));
        self.load_journal_day_of(asset, part.minute_ms);
        match book.add_part(&self.health.counters, writer, &part) {
            PartOutcome::Rejected(why) => {
                if let Some(more) = self.log_allowed("minute_rejected") {
                    log::warn!("rejected minute_closed of {}: {why}{more}", crate::calendar::fmt_ny(part.minute_ms));
                }
                return Ingested::Ignored;
            }
            PartOutcome::Duplicate => return Ingested::Ignored,
            outcome => {
                // Waiting, Closed, or Reclosed (journaled: a restart recognises it the same way).
                if let Some(j) = &self.journal {
                    let mut line = Vec::with_capacity(256);
                    write_part_line(&mut line, &part, None, (!writer.is_empty()).then_some(writer));
                    j.queue(asset, part.minute_ms, &line);
                }
                if let PartOutcome::Closed(m) = outcome {
                    self.latency.close.record(self.health.now_ms() - (m.minute_ms + crate::wire::MINUTE_MS));
                    book.deliver(&self.health.counters, m, hold);
                }
            }
        }
        Ingested::MinuteClosed
    }

    /// Ingest quiet marks (the one-process mode's path; a wire line goes through
    /// [`Consumer::ingest_line`]).
    ///
    /// # Errors
    /// [`WireError::FutureBar`] for a minute too far ahead of this consumer's clock (counted, logged).
    pub fn ingest_minute_quiet(&self, writer: &str, minute_ms: i64, quiet: &[String]) -> Result<Ingested, WireError> {
        self.admit(self.check_not_ahead(minute_ms), writer.as_bytes())?;
        Ok(self.accept_minute_quiet(writer, minute_ms, quiet))
    }

    /// Keep and journal the quiet marks of a closed minute; a symbol the minute did not close
    /// without is refused, counted (`quiet_rejected`) and logged (rate-limited).
    pub(super) fn accept_minute_quiet(&self, writer: &str, minute_ms: i64, quiet: &[String]) -> Ingested {
        let asset = quiet.first().map_or(AssetClass::Stock, |s| AssetClass::of(s));
        self.load_journal_day_of(asset, minute_ms);
        let (taken, refused) = self.minutes.mark_quiet(&self.health.counters, writer, minute_ms, quiet);
        if let Some(why) = refused {
            if let Some(more) = self.log_allowed("quiet_rejected") {
                log::warn!("refused a quiet mark of {}: {why}{more}", crate::calendar::fmt_ny(minute_ms));
            }
        }
        if let (Some(j), false) = (&self.journal, taken.is_empty()) {
            let mut line = Vec::with_capacity(128);
            write_quiet_line(&mut line, minute_ms, &taken, None, (!writer.is_empty()).then_some(writer));
            j.queue(asset, minute_ms, &line);
        }
        Ingested::MinuteClosed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{WireError, MAX_LINE_BYTES};
    use std::sync::atomic::AtomicU64;

    const M: i64 = 1_759_930_080_000;

    fn closed(n: usize) -> MinuteClosed {
        MinuteClosed {
            minute_ms: M,
            closed_ms: M + 60_050,
            complete: false,
            bars: (0..n).map(|i| format!("B{i:05}")).collect(),
            halted: vec!["HALT".into()],
            none: (0..n / 5).map(|i| format!("Q{i:05}")).collect(),
            writer: Some("w1".into()),
        }
    }

    #[test]
    fn a_10000_symbol_minute_splits_into_lines_that_fit_and_reassembles() {
        let m = closed(10_000);
        let parts = split(&m);
        assert!(parts.len() > 10 && parts.len() < 40, "{}", parts.len());
        let book = MinuteBook::default();
        let counters = Counters::default();
        let mut last = None;
        // Out of order, with a duplicate: still one minute, whole.
        let mut order: Vec<usize> = (0..parts.len()).rev().collect();
        order.insert(1, order[0]);
        for i in order {
            let mut line = Vec::new();
            write_part_line(&mut line, &parts[i], Some(u64::MAX), Some(&"w".repeat(64)));
            assert!(line.len() <= MAX_LINE_BYTES, "{}", line.len());
            let parsed = parse_part(&line[..line.len() - 1]).unwrap().unwrap();
            assert_eq!(parsed.part, parts[i]);
            if let PartOutcome::Closed(m) = book.add_part(&counters, "w1", &parsed.part) {
                assert!(last.is_none());
                last = Some(m);
            }
        }
        let got = last.expect("closed");
        let (mut a, mut b) = (got.bars.clone(), m.bars.clone());
        a.sort();
        b.sort();
        assert_eq!((a, got.halted.clone(), got.none.len()), (b, m.halted.clone(), m.none.len()));
        let s = counters.snapshot();
        assert_eq!((s.minutes_closed, s.minute_duplicates, s.minute_parts as usize), (1, 1, parts.len()));
        // The same minute again from the same writer: a duplicate, not a second close.
        assert_eq!(book.add_part(&counters, "w1", &parts[0]), PartOutcome::Duplicate);
    }

    #[test]
    fn a_restarted_sidecars_reclose_is_a_duplicate_and_another_subscriptions_close_is_not() {
        let (book, c) = (MinuteBook::default(), Counters::default());
        let one = |m: &MinuteClosed| split(m).remove(0);
        let m = MinuteClosed { bars: vec!["SPY".into()], halted: vec![], none: vec!["SH".into(), "QQQ".into()], ..closed(0) };
        assert!(matches!(book.add_part(&c, "w1", &one(&m)), PartOutcome::Closed(_)));
        // The restarted sidecar (a new writer) closes it again, with SH's bar backfilled: the
        // same symbols, so not delivered twice; SH is a late bar, QQQ can still be marked quiet.
        assert!(book.on_bar(&c, "SH", M));
        let again = MinuteClosed { bars: vec!["SH".into(), "SPY".into()], none: vec!["QQQ".into()], ..m.clone() };
        assert_eq!(book.add_part(&c, "w2", &one(&again)), PartOutcome::Reclosed);
        assert_eq!(book.mark_quiet(&c, "w2", M, &["QQQ".into()]), (vec!["QQQ".to_string()], None));
        // Another sidecar's symbols (crypto beside stocks) close the same minute: delivered.
        let crypto = MinuteClosed { bars: vec!["BTC/USD".into()], halted: vec![], none: vec![], ..m.clone() };
        assert!(matches!(book.add_part(&c, "w3", &one(&crypto)), PartOutcome::Closed(_)));
        let s = c.snapshot();
        assert_eq!((s.minutes_closed, s.minute_duplicates, s.late_bars, s.quiet_marks, s.quiet_rejected), (2, 1, 1, 1, 0));
    }

    #[test]
    fn bad_parts_are_refused_and_a_newer_version_is_ignored() {
        let bad = |s: &str| parse_part(s.as_bytes()).unwrap_err();
        assert!(matches!(bad(r#"{"type":"minute_closed","minute_ms":1759930080001}"#), WireError::OffMinute { .. }));
        assert!(matches!(bad(r#"{"type":"minute_closed","minute_ms":1759930080000,"part":2,"parts":1}"#), WireError::WrongType { .. }));
        assert!(matches!(bad(r#"{"type":"minute_closed","minute_ms":1759930080000,"bars":["spy"]}"#), WireError::InvalidSymbol { .. }));
        assert!(matches!(
            bad(r#"{"type":"minute_closed","minute_ms":1759930080000,"bars":["SPY"],"none":["SPY"]}"#),
            WireError::InvalidSymbol { .. }
        ));
        assert!(matches!(bad(r#"{"type":"minute_closed"}"#), WireError::MissingField { field: "minute_ms" }));
        assert_eq!(parse_part(br#"{"type":"minute_closed","v":2,"anything":[1]}"#).unwrap(), None);
    }

    fn bar_line(symbol: &str, seq: u64) -> String {
        format!(r#"{{"symbol":"{symbol}","timestamp_ms":{M},"open":1,"high":1,"low":1,"close":1,"volume":1,"seq":{seq},"writer":"w1"}}"#)
    }

    #[test]
    fn a_consumer_delivers_each_minute_once_after_its_bars_and_a_restart_does_not_repeat_it() {
        let dir = tempfile::tempdir().unwrap();
        let open = || {
            let journal = crate::consumer::journal::Journal::open(dir.path(), crate::consumer::journal::FsyncPolicy::Always).unwrap();
            let c = crate::Consumer::builder().journal(journal).build().unwrap();
            c.resume_from_journal(M);
            c
        };
        let c = open();
        let rx = c.subscribe_minutes(16);
        let seen = Arc::new(AtomicU64::new(0));
        let counted = seen.clone();
        c.on_minute_closed(move |_| {
            counted.fetch_add(1, Ordering::Relaxed);
        });
        c.ingest_line(bar_line("SPY", 1).as_bytes()).unwrap();
        let m = MinuteClosed { writer: None, ..closed(3) };
        let mut lines = Vec::new();
        for p in split(&MinuteClosed { bars: vec!["SPY".into()], halted: vec![], none: vec!["SH".into()], ..m.clone() }) {
            write_part_line(&mut lines, &p, Some(2), Some("w1"));
        }
        c.ingest_line(&lines[..lines.len() - 1]).unwrap();
        let got = rx.try_recv().unwrap();
        assert_eq!((got.bars.clone(), got.none.clone(), got.writer.as_deref()), (vec!["SPY".to_string()], vec!["SH".to_string()], Some("w1")));
        assert_eq!(seen.load(Ordering::Relaxed), 1);
        // A newer version is counted as an unknown line and ignored.
        c.ingest_line(br#"{"type":"minute_closed","v":2,"minute_ms":1759930140000,"seq":3,"writer":"w1"}"#).unwrap();
        assert_eq!(c.health().counters.snapshot().unknown_types, 1);
        c.flush();
        drop(c);
        // Restarted on the same journal without the cursor (the line comes again as new): known,
        // not delivered a second time.
        std::fs::remove_file(dir.path().join(crate::consumer::cursor::DURABLE_FILE)).ok();
        let c = open();
        let rx = c.subscribe_minutes(16);
        c.ingest_line(&lines[..lines.len() - 1]).unwrap();
        assert!(rx.try_recv().is_err(), "delivered twice");
        assert_eq!(c.health().counters.snapshot().minute_duplicates, 1);
        // A consumer limited to --symbols sees the minute with its own symbols only.
        let only = crate::Consumer::builder().symbols(["SH"]).build().unwrap();
        let rx = only.subscribe_minutes(4);
        only.ingest_line(&lines[..lines.len() - 1]).unwrap();
        let got = rx.try_recv().unwrap();
        assert_eq!((got.bars.len(), got.none.clone()), (0, vec!["SH".to_string()]));
    }

    fn part(minute_ms: i64, bars: &[&str], halted: &[&str], none: &[&str]) -> MinuteClosedPart {
        let v = |l: &[&str]| l.iter().map(|s| s.to_string()).collect();
        MinuteClosedPart {
            minute_ms,
            closed_ms: minute_ms + 61_000,
            complete: none.is_empty(),
            part: 1,
            parts: 1,
            bars: v(bars),
            halted: v(halted),
            none: v(none),
        }
    }

    #[test]
    fn the_subscribed_universe_is_each_writers_latest_minute_per_asset_class() {
        let (book, c) = (MinuteBook::default(), Counters::default());
        let m = |i: i64| M + i * 60_000;
        assert_eq!(book.subscribed("SPY"), None, "no minute closed: unknown");
        book.add_part(&c, "w1", &part(m(0), &["SH"], &["SPY"], &[]));
        assert_eq!((book.subscribed("SPY"), book.subscribed("SH"), book.subscribed("QQQ")), (Some(true), Some(true), Some(false)));
        assert_eq!(book.subscribed("BTC/USD"), None, "no crypto writer: unknown");
        // A crypto writer says nothing of stocks.
        book.add_part(&c, "c1", &part(m(5), &["BTC/USD"], &[], &[]));
        assert_eq!((book.subscribed("SPY"), book.subscribed("BTC/USD"), book.subscribed("ETH/USD")), (Some(true), Some(true), Some(false)));
        // SPY unsubscribed: the writer's next minute lists it nowhere.
        book.add_part(&c, "w1", &part(m(1), &["SH"], &[], &[]));
        assert_eq!(book.subscribed("SPY"), Some(false));
        // An older minute (a journal replayed out of order) does not undo the latest.
        book.add_part(&c, "w1", &part(m(-1), &["SH"], &["SPY"], &[]));
        assert_eq!(book.subscribed("SPY"), Some(false));
        // A second stock writer a minute behind still counts; a restarted one (its successor two
        // minutes on) no longer does.
        book.add_part(&c, "w2", &part(m(0), &["QQQ"], &[], &[]));
        assert_eq!(book.subscribed("QQQ"), Some(true));
        book.add_part(&c, "w1", &part(m(2), &["SH"], &[], &["IWM"]));
        assert_eq!((book.subscribed("QQQ"), book.subscribed("IWM")), (Some(false), Some(true)));
    }
}
